//! Revocation-to-close latency of the multichat example: the time from a
//! logout request to the close frame (4401) reaching the client whose socket
//! used that token. One node, and two nodes (two servers in this process that
//! share only the SQLite database and Redis, as two processes would).
//!
//! Run: `REDIS_URL=redis://127.0.0.1:6379 cargo bench --bench revocation [-- ROUNDS]`
//! (default 300 rounds per setting). Prints p50 / p90 / p99 / max.

#![allow(missing_docs)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use multichat::api::App;
use multichat::db::{Db, hash_password};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use ws_token_auth::Token;

async fn serve(app: App) -> String {
    common::serve_app(app).await.to_string()
}

async fn logout(addr: &str, token: &str) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "POST /api/logout HTTP/1.1\r\nHost: {addr}\r\nCookie: key={token}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    assert!(response.starts_with(b"HTTP/1.1 204"), "{}", String::from_utf8_lossy(&response));
}

/// Opens a socket on `socket_node`, logs its token out on `logout_node`, and
/// times until the close frame arrives; `rounds` times.
async fn measure(db: &Db, user: i64, socket_node: &str, logout_node: &str, rounds: usize) -> Vec<Duration> {
    let mut samples = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let token = db.issue_token(user, None).await.unwrap();
        let mut req = format!("ws://{socket_node}/chat/stream/").into_client_request().unwrap();
        req.headers_mut().insert("cookie", format!("key={}", token.expose_secret()).parse().unwrap());
        let (mut socket, _) = tokio_tungstenite::connect_async(req).await.unwrap();
        socket.send(Message::Text(r#"{"command": "join", "room": "1"}"#.into())).await.unwrap();
        socket.next().await.unwrap().unwrap(); // the join reply: the socket is registered
        let (logout_node, secret) = (logout_node.to_owned(), token.expose_secret().to_owned());
        let started = Instant::now();
        let request = tokio::spawn(async move { logout(&logout_node, &secret).await });
        loop {
            match socket.next().await {
                Some(Ok(Message::Close(Some(frame)))) => {
                    assert_eq!(u16::from(frame.code), 4401);
                    break;
                }
                Some(Ok(_)) => {}
                other => panic!("socket ended without a close frame: {other:?}"),
            }
        }
        samples.push(started.elapsed());
        request.await.unwrap();
    }
    samples.sort();
    samples
}

fn report(name: &str, samples: &[Duration]) {
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "{name:<28} n={:<5} p50={:>8.2?} p90={:>8.2?} p99={:>8.2?} max={:>8.2?}",
        samples.len(),
        at(0.5),
        at(0.9),
        at(0.99),
        samples[samples.len() - 1]
    );
}

fn main() {
    let rounds: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(300);
    let redis = std::env::var("REDIS_URL").expect("set REDIS_URL, e.g. redis://127.0.0.1:6379");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let file =
            std::env::temp_dir().join(format!("revocation-bench-{}.db", &Token::generate().expose_secret()[..12]));
        let url = format!("sqlite://{}", file.display());
        let db = Db::open(&url).await.unwrap();
        let user = db.create_user("bench", &hash_password("pw").unwrap(), false).await.unwrap();

        let single = serve(App::new(db.clone(), true, false).await.unwrap()).await;
        let node_a = serve(App::with_redis(db.clone(), true, false, &redis, &url).await.unwrap()).await;
        let node_b = serve(App::with_redis(db.clone(), true, false, &redis, &url).await.unwrap()).await;
        tokio::time::sleep(Duration::from_millis(300)).await;

        // Warm-up, then the two settings alternated in blocks.
        measure(&db, user, &single, &single, 20).await;
        measure(&db, user, &node_b, &node_a, 20).await;
        let (mut one, mut two) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            one.extend(measure(&db, user, &single, &single, rounds / 3).await);
            two.extend(measure(&db, user, &node_b, &node_a, rounds / 3).await);
        }
        one.sort();
        two.sort();
        report("one node", &one);
        report("two nodes (over Redis)", &two);
        let _ = std::fs::remove_file(file);
    });
}
