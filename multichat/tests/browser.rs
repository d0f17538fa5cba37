//! The multichat page in a real headless Chromium (Debian's `chromium`, driven
//! by `tests/browser/chat.mjs` with playwright-core; `.ci/run` installs both):
//! log in through the form, join General, send a message, see a message from a
//! second (tokio-tungstenite) client, see `<img src=x onerror=alert(1)>` shown
//! as text with no element created, log out. And beside Django: signed in by
//! Django's session cookie, signed out by Django's logout.

mod common;

use std::process::Stdio;
use std::time::Duration;

use futures_util::SinkExt;
use multichat::api::App;
use multichat::db::{Db, hash_password};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::ChildStdout;
use tokio_tungstenite::tungstenite::Message;
use ws_token_auth::Token;

/// Bob's next frame as JSON; the browser on the other side is slow.
async fn next_json(socket: &mut testkit::Socket) -> Value {
    serde_json::from_str(&testkit::next_text_within(socket, Duration::from_secs(30)).await).unwrap()
}

/// Runs `tests/browser/<script>` with `args` under node; its stdout's lines.
fn browser_script(script: &str, args: &[&str]) -> (tokio::process::Child, Lines<BufReader<ChildStdout>>) {
    let browser_dir = format!("{}/tests/browser", env!("CARGO_MANIFEST_DIR"));
    assert!(
        std::path::Path::new(&format!("{browser_dir}/node_modules/playwright-core")).exists(),
        "playwright-core is missing: run `npm ci --prefix tests/browser` (and `apt-get install chromium`), as .ci/run does"
    );
    let mut node = tokio::process::Command::new("node")
        .arg(script)
        .args(args)
        .current_dir(&browser_dir)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("cannot run node");
    let lines = BufReader::new(node.stdout.take().unwrap()).lines();
    (node, lines)
}

/// The script's next line (`None` once it ended); the browser is slow.
async fn next_line_of(lines: &mut Lines<BufReader<ChildStdout>>) -> Option<String> {
    tokio::time::timeout(Duration::from_secs(90), lines.next_line()).await.expect("browser script stalled").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_in_headless_chromium() {
    let file = std::env::temp_dir().join(format!("multichat-browser-{}.db", &Token::generate().expose_secret()[..12]));
    let db = Db::open(&format!("sqlite://{}", file.display())).await.unwrap();
    let alice_id = db.create_user("alice", &hash_password("alice-pw").unwrap(), false).await.unwrap();
    let bob_id = db.create_user("bob", &hash_password("bob-pw").unwrap(), false).await.unwrap();
    let bob_token = db.issue_token(bob_id, None).await.unwrap();
    // Logins' tokens live 4 s and their sockets are warned 2 s before: the
    // page must keep itself signed in by refreshing, unnoticed.
    let limits = multichat::limits::Limits {
        login_token_ttl: Duration::from_secs(4),
        expiry_warning: Duration::from_secs(2),
        ..Default::default()
    };
    let app = App::new(db.clone(), true, false).await.unwrap().with_limits(limits);
    let addr = common::serve_app(app).await;

    // Bob: an Android-style client in General.
    let mut bob = common::connect_with_token(addr, bob_token.expose_secret()).await;
    testkit::send_json(&mut bob, json!({"command": "join", "room": "1"})).await;
    assert_eq!(next_json(&mut bob).await["join"], "1");

    let (mut node, mut lines) = browser_script("chat.mjs", &[&format!("http://{addr}/"), "alice", "alice-pw"]);
    let mut next_line = async || next_line_of(&mut lines).await;
    assert_eq!(next_line().await.as_deref(), Some("READY"));

    // Bob saw alice come in (over the browser's cookie) and her message.
    assert_eq!(next_json(&mut bob).await, json!({"msg_type": 4, "room": "1", "username": "alice"}));
    assert_eq!(
        next_json(&mut bob).await,
        json!({"msg_type": 0, "room": "1", "username": "alice", "message": "hello from the browser"})
    );
    // Well past the expiry of the token the page logged in with: its socket
    // lives on, by the tokens it took since.
    tokio::time::sleep(Duration::from_secs(7)).await;
    for message in ["<img src=x onerror=alert(1)>", "hello from bob"] {
        let frame = json!({"command": "send", "room": "1", "message": message});
        bob.send(Message::Text(frame.to_string().into())).await.unwrap();
    }

    let done = next_line().await.expect("the browser script ended without DONE");
    let report: Value = serde_json::from_str(done.strip_prefix("DONE ").expect(&done)).unwrap();
    assert_eq!(report["images"], 0, "an element was created from a message: {report}");
    assert_eq!(report["dialogs"], 0, "a message ran script: {report}");
    // Chromium offers permessage-deflate, and the chat takes it (PROTOCOL.md, "The handshake").
    let extensions = report["extensions"].as_str().unwrap_or_default();
    assert!(extensions.starts_with("permessage-deflate"), "the socket's extensions: {report}");
    assert_eq!(report["xss_shown_as_text"], true, "{report}");
    assert!(report["shown"].as_array().unwrap().contains(&json!("hello from bob")), "{report}");
    assert!(report["status"].as_str().unwrap().contains("signed out"), "{report}");
    assert!(node.wait().await.unwrap().success(), "the browser script failed");

    // Logging out closed the page's socket: alice left the room. The socket
    // lived by the last refreshed token, so the logout revoked that one: the
    // cookie followed every refresh.
    for _ in 0..3 {
        let frame = next_json(&mut bob).await;
        if frame["msg_type"] == 5 {
            assert_eq!(frame, json!({"msg_type": 5, "room": "1", "username": "alice"}));
            let issued = ws_token_auth::store::ManageTokens::revoke_user(&db.tokens, &alice_id).await.unwrap();
            assert!(issued >= 3, "the page refreshed its token {} times in 7 s", issued.saturating_sub(1));
            let _ = std::fs::remove_file(&file);
            return;
        }
    }
    panic!("alice's socket did not close after logout");
}

/// Beside Django (`serve --django` over a real Django's database): a browser
/// that logged in to Django carries its `sessionid` cookie; the page signs
/// itself in by that session, with no login of its own, and chats. Django's
/// own logout of that session closes the page's socket (4401) and the page
/// shows its login form again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_beside_django_signs_in_by_djangos_session_and_djangos_logout_ends_it() {
    const SECRET_KEY: &str = "django-insecure-browser-test-key";
    let django = testkit::Django::new("browser", SECRET_KEY).await;
    django.run(&["create-user", "alice", "alice-pw"]);
    django.run(&["create-user", "bob", "bob-pw"]);
    common::cli(django.url(), &["django-setup"]).await;
    let mut command = common::multichat();
    command.args(["--database-url", django.url(), "serve", "--django", "--bind", "127.0.0.1:0"]);
    command.env("DJANGO_SECRET_KEY", SECRET_KEY);
    let (_server, addr) = common::spawn_serve(command).await;

    // Bob: an Android-style client with his DRF token, in General.
    let mut bob = common::connect_with_token(addr, &django.run(&["token", "bob"])).await;
    testkit::send_json(&mut bob, json!({"command": "join", "room": "1"})).await;
    assert_eq!(next_json(&mut bob).await["join"], "1");

    // Alice logged in to Django (a real login through Django's test client).
    let session = django.run(&["login", "alice", "alice-pw"]);
    let (mut node, mut lines) = browser_script("django.mjs", &[&format!("http://{addr}/"), "sessionid", &session]);
    let mut next_line = async || next_line_of(&mut lines).await;
    let ready = next_line().await.expect("the browser script ended without READY");
    let ready: Value = serde_json::from_str(ready.strip_prefix("READY ").expect(&ready)).unwrap();
    assert_eq!(ready["status"], "signed in as alice", "{ready}");
    assert_eq!(next_json(&mut bob).await, json!({"msg_type": 4, "room": "1", "username": "alice"}));
    assert_eq!(
        next_json(&mut bob).await,
        json!({"msg_type": 0, "room": "1", "username": "alice", "message": "hello from a Django login"})
    );

    // Django logs her out: the page's socket closes, the page says so.
    django.run(&["logout", &session]);
    let done = next_line().await.expect("the browser script ended without DONE");
    let done: Value = serde_json::from_str(done.strip_prefix("DONE ").expect(&done)).unwrap();
    assert_eq!(done["status"], "signed out: session ended", "{done}");
    assert_eq!(done["login_error"], "Log in through the Django app, then reload this page.", "{done}");
    assert!(node.wait().await.unwrap().success(), "the browser script failed");
    assert_eq!(next_json(&mut bob).await, json!({"msg_type": 5, "room": "1", "username": "alice"}));
    django.drop_database().await;
}
