//! [`SqlTokenStore`]: tokens in SQLite or PostgreSQL through sqlx (features
//! `sqlite`, `postgres`).
//!
//! The store keeps one table of its own (default `ws_auth_tokens`, schema in
//! `migrations/`, applied by [`SqlTokenStore::migrate`]) and joins it with the
//! app's users table, so a token authenticates as the app's own user type and
//! an inactive user authenticates as nobody. It never stores a token: each row
//! holds the token's SHA-256 digest and, for lookup, its [`TokenId`](crate::TokenId)
//! (a short, non-secret prefix of the digest); the digest is compared in
//! constant time.
//!
//! On SQLite, the store looks tokens up through a few connections of its own
//! (as many as the machine has cores, 2 to 8, opened on first use with the
//! pool's options): sqlx runs each SQLite connection on its own thread, and a
//! query through the pool costs two round trips to it where one of these
//! costs one. Everything else goes through the pool; on PostgreSQL,
//! everything does. That round trip is still most of a lookup: for an
//! SQLite-only app, `RusqliteTokenStore` (feature `rusqlite`) keeps the same
//! tables and looks tokens up on the calling thread instead.
//!
//! Locking a user out ([`ManageTokens::lock_out`]) sets the users table's
//! activity column to false (and letting them in, to true): configure it with
//! [`UsersTable::active_column`]; without one, locking answers
//! [`StoreError::Unsupported`].
//!
//! ```no_run
//! # #[cfg(feature = "sqlite")]
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use ws_token_auth::TokenUser;
//! use ws_token_auth::store::ManageTokens;
//! use ws_token_auth::store::{SqlTokenStore, UsersTable};
//!
//! #[derive(Clone, sqlx::FromRow)]
//! struct User { id: i64, username: String, is_staff: bool }
//!
//! impl TokenUser for User {
//!     type Id = i64;
//!     fn id(&self) -> i64 { self.id }
//! }
//!
//! let pool = sqlx::SqlitePool::connect("sqlite://app.db?mode=rwc").await?;
//! let users = UsersTable::new("users")?.active_column("is_active")?;
//! let store = SqlTokenStore::<User>::new(pool, users);
//! store.migrate().await?;
//! let alice = User { id: 1, username: "alice".into(), is_staff: false };
//! let token = store.issue(&alice, None).await?; // send it to alice
//! # let _ = token;
//! # Ok(()) }
//! ```

#[cfg(feature = "sqlite")]
mod readers;

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;

pub use super::table::{DEFAULT_TOKENS_TABLE, InvalidIdentifier, UsersTable};
use super::table::{Found, Tables, found, is_token_row, settle, unix_millis};
use super::{Authenticated, ManageTokens, SlidingExpiry, StoreError, TokenStore, TokenUser, UserId};
use crate::store::tickets::TicketStore;
use crate::token::{DIGEST_LEN, Token};

#[cfg(feature = "postgres")]
use sqlx::postgres::{PgPool, PgRow};
#[cfg(feature = "sqlite")]
use sqlx::sqlite::{SqlitePool, SqliteRow};
use sqlx::{FromRow, Row};

/// A connection pool the store runs on, for users of type `U`: a
/// `sqlx::SqlitePool` when `U` derives `sqlx::FromRow` for SQLite rows, a
/// `sqlx::PgPool` when it does for PostgreSQL rows. Sealed: the store picks
/// the SQL for each database.
///
/// Each pool asks only for its own database's row type, so turning on the
/// other database's feature never changes what compiles.
///
/// ```
/// # #[cfg(feature = "sqlite")]
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use ws_token_auth::store::{SqlTokenStore, UsersTable};
///
/// use sqlx::{FromRow, Row, sqlite::SqliteRow};
///
/// #[derive(Clone)]
/// struct User { id: i64 }
/// # impl ws_token_auth::TokenUser for User { type Id = i64; fn id(&self) -> i64 { self.id } }
///
/// // SQLite rows only (what `#[derive(sqlx::FromRow)]` writes for every
/// // database): all a SqlitePool asks, with or without feature `postgres`.
/// impl FromRow<'_, SqliteRow> for User {
///     fn from_row(row: &SqliteRow) -> Result<Self, sqlx::Error> {
///         Ok(Self { id: row.try_get("id")? })
///     }
/// }
///
/// let pool = sqlx::SqlitePool::connect("sqlite::memory:").await?; // a SqlPool<User>
/// let store = SqlTokenStore::<User>::new(pool, UsersTable::new("users")?);
/// # let _ = store;
/// # Ok(()) }
/// ```
pub trait SqlPool<U>: sealed::Sealed {
    #[doc(hidden)]
    fn into_pool(self) -> Pool<U>;
}

mod sealed {
    pub trait Sealed {}
    #[cfg(feature = "sqlite")]
    impl Sealed for sqlx::SqlitePool {}
    #[cfg(feature = "postgres")]
    impl Sealed for sqlx::PgPool {}
}

/// A pool and how to read a user from its rows.
#[doc(hidden)]
pub enum Pool<U> {
    #[cfg(feature = "sqlite")]
    Sqlite(SqlitePool, Decode<SqliteRow, U>),
    #[cfg(feature = "postgres")]
    Postgres(PgPool, Decode<PgRow, U>),
}

type Decode<R, U> = fn(&R) -> Result<U, sqlx::Error>;

impl<U> Clone for Pool<U> {
    fn clone(&self) -> Self {
        match self {
            #[cfg(feature = "sqlite")]
            Self::Sqlite(pool, decode) => Self::Sqlite(pool.clone(), *decode),
            #[cfg(feature = "postgres")]
            Self::Postgres(pool, decode) => Self::Postgres(pool.clone(), *decode),
        }
    }
}

impl<U> std::fmt::Debug for Pool<U> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            #[cfg(feature = "sqlite")]
            Self::Sqlite(pool, _) => pool.fmt(f),
            #[cfg(feature = "postgres")]
            Self::Postgres(pool, _) => pool.fmt(f),
        }
    }
}

fn decode<R: Row, U: for<'r> FromRow<'r, R>>(row: &R) -> Result<U, sqlx::Error> {
    U::from_row(row)
}

#[cfg(feature = "sqlite")]
impl<U: for<'r> FromRow<'r, SqliteRow>> SqlPool<U> for SqlitePool {
    fn into_pool(self) -> Pool<U> {
        Pool::Sqlite(self, decode::<SqliteRow, U>)
    }
}

#[cfg(feature = "postgres")]
impl<U: for<'r> FromRow<'r, PgRow>> SqlPool<U> for PgPool {
    fn into_pool(self) -> Pool<U> {
        Pool::Postgres(self, decode::<PgRow, U>)
    }
}

/// Runs `$body` with `$p` bound to whichever pool `$pool` holds: the same
/// query text serves both databases (`$1` placeholders work in each).
macro_rules! on_pool {
    ($pool:expr, $p:ident => $body:expr) => {
        match &$pool {
            #[cfg(feature = "sqlite")]
            Pool::Sqlite($p, _) => $body,
            #[cfg(feature = "postgres")]
            Pool::Postgres($p, _) => $body,
        }
    };
}

/// A [`TokenStore`] over SQLite or PostgreSQL. See the [module docs](self).
#[derive(Debug)]
pub struct SqlTokenStore<U> {
    pool: Pool<U>,
    tables: Arc<Tables>,
    sliding: Option<SlidingExpiry>,
    /// On SQLite, the connections that look tokens up (shared by clones).
    #[cfg(feature = "sqlite")]
    readers: Arc<readers::Readers>,
    _user: PhantomData<fn() -> U>,
}

impl<U> Clone for SqlTokenStore<U> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            tables: Arc::clone(&self.tables),
            sliding: self.sliding,
            #[cfg(feature = "sqlite")]
            readers: Arc::clone(&self.readers),
            _user: PhantomData,
        }
    }
}

impl<U: TokenUser<Id = i64>> SqlTokenStore<U> {
    /// A store over `pool`, authenticating tokens as rows of `users`.
    pub fn new(pool: impl SqlPool<U>, users: UsersTable) -> Self {
        Self {
            pool: pool.into_pool(),
            tables: Arc::new(Tables::new(users)),
            sliding: None,
            #[cfg(feature = "sqlite")]
            readers: Arc::new(readers::Readers::for_this_machine()),
            _user: PhantomData,
        }
    }

    /// Gives the tokens this store issues a sliding expiry; see
    /// [`SlidingExpiry`]. An extension is one `UPDATE` of the token's row, at
    /// most once per [`SlidingExpiry::every`].
    ///
    /// ```no_run
    /// # #[cfg(feature = "sqlite")]
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use ws_token_auth::store::{SlidingExpiry, SqlTokenStore, UsersTable};
    ///
    /// # #[derive(Clone, sqlx::FromRow)] struct User { id: i64 }
    /// # impl ws_token_auth::TokenUser for User { type Id = i64; fn id(&self) -> i64 { self.id } }
    /// let pool = sqlx::SqlitePool::connect("sqlite://app.db?mode=rwc").await?;
    /// let store = SqlTokenStore::<User>::new(pool, UsersTable::new("users")?)
    ///     .sliding(SlidingExpiry::new(Duration::from_secs(7 * 86_400), Duration::from_secs(90 * 86_400)));
    /// # let _ = store;
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn sliding(mut self, sliding: SlidingExpiry) -> Self {
        self.sliding = Some(sliding);
        self
    }

    /// Sets the name of the store's table (default `ws_auth_tokens`), for
    /// several stores in one database or tests that must not share data.
    ///
    /// Its connect tickets live in the table of the same name followed by
    /// `_tickets`.
    ///
    /// # Errors
    /// [`InvalidIdentifier`] if `name` (or `name` followed by `_tickets`) is
    /// not a plain SQL identifier.
    pub fn with_table_name(mut self, name: &str) -> Result<Self, InvalidIdentifier> {
        self.tables = Arc::new(Tables::clone(&self.tables).with_tokens_table(name)?);
        Ok(self)
    }

    /// The name of the store's table.
    #[must_use]
    pub fn table_name(&self) -> &str {
        self.tables.tokens()
    }

    /// Creates the store's table and index if they are missing. Safe to call
    /// from several processes at once.
    ///
    /// # Errors
    /// [`StoreError`] if the database refuses.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match &self.pool {
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(pool, _) => {
                let schema = self.tables.schema(
                    include_str!("../../migrations/sqlite/0001_tokens.sql"),
                    include_str!("../../migrations/sqlite/0002_tickets.sql"),
                );
                sqlx::raw_sql(&schema).execute(pool).await.map_err(store_error)?;
            }
            #[cfg(feature = "postgres")]
            Pool::Postgres(pool, _) => {
                let schema = self.tables.schema(
                    include_str!("../../migrations/postgres/0001_tokens.sql"),
                    include_str!("../../migrations/postgres/0002_tickets.sql"),
                );
                // Nodes that start together race on CREATE ... IF NOT EXISTS
                // (a unique violation in pg_class): serialize them.
                let mut tx = pool.begin().await.map_err(store_error)?;
                sqlx::query("SELECT pg_advisory_xact_lock(7302)").execute(&mut *tx).await.map_err(store_error)?;
                sqlx::raw_sql(&schema).execute(&mut *tx).await.map_err(store_error)?;
                tx.commit().await.map_err(store_error)?;
            }
        }
        Ok(())
    }

    async fn execute_with(&self, sql: &str, value: i64) -> Result<u64, StoreError> {
        Ok(on_pool!(self.pool, pool => {
            sqlx::query(sql).bind(value).execute(pool).await.map_err(store_error)?.rows_affected()
        }))
    }

    async fn set_active(&self, id: i64, active: bool) -> Result<(), StoreError> {
        let sql = self.tables.set_active()?;
        on_pool!(self.pool, pool => {
            sqlx::query(&sql).bind(active).bind(id).execute(pool).await.map_err(store_error)?;
        });
        Ok(())
    }
}

#[async_trait]
impl<U: TokenUser<Id = i64>> ManageTokens for SqlTokenStore<U> {
    async fn issue(&self, user: &U, ttl: Option<Duration>) -> Result<Token, StoreError> {
        let token = Token::generate();
        let now = SystemTime::now();
        let expires_at = super::issued_expiry(self.sliding, now, ttl).map(unix_millis);
        let sql = &self.tables.issue;
        let (id, digest, created) = (token.id().to_string(), token.digest().to_vec(), unix_millis(now));
        let user_id = user.id();
        on_pool!(self.pool, pool => {
            let query = sqlx::query(sql).bind(id).bind(digest).bind(user_id).bind(created).bind(expires_at);
            query.execute(pool).await.map_err(store_error)?;
        });
        Ok(token)
    }

    async fn revoke(&self, token: &Token) -> Result<bool, StoreError> {
        let sql = &self.tables.revoke;
        let (id, digest) = (token.id().to_string(), token.digest().to_vec());
        let deleted = on_pool!(self.pool, pool => {
            sqlx::query(sql).bind(id).bind(digest).execute(pool).await.map_err(store_error)?.rows_affected()
        });
        Ok(deleted > 0)
    }

    async fn revoke_user(&self, id: &UserId<Self>) -> Result<u64, StoreError> {
        self.execute_with(&self.tables.revoke_user, *id).await
    }

    async fn lock_out(&self, id: &UserId<Self>) -> Result<(), StoreError> {
        self.set_active(*id, false).await
    }

    async fn let_in(&self, id: &UserId<Self>) -> Result<(), StoreError> {
        self.set_active(*id, true).await
    }

    async fn purge_expired(&self) -> Result<u64, StoreError> {
        let now = unix_millis(SystemTime::now());
        self.execute_with(&self.tables.purge_tickets, now).await?;
        self.execute_with(&self.tables.purge_tokens, now).await
    }
}

/// Tickets in the table beside the tokens (see [`SqlTokenStore::migrate`]):
/// every process over the database redeems them, each exactly once
/// (`DELETE ... RETURNING`).
#[async_trait]
impl<U: TokenUser<Id = i64>> TicketStore for SqlTokenStore<U> {
    async fn put_ticket(
        &self,
        digest: &[u8; DIGEST_LEN],
        record: &[u8],
        expires_at: SystemTime,
    ) -> Result<(), StoreError> {
        let sql = &self.tables.put_ticket;
        let (digest, record, expires_at) = (digest.to_vec(), record.to_vec(), unix_millis(expires_at));
        on_pool!(self.pool, pool => {
            sqlx::query(sql).bind(digest).bind(record).bind(expires_at).execute(pool).await.map_err(store_error)?;
        });
        Ok(())
    }

    async fn take_ticket(&self, digest: &[u8; DIGEST_LEN]) -> Result<Option<Vec<u8>>, StoreError> {
        let sql = &self.tables.take_ticket;
        let row: Option<(Vec<u8>, i64)> = on_pool!(self.pool, pool => {
            sqlx::query_as(sql).bind(digest.to_vec()).fetch_optional(pool).await.map_err(store_error)?
        });
        let now = unix_millis(SystemTime::now());
        Ok(row.filter(|(_, expires_at)| *expires_at > now).map(|(record, _)| record))
    }
}

#[async_trait]
impl<U: TokenUser<Id = i64>> TokenStore for SqlTokenStore<U> {
    type User = U;

    async fn authenticate(&self, token: &Token) -> Result<Option<Authenticated<U>>, StoreError> {
        let id = token.id().to_string();
        let found = match &self.pool {
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(pool, decode) => {
                let rows = self.readers.fetch_all(pool, &self.tables.lookup, id).await.map_err(store_error)?;
                pick(&rows, *decode, token)?
            }
            #[cfg(feature = "postgres")]
            Pool::Postgres(pool, decode) => {
                let rows = sqlx::query(&self.tables.lookup).bind(id).fetch_all(pool).await.map_err(store_error)?;
                pick(&rows, *decode, token)?
            }
        };
        let Some((found, extend)) = settle(found, self.sliding, SystemTime::now()) else {
            return Ok(None);
        };
        if let Some(at) = extend {
            // Never shortens: of two nodes extending at once, the later expiry stays.
            let (id, digest) = (token.id().to_string(), token.digest().to_vec());
            on_pool!(self.pool, pool => {
                let query = sqlx::query(&self.tables.extend).bind(at).bind(id).bind(digest);
                query.execute(pool).await.map_err(store_error)?;
            });
        }
        Ok(Some(found))
    }

    async fn is_locked_out(&self, token: &Token) -> Result<bool, StoreError> {
        let Some(sql) = &self.tables.locked else { return Ok(false) };
        let id = token.id().to_string();
        let rows: Vec<(Vec<u8>, Option<i64>)> = on_pool!(self.pool, pool => {
            sqlx::query_as(sql).bind(id).fetch_all(pool).await.map_err(store_error)?
        });
        Ok(super::table::locked_row(rows, token, SystemTime::now()))
    }
}

/// The row of `token` among those sharing its id.
fn pick<U, R>(rows: &[R], decode: Decode<R, U>, token: &Token) -> Result<Found<U>, StoreError>
where
    R: Row,
    for<'r> &'r str: sqlx::ColumnIndex<R>,
    for<'r> Vec<u8>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<i64>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    for row in rows {
        let digest: Vec<u8> = row.try_get("ws_token_digest").map_err(store_error)?;
        if is_token_row(&digest, token) {
            let expires_at: Option<i64> = row.try_get("ws_token_expires_at").map_err(store_error)?;
            let created_at: i64 = row.try_get("ws_token_created_at").map_err(store_error)?;
            return Ok(found(decode(row).map_err(store_error)?, expires_at, created_at));
        }
    }
    Ok(None)
}

/// Sorts sqlx errors into "cannot reach the database" and "the database said no".
fn store_error(error: sqlx::Error) -> StoreError {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => {
            StoreError::unavailable(error)
        }
        other => StoreError::backend(other),
    }
}
