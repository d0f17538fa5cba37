#![doc = include_str!("../README.md")]
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
pub use store::{Authenticated, ManageTokens, MemoryTokenStore, StoreError, TokenStore, TokenUser, UserId};
pub use token::{DIGEST_LEN, InvalidToken, ParseTokenIdError, Token, TokenId};
