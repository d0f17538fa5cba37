//! `SqlTokenStore` over a real SQLite file and the machine's real PostgreSQL
//! (`DATABASE_URL`; the test fails when it cannot connect).

use std::time::Duration;

use ws_token_auth::store::ManageTokens;
use ws_token_auth::store::{SqlTokenStore, UsersTable};
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

fn user(id: i64, name: &str) -> ChatUser {
    ChatUser { id, username: name.into(), is_staff: false }
}

/// The test's own connection, for its own queries.
#[derive(Clone)]
enum SqlPool {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl SqlPool {
    fn store(&self, users: UsersTable) -> SqlTokenStore<ChatUser> {
        match self {
            Self::Sqlite(pool) => SqlTokenStore::new(pool.clone(), users),
            Self::Postgres(pool) => SqlTokenStore::new(pool.clone(), users),
        }
    }
}

/// A name no other test uses, for tables of our own.
fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", &Token::generate().expose_secret()[..12])
}

async fn exec(pool: &SqlPool, sql: &str) {
    match pool {
        SqlPool::Sqlite(pool) => sqlx::raw_sql(sql).execute(pool).await.map(drop).unwrap(),
        SqlPool::Postgres(pool) => sqlx::raw_sql(sql).execute(pool).await.map(drop).unwrap(),
    }
}

/// Every stored value of the tokens table, as text, to look for tokens in clear.
async fn raw_rows(pool: &SqlPool, table: &str) -> String {
    let sql = format!("SELECT token_id, digest, user_id FROM {table}");
    match pool {
        SqlPool::Sqlite(pool) => {
            let rows: Vec<(String, Vec<u8>, i64)> = sqlx::query_as(&sql).fetch_all(pool).await.unwrap();
            format!("{rows:?} {}", rows.iter().map(|r| String::from_utf8_lossy(&r.1)).collect::<String>())
        }
        SqlPool::Postgres(pool) => {
            let rows: Vec<(String, Vec<u8>, i64)> = sqlx::query_as(&sql).fetch_all(pool).await.unwrap();
            format!("{rows:?} {}", rows.iter().map(|r| String::from_utf8_lossy(&r.1)).collect::<String>())
        }
    }
}

async fn behaves(pool: SqlPool) {
    let users = unique("users");
    let tokens = unique("tokens");
    exec(
        &pool,
        &format!(
            "CREATE TABLE {users} (id BIGINT PRIMARY KEY, username TEXT NOT NULL, is_staff BOOLEAN NOT NULL, \
             is_active BOOLEAN NOT NULL);
             INSERT INTO {users} VALUES (1, 'alice', FALSE, TRUE), (2, 'bob', TRUE, TRUE), (3, 'carol', FALSE, FALSE);"
        ),
    )
    .await;
    let table = UsersTable::new(&users).unwrap().active_column("is_active").unwrap();
    let store = pool.store(table).with_table_name(&tokens).unwrap();
    store.migrate().await.unwrap();
    store.migrate().await.unwrap(); // idempotent

    let alice = store.issue(&user(1, "alice"), None).await.unwrap();
    let alice2 = store.issue(&user(1, "alice"), None).await.unwrap();
    let bob = store.issue(&user(2, "bob"), Some(Duration::from_secs(3600))).await.unwrap();
    let carol = store.issue(&user(3, "carol"), None).await.unwrap();
    let short = store.issue(&user(2, "bob"), Some(Duration::from_millis(1))).await.unwrap();

    let found = store.authenticate(&alice).await.unwrap().unwrap();
    assert_eq!(found.user, ChatUser { id: 1, username: "alice".into(), is_staff: false });
    assert_eq!(found.expires_at, None);
    let found = store.authenticate(&bob).await.unwrap().unwrap();
    assert!(found.user.is_staff);
    assert!(found.expires_at.is_some());
    assert_eq!(store.authenticate(&carol).await.unwrap(), None, "inactive users authenticate as nobody");
    assert_eq!(store.authenticate(&Token::generate()).await.unwrap(), None);
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(store.authenticate(&short).await.unwrap(), None, "expired");
    assert_eq!(store.purge_expired().await.unwrap(), 1);

    let rows = raw_rows(&pool, &tokens).await;
    for token in [&alice, &alice2, &bob, &carol] {
        assert!(!rows.contains(token.expose_secret()), "a token is stored in clear: {rows}");
        assert!(rows.contains(&token.id().to_string()), "lookup id missing: {rows}");
    }

    assert!(store.revoke(&alice).await.unwrap());
    assert!(!store.revoke(&alice).await.unwrap());
    assert_eq!(store.authenticate(&alice).await.unwrap(), None);
    assert!(store.authenticate(&alice2).await.unwrap().is_some());
    let bob2 = store.issue(&user(2, "bob"), None).await.unwrap();
    assert_eq!(store.revoke_user(&2).await.unwrap(), 2);
    assert_eq!(store.authenticate(&bob).await.unwrap(), None);
    assert_eq!(store.authenticate(&bob2).await.unwrap(), None);
    assert!(store.authenticate(&alice2).await.unwrap().is_some(), "other users keep their tokens");

    // Locking out writes the activity column: the app's own login sees it too.
    store.lock_out(&1).await.unwrap();
    assert_eq!(store.authenticate(&alice2).await.unwrap(), None, "locked out");
    store.let_in(&1).await.unwrap();
    assert!(store.authenticate(&alice2).await.unwrap().is_some(), "let back in");
    store.let_in(&3).await.unwrap();
    assert!(store.authenticate(&carol).await.unwrap().is_some(), "an inactive user activated");

    // Without an activity column, locking out is refused, never silently ignored.
    let plain = pool.store(UsersTable::new(&users).unwrap()).with_table_name(&tokens).unwrap();
    assert!(matches!(plain.lock_out(&1).await, Err(StoreError::Unsupported(_))));

    exec(&pool, &format!("DROP TABLE {tokens}; DROP TABLE {users};")).await;
}

#[tokio::test]
async fn sqlite_file() {
    let path = std::env::temp_dir().join(format!("{}.db", unique("ws_token_auth_test")));
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=rwc", path.display())).await.unwrap();
    behaves(SqlPool::Sqlite(pool)).await;
    let _ = std::fs::remove_file(path);
}

/// On SQLite the store looks tokens up on connections of its own: they see
/// what goes through the pool at once, survive lookups dropped halfway (a
/// store timeout) and many at a time, and stop with the pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_lookups_on_the_stores_own_connections() {
    let path = std::env::temp_dir().join(format!("{}.db", unique("ws_token_auth_readers")));
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=rwc", path.display())).await.unwrap();
    let users = unique("users");
    sqlx::raw_sql(&format!(
        "CREATE TABLE {users} (id BIGINT PRIMARY KEY, username TEXT NOT NULL, is_staff BOOLEAN NOT NULL); \
         INSERT INTO {users} VALUES (1, 'alice', false);"
    ))
    .execute(&pool)
    .await
    .unwrap();
    let store = SqlTokenStore::<ChatUser>::new(pool.clone(), UsersTable::new(&users).unwrap());
    store.migrate().await.unwrap();
    let alice = user(1, "alice");

    // Lookups dropped at every point of their way, then whole ones: the
    // connections they held are replaced, the answers stay right.
    let token = store.issue(&alice, None).await.unwrap();
    for wait in 0..200u64 {
        let _ = tokio::time::timeout(Duration::from_micros(wait), store.authenticate(&token)).await;
    }
    let lookups: Vec<_> = (0..64)
        .map(|_| {
            let (store, token) = (store.clone(), token.clone());
            tokio::spawn(async move { store.authenticate(&token).await })
        })
        .collect();
    for lookup in lookups {
        assert_eq!(lookup.await.unwrap().unwrap().map(|found| found.user), Some(alice.clone()));
    }

    // A revocation, and a row deleted behind the store's back: seen by the next lookup.
    assert!(store.revoke(&token).await.unwrap());
    assert!(store.authenticate(&token).await.unwrap().is_none());
    let other = store.issue(&alice, None).await.unwrap();
    assert!(store.authenticate(&other).await.unwrap().is_some());
    sqlx::query(&format!("DELETE FROM {users}")).execute(&pool).await.unwrap();
    assert!(store.authenticate(&other).await.unwrap().is_none());

    // The pool closed: the store is down (503), not empty.
    pool.close().await;
    assert!(matches!(store.authenticate(&other).await, Err(StoreError::Unavailable(_))));
    let _ = std::fs::remove_file(path);
}

#[tokio::test]
async fn postgres() {
    let url = std::env::var("DATABASE_URL").expect("DATABASE_URL must point at PostgreSQL (.ci/run sets it)");
    let pool = sqlx::PgPool::connect(&url).await.unwrap_or_else(|e| panic!("cannot reach PostgreSQL at {url}: {e}"));
    behaves(SqlPool::Postgres(pool)).await;
}

#[test]
fn identifiers_are_checked() {
    assert!(UsersTable::new("users; DROP TABLE x").is_err());
    assert!(UsersTable::new("1users").is_err());
    assert!(UsersTable::new("auth_user").unwrap().active_column("is active").is_err());
}
