//! [`DjangoStore`]: a read-only [`TokenStore`] over a Django app's own
//! PostgreSQL tables.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use sqlx::PgPool;
use ws_token_auth::store::StoreError;
use ws_token_auth::{Authenticated, Token, TokenStore, TokenUser};

use crate::signing::{SecretKeys, session_hash_matches, unsign_object};
use crate::tables::DjangoTables;

/// The salt Django's database session backend signs its data with
/// (`"django.contrib.sessions." + SessionStore.__qualname__`).
pub const SESSION_SALT: &str = "django.contrib.sessions.SessionStore";

/// A Django user as the sockets see it.
///
/// ```
/// use ws_token_auth::TokenUser;
/// use ws_token_auth_django::DjangoUser;
///
/// let user = DjangoUser { id: 7, username: "alice".into(), is_staff: false };
/// assert_eq!(user.id(), 7);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DjangoUser {
    /// The primary key (`auth_user.id`).
    pub id: i64,
    /// `auth_user.username` (or the configured column).
    pub username: String,
    /// `auth_user.is_staff`.
    pub is_staff: bool,
}

impl TokenUser for DjangoUser {
    type Id = i64;
    fn id(&self) -> i64 {
        self.id
    }
}

/// Reads Django's users, DRF tokens and database sessions; never writes.
///
/// A credential of 40 lowercase hex digits is a DRF token
/// (`authtoken_token.key`, what `Token.generate_key` makes); anything else is
/// a session key (`django_session.session_key`, from the `sessionid` cookie).
/// A DRF token authenticates while its row exists and its user is active. A
/// session authenticates only if its row exists and has not expired, its data
/// carries a valid signature under one of the [`SecretKeys`], its
/// `_auth_user_id` names an active user, and its `_auth_user_hash` is that
/// user's current session auth hash (so a password change ends it, as in
/// Django). A session's socket expires with the session's `expire_date`.
///
/// Forged, malformed or foreign data is "no such credential" (401), never an
/// error; only the database failing is a [`StoreError`] (503). Issuing and
/// revoking stay with Django: this store does not implement
/// [`ManageTokens`](ws_token_auth::store::ManageTokens), and a
/// [`Lifecycle`](ws_token_auth::Lifecycle) over it watches sockets, closes
/// them on Django's changes ([`install_triggers`](crate::install_triggers))
/// and revalidates.
///
/// ```no_run
/// use std::sync::Arc;
/// use ws_token_auth::Lifecycle;
/// use ws_token_auth::live::postgres::PgBus;
/// use ws_token_auth_django::{DjangoStore, DjangoTables, signing::SecretKeys};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let pool = sqlx::PgPool::connect("postgres://postgres@127.0.0.1/django_app").await?;
/// let keys = SecretKeys::new(std::env::var("DJANGO_SECRET_KEY")?)?;
/// let store = DjangoStore::new(pool.clone(), DjangoTables::default(), keys);
/// let lifecycle = Lifecycle::new(Arc::new(store)).with_bus(PgBus::new(pool, ws_token_auth_django::CHANNEL));
/// # let _ = lifecycle;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct DjangoStore {
    pool: PgPool,
    keys: SecretKeys,
    drf: String,
    session: String,
    user: String,
}

/// What a credential resolves to before the activity check.
struct Resolved {
    user: DjangoUser,
    active: bool,
    expires_at: Option<SystemTime>,
}

type UserRow = (i64, String, bool, bool, String);

impl DjangoStore {
    /// A store over `pool` (the Django app's database) reading `tables`,
    /// verifying sessions with `keys`.
    #[must_use]
    pub fn new(pool: PgPool, tables: DjangoTables, keys: SecretKeys) -> Self {
        let columns = tables.user_columns("u");
        let DjangoTables { users, id, tokens, sessions, .. } = &tables;
        Self {
            pool,
            keys,
            drf: format!("SELECT {columns} FROM {tokens} t JOIN {users} u ON u.{id} = t.user_id WHERE t.key = $1"),
            session: format!(
                "SELECT session_data, (EXTRACT(EPOCH FROM expire_date) * 1000)::bigint FROM {sessions} \
                 WHERE session_key = $1 AND expire_date > now()"
            ),
            user: format!("SELECT {columns} FROM {users} u WHERE u.{id} = $1"),
        }
    }

    /// Checks that Django's tables are there and readable (for a server to
    /// refuse to start without them).
    ///
    /// # Errors
    /// [`StoreError`] naming what failed, e.g. a missing table.
    ///
    /// ```no_run
    /// # async fn run(store: ws_token_auth_django::DjangoStore) -> Result<(), ws_token_auth::StoreError> {
    /// store.check_tables().await?;
    /// # Ok(()) }
    /// ```
    pub async fn check_tables(&self) -> Result<(), StoreError> {
        let nobody = "0000000000000000000000000000000000000000";
        sqlx::query(&self.drf).bind(nobody).fetch_optional(&self.pool).await.map_err(StoreError::backend)?;
        sqlx::query(&self.session).bind(nobody).fetch_optional(&self.pool).await.map_err(StoreError::backend)?;
        sqlx::query(&self.user).bind(0_i64).fetch_optional(&self.pool).await.map_err(StoreError::backend)?;
        Ok(())
    }

    async fn resolve(&self, token: &Token) -> Result<Option<Resolved>, StoreError> {
        let secret = token.expose_secret();
        if is_drf_key(secret) {
            let row: Option<UserRow> =
                sqlx::query_as(&self.drf).bind(secret).fetch_optional(&self.pool).await.map_err(store_error)?;
            return Ok(row.map(|row| resolved(row, None)));
        }
        let row: Option<(String, i64)> =
            sqlx::query_as(&self.session).bind(secret).fetch_optional(&self.pool).await.map_err(store_error)?;
        let Some((data, expires_ms)) = row else { return Ok(None) };
        let Some((user_id, hash)) = self.session_user(&data, token) else { return Ok(None) };
        let row: Option<UserRow> =
            sqlx::query_as(&self.user).bind(user_id).fetch_optional(&self.pool).await.map_err(store_error)?;
        let Some(row) = row else { return Ok(None) };
        if !session_hash_matches(&hash, &row.4, &self.keys) {
            tracing::debug!(target: "ws_token_auth_django", token = %token.id(), "session of an older password");
            return Ok(None);
        }
        let expires_at = UNIX_EPOCH + Duration::from_millis(u64::try_from(expires_ms).unwrap_or(0));
        Ok(Some(resolved(row, Some(expires_at))))
    }

    /// The user id and auth hash a session's signed data names, if it is
    /// valid.
    fn session_user(&self, data: &str, token: &Token) -> Option<(i64, String)> {
        let object = match unsign_object(data, SESSION_SALT, &self.keys) {
            Ok(object) => object,
            Err(error) => {
                tracing::debug!(target: "ws_token_auth_django", token = %token.id(), %error, "session refused");
                return None;
            }
        };
        let id = object.get("_auth_user_id")?.as_str()?.parse().ok()?;
        let hash = object.get("_auth_user_hash")?.as_str()?.to_owned();
        Some((id, hash))
    }
}

fn resolved((id, username, is_staff, active, _password): UserRow, expires_at: Option<SystemTime>) -> Resolved {
    Resolved { user: DjangoUser { id, username, is_staff }, active, expires_at }
}

/// What DRF's `Token.generate_key` makes: 40 lowercase hex digits.
fn is_drf_key(secret: &str) -> bool {
    secret.len() == 40 && secret.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn store_error(error: sqlx::Error) -> StoreError {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => {
            StoreError::unavailable(error)
        }
        other => StoreError::backend(other),
    }
}

#[async_trait]
impl TokenStore for DjangoStore {
    type User = DjangoUser;

    async fn authenticate(&self, token: &Token) -> Result<Option<Authenticated<DjangoUser>>, StoreError> {
        Ok(self
            .resolve(token)
            .await?
            .filter(|found| found.active)
            .map(|found| Authenticated::new(found.user).with_expiry(found.expires_at)))
    }

    async fn is_locked_out(&self, token: &Token) -> Result<bool, StoreError> {
        Ok(self.resolve(token).await?.is_some_and(|found| !found.active))
    }
}
