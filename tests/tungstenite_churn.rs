//! 1,000 handshakes in a row through the tokio-tungstenite adapter leave no
//! task and no heap memory behind. Its own test binary, so that no other test
//! allocates while the heap is measured.

#[global_allocator]
static ALLOC: testkit::CountingAlloc = testkit::CountingAlloc;

mod common;
#[allow(dead_code)]
#[path = "../examples/tungstenite_server.rs"]
mod tungstenite_server;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{connect, next_text};
use futures_util::StreamExt;
use http::StatusCode;
use tokio::net::TcpListener;
use ws_token_auth::store::ManageTokens;
use ws_token_auth::{Authenticator, MemoryTokenStore};

#[tokio::test]
async fn a_thousand_handshakes_leave_no_task_or_memory_behind() {
    let store = Arc::new(MemoryTokenStore::new());
    let token = store.issue(&"alice".to_owned(), None).await.unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(tungstenite_server::serve(listener, Authenticator::from_shared(store)));
    let cookie = format!("key={}", token.expose_secret());
    let metrics = tokio::runtime::Handle::current().metrics();

    let cycle = async || {
        let (status, socket) = connect(addr, &[("cookie", &cookie)]).await;
        assert_eq!(status, StatusCode::SWITCHING_PROTOCOLS);
        let mut socket = socket.unwrap();
        assert_eq!(next_text(&mut socket).await, "hello alice");
        socket.close(None).await.unwrap();
        while socket.next().await.is_some() {}
    };
    let settle = async |tasks: usize| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while metrics.num_alive_tasks() > tasks && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        metrics.num_alive_tasks()
    };

    for _ in 0..100 {
        cycle().await; // warm-up: lazily grown pools and tables
    }
    let tasks_before = settle(1).await; // the accept loop
    let live_before = testkit::live_bytes();
    for _ in 0..1000 {
        cycle().await;
    }
    let tasks_after = settle(tasks_before).await;
    let live_after = testkit::live_bytes();
    assert_eq!(tasks_after, tasks_before, "connection tasks left running");
    let grown = live_after - live_before;
    eprintln!("live heap: {live_before} -> {live_after} bytes ({grown:+})");
    // Leaking even 64 bytes per handshake would add 64,000.
    assert!(grown < 32 * 1024, "live heap grew by {grown} bytes over 1,000 handshakes");
}
