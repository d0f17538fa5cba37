//! Memory under hostile load (PROTOCOL.md, "Limits and hostile clients"),
//! measured from the process itself with a counting allocator: the live heap
//! is sampled all through each attack and its peak compared with the level
//! before it. Findings of the second adversarial probe:
//!
//! 1. a ping flood from a client that never reads (tungstenite queued every
//!    automatic pong: +4 GiB in 20 s);
//! 2. room frames for a frozen Redis (an unbounded queue in front of a
//!    publisher with no timeout: +2.8 GiB in 12 s);
//! 4. unfinished request heads of ~400 KB, each held until the header
//!    timeout.
//!
//! One test binary, its tests one at a time: the count is process-wide.

#[global_allocator]
static ALLOC: testkit::CountingAlloc = testkit::CountingAlloc;

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::HeapPeak;
use futures_util::SinkExt;
use multichat::api::App;
use multichat::db::{Db, hash_password};
use serde_json::json;
use testkit::PrivateRedis;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

/// The tests of this binary, one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const MIB: isize = 1 << 20;

/// An app on a fresh SQLite file with alice (and her token), served through
/// the app's own accept loop; with Redis at `redis` when given.
async fn alice_app(redis: Option<&str>) -> (SocketAddr, String) {
    let (url, _) = common::temp_sqlite("multichat-memory");
    let db = Db::open(&url).await.unwrap();
    let id = db.create_user("alice", &hash_password("pw").unwrap(), false).await.unwrap();
    let token = db.issue_token(id, None).await.unwrap().expose_secret().to_owned();
    let app = match redis {
        Some(redis) => App::with_redis(db, false, false, redis, &url).await.unwrap(),
        None => App::new(db, false, false).await.unwrap(),
    };
    (common::serve_app(app).await, token)
}

/// A warm-up handshake and message, so that pools and lazily built tables
/// are in place before the heap is measured.
async fn warm_up(addr: SocketAddr, token: &str) {
    let mut socket = common::connect_with_token(addr, token).await;
    testkit::send_json(&mut socket, json!({"command": "join", "room": "1"})).await;
    assert_eq!(testkit::next_json(&mut socket).await["join"], "1");
    drop(socket);
    tokio::time::sleep(Duration::from_millis(200)).await;
}

// --- 1. a ping flood from a client that never reads --------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ping_flood_that_never_reads_is_dropped_with_memory_bounded() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (addr, token) = alice_app(None).await;
    warm_up(addr, &token).await;
    let before = testkit::live_bytes();
    let peak = HeapPeak::start(testkit::live_bytes);

    // A client with a tiny receive buffer that never reads: every pong waits.
    let mut flood = common::raw_socket(addr, &token, Some(4096)).await;
    let ping = common::masked_frame(0x9, &[b'p'; 125]);
    let batch: Vec<u8> = ping.iter().copied().cycle().take(ping.len() * 1000).collect();
    let started = Instant::now();
    let mut dropped = false;
    // Up to 200,000 pings (26 MB of pongs owed) or 30 s.
    for _ in 0..200 {
        match tokio::time::timeout(Duration::from_secs(5), flood.write_all(&batch)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) | Err(_) => {
                dropped = true;
                break;
            }
        }
        if started.elapsed() > Duration::from_secs(30) {
            break;
        }
    }
    if !dropped {
        // Written all: the server may still be reading. Dropped means the
        // connection ends (EOF or reset) while the client still reads nothing
        // of what it owes... so read now, to see the end.
        let mut sink = vec![0u8; 64 * 1024];
        let ended = tokio::time::timeout(Duration::from_secs(15), async {
            loop {
                match flood.read(&mut sink).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        });
        dropped = ended.await.is_ok();
    }
    let grown = peak.peak() - before;
    eprintln!("ping flood: peak live heap +{} KiB, dropped: {dropped}, in {:?}", grown / 1024, started.elapsed());
    assert!(dropped, "the connection of a client that pings and never reads was not dropped");
    assert!(grown < 8 * MIB, "the live heap grew by {} KiB under a ping flood", grown / 1024);
}

// --- 2. room frames for a frozen Redis ---------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_for_a_frozen_redis_wait_in_a_bounded_queue() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut redis = PrivateRedis::start().await;
    let (addr, token) = alice_app(Some(&redis.url())).await;
    warm_up(addr, &token).await;
    // Four sockets of one user, in room 1, their joins back through Redis.
    let mut sockets = Vec::new();
    for _ in 0..4 {
        let mut socket = common::connect_with_token(addr, &token).await;
        testkit::send_json(&mut socket, json!({"command": "join", "room": "1"})).await;
        assert_eq!(testkit::next_json(&mut socket).await["join"], "1");
        sockets.push(socket);
    }
    let hello = json!({"command": "send", "room": "1", "message": "hello"});
    testkit::send_json(&mut sockets[0], hello).await;
    for socket in &mut sockets {
        assert_eq!(testkit::next_json(socket).await["message"], "hello");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = testkit::live_bytes();
    let peak = HeapPeak::start(testkit::live_bytes);

    redis.pause();
    // 4 x 400 messages of 4,000 characters: 6.4 MB of frames for Redis.
    let message = "m".repeat(4000);
    let senders: Vec<_> = sockets
        .into_iter()
        .map(|mut socket| {
            let message = message.clone();
            tokio::spawn(async move {
                for _ in 0..400 {
                    let text = json!({"command": "send", "room": "1", "message": message}).to_string();
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        break;
                    }
                }
                socket
            })
        })
        .collect();
    let mut sockets = Vec::new();
    for sender in senders {
        sockets.push(sender.await.unwrap());
    }
    // Time for the server to take in what the kernel still held.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let grown = peak.peak() - before;
    eprintln!("frozen Redis: peak live heap +{} KiB", grown / 1024);
    redis.resume();
    drop(sockets);
    assert!(grown < 4 * MIB, "the live heap grew by {} KiB with Redis frozen", grown / 1024);

    // Redis back: the node still relays.
    let mut socket = common::connect_with_token(addr, &token).await;
    testkit::send_json(&mut socket, json!({"command": "join", "room": "1"})).await;
    assert_eq!(testkit::next_json(&mut socket).await["join"], "1");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        testkit::send_json(&mut socket, json!({"command": "send", "room": "1", "message": "back"})).await;
        let got = tokio::time::timeout(Duration::from_secs(1), async {
            loop {
                if testkit::next_json(&mut socket).await["message"] == "back" {
                    return;
                }
            }
        });
        if got.await.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "no frame relayed within 15 s of Redis waking");
    }
}

// --- 4. unfinished request heads ---------------------------------------------------

/// Trickles a head that never ends (8 KB at a time, up to 300 KB) and
/// returns what the server answered once it stopped taking it (None: it
/// answered nothing within 5 s).
async fn endless_head(addr: SocketAddr, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nX-Padding: ");
    stream.write_all(head.as_bytes()).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let writer = tokio::spawn(async move {
        let chunk = vec![b'a'; 8 * 1024];
        for _ in 0..(300 / 8) {
            if write.write_all(&chunk).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Then holds the connection, head unfinished.
        tokio::time::sleep(Duration::from_secs(30)).await;
    });
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), read.read_to_end(&mut answer)).await;
    writer.abort();
    match read {
        Ok(_) if !answer.is_empty() => Some(String::from_utf8_lossy(&answer).into_owned()),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_heads_are_cut_at_the_head_limit_on_both_paths() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (addr, token) = alice_app(None).await;
    warm_up(addr, &token).await;
    let before = testkit::live_bytes();
    let peak = HeapPeak::start(testkit::live_bytes);
    // 20 on the socket's own path, 20 through hyper, all at once.
    let heads: Vec<_> = (0..40)
        .map(|i| tokio::spawn(endless_head(addr, if i % 2 == 0 { "/chat/stream/" } else { "/api/me" })))
        .collect();
    for (i, head) in heads.into_iter().enumerate() {
        let answer = head.await.unwrap();
        let answer = answer.unwrap_or_else(|| panic!("head {i}: no answer within 5 s"));
        assert!(answer.starts_with("HTTP/1.1 431"), "head {i}: {answer}");
    }
    let grown = peak.peak() - before;
    eprintln!("40 unfinished heads: peak live heap +{} KiB", grown / 1024);
    // 40 x 32 KiB is 1.25 MiB; 40 x 300 KB would be 12 MB.
    assert!(grown < 4 * MIB, "the live heap grew by {} KiB for 40 unfinished heads", grown / 1024);
}
