//! Hostile handshakes against the multichat example over real sockets: headers
//! over the server's limits, a slowloris, floods of bad tokens, broken upgrade
//! requests. No 5xx, no panic, and the heap back to its level afterwards. Its
//! own test binary with one test, so that the heap count is this test's alone.

#[global_allocator]
static ALLOC: testkit::CountingAlloc = testkit::CountingAlloc;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use multichat::api::{App, router, serve};
use multichat::db::{Db, hash_password};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use ws_token_auth::{OriginPolicy, Token};

/// Sends a raw request head and returns the status the server answered, or
/// None if it closed without answering.
async fn status(addr: SocketAddr, head: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let _ = stream.write_all(head.as_bytes()).await;
    let mut buf = vec![0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await.expect("no answer in 10 s");
    match read {
        Ok(n) if n >= 12 => std::str::from_utf8(&buf[9..12]).ok()?.parse().ok(),
        _ => None,
    }
}

fn upgrade(addr: SocketAddr, extra: &str) -> String {
    format!(
        "GET /chat/stream/ HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

fn assert_4xx_or(expected: u16, got: Option<u16>, what: &str) {
    let got = got.unwrap_or_else(|| panic!("{what}: closed without an answer"));
    assert!(got == expected || (400..500).contains(&got) && expected == 0, "{what}: {got}, expected {expected}");
    assert!(got < 500, "{what}: a 5xx");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_handshakes_get_4xx_and_leave_nothing_behind() {
    let file = std::env::temp_dir().join(format!("multichat-hostile-{}.db", &Token::generate().expose_secret()[..12]));
    let db = Db::open(&format!("sqlite://{}", file.display())).await.unwrap();
    let id = db.create_user("alice", &hash_password("pw").unwrap(), false).await.unwrap();
    let token = db.issue_token(id, None).await.unwrap();
    let token = token.expose_secret().to_owned();
    let app = App::new(db, true, false).await.unwrap();
    let cache = app.lifecycle.store().clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let limits = multichat::limits::Limits { header_timeout: Duration::from_secs(1), ..Default::default() };
    tokio::spawn(async move { serve(listener, router(app, OriginPolicy::same_host()), &limits).await });
    let valid = format!("Cookie: key={token}\r\n");

    // Warm-up: pools, lazily built tables, the cache's own structures.
    for _ in 0..20 {
        assert_eq!(status(addr, &upgrade(addr, &valid)).await, Some(101));
        assert_eq!(status(addr, &upgrade(addr, "Cookie: key=a; key=b\r\n")).await, Some(400));
    }
    for _ in 0..500 {
        let unknown = format!("Cookie: key={}\r\n", Token::generate().expose_secret());
        assert_eq!(status(addr, &upgrade(addr, &unknown)).await, Some(401));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    cache.invalidate_all();
    cache.run_pending_tasks().await;
    let before = testkit::live_bytes();

    // Over the limits (in a block: the test's own big strings are freed before the count).
    {
        // Past the 32 KiB head limit: 431 as soon as it is passed.
        let huge = "a".repeat(64 * 1024);
        assert_4xx_or(431, status(addr, &upgrade(addr, &format!("Cookie: key={huge}\r\n"))).await, "64 KiB key cookie");
        let big = "a".repeat(16 * 1024);
        assert_4xx_or(400, status(addr, &upgrade(addr, &format!("Cookie: key={big}\r\n"))).await, "16 KiB key cookie");
        let beside = format!("Cookie: big={big}; key={token}\r\n");
        assert_eq!(status(addr, &upgrade(addr, &beside)).await, Some(101), "a big foreign cookie beside a valid key");
        let thousand: String = (0..1000).map(|i| format!("c{i}=v{i}; ")).collect();
        assert_4xx_or(401, status(addr, &upgrade(addr, &format!("Cookie: {thousand}x=1\r\n"))).await, "1,000 cookies");
        assert_eq!(status(addr, &upgrade(addr, &format!("Cookie: {thousand}key={token}\r\n"))).await, Some(101));
        let lines: String = (0..100).map(|i| format!("Cookie: c{i}=v\r\n")).collect();
        assert_4xx_or(431, status(addr, &upgrade(addr, &lines)).await, "100 Cookie lines");
    }

    // Broken upgrade requests with a valid token.
    let no_key = upgrade(addr, &valid).replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "");
    assert_4xx_or(0, status(addr, &no_key).await, "no Sec-WebSocket-Key");
    let version = upgrade(addr, &valid).replace("Version: 13", "Version: 8");
    assert_4xx_or(0, status(addr, &version).await, "version 8");
    let no_upgrade = upgrade(addr, &valid).replace("Upgrade: websocket\r\n", "");
    assert_4xx_or(0, status(addr, &no_upgrade).await, "no Upgrade header");

    // Floods: every one answered 4xx, quickly.
    let started = Instant::now();
    let floods: Vec<_> = (0..8)
        .map(|worker| {
            tokio::spawn(async move {
                for i in 0..100 {
                    let cookie = if i % 2 == 0 {
                        "Cookie: key=a; key=b\r\n".to_owned()
                    } else {
                        format!("Cookie: key={}\r\n", Token::generate().expose_secret())
                    };
                    let got = status(addr, &upgrade(addr, &cookie)).await;
                    let expected = if i % 2 == 0 { 400 } else { 401 };
                    assert_eq!(got, Some(expected), "flood worker {worker}, request {i}");
                }
            })
        })
        .collect();
    for flood in floods {
        flood.await.unwrap();
    }
    eprintln!("800 bad tokens answered in {:?}", started.elapsed());

    // Slowloris: a head that trickles in is cut at the header timeout (1 s here).
    let mut slow = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    let head = upgrade(addr, &valid);
    let mut closed = false;
    for byte in head.as_bytes().iter().take(200) {
        if slow.write_all(&[*byte]).await.is_err() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut probe = [0u8; 256];
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(1), slow.read(&mut probe)).await {
            if n == 0 || probe.starts_with(b"HTTP/1.1 408") {
                closed = true;
                break;
            }
        }
    }
    assert!(closed, "the slowloris connection was not closed");
    assert!(started.elapsed() < Duration::from_secs(10), "closed only after {:?}", started.elapsed());
    drop(slow);

    // Still serving, and the heap is back to its level. The handshake cache
    // holds answers by design (bounded, and unknown tokens for 5 s): it is
    // emptied first, so that what remains would be a leak.
    assert_eq!(status(addr, &upgrade(addr, &valid)).await, Some(101));
    let mut grown = 0;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        cache.invalidate_all();
        cache.run_pending_tasks().await;
        grown = testkit::live_bytes() - before;
        if grown < 256 * 1024 {
            break;
        }
    }
    eprintln!("live heap grew by {grown} bytes");
    assert!(grown < 256 * 1024, "the heap grew by {grown} bytes after the hostile handshakes");
    let _ = std::fs::remove_file(file);
}
