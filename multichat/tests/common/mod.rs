//! What the app's tests share beyond `testkit`: starting the app on a
//! loopback port, a throwaway SQLite file, the chat endpoint.
#![allow(dead_code)] // each test binary uses its own part

use std::net::SocketAddr;
use std::path::PathBuf;

use http::StatusCode;
use multichat::api::{App, router, serve};
use testkit::Socket;
use ws_token_auth::{OriginPolicy, Token};

/// Serves `app` (same-host origin policy) on a fresh loopback port, through
/// the app's own accept loop and limits.
pub async fn serve_app(app: App) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let limits = (*app.limits).clone();
    let service = router(app, OriginPolicy::same_host());
    tokio::spawn(async move { serve(listener, service, &limits).await });
    addr
}

/// A SQLite file no other test uses: its URL and its path.
pub fn temp_sqlite(prefix: &str) -> (String, PathBuf) {
    let file = std::env::temp_dir().join(format!("{prefix}-{}.db", &Token::generate().expose_secret()[..12]));
    (format!("sqlite://{}", file.display()), file)
}

/// Opens the chat endpoint with these headers: the status, and the socket if upgraded.
pub async fn chat_handshake(addr: SocketAddr, headers: &[(&str, &str)]) -> (StatusCode, Option<Socket>) {
    let (status, _, socket) = testkit::handshake(&format!("ws://{addr}/chat/stream/"), headers).await;
    (status, socket)
}

/// The way an Android client connects: the cookie header, no Origin.
pub async fn connect_with_token(addr: SocketAddr, token: &str) -> Socket {
    let cookie = format!("key={token}");
    chat_handshake(addr, &[("cookie", &cookie)]).await.1.expect("handshake refused")
}
