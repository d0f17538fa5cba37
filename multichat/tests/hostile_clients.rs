//! Facing the internet (PROTOCOL.md, "Limits and hostile clients"): each
//! finding of the adversarial probe, reproduced at a scale that runs in
//! seconds, and answered.
//!
//! 1. a request body that never completes; more connections than allowed;
//! 2. descriptors running out (the real binary under a low `ulimit -n`);
//! 3. concurrent logins (memory bounded) and repeated failures (throttled);
//! 4. clients that stop reading, then are logged out;
//! 5. a revocation from another process without Redis, and the cache;
//! 6. login CSRF and content types;
//!
//! and the lesser ones: Origin schemes, response headers, login-token
//! lifetime, protocol violations, `revoke --token-stdin`.

mod common;

use common::cli;

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use futures_util::SinkExt;
use multichat::api::App;
use multichat::db::{Db, hash_password};
use multichat::limits::Limits;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message;
use ws_token_auth::store::ManageTokens;
use ws_token_auth::{Token, TokenStore};

/// An app on SQLite with `limits`, and alice (password `pw`) with a token.
async fn app_with(limits: Limits) -> (SocketAddr, App, String) {
    let (url, _) = common::temp_sqlite("multichat-hostile-clients");
    let db = Db::open(&url).await.unwrap();
    let id = db.create_user("alice", &hash_password("pw").unwrap(), false).await.unwrap();
    let token = db.issue_token(id, None).await.unwrap().expose_secret().to_owned();
    let app = App::new(db, false, false).await.unwrap().with_limits(limits);
    (common::serve_app(app.clone()).await, app, token)
}

/// Sends `request` raw and reads until the server closes (or `within` passes):
/// what was read, and whether the connection was closed by the server.
async fn raw(addr: SocketAddr, request: &str, within: Duration) -> (String, bool) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut read = Vec::new();
    let closed = tokio::time::timeout(within, stream.read_to_end(&mut read)).await.is_ok();
    (String::from_utf8_lossy(&read).into_owned(), closed)
}

fn login_request(addr: SocketAddr, headers: &str, body: &str) -> String {
    format!(
        "POST /api/login HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n{headers}\r\n{body}",
        body.len()
    )
}

fn status_of(response: &str) -> u16 {
    response.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0)
}

// --- 1. body timeout, connection cap ----------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_never_completes_is_cut_off_and_connections_are_capped() {
    let limits = Limits { body_timeout: Duration::from_secs(1), max_connections: 5, ..Limits::default() };
    let (addr, _app, _) = app_with(limits).await;

    // Content-Length 100, one byte sent: answered 408 and closed after the body timeout.
    let request = format!(
        "POST /api/login HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{"
    );
    let started = Instant::now();
    let (response, closed) = raw(addr, &request, Duration::from_secs(5)).await;
    assert!(closed, "the connection was still open 5 s later");
    assert_eq!(status_of(&response), 408, "{response}");
    assert!(started.elapsed() < Duration::from_secs(4));

    // Five idle connections hold every slot; a sixth is closed at once.
    let mut idle = Vec::new();
    for _ in 0..5 {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut sixth = TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(2), sixth.read(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "the sixth connection was not closed: {read:?}");
    // The open ones keep working.
    let first = &mut idle[0];
    first.write_all(format!("GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut page = String::new();
    tokio::time::timeout(Duration::from_secs(5), first.read_to_string(&mut page)).await.unwrap().unwrap();
    assert_eq!(status_of(&page), 200);
}

/// Whether the server closes a new connection at once (the cap is reached).
async fn refused_at_once(addr: SocketAddr) -> bool {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_millis(500), stream.read(&mut buf)).await;
    matches!(read, Ok(Ok(0)) | Ok(Err(_)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_hold_their_connection_slot() {
    let (addr, app, token) = app_with(Limits { max_connections: 3, ..Limits::default() }).await;
    // Three users: one user may hold no more than half of the connections.
    let mut tokens = vec![token];
    for name in ["bob", "carol"] {
        let id = app.db.create_user(name, &hash_password("pw").unwrap(), false).await.unwrap();
        tokens.push(app.db.issue_token(id, None).await.unwrap().expose_secret().to_owned());
    }
    let mut sockets = Vec::new();
    for token in &tokens {
        sockets.push(common::connect_with_token(addr, token).await);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(refused_at_once(addr).await, "three open WebSockets, a cap of three: a fourth connection was let in");
    let mut gone = sockets.pop().unwrap();
    gone.close(None).await.unwrap();
    drop(gone);
    let deadline = Instant::now() + Duration::from_secs(2);
    while refused_at_once(addr).await {
        assert!(Instant::now() < deadline, "a closed WebSocket's slot was not freed");
    }
}

// --- 2, 3. the real binary: descriptors, logins ---------------------------------------

struct Server {
    child: Child,
    addr: SocketAddr,
    pid: u32,
}

/// `multichat serve` with `args`, under `ulimit -n nofile` when given.
async fn serve(database: &str, nofile: Option<u32>, args: &[&str]) -> Server {
    let mut command = match nofile {
        Some(n) => {
            let mut c = Command::new("prlimit"); // it execs the server: the pid stays the server's
            c.arg(format!("--nofile={n}:{n}")).arg(env!("CARGO_BIN_EXE_multichat"));
            c
        }
        None => common::multichat(),
    };
    command.args(["--database-url", database, "serve", "--bind", "127.0.0.1:0"]).args(args).stderr(Stdio::null());
    let (child, addr) = common::spawn_serve(command).await;
    let pid = child.id().unwrap();
    Server { child, addr, pid }
}

/// The process's CPU time so far (user + system).
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10) // USER_HZ is 100 on Linux
}

/// A `/proc/PID/status` figure in KiB (`VmRSS`, `VmHWM`).
fn memory_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_descriptors_the_accept_loop_backs_off_and_recovers() {
    let (database, _) = common::temp_sqlite("multichat-emfile");
    cli(&database, &["create-user", "alice", "--password", "pw"]).await;
    let server = serve(&database, Some(64), &["--header-timeout-secs", "60"]).await;
    // More idle connections than the process has descriptors.
    let mut idle = Vec::new();
    for _ in 0..100 {
        if let Ok(Ok(stream)) = tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(server.addr)).await {
            idle.push(stream);
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = cpu_time(server.pid);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let used = cpu_time(server.pid) - before;
    assert!(used < Duration::from_millis(300), "the accept loop used {used:?} of CPU in 2 s while out of descriptors");

    // Descriptors free up: it serves again.
    drop(idle);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (page, _) =
            raw(server.addr, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", Duration::from_secs(3)).await;
        if status_of(&page) == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "not serving 10 s after descriptors freed up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(server.child);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_logins_keep_memory_bounded_and_failures_are_throttled() {
    let (database, _) = common::temp_sqlite("multichat-logins");
    cli(&database, &["create-user", "alice", "--password", "pw"]).await;
    let server = serve(&database, None, &["--max-concurrent-logins", "2"]).await;
    let addr = server.addr;
    let json = "Content-Type: application/json\r\n";
    // Warm up: one login, so that the baseline includes the allocator's own arena.
    let body = json!({"username": "alice", "password": "pw"}).to_string();
    assert_eq!(status_of(&raw(addr, &login_request(addr, json, &body), Duration::from_secs(10)).await.0), 200);
    let baseline = memory_kib(server.pid, "VmRSS");

    // 64 at once for unknown users: some wait, the rest get 429 at once.
    let logins: Vec<_> = (0..64)
        .map(|i| {
            let body = json!({"username": format!("nobody{i}"), "password": "x"}).to_string();
            tokio::spawn(async move { raw(addr, &login_request(addr, json, &body), Duration::from_secs(30)).await.0 })
        })
        .collect();
    let mut statuses = Vec::new();
    for login in logins {
        let response = login.await.unwrap();
        if status_of(&response) == 429 {
            assert!(response.to_ascii_lowercase().contains("retry-after:"), "{response}");
        }
        statuses.push(status_of(&response));
    }
    assert!(statuses.iter().all(|s| [401, 429].contains(s)), "{statuses:?}");
    assert!(statuses.contains(&429), "no login was refused: {statuses:?}");
    let grown_mib = memory_kib(server.pid, "VmHWM").saturating_sub(baseline) / 1024;
    assert!(grown_mib < 200, "peak memory grew by {grown_mib} MiB (unbounded: ~19 MiB per concurrent login)");

    // Five failures for alice from this address: the sixth attempt, even
    // with the right password, is throttled.
    for _ in 0..5 {
        let body = json!({"username": "alice", "password": "wrong"}).to_string();
        assert_eq!(status_of(&raw(addr, &login_request(addr, json, &body), Duration::from_secs(10)).await.0), 401);
    }
    let body = json!({"username": "alice", "password": "pw"}).to_string();
    let (response, _) = raw(addr, &login_request(addr, json, &body), Duration::from_secs(10)).await;
    assert_eq!(status_of(&response), 429, "{response}");
    let retry = common::retry_after(&response);
    assert!((1..=60).contains(&retry), "Retry-After: {retry}");
    drop(server.child);
}

// --- 4. clients that stop reading ------------------------------------------------------

/// Server-side connections on `port` that are still established.
fn established(port: u16) -> usize {
    let local = format!(":{port:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .flat_map(|table| table.lines().skip(1).map(str::to_owned).collect::<Vec<_>>())
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.len() > 3 && fields[1].ends_with(&local) && fields[3] == "01"
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_stop_reading_are_dropped_and_logout_closes_them() {
    let (addr, _app, token) = app_with(Limits::default()).await;
    let cookie = format!("key={token}");
    let mut sockets = Vec::new();
    for _ in 0..4 {
        // A receive buffer of a few KiB, and nothing ever read.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let stream = socket.connect(addr).await.unwrap();
        let mut request = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(format!(
            "ws://{addr}/chat/stream/"
        ))
        .unwrap();
        request.headers_mut().insert("cookie", cookie.parse().unwrap());
        let (ws, _) = tokio_tungstenite::client_async(request, stream).await.unwrap();
        sockets.push(ws);
    }
    assert_eq!(established(addr.port()), 4);
    // Each joins General and sends 400 messages of 4,000 characters: every
    // socket is owed 6.4 MB, more than the kernel and the app's queue hold.
    let message = "m".repeat(4000);
    for ws in &mut sockets {
        ws.send(Message::Text(json!({"command": "join", "room": "1"}).to_string().into())).await.unwrap();
    }
    // (The server may drop one before it is done: its queue bound.)
    let mut dropped = [false; 4];
    for _ in 0..400 {
        for (ws, dropped) in sockets.iter_mut().zip(&mut dropped) {
            let frame = json!({"command": "send", "room": "1", "message": message}).to_string();
            *dropped = *dropped || ws.send(Message::Text(frame.into())).await.is_err();
        }
    }
    // Logout of their token: within a second or so, the server has let go of
    // every one of them, though none reads.
    let (response, _) = raw(
        addr,
        &format!(
            "POST /api/logout HTTP/1.1\r\nHost: {addr}\r\nCookie: {cookie}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(status_of(&response), 204, "{response}");
    let deadline = Instant::now() + Duration::from_secs(2);
    while established(addr.port()) > 0 {
        assert!(Instant::now() < deadline, "{} connections still open 2 s after logout", established(addr.port()));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(sockets);
}

// --- 5. a revocation from another process, without Redis --------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_elsewhere_closes_sockets_and_stays_refused_despite_the_cache() {
    let (url, _) = common::temp_sqlite("multichat-revoked-elsewhere");
    let db = Db::open(&url).await.unwrap();
    let id = db.create_user("carol", &hash_password("pw").unwrap(), false).await.unwrap();
    let token = db.issue_token(id, None).await.unwrap();
    let app = App::new(db.clone(), false, false).await.unwrap();
    app.lifecycle.revalidate_every(Duration::from_millis(500));
    let addr = common::serve_app(app.clone()).await;
    let mut socket = common::connect_with_token(addr, token.expose_secret()).await; // cached now

    // Another process (a second database handle, no bus) revokes it.
    let other = Db::open(&url).await.unwrap();
    assert!(other.tokens.revoke(&token).await.unwrap());
    assert_eq!(testkit::close_code(&mut socket, Duration::from_secs(3)).await, Some(4401));
    // And it stays refused: the cache does not serve it again.
    for _ in 0..10 {
        let cookie = format!("key={}", token.expose_secret());
        assert_eq!(common::chat_handshake(addr, &[("cookie", &cookie)]).await.0, 401);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(app.lifecycle.store().authenticate(&token).await.unwrap().is_none());
}

// --- 6. login CSRF, content types, origins -------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_csrf_content_types_and_origin_schemes() {
    let (addr, _app, token) = app_with(Limits::default()).await;
    let body = json!({"username": "alice", "password": "pw"}).to_string();
    let json = "Content-Type: application/json\r\n";
    let post = |headers: String, body: String| async move {
        status_of(&raw(addr, &login_request(addr, &headers, &body), Duration::from_secs(10)).await.0)
    };
    assert_eq!(post(format!("{json}Origin: https://evil.example\r\n"), body.clone()).await, 403, "login CSRF");
    assert_eq!(post("Content-Type: text/plain\r\n".into(), body.clone()).await, 415, "a text/plain form post");
    assert_eq!(post(String::new(), body.clone()).await, 415, "no content type");
    assert_eq!(post(format!("{json}Origin: http://{addr}\r\n"), body.clone()).await, 200, "the page's own origin");
    assert_eq!(post(json.into(), body.clone()).await, 200, "a native client: no Origin");
    let form = "Content-Type: application/x-www-form-urlencoded\r\n";
    assert_eq!(post(form.into(), "username=alice&password=pw".into()).await, 200);

    // Cookie calls from a refused or non-web Origin: 403.
    let cookie = format!("key={token}");
    for origin in ["https://evil.example", &format!("foo://{addr}"), &format!("ws://{addr}")] {
        let (status, _) = common::chat_handshake(addr, &[("cookie", &cookie), ("origin", origin)]).await;
        assert_eq!(status, 403, "{origin}");
        let logout = format!(
            "POST /api/logout HTTP/1.1\r\nHost: {addr}\r\nCookie: {cookie}\r\nOrigin: {origin}\r\nContent-Length: 0\r\n\
             Connection: close\r\n\r\n"
        );
        assert_eq!(status_of(&raw(addr, &logout, Duration::from_secs(5)).await.0), 403, "logout CSRF {origin}");
    }
}

// --- the lesser findings ---------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_token_lifetime_protocol_violations_and_token_stdin() {
    let limits = Limits { login_token_ttl: Duration::from_secs(3600), ..Limits::default() };
    let (addr, app, token) = app_with(limits).await;
    let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let (page, _) = raw(addr, &get("/"), Duration::from_secs(5)).await;
    let head = page.split("\r\n\r\n").next().unwrap().to_ascii_lowercase();
    for header in [
        "content-security-policy: default-src 'self'; script-src 'self'; connect-src 'self'",
        "frame-ancestors 'none'",
        "x-content-type-options: nosniff",
        "referrer-policy: no-referrer",
    ] {
        assert!(head.contains(header), "the page lacks {header}:\n{head}");
    }
    let (rooms, _) = raw(addr, &get("/api/rooms"), Duration::from_secs(5)).await;
    assert!(rooms.to_ascii_lowercase().contains("cache-control: no-store"), "{rooms}");

    // A login's token expires after the login-token lifetime.
    let body = json!({"username": "alice", "password": "pw"}).to_string();
    let (response, _) =
        raw(addr, &login_request(addr, "Content-Type: application/json\r\n", &body), Duration::from_secs(10)).await;
    let reply: serde_json::Value = serde_json::from_str(response.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    let issued = Token::new(reply["token"].as_str().unwrap()).unwrap();
    let expires_at = app.lifecycle.store().authenticate(&issued).await.unwrap().unwrap().expires_at.expect("expires");
    let left = expires_at.duration_since(std::time::SystemTime::now()).unwrap();
    assert!(left > Duration::from_secs(3500) && left <= Duration::from_secs(3600), "{left:?}");

    // A protocol violation (an unmasked client frame): close 1002, then the connection ends.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let handshake = format!(
        "GET /chat/stream/ HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nCookie: key={token}\r\n\r\n"
    );
    stream.write_all(handshake.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"));
    stream.write_all(&[0x81, 0x02, b'h', b'i']).await.unwrap(); // text "hi", not masked
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest)).await.unwrap().unwrap();
    assert!(rest.len() >= 4 && rest[0] == 0x88, "no close frame: {rest:?}");
    assert_eq!(u16::from_be_bytes([rest[2], rest[3]]), 1002);

    // revoke --token-stdin: the token is not in the process list.
    let (database, _) = common::temp_sqlite("multichat-stdin");
    let created = cli(&database, &["create-user", "dave", "--password", "pw"]).await;
    let mut child = Command::new(env!("CARGO_BIN_EXE_multichat"))
        .args(["--database-url", &database, "revoke", "--token-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", child.id().unwrap())).unwrap_or_default();
    assert!(!String::from_utf8_lossy(&cmdline).contains(&created), "the token is in the process list");
    child.stdin.take().unwrap().write_all(format!("{created}\n").as_bytes()).await.unwrap();
    let output = child.wait_with_output().await.unwrap();
    assert!(output.status.success());
    assert_eq!(String::from_utf8(output.stdout).unwrap().trim(), "1", "revoked");
    let db = Db::open(&database).await.unwrap();
    assert!(db.tokens.authenticate(&Token::new(created).unwrap()).await.unwrap().is_none());
}
