//! ws-token-auth beside a real Django 5.2 + DRF (`tests/django_app/`, from
//! PyPI into `.deps` by `.ci/run`): Django's own migrations make the tables
//! in a fresh PostgreSQL database, Django's ORM and test client make the
//! users, tokens and sessions, and two nodes (two lifecycles, each with its
//! own pool and `PgBus`, as two processes would) watch the sockets.

use std::sync::Arc;
use std::time::Duration;

use http::header::{AUTHORIZATION, COOKIE};
use http::{HeaderMap, HeaderValue, Uri};
use sqlx::PgPool;
use ws_token_auth::extract::TokenSource;
use ws_token_auth::live::postgres::PgBus;
use ws_token_auth::live::{CloseReason, Watch};
use ws_token_auth::{AuthenticatedUser, Authenticator, Lifecycle, Rejection, Token};
use ws_token_auth_django::signing::SecretKeys;
use ws_token_auth_django::{CHANNEL, DjangoStore, DjangoTables, DjangoUser, install_triggers};

const SECRET_KEY: &str = "django-insecure-test-key-for-ws-token-auth";

/// A Django app over a database of its own, and a pool on it.
struct Django {
    app: testkit::Django,
    pool: PgPool,
    tables: DjangoTables,
}

impl Django {
    async fn new() -> Self {
        Self::over(testkit::Django::new("lib", SECRET_KEY).await, DjangoTables::default()).await
    }

    async fn over(app: testkit::Django, tables: DjangoTables) -> Self {
        Self { pool: PgPool::connect(app.url()).await.unwrap(), app, tables }
    }

    fn run(&self, args: &[&str]) -> String {
        self.app.run(args)
    }

    fn store(&self, pool: &PgPool) -> DjangoStore {
        DjangoStore::new(pool.clone(), self.tables.clone(), SecretKeys::new(SECRET_KEY).unwrap())
    }

    /// A node: its own pool, store, lifecycle and bus, and the
    /// authenticator a socket route would use.
    async fn node(&self) -> Node {
        let pool = PgPool::connect(self.app.url()).await.unwrap();
        let lifecycle = Lifecycle::new(Arc::new(self.store(&pool))).with_bus(PgBus::new(pool.clone(), CHANNEL));
        let auth = lifecycle.authenticator().sources([
            TokenSource::cookie("key"),
            TokenSource::authorization(["Token"]),
            TokenSource::cookie("sessionid"),
        ]);
        Node { lifecycle, auth }
    }

    async fn drop_database(self) {
        self.pool.close().await;
        self.app.drop_database().await;
    }
}

struct Node {
    lifecycle: Lifecycle<DjangoStore>,
    auth: Authenticator<DjangoStore>,
}

impl Node {
    async fn handshake(
        &self,
        header: http::HeaderName,
        value: &str,
    ) -> Result<AuthenticatedUser<DjangoUser>, Rejection> {
        let mut headers = HeaderMap::new();
        headers.insert(header, HeaderValue::from_str(value).unwrap());
        let identity = self.auth.authenticate(&headers, &Uri::from_static("/ws")).await?;
        Ok(identity.user().expect("required mode").clone())
    }

    async fn cookie(&self, name: &str, value: &str) -> Result<AuthenticatedUser<DjangoUser>, Rejection> {
        self.handshake(COOKIE, &format!("{name}={value}")).await
    }

    /// A socket opened with `name=value`, watched on this node.
    async fn socket(&self, name: &str, value: &str) -> Watch {
        let user = self.cookie(name, value).await.expect("the credential opens a socket");
        self.lifecycle.watch(&user)
    }
}

/// A 401: no such credential (never a 503, never anonymous).
fn refused(result: Result<AuthenticatedUser<DjangoUser>, Rejection>) {
    assert!(matches!(result, Err(Rejection::InvalidToken)), "refused with 401, got {:?}", result.map(|u| u.user));
}

async fn closes(watch: Watch) -> CloseReason {
    tokio::time::timeout(Duration::from_secs(1), watch).await.expect("closed within 1 s")
}

async fn still_open(watch: &mut Watch) {
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(watch.reason(), None, "this socket stays open");
}

#[tokio::test(flavor = "multi_thread")]
async fn djangos_tokens_and_sessions_open_sockets_and_bad_ones_are_refused() {
    let django = Django::new().await;
    let node = django.node().await;
    django.run(&["create-user", "alice", "pw-alice"]);
    let token = django.run(&["token", "alice"]);
    let session = django.run(&["login", "alice", "pw-alice"]);

    let by_android = node.cookie("key", &token).await.unwrap();
    assert_eq!(by_android.user.username, "alice");
    assert_eq!(by_android.expires_at, None, "a DRF token does not expire");
    let by_header = node.handshake(AUTHORIZATION, &format!("Token {token}")).await.unwrap();
    assert_eq!(by_header.user.id, by_android.user.id);
    let by_session = node.cookie("sessionid", &session).await.unwrap();
    assert_eq!(by_session.user, by_android.user);
    assert!(by_session.expires_at.is_some(), "a session socket ends with the session");

    // Tampered data in the row (one character of the signed data changed).
    let other = django.run(&["login", "alice", "pw-alice"]);
    sqlx::query("UPDATE django_session SET session_data = overlay(session_data placing 'A' from 3 for 1) WHERE session_key = $1")
        .bind(&other)
        .execute(&django.pool)
        .await
        .unwrap();
    refused(node.cookie("sessionid", &other).await);
    // Expired.
    let expired = django.run(&["login", "alice", "pw-alice"]);
    django.run(&["expire", &expired]);
    refused(node.cookie("sessionid", &expired).await);
    // Signed with a key this node does not have.
    let foreign = DjangoStore::new(django.pool.clone(), DjangoTables::default(), SecretKeys::new("other").unwrap());
    use ws_token_auth::TokenStore;
    assert!(foreign.authenticate(&Token::new(session.clone()).unwrap()).await.unwrap().is_none());
    // Django's AUTHENTICATION_BACKENDS: a login through a backend not listed is anonymous.
    let listed = django.store(&django.pool).authentication_backends(["django.contrib.auth.backends.ModelBackend"]);
    assert!(listed.authenticate(&Token::new(session.clone()).unwrap()).await.unwrap().is_some());
    let unlisted = django.store(&django.pool).authentication_backends(["myapp.backends.EmailBackend"]);
    assert!(unlisted.authenticate(&Token::new(session.clone()).unwrap()).await.unwrap().is_none());
    assert!(
        unlisted.authenticate(&Token::new(token.clone()).unwrap()).await.unwrap().is_some(),
        "DRF tokens: no backend"
    );
    // Unknown credentials of both shapes.
    refused(node.cookie("key", &"0".repeat(40)).await);
    refused(node.cookie("sessionid", "nosuchsession12345678901234567").await);
    // A stale hash: the password changed after the login. DRF tokens outlive it, as in Django.
    django.run(&["set-password", "alice", "pw-new"]);
    refused(node.cookie("sessionid", &session).await);
    assert!(node.cookie("key", &token).await.is_ok());

    // The database gone: an outage (503), never anonymous.
    django.pool.close().await;
    let down = django.store(&django.pool);
    assert!(down.authenticate(&Token::new(token).unwrap()).await.is_err());
    drop(node);
    django.drop_database().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn what_django_does_closes_the_right_sockets_on_both_nodes() {
    let django = Django::new().await;
    install_triggers(&django.pool, &DjangoTables::default(), CHANNEL).await.unwrap();
    install_triggers(&django.pool, &DjangoTables::default(), CHANNEL).await.unwrap(); // idempotent
    let (a, b) = (django.node().await, django.node().await);
    for name in ["alice", "bob", "carol", "dave"] {
        django.run(&["create-user", name, "pw"]);
    }
    // Both nodes listen before anything changes.
    tokio::time::sleep(Duration::from_millis(300)).await;

    // DRF logout: that token's sockets close on both nodes; the session stays.
    let alice_token = django.run(&["token", "alice"]);
    let alice_session = django.run(&["login", "alice", "pw"]);
    let (token_on_a, token_on_b) = (a.socket("key", &alice_token).await, b.socket("key", &alice_token).await);
    let mut alice_session_on_b = b.socket("sessionid", &alice_session).await;
    django.run(&["delete-token", "alice"]);
    assert_eq!(closes(token_on_a).await.code(), 4401);
    assert_eq!(closes(token_on_b).await.code(), 4401);
    still_open(&mut alice_session_on_b).await;
    refused(a.cookie("key", &alice_token).await);

    // Django's logout of the session.
    django.run(&["logout", &alice_session]);
    assert_eq!(closes(alice_session_on_b).await.code(), 4401);
    refused(b.cookie("sessionid", &alice_session).await);

    // A regenerated token: the old one's sockets close, the new one opens.
    let old = django.run(&["token", "bob"]);
    let bob_old_on_a = a.socket("key", &old).await;
    let new = django.run(&["regenerate-token", "bob"]);
    assert_eq!(closes(bob_old_on_a).await.code(), 4401);
    assert!(b.cookie("key", &new).await.is_ok());

    // A password change ends the user's sessions (not their DRF token, nor others' sessions).
    let bob_session = django.run(&["login", "bob", "pw"]);
    let carol_session = django.run(&["login", "carol", "pw"]);
    let bob_session_on_a = a.socket("sessionid", &bob_session).await;
    let mut bob_token_on_b = b.socket("key", &new).await;
    let mut carol_on_a = a.socket("sessionid", &carol_session).await;
    django.run(&["set-password", "bob", "pw2"]);
    assert_eq!(closes(bob_session_on_a).await.code(), 4401);
    still_open(&mut bob_token_on_b).await;
    still_open(&mut carol_on_a).await;

    // Deactivated: every socket of the user closes with 4403, on both nodes; refused after.
    let carol_token = django.run(&["token", "carol"]);
    let carol_token_on_b = b.socket("key", &carol_token).await;
    django.run(&["set-active", "carol", "0"]);
    assert_eq!(closes(carol_on_a).await.code(), 4403);
    assert_eq!(closes(carol_token_on_b).await.code(), 4403);
    refused(a.cookie("key", &carol_token).await);
    // Active again: her token works again.
    django.run(&["set-active", "carol", "1"]);
    assert!(b.cookie("key", &carol_token).await.is_ok());

    // Deleted: the user's sockets close.
    let dave_token = django.run(&["token", "dave"]);
    let dave_session = django.run(&["login", "dave", "pw"]);
    let (dave_token_on_a, dave_session_on_b) =
        (a.socket("key", &dave_token).await, b.socket("sessionid", &dave_session).await);
    django.run(&["delete-user", "dave"]);
    assert!(matches!(closes(dave_token_on_a).await.code(), 4401 | 4403));
    assert!(matches!(closes(dave_session_on_b).await.code(), 4401 | 4403));
    assert!(a.cookie("sessionid", &dave_session).await.is_err());

    drop((a, b));
    django.drop_database().await;
}

/// A custom `AUTH_USER_MODEL` keyed by a UUID (`accounts.Member` of the
/// test app): the store reads the key as Django writes it in a session, and
/// the triggers name the user the same way.
#[tokio::test(flavor = "multi_thread")]
async fn a_custom_user_model_keyed_by_a_uuid_is_served_and_watched_the_same() {
    let app = testkit::Django::with_user_model("uuid", SECRET_KEY, "accounts.Member").await;
    let django = Django::over(app, DjangoTables::default().users("accounts_member").unwrap()).await;
    django.node().await.lifecycle.store().check_tables().await.expect("the custom table is readable");
    install_triggers(&django.pool, &django.tables, CHANNEL).await.unwrap();
    let (a, b) = (django.node().await, django.node().await);
    let alice = django.run(&["create-user", "alice", "pw"]);
    assert_eq!(alice.len(), 36, "a UUID key: {alice}");
    django.run(&["create-user", "bob", "pw"]);
    tokio::time::sleep(Duration::from_millis(300)).await; // both nodes listen

    let token = django.run(&["token", "alice"]);
    let session = django.run(&["login", "alice", "pw"]);
    let by_token = a.cookie("key", &token).await.expect("the DRF token of a UUID-keyed user");
    let by_session = b.cookie("sessionid", &session).await.expect("the session of a UUID-keyed user");
    assert_eq!((by_token.user.id.as_str(), by_session.user.id.as_str()), (alice.as_str(), alice.as_str()));
    assert_eq!(by_token.user.username, "alice");

    // A password change ends the session, not the token; a deactivation
    // closes the rest with 4403 on the other node.
    let (session_on_a, token_on_b) = (a.lifecycle.watch(&by_session), b.lifecycle.watch(&by_token));
    let bob_session = django.run(&["login", "bob", "pw"]);
    let mut bob_on_a = a.socket("sessionid", &bob_session).await;
    django.run(&["set-password", "alice", "pw2"]);
    assert_eq!(closes(session_on_a).await.code(), 4401);
    refused(b.cookie("sessionid", &session).await);
    still_open(&mut bob_on_a).await;
    django.run(&["set-active", "alice", "0"]);
    assert_eq!(closes(token_on_b).await.code(), 4403);
    refused(a.cookie("key", &token).await);

    // A session naming a key that is no UUID (signed with the key, so only
    // Django could have made it): no such user, not an outage.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let keys = SecretKeys::new(SECRET_KEY).unwrap();
    let object = serde_json::json!({"_auth_user_id": "7", "_auth_user_hash": "x"});
    let forged =
        ws_token_auth_django::signing::sign_object(&object, ws_token_auth_django::SESSION_SALT, keys.current(), now);
    sqlx::query(
        "INSERT INTO django_session VALUES ('notauuidsessionkey0123456789abcd', $1, now() + interval '1 hour')",
    )
    .bind(forged)
    .execute(&django.pool)
    .await
    .unwrap();
    refused(a.cookie("sessionid", "notauuidsessionkey0123456789abcd").await);

    drop((a, b));
    django.drop_database().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_the_triggers_revalidation_finds_djangos_changes_with_the_right_code() {
    let django = Django::new().await; // no install_triggers: no right to create them
    let node = django.node().await;
    for name in ["erin", "frank"] {
        django.run(&["create-user", name, "pw"]);
    }
    let erin = django.run(&["token", "erin"]);
    let erin_session = django.run(&["login", "erin", "pw"]);
    let frank = django.run(&["token", "frank"]);
    let (erin_on, erin_session_on) = (node.socket("key", &erin).await, node.socket("sessionid", &erin_session).await);
    let mut frank_on = node.socket("key", &frank).await;

    django.run(&["set-active", "erin", "0"]);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(node.lifecycle.revalidate_once().await, 2);
    assert_eq!(closes(erin_on).await.code(), 4403, "deactivated: 4403, also for a DRF token");
    assert_eq!(closes(erin_session_on).await.code(), 4403, "and for a session");

    django.run(&["delete-token", "frank"]);
    assert_eq!(frank_on.reason(), None, "nothing tells the node");
    assert_eq!(node.lifecycle.revalidate_once().await, 1);
    assert_eq!(closes(frank_on).await.code(), 4401);

    drop(node);
    django.drop_database().await;
}
