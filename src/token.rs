//! The secret [`Token`] and its public fingerprint, [`TokenId`].
//!
//! A `Token` is what a client presents: a cookie value, the credentials of an
//! `Authorization` header, a subprotocol entry. It is a secret, so it never
//! prints its value: `Debug` shows its [`TokenId`], there is no `Display` and no
//! `Serialize`, and two tokens compare in constant time. The value is reachable
//! only through [`Token::expose_secret`], a name that stands out in review.
//!
//! A `TokenId` is the first 8 bytes of the token's SHA-256 digest, written as 16
//! hex digits. It identifies a token in logs, metrics and revocation messages
//! without revealing it.

use std::fmt;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Length in bytes of a [`Token::digest`] (SHA-256).
pub const DIGEST_LEN: usize = 32;

/// An authentication token: a secret that never prints itself.
///
/// A valid token is 1 or more visible ASCII characters (`!` to `~`, no spaces
/// or control bytes). Its SHA-256 digest is computed once, when the token is
/// made, so that stores and the [`TokenId`] reuse it.
///
/// ```
/// use ws_token_auth::Token;
///
/// let token = Token::new("9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b").unwrap();
/// // Debug output names the fingerprint, never the value.
/// let shown = format!("{token:?}");
/// assert!(!shown.contains("9944b091"));
/// assert!(shown.contains(&token.id().to_string()));
///
/// assert!(Token::new("has space").is_err());
/// assert!(Token::new("").is_err());
/// ```
#[derive(Clone)]
pub struct Token {
    // Shared: the layer puts the token into two extensions, so a clone is a
    // reference count, not a copy of the secret.
    value: std::sync::Arc<str>,
    digest: [u8; DIGEST_LEN],
}

/// Why a string is not a valid [`Token`].
///
/// The error never contains the rejected value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidToken {
    /// The value is empty.
    #[error("token is empty")]
    Empty,
    /// The value holds a byte that is not visible ASCII (`!` to `~`).
    #[error("token contains a byte that is not visible ASCII")]
    InvalidByte,
}

impl Token {
    /// Checks `value` and makes a token of it.
    ///
    /// # Errors
    /// [`InvalidToken`] if the value is empty or holds anything but visible ASCII.
    pub fn new(value: impl Into<String>) -> Result<Self, InvalidToken> {
        let value: String = value.into();
        check_token_bytes(value.as_bytes())?;
        Ok(Self::from_checked(value.into()))
    }

    /// Makes a new random token: 32 bytes from the operating system's CSPRNG,
    /// written as 64 lowercase hex digits.
    ///
    /// ```
    /// let token = ws_token_auth::Token::generate();
    /// assert_eq!(token.expose_secret().len(), 64);
    /// assert_ne!(token, ws_token_auth::Token::generate());
    /// ```
    ///
    /// # Panics
    /// If the operating system has no random source to offer (`getrandom`
    /// fails), which leaves no safe way to make a secret.
    #[must_use]
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).expect("the operating system's random source failed");
        Self::from_checked(hex(&bytes).into())
    }

    pub(crate) fn from_checked(value: std::sync::Arc<str>) -> Self {
        let digest = Sha256::digest(value.as_bytes()).into();
        Self { value, digest }
    }

    /// The token's value. Handle it as the secret it is: send it to its owner,
    /// hash it, compare it; never log it.
    #[must_use]
    pub fn expose_secret(&self) -> &str {
        &self.value
    }

    /// The SHA-256 digest of the token's value, for stores that keep digests
    /// instead of tokens.
    #[must_use]
    pub fn digest(&self) -> &[u8; DIGEST_LEN] {
        &self.digest
    }

    /// The token's public fingerprint, safe to log.
    #[must_use]
    pub fn id(&self) -> TokenId {
        TokenId::from_digest(&self.digest)
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Token").field(&self.id()).finish()
    }
}

impl PartialEq for Token {
    /// Compares the values in constant time (for tokens of equal length).
    fn eq(&self, other: &Self) -> bool {
        self.value.as_bytes().ct_eq(other.value.as_bytes()).into()
    }
}

impl Eq for Token {}

/// A token's public fingerprint: the first 8 bytes of its SHA-256 digest.
///
/// Safe to log and to send between nodes; it does not reveal the token.
/// `Display` writes 16 lowercase hex digits, which [`str::parse`] reads back.
///
/// ```
/// use ws_token_auth::{Token, TokenId};
///
/// let id = Token::new("abc").unwrap().id();
/// assert_eq!(id.to_string(), "ba7816bf8f01cfea");
/// assert_eq!("ba7816bf8f01cfea".parse::<TokenId>().unwrap(), id);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokenId([u8; 8]);

impl TokenId {
    /// The fingerprint of a token whose SHA-256 digest is `digest`.
    #[must_use]
    pub fn from_digest(digest: &[u8; DIGEST_LEN]) -> Self {
        let mut id = [0u8; 8];
        id.copy_from_slice(&digest[..8]);
        Self(id)
    }

    /// The fingerprint's 8 bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; 8] {
        &self.0
    }
}

impl fmt::Display for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

impl fmt::Debug for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenId({self})")
    }
}

/// The text is not 16 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a token id is 16 hex digits")]
pub struct ParseTokenIdError;

impl std::str::FromStr for TokenId {
    type Err = ParseTokenIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.as_bytes();
        if s.len() != 16 {
            return Err(ParseTokenIdError);
        }
        let mut id = [0u8; 8];
        for (byte, pair) in id.iter_mut().zip(s.chunks_exact(2)) {
            let digit = |c: u8| (c as char).to_digit(16).ok_or(ParseTokenIdError);
            *byte = u8::try_from(digit(pair[0])? * 16 + digit(pair[1])?).map_err(|_| ParseTokenIdError)?;
        }
        Ok(Self(id))
    }
}

/// Checks that `bytes` is a non-empty run of visible ASCII.
pub(crate) fn check_token_bytes(bytes: &[u8]) -> Result<(), InvalidToken> {
    if bytes.is_empty() {
        Err(InvalidToken::Empty)
    } else if bytes.iter().all(|b| (b'!'..=b'~').contains(b)) {
        Ok(())
    } else {
        Err(InvalidToken::InvalidByte)
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0x0f)] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_the_fingerprint_only() {
        let token = Token::new("s3cr3t-value").unwrap();
        let debug = format!("{token:?} {:#?}", token);
        assert!(!debug.contains("s3cr3t"), "{debug}");
        assert!(debug.contains(&token.id().to_string()));
    }

    #[test]
    fn rejects_bytes_outside_visible_ascii() {
        for bad in ["", " ", "a b", "a\tb", "a\u{7f}", "é", "a\0", "\r\n"] {
            assert!(Token::new(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["a", "!~", "abc123-_.=+/", "\"quoted\""] {
            assert!(Token::new(good).is_ok(), "{good:?} refused");
        }
    }

    #[test]
    fn equality_is_by_value() {
        let a = Token::new("same").unwrap();
        assert_eq!(a, Token::new("same").unwrap());
        assert_ne!(a, Token::new("Same").unwrap());
        assert_ne!(a, Token::new("same-but-longer").unwrap());
    }

    #[test]
    fn token_id_is_the_digests_first_eight_bytes() {
        let token = Token::new("abc").unwrap();
        assert_eq!(token.id().as_bytes()[..], token.digest()[..8]);
        assert_eq!(token.id().as_bytes(), &[0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea]);
    }

    #[test]
    fn token_id_round_trips_and_rejects_bad_text() {
        let id = Token::generate().id();
        assert_eq!(id.to_string().parse::<TokenId>(), Ok(id));
        for bad in ["", "abc", "zzzzzzzzzzzzzzzz", "0123456789abcdef0", "+123456789abcdef"] {
            assert_eq!(bad.parse::<TokenId>(), Err(ParseTokenIdError), "{bad}");
        }
    }

    #[test]
    fn generated_tokens_are_valid_and_distinct() {
        let a = Token::generate();
        let b = Token::generate();
        assert_ne!(a, b);
        assert!(Token::new(a.expose_secret()).is_ok());
        assert!(a.expose_secret().bytes().all(|c| c.is_ascii_hexdigit()));
    }
}
