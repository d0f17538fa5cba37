//! A revocation wins every race (issue 17): a socket whose handshake was
//! authenticated before its token (or user) was revoked, and which registers
//! after the revocation reached its node, is closed as soon as it registers.
//!
//! - Deterministic: an upgrade handler paused between authentication and
//!   registration while the token is revoked (or the user locked out), on one
//!   node and across two over the machine's real Redis (`REDIS_URL`).
//! - Stress: two multichat nodes in this process (each with its own cache,
//!   registry and bus) over the machine's PostgreSQL (`DATABASE_URL`) and
//!   Redis; 40 rounds of "log a fresh token out on node A while handshakes
//!   with it run on both nodes": every upgraded socket is closed within 1.5 s
//!   of the logout's response, and no handshake that starts on node A after
//!   that response is upgraded. The same for a user revocation and a lock-out.

#[allow(dead_code)]
#[path = "../examples/multichat/main.rs"]
mod multichat;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::get;
use futures_util::StreamExt;
use tokio::sync::{Mutex, mpsc};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message as WsMessage};
use ws_token_auth::live::redis::RevocationBus;
use ws_token_auth::store::CachedTokenStore;
use ws_token_auth::{AuthenticatedUser, Authenticator, Lifecycle, MemoryTokenStore, Token, TokenStore};

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;
type Shared = Arc<MemoryTokenStore<String>>;
type Node = Lifecycle<CachedTokenStore<Shared>>;

/// An upgrade handler that stops between authentication and registration
/// until the test lets it go, then serves the socket until its watch fires.
#[derive(Clone)]
struct Paused {
    lifecycle: Node,
    authenticated: mpsc::UnboundedSender<()>,
    go: Arc<Mutex<mpsc::UnboundedReceiver<()>>>,
}

async fn paused_handler(
    State(state): State<Paused>,
    user: AuthenticatedUser<String>,
    ws: WebSocketUpgrade,
) -> Response {
    let _ = state.authenticated.send(());
    state.go.lock().await.recv().await; // say, a slow profile query
    let mut watch = state.lifecycle.watch(&user);
    ws.on_upgrade(move |mut socket| async move {
        loop {
            tokio::select! {
                reason = &mut watch => {
                    let frame = CloseFrame { code: reason.code(), reason: reason.as_str().into() };
                    let _ = socket.send(Message::Close(Some(frame))).await;
                    return;
                }
                message = socket.recv() => if !matches!(message, Some(Ok(_))) { return },
            }
        }
    })
}

/// Serves `node` with the paused handler; the test's two ends of the pause.
async fn serve_paused(node: &Node) -> (SocketAddr, mpsc::UnboundedReceiver<()>, mpsc::UnboundedSender<()>) {
    let (authenticated, authenticated_rx) = mpsc::unbounded_channel();
    let (go_tx, go) = mpsc::unbounded_channel();
    let state = Paused { lifecycle: node.clone(), authenticated, go: Arc::new(Mutex::new(go)) };
    let auth = Authenticator::from_shared(Arc::clone(node.store()));
    let app = Router::new().route("/ws", get(paused_handler)).layer(auth.layer()).with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, authenticated_rx, go_tx)
}

async fn open(url: String, token: Token) -> Result<Socket, u16> {
    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert("cookie", format!("key={}", token.expose_secret()).parse().unwrap());
    match tokio_tungstenite::connect_async(req).await {
        Ok((socket, _)) => Ok(socket),
        Err(WsError::Http(response)) => Err(response.status().as_u16()),
        Err(other) => panic!("handshake failed below HTTP: {other}"),
    }
}

/// The close code the server sends, if any, within `within`.
async fn close_code(socket: &mut Socket, within: Duration) -> Option<u16> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, socket.next()).await {
            Ok(Some(Ok(WsMessage::Close(frame)))) => return frame.map(|f| u16::from(f.code)),
            Ok(Some(Ok(_))) => continue,
            Ok(_) | Err(_) => return None,
        }
    }
}

fn redis_url() -> String {
    std::env::var("REDIS_URL").expect("REDIS_URL must point at Redis (.ci/run sets it)")
}

async fn bus_node(store: &Shared, channel: &str) -> Node {
    let url = redis_url();
    let bus =
        RevocationBus::connect(&url, channel).await.unwrap_or_else(|e| panic!("cannot reach Redis at {url}: {e}"));
    let node = Lifecycle::new(Arc::new(CachedTokenStore::new(Arc::clone(store)))).with_bus(bus);
    tokio::time::sleep(Duration::from_millis(200)).await; // let the subscription start
    node
}

/// Pauses a handshake on `serving` after authentication, changes access on
/// `changing` with `change`, waits until `serving` refuses the token, lets the
/// handshake go, and returns the close code the client got.
async fn paused_handshake_during<F, Fut>(serving: &Node, changing: &Node, token: &Token, change: F) -> Option<u16>
where
    F: FnOnce(Node) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let (addr, mut authenticated, go) = serve_paused(serving).await;
    let client = tokio::spawn(open(format!("ws://{addr}/ws"), token.clone()));
    tokio::time::timeout(Duration::from_secs(5), authenticated.recv()).await.expect("handshake not authenticated");
    change(changing.clone()).await;
    let deadline = Instant::now() + Duration::from_secs(2);
    while serving.store().authenticate(token).await.unwrap().is_some() {
        assert!(Instant::now() < deadline, "the serving node never heard of the change");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    go.send(()).unwrap();
    let mut socket = client.await.unwrap().expect("authenticated before the change: upgraded");
    close_code(&mut socket, Duration::from_secs(1)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_a_handshake_paused_across_a_logout_is_closed_when_it_registers() {
    let store: Shared = Arc::new(MemoryTokenStore::new());
    let node = Lifecycle::new(Arc::new(CachedTokenStore::new(Arc::clone(&store))));
    let token = node.issue(&"alice".to_string(), None).await.unwrap();
    let revoked = token.clone();
    let code = paused_handshake_during(&node, &node, &token, |node| async move {
        node.revoke(&revoked).await.unwrap();
    })
    .await;
    assert_eq!(code, Some(4401));

    let token = node.issue(&"bob".to_string(), None).await.unwrap();
    let code = paused_handshake_during(&node, &node, &token, |node| async move {
        node.lock_out(&"bob".to_string()).await.unwrap();
    })
    .await;
    assert_eq!(code, Some(4403));
    assert!(node.revocations().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_a_handshake_paused_across_a_remote_revocation_is_closed_when_it_registers() {
    let store: Shared = Arc::new(MemoryTokenStore::new());
    let channel = format!("ws-token-auth-race:{}", Token::generate().id());
    let (a, b) = (bus_node(&store, &channel).await, bus_node(&store, &channel).await);

    let token = a.issue(&"alice".to_string(), None).await.unwrap();
    let revoked = token.clone();
    let code = paused_handshake_during(&b, &a, &token, |a| async move {
        a.revoke(&revoked).await.unwrap();
    })
    .await;
    assert_eq!(code, Some(4401), "logout on A, handshake paused on B");

    let token = a.issue(&"carol".to_string(), None).await.unwrap();
    let code = paused_handshake_during(&b, &a, &token, |a| async move {
        a.revoke_user(&"carol".to_string()).await.unwrap();
    })
    .await;
    assert_eq!(code, Some(4401), "revoke_user on A");

    let token = a.issue(&"dave".to_string(), None).await.unwrap();
    let code = paused_handshake_during(&b, &a, &token, |a| async move {
        a.lock_out(&"dave".to_string()).await.unwrap();
    })
    .await;
    assert_eq!(code, Some(4403), "lock-out on A");
}

// --- the stress: two multichat nodes over PostgreSQL and Redis -------------------

struct ChatNode {
    addr: SocketAddr,
    app: multichat::api::App,
}

async fn chat_node(database_url: &str, redis_url: &str) -> ChatNode {
    use multichat::api::{App, router};
    let db = multichat::db::Db::open(database_url).await.unwrap_or_else(|e| panic!("cannot open {database_url}: {e}"));
    let app = App::with_redis(db, false, false, redis_url, database_url).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = router(app.clone(), ws_token_auth::OriginPolicy::same_host());
    tokio::spawn(async move { axum::serve(listener, service).await.unwrap() });
    ChatNode { addr, app }
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
                match open(format!("ws://{addr}/chat/stream/"), token.clone()).await {
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
    let redis_url = redis_url();
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
