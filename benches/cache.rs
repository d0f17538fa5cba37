//! `CachedTokenStore`: a hit against a miss, with an in-memory inner store (so
//! the miss shows the cache's own cost, not a database's) and with SQLite.
//!
//! Run: `cargo bench --bench cache`

#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use ws_token_auth::store::{CachedTokenStore, SqlTokenStore, UsersTable};
use ws_token_auth::{ManageTokens, MemoryTokenStore, Token, TokenStore, TokenUser};

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
            "CREATE TABLE users (id BIGINT PRIMARY KEY, name TEXT NOT NULL); INSERT INTO users VALUES (1, 'alice');",
        )
        .execute(&pool)
        .await
        .expect("schema");
        let store = Arc::new(SqlTokenStore::<User>::new(pool, UsersTable::new("users").expect("name")));
        store.migrate().await.expect("migrate");
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
    let _ = std::fs::remove_file(file);
}

criterion_group!(benches, cache);
criterion_main!(benches);
