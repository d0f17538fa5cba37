//! One conformance suite, run against every store through the public
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

use http::{HeaderMap, HeaderValue, Uri};
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use ws_token_auth::extract::{CredentialKind, TokenSource};
use ws_token_auth::store::rusqlite::{Error as RowError, Row};
use ws_token_auth::store::{
    CachedTokenStore, RedisTokenStore, RusqliteTokenStore, RusqliteUser, SlidingExpiry, SqlTokenStore, UsersTable,
};
use ws_token_auth::ticket::TicketStore;
use ws_token_auth::{
    Authenticated, Authenticator, Identity, Lifecycle, ManageTokens, MemoryTokenStore, Rejection, StoreError, Token,
    TokenStore, TokenUser,
};

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

// --- the suite --------------------------------------------------------------

async fn user_of<S: TokenStore<User = User>>(store: &S, token: &Token) -> Option<User> {
    store.authenticate(token).await.unwrap().map(|found: Authenticated<User>| found.user)
}

async fn issue<St: ManageTokens<User = User>>(store: &St, user: &User) -> Token {
    store.issue(user, None).await.unwrap()
}

async fn issue_then_authenticate<St: ManageTokens<User = User>>(s: Subject<St>) {
    let [alice, bob] = [&users()[0], &users()[1]].map(Clone::clone);
    let store = &*s.store;
    let (a, b) = (issue(store, &alice).await, issue(store, &bob).await);
    assert_eq!(user_of(store, &a).await, Some(alice.clone()));
    assert_eq!(user_of(store, &b).await, Some(bob));
    assert_eq!(user_of(store, &a).await, Some(alice), "a second lookup answers the same");
}

async fn unknown_is_none<St: ManageTokens<User = User>>(s: Subject<St>) {
    assert_eq!(user_of(&*s.store, &Token::generate()).await, None);
    assert_eq!(user_of(&*s.store, &Token::new("short").unwrap()).await, None);
}

async fn revoke_is_none<St: ManageTokens<User = User>>(s: Subject<St>) {
    let alice = users()[0].clone();
    let store = &*s.store;
    let (first, second) = (issue(store, &alice).await, issue(store, &alice).await);
    assert!(user_of(store, &first).await.is_some());
    assert!(store.revoke(&first).await.unwrap(), "the store held it");
    assert_eq!(user_of(store, &first).await, None);
    assert!(!store.revoke(&first).await.unwrap(), "no longer");
    assert_eq!(user_of(store, &second).await, Some(alice), "only that token");
}

async fn revoke_user_revokes_all_of_that_user<St: ManageTokens<User = User>>(s: Subject<St>) {
    let [alice, bob] = [&users()[0], &users()[1]].map(Clone::clone);
    let store = &*s.store;
    let mut alices = Vec::new();
    for _ in 0..3 {
        alices.push(issue(store, &alice).await);
    }
    let bobs = issue(store, &bob).await;
    for token in &alices {
        assert!(user_of(store, token).await.is_some());
    }
    assert_eq!(store.revoke_user(&alice.id).await.unwrap(), 3);
    for token in &alices {
        assert_eq!(user_of(store, token).await, None);
    }
    assert_eq!(user_of(store, &bobs).await, Some(bob));
}

async fn lock_out_and_let_in<St: ManageTokens<User = User>>(s: Subject<St>) {
    let [alice, bob] = [&users()[0], &users()[1]].map(Clone::clone);
    let store = &*s.store;
    let (a, b) = (issue(store, &alice).await, issue(store, &bob).await);
    assert!(user_of(store, &a).await.is_some());
    store.lock_out(&alice.id).await.unwrap();
    assert_eq!(user_of(store, &a).await, None, "locked out");
    let issued_while_locked = issue(store, &alice).await;
    assert_eq!(user_of(store, &issued_while_locked).await, None, "a new token of a locked user is refused too");
    assert_eq!(user_of(store, &b).await, Some(bob), "others are not");
    // Through the lifecycle, a locked-out user is issued nothing at all.
    let lifecycle = Lifecycle::new(Arc::clone(&s.store));
    assert!(matches!(lifecycle.issue(&alice, None).await, Err(StoreError::LockedOut)));
    store.let_in(&alice.id).await.unwrap();
    assert_eq!(user_of(store, &a).await, Some(alice.clone()), "let back in, at once");
    assert_eq!(user_of(store, &issued_while_locked).await, Some(alice.clone()));
    let token = lifecycle.issue(&alice, None).await.unwrap();
    assert_eq!(user_of(store, &token).await, Some(alice));
}

async fn expiry_is_honoured_and_purged<St: ManageTokens<User = User>>(s: Subject<St>) {
    let alice = users()[0].clone();
    let store = &*s.store;
    let short = store.issue(&alice, Some(Duration::from_millis(400))).await.unwrap();
    let long = store.issue(&alice, Some(Duration::from_secs(3600))).await.unwrap();
    let found = store.authenticate(&short).await.unwrap().expect("valid before its expiry");
    assert!(found.expires_at.is_some());
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(user_of(store, &short).await, None, "expired");
    assert_eq!(user_of(store, &long).await, Some(alice));
    assert_eq!(store.purge_expired().await.unwrap(), 1, "the expired token, and only it, is purged");
    assert!(user_of(store, &long).await.is_some());
}

async fn concurrent_issue_and_authenticate<St: ManageTokens<User = User>>(s: Subject<St>) {
    let tasks: Vec<_> = users()
        .into_iter()
        .map(|user| {
            let store = Arc::clone(&s.store);
            tokio::spawn(async move {
                for _ in 0..5 {
                    let token = issue(&*store, &user).await;
                    assert_eq!(user_of(&*store, &token).await, Some(user.clone()));
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
}

async fn tokens_are_never_stored_in_clear<St: ManageTokens<User = User>>(s: Subject<St>) {
    let mut tokens = Vec::new();
    for user in &users()[..5] {
        tokens.push(issue(&*s.store, user).await);
        tokens.push(s.store.issue(user, Some(Duration::from_secs(60))).await.unwrap());
    }
    let raw = (s.raw)().await;
    assert!(!raw.is_empty(), "the raw dump shows nothing: the check would prove nothing");
    for token in &tokens {
        let secret = token.expose_secret();
        assert!(!raw.contains(secret), "a token is stored in clear:\n{raw}");
        assert!(!raw.contains(&secret[..16]), "part of a token is stored in clear:\n{raw}");
    }
}

// --- tickets ------------------------------------------------------------------

/// An authenticator as an app's WebSocket endpoint has it: the cookie, then tickets.
fn ticketing<St: ManageTokens<User = User> + TicketStore>(s: &Subject<St>) -> Authenticator<St> {
    Authenticator::from_shared(Arc::clone(&s.store))
        .sources([TokenSource::cookie("key"), TokenSource::ticket("ticket")])
        .tickets(Arc::clone(&s.store))
}

/// A ticket for a new token of `user`.
async fn ticket_for<St: ManageTokens<User = User> + TicketStore>(
    auth: &Authenticator<St>,
    user: &User,
    ttl: Option<Duration>,
) -> (Token, String) {
    let token = auth.store().issue(user, ttl).await.unwrap();
    let owner = auth.check_token(token.expose_secret(), CredentialKind::Cookie).await.unwrap();
    let ticket = auth.issue_ticket(&owner).await.unwrap();
    (token, ticket.expose_secret().to_owned())
}

async fn connect<St: TokenStore<User = User>>(
    auth: &Authenticator<St>,
    cookie: Option<&str>,
    ticket: &str,
) -> Result<(User, CredentialKind, ws_token_auth::TokenId), Rejection> {
    let mut headers = HeaderMap::new();
    if let Some(value) = cookie {
        headers.insert("cookie", HeaderValue::from_str(&format!("key={value}")).unwrap());
    }
    let uri: Uri = format!("/chat/stream/?ticket={ticket}").parse().unwrap();
    match auth.authenticate(&headers, &uri).await? {
        Identity::User(user) => Ok((user.user.clone(), user.credential_kind(), user.token_id())),
        Identity::Anonymous(_) => panic!("anonymous in required mode"),
    }
}

async fn a_ticket_opens_one_socket_living_by_its_token<St: ManageTokens<User = User> + TicketStore>(s: Subject<St>) {
    let auth = ticketing(&s);
    let alice = users()[0].clone();
    let (token, ticket) = ticket_for(&auth, &alice, None).await;
    let (user, kind, token_id) = connect(&auth, None, &ticket).await.expect("the first use");
    assert_eq!((user, kind, token_id), (alice, CredentialKind::Ticket, token.id()), "the socket lives by the token");
    let again = connect(&auth, None, &ticket).await.unwrap_err();
    assert!(matches!(again, Rejection::InvalidToken), "used up: {again:?}");
}

async fn a_hundred_racing_redemptions_have_one_winner<St: ManageTokens<User = User> + TicketStore>(s: Subject<St>) {
    let auth = ticketing(&s);
    for round in 0..3 {
        let (_, ticket) = ticket_for(&auth, &users()[round], None).await;
        let start = Arc::new(tokio::sync::Barrier::new(100));
        let racers: Vec<_> = (0..100)
            .map(|_| {
                let (auth, ticket, start) = (auth.clone(), ticket.clone(), Arc::clone(&start));
                tokio::spawn(async move {
                    start.wait().await;
                    connect(&auth, None, &ticket).await
                })
            })
            .collect();
        let mut winners = 0;
        for racer in racers {
            match racer.await.unwrap() {
                Ok(_) => winners += 1,
                Err(Rejection::InvalidToken) => {}
                Err(other) => panic!("a loser must get 401, not {other:?}"),
            }
        }
        assert_eq!(winners, 1, "round {round}: {winners} handshakes used one ticket");
    }
}

async fn a_revoked_token_or_a_late_ticket_opens_nothing<St: ManageTokens<User = User> + TicketStore>(s: Subject<St>) {
    let auth = ticketing(&s).ticket_ttl(Duration::from_millis(300));
    let alice = users()[0].clone();
    let (token, ticket) = ticket_for(&auth, &alice, None).await;
    let (_, spare) = ticket_for(&auth, &alice, None).await;
    assert!(auth.store().revoke(&token).await.unwrap());
    assert!(matches!(connect(&auth, None, &ticket).await, Err(Rejection::InvalidToken)), "voided with its token");
    let (_, late) = ticket_for(&auth, &alice, None).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(matches!(connect(&auth, None, &late).await, Err(Rejection::InvalidToken)), "expired");
    assert!(matches!(connect(&auth, None, &spare).await, Err(Rejection::InvalidToken)), "expired too");

    // Never past the token's own expiry.
    let long = ticketing(&s);
    let token = long.store().issue(&alice, Some(Duration::from_millis(400))).await.unwrap();
    let owner = long.check_token(token.expose_secret(), CredentialKind::Cookie).await.unwrap();
    let ticket = long.issue_ticket(&owner).await.unwrap();
    assert!(ticket.expires_in() <= Duration::from_millis(400), "{:?}", ticket.expires_in());
}

async fn a_ticket_is_no_token_and_a_token_no_ticket<St: ManageTokens<User = User> + TicketStore>(s: Subject<St>) {
    let auth = ticketing(&s);
    let alice = users()[0].clone();
    let (token, ticket) = ticket_for(&auth, &alice, None).await;
    let as_cookie = connect(&auth, Some(&ticket), "").await.unwrap_err();
    assert!(matches!(as_cookie, Rejection::InvalidToken), "a ticket as a cookie: {as_cookie:?}");
    let as_ticket = connect(&auth, None, token.expose_secret()).await.unwrap_err();
    assert!(matches!(as_ticket, Rejection::InvalidToken), "a token as a ticket: {as_ticket:?}");
    // A cookie beside the ticket authenticates; the ticket is left unused.
    let (_, kind, _) = connect(&auth, Some(token.expose_secret()), &ticket).await.unwrap();
    assert_eq!(kind, CredentialKind::Cookie);
    let (user, kind, _) = connect(&auth, None, &ticket).await.expect("still unused");
    assert_eq!((user, kind), (alice, CredentialKind::Ticket));
}

async fn tickets_are_never_stored_in_clear<St: ManageTokens<User = User> + TicketStore>(s: Subject<St>) {
    let auth = ticketing(&s);
    let mut secrets = Vec::new();
    for user in &users()[..3] {
        let (token, ticket) = ticket_for(&auth, user, None).await;
        secrets.extend([token.expose_secret().to_owned(), ticket]);
    }
    let raw = (s.raw)().await;
    assert!(!raw.is_empty(), "the raw dump shows nothing: the check would prove nothing");
    for secret in &secrets {
        assert!(!raw.contains(&secret[..16]), "a token or ticket is stored in clear:\n{raw}");
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
                async fn issue_then_authenticate() { super::issue_then_authenticate($make).await }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn unknown_is_none() { super::unknown_is_none($make).await }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn revoke_is_none() { super::revoke_is_none($make).await }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn revoke_user_revokes_all_of_that_user() { super::revoke_user_revokes_all_of_that_user($make).await }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn lock_out_and_let_in() { super::lock_out_and_let_in($make).await }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn expiry_is_honoured_and_purged() { super::expiry_is_honoured_and_purged($make).await }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn concurrent_issue_and_authenticate() { super::concurrent_issue_and_authenticate($make).await }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn tokens_are_never_stored_in_clear() { super::tokens_are_never_stored_in_clear($make).await }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn a_ticket_opens_one_socket_living_by_its_token() {
                    super::a_ticket_opens_one_socket_living_by_its_token($make).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn a_hundred_racing_redemptions_have_one_winner() {
                    super::a_hundred_racing_redemptions_have_one_winner($make).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn a_revoked_token_or_a_late_ticket_opens_nothing() {
                    super::a_revoked_token_or_a_late_ticket_opens_nothing($make).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn a_ticket_is_no_token_and_a_token_no_ticket() {
                    super::a_ticket_is_no_token_and_a_token_no_ticket($make).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn tickets_are_never_stored_in_clear() { super::tickets_are_never_stored_in_clear($make).await }
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
