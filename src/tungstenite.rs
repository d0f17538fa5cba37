//! Authenticate inside a raw tokio-tungstenite server (feature `tungstenite`).
//!
//! `tokio_tungstenite::accept_hdr_async` hands the request to a synchronous
//! callback, which cannot ask an async store. [`Acceptor`] does the handshake
//! itself instead:
//!
//! 1. reads the request head from the stream, bounded in size
//!    ([`Acceptor::max_head_bytes`], default 32 KiB) and time
//!    ([`Acceptor::head_timeout`], default 10 s);
//! 2. checks that it is a WebSocket upgrade (400 if not, 426 for a version
//!    other than 13);
//! 3. authenticates it with an [`Authenticator`] (no tower layer needed; the
//!    same one a layer elsewhere in the app uses decides the same way);
//! 4. answers `101 Switching Protocols` and hands back the socket with the
//!    [`Identity`], or writes the authenticator's
//!    [refusal](Authenticator::refusal) (401/400/403/503, with its challenge
//!    and any custom body) and closes.
//!
//! Bytes the client sent right after the head (a first frame in the same TCP
//! write) are kept and read by the socket.
//!
//! ```no_run
//! use std::sync::Arc;
//! use futures_util::SinkExt;
//! use tokio_tungstenite::tungstenite::Message;
//! use ws_token_auth::{Authenticator, MemoryTokenStore, tungstenite::accept_authenticated};
//!
//! # async fn run() -> std::io::Result<()> {
//! let store = Arc::new(MemoryTokenStore::<String>::new());
//! let auth = Authenticator::from_shared(store);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! loop {
//!     let (stream, _) = listener.accept().await?;
//!     let auth = auth.clone();
//!     tokio::spawn(async move {
//!         // A refused handshake has been answered already; nothing to do.
//!         let Ok((mut socket, identity)) = accept_authenticated(stream, &auth).await else { return };
//!         if let Some(user) = identity.user() {
//!             let _ = socket.send(Message::Text(format!("hello {}", user.user).into())).await;
//!         }
//!     });
//! }
//! # }
//! ```

use std::time::Duration;

use http::header::{CONNECTION, CONTENT_LENGTH, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION, UPGRADE};
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode, Uri};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use crate::authenticator::Authenticator;
use crate::deflate::{self, Deflate};
use crate::extract::offered_protocols;
use crate::identity::Identity;
use crate::rejection::Rejection;
use crate::store::TokenStore;

/// The default bound on the request head, in bytes.
pub const DEFAULT_MAX_HEAD_BYTES: usize = 32 * 1024;
/// The default time a client has to send its whole request head.
pub const DEFAULT_HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// The most header lines a request head may have.
pub const MAX_HEADERS: usize = 128;
/// The default bound on what one socket's writer may hold in memory
/// (tungstenite's `max_write_buffer_size`, which is unbounded by default).
///
/// tungstenite answers every ping by itself; a client that sends pings and
/// never reads would otherwise grow the server's write buffer without limit.
/// Past the bound, automatic answers wait (one at a time) and a write returns
/// an error, so memory stays bounded; closing such a connection is the
/// application's call (see [`Acceptor::websocket_config`]).
pub const DEFAULT_MAX_WRITE_BUFFER_BYTES: usize = 1 << 20;

/// The WebSocket configuration the [`Acceptor`] uses unless told otherwise:
/// tungstenite's defaults, with the write buffer bounded at
/// [`DEFAULT_MAX_WRITE_BUFFER_BYTES`].
///
/// ```
/// use ws_token_auth::tungstenite::{DEFAULT_MAX_WRITE_BUFFER_BYTES, default_websocket_config};
///
/// assert_eq!(default_websocket_config().max_write_buffer_size, DEFAULT_MAX_WRITE_BUFFER_BYTES);
/// ```
#[must_use]
pub fn default_websocket_config() -> WebSocketConfig {
    WebSocketConfig::default().max_write_buffer_size(DEFAULT_MAX_WRITE_BUFFER_BYTES)
}

/// Accepts a WebSocket handshake after authenticating it, with the default
/// limits and no subprotocol. See [`Acceptor`] to change them.
///
/// # Errors
/// [`HandshakeError`]; the refusal has been written to the client already.
pub async fn accept_authenticated<S, St>(
    stream: S,
    auth: &Authenticator<St>,
) -> Result<(WebSocketStream<Deflate<S>>, Identity<St::User>), HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    St: TokenStore,
{
    let accepted = Acceptor::new(auth.clone()).accept(stream).await?;
    Ok((accepted.socket, accepted.identity))
}

/// Authenticates, then accepts, WebSocket handshakes on raw streams.
///
/// ```
/// use std::time::Duration;
/// use ws_token_auth::{Authenticator, MemoryTokenStore, tungstenite::Acceptor};
///
/// let auth = Authenticator::new(MemoryTokenStore::<String>::new());
/// let acceptor = Acceptor::new(auth)
///     .max_head_bytes(16 * 1024)
///     .head_timeout(Duration::from_secs(5))
///     .protocols(["chat.v1"]);
/// # let _ = acceptor;
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct Acceptor<St> {
    auth: Authenticator<St>,
    max_head_bytes: usize,
    head_timeout: Duration,
    max_headers: usize,
    protocols: Vec<String>,
    config: WebSocketConfig,
    path: Option<String>,
    deflate: bool,
}

/// A handshake that was authenticated and accepted.
#[derive(Debug)]
#[non_exhaustive]
pub struct Accepted<S, U> {
    /// The WebSocket, over a [`Deflate`] layer that compresses when
    /// permessage-deflate was agreed ([`Acceptor::permessage_deflate`]) and
    /// passes every byte through otherwise.
    pub socket: WebSocketStream<Deflate<S>>,
    /// Who opened it.
    pub identity: Identity<U>,
    /// The subprotocol the server echoed, if any.
    pub protocol: Option<String>,
}

impl<St: TokenStore> Acceptor<St> {
    /// An acceptor that authenticates with `auth`, with the default limits.
    pub fn new(auth: Authenticator<St>) -> Self {
        Self {
            auth,
            max_head_bytes: DEFAULT_MAX_HEAD_BYTES,
            head_timeout: DEFAULT_HEAD_TIMEOUT,
            max_headers: MAX_HEADERS,
            protocols: Vec::new(),
            config: default_websocket_config(),
            path: None,
            deflate: false,
        }
    }

    /// Accepts handshakes for this path only (the query string aside); others
    /// are answered 404 before any store call.
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = Some(path.into());
        self
    }

    /// Sets the largest request head accepted; a larger one is answered 431.
    pub fn max_head_bytes(mut self, max: usize) -> Self {
        self.max_head_bytes = max;
        self
    }

    /// Sets how long a client has to send its whole request head.
    pub fn head_timeout(mut self, timeout: Duration) -> Self {
        self.head_timeout = timeout;
        self
    }

    /// Lowers the number of header lines a request head may have (at most
    /// [`MAX_HEADERS`], the default); more are answered 431.
    ///
    /// ```
    /// use ws_token_auth::{Authenticator, MemoryTokenStore, tungstenite::Acceptor};
    ///
    /// // As hyper's HTTP/1 server allows: 100 lines.
    /// let acceptor = Acceptor::new(Authenticator::new(MemoryTokenStore::<String>::new())).max_headers(100);
    /// # let _ = acceptor;
    /// ```
    pub fn max_headers(mut self, max: usize) -> Self {
        self.max_headers = max.min(MAX_HEADERS);
        self
    }

    /// Sets the application's subprotocols, in order of preference. The first
    /// one the client offered is echoed; entries carrying a token (the
    /// subprotocol source's prefix) never are.
    pub fn protocols<I, P>(mut self, protocols: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<String>,
    {
        self.protocols = protocols.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the WebSocket configuration (frame and message size limits,
    /// buffers). The default is [`default_websocket_config`]; a configuration
    /// whose `max_write_buffer_size` is tungstenite's unbounded default gets
    /// [`DEFAULT_MAX_WRITE_BUFFER_BYTES`] instead (or twice its write buffer,
    /// if that is larger), so that no server path of this crate can be grown
    /// without limit by a client that sends pings and never reads.
    ///
    /// ```
    /// use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
    /// use ws_token_auth::{Authenticator, MemoryTokenStore, tungstenite::Acceptor};
    ///
    /// let config = WebSocketConfig::default().max_message_size(Some(64 * 1024)).max_write_buffer_size(256 * 1024);
    /// let acceptor = Acceptor::new(Authenticator::new(MemoryTokenStore::<String>::new())).websocket_config(config);
    /// # let _ = acceptor;
    /// ```
    pub fn websocket_config(mut self, mut config: WebSocketConfig) -> Self {
        if config.max_write_buffer_size == usize::MAX {
            let floor = config.write_buffer_size.saturating_mul(2);
            config.max_write_buffer_size = DEFAULT_MAX_WRITE_BUFFER_BYTES.max(floor);
        }
        self.config = config;
        self
    }

    /// Offers permessage-deflate (RFC 7692) to clients that ask for it (off by
    /// default): the first offer this server can honour is accepted, always
    /// without context takeover, and the socket's messages are compressed
    /// both ways (see [`crate::deflate`]). A client that offers nothing, or
    /// only what is declined, gets the plain protocol.
    ///
    /// ```
    /// use ws_token_auth::{Authenticator, MemoryTokenStore, tungstenite::Acceptor};
    ///
    /// let acceptor = Acceptor::new(Authenticator::new(MemoryTokenStore::<String>::new())).permessage_deflate(true);
    /// # let _ = acceptor;
    /// ```
    pub fn permessage_deflate(mut self, offer: bool) -> Self {
        self.deflate = offer;
        self
    }

    /// Reads and authenticates the handshake on `stream`, then accepts it.
    ///
    /// # Errors
    /// [`HandshakeError`]; where HTTP allows, the refusal has been written to
    /// the client and the stream shut down.
    pub async fn accept<S>(&self, stream: S) -> Result<Accepted<S, St::User>, HandshakeError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        self.accept_by(stream, tokio::time::Instant::now() + self.head_timeout).await
    }

    /// As [`accept`](Self::accept), with the request head due by `deadline`
    /// instead of within the head timeout from now: for a server that has
    /// spent some of the client's time already (waiting for its first bytes
    /// to choose a handler, say).
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use tokio::time::Instant;
    /// use ws_token_auth::{Authenticator, MemoryTokenStore, tungstenite::Acceptor};
    ///
    /// # async fn run(stream: tokio::net::TcpStream) {
    /// let acceptor = Acceptor::new(Authenticator::new(MemoryTokenStore::<String>::new()));
    /// let connected = Instant::now();
    /// // ... the server peeks at the stream ...
    /// let accepted = acceptor.accept_by(stream, connected + Duration::from_secs(10)).await;
    /// # let _ = accepted;
    /// # }
    /// ```
    ///
    /// # Errors
    /// As [`accept`](Self::accept); [`HandshakeError::Timeout`] says how
    /// long the head was waited for.
    pub async fn accept_by<S>(
        &self,
        stream: S,
        deadline: tokio::time::Instant,
    ) -> Result<Accepted<S, St::User>, HandshakeError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let (accepted, ()) = self.accept_admitted(stream, deadline, |_| Ok(())).await?;
        Ok(accepted)
    }

    /// As [`accept_by`](Self::accept_by), with a last word before the 101:
    /// once the handshake is authenticated, `admit` is called with who it is,
    /// and either returns what the app keeps for the socket (its revocation
    /// [`Watch`](crate::live::Watch), a per-user slot), or the answer to send
    /// instead of the upgrade (a 429 for a user over a quota, say; boxed, as
    /// it is the rare path). What
    /// `admit` registers is in place before the client can learn that its
    /// socket is open: a logout that comes after the 101 finds it.
    ///
    /// ```no_run
    /// use std::sync::Arc;
    /// use http::{Response, StatusCode};
    /// use tokio::time::Instant;
    /// use ws_token_auth::{Authenticator, Lifecycle, MemoryTokenStore, tungstenite::Acceptor};
    ///
    /// # async fn run(stream: tokio::net::TcpStream) {
    /// let store = Arc::new(MemoryTokenStore::<String>::new());
    /// let lifecycle = Lifecycle::new(Arc::clone(&store));
    /// let acceptor = Acceptor::new(Authenticator::from_shared(store));
    /// let admitted = acceptor
    ///     .accept_admitted(stream, Instant::now() + std::time::Duration::from_secs(10), |identity| {
    ///         match identity.user() {
    ///             Some(user) => Ok(lifecycle.watch(user)), // registered before the 101
    ///             None => Err(Box::new(Response::builder().status(StatusCode::UNAUTHORIZED).body(String::new()).unwrap())),
    ///         }
    ///     })
    ///     .await;
    /// if let Ok((accepted, watch)) = admitted {
    ///     // serve accepted.socket; close it when `watch` resolves
    /// #   let _ = (accepted, watch);
    /// }
    /// # }
    /// ```
    ///
    /// # Errors
    /// As [`accept`](Self::accept); [`HandshakeError::NotAdmitted`] when
    /// `admit` refused (its answer was sent).
    pub async fn accept_admitted<S, T, F>(
        &self,
        mut stream: S,
        deadline: tokio::time::Instant,
        admit: F,
    ) -> Result<(Accepted<S, St::User>, T), HandshakeError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
        F: FnOnce(&Identity<St::User>) -> Result<T, Box<Response<String>>>,
    {
        let started = tokio::time::Instant::now();
        let reading = read_head(&mut stream, self.max_head_bytes, self.max_headers);
        let head = match tokio::time::timeout_at(deadline, reading).await {
            Ok(Ok(head)) => head,
            Ok(Err(error)) => return Err(answer(&mut stream, error).await),
            Err(_elapsed) => return Err(HandshakeError::Timeout(deadline.saturating_duration_since(started))),
        };
        if self.path.as_deref().is_some_and(|path| path != head.uri.path()) {
            return Err(answer(&mut stream, HandshakeError::NotFound).await);
        }
        let accept_key = match check_upgrade(&head.headers) {
            Ok(accept_key) => accept_key,
            Err(error) => return Err(answer(&mut stream, error).await),
        };
        let identity = match self.auth.authenticate(&head.headers, &head.uri).await {
            Ok(identity) => identity,
            Err(rejection) => {
                write_and_close(&mut stream, &self.auth.refusal(&rejection)).await;
                return Err(HandshakeError::Rejected(rejection));
            }
        };
        let kept = match admit(&identity) {
            Ok(kept) => kept,
            Err(refusal) => {
                write_and_close(&mut stream, &refusal).await;
                return Err(HandshakeError::NotAdmitted(refusal.status()));
            }
        };

        let token_prefix = self.auth.extractor().subprotocol_prefix().unwrap_or_default();
        let offered: Vec<&str> = offered_protocols(&head.headers, token_prefix).collect();
        let protocol = self.protocols.iter().find(|p| offered.contains(&p.as_str())).cloned();

        let mut response = String::with_capacity(160);
        response.push_str("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n");
        response.push_str("Sec-WebSocket-Accept: ");
        response.push_str(accept_key.to_str().unwrap_or_default());
        response.push_str("\r\n");
        if let Some(protocol) = &protocol {
            response.push_str("Sec-WebSocket-Protocol: ");
            response.push_str(protocol);
            response.push_str("\r\n");
        }
        let agreed = if self.deflate { deflate::negotiate(&head.headers) } else { None };
        if let Some(agreed) = &agreed {
            response.push_str("Sec-WebSocket-Extensions: ");
            response.push_str(agreed.response().to_str().unwrap_or_default());
            response.push_str("\r\n");
        }
        response.push_str("\r\n");
        stream.write_all(response.as_bytes()).await?;
        stream.flush().await?;

        // Bytes after the head are frames: read through the layer, like the rest.
        let max_message = self.config.max_message_size.unwrap_or(usize::MAX);
        let io = Deflate::with_prefix(stream, head.rest, deflate::Role::Server, agreed, max_message);
        let socket = WebSocketStream::from_raw_socket(io, Role::Server, Some(self.config)).await;
        Ok((Accepted { socket, identity, protocol }, kept))
    }
}

/// Why a handshake was not accepted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The authenticator refused it (its refusal, 401, 400, 403 or 503, was sent).
    #[error("handshake refused")]
    Rejected(#[source] Rejection),
    /// The request is not a WebSocket upgrade (400 was sent); says what is missing.
    #[error("not a WebSocket upgrade request: {0}")]
    NotWebSocket(&'static str),
    /// The request is for another path than [`Acceptor::path`] (404 was sent).
    #[error("no WebSocket endpoint at this path")]
    NotFound,
    /// The client asked for a WebSocket version other than 13 (426 was sent).
    #[error("unsupported WebSocket version")]
    UnsupportedVersion,
    /// The request head is not valid HTTP/1.1 (400 was sent).
    #[error("malformed HTTP request head")]
    MalformedHead,
    /// The request head is larger than the limit, or has more than
    /// [`Acceptor::max_headers`] lines (431 was sent).
    #[error("request head larger than the limit")]
    HeadTooLarge,
    /// The request head did not arrive in time; the stream was dropped.
    #[error("request head not received within {0:?}")]
    Timeout(Duration),
    /// The client closed the connection before the head was complete.
    #[error("connection closed during the handshake")]
    Closed,
    /// The admission check of [`Acceptor::accept_admitted`] refused the
    /// authenticated handshake; its answer, with this status, was sent.
    #[error("handshake not admitted ({0})")]
    NotAdmitted(StatusCode),
    /// Reading or writing the stream failed.
    #[error("I/O error during the handshake")]
    Io(#[from] std::io::Error),
}

impl HandshakeError {
    /// The status sent to the client for this error, if one was.
    #[must_use]
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Self::Rejected(rejection) => Some(rejection.status()),
            Self::NotWebSocket(_) | Self::MalformedHead => Some(StatusCode::BAD_REQUEST),
            Self::UnsupportedVersion => Some(StatusCode::UPGRADE_REQUIRED),
            Self::NotFound => Some(StatusCode::NOT_FOUND),
            Self::HeadTooLarge => Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE),
            Self::NotAdmitted(status) => Some(*status),
            Self::Timeout(_) | Self::Closed | Self::Io(_) => None,
        }
    }

    /// The answer to send for an error the handshake itself found: its
    /// status, bodiless, with `Sec-WebSocket-Version: 13` on a 426 (as RFC
    /// 6455 asks). `None` for a refusal by the authenticator (answer that
    /// with [`Authenticator::refusal`]) or by an admission check (which gave
    /// its own answer), and for errors that send nothing.
    ///
    /// ```
    /// use http::{HeaderMap, StatusCode};
    /// use ws_token_auth::tungstenite::check_upgrade;
    ///
    /// let mut headers = HeaderMap::new();
    /// headers.insert("upgrade", "websocket".parse().unwrap());
    /// headers.insert("connection", "Upgrade".parse().unwrap());
    /// headers.insert("sec-websocket-version", "8".parse().unwrap());
    /// let answer = check_upgrade(&headers).unwrap_err().response().unwrap();
    /// assert_eq!(answer.status(), StatusCode::UPGRADE_REQUIRED);
    /// assert_eq!(answer.headers()["sec-websocket-version"], "13");
    /// ```
    #[must_use]
    pub fn response(&self) -> Option<Response<String>> {
        if matches!(self, Self::Rejected(_) | Self::NotAdmitted(_)) {
            return None;
        }
        let mut response = Response::new(String::new());
        *response.status_mut() = self.status()?;
        if matches!(self, Self::UnsupportedVersion) {
            response.headers_mut().insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        }
        Some(response)
    }
}

/// A parsed request head and the bytes that followed it.
struct Head {
    uri: Uri,
    headers: HeaderMap,
    rest: Vec<u8>,
}

async fn read_head<S: AsyncRead + Unpin>(stream: &mut S, max: usize, lines: usize) -> Result<Head, HandshakeError> {
    let mut buf = Vec::with_capacity(max.min(4096));
    let mut scanned: usize = 0;
    loop {
        // Read at most up to the limit (plus one byte, to tell "full" from "over").
        let room = (max + 1).saturating_sub(buf.len()).min(8192);
        if room == 0 {
            return Err(HandshakeError::HeadTooLarge);
        }
        let start = buf.len();
        // Exactly what this read may fill: the buffer never holds more than
        // the limit (plus one byte), whatever a growth policy would round to.
        buf.reserve_exact(room);
        buf.resize(start + room, 0);
        let n = stream.read(&mut buf[start..]).await?;
        buf.truncate(start + n);
        if n == 0 {
            return Err(HandshakeError::Closed);
        }
        // Parse only once the blank line that ends a head has arrived.
        let from = scanned.saturating_sub(3);
        if !buf[from..].windows(4).any(|w| w == b"\r\n\r\n") {
            scanned = buf.len();
            if buf.len() > max {
                return Err(HandshakeError::HeadTooLarge);
            }
            continue;
        }
        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut slots[..lines]);
        let len = match req.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => {
                scanned = buf.len();
                continue;
            }
            Err(httparse::Error::TooManyHeaders) => return Err(HandshakeError::HeadTooLarge),
            Err(_) => return Err(HandshakeError::MalformedHead),
        };
        if len > max {
            return Err(HandshakeError::HeadTooLarge);
        }
        if req.method != Some("GET") || req.version != Some(1) {
            return Err(HandshakeError::NotWebSocket("not a GET request over HTTP/1.1"));
        }
        let uri: Uri = req.path.unwrap_or("/").parse().map_err(|_| HandshakeError::MalformedHead)?;
        let mut headers = HeaderMap::with_capacity(req.headers.len());
        for header in req.headers.iter() {
            let name = HeaderName::from_bytes(header.name.as_bytes()).map_err(|_| HandshakeError::MalformedHead)?;
            let value = HeaderValue::from_bytes(header.value).map_err(|_| HandshakeError::MalformedHead)?;
            headers.append(name, value);
        }
        let rest = buf.split_off(len);
        return Ok(Head { uri, headers, rest });
    }
}

/// Checks that a request's headers ask for a WebSocket upgrade (`Upgrade:
/// websocket`, `Connection: Upgrade`, version 13, one valid
/// `Sec-WebSocket-Key`) and returns the `Sec-WebSocket-Accept` value to answer
/// with: what a server on hyper (or any HTTP stack that hands over the
/// connection) needs to accept an upgrade that its auth layer let through.
///
/// ```
/// use http::HeaderMap;
/// use ws_token_auth::tungstenite::{HandshakeError, check_upgrade};
///
/// let mut headers = HeaderMap::new();
/// headers.insert("upgrade", "websocket".parse().unwrap());
/// headers.insert("connection", "keep-alive, Upgrade".parse().unwrap());
/// headers.insert("sec-websocket-version", "13".parse().unwrap());
/// headers.insert("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==".parse().unwrap());
/// // RFC 6455's own example.
/// assert_eq!(check_upgrade(&headers).unwrap(), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
///
/// headers.insert("sec-websocket-version", "8".parse().unwrap());
/// assert!(matches!(check_upgrade(&headers), Err(HandshakeError::UnsupportedVersion)));
/// ```
///
/// # Errors
/// [`HandshakeError::NotWebSocket`] (answer 400) or
/// [`HandshakeError::UnsupportedVersion`] (answer 426 with
/// `Sec-WebSocket-Version: 13`).
pub fn check_upgrade(headers: &HeaderMap) -> Result<HeaderValue, HandshakeError> {
    let has_token = |name: HeaderName, token: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    if !has_token(UPGRADE, "websocket") {
        return Err(HandshakeError::NotWebSocket("no `Upgrade: websocket` header"));
    }
    if !has_token(CONNECTION, "upgrade") {
        return Err(HandshakeError::NotWebSocket("no `Connection: Upgrade` header"));
    }
    if headers.get(SEC_WEBSOCKET_VERSION).map(HeaderValue::as_bytes) != Some(b"13") {
        return Err(HandshakeError::UnsupportedVersion);
    }
    let mut keys = headers.get_all(SEC_WEBSOCKET_KEY).iter();
    match (keys.next().map(HeaderValue::to_str), keys.next()) {
        // A key is 16 random bytes in base64: 24 characters ending in "==".
        (Some(Ok(key)), None) if key.len() == 24 && key.ends_with("==") => {
            // Base64 is always a valid header value.
            HeaderValue::from_str(&derive_accept_key(key.as_bytes()))
                .map_err(|_| HandshakeError::NotWebSocket("invalid `Sec-WebSocket-Key`"))
        }
        _ => Err(HandshakeError::NotWebSocket("missing or invalid `Sec-WebSocket-Key`")),
    }
}

/// Writes the answer to `error`, if it has one (then shuts the stream down),
/// and hands `error` back.
async fn answer<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, error: HandshakeError) -> HandshakeError {
    if let Some(response) = error.response() {
        write_and_close(stream, &response).await;
        if matches!(error, HandshakeError::HeadTooLarge) {
            drain(stream).await;
        }
    }
    error
}

/// How long, and how much, a refused client's remaining input is read and
/// thrown away after the answer.
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 256 * 1024;

/// Reads and discards what the client is still sending (the rest of a head
/// that was too large), for a short while and a bounded amount: closing a
/// connection with unread input resets it, and the client would lose the
/// answer before reading it. Nothing read is kept.
async fn drain<S: AsyncRead + Unpin>(stream: &mut S) {
    let mut discard = [0u8; 4096];
    let reading = async {
        let mut total = 0;
        while total < LINGER_BYTES {
            match stream.read(&mut discard).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, reading).await;
}

/// Writes `response` as HTTP/1.1, with its body, and shuts the stream down;
/// errors are ignored, the client may have gone already.
async fn write_and_close<S: AsyncWrite + Unpin>(stream: &mut S, response: &Response<String>) {
    let status = response.status();
    let mut out = format!("HTTP/1.1 {} {}\r\n", status.as_u16(), status.canonical_reason().unwrap_or(""));
    for (name, value) in response.headers() {
        if name == CONTENT_LENGTH || name == CONNECTION {
            continue;
        }
        if let Ok(value) = value.to_str() {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    out.push_str(&format!("Content-Length: {}\r\nConnection: close\r\n\r\n", response.body().len()));
    out.push_str(response.body());
    let write = async {
        stream.write_all(out.as_bytes()).await?;
        stream.shutdown().await
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), write).await;
}
