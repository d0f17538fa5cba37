//! [`MemoryTokenStore`]: tokens kept in process, as SHA-256 digests.

use std::collections::{HashMap, HashSet};
use std::sync::{PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use super::{Authenticated, ManageTokens, SlidingExpiry, StoreError, TokenStore, TokenUser, UserId};
use crate::store::tickets::TicketStore;
use crate::token::{DIGEST_LEN, Token};

/// An in-process token store, for tests, demos and single-node apps.
///
/// Keeps the SHA-256 digest of each token, never the token: a memory dump
/// does not yield usable credentials. Lookups are by digest (a hash map, not
/// a scan). Manage its tokens through [`ManageTokens`] (or an app's
/// [`Lifecycle`](crate::Lifecycle)).
///
/// ```
/// use std::time::Duration;
/// use ws_token_auth::{MemoryTokenStore, TokenStore};
/// use ws_token_auth::store::ManageTokens;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), ws_token_auth::StoreError> {
/// let store = MemoryTokenStore::new();
/// let token = store.issue(&"alice", None).await?;
/// assert_eq!(store.authenticate(&token).await?.unwrap().user, "alice");
///
/// let _short = store.issue(&"bob", Some(Duration::from_secs(60))).await?;
/// assert_eq!(store.revoke_user(&"alice").await?, 1);
/// assert!(store.authenticate(&token).await?.is_none());
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct MemoryTokenStore<U: TokenUser> {
    state: RwLock<State<U>>,
    sliding: Option<SlidingExpiry>,
}

#[derive(Debug)]
struct State<U: TokenUser> {
    tokens: HashMap<[u8; DIGEST_LEN], Record<U>>,
    locked: HashSet<U::Id>,
    tickets: HashMap<[u8; DIGEST_LEN], (Vec<u8>, SystemTime)>,
}

/// A stored token: its answer, and when it was issued (for the cap of a
/// sliding expiry).
#[derive(Debug)]
struct Record<U> {
    found: Authenticated<U>,
    issued_at: SystemTime,
}

impl<U: TokenUser> Default for MemoryTokenStore<U> {
    fn default() -> Self {
        let state = State { tokens: HashMap::new(), locked: HashSet::new(), tickets: HashMap::new() };
        Self { state: RwLock::new(state), sliding: None }
    }
}

impl<U: TokenUser> MemoryTokenStore<U> {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Gives the tokens this store issues a sliding expiry; see
    /// [`SlidingExpiry`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use ws_token_auth::{MemoryTokenStore, store::SlidingExpiry};
    ///
    /// let store = MemoryTokenStore::<String>::new()
    ///     .sliding(SlidingExpiry::new(Duration::from_secs(3_600), Duration::from_secs(86_400)));
    /// # let _ = store;
    /// ```
    #[must_use]
    pub fn sliding(mut self, sliding: SlidingExpiry) -> Self {
        self.sliding = Some(sliding);
        self
    }

    /// Stores a token made elsewhere (a known test token, one migrated from
    /// another system), replacing any entry it had.
    ///
    /// ```
    /// use ws_token_auth::{Authenticated, MemoryTokenStore, Token};
    ///
    /// let store = MemoryTokenStore::new();
    /// store.insert(&Token::new("known-test-token").unwrap(), Authenticated::new("alice"));
    /// assert_eq!(store.len(), 1);
    /// ```
    pub fn insert(&self, token: &Token, entry: Authenticated<U>) {
        self.write().tokens.insert(*token.digest(), Record { found: entry, issued_at: SystemTime::now() });
    }

    /// How many tokens the store holds (expired ones included until purged).
    ///
    /// ```
    /// let store = ws_token_auth::MemoryTokenStore::<String>::new();
    /// assert_eq!(store.len(), 0);
    /// ```
    #[must_use]
    pub fn len(&self) -> usize {
        self.read().tokens.len()
    }

    /// Whether the store holds no token.
    ///
    /// ```
    /// assert!(ws_token_auth::MemoryTokenStore::<String>::new().is_empty());
    /// ```
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The stored keys: the digests, for tests that check no token is kept in clear.
    ///
    /// ```
    /// use ws_token_auth::{Authenticated, MemoryTokenStore, Token};
    ///
    /// let store = MemoryTokenStore::new();
    /// let token = Token::generate();
    /// store.insert(&token, Authenticated::new("alice"));
    /// assert_eq!(store.digests(), vec![*token.digest()]);
    /// ```
    #[must_use]
    pub fn digests(&self) -> Vec<[u8; DIGEST_LEN]> {
        self.read().tokens.keys().copied().collect()
    }

    /// Removes the tokens whose entry matches `gone`; returns how many.
    fn remove_where(&self, mut gone: impl FnMut(&Authenticated<U>) -> bool) -> u64 {
        let tokens = &mut self.write().tokens;
        let before = tokens.len();
        tokens.retain(|_, record| !gone(&record.found));
        (before - tokens.len()) as u64
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State<U>> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State<U>> {
        // A panic elsewhere while holding the lock leaves the maps consistent
        // (every operation is a single map call), so poisoning is ignored.
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl<U: TokenUser> TokenStore for MemoryTokenStore<U> {
    type User = U;

    async fn authenticate(&self, token: &Token) -> Result<Option<Authenticated<U>>, StoreError> {
        let now = SystemTime::now();
        let extension = {
            let state = self.read();
            let Some(record) = state.tokens.get(token.digest()) else { return Ok(None) };
            let found = &record.found;
            if found.is_expired_at(now) || state.locked.contains(&found.user.id()) {
                return Ok(None);
            }
            match super::extension(self.sliding, now, record.issued_at, found.expires_at) {
                None => return Ok(Some(found.clone())),
                Some(at) => at,
            }
        };
        // Written only when worth it: a write lock per interval, not per use.
        let mut state = self.write();
        let Some(record) = state.tokens.get_mut(token.digest()) else { return Ok(None) };
        record.found.expires_at = record.found.expires_at.max(Some(extension));
        Ok(Some(record.found.clone()))
    }

    async fn is_locked_out(&self, token: &Token) -> Result<bool, StoreError> {
        let state = self.read();
        let Some(record) = state.tokens.get(token.digest()) else { return Ok(false) };
        let found = &record.found;
        Ok(!found.is_expired_at(SystemTime::now()) && state.locked.contains(&found.user.id()))
    }
}

#[async_trait]
impl<U: TokenUser> ManageTokens for MemoryTokenStore<U> {
    async fn issue(&self, user: &U, ttl: Option<Duration>) -> Result<Token, StoreError> {
        let token = Token::generate();
        let now = SystemTime::now();
        let expires_at = super::issued_expiry(self.sliding, now, ttl);
        self.insert(&token, Authenticated::new(user.clone()).with_expiry(expires_at));
        Ok(token)
    }

    async fn revoke(&self, token: &Token) -> Result<bool, StoreError> {
        Ok(self.write().tokens.remove(token.digest()).is_some())
    }

    async fn revoke_user(&self, id: &UserId<Self>) -> Result<u64, StoreError> {
        Ok(self.remove_where(|entry| entry.user.id() == *id))
    }

    async fn lock_out(&self, id: &UserId<Self>) -> Result<(), StoreError> {
        self.write().locked.insert(id.clone());
        Ok(())
    }

    async fn let_in(&self, id: &UserId<Self>) -> Result<(), StoreError> {
        self.write().locked.remove(id);
        Ok(())
    }

    async fn purge_expired(&self) -> Result<u64, StoreError> {
        let now = SystemTime::now();
        self.write().tickets.retain(|_, (_, at)| *at > now);
        Ok(self.remove_where(|entry| entry.is_expired_at(now)))
    }
}

/// Tickets in process: for one node (tickets issued by one process are
/// redeemed by that process only).
#[async_trait]
impl<U: TokenUser> TicketStore for MemoryTokenStore<U> {
    async fn put_ticket(
        &self,
        digest: &[u8; DIGEST_LEN],
        record: &[u8],
        expires_at: SystemTime,
    ) -> Result<(), StoreError> {
        let tickets = &mut self.write().tickets;
        if tickets.len() >= 1024 {
            let now = SystemTime::now();
            tickets.retain(|_, (_, at)| *at > now);
        }
        tickets.insert(*digest, (record.to_vec(), expires_at));
        Ok(())
    }

    async fn take_ticket(&self, digest: &[u8; DIGEST_LEN]) -> Result<Option<Vec<u8>>, StoreError> {
        let taken = self.write().tickets.remove(digest);
        Ok(taken.filter(|(_, at)| *at > SystemTime::now()).map(|(record, _)| record))
    }
}
