//! The lifecycle across nodes over a bus of the app's own (the `Bus` trait,
//! no Redis): a broadcast channel in one process. A change made on one node
//! closes the sockets and empties the cache of the other, with its close
//! reason; a bus that lagged makes its node forget its cache and revalidate; a user
//! changed (a password change) revalidates that user's sockets only; a node that is gone
//! stops listening.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use common::nodes::{Node, Shared, cached, socket_on};
use tokio::sync::broadcast;
use ws_token_auth::live::{AccessEvent, Bus, BusError, CloseReason, Listener};
use ws_token_auth::store::ManageTokens;
use ws_token_auth::{MemoryTokenStore, TokenStore};

/// Every node of the process on one broadcast channel; counts the listening
/// tasks that are still running.
#[derive(Debug, Clone)]
struct InProcess {
    sender: broadcast::Sender<String>,
    listening: Arc<AtomicUsize>,
}

impl InProcess {
    fn new(capacity: usize) -> Self {
        Self { sender: broadcast::channel(capacity).0, listening: Arc::default() }
    }
}

#[async_trait]
impl Bus for InProcess {
    async fn publish(&self, event: &AccessEvent) -> Result<(), BusError> {
        let _ = self.sender.send(event.to_string());
        Ok(())
    }

    fn listen(&self, listener: Listener) {
        let mut heard = self.sender.subscribe();
        let listening = Arc::clone(&self.listening);
        listening.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(async move {
            loop {
                match heard.recv().await {
                    Ok(text) => {
                        if let Ok(event) = text.parse() {
                            if !listener.heard(event).await {
                                break;
                            }
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => listener.gap().await,
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
            listening.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

fn node(bus: &InProcess, store: &Shared) -> Node {
    cached(store).with_bus(bus.clone())
}

async fn within<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(2), future).await.expect("not within 2 s")
}

#[tokio::test]
async fn a_change_on_one_node_reaches_the_other_over_a_bus_of_the_apps_own() {
    let store: Shared = Arc::new(MemoryTokenStore::new());
    let bus = InProcess::new(64);
    let (a, b) = (node(&bus, &store), node(&bus, &store));
    common::nodes::a_change_on_one_node_reaches_the_other(&a, &b, &store).await;
}

#[tokio::test]
async fn a_bus_that_lagged_makes_its_node_revalidate_and_forget_its_cache() {
    let store: Shared = Arc::new(MemoryTokenStore::new());
    let bus = InProcess::new(1);
    let b = node(&bus, &store);
    let carol = store.issue(&"carol".to_owned(), None).await.unwrap();
    let carol_on_b = b.watch(&socket_on(&b, &carol).await);
    // Dan has no socket on b, only an answer in b's cache.
    let dan = store.issue(&"dan".to_owned(), None).await.unwrap();
    assert!(b.store().authenticate(&dan).await.unwrap().is_some());
    // Behind every lifecycle's back: only revalidation can find out.
    store.revoke(&carol).await.unwrap();
    store.revoke(&dan).await.unwrap();
    // More than the channel holds, before b's task reads any: it lags.
    for i in 0..4 {
        bus.publish(&AccessEvent::user_locked_out(format!("nobody-{i}"))).await.unwrap();
    }
    assert_eq!(within(carol_on_b).await, CloseReason::Revoked);
    assert!(b.store().authenticate(&dan).await.unwrap().is_none(), "b's cache forgot every answer at the gap");
}

#[tokio::test]
async fn a_user_changed_revalidates_that_users_sockets_and_answers_only() {
    let store: Shared = Arc::new(MemoryTokenStore::new());
    let bus = InProcess::new(8);
    let b = node(&bus, &store);
    let issue = |user: &str| {
        let (store, user) = (Arc::clone(&store), user.to_owned());
        async move { store.issue(&user, None).await.unwrap() }
    };
    let (kept, ended, cached) = (issue("alice").await, issue("alice").await, issue("alice").await);
    let bob = issue("bob").await;
    let mut kept_on_b = b.watch(&socket_on(&b, &kept).await);
    let ended_on_b = b.watch(&socket_on(&b, &ended).await);
    let mut bob_on_b = b.watch(&socket_on(&b, &bob).await);
    assert!(b.store().authenticate(&cached).await.unwrap().is_some()); // in b's cache, no socket
    // Behind every lifecycle's back: some of alice's credentials end (as a
    // password change ends a Django user's sessions), and bob's too.
    for token in [&ended, &cached, &bob] {
        store.revoke(token).await.unwrap();
    }
    bus.publish(&AccessEvent::user_changed("alice")).await.unwrap();

    assert_eq!(within(ended_on_b).await, CloseReason::Revoked);
    assert_eq!(kept_on_b.reason(), None, "the store still accepts this one");
    assert!(b.store().authenticate(&cached).await.unwrap().is_none(), "alice's cached answers are asked again");
    // Bob was not named: his socket and his cached answer wait for their
    // revalidation and TTL, as documented.
    assert_eq!(bob_on_b.reason(), None);
    assert!(b.store().authenticate(&bob).await.unwrap().is_some());
}

#[tokio::test]
async fn a_node_that_is_gone_stops_listening() {
    let store: Shared = Arc::new(MemoryTokenStore::new());
    let bus = InProcess::new(8);
    let b = node(&bus, &store);
    assert_eq!(bus.listening.load(Ordering::SeqCst), 1);
    drop(b);
    bus.publish(&AccessEvent::user_locked_out("dave")).await.unwrap();
    within(async {
        while bus.listening.load(Ordering::SeqCst) != 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}
