//! `serve --django` beside a real Django 5.2 + DRF (`django/tests/django_app/`,
//! installed by `.ci/run`): Django's migrations make a fresh PostgreSQL
//! database, Django's ORM and test client make the users, tokens and
//! sessions, `django-setup` installs the triggers, and two `serve --django`
//! processes serve real WebSocket clients. Rows of PROTOCOL.md's "Beside a
//! Django app".

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{chat_handshake, http};
use http::StatusCode;
use serde_json::json;
use testkit::{Socket, close_code, next_json, send_json};
use tokio::process::Child;

const SECRET_KEY: &str = "django-insecure-multichat-test-key";

/// A Django app over a database of its own, and `serve --django` over it.
struct Django(testkit::Django);

impl Django {
    async fn new() -> Self {
        Self(testkit::Django::new("chat", SECRET_KEY).await)
    }

    fn run(&self, args: &[&str]) -> String {
        self.0.run(args)
    }

    async fn serve(&self, options: &[&str]) -> (Child, SocketAddr) {
        let mut command = common::multichat();
        command.args(["--database-url", self.0.url(), "serve", "--django", "--bind", "127.0.0.1:0"]).args(options);
        command.env("DJANGO_SECRET_KEY", SECRET_KEY);
        common::spawn_serve(command).await
    }

    async fn drop_database(self) {
        self.0.drop_database().await;
    }
}

async fn socket(addr: SocketAddr, headers: &[(&str, &str)]) -> Socket {
    let (status, socket) = chat_handshake(addr, headers).await;
    assert_eq!(status, StatusCode::SWITCHING_PROTOCOLS, "{headers:?}");
    socket.unwrap()
}

async fn status(addr: SocketAddr, headers: &[(&str, &str)]) -> StatusCode {
    chat_handshake(addr, headers).await.0
}

/// A connect ticket from `addr`'s `POST /api/ticket`, asked with `cookie`.
async fn ticket(addr: SocketAddr, cookie: &str) -> String {
    let (code, _, body) = http(addr, "POST", "/api/ticket", &[("cookie", cookie)], "").await;
    assert_eq!(code, 200, "{body}");
    serde_json::from_str::<serde_json::Value>(&body).unwrap()["ticket"].as_str().unwrap().to_owned()
}

/// The handshake's status with `?ticket=` alone.
async fn redeem(addr: SocketAddr, ticket: &str) -> StatusCode {
    testkit::handshake(&format!("ws://{addr}/chat/stream/?ticket={ticket}"), &[]).await.0
}

/// `cookie` is refused (401) by `addr`'s API within `within`.
async fn refused_within(addr: SocketAddr, cookie: &str, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let code = http(addr, "GET", "/api/rooms", &[("cookie", cookie)], "").await.0;
        if code == 401 {
            return;
        }
        assert_eq!(code, 200);
        assert!(tokio::time::Instant::now() < deadline, "still accepted after {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn join(socket: &mut Socket, room: &str) -> serde_json::Value {
    send_json(socket, json!({"command": "join", "room": room})).await;
    next_json(socket).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn djangos_credentials_open_sockets_and_what_django_does_closes_them_on_both_processes() {
    let django = Django::new().await;
    for name in ["alice", "bob", "carol"] {
        django.run(&["create-user", name, "pw"]);
    }
    django.run(&["set-staff", "carol"]);
    let setup = common::cli(django.0.url(), &["django-setup"]).await;
    assert!(setup.contains("triggers installed"), "{setup}");
    common::cli(django.0.url(), &["django-setup"]).await; // idempotent
    let (_a_process, a) = django.serve(&[]).await;
    let (_b_process, b) = django.serve(&[]).await;
    tokio::time::sleep(Duration::from_millis(300)).await; // both listening

    let alice_token = django.run(&["token", "alice"]);
    let alice_session = django.run(&["login", "alice", "pw"]);
    let (android, header, session) =
        (format!("key={alice_token};"), format!("Token {alice_token}"), format!("sessionid={alice_session}"));
    // The Android cookie, the Authorization header, the session cookie (same host).
    let mut by_android = socket(a, &[("cookie", &android)]).await;
    let mut by_header = socket(b, &[("authorization", &header)]).await;
    let mut by_session = socket(b, &[("cookie", &session), ("origin", &format!("http://{b}"))]).await;
    assert_eq!(join(&mut by_session, "1").await, json!({"join": "1", "title": "General"}));
    assert_eq!(join(&mut by_android, "2").await, json!({"error": "ROOM_ACCESS_DENIED"}), "not staff");
    // A session from a foreign Origin: 403; a made-up one: 401; an oversized cookie: 400.
    assert_eq!(status(a, &[("cookie", &session), ("origin", "https://evil.example")]).await, StatusCode::FORBIDDEN);
    assert_eq!(status(a, &[("cookie", "sessionid=abcdefghijklmnopqrstuvwxyz012345")]).await, StatusCode::UNAUTHORIZED);
    let oversized = format!("sessionid={}", "a".repeat(4096));
    assert_eq!(status(a, &[("cookie", &oversized)]).await, StatusCode::BAD_REQUEST);
    // A tampered session (its data altered in the table: the signature no
    // longer matches) and an expired one: 401.
    let tampered = django.run(&["login", "alice", "pw"]);
    let pool = sqlx::PgPool::connect(django.0.url()).await.unwrap();
    sqlx::query("UPDATE django_session SET session_data = 'x' || session_data WHERE session_key = $1")
        .bind(&tampered)
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(status(b, &[("cookie", &format!("sessionid={tampered}"))]).await, StatusCode::UNAUTHORIZED);
    let expired = django.run(&["login", "alice", "pw"]);
    django.run(&["expire", &expired]);
    assert_eq!(status(b, &[("cookie", &format!("sessionid={expired}"))]).await, StatusCode::UNAUTHORIZED);
    pool.close().await;
    // Django logs users in and out: not this app.
    for path in ["/api/login", "/api/logout", "/api/token"] {
        assert_eq!(http(a, "POST", path, &[("cookie", &android)], "").await.0, 404, "{path}");
    }
    assert_eq!(http(a, "GET", "/api/rooms", &[("cookie", &android)], "").await.0, 200);
    // is_staff opens the staff room.
    let carol_token = django.run(&["token", "carol"]);
    let mut carol = socket(a, &[("cookie", &format!("key={carol_token}"))]).await;
    assert_eq!(join(&mut carol, "2").await, json!({"join": "2", "title": "Staff"}));

    // A connect ticket asked with the DRF token on one process opens a socket
    // on the other; Django's logout of the token voids the unused ones.
    assert_eq!(redeem(b, &ticket(a, &android).await).await, StatusCode::SWITCHING_PROTOCOLS);
    let unused = ticket(a, &android).await;

    // DRF logout: the token's sockets close on both processes; the session's stays.
    django.run(&["delete-token", "alice"]);
    assert_eq!(close_code(&mut by_android, Duration::from_secs(1)).await, Some(4401));
    assert_eq!(close_code(&mut by_header, Duration::from_secs(1)).await, Some(4401));
    assert_eq!(status(b, &[("cookie", &android)]).await, StatusCode::UNAUTHORIZED);
    assert_eq!(redeem(b, &unused).await, StatusCode::UNAUTHORIZED, "the token's unused ticket is void");
    // Django's logout of the session.
    django.run(&["logout", &alice_session]);
    assert_eq!(close_code(&mut by_session, Duration::from_secs(1)).await, Some(4401));
    assert_eq!(status(a, &[("cookie", &session), ("origin", &format!("http://{a}"))]).await, StatusCode::UNAUTHORIZED);

    // A password change ends the user's sessions, not their DRF token.
    let bob_token = django.run(&["token", "bob"]);
    let bob_session = django.run(&["login", "bob", "pw"]);
    let mut bob_by_token = socket(a, &[("cookie", &format!("key={bob_token}"))]).await;
    let mut bob_by_session = socket(b, &[("cookie", &format!("sessionid={bob_session}"))]).await;
    // Seen by process A through the API too (no socket there: nothing to revalidate).
    let bob_session_cookie = format!("sessionid={bob_session}");
    assert_eq!(http(a, "GET", "/api/rooms", &[("cookie", &bob_session_cookie)], "").await.0, 200);
    django.run(&["set-password", "bob", "pw2"]);
    assert_eq!(close_code(&mut bob_by_session, Duration::from_secs(1)).await, Some(4401));
    // Process A heard the same notification: its cache (30 s for a valid
    // answer) forgot everything.
    refused_within(a, &bob_session_cookie, Duration::from_secs(1)).await;
    assert_eq!(status(a, &[("cookie", &bob_session_cookie)]).await, StatusCode::UNAUTHORIZED);
    send_json(&mut bob_by_token, json!({"command": "join", "room": "1"})).await;
    assert_eq!(
        next_json(&mut bob_by_token).await,
        json!({"join": "1", "title": "General"}),
        "the token's socket lives"
    );

    // A regenerated token: the old one's socket closes, the new one opens.
    let carol_new = django.run(&["regenerate-token", "carol"]);
    assert_eq!(close_code(&mut carol, Duration::from_secs(1)).await, Some(4401));
    assert_eq!(status(b, &[("cookie", &format!("key={carol_token}"))]).await, StatusCode::UNAUTHORIZED);
    let mut carol = socket(b, &[("cookie", &format!("key={carol_new}"))]).await;

    // Deactivated: 4403 on every process, refused at once; active again: back.
    django.run(&["set-active", "bob", "0"]);
    assert_eq!(close_code(&mut bob_by_token, Duration::from_secs(1)).await, Some(4403));
    assert_eq!(status(b, &[("cookie", &format!("key={bob_token}"))]).await, StatusCode::UNAUTHORIZED);
    django.run(&["set-active", "bob", "1"]);
    let _bob_again = socket(b, &[("cookie", &format!("key={bob_token}"))]).await;

    // Deleted.
    django.run(&["delete-user", "carol"]);
    assert!(matches!(close_code(&mut carol, Duration::from_secs(1)).await, Some(4401 | 4403)));

    django.drop_database().await;
}

/// No `django-setup` (no right to create triggers): revalidation every
/// `--revalidate-secs` finds Django's changes, caches included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_triggers_the_same_holds_within_revalidate_secs() {
    let django = Django::new().await;
    for name in ["alice", "bob"] {
        django.run(&["create-user", name, "pw"]);
    }
    let (_a_process, a) = django.serve(&["--revalidate-secs", "1"]).await;
    let (_b_process, b) = django.serve(&["--revalidate-secs", "1"]).await;
    let alice_token = django.run(&["token", "alice"]);
    let android = format!("key={alice_token};");
    let bob_session = format!("sessionid={}", django.run(&["login", "bob", "pw"]));
    let bob_token = format!("key={}", django.run(&["token", "bob"]));
    let mut alice_on_b = socket(b, &[("cookie", &android)]).await;
    let mut bob_session_on_b = socket(b, &[("cookie", &bob_session)]).await;
    let mut bob_token_on_a = socket(a, &[("cookie", &bob_token)]).await;
    // Answers in process A's cache, with no socket of theirs there.
    assert_eq!(http(a, "GET", "/api/rooms", &[("cookie", &android)], "").await.0, 200);
    assert_eq!(http(a, "GET", "/api/rooms", &[("cookie", &bob_session)], "").await.0, 200);

    // Revalidation every second (up to 10 % jitter), and one in flight.
    let bound = Duration::from_millis(2500);
    django.run(&["delete-token", "alice"]);
    assert_eq!(close_code(&mut alice_on_b, bound).await, Some(4401));
    refused_within(a, &android, bound).await;
    django.run(&["set-password", "bob", "pw2"]);
    assert_eq!(close_code(&mut bob_session_on_b, bound).await, Some(4401));
    refused_within(a, &bob_session, bound).await;
    assert_eq!(http(a, "GET", "/api/rooms", &[("cookie", &bob_token)], "").await.0, 200, "the DRF token outlives it");
    django.run(&["set-active", "bob", "0"]);
    assert_eq!(close_code(&mut bob_token_on_a, bound).await, Some(4403));
    assert_eq!(status(b, &[("cookie", &bob_token)]).await, StatusCode::UNAUTHORIZED);

    django.drop_database().await;
}

#[tokio::test]
async fn serve_django_refuses_to_start_without_its_secret_key_or_djangos_tables() {
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL");
    // No DJANGO_SECRET_KEY.
    let out = common::multichat()
        .args(["--database-url", &base, "serve", "--django", "--bind", "127.0.0.1:0"])
        .env_remove("DJANGO_SECRET_KEY")
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("DJANGO_SECRET_KEY"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A database without Django's tables (the test database: no auth_user there).
    let out = common::multichat()
        .args(["--database-url", &base, "serve", "--django", "--django-user-table", "no_such_django_users"])
        .args(["--bind", "127.0.0.1:0"])
        .env("DJANGO_SECRET_KEY", SECRET_KEY)
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Django's tables") && !stderr.contains(SECRET_KEY), "{stderr}");
}

#[test]
fn the_django_options_parse_and_bad_ones_are_refused() {
    use multichat::{Command, parse};
    let args = |line: &str| line.split(' ').map(str::to_owned).collect::<Vec<_>>();
    let (_, command) =
        parse(&args("serve --django --django-user-table accounts.user --django-session-cookie sid")).unwrap();
    let Command::Serve { django: Some(django), .. } = command else { panic!("serve --django: {command:?}") };
    assert_eq!(django.tables.users_table(), "accounts.user");
    assert_eq!(django.session_cookie, "sid");
    let (_, command) = parse(&args("serve")).unwrap();
    assert!(matches!(command, Command::Serve { django: None, .. }));
    assert!(parse(&args("serve --django-user-table accounts_user")).unwrap_err().contains("goes with --django"));
    assert!(parse(&args("django-setup --django-user-table a;b")).unwrap_err().contains("--django-user-table"));
    assert!(matches!(parse(&args("django-setup")).unwrap().1, Command::DjangoSetup { .. }));
}
