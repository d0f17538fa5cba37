//! The multichat example (`examples/multichat/`, included as it is) driven the
//! way an Android client drives it: tokio-tungstenite sockets sending
//! `Cookie: key=<token>` and no `Origin`. Every test runs twice, over a
//! temporary SQLite file and over the machine's PostgreSQL (`DATABASE_URL`;
//! a test fails when it cannot reach it).

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, StatusCode, header};
use multichat::api::App;
use multichat::db::{Db, hash_password};
use serde_json::{Value, json};
use testkit::{Socket, close_code, next_json, send_json};
use tokio_tungstenite::tungstenite::Message;
use ws_token_auth::Token;

#[derive(Clone, Copy, Debug)]
enum Backend {
    Sqlite,
    Postgres,
}

struct Server {
    addr: SocketAddr,
    app: App,
    /// Makes user names unique: PostgreSQL tables are shared by every test.
    tag: String,
    /// The hash of every test user's password, `pw` (argon2 is slow by design).
    pw_hash: String,
}

async fn start(backend: Backend, notices: bool) -> Server {
    let url = match backend {
        Backend::Sqlite => common::temp_sqlite("multichat-test").0,
        Backend::Postgres => {
            std::env::var("DATABASE_URL").expect("DATABASE_URL must point at PostgreSQL (.ci/run sets it)")
        }
    };
    let db = Db::open(&url).await.unwrap_or_else(|e| panic!("cannot open {url}: {e}"));
    let app = App::new(db, notices, false).await.unwrap();
    let addr = common::serve_app(app.clone()).await;
    Server { addr, app, tag: Token::generate().expose_secret()[..8].to_owned(), pw_hash: hash_password("pw").unwrap() }
}

impl Server {
    /// Creates a user (password `pw`) and returns its name and a token.
    async fn user(&self, name: &str, staff: bool) -> (String, String) {
        let name = format!("{name}_{}", self.tag);
        let id = self.app.db.create_user(&name, &self.pw_hash, staff).await.unwrap();
        let token = self.app.db.issue_token(id, None).await.unwrap();
        (name, token.expose_secret().to_owned())
    }

    async fn handshake(&self, headers: &[(&str, &str)]) -> Result<Socket, (StatusCode, HeaderMap)> {
        match testkit::handshake(&format!("ws://{}/chat/stream/", self.addr), headers).await {
            (_, _, Some(socket)) => Ok(socket),
            (status, headers, None) => Err((status, headers)),
        }
    }

    /// The way an Android client connects: the cookie header, no Origin.
    async fn connect(&self, token: &str) -> Socket {
        self.handshake(&[("cookie", &format!("key={token}"))]).await.expect("handshake refused")
    }

    async fn status(&self, headers: &[(&str, &str)]) -> StatusCode {
        match self.handshake(headers).await {
            Ok(_) => StatusCode::SWITCHING_PROTOCOLS,
            Err((status, _)) => status,
        }
    }

    async fn http(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String, String) {
        common::http(self.addr, method, path, headers, body).await
    }
}

/// Nothing arrives within 300 ms.
async fn silent(socket: &mut Socket) {
    if let Ok(frame) = tokio::time::timeout(Duration::from_millis(300), socket.next()).await {
        panic!("unexpected frame: {frame:?}");
    }
}

async fn join(socket: &mut Socket, room: &str) -> Value {
    send_json(socket, json!({"command": "join", "room": room})).await;
    next_json(socket).await
}

fn error(code: &str) -> Value {
    json!({ "error": code })
}

// ---------------------------------------------------------------------------

async fn handshake_table(backend: Backend) {
    let server = start(backend, true).await;
    let (alice, token) = server.user("alice", false).await;
    let cookie = format!("key={token}");

    // Valid: an Android client (cookie, no Origin), a browser (same-host Origin), Authorization.
    assert_eq!(server.status(&[("cookie", &cookie)]).await, StatusCode::SWITCHING_PROTOCOLS);
    let same_host = format!("http://{}", server.addr);
    assert_eq!(server.status(&[("cookie", &cookie), ("origin", &same_host)]).await, StatusCode::SWITCHING_PROTOCOLS);
    for scheme in ["Token", "Bearer"] {
        let auth = format!("{scheme} {token}");
        let headers = [("authorization", auth.as_str()), ("origin", "https://evil.example")];
        assert_eq!(server.status(&headers).await, StatusCode::SWITCHING_PROTOCOLS, "{scheme}");
    }

    // 401 with a challenge.
    match server.handshake(&[]).await {
        Err((status, headers)) => {
            assert_eq!(status, StatusCode::UNAUTHORIZED);
            assert!(headers.contains_key(header::WWW_AUTHENTICATE));
        }
        Ok(_) => panic!("no token was upgraded"),
    }
    let monkey = format!("monkey={token}");
    let keys = format!("keys={token}");
    let unknown = format!("key={}", Token::generate().expose_secret());
    for headers in [
        [("cookie", monkey.as_str())],
        [("cookie", keys.as_str())],
        [("cookie", unknown.as_str())],
        [("cookie", "key=")],
    ] {
        assert_eq!(server.status(&headers).await, StatusCode::UNAUTHORIZED, "{headers:?}");
    }
    // Expired and inactive.
    let (_, short) = {
        let id = server.app.db.user_id(&alice).await.unwrap().unwrap();
        (id, server.app.db.issue_token(id, Some(Duration::from_millis(1))).await.unwrap())
    };
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(server.status(&[("cookie", &format!("key={}", short.expose_secret()))]).await, StatusCode::UNAUTHORIZED);
    let (carol, carol_token) = server.user("carol", false).await;
    set_active(&server, &carol, false).await;
    assert_eq!(server.status(&[("cookie", &format!("key={carol_token}"))]).await, StatusCode::UNAUTHORIZED);

    // 400: malformed.
    let two = format!("key={token}; key=other");
    let long = format!("key={}", "a".repeat(300));
    for value in [two.as_str(), long.as_str(), "key=a\tb"] {
        assert_eq!(server.status(&[("cookie", value)]).await, StatusCode::BAD_REQUEST, "{value:.30}");
    }
    // 403: cookie from another site.
    for origin in ["https://evil.example", "null", "http://localhost:1"] {
        assert_eq!(server.status(&[("cookie", &cookie), ("origin", origin)]).await, StatusCode::FORBIDDEN, "{origin}");
    }
}

async fn set_active(server: &Server, name: &str, active: bool) {
    use multichat::db::Pool;
    let sql = "UPDATE chat_users SET is_active = $1 WHERE username = $2";
    match &server.app.db.pool {
        Pool::Sqlite(p) => sqlx::query(sql).bind(active).bind(name).execute(p).await.map(drop).unwrap(),
        Pool::Postgres(p) => sqlx::query(sql).bind(active).bind(name).execute(p).await.map(drop).unwrap(),
    }
}

async fn rooms_messages_and_notices(backend: Backend) {
    let server = start(backend, true).await;
    let (alice, a) = server.user("alice", false).await;
    let (bob, b) = server.user("bob", false).await;
    let (carol, c) = server.user("carol", false).await;
    let (mut a, mut b, mut c) = (server.connect(&a).await, server.connect(&b).await, server.connect(&c).await);

    assert_eq!(join(&mut a, "1").await, json!({"join": "1", "title": "General"}));
    // `room` may be an integer; server frames always carry a string.
    send_json(&mut b, json!({"command": "join", "room": 1})).await;
    assert_eq!(next_json(&mut b).await, json!({"join": "1", "title": "General"}));
    assert_eq!(next_json(&mut a).await, json!({"msg_type": 4, "room": "1", "username": bob}));
    assert_eq!(join(&mut c, "1").await, json!({"join": "1", "title": "General"}));
    for socket in [&mut a, &mut b] {
        assert_eq!(next_json(socket).await, json!({"msg_type": 4, "room": "1", "username": carol}));
    }
    silent(&mut c).await; // the joiner gets no notice of itself

    send_json(&mut a, json!({"command": "send", "room": "1", "message": "hello <b>all</b>"})).await;
    for socket in [&mut a, &mut b, &mut c] {
        let expected = json!({"msg_type": 0, "room": "1", "username": alice, "message": "hello <b>all</b>"});
        assert_eq!(next_json(socket).await, expected);
    }

    // Joining again: the reply again, no second notice.
    assert_eq!(join(&mut b, "1").await, json!({"join": "1", "title": "General"}));
    silent(&mut a).await;

    // Leave: everyone, the leaver too, gets the notice; then the leaver gets the reply.
    send_json(&mut b, json!({"command": "leave", "room": "1"})).await;
    for socket in [&mut a, &mut c] {
        assert_eq!(next_json(socket).await, json!({"msg_type": 5, "room": "1", "username": bob}));
    }
    assert_eq!(next_json(&mut b).await, json!({"msg_type": 5, "room": "1", "username": bob}));
    assert_eq!(next_json(&mut b).await, json!({"leave": "1"}));
    send_json(&mut a, json!({"command": "send", "room": 1, "message": "bob is gone"})).await;
    assert_eq!(next_json(&mut c).await["message"], "bob is gone");
    assert_eq!(next_json(&mut a).await["message"], "bob is gone");
    silent(&mut b).await;

    // A disconnect leaves every room, with the notice.
    c.close(None).await.unwrap();
    assert_eq!(next_json(&mut a).await, json!({"msg_type": 5, "room": "1", "username": carol}));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(server.app.hub.members("1"), 1);
}

async fn errors_in_order(backend: Backend) {
    let server = start(backend, true).await;
    let (_, a) = server.user("alice", false).await;
    let (_, s) = server.user("staff", true).await;
    let mut a = server.connect(&a).await;
    let mut s = server.connect(&s).await;

    for room in
        [json!("99"), json!("abc"), json!(-1), json!(1.5), json!(""), json!(null), json!("99999999999999999999999")]
    {
        send_json(&mut a, json!({"command": "join", "room": room})).await;
        assert_eq!(next_json(&mut a).await, error("ROOM_INVALID"), "join {room}");
    }
    send_json(&mut a, json!({"command": "join"})).await;
    assert_eq!(next_json(&mut a).await, error("ROOM_INVALID"));
    assert_eq!(join(&mut a, "2").await, error("ROOM_ACCESS_DENIED"), "staff only");
    assert_eq!(join(&mut s, "2").await, json!({"join": "2", "title": "Staff"}));
    // send to a room not joined: ROOM_ACCESS_DENIED, even when the room does not exist.
    for room in ["1", "99"] {
        send_json(&mut a, json!({"command": "send", "room": room, "message": "x"})).await;
        assert_eq!(next_json(&mut a).await, error("ROOM_ACCESS_DENIED"), "send to {room}");
    }
    send_json(&mut a, json!({"command": "leave", "room": "1"})).await;
    assert_eq!(next_json(&mut a).await, error("ROOM_ACCESS_DENIED"));
    send_json(&mut a, json!({"command": "leave", "room": "99"})).await;
    assert_eq!(next_json(&mut a).await, error("ROOM_INVALID"));
}

async fn malformed_frames_keep_the_socket(backend: Backend) {
    let server = start(backend, true).await;
    let (_, a) = server.user("alice", false).await;
    let mut a = server.connect(&a).await;
    let frames = [
        "not json",
        "[1, 2]",
        "\"a string\"",
        "{}",
        r#"{"command": "dance", "room": "1"}"#,
        r#"{"command": 7}"#,
        r#"{"command": "send", "room": "1", "message": 5}"#,
        r#"{"command": "send", "room": "1"}"#,
    ];
    for text in frames {
        a.send(Message::Text(text.into())).await.unwrap();
        assert_eq!(next_json(&mut a).await, error("MALFORMED_COMMAND"), "{text}");
    }
    a.send(Message::Binary(vec![1, 2, 3].into())).await.unwrap();
    assert_eq!(next_json(&mut a).await, error("MALFORMED_COMMAND"));
    assert_eq!(join(&mut a, "1").await["join"], "1", "the socket still works");

    let at_limit = "é".repeat(4096);
    send_json(&mut a, json!({"command": "send", "room": "1", "message": at_limit})).await;
    assert_eq!(next_json(&mut a).await["message"], at_limit);
    send_json(&mut a, json!({"command": "send", "room": "1", "message": "x".repeat(4097)})).await;
    assert_eq!(next_json(&mut a).await, error("MESSAGE_TOO_LONG"));

    // A frame over 64 KiB closes with 1009.
    a.send(Message::Text("x".repeat(70 * 1024).into())).await.unwrap();
    assert_eq!(close_code(&mut a, Duration::from_secs(5)).await, Some(1009));
}

async fn http_api(backend: Backend) {
    let server = start(backend, true).await;
    let (alice, token) = server.user("alice", false).await;
    let (boss, boss_token) = server.user("boss", true).await;

    let body = json!({"username": alice, "password": "pw"}).to_string();
    let (status, head, body) = server.http("POST", "/api/login", &[("content-type", "application/json")], &body).await;
    assert_eq!(status, 200, "{body}");
    let reply: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(reply["username"], alice);
    let new_token = reply["token"].as_str().unwrap().to_owned();
    let cookie_line = head.lines().find(|l| l.to_ascii_lowercase().starts_with("set-cookie:")).unwrap().to_owned();
    assert!(cookie_line.contains(&format!("key={new_token}")), "{cookie_line}");
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie_line.contains(attribute), "{cookie_line}");
    }
    let form = format!("username={boss}&password=pw");
    let form_type = [("content-type", "application/x-www-form-urlencoded")];
    assert_eq!(server.http("POST", "/api/login", &form_type, &form).await.0, 200);

    // Unknown user and wrong password: the same answer.
    let wrong = server.http("POST", "/api/login", &form_type, &format!("username={alice}&password=nope")).await;
    let unknown = server.http("POST", "/api/login", &form_type, "username=nobody_at_all&password=pw").await;
    assert_eq!((wrong.0, &wrong.2), (401, &r#"{"error":"INVALID_CREDENTIALS"}"#.to_owned()));
    assert_eq!((unknown.0, &unknown.2), (wrong.0, &wrong.2));

    // Rooms: only those the user may join.
    let (status, _, body) = server.http("GET", "/api/rooms", &[("cookie", &format!("key={token}"))], "").await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!([{"id": "1", "title": "General", "staff_only": false}])
    );
    let auth = format!("Token {boss_token}");
    let (_, _, body) = server.http("GET", "/api/rooms", &[("authorization", &auth)], "").await;
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap().as_array().unwrap().len(), 2);
    assert_eq!(server.http("GET", "/api/rooms", &[], "").await.0, 401);

    // Logout revokes that token only.
    let (status, head, _) = server.http("POST", "/api/logout", &[("cookie", &format!("key={new_token}"))], "").await;
    assert_eq!(status, 204);
    assert!(head.contains("Max-Age=0"), "the cookie is cleared: {head}");
    assert_eq!(server.status(&[("cookie", &format!("key={new_token}"))]).await, StatusCode::UNAUTHORIZED);
    assert_eq!(server.status(&[("cookie", &format!("key={token}"))]).await, StatusCode::SWITCHING_PROTOCOLS);

    // No response but the login's carries a token: not the errors, not the API.
    let cookie = format!("key={token}");
    let mut responses = Vec::new();
    for (method, path, headers) in [
        ("GET", "/api/rooms", vec![("cookie", cookie.as_str())]),
        ("GET", "/api/me", vec![("cookie", cookie.as_str())]),
        ("GET", "/chat/stream/", vec![("cookie", cookie.as_str())]),
        ("GET", "/api/rooms", vec![("cookie", "key=x; key=y")]),
        ("GET", "/api/rooms", vec![("cookie", cookie.as_str()), ("origin", "https://evil.example")]),
        ("GET", "/api/rooms", vec![("authorization", "Token 0123456789abcdef")]),
        ("POST", "/api/logout", vec![("cookie", cookie.as_str())]),
        ("GET", "/api/rooms", vec![("cookie", cookie.as_str())]),
    ] {
        let (status, head, body) = server.http(method, path, &headers, "").await;
        responses.push(format!("{status} {head}\n{body}"));
    }
    let all = responses.join("\n");
    for secret in [&token, &new_token, &boss_token] {
        assert!(!all.contains(&secret[..16]), "a response carries a token:\n{all}");
    }

    // The page and its script are served to anyone.
    let (status, _, page) = server.http("GET", "/", &[], "").await;
    assert_eq!(status, 200);
    assert!(page.contains(r#"<script src="/app.js">"#));
    let (status, _, script) = server.http("GET", "/app.js", &[], "").await;
    assert_eq!(status, 200);
    assert!(script.contains("/chat/stream/"));
}

async fn expired_token_closes_with_4401(backend: Backend) {
    let server = start(backend, true).await;
    let (alice, _) = server.user("alice", false).await;
    let id = server.app.db.user_id(&alice).await.unwrap().unwrap();
    let token = server.app.db.issue_token(id, Some(Duration::from_millis(1500))).await.unwrap();
    let mut socket = server.connect(token.expose_secret()).await;
    // Less time left than the warning window (60 s): warned at once, right after the upgrade.
    assert_eq!(next_json(&mut socket).await, json!({"auth": "expiring", "expires_in": 2}));
    assert_eq!(join(&mut socket, "1").await["join"], "1");
    assert_eq!(close_code(&mut socket, Duration::from_secs(5)).await, Some(4401));
}

async fn store_outage_is_503(backend: Backend) {
    let server = start(backend, true).await;
    let (_, token) = server.user("alice", false).await;
    server.app.db.close().await;
    assert_eq!(server.status(&[("cookie", &format!("key={token}"))]).await, StatusCode::SERVICE_UNAVAILABLE);
}

async fn a_slow_client_does_not_stall_the_room(backend: Backend) {
    let server = start(backend, false).await;
    let (_, s) = server.user("sender", false).await;
    let (_, f) = server.user("fast", false).await;
    let (_, z) = server.user("stuck", false).await;
    let (mut sender, mut fast, mut stuck) =
        (server.connect(&s).await, server.connect(&f).await, server.connect(&z).await);
    for socket in [&mut sender, &mut fast, &mut stuck] {
        assert_eq!(join(socket, "1").await["join"], "1");
    }
    // `stuck` never reads again. The sender sends batches that `fast` reads
    // before the next batch, far more in all than `stuck`'s queue and socket
    // buffers hold: `fast` must get every message, in order, without a stall.
    let (batches, batch) = (25, 200);
    let text = "m".repeat(4000);
    // The sender gets its own messages too: it reads them, as a client does.
    let (mut sender, mut echoes) = sender.split();
    tokio::spawn(async move { while echoes.next().await.is_some() {} });
    for round in 0..batches {
        for i in 0..batch {
            let frame = json!({"command": "send", "room": "1", "message": format!("{round}/{i} {text}")});
            sender.send(Message::Text(frame.to_string().into())).await.unwrap();
        }
        for i in 0..batch {
            let frame = next_json(&mut fast).await;
            let message = frame["message"].as_str().unwrap_or_default();
            assert!(message.starts_with(&format!("{round}/{i} ")), "round {round}, message {i}: {message:.20}");
        }
    }
    // The stuck client was dropped, not waited for.
    for _ in 0..100 {
        if server.app.hub.members("1") == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(server.app.hub.members("1"), 2);
    drop(stuck);
}

async fn join_storm_delivers_every_notice(backend: Backend) {
    let server = start(backend, true).await;
    let n = 60;
    let mut tokens = Vec::new();
    for i in 0..n {
        tokens.push(server.user(&format!("storm{i}"), false).await.1);
    }
    let mut sockets = Vec::new();
    for token in &tokens {
        sockets.push(server.connect(token).await);
    }
    // Everyone joins at once; each counts the enter notices it receives.
    let tasks: Vec<_> = sockets
        .into_iter()
        .map(|mut socket| {
            tokio::spawn(async move {
                assert_eq!(join(&mut socket, "1").await["join"], "1");
                (socket, 0usize)
            })
        })
        .collect();
    // Each socket counts the enter notices it gets until the room is quiet.
    let counters: Vec<_> = tasks
        .into_iter()
        .map(|task| {
            tokio::spawn(async move {
                let (mut socket, mut count) = task.await.unwrap();
                while let Ok(Some(Ok(Message::Text(text)))) =
                    tokio::time::timeout(Duration::from_millis(500), socket.next()).await
                {
                    let frame: Value = serde_json::from_str(&text).unwrap();
                    assert_eq!(frame["msg_type"], 4, "{frame}");
                    count += 1;
                }
                (socket, count) // kept open: a close would send others a leave notice
            })
        })
        .collect();
    let mut total = 0;
    let mut sockets = Vec::new();
    for counter in counters {
        let (socket, count) = counter.await.unwrap();
        total += count;
        sockets.push(socket);
    }
    assert_eq!(total, n * (n - 1) / 2);
}

async fn logout_closes_that_tokens_sockets_within_a_second(backend: Backend) {
    let server = start(backend, true).await;
    let (alice, first) = server.user("alice", false).await;
    let (_, bob) = server.user("bob", false).await;
    let login = json!({"username": alice, "password": "pw"}).to_string();
    let (_, _, body) = server.http("POST", "/api/login", &[("content-type", "application/json")], &login).await;
    let second: Value = serde_json::from_str(&body).unwrap();
    let second = second["token"].as_str().unwrap().to_owned();

    let (mut phone, mut tablet) = (server.connect(&first).await, server.connect(&first).await);
    let mut laptop = server.connect(&second).await;
    let mut bob = server.connect(&bob).await;
    for socket in [&mut phone, &mut tablet, &mut laptop, &mut bob] {
        assert_eq!(join(socket, "1").await["join"], "1");
    }
    // Drain the enter notices.
    for socket in [&mut phone, &mut tablet, &mut laptop] {
        while tokio::time::timeout(Duration::from_millis(200), socket.next()).await.is_ok() {}
    }
    assert_eq!(server.app.lifecycle.revocations().len(), 4);

    let (status, _, _) = server.http("POST", "/api/logout", &[("cookie", &format!("key={first}"))], "").await;
    assert_eq!(status, 204);
    for socket in [&mut phone, &mut tablet] {
        assert_eq!(close_code(socket, Duration::from_secs(1)).await, Some(4401), "not closed within 1 s");
    }
    // The same user's other token and other users stay connected: they see
    // the two closed sockets leave, and still get answers.
    for socket in [&mut laptop, &mut bob] {
        for _ in 0..2 {
            assert_eq!(next_json(socket).await, json!({"msg_type": 5, "room": "1", "username": alice}));
        }
        assert_eq!(join(socket, "1").await["join"], "1");
    }
    assert_eq!(server.app.lifecycle.revocations().len(), 2);
}

async fn a_token_deleted_in_the_database_is_noticed_at_revalidation(backend: Backend) {
    let server = start(backend, true).await;
    let (alice, token) = server.user("alice", false).await;
    let (_, other) = server.user("bob", false).await;
    let task = server.app.lifecycle.revalidate_every(Duration::from_millis(200));
    let mut socket = server.connect(&token).await;
    let mut bob = server.connect(&other).await;
    assert_eq!(join(&mut socket, "1").await["join"], "1");
    let id = server.app.db.user_id(&alice).await.unwrap().unwrap();
    execute(&server, "DELETE FROM ws_auth_tokens WHERE user_id = $1", id).await;
    assert_eq!(close_code(&mut socket, Duration::from_secs(5)).await, Some(4401), "not noticed within 5 s");
    assert_eq!(join(&mut bob, "1").await["join"], "1", "bob's token is still valid");

    // A token with no socket open, only an answer in the cache (whose TTL is
    // 30 s): deleted in the database, it is refused within the interval too.
    let (carol, carol_token) = server.user("carol", false).await;
    drop(server.connect(&carol_token).await);
    let id = server.app.db.user_id(&carol).await.unwrap().unwrap();
    execute(&server, "DELETE FROM ws_auth_tokens WHERE user_id = $1", id).await;
    let cookie = format!("key={carol_token}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while server.status(&[("cookie", &cookie)]).await != StatusCode::UNAUTHORIZED {
        assert!(tokio::time::Instant::now() < deadline, "the cache still accepts it after 5 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    task.abort();
}

async fn execute(server: &Server, sql: &str, value: i64) {
    use multichat::db::Pool;
    match &server.app.db.pool {
        Pool::Sqlite(p) => sqlx::query(sql).bind(value).execute(p).await.map(drop).unwrap(),
        Pool::Postgres(p) => sqlx::query(sql).bind(value).execute(p).await.map(drop).unwrap(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registry_is_empty_after_ten_thousand_sockets() {
    let server = Arc::new(start(Backend::Sqlite, false).await);
    let (_, token) = server.user("churn", false).await;
    let workers: Vec<_> = (0..50)
        .map(|_| {
            let (server, token) = (Arc::clone(&server), token.clone());
            tokio::spawn(async move {
                for _ in 0..200 {
                    let mut socket = server.connect(&token).await;
                    socket.close(None).await.unwrap();
                    while socket.next().await.is_some() {}
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    for _ in 0..100 {
        if server.app.lifecycle.revocations().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(server.app.lifecycle.revocations().len(), 0);
}

/// Reads one HTTP response head (and its body, by `Content-Length`) from `stream`.
async fn read_response(stream: &mut tokio::net::TcpStream) -> (u16, String) {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut byte)).await.expect("no answer").unwrap();
        assert_eq!(n, 1, "closed after {:?}", String::from_utf8_lossy(&buf));
        buf.push(byte[0]);
    }
    let head = String::from_utf8(buf).unwrap();
    let length = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap())
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).await.unwrap();
    (head[9..12].parse().unwrap(), head)
}

fn upgrade_head(addr: SocketAddr, path: &str, cookie: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nCookie: {cookie}\r\n\r\n"
    )
}

/// The socket is the same whether the handshake is a connection's first
/// request (accepted straight from the connection), arrives a few bytes at a
/// time, or follows another request on a kept-alive connection (as an HTTP
/// client with a connection pool may send it: accepted through the router).
async fn every_way_to_open_the_socket(backend: Backend) {
    use tokio::io::AsyncWriteExt;
    use tokio_tungstenite::tungstenite::protocol::Role;
    use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
    let server = start(backend, false).await;
    let (alice, token) = server.user("alice", false).await;
    let cookie = format!("key={token}");
    let expected = json!({"join": "1", "title": "General"});

    // After a page load on the same connection.
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let page = format!("GET / HTTP/1.1\r\nHost: {}\r\n\r\n", server.addr);
    stream.write_all(page.as_bytes()).await.unwrap();
    assert_eq!(read_response(&mut stream).await.0, 200);
    stream.write_all(upgrade_head(server.addr, "/chat/stream/", &cookie).as_bytes()).await.unwrap();
    let (status, head) = read_response(&mut stream).await;
    assert_eq!(status, 101, "{head}");
    assert!(head.to_ascii_lowercase().contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="), "{head}");
    let mut kept_alive = WebSocketStream::from_raw_socket(MaybeTlsStream::Plain(stream), Role::Client, None).await;
    assert_eq!(join(&mut kept_alive, "1").await, expected);

    // Refused the same way after another request.
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(page.as_bytes()).await.unwrap();
    assert_eq!(read_response(&mut stream).await.0, 200);
    stream.write_all(upgrade_head(server.addr, "/chat/stream/", "key=wrong").as_bytes()).await.unwrap();
    assert_eq!(read_response(&mut stream).await.0, 401);
    // And broken upgrades with a valid token: 426 naming version 13, 400.
    let version_8 = upgrade_head(server.addr, "/chat/stream/", &cookie).replace("Version: 13", "Version: 8");
    let no_key = upgrade_head(server.addr, "/chat/stream/", &cookie).replace("Sec-WebSocket-Key", "X-Key");
    for (head, expected) in [(version_8, 426), (no_key, 400)] {
        let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        stream.write_all(page.as_bytes()).await.unwrap();
        assert_eq!(read_response(&mut stream).await.0, 200);
        stream.write_all(head.as_bytes()).await.unwrap();
        let (status, answer) = read_response(&mut stream).await;
        assert_eq!(status, expected, "{answer}");
        if expected == 426 {
            assert!(answer.to_ascii_lowercase().contains("sec-websocket-version: 13"), "{answer}");
        }
    }

    // A few bytes at a time, the request line split.
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    for piece in upgrade_head(server.addr, "/chat/stream/?x=1", &cookie).as_bytes().chunks(5) {
        stream.write_all(piece).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (status, head) = read_response(&mut stream).await;
    assert_eq!(status, 101, "{head}");
    let mut trickled = WebSocketStream::from_raw_socket(MaybeTlsStream::Plain(stream), Role::Client, None).await;
    assert_eq!(join(&mut trickled, "1").await, expected);

    // Paths that only start like the socket's are the router's (404).
    for path in ["/chat/stream/x", "/chat/streams/"] {
        let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        stream.write_all(upgrade_head(server.addr, path, &cookie).as_bytes()).await.unwrap();
        assert_eq!(read_response(&mut stream).await.0, 404, "{path}");
    }

    // Every one of them is watched: a logout closes them all with 4401.
    let mut first = server.connect(&token).await;
    assert_eq!(join(&mut first, "1").await, expected);
    let revoked = server.app.lifecycle.revoke(&Token::new(token).unwrap()).await.unwrap();
    assert!(revoked, "{alice}'s token was not revoked");
    for socket in [&mut first, &mut kept_alive, &mut trickled] {
        assert_eq!(close_code(socket, Duration::from_secs(5)).await, Some(4401));
    }
}

macro_rules! both_backends {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $test() { super::$test(super::Backend::Sqlite).await } )*
        }
        mod postgres {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $test() { super::$test(super::Backend::Postgres).await } )*
        }
    };
}

both_backends!(
    handshake_table,
    rooms_messages_and_notices,
    errors_in_order,
    malformed_frames_keep_the_socket,
    http_api,
    expired_token_closes_with_4401,
    store_outage_is_503,
    a_slow_client_does_not_stall_the_room,
    join_storm_delivers_every_notice,
    logout_closes_that_tokens_sockets_within_a_second,
    a_token_deleted_in_the_database_is_noticed_at_revalidation,
    every_way_to_open_the_socket,
);

#[test]
fn command_line() {
    use multichat::{Command, parse};
    let args = |s: &str| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
    let (url, command) = parse(&args("")).unwrap();
    assert_eq!(url, None);
    assert!(matches!(command, Command::Serve { notices: true, .. }));
    let (url, command) = parse(&args("create-user bob --database-url sqlite://x.db --staff")).unwrap();
    assert_eq!(url.as_deref(), Some("sqlite://x.db"));
    assert_eq!(command, Command::CreateUser { name: "bob".into(), password: None, staff: true, token_ttl: None });
    let (_, command) = parse(&args("--database-url postgres://h/db seed-users --count 3 --prefix u")).unwrap();
    assert_eq!(command, Command::SeedUsers { count: 3, prefix: "u".into(), password: "password".into() });
    assert!(matches!(
        parse(&args("serve --no-notices --bind 0.0.0.0:9")).unwrap().1,
        Command::Serve { notices: false, .. }
    ));
    assert!(parse(&args("revoke")).is_err());
    assert!(parse(&args("seed-users")).is_err());
    assert!(parse(&args("serve --bogus 1")).is_err());
    assert!(parse(&args("dance")).is_err());
    assert!(matches!(
        parse(&args("serve --insecure-no-auth")).unwrap().1,
        Command::Serve { insecure_no_auth: true, .. }
    ));
    assert!(matches!(parse(&args("serve")).unwrap().1, Command::Serve { insecure_no_auth: false, .. }));
    let Command::Serve { allowed_origins, redis_url, .. } =
        parse(&args("serve --allowed-origin http://a:1 --redis-url redis://r --allowed-origin https://b")).unwrap().1
    else {
        panic!("not serve")
    };
    assert_eq!(allowed_origins, ["http://a:1", "https://b"]);
    let Command::Serve { limits, .. } = parse(&args("serve --ticket-ttl 5 --expiry-warning-secs 9")).unwrap().1 else {
        panic!("not serve")
    };
    assert_eq!((limits.ticket_ttl.as_secs(), limits.expiry_warning.as_secs()), (5, 9));
    let Command::Serve { limits, .. } = parse(&args("serve")).unwrap().1 else { panic!("not serve") };
    assert_eq!(limits.ticket_ttl.as_secs(), 30, "PROTOCOL.md's default");
    assert!(parse(&args("serve --ticket-ttl soon")).is_err());
    assert_eq!(redis_url.as_deref(), Some("redis://r"));
    // The hostile-load limits: PROTOCOL.md's defaults, and each one an option.
    let Command::Serve { limits, .. } = parse(&args("serve")).unwrap().1 else { panic!("not serve") };
    let defaults = (limits.max_head_bytes, limits.max_sockets_per_user, limits.max_issues_per_minute);
    assert_eq!((defaults, limits.purge_every.as_secs()), ((32768, 100, 30), 60));
    let line = "serve --max-head-bytes 16384 --max-sockets-per-user 5 --max-issues-per-minute 7 --purge-every-secs 9";
    let Command::Serve { limits, .. } = parse(&args(line)).unwrap().1 else { panic!("not serve") };
    let given = (limits.max_head_bytes, limits.max_sockets_per_user, limits.max_issues_per_minute);
    assert_eq!((given, limits.purge_every.as_secs()), ((16384, 5, 7), 9));
    assert!(parse(&args("serve --max-head-bytes 4096")).is_err(), "below hyper's 8 KiB floor");
    assert!(parse(&args("serve --max-sockets-per-user 0")).is_err());
}
