//! From Django's change to the socket's close, and PostgreSQL's bus against
//! Redis's, alternating in one run:
//!
//! ```sh
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/test REDIS_URL=redis://127.0.0.1:6379 \
//!   cargo bench -p ws-token-auth-django --bench close_latency -- 3 100
//! ```
//!
//! (3 blocks of 100 rounds; each round takes one sample of every row, in
//! turn, so that the rows alternate round by round.)
//!
//! - `token deleted`: a DRF token row deleted (DRF's logout) in Django's
//!   database, to the close of a socket watched on another node (its own pool
//!   and `PgBus`): the DELETE's round trip, the trigger, NOTIFY at commit,
//!   the listener, the close.
//! - `user deactivated`: `UPDATE auth_user SET is_active = false`, to 4403.
//! - `bus pg` / `bus redis`: `Lifecycle::revoke` on node A to the close on
//!   node B, over `PgBus` and over `RevocationBus` (the same memory store).
//!
//! The users and tables are Django's own (its migrations, run with
//! `tests/django_app/djangoctl.py`); the rows changed per round are written
//! with SQL, as Django's ORM would, so that Python's start-up is not timed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::PgPool;
use ws_token_auth::extract::CredentialKind;
use ws_token_auth::live::Watch;
use ws_token_auth::live::postgres::PgBus;
use ws_token_auth::live::redis::RevocationBus;
use ws_token_auth::{AuthenticatedUser, Lifecycle, MemoryTokenStore, Token, TokenStore};
use ws_token_auth_django::signing::SecretKeys;
use ws_token_auth_django::{CHANNEL, DjangoStore, DjangoTables, install_triggers};

const KEY: &str = "bench-secret-key";

async fn watched<St: TokenStore>(node: &Lifecycle<St>, token: &Token) -> Watch {
    let found = node.store().authenticate(token).await.unwrap().expect("valid");
    node.watch(&AuthenticatedUser::new(found.user, token.clone(), CredentialKind::Cookie, None))
}

async fn closed(watch: Watch) -> Instant {
    tokio::time::timeout(Duration::from_secs(5), watch).await.expect("closed within 5 s");
    Instant::now()
}

/// A fresh DRF token of `user_id`, written as DRF's `Token.objects.create`
/// would.
async fn insert_token(pool: &PgPool, user_id: i32) -> String {
    let key = Token::generate().expose_secret()[..40].to_owned();
    sqlx::query("INSERT INTO authtoken_token (key, created, user_id) VALUES ($1, now(), $2)")
        .bind(&key)
        .bind(user_id)
        .execute(pool)
        .await
        .unwrap();
    key
}

async fn set_active(pool: &PgPool, user_id: i32, active: bool) {
    sqlx::query("UPDATE auth_user SET is_active = $2 WHERE id = $1")
        .bind(user_id)
        .bind(active)
        .execute(pool)
        .await
        .unwrap();
}

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "| {name} | {} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms |",
        samples.len(),
        ms(at(0.5)),
        ms(at(0.9)),
        ms(at(0.99)),
        ms(*samples.last().unwrap())
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let (blocks, rounds) = (args.first().copied().unwrap_or(3), args.get(1).copied().unwrap_or(100));
    let redis = std::env::var("REDIS_URL").expect("REDIS_URL");
    let django = testkit::Django::new("bench", KEY).await;
    let url = django.url().to_owned();
    let user_id: i32 = django.run(&["create-user", "alice", "pw"]).parse().unwrap();
    let pool = PgPool::connect(&url).await.unwrap();
    install_triggers(&pool, &DjangoTables::default(), CHANNEL).await.unwrap();

    // The socket's node: its own pool, store and bus.
    let node_pool = PgPool::connect(&url).await.unwrap();
    let store = DjangoStore::new(node_pool.clone(), DjangoTables::default(), SecretKeys::new(KEY).unwrap());
    let node = Lifecycle::new(Arc::new(store)).with_bus(PgBus::new(node_pool.clone(), CHANNEL));
    // Two nodes over each bus, sharing one memory store.
    let memory = Arc::new(MemoryTokenStore::<String>::new());
    let channel = format!("bench_{}", Token::generate().id());
    let pg = (
        Lifecycle::new(Arc::clone(&memory)).with_bus(PgBus::new(pool.clone(), channel.clone())),
        Lifecycle::new(Arc::clone(&memory)).with_bus(PgBus::new(node_pool.clone(), channel.clone())),
    );
    let redis_bus = || RevocationBus::new(&redis, channel.clone()).unwrap();
    let rd = (
        Lifecycle::new(Arc::clone(&memory)).with_bus(redis_bus()),
        Lifecycle::new(Arc::clone(&memory)).with_bus(redis_bus()),
    );
    tokio::time::sleep(Duration::from_millis(500)).await; // every listener listening

    let (mut deleted, mut deactivated, mut bus_pg, mut bus_redis) = (vec![], vec![], vec![], vec![]);
    for _ in 0..blocks * rounds {
        let key = insert_token(&pool, user_id).await;
        let watch = watched(&node, &Token::new(key.clone()).unwrap()).await;
        let start = Instant::now();
        sqlx::query("DELETE FROM authtoken_token WHERE key = $1").bind(&key).execute(&pool).await.unwrap();
        deleted.push(closed(watch).await - start);

        let key = insert_token(&pool, user_id).await;
        let watch = watched(&node, &Token::new(key.clone()).unwrap()).await;
        let start = Instant::now();
        set_active(&pool, user_id, false).await;
        deactivated.push(closed(watch).await - start);
        set_active(&pool, user_id, true).await;
        sqlx::query("DELETE FROM authtoken_token WHERE key = $1").bind(&key).execute(&pool).await.unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;

        for (pair, samples) in [(&pg, &mut bus_pg), (&rd, &mut bus_redis)] {
            let token = ws_token_auth::store::ManageTokens::issue(&*memory, &"bob".to_owned(), None).await.unwrap();
            let watch = watched(&pair.1, &token).await;
            let start = Instant::now();
            pair.0.revoke(&token).await.unwrap();
            samples.push(closed(watch).await - start);
        }
    }
    println!("| row | n | p50 | p90 | p99 | max |\n| --- | --- | --- | --- | --- | --- |");
    report("token deleted in Django's database -> 4401 on another node", deleted);
    report("user deactivated in Django's database -> 4403 on another node", deactivated);
    report("bus pg: revoke on node A -> close on node B (PgBus)", bus_pg);
    report("bus redis: revoke on node A -> close on node B (RevocationBus)", bus_redis);
    drop((node, pg, rd));
    node_pool.close().await;
    pool.close().await;
    django.drop_database().await;
}
