//! Tokens never appear in logs (at TRACE level), `Debug` output, errors or
//! responses, whatever the outcome.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{HangingStore, User, failing};
use http::{Request, Response, header};
use tower::{Layer, ServiceExt, service_fn};
use ws_token_auth::extract::{Extractor, TokenSource};
use ws_token_auth::{Authenticated, Authenticator, MemoryTokenStore, Token, TokenAuthLayer, TokenStore};

/// A `tracing` writer that keeps everything written to it.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Runs `req` through a layer over `store` and returns the response's Debug
/// output, headers and body as text.
async fn run<St: TokenStore<User = User>>(layer: TokenAuthLayer<St>, req: Request<()>) -> String {
    let inner = service_fn(|req: Request<()>| async move {
        let seen = format!("{:?}", req.extensions());
        Ok::<_, std::convert::Infallible>(Response::new(seen))
    });
    let res = layer.layer(inner).oneshot(req).await.unwrap();
    format!("{res:?} {:?} {}", res.headers(), res.body())
}

fn assert_absent(haystack: &str, secret: &str, what: &str) {
    assert!(secret.len() >= 12);
    for window in secret.as_bytes().windows(12) {
        let window = std::str::from_utf8(window).unwrap();
        assert!(!haystack.contains(window), "{what} contains part of a token ({window}):\n{haystack}");
    }
}

#[test]
fn no_outcome_leaks_the_token() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(capture.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();

    let store = Arc::new(MemoryTokenStore::new());
    let alice = Token::generate();
    store.insert(&alice, Authenticated::new(User::named(1, "alice")));
    let unknown = Token::generate();
    let a = alice.expose_secret();
    let u = unknown.expose_secret();
    let mut outputs = String::new();

    rt.block_on(async {
        let get = || Request::get("/ws").header(header::HOST, "127.0.0.1:8000");
        let layer = || Authenticator::from_shared(store.clone());
        let cases: Vec<(Authenticator<MemoryTokenStore<User>>, Request<()>)> = vec![
            (layer(), get().header(header::COOKIE, format!("key={a}")).body(()).unwrap()),
            (layer(), get().header(header::AUTHORIZATION, format!("Bearer {a}")).body(()).unwrap()),
            (layer(), get().header(header::COOKIE, format!("key={u}")).body(()).unwrap()),
            (layer().optional(), get().header(header::COOKIE, format!("key={u}")).body(()).unwrap()),
            (layer(), get().header(header::COOKIE, format!("key={a}; key={u}")).body(()).unwrap()),
            (layer(), get().header(header::COOKIE, format!("key={a}{}", "x".repeat(300))).body(()).unwrap()),
            (layer(), get().header(header::COOKIE, format!("key={a}\t{u}")).body(()).unwrap()),
            (layer(), get().header(header::AUTHORIZATION, format!("Token {a} {u}")).body(()).unwrap()),
            (
                layer(),
                get()
                    .header(header::COOKIE, format!("key={a}"))
                    .header(header::ORIGIN, "https://evil.example")
                    .body(())
                    .unwrap(),
            ),
            (
                layer().sources([TokenSource::subprotocol("token."), TokenSource::query("t")]),
                Request::get(format!("/ws?t={u}"))
                    .header(header::SEC_WEBSOCKET_PROTOCOL, format!("chat, token.{a}"))
                    .body(())
                    .unwrap(),
            ),
        ];
        for (auth, req) in cases {
            outputs.push_str(&run(auth.layer(), req).await);
        }
        let failing = Authenticator::new(failing::<User>()).layer();
        outputs.push_str(&run(failing, get().header(header::COOKIE, format!("key={a}")).body(()).unwrap()).await);
        let hanging = Authenticator::new(HangingStore).store_timeout(Duration::from_millis(20)).layer();
        outputs.push_str(&run(hanging, get().header(header::COOKIE, format!("key={u}")).body(()).unwrap()).await);

        // Debug and Display of the values an app handles.
        let mut headers = http::HeaderMap::new();
        headers.insert(header::COOKIE, format!("key={a}").parse().unwrap());
        let credential = Extractor::default().extract(&headers, &"/".parse().unwrap()).unwrap().unwrap();
        outputs.push_str(&format!("{credential:?} {alice:?} {:?}", alice.id()));
        let auth = Authenticator::from_shared(store.clone());
        outputs.push_str(&format!("{:?} {auth:?}", auth.authenticate(&headers, &"/".parse().unwrap()).await));
        headers.insert(header::COOKIE, format!("key={a}; key={u}").parse().unwrap());
        let rejection = auth.authenticate(&headers, &"/".parse().unwrap()).await.unwrap_err();
        outputs.push_str(&format!("{rejection} {rejection:?}"));
    });

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    // The capture works: every outcome left a line, the ones with a token name its id.
    for outcome in ["authenticated", "invalid_token", "malformed", "origin", "store_unavailable", "anonymous"] {
        assert!(logs.contains(outcome), "no {outcome} event in:\n{logs}");
    }
    assert!(logs.contains(&alice.id().to_string()), "token id missing from:\n{logs}");
    // A store error is logged with its causes, so an operator can see why.
    assert!(
        logs.contains("token store unavailable: connection refused by 127.0.0.1:5432"),
        "the store error's cause is missing from:\n{logs}"
    );
    assert!(outputs.contains("alice"), "the responses should show the user: {outputs}");

    assert_absent(&logs, a, "the log");
    assert_absent(&logs, u, "the log");
    assert_absent(&outputs, a, "the outputs");
    assert_absent(&outputs, u, "the outputs");
}

#[test]
fn panic_messages_that_show_these_values_do_not_leak_the_token() {
    let token = Token::generate();
    let secret = token.expose_secret().to_owned();
    let user = ws_token_auth::AuthenticatedUser::new(
        User::named(1, "alice"),
        token.clone(),
        ws_token_auth::extract::CredentialKind::Cookie,
        None,
    );
    let identity = ws_token_auth::Identity::User(user.clone());
    // What an `expect` or `unwrap` on these values would print.
    let payload =
        std::panic::catch_unwind(|| panic!("{token:?} {user:?} {identity:?} {:?}", Some(&token))).unwrap_err();
    let message = payload.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(message.contains(&token.id().to_string()), "the panic shows the fingerprint: {message}");
    assert_absent(&message, &secret, "a panic message");
}
