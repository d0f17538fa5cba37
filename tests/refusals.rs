//! One place makes refusals: for the same rejection, the tower layer, the
//! axum extractor (behind the layer in optional mode) and the raw
//! tokio-tungstenite adapter answer with the same status, challenge and body,
//! over real sockets, with the default responder and with a custom one.

#[allow(dead_code)]
#[path = "../examples/tungstenite_server.rs"]
mod tungstenite_server;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use http::Response;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use ws_token_auth::extract::TokenSource;
use ws_token_auth::{AuthenticatedUser, Authenticator, MemoryTokenStore, Rejection};

type Auth = Authenticator<MemoryTokenStore<String>>;

/// A handshake request head with `extra` header lines.
fn handshake(addr: SocketAddr, extra: &str) -> String {
    format!(
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
    )
}

/// The refusal as the client sees it: status, `WWW-Authenticate`, body
/// (read by its `Content-Length`: refusals know their length).
async fn refusal(addr: SocketAddr, extra: &str) -> (u16, Option<String>, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(handshake(addr, extra).as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("the refusal did not arrive")
            .unwrap();
        raw.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&raw).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let header = |name: &str| {
                head.lines()
                    .find_map(|line| line.split_once(':').filter(|(n, _)| n.eq_ignore_ascii_case(name)))
                    .map(|(_, v)| v.trim().to_owned())
            };
            let length: usize = header("content-length").expect("a refusal states its length").parse().unwrap();
            if body.len() >= length {
                return (head[9..12].parse().unwrap(), header("www-authenticate"), body[..length].to_owned());
            }
        }
        assert!(n > 0, "the connection closed before the refusal was complete: {text:?}");
    }
}

async fn listen() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

/// The same authenticator behind the three entry points.
async fn servers(auth: &Auth) -> [SocketAddr; 3] {
    let (layer, layer_addr) = listen().await;
    let app = Router::new().route("/ws", get(|| async { "upgraded" })).layer(auth.layer());
    tokio::spawn(async move { axum::serve(layer, app).await.unwrap() });

    // In optional mode the layer lets the anonymous request through: the
    // extractor refuses it.
    let (extractor, extractor_addr) = listen().await;
    let handler = |user: AuthenticatedUser<String>| async move { user.user };
    let app = Router::new().route("/ws", get(handler)).layer(auth.clone().optional().layer());
    tokio::spawn(async move { axum::serve(extractor, app).await.unwrap() });

    let (raw, raw_addr) = listen().await;
    tokio::spawn(tungstenite_server::serve(raw, auth.clone()));
    [layer_addr, extractor_addr, raw_addr]
}

async fn same_everywhere(auth: Auth, cases: &[(&str, u16)]) {
    let [layer, extractor, adapter] = servers(&auth).await;
    for (extra, status) in cases {
        let from_layer = refusal(layer, extra).await;
        assert_eq!(from_layer.0, *status, "{extra:?}");
        assert_eq!(refusal(adapter, extra).await, from_layer, "the adapter differs from the layer for {extra:?}");
        if *status == 401 {
            // The extractor refuses only what optional mode let through: no or an unknown token.
            assert_eq!(refusal(extractor, extra).await, from_layer, "the extractor differs for {extra:?}");
        }
    }
}

const CASES: &[(&str, u16)] = &[
    ("", 401),
    ("Cookie: key=unknown-token\r\n", 401),
    ("Cookie: key=a; key=b\r\n", 400),
    ("Cookie: key=x\r\nOrigin: https://evil.example\r\n", 403),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_refusals_are_the_same_through_layer_extractor_and_adapter() {
    let auth = Authenticator::from_shared(Arc::new(MemoryTokenStore::new()));
    same_everywhere(auth, CASES).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_responder_and_challenge_apply_everywhere() {
    let auth = Authenticator::from_shared(Arc::new(MemoryTokenStore::new()))
        .sources([TokenSource::cookie("key"), TokenSource::authorization(["Bearer"])])
        .on_rejection(|rejection: &Rejection| {
            Response::builder()
                .status(rejection.status())
                .header("content-type", "application/json")
                .body(format!("{{\"error\":\"{}\"}}", rejection.kind().as_str()))
                .unwrap()
        });
    let [layer, ..] = servers(&auth).await;
    let (status, challenge, body) = refusal(layer, "").await;
    assert_eq!(
        (status, challenge.as_deref(), body.as_str()),
        (401, Some("Bearer"), "{\"error\":\"missing_credential\"}")
    );
    same_everywhere(auth, CASES).await;
}
