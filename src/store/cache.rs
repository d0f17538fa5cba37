//! [`CachedTokenStore`]: a cache in front of any store (feature `cache`).
//!
//! Answers from memory what the inner store said a moment ago:
//!
//! - valid tokens for up to `positive_ttl` (default 30 s, and never past the
//!   token's own expiry), unknown ones for up to `negative_ttl` (default 5 s):
//!   these TTLs bound how stale an answer may be, so keep them short, and call
//!   [`invalidate`](CachedTokenStore::invalidate) on logout;
//! - errors are never cached: the next request asks the store again;
//! - concurrent lookups of one token share one call to the inner store
//!   (request coalescing): a burst of handshakes with one token costs one
//!   query;
//! - at most `max_entries` entries (default 100,000), evicted by moka's
//!   TinyLFU policy.
//!
//! ```
//! use std::time::Duration;
//! use ws_token_auth::{MemoryTokenStore, TokenAuthLayer, store::CachedTokenStore};
//!
//! let store = CachedTokenStore::new(MemoryTokenStore::<String>::new())
//!     .positive_ttl(Duration::from_secs(10))
//!     .negative_ttl(Duration::from_secs(2));
//! let layer = TokenAuthLayer::new(store);
//! # let _ = layer;
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use moka::Expiry;
use moka::future::Cache;

use super::{Authenticated, StoreError, TokenStore};
use crate::token::{DIGEST_LEN, Token, TokenId};

/// Keys are token ids; a value is the token's full digest (checked on every
/// hit, so two tokens that share an id never share an answer) and the inner
/// store's answer. Keyed by id so that a revocation heard from another node,
/// which names only the id, can drop the entry.
#[derive(Clone)]
struct Entry<U> {
    digest: [u8; DIGEST_LEN],
    answer: Option<Authenticated<U>>,
}

/// A caching decorator over a [`TokenStore`]. See the [module docs](self).
pub struct CachedTokenStore<S: TokenStore> {
    inner: S,
    cache: Cache<TokenId, Entry<S::User>>,
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
/// entry never past the token's expiry.
struct PerEntry {
    positive: Duration,
    negative: Duration,
}

impl<U> Expiry<TokenId, Entry<U>> for PerEntry {
    fn expire_after_create(&self, _key: &TokenId, value: &Entry<U>, _now: Instant) -> Option<Duration> {
        Some(match &value.answer {
            None => self.negative,
            Some(found) => match found.expires_at {
                Some(at) => at.duration_since(SystemTime::now()).unwrap_or_default().min(self.positive),
                None => self.positive,
            },
        })
    }
}

impl<S: TokenStore> CachedTokenStore<S> {
    /// A cache over `inner` with the default TTLs and size.
    pub fn new(inner: S) -> Self {
        Self::build(inner, Duration::from_secs(30), Duration::from_secs(5), 100_000)
    }

    fn build(inner: S, positive_ttl: Duration, negative_ttl: Duration, max_entries: u64) -> Self {
        let cache = Cache::builder()
            .max_capacity(max_entries)
            .expire_after(PerEntry { positive: positive_ttl, negative: negative_ttl })
            .build();
        Self { inner, cache, positive_ttl, negative_ttl, max_entries }
    }

    /// Sets how long a valid token's answer is kept (default 30 s): how long a
    /// token revoked elsewhere may still be accepted by this node.
    #[must_use]
    pub fn positive_ttl(self, ttl: Duration) -> Self {
        Self::build(self.inner, ttl, self.negative_ttl, self.max_entries)
    }

    /// Sets how long an unknown token's answer is kept (default 5 s): how long
    /// a token issued elsewhere may still be refused by this node.
    #[must_use]
    pub fn negative_ttl(self, ttl: Duration) -> Self {
        Self::build(self.inner, self.positive_ttl, ttl, self.max_entries)
    }

    /// Sets the most entries kept (default 100,000).
    #[must_use]
    pub fn max_entries(self, max: u64) -> Self {
        Self::build(self.inner, self.positive_ttl, self.negative_ttl, max)
    }

    /// The inner store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Forgets the answer for `token` (call it on logout, with the revoke).
    pub async fn invalidate(&self, token: &Token) {
        self.cache.invalidate(&token.id()).await;
    }

    /// Forgets the answer for the token with id `id`: for revocations heard
    /// from other nodes, which carry only the id.
    pub async fn invalidate_id(&self, id: TokenId) {
        self.cache.invalidate(&id).await;
    }

    /// Forgets every answer.
    pub fn invalidate_all(&self) {
        self.cache.invalidate_all();
    }

    /// Applies pending evictions and expirations now (moka applies them
    /// lazily, as lookups come): for tests and for exact metrics.
    pub async fn run_pending_tasks(&self) {
        self.cache.run_pending_tasks().await;
    }

    /// How many answers are cached (approximately: moka counts lazily).
    pub fn entry_count(&self) -> u64 {
        self.cache.entry_count()
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

#[async_trait]
impl<S: TokenStore> TokenStore for CachedTokenStore<S> {
    type User = S::User;

    async fn authenticate(&self, token: &Token) -> Result<Option<Authenticated<S::User>>, StoreError> {
        let lookup = async {
            let answer = self.inner.authenticate(token).await?;
            Ok::<_, StoreError>(Entry { digest: *token.digest(), answer })
        };
        let entry = self.cache.try_get_with(token.id(), lookup).await.map_err(|error| match &*error {
            StoreError::Timeout => StoreError::Timeout,
            StoreError::Unavailable(_) => StoreError::Unavailable(Box::new(Shared(error))),
            _ => StoreError::Backend(Box::new(Shared(error))),
        })?;
        let answer = if entry.digest == *token.digest() {
            entry.answer
        } else {
            // Another token with the same id (a 64-bit collision): not cached.
            self.inner.authenticate(token).await?
        };
        Ok(answer.filter(|found| !found.is_expired_at(SystemTime::now())))
    }
}
