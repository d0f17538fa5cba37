//! The hyper 1 example (`examples/hyper_server.rs`, included as it is) over a
//! real socket with a real tokio-tungstenite client.

mod common;
#[allow(dead_code)]
#[path = "../examples/hyper_server.rs"]
mod hyper_server;

use std::net::SocketAddr;
use std::sync::Arc;

use common::{assert_greets_and_echoes, connect, connect_full, failing};
use http::{StatusCode, header};
use ws_token_auth::store::ManageTokens;
use ws_token_auth::{Authenticator, MemoryTokenStore, TokenAuthLayer, TokenStore};

async fn start<St: TokenStore<User = String>>(layer: TokenAuthLayer<St>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(hyper_server::serve(listener, layer));
    addr
}

#[tokio::test]
async fn hyper_server_authenticates_the_upgrade() {
    let store = Arc::new(MemoryTokenStore::new());
    let token = store.issue(&"alice".to_owned(), None).await.unwrap();
    let addr = start(Authenticator::from_shared(store).layer()).await;
    assert_greets_and_echoes(addr, &token, "alice").await;
    let cookie = format!("key={}", token.expose_secret());

    let (status, headers, _) = connect_full(addr, &[("cookie", "key=0123456789abcdef")]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers[header::WWW_AUTHENTICATE], "Token");
    assert_eq!(connect(addr, &[("cookie", "key=a; key=b")]).await.0, StatusCode::BAD_REQUEST);
    let foreign = [("cookie", cookie.as_str()), ("origin", "https://evil.example")];
    assert_eq!(connect(addr, &foreign).await.0, StatusCode::FORBIDDEN);

    // An authenticated request for another WebSocket version: 426, naming 13.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\nCookie: {cookie}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 1024];
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut answer)).await.unwrap().unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]).to_ascii_lowercase();
    assert!(answer.starts_with("http/1.1 426"), "{answer}");
    assert!(answer.contains("\r\nsec-websocket-version: 13\r\n"), "{answer}");
}

#[tokio::test]
async fn hyper_server_answers_503_when_the_store_fails() {
    let addr = start(Authenticator::new(failing::<String>()).layer()).await;
    assert_eq!(connect(addr, &[("cookie", "key=0123456789abcdef")]).await.0, StatusCode::SERVICE_UNAVAILABLE);
}
