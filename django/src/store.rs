//! [`DjangoStore`]: a read-only [`TokenStore`] over a Django app's own
//! PostgreSQL tables.

use std::sync::{Arc, OnceLock};
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
/// let user = DjangoUser { id: "7".into(), username: "alice".into(), is_staff: false };
/// assert_eq!(user.id(), "7");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DjangoUser {
    /// The primary key (`auth_user.id`) as Django writes it in a session's
    /// `_auth_user_id`: `"7"` for Django's integer key, the text of a UUID
    /// for a custom user model's `UUIDField` key.
    pub id: String,
    /// `auth_user.username` (or the configured column).
    pub username: String,
    /// `auth_user.is_staff`.
    pub is_staff: bool,
}

impl TokenUser for DjangoUser {
    type Id = String;
    fn id(&self) -> String {
        self.id.clone()
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
/// A `CachedTokenStore` (ws-token-auth's feature `cache`) in front
/// of it stays consistent with the triggers: a deleted token or session, a
/// deactivation or a deleted user drops what it names, and a password change
/// (`revalidate <id>`) has every node ask about the user's cached answers and
/// sockets again. Without the triggers, the lifecycle's periodic
/// revalidation bounds the staleness, the cache's included.
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
    tables: DjangoTables,
    /// Django's `AUTHENTICATION_BACKENDS`, when set: a session logged in by
    /// another backend is refused.
    backends: Option<Arc<[String]>>,
    drf: String,
    session: String,
    /// The user by primary key, cast to the key column's own type (read from
    /// the catalog at the first lookup, so that the key's index serves it).
    user: Arc<OnceLock<String>>,
}

/// What a credential resolves to before the activity check.
struct Resolved {
    user: DjangoUser,
    active: bool,
    expires_at: Option<SystemTime>,
}

type UserRow = (String, String, bool, bool, String);

impl DjangoStore {
    /// A store over `pool` (the Django app's database) reading `tables`,
    /// verifying sessions with `keys`.
    #[must_use]
    pub fn new(pool: PgPool, tables: DjangoTables, keys: SecretKeys) -> Self {
        let columns = tables.user_columns("u");
        let DjangoTables { users, id, tokens, sessions, .. } = &tables;
        let drf = format!("SELECT {columns} FROM {tokens} t JOIN {users} u ON u.{id} = t.user_id WHERE t.key = $1");
        let session = format!(
            "SELECT session_data, (EXTRACT(EPOCH FROM expire_date) * 1000)::bigint FROM {sessions} \
             WHERE session_key = $1 AND expire_date > now()"
        );
        Self { pool, keys, tables, backends: None, drf, session, user: Arc::default() }
    }

    /// Accepts only sessions logged in through one of `backends`, as Django
    /// does with its `AUTHENTICATION_BACKENDS` setting (a session whose
    /// `_auth_user_backend` is not listed is anonymous there): give it the
    /// same list. Without it, the backend a session names is not checked.
    /// DRF tokens name no backend and are not concerned.
    ///
    /// ```no_run
    /// # fn run(store: ws_token_auth_django::DjangoStore) {
    /// let store = store.authentication_backends(["django.contrib.auth.backends.ModelBackend"]);
    /// # let _ = store; }
    /// ```
    #[must_use]
    pub fn authentication_backends<I, B>(mut self, backends: I) -> Self
    where
        I: IntoIterator<Item = B>,
        B: Into<String>,
    {
        self.backends = Some(backends.into_iter().map(Into::into).collect());
        self
    }

    /// The query of a user by primary key, made once the key column's type
    /// is known.
    async fn user_query(&self) -> Result<&str, StoreError> {
        if let Some(query) = self.user.get() {
            return Ok(query);
        }
        let DjangoTables { users, id, .. } = &self.tables;
        let found: Option<(String,)> = sqlx::query_as(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute \
             WHERE attrelid = to_regclass($1) AND attname = $2 AND NOT attisdropped",
        )
        .bind(users)
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(store_error)?;
        let Some((key_type,)) = found else {
            return Err(StoreError::backend(MissingColumn(format!("{users}.{id}"))));
        };
        // From the catalog, and still checked: it goes into the SQL text.
        if !key_type.bytes().all(|b| b.is_ascii_alphanumeric() || b" _(),\"".contains(&b)) {
            return Err(StoreError::backend(MissingColumn(format!("{users}.{id} of type {key_type:?}"))));
        }
        let columns = self.tables.user_columns("u");
        let query = format!("SELECT {columns} FROM {users} u WHERE u.{id} = CAST($1::text AS {key_type})");
        Ok(self.user.get_or_init(|| query))
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
        self.user_query().await?;
        let (columns, users) = (self.tables.user_columns("u"), &self.tables.users);
        let every_column = format!("SELECT {columns} FROM {users} u WHERE false");
        sqlx::query(&every_column).fetch_optional(&self.pool).await.map_err(StoreError::backend)?;
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
            match sqlx::query_as(self.user_query().await?).bind(user_id).fetch_optional(&self.pool).await {
                Ok(row) => row,
                // Signed, but not a key of this table's type: no such user.
                Err(sqlx::Error::Database(error)) if matches!(error.code().as_deref(), Some("22P02" | "22003")) => None,
                Err(error) => return Err(store_error(error)),
            };
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
    fn session_user(&self, data: &str, token: &Token) -> Option<(String, String)> {
        let object = match unsign_object(data, SESSION_SALT, &self.keys) {
            Ok(object) => object,
            Err(error) => {
                tracing::debug!(target: "ws_token_auth_django", token = %token.id(), %error, "session refused");
                return None;
            }
        };
        if let Some(backends) = &self.backends {
            let backend = object.get("_auth_user_backend").and_then(serde_json::Value::as_str);
            if !backend.is_some_and(|backend| backends.iter().any(|listed| listed == backend)) {
                tracing::debug!(target: "ws_token_auth_django", token = %token.id(), "session of an unlisted backend");
                return None;
            }
        }
        let id = object.get("_auth_user_id")?.as_str()?.to_owned();
        let hash = object.get("_auth_user_hash")?.as_str()?.to_owned();
        Some((id, hash))
    }
}

fn resolved((id, username, is_staff, active, _password): UserRow, expires_at: Option<SystemTime>) -> Resolved {
    Resolved { user: DjangoUser { id, username, is_staff }, active, expires_at }
}

/// Django's users table has no such column (or one of a type this store
/// cannot name).
#[derive(Debug, thiserror::Error)]
#[error("no usable primary key column {0}")]
struct MissingColumn(String);

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
