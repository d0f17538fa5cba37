//! The example's database: users (argon2 password hashes), rooms, and the
//! crate's `SqlTokenStore` table, in SQLite (default) or PostgreSQL.

use std::str::FromStr;
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng};
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use ws_token_auth::store::{SqlTokenStore, UsersTable};
use ws_token_auth::{ManageTokens, TokenUser};

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

/// A user as the chat sees it; read by `SqlTokenStore` from `chat_users`.
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
    pub tokens: SqlTokenStore<ChatUser>,
}

impl Db {
    /// Opens `url` (`sqlite://FILE` or `postgres://...`), creating the SQLite
    /// file, the schema and the two rooms where missing.
    pub async fn open(url: &str) -> Result<Self, Error> {
        let pool = if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(5));
            // No ping before each query: a file connection does not go stale,
            // and a ping is one more round trip to the connection's thread
            // (45 µs a query instead of 68 here; token lookups use connections of
            // their own, see SqlTokenStore).
            let pool =
                SqlitePoolOptions::new().max_connections(8).test_before_acquire(false).connect_with(options).await?;
            sqlx::raw_sql(SQLITE_SCHEMA).execute(&pool).await?;
            sqlx::raw_sql(ROOMS_SCHEMA).execute(&pool).await?;
            Pool::Sqlite(pool)
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
            Pool::Postgres(pool)
        } else {
            return Err(format!("unsupported database URL {url:?}: use sqlite://FILE or postgres://...").into());
        };
        let users = UsersTable::new("chat_users")?.active_column("is_active")?;
        let tokens = match &pool {
            Pool::Sqlite(p) => SqlTokenStore::new(p.clone(), users),
            Pool::Postgres(p) => SqlTokenStore::new(p.clone(), users),
        };
        tokens.migrate().await?;
        Ok(Self { pool, tokens })
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
        Ok(self.tokens.issue(&user, ttl).await?)
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
