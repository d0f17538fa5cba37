//! `CachedTokenStore` (feature `cache`): request coalescing, negative entries,
//! no cached errors, invalidation, TTLs, size bound.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use common::{Counting, User};
use ws_token_auth::store::CachedTokenStore;
use ws_token_auth::{Authenticated, MemoryTokenStore, StoreError, Token, TokenStore};

/// A store that takes its time, so that concurrent lookups overlap, and can be
/// made to fail.
#[derive(Debug, Default)]
struct Slow {
    inner: MemoryTokenStore<User>,
    failing: AtomicBool,
}

#[async_trait]
impl TokenStore for Slow {
    type User = User;

    async fn authenticate(&self, token: &Token) -> Result<Option<Authenticated<User>>, StoreError> {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if self.failing.load(Ordering::SeqCst) {
            return Err(StoreError::unavailable(std::io::Error::other("database down")));
        }
        self.inner.authenticate(token).await
    }
}

fn cache() -> Arc<CachedTokenStore<Arc<Counting<Slow>>>> {
    Arc::new(CachedTokenStore::new(Arc::new(Counting::new(Slow::default()))))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_lookups_of_one_token_costs_one_store_call() {
    let cache = cache();
    let token = cache.inner().inner.inner.issue(User::named(1, "alice"));
    let lookups: Vec<_> = (0..100)
        .map(|_| {
            let (cache, token) = (Arc::clone(&cache), token.clone());
            tokio::spawn(async move { cache.authenticate(&token).await.unwrap().unwrap().user })
        })
        .collect();
    for lookup in lookups {
        assert_eq!(lookup.await.unwrap().name, "alice");
    }
    assert_eq!(cache.inner().calls(), 1);
    cache.authenticate(&token).await.unwrap();
    assert_eq!(cache.inner().calls(), 1, "answered from the cache");
}

#[tokio::test]
async fn unknown_tokens_are_cached_too_for_their_own_ttl() {
    let cache = Arc::new(
        CachedTokenStore::new(Arc::new(Counting::new(Slow::default()))).negative_ttl(Duration::from_millis(300)),
    );
    let unknown = Token::generate();
    for _ in 0..3 {
        assert!(cache.authenticate(&unknown).await.unwrap().is_none());
    }
    assert_eq!(cache.inner().calls(), 1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(cache.authenticate(&unknown).await.unwrap().is_none());
    assert_eq!(cache.inner().calls(), 2, "the negative entry expired");
}

#[tokio::test]
async fn errors_are_never_cached() {
    let cache = cache();
    let token = cache.inner().inner.inner.issue(User::named(1, "alice"));
    cache.inner().inner.failing.store(true, Ordering::SeqCst);
    for _ in 0..2 {
        assert!(matches!(cache.authenticate(&token).await, Err(StoreError::Unavailable(_))));
    }
    assert_eq!(cache.inner().calls(), 2);
    cache.inner().inner.failing.store(false, Ordering::SeqCst);
    assert!(cache.authenticate(&token).await.unwrap().is_some(), "recovers at once");
}

#[tokio::test]
async fn the_positive_ttl_bounds_staleness_and_invalidate_ends_it() {
    let cache = Arc::new(
        CachedTokenStore::new(Arc::new(Counting::new(Slow::default()))).positive_ttl(Duration::from_millis(300)),
    );
    let memory = &cache.inner().inner.inner;
    let token = memory.issue(User::named(1, "alice"));
    assert!(cache.authenticate(&token).await.unwrap().is_some());
    memory.revoke(&token);
    assert!(cache.authenticate(&token).await.unwrap().is_some(), "stale within the TTL: the documented bound");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(cache.authenticate(&token).await.unwrap().is_none(), "not after it");

    let other = memory.issue(User::named(2, "bob"));
    assert!(cache.authenticate(&other).await.unwrap().is_some());
    memory.revoke(&other);
    cache.invalidate(&other).await;
    assert!(cache.authenticate(&other).await.unwrap().is_none(), "invalidate drops the answer at once");
}

#[tokio::test]
async fn an_entry_never_outlives_its_token() {
    let cache = cache();
    let memory = &cache.inner().inner.inner;
    let token = memory.issue_with_ttl(User::named(1, "alice"), Duration::from_millis(300));
    assert!(cache.authenticate(&token).await.unwrap().is_some());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(cache.authenticate(&token).await.unwrap().is_none());
}

#[tokio::test]
async fn the_cache_is_bounded() {
    let cache = CachedTokenStore::new(MemoryTokenStore::<User>::new()).max_entries(100);
    for _ in 0..1_000 {
        cache.authenticate(&Token::generate()).await.unwrap();
    }
    // moka evicts in its maintenance tasks; give them a moment.
    for _ in 0..50 {
        if cache.entry_count() <= 100 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        cache.authenticate(&Token::generate()).await.unwrap();
    }
    assert!(cache.entry_count() <= 110, "{} entries", cache.entry_count());
}
