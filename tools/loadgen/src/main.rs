//! loadgen: a load tool that speaks the multichat protocol (PROTOCOL.md), with
//! `Cookie: key=<token>` read from a `username token` file (what
//! `multichat seed-users` prints, and the Django peer's `run.sh setup` too).
//! Loopback only, bounded in count and time. Results go to stdout as one
//! `key=value ...` line per run, for scripts.
//!
//! ```sh
//! cargo run --release --example loadgen -- handshake --url ws://127.0.0.1:8000/chat/stream/ --tokens tokens.txt --workers 50 --seconds 10
//! cargo run --release --example loadgen -- fanout --url ... --tokens tokens.txt --receivers 100 --messages 2000
//! cargo run --release --example loadgen -- hold --url ... --tokens tokens.txt --sockets 10000 --pid <server pid>
//! cargo run --release --example loadgen -- storm --url ... --tokens tokens.txt --sockets 2000
//! ```
//!
//! - handshake: N workers for T seconds each loop open (101), join room 1, wait
//!   for the reply, close → cycles/s and latency percentiles. With `--cold`,
//!   every cycle takes the next token of the file, none twice (so a server's
//!   cache never has it): the run ends early, with an error, when the file runs out.
//! - fanout: C receivers in room 1, one sender, M timestamped messages as fast
//!   as they go → delivered messages/s, delivery latency p50/p99, lost. With
//!   `--sender-url`, the sender connects there (another node of the same chat)
//!   and the receivers to `--url`.
//! - hold: K sockets joined to room 1 and kept → the server's RSS per socket
//!   (from /proc/PID/status), and a new handshake's latency while they are held.
//! - storm: N connected sockets join room 1 at once → time until all joined,
//!   and the enter notices delivered (expected n(n-1)/2).
//! - soak: K sockets in room 1 for T seconds under a steady message storm
//!   (`--rate` messages/s) and a churn of reconnects and logouts (`--churn`
//!   per second) → messages lost (sequence gaps; must be 0), the server's RSS
//!   every 10 s (`--pid`), errors. Needs the seed password (`password`) to log
//!   back in after a logout. With `--sender-url`, the storm is sent from
//!   another node of the same chat.
//!
//! Every mode takes `--deflate`: each socket offers permessage-deflate bare
//! (as nv-websocket-client does) and compresses when the server agrees (an
//! error when it does not). fanout also takes `--paste BYTES` (each message
//! carries a pasted log of about that size) and reports the bytes its
//! sockets read from the wire per delivery.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{WebSocketStream, client_async_with_config};
use ws_token_auth::deflate::{self, Deflate, Role};

/// `--deflate`: every socket `open` makes offers permessage-deflate.
static DEFLATE: AtomicBool = AtomicBool::new(false);

/// Every socket goes through the library's permessage-deflate layer, which
/// passes bytes through untouched unless `--deflate` was offered and agreed.
type Socket = WebSocketStream<Deflate<Counted>>;

/// Bytes every socket of this process has read from the wire.
static READ: AtomicU64 = AtomicU64::new(0);

/// A connection that counts what it reads into `READ`.
struct Counted(TcpStream);

impl tokio::io::AsyncRead for Counted {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut self.0).poll_read(cx, buf);
        READ.fetch_add((buf.filled().len() - before) as u64, Ordering::Relaxed);
        polled
    }
}

impl tokio::io::AsyncWrite for Counted {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// The largest message a client accepts (the chat's own frame limit).
const MAX_MESSAGE: usize = 64 * 1024;
type Error = Box<dyn std::error::Error + Send + Sync>;

struct Options {
    mode: String,
    url: String,
    /// fanout: where the sender connects (another node of one chat); `url` when not given.
    sender_url: Option<String>,
    tokens: Vec<(String, String)>,
    workers: usize,
    seconds: u64,
    receivers: usize,
    messages: usize,
    sockets: usize,
    pid: Option<u32>,
    room: String,
    rate: usize,
    churn: usize,
    cold: bool,
    /// Offer permessage-deflate (as nv-websocket-client does) and use it when agreed.
    deflate: bool,
    /// fanout: pad each message with a pasted log of about this many bytes (0: a short line).
    paste: usize,
}

fn options() -> Result<Options, Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = args.first().cloned().ok_or("usage: loadgen handshake|fanout|hold|storm --url URL --tokens FILE ...")?;
    let value = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned();
    let number = |flag: &str, default: usize| -> Result<usize, Error> {
        Ok(value(flag).map(|v| v.parse()).transpose().map_err(|_| format!("{flag}: not a number"))?.unwrap_or(default))
    };
    let url = value("--url").unwrap_or_else(|| "ws://127.0.0.1:8000/chat/stream/".into());
    let file = value("--tokens").ok_or("--tokens FILE is required (`username token` lines)")?;
    let tokens = std::fs::read_to_string(&file)
        .map_err(|e| format!("{file}: {e}"))?
        .lines()
        .filter_map(|line| line.split_once(' ').map(|(u, t)| (u.to_owned(), t.trim().to_owned())))
        .collect::<Vec<_>>();
    if tokens.is_empty() {
        return Err(format!("{file}: no `username token` lines").into());
    }
    Ok(Options {
        mode,
        sender_url: value("--sender-url"),
        url,
        tokens,
        workers: number("--workers", 50)?,
        seconds: number("--seconds", 10)? as u64,
        receivers: number("--receivers", 100)?,
        messages: number("--messages", 2000)?,
        sockets: number("--sockets", 1000)?,
        pid: value("--pid").map(|p| p.parse()).transpose().map_err(|_| "--pid: not a number")?,
        room: value("--room").unwrap_or_else(|| "1".into()),
        rate: number("--rate", 10)?,
        churn: number("--churn", 10)?,
        cold: args.iter().any(|a| a == "--cold"),
        deflate: args.iter().any(|a| a == "--deflate"),
        paste: number("--paste", 0)?,
    })
}

/// Opens a socket with `Cookie: key=<token>` and no Origin, as an Android client does.
/// With `DEFLATE`, it offers permessage-deflate bare, as nv-websocket-client does.
async fn open(url: &str, token: &str) -> Result<Socket, Error> {
    let mut request = url.into_client_request()?;
    request.headers_mut().insert("cookie", format!("key={token}").parse()?);
    let offer = DEFLATE.load(Ordering::Relaxed);
    if offer {
        request.headers_mut().insert("sec-websocket-extensions", "permessage-deflate".parse()?);
    }
    let host = request.uri().authority().ok_or("no host in the URL")?.as_str().to_owned();
    let addr: SocketAddr = tokio::net::lookup_host(&host).await?.next().ok_or("cannot resolve")?;
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    // Small buffers: thousands of client sockets share this machine with the server.
    let config = WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0);
    let io = Deflate::new(Counted(stream), Role::Client, None, MAX_MESSAGE);
    let (mut socket, response) = client_async_with_config(request, io, Some(config)).await?;
    if offer {
        let agreed = deflate::negotiate(response.headers()).ok_or("the server declined permessage-deflate")?;
        socket.get_mut().enable(Role::Client, agreed, MAX_MESSAGE);
    }
    Ok(socket)
}

async fn send(socket: &mut Socket, value: &Value) -> Result<(), Error> {
    socket.send(Message::Text(value.to_string().into())).await?;
    Ok(())
}

/// The next JSON text frame.
async fn recv(socket: &mut Socket) -> Result<Value, Error> {
    loop {
        match socket.next().await.ok_or("socket closed")?? {
            Message::Text(text) => return Ok(serde_json::from_str(&text)?),
            Message::Close(frame) => return Err(format!("closed: {frame:?}").into()),
            _ => {}
        }
    }
}

/// Joins `room` and waits for the reply, skipping notices.
async fn join(socket: &mut Socket, room: &str) -> Result<(), Error> {
    send(socket, &json!({"command": "join", "room": room})).await?;
    loop {
        let frame = recv(socket).await?;
        if frame.get("join").is_some() {
            return Ok(());
        }
        if let Some(error) = frame.get("error") {
            return Err(format!("join refused: {error}").into());
        }
    }
}

/// Opens a socket per token, 64 at a time, each joined to the room.
async fn open_joined(o: &Options, tokens: impl Iterator<Item = String>) -> Result<Vec<Socket>, Error> {
    let mut opening = futures_util::stream::iter(tokens)
        .map(|token| {
            let (url, room) = (o.url.clone(), o.room.clone());
            async move {
                let mut socket = open(&url, &token).await?;
                join(&mut socket, &room).await?;
                Ok::<_, Error>(socket)
            }
        })
        .buffer_unordered(64);
    let mut sockets = Vec::new();
    while let Some(socket) = opening.next().await {
        sockets.push(socket?);
    }
    Ok(sockets)
}

fn percentile(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1000.0
}

async fn handshake(o: &Options) -> Result<(), Error> {
    let deadline = Instant::now() + Duration::from_secs(o.seconds);
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tokens: Arc<Vec<String>> = Arc::new(o.tokens.iter().map(|(_, t)| t.clone()).collect());
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workers: Vec<_> = (0..o.workers)
        .map(|i| {
            let (url, room, errors) = (o.url.clone(), o.room.clone(), Arc::clone(&errors));
            let (tokens, next, cold) = (Arc::clone(&tokens), Arc::clone(&next), o.cold);
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while Instant::now() < deadline {
                    let token = if cold {
                        match tokens.get(next.fetch_add(1, Ordering::Relaxed)) {
                            Some(token) => token,
                            None => {
                                errors.fetch_add(1, Ordering::Relaxed); // out of fresh tokens
                                break;
                            }
                        }
                    } else {
                        &tokens[i % tokens.len()]
                    };
                    let began = Instant::now();
                    let cycle = async {
                        let mut socket = open(&url, token).await?;
                        join(&mut socket, &room).await?;
                        socket.close(None).await?;
                        while socket.next().await.is_some() {}
                        Ok::<_, Error>(())
                    };
                    match tokio::time::timeout(Duration::from_secs(10), cycle).await {
                        Ok(Ok(())) => latencies.push(began.elapsed()),
                        _ => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::new();
    for worker in workers {
        all.extend(worker.await?);
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort();
    println!(
        "mode=handshake workers={} seconds={:.1} cycles={} cycles_per_s={:.0} p50_ms={:.2} p99_ms={:.2} errors={}",
        o.workers,
        elapsed,
        all.len(),
        all.len() as f64 / elapsed,
        percentile(&all, 0.5),
        percentile(&all, 0.99),
        errors.load(Ordering::Relaxed)
    );
    Ok(())
}

async fn fanout(o: &Options) -> Result<(), Error> {
    if o.tokens.len() < o.receivers + 1 {
        return Err(format!("fanout needs {} tokens", o.receivers + 1).into());
    }
    let sender_token = o.tokens[o.receivers].1.clone();
    let marker = format!("fanout-{}", std::process::id());
    let mut receivers = Vec::new();
    for (_, token) in &o.tokens[..o.receivers] {
        let mut socket = open(&o.url, token).await?;
        join(&mut socket, &o.room).await?;
        receivers.push(socket);
    }
    // On another node than the receivers when `--sender-url` says so: every
    // delivery then crosses the relay between nodes.
    let mut sender = open(o.sender_url.as_deref().unwrap_or(&o.url), &sender_token).await?;
    join(&mut sender, &o.room).await?;
    let clock = Instant::now();
    let expected = o.messages;
    let tasks: Vec<_> = receivers
        .into_iter()
        .map(|mut socket| {
            let marker = marker.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(expected);
                let mut last = Duration::ZERO;
                while latencies.len() < expected {
                    let Ok(Ok(frame)) = tokio::time::timeout(Duration::from_secs(10), recv(&mut socket)).await else {
                        break;
                    };
                    // This run's messages carry its marker (a no-auth server names users its own way).
                    let message = frame["message"].as_str().unwrap_or_default();
                    if frame["msg_type"] == 0 && message.contains(&marker) {
                        let sent: u64 = message.split(' ').next().and_then(|t| t.parse().ok()).unwrap_or(0);
                        let now = clock.elapsed();
                        latencies.push(now.saturating_sub(Duration::from_micros(sent)));
                        last = now;
                    }
                }
                (latencies, last)
            })
        })
        .collect();
    // The sender reads its own echoes concurrently, as a real client does.
    let (mut sink, mut echoes) = sender.split();
    let drain = tokio::spawn(async move { while let Some(Ok(_)) = echoes.next().await {} });
    // After the marker, on lines of their own.
    let pastes: Vec<String> = (0..16)
        .map(|seed| testkit::log_paste(seed * 40, o.paste))
        .map(|paste| if paste.is_empty() { paste } else { format!("\n{paste}") })
        .collect();
    let read_before = READ.load(Ordering::Relaxed);
    let cpu_before = own_cpu_ms();
    let first_send = clock.elapsed();
    for i in 0..o.messages {
        let message = format!("{} {marker} {i}{}", clock.elapsed().as_micros(), pastes[i % pastes.len()]);
        sink.send(Message::Text(json!({"command": "send", "room": o.room, "message": message}).to_string().into()))
            .await?;
    }
    let mut all = Vec::new();
    let mut last = first_send;
    for task in tasks {
        let (latencies, finished) = task.await?;
        all.extend(latencies);
        last = last.max(finished);
    }
    drain.abort();
    all.sort();
    let delivered = all.len();
    let lost = o.receivers * o.messages - delivered;
    let seconds = (last - first_send).as_secs_f64().max(1e-9);
    // What crossed the wire to the clients per delivery: every byte the
    // sockets read during the run (the sender's echoes included, 1 in
    // `receivers`), over the receivers' deliveries.
    let wire = (READ.load(Ordering::Relaxed) - read_before) as f64 / delivered.max(1) as f64;
    println!(
        "mode=fanout receivers={} messages={} delivered={} lost={} seconds={:.3} deliveries_per_s={:.0} p50_ms={:.2} p99_ms={:.2} paste={} deflate={} wire_bytes_per_delivery={wire:.1} client_cpu_ms={}",
        o.receivers,
        o.messages,
        delivered,
        lost,
        seconds,
        delivered as f64 / seconds,
        percentile(&all, 0.5),
        percentile(&all, 0.99),
        o.paste,
        o.deflate,
        own_cpu_ms() - cpu_before,
    );
    Ok(())
}

/// This process's own CPU so far (user + system), in ms: what the clients
/// cost, on a machine they share with the server.
fn own_cpu_ms() -> u64 {
    // The fields after the command's closing parenthesis; utime and stime are the 12th and 13th.
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or_default();
    let ticks: u64 = rest.split_whitespace().skip(11).take(2).filter_map(|t| t.parse::<u64>().ok()).sum();
    ticks * 10 // USER_HZ is 100 on Linux
}

fn rss_kib(pid: u32) -> Result<u64, Error> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).ok_or("no VmRSS")?;
    Ok(line.split_whitespace().nth(1).ok_or("bad VmRSS")?.parse()?)
}

async fn hold(o: &Options) -> Result<(), Error> {
    let pid = o.pid.ok_or("hold needs --pid of the server")?;
    let before = rss_kib(pid)?;
    let started = Instant::now();
    let tokens = (0..o.sockets).map(|i| o.tokens[i % o.tokens.len()].1.clone());
    let sockets = open_joined(o, tokens).await?;
    let opened = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await; // let the server settle
    let after = rss_kib(pid)?;
    let probe = Instant::now();
    let mut extra = open(&o.url, &o.tokens[0].1).await?;
    join(&mut extra, &o.room).await?;
    let probe = probe.elapsed();
    println!(
        "mode=hold sockets={} open_seconds={:.2} rss_before_kib={before} rss_after_kib={after} kib_per_socket={:.2} new_handshake_ms={:.2}",
        sockets.len(),
        opened.as_secs_f64(),
        (after.saturating_sub(before)) as f64 / sockets.len() as f64,
        probe.as_secs_f64() * 1000.0
    );
    Ok(())
}

async fn storm(o: &Options) -> Result<(), Error> {
    let mut sockets = Vec::with_capacity(o.sockets);
    let mut opening = futures_util::stream::iter(0..o.sockets)
        .map(|i| {
            let (url, token) = (o.url.clone(), o.tokens[i % o.tokens.len()].1.clone());
            async move { open(&url, &token).await }
        })
        .buffer_unordered(64);
    while let Some(socket) = opening.next().await {
        sockets.push(socket?);
    }
    let started = Instant::now();
    let joined = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = sockets
        .into_iter()
        .map(|mut socket| {
            let (room, joined) = (o.room.clone(), Arc::clone(&joined));
            tokio::spawn(async move {
                if join(&mut socket, &room).await.is_err() {
                    return (0u64, None, socket);
                }
                let at = started.elapsed();
                joined.fetch_add(1, Ordering::Relaxed);
                let mut notices = 0;
                while let Ok(Ok(frame)) = tokio::time::timeout(Duration::from_secs(3), recv(&mut socket)).await {
                    if frame["msg_type"] == 4 {
                        notices += 1;
                    }
                }
                (notices, Some(at), socket)
            })
        })
        .collect();
    let (mut notices, mut all_joined, mut sockets) = (0, Duration::ZERO, Vec::new());
    for task in tasks {
        let (n, at, socket) = task.await?;
        notices += n;
        all_joined = all_joined.max(at.unwrap_or(Duration::MAX));
        sockets.push(socket); // kept open until every count is in: a close would send leave notices
    }
    let n = o.sockets as u64;
    println!(
        "mode=storm sockets={} joined={} all_joined_seconds={:.3} notices={} expected={}",
        o.sockets,
        joined.load(Ordering::Relaxed),
        all_joined.as_secs_f64(),
        notices,
        n * (n - 1) / 2
    );
    Ok(())
}

/// What a soak receiver saw: messages, sequence gaps, how it ended.
#[derive(Default)]
struct Seen {
    received: u64,
    lost: u64,
    last: Option<u64>,
    closed_4401: bool,
}

/// Reads a socket until it ends or `stop` changes, counting the sender's
/// sequence numbers.
async fn receive(mut socket: Socket, sender: String, mut stop: tokio::sync::watch::Receiver<bool>) -> Seen {
    let mut seen = Seen::default();
    loop {
        let message = tokio::select! {
            _ = stop.changed() => break,
            message = socket.next() => match message {
                Some(Ok(message)) => message,
                _ => break,
            },
        };
        match message {
            Message::Text(text) => {
                let Ok(frame) = serde_json::from_str::<Value>(&text) else { continue };
                if frame["msg_type"] != 0 || frame["username"] != sender.as_str() {
                    continue;
                }
                let Some(seq) = frame["message"].as_str().and_then(|m| m.split(' ').next()?.parse::<u64>().ok()) else {
                    continue;
                };
                // A gap, or (for the first message) those sent before it.
                seen.lost += seq.saturating_sub(seen.last.map_or(0, |last| last + 1));
                seen.last = Some(seq);
                seen.received += 1;
            }
            Message::Close(frame) => {
                seen.closed_4401 = frame.is_some_and(|f| u16::from(f.code) == 4401);
                break;
            }
            _ => {}
        }
    }
    seen
}

/// Logs `username` in over HTTP; returns a fresh token.
async fn login(url: &str, username: &str) -> Result<String, Error> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = url.split("://").nth(1).and_then(|r| r.split('/').next()).ok_or("bad URL")?;
    let body = json!({"username": username, "password": "password"}).to_string();
    let mut stream = TcpStream::connect(host).await?;
    let request = format!(
        "POST /api/login HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let json = response.split_once("\r\n\r\n").ok_or("no body")?.1;
    Ok(serde_json::from_str::<Value>(json)?["token"].as_str().ok_or("no token")?.to_owned())
}

async fn logout(url: &str, token: &str) -> Result<(), Error> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = url.split("://").nth(1).and_then(|r| r.split('/').next()).ok_or("bad URL")?;
    let mut stream = TcpStream::connect(host).await?;
    let request = format!(
        "POST /api/logout HTTP/1.1\r\nHost: {host}\r\nCookie: key={token}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    Ok(())
}

async fn soak(o: &Options) -> Result<(), Error> {
    let users = o.tokens.len();
    if users < 2 {
        return Err("soak needs at least 2 users".into());
    }
    let (sender_name, sender_token) = o.tokens[users - 1].clone();
    let clock = Instant::now();
    let deadline = clock + Duration::from_secs(o.seconds);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    // Long-lived receivers: socket i uses user i % (users - 1).
    let tokens = (0..o.sockets).map(|i| o.tokens[i % (users - 1)].1.clone());
    let receivers: Vec<_> = open_joined(o, tokens)
        .await?
        .into_iter()
        .map(|socket| tokio::spawn(receive(socket, sender_name.clone(), stopped.clone())))
        .collect();
    eprintln!("soak: {} sockets open after {:.1?}", receivers.len(), clock.elapsed());
    // On another node than the receivers when `--sender-url` says so: every
    // delivery then crosses the relay between nodes.
    let mut sender = open(o.sender_url.as_deref().unwrap_or(&o.url), &sender_token).await?;
    join(&mut sender, &o.room).await?;
    let (mut sink, mut echoes) = sender.split();
    tokio::spawn(async move { while let Some(Ok(_)) = echoes.next().await {} });

    // The storm: `rate` messages a second, numbered.
    let (url, room, rate) = (o.url.clone(), o.room.clone(), o.rate.max(1));
    let storm = tokio::spawn(async move {
        let mut seq = 0u64;
        let mut tick = tokio::time::interval(Duration::from_secs(1) / rate as u32);
        while Instant::now() < deadline {
            tick.tick().await;
            let frame = json!({"command": "send", "room": room, "message": format!("{seq} soak")});
            if sink.send(Message::Text(frame.to_string().into())).await.is_err() {
                break;
            }
            seq += 1;
        }
        seq
    });
    // The churn: every second, `churn` short sockets come and go, and one
    // token is logged out (its socket must close 4401) and the user logs in again.
    let errors = Arc::new(AtomicU64::new(0));
    let (churned, revoked) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let churn = {
        let (url, room, tokens, churn, sender_name) =
            (url.clone(), o.room.clone(), o.tokens.clone(), o.churn, sender_name.clone());
        let (errors, churned, revoked) = (errors.clone(), churned.clone(), revoked.clone());
        let never = stopped.clone();
        tokio::spawn(async move {
            let mut round = 0usize;
            while Instant::now() + Duration::from_secs(2) < deadline {
                let began = Instant::now();
                for i in 0..churn {
                    let (_, token) = &tokens[(round * churn + i) % (tokens.len() - 1)];
                    match open(&url, token).await {
                        Ok(mut socket) => {
                            if join(&mut socket, &room).await.is_err() {
                                errors.fetch_add(1, Ordering::Relaxed);
                            }
                            let _ = socket.close(None).await;
                            churned.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                // A logout: a fresh login, a socket on it, the logout, the 4401.
                let (name, _) = &tokens[round % (tokens.len() - 1)];
                let outcome = async {
                    let token = login(&url, name).await?;
                    let mut socket = open(&url, &token).await?;
                    join(&mut socket, &room).await?;
                    let watcher = tokio::spawn(receive(socket, sender_name.clone(), never.clone()));
                    logout(&url, &token).await?;
                    let seen = tokio::time::timeout(Duration::from_secs(2), watcher).await??;
                    if seen.closed_4401 { Ok::<_, Error>(()) } else { Err("logout did not close with 4401".into()) }
                };
                match outcome.await {
                    Ok(()) => revoked.fetch_add(1, Ordering::Relaxed),
                    Err(error) => {
                        eprintln!("soak: logout round {round}: {error}");
                        errors.fetch_add(1, Ordering::Relaxed)
                    }
                };
                round += 1;
                tokio::time::sleep(Duration::from_secs(1).saturating_sub(began.elapsed())).await;
            }
        })
    };
    // RSS every 10 s.
    let mut samples = Vec::new();
    while Instant::now() < deadline {
        if let Some(pid) = o.pid {
            samples.push((clock.elapsed().as_secs(), rss_kib(pid)?));
            eprintln!("soak: t={}s rss_kib={}", clock.elapsed().as_secs(), samples.last().map_or(0, |s| s.1));
        }
        tokio::time::sleep(Duration::from_secs(10).min(deadline.saturating_duration_since(Instant::now()))).await;
    }
    let sent = storm.await?;
    churn.await?;
    tokio::time::sleep(Duration::from_secs(2)).await; // the last messages arrive
    if let Some(pid) = o.pid {
        samples.push((clock.elapsed().as_secs(), rss_kib(pid)?));
    }
    // Every long-lived socket must have every message: gaps, and a tail short of the last one, are losses.
    let _ = stop.send(true);
    let (mut lost, mut received) = (0u64, 0u64);
    for receiver in receivers {
        let seen = receiver.await?;
        lost += seen.lost + sent.saturating_sub(seen.last.map_or(0, |last| last + 1));
        received += seen.received;
    }
    let rss: Vec<String> = samples.iter().map(|(t, kib)| format!("{t}:{kib}")).collect();
    println!(
        "mode=soak sockets={} seconds={} sent={sent} received={received} lost={lost} churned={} logouts_closed_4401={} errors={} rss_kib_over_time={}",
        o.sockets,
        o.seconds,
        churned.load(Ordering::Relaxed),
        revoked.load(Ordering::Relaxed),
        errors.load(Ordering::Relaxed),
        rss.join(",")
    );
    Ok(())
}

fn main() -> Result<(), Error> {
    let o = options()?;
    let host = o.url.split("://").nth(1).and_then(|rest| rest.split('/').next()).unwrap_or_default().to_owned();
    if !(host.starts_with("127.") || host.starts_with("localhost") || host.starts_with("[::1]")) {
        return Err(format!("loadgen only targets loopback, not {host}").into());
    }
    DEFLATE.store(o.deflate, Ordering::Relaxed);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        match o.mode.as_str() {
            "handshake" => handshake(&o).await,
            "fanout" => fanout(&o).await,
            "hold" => hold(&o).await,
            "storm" => storm(&o).await,
            "soak" => soak(&o).await,
            other => Err(format!("unknown mode {other}").into()),
        }
    })
}
