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
use std::sync::Arc;

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
    Ticket(Box<str>),
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
        Self(Source::Authorization(schemes.into_iter().map(|s| s.into().into_boxed_str()).collect()))
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

    /// The query parameter called `name`, holding a single-use connect
    /// [`Ticket`](crate::ticket::Ticket), never a token: the
    /// [`Authenticator`](crate::Authenticator) redeems it with its
    /// [`tickets`](crate::Authenticator::tickets) store. Put it last: a
    /// handshake that also carries a token is authenticated by the token, and
    /// its ticket is left unused.
    ///
    /// ```
    /// use ws_token_auth::extract::{CredentialKind, TokenSource};
    ///
    /// let sources = [TokenSource::cookie("key"), TokenSource::ticket("ticket")];
    /// assert_eq!(sources[1].kind(), CredentialKind::Ticket);
    /// ```
    #[must_use]
    pub fn ticket(name: impl Into<String>) -> Self {
        Self(Source::Ticket(name.into().into_boxed_str()))
    }

    /// The kind of credential this source yields.
    #[must_use]
    pub fn kind(&self) -> CredentialKind {
        match self.0 {
            Source::Cookie(_) => CredentialKind::Cookie,
            Source::Authorization(_) => CredentialKind::Authorization,
            Source::Subprotocol(_) => CredentialKind::Subprotocol,
            Source::Query(_) => CredentialKind::Query,
            Source::Ticket(_) => CredentialKind::Ticket,
        }
    }

    /// The first `Authorization` scheme of this source, if it is one.
    pub(crate) fn first_scheme(&self) -> Option<&str> {
        match &self.0 {
            Source::Authorization(schemes) => schemes.first().map(|s| &**s),
            _ => None,
        }
    }

    fn find(&self, headers: &HeaderMap, uri: &Uri, max: usize) -> Result<Option<Arc<str>>, ExtractError> {
        let mut found = Found::new(self.kind(), max);
        match &self.0 {
            Source::Cookie(name) => {
                for line in headers.get_all(COOKIE) {
                    let text = String::from_utf8_lossy(line.as_bytes());
                    // `Cookie::split_parse` splits on `;` and parses each piece
                    // trimmed; doing the split here lets pieces that cannot be
                    // ours (most of a browser's cookies) skip the parser.
                    for piece in text.split(';').map(str::trim).filter(|p| p.starts_with(&**name)) {
                        if let Ok(cookie) = Cookie::parse(piece) {
                            if cookie.name() == &**name {
                                found.offer(cookie.value_trimmed().as_bytes())?;
                            }
                        }
                    }
                }
            }
            Source::Authorization(schemes) => {
                for line in headers.get_all(AUTHORIZATION) {
                    let mut words = line.as_bytes().split(|b| *b == b' ').filter(|w| !w.is_empty());
                    let Some(scheme) = words.next() else { continue };
                    if !schemes.iter().any(|s| s.as_bytes().eq_ignore_ascii_case(scheme)) {
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
            Source::Query(name) | Source::Ticket(name) => {
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
    value: Option<Arc<str>>,
}

impl Found {
    fn new(kind: CredentialKind, max: usize) -> Self {
        Self { kind, max, value: None }
    }

    fn offer(&mut self, raw: &[u8]) -> Result<(), ExtractError> {
        let kind = self.kind;
        if raw.is_empty() {
            return Ok(()); // `key=`: a cleared credential counts as none
        }
        if raw.len() > self.max {
            return Err(ExtractError::TooLong { kind, max: self.max });
        }
        check_token_bytes(raw).map_err(|e| match e {
            InvalidToken::Empty | InvalidToken::InvalidByte => ExtractError::InvalidBytes { kind },
        })?;
        match &self.value {
            Some(previous) if previous.as_bytes() != raw => Err(ExtractError::Conflicting { kind }),
            Some(_) => Ok(()),
            None => {
                // Checked above: visible ASCII is UTF-8, so nothing is replaced.
                self.value = Some(Arc::from(String::from_utf8_lossy(raw)));
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
    /// A connect ticket in a query parameter ([`TokenSource::ticket`]); the
    /// socket lives by the token that asked for the ticket.
    Ticket,
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
            Self::Ticket => "ticket",
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
        Self::new([TokenSource::cookie(DEFAULT_COOKIE_NAME), TokenSource::authorization(["Token", "Bearer"])])
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
        Self { sources: sources.into_iter().collect(), max_token_len: DEFAULT_MAX_TOKEN_LEN }
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

    /// The prefix of the first subprotocol source, if there is one: entries
    /// starting with it carry a token and must never be echoed.
    #[must_use]
    pub fn subprotocol_prefix(&self) -> Option<&str> {
        self.sources.iter().find_map(|s| match &s.0 {
            Source::Subprotocol(prefix) => Some(&**prefix),
            _ => None,
        })
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
    pub fn extract(&self, headers: &HeaderMap, uri: &Uri) -> Result<Option<Credential>, ExtractError> {
        for source in &self.sources {
            if let Some(value) = source.find(headers, uri, self.max_token_len)? {
                let token = Token::from_checked(value);
                return Ok(Some(Credential { token, kind: source.kind() }));
            }
        }
        Ok(None)
    }

    /// [`extract`](Self::extract) on a request's parts.
    ///
    /// # Errors
    /// As [`extract`](Self::extract).
    pub fn extract_parts(&self, parts: &http::request::Parts) -> Result<Option<Credential>, ExtractError> {
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
pub fn offered_protocols<'a>(headers: &'a HeaderMap, token_prefix: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|line| line.to_str().ok())
        .flat_map(|line| line.split(','))
        .map(|entry| entry.trim_matches([' ', '\t']))
        .filter(move |entry| !entry.is_empty() && (token_prefix.is_empty() || !entry.starts_with(token_prefix)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b";

    /// What a row expects.
    #[derive(Debug, PartialEq)]
    enum Want {
        Token(&'static str, CredentialKind),
        Absent,
        Error(ExtractError),
    }
    use CredentialKind::*;
    use Want::*;

    /// Header lines: name, raw value.
    type Headers<'a> = Vec<(&'a str, &'a [u8])>;

    fn run(extractor: &Extractor, headers: &[(&str, &[u8])], uri: &str) -> Want {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            let name = http::HeaderName::from_bytes(name.as_bytes()).unwrap();
            map.append(name, http::HeaderValue::from_bytes(value).unwrap());
        }
        let uri: Uri = uri.parse().unwrap();
        match extractor.extract(&map, &uri) {
            Ok(Some(c)) => Token(String::leak(c.token().expose_secret().to_owned()), c.kind()),
            Ok(None) => Absent,
            Err(e) => Error(e),
        }
    }

    #[test]
    fn extract_parts_reads_a_requests_parts() {
        let (parts, ()) = http::Request::get("/ws?t=x").header("cookie", "key=abc").body(()).unwrap().into_parts();
        let credential = Extractor::default().extract_parts(&parts).unwrap().expect("the cookie");
        assert_eq!((credential.token().expose_secret(), credential.kind()), ("abc", CredentialKind::Cookie));
        let (parts, ()) = http::Request::get("/ws").body(()).unwrap().into_parts();
        assert!(Extractor::default().extract_parts(&parts).unwrap().is_none());
    }

    #[test]
    fn default_extractor_table() {
        let long = format!("key={}", "a".repeat(8 * 1024));
        let at_limit = format!("key={}", "b".repeat(256));
        let over_limit = format!("key={}", "b".repeat(257));
        let cookie_t = format!("key={T}");
        let rows: Vec<(&str, Headers<'_>, Want)> = vec![
            ("plain cookie", vec![("cookie", cookie_t.as_bytes())], Token(T, Cookie)),
            ("among others", vec![("cookie", b"a=1; key=tok; b=2")], Token("tok", Cookie)),
            ("no spaces", vec![("cookie", b"a=1;key=tok;b=2")], Token("tok", Cookie)),
            ("spaces around", vec![("cookie", b"a=1;  key = tok ;b=2")], Token("tok", Cookie)),
            ("monkey is not key", vec![("cookie", b"monkey=tok")], Absent),
            ("keys is not key", vec![("cookie", b"keys=tok")], Absent),
            ("Key is not key", vec![("cookie", b"Key=tok")], Absent),
            ("KEY is not key", vec![("cookie", b"KEY=tok")], Absent),
            ("prefix in value", vec![("cookie", b"monkey=key=tok")], Absent),
            ("decoys around", vec![("cookie", b"monkey=x; keys=y; key=tok; Key=z")], Token("tok", Cookie)),
            ("two lines", vec![("cookie", b"a=1"), ("cookie", b"key=tok")], Token("tok", Cookie)),
            ("same twice", vec![("cookie", b"key=tok; key=tok")], Token("tok", Cookie)),
            ("same on two lines", vec![("cookie", b"key=tok"), ("cookie", b"key=tok")], Token("tok", Cookie)),
            ("conflicting", vec![("cookie", b"key=a; key=b")], Error(ExtractError::Conflicting { kind: Cookie })),
            (
                "conflicting across lines",
                vec![("cookie", b"key=a"), ("cookie", b"key=b")],
                Error(ExtractError::Conflicting { kind: Cookie }),
            ),
            ("quoted", vec![("cookie", b"key=\"tok\"")], Token("tok", Cookie)),
            ("quoted equals plain", vec![("cookie", b"key=\"tok\"; key=tok")], Token("tok", Cookie)),
            ("empty", vec![("cookie", b"key=")], Absent),
            ("empty quoted", vec![("cookie", b"key=\"\"")], Absent),
            ("empty beside value", vec![("cookie", b"key=; key=tok")], Token("tok", Cookie)),
            ("no equals sign", vec![("cookie", b"key")], Absent),
            ("garbage around", vec![("cookie", b";;=x; ;key=tok;=;")], Token("tok", Cookie)),
            ("8 KiB value", vec![("cookie", long.as_bytes())], Error(ExtractError::TooLong { kind: Cookie, max: 256 })),
            ("at the limit", vec![("cookie", at_limit.as_bytes())], Token(String::leak("b".repeat(256)), Cookie)),
            (
                "over the limit",
                vec![("cookie", over_limit.as_bytes())],
                Error(ExtractError::TooLong { kind: Cookie, max: 256 }),
            ),
            ("tab inside", vec![("cookie", b"key=to\tk")], Error(ExtractError::InvalidBytes { kind: Cookie })),
            ("space inside", vec![("cookie", b"key=to k")], Error(ExtractError::InvalidBytes { kind: Cookie })),
            ("obs-text byte", vec![("cookie", b"key=to\xe9k")], Error(ExtractError::InvalidBytes { kind: Cookie })),
            ("UTF-8 value", vec![("cookie", "key=tök".as_bytes())], Error(ExtractError::InvalidBytes { kind: Cookie })),
            ("non-UTF-8 other cookie", vec![("cookie", b"pref=\xff\xfe; key=tok")], Token("tok", Cookie)),
            ("authorization Token", vec![("authorization", b"Token tok")], Token("tok", Authorization)),
            ("authorization Bearer", vec![("authorization", b"Bearer tok")], Token("tok", Authorization)),
            ("scheme any case", vec![("authorization", b"tOKEN tok")], Token("tok", Authorization)),
            ("extra spaces", vec![("authorization", b"Token   tok ")], Token("tok", Authorization)),
            ("other scheme", vec![("authorization", b"Basic dXNlcjpwYXNz")], Absent),
            ("scheme prefix", vec![("authorization", b"Tokens tok")], Absent),
            ("scheme only", vec![("authorization", b"Token")], Absent),
            ("two values", vec![("authorization", b"Token a b")], Error(ExtractError::MalformedAuthorization)),
            (
                "bad bytes",
                vec![("authorization", b"Token t\tk")],
                Error(ExtractError::InvalidBytes { kind: Authorization }),
            ),
            (
                "two headers",
                vec![("authorization", b"Token a"), ("authorization", b"Bearer b")],
                Error(ExtractError::Conflicting { kind: Authorization }),
            ),
            (
                "cookie before authorization",
                vec![("authorization", b"Token auth"), ("cookie", b"key=cookie")],
                Token("cookie", Cookie),
            ),
            (
                "empty cookie falls through",
                vec![("authorization", b"Token auth"), ("cookie", b"key=")],
                Token("auth", Authorization),
            ),
            (
                "malformed cookie is not skipped",
                vec![("authorization", b"Token auth"), ("cookie", b"key=a; key=b")],
                Error(ExtractError::Conflicting { kind: Cookie }),
            ),
            ("nothing", vec![("host", b"example.com")], Absent),
            ("subprotocol is not a default source", vec![("sec-websocket-protocol", b"chat, token.tok")], Absent),
        ];
        let extractor = Extractor::default();
        for (name, headers, want) in rows {
            assert_eq!(run(&extractor, &headers, "/ws"), want, "row {name:?}");
        }
    }

    #[test]
    fn subprotocol_and_query_sources() {
        let extractor = Extractor::new([TokenSource::subprotocol("token."), TokenSource::query("access_token")]);
        let rows: Vec<(&str, Headers<'_>, &str, Want)> = vec![
            ("offer", vec![("sec-websocket-protocol", b"chat, token.tok")], "/ws", Token("tok", Subprotocol)),
            ("first offer", vec![("sec-websocket-protocol", b"token.tok,chat")], "/ws", Token("tok", Subprotocol)),
            (
                "two lines",
                vec![("sec-websocket-protocol", b"chat"), ("sec-websocket-protocol", b" token.tok ")],
                "/ws",
                Token("tok", Subprotocol),
            ),
            ("prefix only", vec![("sec-websocket-protocol", b"chat, token.")], "/ws", Absent),
            ("case matters", vec![("sec-websocket-protocol", b"Token.tok")], "/ws", Absent),
            (
                "two tokens",
                vec![("sec-websocket-protocol", b"token.a, token.b")],
                "/ws",
                Error(ExtractError::Conflicting { kind: Subprotocol }),
            ),
            ("query", vec![], "/ws?room=1&access_token=tok", Token("tok", Query)),
            ("query decoded", vec![], "/ws?access_token=t%2Fk", Token("t/k", Query)),
            ("query name exact", vec![], "/ws?xaccess_token=tok&access_tokens=tok", Absent),
            ("query empty", vec![], "/ws?access_token=", Absent),
            ("query plus is space", vec![], "/ws?access_token=a+b", Error(ExtractError::InvalidBytes { kind: Query })),
            (
                "query twice",
                vec![],
                "/ws?access_token=a&access_token=b",
                Error(ExtractError::Conflicting { kind: Query }),
            ),
            (
                "order: subprotocol first",
                vec![("sec-websocket-protocol", b"token.sub")],
                "/ws?access_token=q",
                Token("sub", Subprotocol),
            ),
            ("cookie not configured", vec![("cookie", b"key=tok")], "/ws", Absent),
        ];
        for (name, headers, uri, want) in rows {
            assert_eq!(run(&extractor, &headers, uri), want, "row {name:?}");
        }
    }

    #[test]
    fn custom_cookie_name_schemes_and_limit() {
        let extractor =
            Extractor::new([TokenSource::cookie("sessionid"), TokenSource::authorization(["ApiKey"])]).max_token_len(4);
        assert_eq!(run(&extractor, &[("cookie", b"key=abc; sessionid=abcd")], "/"), Token("abcd", Cookie));
        assert_eq!(
            run(&extractor, &[("cookie", b"sessionid=abcde")], "/"),
            Error(ExtractError::TooLong { kind: Cookie, max: 4 })
        );
        assert_eq!(run(&extractor, &[("authorization", b"apikey abc")], "/"), Token("abc", Authorization));
        assert_eq!(run(&extractor, &[("authorization", b"Token abc")], "/"), Absent);
    }

    #[test]
    fn errors_never_quote_the_value() {
        let secret = "s3cr3t-token-value";
        let rows = [
            format!("key={secret}; key=other"),
            format!("key={secret}\tx"),
            format!("key={secret}{}", "x".repeat(300)),
        ];
        for row in rows {
            let mut headers = HeaderMap::new();
            headers.insert(COOKIE, http::HeaderValue::from_str(&row).unwrap());
            let error = Extractor::default().extract(&headers, &Uri::from_static("/")).unwrap_err();
            assert!(!format!("{error} {error:?}").contains(secret), "{error:?}");
        }
    }

    #[test]
    fn offered_protocols_skip_token_entries() {
        let mut headers = HeaderMap::new();
        headers.append(SEC_WEBSOCKET_PROTOCOL, "chat.v2, token.abc".parse().unwrap());
        headers.append(SEC_WEBSOCKET_PROTOCOL, " ,chat.v1".parse().unwrap());
        assert_eq!(offered_protocols(&headers, "token.").collect::<Vec<_>>(), ["chat.v2", "chat.v1"]);
    }
}
