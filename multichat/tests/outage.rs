//! The multichat example while PostgreSQL goes away mid-run (cut behind a
//! loopback proxy): new handshakes get 503 within the store timeout, never an
//! anonymous socket; open sockets keep chatting; everything recovers by itself
//! when the database returns.

mod common;

use std::time::{Duration, Instant};

use futures_util::SinkExt;
use http::StatusCode;
use multichat::api::{App, router};
use multichat::db::{Db, hash_password};
use serde_json::json;
use testkit::Proxy;
use tokio_tungstenite::tungstenite::Message;
use ws_token_auth::{OriginPolicy, Token};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_going_away_mid_run() {
    let url = std::env::var("DATABASE_URL").expect("DATABASE_URL must point at PostgreSQL (.ci/run sets it)");
    let proxy = Proxy::start(testkit::host_port(&url, 5432)).await;
    let proxied = testkit::through(&url, &proxy, 5432);
    let db = Db::open(&proxied).await.unwrap();
    let tag = Token::generate().expose_secret()[..8].to_owned();
    let hash = hash_password("pw").unwrap();
    let mut tokens = Vec::new();
    for name in ["alice", "bob", "carol"] {
        let id = db.create_user(&format!("{name}_{tag}"), &hash, false).await.unwrap();
        tokens.push(db.issue_token(id, None).await.unwrap().expose_secret().to_owned());
    }
    let app = App::new(db, false, false).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = router(app, OriginPolicy::same_host()).into_router();
    tokio::spawn(async move { axum::serve(listener, service).await.unwrap() });
    let cookie = |token: &str| format!("key={token}");

    let (_, alice) = connect_chat(addr, &cookie(&tokens[0])).await;
    let (_, bob) = connect_chat(addr, &cookie(&tokens[1])).await;
    let (mut alice, mut bob) = (alice.unwrap(), bob.unwrap());
    for socket in [&mut alice, &mut bob] {
        socket.send(Message::Text(json!({"command": "join", "room": "1"}).to_string().into())).await.unwrap();
        assert_eq!(testkit::next_json(socket).await["join"], "1");
    }

    proxy.cut().await;
    for _ in 0..3 {
        let started = Instant::now();
        let (status, socket) = connect_chat(addr, &cookie(&tokens[2])).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "never anonymous, never 401");
        assert!(socket.is_none());
        // The layer's store timeout is 5 s; the pool gives up sooner.
        assert!(started.elapsed() < Duration::from_secs(8), "took {:?}", started.elapsed());
    }
    // The open sockets keep chatting: the chat itself does not need the database.
    alice
        .send(Message::Text(json!({"command": "send", "room": "1", "message": "still here"}).to_string().into()))
        .await
        .unwrap();
    assert_eq!(testkit::next_json(&mut bob).await["message"], "still here");

    proxy.restore();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, _) = connect_chat(addr, &cookie(&tokens[2])).await;
        if status == StatusCode::SWITCHING_PROTOCOLS {
            break;
        }
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(Instant::now() < deadline, "no recovery within 20 s");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Connects to the chat's endpoint with a cookie; the status, and the socket if upgraded.
async fn connect_chat(addr: std::net::SocketAddr, cookie: &str) -> (StatusCode, Option<testkit::Socket>) {
    common::chat_handshake(addr, &[("cookie", cookie)]).await
}
