//! The tables of the SQL stores: names checked once, and every statement the
//! stores run, written once for `SqlTokenStore` (sqlx) and
//! `RusqliteTokenStore` (rusqlite), which keep the same tables and so can be
//! swapped on one database file.
//!
//! Every statement uses `$1`-style placeholders, bound by position: the same
//! text serves PostgreSQL and SQLite (where `$1` is parameter 1 too).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use subtle::ConstantTimeEq;

use super::{Authenticated, SlidingExpiry, StoreError};
use crate::token::Token;

/// An SQL identifier was refused: only `[A-Za-z_][A-Za-z0-9_]*` (at most 63
/// bytes) is accepted, so names can be put into queries safely.
///
/// ```
/// use ws_token_auth::store::UsersTable;
/// let refused = UsersTable::new("users; DROP TABLE users").unwrap_err();
/// assert!(refused.to_string().starts_with("invalid SQL identifier"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid SQL identifier {0:?}: use letters, digits and `_`, not starting with a digit, at most 63 bytes")]
pub struct InvalidIdentifier(String);

fn identifier(name: &str) -> Result<String, InvalidIdentifier> {
    let mut bytes = name.bytes();
    let ok = name.len() <= 63
        && bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok { Ok(name.to_owned()) } else { Err(InvalidIdentifier(name.to_owned())) }
}

/// Where the app's users live: the table, its id column (an integer), and
/// optionally a boolean column that must be true for a user to log in.
///
/// ```
/// use ws_token_auth::store::UsersTable;
/// let users = UsersTable::new("auth_user")?.active_column("is_active")?;
/// # let _ = users;
/// # Ok::<(), ws_token_auth::store::InvalidIdentifier>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsersTable {
    table: String,
    id: String,
    active: Option<String>,
}

impl UsersTable {
    /// The users table `table`, id column `id`, no activity column.
    ///
    /// # Errors
    /// [`InvalidIdentifier`] if `table` is not a plain SQL identifier.
    ///
    /// ```
    /// # use ws_token_auth::store::UsersTable;
    /// assert!(UsersTable::new("users").is_ok());
    /// assert!(UsersTable::new("1users").is_err());
    /// ```
    pub fn new(table: &str) -> Result<Self, InvalidIdentifier> {
        Ok(Self { table: identifier(table)?, id: "id".to_owned(), active: None })
    }

    /// Sets the id column (default `id`).
    ///
    /// # Errors
    /// [`InvalidIdentifier`] if `column` is not a plain SQL identifier.
    ///
    /// ```
    /// # use ws_token_auth::store::UsersTable;
    /// let users = UsersTable::new("members")?.id_column("member_id")?;
    /// # let _ = users;
    /// # Ok::<(), ws_token_auth::store::InvalidIdentifier>(())
    /// ```
    pub fn id_column(mut self, column: &str) -> Result<Self, InvalidIdentifier> {
        self.id = identifier(column)?;
        Ok(self)
    }

    /// Sets a boolean column that must be true for the user to authenticate.
    ///
    /// # Errors
    /// [`InvalidIdentifier`] if `column` is not a plain SQL identifier.
    ///
    /// ```
    /// # use ws_token_auth::store::UsersTable;
    /// assert!(UsersTable::new("users")?.active_column("is active").is_err());
    /// # Ok::<(), ws_token_auth::store::InvalidIdentifier>(())
    /// ```
    pub fn active_column(mut self, column: &str) -> Result<Self, InvalidIdentifier> {
        self.active = Some(identifier(column)?);
        Ok(self)
    }
}

/// The default name of the SQL stores' table.
pub const DEFAULT_TOKENS_TABLE: &str = "ws_auth_tokens";

/// The two tables of a store (its tokens, their tickets) and the users table
/// it joins, with every statement the store runs on them.
#[derive(Debug, Clone)]
pub(crate) struct Tables {
    users: UsersTable,
    tokens: String,
    /// The token's rows with their users: the user's columns, then
    /// `ws_token_digest`, `ws_token_expires_at`, `ws_token_created_at`.
    pub(crate) lookup: String,
    pub(crate) issue: String,
    pub(crate) revoke: String,
    pub(crate) revoke_user: String,
    /// `$1` the new expiry, `$2` the token id, `$3` the digest; never shortens.
    pub(crate) extend: String,
    pub(crate) purge_tokens: String,
    pub(crate) purge_tickets: String,
    pub(crate) put_ticket: String,
    /// Deletes the ticket and returns its `record, expires_at`.
    pub(crate) take_ticket: String,
    /// The `digest, expires_at` of the token's rows whose user is locked out
    /// (`$1` the token id); none without an activity column.
    pub(crate) locked: Option<String>,
}

impl Tables {
    pub(crate) fn new(users: UsersTable) -> Self {
        Self::named(users, DEFAULT_TOKENS_TABLE.to_owned())
    }

    fn named(users: UsersTable, tokens: String) -> Self {
        let tickets = format!("{tokens}_tickets");
        let UsersTable { table, id, active } = &users;
        let only_active = active.as_ref().map(|column| format!(" AND u.{column}")).unwrap_or_default();
        Self {
            lookup: format!(
                "SELECT u.*, t.digest AS ws_token_digest, t.expires_at AS ws_token_expires_at, \
                 t.created_at AS ws_token_created_at \
                 FROM {tokens} t JOIN {table} u ON u.{id} = t.user_id \
                 WHERE t.token_id = $1{only_active}"
            ),
            issue: format!(
                "INSERT INTO {tokens} (token_id, digest, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)"
            ),
            revoke: format!("DELETE FROM {tokens} WHERE token_id = $1 AND digest = $2"),
            revoke_user: format!("DELETE FROM {tokens} WHERE user_id = $1"),
            extend: format!(
                "UPDATE {tokens} SET expires_at = $1 WHERE token_id = $2 AND digest = $3 AND expires_at < $1"
            ),
            purge_tokens: format!("DELETE FROM {tokens} WHERE expires_at IS NOT NULL AND expires_at <= $1"),
            purge_tickets: format!("DELETE FROM {tickets} WHERE expires_at <= $1"),
            put_ticket: format!("INSERT INTO {tickets} (digest, record, expires_at) VALUES ($1, $2, $3)"),
            take_ticket: format!("DELETE FROM {tickets} WHERE digest = $1 RETURNING record, expires_at"),
            locked: active.as_ref().map(|column| {
                format!(
                    "SELECT t.digest, t.expires_at FROM {tokens} t JOIN {table} u ON u.{id} = t.user_id \
                     WHERE t.token_id = $1 AND NOT u.{column}"
                )
            }),
            users,
            tokens,
        }
    }

    /// The same users, tokens in the table `name` (tickets in `name_tickets`).
    pub(crate) fn with_tokens_table(self, name: &str) -> Result<Self, InvalidIdentifier> {
        identifier(&format!("{name}_tickets")).map_err(|_| InvalidIdentifier(name.to_owned()))?;
        Ok(Self::named(self.users, identifier(name)?))
    }

    pub(crate) fn tokens(&self) -> &str {
        &self.tokens
    }

    /// `$1` the activity (a boolean), `$2` the user's id.
    pub(crate) fn set_active(&self) -> Result<String, StoreError> {
        let UsersTable { table, id, active } = &self.users;
        let column = active.as_ref().ok_or(StoreError::Unsupported("lock users out without an activity column"))?;
        Ok(format!("UPDATE {table} SET {column} = $1 WHERE {id} = $2"))
    }

    /// The migrations (`tokens` and `tickets` as in `migrations/`), with this
    /// store's table names.
    pub(crate) fn schema(&self, tokens: &str, tickets: &str) -> String {
        let tickets = tickets.replace("{tickets}", &format!("{}_tickets", self.tokens));
        format!("{}\n{tickets}", tokens.replace("{tokens}", &self.tokens))
    }
}

/// How many connections an SQL store keeps for its token lookups: one per
/// core, 2 to 8.
#[cfg(any(feature = "sqlite", feature = "rusqlite"))]
pub(crate) fn lookup_connections() -> usize {
    std::thread::available_parallelism().map_or(2, usize::from).clamp(2, 8)
}

/// A token's row as a store found it: its answer and when it was issued.
pub(crate) type Found<U> = Option<(Authenticated<U>, SystemTime)>;

/// Whether the row holding `digest` is `token`'s. Rows are looked up by the
/// token's id, which is no secret; the digest decides, compared in constant
/// time.
pub(crate) fn is_token_row(digest: &[u8], token: &Token) -> bool {
    bool::from(digest.ct_eq(token.digest()))
}

/// Whether one of the rows `(digest, expires_at)` that [`Tables::locked`]
/// found is `token`'s, unexpired at `now`: its user is locked out.
pub(crate) fn locked_row(
    rows: impl IntoIterator<Item = (Vec<u8>, Option<i64>)>,
    token: &Token,
    now: SystemTime,
) -> bool {
    let now = unix_millis(now);
    rows.into_iter().any(|(digest, expires_at)| is_token_row(&digest, token) && expires_at.is_none_or(|at| at > now))
}

/// The answer of `token`'s row: its user, and its `expires_at` and
/// `created_at` columns as stored.
pub(crate) fn found<U>(user: U, expires_at: Option<i64>, created_at: i64) -> Found<U> {
    let answer = Authenticated::new(user).with_expiry(expires_at.map(from_unix_millis));
    Some((answer, from_unix_millis(created_at)))
}

/// What a store answers for the row it found (the answer and the token's
/// issue time) at `now`: nothing for an expired token; with a sliding
/// expiry, the new expiry to write (in unix milliseconds), already in the
/// answer as it will be stored.
pub(crate) fn settle<U>(
    found: Found<U>,
    sliding: Option<SlidingExpiry>,
    now: SystemTime,
) -> Option<(Authenticated<U>, Option<i64>)> {
    let (mut found, issued_at) = found.filter(|(found, _)| !found.is_expired_at(now))?;
    let extend = super::extension(sliding, now, issued_at, found.expires_at).map(unix_millis);
    if let Some(at) = extend {
        found.expires_at = Some(from_unix_millis(at));
    }
    Some((found, extend))
}

/// How the SQL stores keep a time: unix milliseconds.
pub(crate) fn unix_millis(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

pub(crate) fn from_unix_millis(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_and_every_statement_names_the_tables() {
        let users = UsersTable::new("people").unwrap().id_column("pid").unwrap().active_column("ok").unwrap();
        let tables = Tables::new(users).with_tokens_table("mine").unwrap();
        assert_eq!(tables.tokens(), "mine");
        assert!(tables.lookup.contains("FROM mine t JOIN people u ON u.pid = t.user_id"));
        assert!(tables.lookup.ends_with("AND u.ok"));
        assert!(tables.take_ticket.contains("FROM mine_tickets"));
        assert_eq!(tables.set_active().unwrap(), "UPDATE people SET ok = $1 WHERE pid = $2");
        let plain = Tables::new(UsersTable::new("people").unwrap());
        assert!(matches!(plain.set_active(), Err(StoreError::Unsupported(_))));
        assert!(plain.lookup.ends_with("t.token_id = $1"));
        let long = "t".repeat(56);
        assert!(plain.clone().with_tokens_table(&long).is_err(), "its tickets table would pass 63 bytes");
        assert!(plain.with_tokens_table("a-b").is_err());
    }

    #[test]
    fn only_the_token_s_own_digest_makes_its_row() {
        let token = Token::generate();
        assert!(is_token_row(token.digest(), &token));
        let mut other = *token.digest();
        other[31] ^= 1;
        assert!(!is_token_row(&other, &token), "same id, another digest");
        assert!(!is_token_row(&token.digest()[..31], &token), "a shorter digest");
        assert!(!is_token_row(Token::generate().digest(), &token));
    }
}
