//! A real axum WebSocket server on 127.0.0.1 behind the layer, driven by a real
//! tokio-tungstenite client sending the headers an Android app or a browser sends.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::Extension;
use axum::extract::ws::{Message as AxumMessage, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::get;
use common::{Headers, User, assert_greets_and_echoes, connect, failing, next_text};
use http::StatusCode;
use ws_token_auth::store::ManageTokens;
use ws_token_auth::{AuthenticatedUser, Authenticator, MemoryTokenStore, TokenAuthLayer, TokenStore};

async fn ws(Extension(user): Extension<AuthenticatedUser<User>>, upgrade: WebSocketUpgrade) -> Response {
    upgrade.on_upgrade(move |mut socket| async move {
        let greeting = format!("hello {}", user.user.name);
        if socket.send(AxumMessage::Text(greeting.into())).await.is_err() {
            return;
        }
        while let Some(Ok(message)) = socket.recv().await {
            if let AxumMessage::Text(text) = message {
                if socket.send(AxumMessage::Text(text)).await.is_err() {
                    return;
                }
            }
        }
    })
}

async fn serve<St: TokenStore<User = User>>(layer: TokenAuthLayer<St>) -> SocketAddr {
    let app = Router::new().route("/ws", get(ws)).layer(layer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

#[tokio::test]
async fn android_style_cookie_without_origin_is_upgraded_and_the_handler_sees_the_user() {
    let store = Arc::new(MemoryTokenStore::new());
    let token = store.issue(&User::named(1, "alice"), None).await.unwrap();
    let addr = serve(Authenticator::from_shared(store).layer()).await;
    assert_greets_and_echoes(addr, &token, "alice").await;
}

#[tokio::test]
async fn browser_style_cookie_with_same_host_origin_is_upgraded() {
    let store = Arc::new(MemoryTokenStore::new());
    let token = store.issue(&User::named(1, "alice"), None).await.unwrap();
    let addr = serve(Authenticator::from_shared(store).layer()).await;
    let cookie = format!("csrftoken=abc; key={}", token.expose_secret());
    let origin = format!("http://{addr}");
    let (status, socket) = connect(addr, &[("cookie", &cookie), ("origin", &origin)]).await;
    assert_eq!(status, StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(next_text(&mut socket.unwrap()).await, "hello alice");
}

#[tokio::test]
async fn refusals_over_a_real_socket() {
    let store = Arc::new(MemoryTokenStore::new());
    let token = store.issue(&User::named(1, "alice"), None).await.unwrap();
    let addr = serve(Authenticator::from_shared(store).layer()).await;
    let cookie = format!("key={}", token.expose_secret());
    let monkey = format!("monkey={}", token.expose_secret());
    let auth = format!("Token {}", token.expose_secret());
    let rows: Vec<(&str, Headers<'_>, StatusCode)> = vec![
        ("no token", vec![], StatusCode::UNAUTHORIZED),
        ("unknown token", vec![("cookie", "key=0123456789abcdef")], StatusCode::UNAUTHORIZED),
        ("monkey= is not key=", vec![("cookie", &monkey)], StatusCode::UNAUTHORIZED),
        ("two different key cookies", vec![("cookie", "key=a; key=b")], StatusCode::BAD_REQUEST),
        ("foreign origin", vec![("cookie", &cookie), ("origin", "https://evil.example")], StatusCode::FORBIDDEN),
        ("null origin", vec![("cookie", &cookie), ("origin", "null")], StatusCode::FORBIDDEN),
        (
            "Authorization from a foreign origin",
            vec![("authorization", &auth), ("origin", "https://evil.example")],
            StatusCode::SWITCHING_PROTOCOLS,
        ),
    ];
    for (name, headers, expected) in rows {
        let (status, _) = connect(addr, &headers).await;
        assert_eq!(status, expected, "{name}");
    }
}

#[tokio::test]
async fn failing_store_is_503() {
    let addr = serve(Authenticator::new(failing::<User>()).layer()).await;
    let (status, socket) = connect(addr, &[("cookie", "key=0123456789abcdef")]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(socket.is_none());
}
