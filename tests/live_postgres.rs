//! The lifecycle across nodes over PostgreSQL's LISTEN/NOTIFY (`PgBus`), on
//! the real database at `DATABASE_URL`: a change on one node closes the other
//! node's sockets and empties its cache; a `revalidate` notification (what a
//! database trigger sends for a change only the store can judge) makes every
//! node empty its cache and revalidate; a listener whose connection the server killed reconnects
//! and revalidates what it may have missed.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::nodes::{Node, Shared, accepted, cached, socket_on};
use sqlx::PgPool;
use ws_token_auth::live::postgres::PgBus;
use ws_token_auth::live::{AccessEvent, Bus, CloseReason};
use ws_token_auth::store::ManageTokens;
use ws_token_auth::{MemoryTokenStore, Token};

async fn pool() -> PgPool {
    let url = std::env::var("DATABASE_URL").expect("DATABASE_URL: these tests need a PostgreSQL");
    PgPool::connect(&url).await.expect("PostgreSQL at DATABASE_URL")
}

/// A channel no other test listens on.
fn channel() -> String {
    format!("ws_test_{}", Token::generate().id())
}

fn node(pool: &PgPool, channel: &str, store: &Shared) -> Node {
    cached(store).with_bus(PgBus::new(pool.clone(), channel))
}

async fn within<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(5), future).await.expect("not within 5 s")
}

/// Waits until `channel` has a listener on the server.
async fn listening(pool: &PgPool, channel: &str) -> i32 {
    let sql = "SELECT pid FROM pg_stat_activity WHERE query = $1";
    let listen = format!("LISTEN \"{channel}\"");
    within(async {
        loop {
            if let Some((pid,)) = sqlx::query_as::<_, (i32,)>(sql).bind(&listen).fetch_optional(pool).await.unwrap() {
                return pid;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

#[tokio::test]
async fn a_change_on_one_node_reaches_the_other_over_postgres() {
    let (pool, channel) = (pool().await, channel());
    let store: Shared = Arc::new(MemoryTokenStore::new());
    let (a, b) = (node(&pool, &channel, &store), node(&pool, &channel, &store));
    listening(&pool, &channel).await;
    common::nodes::a_change_on_one_node_reaches_the_other(&a, &b, &store).await;
}

#[tokio::test]
async fn a_revalidate_notification_makes_every_node_ask_the_store() {
    let (pool, channel) = (pool().await, channel());
    let store: Shared = Arc::new(MemoryTokenStore::new());
    let b = node(&pool, &channel, &store);
    listening(&pool, &channel).await;
    let carol = store.issue(&"carol".to_owned(), None).await.unwrap();
    let dan = store.issue(&"dan".to_owned(), None).await.unwrap();
    let carol_on_b = b.watch(&socket_on(&b, &carol).await);
    let mut dan_on_b = b.watch(&socket_on(&b, &dan).await);
    let erin = store.issue(&"erin".to_owned(), None).await.unwrap();
    assert!(accepted(&b, &erin).await); // in b's cache, no socket
    store.revoke(&carol).await.unwrap(); // behind every lifecycle's back
    store.revoke(&erin).await.unwrap();
    // What a trigger sends, from a session that is not a node.
    sqlx::query("SELECT pg_notify($1, 'revalidate')").bind(&channel).execute(&pool).await.unwrap();
    assert_eq!(within(carol_on_b).await, CloseReason::Revoked);
    assert_eq!(dan_on_b.reason(), None, "only the token the store refuses");
    assert!(!accepted(&b, &erin).await, "b's cache forgot every answer");
}

#[tokio::test]
async fn a_killed_listener_reconnects_and_revalidates_what_it_missed() {
    let (pool, channel) = (pool().await, channel());
    let store: Shared = Arc::new(MemoryTokenStore::new());
    let b = node(&pool, &channel, &store);
    let first = listening(&pool, &channel).await;
    let erin = store.issue(&"erin".to_owned(), None).await.unwrap();
    let frank = store.issue(&"frank".to_owned(), None).await.unwrap();
    let erin_on_b = b.watch(&socket_on(&b, &erin).await);
    let frank_on_b = b.watch(&socket_on(&b, &frank).await);

    let killed: (bool,) = sqlx::query_as("SELECT pg_terminate_backend($1)").bind(first).fetch_one(&pool).await.unwrap();
    assert!(killed.0);
    store.revoke(&erin).await.unwrap(); // missed: nobody told the bus
    assert_eq!(within(erin_on_b).await, CloseReason::Revoked, "revalidated after the reconnection");
    let second = listening(&pool, &channel).await;
    assert_ne!(first, second, "a new connection listens");
    // And the bus carries events again.
    PgBus::new(pool.clone(), &channel).publish(&AccessEvent::user_revoked("frank")).await.unwrap();
    assert_eq!(within(frank_on_b).await, CloseReason::Revoked);
}
