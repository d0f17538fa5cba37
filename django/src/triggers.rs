//! Django's changes as they happen: PostgreSQL triggers on Django's tables
//! that `NOTIFY` the channel every node's [`PgBus`] listens on.
//!
//! | Django does | the trigger sends | sockets |
//! | --- | --- | --- |
//! | a DRF token deleted or regenerated (logout, `Token.objects.filter(..).delete()`) | `token revoked <fingerprint>` | that token's, 4401 |
//! | a session deleted (`logout()`, `flush()`, `clearsessions`) | `token revoked <fingerprint>` | that session's, 4401 |
//! | `is_active` set to false | `user access_lost <id>` | the user's, 4403 |
//! | `is_active` set to true | `restore <id>` | none; no cached refusal outlives it |
//! | `password` changed | `revalidate <id>` | the user's sessions, 4401 (DRF tokens outlive it, as in Django); the user's cached answers asked again |
//! | a user deleted | `user revoked <id>` | the user's, 4401 |
//!
//! A notification never carries a token, a session key or a password hash:
//! a fingerprint is the first 8 bytes of the credential's SHA-256, as
//! [`TokenId`](ws_token_auth::TokenId) is. Triggers fire on commit only
//! (`NOTIFY` is transactional), whichever program changed the row.
//!
//! [`PgBus`]: ws_token_auth::live::postgres::PgBus

use sqlx::PgPool;

use crate::tables::DjangoTables;

/// The channel the triggers notify by default, and the one to give
/// [`PgBus`](ws_token_auth::live::postgres::PgBus).
pub const CHANNEL: &str = "ws_token_auth_django";

/// Installs (or replaces) the triggers on `tables` that notify `channel`.
/// Idempotent, and safe to run from several processes at once; needs the
/// right to create functions and triggers on Django's tables (without it,
/// revalidation alone bounds how long a change takes to reach the sockets).
///
/// # Errors
/// The database's refusal (a missing table, no privilege).
///
/// ```no_run
/// # async fn run(pool: sqlx::PgPool) -> Result<(), sqlx::Error> {
/// use ws_token_auth_django::{CHANNEL, DjangoTables, install_triggers};
/// install_triggers(&pool, &DjangoTables::default(), CHANNEL).await?;
/// # Ok(()) }
/// ```
pub async fn install_triggers(pool: &PgPool, tables: &DjangoTables, channel: &str) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(7303)").execute(&mut *tx).await?;
    sqlx::raw_sql(&sql(tables, channel)).execute(&mut *tx).await?;
    tx.commit().await
}

/// The SQL [`install_triggers`] runs (for a DBA to read or run by hand).
///
/// ```
/// use ws_token_auth_django::{CHANNEL, DjangoTables, triggers::sql};
/// let text = sql(&DjangoTables::default(), CHANNEL);
/// assert!(text.contains("CREATE TRIGGER ws_token_auth_session_changed"));
/// ```
#[must_use]
pub fn sql(tables: &DjangoTables, channel: &str) -> String {
    let DjangoTables { users, id, is_active, password, tokens, sessions, .. } = tables;
    let channel = channel.replace('\'', "''");
    // Each function lives in its table's schema: two Django apps in one
    // database (or two test schemas) keep their own.
    let (token_fn, session_fn, user_fn, print_fn) = (
        in_schema_of(tokens, "ws_token_auth_token_changed"),
        in_schema_of(sessions, "ws_token_auth_session_changed"),
        in_schema_of(users, "ws_token_auth_user_changed"),
        in_schema_of(tokens, "ws_token_auth_fingerprint"),
    );
    let session_print = in_schema_of(sessions, "ws_token_auth_fingerprint");
    format!(
        r#"
CREATE OR REPLACE FUNCTION {print_fn}(credential text) RETURNS text
    LANGUAGE sql IMMUTABLE AS $$ SELECT left(encode(sha256(convert_to(credential, 'UTF8')), 'hex'), 16) $$;
CREATE OR REPLACE FUNCTION {session_print}(credential text) RETURNS text
    LANGUAGE sql IMMUTABLE AS $$ SELECT left(encode(sha256(convert_to(credential, 'UTF8')), 'hex'), 16) $$;

CREATE OR REPLACE FUNCTION {token_fn}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR NEW.key IS DISTINCT FROM OLD.key THEN
        PERFORM pg_notify(TG_ARGV[0], 'token revoked ' || {print_fn}(OLD.key));
    END IF;
    RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS ws_token_auth_token_changed ON {tokens};
CREATE TRIGGER ws_token_auth_token_changed AFTER DELETE OR UPDATE ON {tokens}
    FOR EACH ROW EXECUTE FUNCTION {token_fn}('{channel}');

CREATE OR REPLACE FUNCTION {session_fn}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(TG_ARGV[0], 'token revoked ' || {session_print}(OLD.session_key));
    RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS ws_token_auth_session_changed ON {sessions};
CREATE TRIGGER ws_token_auth_session_changed AFTER DELETE ON {sessions}
    FOR EACH ROW EXECUTE FUNCTION {session_fn}('{channel}');

CREATE OR REPLACE FUNCTION {user_fn}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify(TG_ARGV[0], 'user revoked ' || OLD.{id}::text);
        RETURN NULL;
    END IF;
    IF OLD.{is_active} AND NOT NEW.{is_active} THEN
        PERFORM pg_notify(TG_ARGV[0], 'user access_lost ' || NEW.{id}::text);
    ELSIF NEW.{is_active} AND NOT OLD.{is_active} THEN
        PERFORM pg_notify(TG_ARGV[0], 'restore ' || NEW.{id}::text);
    END IF;
    IF NEW.{password} IS DISTINCT FROM OLD.{password} THEN
        PERFORM pg_notify(TG_ARGV[0], 'revalidate ' || NEW.{id}::text);
    END IF;
    RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS ws_token_auth_user_changed ON {users};
CREATE TRIGGER ws_token_auth_user_changed AFTER DELETE OR UPDATE ON {users}
    FOR EACH ROW EXECUTE FUNCTION {user_fn}('{channel}');
"#
    )
}

/// `name` in the schema of `table` (`schema.table`), or unqualified.
fn in_schema_of(table: &str, name: &str) -> String {
    match table.split_once('.') {
        Some((schema, _)) => format!("{schema}.{name}"),
        None => name.to_owned(),
    }
}
