//! One conformance suite (`ws_token_auth::test_util`, what a store of your
//! own can run too), against every store through the public
//! contract (`TokenStore` + `ManageTokens`) and nothing else:
//! `MemoryTokenStore`, `RusqliteTokenStore`, `SqlTokenStore` on SQLite and on the machine's
//! PostgreSQL (`DATABASE_URL`), `RedisTokenStore` on its Redis (`REDIS_URL`),
//! and `CachedTokenStore` over each; and the connect tickets each of them
//! keeps (`TicketStore`), through an `Authenticator`. Server-backed tests fail, never skip,
//! when the service is missing; each test keeps its data apart (own tables,
//! own key prefix). The only per-store code reads the raw stored data, to
//! check that no token is kept in clear.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use ws_token_auth::store::ManageTokens;
use ws_token_auth::store::rusqlite::{Error as RowError, Row};
use ws_token_auth::store::{
    CachedTokenStore, RedisTokenStore, RusqliteTokenStore, RusqliteUser, SlidingExpiry, SqlTokenStore, UsersTable,
};
use ws_token_auth::test_util;
use ws_token_auth::ticket::TicketStore;
use ws_token_auth::{MemoryTokenStore, Token, TokenStore, TokenUser};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
struct User {
    id: i64,
    name: String,
}

impl TokenUser for User {
    type Id = i64;
    fn id(&self) -> i64 {
        self.id
    }
}

fn users() -> Vec<User> {
    (1..=40).map(|id| User { id, name: format!("user{id}") }).collect()
}

/// Everything a store keeps, as text.
type Raw = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = String> + Send>> + Send + Sync>;

/// A store under test, and how to read what it keeps.
struct Subject<St> {
    store: Arc<St>,
    raw: Raw,
}

// --- memory -----------------------------------------------------------------

async fn memory() -> Subject<MemoryTokenStore<User>> {
    memory_with(None).await
}

async fn memory_with(sliding: Option<SlidingExpiry>) -> Subject<MemoryTokenStore<User>> {
    let store = MemoryTokenStore::new();
    let store = Arc::new(match sliding {
        Some(sliding) => store.sliding(sliding),
        None => store,
    });
    let seen = Arc::clone(&store);
    Subject { store, raw: Arc::new(move || Box::pin(std::future::ready(format!("{:?}", seen.digests())))) }
}

// --- SQL --------------------------------------------------------------------

fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", &Token::generate().expose_secret()[..10])
}

#[derive(Clone)]
enum Pool {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl Pool {
    async fn exec(&self, sql: &str) {
        match self {
            Self::Sqlite(p) => sqlx::raw_sql(sql).execute(p).await.map(drop).unwrap(),
            Self::Postgres(p) => sqlx::raw_sql(sql).execute(p).await.map(drop).unwrap(),
        }
    }

    async fn rows(&self, sql: &str) -> Vec<(String, Vec<u8>, i64, i64, Option<i64>)> {
        match self {
            Self::Sqlite(p) => sqlx::query_as(sql).fetch_all(p).await.unwrap(),
            Self::Postgres(p) => sqlx::query_as(sql).fetch_all(p).await.unwrap(),
        }
    }
}

/// The app's users table (with an activity column) and names for the store's
/// tables, in `pool`; and how to read the store's tables once it made them.
async fn sql_tables(pool: Pool) -> (UsersTable, String, Raw) {
    let (users_table, tokens) = (unique("conf_users"), unique("conf_tokens"));
    let mut ddl = format!(
        "CREATE TABLE {users_table} (id BIGINT PRIMARY KEY, name TEXT NOT NULL, active BOOLEAN NOT NULL DEFAULT TRUE);"
    );
    for user in users() {
        ddl.push_str(&format!("INSERT INTO {users_table} (id, name) VALUES ({}, '{}');", user.id, user.name));
    }
    pool.exec(&ddl).await;
    let table = UsersTable::new(&users_table).unwrap().active_column("active").unwrap();
    let sql = format!("SELECT token_id, digest, user_id, created_at, expires_at FROM {tokens}");
    let tickets = format!(
        "SELECT CAST('ticket' AS TEXT), record, CAST(0 AS BIGINT), CAST(0 AS BIGINT), expires_at FROM {tokens}_tickets"
    );
    let raw: Raw = Arc::new(move || {
        let (pool, sql, tickets) = (pool.clone(), sql.clone(), tickets.clone());
        Box::pin(async move {
            let mut rows = pool.rows(&sql).await;
            rows.extend(pool.rows(&tickets).await);
            rows.iter().map(|r| format!("{r:?} {}\n", String::from_utf8_lossy(&r.1))).collect()
        })
    });
    (table, tokens, raw)
}

async fn sql(pool: Pool, sliding: Option<SlidingExpiry>) -> Subject<SqlTokenStore<User>> {
    let (table, tokens, raw) = sql_tables(pool.clone()).await;
    let store = match &pool {
        Pool::Sqlite(p) => SqlTokenStore::new(p.clone(), table),
        Pool::Postgres(p) => SqlTokenStore::new(p.clone(), table),
    };
    let store = store.with_table_name(&tokens).unwrap();
    let store = match sliding {
        Some(sliding) => store.sliding(sliding),
        None => store,
    };
    store.migrate().await.unwrap();
    Subject { store: Arc::new(store), raw }
}

/// An SQLite file in WAL mode and a sqlx pool over it.
async fn sqlite_file() -> (std::path::PathBuf, sqlx::SqlitePool) {
    let file = std::env::temp_dir().join(format!("{}.db", unique("conformance")));
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=rwc", file.display())).await.unwrap();
    sqlx::raw_sql("PRAGMA journal_mode=WAL").execute(&pool).await.unwrap();
    (file, pool)
}

async fn sqlite() -> Subject<SqlTokenStore<User>> {
    sqlite_with(None).await
}

async fn sqlite_with(sliding: Option<SlidingExpiry>) -> Subject<SqlTokenStore<User>> {
    sql(Pool::Sqlite(sqlite_file().await.1), sliding).await
}

impl RusqliteUser for User {
    fn from_row(row: &Row<'_>) -> Result<Self, RowError> {
        Ok(Self { id: row.get("id")?, name: row.get("name")? })
    }
}

async fn rusqlite() -> Subject<RusqliteTokenStore<User>> {
    rusqlite_with(None).await
}

async fn rusqlite_with(sliding: Option<SlidingExpiry>) -> Subject<RusqliteTokenStore<User>> {
    let (file, pool) = sqlite_file().await;
    let (table, tokens, raw) = sql_tables(Pool::Sqlite(pool)).await;
    let store = RusqliteTokenStore::new(file, table).with_table_name(&tokens).unwrap();
    let store = match sliding {
        Some(sliding) => store.sliding(sliding),
        None => store,
    };
    store.migrate().await.unwrap();
    Subject { store: Arc::new(store), raw }
}

async fn postgres() -> Subject<SqlTokenStore<User>> {
    postgres_with(None).await
}

async fn postgres_with(sliding: Option<SlidingExpiry>) -> Subject<SqlTokenStore<User>> {
    let url = std::env::var("DATABASE_URL").expect("DATABASE_URL must point at PostgreSQL (.ci/run sets it)");
    let pool = sqlx::PgPool::connect(&url).await.unwrap_or_else(|e| panic!("cannot reach PostgreSQL at {url}: {e}"));
    sql(Pool::Postgres(pool), sliding).await
}

// --- Redis ------------------------------------------------------------------

async fn redis_store() -> Subject<RedisTokenStore<User>> {
    redis_with(None).await
}

async fn redis_with(sliding: Option<SlidingExpiry>) -> Subject<RedisTokenStore<User>> {
    let url = std::env::var("REDIS_URL").expect("REDIS_URL must point at Redis (.ci/run sets it)");
    let prefix = unique("conformance");
    let store =
        RedisTokenStore::connect(&url, &prefix).await.unwrap_or_else(|e| panic!("cannot reach Redis at {url}: {e}"));
    let store = match sliding {
        Some(sliding) => store.sliding(sliding),
        None => store,
    };
    let conn = redis::Client::open(url).unwrap().get_multiplexed_async_connection().await.unwrap();
    let raw: Raw = Arc::new(move || {
        let (mut conn, prefix) = (conn.clone(), prefix.clone());
        Box::pin(async move {
            let keys: Vec<String> = conn.keys(format!("{prefix}:*")).await.unwrap();
            let mut out = String::new();
            for key in keys {
                let kind: String = redis::cmd("TYPE").arg(&key).query_async(&mut conn).await.unwrap();
                let value = if kind == "set" {
                    format!("{:?}", conn.smembers::<_, Vec<String>>(&key).await.unwrap())
                } else {
                    String::from_utf8_lossy(&conn.get::<_, Vec<u8>>(&key).await.unwrap()).into_owned()
                };
                out.push_str(&format!("{key} = {value}\n"));
            }
            out
        })
    });
    Subject { store: Arc::new(store), raw }
}

// --- the cache over any of them -----------------------------------------------

fn cached<St: ManageTokens<User = User> + TicketStore>(inner: Subject<St>) -> Subject<CachedTokenStore<Arc<St>>> {
    Subject { store: Arc::new(CachedTokenStore::new(inner.store)), raw: inner.raw }
}

// --- the suite: ws_token_auth::test_util ------------------------------------

async fn issue<St: ManageTokens<User = User>>(store: &St, user: &User) -> Token {
    store.issue(user, None).await.unwrap()
}

impl<St: TokenStore<User = User>> Subject<St> {
    /// The same store as the exported suite's subject, with the test's 40 users.
    fn exported(self) -> test_util::Subject<St> {
        let raw = self.raw;
        test_util::Subject::new(self.store, users(), move || raw())
    }
}

// --- sliding expiry -------------------------------------------------------------

/// Alive 800 ms past each use, never 2 s past issue; extensions written when
/// they gain 300 ms or more.
fn slide() -> Option<SlidingExpiry> {
    Some(
        SlidingExpiry::new(Duration::from_millis(800), Duration::from_millis(2000))
            .write_every(Duration::from_millis(300)),
    )
}

async fn expiry_of<S: TokenStore<User = User>>(store: &S, token: &Token) -> Option<SystemTime> {
    store.authenticate(token).await.unwrap().map(|found| found.expires_at.expect("a sliding token expires"))
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

async fn sliding_expiry_extends_caps_and_writes_once_per_interval<St: ManageTokens<User = User>>(s: Subject<St>) {
    let (store, alice) = (&*s.store, users()[0].clone());
    let issued = SystemTime::now();
    let token = issue(store, &alice).await;
    let first = expiry_of(store, &token).await.expect("valid when issued");
    let after_issue = ms(first.duration_since(issued).unwrap());
    assert!((790..=900).contains(&after_issue), "expires {after_issue} ms after issue, not the idle window");
    assert_eq!(expiry_of(store, &token).await, Some(first), "a use gaining under 300 ms is not written");

    tokio::time::sleep(Duration::from_millis(400)).await;
    let extended = expiry_of(store, &token).await.expect("used within its idle window");
    assert!(extended >= first + Duration::from_millis(300), "not extended: {:?}", extended.duration_since(first));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(expiry_of(store, &token).await, Some(extended), "written again within the interval");

    // Used every 250 ms: alive until the cap, never past it.
    let cap = issued + Duration::from_millis(2000);
    while SystemTime::now() + Duration::from_millis(300) < cap {
        let at = expiry_of(store, &token).await.expect("in use, before the cap: alive");
        assert!(at <= cap + Duration::from_millis(50), "{} ms past the cap", ms(at.duration_since(cap).unwrap()));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    tokio::time::sleep(cap.duration_since(SystemTime::now()).unwrap_or_default() + Duration::from_millis(100)).await;
    assert_eq!(expiry_of(store, &token).await, None, "past the cap, however much in use");

    // A token left idle longer than the window dies.
    let idle = issue(store, &alice).await;
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(expiry_of(store, &idle).await, None, "idle past its window");
}

async fn a_cache_over_a_sliding_store_keeps_it_alive_and_never_past_expiry<St: ManageTokens<User = User>>(
    s: Subject<St>,
) {
    let (store, alice) = (&*s.store, users()[0].clone());
    let issued = SystemTime::now();
    let token = issue(store, &alice).await;
    let cap = issued + Duration::from_millis(2000);
    let mut latest = SystemTime::UNIX_EPOCH;
    // Used every 100 ms through the cache: the uses reach the store in time.
    while SystemTime::now() + Duration::from_millis(200) < cap {
        let now = SystemTime::now();
        let at = expiry_of(store, &token).await.expect("in use through the cache, before the cap: alive");
        assert!(at > now, "the cache answered for an expired token");
        latest = latest.max(at);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(latest > issued + Duration::from_millis(1500), "never extended through the cache");
    tokio::time::sleep(cap.duration_since(SystemTime::now()).unwrap_or_default() + Duration::from_millis(100)).await;
    assert_eq!(expiry_of(store, &token).await, None, "past the cap");
}

macro_rules! sliding {
    ($($store:ident => $make:expr, $test:ident;)*) => {
        mod sliding {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $store() { super::$test($make).await }
            )*
        }
    };
}

sliding! {
    memory => memory_with(slide()).await, sliding_expiry_extends_caps_and_writes_once_per_interval;
    sqlite => sqlite_with(slide()).await, sliding_expiry_extends_caps_and_writes_once_per_interval;
    rusqlite => rusqlite_with(slide()).await, sliding_expiry_extends_caps_and_writes_once_per_interval;
    postgres => postgres_with(slide()).await, sliding_expiry_extends_caps_and_writes_once_per_interval;
    redis_store => redis_with(slide()).await, sliding_expiry_extends_caps_and_writes_once_per_interval;
    cached_memory => cached(memory_with(slide()).await), a_cache_over_a_sliding_store_keeps_it_alive_and_never_past_expiry;
    cached_rusqlite => cached(rusqlite_with(slide()).await), a_cache_over_a_sliding_store_keeps_it_alive_and_never_past_expiry;
    cached_sqlite => cached(sqlite_with(slide()).await), a_cache_over_a_sliding_store_keeps_it_alive_and_never_past_expiry;
    cached_postgres => cached(postgres_with(slide()).await), a_cache_over_a_sliding_store_keeps_it_alive_and_never_past_expiry;
    cached_redis => cached(redis_with(slide()).await), a_cache_over_a_sliding_store_keeps_it_alive_and_never_past_expiry;
}

macro_rules! conformance {
    ($($store:ident => $make:expr;)*) => {
        $(
            mod $store {
                use super::*;
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn tokens() { test_util::check_tokens(|| async { ($make).exported() }).await }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn tickets() { test_util::check_tickets(|| async { ($make).exported() }).await }
            }
        )*
    };
}

conformance! {
    memory => memory().await;
    sqlite => sqlite().await;
    rusqlite => rusqlite().await;
    postgres => postgres().await;
    redis_store => redis_store().await;
    cached_memory => cached(memory().await);
    cached_sqlite => cached(sqlite().await);
    cached_rusqlite => cached(rusqlite().await);
    cached_postgres => cached(postgres().await);
    cached_redis => cached(redis_store().await);
}
