//! A WebSocket server on hyper 1 + hyper-util, no axum: `TokenAuthLayer`
//! wrapped around a `service_fn` that upgrades the connection (hyper's upgrade
//! + tokio-tungstenite).
//!
//! Run: `cargo run --example hyper_server -- [--bind 127.0.0.1:3000]`
//! It prints `token for alice: <token>`; connect with `Cookie: key=<token>` to
//! `ws://127.0.0.1:3000/ws`. The server greets `hello alice`, then echoes.

#[path = "common/mod.rs"]
mod common;

use std::convert::Infallible;

use bytes::Bytes;
use http::header::{CONNECTION, SEC_WEBSOCKET_ACCEPT, UPGRADE};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::Role;
use tower::ServiceBuilder;
use ws_token_auth::tungstenite::check_upgrade;
use ws_token_auth::{AuthenticatedUser, Authenticator, TokenAuthLayer, TokenStore};

/// Serves connections on `listener` with `layer` in front of the upgrade
/// handler, until dropped.
pub(crate) async fn serve<St: TokenStore<User = String>>(listener: TcpListener, layer: TokenAuthLayer<St>) {
    let service = ServiceBuilder::new().layer(layer).service_fn(upgrade);
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let service = TowerToHyperService::new(service.clone());
        tokio::spawn(async move {
            let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service).with_upgrades();
            let _ = connection.await;
        });
    }
}

/// The handler behind the layer: only authenticated requests reach it.
async fn upgrade(mut req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let reply = |status: StatusCode| {
        let mut response = Response::new(Full::default());
        *response.status_mut() = status;
        Ok(response)
    };
    if req.uri().path() != "/ws" {
        return reply(StatusCode::NOT_FOUND);
    }
    let accept = match check_upgrade(req.headers()) {
        Ok(accept) => accept,
        // 400, or 426 with the version this server speaks.
        Err(error) => match error.response() {
            Some(answer) => return Ok(answer.map(|body| Full::new(Bytes::from(body)))),
            None => return reply(StatusCode::BAD_REQUEST),
        },
    };
    let Some(user) = req.extensions().get::<AuthenticatedUser<String>>().cloned() else {
        return reply(StatusCode::UNAUTHORIZED); // unreachable while the layer requires a user
    };

    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        if let Ok(upgraded) = on_upgrade.await {
            let socket = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
            common::greet_and_echo(socket, &user.user).await;
        }
    });
    let mut response = Response::new(Full::default());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(CONNECTION, "Upgrade".parse().expect("static header"));
    headers.insert(UPGRADE, "websocket".parse().expect("static header"));
    headers.insert(SEC_WEBSOCKET_ACCEPT, accept);
    Ok(response)
}

#[allow(dead_code)] // the integration test includes this file and calls `serve` itself
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (store, listener) = common::demo().await?;
    serve(listener, Authenticator::from_shared(store).layer()).await;
    Ok(())
}
