//! Server-backed stores through the layer during an outage: PostgreSQL and
//! Redis reached through a loopback proxy that the test cuts and restores, and
//! a port where nothing listens. New handshakes get 503 within the store
//! timeout (never an anonymous user), and everything recovers by itself.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::response::Response;
use axum::routing::get;
use common::connect;
use http::StatusCode;
use serde::{Deserialize, Serialize};
use testkit::Proxy;
use ws_token_auth::store::ManageTokens;
use ws_token_auth::store::{RedisTokenStore, SqlTokenStore, UsersTable};
use ws_token_auth::{AuthenticatedUser, Authenticator, Token, TokenStore, TokenUser};

#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow)]
struct User {
    id: i64,
    name: String,
}

impl TokenUser for User {
    type Id = i64;
    fn id(&self) -> i64 {
        self.id
    }
}

async fn ws(_user: AuthenticatedUser<User>, upgrade: WebSocketUpgrade) -> Response {
    upgrade.on_upgrade(|_socket| async {})
}

async fn serve<St: TokenStore<User = User>>(store: St) -> SocketAddr {
    let layer = Authenticator::new(store).store_timeout(Duration::from_secs(1)).layer();
    let app = Router::new().route("/ws", get(ws)).layer(layer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

async fn status(addr: SocketAddr, token: &Token) -> StatusCode {
    connect(addr, &[("cookie", &format!("key={}", token.expose_secret()))]).await.0
}

/// Cuts the proxy, checks 503 within the bound, restores it, checks recovery.
async fn outage_and_recovery(addr: SocketAddr, proxy: &Proxy, token: &Token) {
    assert_eq!(status(addr, token).await, StatusCode::SWITCHING_PROTOCOLS);
    proxy.cut().await;
    for _ in 0..3 {
        let started = Instant::now();
        assert_eq!(status(addr, token).await, StatusCode::SERVICE_UNAVAILABLE, "never anonymous, never 401");
        // 1 s store timeout; the margin is for a loaded machine.
        assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    }
    proxy.restore();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let now = status(addr, token).await;
        if now == StatusCode::SWITCHING_PROTOCOLS {
            break;
        }
        assert_eq!(now, StatusCode::SERVICE_UNAVAILABLE);
        assert!(Instant::now() < deadline, "no recovery within 15 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", &Token::generate().expose_secret()[..10])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_is_503_and_recovers() {
    let url = std::env::var("DATABASE_URL").expect("DATABASE_URL must point at PostgreSQL (.ci/run sets it)");
    let direct = sqlx::PgPool::connect(&url).await.unwrap_or_else(|e| panic!("cannot reach PostgreSQL at {url}: {e}"));
    let (users, tokens) = (unique("outage_users"), unique("outage_tokens"));
    sqlx::raw_sql(&format!(
        "CREATE TABLE {users} (id BIGINT PRIMARY KEY, name TEXT NOT NULL); INSERT INTO {users} VALUES (1, 'alice');"
    ))
    .execute(&direct)
    .await
    .unwrap();
    let store =
        SqlTokenStore::<User>::new(direct.clone(), UsersTable::new(&users).unwrap()).with_table_name(&tokens).unwrap();
    store.migrate().await.unwrap();
    let token = store.issue(&User { id: 1, name: "alice".into() }, None).await.unwrap();

    let proxy = Proxy::start(testkit::host_port(&url, 5432)).await;
    let proxied_url = testkit::through(&url, &proxy, 5432);
    let pool = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(Duration::from_millis(800))
        .connect(&proxied_url)
        .await
        .unwrap();
    let proxied = SqlTokenStore::<User>::new(pool, UsersTable::new(&users).unwrap()).with_table_name(&tokens).unwrap();
    let addr = serve(proxied).await;
    outage_and_recovery(addr, &proxy, &token).await;
    sqlx::raw_sql(&format!("DROP TABLE {tokens}; DROP TABLE {users};")).execute(&direct).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_is_503_and_recovers() {
    let url = std::env::var("REDIS_URL").expect("REDIS_URL must point at Redis (.ci/run sets it)");
    let target = testkit::host_port(&url, 6379);
    let proxy = Proxy::start(target).await;
    let prefix = unique("outage");
    let store = RedisTokenStore::<User>::connect(&format!("redis://{}", proxy.addr), &prefix).await.unwrap();
    let token = store.issue(&User { id: 1, name: "alice".into() }, None).await.unwrap();
    let addr = serve(store).await;
    outage_and_recovery(addr, &proxy, &token).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_is_not_there_is_a_quick_503() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = listener.local_addr().unwrap();
    drop(listener); // nothing listens there now
    let pool = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(Duration::from_millis(500))
        .connect_lazy(&format!("postgres://postgres@{dead}/test"))
        .unwrap();
    let store = SqlTokenStore::<User>::new(pool, UsersTable::new("users").unwrap());
    let addr = serve(store).await;
    let started = Instant::now();
    assert_eq!(status(addr, &Token::generate()).await, StatusCode::SERVICE_UNAVAILABLE);
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
}
