//! What the app's tests share beyond `testkit`: starting the app on a
//! loopback port (in this process, or its real binary), a throwaway SQLite
//! file, the chat endpoint.
#![allow(dead_code)] // each test binary uses its own part

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use http::StatusCode;
use multichat::api::{App, router, serve};
use testkit::Socket;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
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

/// The `multichat` binary that cargo built for this package.
pub fn multichat() -> Command {
    Command::new(env!("CARGO_BIN_EXE_multichat"))
}

/// Runs `multichat --database-url DATABASE ARGS...`, which must succeed; its
/// stdout, trimmed.
pub async fn cli(database: &str, args: &[&str]) -> String {
    let output = multichat().arg("--database-url").arg(database).args(args).output().await.unwrap();
    assert!(output.status.success(), "multichat {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// Spawns `command` (a `multichat ... serve --bind 127.0.0.1:0 ...`, stderr
/// set as the test wants) and waits for the address it prints: the process
/// (killed when dropped) and the address.
pub async fn spawn_serve(mut command: Command) -> (Child, SocketAddr) {
    let mut child = command.stdout(Stdio::piped()).kill_on_drop(true).spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await.unwrap().unwrap().unwrap();
    (child, line.strip_prefix("http://").expect(&line).parse().unwrap())
}

/// One HTTP/1.1 request on its own connection: the status, the head and the body.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let extra: String = headers.iter().map(|(n, v)| format!("{n}: {v}\r\n")).collect();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n{extra}\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    (head[9..12].parse().unwrap(), head.to_owned(), body.to_owned())
}
