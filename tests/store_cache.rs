//! `CachedTokenStore` (feature `cache`): request coalescing, negative entries,
//! no cached errors, TTLs, size bound, and consistency: every change made
//! through it or heard from another node takes effect at once, also against
//! lookups in flight.

#[macro_use]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use common::{Counting, User, issue};
use ws_token_auth::live::AccessEvent;
use ws_token_auth::store::CachedTokenStore;
use ws_token_auth::store::ManageTokens;
use ws_token_auth::store::StoreCache;
use ws_token_auth::{Authenticated, MemoryTokenStore, StoreError, Token, TokenStore};

/// A store that reads at once and answers 100 ms later (so that concurrent
/// lookups overlap, and an answer can be overtaken by a change), and can be
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
        let answer = self.inner.authenticate(token).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        if self.failing.load(Ordering::SeqCst) {
            return Err(StoreError::unavailable(std::io::Error::other("database down")));
        }
        answer
    }
}

forward_manage_tokens!(impl [] for Slow => inner);

fn cache() -> Arc<CachedTokenStore<Arc<Counting<Slow>>>> {
    Arc::new(CachedTokenStore::new(Arc::new(Counting::new(Slow::default()))))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_lookups_of_one_token_costs_one_store_call() {
    let cache = cache();
    let token = issue(&cache.inner().inner.inner, &User::named(1, "alice")).await;
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
    let token = issue(&cache.inner().inner.inner, &User::named(1, "alice")).await;
    cache.inner().inner.failing.store(true, Ordering::SeqCst);
    for _ in 0..2 {
        assert!(matches!(cache.authenticate(&token).await, Err(StoreError::Unavailable(_))));
    }
    assert_eq!(cache.inner().calls(), 2);
    cache.inner().inner.failing.store(false, Ordering::SeqCst);
    assert!(cache.authenticate(&token).await.unwrap().is_some(), "recovers at once");
}

#[tokio::test]
async fn the_positive_ttl_bounds_staleness_behind_its_back_and_a_revoke_through_it_ends_it() {
    let cache = Arc::new(
        CachedTokenStore::new(Arc::new(Counting::new(Slow::default()))).positive_ttl(Duration::from_millis(300)),
    );
    let memory = &cache.inner().inner.inner;
    let token = issue(memory, &User::named(1, "alice")).await;
    assert!(cache.authenticate(&token).await.unwrap().is_some());
    memory.revoke(&token).await.unwrap();
    assert!(cache.authenticate(&token).await.unwrap().is_some(), "stale within the TTL: the documented bound");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(cache.authenticate(&token).await.unwrap().is_none(), "not after it");

    let other = issue(memory, &User::named(2, "bob")).await;
    assert!(cache.authenticate(&other).await.unwrap().is_some());
    assert!(cache.revoke(&other).await.unwrap());
    assert!(cache.authenticate(&other).await.unwrap().is_none(), "a revoke through the cache is at once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lookup_in_flight_during_a_revoke_never_puts_the_token_back() {
    let cache = cache();
    let token = issue(&cache.inner().inner.inner, &User::named(1, "alice")).await;
    // The lookup reads the store before the revoke, and ends (and fills the
    // cache) 100 ms later, after it.
    let in_flight = {
        let (cache, token) = (Arc::clone(&cache), token.clone());
        tokio::spawn(async move { cache.authenticate(&token).await.unwrap() })
    };
    tokio::time::sleep(Duration::from_millis(30)).await;
    cache.revoke(&token).await.unwrap();
    let calls = cache.inner().calls();
    assert!(in_flight.await.unwrap().is_none(), "an answer overtaken by the revoke is not returned");
    assert!(cache.inner().calls() > calls, "the store was asked again");
    for _ in 0..3 {
        assert!(cache.authenticate(&token).await.unwrap().is_none(), "the stale answer was not trusted");
    }
}

#[tokio::test]
async fn lock_out_and_let_in_take_effect_at_once_whatever_was_cached() {
    let cache = cache();
    let alice = User::named(1, "alice");
    let (first, second) = (issue(&*cache, &alice).await, issue(&*cache, &alice).await);
    let bob = issue(&*cache, &User::named(2, "bob")).await;
    for token in [&first, &second, &bob] {
        assert!(cache.authenticate(token).await.unwrap().is_some());
    }
    cache.lock_out(&1).await.unwrap();
    assert!(cache.authenticate(&first).await.unwrap().is_none(), "the cached acceptance was not trusted");
    assert!(cache.authenticate(&second).await.unwrap().is_none());
    assert!(cache.authenticate(&bob).await.unwrap().is_some(), "another user keeps their cached answer");
    let calls = cache.inner().calls();
    assert!(cache.authenticate(&first).await.unwrap().is_none());
    assert_eq!(cache.inner().calls(), calls, "the refusal itself is cached");

    cache.let_in_check(&first).await;
    assert!(cache.authenticate(&second).await.unwrap().is_some());
}

trait LetIn {
    async fn let_in_check(&self, token: &Token);
}

impl LetIn for Arc<CachedTokenStore<Arc<Counting<Slow>>>> {
    async fn let_in_check(&self, token: &Token) {
        self.let_in(&1).await.unwrap();
        assert!(self.authenticate(token).await.unwrap().is_some(), "no cached refusal outlives the unlock");
    }
}

#[tokio::test]
async fn changes_heard_from_other_nodes_take_effect_at_once() {
    let cache = cache();
    let memory = &cache.inner().inner.inner;
    let (alice, bob) = (User::named(1, "alice"), User::named(2, "bob"));
    let (a, b) = (issue(memory, &alice).await, issue(memory, &bob).await);
    assert!(cache.authenticate(&a).await.unwrap().is_some());
    assert!(cache.authenticate(&b).await.unwrap().is_some());

    // Another node revoked a's token and locked bob out in the shared store.
    memory.revoke(&a).await.unwrap();
    memory.lock_out(&2).await.unwrap();
    cache.forget(&AccessEvent::token_revoked(a.id())).await;
    cache.forget(&AccessEvent::user_locked_out("2")).await;
    assert!(cache.authenticate(&a).await.unwrap().is_none());
    assert!(cache.authenticate(&b).await.unwrap().is_none());

    // And let bob back in: the refusal cached meanwhile is dropped.
    memory.let_in(&2).await.unwrap();
    cache.forget(&AccessEvent::user_restored("2")).await;
    assert!(cache.authenticate(&b).await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forget_all_drops_every_answer_also_one_in_flight() {
    let cache = cache();
    let memory = &cache.inner().inner.inner;
    let (alice, bob) = (User::named(1, "alice"), User::named(2, "bob"));
    let (a, b) = (issue(memory, &alice).await, issue(memory, &bob).await);
    let unknown = Token::generate();
    assert!(cache.authenticate(&a).await.unwrap().is_some());
    assert!(cache.authenticate(&unknown).await.unwrap().is_none());

    // Behind the cache's back, with no event naming what changed (a
    // password change in Django's tables says only "revalidate").
    memory.revoke(&a).await.unwrap();
    let calls = cache.inner().calls();
    assert!(cache.authenticate(&a).await.unwrap().is_some(), "cached, as documented");
    assert_eq!(cache.inner().calls(), calls);

    // A lookup of b reads the store now and ends after the forget-all, by
    // which time b is revoked too.
    let in_flight = {
        let (cache, b) = (Arc::clone(&cache), b.clone());
        tokio::spawn(async move { cache.authenticate(&b).await.unwrap() })
    };
    tokio::time::sleep(Duration::from_millis(30)).await;
    memory.revoke(&b).await.unwrap();
    cache.forget_all().await;
    assert!(in_flight.await.unwrap().is_none(), "an answer asked before the forget-all is not returned");
    assert!(cache.authenticate(&a).await.unwrap().is_none(), "the stale valid answer is gone");
    assert!(cache.authenticate(&b).await.unwrap().is_none());
    assert!(cache.inner().calls() > calls, "the store was asked again");

    // And from here on the cache caches again.
    let c = issue(memory, &alice).await;
    assert!(cache.authenticate(&c).await.unwrap().is_some());
    let calls = cache.inner().calls();
    assert!(cache.authenticate(&c).await.unwrap().is_some());
    assert_eq!(cache.inner().calls(), calls, "answered from the cache");
}

#[tokio::test]
async fn revalidation_asks_the_store_and_a_revoked_token_stays_refused() {
    let cache = cache();
    let memory = &cache.inner().inner.inner;
    let token = issue(memory, &User::named(1, "alice")).await;
    assert!(cache.authenticate(&token).await.unwrap().is_some());
    memory.revoke(&token).await.unwrap(); // behind the cache's back
    assert!(cache.authenticate(&token).await.unwrap().is_some(), "cached, as documented");
    assert!(cache.revalidate(&token).await.unwrap().is_none(), "revalidation bypasses the cache");
    assert!(cache.authenticate(&token).await.unwrap().is_none(), "and the cache learned it");
}

#[tokio::test]
async fn an_entry_never_outlives_its_token() {
    let cache = cache();
    let memory = &cache.inner().inner.inner;
    let token = memory.issue(&User::named(1, "alice"), Some(Duration::from_millis(300))).await.unwrap();
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
