//! Single-use connect [`Ticket`]s: for a client that cannot set a header on
//! the WebSocket handshake (a browser on another site, a JavaScript client
//! without cookies) and must not put its token in a URL, where proxies and
//! access logs keep it.
//!
//! The flow: the client asks an endpoint of the app, authenticated by its
//! token, for a ticket ([`Authenticator::issue_ticket`]); it connects with the
//! ticket in the query string, where the [`TokenSource::ticket`] source finds
//! it; the [`Authenticator`] redeems it. A ticket
//!
//! - opens one socket: of any number of handshakes presenting it, on any node
//!   sharing the [`TicketStore`], exactly one is upgraded;
//! - lives a short while ([`DEFAULT_TICKET_TTL`], 30 s, and never past its
//!   token's expiry);
//! - is bound to the token that asked for it: the socket it opens lives by that
//!   token (the token's revocation closes it, the token's expiry and refresh
//!   apply), and a revoked token's unused tickets open nothing;
//! - is not a token, and a token is not a ticket: they are kept apart, so one
//!   presented as the other is unknown.
//!
//! # How a ticket is kept
//! The [`TicketStore`] keeps the ticket's SHA-256 digest, never the ticket,
//! and beside it the issuing token, sealed with a key that only the ticket
//! yields (HMAC-SHA-256 as a stream cipher, then an HMAC-SHA-256 tag over the
//! result). Redeeming takes the record (atomically: a used ticket is gone),
//! opens the seal with the presented ticket and asks the token store's source
//! of truth ([`StoreCache::revalidate`](crate::store::StoreCache::revalidate) past a cache) about
//! the token. So tickets work in front of any [`TokenStore`](crate::TokenStore),
//! your own included, and a reader of the ticket table learns no token.
//!
//! ```
//! use std::sync::Arc;
//! use ws_token_auth::extract::{CredentialKind, TokenSource};
//! use ws_token_auth::{Authenticator, Identity, MemoryTokenStore};
//! use ws_token_auth::store::ManageTokens;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = Arc::new(MemoryTokenStore::<String>::new());
//! let auth = Authenticator::from_shared(Arc::clone(&store))
//!     .sources([TokenSource::cookie("key"), TokenSource::ticket("ticket")])
//!     .tickets(Arc::clone(&store));
//!
//! // An endpoint authenticated by the token issues a ticket...
//! let token = store.issue(&"alice".to_owned(), None).await?;
//! let alice = auth.check_token(token.expose_secret(), CredentialKind::Authorization).await?;
//! let ticket = auth.issue_ticket(&alice).await?;
//!
//! // ...the client connects to `/chat/stream/?ticket=...`: it opens one socket.
//! let uri: http::Uri = format!("/chat/stream/?ticket={}", ticket.expose_secret()).parse()?;
//! let Identity::User(user) = auth.authenticate(&http::HeaderMap::new(), &uri).await? else { unreachable!() };
//! assert_eq!((user.user.as_str(), user.token_id()), ("alice", token.id()));
//! assert!(auth.authenticate(&http::HeaderMap::new(), &uri).await.is_err(), "used up");
//! # Ok(()) }
//! ```
//!
//! [`Authenticator`]: crate::Authenticator
//! [`Authenticator::issue_ticket`]: crate::Authenticator::issue_ticket
//! [`TokenSource::ticket`]: crate::extract::TokenSource::ticket

use std::fmt;
use std::time::{Duration, SystemTime};

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub use crate::store::tickets::TicketStore;
use crate::token::{DIGEST_LEN, Token, TokenId};

/// How long a ticket lives unless configured otherwise:
/// [`Authenticator::ticket_ttl`](crate::Authenticator::ticket_ttl).
pub const DEFAULT_TICKET_TTL: Duration = Duration::from_secs(30);

/// A single-use connect ticket: a secret, like a [`Token`], that never prints
/// itself (`Debug` shows its fingerprint).
///
/// ```
/// # use std::sync::Arc;
/// # use ws_token_auth::{Authenticator, MemoryTokenStore, extract::CredentialKind};
/// # use ws_token_auth::store::ManageTokens;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let store = Arc::new(MemoryTokenStore::<String>::new());
/// # let auth = Authenticator::from_shared(Arc::clone(&store)).tickets(Arc::clone(&store));
/// # let token = store.issue(&"alice".to_owned(), None).await?;
/// # let alice = auth.check_token(token.expose_secret(), CredentialKind::Cookie).await?;
/// let ticket = auth.issue_ticket(&alice).await?;
/// assert!(!format!("{ticket:?}").contains(ticket.expose_secret()));
/// assert!(ticket.expires_in() <= std::time::Duration::from_secs(30));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Ticket {
    secret: Token,
    expires_at: SystemTime,
}

impl Ticket {
    /// The ticket's value, to send to its client (and to nobody else).
    #[must_use]
    pub fn expose_secret(&self) -> &str {
        self.secret.expose_secret()
    }

    /// The ticket's public fingerprint, safe to log.
    #[must_use]
    pub fn id(&self) -> TokenId {
        self.secret.id()
    }

    pub(crate) fn digest(&self) -> &[u8; DIGEST_LEN] {
        self.secret.digest()
    }

    /// When the ticket stops opening sockets.
    #[must_use]
    pub fn expires_at(&self) -> SystemTime {
        self.expires_at
    }

    /// How long the ticket has left, from now (zero once expired).
    #[must_use]
    pub fn expires_in(&self) -> Duration {
        self.expires_at.duration_since(SystemTime::now()).unwrap_or_default()
    }
}

impl fmt::Debug for Ticket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ticket").field("id", &self.id()).field("expires_at", &self.expires_at).finish()
    }
}

/// A new ticket for `token`, and the record to keep under its digest.
pub(crate) fn make(token: &Token, expires_at: SystemTime) -> (Ticket, Vec<u8>) {
    let secret = Token::generate();
    let record = seal(&secret, token);
    (Ticket { secret, expires_at }, record)
}

/// The token a record holds, if `ticket` opens it.
pub(crate) fn open(ticket: &Token, record: &[u8]) -> Option<Token> {
    let (&version, rest) = record.split_first()?;
    if version != VERSION || rest.len() <= TAG_LEN {
        return None;
    }
    let (sealed, tag) = rest.split_at(rest.len() - TAG_LEN);
    let keys = Keys::of(ticket);
    let mut mac = keys.tag();
    mac.update(&[VERSION]);
    mac.update(sealed);
    mac.verify_truncated_left(tag).ok()?;
    let mut value = sealed.to_vec();
    keys.apply_stream(&mut value);
    Token::new(String::from_utf8(value).ok()?).ok()
}

const VERSION: u8 = 1;
const TAG_LEN: usize = 16;

type HmacSha256 = Hmac<Sha256>;

/// The two keys a ticket yields: one for the stream that hides the token, one
/// for the tag that proves the record was made with this ticket.
struct Keys {
    stream: [u8; 32],
    tag: [u8; 32],
}

impl Keys {
    fn of(ticket: &Token) -> Self {
        let derive = |label: &[u8]| -> [u8; 32] {
            let mut mac =
                HmacSha256::new_from_slice(ticket.expose_secret().as_bytes()).expect("HMAC takes keys of any length");
            mac.update(label);
            mac.finalize().into_bytes().into()
        };
        Self { stream: derive(b"ws-token-auth ticket v1: stream"), tag: derive(b"ws-token-auth ticket v1: tag") }
    }

    fn tag(&self) -> HmacSha256 {
        HmacSha256::new_from_slice(&self.tag).expect("HMAC takes keys of any length")
    }

    /// XORs `data` with the stream HMAC(stream key, block number).
    fn apply_stream(&self, data: &mut [u8]) {
        for (block, chunk) in data.chunks_mut(32).enumerate() {
            let mut mac = HmacSha256::new_from_slice(&self.stream).expect("HMAC takes keys of any length");
            mac.update(&(block as u64).to_be_bytes());
            let pad = mac.finalize().into_bytes();
            chunk.iter_mut().zip(pad.iter()).for_each(|(byte, pad)| *byte ^= pad);
        }
    }
}

fn seal(ticket: &Token, token: &Token) -> Vec<u8> {
    let keys = Keys::of(ticket);
    let mut sealed = token.expose_secret().as_bytes().to_vec();
    keys.apply_stream(&mut sealed);
    let mut mac = keys.tag();
    mac.update(&[VERSION]);
    mac.update(&sealed);
    let tag = mac.finalize().into_bytes();
    let mut record = Vec::with_capacity(1 + sealed.len() + TAG_LEN);
    record.push(VERSION);
    record.extend_from_slice(&sealed);
    record.extend_from_slice(&tag[..TAG_LEN]);
    record
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_its_ticket_opens_a_record() {
        let token = Token::generate();
        let (ticket, record) = make(&token, SystemTime::now());
        assert_eq!(open(&ticket.secret, &record), Some(token.clone()));
        assert_eq!(open(&Token::generate(), &record), None, "another ticket");
        assert_eq!(open(&token, &record), None, "the token is not its own ticket");
    }

    #[test]
    fn a_record_hides_its_token_and_any_change_spoils_it() {
        let token = Token::new("a".repeat(100)).unwrap(); // longer than one block of the stream
        let (ticket, record) = make(&token, SystemTime::now());
        assert_eq!(record.len(), 1 + 100 + TAG_LEN);
        assert!(!record.windows(8).any(|w| w == b"aaaaaaaa"), "the token shows through");
        assert_eq!(open(&ticket.secret, &record), Some(token));
        for at in [0, 1, 50, record.len() - 1] {
            let mut spoiled = record.clone();
            spoiled[at] ^= 1;
            assert_eq!(open(&ticket.secret, &spoiled), None, "byte {at} flipped");
        }
        for len in [0, 1, TAG_LEN, TAG_LEN + 1] {
            assert_eq!(open(&ticket.secret, &record[..len]), None, "cut to {len}");
        }
    }

    #[test]
    fn two_tickets_for_one_token_share_nothing() {
        let token = Token::generate();
        let (a, first) = make(&token, SystemTime::now());
        let (b, second) = make(&token, SystemTime::now());
        assert_ne!(a.id(), b.id());
        assert_ne!(first, second);
        let shown = format!("{a:?}");
        assert!(!shown.contains(a.expose_secret()) && shown.contains(&a.id().to_string()), "{shown}");
    }
}
