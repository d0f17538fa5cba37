//! Every outcome of `TokenAuthLayer`, through `tower::ServiceExt::oneshot`.

mod common;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use common::{Counting, HangingStore, User, failing};
use http::{Request, Response, StatusCode, header};
use tower::{Layer, ServiceExt, service_fn};
use ws_token_auth::extract::{CredentialKind, TokenSource};
use ws_token_auth::store::ManageTokens;
use ws_token_auth::{
    Anonymous, AnonymousReason, Authenticated, AuthenticatedUser, Authenticator, Identity, MemoryTokenStore,
    OriginPolicy, Rejection, RejectionKind, Token, TokenStore,
};

/// What the inner service saw.
#[derive(Debug, Clone, Default)]
struct Seen {
    calls: Arc<AtomicUsize>,
}

/// An inner service that answers 200 with a body naming the identity it found.
fn inner(
    seen: Seen,
) -> impl tower::Service<
    Request<()>,
    Response = Response<String>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<String>, Infallible>> + Send,
> + Clone
+ Send {
    let calls = Arc::clone(&seen.calls);
    service_fn(move |req: Request<()>| {
        calls.fetch_add(1, Ordering::SeqCst);
        let ext = req.extensions();
        let body = match (ext.get::<Identity<User>>(), ext.get::<AuthenticatedUser<User>>(), ext.get::<Anonymous>()) {
            (Some(Identity::User(a)), Some(b), None) if a.user == b.user => {
                format!("user {} via {}", b.user.name, b.credential_kind())
            }
            (Some(Identity::Anonymous(a)), None, Some(b)) if a == b => {
                format!("anonymous {:?}", b.reason())
            }
            other => format!("inconsistent extensions: {other:?}"),
        };
        async move { Ok::<_, Infallible>(Response::new(body)) }
    })
}

struct Fixture {
    store: Arc<Counting<MemoryTokenStore<User>>>,
    alice: Token,
    seen: Seen,
}

fn fixture() -> Fixture {
    let store = Arc::new(Counting::new(MemoryTokenStore::new()));
    let alice = Token::generate();
    store.inner.insert(&alice, Authenticated::new(User::named(1, "alice")));
    Fixture { store, alice, seen: Seen::default() }
}

fn get() -> http::request::Builder {
    Request::get("/chat/stream/").header(header::HOST, "chat.example.com")
}

/// Runs one request through `layer` around the test's inner service.
macro_rules! oneshot {
    ($layer:expr, $seen:expr, $req:expr) => {
        $layer.layer(inner($seen.clone())).oneshot($req).await.unwrap()
    };
}

#[tokio::test]
async fn valid_cookie_reaches_the_inner_service_with_the_user() {
    let f = fixture();
    let req = get().header(header::COOKIE, format!("key={}", f.alice.expose_secret())).body(()).unwrap();
    let res = oneshot!(Authenticator::from_shared(f.store.clone()).layer(), f.seen, req);
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.body(), "user alice via cookie");
    assert_eq!(f.store.calls(), 1);
}

#[tokio::test]
async fn valid_authorization_token_and_bearer() {
    let f = fixture();
    for scheme in ["Token", "Bearer", "token"] {
        let req =
            get().header(header::AUTHORIZATION, format!("{scheme} {}", f.alice.expose_secret())).body(()).unwrap();
        let res = oneshot!(Authenticator::from_shared(f.store.clone()).layer(), f.seen, req);
        assert_eq!(res.body(), "user alice via Authorization", "{scheme}");
    }
}

#[tokio::test]
async fn missing_token_is_401_with_a_challenge_and_no_store_call() {
    let f = fixture();
    let res = oneshot!(Authenticator::from_shared(f.store.clone()).layer(), f.seen, get().body(()).unwrap());
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(res.headers()[header::WWW_AUTHENTICATE], "Token");
    assert_eq!(res.extensions().get::<RejectionKind>(), Some(&RejectionKind::MissingCredential));
    assert_eq!(f.store.calls(), 0);
    assert_eq!(f.seen.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn unknown_and_empty_tokens_are_401() {
    let f = fixture();
    for cookie in ["key=not-a-known-token", "key=", "monkey=KNOWN", "keys=KNOWN", "Key=KNOWN"] {
        let cookie = cookie.replace("KNOWN", f.alice.expose_secret());
        let req = get().header(header::COOKIE, &cookie).body(()).unwrap();
        let res = oneshot!(Authenticator::from_shared(f.store.clone()).layer(), f.seen, req);
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{cookie}");
        assert_eq!(res.headers()[header::WWW_AUTHENTICATE], "Token");
    }
    assert_eq!(f.seen.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn challenge_names_the_first_configured_scheme() {
    let f = fixture();
    let layer = Authenticator::from_shared(f.store.clone()).sources([TokenSource::authorization(["Bearer"])]).layer();
    let res = oneshot!(layer, f.seen, get().body(()).unwrap());
    assert_eq!(res.headers()[header::WWW_AUTHENTICATE], "Bearer");
}

#[tokio::test]
async fn revoked_and_expired_tokens_are_401() {
    let f = fixture();
    let bob = f.store.inner.issue(&User::named(2, "bob"), Some(Duration::from_millis(30))).await.unwrap();
    let carol = Token::generate();
    // A store that hands back an entry whose expiry has passed: the layer refuses it anyway.
    f.store.inner.insert(
        &carol,
        Authenticated::new(User::named(3, "carol")).with_expiry(Some(SystemTime::now() - Duration::from_secs(1))),
    );
    assert!(f.store.inner.revoke(&f.alice).await.unwrap());
    tokio::time::sleep(Duration::from_millis(50)).await;
    for token in [&f.alice, &bob, &carol] {
        let req = get().header(header::COOKIE, format!("key={}", token.expose_secret())).body(()).unwrap();
        let res = oneshot!(Authenticator::from_shared(f.store.clone()).layer(), f.seen, req);
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(res.extensions().get::<RejectionKind>(), Some(&RejectionKind::InvalidToken));
    }
    assert_eq!(f.seen.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn malformed_credentials_are_400_before_any_store_call() {
    let f = fixture();
    let long = format!("key={}", "a".repeat(8192));
    let conflicting = format!("key={}; key=other", f.alice.expose_secret());
    let rows: Vec<(http::HeaderName, &str)> = vec![
        (header::COOKIE, &conflicting),
        (header::COOKIE, &long),
        (header::COOKIE, "key=caf\u{e9}"),
        (header::COOKIE, "key=a\tb"),
        (header::AUTHORIZATION, "Token a b"),
    ];
    for (name, value) in rows {
        let req =
            get().header(name.clone(), http::HeaderValue::from_bytes(value.as_bytes()).unwrap()).body(()).unwrap();
        let res = oneshot!(Authenticator::from_shared(f.store.clone()).layer(), f.seen, req);
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{name}: {value:.40}");
        assert!(!res.headers().contains_key(header::WWW_AUTHENTICATE));
    }
    assert_eq!(f.store.calls(), 0);
    assert_eq!(f.seen.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn max_token_len_is_configurable() {
    let f = fixture(); // alice's token is 64 characters
    let req = || get().header(header::COOKIE, format!("key={}", f.alice.expose_secret())).body(()).unwrap();
    let res = oneshot!(Authenticator::from_shared(f.store.clone()).max_token_len(63).layer(), f.seen, req());
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let res = oneshot!(Authenticator::from_shared(f.store.clone()).max_token_len(64).layer(), f.seen, req());
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn cookie_from_a_foreign_origin_is_403_before_any_store_call() {
    let f = fixture();
    let cookie = format!("key={}", f.alice.expose_secret());
    for origin in ["https://evil.example", "null", "https://chat.example.com.evil.example", "not an origin"] {
        let req = get().header(header::COOKIE, &cookie).header(header::ORIGIN, origin).body(()).unwrap();
        let res = oneshot!(Authenticator::from_shared(f.store.clone()).layer(), f.seen, req);
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{origin}");
    }
    assert_eq!(f.store.calls(), 0);
    // The same host, any case, default port spelled out or not: accepted.
    for origin in ["https://chat.example.com", "https://CHAT.example.com:443", "http://chat.example.com"] {
        let req = get().header(header::COOKIE, &cookie).header(header::ORIGIN, origin).body(()).unwrap();
        let res = oneshot!(Authenticator::from_shared(f.store.clone()).layer(), f.seen, req);
        assert_eq!(res.status(), StatusCode::OK, "{origin}");
    }
}

#[tokio::test]
async fn header_credentials_skip_the_origin_check() {
    let f = fixture();
    let req = get()
        .header(header::AUTHORIZATION, format!("Token {}", f.alice.expose_secret()))
        .header(header::ORIGIN, "https://evil.example")
        .body(())
        .unwrap();
    let res = oneshot!(Authenticator::from_shared(f.store.clone()).layer(), f.seen, req);
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn missing_origin_can_be_refused() {
    let f = fixture();
    let layer = Authenticator::from_shared(f.store.clone())
        .origin_policy(OriginPolicy::same_host().refuse_missing_origin())
        .layer();
    let req = get().header(header::COOKIE, format!("key={}", f.alice.expose_secret())).body(()).unwrap();
    assert_eq!(oneshot!(layer, f.seen, req).status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn allowlisted_origin_is_accepted() {
    let f = fixture();
    let policy = OriginPolicy::same_host().allow("https://*.example.org").unwrap();
    let req = get()
        .header(header::COOKIE, format!("key={}", f.alice.expose_secret()))
        .header(header::ORIGIN, "https://app.example.org")
        .body(())
        .unwrap();
    assert_eq!(
        oneshot!(Authenticator::from_shared(f.store.clone()).origin_policy(policy).layer(), f.seen, req).status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn store_error_is_503_never_anonymous() {
    let seen = Seen::default();
    for layer in
        [Authenticator::new(failing::<User>()).layer(), Authenticator::new(failing::<User>()).optional().layer()]
    {
        let req = get().header(header::COOKIE, "key=whatever").body(()).unwrap();
        let res = oneshot!(layer, seen, req);
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(res.extensions().get::<RejectionKind>(), Some(&RejectionKind::StoreUnavailable));
    }
    assert_eq!(seen.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn store_timeout_is_503_within_the_bound() {
    let seen = Seen::default();
    let layer = Authenticator::new(HangingStore).optional().store_timeout(Duration::from_millis(100)).layer();
    let req = get().header(header::COOKIE, "key=whatever").body(()).unwrap();
    let started = Instant::now();
    let res = oneshot!(layer, seen, req);
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    // Loose upper bound: this checks that the timeout fires, not how fast.
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(seen.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn optional_mode_lets_anonymous_requests_through_with_a_reason() {
    let f = fixture();
    let layer = Authenticator::from_shared(f.store.clone()).optional().layer();
    let res = oneshot!(layer.clone(), f.seen, get().body(()).unwrap());
    assert_eq!(res.body(), &format!("anonymous {:?}", AnonymousReason::NoCredential));
    let req = get().header(header::COOKIE, "key=unknown").body(()).unwrap();
    assert_eq!(oneshot!(layer.clone(), f.seen, req).body(), &format!("anonymous {:?}", AnonymousReason::InvalidToken));
    let req = get().header(header::COOKIE, format!("key={}", f.alice.expose_secret())).body(()).unwrap();
    assert_eq!(oneshot!(layer.clone(), f.seen, req).body(), "user alice via cookie");
    // Malformed and foreign-origin requests are still refused.
    let req = get().header(header::COOKIE, "key=a; key=b").body(()).unwrap();
    assert_eq!(oneshot!(layer.clone(), f.seen, req).status(), StatusCode::BAD_REQUEST);
    let req = get().header(header::COOKIE, "key=x").header(header::ORIGIN, "https://evil.example").body(()).unwrap();
    assert_eq!(oneshot!(layer, f.seen, req).status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn custom_rejection_responses() {
    let f = fixture();
    let layer = Authenticator::from_shared(f.store.clone())
        .on_rejection(|rejection: &Rejection| {
            Response::builder()
                .status(rejection.status())
                .header(header::CONTENT_TYPE, "application/json")
                .body(format!("{{\"error\":\"{}\"}}", rejection.kind().as_str()))
                .unwrap()
        })
        .layer();
    let res = oneshot!(layer.clone(), f.seen, get().body(()).unwrap());
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(res.body(), "{\"error\":\"missing_credential\"}");
    assert_eq!(res.headers()[header::WWW_AUTHENTICATE], "Token", "the challenge is added to a custom 401");
    let req = get().header(header::COOKIE, "key=a; key=b").body(()).unwrap();
    assert_eq!(oneshot!(layer, f.seen, req).body(), "{\"error\":\"malformed\"}");
}

#[tokio::test]
async fn subprotocol_source() {
    let f = fixture();
    let layer = Authenticator::from_shared(f.store.clone()).sources([TokenSource::subprotocol("token.")]).layer();
    let req = get()
        .header(header::SEC_WEBSOCKET_PROTOCOL, format!("chat, token.{}", f.alice.expose_secret()))
        .header(header::ORIGIN, "https://elsewhere.example")
        .body(())
        .unwrap();
    assert_eq!(oneshot!(layer, f.seen, req).body(), "user alice via subprotocol");
}

#[tokio::test]
async fn works_with_a_shared_dyn_store() {
    let f = fixture();
    let store: Arc<dyn TokenStore<User = User>> = f.store.clone();
    let req = get().header(header::COOKIE, format!("key={}", f.alice.expose_secret())).body(()).unwrap();
    assert_eq!(oneshot!(Authenticator::new(store).layer(), f.seen, req).body(), "user alice via cookie");
}

#[tokio::test]
async fn authenticated_user_exposes_the_token_id_and_kind() {
    let f = fixture();
    let auth = Authenticator::from_shared(f.store.clone());
    let req = get().header(header::COOKIE, format!("key={}", f.alice.expose_secret())).body(()).unwrap();
    let identity = auth.authenticate(req.headers(), req.uri()).await.unwrap();
    let user = identity.user().unwrap();
    assert_eq!(user.token_id(), f.alice.id());
    assert_eq!(user.token(), &f.alice);
    assert_eq!(user.credential_kind(), CredentialKind::Cookie);
}

#[tokio::test]
async fn inner_service_sees_a_ready_clone_under_buffer() {
    // tower's Buffer hands the request to the instance it drove to readiness;
    // the layer must keep that instance (clone-and-swap), under concurrency too.
    let f = fixture();
    let svc = tower::ServiceBuilder::new()
        .buffer(4)
        .concurrency_limit(2)
        .layer(Authenticator::from_shared(f.store.clone()).layer())
        .service(inner(f.seen.clone()));
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let svc = svc.clone();
        let cookie = format!("key={}", f.alice.expose_secret());
        tasks.push(tokio::spawn(async move {
            svc.oneshot(get().header(header::COOKIE, cookie).body(()).unwrap()).await.unwrap()
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap().body(), "user alice via cookie");
    }
    assert_eq!(f.seen.calls.load(Ordering::SeqCst), 32);
}

#[tokio::test]
async fn readiness_is_the_inner_services_and_the_future_shows_its_state() {
    use std::future::Future;
    use std::task::{Context, Poll};
    use tower::Service;
    let f = fixture();
    // An inner service that takes one request at a time.
    let inner = tower::limit::ConcurrencyLimit::new(inner(f.seen.clone()), 1);
    let mut svc = Authenticator::from_shared(f.store.clone()).layer().layer(inner);
    let waker = std::task::Waker::noop();
    let mut cx = Context::from_waker(waker);
    assert!(matches!(svc.poll_ready(&mut cx), Poll::Ready(Ok(()))));
    let req = get().header(header::COOKIE, format!("key={}", f.alice.expose_secret())).body(()).unwrap();
    let mut first = Box::pin(svc.call(req));
    assert_eq!(format!("{first:?}"), "ResponseFuture { state: \"Lookup\" }");
    // The first request holds the inner service's only slot: not ready.
    assert!(svc.poll_ready(&mut cx).is_pending(), "readiness must come from the inner service");
    let response = std::future::poll_fn(|cx| first.as_mut().poll(cx)).await.unwrap();
    assert_eq!(response.body(), "user alice via cookie");
    drop(first);
    assert!(matches!(svc.poll_ready(&mut cx), Poll::Ready(Ok(()))), "ready again once it is done");
}
