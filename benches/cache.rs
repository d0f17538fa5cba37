//! `CachedTokenStore`: a hit against a miss, with an in-memory inner store (so
//! the miss shows the cache's own cost, not a database's) and with SQLite;
//! and a SQLite lookup by each SQLite store against the same query in sqlx
//! alone, over 10,001 users and their tokens.
//!
//! Run: `cargo bench --bench cache`

#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use ws_token_auth::store::ManageTokens;
use ws_token_auth::store::rusqlite::{Error as RowError, Row};
use ws_token_auth::store::{CachedTokenStore, RusqliteTokenStore, RusqliteUser, SqlTokenStore, UsersTable};
use ws_token_auth::{MemoryTokenStore, Token, TokenStore, TokenUser};

#[derive(Debug, Clone, sqlx::FromRow)]
#[allow(dead_code)] // read from the database, never looked at: only the lookups are timed
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

impl RusqliteUser for User {
    fn from_row(row: &Row<'_>) -> Result<Self, RowError> {
        Ok(Self { id: row.get("id")?, name: row.get("name")? })
    }
}

fn cache(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let memory = Arc::new(MemoryTokenStore::new());
    let token = rt.block_on(memory.issue(&User { id: 1, name: "alice".into() }, None)).expect("issue");
    let cached = CachedTokenStore::new(Arc::clone(&memory));

    let mut group = c.benchmark_group("store");
    group.bench_function("memory/direct", |b| {
        b.to_async(&rt).iter(|| async { black_box(memory.authenticate(&token).await) })
    });
    group.bench_function("cached_memory/hit", |b| {
        b.to_async(&rt).iter(|| async { black_box(cached.authenticate(&token).await) })
    });
    group.bench_function("cached_memory/miss", |b| {
        b.to_async(&rt).iter(|| async {
            cached.invalidate_all();
            black_box(cached.authenticate(&token).await)
        })
    });

    let file = std::env::temp_dir().join(format!("cache-bench-{}.db", Token::generate().id()));
    let sqlite = rt.block_on(async {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=rwc", file.display())).await.expect("sqlite");
        sqlx::raw_sql(
            "PRAGMA journal_mode=WAL; CREATE TABLE users (id BIGINT PRIMARY KEY, name TEXT NOT NULL);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10000)
             INSERT INTO users SELECT i, 'user' || i FROM n;",
        )
        .execute(&pool)
        .await
        .expect("schema");
        let store = Arc::new(SqlTokenStore::<User>::new(pool.clone(), UsersTable::new("users").expect("name")));
        store.migrate().await.expect("migrate");
        // 10,000 other users' tokens beside the one looked up.
        sqlx::raw_sql(
            "WITH RECURSIVE n(i) AS (SELECT 2 UNION ALL SELECT i + 1 FROM n WHERE i < 10001)
             INSERT INTO ws_auth_tokens SELECT lower(hex(randomblob(8))), randomblob(32), i, 0, NULL FROM n;",
        )
        .execute(&pool)
        .await
        .expect("tokens");
        store
    });
    let sql_token = rt.block_on(sqlite.issue(&User { id: 1, name: "alice".into() }, None)).expect("issue");
    let cached_sql = CachedTokenStore::new(Arc::clone(&sqlite));
    group.bench_function("sqlite/direct", |b| {
        b.to_async(&rt).iter(|| async { black_box(sqlite.authenticate(&sql_token).await) })
    });
    group.bench_function("cached_sqlite/hit", |b| {
        b.to_async(&rt).iter(|| async { black_box(cached_sql.authenticate(&sql_token).await) })
    });
    group.finish();

    // What a lookup costs in sqlx alone, side by side with the store's: the
    // store's own query text and parameter, through the pool (as the store
    // queried until 0.2) and on one connection held open (the floor: one
    // round trip to the connection's thread, no store code at all).
    let lookup = "SELECT u.*, t.digest AS ws_token_digest, t.expires_at AS ws_token_expires_at, \
                  t.created_at AS ws_token_created_at FROM ws_auth_tokens t JOIN users u ON u.id = t.user_id \
                  WHERE t.token_id = $1";
    let id = sql_token.id().to_string();
    let url = format!("sqlite://{}", file.display());
    let (pool, mut held) = rt.block_on(async {
        use sqlx::Connection;
        (
            sqlx::SqlitePool::connect(&url).await.expect("pool"),
            sqlx::SqliteConnection::connect(&url).await.expect("one"),
        )
    });
    let inline = RusqliteTokenStore::<User>::new(&file, UsersTable::new("users").expect("name"));
    let mut group = c.benchmark_group("sqlite_lookup");
    for round in 0..2 {
        group.bench_function(format!("rusqlite_store/{round}"), |b| {
            b.to_async(&rt).iter(|| async { black_box(inline.authenticate(&sql_token).await) })
        });
        // Alternated, twice, so that a drift of the machine shows.
        group.bench_function(format!("store/{round}"), |b| {
            b.to_async(&rt).iter(|| async { black_box(sqlite.authenticate(&sql_token).await) })
        });
        group.bench_function(format!("sqlx_pool/{round}"), |b| {
            b.to_async(&rt).iter(|| async { black_box(sqlx::query(lookup).bind(&id).fetch_all(&pool).await) })
        });
        group.bench_function(format!("sqlx_one_connection/{round}"), |b| {
            b.iter(|| rt.block_on(async { black_box(sqlx::query(lookup).bind(&id).fetch_all(&mut held).await) }))
        });
    }
    group.finish();
    let _ = std::fs::remove_file(file);
}

criterion_group!(benches, cache);
criterion_main!(benches);
