//! Authenticate WebSocket handshakes (and any HTTP request) in tower-based
//! servers with the token your app already has.
//!
//! Apps that serve a web front end and a mobile app from one backend often log
//! users in with a token kept in a cookie (Django REST Framework's `Token`, a
//! session key, an API key). A browser sends that cookie with a WebSocket
//! handshake by itself; a mobile client adds `Cookie: key=<token>` by hand.
//! [`TokenAuthLayer`] reads the token from the request, asks your
//! [`TokenStore`] who it belongs to, and puts an [`AuthenticatedUser`] (or,
//! optionally, [`Anonymous`]) into the request's extensions, or refuses the
//! handshake before the upgrade:
//!
//! | request | answer |
//! | --- | --- |
//! | valid token | inner service, with [`AuthenticatedUser`] and [`Identity`] |
//! | no token, unknown, revoked or expired token | 401 + `WWW-Authenticate` (or [`Anonymous`] with [`optional`](TokenAuthLayer::optional)) |
//! | malformed credential (two different `key` cookies, over-long, bad bytes) | 400, store not asked |
//! | cookie credential from an `Origin` the [`OriginPolicy`] refuses | 403 |
//! | store error or timeout | 503, never anonymous |
//!
//! # Quick start
//!
//! ```
//! use std::sync::Arc;
//! use axum::{Router, extract::Request, routing::get};
//! use ws_token_auth::{AuthenticatedUser, MemoryTokenStore, TokenAuthLayer};
//!
//! let store = Arc::new(MemoryTokenStore::<String>::new());
//! let token = store.issue("alice".to_string()); // hand this to the client
//!
//! let app: Router = Router::new()
//!     .route("/ws", get(|req: Request| async move {
//!         // a WebSocket upgrade would go here
//!         let user = req.extensions().get::<AuthenticatedUser<String>>().unwrap();
//!         format!("hello {}", user.user)
//!     }))
//!     .layer(TokenAuthLayer::from_shared(store));
//! # let _ = (app, token);
//! ```
//!
//! # After the upgrade
//!
//! [`live::Revocations`] closes the sockets of a token that is revoked, expires
//! or stops passing revalidation with the store; `live::redis` carries
//! revocations across nodes (feature `redis`).
//!
//! # Implementing a store
//!
//! See [`TokenStore`]: one async method, `Ok(None)` for "no such user".
//!
//! # Feature flags
//!
//! | name | description | default? |
//! | --- | --- | --- |
//! | `axum` | [`axum`] extractors: `AuthenticatedUser`, `Identity`, `Anonymous` as handler arguments | no |
//! | `tungstenite` | [`tungstenite`]: authenticate inside a raw tokio-tungstenite accept loop | no |
//! | `sqlite`, `postgres` | `store::SqlTokenStore` over sqlx: digests joined with the app's users table | no |
//! | `redis` | `store::RedisTokenStore`; `live::redis::RevocationBus`: revocations across nodes | no |
//! | `cache` | `store::CachedTokenStore` over moka: negative entries, request coalescing | no |
//!
//! # Secrets
//!
//! A [`Token`] never prints its value: `Debug` shows its [`TokenId`]
//! fingerprint, it has no `Display` or `Serialize`, and it compares in
//! constant time. Logs (target `ws_token_auth`), errors and rejections carry
//! the `TokenId` at most.

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod authenticator;
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod axum;
pub mod extract;
mod identity;
mod layer;
pub mod live;
pub mod origin;
#[cfg(feature = "redis")]
mod redis_conn;
pub mod rejection;
pub mod store;
mod token;
#[cfg(feature = "tungstenite")]
#[cfg_attr(docsrs, doc(cfg(feature = "tungstenite")))]
pub mod tungstenite;

pub use authenticator::{Authenticator, DEFAULT_STORE_TIMEOUT};
pub use identity::{Anonymous, AnonymousReason, AuthenticatedUser, Identity};
pub use layer::{ResponseFuture, TokenAuth, TokenAuthLayer};
pub use origin::{OriginError, OriginPolicy};
pub use rejection::{DefaultRejection, Rejection, RejectionKind, RejectionResponder};
pub use store::{Authenticated, MemoryTokenStore, StoreError, TokenStore};
pub use token::{DIGEST_LEN, InvalidToken, ParseTokenIdError, Token, TokenId};
