//! The [`TokenStore`] trait: where tokens become users.
//!
//! Implement it for your own database in a few lines. `Ok(None)` means the
//! token is unknown, revoked or expired, or its user may not log in: the layer
//! answers 401. `Err` means the store could not answer: the layer answers 503
//! and never lets the request through as anonymous.
//!
//! ```
//! use async_trait::async_trait;
//! use ws_token_auth::{Authenticated, StoreError, Token, TokenStore};
//!
//! #[derive(Clone)]
//! struct User { id: i64, name: String }
//!
//! /// Your database, here a stand-in that knows one token.
//! struct MyStore;
//!
//! #[async_trait]
//! impl TokenStore for MyStore {
//!     type User = User;
//!
//!     async fn authenticate(&self, token: &Token) -> Result<Option<Authenticated<User>>, StoreError> {
//!         // e.g. `SELECT user_id, name FROM tokens WHERE digest = $1` with `token.digest()`
//!         let known = Token::new("8f2c0d").unwrap();
//!         Ok((*token == known).then(|| Authenticated::new(User { id: 1, name: "alice".into() })))
//!     }
//! }
//! ```
//!
//! Stores shipped with the crate:
//! - [`MemoryTokenStore`]: in process, for tests, demos and single-node apps.
//! - `SqlTokenStore` (features `sqlite`, `postgres`): digests in SQLite or
//!   PostgreSQL, joined with the app's users table.
//! - `RedisTokenStore` (feature `redis`): digest → user JSON with a TTL.
//! - `CachedTokenStore` (feature `cache`): a moka cache in front of any store,
//!   with request coalescing.

use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;

use crate::token::Token;

#[cfg(feature = "cache")]
#[cfg_attr(docsrs, doc(cfg(feature = "cache")))]
pub mod cache;
mod memory;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "sqlite", feature = "postgres"))))]
pub mod sql;

#[cfg(feature = "redis")]
pub use self::redis::RedisTokenStore;
#[cfg(feature = "cache")]
pub use cache::CachedTokenStore;
pub use memory::MemoryTokenStore;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use sql::{SqlPool, SqlTokenStore, SqlUser, UsersTable};

/// A boxed error from a store's backend.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Looks up the user a token belongs to.
///
/// Object safe: `Arc<dyn TokenStore<User = U>>` is a store too.
#[async_trait]
pub trait TokenStore: Send + Sync + 'static {
    /// The user a token authenticates as; put into the request's extensions.
    type User: Clone + Send + Sync + 'static;

    /// The user `token` belongs to.
    ///
    /// Return `Ok(None)` for an unknown, revoked or expired token, or a user
    /// who may not log in (401), and `Err` when the store cannot answer (503).
    async fn authenticate(&self, token: &Token) -> Result<Option<Authenticated<Self::User>>, StoreError>;
}

#[async_trait]
impl<T: TokenStore + ?Sized> TokenStore for Arc<T> {
    type User = T::User;

    async fn authenticate(&self, token: &Token) -> Result<Option<Authenticated<Self::User>>, StoreError> {
        (**self).authenticate(token).await
    }
}

#[async_trait]
impl<T: TokenStore + ?Sized> TokenStore for Box<T> {
    type User = T::User;

    async fn authenticate(&self, token: &Token) -> Result<Option<Authenticated<Self::User>>, StoreError> {
        (**self).authenticate(token).await
    }
}

/// A store's answer for a valid token: the user, and when the token expires.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use ws_token_auth::Authenticated;
///
/// let in_an_hour = SystemTime::now() + Duration::from_secs(3600);
/// let found = Authenticated::new("alice").with_expiry(Some(in_an_hour));
/// assert_eq!(found.user, "alice");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Authenticated<U> {
    /// The user.
    pub user: U,
    /// When the token stops being valid, if it does. The layer refuses a token
    /// whose expiry has passed even if the store returned it, and live
    /// connections close when it passes.
    pub expires_at: Option<SystemTime>,
}

impl<U> Authenticated<U> {
    /// A user whose token does not expire.
    pub fn new(user: U) -> Self {
        Self { user, expires_at: None }
    }

    /// Sets when the token expires.
    #[must_use]
    pub fn with_expiry(mut self, expires_at: Option<SystemTime>) -> Self {
        self.expires_at = expires_at;
        self
    }

    /// Whether the expiry has passed at `now`.
    #[must_use]
    pub fn is_expired_at(&self, now: SystemTime) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}

/// The store could not answer. The layer responds 503 and logs the error.
///
/// Errors never hold the token: wrap backend errors whose messages could
/// quote it (a driver echoing a query's parameters) with care.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store did not answer within the layer's store timeout.
    #[error("token store timed out")]
    Timeout,
    /// The store cannot be reached (connection refused, pool exhausted).
    #[error("token store unavailable")]
    Unavailable(#[source] BoxError),
    /// The store answered with an error.
    #[error("token store backend error")]
    Backend(#[source] BoxError),
}

impl StoreError {
    /// A store that cannot be reached.
    pub fn unavailable(error: impl Into<BoxError>) -> Self {
        Self::Unavailable(error.into())
    }

    /// A store that answered with an error.
    pub fn backend(error: impl Into<BoxError>) -> Self {
        Self::Backend(error.into())
    }
}
