//! The library's store conformance suite (`ws_token_auth::test_util`, feature
//! `test-util`) run from outside the library, against the app's own store
//! type (`db::Tokens`: whichever of the library's stores the database URL
//! picks, behind the app's enum), on SQLite and on the machine's PostgreSQL
//! (`DATABASE_URL`). Each row gets a fresh database (SQLite) or 40 users of
//! its own (PostgreSQL, shared with the other tests).

mod common;

use std::sync::Arc;

use multichat::db::{ChatUser, Db, Pool, Tokens};
use ws_token_auth::Token;
use ws_token_auth::test_util::{Subject, check_tickets, check_tokens};

/// Everything the token and ticket tables hold, as text.
async fn dump(pool: &Pool) -> String {
    let tokens = "SELECT digest, digest FROM ws_auth_tokens";
    let tickets = "SELECT digest, record FROM ws_auth_tokens_tickets";
    let mut rows: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    for sql in [tokens, tickets] {
        let found: Vec<(Vec<u8>, Vec<u8>)> = match pool {
            Pool::Sqlite(p) => sqlx::query_as(sql).fetch_all(p).await.unwrap(),
            Pool::Postgres(p) => sqlx::query_as(sql).fetch_all(p).await.unwrap(),
        };
        rows.extend(found);
    }
    rows.iter().map(|(a, b)| format!("{a:?} {b:?} {}\n", String::from_utf8_lossy(b))).collect()
}

async fn subject(url: &str) -> Subject<Tokens> {
    let db = Db::open(url).await.unwrap_or_else(|e| panic!("cannot open {url}: {e}"));
    let run = Token::generate().expose_secret()[..10].to_owned();
    let names: Vec<String> = (1..=40).map(|i| format!("suite-{run}-{i}")).collect();
    let users: Vec<ChatUser> = db.ensure_users(&names, "!").await.unwrap();
    let pool = db.pool.clone();
    Subject::new(Arc::new(db.tokens.clone()), users, move || {
        let pool = pool.clone();
        async move { dump(&pool).await }
    })
}

async fn sqlite() -> Subject<Tokens> {
    subject(&common::temp_sqlite("multichat-suite").0).await
}

/// A schema of its own in the machine's PostgreSQL: the rows count what
/// they purge, so no other test's tokens may share the tables.
async fn postgres() -> Subject<Tokens> {
    let url = std::env::var("DATABASE_URL").expect("DATABASE_URL must point at PostgreSQL (.ci/run sets it)");
    let schema = format!("suite_{}", Token::generate().id());
    let admin = sqlx::PgPool::connect(&url).await.unwrap_or_else(|e| panic!("cannot reach PostgreSQL at {url}: {e}"));
    sqlx::raw_sql(&format!("CREATE SCHEMA {schema}")).execute(&admin).await.unwrap();
    let separator = if url.contains('?') { '&' } else { '?' };
    subject(&format!("{url}{separator}options=-c%20search_path%3D{schema}")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_apps_store_on_sqlite_passes_the_librarys_suite() {
    check_tokens(sqlite).await;
    check_tickets(sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_apps_store_on_postgres_passes_the_librarys_suite() {
    check_tokens(postgres).await;
    check_tickets(postgres).await;
}
