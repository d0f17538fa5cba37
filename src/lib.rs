//! Authenticate WebSocket handshakes (and any HTTP request) in tower, axum,
//! hyper and raw tokio-tungstenite servers with the token an app already
//! keeps in a cookie (a Django REST Framework style `Token`, a session key,
//! an API key), and keep watching the socket after the upgrade.
//!
//! A browser sends the cookie with the upgrade request by itself; a mobile
//! client adds `Cookie: key=<token>` by hand, with no `Origin`. The
//! [`Authenticator`] reads the credential ([`extract`]), checks who may use a
//! cookie ([`origin`]), asks a [`TokenStore`] ([`store`]) and hands the
//! handler an [`AuthenticatedUser`] or [`Anonymous`] ([`Identity`]), or
//! refuses with a clear status ([`rejection`]): 400 malformed, 401 unknown,
//! 403 foreign origin, 503 when the store fails (never anonymous).
//!
//! One value owns the wiring: a [`Lifecycle`] over the store hands out the
//! authenticator (for [`TokenAuthLayer`], the [`axum`] extractors and the
//! [`tungstenite`] acceptor), registers each open socket ([`live`]), and is
//! the one path for every change of access: issue, revoke, lock out, let in.
//! A change closes the sockets concerned, with 4401 or 4403, on every node
//! that shares its [`live::Bus`].
//!
//! ```
//! use std::sync::Arc;
//! use http::{HeaderMap, Uri, header::COOKIE};
//! use ws_token_auth::{Lifecycle, MemoryTokenStore};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let lifecycle = Lifecycle::new(Arc::new(MemoryTokenStore::<String>::new()));
//! let token = lifecycle.issue(&"alice".to_string(), None).await?; // at login
//! let auth = lifecycle.authenticator(); // auth.layer() guards a router
//!
//! // The handshake of an Android client: the cookie, no Origin.
//! let mut headers = HeaderMap::new();
//! headers.insert(COOKIE, format!("key={}", token.expose_secret()).parse()?);
//! let identity = auth.authenticate(&headers, &Uri::from_static("/ws")).await?;
//! let user = identity.user().expect("a valid token");
//! assert_eq!(user.user, "alice");
//!
//! // Registered before the 101; resolves when the socket must close.
//! let watch = lifecycle.watch(user);
//! lifecycle.revoke(&token).await?; // logout
//! assert_eq!(watch.await.code(), 4401);
//! # Ok(()) }
//! ```
//!
//! Stores: [`MemoryTokenStore`]; SQLite and PostgreSQL through sqlx
//! (features `sqlite`, `postgres`), rusqlite (`rusqlite`), Redis (`redis`); a
//! caching decorator that stays consistent by itself (`cache`); your own
//! database by implementing [`TokenStore`] (and [`store::ManageTokens`] for
//! issuing and revoking), checked by the exported conformance suite
//! (`test-util`). The repository's README walks through a whole app (login,
//! an API and a socket route, tickets, refresh, two nodes), the servers, the
//! benchmarks and the multichat app built on this crate.
//!
//! | feature | adds |
//! | --- | --- |
//! | (none) | everything above over [`MemoryTokenStore`] |
//! | `axum` | extractors for [`AuthenticatedUser`], [`Identity`], [`Anonymous`] |
//! | `tungstenite` | the raw tokio-tungstenite acceptor; permessage-deflate ([`deflate`]) |
//! | `sqlite`, `postgres` | `store::SqlTokenStore` over sqlx |
//! | `rusqlite` | `store::RusqliteTokenStore` |
//! | `redis` | `store::RedisTokenStore`; `live::redis::RevocationBus` |
//! | `cache` | `store::CachedTokenStore` (moka) |
//! | `test-util` | the store conformance suite |
//!
//! # Secrets
//!
//! A [`Token`] never prints its value: `Debug` shows its [`TokenId`]
//! fingerprint, it has no `Display` or `Serialize`, and it compares in
//! constant time. Logs (target `ws_token_auth`), errors and rejections carry
//! the `TokenId` at most.
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod access;
mod authenticator;
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod axum;
#[cfg(feature = "tungstenite")]
#[cfg_attr(docsrs, doc(cfg(feature = "tungstenite")))]
pub mod deflate;
pub mod extract;
mod identity;
mod layer;
mod lifecycle;
pub mod live;
pub mod origin;
#[cfg(feature = "redis")]
mod redis_conn;
pub mod rejection;
pub mod store;
#[cfg(feature = "test-util")]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
pub mod test_util;
pub mod ticket;
mod token;
#[cfg(feature = "tungstenite")]
#[cfg_attr(docsrs, doc(cfg(feature = "tungstenite")))]
pub mod tungstenite;

pub use authenticator::{Authenticator, DEFAULT_STORE_TIMEOUT};
pub use identity::{Anonymous, AnonymousReason, AuthenticatedUser, Identity};
pub use layer::{ResponseFuture, TokenAuth, TokenAuthLayer};
pub use lifecycle::Lifecycle;
pub use origin::{OriginError, OriginPolicy};
pub use rejection::{DefaultRejection, Rejection, RejectionKind, RejectionResponder};
pub use store::{Authenticated, MemoryTokenStore, StoreError, TokenStore, TokenUser, UserId};
pub use token::{DIGEST_LEN, InvalidToken, ParseTokenIdError, Token, TokenId};

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
