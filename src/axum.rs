//! axum extractors for the identities the layer attaches (feature `axum`).
//!
//! With [`TokenAuthLayer`](crate::TokenAuthLayer) in front of a router,
//! handlers name what they need:
//!
//! | extractor | when the request is authenticated | anonymous (optional mode) | no layer |
//! | --- | --- | --- | --- |
//! | [`AuthenticatedUser<U>`] | the user | 401 | 500 |
//! | `Option<AuthenticatedUser<U>>` | `Some(user)` | `None` | 500 |
//! | [`Identity<U>`] | `Identity::User` | `Identity::Anonymous` | 500 |
//! | [`Anonymous`] | 403 | the reason | 500 |
//!
//! "No layer" also covers a handler that asks for a different user type than
//! the store's `TokenStore::User`: the 500's message says so.
//!
//! ```
//! use std::sync::Arc;
//! use axum::{Router, extract::ws::{Message, WebSocketUpgrade}, response::Response, routing::get};
//! use ws_token_auth::{AuthenticatedUser, MemoryTokenStore, TokenAuthLayer};
//!
//! #[derive(Clone)]
//! struct User { name: String }
//!
//! async fn chat(user: AuthenticatedUser<User>, upgrade: WebSocketUpgrade) -> Response {
//!     upgrade.on_upgrade(move |mut socket| async move {
//!         let _ = socket.send(Message::Text(format!("hello {}", user.user.name).into())).await;
//!     })
//! }
//!
//! let store = Arc::new(MemoryTokenStore::<User>::new());
//! let app: Router = Router::new().route("/ws", get(chat)).layer(TokenAuthLayer::from_shared(store));
//! # let _ = app;
//! ```
//!
//! # Subprotocol credentials
//!
//! With [`TokenSource::subprotocol`](crate::extract::TokenSource::subprotocol),
//! the client offers `Sec-WebSocket-Protocol: chat, token.<token>`. List only
//! the application's protocols with `WebSocketUpgrade::protocols(["chat"])`:
//! axum echoes one the server lists and the client offered, so the token entry
//! is never echoed.

use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
use axum_core::response::{IntoResponse, Response};
use http::header::{CONTENT_TYPE, WWW_AUTHENTICATE};
use http::request::Parts;
use http::{HeaderValue, StatusCode};

use crate::identity::{Anonymous, AuthenticatedUser, Identity};

/// Why an identity extractor refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityRejection {
    /// The request carries no identity: no `TokenAuthLayer` ran before the
    /// handler, or the handler asks for another user type than the store's. 500.
    #[error(
        "ws-token-auth: the request has no identity of this user type; add `TokenAuthLayer` in front of this \
         handler (`.layer(TokenAuthLayer::new(store))`) and extract the store's `TokenStore::User` type"
    )]
    MissingLayer,
    /// The handler needs a user and the request is anonymous. 401.
    #[error("authentication required")]
    Anonymous,
    /// The handler is for anonymous requests and the request has a user. 403.
    #[error("already authenticated")]
    Authenticated,
}

impl IdentityRejection {
    /// The status this rejection is answered with.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MissingLayer => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Anonymous => StatusCode::UNAUTHORIZED,
            Self::Authenticated => StatusCode::FORBIDDEN,
        }
    }
}

impl IntoResponse for IdentityRejection {
    fn into_response(self) -> Response {
        if self == Self::MissingLayer {
            tracing::error!(target: "ws_token_auth", "{self}");
        }
        let mut response = (self.status(), self.to_string()).into_response();
        response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
        if self == Self::Anonymous {
            response.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static("Token"));
        }
        response
    }
}

fn identity<U: Clone + Send + Sync + 'static>(parts: &Parts) -> Result<&Identity<U>, IdentityRejection> {
    parts.extensions.get::<Identity<U>>().ok_or(IdentityRejection::MissingLayer)
}

impl<S, U> FromRequestParts<S> for Identity<U>
where
    S: Send + Sync,
    U: Clone + Send + Sync + 'static,
{
    type Rejection = IdentityRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        identity(parts).cloned()
    }
}

impl<S, U> FromRequestParts<S> for AuthenticatedUser<U>
where
    S: Send + Sync,
    U: Clone + Send + Sync + 'static,
{
    type Rejection = IdentityRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        identity::<U>(parts)?.user().cloned().ok_or(IdentityRejection::Anonymous)
    }
}

impl<S, U> OptionalFromRequestParts<S> for AuthenticatedUser<U>
where
    S: Send + Sync,
    U: Clone + Send + Sync + 'static,
{
    type Rejection = IdentityRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Option<Self>, Self::Rejection> {
        Ok(identity::<U>(parts)?.user().cloned())
    }
}

impl<S> FromRequestParts<S> for Anonymous
where
    S: Send + Sync,
{
    type Rejection = IdentityRejection;

    /// Needs the layer's [`Identity`] of any user type; finds the
    /// [`Anonymous`] it attached, else the request is authenticated or the
    /// layer is missing.
    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        match parts.extensions.get::<Anonymous>() {
            Some(anonymous) => Ok(*anonymous),
            None if parts.extensions.get::<crate::identity::IdentityMarker>().is_some() => {
                Err(IdentityRejection::Authenticated)
            }
            None => Err(IdentityRejection::MissingLayer),
        }
    }
}
