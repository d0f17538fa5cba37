//! Why a request was refused ([`Rejection`]) and how the refusal is answered
//! ([`RejectionResponder`]).
//!
//! | rejection | status |
//! | --- | --- |
//! | [`Rejection::MissingCredential`], [`Rejection::InvalidToken`] | 401, with `WWW-Authenticate` |
//! | [`Rejection::Malformed`] | 400 |
//! | [`Rejection::Origin`] | 403 |
//! | [`Rejection::StoreUnavailable`] | 503 |
//!
//! [`Authenticator::refusal`](crate::Authenticator::refusal) is the one place
//! refusals are made, for the layer, the axum extractors and the
//! tokio-tungstenite adapter alike. The default responder,
//! [`DefaultRejection`], answers with the status and an empty body; set your
//! own with [`Authenticator::on_rejection`](crate::Authenticator::on_rejection).
//! Whatever the responder returns, a 401 that lacks a `WWW-Authenticate`
//! challenge gets the configured one, and the [`RejectionKind`] goes into the
//! response's extensions for outer layers.

use std::sync::Arc;

use http::header::WWW_AUTHENTICATE;
use http::{HeaderValue, Response, StatusCode};

use crate::extract::ExtractError;
use crate::origin::OriginError;
use crate::store::StoreError;

/// Why the layer refused a request. Never holds the token.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    /// The request carries no token, and the layer requires a user.
    #[error("no credential")]
    MissingCredential,
    /// The token is unknown, revoked or expired, or its user may not log in.
    #[error("invalid token")]
    InvalidToken,
    /// A source holds something that is not a token.
    #[error("malformed credential")]
    Malformed(#[source] ExtractError),
    /// A cookie credential came with an `Origin` the policy refuses.
    #[error("origin refused")]
    Origin(#[source] OriginError),
    /// The store failed or timed out.
    #[error("token store unavailable")]
    StoreUnavailable(#[source] StoreError),
}

impl Rejection {
    /// The HTTP status that answers this rejection.
    ///
    /// ```
    /// use http::StatusCode;
    /// use ws_token_auth::Rejection;
    ///
    /// assert_eq!(Rejection::InvalidToken.status(), StatusCode::UNAUTHORIZED);
    /// ```
    #[must_use]
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MissingCredential | Self::InvalidToken => StatusCode::UNAUTHORIZED,
            Self::Malformed(_) => StatusCode::BAD_REQUEST,
            Self::Origin(_) => StatusCode::FORBIDDEN,
            Self::StoreUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The rejection's kind, without its details.
    ///
    /// ```
    /// use ws_token_auth::{Rejection, RejectionKind};
    /// assert_eq!(Rejection::MissingCredential.kind(), RejectionKind::MissingCredential);
    /// ```
    #[must_use]
    pub fn kind(&self) -> RejectionKind {
        match self {
            Self::MissingCredential => RejectionKind::MissingCredential,
            Self::InvalidToken => RejectionKind::InvalidToken,
            Self::Malformed(_) => RejectionKind::Malformed,
            Self::Origin(_) => RejectionKind::Origin,
            Self::StoreUnavailable(_) => RejectionKind::StoreUnavailable,
        }
    }
}

/// A [`Rejection`]'s kind: put into the extensions of every refusal the layer
/// sends, so outer layers (metrics, logging) can tell refusals apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RejectionKind {
    /// See [`Rejection::MissingCredential`].
    MissingCredential,
    /// See [`Rejection::InvalidToken`].
    InvalidToken,
    /// See [`Rejection::Malformed`].
    Malformed,
    /// See [`Rejection::Origin`].
    Origin,
    /// See [`Rejection::StoreUnavailable`].
    StoreUnavailable,
}

impl RejectionKind {
    /// A short, stable name for logs and metrics.
    ///
    /// ```
    /// assert_eq!(ws_token_auth::RejectionKind::Origin.as_str(), "origin");
    /// ```
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MissingCredential => "missing_credential",
            Self::InvalidToken => "invalid_token",
            Self::Malformed => "malformed",
            Self::Origin => "origin",
            Self::StoreUnavailable => "store_unavailable",
        }
    }
}

/// Makes the response for a refused request: a status, headers and a text
/// body, which each entry point turns into its own response type (the layer
/// needs an inner body type that implements `From<String>`: axum's `Body`,
/// http-body-util's `Full<Bytes>`, `String`).
///
/// Implemented by [`DefaultRejection`] and by every
/// `Fn(&Rejection) -> Response<String>` closure that is `Send + Sync + 'static`.
///
/// ```
/// use http::{Response, header};
/// use ws_token_auth::{Authenticator, MemoryTokenStore, Rejection};
///
/// let auth = Authenticator::new(MemoryTokenStore::<String>::new()).on_rejection(|rejection: &Rejection| {
///     let body = format!("{{\"error\": \"{}\"}}", rejection.kind().as_str());
///     Response::builder()
///         .status(rejection.status())
///         .header(header::CONTENT_TYPE, "application/json")
///         .body(body)
///         .unwrap()
/// });
/// assert_eq!(auth.refusal(&Rejection::InvalidToken).body(), r#"{"error": "invalid_token"}"#);
/// ```
pub trait RejectionResponder: Send + Sync + 'static {
    /// The response for `rejection`.
    fn respond(&self, rejection: &Rejection) -> Response<String>;
}

/// The default responder: the rejection's status and an empty body.
///
/// ```
/// use ws_token_auth::{DefaultRejection, Rejection, RejectionResponder};
/// let response = DefaultRejection.respond(&Rejection::MissingCredential);
/// assert_eq!((response.status().as_u16(), response.body().as_str()), (401, ""));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultRejection;

impl RejectionResponder for DefaultRejection {
    fn respond(&self, rejection: &Rejection) -> Response<String> {
        let mut response = Response::new(String::new());
        *response.status_mut() = rejection.status();
        response
    }
}

impl<F> RejectionResponder for F
where
    F: Fn(&Rejection) -> Response<String> + Send + Sync + 'static,
{
    fn respond(&self, rejection: &Rejection) -> Response<String> {
        self(rejection)
    }
}

/// Builds refusals; shared by an authenticator's clones, and handed to the
/// extractors through the request's extensions.
pub(crate) struct Refusals {
    pub(crate) responder: Option<Arc<dyn RejectionResponder>>,
    pub(crate) challenge: HeaderValue,
}

impl std::fmt::Debug for Refusals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Refusals")
            .field("custom_responder", &self.responder.is_some())
            .field("challenge", &self.challenge)
            .finish()
    }
}

impl Refusals {
    pub(crate) fn respond(&self, rejection: &Rejection) -> Response<String> {
        let mut response = match &self.responder {
            Some(responder) => responder.respond(rejection),
            None => DefaultRejection.respond(rejection),
        };
        if response.status() == StatusCode::UNAUTHORIZED && !response.headers().contains_key(WWW_AUTHENTICATE) {
            response.headers_mut().insert(WWW_AUTHENTICATE, self.challenge.clone());
        }
        response.extensions_mut().insert(rejection.kind());
        response
    }
}
