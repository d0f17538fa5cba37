//! The second adversarial probe's findings (PROTOCOL.md, "Limits and hostile
//! clients"), each reproduced and answered; the memory findings (1, 2, 4)
//! are in `hostile_memory.rs`, which counts the heap. Outages are played on a
//! private Redis each test starts, stops or freezes itself.
//!
//! 3. a credential revoked elsewhere, still cached here, minting tokens,
//!    tickets, refreshes;
//! 5. one user's sockets filling the connection cap;
//! 6. no purge of expired tokens and tickets; no rate on issuing them;
//! 7. an unused ticket's row outliving the ticket;
//! 8. concurrent wrong passwords past the throttle;
//! 9. `revoke`/`deactivate --redis-url` while Redis is down;
//! 10. a join made during a Redis outage, and the first frame after it;
//! 11. `deactivate` without Redis closing with 4401 instead of 4403;
//! 12. an invalid UTF-8 text frame;
//! 13. `POST /api/token` bodies of the wrong shape;
//! 14. a node starting while Redis is unreachable.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use multichat::api::App;
use multichat::db::{Db, hash_password};
use multichat::limits::Limits;
use serde_json::{Value, json};
use testkit::PrivateRedis;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use ws_token_auth::Token;
use ws_token_auth::store::ManageTokens;

/// A SQLite database with alice (password `pw`) and a token of hers.
async fn alice_db(prefix: &str) -> (String, Db, i64, Token) {
    let (url, _) = common::temp_sqlite(prefix);
    let db = Db::open(&url).await.unwrap();
    let id = db.create_user("alice", &hash_password("pw").unwrap(), false).await.unwrap();
    let token = db.issue_token(id, None).await.unwrap();
    (url, db, id, token)
}

async fn post(addr: SocketAddr, path: &str, token: &Token, body: &str) -> (u16, String, Value) {
    let cookie = format!("key={}", token.expose_secret());
    let mut headers = vec![("cookie", cookie.as_str())];
    if !body.is_empty() {
        headers.push(("content-type", "application/json"));
    }
    let (status, head, body) = common::http(addr, "POST", path, &headers, body).await;
    (status, head, serde_json::from_str(&body).unwrap_or(Value::Null))
}

async fn login(addr: SocketAddr, password: &str) -> u16 {
    let body = json!({"username": "alice", "password": password}).to_string();
    common::http(addr, "POST", "/api/login", &[("content-type", "application/json")], &body).await.0
}

// --- 3. minting asks the source of truth ---------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_revoked_elsewhere_but_cached_here_mints_nothing() {
    let (url, db, id, token) = alice_db("multichat-mint").await;
    let (for_ticket, for_token, for_refresh) = (
        db.issue_token(id, None).await.unwrap(),
        db.issue_token(id, None).await.unwrap(),
        db.issue_token(id, None).await.unwrap(),
    );
    let here = common::serve_app(App::new(db, false, false).await.unwrap()).await;
    // Every token in this process's cache: a socket on one, an API call (`/api/me`) with each other.
    let mut socket = common::connect_with_token(here, token.expose_secret()).await;
    for cached in [&for_ticket, &for_token, &for_refresh] {
        assert_eq!(
            common::http(here, "GET", "/api/me", &[("cookie", &format!("key={}", cached.expose_secret()))], "").await.0,
            200
        );
    }

    // Another process (its own handle, no bus) revokes them; each is then used here once, for one thing.
    let elsewhere = Db::open(&url).await.unwrap();
    for revoked in [&for_ticket, &for_token, &for_refresh] {
        assert!(elsewhere.tokens.revoke(revoked).await.unwrap());
    }
    let (status, _, body) = post(here, "/api/ticket", &for_ticket, "").await;
    assert_eq!(status, 401, "a ticket minted from a token revoked elsewhere: {body}");
    let (status, _, body) = post(here, "/api/token", &for_token, "").await;
    assert_eq!(status, 401, "a fresh token minted from a revoked one: {body}");
    testkit::send_json(&mut socket, json!({"command": "refresh", "token": for_refresh.expose_secret()})).await;
    assert_eq!(testkit::next_json(&mut socket).await["error"], "REFRESH_REJECTED");
}

// --- 5. sockets per user -------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_user_holds_no_more_than_its_socket_cap_and_others_still_connect() {
    let (_, db, _, token) = alice_db("multichat-per-user").await;
    let bob = db.create_user("bob", &hash_password("pw").unwrap(), false).await.unwrap();
    let bob = db.issue_token(bob, None).await.unwrap();
    let limits = Limits { max_sockets_per_user: 3, max_connections: 8, ..Limits::default() };
    let app = App::new(db, false, false).await.unwrap().with_limits(limits);
    let addr = common::serve_app(app).await;
    let cookie = format!("key={}", token.expose_secret());
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(common::connect_with_token(addr, token.expose_secret()).await);
    }
    let (status, headers, socket) =
        testkit::handshake(&format!("ws://{addr}/chat/stream/"), &[("cookie", &cookie)]).await;
    assert_eq!(status, 429, "a fourth socket of one user");
    assert!(socket.is_none());
    assert!(headers.get("retry-after").is_some(), "{headers:?}");
    // Through the router's path too (a connection that served a request first).
    let (status, head, _) = common::http(addr, "GET", "/chat/stream/", &upgrade_headers(&cookie), "").await;
    assert_eq!(status, 429, "{head}");
    // Another user is not locked out.
    let _bob = common::connect_with_token(addr, bob.expose_secret()).await;
    // A closed socket frees its place.
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(3);
    while common::chat_handshake(addr, &[("cookie", &cookie)]).await.0 != 101 {
        assert!(Instant::now() < deadline, "a closed socket's place was not freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn upgrade_headers(cookie: &str) -> Vec<(&'static str, &str)> {
    vec![
        ("upgrade", "websocket"),
        ("connection", "Upgrade"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("sec-websocket-version", "13"),
        ("cookie", cookie),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_user_never_takes_more_than_half_the_connections() {
    let (_, db, _, token) = alice_db("multichat-half").await;
    let bob = db.create_user("bob", &hash_password("pw").unwrap(), false).await.unwrap();
    let bob = db.issue_token(bob, None).await.unwrap();
    let limits = Limits { max_connections: 6, ..Limits::default() }; // 100 per user by default
    let addr = common::serve_app(App::new(db, false, false).await.unwrap().with_limits(limits)).await;
    let cookie = format!("key={}", token.expose_secret());
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(common::connect_with_token(addr, token.expose_secret()).await);
    }
    assert_eq!(common::chat_handshake(addr, &[("cookie", &cookie)]).await.0, 429);
    // The other half is there for everyone else: logins and sockets.
    assert_eq!(login(addr, "pw").await, 200);
    let _bob = common::connect_with_token(addr, bob.expose_secret()).await;
}

// --- 6, 7. issue rate, purge -------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_and_tickets_are_issued_at_most_so_many_a_minute_per_user() {
    let (_, db, _, token) = alice_db("multichat-issue-rate").await;
    let limits = Limits { max_issues_per_minute: 3, ..Limits::default() };
    let addr = common::serve_app(App::new(db, false, false).await.unwrap().with_limits(limits)).await;
    for path in ["/api/token", "/api/ticket"] {
        for i in 0..3 {
            assert_eq!(post(addr, path, &token, "").await.0, 200, "{path} #{i}");
        }
        let (status, head, body) = post(addr, path, &token, "").await;
        assert_eq!(status, 429, "{path}: {head}");
        assert_eq!(body["error"], "TOO_MANY_REQUESTS");
        let retry = common::retry_after(&head);
        assert!((1..=61).contains(&retry), "{retry}");
    }
}

/// Rows in the token or ticket table of the SQLite file at `url`.
async fn rows(url: &str, table: &str) -> i64 {
    let pool = sqlx::SqlitePool::connect(url).await.unwrap();
    let count: (i64,) = sqlx::query_as(&format!("SELECT COUNT(*) FROM {table}")).fetch_one(&pool).await.unwrap();
    pool.close().await;
    count.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_purges_expired_tokens_and_unused_tickets() {
    let (url, db, id, token) = alice_db("multichat-purge").await;
    db.issue_token(id, Some(Duration::from_secs(1))).await.unwrap();
    drop(db);
    let mut command = common::multichat();
    command.args(["--database-url", &url, "serve", "--bind", "127.0.0.1:0"]);
    command.args(["--purge-every-secs", "1", "--ticket-ttl", "1"]);
    let (_server, addr) = common::spawn_serve(command).await;
    for _ in 0..3 {
        assert_eq!(post(addr, "/api/ticket", &token, "").await.0, 200);
    }
    assert_eq!(rows(&url, "ws_auth_tokens_tickets").await, 3, "three unused tickets");
    assert_eq!(rows(&url, "ws_auth_tokens").await, 2);
    // Expired after 1 s; purged within the next 1 s (plus jitter).
    let deadline = Instant::now() + Duration::from_secs(6);
    while rows(&url, "ws_auth_tokens_tickets").await > 0 || rows(&url, "ws_auth_tokens").await > 1 {
        assert!(Instant::now() < deadline, "expired tickets or tokens still in the database after 6 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

// --- 8. the login throttle under concurrency ----------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_wrong_passwords_checks_no_more_than_five() {
    let (_, db, _, _) = alice_db("multichat-burst").await;
    let limits = Limits { max_concurrent_logins: 2, login_queue: 64, ..Limits::default() };
    let addr = common::serve_app(App::new(db, false, false).await.unwrap().with_limits(limits)).await;
    let burst: Vec<_> = (0..30).map(|_| tokio::spawn(login(addr, "wrong"))).collect();
    let mut statuses = Vec::new();
    for login in burst {
        statuses.push(login.await.unwrap());
    }
    let checked = statuses.iter().filter(|s| **s == 401).count();
    assert!((1..=5).contains(&checked), "{checked} wrong passwords checked in one window: {statuses:?}");
    assert!(statuses.iter().all(|s| [401, 429].contains(s)), "{statuses:?}");
    // The window is closed now: the right password too waits.
    assert_eq!(login(addr, "pw").await, 429);
}

// --- 9. the command line while Redis is down ---------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_and_deactivate_change_the_database_while_redis_is_down() {
    let mut redis = PrivateRedis::start().await;
    let url = redis.url();
    redis.stop().await;
    let (database, db, id, token) = alice_db("multichat-cli-outage").await;
    let database = &database;
    let run = |args: Vec<String>| async move {
        let output = common::multichat().arg("--database-url").arg(database).args(&args).output().await.unwrap();
        (output.status.success(), String::from_utf8_lossy(&output.stderr).into_owned())
    };
    let (ok, stderr) =
        run(vec!["revoke".into(), token.expose_secret().into(), "--redis-url".into(), url.clone()]).await;
    assert!(ok, "revoke failed: {stderr}");
    assert!(stderr.contains("--revalidate-secs"), "no warning: {stderr}");
    assert!(db.tokens.authenticate_fresh(&token).await.is_none(), "the token was not revoked");

    let other = db.issue_token(id, None).await.unwrap();
    let (ok, stderr) = run(vec!["deactivate".into(), "alice".into(), "--redis-url".into(), url.clone()]).await;
    assert!(ok, "deactivate failed: {stderr}");
    assert!(stderr.contains("--revalidate-secs"), "no warning: {stderr}");
    assert!(db.tokens.authenticate_fresh(&other).await.is_none(), "alice was not deactivated");
    let (ok, stderr) = run(vec!["activate".into(), "alice".into(), "--redis-url".into(), url]).await;
    assert!(ok, "activate failed: {stderr}");
    assert!(db.tokens.authenticate_fresh(&other).await.is_some(), "alice was not activated");
}

/// The token table's own answer.
trait Fresh {
    async fn authenticate_fresh(&self, token: &Token) -> Option<multichat::db::ChatUser>;
}

impl Fresh for multichat::db::Tokens {
    async fn authenticate_fresh(&self, token: &Token) -> Option<multichat::db::ChatUser> {
        use ws_token_auth::TokenStore;
        self.authenticate(token).await.unwrap().map(|found| found.user)
    }
}

// --- 10, 14. Redis down at start, during a join, and back ---------------------------------

/// Waits until `socket` receives a message whose text is `message`, sending
/// `resend` again every second (frames published while Redis was away may
/// have been dropped).
async fn receives(socket: &mut testkit::Socket, message: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(text) = tokio::time::timeout(Duration::from_millis(500), testkit::next_json(socket)).await {
            if text["message"] == message {
                return true;
            }
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_starts_without_redis_and_joins_made_meanwhile_hear_the_room() {
    let mut redis = PrivateRedis::start().await;
    redis.stop().await;
    let (url, db, _, alice) = alice_db("multichat-redis-down").await;
    let bob = db.create_user("bob", &hash_password("pw").unwrap(), false).await.unwrap();
    let bob = db.issue_token(bob, None).await.unwrap();
    // 14: starts, and serves handshakes, while nothing answers at the URL.
    let started = Instant::now();
    let app = App::with_redis(db, true, false, &redis.url(), &url).await.expect("the node did not start without Redis");
    assert!(started.elapsed() < Duration::from_secs(5), "starting took {:?}", started.elapsed());
    let addr = common::serve_app(app).await;
    let mut alice = common::connect_with_token(addr, alice.expose_secret()).await;
    let mut bob = common::connect_with_token(addr, bob.expose_secret()).await;
    // 10: joins made during the outage.
    for socket in [&mut alice, &mut bob] {
        testkit::send_json(socket, json!({"command": "join", "room": "1"})).await;
        assert_eq!(testkit::next_json(socket).await["join"], "1");
    }
    // A Redis that takes publishes but no subscriber: the node must not
    // publish into it what it would not hear back (the joins, the frame).
    testkit::send_json(&mut bob, json!({"command": "send", "room": "1", "message": "first"})).await;
    redis.restart_with(&["--rename-command", "SUBSCRIBE", ""]).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    redis.stop().await;
    redis.restart().await;
    // The first frame after Redis is back reaches the room.
    assert!(receives(&mut alice, "first", Duration::from_secs(10)).await, "the first frame after recovery was lost");
    // And Redis going away again and coming back: the same.
    redis.stop().await;
    redis.restart().await;
    testkit::send_json(&mut bob, json!({"command": "send", "room": "1", "message": "again"})).await;
    assert!(receives(&mut alice, "again", Duration::from_secs(10)).await, "lost after a second outage");
}

// --- 11. deactivate without Redis: 4403 ---------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deactivation_found_at_revalidation_closes_with_4403() {
    let (url, db, id, token) = alice_db("multichat-deactivate-revalidate").await;
    let app = App::new(db, false, false).await.unwrap();
    let addr = common::serve_app(app.clone()).await;
    let mut socket = common::connect_with_token(addr, token.expose_secret()).await;
    // Another process deactivates alice, without a bus.
    let elsewhere = Db::open(&url).await.unwrap();
    elsewhere.tokens.lock_out(&id).await.unwrap();
    assert_eq!(app.lifecycle.revalidate_once().await, 1);
    assert_eq!(testkit::close_code(&mut socket, Duration::from_secs(3)).await, Some(4403));
    let cookie = format!("key={}", token.expose_secret());
    assert_eq!(common::chat_handshake(addr, &[("cookie", &cookie)]).await.0, 401, "refused from then on");
    // A token revoked outright still closes with 4401.
    elsewhere.tokens.let_in(&id).await.unwrap();
    let other = elsewhere.issue_token(id, None).await.unwrap();
    let mut socket = common::connect_with_token(addr, other.expose_secret()).await;
    elsewhere.tokens.revoke(&other).await.unwrap();
    assert_eq!(app.lifecycle.revalidate_once().await, 1);
    assert_eq!(testkit::close_code(&mut socket, Duration::from_secs(3)).await, Some(4401));
}

// --- 12. invalid UTF-8 -------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_frame_that_is_not_utf8_closes_with_1007() {
    let (_, db, _, token) = alice_db("multichat-utf8").await;
    let addr = common::serve_app(App::new(db, false, false).await.unwrap()).await;
    let mut stream = common::raw_socket(addr, token.expose_secret(), None).await;
    stream.write_all(&common::masked_frame(0x1, &[b'{', 0xff, 0xfe, b'}'])).await.unwrap();
    let mut frame = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut frame)).await.unwrap().unwrap();
    assert_eq!(frame[0], 0x88, "a close frame: {frame:?}");
    assert_eq!(u16::from_be_bytes([frame[2], frame[3]]), 1007);
}

// --- 13. POST /api/token bodies ---------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_token_takes_an_object_with_ttl_and_nothing_else() {
    let (_, db, _, token) = alice_db("multichat-token-body").await;
    let addr = common::serve_app(App::new(db, false, false).await.unwrap()).await;
    for body in ["5", "[1]", "\"ttl\"", "null", "{\"TTL\": 5}", "{\"ttl\": 60, \"extra\": 1}", "{"] {
        let (status, _, answer) = post(addr, "/api/token", &token, body).await;
        assert_eq!((status, answer["error"].as_str()), (400, Some("MALFORMED_REQUEST")), "{body}");
    }
    for body in ["{\"ttl\": 0}", "{\"ttl\": -1}", "{\"ttl\": \"60\"}", "{\"ttl\": 1.5}", "{\"ttl\": 99999999999}"] {
        let (status, _, answer) = post(addr, "/api/token", &token, body).await;
        assert_eq!((status, answer["error"].as_str()), (400, Some("INVALID_TTL")), "{body}");
    }
    let (status, _, answer) = post(addr, "/api/token", &token, "{\"ttl\": 60}").await;
    assert_eq!((status, answer["expires_in"].as_u64()), (200, Some(60)));
    let (status, _, answer) = post(addr, "/api/token", &token, "{}").await;
    assert_eq!((status, answer["expires_in"].as_u64()), (200, Some(14 * 24 * 3600)));
}
