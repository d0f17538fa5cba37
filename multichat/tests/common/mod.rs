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

/// Opens the chat socket by hand on a raw TCP stream (the Android way: the
/// cookie, no Origin) and returns the stream after its `101`, for tests that
/// write frames byte by byte or never read. `recv_buffer` shrinks the
/// client's kernel receive buffer, so that a client that reads nothing
/// pushes back on the server at once.
pub async fn raw_socket(addr: SocketAddr, token: &str, recv_buffer: Option<u32>) -> tokio::net::TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    if let Some(bytes) = recv_buffer {
        socket.set_recv_buffer_size(bytes).unwrap();
    }
    let mut stream = socket.connect(addr).await.unwrap();
    let request = format!(
        "GET /chat/stream/ HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nCookie: key={token}\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        assert_eq!(stream.read(&mut byte).await.unwrap(), 1, "closed during the handshake");
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
    stream
}

/// One masked client frame (FIN set) with `opcode` and `payload`.
pub fn masked_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut frame = vec![0x80 | opcode];
    match payload.len() {
        len @ 0..=125 => frame.push(0x80 | len as u8),
        len @ 126..=0xffff => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, byte)| byte ^ mask[i % 4]));
    frame
}

/// Samples the process's live heap (the counting allocator's count) every
/// few milliseconds until dropped; `peak` is the highest seen.
pub struct HeapPeak {
    peak: std::sync::Arc<std::sync::atomic::AtomicIsize>,
    task: tokio::task::JoinHandle<()>,
}

impl HeapPeak {
    /// Starts sampling `live` (e.g. `testkit::live_bytes`).
    pub fn start(live: fn() -> isize) -> Self {
        use std::sync::atomic::Ordering;
        let peak = std::sync::Arc::new(std::sync::atomic::AtomicIsize::new(live()));
        let seen = std::sync::Arc::clone(&peak);
        let task = tokio::spawn(async move {
            loop {
                seen.fetch_max(live(), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        });
        Self { peak, task }
    }

    /// The highest live heap seen so far.
    pub fn peak(&self) -> isize {
        self.peak.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for HeapPeak {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The `Retry-After` seconds of a response head; panics without one.
pub fn retry_after(head: &str) -> u64 {
    head.lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("retry-after: ").map(str::to_owned))
        .expect("Retry-After")
        .trim()
        .parse()
        .unwrap()
}
