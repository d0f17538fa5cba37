//! [`RedisTokenStore`]: tokens in Redis (feature `redis`).
//!
//! Each token is a key holding its user as JSON, named by the token's SHA-256
//! digest (the token itself is never stored), with the token's lifetime as the
//! key's TTL. A set per user lists the user's token digests, for
//! [`revoke_user`](RedisTokenStore::revoke_user). The store keeps one
//! multiplexed connection and replaces it by itself when it breaks (also when
//! a lookup was abandoned by the layer's store timeout); connecting gives up
//! after 2 s and commands after 2 s, so a Redis outage is a quick 503, never a
//! hang, and the store recovers when Redis returns.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use ws_token_auth::store::RedisTokenStore;
//!
//! #[derive(Clone, serde::Serialize, serde::Deserialize)]
//! struct User { id: i64, name: String }
//!
//! let store = RedisTokenStore::<User>::connect("redis://127.0.0.1:6379", "myapp").await?;
//! let alice = User { id: 1, name: "alice".into() };
//! let token = store.issue("1", &alice, Some(Duration::from_secs(86_400))).await?;
//! # let _ = token;
//! # Ok(()) }
//! ```

use std::marker::PhantomData;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use std::sync::Arc;

use ::redis::{AsyncCommands, Client, RedisError};
use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{Authenticated, StoreError, TokenStore};
use crate::redis_conn::{Reconnecting, is_connection_error};
use crate::token::{Token, hex};

/// A [`TokenStore`] over Redis. See the [module docs](self).
pub struct RedisTokenStore<U> {
    conn: Arc<Reconnecting>,
    prefix: String,
    _user: PhantomData<fn() -> U>,
}

impl<U> Clone for RedisTokenStore<U> {
    fn clone(&self) -> Self {
        Self { conn: Arc::clone(&self.conn), prefix: self.prefix.clone(), _user: PhantomData }
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
}

impl<U> RedisTokenStore<U>
where
    U: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    /// Connects to Redis at `url`; every key starts with `prefix:`.
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
    /// # Errors
    /// [`StoreError`] if the URL is invalid.
    pub fn lazy(url: &str, prefix: impl Into<String>) -> Result<Self, StoreError> {
        let client = Client::open(url).map_err(StoreError::backend)?;
        Ok(Self { conn: Arc::new(Reconnecting::new(client)), prefix: prefix.into(), _user: PhantomData })
    }

    fn token_key(&self, token: &Token) -> String {
        format!("{}:t:{}", self.prefix, hex(token.digest()))
    }

    fn user_key(&self, user_key: &str) -> String {
        format!("{}:u:{user_key}", self.prefix)
    }

    /// Makes a new random token for `user`, known as `user_key` to
    /// [`revoke_user`](Self::revoke_user), valid for `ttl` (or until revoked).
    ///
    /// # Errors
    /// [`StoreError`] if Redis does not take it.
    pub async fn issue(&self, user_key: &str, user: &U, ttl: Option<Duration>) -> Result<Token, StoreError> {
        let token = Token::generate();
        let expires_at = ttl.and_then(|ttl| SystemTime::now().checked_add(ttl)).map(unix_millis);
        let entry = Entry { user: user.clone(), user_key: user_key.to_owned(), expires_at };
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

    /// Revokes a token; returns whether it was stored.
    ///
    /// # Errors
    /// [`StoreError`] if Redis does not answer.
    pub async fn revoke(&self, token: &Token) -> Result<bool, StoreError> {
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

    /// Revokes every token of `user_key`; returns how many were still valid.
    ///
    /// # Errors
    /// [`StoreError`] if Redis does not answer.
    pub async fn revoke_user(&self, user_key: &str) -> Result<u64, StoreError> {
        let index = self.user_key(user_key);
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
}

#[async_trait]
impl<U> TokenStore for RedisTokenStore<U>
where
    U: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    type User = U;

    async fn authenticate(&self, token: &Token) -> Result<Option<Authenticated<U>>, StoreError> {
        let key = self.token_key(token);
        let json: Option<String> =
            self.conn.run(|mut conn| async move { conn.get(&key).await }).await.map_err(store_error)?;
        let Some(json) = json else { return Ok(None) };
        let entry: Entry<U> = serde_json::from_str(&json).map_err(StoreError::backend)?;
        let expires_at = entry.expires_at.map(|ms| UNIX_EPOCH + Duration::from_millis(ms));
        let found = Authenticated::new(entry.user).with_expiry(expires_at);
        Ok((!found.is_expired_at(SystemTime::now())).then_some(found))
    }
}

fn unix_millis(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn store_error(error: RedisError) -> StoreError {
    if is_connection_error(&error) { StoreError::unavailable(error) } else { StoreError::backend(error) }
}
