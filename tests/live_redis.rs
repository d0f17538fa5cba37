//! Revocations across nodes over the machine's real Redis (`REDIS_URL`; the
//! tests fail when it cannot be reached): a revocation published on one node
//! closes the sockets on another, and the subscriber recovers by itself from
//! an outage (a loopback proxy we cut), catching up with the store.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::Proxy;
use tokio::net::TcpListener;
use ws_token_auth::extract::CredentialKind;
use ws_token_auth::live::redis::{Revocation, RevocationBus};
use ws_token_auth::live::{CloseReason, Revocations};
use ws_token_auth::{AuthenticatedUser, MemoryTokenStore, Token};

fn redis_url() -> String {
    std::env::var("REDIS_URL").expect("REDIS_URL must point at Redis (.ci/run sets it)")
}

/// A channel no other test uses.
fn channel() -> String {
    format!("ws-token-auth-test:{}", Token::generate().id())
}

/// A node: a registry applying one bus.
async fn node(url: &str, channel: &str, store: Arc<MemoryTokenStore<String>>) -> (Revocations, RevocationBus) {
    let revocations = Revocations::new();
    let bus = RevocationBus::connect(url, channel).await.unwrap_or_else(|e| panic!("cannot reach Redis at {url}: {e}"));
    bus.apply(revocations.clone(), store);
    tokio::time::sleep(Duration::from_millis(200)).await; // let the subscription start
    (revocations, bus)
}

fn socket_of(store: &MemoryTokenStore<String>, name: &str) -> AuthenticatedUser<String> {
    let token = store.issue(name.to_owned());
    AuthenticatedUser::new(name.to_owned(), token, CredentialKind::Cookie, None)
}

#[tokio::test]
async fn a_revocation_on_one_node_closes_sockets_on_another() {
    let (url, channel) = (redis_url(), channel());
    let store = Arc::new(MemoryTokenStore::new());
    let (a, bus_a) = node(&url, &channel, store.clone()).await;
    let (b, _bus_b) = node(&url, &channel, store.clone()).await;
    let alice = socket_of(&store, "alice");
    let bob = socket_of(&store, "bob");
    let on_b = b.watch(&alice, "1");
    let mut bob_on_b = b.watch(&bob, "2");
    let bob_on_a = a.watch(&bob, "2");

    bus_a.publish(&Revocation::Token(alice.token_id())).await.unwrap();
    let reason = tokio::time::timeout(Duration::from_secs(1), on_b).await.expect("not closed on node B within 1 s");
    assert_eq!(reason, CloseReason::Revoked);
    assert_eq!(bob_on_b.reason(), None, "other tokens stay open");

    bus_a.publish(&Revocation::User { key: "2".into(), reason: CloseReason::AccessLost }).await.unwrap();
    assert_eq!(tokio::time::timeout(Duration::from_secs(1), bob_on_a).await.unwrap(), CloseReason::AccessLost);
    assert_eq!(tokio::time::timeout(Duration::from_secs(1), &mut bob_on_b).await.unwrap().code(), 4403);
    drop(bob_on_b);
    assert!(a.is_empty() && b.is_empty());
}

#[tokio::test]
async fn the_subscriber_recovers_from_an_outage_and_catches_up() {
    let (url, channel) = (redis_url(), channel());
    let target = url.trim_start_matches("redis://").trim_end_matches('/').to_owned();
    let proxy = Proxy::start(target).await;
    let store = Arc::new(MemoryTokenStore::new());
    let (a, _) = node(&format!("redis://{}", proxy.addr), &channel, store.clone()).await;
    let (_, bus_b) = node(&url, &channel, store.clone()).await;
    let alice = socket_of(&store, "alice");
    let bob = socket_of(&store, "bob");
    let carol = socket_of(&store, "carol");
    let alice_on_a = a.watch(&alice, "1");
    let mut bob_on_a = a.watch(&bob, "2");
    let carol_on_a = a.watch(&carol, "3");

    // Node A loses Redis; meanwhile alice's token is deleted and node B's
    // message about it goes to nobody on node A.
    proxy.cut().await;
    assert!(store.revoke(alice.token()));
    bus_b.publish(&Revocation::Token(alice.token_id())).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.restore();

    // On reconnection node A revalidates: alice's socket closes, bob's stays.
    let reason = tokio::time::timeout(Duration::from_secs(10), alice_on_a).await.expect("no catch-up within 10 s");
    assert_eq!(reason, CloseReason::Revoked);
    assert_eq!(bob_on_a.reason(), None);
    // And the bus works again.
    bus_b.publish(&Revocation::Token(carol.token_id())).await.unwrap();
    assert_eq!(tokio::time::timeout(Duration::from_secs(2), carol_on_a).await.unwrap(), CloseReason::Revoked);
    assert_eq!(bob_on_a.reason(), None);
}

#[tokio::test]
async fn publishing_to_an_unreachable_redis_fails_quickly() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener); // nothing listens there now
    let started = std::time::Instant::now();
    let result = RevocationBus::connect(&format!("redis://{addr}"), channel()).await;
    assert!(result.is_err());
    // The bound is 5 s; the margin is for a loaded machine.
    assert!(started.elapsed() < Duration::from_secs(15), "hung for {:?}", started.elapsed());
}
