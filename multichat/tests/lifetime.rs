//! PROTOCOL.md, "Token lifetime on an open socket": the `expiring` warning,
//! the in-band `refresh` and its answers, and `POST /api/token`, over a real
//! socket the way an Android client speaks.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use multichat::api::App;
use multichat::db::{Db, hash_password};
use multichat::limits::Limits;
use serde_json::{Value, json};
use testkit::{Socket, close_code, next_json, send_json};
use ws_token_auth::{Token, TokenStore};

struct Chat {
    addr: SocketAddr,
    app: App,
    alice: i64,
    bob: i64,
}

async fn chat(expiry_warning: Duration) -> Chat {
    let (url, _) = common::temp_sqlite("multichat-lifetime");
    let db = Db::open(&url).await.unwrap();
    let hash = hash_password("pw").unwrap();
    let alice = db.create_user("alice", &hash, false).await.unwrap();
    let bob = db.create_user("bob", &hash, false).await.unwrap();
    let limits = Limits { expiry_warning, login_token_ttl: Duration::from_secs(600), ..Limits::default() };
    let app = App::new(db, false, false).await.unwrap().with_limits(limits);
    Chat { addr: common::serve_app(app.clone()).await, app, alice, bob }
}

impl Chat {
    async fn token(&self, user: i64, ttl: Option<Duration>) -> String {
        self.app.db.issue_token(user, ttl).await.unwrap().expose_secret().to_owned()
    }

    async fn socket(&self, token: &str) -> Socket {
        common::connect_with_token(self.addr, token).await
    }
}

async fn refresh(socket: &mut Socket, token: &str) -> Value {
    send_json(socket, json!({"command": "refresh", "token": token})).await;
    next_json(socket).await
}

async fn joins(socket: &mut Socket) -> bool {
    send_json(socket, json!({"command": "join", "room": "1"})).await;
    next_json(socket).await["join"] == "1"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_warning_comes_at_its_lead_time_and_at_once_when_less_is_left() {
    let chat = chat(Duration::from_secs(1)).await;
    // 3 s left, warned 1 s before: after about 2 s, "1 s left".
    let mut socket = chat.socket(&chat.token(chat.alice, Some(Duration::from_secs(3))).await).await;
    let started = std::time::Instant::now();
    assert_eq!(next_json(&mut socket).await, json!({"auth": "expiring", "expires_in": 1}));
    assert!(started.elapsed() >= Duration::from_millis(1500), "warned early: {:?}", started.elapsed());
    assert_eq!(close_code(&mut socket, Duration::from_secs(3)).await, Some(4401), "no refresh: closed at expiry");

    // Less than the lead time left at the upgrade: warned at once, whole seconds rounded up.
    let chat = chat_with_default_warning().await;
    let mut socket = chat.socket(&chat.token(chat.alice, Some(Duration::from_millis(2500))).await).await;
    let warning = tokio::time::timeout(Duration::from_millis(500), next_json(&mut socket)).await.unwrap();
    assert_eq!(warning, json!({"auth": "expiring", "expires_in": 3}));
}

async fn chat_with_default_warning() -> Chat {
    chat(Limits::default().expiry_warning).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_moves_the_socket_to_the_new_token_and_keeps_its_rooms() {
    let chat = chat_with_default_warning().await;
    let old = chat.token(chat.alice, Some(Duration::from_secs(30))).await;
    let mut socket = chat.socket(&old).await;
    assert_eq!(next_json(&mut socket).await["auth"], "expiring");
    assert!(joins(&mut socket).await);

    let fresh = chat.token(chat.alice, None).await;
    assert_eq!(refresh(&mut socket, &fresh).await, json!({"auth": "refreshed", "expires_in": null}));
    assert_eq!(
        refresh(&mut socket, &fresh).await,
        json!({"auth": "refreshed", "expires_in": null}),
        "again: no change"
    );
    // The old token's revocation no longer closes it; the new one's does.
    assert!(chat.app.lifecycle.revoke(&Token::new(old).unwrap()).await.unwrap());
    send_json(&mut socket, json!({"command": "send", "room": "1", "message": "still here"})).await;
    assert_eq!(next_json(&mut socket).await["message"], "still here", "its rooms stayed");
    chat.app.lifecycle.revoke(&Token::new(fresh).unwrap()).await.unwrap();
    assert_eq!(close_code(&mut socket, Duration::from_secs(1)).await, Some(4401));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refreshed_socket_lives_by_the_new_tokens_expiry() {
    let chat = chat(Duration::from_secs(1)).await;
    let mut socket = chat.socket(&chat.token(chat.alice, None).await).await;
    let short = chat.token(chat.alice, Some(Duration::from_millis(2500))).await;
    assert_eq!(refresh(&mut socket, &short).await, json!({"auth": "refreshed", "expires_in": 3}));
    assert_eq!(next_json(&mut socket).await, json!({"auth": "expiring", "expires_in": 1}), "the new token's warning");
    assert_eq!(close_code(&mut socket, Duration::from_secs(3)).await, Some(4401), "and its expiry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refreshes_that_are_refused_change_nothing() {
    let chat = chat_with_default_warning().await;
    let token = chat.token(chat.alice, None).await;
    let mut socket = chat.socket(&token).await;
    let revoked = chat.token(chat.alice, None).await;
    chat.app.lifecycle.revoke(&Token::new(revoked.clone()).unwrap()).await.unwrap();
    let bobs = chat.token(chat.bob, None).await;
    let rejected = json!({"error": "REFRESH_REJECTED"});
    for (what, candidate) in [
        ("another user's", bobs.as_str()),
        ("an unknown", Token::generate().expose_secret()),
        ("a revoked", revoked.as_str()),
        ("a malformed", "not a token"),
        ("an over-long", &"x".repeat(300)),
    ] {
        assert_eq!(refresh(&mut socket, candidate).await, rejected, "{what} token");
    }
    for frame in [json!({"command": "refresh"}), json!({"command": "refresh", "token": 7})] {
        send_json(&mut socket, frame).await;
        assert_eq!(next_json(&mut socket).await, json!({"error": "MALFORMED_COMMAND"}));
    }
    assert!(joins(&mut socket).await, "the socket stays open, on its old token");
    chat.app.lifecycle.revoke(&Token::new(token).unwrap()).await.unwrap();
    assert_eq!(close_code(&mut socket, Duration::from_secs(1)).await, Some(4401));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_outage_during_a_refresh_is_reported_and_changes_nothing() {
    let chat = chat_with_default_warning().await;
    let mut socket = chat.socket(&chat.token(chat.alice, None).await).await;
    let fresh = chat.token(chat.alice, None).await; // never looked up: not in the cache
    chat.app.db.close().await;
    assert_eq!(refresh(&mut socket, &fresh).await, json!({"error": "UNAVAILABLE"}));
    assert!(joins(&mut socket).await, "still open");
}

async fn post_token(addr: SocketAddr, headers: &[(&str, &str)], body: &str) -> (u16, String, Value) {
    let (status, head, body) = common::http(addr, "POST", "/api/token", headers, body).await;
    (status, head, serde_json::from_str(&body).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_token_issues_a_fresh_token_for_the_same_user() {
    let chat = chat_with_default_warning().await;
    let token = chat.token(chat.alice, None).await;
    let key = format!("key={token}");
    let cookie = ("cookie", key.as_str());
    let json = ("content-type", "application/json");

    let (status, head, body) = post_token(chat.addr, &[cookie], "").await;
    assert_eq!((status, &body["expires_in"]), (200, &json!(600)), "the login-token lifetime by default");
    let fresh = body["token"].as_str().unwrap().to_owned();
    assert!(head.contains(&format!("key={fresh}; Path=/; HttpOnly; SameSite=Lax")), "set as login sets it: {head}");
    assert!(head.to_ascii_lowercase().contains("cache-control: no-store"));
    let found = chat.app.lifecycle.store().authenticate(&Token::new(fresh.clone()).unwrap()).await.unwrap().unwrap();
    let left = found.expires_at.expect("it expires").duration_since(std::time::SystemTime::now()).unwrap();
    assert!(left > Duration::from_secs(590) && left <= Duration::from_secs(600), "{left:?}");
    let mut socket = chat.socket(&fresh).await;
    assert_eq!(refresh(&mut socket, &token).await["auth"], "refreshed", "the old one stays valid");

    let (status, _, body) = post_token(chat.addr, &[cookie, json], r#"{"ttl": 60}"#).await;
    assert_eq!((status, body["expires_in"].as_u64()), (200, Some(60)));
    for bad in [r#"{"ttl": 0}"#, r#"{"ttl": 601}"#, r#"{"ttl": -5}"#, r#"{"ttl": "60"}"#, r#"{"ttl": 1.5}"#] {
        let (status, _, body) = post_token(chat.addr, &[cookie, json], bad).await;
        assert_eq!((status, body), (400, json!({"error": "INVALID_TTL"})), "{bad}");
    }
    let text = ("content-type", "text/plain");
    assert_eq!(post_token(chat.addr, &[cookie, text], r#"{"ttl": 60}"#).await.0, 415);
    assert_eq!(post_token(chat.addr, &[], "").await.0, 401, "authenticated only");
    let evil = ("origin", "https://evil.example");
    assert_eq!(post_token(chat.addr, &[cookie, evil], "").await.0, 403, "not from another site");
    let bearer = format!("Bearer {token}");
    assert_eq!(post_token(chat.addr, &[("authorization", &bearer)], "").await.0, 200, "a native client");
}
