//! A revocation wins every race: a socket whose handshake was authenticated
//! before its token (or user) was revoked, and which registers after the
//! revocation reached its node, is closed as soon as it registers. An upgrade
//! handler is paused between authentication and registration while the token
//! is revoked (or the user locked out), on one node and across two over the
//! machine's real Redis (`REDIS_URL`). The multichat app's stress test of the
//! same (`multichat/tests/races.rs`) runs handshake bursts on two nodes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::get;
use testkit::close_code;
use tokio::sync::{Mutex, mpsc};
use ws_token_auth::live::redis::RevocationBus;
use ws_token_auth::store::CachedTokenStore;
use ws_token_auth::{AuthenticatedUser, Authenticator, Lifecycle, MemoryTokenStore, Token, TokenStore};

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

async fn open(url: String, token: Token) -> Option<testkit::Socket> {
    let cookie = format!("key={}", token.expose_secret());
    testkit::handshake(&url, &[("cookie", &cookie)]).await.2
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
