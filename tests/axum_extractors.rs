//! The axum extractors (feature `axum`): every row of the table in `ws_token_auth::axum`.

mod common;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::ws::{Message as AxumMessage, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::get;
use common::{User, connect_full, next_text};
use http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use tower::ServiceExt;
use ws_token_auth::extract::TokenSource;
use ws_token_auth::store::ManageTokens;
use ws_token_auth::{Anonymous, AuthenticatedUser, Authenticator, Identity, MemoryTokenStore, Token};

fn routes() -> Router {
    Router::new()
        .route("/user", get(|user: AuthenticatedUser<User>| async move { format!("user {}", user.user.name) }))
        .route(
            "/maybe",
            get(|user: Option<AuthenticatedUser<User>>| async move {
                user.map_or("nobody".to_owned(), |u| format!("user {}", u.user.name))
            }),
        )
        .route(
            "/identity",
            get(|identity: Identity<User>| async move {
                match identity {
                    Identity::User(u) => format!("user {}", u.user.name),
                    Identity::Anonymous(a) => format!("anonymous {:?}", a.reason()),
                }
            }),
        )
        .route("/anonymous", get(|anonymous: Anonymous| async move { format!("anonymous {:?}", anonymous.reason()) }))
        .route("/wrong-type", get(|user: AuthenticatedUser<String>| async move { user.user }))
}

async fn call(app: &Router, path: &str, token: Option<&Token>) -> (StatusCode, String, http::HeaderMap) {
    let mut req = Request::get(path);
    if let Some(token) = token {
        req = req.header(header::COOKIE, format!("key={}", token.expose_secret()));
    }
    let res = app.clone().oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap(), headers)
}

#[tokio::test]
async fn extractors_with_the_layer_in_optional_mode() {
    let store = Arc::new(MemoryTokenStore::new());
    let alice = store.issue(&User::named(1, "alice"), None).await.unwrap();
    let app = routes().layer(Authenticator::from_shared(store).optional().layer());
    let a = Some(&alice);

    let rows: &[(&str, Option<&Token>, StatusCode, &str)] = &[
        ("/user", a, StatusCode::OK, "user alice"),
        ("/user", None, StatusCode::UNAUTHORIZED, ""), // the authenticator's own refusal
        ("/maybe", a, StatusCode::OK, "user alice"),
        ("/maybe", None, StatusCode::OK, "nobody"),
        ("/identity", a, StatusCode::OK, "user alice"),
        ("/identity", None, StatusCode::OK, "anonymous NoCredential"),
        ("/anonymous", None, StatusCode::OK, "anonymous NoCredential"),
        ("/anonymous", a, StatusCode::FORBIDDEN, "already authenticated"),
    ];
    for (path, token, status, body) in rows {
        let (got_status, got_body, headers) = call(&app, path, *token).await;
        assert_eq!((got_status, got_body.as_str()), (*status, *body), "{path} with token: {}", token.is_some());
        if *status == StatusCode::UNAUTHORIZED {
            assert_eq!(headers[header::WWW_AUTHENTICATE], "Token");
        }
    }
}

#[tokio::test]
async fn missing_layer_or_wrong_user_type_is_a_plain_500_naming_the_layer() {
    let store = Arc::new(MemoryTokenStore::new());
    let alice = store.issue(&User::named(1, "alice"), None).await.unwrap();
    let bare = routes();
    for path in ["/user", "/maybe", "/identity", "/anonymous"] {
        let (status, body, _) = call(&bare, path, Some(&alice)).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{path}");
        assert!(body.contains("TokenAuthLayer"), "{path}: {body}");
    }
    let layered = routes().layer(Authenticator::from_shared(store).layer());
    let (status, body, _) = call(&layered, "/wrong-type", Some(&alice)).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(body.contains("user type"), "{body}");
}

#[tokio::test]
async fn subprotocol_credential_is_never_echoed() {
    let store = Arc::new(MemoryTokenStore::new());
    let alice = store.issue(&User::named(1, "alice"), None).await.unwrap();
    let layer = Authenticator::from_shared(store).sources([TokenSource::subprotocol("token.")]).layer();
    let app = Router::new()
        .route(
            "/ws",
            get(|user: AuthenticatedUser<User>, upgrade: WebSocketUpgrade| async move {
                let response: Response = upgrade.protocols(["chat.v1"]).on_upgrade(move |mut socket| async move {
                    let _ = socket.send(AxumMessage::Text(format!("hello {}", user.user.name).into())).await;
                });
                response
            }),
        )
        .layer(layer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let offer = format!("token.{}, chat.v1", alice.expose_secret());
    let (status, headers, socket) = connect_full(addr, &[("sec-websocket-protocol", &offer)]).await;
    assert_eq!(status, StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(headers[header::SEC_WEBSOCKET_PROTOCOL], "chat.v1");
    assert_eq!(next_text(&mut socket.unwrap()).await, "hello alice");
}
