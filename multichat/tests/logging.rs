//! The app is observable: `RUST_LOG=debug` on the real binary shows one line
//! per handshake outcome (the library's target, with the reason), and never a
//! token; without `RUST_LOG`, handshakes log nothing.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::cli;
use tokio::io::AsyncReadExt;
use tokio::process::Child;

/// Starts `serve` with `RUST_LOG` set (or not); the process and its address.
async fn serve(database: &str, rust_log: Option<&str>) -> (Child, std::net::SocketAddr) {
    let mut command = common::multichat();
    command.args(["--database-url", database, "serve", "--bind", "127.0.0.1:0"]);
    command.env_remove("RUST_LOG");
    if let Some(filter) = rust_log {
        command.env("RUST_LOG", filter);
    }
    command.stderr(Stdio::piped());
    common::spawn_serve(command).await
}

/// Five handshakes, one per outcome: authenticated, no token, unknown token,
/// malformed, foreign origin.
async fn five_handshakes(addr: std::net::SocketAddr, token: &str, unknown: &str) {
    let cases: [&[(&str, &str)]; 5] = [
        &[("cookie", &format!("key={token}"))],
        &[],
        &[("cookie", &format!("key={unknown}"))],
        &[("cookie", "key=a; key=b")],
        &[("cookie", &format!("key={token}")), ("origin", "https://evil.example")],
    ];
    let expected = [101, 401, 401, 400, 403];
    for (headers, status) in cases.iter().zip(expected) {
        let (got, _) = common::chat_handshake(addr, headers).await;
        assert_eq!(got.as_u16(), status, "{headers:?}");
    }
}

/// Everything the process wrote to stderr, once it is stopped.
async fn stderr_of(mut child: Child) -> String {
    tokio::time::sleep(Duration::from_millis(200)).await; // let the last lines out
    child.start_kill().unwrap();
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).await.unwrap();
    let _ = child.wait().await;
    err
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_log_debug_shows_each_handshake_outcome_and_never_a_token() {
    let (database, file) = common::temp_sqlite("multichat-logging");
    let token = cli(&database, &["create-user", "alice", "--password", "pw"]).await;
    let unknown = ws_token_auth::Token::generate();

    let (child, addr) = serve(&database, Some("debug")).await;
    five_handshakes(addr, &token, unknown.expose_secret()).await;
    let logs = stderr_of(child).await;
    let outcomes: Vec<&str> = logs.lines().filter(|l| l.contains("ws_token_auth") && l.contains("outcome=")).collect();
    assert_eq!(outcomes.len(), 5, "one line per handshake outcome, got:\n{}", outcomes.join("\n"));
    for (line, expected) in outcomes.iter().zip([
        "outcome=\"authenticated\"",
        "reason=\"missing_credential\"",
        "reason=\"invalid_token\"",
        "reason=\"malformed\"",
        "reason=\"origin\"",
    ]) {
        assert!(line.contains(expected), "expected {expected} in: {line}");
    }
    assert!(
        logs.contains(&ws_token_auth::Token::new(token.clone()).unwrap().id().to_string()),
        "names the fingerprint"
    );
    for secret in [token.as_str(), unknown.expose_secret()] {
        assert!(!logs.contains(secret), "a token is in the logs:\n{logs}");
        assert!(!logs.contains(&secret[..16]), "part of a token is in the logs:\n{logs}");
    }
    assert!(!logs.contains("\u{1b}["), "no terminal colours in a pipe");

    // Without RUST_LOG: the app's own info line, and no handshake lines.
    let (child, addr) = serve(&database, None).await;
    five_handshakes(addr, &token, unknown.expose_secret()).await;
    let logs = stderr_of(child).await;
    assert!(logs.contains("serving the chat page"), "{logs}");
    assert!(!logs.contains("outcome="), "handshakes are debug-level:\n{logs}");
    let _ = std::fs::remove_file(file);
}
