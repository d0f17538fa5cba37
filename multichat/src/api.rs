//! HTTP: the page, the login API, and the WebSocket endpoint behind
//! `TokenAuthLayer`.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::ws::WebSocketUpgrade;
use axum::http::header::{CONTENT_TYPE, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;
use ws_token_auth::live::Revocations;
use ws_token_auth::live::redis::RevocationBus;
use ws_token_auth::store::{CachedTokenStore, SqlTokenStore};
use ws_token_auth::{AuthenticatedUser, Authenticator, Lifecycle, OriginPolicy};

use super::chat::{Hub, MAX_FRAME_BYTES};
use super::db::{ChatUser, Db, hash_password, verify_password};

/// What the handshakes ask: the token table behind a short cache, so a
/// handshake costs no query when the token was seen in the last 30 s. The
/// lifecycle keeps the cache consistent with every logout and revocation,
/// here and (with Redis) on every process.
pub type Store = CachedTokenStore<SqlTokenStore<ChatUser>>;

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct App {
    pub db: Db,
    pub hub: Arc<Hub>,
    /// Login, logout, revocations, and the open sockets they close.
    pub lifecycle: Lifecycle<Store>,
    /// Checked against when the user does not exist, so that an unknown name
    /// and a wrong password take the same time.
    dummy_hash: Arc<str>,
    secure_cookies: bool,
}

impl App {
    /// One process on its own.
    pub async fn new(db: Db, notices: bool, secure_cookies: bool) -> Result<Self, super::db::Error> {
        let hub = Arc::new(Hub::new(db.rooms().await?, notices, None));
        let lifecycle = Lifecycle::new(Arc::new(CachedTokenStore::new(db.tokens.clone())));
        Self::assemble(db, hub, lifecycle, secure_cookies).await
    }

    /// One of several processes over one database, joined through Redis at
    /// `redis_url`: room frames and revocations reach every process.
    pub async fn with_redis(
        db: Db,
        notices: bool,
        secure_cookies: bool,
        redis_url: &str,
        database_url: &str,
    ) -> Result<Self, super::db::Error> {
        let (rooms_channel, revocations_channel) = super::relay::channels(database_url);
        let bus = RevocationBus::connect(redis_url, revocations_channel).await?;
        let client = redis::Client::open(redis_url)?;
        let publisher = client.get_connection_manager().await?;
        let (relay, outgoing) = tokio::sync::mpsc::unbounded_channel();
        let hub = Arc::new(Hub::new(db.rooms().await?, notices, Some(relay)));
        let node = u64::from_str_radix(&ws_token_auth::Token::generate().id().to_string(), 16)?;
        super::relay::start(client, publisher, rooms_channel, node, Arc::clone(&hub), outgoing);
        let lifecycle = Lifecycle::new(Arc::new(CachedTokenStore::new(db.tokens.clone()))).with_bus(bus);
        Self::assemble(db, hub, lifecycle, secure_cookies).await
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
        Ok(Self { db, hub, lifecycle, dummy_hash, secure_cookies })
    }
}

/// Serves `router` on `listener` over HTTP/1.1 (WebSocket upgrades included)
/// until the task is dropped. A client has `header_timeout` to send a request
/// head (a slowloris connection is closed then), and at most 100 header lines
/// (hyper's limit: more is answered 431).
pub async fn serve(listener: tokio::net::TcpListener, router: Router, header_timeout: std::time::Duration) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            let _ = connection.await;
        });
    }
}

/// The whole HTTP surface; the origin policy guards cookie credentials.
pub fn router(app: App, origin: OriginPolicy) -> Router {
    let auth = Authenticator::from_shared(Arc::clone(app.lifecycle.store())).origin_policy(origin);
    let protected = Router::new()
        .route("/api/logout", post(logout))
        .route("/api/rooms", get(rooms))
        .route("/api/me", get(me))
        .route("/chat/stream/", get(stream))
        .route_layer(auth.layer());
    Router::new().route("/", get(page)).route("/api/login", post(login)).merge(protected).with_state(app)
}

/// The same chat with no authentication at all: the ceiling that the
/// benchmarks compare the real server against (`serve --insecure-no-auth`).
/// The `key` cookie's value is taken as the user's name, unchecked.
pub fn router_without_auth(app: App) -> Router {
    Router::new().route("/chat/stream/", get(stream_without_auth)).with_state(app)
}

async fn stream_without_auth(State(app): State<App>, headers: HeaderMap, upgrade: WebSocketUpgrade) -> Response {
    let name = headers
        .get(axum::http::header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').find_map(|c| c.trim().strip_prefix("key=")))
        .unwrap_or("anonymous");
    let (token, username) = (ws_token_auth::Token::generate(), name.chars().take(12).collect());
    let user = ChatUser { id: 0, username, is_staff: false };
    let user = AuthenticatedUser::new(user, token, ws_token_auth::extract::CredentialKind::Cookie, None);
    let watch = Revocations::new().watch(&user);
    tune(upgrade).on_upgrade(move |socket| app.hub.serve(socket, user, watch))
}

/// Frame limits and buffer sizes for every chat socket. tungstenite
/// zero-fills its whole read buffer before the first read, so the read buffer
/// is resident for every idle socket: axum's default (128 KiB) would cost
/// ~130 KiB per socket. Chat frames are small; a larger one still arrives, in
/// several reads.
fn tune(upgrade: WebSocketUpgrade) -> WebSocketUpgrade {
    upgrade
        .max_message_size(MAX_FRAME_BYTES)
        .max_frame_size(MAX_FRAME_BYTES)
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(0)
}

/// Each socket's read buffer.
const READ_BUFFER_BYTES: usize = 1024;

async fn page() -> Html<&'static str> {
    Html(include_str!("../static/index.html"))
}

#[derive(Deserialize)]
struct Credentials {
    username: String,
    password: String,
}

fn json_response(status: StatusCode, body: serde_json::Value) -> Response {
    (status, [(CONTENT_TYPE, HeaderValue::from_static("application/json"))], body.to_string()).into_response()
}

async fn login(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let form = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let credentials: Option<Credentials> = if form { parse_form(&body) } else { serde_json::from_slice(&body).ok() };
    let Some(Credentials { username, password }) = credentials else {
        return json_response(StatusCode::BAD_REQUEST, json!({"error": "MALFORMED_REQUEST"}));
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
    let matches = tokio::task::spawn_blocking(move || verify_password(&password, &hash)).await.unwrap_or(false);
    let user = match login {
        Some(login) if matches && login.is_active => login,
        _ => return json_response(StatusCode::UNAUTHORIZED, json!({"error": "INVALID_CREDENTIALS"})),
    };
    let token = match app.lifecycle.issue(&user.user(), None).await {
        Ok(token) => token,
        Err(error) => {
            tracing::error!(%error, "login: cannot issue a token");
            return json_response(StatusCode::SERVICE_UNAVAILABLE, json!({"error": "UNAVAILABLE"}));
        }
    };
    let secure = if app.secure_cookies { "; Secure" } else { "" };
    let cookie = format!("key={}; Path=/; HttpOnly; SameSite=Lax{secure}", token.expose_secret());
    let mut response =
        json_response(StatusCode::OK, json!({"username": user.username, "token": token.expose_secret()}));
    if let Ok(cookie) = HeaderValue::from_str(&cookie) {
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

async fn stream(State(app): State<App>, user: AuthenticatedUser<ChatUser>, upgrade: WebSocketUpgrade) -> Response {
    // Registered before the 101 goes out, so a logout cannot slip in between;
    // if the upgrade fails, the watch is dropped and unregistered.
    let watch = app.lifecycle.watch(&user);
    tune(upgrade).on_upgrade(move |socket| app.hub.serve(socket, user, watch))
}
