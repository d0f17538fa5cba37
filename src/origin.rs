//! The [`OriginPolicy`]: which sites' pages may use a cookie credential.
//!
//! A browser attaches cookies to a WebSocket handshake whatever page opened
//! it, so without a check any site a user visits can open a socket in that
//! user's name (cross-site WebSocket hijacking). Browsers always send `Origin`
//! on a WebSocket handshake, and a page cannot forge it. The policy decides
//! which origins may present a cookie:
//!
//! - [`OriginPolicy::same_host`] (the default): the origin's host and port equal
//!   the request's `Host` (or, in HTTP/2, its `:authority`);
//! - [`OriginPolicy::allowlist`]: listed origins, exact (`https://app.example.com`)
//!   or by subdomain (`https://*.example.com`); [`OriginPolicy::allow`] adds
//!   origins to any policy;
//! - [`OriginPolicy::any`]: no check, for servers that need none.
//!
//! A handshake without `Origin` comes from a native client (an Android app that
//! adds the cookie header itself sends none): accepted unless
//! [`OriginPolicy::refuse_missing_origin`] is set. Credentials a browser never
//! sends by itself (`Authorization`, subprotocol, query) skip the check; the
//! layer applies it only to [ambient](crate::extract::CredentialKind::is_ambient)
//! ones.
//!
//! Hosts compare without regard to ASCII case, ports exactly, with a missing
//! port standing for its scheme's default (80 for `http`/`ws`, 443 for
//! `https`/`wss`).
//!
//! ```
//! use ws_token_auth::OriginPolicy;
//!
//! let policy = OriginPolicy::same_host();
//! assert!(policy.check(Some("http://localhost:8000"), Some("localhost:8000")).is_ok());
//! assert!(policy.check(Some("https://evil.example"), Some("localhost:8000")).is_err());
//! assert!(policy.check(None, Some("localhost:8000")).is_ok()); // a native client
//!
//! let policy = OriginPolicy::allowlist(["https://*.example.com"]).unwrap();
//! assert!(policy.check(Some("https://app.EXAMPLE.com"), Some("api.internal")).is_ok());
//! assert!(policy.check(Some("https://example.com"), Some("api.internal")).is_err());
//! ```

use http::header::{HOST, ORIGIN};
use http::{HeaderMap, Uri};

/// Which `Origin`s may present a cookie credential. See the [module docs](self).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginPolicy {
    same_host: bool,
    any: bool,
    allowed: Vec<OriginPattern>,
    refuse_missing: bool,
}

impl Default for OriginPolicy {
    fn default() -> Self {
        Self::same_host()
    }
}

impl OriginPolicy {
    /// Accepts an origin whose host and port equal the request's `Host`.
    #[must_use]
    pub fn same_host() -> Self {
        Self { same_host: true, any: false, allowed: Vec::new(), refuse_missing: false }
    }

    /// Accepts only the listed origins: `scheme://host[:port]`, where the host
    /// may start with `*.` to match any subdomain (not the domain itself).
    ///
    /// ```
    /// use ws_token_auth::OriginPolicy;
    ///
    /// let policy = OriginPolicy::allowlist(["https://app.example.com", "http://localhost:5173"]).unwrap();
    /// assert!(policy.check(Some("http://localhost:5173"), Some("localhost:8000")).is_ok());
    /// assert!(OriginPolicy::allowlist(["app.example.com/"]).is_err());
    /// ```
    ///
    /// # Errors
    /// [`OriginPatternError`] naming the first pattern that is not an origin.
    pub fn allowlist<I, S>(patterns: I) -> Result<Self, OriginPatternError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut policy = Self { same_host: false, ..Self::same_host() };
        for pattern in patterns {
            policy = policy.allow(pattern.as_ref())?;
        }
        Ok(policy)
    }

    /// Accepts every origin, `null` included.
    ///
    /// # Warning
    /// With a cookie credential this lets any site's page open a socket in the
    /// visitor's name. Use it only when cookies are not a source, or when
    /// something else checks the origin.
    #[must_use]
    pub fn any() -> Self {
        Self { any: true, ..Self::same_host() }
    }

    /// Also accepts `pattern` (as in [`allowlist`](Self::allowlist)).
    ///
    /// ```
    /// use ws_token_auth::OriginPolicy;
    ///
    /// // Same host, plus a front end served from elsewhere.
    /// let policy = OriginPolicy::same_host().allow("http://localhost:5173").unwrap();
    /// assert!(policy.check(Some("http://localhost:5173"), Some("localhost:8000")).is_ok());
    /// assert!(policy.check(Some("http://localhost:8000"), Some("localhost:8000")).is_ok());
    /// ```
    ///
    /// # Errors
    /// [`OriginPatternError`] if `pattern` is not an origin.
    pub fn allow(mut self, pattern: &str) -> Result<Self, OriginPatternError> {
        self.allowed.push(OriginPattern::parse(pattern)?);
        Ok(self)
    }

    /// Refuses handshakes that carry a cookie but no `Origin` header, for
    /// servers that serve browsers only.
    ///
    /// ```
    /// let policy = ws_token_auth::OriginPolicy::same_host().refuse_missing_origin();
    /// assert!(policy.check(None, Some("localhost:8000")).is_err());
    /// ```
    #[must_use]
    pub fn refuse_missing_origin(mut self) -> Self {
        self.refuse_missing = true;
        self
    }

    /// Checks a request's `Origin` (a single header line) against its `Host`
    /// (or `:authority`).
    ///
    /// # Errors
    /// [`OriginError`] saying why the origin is refused.
    pub fn check_request(&self, headers: &HeaderMap, uri: &Uri) -> Result<(), OriginError> {
        let mut origins = headers.get_all(ORIGIN).iter();
        let origin = match (origins.next(), origins.next()) {
            (None, _) => None,
            (Some(value), None) => Some(value.to_str().map_err(|_| OriginError::Malformed)?),
            (Some(_), Some(_)) => return Err(OriginError::Malformed),
        };
        let host = match headers.get(HOST) {
            Some(value) => value.to_str().ok(),
            None => uri.authority().map(|a| a.as_str()),
        };
        self.check(origin, host)
    }

    /// Checks an `Origin` value against a `Host` value; `None` for a header
    /// that is absent.
    ///
    /// # Errors
    /// [`OriginError`] saying why the origin is refused.
    pub fn check(&self, origin: Option<&str>, host: Option<&str>) -> Result<(), OriginError> {
        let Some(origin) = origin else {
            return if self.refuse_missing { Err(OriginError::Missing) } else { Ok(()) };
        };
        if self.any {
            return Ok(());
        }
        if origin == "null" {
            return Err(OriginError::Opaque);
        }
        let origin = Origin::parse(origin).ok_or(OriginError::Malformed)?;
        // A page's origin is http or https; `ws://`, `foo://` and the like
        // are not a browser page that same-host or an allowlist could mean.
        if !(origin.scheme.eq_ignore_ascii_case("http") || origin.scheme.eq_ignore_ascii_case("https")) {
            return Err(OriginError::Scheme);
        }
        let same_host = self.same_host && host.and_then(Authority::parse).is_some_and(|h| origin.is_on(&h));
        if same_host || self.allowed.iter().any(|p| p.matches(&origin)) { Ok(()) } else { Err(OriginError::NotAllowed) }
    }
}

/// Why an `Origin` was refused. Answered with 403.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OriginError {
    /// No `Origin` header, and the policy refuses that.
    #[error("the request has no Origin header")]
    Missing,
    /// `Origin: null` (a sandboxed frame, a `file:` page, a redirect).
    #[error("the request's Origin is opaque (null)")]
    Opaque,
    /// The `Origin` header is not an origin, or appears more than once.
    #[error("the request's Origin header is malformed")]
    Malformed,
    /// The origin is well formed but not allowed.
    #[error("the request's Origin is not allowed")]
    NotAllowed,
    /// The origin's scheme is not `http` or `https` (`ws://`, `foo://`):
    /// not a web page's origin.
    #[error("the request's Origin has a scheme other than http or https")]
    Scheme,
}

/// A pattern given to [`OriginPolicy::allowlist`] or [`OriginPolicy::allow`] is
/// not an origin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid origin pattern {pattern:?}: expected http(s)://host[:port], the host optionally starting with `*.`")]
pub struct OriginPatternError {
    pattern: String,
}

impl OriginPatternError {
    /// The pattern that was refused.
    #[must_use]
    pub fn pattern(&self) -> &str {
        &self.pattern
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct OriginPattern {
    scheme: Box<str>,
    /// Lowercase; for a subdomain pattern, the suffix with its leading dot.
    host: Box<str>,
    subdomains: bool,
    port: Option<u16>,
}

impl OriginPattern {
    fn parse(pattern: &str) -> Result<Self, OriginPatternError> {
        let error = || OriginPatternError { pattern: pattern.to_owned() };
        let origin = Origin::parse(pattern).ok_or_else(error)?;
        if !(origin.scheme.eq_ignore_ascii_case("http") || origin.scheme.eq_ignore_ascii_case("https")) {
            return Err(error()); // no page has another scheme: such a pattern would never match
        }
        let (host, subdomains) = match origin.authority.host.strip_prefix("*.") {
            Some(rest) if !rest.is_empty() && !rest.contains('*') => (&origin.authority.host[1..], true),
            Some(_) => return Err(error()),
            None if origin.authority.host.contains('*') => return Err(error()),
            None => (origin.authority.host, false),
        };
        Ok(Self {
            scheme: origin.scheme.to_ascii_lowercase().into(),
            host: host.to_ascii_lowercase().into(),
            subdomains,
            port: origin.port(),
        })
    }

    fn matches(&self, origin: &Origin<'_>) -> bool {
        let host = origin.authority.host;
        let host_matches = if self.subdomains {
            host.len() > self.host.len()
                && host.is_char_boundary(host.len() - self.host.len())
                && host[host.len() - self.host.len()..].eq_ignore_ascii_case(&self.host)
        } else {
            host.eq_ignore_ascii_case(&self.host)
        };
        host_matches && origin.scheme.eq_ignore_ascii_case(&self.scheme) && origin.port() == self.port
    }
}

/// A parsed `scheme://host[:port]`.
struct Origin<'a> {
    scheme: &'a str,
    authority: Authority<'a>,
}

impl<'a> Origin<'a> {
    fn parse(s: &'a str) -> Option<Self> {
        let (scheme, rest) = s.split_once("://")?;
        let mut chars = scheme.chars();
        if !chars.next()?.is_ascii_alphabetic()
            || !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        {
            return None;
        }
        Some(Self { scheme, authority: Authority::parse(rest)? })
    }

    /// The explicit port, or the scheme's default.
    fn port(&self) -> Option<u16> {
        self.authority.port.or_else(|| default_port(self.scheme))
    }

    /// Whether this origin names the server reached at `host`.
    fn is_on(&self, host: &Authority<'_>) -> bool {
        self.authority.host.eq_ignore_ascii_case(host.host)
            && self.port() == host.port.or_else(|| default_port(self.scheme))
    }
}

fn default_port(scheme: &str) -> Option<u16> {
    if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("ws") {
        Some(80)
    } else if scheme.eq_ignore_ascii_case("https") || scheme.eq_ignore_ascii_case("wss") {
        Some(443)
    } else {
        None
    }
}

/// A parsed `host[:port]`; an IPv6 host keeps its brackets.
struct Authority<'a> {
    host: &'a str,
    port: Option<u16>,
}

impl<'a> Authority<'a> {
    fn parse(s: &'a str) -> Option<Self> {
        let (host, port) = if s.starts_with('[') {
            let end = s.find(']')?;
            let (host, rest) = s.split_at(end + 1);
            let inner = &host[1..host.len() - 1];
            if inner.is_empty() || !inner.chars().all(|c| c.is_ascii_hexdigit() || matches!(c, ':' | '.')) {
                return None;
            }
            match rest {
                "" => (host, None),
                _ => (host, Some(rest.strip_prefix(':')?)),
            }
        } else {
            match s.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (s, None),
            }
        };
        let host_ok = !host.is_empty()
            && host.bytes().all(|b| b.is_ascii_graphic() && !matches!(b, b'/' | b'?' | b'#' | b'@' | b':' | b'\\'))
            || host.starts_with('[');
        if !host_ok {
            return None;
        }
        let port = match port {
            None => None,
            Some(p) if !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => Some(p.parse().ok()?),
            Some(_) => return None,
        };
        Some(Self { host, port })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn same_host(origin: Option<&str>, host: &str) -> Result<(), OriginError> {
        OriginPolicy::same_host().check(origin, Some(host))
    }

    #[test]
    fn same_host_table() {
        use OriginError::*;
        let rows: &[(Option<&str>, &str, Result<(), OriginError>)] = &[
            (Some("http://localhost:8000"), "localhost:8000", Ok(())),
            (Some("http://LOCALHOST:8000"), "localhost:8000", Ok(())),
            (Some("HTTP://localhost:8000"), "Localhost:8000", Ok(())),
            (Some("http://localhost:3000"), "localhost:8000", Err(NotAllowed)),
            (Some("http://localhost"), "localhost:80", Ok(())),
            (Some("http://localhost:80"), "localhost", Ok(())),
            (Some("https://chat.example.com"), "chat.example.com", Ok(())),
            (Some("https://chat.example.com:443"), "chat.example.com", Ok(())),
            (Some("https://chat.example.com"), "chat.example.com:443", Ok(())),
            (Some("https://chat.example.com"), "chat.example.com:8443", Err(NotAllowed)),
            (Some("http://chat.example.com"), "chat.example.com:443", Err(NotAllowed)),
            (Some("https://evil.example"), "chat.example.com", Err(NotAllowed)),
            (Some("https://chat.example.com.evil.example"), "chat.example.com", Err(NotAllowed)),
            (Some("http://[::1]:8000"), "[::1]:8000", Ok(())),
            (Some("http://[::1]:8000"), "[::1]:8001", Err(NotAllowed)),
            (Some("http://[::1]"), "[::1]", Ok(())),
            (Some("http://[2001:DB8::1]:8000"), "[2001:db8::1]:8000", Ok(())),
            (Some("http://127.0.0.1:8000"), "localhost:8000", Err(NotAllowed)),
            (Some("null"), "localhost:8000", Err(Opaque)),
            (None, "localhost:8000", Ok(())),
            (Some(""), "localhost:8000", Err(Malformed)),
            (Some("localhost:8000"), "localhost:8000", Err(Malformed)),
            (Some("http://localhost:8000/"), "localhost:8000", Err(Malformed)),
            (Some("http://user@localhost:8000"), "localhost:8000", Err(Malformed)),
            (Some("http://localhost:"), "localhost", Err(Malformed)),
            (Some("http://localhost:99999"), "localhost:99999", Err(Malformed)),
            (Some("http://[::1"), "[::1]", Err(Malformed)),
            (Some("http://[::1]x"), "[::1]", Err(Malformed)),
            (Some("http://[]:8000"), "[]:8000", Err(Malformed)),
            (Some("http://localhost:+8000"), "localhost:8000", Err(Malformed)),
            (Some("http://localhost:008000"), "localhost:8000", Err(Malformed)),
            (Some("http://[zz]"), "[zz]", Err(Malformed)),
            (Some("http://localhost:8000"), "", Err(NotAllowed)),
            (Some("foo://localhost:8000"), "localhost:8000", Err(Scheme)),
            (Some("1http://localhost:8000"), "localhost:8000", Err(Malformed)),
            (Some("ht~tp://localhost:8000"), "localhost:8000", Err(Malformed)),
            (Some("ws://localhost:8000"), "localhost:8000", Err(Scheme)),
            (Some("wss://chat.example.com"), "chat.example.com", Err(Scheme)),
            (Some("file://localhost:8000"), "localhost:8000", Err(Scheme)),
        ];
        for (origin, host, expected) in rows {
            assert_eq!(same_host(*origin, host), *expected, "Origin {origin:?}, Host {host:?}");
        }
    }

    #[test]
    fn patterns_other_than_http_or_https_are_refused_in_the_builder() {
        for pattern in ["ws://chat.example.com", "wss://*.example.com", "foo://a:1", "file://x"] {
            assert!(OriginPolicy::same_host().allow(pattern).is_err(), "{pattern}");
        }
        assert!(OriginPolicy::same_host().allow("HTTPS://chat.example.com").is_ok());
    }

    #[test]
    fn no_host_header_refuses_every_origin_under_same_host() {
        assert_eq!(OriginPolicy::same_host().check(Some("http://a"), None), Err(OriginError::NotAllowed));
    }

    #[test]
    fn allowlist_exact_and_subdomain() {
        let policy =
            OriginPolicy::allowlist(["https://app.example.com", "https://*.example.org", "http://[::1]:5173"]).unwrap();
        let host = Some("api.internal:8000");
        assert!(policy.check(Some("https://app.example.com"), host).is_ok());
        assert!(policy.check(Some("https://APP.example.com:443"), host).is_ok());
        assert!(policy.check(Some("http://app.example.com"), host).is_err());
        assert!(policy.check(Some("https://app.example.com:8443"), host).is_err());
        assert!(policy.check(Some("https://a.example.org"), host).is_ok());
        assert!(policy.check(Some("https://a.b.EXAMPLE.org"), host).is_ok());
        assert!(policy.check(Some("https://example.org"), host).is_err());
        assert!(policy.check(Some("https://badexample.org"), host).is_err());
        assert!(policy.check(Some("https://.example.org"), host).is_err(), "the suffix alone is no subdomain");
        assert!(policy.check(Some("http://[::1]:5173"), host).is_ok());
        // The allowlist alone does not accept the server's own host.
        assert!(policy.check(Some("http://api.internal:8000"), host).is_err());
    }

    #[test]
    fn bad_patterns_fail_in_the_builder() {
        for bad in ["", "example.com", "https://", "https://ex*ample.com", "https://*.", "https://*.*.a", "https://a/b"]
        {
            let err = OriginPolicy::allowlist([bad]).unwrap_err();
            assert_eq!(err.pattern(), bad);
        }
    }

    #[test]
    fn any_accepts_everything_but_may_refuse_missing() {
        let any = OriginPolicy::any();
        assert!(any.check(Some("null"), Some("h")).is_ok());
        assert!(any.check(Some("https://evil.example"), Some("h")).is_ok());
        assert!(any.check(None, Some("h")).is_ok());
        assert_eq!(any.refuse_missing_origin().check(None, Some("h")), Err(OriginError::Missing));
    }

    #[test]
    fn check_request_reads_headers_and_authority() {
        let policy = OriginPolicy::same_host();
        let mut headers = HeaderMap::new();
        headers.insert(ORIGIN, "https://chat.example.com".parse().unwrap());
        // HTTP/2: no Host header, the authority is in the URI.
        let uri: Uri = "https://chat.example.com/ws".parse().unwrap();
        assert!(policy.check_request(&headers, &uri).is_ok());
        headers.append(ORIGIN, "https://chat.example.com".parse().unwrap());
        assert_eq!(policy.check_request(&headers, &uri), Err(OriginError::Malformed));
    }
}
