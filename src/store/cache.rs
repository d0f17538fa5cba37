//! [`CachedTokenStore`]: a cache in front of any store (feature `cache`).
//!
//! Answers from memory what the inner store said a moment ago:
//!
//! - valid tokens for up to `positive_ttl` (default 30 s, and never past the
//!   token's own expiry), unknown ones for up to `negative_ttl` (default 5 s):
//!   these TTLs (and a lifecycle's periodic revalidation, which empties the
//!   cache, whichever comes first) bound how stale an answer may be for a
//!   change made behind the cache's back (straight in the database, by a node
//!   with no bus);
//! - every change made through it ([`ManageTokens`]) or heard from another
//!   node ([`StoreCache::forget`]) takes effect at once: a revoked token, a
//!   revoked or locked-out user is never answered from the cache again, and a
//!   user let back in is never refused from it, also when a lookup that began
//!   before the change ends after it (each answer remembers when its lookup
//!   began, and is trusted only if that was after every change concerning it);
//! - when anything may have changed unseen (the bus lost its connection, or
//!   the source of truth asks every node to revalidate:
//!   [`StoreCache::forget_all`]), no answer asked before is trusted;
//! - errors are never cached: the next request asks the store again;
//! - concurrent lookups of one token share one call to the inner store
//!   (request coalescing): a burst of handshakes with one token costs one
//!   query;
//! - at most `max_entries` entries (default 100,000), evicted by moka's
//!   TinyLFU policy.
//!
//! ```
//! use std::time::Duration;
//! use ws_token_auth::{Authenticator, MemoryTokenStore, store::CachedTokenStore};
//!
//! let store = CachedTokenStore::new(MemoryTokenStore::<String>::new())
//!     .positive_ttl(Duration::from_secs(10))
//!     .negative_ttl(Duration::from_secs(2));
//! let auth = Authenticator::new(store);
//! # let _ = auth;
//! ```

use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use moka::Expiry;
use moka::future::Cache;

use super::{Authenticated, ManageTokens, StoreCache, StoreError, TokenStore, TokenUser, UserId};
use crate::access::{AccessEvent, Recent};
use crate::store::tickets::TicketStore;
use crate::token::{DIGEST_LEN, Token, TokenId};

/// Keys are token ids; a value is the token's full digest (checked on every
/// hit, so two tokens that share an id never share an answer), the inner
/// store's answer, and when the lookup that got it began. Keyed by id so that
/// an event heard from another node, which names only the id, can drop it.
#[derive(Clone)]
struct Entry<U> {
    digest: [u8; DIGEST_LEN],
    answer: Option<Authenticated<U>>,
    asked_at: Instant,
}

/// The changes of the last while, by when they were made here: an answer
/// whose lookup began before a change concerning it is not trusted.
#[derive(Debug, Default)]
struct Changes {
    /// Tokens revoked, users revoked or locked out.
    gone: Recent<()>,
    /// When a user was last let back in: refusals asked before are not trusted.
    restored: Option<Instant>,
    /// When the cache last heard that anything may have changed (the bus's
    /// gap, a `revalidate` from the source of truth): no answer asked
    /// before is trusted.
    everything: Option<Instant>,
}

impl Changes {
    /// No change concerning a single token or user to check.
    fn is_empty(&self) -> bool {
        self.gone.is_empty() && self.restored.is_none()
    }

    fn everything(&mut self, keep: Duration) {
        self.everything = Some(self.gone.forget_old(keep));
        self.forget_old_marks(keep);
    }

    /// Whether `entry` was asked before the last forget-all.
    fn forgot_all_since<U>(&self, entry: &Entry<U>) -> bool {
        self.everything.is_some_and(|at| at >= entry.asked_at)
    }

    fn token(&mut self, id: TokenId, keep: Duration) {
        self.gone.token(id, (), keep);
        self.forget_old_marks(keep);
    }

    fn user(&mut self, user: &str, keep: Duration) {
        self.gone.user(user, (), keep);
        self.forget_old_marks(keep);
    }

    fn restore(&mut self, keep: Duration) {
        self.restored = Some(self.gone.forget_old(keep));
    }

    /// A let-in (or a forget-all) older than `keep` concerns no answer
    /// still cached.
    fn forget_old_marks(&mut self, keep: Duration) {
        if self.restored.is_some_and(|at| at.elapsed() > keep) {
            self.restored = None;
        }
        if self.everything.is_some_and(|at| at.elapsed() > keep) {
            self.everything = None;
        }
    }

    fn trusts<U: TokenUser>(&self, id: TokenId, entry: &Entry<U>) -> bool {
        let after = |at: Option<Instant>| at.is_some_and(|at| at >= entry.asked_at);
        match &entry.answer {
            Some(found) => {
                !after(self.gone.of_token(&id).map(|(at, ())| at))
                    && (self.gone.no_user()
                        || !after(self.gone.of_user(&found.user.id().to_string()).map(|(at, ())| at)))
            }
            None => !after(self.restored),
        }
    }
}

/// A caching decorator over a [`TokenStore`]. See the [module docs](self).
pub struct CachedTokenStore<S: TokenStore> {
    inner: S,
    cache: Cache<TokenId, Entry<S::User>>,
    changes: Arc<RwLock<Changes>>,
    positive_ttl: Duration,
    negative_ttl: Duration,
    max_entries: u64,
}

impl<S: TokenStore> std::fmt::Debug for CachedTokenStore<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedTokenStore")
            .field("entries", &self.cache.entry_count())
            .field("positive_ttl", &self.positive_ttl)
            .field("negative_ttl", &self.negative_ttl)
            .finish_non_exhaustive()
    }
}

/// Each entry lives for its own TTL: positive or negative, and a valid token's
/// entry at most half the time its token has left, so that the token's uses
/// reach the store before it expires (a store with a sliding expiry extends it
/// then) and the cache never answers for a token past its expiry.
struct PerEntry {
    positive: Duration,
    negative: Duration,
}

impl<U> Expiry<TokenId, Entry<U>> for PerEntry {
    fn expire_after_create(&self, _key: &TokenId, value: &Entry<U>, _now: Instant) -> Option<Duration> {
        Some(match &value.answer {
            None => self.negative,
            Some(found) => match found.expires_at {
                Some(at) => (at.duration_since(SystemTime::now()).unwrap_or_default() / 2).min(self.positive),
                None => self.positive,
            },
        })
    }
}

/// How long past the TTLs a change is remembered: longer than a lookup of
/// the inner store can take (the layer's store timeout is 5 s by default).
const LOOKUP_MARGIN: Duration = Duration::from_secs(60);

impl<S: TokenStore> CachedTokenStore<S> {
    /// A cache over `inner` with the default TTLs and size.
    ///
    /// ```
    /// # use ws_token_auth::{MemoryTokenStore, store::CachedTokenStore};
    /// let store = CachedTokenStore::new(MemoryTokenStore::<String>::new());
    /// # let _ = store;
    /// ```
    pub fn new(inner: S) -> Self {
        Self::build(inner, Duration::from_secs(30), Duration::from_secs(5), 100_000)
    }

    fn build(inner: S, positive_ttl: Duration, negative_ttl: Duration, max_entries: u64) -> Self {
        let cache = Cache::builder()
            .max_capacity(max_entries)
            .expire_after(PerEntry { positive: positive_ttl, negative: negative_ttl })
            .build();
        Self { inner, cache, changes: Arc::default(), positive_ttl, negative_ttl, max_entries }
    }

    /// Sets how long a valid token's answer is kept (default 30 s): how long a
    /// token revoked behind the cache's back may still be accepted here.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use ws_token_auth::{MemoryTokenStore, store::CachedTokenStore};
    /// let store = CachedTokenStore::new(MemoryTokenStore::<String>::new()).positive_ttl(Duration::from_secs(5));
    /// # let _ = store;
    /// ```
    #[must_use]
    pub fn positive_ttl(self, ttl: Duration) -> Self {
        Self::build(self.inner, ttl, self.negative_ttl, self.max_entries)
    }

    /// Sets how long an unknown token's answer is kept (default 5 s): how long
    /// a token issued behind the cache's back may still be refused here.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use ws_token_auth::{MemoryTokenStore, store::CachedTokenStore};
    /// let store = CachedTokenStore::new(MemoryTokenStore::<String>::new()).negative_ttl(Duration::from_secs(1));
    /// # let _ = store;
    /// ```
    #[must_use]
    pub fn negative_ttl(self, ttl: Duration) -> Self {
        Self::build(self.inner, self.positive_ttl, ttl, self.max_entries)
    }

    /// Sets the most entries kept (default 100,000).
    ///
    /// ```
    /// # use ws_token_auth::{MemoryTokenStore, store::CachedTokenStore};
    /// let store = CachedTokenStore::new(MemoryTokenStore::<String>::new()).max_entries(1_000);
    /// # let _ = store;
    /// ```
    #[must_use]
    pub fn max_entries(self, max: u64) -> Self {
        Self::build(self.inner, self.positive_ttl, self.negative_ttl, max)
    }

    /// The inner store.
    ///
    /// ```
    /// # use ws_token_auth::{MemoryTokenStore, store::CachedTokenStore};
    /// let store = CachedTokenStore::new(MemoryTokenStore::<String>::new());
    /// assert!(store.inner().is_empty());
    /// ```
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Forgets every answer (the changes it knows of stay in force).
    ///
    /// ```
    /// # use ws_token_auth::{MemoryTokenStore, store::CachedTokenStore};
    /// CachedTokenStore::new(MemoryTokenStore::<String>::new()).invalidate_all();
    /// ```
    pub fn invalidate_all(&self) {
        self.cache.invalidate_all();
    }

    /// Applies pending evictions and expirations now (moka applies them
    /// lazily, as lookups come): for tests and for exact metrics.
    ///
    /// ```
    /// # use ws_token_auth::{MemoryTokenStore, store::CachedTokenStore};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let store = CachedTokenStore::new(MemoryTokenStore::<String>::new());
    /// store.run_pending_tasks().await;
    /// assert_eq!(store.entry_count(), 0);
    /// # }
    /// ```
    pub async fn run_pending_tasks(&self) {
        self.cache.run_pending_tasks().await;
    }

    /// How many answers are cached (approximately: moka counts lazily).
    ///
    /// ```
    /// # use ws_token_auth::{MemoryTokenStore, store::CachedTokenStore};
    /// assert_eq!(CachedTokenStore::new(MemoryTokenStore::<String>::new()).entry_count(), 0);
    /// ```
    pub fn entry_count(&self) -> u64 {
        self.cache.entry_count()
    }

    fn keep(&self) -> Duration {
        self.positive_ttl.max(self.negative_ttl) + LOOKUP_MARGIN
    }

    fn changes(&self) -> std::sync::RwLockReadGuard<'_, Changes> {
        self.changes.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Changes> {
        self.changes.write().unwrap_or_else(PoisonError::into_inner)
    }

    async fn token_gone(&self, id: TokenId) {
        let keep = self.keep();
        self.write().token(id, keep);
        self.cache.invalidate(&id).await;
    }

    fn user_gone(&self, user: &str) {
        let keep = self.keep();
        self.write().user(user, keep);
    }

    fn user_restored(&self) {
        let keep = self.keep();
        self.write().restore(keep);
    }

    fn everything_changed(&self) {
        let keep = self.keep();
        self.write().everything(keep);
        self.cache.invalidate_all();
    }

    fn trusted(&self, id: TokenId, entry: &Entry<S::User>) -> bool {
        // A forget-all (which the periodic revalidation makes) costs a hit
        // one comparison; the per-token and per-user checks only run when
        // such changes are known.
        let changes = self.changes();
        !changes.forgot_all_since(entry) && (changes.is_empty() || changes.trusts(id, entry))
    }
}

/// A store error shared by the lookups that waited for the same call.
#[derive(Debug)]
struct Shared(Arc<StoreError>);

impl std::fmt::Display for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Shared {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&*self.0)
    }
}

fn unshare(error: Arc<StoreError>) -> StoreError {
    match &*error {
        StoreError::Timeout => StoreError::Timeout,
        StoreError::Unavailable(_) => StoreError::Unavailable(Box::new(Shared(error))),
        _ => StoreError::Backend(Box::new(Shared(error))),
    }
}

/// Tickets are the store's behind: each is used once, so nothing is cached.
#[async_trait]
impl<S: TokenStore + TicketStore> TicketStore for CachedTokenStore<S> {
    async fn put_ticket(
        &self,
        digest: &[u8; DIGEST_LEN],
        record: &[u8],
        expires_at: SystemTime,
    ) -> Result<(), StoreError> {
        self.inner.put_ticket(digest, record, expires_at).await
    }

    async fn take_ticket(&self, digest: &[u8; DIGEST_LEN]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.take_ticket(digest).await
    }
}

#[async_trait]
impl<S: TokenStore> TokenStore for CachedTokenStore<S> {
    type User = S::User;

    async fn authenticate(&self, token: &Token) -> Result<Option<Authenticated<S::User>>, StoreError> {
        let id = token.id();
        // Twice at most: a stale answer is dropped and asked again; if the
        // fresh ask joined a lookup that began before the change, the store
        // is asked directly.
        for _ in 0..2 {
            let lookup = async {
                let asked_at = Instant::now();
                let answer = self.inner.authenticate(token).await?;
                Ok::<_, StoreError>(Entry { digest: *token.digest(), answer, asked_at })
            };
            let entry = self.cache.try_get_with(id, lookup).await.map_err(unshare)?;
            if entry.digest != *token.digest() {
                // Another token with the same id (a 64-bit collision): not cached.
                break;
            }
            if self.trusted(id, &entry) {
                return Ok(entry.answer.filter(|found| !found.is_expired_at(SystemTime::now())));
            }
            self.cache.invalidate(&id).await;
        }
        self.inner.authenticate(token).await
    }

    async fn is_locked_out(&self, token: &Token) -> Result<bool, StoreError> {
        self.inner.is_locked_out(token).await
    }

    fn cache(&self) -> Option<&dyn StoreCache<S::User>> {
        Some(self)
    }
}

#[async_trait]
impl<S: TokenStore> StoreCache<S::User> for CachedTokenStore<S> {
    async fn revalidate(&self, token: &Token) -> Result<Option<Authenticated<S::User>>, StoreError> {
        let asked_at = Instant::now();
        let answer = super::revalidate(&self.inner, token).await?;
        let answer = answer.filter(|found| !found.is_expired_at(SystemTime::now()));
        if answer.is_none() {
            // Whatever the cache held for it, lookups that began before now
            // are not trusted.
            let keep = self.keep();
            self.write().token(token.id(), keep);
        }
        let entry = Entry { digest: *token.digest(), answer: answer.clone(), asked_at };
        self.cache.insert(token.id(), entry).await;
        Ok(answer)
    }

    async fn forget(&self, event: &AccessEvent) {
        match event {
            AccessEvent::TokenRevoked { id, .. } => self.token_gone(*id).await,
            AccessEvent::UserRevoked { user, .. } => self.user_gone(user),
            AccessEvent::UserRestored { .. } => self.user_restored(),
            // Not gone, but its answers are to be asked again.
            AccessEvent::UserChanged { user } => self.user_gone(user),
        }
        if let Some(inner) = self.inner.cache() {
            inner.forget(event).await;
        }
    }

    async fn forget_all(&self) {
        self.everything_changed();
        if let Some(inner) = self.inner.cache() {
            inner.forget_all().await;
        }
    }
}

#[async_trait]
impl<S: ManageTokens> ManageTokens for CachedTokenStore<S> {
    async fn issue(&self, user: &S::User, ttl: Option<Duration>) -> Result<Token, StoreError> {
        self.inner.issue(user, ttl).await
    }

    async fn revoke(&self, token: &Token) -> Result<bool, StoreError> {
        // The store first: a lookup between the two would otherwise put the
        // token back. Answers asked before this point are distrusted anyway.
        let revoked = self.inner.revoke(token).await?;
        self.token_gone(token.id()).await;
        Ok(revoked)
    }

    async fn revoke_user(&self, id: &UserId<Self>) -> Result<u64, StoreError> {
        let revoked = self.inner.revoke_user(id).await?;
        self.user_gone(&id.to_string());
        Ok(revoked)
    }

    async fn lock_out(&self, id: &UserId<Self>) -> Result<(), StoreError> {
        self.inner.lock_out(id).await?;
        self.user_gone(&id.to_string());
        Ok(())
    }

    async fn let_in(&self, id: &UserId<Self>) -> Result<(), StoreError> {
        self.inner.let_in(id).await?;
        self.user_restored();
        Ok(())
    }

    async fn purge_expired(&self) -> Result<u64, StoreError> {
        self.inner.purge_expired().await
    }
}
