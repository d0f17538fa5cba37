//! permessage-deflate with two independent clients that offer it by default:
//! Python's `websockets` and Node's `ws` (`tests/python`, `tests/browser`;
//! `.ci/run` installs both libraries). The third, Chromium, is in
//! `browser.rs`. Each signs in as the Android client does (Cookie, no Origin)
//! through a byte-counting loopback proxy, so the test sees what crossed the
//! wire: the messages arrive intact both ways, and they crossed it compressed.
//! A plain client in the same room (no offer) reads the same messages
//! uncompressed. A socket opened on a connection that served the page first
//! (the router's path, not the acceptor's) is compressed too.

mod common;

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use multichat::api::App;
use multichat::db::{Db, hash_password};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::Command;

/// A loopback TCP proxy to `target` that counts the bytes it carries each way.
struct CountingProxy {
    addr: SocketAddr,
    down: Arc<AtomicU64>,
    up: Arc<AtomicU64>,
}

impl CountingProxy {
    async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (down, up) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (d, u) = (down.clone(), up.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let server = TcpStream::connect(target).await.unwrap();
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(pump(server_read, client_write, d.clone()));
                tokio::spawn(pump(client_read, server_write, u.clone()));
            }
        });
        Self { addr, down, up }
    }

    fn down(&self) -> u64 {
        self.down.load(Ordering::SeqCst)
    }

    fn up(&self) -> u64 {
        self.up.load(Ordering::SeqCst)
    }
}

async fn pump(mut from: impl AsyncReadExt + Unpin, mut to: impl AsyncWriteExt + Unpin, count: Arc<AtomicU64>) {
    let mut buffer = vec![0; 16 * 1024];
    while let Ok(n @ 1..) = from.read(&mut buffer).await {
        if to.write_all(&buffer[..n]).await.is_err() {
            break;
        }
        count.fetch_add(n as u64, Ordering::SeqCst);
    }
    let _ = to.shutdown().await;
}

/// A realistic 2 KB paste.
fn paste(seed: usize) -> String {
    testkit::log_paste(seed, 2000)
}

async fn next_json(socket: &mut testkit::Socket) -> Value {
    serde_json::from_str(&testkit::next_text_within(socket, Duration::from_secs(20)).await).unwrap()
}

/// Runs `client` (given the URL, carol's token and her paste as its last
/// three arguments) against the app, bob beside it on a plain socket.
async fn a_compressing_client_chats(mut client: Command) {
    let (database, file) = common::temp_sqlite("multichat-compression");
    let db = Db::open(&database).await.unwrap();
    let bob_id = db.create_user("bob", &hash_password("bob-pw").unwrap(), false).await.unwrap();
    let carol_id = db.create_user("carol", &hash_password("carol-pw").unwrap(), false).await.unwrap();
    let bob_token = db.issue_token(bob_id, None).await.unwrap();
    let carol_token = db.issue_token(carol_id, None).await.unwrap();
    let app = App::new(db, true, false).await.unwrap();
    let addr = common::serve_app(app).await;
    let proxy = CountingProxy::start(addr).await;

    let mut bob = common::connect_with_token(addr, bob_token.expose_secret()).await;
    testkit::send_json(&mut bob, json!({"command": "join", "room": "1"})).await;
    assert_eq!(next_json(&mut bob).await["join"], "1");

    let carol_paste = paste(1000);
    let mut child = client
        .arg(format!("ws://{}/chat/stream/", proxy.addr))
        .arg(carol_token.expose_secret())
        .arg(&carol_paste)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("cannot start the client");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next_line = async || -> String {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await.expect("the client stalled");
        line.unwrap().expect("the client ended early")
    };

    let extensions = next_line().await;
    assert!(
        extensions.starts_with("EXT permessage-deflate; server_no_context_takeover; client_no_context_takeover"),
        "{extensions}"
    );
    assert_eq!(next_line().await, "READY");
    assert_eq!(next_json(&mut bob).await, json!({"msg_type": 4, "room": "1", "username": "carol"}));

    // Down: ten pastes and ten short lines from bob reach carol intact, in
    // order, in well under half the bytes they take uncompressed.
    let before = proxy.down();
    let mut plain_bytes = 0;
    for i in 0..10 {
        for message in [paste(i * 50), format!("ok, looking at order {i} now")] {
            let frame = json!({"msg_type": 0, "room": "1", "username": "bob", "message": message});
            plain_bytes += frame.to_string().len() as u64 + 4;
            testkit::send_json(&mut bob, json!({"command": "send", "room": "1", "message": message})).await;
            assert_eq!(next_json(&mut bob).await, frame, "bob's own copy");
            let seen: Value = serde_json::from_str(&next_line().await).unwrap();
            assert_eq!(seen, frame, "what carol's client read");
        }
    }
    let down = proxy.down() - before;
    eprintln!("down: {down} bytes on the wire for {plain_bytes} bytes of frames");
    assert!(down * 2 < plain_bytes, "{down} bytes on the wire for {plain_bytes} bytes of frames");

    // Up: carol's paste reaches the server compressed and bob reads it intact.
    let before = proxy.up();
    testkit::send_json(&mut bob, json!({"command": "send", "room": "1", "message": "bye"})).await;
    assert_eq!(next_json(&mut bob).await["message"], "bye");
    assert_eq!(serde_json::from_str::<Value>(&next_line().await).unwrap()["message"], "bye");
    assert_eq!(
        next_json(&mut bob).await,
        json!({"msg_type": 0, "room": "1", "username": "carol", "message": carol_paste})
    );
    let up = proxy.up() - before;
    eprintln!("up: {up} bytes for a {} byte paste and a short line", carol_paste.len());
    assert!(up * 2 < carol_paste.len() as u64, "{up} bytes went up for a {} byte paste", carol_paste.len());
    assert_eq!(serde_json::from_str::<Value>(&next_line().await).unwrap()["message"], carol_paste);
    assert_eq!(next_line().await, "CLOSED 1000");
    assert!(child.wait().await.unwrap().success());
    let _ = std::fs::remove_file(file);
}

/// The other socket path: a client that asks for the page on a connection
/// and then opens its socket on the same one is served by hyper and the
/// router, not the acceptor. It gets compression there too (a client on the
/// library's own layer in the client role, the bare offer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_router_path_compresses_too() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::{Message, protocol::Role as WsRole};
    use ws_token_auth::deflate::{self, Deflate, Role};

    let (database, file) = common::temp_sqlite("multichat-compression-router");
    let db = Db::open(&database).await.unwrap();
    let dave_id = db.create_user("dave", &hash_password("dave-pw").unwrap(), false).await.unwrap();
    let token = db.issue_token(dave_id, None).await.unwrap();
    let addr = common::serve_app(App::new(db, true, false).await.unwrap()).await;
    let proxy = CountingProxy::start(addr).await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();

    // The page first, on this connection.
    let host = proxy.addr;
    stream.write_all(format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes()).await.unwrap();
    let (head, mut rest) = read_head(&mut stream, Vec::new()).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let length: usize = header(&head, "content-length").unwrap().parse().unwrap();
    while rest.len() < length {
        let mut buffer = vec![0; 16 * 1024];
        let n = stream.read(&mut buffer).await.unwrap();
        assert!(n > 0, "the page was cut short");
        rest.extend_from_slice(&buffer[..n]);
    }
    rest.drain(..length);

    // Then the socket, on the same connection: the router answers it.
    let upgrade = format!(
        "GET /chat/stream/ HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Extensions: permessage-deflate\r\nCookie: key={}\r\n\r\n",
        token.expose_secret()
    );
    stream.write_all(upgrade.as_bytes()).await.unwrap();
    let (head, rest) = read_head(&mut stream, rest).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let answer = header(&head, "sec-websocket-extensions").expect("no extension agreed");
    assert_eq!(answer, "permessage-deflate; server_no_context_takeover; client_no_context_takeover");
    let mut agreed = http::HeaderMap::new();
    agreed.insert("sec-websocket-extensions", answer.parse().unwrap());
    let io = Deflate::with_prefix(stream, rest, Role::Client, deflate::negotiate(&agreed), 1 << 20);
    let mut socket = tokio_tungstenite::WebSocketStream::from_raw_socket(io, WsRole::Client, None).await;
    assert!(socket.get_ref().is_compressing());

    let next = async |socket: &mut tokio_tungstenite::WebSocketStream<Deflate<TcpStream>>| -> Value {
        let frame = tokio::time::timeout(Duration::from_secs(10), socket.next()).await.unwrap().unwrap().unwrap();
        serde_json::from_str(frame.to_text().unwrap()).unwrap()
    };
    let send = |frame: Value| Message::Text(frame.to_string().into());
    socket.send(send(json!({"command": "join", "room": "1"}))).await.unwrap();
    assert_eq!(next(&mut socket).await["join"], "1");
    let (before_down, before_up) = (proxy.down(), proxy.up());
    let mut plain_bytes = 0;
    for i in 0..10 {
        let message = paste(i * 50);
        socket.send(send(json!({"command": "send", "room": "1", "message": message}))).await.unwrap();
        let expected = json!({"msg_type": 0, "room": "1", "username": "dave", "message": message});
        plain_bytes += expected.to_string().len() as u64 + 4;
        assert_eq!(next(&mut socket).await, expected);
    }
    let (down, up) = (proxy.down() - before_down, proxy.up() - before_up);
    assert!(down * 2 < plain_bytes, "{down} bytes down for {plain_bytes} bytes of frames");
    assert!(up * 2 < plain_bytes, "{up} bytes up for about {plain_bytes} bytes of frames");
    let _ = std::fs::remove_file(file);
}

/// Reads an HTTP head (after `start`, bytes already read): the head, and
/// what came after it.
async fn read_head(stream: &mut TcpStream, mut start: Vec<u8>) -> (String, Vec<u8>) {
    loop {
        if let Some(end) = start.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = start.split_off(end + 4);
            return (String::from_utf8(start).unwrap(), rest);
        }
        let mut buffer = vec![0; 4096];
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buffer)).await.unwrap().unwrap();
        assert!(n > 0, "the connection ended before a head: {}", String::from_utf8_lossy(&start));
        start.extend_from_slice(&buffer[..n]);
    }
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_websockets_client_compresses_both_ways() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/websockets_client.py");
    let deps = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/.deps/websockets");
    assert!(
        std::path::Path::new(deps).exists(),
        "websockets is missing: run `python3 -m pip install --target tests/python/.deps -r tests/python/requirements.txt`, as .ci/run does"
    );
    let mut client = Command::new("python3");
    client.arg(script);
    a_compressing_client_chats(client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_ws_client_compresses_both_ways() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser");
    assert!(
        std::path::Path::new(&format!("{dir}/node_modules/ws")).exists(),
        "ws is missing: run `npm ci --prefix tests/browser`, as .ci/run does"
    );
    let mut client = Command::new("node");
    client.arg("ws_client.mjs").current_dir(dir);
    a_compressing_client_chats(client).await;
}
