//! The lifecycle across nodes over the machine's real Redis (`REDIS_URL`; the
//! tests fail when it cannot be reached): each node has its own cache in
//! front of one shared store, and a change made on one node closes the
//! sockets and empties the caches of every other, with its close reason;
//! the subscriber recovers by itself from an outage (a loopback proxy we
//! cut), catching up with the store.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::nodes::{Node, Shared, accepted, cached, socket_on};
use testkit::Proxy;
use tokio::net::TcpListener;
use ws_token_auth::live::CloseReason;
use ws_token_auth::live::redis::RevocationBus;
use ws_token_auth::store::ManageTokens;
use ws_token_auth::{MemoryTokenStore, Token};

fn redis_url() -> String {
    std::env::var("REDIS_URL").expect("REDIS_URL must point at Redis (.ci/run sets it)")
}

/// A channel no other test uses.
fn channel() -> String {
    format!("ws-token-auth-test:{}", Token::generate().id())
}

/// A node: its own cache over the shared store, on the bus.
async fn node(url: &str, channel: &str, store: &Shared) -> Node {
    let bus = RevocationBus::connect(url, channel).await.unwrap_or_else(|e| panic!("cannot reach Redis at {url}: {e}"));
    let node = cached(store).with_bus(bus);
    tokio::time::sleep(Duration::from_millis(200)).await; // let the subscription start
    node
}

#[tokio::test]
async fn revoke_and_lock_out_on_one_node_reach_every_node_with_their_reasons() {
    let (url, channel) = (redis_url(), channel());
    let store: Shared = Arc::new(MemoryTokenStore::new());
    let (a, b) = (node(&url, &channel, &store).await, node(&url, &channel, &store).await);
    common::nodes::a_change_on_one_node_reaches_the_other(&a, &b, &store).await;
}

#[tokio::test]
async fn a_revalidate_message_makes_every_node_forget_its_cache_and_ask_the_store() {
    let (url, channel) = (redis_url(), channel());
    let store: Shared = Arc::new(MemoryTokenStore::new());
    let b = node(&url, &channel, &store).await;
    let (carol, erin) =
        (store.issue(&"carol".to_owned(), None).await.unwrap(), store.issue(&"erin".to_owned(), None).await.unwrap());
    let carol_on_b = b.watch(&socket_on(&b, &carol).await);
    assert!(accepted(&b, &erin).await); // in b's cache, no socket
    store.revoke(&carol).await.unwrap(); // behind every lifecycle's back
    store.revoke(&erin).await.unwrap();
    let mut conn = redis::Client::open(url).unwrap().get_multiplexed_async_connection().await.unwrap();
    let _: i64 = redis::cmd("PUBLISH").arg(&channel).arg("revalidate").query_async(&mut conn).await.unwrap();
    assert_eq!(tokio::time::timeout(Duration::from_secs(1), carol_on_b).await.unwrap(), CloseReason::Revoked);
    assert!(!accepted(&b, &erin).await, "b's cache forgot every answer");
}

#[tokio::test]
async fn a_socket_registering_after_a_remote_revocation_is_closed_at_once() {
    let (url, channel) = (redis_url(), channel());
    let store: Shared = Arc::new(MemoryTokenStore::new());
    let (a, b) = (node(&url, &channel, &store).await, node(&url, &channel, &store).await);
    let alice = store.issue(&"alice".to_owned(), None).await.unwrap();
    let carol = store.issue(&"carol".to_owned(), None).await.unwrap();

    // Handshakes authenticated on node B, whose upgrade handlers are slow to register.
    let alice_late = socket_on(&b, &alice).await;
    let carol_late = socket_on(&b, &carol).await;
    a.revoke(&alice).await.unwrap();
    a.lock_out(&"carol".to_owned()).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    while accepted(&b, &alice).await || accepted(&b, &carol).await {
        assert!(tokio::time::Instant::now() < deadline, "node B did not hear within 1 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Now they register: closed at once, with their reasons.
    assert_eq!(b.watch(&alice_late).reason(), Some(CloseReason::Revoked));
    assert_eq!(b.watch(&carol_late).reason(), Some(CloseReason::AccessLost));
    assert!(b.revocations().is_empty());
}

#[tokio::test]
async fn the_subscriber_recovers_from_an_outage_and_catches_up() {
    let (url, channel) = (redis_url(), channel());
    let target = testkit::host_port(&url, 6379);
    let proxy = Proxy::start(target).await;
    let store: Shared = Arc::new(MemoryTokenStore::new());
    let a = node(&format!("redis://{}", proxy.addr), &channel, &store).await;
    let b = node(&url, &channel, &store).await;
    let [alice, bob, carol] = ["alice", "bob", "carol"].map(|_| Token::generate());
    for (token, name) in [(&alice, "alice"), (&bob, "bob"), (&carol, "carol")] {
        store.insert(token, ws_token_auth::Authenticated::new(name.to_owned()));
    }
    let alice_on_a = a.watch(&socket_on(&a, &alice).await);
    let mut bob_on_a = a.watch(&socket_on(&a, &bob).await);
    let carol_on_a = a.watch(&socket_on(&a, &carol).await);

    // Node A loses Redis; meanwhile node B logs alice out, and its message
    // about it goes to nobody on node A.
    proxy.cut().await;
    b.revoke(&alice).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(accepted(&a, &alice).await, "node A's cache still holds her (it missed the message)");
    proxy.restore();

    // On reconnection node A revalidates: alice's socket closes, bob's stays,
    // and node A's cache no longer answers for her.
    let reason = tokio::time::timeout(Duration::from_secs(10), alice_on_a).await.expect("no catch-up within 10 s");
    assert_eq!(reason, CloseReason::Revoked);
    assert!(!accepted(&a, &alice).await, "the catch-up emptied the cache too");
    assert_eq!(bob_on_a.reason(), None);
    // And the bus works again.
    b.revoke(&carol).await.unwrap();
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

/// How many subscribers `channel` has, asked of Redis itself.
async fn subscribers(url: &str, channel: &str) -> i64 {
    let mut conn = redis::Client::open(url).unwrap().get_multiplexed_async_connection().await.unwrap();
    let counts: Vec<(String, i64)> =
        redis::cmd("PUBSUB").arg("NUMSUB").arg(channel).query_async(&mut conn).await.unwrap();
    counts.first().map_or(0, |(_, n)| *n)
}

#[tokio::test]
async fn a_dropped_node_stops_listening_also_across_an_outage() {
    let (url, channel) = (redis_url(), channel());
    let proxy = Proxy::start(testkit::host_port(&url, 6379)).await;
    let store: Shared = Arc::new(MemoryTokenStore::new());
    let node = node(&format!("redis://{}", proxy.addr), &channel, &store).await;
    assert_eq!(subscribers(&url, &channel).await, 1);
    drop(node);
    // Its connection breaks before any message comes: it must not come back.
    proxy.cut().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.restore();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(subscribers(&url, &channel).await, 0, "a node nobody holds kept listening");
}
