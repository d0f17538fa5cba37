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
//! A refusal (401 for an anonymous request) is the layer's authenticator's
//! own [`refusal`](crate::Authenticator::refusal): its challenge and its
//! custom responder, exactly as the layer would have answered.
//!
//! ```
//! use axum::{Router, extract::ws::{Message, WebSocketUpgrade}, response::Response, routing::get};
//! use ws_token_auth::{AuthenticatedUser, Authenticator, MemoryTokenStore};
//!
//! async fn chat(user: AuthenticatedUser<String>, upgrade: WebSocketUpgrade) -> Response {
//!     upgrade.on_upgrade(move |mut socket| async move {
//!         let _ = socket.send(Message::Text(format!("hello {}", user.user).into())).await;
//!     })
//! }
//!
//! let auth = Authenticator::new(MemoryTokenStore::<String>::new());
//! let app: Router = Router::new().route("/ws", get(chat)).layer(auth.layer());
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

use std::sync::Arc;

use axum_core::body::Body;
use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
use axum_core::response::{IntoResponse, Response};
use http::header::CONTENT_TYPE;
use http::request::Parts;
use http::{HeaderValue, StatusCode};

use crate::identity::{Anonymous, AnonymousReason, AuthenticatedUser, Identity, IdentityMarker};
use crate::rejection::Refusals;
use crate::rejection::Rejection;

/// Why an identity extractor refused a request; answers as the layer's
/// authenticator does for a request without a user.
///
/// ```
/// use ws_token_auth::axum::{IdentityRejection, IdentityRejectionKind};
///
/// fn log(rejection: &IdentityRejection) {
///     if rejection.kind() == IdentityRejectionKind::MissingLayer {
///         eprintln!("misconfigured router: {rejection}");
///     }
/// }
/// # let _ = log;
/// ```
#[derive(Debug)]
pub struct IdentityRejection {
    kind: IdentityRejectionKind,
    /// The authenticator's refusal, for [`IdentityRejectionKind::Anonymous`].
    refusal: Option<Box<Response<String>>>,
}

/// The kind of an [`IdentityRejection`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdentityRejectionKind {
    /// The request carries no identity: no `TokenAuthLayer` ran before the
    /// handler, or the handler asks for another user type than the store's. 500.
    MissingLayer,
    /// The handler needs a user and the request is anonymous: the
    /// authenticator's refusal (401 by default).
    Anonymous,
    /// The handler is for anonymous requests and the request has a user. 403.
    Authenticated,
}

impl IdentityRejection {
    fn missing_layer() -> Self {
        Self { kind: IdentityRejectionKind::MissingLayer, refusal: None }
    }

    fn anonymous(refusals: &Refusals, anonymous: Anonymous) -> Self {
        let rejection = match anonymous.reason() {
            AnonymousReason::NoCredential => Rejection::MissingCredential,
            _ => Rejection::InvalidToken,
        };
        Self { kind: IdentityRejectionKind::Anonymous, refusal: Some(Box::new(refusals.respond(&rejection))) }
    }

    /// Why the request was refused.
    ///
    /// ```
    /// # use ws_token_auth::axum::{IdentityRejection, IdentityRejectionKind};
    /// fn is_bug(rejection: &IdentityRejection) -> bool {
    ///     rejection.kind() == IdentityRejectionKind::MissingLayer
    /// }
    /// # let _ = is_bug;
    /// ```
    #[must_use]
    pub fn kind(&self) -> IdentityRejectionKind {
        self.kind
    }

    /// The status this rejection is answered with.
    ///
    /// ```
    /// # use ws_token_auth::axum::IdentityRejection;
    /// fn status(rejection: &IdentityRejection) -> u16 {
    ///     rejection.status().as_u16()
    /// }
    /// # let _ = status;
    /// ```
    #[must_use]
    pub fn status(&self) -> StatusCode {
        match (&self.refusal, self.kind) {
            (Some(refusal), _) => refusal.status(),
            (None, IdentityRejectionKind::Authenticated) => StatusCode::FORBIDDEN,
            (None, _) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl std::fmt::Display for IdentityRejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.kind {
            IdentityRejectionKind::MissingLayer => {
                "ws-token-auth: the request has no identity of this user type; add `TokenAuthLayer` in front of \
                 this handler (`.layer(auth.layer())`) and extract the store's `TokenStore::User` type"
            }
            IdentityRejectionKind::Anonymous => "authentication required",
            IdentityRejectionKind::Authenticated => "already authenticated",
        })
    }
}

impl std::error::Error for IdentityRejection {}

impl IntoResponse for IdentityRejection {
    fn into_response(self) -> Response {
        if let Some(refusal) = self.refusal {
            return refusal.map(Body::from);
        }
        if self.kind == IdentityRejectionKind::MissingLayer {
            tracing::error!(target: "ws_token_auth", "{self}");
        }
        let mut response = (self.status(), self.to_string()).into_response();
        response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
        response
    }
}

fn marker(parts: &Parts) -> Result<&Arc<Refusals>, IdentityRejection> {
    parts.extensions.get::<IdentityMarker>().map(|marker| &marker.0).ok_or_else(IdentityRejection::missing_layer)
}

fn identity<U: Clone + Send + Sync + 'static>(parts: &Parts) -> Result<&Identity<U>, IdentityRejection> {
    parts.extensions.get::<Identity<U>>().ok_or_else(IdentityRejection::missing_layer)
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
        match identity::<U>(parts)? {
            Identity::User(user) => Ok(user.clone()),
            Identity::Anonymous(anonymous) => Err(IdentityRejection::anonymous(marker(parts)?, *anonymous)),
        }
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
            None => {
                marker(parts)?;
                Err(IdentityRejection { kind: IdentityRejectionKind::Authenticated, refusal: None })
            }
        }
    }
}
