//! A revocation wins every race, in the app (issue 17): two multichat nodes
//! in this process (each with its own cache, registry and bus) over the
//! machine's PostgreSQL (`DATABASE_URL`) and Redis (`REDIS_URL`); 40 rounds
//! of "log a fresh token out on node A while handshakes with it run on both
//! nodes": every upgraded socket is closed within 1.5 s of the logout's
//! response, and no handshake that starts on node A after that response is
//! upgraded. The same for a user revocation and a lock-out (4403).

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use testkit::close_code;
use ws_token_auth::Token;

async fn open(addr: SocketAddr, token: Token) -> Result<testkit::Socket, u16> {
    let cookie = format!("key={}", token.expose_secret());
    match common::chat_handshake(addr, &[("cookie", &cookie)]).await {
        (_, Some(socket)) => Ok(socket),
        (status, None) => Err(status.as_u16()),
    }
}

struct ChatNode {
    addr: SocketAddr,
    app: multichat::api::App,
}

async fn chat_node(database_url: &str, redis_url: &str) -> ChatNode {
    let db = multichat::db::Db::open(database_url).await.unwrap_or_else(|e| panic!("cannot open {database_url}: {e}"));
    let app = multichat::api::App::with_redis(db, false, false, redis_url, database_url).await.unwrap();
    // One user hammers both nodes with handshakes: far past the default socket cap per user.
    let limits = multichat::limits::Limits { max_sockets_per_user: 10_000, ..Default::default() };
    let app = app.with_limits(limits);
    ChatNode { addr: common::serve_app(app.clone()).await, app }
}

#[derive(Clone, Copy, Debug)]
enum Change {
    Logout,
    RevokeUser,
    LockOut,
}

/// One round: a fresh user and token, handshakes hammering both nodes, the
/// change made on node A while they run. Returns (upgraded sockets, late
/// upgrades on A) after checking that every upgraded socket closed in time.
async fn round(a: &ChatNode, b: &ChatNode, name: &str, change: Change) -> (usize, usize) {
    let id = a.app.db.create_user(name, "x", false).await.unwrap();
    let token = a.app.db.issue_token(id, None).await.unwrap();
    let stop = Arc::new(AtomicUsize::new(0));
    let changed_at: Arc<std::sync::Mutex<Option<Instant>>> = Arc::default();
    let late_on_a = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for worker in 0..8 {
        let addr = if worker % 2 == 0 { a.addr } else { b.addr };
        let on_a = worker % 2 == 0;
        let (token, stop, changed_at, late_on_a) =
            (token.clone(), Arc::clone(&stop), Arc::clone(&changed_at), Arc::clone(&late_on_a));
        workers.push(tokio::spawn(async move {
            let mut closes = Vec::new();
            while stop.load(Ordering::SeqCst) == 0 {
                let started = Instant::now();
                match open(addr, token.clone()).await {
                    Ok(mut socket) => {
                        let after_change = changed_at.lock().unwrap().is_some_and(|at| started > at);
                        if on_a && after_change {
                            late_on_a.fetch_add(1, Ordering::SeqCst);
                        }
                        closes.push(tokio::spawn(async move {
                            let code = close_code(&mut socket, Duration::from_secs(5)).await;
                            (code, Instant::now())
                        }));
                    }
                    Err(status) => assert_eq!(status, 401, "a handshake got {status}"),
                }
            }
            closes
        }));
    }
    tokio::time::sleep(Duration::from_millis(60)).await;
    let expected = match change {
        Change::Logout => {
            a.app.lifecycle.revoke(&token).await.unwrap();
            4401
        }
        Change::RevokeUser => {
            a.app.lifecycle.revoke_user(&id).await.unwrap();
            4401
        }
        Change::LockOut => {
            a.app.lifecycle.lock_out(&id).await.unwrap();
            4403
        }
    };
    let responded = Instant::now();
    *changed_at.lock().unwrap() = Some(responded);
    tokio::time::sleep(Duration::from_millis(40)).await;
    stop.store(1, Ordering::SeqCst);
    let mut upgraded = 0;
    for worker in workers {
        for close in worker.await.unwrap() {
            upgraded += 1;
            let (code, closed_at) = close.await.unwrap();
            assert_eq!(code, Some(expected), "{change:?} round {name}: a socket was not closed with {expected}");
            let open_for = closed_at.saturating_duration_since(responded);
            assert!(open_for <= Duration::from_millis(1500), "{change:?}: a socket was open {open_for:?} after it");
        }
    }
    (upgraded, late_on_a.load(Ordering::SeqCst))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forty_rounds_of_revocation_during_handshake_bursts_on_two_nodes() {
    let database_url = std::env::var("DATABASE_URL").expect("DATABASE_URL must point at PostgreSQL (.ci/run sets it)");
    let redis_url = std::env::var("REDIS_URL").expect("REDIS_URL must point at Redis (.ci/run sets it)");
    let (a, b) = (chat_node(&database_url, &redis_url).await, chat_node(&database_url, &redis_url).await);
    tokio::time::sleep(Duration::from_millis(300)).await; // subscriptions
    let tag = Token::generate().expose_secret()[..8].to_owned();
    let mut upgraded = 0;
    for (i, change) in
        std::iter::repeat_n([Change::Logout, Change::RevokeUser, Change::LockOut], 14).flatten().take(40).enumerate()
    {
        let (sockets, late) = round(&a, &b, &format!("race{i}_{tag}"), change).await;
        assert_eq!(late, 0, "{change:?}: a handshake that started on node A after the change was upgraded");
        upgraded += sockets;
    }
    assert!(upgraded >= 40, "the bursts upgraded only {upgraded} sockets: the test would prove little");
}
