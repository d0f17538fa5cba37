//! Finding the token in a request: ordered [`TokenSource`]s and the
//! [`Extractor`] that tries them.
//!
//! The extractor reads only headers and the URI, so it works on a
//! `http::request::Parts`, a whole `http::Request`, or the head that the
//! tokio-tungstenite adapter parsed itself. Its answer is one of:
//!
//! - `Ok(Some(credential))`: the first source, in the configured order, that
//!   holds a token;
//! - `Ok(None)`: no source holds one (an empty value, such as the `key=` a
//!   client may still send after logout cleared its cookie, counts as none);
//! - `Err(ExtractError)`: a source holds something that is not a token: bytes
//!   outside visible ASCII, a value over the length limit, two different
//!   values, a garbled `Authorization` header. The layer answers 400 without
//!   asking the store.
//!
//! ```
//! use http::Request;
//! use ws_token_auth::extract::{CredentialKind, Extractor};
//!
//! let extractor = Extractor::default(); // cookie `key`, then `Authorization: Token|Bearer`
//! let req = Request::get("/chat/stream/")
//!     .header("cookie", "monkey=nope; key=9944b09199c62bcf; keys=nope")
//!     .body(())
//!     .unwrap();
//! let credential = extractor.extract(req.headers(), req.uri()).unwrap().unwrap();
//! assert_eq!(credential.kind(), CredentialKind::Cookie);
//! assert_eq!(credential.token().expose_secret(), "9944b09199c62bcf");
//! ```

use std::fmt;

use cookie::Cookie;
use http::header::{AUTHORIZATION, COOKIE, SEC_WEBSOCKET_PROTOCOL};
use http::{HeaderMap, Uri};

use crate::token::{InvalidToken, Token, check_token_bytes};

/// The default cookie name, as Django REST Framework apps use it.
pub const DEFAULT_COOKIE_NAME: &str = "key";
/// The default longest accepted token, in bytes.
pub const DEFAULT_MAX_TOKEN_LEN: usize = 256;

/// One place where a request may carry its token.
///
/// ```
/// use ws_token_auth::extract::TokenSource;
///
/// let sources = [
///     TokenSource::cookie("key"),
///     TokenSource::authorization(["Token", "Bearer"]),
///     TokenSource::subprotocol("token."),
/// ];
/// # let _ = sources;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSource(Source);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    Cookie(Box<str>),
    Authorization(Box<[Box<str>]>),
    Subprotocol(Box<str>),
    Query(Box<str>),
}

impl TokenSource {
    /// The cookie called `name`, found by exact, case-sensitive name across
    /// every `Cookie` header line. A browser sends it by itself, so the
    /// [`OriginPolicy`](crate::OriginPolicy) applies to it.
    #[must_use]
    pub fn cookie(name: impl Into<String>) -> Self {
        Self(Source::Cookie(name.into().into_boxed_str()))
    }

    /// The `Authorization` header with one of `schemes` (matched without
    /// regard to case) followed by exactly one value: `Authorization: Token <token>`.
    /// A header with another scheme is left for other middleware.
    #[must_use]
    pub fn authorization<I, S>(schemes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self(Source::Authorization(
            schemes
                .into_iter()
                .map(|s| s.into().into_boxed_str())
                .collect(),
        ))
    }

    /// An entry of `Sec-WebSocket-Protocol` that starts with `prefix`; the
    /// rest of the entry is the token. Browsers cannot set headers on a
    /// WebSocket, but they can offer subprotocols:
    /// `new WebSocket(url, ["chat", "token." + token])`.
    ///
    /// The server must echo only the application's protocol, never the token
    /// entry; [`offered_protocols`] lists the offers without it.
    #[must_use]
    pub fn subprotocol(prefix: impl Into<String>) -> Self {
        Self(Source::Subprotocol(prefix.into().into_boxed_str()))
    }

    /// The query parameter called `name` (percent-decoded).
    ///
    /// # Warning
    /// URLs end up in access logs, proxy logs and browser history: a token in
    /// a query string leaks. Prefer a cookie or a header; use this only for
    /// short-lived, single-use tickets.
    #[must_use]
    pub fn query(name: impl Into<String>) -> Self {
        Self(Source::Query(name.into().into_boxed_str()))
    }

    /// The kind of credential this source yields.
    #[must_use]
    pub fn kind(&self) -> CredentialKind {
        match self.0 {
            Source::Cookie(_) => CredentialKind::Cookie,
            Source::Authorization(_) => CredentialKind::Authorization,
            Source::Subprotocol(_) => CredentialKind::Subprotocol,
            Source::Query(_) => CredentialKind::Query,
        }
    }

    /// The first `Authorization` scheme of this source, if it is one.
    pub(crate) fn first_scheme(&self) -> Option<&str> {
        match &self.0 {
            Source::Authorization(schemes) => schemes.first().map(|s| &**s),
            _ => None,
        }
    }

    fn find(
        &self,
        headers: &HeaderMap,
        uri: &Uri,
        max: usize,
    ) -> Result<Option<String>, ExtractError> {
        let mut found = Found::new(self.kind(), max);
        match &self.0 {
            Source::Cookie(name) => {
                for line in headers.get_all(COOKIE) {
                    let text = String::from_utf8_lossy(line.as_bytes());
                    for cookie in Cookie::split_parse(text).flatten() {
                        if cookie.name() == &**name {
                            found.offer(cookie.value_trimmed().as_bytes())?;
                        }
                    }
                }
            }
            Source::Authorization(schemes) => {
                for line in headers.get_all(AUTHORIZATION) {
                    let mut words = line
                        .as_bytes()
                        .split(|b| *b == b' ')
                        .filter(|w| !w.is_empty());
                    let Some(scheme) = words.next() else { continue };
                    if !schemes
                        .iter()
                        .any(|s| s.as_bytes().eq_ignore_ascii_case(scheme))
                    {
                        continue;
                    }
                    let value = words.next().unwrap_or_default();
                    if words.next().is_some() {
                        return Err(ExtractError::MalformedAuthorization);
                    }
                    found.offer(value)?;
                }
            }
            Source::Subprotocol(prefix) => {
                for line in headers.get_all(SEC_WEBSOCKET_PROTOCOL) {
                    for entry in line.as_bytes().split(|b| *b == b',') {
                        if let Some(value) = trim_ows(entry).strip_prefix(prefix.as_bytes()) {
                            found.offer(value)?;
                        }
                    }
                }
            }
            Source::Query(name) => {
                let query = uri.query().unwrap_or_default();
                for (key, value) in form_urlencoded::parse(query.as_bytes()) {
                    if key == **name {
                        found.offer(value.as_bytes())?;
                    }
                }
            }
        }
        Ok(found.value)
    }
}

/// What a source held, checked as each occurrence comes in.
struct Found {
    kind: CredentialKind,
    max: usize,
    value: Option<String>,
}

impl Found {
    fn new(kind: CredentialKind, max: usize) -> Self {
        Self {
            kind,
            max,
            value: None,
        }
    }

    fn offer(&mut self, raw: &[u8]) -> Result<(), ExtractError> {
        let kind = self.kind;
        if raw.is_empty() {
            return Ok(()); // `key=`: a cleared credential counts as none
        }
        if raw.len() > self.max {
            return Err(ExtractError::TooLong {
                kind,
                max: self.max,
            });
        }
        check_token_bytes(raw).map_err(|e| match e {
            InvalidToken::Empty | InvalidToken::InvalidByte => ExtractError::InvalidBytes { kind },
        })?;
        match &self.value {
            Some(previous) if previous.as_bytes() != raw => Err(ExtractError::Conflicting { kind }),
            Some(_) => Ok(()),
            // Checked above: visible ASCII is UTF-8.
            None => {
                self.value = Some(String::from_utf8_lossy(raw).into_owned());
                Ok(())
            }
        }
    }
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Where a credential was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CredentialKind {
    /// A cookie: a browser sends it on its own, to any site's request.
    Cookie,
    /// An `Authorization` header.
    Authorization,
    /// A `Sec-WebSocket-Protocol` entry.
    Subprotocol,
    /// A query parameter.
    Query,
}

impl CredentialKind {
    /// Whether a browser attaches this credential by itself, even to a request
    /// that another site's page starts. Only such credentials need the
    /// [`OriginPolicy`](crate::OriginPolicy) check.
    #[must_use]
    pub fn is_ambient(self) -> bool {
        matches!(self, Self::Cookie)
    }
}

impl fmt::Display for CredentialKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Cookie => "cookie",
            Self::Authorization => "Authorization",
            Self::Subprotocol => "subprotocol",
            Self::Query => "query",
        })
    }
}

/// A token and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    token: Token,
    kind: CredentialKind,
}

impl Credential {
    /// The token.
    #[must_use]
    pub fn token(&self) -> &Token {
        &self.token
    }

    /// Where it was found.
    #[must_use]
    pub fn kind(&self) -> CredentialKind {
        self.kind
    }

    /// The token, by value.
    #[must_use]
    pub fn into_token(self) -> Token {
        self.token
    }
}

/// A source held something that is not a usable token. Never holds the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExtractError {
    /// The value is longer than the configured limit.
    #[error("{kind} credential is longer than {max} bytes")]
    TooLong {
        /// Where it was found.
        kind: CredentialKind,
        /// The limit.
        max: usize,
    },
    /// The value holds bytes that are not visible ASCII.
    #[error("{kind} credential contains bytes that are not allowed in a token")]
    InvalidBytes {
        /// Where it was found.
        kind: CredentialKind,
    },
    /// The source holds two different values (two `key` cookies, say).
    #[error("conflicting {kind} credentials")]
    Conflicting {
        /// Where they were found.
        kind: CredentialKind,
    },
    /// An `Authorization` header with our scheme has more than one value.
    #[error("malformed Authorization header: expected `<scheme> <token>`")]
    MalformedAuthorization,
}

/// Reads the token of a request from its ordered sources.
///
/// The default reads the cookie `key`, then `Authorization: Token <t>` or
/// `Authorization: Bearer <t>`, and accepts tokens up to
/// [`DEFAULT_MAX_TOKEN_LEN`] bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extractor {
    sources: Vec<TokenSource>,
    max_token_len: usize,
}

impl Default for Extractor {
    fn default() -> Self {
        Self::new([
            TokenSource::cookie(DEFAULT_COOKIE_NAME),
            TokenSource::authorization(["Token", "Bearer"]),
        ])
    }
}

impl Extractor {
    /// An extractor that tries `sources` in the given order.
    ///
    /// ```
    /// use ws_token_auth::extract::{Extractor, TokenSource};
    ///
    /// let extractor = Extractor::new([TokenSource::authorization(["Bearer"])]);
    /// # let _ = extractor;
    /// ```
    #[must_use]
    pub fn new(sources: impl IntoIterator<Item = TokenSource>) -> Self {
        Self {
            sources: sources.into_iter().collect(),
            max_token_len: DEFAULT_MAX_TOKEN_LEN,
        }
    }

    /// Sets the longest token accepted, in bytes; a longer one is malformed.
    ///
    /// ```
    /// let extractor = ws_token_auth::extract::Extractor::default().max_token_len(64);
    /// # let _ = extractor;
    /// ```
    #[must_use]
    pub fn max_token_len(mut self, max: usize) -> Self {
        self.max_token_len = max;
        self
    }

    /// The longest token accepted, in bytes.
    #[must_use]
    pub fn max_len(&self) -> usize {
        self.max_token_len
    }

    /// The sources, in the order they are tried.
    #[must_use]
    pub fn sources(&self) -> &[TokenSource] {
        &self.sources
    }

    /// Finds the request's credential: the first source that holds one wins.
    ///
    /// # Errors
    /// [`ExtractError`] when a source tried before any token was found holds
    /// something that is not a token.
    pub fn extract(
        &self,
        headers: &HeaderMap,
        uri: &Uri,
    ) -> Result<Option<Credential>, ExtractError> {
        for source in &self.sources {
            if let Some(value) = source.find(headers, uri, self.max_token_len)? {
                let token = Token::from_checked(value.into());
                return Ok(Some(Credential {
                    token,
                    kind: source.kind(),
                }));
            }
        }
        Ok(None)
    }

    /// [`extract`](Self::extract) on a request's parts.
    ///
    /// # Errors
    /// As [`extract`](Self::extract).
    pub fn extract_parts(
        &self,
        parts: &http::request::Parts,
    ) -> Result<Option<Credential>, ExtractError> {
        self.extract(&parts.headers, &parts.uri)
    }
}

/// The subprotocols a client offered, without the entries that carry a token
/// (those starting with `token_prefix`): what an upgrade handler may choose
/// from and echo.
///
/// ```
/// use http::HeaderMap;
/// use ws_token_auth::extract::offered_protocols;
///
/// let mut headers = HeaderMap::new();
/// headers.insert("sec-websocket-protocol", "chat.v1, token.s3cr3t".parse().unwrap());
/// let offered: Vec<_> = offered_protocols(&headers, "token.").collect();
/// assert_eq!(offered, ["chat.v1"]);
/// ```
pub fn offered_protocols<'a>(
    headers: &'a HeaderMap,
    token_prefix: &'a str,
) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|line| line.to_str().ok())
        .flat_map(|line| line.split(','))
        .map(|entry| entry.trim_matches([' ', '\t']))
        .filter(move |entry| !entry.is_empty() && !entry.starts_with(token_prefix))
}
