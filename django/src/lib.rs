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
//! ```no_run
//! use std::sync::Arc;
//! use ws_token_auth::{Lifecycle, extract::TokenSource};
//! use ws_token_auth::live::postgres::PgBus;
//! use ws_token_auth_django::{CHANNEL, DjangoStore, DjangoTables, install_triggers, signing::SecretKeys};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let pool = sqlx::PgPool::connect(&std::env::var("DATABASE_URL")?).await?;
//! let keys = SecretKeys::new(std::env::var("DJANGO_SECRET_KEY")?)?;
//! let store = DjangoStore::new(pool.clone(), DjangoTables::default(), keys);
//! store.check_tables().await?;
//! install_triggers(&pool, &DjangoTables::default(), CHANNEL).await?; // once, or at each start
//!
//! let lifecycle = Lifecycle::new(Arc::new(store)).with_bus(PgBus::new(pool, CHANNEL));
//! let _revalidation = lifecycle.revalidate_every(std::time::Duration::from_secs(60));
//! let auth = lifecycle.authenticator().sources([
//!     TokenSource::cookie("key"),
//!     TokenSource::authorization(["Token"]),
//!     TokenSource::cookie("sessionid"),
//! ]);
//! // auth.layer() in front of the socket route; lifecycle.watch(&user) for each socket.
//! # let _ = auth;
//! # Ok(()) }
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
