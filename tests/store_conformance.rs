//! One conformance suite, run against every store: `MemoryTokenStore`,
//! `SqlTokenStore` on SQLite and on the machine's PostgreSQL (`DATABASE_URL`),
//! `RedisTokenStore` on its Redis (`REDIS_URL`), and `CachedTokenStore` over
//! each. Server-backed tests fail, never skip, when the service is missing;
//! each test keeps its data apart (own tables, own key prefix).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use ws_token_auth::store::{CachedTokenStore, RedisTokenStore, SqlPool, SqlTokenStore, UsersTable};
use ws_token_auth::{Authenticated, MemoryTokenStore, Token, TokenStore};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
struct User {
    id: i64,
    name: String,
}

fn users() -> Vec<User> {
    (1..=40).map(|id| User { id, name: format!("user{id}") }).collect()
}

/// What the suite needs of a store beyond `TokenStore`: issuing, revoking, and
/// a look at the raw stored data.
#[async_trait]
trait Harness: Send + Sync + 'static {
    type Store: TokenStore<User = User>;
    fn store(&self) -> Arc<Self::Store>;
    async fn issue(&self, user: &User, ttl: Option<Duration>) -> Token;
    async fn revoke(&self, token: &Token);
    async fn revoke_user(&self, user: &User);
    /// Everything the store keeps, as text.
    async fn raw(&self) -> String;
}

// --- memory -----------------------------------------------------------------

struct Memory(Arc<MemoryTokenStore<User>>);

#[async_trait]
impl Harness for Memory {
    type Store = MemoryTokenStore<User>;
    fn store(&self) -> Arc<Self::Store> {
        self.0.clone()
    }
    async fn issue(&self, user: &User, ttl: Option<Duration>) -> Token {
        match ttl {
            Some(ttl) => self.0.issue_with_ttl(user.clone(), ttl),
            None => self.0.issue(user.clone()),
        }
    }
    async fn revoke(&self, token: &Token) {
        self.0.revoke(token);
    }
    async fn revoke_user(&self, user: &User) {
        self.0.revoke_user(user);
    }
    async fn raw(&self) -> String {
        format!("{:?}", self.0.digests())
    }
}

async fn memory() -> Memory {
    Memory(Arc::new(MemoryTokenStore::new()))
}

// --- SQL --------------------------------------------------------------------

struct Sql {
    store: Arc<SqlTokenStore<User>>,
    pool: SqlPool,
    tokens: String,
}

#[async_trait]
impl Harness for Sql {
    type Store = SqlTokenStore<User>;
    fn store(&self) -> Arc<Self::Store> {
        self.store.clone()
    }
    async fn issue(&self, user: &User, ttl: Option<Duration>) -> Token {
        self.store.issue(user.id, ttl).await.unwrap()
    }
    async fn revoke(&self, token: &Token) {
        self.store.revoke(token).await.unwrap();
    }
    async fn revoke_user(&self, user: &User) {
        self.store.revoke_user(user.id).await.unwrap();
    }
    async fn raw(&self) -> String {
        let sql = format!("SELECT token_id, digest, user_id, created_at, expires_at FROM {}", self.tokens);
        type Row = (String, Vec<u8>, i64, i64, Option<i64>);
        let rows: Vec<Row> = match &self.pool {
            SqlPool::Sqlite(p) => sqlx::query_as(&sql).fetch_all(p).await.unwrap(),
            SqlPool::Postgres(p) => sqlx::query_as(&sql).fetch_all(p).await.unwrap(),
            _ => unreachable!(),
        };
        rows.iter().map(|r| format!("{r:?} {}\n", String::from_utf8_lossy(&r.1))).collect()
    }
}

fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", &Token::generate().expose_secret()[..10])
}

async fn sql(pool: SqlPool) -> Sql {
    let (users_table, tokens) = (unique("conf_users"), unique("conf_tokens"));
    let mut ddl = format!("CREATE TABLE {users_table} (id BIGINT PRIMARY KEY, name TEXT NOT NULL);");
    for user in users() {
        ddl.push_str(&format!("INSERT INTO {users_table} VALUES ({}, '{}');", user.id, user.name));
    }
    match &pool {
        SqlPool::Sqlite(p) => sqlx::raw_sql(&ddl).execute(p).await.map(drop).unwrap(),
        SqlPool::Postgres(p) => sqlx::raw_sql(&ddl).execute(p).await.map(drop).unwrap(),
        _ => unreachable!(),
    }
    let store =
        SqlTokenStore::new(pool.clone(), UsersTable::new(&users_table).unwrap()).with_table_name(&tokens).unwrap();
    store.migrate().await.unwrap();
    Sql { store: Arc::new(store), pool, tokens }
}

async fn sqlite() -> Sql {
    let file = std::env::temp_dir().join(format!("{}.db", unique("conformance")));
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=rwc", file.display())).await.unwrap();
    sql(pool.into()).await
}

async fn postgres() -> Sql {
    let url = std::env::var("DATABASE_URL").expect("DATABASE_URL must point at PostgreSQL (.ci/run sets it)");
    let pool = sqlx::PgPool::connect(&url).await.unwrap_or_else(|e| panic!("cannot reach PostgreSQL at {url}: {e}"));
    sql(pool.into()).await
}

// --- Redis ------------------------------------------------------------------

struct Redis {
    store: Arc<RedisTokenStore<User>>,
    prefix: String,
    conn: redis::aio::MultiplexedConnection,
}

#[async_trait]
impl Harness for Redis {
    type Store = RedisTokenStore<User>;
    fn store(&self) -> Arc<Self::Store> {
        self.store.clone()
    }
    async fn issue(&self, user: &User, ttl: Option<Duration>) -> Token {
        self.store.issue(&user.id.to_string(), user, ttl).await.unwrap()
    }
    async fn revoke(&self, token: &Token) {
        self.store.revoke(token).await.unwrap();
    }
    async fn revoke_user(&self, user: &User) {
        self.store.revoke_user(&user.id.to_string()).await.unwrap();
    }
    async fn raw(&self) -> String {
        let mut conn = self.conn.clone();
        let keys: Vec<String> = conn.keys(format!("{}:*", self.prefix)).await.unwrap();
        let mut out = String::new();
        for key in keys {
            let kind: String = redis::cmd("TYPE").arg(&key).query_async(&mut conn).await.unwrap();
            let value = if kind == "set" {
                format!("{:?}", conn.smembers::<_, Vec<String>>(&key).await.unwrap())
            } else {
                conn.get::<_, String>(&key).await.unwrap()
            };
            out.push_str(&format!("{key} = {value}\n"));
        }
        out
    }
}

async fn redis_store() -> Redis {
    let url = std::env::var("REDIS_URL").expect("REDIS_URL must point at Redis (.ci/run sets it)");
    let prefix = unique("conformance");
    let store =
        RedisTokenStore::connect(&url, &prefix).await.unwrap_or_else(|e| panic!("cannot reach Redis at {url}: {e}"));
    let conn = redis::Client::open(url).unwrap().get_multiplexed_async_connection().await.unwrap();
    Redis { store: Arc::new(store), prefix, conn }
}

// --- the cache over any of them -----------------------------------------------

struct Cached<H: Harness> {
    inner: H,
    cache: Arc<CachedTokenStore<Arc<H::Store>>>,
}

#[async_trait]
impl<H: Harness> Harness for Cached<H> {
    type Store = CachedTokenStore<Arc<H::Store>>;
    fn store(&self) -> Arc<Self::Store> {
        self.cache.clone()
    }
    async fn issue(&self, user: &User, ttl: Option<Duration>) -> Token {
        self.inner.issue(user, ttl).await
    }
    async fn revoke(&self, token: &Token) {
        self.inner.revoke(token).await;
        self.cache.invalidate(token).await;
    }
    async fn revoke_user(&self, user: &User) {
        self.inner.revoke_user(user).await;
        self.cache.invalidate_all();
    }
    async fn raw(&self) -> String {
        self.inner.raw().await
    }
}

fn cached<H: Harness>(inner: H) -> Cached<H> {
    let cache = Arc::new(CachedTokenStore::new(inner.store()));
    Cached { inner, cache }
}

// --- the suite --------------------------------------------------------------

async fn user_of<S: TokenStore<User = User>>(store: &S, token: &Token) -> Option<User> {
    store.authenticate(token).await.unwrap().map(|found: Authenticated<User>| found.user)
}

async fn issue_then_authenticate<H: Harness>(h: H) {
    let [alice, bob] = [&users()[0], &users()[1]].map(Clone::clone);
    let (a, b) = (h.issue(&alice, None).await, h.issue(&bob, None).await);
    let store = h.store();
    assert_eq!(user_of(&*store, &a).await, Some(alice.clone()));
    assert_eq!(user_of(&*store, &b).await, Some(bob));
    assert_eq!(user_of(&*store, &a).await, Some(alice), "a second lookup answers the same");
}

async fn unknown_is_none<H: Harness>(h: H) {
    let store = h.store();
    assert_eq!(user_of(&*store, &Token::generate()).await, None);
    assert_eq!(user_of(&*store, &Token::new("short").unwrap()).await, None);
}

async fn revoke_is_none<H: Harness>(h: H) {
    let alice = users()[0].clone();
    let (first, second) = (h.issue(&alice, None).await, h.issue(&alice, None).await);
    let store = h.store();
    assert!(user_of(&*store, &first).await.is_some());
    h.revoke(&first).await;
    assert_eq!(user_of(&*store, &first).await, None);
    assert_eq!(user_of(&*store, &second).await, Some(alice), "only that token");
}

async fn revoke_user_revokes_all_of_that_user<H: Harness>(h: H) {
    let [alice, bob] = [&users()[0], &users()[1]].map(Clone::clone);
    let mut alices = Vec::new();
    for _ in 0..3 {
        alices.push(h.issue(&alice, None).await);
    }
    let bobs = h.issue(&bob, None).await;
    let store = h.store();
    for token in &alices {
        assert!(user_of(&*store, token).await.is_some());
    }
    h.revoke_user(&alice).await;
    for token in &alices {
        assert_eq!(user_of(&*store, token).await, None);
    }
    assert_eq!(user_of(&*store, &bobs).await, Some(bob));
}

async fn expiry_is_honoured<H: Harness>(h: H) {
    let alice = users()[0].clone();
    let short = h.issue(&alice, Some(Duration::from_millis(400))).await;
    let long = h.issue(&alice, Some(Duration::from_secs(3600))).await;
    let store = h.store();
    let found = store.authenticate(&short).await.unwrap().expect("valid before its expiry");
    assert!(found.expires_at.is_some());
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(user_of(&*store, &short).await, None, "expired");
    assert_eq!(user_of(&*store, &long).await, Some(alice));
}

async fn concurrent_issue_and_authenticate<H: Harness>(h: H) {
    let h = Arc::new(h);
    let tasks: Vec<_> = users()
        .into_iter()
        .map(|user| {
            let h = Arc::clone(&h);
            tokio::spawn(async move {
                for _ in 0..5 {
                    let token = h.issue(&user, None).await;
                    assert_eq!(user_of(&*h.store(), &token).await, Some(user.clone()));
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
}

async fn tokens_are_never_stored_in_clear<H: Harness>(h: H) {
    let mut tokens = Vec::new();
    for user in &users()[..5] {
        tokens.push(h.issue(user, None).await);
        tokens.push(h.issue(user, Some(Duration::from_secs(60))).await);
    }
    let raw = h.raw().await;
    assert!(!raw.is_empty(), "the raw dump shows nothing: the check would prove nothing");
    for token in &tokens {
        let secret = token.expose_secret();
        assert!(!raw.contains(secret), "a token is stored in clear:\n{raw}");
        assert!(!raw.contains(&secret[..16]), "part of a token is stored in clear:\n{raw}");
    }
}

macro_rules! conformance {
    ($($store:ident => $make:expr;)*) => {
        $(
            mod $store {
                use super::*;
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn issue_then_authenticate() { super::issue_then_authenticate($make).await }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn unknown_is_none() { super::unknown_is_none($make).await }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn revoke_is_none() { super::revoke_is_none($make).await }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn revoke_user_revokes_all_of_that_user() { super::revoke_user_revokes_all_of_that_user($make).await }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn expiry_is_honoured() { super::expiry_is_honoured($make).await }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn concurrent_issue_and_authenticate() { super::concurrent_issue_and_authenticate($make).await }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn tokens_are_never_stored_in_clear() { super::tokens_are_never_stored_in_clear($make).await }
            }
        )*
    };
}

conformance! {
    memory => memory().await;
    sqlite => sqlite().await;
    postgres => postgres().await;
    redis_store => redis_store().await;
    cached_memory => cached(memory().await);
    cached_sqlite => cached(sqlite().await);
    cached_postgres => cached(postgres().await);
    cached_redis => cached(redis_store().await);
}
