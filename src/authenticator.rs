//! [`Authenticator`]: the decision the layer makes for each request, usable on
//! its own by servers that are not tower services (the tokio-tungstenite
//! adapter, a custom accept loop).
//!
//! One straight line: headers and URI → [`Extractor`] → [`Credential`] →
//! [`OriginPolicy`] (cookie credentials only) → [`TokenStore`] (bounded by the
//! store timeout) → [`Identity`] or [`Rejection`]. Each outcome is logged with
//! `tracing` under the target `ws_token_auth`, with the token's [`TokenId`]
//! and never the token.
//!
//! [`TokenId`]: crate::TokenId

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use http::{HeaderMap, HeaderValue, Response, Uri};

use crate::extract::{Credential, CredentialKind, ExtractError, Extractor, TokenSource};
use crate::identity::{Anonymous, AnonymousReason, AuthenticatedUser, Identity};
use crate::origin::OriginPolicy;
use crate::rejection::{Refusals, Rejection, RejectionResponder};
use crate::store::{Authenticated, ErrorChain, StoreError, TokenStore};
use crate::ticket::{self, DEFAULT_TICKET_TTL, Ticket, TicketStore};
use crate::token::Token;

/// The default bound on one store call.
pub const DEFAULT_STORE_TIMEOUT: Duration = Duration::from_secs(5);

/// Decides who a request is: the one decision that the layer, the axum
/// extractors and the tokio-tungstenite adapter share, and the one place
/// their refusals are made ([`refusal`](Self::refusal)). Cheap to clone (one
/// reference count).
///
/// Build and configure it on its own, then hand it to the entry points:
/// `TokenAuthLayer::new(auth.clone())` (or [`layer`](Self::layer)) for
/// tower, axum and hyper; `tungstenite::Acceptor::new(auth)` for a raw
/// tokio-tungstenite server.
///
/// Defaults: sources `Cookie: key=…`, then `Authorization: Token|Bearer …`;
/// the [same-host](OriginPolicy::same_host) origin policy for cookies; a user
/// required (401 without one); 256-byte tokens at most; a 5 s store timeout;
/// refusals with the status and an empty body. It needs a tokio runtime (for
/// the store timeout).
///
/// ```
/// use http::Request;
/// use ws_token_auth::{Authenticator, MemoryTokenStore};
/// use ws_token_auth::store::ManageTokens;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let store = std::sync::Arc::new(MemoryTokenStore::new());
/// let token = store.issue(&"alice".to_string(), None).await.unwrap();
/// let auth = Authenticator::from_shared(store);
///
/// let req = Request::get("/ws")
///     .header("authorization", format!("Token {}", token.expose_secret()))
///     .body(())
///     .unwrap();
/// let identity = auth.authenticate(req.headers(), req.uri()).await.unwrap();
/// assert_eq!(identity.user().unwrap().user, "alice");
/// # }
/// ```
#[derive(Debug)]
#[must_use]
pub struct Authenticator<St> {
    config: Arc<Config<St>>,
}

impl<St> Clone for Authenticator<St> {
    fn clone(&self) -> Self {
        Self { config: Arc::clone(&self.config) }
    }
}

#[derive(Debug)]
struct Config<St> {
    store: Arc<St>,
    extractor: Extractor,
    origin: OriginPolicy,
    optional: bool,
    store_timeout: Duration,
    refusals: Arc<Refusals>,
    tickets: Tickets,
}

/// Where tickets are kept, and for how long.
#[derive(Clone)]
struct Tickets {
    store: Option<Arc<dyn TicketStore>>,
    ttl: Duration,
}

impl std::fmt::Debug for Tickets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tickets").field("store", &self.store.is_some()).field("ttl", &self.ttl).finish()
    }
}

impl<St: TokenStore> Config<St> {
    /// Takes the ticket and asks the source of truth about the token it was
    /// issued for: `None` for an unknown, used or expired ticket, or a token
    /// no longer valid.
    async fn redeem(&self, ticket: &Token) -> Result<Option<(Token, Authenticated<St::User>)>, StoreError> {
        let Some(store) = &self.tickets.store else {
            tracing::error!(
                target: "ws_token_auth",
                "a ticket source is configured without a ticket store: see Authenticator::tickets",
            );
            return Err(StoreError::Unsupported("redeem tickets without a ticket store"));
        };
        let Some(record) = store.take_ticket(ticket.digest()).await? else { return Ok(None) };
        let Some(token) = ticket::open(ticket, &record) else {
            tracing::warn!(target: "ws_token_auth", ticket_id = %ticket.id(), "a ticket record did not open");
            return Ok(None);
        };
        Ok(crate::store::revalidate(&*self.store, &token).await?.map(|found| (token, found)))
    }
}

impl<St> Clone for Config<St> {
    fn clone(&self) -> Self {
        Self {
            store: Arc::clone(&self.store),
            extractor: self.extractor.clone(),
            origin: self.origin.clone(),
            optional: self.optional,
            store_timeout: self.store_timeout,
            refusals: Arc::clone(&self.refusals),
            tickets: self.tickets.clone(),
        }
    }
}

/// The store's answer, with the token handed back and when it was asked,
/// from a future that owns what it needs ('static), so the layer's response
/// future can hold it.
/// How a presented value is looked up.
#[derive(Debug, Clone, Copy)]
enum Ask {
    /// A ticket, redeemed.
    Redeem,
    /// A token, as the store answers handshakes (a cache may answer).
    Store,
    /// A token, by the source of truth (what minting and refreshing ask).
    Source,
}

pub(crate) type Lookup<U> =
    Pin<Box<dyn Future<Output = (Token, Instant, Result<Option<Authenticated<U>>, StoreError>)> + Send>>;

/// What the headers alone decide.
pub(crate) enum Begin {
    /// No credential, in optional mode.
    Anonymous(Anonymous),
    /// A credential for the store to judge.
    Lookup(Credential),
}

impl<St: TokenStore> Authenticator<St> {
    /// An authenticator asking `store`, with the defaults above.
    ///
    /// ```
    /// use ws_token_auth::{Authenticator, MemoryTokenStore};
    /// let auth = Authenticator::new(MemoryTokenStore::<String>::new());
    /// # let _ = auth;
    /// ```
    pub fn new(store: St) -> Self {
        Self::from_shared(Arc::new(store))
    }

    /// An authenticator asking a store the app also holds (its
    /// [`Lifecycle`](crate::Lifecycle), say).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use ws_token_auth::{Authenticator, Lifecycle, MemoryTokenStore};
    ///
    /// let store = Arc::new(MemoryTokenStore::<String>::new());
    /// let auth = Authenticator::from_shared(Arc::clone(&store));
    /// let lifecycle = Lifecycle::new(store);
    /// # let _ = (auth, lifecycle);
    /// ```
    pub fn from_shared(store: Arc<St>) -> Self {
        let extractor = Extractor::default();
        let refusals = Arc::new(Refusals { responder: None, challenge: challenge_for(&extractor) });
        Self {
            config: Arc::new(Config {
                store,
                extractor,
                origin: OriginPolicy::default(),
                optional: false,
                store_timeout: DEFAULT_STORE_TIMEOUT,
                refusals,
                tickets: Tickets { store: None, ttl: DEFAULT_TICKET_TTL },
            }),
        }
    }

    fn config(&mut self) -> &mut Config<St> {
        Arc::make_mut(&mut self.config)
    }

    /// Sets where to look for the token, in order; the first source that holds
    /// one wins. The 401 challenge follows: the first `Authorization` scheme
    /// listed, else `Token`.
    ///
    /// ```
    /// use ws_token_auth::{Authenticator, MemoryTokenStore, extract::TokenSource};
    ///
    /// let auth = Authenticator::new(MemoryTokenStore::<String>::new())
    ///     .sources([TokenSource::cookie("sessionid"), TokenSource::subprotocol("token.")]);
    /// # let _ = auth;
    /// ```
    pub fn sources(mut self, sources: impl IntoIterator<Item = TokenSource>) -> Self {
        let max = self.config.extractor.max_len();
        self.set_extractor(Extractor::new(sources).max_token_len(max));
        self
    }

    /// Sets the longest token accepted, in bytes (default 256); a longer one
    /// is answered 400 without asking the store.
    ///
    /// ```
    /// # use ws_token_auth::{Authenticator, MemoryTokenStore};
    /// let auth = Authenticator::new(MemoryTokenStore::<String>::new()).max_token_len(64);
    /// # let _ = auth;
    /// ```
    pub fn max_token_len(mut self, max: usize) -> Self {
        let extractor = self.config.extractor.clone().max_token_len(max);
        self.set_extractor(extractor);
        self
    }

    fn set_extractor(&mut self, extractor: Extractor) {
        let responder = self.config.refusals.responder.clone();
        let config = self.config();
        config.refusals = Arc::new(Refusals { responder, challenge: challenge_for(&extractor) });
        config.extractor = extractor;
    }

    /// Sets which `Origin`s may present a cookie credential.
    ///
    /// ```
    /// # use ws_token_auth::{Authenticator, MemoryTokenStore, OriginPolicy};
    /// let auth = Authenticator::new(MemoryTokenStore::<String>::new())
    ///     .origin_policy(OriginPolicy::same_host().allow("https://app.example.com").unwrap());
    /// # let _ = auth;
    /// ```
    pub fn origin_policy(mut self, policy: OriginPolicy) -> Self {
        self.config().origin = policy;
        self
    }

    /// Lets requests without a valid token through as [`Anonymous`]
    /// instead of answering 401. Malformed credentials (400), refused origins
    /// (403) and store failures (503) are still refused.
    ///
    /// ```
    /// # use ws_token_auth::{Authenticator, MemoryTokenStore};
    /// let auth = Authenticator::new(MemoryTokenStore::<String>::new()).optional();
    /// # let _ = auth;
    /// ```
    pub fn optional(mut self) -> Self {
        self.config().optional = true;
        self
    }

    /// Requires a user: a request without a valid token is answered 401 (the default).
    ///
    /// ```
    /// # use ws_token_auth::{Authenticator, MemoryTokenStore};
    /// let auth = Authenticator::new(MemoryTokenStore::<String>::new()).require_user();
    /// # let _ = auth;
    /// ```
    pub fn require_user(mut self) -> Self {
        self.config().optional = false;
        self
    }

    /// Sets how long one store call may take before the request is answered
    /// 503 (default 5 s).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use ws_token_auth::{Authenticator, MemoryTokenStore};
    /// let auth = Authenticator::new(MemoryTokenStore::<String>::new()).store_timeout(Duration::from_millis(500));
    /// # let _ = auth;
    /// ```
    pub fn store_timeout(mut self, timeout: Duration) -> Self {
        self.config().store_timeout = timeout;
        self
    }

    /// Sets where connect tickets are kept: enables
    /// [`issue_ticket`](Self::issue_ticket) and the redemption of tickets
    /// that a [`TokenSource::ticket`] source finds. Every node that should
    /// redeem a ticket issued by another must share the store (a shared
    /// database or Redis). See [`crate::ticket`].
    ///
    /// A ticket source without a ticket store answers every ticket 503 (and
    /// logs why): a missing store is a fault of the server, not the client's.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use ws_token_auth::{Authenticator, MemoryTokenStore, extract::TokenSource};
    ///
    /// let store = Arc::new(MemoryTokenStore::<String>::new());
    /// let auth = Authenticator::from_shared(Arc::clone(&store))
    ///     .sources([TokenSource::cookie("key"), TokenSource::ticket("ticket")])
    ///     .tickets(store);
    /// # let _ = auth;
    /// ```
    pub fn tickets(self, store: impl TicketStore) -> Self {
        self.shared_tickets(Arc::new(store))
    }

    /// [`tickets`](Self::tickets) with a ticket store already shared (the
    /// lifecycle's).
    pub(crate) fn shared_tickets(mut self, store: Arc<dyn TicketStore>) -> Self {
        self.config().tickets.store = Some(store);
        self
    }

    /// Sets how long a ticket lives (default [`DEFAULT_TICKET_TTL`], 30 s);
    /// never past its token's expiry.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use ws_token_auth::{Authenticator, MemoryTokenStore};
    /// let auth = Authenticator::new(MemoryTokenStore::<String>::new()).ticket_ttl(Duration::from_secs(10));
    /// # let _ = auth;
    /// ```
    pub fn ticket_ttl(mut self, ttl: Duration) -> Self {
        self.config().tickets.ttl = ttl;
        self
    }

    /// Sets how refusals are answered, by the layer, the extractors and the
    /// tungstenite adapter alike; see [`RejectionResponder`]. A 401 without a
    /// `WWW-Authenticate` header gets the configured challenge.
    ///
    /// ```
    /// use http::{Response, header};
    /// use ws_token_auth::{Authenticator, MemoryTokenStore, Rejection};
    ///
    /// let auth = Authenticator::new(MemoryTokenStore::<String>::new()).on_rejection(|rejection: &Rejection| {
    ///     Response::builder()
    ///         .status(rejection.status())
    ///         .header(header::CONTENT_TYPE, "application/json")
    ///         .body(format!("{{\"error\": \"{}\"}}", rejection.kind().as_str()))
    ///         .unwrap()
    /// });
    /// # let _ = auth;
    /// ```
    pub fn on_rejection(mut self, responder: impl RejectionResponder) -> Self {
        let challenge = self.config.refusals.challenge.clone();
        self.config().refusals = Arc::new(Refusals { responder: Some(Arc::new(responder)), challenge });
        self
    }

    /// The store.
    ///
    /// ```
    /// # use ws_token_auth::{Authenticator, MemoryTokenStore};
    /// let auth = Authenticator::new(MemoryTokenStore::<String>::new());
    /// assert!(auth.store().is_empty());
    /// ```
    #[must_use]
    pub fn store(&self) -> &Arc<St> {
        &self.config.store
    }

    /// The extractor, for servers that need to read the credential themselves.
    ///
    /// ```
    /// # use ws_token_auth::{Authenticator, MemoryTokenStore};
    /// let auth = Authenticator::new(MemoryTokenStore::<String>::new());
    /// assert_eq!(auth.extractor().max_len(), 256);
    /// ```
    #[must_use]
    pub fn extractor(&self) -> &Extractor {
        &self.config.extractor
    }

    /// The response that refuses a request for `rejection`: the configured
    /// responder's (or the status with an empty body), with the
    /// `WWW-Authenticate` challenge on a 401 and the [`RejectionKind`](crate::RejectionKind) in its
    /// extensions. The layer, the extractors and the tungstenite adapter all
    /// answer with it.
    ///
    /// ```
    /// use ws_token_auth::{Authenticator, MemoryTokenStore, Rejection};
    ///
    /// let auth = Authenticator::new(MemoryTokenStore::<String>::new());
    /// let response = auth.refusal(&Rejection::InvalidToken);
    /// assert_eq!(response.status(), 401);
    /// assert_eq!(response.headers()["www-authenticate"], "Token");
    /// ```
    pub fn refusal(&self, rejection: &Rejection) -> Response<String> {
        self.config.refusals.respond(rejection)
    }

    pub(crate) fn refusals(&self) -> &Arc<Refusals> {
        &self.config.refusals
    }

    /// Decides who made a request with these headers and this URI.
    ///
    /// # Errors
    /// The [`Rejection`] to answer with.
    pub async fn authenticate(&self, headers: &HeaderMap, uri: &Uri) -> Result<Identity<St::User>, Rejection> {
        match self.begin(headers, uri)? {
            Begin::Anonymous(anonymous) => Ok(Identity::Anonymous(anonymous)),
            Begin::Lookup(credential) => {
                let kind = credential.kind();
                let (token, asked_at, answer) = self.lookup(credential).await;
                self.finish(kind, token, asked_at, answer)
            }
        }
    }

    /// Judges a token handed over in-band (a client refreshing its socket's
    /// token, say) the way a handshake's would be: the same length and byte
    /// rules, the same store timeout, with the store's source of truth
    /// ([`StoreCache::revalidate`](crate::store::StoreCache::revalidate) past a cache) asked, never only a cache: a token
    /// revoked on another node cannot move a socket onto itself here. Optional mode does not apply:
    /// an unknown token is [`Rejection::InvalidToken`], never anonymous.
    /// `kind` is recorded in the answer; the value is checked as a token, never
    /// redeemed as a ticket (even for a socket that was opened with one).
    ///
    /// # Errors
    /// [`Rejection::Malformed`] (not a token, too long), [`Rejection::InvalidToken`],
    /// [`Rejection::StoreUnavailable`].
    ///
    /// ```
    /// use ws_token_auth::{Authenticator, MemoryTokenStore, Rejection, extract::CredentialKind};
    /// use ws_token_auth::store::ManageTokens;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let store = std::sync::Arc::new(MemoryTokenStore::new());
    /// let fresh = store.issue(&"alice".to_string(), None).await.unwrap();
    /// let auth = Authenticator::from_shared(store);
    /// let user = auth.check_token(fresh.expose_secret(), CredentialKind::Cookie).await.unwrap();
    /// assert_eq!(user.user, "alice");
    /// assert!(matches!(auth.check_token("no such token", CredentialKind::Cookie).await, Err(Rejection::Malformed(_))));
    /// # }
    /// ```
    pub async fn check_token(
        &self,
        value: &str,
        kind: CredentialKind,
    ) -> Result<AuthenticatedUser<St::User>, Rejection> {
        let max = self.config.extractor.max_len();
        if value.len() > max {
            return Err(Rejection::Malformed(ExtractError::TooLong { kind, max }));
        }
        let token = Token::new(value).map_err(|_| Rejection::Malformed(ExtractError::InvalidBytes { kind }))?;
        // A token, whatever `kind` says: a socket opened with a ticket
        // refreshes with a token, never with another ticket.
        let (token, asked_at, answer) = self.lookup_as(Ask::Source, token).await;
        match self.judge(kind, token, asked_at, answer, false)? {
            Identity::User(user) => Ok(user),
            Identity::Anonymous(_) => Err(Rejection::InvalidToken),
        }
    }

    /// Issues a single-use connect ticket bound to `user`'s token, for the
    /// handshake that follows: it lives [`ticket_ttl`](Self::ticket_ttl) (and
    /// never past the token's expiry), and the socket it opens lives by that
    /// token. See [`crate::ticket`] for the whole flow.
    ///
    /// The token is first confirmed by the store's source of truth
    /// ([`StoreCache::revalidate`](crate::store::StoreCache::revalidate) past a cache), under the store timeout: a token revoked
    /// on another node but still in this node's cache mints nothing.
    ///
    /// # Errors
    /// [`Rejection::InvalidToken`] when the source of truth no longer accepts
    /// the token; [`Rejection::StoreUnavailable`] when a store fails, or
    /// without a ticket store ([`tickets`](Self::tickets); the error is then
    /// [`StoreError::Unsupported`]).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use ws_token_auth::{Authenticator, MemoryTokenStore, Rejection, extract::CredentialKind};
    /// use ws_token_auth::store::ManageTokens;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = Arc::new(MemoryTokenStore::<String>::new());
    /// let auth = Authenticator::from_shared(Arc::clone(&store)).tickets(Arc::clone(&store));
    /// let token = store.issue(&"alice".to_owned(), None).await?;
    /// let alice = auth.check_token(token.expose_secret(), CredentialKind::Authorization).await?;
    /// let ticket = auth.issue_ticket(&alice).await?;
    /// assert!(ticket.expires_in().as_secs() <= 30);
    ///
    /// store.revoke(&token).await?;
    /// assert!(matches!(auth.issue_ticket(&alice).await, Err(Rejection::InvalidToken)));
    /// # Ok(()) }
    /// ```
    pub async fn issue_ticket(&self, user: &AuthenticatedUser<St::User>) -> Result<Ticket, Rejection> {
        let tickets = &self.config.tickets;
        let store = tickets
            .store
            .as_ref()
            .ok_or(Rejection::StoreUnavailable(StoreError::Unsupported("issue tickets without a ticket store")))?;
        let (_, _, answer) = self.lookup_as(Ask::Source, user.token().clone()).await;
        let now = SystemTime::now();
        let confirmed = match answer {
            Ok(Some(found)) if !found.is_expired_at(now) => found,
            Ok(_) => {
                tracing::info!(target: "ws_token_auth", token_id = %user.token_id(), "ticket refused: token no longer valid");
                return Err(Rejection::InvalidToken);
            }
            Err(error) => return Err(Rejection::StoreUnavailable(error)),
        };
        let mut expires_at = now.checked_add(tickets.ttl).unwrap_or(now);
        if let Some(token_expiry) = confirmed.expires_at {
            expires_at = expires_at.min(token_expiry);
        }
        let (ticket, record) = ticket::make(user.token(), expires_at);
        store.put_ticket(ticket.digest(), &record, expires_at).await.map_err(Rejection::StoreUnavailable)?;
        tracing::debug!(target: "ws_token_auth", ticket_id = %ticket.id(), token_id = %user.token_id(), "ticket issued");
        Ok(ticket)
    }

    /// Extraction and the origin check: everything decided before the store.
    pub(crate) fn begin(&self, headers: &HeaderMap, uri: &Uri) -> Result<Begin, Rejection> {
        let config = &*self.config;
        let credential = match config.extractor.extract(headers, uri) {
            Ok(Some(credential)) => credential,
            Ok(None) if config.optional => {
                tracing::debug!(target: "ws_token_auth", outcome = "anonymous", reason = "no_credential");
                return Ok(Begin::Anonymous(Anonymous::new(AnonymousReason::NoCredential)));
            }
            Ok(None) => {
                tracing::debug!(target: "ws_token_auth", outcome = "rejected", reason = "missing_credential");
                return Err(Rejection::MissingCredential);
            }
            Err(error) => {
                tracing::info!(target: "ws_token_auth", outcome = "rejected", reason = "malformed", %error);
                return Err(Rejection::Malformed(error));
            }
        };
        if credential.kind().is_ambient() {
            if let Err(error) = config.origin.check_request(headers, uri) {
                tracing::info!(
                    target: "ws_token_auth",
                    outcome = "rejected",
                    reason = "origin",
                    token_id = %credential.token().id(),
                    %error,
                );
                return Err(Rejection::Origin(error));
            }
        }
        Ok(Begin::Lookup(credential))
    }

    /// The store call, bounded by the store timeout.
    pub(crate) fn lookup(&self, credential: Credential) -> Lookup<St::User> {
        let ask = if credential.kind() == CredentialKind::Ticket { Ask::Redeem } else { Ask::Store };
        self.lookup_as(ask, credential.into_token())
    }

    /// Asks the store about `presented`, as `ask` says.
    fn lookup_as(&self, ask: Ask, presented: Token) -> Lookup<St::User> {
        let config = Arc::clone(&self.config);
        Box::pin(async move {
            let asked_at = Instant::now();
            let work = async {
                match ask {
                    Ask::Redeem => config.redeem(&presented).await,
                    Ask::Store => {
                        Ok(config.store.authenticate(&presented).await?.map(|found| (presented.clone(), found)))
                    }
                    Ask::Source => Ok(crate::store::revalidate(&*config.store, &presented)
                        .await?
                        .map(|found| (presented.clone(), found))),
                }
            };
            match tokio::time::timeout(config.store_timeout, work).await {
                Ok(Ok(Some((token, found)))) => (token, asked_at, Ok(Some(found))),
                Ok(Ok(None)) => (presented, asked_at, Ok(None)),
                Ok(Err(error)) => (presented, asked_at, Err(error)),
                Err(_elapsed) => (presented, asked_at, Err(StoreError::Timeout)),
            }
        })
    }

    /// Turns the store's answer into an identity or a rejection.
    pub(crate) fn finish(
        &self,
        kind: CredentialKind,
        token: Token,
        asked_at: Instant,
        answer: Result<Option<Authenticated<St::User>>, StoreError>,
    ) -> Result<Identity<St::User>, Rejection> {
        self.judge(kind, token, asked_at, answer, self.config.optional)
    }

    /// The store's answer as an identity or a rejection; an invalid token is
    /// anonymous only when `optional`.
    fn judge(
        &self,
        kind: CredentialKind,
        token: Token,
        asked_at: Instant,
        answer: Result<Option<Authenticated<St::User>>, StoreError>,
        optional: bool,
    ) -> Result<Identity<St::User>, Rejection> {
        let token_id = token.id();
        match answer {
            Ok(Some(found)) if !found.is_expired_at(SystemTime::now()) => {
                tracing::debug!(target: "ws_token_auth", outcome = "authenticated", %token_id, credential = %kind);
                let user = AuthenticatedUser::new(found.user, token, kind, found.expires_at).asked_at(asked_at);
                Ok(Identity::User(user))
            }
            Ok(_) if optional => {
                tracing::debug!(target: "ws_token_auth", outcome = "anonymous", reason = "invalid_token", %token_id);
                Ok(Identity::Anonymous(Anonymous::new(AnonymousReason::InvalidToken)))
            }
            Ok(_) => {
                tracing::debug!(target: "ws_token_auth", outcome = "rejected", reason = "invalid_token", %token_id);
                Err(Rejection::InvalidToken)
            }
            Err(error) => {
                tracing::warn!(
                    target: "ws_token_auth",
                    outcome = "rejected",
                    reason = "store_unavailable",
                    %token_id,
                    error = %ErrorChain(&error),
                );
                Err(Rejection::StoreUnavailable(error))
            }
        }
    }
}

fn challenge_for(extractor: &Extractor) -> HeaderValue {
    extractor
        .sources()
        .iter()
        .find_map(|s| s.first_scheme())
        .and_then(|scheme| HeaderValue::from_str(scheme).ok())
        .unwrap_or(HeaderValue::from_static("Token"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::TokenSource;
    use crate::store::MemoryTokenStore;
    use crate::store::testing::{Failing, Stale};

    #[test]
    fn the_configuration_is_what_was_built() {
        let auth = Authenticator::new(MemoryTokenStore::<String>::new())
            .sources([TokenSource::subprotocol("tok."), TokenSource::authorization(["Bearer"])])
            .max_token_len(99);
        assert_eq!(auth.extractor().subprotocol_prefix(), Some("tok."));
        assert_eq!(auth.extractor().max_len(), 99);
        let shown = format!("{auth:?}");
        assert!(shown.contains("challenge: \"Bearer\"") && shown.contains("custom_responder: false"), "{shown}");
        let custom = auth.on_rejection(|r: &Rejection| Response::new(r.kind().as_str().to_owned()));
        assert!(format!("{custom:?}").contains("custom_responder: true"));
    }

    #[tokio::test]
    async fn check_token_applies_the_handshakes_rules() {
        use crate::store::ManageTokens;
        let store = Arc::new(MemoryTokenStore::new());
        let at_limit = Token::new("a".repeat(40)).unwrap();
        store.insert(&at_limit, Authenticated::new("alice".to_owned()));
        let auth = Authenticator::from_shared(Arc::clone(&store)).max_token_len(40);
        let kind = CredentialKind::Authorization;
        let user = auth.check_token(&"a".repeat(40), kind).await.unwrap();
        assert_eq!((user.user.as_str(), user.credential_kind()), ("alice", kind), "at the limit: accepted");
        let over = auth.check_token(&"a".repeat(41), kind).await.unwrap_err();
        assert!(matches!(over, Rejection::Malformed(ExtractError::TooLong { max: 40, .. })), "{over:?}");
        let unknown = auth.check_token("unknown", kind).await.unwrap_err();
        assert!(matches!(unknown, Rejection::InvalidToken), "{unknown:?}");
        let optional = auth.clone().optional().check_token("unknown", kind).await.unwrap_err();
        assert!(matches!(optional, Rejection::InvalidToken), "never anonymous: {optional:?}");
        let expiring = store.issue(&"bob".to_owned(), Some(Duration::from_secs(60))).await.unwrap();
        let roomy = Authenticator::from_shared(Arc::clone(&store)); // 64-character tokens: the default limit
        let bob = roomy.check_token(expiring.expose_secret(), kind).await.unwrap();
        assert!(bob.expires_at.is_some(), "the expiry comes along");
        // The refresh of a socket opened with a ticket: still a token.
        let refreshed = roomy.check_token(expiring.expose_secret(), CredentialKind::Ticket).await.unwrap();
        assert_eq!(refreshed.token_id(), expiring.id());
        // A store that answers for an expired token: refused all the same.
        let stale = Authenticator::new(Stale::default()).check_token("anything", kind).await.unwrap_err();
        assert!(matches!(stale, Rejection::InvalidToken), "{stale:?}");
        let failing = Authenticator::new(Failing).check_token("anything", kind).await.unwrap_err();
        assert!(matches!(failing, Rejection::StoreUnavailable(_)), "{failing:?}");
    }

    #[tokio::test]
    async fn an_expired_answer_from_the_store_is_refused_all_the_same() {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::AUTHORIZATION, HeaderValue::from_static("Token anything"));
        let rejection =
            Authenticator::new(Stale::default()).authenticate(&headers, &Uri::from_static("/")).await.unwrap_err();
        assert!(matches!(rejection, Rejection::InvalidToken), "{rejection:?}");
    }
}
