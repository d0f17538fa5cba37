//! PROTOCOL.md, "Connect tickets": `POST /api/ticket` and
//! `GET /chat/stream/?ticket=...`, over real sockets; in one process over a
//! temporary SQLite file and over the machine's PostgreSQL (`DATABASE_URL`),
//! then across two `multichat serve` processes over one database, with and
//! without `--redis-url` (`REDIS_URL`), their debug logs read for secrets.

mod common;

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use multichat::api::App;
use multichat::db::Db;
use multichat::limits::Limits;
use serde_json::{Value, json};
use testkit::{Socket, close_code, next_json, send_json};
use tokio::io::AsyncReadExt;
use ws_token_auth::Token;

#[derive(Clone, Copy, Debug)]
enum Backend {
    Sqlite,
    Postgres,
}

struct Chat {
    addr: SocketAddr,
    app: App,
}

async fn chat(backend: Backend, limits: Limits) -> Chat {
    let url = match backend {
        Backend::Sqlite => common::temp_sqlite("multichat-tickets").0,
        Backend::Postgres => {
            std::env::var("DATABASE_URL").expect("DATABASE_URL must point at PostgreSQL (.ci/run sets it)")
        }
    };
    let db = Db::open(&url).await.unwrap_or_else(|e| panic!("cannot open {url}: {e}"));
    let app = App::new(db, false, false).await.unwrap().with_limits(limits);
    Chat { addr: common::serve_app(app.clone()).await, app }
}

impl Chat {
    /// A new user (unique name: PostgreSQL is shared by every test) and a token of theirs.
    async fn user(&self, ttl: Option<Duration>) -> (String, String) {
        let name = format!("t_{}", &Token::generate().expose_secret()[..10]);
        let id = self.app.db.create_user(&name, "no-login", false).await.unwrap();
        (name, self.app.db.issue_token(id, ttl).await.unwrap().expose_secret().to_owned())
    }
}

/// `POST /api/ticket` with these headers: the status, the head and the JSON body.
async fn post_ticket(addr: SocketAddr, headers: &[(&str, &str)]) -> (u16, String, Value) {
    let (status, head, body) = common::http(addr, "POST", "/api/ticket", headers, "").await;
    (status, head, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// A ticket for `token`, asked as a native client does (`Authorization`).
async fn ticket(addr: SocketAddr, token: &str) -> String {
    let (status, _, body) = post_ticket(addr, &[("authorization", &format!("Token {token}"))]).await;
    assert_eq!(status, 200, "{body}");
    body["ticket"].as_str().expect("a ticket").to_owned()
}

/// The handshake on `/chat/stream/` followed by `query`.
async fn handshake(
    addr: SocketAddr,
    query: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, http::HeaderMap, Option<Socket>) {
    testkit::handshake(&format!("ws://{addr}/chat/stream/{query}"), headers).await
}

async fn status(addr: SocketAddr, query: &str, headers: &[(&str, &str)]) -> u16 {
    handshake(addr, query, headers).await.0.as_u16()
}

/// Joins room 1 and says something: the name the room sees.
async fn speaks_as(socket: &mut Socket) -> Value {
    send_json(socket, json!({"command": "join", "room": "1"})).await;
    assert_eq!(next_json(socket).await["join"], "1");
    send_json(socket, json!({"command": "send", "room": "1", "message": "hello"})).await;
    next_json(socket).await["username"].clone()
}

async fn a_ticket_opens_one_socket_as_its_user(backend: Backend) {
    let chat = chat(backend, Limits::default()).await;
    let (name, token) = chat.user(None).await;
    let (code, head, body) = post_ticket(chat.addr, &[("authorization", &format!("Bearer {token}"))]).await;
    assert_eq!((code, &body["expires_in"]), (200, &json!(30)), "{body}");
    assert!(head.to_ascii_lowercase().contains("cache-control: no-store"), "{head}");
    let ticket = body["ticket"].as_str().unwrap();
    assert_ne!(ticket, token);

    let query = format!("?ticket={ticket}");
    let (code, _, socket) = handshake(chat.addr, &query, &[]).await;
    assert_eq!(code, StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(speaks_as(&mut socket.unwrap()).await, json!(name));
    let (code, headers, _) = handshake(chat.addr, &query, &[]).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED, "a used ticket");
    assert!(headers.contains_key("www-authenticate"));
}

async fn a_ticket_is_no_token_and_a_token_no_ticket(backend: Backend) {
    let chat = chat(backend, Limits::default()).await;
    let (name, token) = chat.user(None).await;
    let ticket = ticket(chat.addr, &token).await;
    let addr = chat.addr;
    assert_eq!(status(addr, "", &[("cookie", &format!("key={ticket}"))]).await, 401, "a ticket as the cookie");
    assert_eq!(status(addr, "", &[("authorization", &format!("Token {ticket}"))]).await, 401);
    assert_eq!(status(addr, "", &[("authorization", &format!("Bearer {ticket}"))]).await, 401);
    assert_eq!(status(addr, &format!("?ticket={token}"), &[]).await, 401, "a token as a ticket");
    assert_eq!(status(addr, &format!("?key={token}"), &[]).await, 401, "no token in the query string");
    assert_eq!(status(addr, &format!("?token={token}"), &[]).await, 401, "no token in the query string");
    let (code, _, _) = common::http(addr, "GET", "/api/me", &[("authorization", &format!("Token {ticket}"))], "").await;
    assert_eq!(code, 401, "a ticket authenticates no API call");
    let (code, _, _) = common::http(addr, "POST", &format!("/api/ticket?ticket={ticket}"), &[], "").await;
    assert_eq!(code, 401, "not even a ticket's");

    // A cookie beside the ticket authenticates; the ticket is not used up.
    let query = format!("?ticket={ticket}");
    assert_eq!(status(addr, &query, &[("cookie", &format!("key={token}"))]).await, 101);
    let (code, _, socket) = handshake(addr, &query, &[]).await;
    assert_eq!(code, 101, "the ticket survived every misuse above");
    assert_eq!(speaks_as(&mut socket.unwrap()).await, json!(name));
}

async fn the_socket_lives_by_the_token_that_asked(backend: Backend) {
    let chat = chat(backend, Limits { expiry_warning: Duration::from_secs(1), ..Limits::default() }).await;
    let addr = chat.addr;
    let (_, token) = chat.user(None).await;
    let (used, spare) = (ticket(addr, &token).await, ticket(addr, &token).await);
    let (code, _, socket) = handshake(addr, &format!("?ticket={used}"), &[]).await;
    assert_eq!(code, 101);
    let mut socket = socket.unwrap();
    let (code, _, _) =
        common::http(addr, "POST", "/api/logout", &[("authorization", &format!("Token {token}"))], "").await;
    assert_eq!(code, 204);
    assert_eq!(close_code(&mut socket, Duration::from_secs(1)).await, Some(4401), "logout closes the ticket's socket");
    assert_eq!(status(addr, &format!("?ticket={spare}"), &[]).await, 401, "the token's unused ticket is void");

    // Its expiry (and the warning before it) apply, and a refresh outlives it.
    let (_, short) = chat.user(Some(Duration::from_secs(2))).await;
    let (code, _, socket) = handshake(addr, &format!("?ticket={}", ticket(addr, &short).await), &[]).await;
    assert_eq!(code, 101);
    let mut expiring = socket.unwrap();
    let (code, _, socket) = handshake(addr, &format!("?ticket={}", ticket(addr, &short).await), &[]).await;
    assert_eq!(code, 101);
    let mut refreshed = socket.unwrap();
    assert_eq!(next_json(&mut expiring).await["auth"], "expiring");
    assert_eq!(next_json(&mut refreshed).await["auth"], "expiring");
    let (code, _, body) =
        common::http(addr, "POST", "/api/token", &[("authorization", &format!("Token {short}"))], "").await;
    assert_eq!(code, 200, "{body}");
    let fresh: Value = serde_json::from_str(&body).unwrap();
    send_json(&mut refreshed, json!({"command": "refresh", "token": fresh["token"]})).await;
    let reply = next_json(&mut refreshed).await;
    assert_eq!(reply["auth"], "refreshed", "{reply}");
    assert_eq!(close_code(&mut expiring, Duration::from_secs(3)).await, Some(4401), "closed at its token's expiry");
    tokio::time::sleep(Duration::from_millis(500)).await;
    send_json(&mut refreshed, json!({"command": "join", "room": "1"})).await;
    assert_eq!(next_json(&mut refreshed).await["join"], "1", "the refreshed socket outlived the old token");
}

async fn a_hundred_racing_handshakes_one_upgrade(backend: Backend) {
    let chat = chat(backend, Limits::default()).await;
    let (_, token) = chat.user(None).await;
    let query = Arc::new(format!("?ticket={}", ticket(chat.addr, &token).await));
    let racers: Vec<_> = (0..100)
        .map(|_| {
            let (addr, query) = (chat.addr, Arc::clone(&query));
            tokio::spawn(async move { status(addr, &query, &[]).await })
        })
        .collect();
    let mut statuses = Vec::new();
    for racer in racers {
        statuses.push(racer.await.unwrap());
    }
    assert_eq!(statuses.iter().filter(|s| **s == 101).count(), 1, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == 101 || *s == 401), "{statuses:?}");
}

async fn a_ticket_lives_ticket_ttl_and_needs_no_origin_check(backend: Backend) {
    let chat = chat(backend, Limits { ticket_ttl: Duration::from_secs(1), ..Limits::default() }).await;
    let (_, token) = chat.user(None).await;
    let addr = chat.addr;
    let evil = ("origin", "http://evil.example");
    let cookie = format!("key={token}");
    let (code, _, body) = post_ticket(addr, &[("cookie", &cookie), evil]).await;
    assert_eq!(code, 403, "cross-site, with the cookie: {body}");
    let (code, _, body) = post_ticket(addr, &[("authorization", &format!("Token {token}")), evil]).await;
    assert_eq!((code, &body["expires_in"]), (200, &json!(1)), "--ticket-ttl 1: {body}");
    let late = body["ticket"].as_str().unwrap().to_owned();
    let fine = ticket(addr, &token).await;
    assert_eq!(status(addr, &format!("?ticket={fine}"), &[evil]).await, 101, "a ticket needs no Origin check");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(status(addr, &format!("?ticket={late}"), &[]).await, 401, "past --ticket-ttl");
}

macro_rules! per_backend {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $test() { super::$test(super::Backend::Sqlite).await } )*
        }
        mod postgres {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $test() { super::$test(super::Backend::Postgres).await } )*
        }
    };
}

per_backend!(
    a_ticket_opens_one_socket_as_its_user,
    a_ticket_is_no_token_and_a_token_no_ticket,
    the_socket_lives_by_the_token_that_asked,
    a_hundred_racing_handshakes_one_upgrade,
    a_ticket_lives_ticket_ttl_and_needs_no_origin_check,
);

// --- two processes -----------------------------------------------------------

/// A `serve` process logging at debug level: the process, its address, and
/// its stderr, read as it comes (a full pipe would stall the server).
async fn serve(database: &str, redis: Option<&str>) -> (Node, SocketAddr) {
    let mut command = common::multichat();
    command.args(["--database-url", database, "serve", "--bind", "127.0.0.1:0"]);
    if let Some(redis) = redis {
        command.args(["--redis-url", redis]);
    }
    command.env("RUST_LOG", "debug").stderr(Stdio::piped());
    let (mut child, addr) = common::spawn_serve(command).await;
    let mut stderr = child.stderr.take().unwrap();
    let logs = tokio::spawn(async move {
        let mut err = String::new();
        let _ = stderr.read_to_string(&mut err).await;
        err
    });
    (Node { child, logs }, addr)
}

struct Node {
    child: tokio::process::Child,
    logs: tokio::task::JoinHandle<String>,
}

impl Node {
    /// Stops the process: everything it logged.
    async fn logs(mut self) -> String {
        self.child.start_kill().unwrap();
        let _ = self.child.wait().await;
        self.logs.await.unwrap()
    }
}

/// A ticket issued by one process opens a socket on the other, once; of 100
/// handshakes split between them, one is upgraded; neither logs a secret.
async fn tickets_cross_processes(database: &str, redis: Option<&str>) {
    let token =
        common::cli(database, &["create-user", &format!("x_{}", &Token::generate().expose_secret()[..8])]).await;
    let ((a_node, a), (b_node, b)) = (serve(database, redis).await, serve(database, redis).await);
    let mut secrets = vec![token.clone()];

    let issued_on_a = ticket(a, &token).await;
    secrets.push(issued_on_a.clone());
    assert_eq!(status(b, &format!("?ticket={issued_on_a}"), &[]).await, 101, "redeemed on the other process");
    assert_eq!(status(a, &format!("?ticket={issued_on_a}"), &[]).await, 401, "and used up on both");

    for round in 0..3 {
        let raced = ticket(if round % 2 == 0 { a } else { b }, &token).await;
        secrets.push(raced.clone());
        let query = Arc::new(format!("?ticket={raced}"));
        let racers: Vec<_> = (0..100)
            .map(|i| {
                let (addr, query) = (if i % 2 == 0 { a } else { b }, Arc::clone(&query));
                tokio::spawn(async move { status(addr, &query, &[]).await })
            })
            .collect();
        let mut upgraded = 0;
        for racer in racers {
            match racer.await.unwrap() {
                101 => upgraded += 1,
                401 => {}
                other => panic!("a losing handshake got {other}"),
            }
        }
        assert_eq!(upgraded, 1, "round {round}: one ticket opened {upgraded} sockets across two processes");
    }

    let logs = format!("{}{}", a_node.logs().await, b_node.logs().await);
    assert!(logs.contains("ticket"), "the debug logs say nothing of tickets: the check would prove nothing");
    for secret in &secrets {
        assert!(!logs.contains(&secret[..16]), "a token or ticket was logged:\n{logs}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_over_one_sqlite_file_share_tickets() {
    let (database, file) = common::temp_sqlite("multichat-tickets-nodes");
    tickets_cross_processes(&database, None).await;
    let _ = std::fs::remove_file(file);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_over_postgres_and_redis_share_tickets() {
    let database = std::env::var("DATABASE_URL").expect("DATABASE_URL must point at PostgreSQL (.ci/run sets it)");
    let redis = std::env::var("REDIS_URL").expect("REDIS_URL must point at Redis (.ci/run sets it)");
    tickets_cross_processes(&database, Some(&redis)).await;
}
