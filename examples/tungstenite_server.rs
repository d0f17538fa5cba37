//! A WebSocket server on a plain `TcpListener` and tokio-tungstenite, with the
//! handshake authenticated by ws-token-auth's adapter (no axum, no hyper).
//!
//! Run: `cargo run --example tungstenite_server --features tungstenite -- [--bind 127.0.0.1:3000]`
//! It prints `token for alice: <token>`; then connect with that token, e.g.
//! `websocat -H "Cookie: key=<token>" ws://127.0.0.1:3000/ws`. The server
//! greets `hello alice`, then echoes every message.

#[path = "common/mod.rs"]
mod common;

use std::sync::Arc;

use tokio::net::TcpListener;
use ws_token_auth::tungstenite::Acceptor;
use ws_token_auth::{Authenticator, TokenStore};

/// Accepts connections on `listener`, each in its own task, until dropped.
pub(crate) async fn serve<St: TokenStore<User = String>>(listener: TcpListener, auth: Authenticator<St>) {
    let acceptor = Arc::new(Acceptor::new(auth).path("/ws"));
    loop {
        let Ok((stream, peer)) = listener.accept().await else { continue };
        let acceptor = Arc::clone(&acceptor);
        tokio::spawn(async move {
            match acceptor.accept(stream).await {
                Ok(accepted) => {
                    let name = accepted.identity.user().map(|u| u.user.clone()).unwrap_or_default();
                    common::greet_and_echo(accepted.socket, &name).await;
                }
                // The refusal has been sent already; the error is for the server's log.
                Err(error) => eprintln!("{peer}: {error}"),
            }
        });
    }
}

#[allow(dead_code)] // the integration test includes this file and calls `serve` itself
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (store, listener) = common::demo().await?;
    serve(listener, Authenticator::from_shared(store)).await;
    Ok(())
}
