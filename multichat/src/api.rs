//! HTTP: the accept loop, the page, the login API, and the WebSocket
//! endpoint behind `TokenAuthLayer` (or the library's `Acceptor`).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{
    CACHE_CONTROL, CONNECTION, CONTENT_TYPE, RETRY_AFTER, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_EXTENSIONS, SET_COOKIE,
    UPGRADE,
};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::json;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use ws_token_auth::deflate::{self, Deflate};
use ws_token_auth::extract::{DEFAULT_COOKIE_NAME, TokenSource};
use ws_token_auth::live::Revocations;
use ws_token_auth::live::redis::RevocationBus;
use ws_token_auth::store::CachedTokenStore;
use ws_token_auth::tungstenite::{Acceptor, check_upgrade};
use ws_token_auth::{AuthenticatedUser, Authenticator, Identity, Lifecycle, OriginPolicy, Rejection, StoreError};

use super::chat::{Hub, MAX_FRAME_BYTES};
use super::db::{ChatUser, Db, Tokens, hash_password, verify_password};
use super::limits::{Limits, LoginGate, RateLimit, TooMany, UserSocket, UserSockets};

/// What the handshakes ask: the token table behind a short cache, so a
/// handshake costs no query when the token was seen in the last 30 s. The
/// lifecycle keeps the cache consistent with every logout and revocation,
/// here and (with Redis) on every process.
pub type Store = CachedTokenStore<Tokens>;

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct App {
    pub db: Db,
    pub hub: Arc<Hub>,
    /// Login, logout, revocations, and the open sockets they close.
    pub lifecycle: Lifecycle<Store>,
    /// Who a request is; the same decision for handshakes, the API and
    /// in-band refreshes. [`router`] sets its origin policy.
    pub auth: Authenticator<Store>,
    /// Checked against when the user does not exist, so that an unknown name
    /// and a wrong password take the same time.
    dummy_hash: Arc<str>,
    secure_cookies: bool,
    /// What a client is allowed.
    pub limits: Arc<Limits>,
    /// Password checks: bounded, queued, throttled.
    logins: Arc<LoginGate>,
    /// Tokens and tickets issued per user and minute.
    issues: Arc<Issues>,
    /// Open sockets per user.
    pub sockets: Arc<UserSockets>,
    /// Who may log in from a browser (login CSRF); set by [`router`].
    origin: OriginPolicy,
    /// Beside a Django app: the name of Django's session cookie (Django logs
    /// users in and out; login, logout and token routes are not served).
    pub django_session_cookie: Option<String>,
}

impl App {
    /// One process on its own.
    pub async fn new(db: Db, notices: bool, secure_cookies: bool) -> Result<Self, super::db::Error> {
        let hub = Self::hub(&db, notices, None).await?;
        let lifecycle = Lifecycle::new(Arc::new(CachedTokenStore::new(db.tokens.clone())));
        Self::assemble(db, hub, lifecycle, secure_cookies).await
    }

    /// One of several processes over one database, joined through Redis at
    /// `redis_url`: room frames and revocations reach every process. Redis
    /// need not answer now: the process serves its own sockets meanwhile,
    /// and joins the others when Redis answers.
    pub async fn with_redis(
        db: Db,
        notices: bool,
        secure_cookies: bool,
        redis_url: &str,
        database_url: &str,
    ) -> Result<Self, super::db::Error> {
        let (_, revocations_channel) = super::relay::channels(database_url);
        let bus = RevocationBus::new(redis_url, revocations_channel)?;
        let hub = Self::hub(&db, notices, Some((redis_url, database_url))).await?;
        let lifecycle = Lifecycle::new(Arc::new(CachedTokenStore::new(db.tokens.clone()))).with_bus(bus);
        Self::assemble(db, hub, lifecycle, secure_cookies).await
    }

    /// Beside a Django app (`serve --django`): Django's users, DRF tokens and
    /// sessions (`db` from [`Db::open_django`]); Django's changes arrive over
    /// PostgreSQL (the triggers of `django-setup`), and this process's own
    /// over the same channel (a password change: every process asks again
    /// about that user). Without the triggers, the periodic revalidation
    /// bounds the staleness, caches included. With `redis_url`, room frames
    /// cross processes over Redis as without Django.
    pub async fn beside_django(
        db: Db,
        notices: bool,
        secure_cookies: bool,
        redis_url: Option<&str>,
        database_url: &str,
        session_cookie: String,
    ) -> Result<Self, super::db::Error> {
        let super::db::Pool::Postgres(pool) = &db.pool else {
            return Err("--django needs PostgreSQL".into());
        };
        let bus = ws_token_auth::live::postgres::PgBus::new(pool.clone(), ws_token_auth_django::CHANNEL);
        let hub = Self::hub(&db, notices, redis_url.map(|redis_url| (redis_url, database_url))).await?;
        let lifecycle = Lifecycle::new(Arc::new(CachedTokenStore::new(db.tokens.clone()))).with_bus(bus);
        let mut app = Self::assemble(db, hub, lifecycle, secure_cookies).await?;
        app.django_session_cookie = Some(session_cookie);
        Ok(app)
    }

    /// The rooms' hub; with `relay` (Redis's URL, the database's URL), its
    /// frames cross processes over Redis, on a channel named for the
    /// database.
    async fn hub(db: &Db, notices: bool, relay: Option<(&str, &str)>) -> Result<Arc<Hub>, super::db::Error> {
        let Some((redis_url, database_url)) = relay else {
            return Ok(Arc::new(Hub::new(db.rooms().await?, notices, None)));
        };
        let (rooms_channel, _) = super::relay::channels(database_url);
        let client = redis::Client::open(redis_url)?;
        let queue = Arc::new(super::relay::RelayQueue::new(super::relay::QUEUE_BYTES));
        let hub = Arc::new(Hub::new(db.rooms().await?, notices, Some(Arc::clone(&queue))));
        let node = u64::from_str_radix(&ws_token_auth::Token::generate().id().to_string(), 16)?;
        super::relay::start(client, rooms_channel, node, Arc::clone(&hub), queue);
        Ok(hub)
    }

    async fn assemble(
        db: Db,
        hub: Arc<Hub>,
        lifecycle: Lifecycle<Store>,
        secure_cookies: bool,
    ) -> Result<Self, super::db::Error> {
        let dummy_hash =
            tokio::task::spawn_blocking(|| hash_password(&ws_token_auth::Token::generate().expose_secret()[..16]))
                .await??
                .into();
        let limits = Limits::default();
        let logins = Arc::new(LoginGate::new(&limits));
        let (issues, sockets) = (Arc::new(Issues::new(&limits)), Arc::new(UserSockets::new(&limits)));
        let (limits, origin) = (Arc::new(limits), OriginPolicy::same_host());
        // Tickets live in the token database: any process over it redeems them.
        let tickets = Arc::clone(lifecycle.store());
        let lifecycle = lifecycle.warn_before(limits.expiry_warning).tickets(tickets);
        let auth = lifecycle.authenticator().ticket_ttl(limits.ticket_ttl);
        Ok(Self {
            db,
            hub,
            lifecycle,
            auth,
            dummy_hash,
            secure_cookies,
            limits,
            logins,
            issues,
            sockets,
            origin,
            django_session_cookie: None,
        })
    }

    /// The same app with other limits.
    #[must_use]
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.logins = Arc::new(LoginGate::new(&limits));
        self.issues = Arc::new(Issues::new(&limits));
        self.sockets = Arc::new(UserSockets::new(&limits));
        self.lifecycle = self.lifecycle.clone().warn_before(limits.expiry_warning);
        self.auth = self.auth.clone().ticket_ttl(limits.ticket_ttl);
        self.limits = Arc::new(limits);
        self
    }
}

/// Serves `routes` on `listener` over HTTP/1.1 (WebSocket upgrades included)
/// until the task is dropped, within `limits`: a client has
/// `header_timeout` to send a request head (a slowloris connection is closed
/// then) and at most 100 header lines (more is answered 431);
/// past `max_connections` open connections a new one is closed at once; when
/// accepting fails (descriptors ran out), the loop backs off instead of
/// spinning. Each request carries the client's address (`ConnectInfo`).
///
/// A connection whose first request is a handshake for `/chat/stream/` is
/// accepted in its own task by the library's tungstenite [`Acceptor`], with
/// the same authenticator and limits, and becomes the socket; every other
/// connection is served by hyper and the router (where `/chat/stream/` is
/// served too, for a client that opens its socket on a connection it used
/// for another request first).
pub async fn serve(listener: tokio::net::TcpListener, routes: Routes, limits: &Limits) {
    let connections = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let (header_timeout, max_head_bytes) = (limits.header_timeout, limits.max_head_bytes);
    let mut backoff = ACCEPT_BACKOFF_MIN;
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => {
                backoff = ACCEPT_BACKOFF_MIN;
                accepted
            }
            Err(error) => {
                // EMFILE/ENFILE and the like: retrying at once would spin.
                tracing::warn!(%error, ?backoff, "cannot accept a connection; backing off");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&connections).try_acquire_owned() else {
            tracing::debug!(%peer, "connection refused: --max-connections reached");
            drop(stream);
            continue;
        };
        // The connection's slot: a WebSocket takes it along, so the slot is
        // free only once both the HTTP connection and its socket are gone.
        let slot = Slot(Arc::new(permit));
        let _ = stream.set_nodelay(true);
        tokio::spawn(connection(routes.clone(), stream, peer, (header_timeout, max_head_bytes), slot));
    }
}

/// One connection: the chat socket if its first request is for it, else HTTP.
async fn connection(
    routes: Routes,
    stream: TcpStream,
    peer: std::net::SocketAddr,
    (header_timeout, max_head_bytes): (Duration, usize),
    slot: Slot,
) {
    let deadline = Instant::now() + header_timeout;
    if let Some(sockets) = routes.sockets {
        match tokio::time::timeout_at(deadline, opens_chat_stream(&stream)).await {
            Ok(Ok(true)) => {
                if let Some(socket) = sockets.accept(stream, deadline, slot).await {
                    // Its own task, sized for the socket alone (808 bytes, where
                    // this one is sized for a handshake or an HTTP connection).
                    tokio::spawn(socket);
                }
                return;
            }
            Ok(Ok(false)) => {}
            // No request line in time (a slowloris), or the connection broke.
            Ok(Err(_)) | Err(_) => return,
        }
    }
    serve_http(routes.http, stream, peer, (header_timeout, max_head_bytes), slot).await;
}

/// One connection served by hyper and the router.
async fn serve_http(
    router: Router,
    stream: TcpStream,
    peer: std::net::SocketAddr,
    (header_timeout, max_head_bytes): (Duration, usize),
    slot: Slot,
) {
    use hyper_util::rt::TokioTimer;
    use hyper_util::service::TowerToHyperService;
    let request_slot = slot.clone();
    let service = tower::util::MapRequest::new(router, move |mut req: hyper::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        req.extensions_mut().insert(request_slot.clone());
        req
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        // hyper's read buffer: a head that does not fit is answered 431, so a
        // connection that has not finished its head holds no more than this.
        .max_buf_size(max_head_bytes.max(MIN_HEAD_BYTES))
        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
        .with_upgrades();
    let _ = connection.await;
    drop(slot);
}

/// The chat socket's path, written once: a macro, so that the request line
/// below is made from it.
macro_rules! chat_stream_path {
    () => {
        "/chat/stream/"
    };
}
/// Where the chat socket is served (PROTOCOL.md).
const CHAT_STREAM_PATH: &str = chat_stream_path!();
/// The request line that [`serve`] hands to the chat socket's acceptor.
const CHAT_STREAM_REQUEST: &[u8] = concat!("GET ", chat_stream_path!()).as_bytes();

/// Whether the connection's first request is for the chat socket: looks at
/// its first bytes without taking them, so that either handler reads the
/// whole request. A client that sends its request line a few bytes at a time
/// is looked at again after a short, growing pause; one that stops, or
/// closes, within its request line is held until the caller's deadline, like
/// one that sends nothing.
async fn opens_chat_stream(stream: &TcpStream) -> std::io::Result<bool> {
    let mut first = [0u8; CHAT_STREAM_REQUEST.len() + 1];
    let mut pause = Duration::from_millis(1);
    loop {
        let seen = stream.peek(&mut first).await?;
        let compared = seen.min(CHAT_STREAM_REQUEST.len());
        if seen == 0 || first[..compared] != CHAT_STREAM_REQUEST[..compared] {
            return Ok(false);
        }
        if seen > CHAT_STREAM_REQUEST.len() {
            // `/chat/stream/` itself, not a longer path.
            return Ok(matches!(first[CHAT_STREAM_REQUEST.len()], b' ' | b'?'));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// What [`serve`] answers: the router, and with authentication, the chat
/// socket accepted straight from the connection.
#[derive(Debug, Clone)]
pub struct Routes {
    http: Router,
    sockets: Option<Arc<ChatSockets>>,
}

impl Routes {
    /// The router alone (`/chat/stream/` included), for `axum::serve`.
    pub fn into_router(self) -> Router {
        self.http
    }
}

/// The chat socket without hyper: the handshake read, authenticated and
/// answered by the library's [`Acceptor`] in the connection's own task.
#[derive(Debug)]
struct ChatSockets {
    acceptor: Acceptor<Store>,
    hub: Arc<Hub>,
    lifecycle: Lifecycle<Store>,
    auth: Authenticator<Store>,
    sockets: Arc<UserSockets>,
}

/// A bodiless answer to a handshake, with `Retry-After` when given.
fn refused(status: StatusCode, retry_after: Option<u64>) -> axum::http::Response<String> {
    let mut response = axum::http::Response::new(String::new());
    *response.status_mut() = status;
    if let Some(secs) = retry_after {
        response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

/// The 429 for a user at its socket cap (PROTOCOL.md: `--max-sockets-per-user`).
fn too_many_sockets(
    TooMany { retry_after }: TooMany,
    user: &AuthenticatedUser<ChatUser>,
) -> axum::http::Response<String> {
    tracing::info!(user = user.user.id, "handshake refused: the user holds its socket cap");
    let mut response = refused(StatusCode::TOO_MANY_REQUESTS, Some(retry_after));
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    *response.body_mut() = json!({"error": "TOO_MANY_REQUESTS"}).to_string();
    response
}

impl ChatSockets {
    /// Accepts the handshake on a connection whose first request is for
    /// `/chat/stream/`, and returns the socket's future to run; a refused
    /// handshake has been answered by the acceptor.
    async fn accept(
        self: Arc<Self>,
        stream: TcpStream,
        deadline: Instant,
        slot: Slot,
    ) -> Option<impl std::future::Future<Output = ()> + Send + 'static> {
        // Admitted before the 101: the user's socket count and the watch are
        // in place before the client can know its socket is open. (A logout
        // between the check and this registration still closes the socket:
        // the registry remembers recent revocations.)
        let admit = |identity: &Identity<ChatUser>| {
            // The acceptor's authenticator requires a user: anonymous is refused.
            let Identity::User(user) = identity else {
                return Err(Box::new(refused(StatusCode::UNAUTHORIZED, None)));
            };
            let held = self.sockets.open(user.user.id).map_err(|busy| Box::new(too_many_sockets(busy, user)))?;
            Ok((held, self.lifecycle.watch(user)))
        };
        let (accepted, (held, watch)) = self.acceptor.accept_admitted(stream, deadline, admit).await.ok()?;
        let Identity::User(user) = accepted.identity else { return None };
        Some(Arc::clone(&self.hub).serve(accepted.socket, user, watch, self.auth.clone(), (slot, held)))
    }
}

/// The smallest head bound hyper takes (`--max-head-bytes` is at least this).
pub const MIN_HEAD_BYTES: usize = 8192;
/// hyper's own bound on header lines.
const MAX_HEADER_LINES: usize = 100;

/// What each user may be issued a minute.
#[derive(Debug)]
struct Issues {
    tokens: RateLimit<i64>,
    tickets: RateLimit<i64>,
}

impl Issues {
    fn new(limits: &Limits) -> Self {
        let (max, minute) = (limits.max_issues_per_minute, Duration::from_secs(60));
        Self { tokens: RateLimit::new(max, minute), tickets: RateLimit::new(max, minute) }
    }
}

/// One of `--max-connections` slots, held by a connection and by the
/// WebSocket it became.
#[derive(Debug, Clone)]
struct Slot(#[allow(dead_code)] Arc<tokio::sync::OwnedSemaphorePermit>);

const ACCEPT_BACKOFF_MIN: std::time::Duration = std::time::Duration::from_millis(5);
const ACCEPT_BACKOFF_MAX: std::time::Duration = std::time::Duration::from_secs(1);

/// The whole HTTP surface; the origin policy guards cookie credentials.
pub fn router(mut app: App, origin: OriginPolicy) -> Routes {
    app.origin = origin.clone();
    // Tokens first; beside Django, its session cookie after them.
    let mut credentials =
        vec![TokenSource::cookie(DEFAULT_COOKIE_NAME), TokenSource::authorization(["Token", "Bearer"])];
    if let Some(session) = &app.django_session_cookie {
        credentials.push(TokenSource::cookie(session.clone()));
    }
    app.auth = app.auth.clone().origin_policy(origin).sources(credentials.clone());
    let auth = app.auth.clone();
    // The socket also takes a connect ticket (only there: a ticket
    // authenticates no API call), tried last: a handshake that carries a
    // token is authenticated by it, and its ticket is left unused.
    let stream_auth = auth.clone().sources(credentials.into_iter().chain([TokenSource::ticket("ticket")]));
    let mut api = Router::new();
    if app.django_session_cookie.is_none() {
        // Beside Django, Django logs users in and out (404 here).
        api = api.route("/api/logout", post(logout)).route("/api/token", post(new_token));
    }
    let api = api
        .route("/api/ticket", post(new_ticket))
        .route("/api/rooms", get(rooms))
        .route("/api/me", get(me))
        .route_layer(auth.clone().layer());
    let api = if app.django_session_cookie.is_none() { api.route("/api/login", post(login)) } else { api };
    let api = api.layer(axum::middleware::map_response(no_store));
    let chat = Router::new().route(CHAT_STREAM_PATH, get(stream)).route_layer(stream_auth.clone().layer());
    let acceptor = Acceptor::new(stream_auth)
        .path(CHAT_STREAM_PATH)
        .max_head_bytes(app.limits.max_head_bytes)
        .head_timeout(app.limits.header_timeout)
        .max_headers(MAX_HEADER_LINES)
        .websocket_config(socket_config())
        .permessage_deflate(true);
    let sockets = ChatSockets {
        acceptor,
        hub: Arc::clone(&app.hub),
        lifecycle: app.lifecycle.clone(),
        auth: auth.clone(),
        sockets: Arc::clone(&app.sockets),
    };
    let http = Router::new().route("/", get(page)).route("/app.js", get(script)).merge(api).merge(chat).with_state(app);
    Routes { http, sockets: Some(Arc::new(sockets)) }
}

/// No API answer is kept by a cache on the way (tokens are in them).
async fn no_store(mut response: Response) -> Response {
    response.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The same chat with no authentication at all: the ceiling that the
/// benchmarks compare the real server against (`serve --insecure-no-auth`).
/// The `key` cookie's value is taken as the user's name, unchecked.
pub fn router_without_auth(app: App) -> Routes {
    Routes { http: Router::new().route(CHAT_STREAM_PATH, get(stream_without_auth)).with_state(app), sockets: None }
}

async fn stream_without_auth(State(app): State<App>, request: Request) -> Response {
    let name = request
        .headers()
        .get(axum::http::header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').find_map(|c| c.trim().strip_prefix("key=")))
        .unwrap_or("anonymous");
    let (token, username) = (ws_token_auth::Token::generate(), name.chars().take(12).collect());
    let user = ChatUser { id: 0, username, is_staff: false };
    let user = AuthenticatedUser::new(user, token, ws_token_auth::extract::CredentialKind::Cookie, None);
    let watch = Revocations::new().watch(&user);
    upgrade(request, move |socket| app.hub.serve(socket, user, watch, app.auth, ()))
}

/// Frame limits and buffer sizes for every chat socket. tungstenite
/// zero-fills its whole read buffer before the first read, so the read buffer
/// is resident for every idle socket: tungstenite's default (128 KiB) would
/// cost ~130 KiB per socket. Chat frames are small; a larger one still
/// arrives, in several reads.
///
/// The write buffer is bounded like the socket's queue: tungstenite answers
/// pings by itself, into this buffer, and a client that pings and never
/// reads would grow it without limit (the reader also counts each answer
/// toward the socket's queue, which drops such a client).
fn socket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MAX_FRAME_BYTES))
        .max_frame_size(Some(MAX_FRAME_BYTES))
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BUFFER_BYTES)
        .max_write_buffer_size(super::chat::QUEUE_BYTES)
}

/// Accepts a WebSocket handshake that reached the router: answers 101 and
/// runs `serve` on the socket once hyper hands the connection over, or
/// answers why the request is no handshake (405, 400, 426).
fn upgrade<F, Fut>(mut request: Request, serve: F) -> Response
where
    F: FnOnce(WebSocketStream<Deflate<TokioIo<hyper::upgrade::Upgraded>>>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    if request.method() != Method::GET {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    let accept = match check_upgrade(request.headers()) {
        Ok(accept) if request.version() == Version::HTTP_11 => accept,
        Ok(_) => return StatusCode::BAD_REQUEST.into_response(),
        Err(error) => {
            let answer = error.response().map(|answer| answer.map(Body::from).into_response());
            return answer.unwrap_or_else(|| StatusCode::BAD_REQUEST.into_response());
        }
    };
    // permessage-deflate, as the acceptor's path offers it.
    let agreed = deflate::negotiate(request.headers());
    let on_upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        if let Ok(upgraded) = on_upgrade.await {
            let io = Deflate::new(TokioIo::new(upgraded), deflate::Role::Server, agreed, MAX_FRAME_BYTES);
            let socket = WebSocketStream::from_raw_socket(io, Role::Server, Some(socket_config())).await;
            serve(socket).await;
        }
    });
    let headers = [
        (CONNECTION, HeaderValue::from_static("upgrade")),
        (UPGRADE, HeaderValue::from_static("websocket")),
        (SEC_WEBSOCKET_ACCEPT, accept),
    ];
    let mut response = (StatusCode::SWITCHING_PROTOCOLS, headers).into_response();
    if let Some(agreed) = agreed {
        response.headers_mut().insert(SEC_WEBSOCKET_EXTENSIONS, agreed.response());
    }
    response
}

/// Each socket's read buffer.
const READ_BUFFER_BYTES: usize = 1024;
/// How much of a batch of frames is gathered before it is written: the
/// writer feeds all that is queued, then flushes once (the buffer grows only
/// as far as a batch needs).
const WRITE_BUFFER_BYTES: usize = 16 * 1024;

/// The page's policy: scripts and connections from its own origin only, no
/// framing.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; connect-src 'self'; \
    style-src 'self' 'unsafe-inline'; img-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
    frame-ancestors 'none'";

fn static_file(content_type: &'static str, body: &'static str) -> Response {
    let headers = [
        (CONTENT_TYPE, HeaderValue::from_static(content_type)),
        (HeaderName::from_static("content-security-policy"), HeaderValue::from_static(CONTENT_SECURITY_POLICY)),
        (HeaderName::from_static("x-content-type-options"), HeaderValue::from_static("nosniff")),
        (HeaderName::from_static("referrer-policy"), HeaderValue::from_static("no-referrer")),
    ];
    (headers, body).into_response()
}

async fn page() -> Response {
    static_file("text/html; charset=utf-8", include_str!("../static/index.html"))
}

async fn script() -> Response {
    static_file("text/javascript; charset=utf-8", include_str!("../static/app.js"))
}

#[derive(Deserialize)]
struct Credentials {
    username: String,
    password: String,
}

fn json_response(status: StatusCode, body: serde_json::Value) -> Response {
    (status, [(CONTENT_TYPE, HeaderValue::from_static("application/json"))], body.to_string()).into_response()
}

fn too_many(TooMany { retry_after }: TooMany) -> Response {
    let mut response = json_response(StatusCode::TOO_MANY_REQUESTS, json!({"error": "TOO_MANY_REQUESTS"}));
    response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(retry_after));
    response
}

/// The whole body, or the answer to give when it is not complete within the
/// body timeout (408, and the connection closed) or is too large (413).
async fn read_body(body: Body, limits: &Limits) -> Result<Bytes, Response> {
    match tokio::time::timeout(limits.body_timeout, axum::body::to_bytes(body, MAX_BODY_BYTES)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(_)) => Err(json_response(StatusCode::PAYLOAD_TOO_LARGE, json!({"error": "MALFORMED_REQUEST"}))),
        Err(_elapsed) => {
            let mut response = json_response(StatusCode::REQUEST_TIMEOUT, json!({"error": "REQUEST_TIMEOUT"}));
            response.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
            Err(response)
        }
    }
}

/// The request body's media type, lowercased, without parameters (`""` when none).
fn media_type(headers: &HeaderMap) -> String {
    let value = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    value.split(';').next().unwrap_or("").trim().to_ascii_lowercase()
}

fn unsupported_media_type() -> Response {
    json_response(StatusCode::UNSUPPORTED_MEDIA_TYPE, json!({"error": "UNSUPPORTED_MEDIA_TYPE"}))
}

/// The largest request body the API reads.
const MAX_BODY_BYTES: usize = 16 * 1024;

async fn login(State(app): State<App>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let headers = &parts.headers;
    // Login CSRF: a cross-site form must not sign a browser into another account.
    if let Err(error) = app.origin.check_request(headers, &parts.uri) {
        tracing::info!(%error, "login refused: origin");
        return json_response(StatusCode::FORBIDDEN, json!({"error": "ORIGIN_REFUSED"}));
    }
    let form = match media_type(headers).as_str() {
        "application/json" => false,
        "application/x-www-form-urlencoded" => true,
        _ => return unsupported_media_type(),
    };
    let body = match read_body(body, &app.limits).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let credentials: Option<Credentials> = if form { parse_form(&body) } else { serde_json::from_slice(&body).ok() };
    let Some(Credentials { username, password }) = credentials else {
        return json_response(StatusCode::BAD_REQUEST, json!({"error": "MALFORMED_REQUEST"}));
    };
    let ip = parts.extensions.get::<ConnectInfo<std::net::SocketAddr>>().map_or([0u8; 4].into(), |c| c.0.ip());
    // Counted from here until known: a burst is checked no more than the limit allows.
    let attempt = match app.logins.throttled(ip, &username) {
        Ok(attempt) => attempt,
        Err(throttled) => return too_many(throttled),
    };
    let login = match app.db.login(&username).await {
        Ok(login) => login,
        Err(error) => {
            tracing::error!(%error, "login: database error");
            return json_response(StatusCode::SERVICE_UNAVAILABLE, json!({"error": "UNAVAILABLE"}));
        }
    };
    let hash: Arc<str> =
        login.as_ref().map_or_else(|| Arc::clone(&app.dummy_hash), |l| l.password_hash.as_str().into());
    let matches = match app.logins.check(move || verify_password(&password, &hash)).await {
        Ok(matches) => matches,
        Err(busy) => return too_many(busy),
    };
    let user = match login {
        Some(login) if matches && login.is_active => login,
        _ => {
            attempt.failed();
            return json_response(StatusCode::UNAUTHORIZED, json!({"error": "INVALID_CREDENTIALS"}));
        }
    };
    drop(attempt);
    let token = match app.lifecycle.issue(&user.user(), Some(app.limits.login_token_ttl)).await {
        Ok(token) => token,
        // Deactivated since the password was checked: as a wrong password.
        Err(StoreError::LockedOut) => {
            return json_response(StatusCode::UNAUTHORIZED, json!({"error": "INVALID_CREDENTIALS"}));
        }
        Err(error) => {
            tracing::error!(%error, "login: cannot issue a token");
            return json_response(StatusCode::SERVICE_UNAVAILABLE, json!({"error": "UNAVAILABLE"}));
        }
    };
    let mut response =
        json_response(StatusCode::OK, json!({"username": user.username, "token": token.expose_secret()}));
    if let Ok(cookie) = HeaderValue::from_str(&session_cookie(&app, &token)) {
        response.headers_mut().insert(SET_COOKIE, cookie);
    }
    response
}

/// `username=...&password=...`, percent-decoded.
fn parse_form(body: &[u8]) -> Option<Credentials> {
    let (mut username, mut password) = (None, None);
    for (key, value) in form_urlencoded::parse(body) {
        match &*key {
            "username" => username = Some(value.into_owned()),
            "password" => password = Some(value.into_owned()),
            _ => {}
        }
    }
    Some(Credentials { username: username?, password: password? })
}

async fn logout(State(app): State<App>, user: AuthenticatedUser<ChatUser>) -> Response {
    if let Err(error) = app.lifecycle.revoke(user.token()).await {
        tracing::error!(token_id = %user.token_id(), %error, "logout: cannot revoke the token");
        return json_response(StatusCode::SERVICE_UNAVAILABLE, json!({"error": "UNAVAILABLE"}));
    }
    let clear = HeaderValue::from_static("key=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax");
    (StatusCode::NO_CONTENT, [(SET_COOKIE, clear)]).into_response()
}

/// `POST /api/token`: a fresh token for the same user, for a client whose
/// token expires soon; optional JSON body `{"ttl": SECS}` (an object with no
/// other member). The caller's token is confirmed by the token table itself,
/// never only the cache: a token revoked on another process mints nothing.
async fn new_token(State(app): State<App>, user: AuthenticatedUser<ChatUser>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = match read_body(body, &app.limits).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let most = app.limits.login_token_ttl;
    let ttl = if body.is_empty() {
        most
    } else {
        if media_type(&parts.headers) != "application/json" {
            return unsupported_media_type();
        }
        match asked_ttl(&body, most) {
            Ok(ttl) => ttl,
            Err(error) => return json_response(StatusCode::BAD_REQUEST, json!({ "error": error })),
        }
    };
    if let Err(busy) = app.issues.tokens.take(&user.user.id) {
        return too_many(busy);
    }
    let token = match app.lifecycle.issue_from(&user, Some(ttl)).await {
        Ok(token) => token,
        Err(rejection) => return refusal(&app, &rejection, "token"),
    };
    let mut response =
        json_response(StatusCode::OK, json!({"token": token.expose_secret(), "expires_in": ttl.as_secs()}));
    if let Ok(cookie) = HeaderValue::from_str(&session_cookie(&app, &token)) {
        response.headers_mut().insert(SET_COOKIE, cookie);
    }
    response
}

/// The lifetime a `POST /api/token` body asks for: `{}` or `{"ttl": SECS}`
/// with 0 < SECS <= `most`. Anything else is the error of a 400: another
/// JSON value or member (`5`, `[..]`, `{"TTL": 5}`) is `MALFORMED_REQUEST`,
/// a `ttl` out of range or not a whole number `INVALID_TTL`.
fn asked_ttl(body: &[u8], most: Duration) -> Result<Duration, &'static str> {
    let Ok(serde_json::Value::Object(asked)) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Err("MALFORMED_REQUEST");
    };
    if asked.keys().any(|key| key != "ttl") {
        return Err("MALFORMED_REQUEST");
    }
    match asked.get("ttl").map(|ttl| ttl.as_u64().filter(|s| *s > 0 && *s <= most.as_secs())) {
        None => Ok(most),
        Some(Some(secs)) => Ok(Duration::from_secs(secs)),
        Some(None) => Err("INVALID_TTL"),
    }
}

/// The answer when minting was refused: the authenticator's own refusal for
/// a token the store no longer accepts (401), 503 for an outage.
fn refusal(app: &App, rejection: &Rejection, what: &str) -> Response {
    match rejection {
        Rejection::StoreUnavailable(error) => {
            tracing::error!(%error, "{what}: the token store failed");
            json_response(StatusCode::SERVICE_UNAVAILABLE, json!({"error": "UNAVAILABLE"}))
        }
        other => app.auth.refusal(other).map(Body::from).into_response(),
    }
}

/// `POST /api/ticket`: a single-use connect ticket bound to the caller's
/// token, for `GET /chat/stream/?ticket=...`; the token is confirmed by the
/// token table itself first.
async fn new_ticket(State(app): State<App>, user: AuthenticatedUser<ChatUser>) -> Response {
    if let Err(busy) = app.issues.tickets.take(&user.user.id) {
        return too_many(busy);
    }
    let ticket = match app.auth.issue_ticket(&user).await {
        Ok(ticket) => ticket,
        Err(rejection) => return refusal(&app, &rejection, "ticket"),
    };
    // The configured lifetime, or less when the token expires sooner.
    let left = ticket.expires_in().as_millis().div_ceil(1000);
    let expires_in = u128::from(app.limits.ticket_ttl.as_secs()).min(left);
    json_response(StatusCode::OK, json!({"ticket": ticket.expose_secret(), "expires_in": expires_in}))
}

/// The `key` cookie for `token`, as login sets it.
fn session_cookie(app: &App, token: &ws_token_auth::Token) -> String {
    let secure = if app.secure_cookies { "; Secure" } else { "" };
    format!("key={}; Path=/; HttpOnly; SameSite=Lax{secure}", token.expose_secret())
}

async fn rooms(State(app): State<App>, user: AuthenticatedUser<ChatUser>) -> Response {
    match app.db.rooms().await {
        Ok(rooms) => {
            let visible: Vec<_> = rooms
                .into_iter()
                .filter(|room| !room.staff_only || user.user.is_staff)
                .map(|room| json!({"id": room.id.to_string(), "title": room.title, "staff_only": room.staff_only}))
                .collect();
            json_response(StatusCode::OK, json!(visible))
        }
        Err(error) => {
            tracing::error!(%error, "rooms: database error");
            json_response(StatusCode::SERVICE_UNAVAILABLE, json!({"error": "UNAVAILABLE"}))
        }
    }
}

async fn me(user: AuthenticatedUser<ChatUser>) -> Response {
    json_response(StatusCode::OK, json!({"username": user.user.username, "is_staff": user.user.is_staff}))
}

/// `/chat/stream/` through the router: a socket opened on a connection that
/// served another request first (most are accepted by [`ChatSockets`]).
async fn stream(
    State(app): State<App>,
    user: AuthenticatedUser<ChatUser>,
    slot: Option<axum::Extension<Slot>>,
    request: Request,
) -> Response {
    let held: UserSocket = match app.sockets.open(user.user.id) {
        Ok(held) => held,
        Err(busy) => return too_many_sockets(busy, &user).map(Body::from).into_response(),
    };
    // Registered before the 101 goes out, so a logout cannot slip in between;
    // if the upgrade fails, the watch is dropped and unregistered.
    let watch = app.lifecycle.watch(&user);
    // Only what the socket needs is kept for its lifetime (not the whole App):
    // every byte of this future is held by every open socket.
    let (hub, auth) = (app.hub, app.auth);
    upgrade(request, move |socket| hub.serve(socket, user, watch, auth, (slot, held)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// What `opens_chat_stream` says of a connection on which the client sent
    /// `pieces`, a few milliseconds apart (then kept it open, or closed it).
    async fn first_request(pieces: &[&str], close: bool) -> bool {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let pieces: Vec<String> = pieces.iter().map(|piece| piece.to_string()).collect();
        // Sent while the server looks.
        let client = tokio::spawn(async move {
            for piece in pieces {
                client.write_all(piece.as_bytes()).await.unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            if close { None } else { Some(client) }
        });
        let seen = tokio::time::timeout(Duration::from_secs(5), opens_chat_stream(&server)).await;
        drop(client.await.unwrap());
        seen.expect("no answer within 5 s").unwrap()
    }

    #[tokio::test]
    async fn only_the_chat_socket_s_own_request_line_goes_to_the_acceptor() {
        assert!(first_request(&["GET /chat/stream/ HTTP/1.1\r\n"], false).await);
        assert!(first_request(&["GET /chat/stream/?ticket=t HTTP/1.1\r\n"], false).await);
        assert!(first_request(&["GE", "T /chat/", "stream", "/ HTTP/1.1\r\n"], false).await, "trickled");
        for other in
            ["GET /chat/streams/ HTTP/1.1\r\n", "GET /chat/stream/x HTTP/1.1\r\n", "POST /chat/stream/ HTTP/1.1\r\n"]
        {
            assert!(!first_request(&[other], false).await, "{other:?}");
        }
        assert!(!first_request(&["GET / HTTP/1.1\r\n"], false).await);
        assert!(!first_request(&[], true).await, "closed at once");
    }
}
