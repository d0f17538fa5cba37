//! What the adapter examples share: the command line and the greeting + echo
//! loop they run on an accepted socket.

use std::net::SocketAddr;
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use ws_token_auth::MemoryTokenStore;
use ws_token_auth::store::ManageTokens;

/// What an adapter example starts with: a `MemoryTokenStore` with the demo
/// user alice (her token printed on stdout as `token for alice: <token>`), and
/// a listener on `--bind` (default 127.0.0.1:3000).
pub(crate) async fn demo() -> Result<(Arc<MemoryTokenStore<String>>, TcpListener), Box<dyn std::error::Error>> {
    let store = Arc::new(MemoryTokenStore::new());
    let token = store.issue(&"alice".to_owned(), None).await?;
    let listener = TcpListener::bind(bind_address(std::env::args())?).await?;
    eprintln!("listening on ws://{}/ws", listener.local_addr()?);
    println!("token for alice: {}", token.expose_secret());
    Ok((store, listener))
}

/// The address from `--bind ADDR`, default 127.0.0.1:3000.
pub(crate) fn bind_address(args: impl Iterator<Item = String>) -> Result<SocketAddr, String> {
    let mut args = args.skip_while(|a| a != "--bind").skip(1);
    match args.next() {
        Some(addr) => addr.parse().map_err(|e| format!("--bind {addr}: {e}")),
        None => Ok(SocketAddr::from(([127, 0, 0, 1], 3000))),
    }
}

/// Greets `name` with `hello <name>`, then echoes text and binary messages
/// until the client closes.
pub(crate) async fn greet_and_echo<S: AsyncRead + AsyncWrite + Unpin>(mut socket: WebSocketStream<S>, name: &str) {
    if socket.send(Message::Text(format!("hello {name}").into())).await.is_err() {
        return;
    }
    while let Some(Ok(message)) = socket.next().await {
        let echo = match message {
            Message::Text(_) | Message::Binary(_) => message,
            Message::Close(_) => break,
            _ => continue, // tungstenite answers pings itself
        };
        if socket.send(echo).await.is_err() {
            break;
        }
    }
}
