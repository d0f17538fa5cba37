//! The tokio-tungstenite adapter (feature `tungstenite`): the example server
//! (`examples/tungstenite_server.rs`, included as it is) and the `Acceptor`'s
//! limits, over real sockets.

mod common;
#[allow(dead_code)]
#[path = "../examples/tungstenite_server.rs"]
mod tungstenite_server;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{assert_greets_and_echoes, connect, connect_full, failing, next_text};
use http::{StatusCode, header};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::Role;
use ws_token_auth::extract::TokenSource;
use ws_token_auth::tungstenite::{Accepted, Acceptor, HandshakeError};
use ws_token_auth::{Authenticated, Authenticator, MemoryTokenStore, Token, TokenStore};

/// A raw tokio-tungstenite server over `auth`: no tower layer anywhere.
async fn start<St: TokenStore<User = String>>(auth: Authenticator<St>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(tungstenite_server::serve(listener, auth));
    addr
}

fn alice() -> (Arc<MemoryTokenStore<String>>, Token) {
    let store = Arc::new(MemoryTokenStore::new());
    let token = Token::generate();
    store.insert(&token, Authenticated::new("alice".to_owned()));
    (store, token)
}

/// A WebSocket handshake request head for `addr` with `extra` header lines.
fn head(addr: SocketAddr, extra: &str) -> String {
    format!(
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// A masked client text frame.
fn client_text_frame(text: &str) -> Vec<u8> {
    assert!(text.len() < 126);
    let mask = [0x12, 0x34, 0x56, 0x78];
    let mut frame = vec![0x81, 0x80 | u8::try_from(text.len()).unwrap()];
    frame.extend_from_slice(&mask);
    frame.extend(text.bytes().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// Sends `bytes` in one write and reads the response head; returns the
/// status, the head, the stream and whatever followed the head.
async fn raw(addr: SocketAddr, bytes: &[u8]) -> (u16, String, TcpStream, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut buf = Vec::new();
    let end = loop {
        let mut chunk = [0u8; 1024];
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "closed before a response head: {:?}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let rest = buf.split_off(end);
    let head = String::from_utf8(buf).unwrap();
    let status = head[9..12].parse().unwrap();
    (status, head, stream, rest)
}

/// Accepts one connection with `acceptor`; the handle yields its result.
async fn accept_one(
    acceptor: Acceptor<MemoryTokenStore<String>>,
) -> (SocketAddr, JoinHandle<Result<Accepted<TcpStream, String>, HandshakeError>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        acceptor.accept(stream).await
    });
    (addr, task)
}

/// Reads until the peer closes (EOF or reset); fails if that takes over `within`.
async fn assert_closed(stream: &mut TcpStream, within: Duration) {
    let mut sink = vec![0u8; 64 * 1024];
    let closed = tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the server kept the connection open");
}

#[tokio::test]
async fn example_server_greets_an_authenticated_client_and_echoes() {
    let (store, token) = alice();
    let addr = start(Authenticator::from_shared(store)).await;
    assert_greets_and_echoes(addr, &token, "alice").await;
}

#[tokio::test]
async fn example_server_refusals() {
    let (store, token) = alice();
    let addr = start(Authenticator::from_shared(store)).await;
    let cookie = format!("key={}", token.expose_secret());
    let (status, headers, socket) = connect_full(addr, &[("cookie", "key=0123456789abcdef")]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers[header::WWW_AUTHENTICATE], "Token");
    assert!(socket.is_none());
    assert_eq!(connect(addr, &[]).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(connect(addr, &[("cookie", "key=a; key=b")]).await.0, StatusCode::BAD_REQUEST);
    let foreign = [("cookie", cookie.as_str()), ("origin", "https://evil.example")];
    assert_eq!(connect(addr, &foreign).await.0, StatusCode::FORBIDDEN);

    let failing = start(Authenticator::new(failing::<String>())).await;
    assert_eq!(connect(failing, &[("cookie", "key=0123456789abcdef")]).await.0, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn a_first_frame_in_the_same_write_as_the_head_is_served() {
    let (store, token) = alice();
    let addr = start(Authenticator::from_shared(store)).await;
    let mut bytes = head(addr, &format!("Cookie: key={}\r\n", token.expose_secret())).into_bytes();
    bytes.extend(client_text_frame("first"));
    let (status, _, stream, rest) = raw(addr, &bytes).await;
    assert_eq!(status, 101);
    let mut socket = WebSocketStream::from_partially_read(stream, rest, Role::Client, None).await;
    assert_eq!(next_text(&mut socket).await, "hello alice");
    assert_eq!(next_text(&mut socket).await, "first");
}

#[tokio::test]
async fn upgrade_requests_are_checked_before_the_store() {
    let (store, token) = alice();
    let addr = start(Authenticator::from_shared(store)).await;
    let cookie = format!("Cookie: key={}\r\n", token.expose_secret());
    let plain_get = format!("GET /ws HTTP/1.1\r\nHost: {addr}\r\n{cookie}\r\n");
    assert_eq!(raw(addr, plain_get.as_bytes()).await.0, 400);
    let version_8 = head(addr, &cookie).replace("Version: 13", "Version: 8");
    let (status, response, _, _) = raw(addr, version_8.as_bytes()).await;
    assert_eq!(status, 426);
    assert!(response.to_ascii_lowercase().contains("\r\nsec-websocket-version: 13\r\n"), "{response}");
    let bad_key = head(addr, &cookie).replace("dGhlIHNhbXBsZSBub25jZQ==", "short");
    assert_eq!(raw(addr, bad_key.as_bytes()).await.0, 400);
    let elsewhere = head(addr, &cookie).replace("GET /ws ", "GET /other ");
    assert_eq!(raw(addr, elsewhere.as_bytes()).await.0, 404);
    let post = head(addr, &cookie).replace("GET /ws ", "POST /ws ");
    assert_eq!(raw(addr, post.as_bytes()).await.0, 400);
    assert_eq!(raw(addr, b"NOT HTTP AT ALL\r\n\r\n").await.0, 400);
}

#[tokio::test]
async fn an_endless_header_is_cut_off_at_the_size_limit() {
    let (store, _) = alice();
    let auth = Authenticator::from_shared(store);
    let (addr, server) = accept_one(Acceptor::new(auth).max_head_bytes(16 * 1024)).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    // Keep sending one header that never ends, far past the limit.
    let _ = stream.write_all(b"GET /ws HTTP/1.1\r\nX-Pad: ").await;
    for _ in 0..64 {
        if stream.write_all(&[b'a'; 1024]).await.is_err() {
            break; // the server closed on us: what we want
        }
    }
    let result = tokio::time::timeout(Duration::from_secs(10), server).await.unwrap().unwrap();
    assert!(matches!(result, Err(HandshakeError::HeadTooLarge)), "{result:?}");
    assert_closed(&mut stream, Duration::from_secs(10)).await;
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn too_many_header_lines_are_refused() {
    let (store, token) = alice();
    let addr = start(Authenticator::from_shared(store)).await;
    let many: String = (0..200).map(|i| format!("X-H{i}: v\r\n")).collect();
    let request = head(addr, &format!("Cookie: key={}\r\n{many}", token.expose_secret()));
    assert_eq!(raw(addr, request.as_bytes()).await.0, 431);
}

#[tokio::test]
async fn max_headers_lowers_the_line_limit() {
    let (store, token) = alice();
    let cookie = format!("Cookie: key={}\r\n", token.expose_secret());
    // `head` sends 5 lines of its own, plus the cookie: 6, then 7 with one more.
    for (extra, expected) in [("", 101), ("X-One: more\r\n", 431)] {
        let acceptor = Acceptor::new(Authenticator::from_shared(Arc::clone(&store))).max_headers(6);
        let (addr, server) = accept_one(acceptor).await;
        let request = head(addr, &format!("{cookie}{extra}"));
        assert_eq!(raw(addr, request.as_bytes()).await.0, expected, "{extra:?}");
        let _ = server.await.unwrap();
    }
}

#[tokio::test]
async fn accept_by_counts_from_the_given_deadline() {
    let (store, _) = alice();
    let acceptor = Acceptor::new(Authenticator::from_shared(store)).head_timeout(Duration::from_secs(30));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        // The caller spent 200 ms of the client's 300 already.
        let deadline = tokio::time::Instant::now() + Duration::from_millis(100);
        let started = Instant::now();
        (acceptor.accept_by(stream, deadline).await, started.elapsed())
    });
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\n").await.unwrap(); // and then nothing
    let (result, waited) = tokio::time::timeout(Duration::from_secs(10), server).await.unwrap().unwrap();
    assert!(matches!(result, Err(HandshakeError::Timeout(_))), "{result:?}");
    assert!(waited < Duration::from_secs(5), "waited {waited:?}: the head timeout, not the deadline");
    assert_closed(&mut stream, Duration::from_secs(10)).await;
}

#[tokio::test]
async fn a_stalled_handshake_is_dropped_at_the_time_limit() {
    let (store, _) = alice();
    let auth = Authenticator::from_shared(store);
    let (addr, server) = accept_one(Acceptor::new(auth).head_timeout(Duration::from_millis(300))).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\n").await.unwrap(); // and then nothing
    let result = tokio::time::timeout(Duration::from_secs(10), server).await.unwrap().unwrap();
    assert!(matches!(result, Err(HandshakeError::Timeout(_))), "{result:?}");
    assert_closed(&mut stream, Duration::from_secs(10)).await;
}

#[tokio::test]
async fn the_acceptor_echoes_only_the_app_protocol() {
    let (store, token) = alice();
    let layer = Authenticator::from_shared(store).sources([TokenSource::subprotocol("token.")]).layer();
    let acceptor = Acceptor::new(layer.authenticator().clone()).protocols(["chat.v1"]);
    let (addr, server) = accept_one(acceptor).await;
    let offer = format!("token.{}, chat.v1", token.expose_secret());
    let client = tokio::spawn(async move { connect_full(addr, &[("sec-websocket-protocol", &offer)]).await });
    let accepted = server.await.unwrap().unwrap();
    assert_eq!(accepted.protocol.as_deref(), Some("chat.v1"));
    assert_eq!(accepted.identity.user().unwrap().user, "alice");
    let (status, headers, _) = client.await.unwrap();
    assert_eq!(status, StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(headers[header::SEC_WEBSOCKET_PROTOCOL], "chat.v1");
}
