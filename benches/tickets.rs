//! What a connect ticket costs: its redemption (`?ticket=` through
//! `Authenticator::authenticate`: take the ticket, open its seal, ask the
//! store about the token) against the leanest honest baseline, the same
//! handshake with the token itself in a cookie, on each store; and what an
//! in-band refresh costs (`Watch::refresh`: the check and the rebind) against that same
//! baseline. Stores are used directly (no cache), so each side pays its real
//! store round trips.
//!
//! Run: `DATABASE_URL=postgres://... REDIS_URL=redis://... cargo bench --bench tickets`

#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue, Uri};
use ws_token_auth::extract::{CredentialKind, TokenSource};
use ws_token_auth::live::Revocations;
use ws_token_auth::store::ManageTokens;
use ws_token_auth::store::{RedisTokenStore, SqlTokenStore, UsersTable};
use ws_token_auth::ticket::TicketStore;
use ws_token_auth::{Authenticator, MemoryTokenStore, Token, TokenUser};

#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize, serde::Deserialize)]
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

fn alice() -> User {
    User { id: 1, name: "alice".into() }
}

async fn sql_store(pool: impl ws_token_auth::store::SqlPool<User>, users: &str) -> SqlTokenStore<User> {
    let table = format!("bench_tokens_{}", &Token::generate().expose_secret()[..8]);
    let store = SqlTokenStore::new(pool, UsersTable::new(users).unwrap()).with_table_name(&table).unwrap();
    store.migrate().await.expect("migrate");
    store
}

async fn sqlite() -> SqlTokenStore<User> {
    let file = std::env::temp_dir().join(format!("tickets-bench-{}.db", Token::generate().id()));
    // As the multichat app opens it: WAL, synchronous NORMAL.
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&file)
        .create_if_missing(true)
        .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
        .synchronous(sqlx::sqlite::SqliteSynchronous::Normal);
    let pool = sqlx::SqlitePool::connect_with(options).await.expect("sqlite");
    sqlx::raw_sql(
        "CREATE TABLE users (id BIGINT PRIMARY KEY, name TEXT NOT NULL); INSERT INTO users VALUES (1, 'alice');",
    )
    .execute(&pool)
    .await
    .expect("schema");
    sql_store(pool, "users").await
}

async fn postgres() -> SqlTokenStore<User> {
    let url = std::env::var("DATABASE_URL").expect("DATABASE_URL: a PostgreSQL to measure");
    let pool = sqlx::PgPool::connect(&url).await.expect("postgres");
    let users = format!("bench_users_{}", &Token::generate().expose_secret()[..8]);
    sqlx::raw_sql(&format!(
        "CREATE TABLE {users} (id BIGINT PRIMARY KEY, name TEXT NOT NULL); INSERT INTO {users} VALUES (1, 'alice');"
    ))
    .execute(&pool)
    .await
    .expect("schema");
    sql_store(pool, &users).await
}

async fn redis() -> RedisTokenStore<User> {
    let url = std::env::var("REDIS_URL").expect("REDIS_URL: a Redis to measure");
    RedisTokenStore::connect(&url, format!("bench-{}", Token::generate().id())).await.expect("redis")
}

/// `iters` handshakes authenticated by the token in a cookie, timed.
async fn by_token<St: ManageTokens<User = User>>(auth: &Authenticator<St>, token: &Token, iters: u64) -> Duration {
    let mut headers = HeaderMap::new();
    headers.insert("cookie", HeaderValue::from_str(&format!("key={}", token.expose_secret())).unwrap());
    let uri = Uri::from_static("/ws");
    let started = Instant::now();
    for _ in 0..iters {
        black_box(auth.authenticate(&headers, &uri).await.expect("a valid token"));
    }
    started.elapsed()
}

/// `iters` handshakes each redeeming a ticket issued beforehand (untimed), timed.
async fn by_ticket<St: ManageTokens<User = User>>(auth: &Authenticator<St>, token: &Token, iters: u64) -> Duration {
    let owner = auth.check_token(token.expose_secret(), CredentialKind::Cookie).await.unwrap();
    let mut uris = Vec::new();
    for _ in 0..iters {
        let ticket = auth.issue_ticket(&owner).await.unwrap();
        uris.push(format!("/ws?ticket={}", ticket.expose_secret()).parse::<Uri>().unwrap());
    }
    let headers = HeaderMap::new();
    let started = Instant::now();
    for uri in &uris {
        black_box(auth.authenticate(&headers, uri).await.expect("an unused ticket"));
    }
    started.elapsed()
}

fn bench_store<St: ManageTokens<User = User> + TicketStore>(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    name: &str,
    store: St,
) {
    let store = Arc::new(store);
    let auth = Authenticator::from_shared(Arc::clone(&store))
        .sources([TokenSource::cookie("key"), TokenSource::ticket("ticket")])
        .tickets(Arc::clone(&store));
    let token = rt.block_on(store.issue(&alice(), None)).expect("issue");
    let mut group = c.benchmark_group(format!("handshake/{name}"));
    group.sample_size(20).measurement_time(Duration::from_secs(3));
    group.bench_function("token", |b| b.to_async(rt).iter_custom(|iters| by_token(&auth, &token, iters)));
    group.bench_function("ticket", |b| b.to_async(rt).iter_custom(|iters| by_ticket(&auth, &token, iters)));
    group.finish();
}

fn tickets(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    bench_store(c, &rt, "memory", MemoryTokenStore::new());
    bench_store(c, &rt, "sqlite", rt.block_on(sqlite()));
    bench_store(c, &rt, "postgres", rt.block_on(postgres()));
    bench_store(c, &rt, "redis", rt.block_on(redis()));
}

/// An in-band refresh on a live socket, against the handshake's own check.
fn refresh(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let _guard = rt.enter();
    let store = Arc::new(MemoryTokenStore::new());
    let auth = Authenticator::from_shared(Arc::clone(&store));
    let (old, fresh) = rt.block_on(async { (store.issue(&alice(), None).await, store.issue(&alice(), None).await) });
    let (old, fresh) = (old.unwrap(), fresh.unwrap());
    let revocations = Revocations::new();
    let socket = rt.block_on(auth.check_token(old.expose_secret(), CredentialKind::Cookie)).unwrap();
    let mut watch = revocations.watch(&socket);
    let mut group = c.benchmark_group("refresh/memory");
    group.sample_size(20).measurement_time(Duration::from_secs(3));
    group.bench_function("handshake_check", |b| b.to_async(&rt).iter_custom(|iters| by_token(&auth, &old, iters)));
    // Back and forth between two tokens, so that each rebind really moves the socket.
    let tokens = [fresh, old.clone()];
    let mut turn = 0;
    group.bench_function("check_and_rebind", |b| {
        b.iter(|| {
            turn += 1;
            let value = tokens[turn % 2].expose_secret();
            black_box(rt.block_on(watch.refresh(&auth, value)).unwrap());
        })
    });
    group.finish();
}

criterion_group!(benches, tickets, refresh);
criterion_main!(benches);
