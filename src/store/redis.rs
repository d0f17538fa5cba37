//! [`RedisTokenStore`]: tokens in Redis (feature `redis`).
//!
//! Each token is a key holding its user as JSON, named by the token's SHA-256
//! digest (the token itself is never stored), with the token's lifetime as the
//! key's TTL. A set per user lists the user's token digests, for
//! [`ManageTokens::revoke_user`], and a key per locked-out user marks it. The store keeps one
//! multiplexed connection and replaces it by itself when it breaks (also when
//! a lookup was abandoned by the layer's store timeout); connecting gives up
//! after 2 s and commands after 2 s, so a Redis outage is a quick 503, never a
//! hang, and the store recovers when Redis returns.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use ws_token_auth::{TokenUser, store::RedisTokenStore};
//! use ws_token_auth::store::ManageTokens;
//!
//! #[derive(Clone, serde::Serialize, serde::Deserialize)]
//! struct User { id: i64, name: String }
//!
//! impl TokenUser for User {
//!     type Id = i64;
//!     fn id(&self) -> i64 { self.id }
//! }
//!
//! let store = RedisTokenStore::<User>::connect("redis://127.0.0.1:6379", "myapp").await?;
//! let alice = User { id: 1, name: "alice".into() };
//! let token = store.issue(&alice, Some(Duration::from_secs(86_400))).await?;
//! # let _ = token;
//! # Ok(()) }
//! ```

use std::marker::PhantomData;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use std::sync::Arc;

use ::redis::{AsyncCommands, Client, ExistenceCheck, RedisError, SetExpiry, SetOptions};
use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{Authenticated, ManageTokens, SlidingExpiry, StoreError, TokenStore, TokenUser, UserId};
use crate::redis_conn::{Reconnecting, is_connection_error};
use crate::store::tickets::TicketStore;
use crate::token::{DIGEST_LEN, Token, hex};

/// A [`TokenStore`] over Redis. See the [module docs](self).
pub struct RedisTokenStore<U> {
    conn: Arc<Reconnecting>,
    prefix: String,
    sliding: Option<SlidingExpiry>,
    _user: PhantomData<fn() -> U>,
}

impl<U> Clone for RedisTokenStore<U> {
    fn clone(&self) -> Self {
        Self { conn: Arc::clone(&self.conn), prefix: self.prefix.clone(), sliding: self.sliding, _user: PhantomData }
    }
}

impl<U> std::fmt::Debug for RedisTokenStore<U> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTokenStore").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

#[derive(Serialize, Deserialize)]
struct Entry<U> {
    user: U,
    user_key: String,
    /// Unix milliseconds.
    expires_at: Option<u64>,
    /// Unix milliseconds; absent in entries written before 0.2 (then the
    /// cap of a sliding expiry counts from the first extension).
    #[serde(default)]
    issued_at: Option<u64>,
}

impl<U> RedisTokenStore<U>
where
    U: Serialize + DeserializeOwned + TokenUser,
{
    /// Connects to Redis at `url`; every key starts with `prefix:`.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), ws_token_auth::StoreError> {
    /// let store = ws_token_auth::store::RedisTokenStore::<String>::connect("redis://127.0.0.1", "app").await?;
    /// # let _ = store; Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`StoreError`] if the URL is invalid or Redis does not answer within 2 s.
    pub async fn connect(url: &str, prefix: impl Into<String>) -> Result<Self, StoreError> {
        let store = Self::lazy(url, prefix)?;
        store.conn.connection().await.map_err(store_error)?;
        Ok(store)
    }

    /// A store that connects on its first command: it can be made while Redis
    /// is down.
    ///
    /// ```
    /// let store = ws_token_auth::store::RedisTokenStore::<String>::lazy("redis://127.0.0.1:1", "app").unwrap();
    /// # let _ = store;
    /// ```
    ///
    /// # Errors
    /// [`StoreError`] if the URL is invalid.
    pub fn lazy(url: &str, prefix: impl Into<String>) -> Result<Self, StoreError> {
        let client = Client::open(url).map_err(StoreError::backend)?;
        Ok(Self { conn: Arc::new(Reconnecting::new(client)), prefix: prefix.into(), sliding: None, _user: PhantomData })
    }

    /// Gives the tokens this store issues a sliding expiry; see
    /// [`SlidingExpiry`]. An extension rewrites the token's key (only if it
    /// still exists: a revoked token is never brought back), at most once per
    /// [`SlidingExpiry::every`].
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use ws_token_auth::store::{RedisTokenStore, SlidingExpiry};
    ///
    /// let store = RedisTokenStore::<String>::connect("redis://127.0.0.1:6379", "myapp")
    ///     .await?
    ///     .sliding(SlidingExpiry::new(Duration::from_secs(7 * 86_400), Duration::from_secs(90 * 86_400)));
    /// # let _ = store;
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn sliding(mut self, sliding: SlidingExpiry) -> Self {
        self.sliding = Some(sliding);
        self
    }

    fn token_key(&self, token: &Token) -> String {
        format!("{}:t:{}", self.prefix, hex(token.digest()))
    }

    fn user_key(&self, user_key: &str) -> String {
        format!("{}:u:{user_key}", self.prefix)
    }

    fn ticket_key(&self, digest: &[u8; DIGEST_LEN]) -> String {
        format!("{}:k:{}", self.prefix, hex(digest))
    }

    fn locked_key(&self, user_key: &str) -> String {
        format!("{}:locked:{user_key}", self.prefix)
    }
}

#[async_trait]
impl<U> TokenStore for RedisTokenStore<U>
where
    U: Serialize + DeserializeOwned + TokenUser,
{
    type User = U;

    async fn authenticate(&self, token: &Token) -> Result<Option<Authenticated<U>>, StoreError> {
        let key = self.token_key(token);
        let json: Option<String> =
            self.conn.run(|mut conn| async move { conn.get(&key).await }).await.map_err(store_error)?;
        let Some(json) = json else { return Ok(None) };
        let entry: Entry<U> = serde_json::from_str(&json).map_err(StoreError::backend)?;
        let locked = self.locked_key(&entry.user_key);
        let locked: bool =
            self.conn.run(|mut conn| async move { conn.exists(&locked).await }).await.map_err(store_error)?;
        if locked {
            return Ok(None);
        }
        let now = SystemTime::now();
        let expires_at = entry.expires_at.map(from_unix_millis);
        if expires_at.is_some_and(|at| at <= now) {
            return Ok(None);
        }
        let issued_at = entry.issued_at.map_or(now, from_unix_millis);
        let Some(at) = super::extension(self.sliding, now, issued_at, expires_at) else {
            return Ok(Some(Authenticated::new(entry.user).with_expiry(expires_at)));
        };
        let entry = Entry { expires_at: Some(unix_millis(at)), issued_at: Some(unix_millis(issued_at)), ..entry };
        let json = serde_json::to_string(&entry).map_err(StoreError::backend)?;
        let millis = u64::try_from(at.duration_since(now).unwrap_or_default().as_millis()).unwrap_or(u64::MAX).max(1);
        let options = SetOptions::default().conditional_set(ExistenceCheck::XX).with_expiration(SetExpiry::PX(millis));
        let key = self.token_key(token);
        // XX: a token revoked meanwhile is not brought back.
        let written: Option<String> = self
            .conn
            .run(|mut conn| async move { conn.set_options(&key, json, options).await })
            .await
            .map_err(store_error)?;
        Ok(written.map(|_| Authenticated::new(entry.user).with_expiry(entry.expires_at.map(from_unix_millis))))
    }

    async fn is_locked_out(&self, token: &Token) -> Result<bool, StoreError> {
        let key = self.token_key(token);
        let json: Option<String> =
            self.conn.run(|mut conn| async move { conn.get(&key).await }).await.map_err(store_error)?;
        let Some(json) = json else { return Ok(false) };
        let entry: Entry<U> = serde_json::from_str(&json).map_err(StoreError::backend)?;
        if entry.expires_at.map(from_unix_millis).is_some_and(|at| at <= SystemTime::now()) {
            return Ok(false);
        }
        let locked = self.locked_key(&entry.user_key);
        self.conn.run(|mut conn| async move { conn.exists(&locked).await }).await.map_err(store_error)
    }
}

#[async_trait]
impl<U> ManageTokens for RedisTokenStore<U>
where
    U: Serialize + DeserializeOwned + TokenUser,
{
    async fn issue(&self, user: &U, ttl: Option<Duration>) -> Result<Token, StoreError> {
        let user_key = &user.id().to_string();
        let token = Token::generate();
        let now = SystemTime::now();
        let expiry = super::issued_expiry(self.sliding, now, ttl);
        let ttl = expiry.map(|at| at.duration_since(now).unwrap_or_default());
        let (expires_at, issued_at) = (expiry.map(unix_millis), Some(unix_millis(now)));
        let entry = Entry { user: user.clone(), user_key: user_key.to_owned(), expires_at, issued_at };
        let json = serde_json::to_string(&entry).map_err(StoreError::backend)?;
        let (key, index) = (self.token_key(&token), self.user_key(user_key));
        let mut pipe = ::redis::pipe();
        pipe.atomic();
        match ttl {
            Some(ttl) => pipe.pset_ex(&key, json, u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)),
            None => pipe.set(&key, json),
        };
        pipe.sadd(&index, hex(token.digest()));
        self.conn.run(|mut conn| async move { pipe.query_async::<()>(&mut conn).await }).await.map_err(store_error)?;
        Ok(token)
    }

    async fn revoke(&self, token: &Token) -> Result<bool, StoreError> {
        let key = self.token_key(token);
        let json: Option<String> =
            self.conn.run(|mut conn| async move { conn.get(&key).await }).await.map_err(store_error)?;
        let Some(json) = json else { return Ok(false) };
        let key = self.token_key(token);
        let deleted: u64 = self.conn.run(|mut conn| async move { conn.del(&key).await }).await.map_err(store_error)?;
        if let Ok(entry) = serde_json::from_str::<Entry<serde_json::Value>>(&json) {
            let (index, digest) = (self.user_key(&entry.user_key), hex(token.digest()));
            let _: u64 =
                self.conn.run(|mut conn| async move { conn.srem(&index, digest).await }).await.map_err(store_error)?;
        }
        Ok(deleted > 0)
    }

    async fn revoke_user(&self, id: &UserId<Self>) -> Result<u64, StoreError> {
        let index = self.user_key(&id.to_string());
        let members = index.clone();
        let digests: Vec<String> =
            self.conn.run(|mut conn| async move { conn.smembers(&members).await }).await.map_err(store_error)?;
        let mut keys: Vec<String> = digests.iter().map(|d| format!("{}:t:{d}", self.prefix)).collect();
        let tokens = keys.len();
        keys.push(index);
        // One DEL for the tokens and the index: the count includes the index.
        let deleted: u64 = self.conn.run(|mut conn| async move { conn.del(keys).await }).await.map_err(store_error)?;
        Ok(deleted.saturating_sub(1).min(tokens as u64))
    }

    async fn lock_out(&self, id: &UserId<Self>) -> Result<(), StoreError> {
        let key = self.locked_key(&id.to_string());
        self.conn.run(|mut conn| async move { conn.set::<_, _, ()>(&key, 1).await }).await.map_err(store_error)
    }

    async fn let_in(&self, id: &UserId<Self>) -> Result<(), StoreError> {
        let key = self.locked_key(&id.to_string());
        self.conn.run(|mut conn| async move { conn.del::<_, ()>(&key).await }).await.map_err(store_error)
    }

    // Redis expires token keys by itself; this drops the expired tokens'
    // digests from the users' index sets and returns how many.
    async fn purge_expired(&self) -> Result<u64, StoreError> {
        // SCAN, not KEYS: a large database is not blocked while the users are listed.
        let pattern = format!("{}:u:*", self.prefix);
        let indexes: Vec<String> = self
            .conn
            .run(|mut conn| async move {
                let mut keys = Vec::new();
                let mut iter = conn.scan_match::<_, String>(&pattern).await?;
                while let Some(key) = iter.next_item().await {
                    keys.push(key);
                }
                Ok(keys)
            })
            .await
            .map_err(store_error)?;
        let mut purged = 0;
        for index in indexes {
            let members = index.clone();
            let digests: Vec<String> =
                self.conn.run(|mut conn| async move { conn.smembers(&members).await }).await.map_err(store_error)?;
            for digest in digests {
                let key = format!("{}:t:{digest}", self.prefix);
                let alive: bool =
                    self.conn.run(|mut conn| async move { conn.exists(&key).await }).await.map_err(store_error)?;
                if !alive {
                    let (index, digest) = (index.clone(), digest.clone());
                    let _: u64 = self
                        .conn
                        .run(|mut conn| async move { conn.srem(&index, digest).await })
                        .await
                        .map_err(store_error)?;
                    purged += 1;
                }
            }
        }
        Ok(purged)
    }
}

fn unix_millis(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Tickets as keys that Redis expires by itself, taken with `GETDEL`: one
/// taker on any node gets the record (Redis 6.2 or later).
#[async_trait]
impl<U> TicketStore for RedisTokenStore<U>
where
    U: Serialize + DeserializeOwned + TokenUser,
{
    async fn put_ticket(
        &self,
        digest: &[u8; DIGEST_LEN],
        record: &[u8],
        expires_at: SystemTime,
    ) -> Result<(), StoreError> {
        let left = expires_at.duration_since(SystemTime::now()).unwrap_or_default();
        let millis = u64::try_from(left.as_millis()).unwrap_or(u64::MAX);
        if millis == 0 {
            return Ok(()); // expired already: nothing to keep
        }
        let (key, record) = (self.ticket_key(digest), record.to_vec());
        self.conn
            .run(|mut conn| async move { conn.pset_ex::<_, _, ()>(&key, record, millis).await })
            .await
            .map_err(store_error)
    }

    async fn take_ticket(&self, digest: &[u8; DIGEST_LEN]) -> Result<Option<Vec<u8>>, StoreError> {
        let key = self.ticket_key(digest);
        self.conn.run(|mut conn| async move { conn.get_del(&key).await }).await.map_err(store_error)
    }
}

fn store_error(error: RedisError) -> StoreError {
    if is_connection_error(&error) { StoreError::unavailable(error) } else { StoreError::backend(error) }
}

fn from_unix_millis(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}
