//! The example's database: users (argon2 password hashes), rooms, and the
//! crate's token table, in SQLite (default) or PostgreSQL. Tokens are looked
//! up by `RusqliteTokenStore` on SQLite (on the calling thread) and by
//! `SqlTokenStore` on PostgreSQL.

use std::str::FromStr;
use std::time::{Duration, SystemTime};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng};
use async_trait::async_trait;
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use ws_token_auth::store::ManageTokens;
use ws_token_auth::store::rusqlite::{Error as RowError, Row};
use ws_token_auth::store::{RusqliteTokenStore, RusqliteUser, SqlTokenStore, UsersTable};
use ws_token_auth::ticket::TicketStore;
use ws_token_auth::{Authenticated, DIGEST_LEN, StoreError, Token, TokenStore, TokenUser};
use ws_token_auth_django::{DjangoStore, DjangoTables, DjangoUser, signing::SecretKeys};

/// Errors of the example's own code.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// The app's own database connection, for its own queries.
#[derive(Debug, Clone)]
pub enum Pool {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

/// Runs `$body` with `$pool` bound to the SQLite or the PostgreSQL pool.
macro_rules! with_pool {
    ($pool:expr, $p:ident => $body:expr) => {
        match $pool {
            Pool::Sqlite($p) => $body,
            Pool::Postgres($p) => $body,
        }
    };
}

/// A user as the chat sees it; read by the token store from `chat_users`.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ChatUser {
    pub id: i64,
    pub username: String,
    pub is_staff: bool,
}

impl TokenUser for ChatUser {
    type Id = i64;
    fn id(&self) -> i64 {
        self.id
    }
}

impl RusqliteUser for ChatUser {
    fn from_row(row: &Row<'_>) -> Result<Self, RowError> {
        Ok(Self { id: row.get("id")?, username: row.get("username")?, is_staff: row.get("is_staff")? })
    }
}

/// The app's token store: on SQLite the store that looks tokens up on the
/// calling thread, on PostgreSQL sqlx's. Either way the same tables. Beside a
/// Django app (`serve --django`), Django's users, DRF tokens and sessions,
/// read-only.
#[derive(Debug, Clone)]
pub enum Tokens {
    Sqlite(RusqliteTokenStore<ChatUser>),
    Postgres(SqlTokenStore<ChatUser>),
    Django(Box<BesideDjango>),
}

/// Django's credentials, and the app's own table for connect tickets.
#[derive(Debug, Clone)]
pub struct BesideDjango {
    pub django: DjangoStore,
    pub tickets: SqlTokenStore<ChatUser>,
}

/// Runs `$body` with `$store` bound to whichever store `$tokens` is; Django's
/// store manages nothing (Django does), but keeps tickets in the app's table.
macro_rules! with_store {
    ($tokens:expr, $store:ident => $body:expr) => {
        match $tokens {
            Tokens::Sqlite($store) => $body,
            Tokens::Postgres($store) => $body,
            Tokens::Django(_) => return Err(StoreError::Unsupported("manage Django's credentials (Django does)")),
        }
    };
}

/// The chat's rooms and tickets name users by an integer: Django's default
/// key. A custom user model keyed otherwise (a `UUIDField`) is not served.
impl TryFrom<DjangoUser> for ChatUser {
    type Error = StoreError;
    fn try_from(user: DjangoUser) -> Result<Self, StoreError> {
        let id = user.id.parse().map_err(|_| {
            StoreError::backend(std::io::Error::other("multichat serves Django users with integer primary keys only"))
        })?;
        Ok(Self { id, username: user.username, is_staff: user.is_staff })
    }
}

#[async_trait]
impl TokenStore for Tokens {
    type User = ChatUser;

    async fn authenticate(&self, token: &Token) -> Result<Option<Authenticated<ChatUser>>, StoreError> {
        match self {
            Tokens::Sqlite(store) => store.authenticate(token).await,
            Tokens::Postgres(store) => store.authenticate(token).await,
            Tokens::Django(beside) => match beside.django.authenticate(token).await? {
                Some(found) => {
                    let expires_at = found.expires_at;
                    Ok(Some(Authenticated::new(ChatUser::try_from(found.user)?).with_expiry(expires_at)))
                }
                None => Ok(None),
            },
        }
    }

    async fn is_locked_out(&self, token: &Token) -> Result<bool, StoreError> {
        match self {
            Tokens::Sqlite(store) => store.is_locked_out(token).await,
            Tokens::Postgres(store) => store.is_locked_out(token).await,
            Tokens::Django(beside) => beside.django.is_locked_out(token).await,
        }
    }
}

#[async_trait]
impl ManageTokens for Tokens {
    async fn issue(&self, user: &ChatUser, ttl: Option<Duration>) -> Result<Token, StoreError> {
        with_store!(self, store => store.issue(user, ttl).await)
    }
    async fn revoke(&self, token: &Token) -> Result<bool, StoreError> {
        with_store!(self, store => store.revoke(token).await)
    }
    async fn revoke_user(&self, id: &i64) -> Result<u64, StoreError> {
        with_store!(self, store => store.revoke_user(id).await)
    }
    async fn lock_out(&self, id: &i64) -> Result<(), StoreError> {
        with_store!(self, store => store.lock_out(id).await)
    }
    async fn let_in(&self, id: &i64) -> Result<(), StoreError> {
        with_store!(self, store => store.let_in(id).await)
    }
    async fn purge_expired(&self) -> Result<u64, StoreError> {
        match self {
            Tokens::Django(beside) => beside.tickets.purge_expired().await,
            other => with_store!(other, store => store.purge_expired().await),
        }
    }
}

#[async_trait]
impl TicketStore for Tokens {
    async fn put_ticket(
        &self,
        digest: &[u8; DIGEST_LEN],
        record: &[u8],
        expires_at: SystemTime,
    ) -> Result<(), StoreError> {
        match self {
            Tokens::Django(beside) => beside.tickets.put_ticket(digest, record, expires_at).await,
            other => with_store!(other, store => store.put_ticket(digest, record, expires_at).await),
        }
    }
    async fn take_ticket(&self, digest: &[u8; DIGEST_LEN]) -> Result<Option<Vec<u8>>, StoreError> {
        match self {
            Tokens::Django(beside) => beside.tickets.take_ticket(digest).await,
            other => with_store!(other, store => store.take_ticket(digest).await),
        }
    }
}

/// A room.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct RoomRow {
    pub id: i64,
    pub title: String,
    pub staff_only: bool,
}

/// A user's login data.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Login {
    pub id: i64,
    pub username: String,
    pub password_hash: String,
    pub is_active: bool,
    pub is_staff: bool,
}

impl Login {
    /// The user this login is, as the chat sees it.
    pub fn user(&self) -> ChatUser {
        ChatUser { id: self.id, username: self.username.clone(), is_staff: self.is_staff }
    }
}

const SQLITE_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS chat_users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    username TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    is_staff BOOLEAN NOT NULL DEFAULT FALSE,
    is_active BOOLEAN NOT NULL DEFAULT TRUE
);";

const POSTGRES_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS chat_users (
    id BIGSERIAL PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    is_staff BOOLEAN NOT NULL DEFAULT FALSE,
    is_active BOOLEAN NOT NULL DEFAULT TRUE
);";

const ROOMS_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS chat_rooms (
    id BIGINT PRIMARY KEY,
    title TEXT NOT NULL,
    staff_only BOOLEAN NOT NULL DEFAULT FALSE
);
INSERT INTO chat_rooms (id, title, staff_only) VALUES (1, 'General', FALSE), (2, 'Staff', TRUE)
ON CONFLICT (id) DO NOTHING;";

/// The database and the token store on it.
#[derive(Debug, Clone)]
pub struct Db {
    pub pool: Pool,
    pub tokens: Tokens,
}

impl Db {
    /// Opens `url` (`sqlite://FILE` or `postgres://...`), creating the SQLite
    /// file, the schema and the two rooms where missing.
    pub async fn open(url: &str) -> Result<Self, Error> {
        let users = UsersTable::new("chat_users")?.active_column("is_active")?;
        let (pool, tokens) = if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(5));
            let file = options.get_filename().to_owned();
            // No ping before each query: a file connection does not go stale,
            // and a ping is one more round trip to the connection's thread
            // (45 µs a query instead of 68 here).
            let pool =
                SqlitePoolOptions::new().max_connections(8).test_before_acquire(false).connect_with(options).await?;
            sqlx::raw_sql(SQLITE_SCHEMA).execute(&pool).await?;
            sqlx::raw_sql(ROOMS_SCHEMA).execute(&pool).await?;
            // The same file (in WAL mode, set above), token lookups on the
            // calling thread: a handshake that misses the cache waits a few
            // microseconds for SQLite instead of a round trip to sqlx's thread.
            // Its connections sync as the pool's do (NORMAL in WAL mode).
            let tokens = RusqliteTokenStore::<ChatUser>::new(file, users)
                .on_connect(|db| db.pragma_update(None, "synchronous", "NORMAL"));
            tokens.migrate().await?;
            (Pool::Sqlite(pool), Tokens::Sqlite(tokens))
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let pool =
                PgPoolOptions::new().max_connections(16).acquire_timeout(Duration::from_secs(3)).connect(url).await?;
            // Several servers may start at once: PostgreSQL's CREATE ... IF NOT
            // EXISTS races with itself, so the schema is made under a lock.
            let mut tx = pool.begin().await?;
            sqlx::query("SELECT pg_advisory_xact_lock(7301)").execute(&mut *tx).await?;
            sqlx::raw_sql(POSTGRES_SCHEMA).execute(&mut *tx).await?;
            sqlx::raw_sql(ROOMS_SCHEMA).execute(&mut *tx).await?;
            tx.commit().await?;
            let tokens = SqlTokenStore::<ChatUser>::new(pool.clone(), users);
            tokens.migrate().await?;
            (Pool::Postgres(pool), Tokens::Postgres(tokens))
        } else {
            return Err(format!("unsupported database URL {url:?}: use sqlite://FILE or postgres://...").into());
        };
        Ok(Self { pool, tokens })
    }

    /// Opens a Django app's PostgreSQL database at `url` for `serve --django`:
    /// the app's own tables (rooms, tickets) beside Django's, and Django's
    /// users, DRF tokens and sessions read from `tables` (never written),
    /// sessions verified with `keys`. Fails with a clear error when Django's
    /// tables are not there.
    pub async fn open_django(url: &str, tables: DjangoTables, keys: SecretKeys) -> Result<Self, Error> {
        if !(url.starts_with("postgres:") || url.starts_with("postgresql:")) {
            return Err(
                format!("--django needs the Django app's PostgreSQL database (postgres://...), not {url:?}").into()
            );
        }
        let mut db = Self::open(url).await?;
        let (Pool::Postgres(pool), Tokens::Postgres(tickets)) = (&db.pool, &db.tokens) else {
            unreachable!("a postgres:// URL opens PostgreSQL")
        };
        let django = DjangoStore::new(pool.clone(), tables.clone(), keys);
        if let Err(error) = django.check_tables().await {
            let mut why = error.to_string();
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                why = format!("{why}: {cause}");
                source = cause.source();
            }
            return Err(format!(
                "Django's tables ({tables}) are not there or not readable ({why}): is --database-url the Django \
                 app's database, migrated (python manage.py migrate, with rest_framework.authtoken installed)?"
            )
            .into());
        }
        db.tokens = Tokens::Django(Box::new(BesideDjango { django, tickets: tickets.clone() }));
        Ok(db)
    }

    /// Closes the pool and the token store's own connections: every later
    /// query fails as in an outage.
    pub async fn close(&self) {
        with_pool!(&self.pool, p => p.close().await);
        if let Tokens::Sqlite(store) = &self.tokens {
            store.close();
        }
    }

    /// Every room, by id.
    pub async fn rooms(&self) -> Result<Vec<RoomRow>, Error> {
        let sql = "SELECT id, title, staff_only FROM chat_rooms ORDER BY id";
        Ok(with_pool!(&self.pool, p => sqlx::query_as(sql).fetch_all(p).await)?)
    }

    /// How many users there are.
    pub async fn user_count(&self) -> Result<i64, Error> {
        let sql = "SELECT COUNT(*) FROM chat_users";
        let (n,): (i64,) = with_pool!(&self.pool, p => sqlx::query_as(sql).fetch_one(p).await)?;
        Ok(n)
    }

    /// Creates a user; fails if the name is taken.
    pub async fn create_user(&self, name: &str, password_hash: &str, staff: bool) -> Result<i64, Error> {
        let sql = "INSERT INTO chat_users (username, password_hash, is_staff) VALUES ($1, $2, $3) RETURNING id";
        let (id,): (i64,) = with_pool!(&self.pool, p => sqlx::query_as(sql)
            .bind(name).bind(password_hash).bind(staff).fetch_one(p).await)
        .map_err(|e| format!("cannot create user {name:?}: {e}"))?;
        Ok(id)
    }

    /// Creates the users that do not exist yet, in one transaction; returns
    /// every name's user.
    pub async fn ensure_users(&self, names: &[String], password_hash: &str) -> Result<Vec<ChatUser>, Error> {
        let insert =
            "INSERT INTO chat_users (username, password_hash) VALUES ($1, $2) ON CONFLICT (username) DO NOTHING";
        let select = "SELECT id, username, is_staff FROM chat_users WHERE username = $1";
        let mut users = Vec::with_capacity(names.len());
        with_pool!(&self.pool, p => {
            let mut tx = p.begin().await?;
            for name in names {
                sqlx::query(insert).bind(name).bind(password_hash).execute(&mut *tx).await?;
                users.push(sqlx::query_as(select).bind(name).fetch_one(&mut *tx).await?);
            }
            tx.commit().await?;
        });
        Ok(users)
    }

    /// A user's login data.
    pub async fn login(&self, name: &str) -> Result<Option<Login>, Error> {
        let sql = "SELECT id, username, password_hash, is_active, is_staff FROM chat_users WHERE username = $1";
        Ok(with_pool!(&self.pool, p => sqlx::query_as(sql).bind(name).fetch_optional(p).await)?)
    }

    /// A fresh token for the user with id `id`, valid for `ttl` or until revoked.
    pub async fn issue_token(&self, id: i64, ttl: Option<Duration>) -> Result<ws_token_auth::Token, Error> {
        let sql = "SELECT id, username, is_staff FROM chat_users WHERE id = $1";
        let user: Option<ChatUser> = with_pool!(&self.pool, p => sqlx::query_as(sql).bind(id).fetch_optional(p).await)?;
        let user = user.ok_or_else(|| format!("no user with id {id}"))?;
        Ok(self.lifecycle().issue(&user, ttl).await?)
    }

    /// A lifecycle over the app's tokens, for one-off commands (no sockets,
    /// no bus): what they issue, revoke or lock goes through it.
    pub fn lifecycle(&self) -> ws_token_auth::Lifecycle<Tokens> {
        ws_token_auth::Lifecycle::new(std::sync::Arc::new(self.tokens.clone()))
    }

    /// A user's id.
    pub async fn user_id(&self, name: &str) -> Result<Option<i64>, Error> {
        let sql = "SELECT id FROM chat_users WHERE username = $1";
        let row: Option<(i64,)> = with_pool!(&self.pool, p => sqlx::query_as(sql).bind(name).fetch_optional(p).await)?;
        Ok(row.map(|(id,)| id))
    }
}

/// Hashes a password with argon2id (slow by design: run it off the async runtime).
pub fn hash_password(password: &str) -> Result<String, Error> {
    let salt = SaltString::generate(&mut OsRng);
    Ok(Argon2::default().hash_password(password.as_bytes(), &salt).map_err(|e| e.to_string())?.to_string())
}

/// Checks a password against a stored hash; a malformed hash never matches.
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|hash| Argon2::default().verify_password(password.as_bytes(), &hash).is_ok())
}
