//! Two `multichat serve` processes (the example's real binary) over one SQLite
//! database and the machine's real Redis (`REDIS_URL`) form one chat: room
//! frames and notices cross between them, and a logout on one process closes
//! the token's socket on the other within a second. The `revoke` command
//! reaches every process too.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{cli, connect_with_token as connect};
use futures_util::StreamExt;
use serde_json::{Value, json};
use testkit::{close_code, next_json, send_json};
use tokio::process::Child;

/// Starts `serve` on the database and Redis: the process and its address.
async fn serve(database: &str, redis: &str) -> (Child, SocketAddr) {
    let mut command = common::multichat();
    command.args(["--database-url", database, "serve", "--bind", "127.0.0.1:0", "--redis-url", redis]);
    common::spawn_serve(command).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_form_one_chat() {
    let redis = std::env::var("REDIS_URL").expect("REDIS_URL must point at Redis (.ci/run sets it)");
    let (database, file) = common::temp_sqlite("multichat-nodes");
    let alice_token = cli(&database, &["create-user", "alice", "--password", "pw"]).await;
    let bob_token = cli(&database, &["create-user", "bob", "--password", "pw"]).await;
    let carol_token = cli(&database, &["create-user", "carol", "--password", "pw"]).await;

    let (_node_a, a) = serve(&database, &redis).await;
    let (_node_b, b) = serve(&database, &redis).await;
    tokio::time::sleep(Duration::from_millis(300)).await; // subscriptions start

    let mut alice = connect(a, &alice_token).await;
    let mut bob = connect(b, &bob_token).await;
    send_json(&mut alice, json!({"command": "join", "room": "1"})).await;
    assert_eq!(next_json(&mut alice).await, json!({"join": "1", "title": "General"}));
    send_json(&mut bob, json!({"command": "join", "room": "1"})).await;
    assert_eq!(next_json(&mut bob).await, json!({"join": "1", "title": "General"}));
    assert_eq!(next_json(&mut alice).await, json!({"msg_type": 4, "room": "1", "username": "bob"}));
    // Alice leaves and comes back: bob sees both, alice gets her own leave notice once.
    send_json(&mut alice, json!({"command": "leave", "room": "1"})).await;
    assert_eq!(next_json(&mut alice).await, json!({"msg_type": 5, "room": "1", "username": "alice"}));
    assert_eq!(next_json(&mut alice).await, json!({"leave": "1"}));
    assert_eq!(next_json(&mut bob).await, json!({"msg_type": 5, "room": "1", "username": "alice"}));
    send_json(&mut alice, json!({"command": "join", "room": "1"})).await;
    assert_eq!(next_json(&mut alice).await, json!({"join": "1", "title": "General"}));
    assert_eq!(next_json(&mut bob).await, json!({"msg_type": 4, "room": "1", "username": "alice"}));

    // Messages both ways, each delivered once to each socket.
    send_json(&mut alice, json!({"command": "send", "room": "1", "message": "hi from A"})).await;
    send_json(&mut bob, json!({"command": "send", "room": "1", "message": "hi from B"})).await;
    let mut seen_by_alice =
        vec![next_json(&mut alice).await["message"].clone(), next_json(&mut alice).await["message"].clone()];
    let mut seen_by_bob =
        vec![next_json(&mut bob).await["message"].clone(), next_json(&mut bob).await["message"].clone()];
    seen_by_alice.sort_by_key(Value::to_string);
    seen_by_bob.sort_by_key(Value::to_string);
    assert_eq!(seen_by_alice, [json!("hi from A"), json!("hi from B")]);
    assert_eq!(seen_by_bob, seen_by_alice);
    assert!(tokio::time::timeout(Duration::from_millis(300), alice.next()).await.is_err(), "a duplicate arrived");

    // Bob logs out on node A: his socket on node B closes within a second.
    let client = tokio::net::TcpStream::connect(a).await.unwrap();
    let request = format!(
        "POST /api/logout HTTP/1.1\r\nHost: {a}\r\nCookie: key={bob_token}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    let mut client = client;
    tokio::io::AsyncWriteExt::write_all(&mut client, request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut client, &mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 204"), "{response}");
    assert_eq!(close_code(&mut bob, Duration::from_secs(1)).await, Some(4401), "bob not closed within 1 s");
    assert_eq!(next_json(&mut alice).await, json!({"msg_type": 5, "room": "1", "username": "bob"}));

    // `multichat revoke --user carol --redis-url` closes carol's socket on node B.
    let mut carol = connect(b, &carol_token).await;
    send_json(&mut carol, json!({"command": "join", "room": "1"})).await;
    assert_eq!(next_json(&mut carol).await["join"], "1");
    assert_eq!(cli(&database, &["revoke", "--user", "carol", "--redis-url", &redis]).await.trim(), "1");
    assert_eq!(close_code(&mut carol, Duration::from_secs(1)).await, Some(4401), "carol not closed within 1 s");
    let _ = std::fs::remove_file(file);
}

/// The handshake's status for `token` on `addr`.
async fn handshake_status(addr: SocketAddr, token: &str) -> u16 {
    common::chat_handshake(addr, &[("cookie", &format!("key={token}"))]).await.0.as_u16()
}

/// Waits up to a second for `addr` to answer `token` with `status`.
async fn soon(addr: SocketAddr, token: &str, status: u16) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    while handshake_status(addr, token).await != status {
        assert!(tokio::time::Instant::now() < deadline, "{addr} does not answer {status} within 1 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deactivate_and_activate_reach_every_process_caches_included() {
    let redis = std::env::var("REDIS_URL").expect("REDIS_URL must point at Redis (.ci/run sets it)");
    let (database, file) = common::temp_sqlite("multichat-nodes");
    let dave = cli(&database, &["create-user", "dave", "--password", "pw"]).await;
    let (_node_a, a) = serve(&database, &redis).await;
    let (_node_b, b) = serve(&database, &redis).await;
    tokio::time::sleep(Duration::from_millis(300)).await; // subscriptions start

    // Both processes have dave's token in their caches, and a socket of his.
    let (mut on_a, mut on_b) = (connect(a, &dave).await, connect(b, &dave).await);
    cli(&database, &["deactivate", "dave", "--redis-url", &redis]).await;
    for socket in [&mut on_a, &mut on_b] {
        assert_eq!(close_code(socket, Duration::from_secs(1)).await, Some(4403), "not closed within 1 s");
    }
    // Refused at once on both, whatever the caches held.
    assert_eq!(handshake_status(a, &dave).await, 401);
    assert_eq!(handshake_status(b, &dave).await, 401);

    // Activated: accepted again on both, though both cached the refusal.
    cli(&database, &["activate", "dave", "--redis-url", &redis]).await;
    soon(a, &dave, 101).await;
    soon(b, &dave, 101).await;
    let _ = std::fs::remove_file(file);
}
