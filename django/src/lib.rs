//! [ws-token-auth](ws_token_auth) beside a Django app: keep Django for login,
//! REST and admin, and serve the WebSockets from Rust over the same
//! PostgreSQL database, with no Django code changed.
//!
//! - [`DjangoStore`] reads Django's tables: DRF tokens (the cookie `key` an
//!   Android client adds by hand, `Authorization: Token <key>`) and sessions
//!   of the database backend (the `sessionid` cookie a browser logged in to
//!   Django already carries), verified with Django's `SECRET_KEY`
//!   ([`signing`]) and its password-change rule.
//! - [`install_triggers`] makes what Django does (logout, token regenerated,
//!   deactivation, password change, user deleted) reach every node's open
//!   sockets at once, through [`PgBus`](ws_token_auth::live::postgres::PgBus)
//!   on [`CHANNEL`].
//!
//! A complete socket server beside Django (axum, feature `axum` of
//! ws-token-auth): the Android client's `Cookie: key=<token>`, the
//! `Authorization` header, and a browser's Django session open the socket;
//! what Django does afterwards closes it.
//!
//! ```no_run
//! use std::{sync::Arc, time::Duration};
//! use axum::extract::{State, ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade}};
//! use axum::{Router, response::Response, routing::get};
//! use ws_token_auth::{AuthenticatedUser, Lifecycle, extract::TokenSource};
//! use ws_token_auth::{live::{Signal, postgres::PgBus}, store::CachedTokenStore};
//! use ws_token_auth_django::{CHANNEL, DjangoStore, DjangoTables, DjangoUser, install_triggers, signing::SecretKeys};
//!
//! type Node = Lifecycle<CachedTokenStore<DjangoStore>>;
//!
//! async fn socket(State(node): State<Node>, me: AuthenticatedUser<DjangoUser>, ws: WebSocketUpgrade) -> Response {
//!     let mut watch = node.watch(&me); // Django's logout, deactivation, password change close it
//!     ws.on_upgrade(move |mut socket: WebSocket| async move {
//!         let hello = format!("hello {}", me.user.username);
//!         let _ = socket.send(Message::Text(hello.into())).await;
//!         loop {
//!             tokio::select! {
//!                 signal = watch.signal() => if let Signal::Close(reason) = signal {
//!                     let frame = CloseFrame { code: reason.code(), reason: reason.as_str().into() };
//!                     let _ = socket.send(Message::Close(Some(frame))).await; // 4401, or 4403 when deactivated
//!                     return;
//!                 },
//!                 frame = socket.recv() => if !matches!(frame, Some(Ok(_))) { return },
//!             }
//!         }
//!     })
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let pool = sqlx::PgPool::connect(&std::env::var("DATABASE_URL")?).await?; // Django's database
//!     let keys = SecretKeys::new(std::env::var("DJANGO_SECRET_KEY")?)?; // never on the command line
//!     let store = DjangoStore::new(pool.clone(), DjangoTables::default(), keys);
//!     store.check_tables().await?; // Django migrated, rest_framework.authtoken installed
//!     install_triggers(&pool, &DjangoTables::default(), CHANNEL).await?; // idempotent: at each start is fine
//!
//!     // A cache is safe here: Django's changes reach it over the bus (a
//!     // password change: the user's answers are asked again on every node).
//!     let node = Lifecycle::new(Arc::new(CachedTokenStore::new(store))).with_bus(PgBus::new(pool, CHANNEL));
//!     let _revalidation = node.revalidate_every(Duration::from_secs(60)); // the bound without triggers
//!     // A cookie sent from another site's page is refused (403): the
//!     // same-host origin policy is the default.
//!     let auth = node.authenticator().sources([
//!         TokenSource::cookie("key"),
//!         TokenSource::authorization(["Token"]),
//!         TokenSource::cookie("sessionid"),
//!     ]);
//!     let app = Router::new().route("/ws", get(socket)).layer(auth.layer()).with_state(node);
//!     axum::serve(tokio::net::TcpListener::bind("127.0.0.1:8001").await?, app).await?;
//!     Ok(())
//! }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod signing;
mod store;
mod tables;
pub mod triggers;

pub use store::{DjangoStore, DjangoUser, SESSION_SALT};
pub use tables::{DjangoTables, InvalidName};
pub use triggers::{CHANNEL, install_triggers};
