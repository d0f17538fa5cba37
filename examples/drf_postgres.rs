//! A WebSocket server beside an existing Django app that uses Django REST
//! Framework's token authentication: a `TokenStore` written the way you would
//! write one for your own database, over Django's own tables
//! (`authtoken_token` joined with `auth_user`). The Rust server accepts the
//! very tokens the Django app hands out, and refuses them when Django deletes
//! them or deactivates the user. The store is read-only (Django owns these
//! tables), and that is enough for the lifecycle's socket side: every
//! `REVALIDATE_EVERY` the open sockets' tokens are asked about again, so a
//! logout in Django (DRF deletes the token) closes the sockets it opened with
//! 4401, and a deactivation with 4403.
//!
//! Run: `DATABASE_URL=postgres://... cargo run --example drf_postgres -- [--bind 127.0.0.1:3000]`
//! against the Django app's database; connect with `Cookie: key=<token>` or
//! `Authorization: Token <token>` to `ws://127.0.0.1:3000/ws`.
//!
//! DRF keeps token keys in clear in `authtoken_token.key`: that is Django's
//! schema, not ours to change (our own stores keep digests). Put a
//! `CachedTokenStore` in front to spare the database a query per handshake.

#[allow(dead_code)] // only the command line is shared here
#[path = "common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use axum::extract::State;
use axum::extract::ws::WebSocketUpgrade;
use axum::response::Response;
use axum::routing::get;
use sqlx::PgPool;
use ws_token_auth::{Authenticated, AuthenticatedUser, Lifecycle, StoreError, Token, TokenStore, TokenUser};

/// How stale an open socket may be about what Django did.
const REVALIDATE_EVERY: Duration = Duration::from_secs(10);

/// A Django user, as the WebSocket handlers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DjangoUser {
    pub(crate) id: i64,
    pub(crate) username: String,
    pub(crate) is_staff: bool,
}

impl TokenUser for DjangoUser {
    type Id = i64;
    fn id(&self) -> i64 {
        self.id
    }
}

/// DRF's tokens, read from the Django app's database.
#[derive(Debug, Clone)]
pub(crate) struct DrfTokens {
    pub(crate) pool: PgPool,
}

#[async_trait]
impl TokenStore for DrfTokens {
    type User = DjangoUser;

    async fn authenticate(&self, token: &Token) -> Result<Option<Authenticated<DjangoUser>>, StoreError> {
        let row: Option<(i32, String, bool)> = sqlx::query_as(
            "SELECT u.id, u.username, u.is_staff FROM authtoken_token t JOIN auth_user u ON u.id = t.user_id \
             WHERE t.key = $1 AND u.is_active",
        )
        .bind(token.expose_secret())
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::unavailable)?;
        Ok(row.map(|(id, username, is_staff)| Authenticated::new(DjangoUser { id: id.into(), username, is_staff })))
    }

    /// A token whose user Django deactivated: its sockets close with 4403.
    async fn is_locked_out(&self, token: &Token) -> Result<bool, StoreError> {
        let row: Option<(bool,)> = sqlx::query_as(
            "SELECT u.is_active FROM authtoken_token t JOIN auth_user u ON u.id = t.user_id WHERE t.key = $1",
        )
        .bind(token.expose_secret())
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::unavailable)?;
        Ok(row.is_some_and(|(active,)| !active))
    }
}

/// The server: `/ws` greets the Django user, then echoes until the socket
/// ends or Django takes the user's access away.
pub(crate) fn router(lifecycle: Lifecycle<DrfTokens>) -> Router {
    Router::new().route("/ws", get(ws)).layer(lifecycle.authenticator().layer()).with_state(lifecycle)
}

async fn ws(
    State(lifecycle): State<Lifecycle<DrfTokens>>,
    user: AuthenticatedUser<DjangoUser>,
    upgrade: WebSocketUpgrade,
) -> Response {
    // Registered before the 101: from here on, what Django does reaches it.
    let mut watch = lifecycle.watch(&user);
    upgrade.on_upgrade(move |socket| async move {
        use axum::extract::ws::{CloseFrame, Message};
        use futures_util::{SinkExt, StreamExt};
        let (mut sink, mut stream) = socket.split();
        if sink.send(Message::Text(format!("hello {}", user.user.username).into())).await.is_err() {
            return;
        }
        loop {
            tokio::select! {
                reason = &mut watch => {
                    let frame = CloseFrame { code: reason.code(), reason: reason.as_str().into() };
                    let _ = sink.send(Message::Close(Some(frame))).await;
                    return;
                }
                message = stream.next() => match message {
                    Some(Ok(Message::Text(text))) => {
                        if sink.send(Message::Text(text)).await.is_err() {
                            return;
                        }
                    }
                    _ => return,
                },
            }
        }
    })
}

#[allow(dead_code)] // the integration test includes this file and calls `router` itself
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("DATABASE_URL").map_err(|_| "set DATABASE_URL to the Django app's database")?;
    let pool = PgPool::connect(&url).await?;
    let listener = tokio::net::TcpListener::bind(common::bind_address(std::env::args())?).await?;
    eprintln!("listening on ws://{}/ws", listener.local_addr()?);
    let lifecycle = Lifecycle::new(Arc::new(DrfTokens { pool }));
    // Ends by itself when the lifecycle is dropped.
    let _revalidation = lifecycle.revalidate_every(REVALIDATE_EVERY);
    axum::serve(listener, router(lifecycle)).await?;
    Ok(())
}
