//! The [`TokenStore`] trait: where tokens become users; [`ManageTokens`]:
//! what every shipped store does with them; [`TokenUser`]: how a user is named.
//!
//! Implement [`TokenStore`] for your own database in a few lines. `Ok(None)`
//! means the token is unknown, revoked or expired, or its user may not log in:
//! the layer answers 401. `Err` means the store could not answer: the layer
//! answers 503 and never lets the request through as anonymous.
//!
//! ```
//! use async_trait::async_trait;
//! use ws_token_auth::{Authenticated, StoreError, Token, TokenStore, TokenUser};
//!
//! #[derive(Clone)]
//! struct User { id: i64, name: String }
//!
//! impl TokenUser for User {
//!     type Id = i64;
//!     fn id(&self) -> i64 { self.id }
//! }
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
//! Stores shipped with the crate, each implementing [`ManageTokens`] (issue,
//! revoke, revoke a user's tokens, lock a user out and let them in, purge):
//! - [`MemoryTokenStore`]: in process, for tests, demos and single-node apps.
//! - `SqlTokenStore` (features `sqlite`, `postgres`): digests in SQLite or
//!   PostgreSQL, joined with the app's users table.
//! - `RusqliteTokenStore` (feature `rusqlite`): the same tables in an SQLite
//!   file, looked up on the calling thread (a few microseconds, where sqlx
//!   spends some 25 on its thread hop).
//! - `RedisTokenStore` (feature `redis`): digest → user JSON with a TTL.
//! - `CachedTokenStore` (feature `cache`): a moka cache in front of any of
//!   them, with request coalescing, that stays consistent with every change
//!   made through it or heard from other nodes.
//!
//! Apps manage tokens through [`Lifecycle`](crate::Lifecycle), which also
//! closes the sockets concerned and tells every node.

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use crate::access::AccessEvent;
use crate::token::Token;

#[cfg(feature = "cache")]
#[cfg_attr(docsrs, doc(cfg(feature = "cache")))]
pub mod cache;
mod memory;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis;
#[cfg(feature = "rusqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "rusqlite")))]
pub mod rusqlite;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "sqlite", feature = "postgres"))))]
pub mod sql;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "rusqlite"))]
mod table;
#[cfg(test)]
pub(crate) mod testing;
pub(crate) mod tickets;

#[cfg(feature = "redis")]
pub use self::redis::RedisTokenStore;
#[cfg(feature = "cache")]
pub use cache::CachedTokenStore;
pub use memory::MemoryTokenStore;
#[cfg(feature = "rusqlite")]
pub use rusqlite::{RusqliteTokenStore, RusqliteUser};
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use sql::{SqlPool, SqlTokenStore};
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "rusqlite"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "sqlite", feature = "postgres", feature = "rusqlite"))))]
pub use table::{DEFAULT_TOKENS_TABLE, InvalidIdentifier, UsersTable};

/// A boxed error from a store's backend.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A user type that tokens authenticate as: it names its user by an id.
///
/// The id is how the whole crate names a user: [`ManageTokens::revoke_user`],
/// [`Lifecycle::lock_out`](crate::Lifecycle::lock_out), the live registry and
/// the messages between nodes (its `Display` form). Implemented for `String`,
/// `&'static str`, `i64` and `u64`, which are their own ids.
///
/// ```
/// use ws_token_auth::TokenUser;
///
/// #[derive(Clone)]
/// struct User { id: i64, username: String }
///
/// impl TokenUser for User {
///     type Id = i64;
///     fn id(&self) -> i64 { self.id }
/// }
/// assert_eq!(User { id: 7, username: "alice".into() }.id(), 7);
/// ```
pub trait TokenUser: Clone + Send + Sync + 'static {
    /// The user's id: stable, unique, and safe to log and to send between nodes.
    type Id: Clone + Eq + Hash + fmt::Display + fmt::Debug + Send + Sync + 'static;

    /// This user's id.
    fn id(&self) -> Self::Id;
}

macro_rules! own_id {
    ($($ty:ty),*) => {$(
        impl TokenUser for $ty {
            type Id = $ty;
            fn id(&self) -> $ty {
                self.clone()
            }
        }
    )*};
}
own_id!(String, &'static str, i64, u64);

/// The id type of a store's users.
pub type UserId<St> = <<St as TokenStore>::User as TokenUser>::Id;

/// Looks up the user a token belongs to.
///
/// Object safe: `Arc<dyn TokenStore<User = U>>` is a store too.
#[async_trait]
pub trait TokenStore: Send + Sync + 'static {
    /// The user a token authenticates as; put into the request's extensions.
    type User: TokenUser;

    /// The user `token` belongs to.
    ///
    /// Return `Ok(None)` for an unknown, revoked or expired token, or a user
    /// who may not log in (401), and `Err` when the store cannot answer (503).
    async fn authenticate(&self, token: &Token) -> Result<Option<Authenticated<Self::User>>, StoreError>;

    /// Whether `token`, which the store no longer accepts, is refused because
    /// its user is locked out (deactivated) rather than because the token is
    /// gone: asked by the source of truth when revalidation finds a token
    /// refused, to close its sockets with 4403 instead of 4401. The default
    /// says `false`; the shipped stores that can lock users out answer it.
    ///
    /// ```
    /// use ws_token_auth::{MemoryTokenStore, TokenStore};
    /// use ws_token_auth::store::ManageTokens;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), ws_token_auth::StoreError> {
    /// let store = MemoryTokenStore::<String>::new();
    /// let token = store.issue(&"alice".to_string(), None).await?;
    /// assert!(!store.is_locked_out(&token).await?);
    /// store.lock_out(&"alice".to_string()).await?;
    /// assert!(store.is_locked_out(&token).await?);
    /// # Ok(()) }
    /// ```
    async fn is_locked_out(&self, token: &Token) -> Result<bool, StoreError> {
        let _ = token;
        Ok(false)
    }

    /// The cache this store is, if it is one ([`CachedTokenStore`] says
    /// so): what revalidation and the other nodes' changes go through. Leave
    /// it for any other store.
    ///
    /// ```
    /// use ws_token_auth::{MemoryTokenStore, TokenStore, store::CachedTokenStore};
    ///
    /// assert!(MemoryTokenStore::<String>::new().cache().is_none());
    /// assert!(CachedTokenStore::new(MemoryTokenStore::<String>::new()).cache().is_some());
    /// ```
    fn cache(&self) -> Option<&dyn StoreCache<Self::User>> {
        None
    }
}

/// What only a cache in front of a store does, apart from answering: ask
/// the source of truth past itself, and forget what a change of access
/// makes wrong. [`CachedTokenStore`] implements it and names itself in
/// [`TokenStore::cache`]; the [`Lifecycle`](crate::Lifecycle) and the
/// [`Authenticator`](crate::Authenticator) call it, apps do not.
///
/// ```
/// use ws_token_auth::{Lifecycle, MemoryTokenStore, TokenStore};
/// use ws_token_auth::{live::AccessEvent, store::CachedTokenStore};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), ws_token_auth::StoreError> {
/// let inner = std::sync::Arc::new(MemoryTokenStore::<String>::new());
/// let cached = CachedTokenStore::new(std::sync::Arc::clone(&inner));
/// let token = Lifecycle::new(std::sync::Arc::clone(&inner)).issue(&"alice".to_string(), None).await?;
/// assert!(cached.authenticate(&token).await?.is_some()); // now cached
///
/// // Revoked behind the cache's back: only the source of truth knows.
/// Lifecycle::new(inner).revoke(&token).await?;
/// let cache = cached.cache().unwrap();
/// assert!(cache.revalidate(&token).await?.is_none());
/// cache.forget(&AccessEvent::token_revoked(token.id())).await;
/// assert!(cached.authenticate(&token).await?.is_none());
/// # Ok(()) }
/// ```
#[async_trait]
pub trait StoreCache<U>: Send + Sync {
    /// [`authenticate`](TokenStore::authenticate), answered by the source of
    /// truth behind the cache (and remembered): what revalidation of open
    /// sockets, redeeming a ticket and minting from a token ask.
    async fn revalidate(&self, token: &Token) -> Result<Option<Authenticated<U>>, StoreError>;

    /// Drops what `event` (a change made on another node, or here) makes
    /// wrong.
    async fn forget(&self, event: &AccessEvent);

    /// Drops every answer, also those of lookups still under way: anything
    /// may have changed unseen (the bus lost its connection for a while, or
    /// the source of truth asked every node to revalidate everything). The
    /// [`Lifecycle`](crate::Lifecycle) calls it
    /// before it revalidates after a gap. The default forgets nothing: a
    /// cache of your own that keeps answers overrides it.
    ///
    /// ```
    /// use ws_token_auth::{Lifecycle, MemoryTokenStore, TokenStore, store::CachedTokenStore};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), ws_token_auth::StoreError> {
    /// let inner = std::sync::Arc::new(MemoryTokenStore::<String>::new());
    /// let cached = CachedTokenStore::new(std::sync::Arc::clone(&inner));
    /// let token = Lifecycle::new(std::sync::Arc::clone(&inner)).issue(&"alice".to_string(), None).await?;
    /// assert!(cached.authenticate(&token).await?.is_some()); // now cached
    ///
    /// Lifecycle::new(inner).revoke(&token).await?; // unseen by the cache
    /// cached.cache().unwrap().forget_all().await;
    /// assert!(cached.authenticate(&token).await?.is_none());
    /// # Ok(()) }
    /// ```
    async fn forget_all(&self) {}
}

/// `store`'s source of truth about `token`: past its cache, if it is one.
pub(crate) async fn revalidate<St: TokenStore + ?Sized>(
    store: &St,
    token: &Token,
) -> Result<Option<Authenticated<St::User>>, StoreError> {
    match store.cache() {
        Some(cache) => cache.revalidate(token).await,
        None => store.authenticate(token).await,
    }
}

/// The management contract a store implements (every shipped store does),
/// with the same meaning everywhere; a user is named by its
/// [`TokenUser::Id`].
///
/// This is a backend implementor's API, which is why it lives here and not at
/// the crate root: an app issues, revokes and locks through
/// [`Lifecycle`](crate::Lifecycle), which also closes the sockets concerned,
/// keeps caches consistent and tells the other nodes. A store called on its
/// own only changes its data (as in this example, or in a store's tests).
///
/// ```
/// use ws_token_auth::{MemoryTokenStore, TokenStore};
/// use ws_token_auth::store::ManageTokens;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), ws_token_auth::StoreError> {
/// let store = MemoryTokenStore::<String>::new();
/// let token = store.issue(&"alice".to_string(), None).await?;
/// assert!(store.authenticate(&token).await?.is_some());
///
/// store.lock_out(&"alice".to_string()).await?;       // deactivated: refused
/// assert!(store.authenticate(&token).await?.is_none());
/// store.let_in(&"alice".to_string()).await?;     // back: accepted again
/// assert!(store.authenticate(&token).await?.is_some());
///
/// assert_eq!(store.revoke_user(&"alice".to_string()).await?, 1);
/// assert!(store.authenticate(&token).await?.is_none());
/// # Ok(()) }
/// ```
#[async_trait]
pub trait ManageTokens: TokenStore {
    /// Makes a new random token for `user`, valid for `ttl` (or until
    /// revoked), and stores it (as a digest in every shipped store).
    async fn issue(&self, user: &Self::User, ttl: Option<Duration>) -> Result<Token, StoreError>;

    /// Revokes one token; returns whether the store held it.
    async fn revoke(&self, token: &Token) -> Result<bool, StoreError>;

    /// Revokes every token of the user `id`; returns how many the store held.
    async fn revoke_user(&self, id: &UserId<Self>) -> Result<u64, StoreError>;

    /// Locks the user `id` out: their tokens stay stored but authenticate as
    /// nobody until [`let_in`](Self::let_in).
    async fn lock_out(&self, id: &UserId<Self>) -> Result<(), StoreError>;

    /// Lets a locked-out user in again: their unexpired tokens work again.
    async fn let_in(&self, id: &UserId<Self>) -> Result<(), StoreError>;

    /// Deletes the tokens whose expiry has passed; returns how many.
    async fn purge_expired(&self) -> Result<u64, StoreError>;
}

macro_rules! forward_store {
    ($($ptr:ident),*) => {$(
        #[async_trait]
        impl<T: TokenStore + ?Sized> TokenStore for $ptr<T> {
            type User = T::User;

            async fn authenticate(&self, token: &Token) -> Result<Option<Authenticated<Self::User>>, StoreError> {
                (**self).authenticate(token).await
            }

            async fn is_locked_out(&self, token: &Token) -> Result<bool, StoreError> {
                (**self).is_locked_out(token).await
            }

            fn cache(&self) -> Option<&dyn StoreCache<Self::User>> {
                (**self).cache()
            }
        }

        #[async_trait]
        impl<T: ManageTokens + ?Sized> ManageTokens for $ptr<T> {
            async fn issue(&self, user: &Self::User, ttl: Option<Duration>) -> Result<Token, StoreError> {
                (**self).issue(user, ttl).await
            }
            async fn revoke(&self, token: &Token) -> Result<bool, StoreError> {
                (**self).revoke(token).await
            }
            async fn revoke_user(&self, id: &UserId<Self>) -> Result<u64, StoreError> {
                (**self).revoke_user(id).await
            }
            async fn lock_out(&self, id: &UserId<Self>) -> Result<(), StoreError> {
                (**self).lock_out(id).await
            }
            async fn let_in(&self, id: &UserId<Self>) -> Result<(), StoreError> {
                (**self).let_in(id).await
            }
            async fn purge_expired(&self) -> Result<u64, StoreError> {
                (**self).purge_expired().await
            }
        }
    )*};
}
forward_store!(Arc, Box);

/// Sliding expiry with a hard cap, for the shipped stores
/// ([`MemoryTokenStore::sliding`], `SqlTokenStore::sliding`,
/// `RedisTokenStore::sliding`): a token stays alive while it is used and dies
/// when idle, but never lives past a fixed time from its issue.
///
/// - A token issued by a sliding store expires `idle` after its issue (or
///   after the `ttl` given to [`ManageTokens::issue`]), never past `cap`.
/// - Each use (a handshake, a revalidation of its open sockets) moves its
///   expiry to `idle` from now, never past `cap` from its issue.
/// - The move is written only when it gains at least `write_every` (default:
///   a tenth of `idle`), so a busy token costs a write per interval, not one
///   per handshake.
///
/// A token stored without an expiry keeps none. A cache in front
/// (`CachedTokenStore`) keeps a positive answer at most half the time its
/// token has left, so that a token in use reaches the store before it expires.
///
/// ```
/// use std::time::Duration;
/// use ws_token_auth::{MemoryTokenStore, store::SlidingExpiry};
///
/// // Alive while used at least every 30 days; logged out after 180 days whatever happens.
/// let sliding = SlidingExpiry::new(Duration::from_secs(30 * 86_400), Duration::from_secs(180 * 86_400))
///     .write_every(Duration::from_secs(3_600));
/// let store = MemoryTokenStore::<String>::new().sliding(sliding);
/// assert_eq!(sliding.idle(), Duration::from_secs(30 * 86_400));
/// # let _ = store;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlidingExpiry {
    idle: Duration,
    cap: Duration,
    every: Duration,
}

impl SlidingExpiry {
    /// A token lives `idle` past its last use, and never more than `cap`
    /// past its issue.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let sliding = ws_token_auth::store::SlidingExpiry::new(Duration::from_secs(600), Duration::from_secs(86_400));
    /// assert_eq!(sliding.cap(), Duration::from_secs(86_400));
    /// assert_eq!(sliding.every(), Duration::from_secs(60));
    /// ```
    #[must_use]
    pub fn new(idle: Duration, cap: Duration) -> Self {
        Self { idle, cap, every: idle / 10 }
    }

    /// Writes an extension only when it gains at least `every` (at most half
    /// of `idle`, so that a token used before its expiry is always extended).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use ws_token_auth::store::SlidingExpiry;
    /// let sliding = SlidingExpiry::new(Duration::from_secs(600), Duration::from_secs(86_400))
    ///     .write_every(Duration::from_secs(900));
    /// assert_eq!(sliding.every(), Duration::from_secs(300), "at most half the idle window");
    /// ```
    #[must_use]
    pub fn write_every(mut self, every: Duration) -> Self {
        self.every = every.min(self.idle / 2);
        self
    }

    /// How long a token lives past its last use.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # let sliding = ws_token_auth::store::SlidingExpiry::new(Duration::from_secs(600), Duration::from_secs(86_400));
    /// assert_eq!(sliding.idle(), Duration::from_secs(600));
    /// ```
    #[must_use]
    pub fn idle(&self) -> Duration {
        self.idle
    }

    /// How long a token lives past its issue, at most.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # let sliding = ws_token_auth::store::SlidingExpiry::new(Duration::from_secs(600), Duration::from_secs(86_400));
    /// assert_eq!(sliding.cap(), Duration::from_secs(86_400));
    /// ```
    #[must_use]
    pub fn cap(&self) -> Duration {
        self.cap
    }

    /// The least gain worth a write.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # let sliding = ws_token_auth::store::SlidingExpiry::new(Duration::from_secs(600), Duration::from_secs(86_400));
    /// assert_eq!(sliding.every(), Duration::from_secs(60));
    /// ```
    #[must_use]
    pub fn every(&self) -> Duration {
        self.every
    }
}

/// The expiry a shipped store gives a token it issues at `now` with `ttl`:
/// `ttl` from now; with a sliding expiry, `ttl` (or `idle`) capped at `cap`.
pub(crate) fn issued_expiry(
    sliding: Option<SlidingExpiry>,
    now: SystemTime,
    ttl: Option<Duration>,
) -> Option<SystemTime> {
    match sliding {
        Some(sliding) => now.checked_add(ttl.unwrap_or(sliding.idle).min(sliding.cap)),
        None => ttl.and_then(|ttl| now.checked_add(ttl)),
    }
}

/// The expiry to write for a token issued at `issued_at`, expiring at
/// `current`, used at `now`: `Some` only with a sliding expiry, for a token
/// that expires, not yet expired, when the move is worth a write.
pub(crate) fn extension(
    sliding: Option<SlidingExpiry>,
    now: SystemTime,
    issued_at: SystemTime,
    current: Option<SystemTime>,
) -> Option<SystemTime> {
    let (sliding, current) = (sliding?, current?);
    let target = now.checked_add(sliding.idle)?.min(issued_at.checked_add(sliding.cap)?);
    (target >= current.checked_add(sliding.every)? && current > now).then_some(target)
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
    /// The store does not support this operation as configured (say, locking
    /// users out of an SQL store that has no activity column).
    #[error("token store cannot {0}")]
    Unsupported(&'static str),
    /// The user is locked out: nothing was issued
    /// ([`Lifecycle::issue`](crate::Lifecycle::issue)).
    #[error("the user is locked out")]
    LockedOut,
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

/// Displays an error and its sources, `a: b: c`.
pub(crate) struct ErrorChain<'a>(pub(crate) &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(error) = source {
            write!(f, ": {error}")?;
            source = error.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sliding_extends_by_enough_never_past_the_cap_never_after_expiry() {
        let secs = Duration::from_secs;
        let sliding = Some(SlidingExpiry::new(secs(100), secs(250)).write_every(secs(20)));
        let issued = SystemTime::UNIX_EPOCH + secs(1_000);
        assert_eq!(issued_expiry(sliding, issued, None), Some(issued + secs(100)));
        assert_eq!(issued_expiry(sliding, issued, Some(secs(900))), Some(issued + secs(250)), "capped");
        assert_eq!(issued_expiry(None, issued, Some(secs(900))), Some(issued + secs(900)), "not sliding");
        assert_eq!(issued_expiry(None, issued, None), None);
        let current = Some(issued + secs(100));
        assert_eq!(extension(sliding, issued + secs(10), issued, current), None, "gains 10 s: not worth a write");
        assert_eq!(extension(sliding, issued + secs(20), issued, current), Some(issued + secs(120)));
        let near_cap = Some(issued + secs(240));
        assert_eq!(extension(sliding, issued + secs(200), issued, near_cap), None, "the cap leaves 10 s");
        let before_cap = Some(issued + secs(200));
        assert_eq!(extension(sliding, issued + secs(190), issued, before_cap), Some(issued + secs(250)));
        assert_eq!(extension(sliding, issued + secs(101), issued, current), None, "expired already");
        assert_eq!(extension(sliding, issued + secs(20), issued, None), None, "never expires");
        assert_eq!(extension(None, issued + secs(20), issued, current), None, "not sliding");
    }
}
