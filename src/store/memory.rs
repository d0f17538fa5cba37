//! [`MemoryTokenStore`]: tokens kept in process, as SHA-256 digests.

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use super::{Authenticated, StoreError, TokenStore};
use crate::token::{DIGEST_LEN, Token};

/// An in-process token store, for tests, demos and single-node apps.
///
/// Keeps the SHA-256 digest of each token, never the token: a memory dump
/// does not yield usable credentials. Lookups are by digest (a hash map, not
/// a scan).
///
/// ```
/// use std::time::Duration;
/// use ws_token_auth::{MemoryTokenStore, TokenStore};
///
/// # tokio_test();
/// # fn tokio_test() { tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = MemoryTokenStore::new();
/// let token = store.issue("alice");
/// assert_eq!(store.authenticate(&token).await.unwrap().unwrap().user, "alice");
///
/// let short = store.issue_with_ttl("bob", Duration::from_secs(60));
/// assert_eq!(store.revoke_user(&"alice"), 1);
/// assert!(store.authenticate(&token).await.unwrap().is_none());
/// # let _ = short;
/// # }) }
/// ```
#[derive(Debug)]
pub struct MemoryTokenStore<U> {
    tokens: RwLock<HashMap<[u8; DIGEST_LEN], Authenticated<U>>>,
}

impl<U> Default for MemoryTokenStore<U> {
    fn default() -> Self {
        Self { tokens: RwLock::new(HashMap::new()) }
    }
}

impl<U: Clone + Send + Sync + 'static> MemoryTokenStore<U> {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes a new random token for `user` (see [`Token::generate`]), valid until revoked.
    pub fn issue(&self, user: U) -> Token {
        let token = Token::generate();
        self.insert(&token, Authenticated::new(user));
        token
    }

    /// Makes a new random token for `user`, valid for `ttl`.
    pub fn issue_with_ttl(&self, user: U, ttl: Duration) -> Token {
        let token = Token::generate();
        self.insert(&token, Authenticated::new(user).with_expiry(SystemTime::now().checked_add(ttl)));
        token
    }

    /// Stores a token made elsewhere (a known test token, one migrated from
    /// another system), replacing any entry it had.
    pub fn insert(&self, token: &Token, entry: Authenticated<U>) {
        self.write().insert(*token.digest(), entry);
    }

    /// Revokes a token; returns whether it was known.
    pub fn revoke(&self, token: &Token) -> bool {
        self.write().remove(token.digest()).is_some()
    }

    /// Revokes every token whose user matches `predicate`; returns how many.
    pub fn revoke_where(&self, mut predicate: impl FnMut(&U) -> bool) -> usize {
        let mut tokens = self.write();
        let before = tokens.len();
        tokens.retain(|_, entry| !predicate(&entry.user));
        before - tokens.len()
    }

    /// Revokes every token of `user`; returns how many.
    pub fn revoke_user(&self, user: &U) -> usize
    where
        U: PartialEq,
    {
        self.revoke_where(|u| u == user)
    }

    /// Drops the tokens whose expiry has passed; returns how many.
    pub fn purge_expired(&self) -> usize {
        let now = SystemTime::now();
        let mut tokens = self.write();
        let before = tokens.len();
        tokens.retain(|_, entry| !entry.is_expired_at(now));
        before - tokens.len()
    }

    /// How many tokens the store holds (expired ones included until purged).
    #[must_use]
    pub fn len(&self) -> usize {
        self.tokens.read().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Whether the store holds no token.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The stored keys: the digests, for tests that check no token is kept in clear.
    #[must_use]
    pub fn digests(&self) -> Vec<[u8; DIGEST_LEN]> {
        self.tokens.read().unwrap_or_else(PoisonError::into_inner).keys().copied().collect()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<[u8; DIGEST_LEN], Authenticated<U>>> {
        // A panic elsewhere while holding the lock leaves the map consistent
        // (every operation is a single map call), so poisoning is ignored.
        self.tokens.write().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl<U: Clone + Send + Sync + 'static> TokenStore for MemoryTokenStore<U> {
    type User = U;

    async fn authenticate(&self, token: &Token) -> Result<Option<Authenticated<U>>, StoreError> {
        let tokens = self.tokens.read().unwrap_or_else(PoisonError::into_inner);
        Ok(tokens.get(token.digest()).filter(|entry| !entry.is_expired_at(SystemTime::now())).cloned())
    }
}
