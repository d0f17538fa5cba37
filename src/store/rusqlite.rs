//! [`RusqliteTokenStore`]: tokens in an SQLite file, looked up on the calling
//! thread (feature `rusqlite`).
//!
//! The same tables as [`SqlTokenStore`](super::SqlTokenStore) (the same
//! `migrations/sqlite`, the same digests, the same join with the app's users
//! table), so either store reads what the other wrote; what differs is how
//! a lookup runs. sqlx runs every SQLite query on a thread of the
//! connection's own, a round trip of some 25 µs that is most of a lookup;
//! this store runs the lookup where it is called, a few microseconds when the
//! database's pages are in memory (BENCHMARKS.md has the figures). Writes
//! (issue, revoke, tickets, a sliding expiry's extension) run on tokio's
//! blocking pool, one connection at a time.
//!
//! A lookup never waits for a lock on the calling thread: if SQLite answers
//! busy (a writer in rollback-journal mode, a checkpoint), the lookup moves to
//! the blocking pool and waits there. Use WAL (`PRAGMA journal_mode=WAL`,
//! which the file keeps) so that readers and writers do not block each other.
//! The store never changes the database's journal mode itself.
//!
//! The user type reads itself from a row of the users table: implement
//! [`RusqliteUser`].
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use ws_token_auth::store::rusqlite::{Error, Row, RusqliteTokenStore, RusqliteUser};
//! use ws_token_auth::store::UsersTable;
//! use ws_token_auth::TokenUser;
//! use ws_token_auth::store::ManageTokens;
//!
//! #[derive(Clone)]
//! struct User { id: i64, username: String }
//!
//! impl TokenUser for User {
//!     type Id = i64;
//!     fn id(&self) -> i64 { self.id }
//! }
//!
//! impl RusqliteUser for User {
//!     fn from_row(row: &Row<'_>) -> Result<Self, Error> {
//!         Ok(Self { id: row.get("id")?, username: row.get("username")? })
//!     }
//! }
//!
//! let users = UsersTable::new("users")?.active_column("is_active")?;
//! let store = RusqliteTokenStore::<User>::new("app.db", users);
//! store.migrate().await?;
//! let alice = User { id: 1, username: "alice".into() };
//! let token = store.issue(&alice, None).await?; // send it to alice
//! # let _ = token;
//! # Ok(()) }
//! ```

use std::fmt;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use rusqlite::{ErrorCode, OpenFlags, params};

pub use rusqlite::{Connection, Error, Row};

use super::table::{Found, Tables, found, is_token_row, lookup_connections, settle, unix_millis};
use super::{Authenticated, ManageTokens, SlidingExpiry, StoreError, TokenStore, TokenUser, UserId, UsersTable};
use crate::store::tickets::TicketStore;
use crate::token::{DIGEST_LEN, Token};

/// A user type [`RusqliteTokenStore`] can read from a row of the users table
/// (the row holds every column of the users table, by name).
///
/// ```
/// use ws_token_auth::store::rusqlite::{Error, Row, RusqliteUser};
/// use ws_token_auth::TokenUser;
///
/// #[derive(Clone)]
/// struct User { id: i64, username: String, is_staff: bool }
///
/// impl TokenUser for User {
///     type Id = i64;
///     fn id(&self) -> i64 { self.id }
/// }
///
/// impl RusqliteUser for User {
///     fn from_row(row: &Row<'_>) -> Result<Self, Error> {
///         Ok(Self { id: row.get("id")?, username: row.get("username")?, is_staff: row.get("is_staff")? })
///     }
/// }
/// ```
pub trait RusqliteUser: TokenUser<Id = i64> {
    /// The user in `row`. An error is the store's
    /// [`StoreError::Backend`]: the handshake is refused with 503.
    ///
    /// # Errors
    /// Whatever reading a column gives (a missing column, a wrong type).
    fn from_row(row: &Row<'_>) -> Result<Self, Error>;
}

/// How long a write (or a lookup moved off the calling thread) waits for a
/// lock before the store answers [`StoreError::Unavailable`].
const BUSY_WAIT: Duration = Duration::from_secs(5);

/// A [`TokenStore`] over an SQLite file that looks tokens up on the calling
/// thread. See the [module docs](self).
pub struct RusqliteTokenStore<U> {
    tables: Arc<Tables>,
    sliding: Option<SlidingExpiry>,
    connections: Arc<Connections>,
    _user: PhantomData<fn() -> U>,
}

impl<U> Clone for RusqliteTokenStore<U> {
    fn clone(&self) -> Self {
        Self {
            tables: Arc::clone(&self.tables),
            sliding: self.sliding,
            connections: Arc::clone(&self.connections),
            _user: PhantomData,
        }
    }
}

impl<U> fmt::Debug for RusqliteTokenStore<U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RusqliteTokenStore")
            .field("path", &self.connections.path)
            .field("table", &self.tables.tokens())
            .field("sliding", &self.sliding)
            .finish_non_exhaustive()
    }
}

impl<U: RusqliteUser> RusqliteTokenStore<U> {
    /// A store over the SQLite file at `path` (created if missing; a `file:`
    /// URI works too), authenticating tokens as rows of `users`. Opens
    /// nothing yet: connections are opened on first use and kept.
    ///
    /// ```
    /// # use ws_token_auth::store::{UsersTable, rusqlite::RusqliteTokenStore};
    /// # #[derive(Clone)] struct User { id: i64 }
    /// # impl ws_token_auth::TokenUser for User { type Id = i64; fn id(&self) -> i64 { self.id } }
    /// # impl ws_token_auth::store::rusqlite::RusqliteUser for User {
    /// #     fn from_row(row: &ws_token_auth::store::rusqlite::Row<'_>) -> Result<Self, ws_token_auth::store::rusqlite::Error> { Ok(Self { id: row.get("id")? }) }
    /// # }
    /// let store = RusqliteTokenStore::<User>::new("app.db", UsersTable::new("users")?);
    /// assert_eq!(store.table_name(), "ws_auth_tokens");
    /// # Ok::<(), ws_token_auth::store::InvalidIdentifier>(())
    /// ```
    pub fn new(path: impl AsRef<Path>, users: UsersTable) -> Self {
        Self {
            tables: Arc::new(Tables::new(users)),
            sliding: None,
            connections: Arc::new(Connections::new(path.as_ref().to_owned(), None)),
            _user: PhantomData,
        }
    }

    /// Runs `setup` on every connection the store opens, before its first
    /// use: per-connection settings such as `PRAGMA synchronous` (SQLite's
    /// default, `FULL`, syncs every write to disk; `NORMAL` in WAL mode is
    /// faster and can lose the last writes, a revocation among them, on a
    /// power cut), `cache_size` or `mmap_size`. A setup that fails fails the
    /// call that opened the connection.
    ///
    /// ```
    /// # use ws_token_auth::store::{UsersTable, rusqlite::RusqliteTokenStore};
    /// # #[derive(Clone)] struct User { id: i64 }
    /// # impl ws_token_auth::TokenUser for User { type Id = i64; fn id(&self) -> i64 { self.id } }
    /// # impl ws_token_auth::store::rusqlite::RusqliteUser for User {
    /// #     fn from_row(row: &ws_token_auth::store::rusqlite::Row<'_>) -> Result<Self, ws_token_auth::store::rusqlite::Error> { Ok(Self { id: row.get("id")? }) }
    /// # }
    /// let store = RusqliteTokenStore::<User>::new("app.db", UsersTable::new("users")?)
    ///     .on_connect(|db| db.pragma_update(None, "synchronous", "NORMAL"));
    /// # let _ = store;
    /// # Ok::<(), ws_token_auth::store::InvalidIdentifier>(())
    /// ```
    #[must_use]
    pub fn on_connect(mut self, setup: impl Fn(&Connection) -> Result<(), Error> + Send + Sync + 'static) -> Self {
        let path = self.connections.path.clone();
        self.connections = Arc::new(Connections::new(path, Some(Box::new(setup))));
        self
    }

    /// Gives the tokens this store issues a sliding expiry; see
    /// [`SlidingExpiry`]. An extension is one `UPDATE` of the token's row, at
    /// most once per [`SlidingExpiry::every`].
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use ws_token_auth::store::{SlidingExpiry, UsersTable, rusqlite::RusqliteTokenStore};
    /// # #[derive(Clone)] struct User { id: i64 }
    /// # impl ws_token_auth::TokenUser for User { type Id = i64; fn id(&self) -> i64 { self.id } }
    /// # impl ws_token_auth::store::rusqlite::RusqliteUser for User {
    /// #     fn from_row(row: &ws_token_auth::store::rusqlite::Row<'_>) -> Result<Self, ws_token_auth::store::rusqlite::Error> { Ok(Self { id: row.get("id")? }) }
    /// # }
    /// let week = Duration::from_secs(7 * 86_400);
    /// let store = RusqliteTokenStore::<User>::new("app.db", UsersTable::new("users")?)
    ///     .sliding(SlidingExpiry::new(week, 13 * week));
    /// # let _ = store;
    /// # Ok::<(), ws_token_auth::store::InvalidIdentifier>(())
    /// ```
    #[must_use]
    pub fn sliding(mut self, sliding: SlidingExpiry) -> Self {
        self.sliding = Some(sliding);
        self
    }

    /// Sets the name of the store's table (default `ws_auth_tokens`); its
    /// connect tickets live in the table of that name followed by `_tickets`.
    ///
    /// # Errors
    /// [`InvalidIdentifier`](super::InvalidIdentifier) if `name` (or `name`
    /// followed by `_tickets`) is not a plain SQL identifier.
    ///
    /// ```
    /// # use ws_token_auth::store::{UsersTable, rusqlite::RusqliteTokenStore};
    /// # #[derive(Clone)] struct User { id: i64 }
    /// # impl ws_token_auth::TokenUser for User { type Id = i64; fn id(&self) -> i64 { self.id } }
    /// # impl ws_token_auth::store::rusqlite::RusqliteUser for User {
    /// #     fn from_row(row: &ws_token_auth::store::rusqlite::Row<'_>) -> Result<Self, ws_token_auth::store::rusqlite::Error> { Ok(Self { id: row.get("id")? }) }
    /// # }
    /// let store = RusqliteTokenStore::<User>::new("app.db", UsersTable::new("users")?).with_table_name("chat_tokens")?;
    /// assert_eq!(store.table_name(), "chat_tokens");
    /// # Ok::<(), ws_token_auth::store::InvalidIdentifier>(())
    /// ```
    pub fn with_table_name(mut self, name: &str) -> Result<Self, super::InvalidIdentifier> {
        self.tables = Arc::new(Tables::clone(&self.tables).with_tokens_table(name)?);
        Ok(self)
    }

    /// The name of the store's table.
    ///
    /// ```
    /// # use ws_token_auth::store::{UsersTable, rusqlite::RusqliteTokenStore};
    /// # #[derive(Clone)] struct User { id: i64 }
    /// # impl ws_token_auth::TokenUser for User { type Id = i64; fn id(&self) -> i64 { self.id } }
    /// # impl ws_token_auth::store::rusqlite::RusqliteUser for User {
    /// #     fn from_row(row: &ws_token_auth::store::rusqlite::Row<'_>) -> Result<Self, ws_token_auth::store::rusqlite::Error> { Ok(Self { id: row.get("id")? }) }
    /// # }
    /// let store = RusqliteTokenStore::<User>::new("app.db", UsersTable::new("users")?);
    /// assert_eq!(store.table_name(), ws_token_auth::store::DEFAULT_TOKENS_TABLE);
    /// # Ok::<(), ws_token_auth::store::InvalidIdentifier>(())
    /// ```
    #[must_use]
    pub fn table_name(&self) -> &str {
        self.tables.tokens()
    }

    /// Creates the store's tables and index if they are missing (the same
    /// schema as `SqlTokenStore`'s). Safe to call from several processes.
    ///
    /// # Errors
    /// [`StoreError`] if the database refuses.
    ///
    /// ```no_run
    /// # use ws_token_auth::store::{UsersTable, rusqlite::RusqliteTokenStore};
    /// # #[derive(Clone)] struct User { id: i64 }
    /// # impl ws_token_auth::TokenUser for User { type Id = i64; fn id(&self) -> i64 { self.id } }
    /// # impl ws_token_auth::store::rusqlite::RusqliteUser for User {
    /// #     fn from_row(row: &ws_token_auth::store::rusqlite::Row<'_>) -> Result<Self, ws_token_auth::store::rusqlite::Error> { Ok(Self { id: row.get("id")? }) }
    /// # }
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = RusqliteTokenStore::<User>::new("app.db", UsersTable::new("users")?);
    /// store.migrate().await?;
    /// # Ok(()) }
    /// ```
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let schema = self.tables.schema(
            include_str!("../../migrations/sqlite/0001_tokens.sql"),
            include_str!("../../migrations/sqlite/0002_tickets.sql"),
        );
        self.write(move |db, _| db.execute_batch(&schema)).await
    }

    /// Closes the store's connections (waiting for none: a lookup or write
    /// under way finishes on its own); from now on, every call answers
    /// [`StoreError::Unavailable`]. For a graceful shutdown, as
    /// `sqlx::Pool::close` is for the other SQL store.
    ///
    /// ```
    /// # use ws_token_auth::store::{UsersTable, rusqlite::RusqliteTokenStore};
    /// # use ws_token_auth::{StoreError, Token, TokenStore};
    /// # #[derive(Clone)] struct User { id: i64 }
    /// # impl ws_token_auth::TokenUser for User { type Id = i64; fn id(&self) -> i64 { self.id } }
    /// # impl ws_token_auth::store::rusqlite::RusqliteUser for User {
    /// #     fn from_row(row: &ws_token_auth::store::rusqlite::Row<'_>) -> Result<Self, ws_token_auth::store::rusqlite::Error> { Ok(Self { id: row.get("id")? }) }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = RusqliteTokenStore::<User>::new(std::env::temp_dir().join("closed.db"), UsersTable::new("users")?);
    /// store.close();
    /// assert!(matches!(store.authenticate(&Token::generate()).await, Err(StoreError::Unavailable(_))));
    /// # Ok(()) }
    /// ```
    pub fn close(&self) {
        self.connections.closed.store(true, Ordering::Release);
        for slot in self.connections.readers.iter().chain([&self.connections.writer]) {
            drop(lock(slot).take());
        }
    }

    /// Runs `write` on the writing connection, on tokio's blocking pool.
    async fn write<T: Send + 'static>(
        &self,
        write: impl FnOnce(&Connection, &Tables) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (connections, tables) = (Arc::clone(&self.connections), Arc::clone(&self.tables));
        let job = tokio::task::spawn_blocking(move || {
            connections.check_open()?;
            let mut slot = lock(&connections.writer);
            let db = match slot.take() {
                Some(db) => db,
                None => connections.open(BUSY_WAIT)?,
            };
            let done = write(&db, &tables)?; // a failed connection is dropped, not kept
            *slot = Some(db);
            Ok::<_, Failure>(done)
        });
        job.await.map_err(StoreError::unavailable)?.map_err(store_error)
    }

    /// Runs `sql` with `value` bound to `$1`; returns the rows it changed.
    async fn execute_with(&self, sql: fn(&Tables) -> &str, value: i64) -> Result<u64, StoreError> {
        self.write(move |db, tables| Ok(db.prepare_cached(sql(tables))?.execute([value])? as u64)).await
    }

    async fn set_active(&self, id: i64, active: bool) -> Result<(), StoreError> {
        let sql = self.tables.set_active()?;
        self.write(move |db, _| db.execute(&sql, params![active, id]).map(drop)).await
    }
}

/// The store's connections to its file: a few for lookups on the calling
/// thread, one for writes (and for lookups that had to wait) on the blocking
/// pool.
struct Connections {
    path: PathBuf,
    setup: Option<Setup>,
    /// Lookups on the calling thread; as many as cores (2 to 8), each held
    /// for one lookup of a few microseconds.
    readers: Box<[Mutex<Option<Connection>>]>,
    next: AtomicUsize,
    writer: Mutex<Option<Connection>>,
    closed: AtomicBool,
}

/// What [`RusqliteTokenStore::on_connect`] runs on each new connection.
type Setup = Box<dyn Fn(&Connection) -> Result<(), Error> + Send + Sync>;

impl Connections {
    fn new(path: PathBuf, setup: Option<Setup>) -> Self {
        let count = lookup_connections();
        Self {
            path,
            setup,
            readers: (0..count).map(|_| Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
            writer: Mutex::new(None),
            closed: AtomicBool::new(false),
        }
    }

    /// [`Closed`] once [`RusqliteTokenStore::close`] was called.
    fn check_open(&self) -> Result<(), Closed> {
        if self.closed.load(Ordering::Acquire) { Err(Closed) } else { Ok(()) }
    }

    /// A connection that waits at most `busy` for a lock.
    fn open(&self, busy: Duration) -> Result<Connection, Failure> {
        self.check_open()?;
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let db = Connection::open_with_flags(&self.path, flags)?;
        db.busy_timeout(busy)?;
        if let Some(setup) = &self.setup {
            setup(&db)?;
        }
        Ok(db)
    }

    /// A free reader (else the next in turn, which frees in microseconds).
    fn reader(&self) -> MutexGuard<'_, Option<Connection>> {
        let first = self.next.fetch_add(1, Ordering::Relaxed);
        let count = self.readers.len();
        (0..count)
            .find_map(|i| self.readers[(first + i) % count].try_lock().ok())
            .unwrap_or_else(|| lock(&self.readers[first % count]))
    }
}

/// The store was closed.
#[derive(Debug, thiserror::Error)]
#[error("the token store is closed")]
struct Closed;

/// Why a call on a connection failed: the store was closed, or SQLite said
/// so.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error(transparent)]
    Closed(#[from] Closed),
    #[error(transparent)]
    Sqlite(#[from] Error),
}

/// A poisoned slot holds a connection or nothing, both fine to go on with.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The row of `token` among those sharing its id, on `db`.
fn find<U: RusqliteUser>(db: &Connection, sql: &str, token: &Token) -> Result<Found<U>, Error> {
    let mut statement = db.prepare_cached(sql)?;
    let mut rows = statement.query([token.id().to_string()])?;
    while let Some(row) = rows.next()? {
        if is_token_row(row.get_ref("ws_token_digest")?.as_blob()?, token) {
            let expires_at: Option<i64> = row.get("ws_token_expires_at")?;
            let created_at: i64 = row.get("ws_token_created_at")?;
            return Ok(found(U::from_row(row)?, expires_at, created_at));
        }
    }
    Ok(None)
}

fn is_busy(error: &Error) -> bool {
    matches!(error.sqlite_error_code(), Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked))
}

/// Sorts failures into "cannot reach the database" (a closed store, a lock
/// held too long, a file that cannot be opened or read) and "the database
/// said no".
fn store_error(failure: impl Into<Failure>) -> StoreError {
    let error = match failure.into() {
        Failure::Closed(closed) => return StoreError::unavailable(closed),
        Failure::Sqlite(error) => error,
    };
    let unreachable = is_busy(&error)
        || matches!(
            error.sqlite_error_code(),
            Some(
                ErrorCode::CannotOpen | ErrorCode::SystemIoFailure | ErrorCode::PermissionDenied | ErrorCode::DiskFull
            )
        );
    if unreachable { StoreError::unavailable(error) } else { StoreError::backend(error) }
}

#[async_trait]
impl<U: RusqliteUser> TokenStore for RusqliteTokenStore<U> {
    type User = U;

    async fn authenticate(&self, token: &Token) -> Result<Option<Authenticated<U>>, StoreError> {
        self.connections.check_open().map_err(store_error)?;
        let here = {
            let mut slot = self.connections.reader();
            let db = match slot.take() {
                Some(db) => db,
                None => self.connections.open(Duration::ZERO).map_err(store_error)?,
            };
            let found = find::<U>(&db, &self.tables.lookup, token);
            // Kept unless it failed for another reason than a lock.
            if found.as_ref().is_ok() || found.as_ref().is_err_and(is_busy) {
                *slot = Some(db);
            }
            found
        };
        let found = match here {
            Ok(found) => found,
            Err(error) if is_busy(&error) => {
                let token = token.clone();
                self.write(move |db, tables| find::<U>(db, &tables.lookup, &token)).await?
            }
            Err(error) => return Err(store_error(error)),
        };
        let Some((found, extend)) = settle(found, self.sliding, SystemTime::now()) else {
            return Ok(None);
        };
        if let Some(at) = extend {
            // Never shortens: of two nodes extending at once, the later expiry stays.
            let (id, digest) = (token.id().to_string(), token.digest().to_vec());
            self.write(move |db, tables| db.prepare_cached(&tables.extend)?.execute(params![at, id, digest])).await?;
        }
        Ok(Some(found))
    }

    async fn is_locked_out(&self, token: &Token) -> Result<bool, StoreError> {
        if self.tables.locked.is_none() {
            return Ok(false);
        }
        let id = token.id().to_string();
        let rows = self
            .write(move |db, tables| {
                let sql = tables.locked.as_deref().unwrap_or_default();
                let mut statement = db.prepare_cached(sql)?;
                let rows = statement.query_map(params![id], |row| Ok((row.get(0)?, row.get(1)?)))?;
                rows.collect::<Result<Vec<(Vec<u8>, Option<i64>)>, Error>>()
            })
            .await?;
        Ok(super::table::locked_row(rows, token, SystemTime::now()))
    }
}

#[async_trait]
impl<U: RusqliteUser> ManageTokens for RusqliteTokenStore<U> {
    async fn issue(&self, user: &U, ttl: Option<Duration>) -> Result<Token, StoreError> {
        let token = Token::generate();
        let now = SystemTime::now();
        let expires_at = super::issued_expiry(self.sliding, now, ttl).map(unix_millis);
        let (id, digest, user_id) = (token.id().to_string(), token.digest().to_vec(), user.id());
        let created = unix_millis(now);
        self.write(move |db, tables| {
            db.prepare_cached(&tables.issue)?.execute(params![id, digest, user_id, created, expires_at])
        })
        .await?;
        Ok(token)
    }

    async fn revoke(&self, token: &Token) -> Result<bool, StoreError> {
        let (id, digest) = (token.id().to_string(), token.digest().to_vec());
        let deleted = self.write(move |db, tables| db.prepare_cached(&tables.revoke)?.execute(params![id, digest]));
        Ok(deleted.await? > 0)
    }

    async fn revoke_user(&self, id: &UserId<Self>) -> Result<u64, StoreError> {
        self.execute_with(|tables| &tables.revoke_user, *id).await
    }

    async fn lock_out(&self, id: &UserId<Self>) -> Result<(), StoreError> {
        self.set_active(*id, false).await
    }

    async fn let_in(&self, id: &UserId<Self>) -> Result<(), StoreError> {
        self.set_active(*id, true).await
    }

    async fn purge_expired(&self) -> Result<u64, StoreError> {
        let now = unix_millis(SystemTime::now());
        self.execute_with(|tables| &tables.purge_tickets, now).await?;
        self.execute_with(|tables| &tables.purge_tokens, now).await
    }
}

/// Tickets in the table beside the tokens: every process over the file
/// redeems them, each exactly once (`DELETE ... RETURNING`).
#[async_trait]
impl<U: RusqliteUser> TicketStore for RusqliteTokenStore<U> {
    async fn put_ticket(
        &self,
        digest: &[u8; DIGEST_LEN],
        record: &[u8],
        expires_at: SystemTime,
    ) -> Result<(), StoreError> {
        let (digest, record, expires_at) = (digest.to_vec(), record.to_vec(), unix_millis(expires_at));
        let put = move |db: &Connection, tables: &Tables| {
            db.prepare_cached(&tables.put_ticket)?.execute(params![digest, record, expires_at]).map(drop)
        };
        self.write(put).await
    }

    async fn take_ticket(&self, digest: &[u8; DIGEST_LEN]) -> Result<Option<Vec<u8>>, StoreError> {
        let digest = digest.to_vec();
        let taken = self
            .write(move |db, tables| {
                let mut statement = db.prepare_cached(&tables.take_ticket)?;
                let mut rows = statement.query([digest])?;
                let Some(row) = rows.next()? else { return Ok(None) };
                Ok(Some((row.get::<_, Vec<u8>>(0)?, row.get::<_, i64>(1)?)))
            })
            .await?;
        let now = unix_millis(SystemTime::now());
        Ok(taken.filter(|(_, expires_at)| *expires_at > now).map(|(record, _)| record))
    }
}
