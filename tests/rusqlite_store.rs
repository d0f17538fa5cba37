//! `RusqliteTokenStore` over real SQLite files: what sets it apart from
//! `SqlTokenStore` (the shared conformance suite covers the rest): the two
//! read each other's tables, a lookup that meets a lock waits off the calling
//! thread, and errors are sorted into outage and refusal.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::{Connection, SqliteConnection, SqlitePool};
use ws_token_auth::store::ManageTokens;
use ws_token_auth::store::rusqlite::{Error as RowError, Row};
use ws_token_auth::store::{RusqliteTokenStore, RusqliteUser, SqlTokenStore, UsersTable};
use ws_token_auth::{StoreError, Token, TokenStore, TokenUser};

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
struct ChatUser {
    id: i64,
    username: String,
    is_staff: bool,
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

/// Reads a column the users table does not have.
#[derive(Debug, Clone)]
struct Misread;

impl TokenUser for Misread {
    type Id = i64;
    fn id(&self) -> i64 {
        1
    }
}

impl RusqliteUser for Misread {
    fn from_row(row: &Row<'_>) -> Result<Self, RowError> {
        row.get::<_, String>("no_such_column").map(|_| Self)
    }
}

fn alice() -> ChatUser {
    ChatUser { id: 1, username: "alice".into(), is_staff: false }
}

/// A new SQLite file holding the users table, in `journal` mode, and a sqlx
/// pool over it.
async fn database(journal: &str) -> (PathBuf, SqlitePool) {
    let file = std::env::temp_dir().join(format!("rusqlite-{}.db", &Token::generate().expose_secret()[..12]));
    let pool = SqlitePool::connect(&format!("sqlite://{}?mode=rwc", file.display())).await.unwrap();
    sqlx::raw_sql(&format!(
        "PRAGMA journal_mode={journal};
         CREATE TABLE users (id INTEGER PRIMARY KEY, username TEXT NOT NULL, is_staff BOOLEAN NOT NULL,
                             is_active BOOLEAN NOT NULL);
         INSERT INTO users VALUES (1, 'alice', FALSE, TRUE), (2, 'bob', TRUE, TRUE);"
    ))
    .execute(&pool)
    .await
    .unwrap();
    (file, pool)
}

fn users() -> UsersTable {
    UsersTable::new("users").unwrap().active_column("is_active").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_and_writes_the_same_tables_as_the_sqlx_store() {
    let (file, pool) = database("WAL").await;
    let inline = RusqliteTokenStore::<ChatUser>::new(&file, users());
    let sqlx = SqlTokenStore::<ChatUser>::new(pool, users());
    inline.migrate().await.unwrap();
    sqlx.migrate().await.unwrap(); // the same schema: nothing to add

    let by_sqlx = sqlx.issue(&alice(), None).await.unwrap();
    assert_eq!(inline.authenticate(&by_sqlx).await.unwrap().map(|found| found.user), Some(alice()));
    let bob = ChatUser { id: 2, username: "bob".into(), is_staff: true };
    let by_inline = inline.issue(&bob, Some(Duration::from_secs(60))).await.unwrap();
    let found = sqlx.authenticate(&by_inline).await.unwrap().expect("the sqlx store reads it");
    assert_eq!(found.user, bob);
    assert!(found.expires_at.is_some());

    assert!(sqlx.revoke(&by_inline).await.unwrap());
    assert!(inline.authenticate(&by_inline).await.unwrap().is_none(), "revoked through the other store");
    inline.lock_out(&1).await.unwrap();
    assert!(sqlx.authenticate(&by_sqlx).await.unwrap().is_none(), "locked out through the other store");
}

/// A row with the token's id but another digest is not the token's, in
/// either SQL store (the id is no secret; the digest decides).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_with_the_token_s_id_and_another_digest_authenticates_nobody() {
    let (file, pool) = database("WAL").await;
    let inline = RusqliteTokenStore::<ChatUser>::new(&file, users());
    inline.migrate().await.unwrap();
    let token = Token::generate();
    let mut other = token.digest().to_vec();
    other[0] ^= 1;
    sqlx::query("INSERT INTO ws_auth_tokens (token_id, digest, user_id, created_at) VALUES ($1, $2, 1, 0)")
        .bind(token.id().to_string())
        .bind(other)
        .execute(&pool)
        .await
        .unwrap();
    assert!(inline.authenticate(&token).await.unwrap().is_none());
    let sqlx = SqlTokenStore::<ChatUser>::new(pool, users());
    assert!(sqlx.authenticate(&token).await.unwrap().is_none());
}

/// A lookup that meets a lock moves off the calling thread: on a runtime of
/// one thread, another task keeps running while it waits, and it answers once
/// the lock is gone.
#[tokio::test(flavor = "current_thread")]
async fn a_lookup_that_meets_a_lock_waits_off_the_calling_thread() {
    let (file, _pool) = database("DELETE").await; // rollback journal: a writer's lock stops readers
    let store = RusqliteTokenStore::<ChatUser>::new(&file, users());
    store.migrate().await.unwrap();
    let token = store.issue(&alice(), None).await.unwrap();
    assert!(store.authenticate(&token).await.unwrap().is_some(), "a reader connection is open and warm");

    let mut locker = SqliteConnection::connect(&format!("sqlite://{}", file.display())).await.unwrap();
    sqlx::raw_sql("BEGIN EXCLUSIVE").execute(&mut locker).await.unwrap();
    // The longest the runtime's only thread went without running the ticker.
    let longest_gap = Arc::new(Mutex::new(Duration::ZERO));
    let ticker = tokio::spawn({
        let longest_gap = Arc::clone(&longest_gap);
        async move {
            let mut last = Instant::now();
            loop {
                tokio::time::sleep(Duration::from_millis(5)).await;
                let gap = last.elapsed();
                let mut longest = longest_gap.lock().unwrap();
                *longest = (*longest).max(gap);
                last = Instant::now();
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(20)).await; // the ticker is running
    let release = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        sqlx::raw_sql("COMMIT").execute(&mut locker).await.unwrap();
    };
    let (found, ()) = tokio::join!(store.authenticate(&token), release);
    ticker.abort();
    assert_eq!(found.unwrap().map(|found| found.user), Some(alice()), "answered once the lock was gone");
    // Waiting on the calling thread would stop it for the store's busy wait (5 s).
    let longest_gap = *longest_gap.lock().unwrap();
    assert!(longest_gap < Duration::from_secs(1), "the runtime's only thread stopped for {longest_gap:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_connection_is_set_up_before_use_and_a_failed_setup_fails_the_call() {
    let (file, _pool) = database("WAL").await;
    let opened = Arc::new(AtomicUsize::new(0));
    let store = RusqliteTokenStore::<ChatUser>::new(&file, users()).on_connect({
        let opened = Arc::clone(&opened);
        move |db| {
            opened.fetch_add(1, Ordering::SeqCst);
            db.pragma_update(None, "synchronous", "NORMAL")
        }
    });
    store.migrate().await.unwrap(); // the writer
    let token = store.issue(&alice(), None).await.unwrap();
    assert_eq!(opened.load(Ordering::SeqCst), 1, "one writer, kept");
    assert!(store.authenticate(&token).await.unwrap().is_some());
    assert!(store.authenticate(&token).await.unwrap().is_some());
    let after_lookups = opened.load(Ordering::SeqCst);
    assert!((2..=3).contains(&after_lookups), "a reader or two, kept: {after_lookups}");

    let refusing = RusqliteTokenStore::<ChatUser>::new(&file, users())
        .on_connect(|db| db.execute_batch("PRAGMA no_such_thing; SELECT * FROM no_such_table"));
    assert!(matches!(refusing.authenticate(&token).await, Err(StoreError::Backend(_))), "never an answer");
    assert!(matches!(refusing.issue(&alice(), None).await, Err(StoreError::Backend(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_file_or_a_closed_store_is_an_outage_and_a_bad_row_a_backend_error() {
    let nowhere = std::env::temp_dir().join("no-such-directory-here").join("app.db");
    let store = RusqliteTokenStore::<ChatUser>::new(&nowhere, users());
    let token = Token::generate();
    assert!(matches!(store.authenticate(&token).await, Err(StoreError::Unavailable(_))));
    assert!(matches!(store.issue(&alice(), None).await, Err(StoreError::Unavailable(_))));

    let (file, _pool) = database("WAL").await;
    let good = RusqliteTokenStore::<ChatUser>::new(&file, users());
    good.migrate().await.unwrap();
    let token = good.issue(&alice(), None).await.unwrap();
    let misread = RusqliteTokenStore::<Misread>::new(&file, users());
    let error = misread.authenticate(&token).await.expect_err("the user cannot be read");
    assert!(matches!(error, StoreError::Backend(_)), "{error:?}");
    assert!(!format!("{error:?}").contains(token.expose_secret()));
    assert!(!format!("{misread:?}").contains(token.expose_secret()));
    assert!(misread.authenticate(&Token::generate()).await.unwrap().is_none(), "an unknown token is no error");

    good.close();
    assert!(matches!(good.authenticate(&token).await, Err(StoreError::Unavailable(_))), "closed: an outage");
    assert!(matches!(good.revoke(&token).await, Err(StoreError::Unavailable(_))));
    assert!(misread.clone().authenticate(&Token::generate()).await.is_ok(), "another store on the file is open");
}
