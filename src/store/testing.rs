//! Stores that misbehave, for the crate's unit tests.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use super::{Authenticated, ManageTokens, MemoryTokenStore, StoreError, TokenStore};
use crate::token::Token;

/// Answers every token as alice's, with an expiry that has passed; manages
/// tokens like a memory store.
#[derive(Default)]
pub(crate) struct Stale(MemoryTokenStore<String>);

#[async_trait]
impl TokenStore for Stale {
    type User = String;
    async fn authenticate(&self, _: &Token) -> Result<Option<Authenticated<String>>, StoreError> {
        let past = SystemTime::now() - Duration::from_secs(1);
        Ok(Some(Authenticated::new("alice".to_owned()).with_expiry(Some(past))))
    }
}

#[async_trait]
impl ManageTokens for Stale {
    async fn issue(&self, user: &String, ttl: Option<Duration>) -> Result<Token, StoreError> {
        self.0.issue(user, ttl).await
    }
    async fn revoke(&self, token: &Token) -> Result<bool, StoreError> {
        self.0.revoke(token).await
    }
    async fn revoke_user(&self, id: &String) -> Result<u64, StoreError> {
        self.0.revoke_user(id).await
    }
    async fn lock_out(&self, id: &String) -> Result<(), StoreError> {
        self.0.lock_out(id).await
    }
    async fn let_in(&self, id: &String) -> Result<(), StoreError> {
        self.0.let_in(id).await
    }
    async fn purge_expired(&self) -> Result<u64, StoreError> {
        self.0.purge_expired().await
    }
}

/// A store that cannot answer.
pub(crate) struct Failing;

#[async_trait]
impl TokenStore for Failing {
    type User = String;
    async fn authenticate(&self, _: &Token) -> Result<Option<Authenticated<String>>, StoreError> {
        Err(StoreError::unavailable(std::io::Error::other("down")))
    }
}
