//! [`TokenAuthLayer`]: the tower middleware.
//!
//! The layer authenticates every request that passes through it (a WebSocket
//! handshake, or any other HTTP request) with an [`Authenticator`], then
//! either calls the inner service with the identity in the request's
//! extensions, or answers with the authenticator's
//! [refusal](Authenticator::refusal) without calling it.

use tower_layer::Layer;

use crate::authenticator::Authenticator;
use crate::store::TokenStore;

mod future;
mod service;

pub use future::ResponseFuture;
pub use service::TokenAuth;

/// Authenticates requests with an [`Authenticator`]; configure the
/// authenticator, not the layer.
///
/// The inner service's response body must be buildable from a `String` (the
/// refusal's body): axum's `Body`, http-body-util's `Full<Bytes>` and `String`
/// are.
///
/// ```
/// use axum::{Router, routing::get};
/// use ws_token_auth::{AuthenticatedUser, Authenticator, MemoryTokenStore, TokenAuthLayer, TokenUser};
///
/// #[derive(Clone)]
/// struct User { id: i64, name: String }
/// impl TokenUser for User {
///     type Id = i64;
///     fn id(&self) -> i64 { self.id }
/// }
///
/// let auth = Authenticator::new(MemoryTokenStore::<User>::new());
/// let app: Router = Router::new()
///     .route("/ws", get(|user: AuthenticatedUser<User>| async move { format!("hello {}", user.user.name) }))
///     .layer(TokenAuthLayer::new(auth));
/// # let _ = app;
/// ```
#[derive(Debug)]
#[must_use]
pub struct TokenAuthLayer<St> {
    auth: Authenticator<St>,
}

impl<St> Clone for TokenAuthLayer<St> {
    fn clone(&self) -> Self {
        Self { auth: self.auth.clone() }
    }
}

impl<St: TokenStore> TokenAuthLayer<St> {
    /// A layer that authenticates with `auth`.
    ///
    /// ```
    /// use ws_token_auth::{Authenticator, MemoryTokenStore, TokenAuthLayer};
    /// let layer = TokenAuthLayer::new(Authenticator::new(MemoryTokenStore::<String>::new()).optional());
    /// # let _ = layer;
    /// ```
    pub fn new(auth: Authenticator<St>) -> Self {
        Self { auth }
    }

    /// The authenticator this layer uses.
    ///
    /// ```
    /// use ws_token_auth::{Authenticator, MemoryTokenStore, TokenAuthLayer};
    /// let layer = TokenAuthLayer::new(Authenticator::new(MemoryTokenStore::<String>::new()));
    /// assert!(layer.authenticator().store().is_empty());
    /// ```
    pub fn authenticator(&self) -> &Authenticator<St> {
        &self.auth
    }
}

// The layer lives here, so the authenticator's `layer()` does too: the
// authenticator does not know about tower.
impl<St: TokenStore> Authenticator<St> {
    /// A tower layer that authenticates with this authenticator: the same as
    /// `TokenAuthLayer::new(self.clone())`.
    ///
    /// ```
    /// use axum::{Router, routing::get};
    /// use ws_token_auth::{Authenticator, MemoryTokenStore};
    ///
    /// let auth = Authenticator::new(MemoryTokenStore::<String>::new());
    /// let app: Router = Router::new().route("/ws", get(|| async { "hi" })).layer(auth.layer());
    /// # let _ = app;
    /// ```
    pub fn layer(&self) -> TokenAuthLayer<St> {
        TokenAuthLayer::new(self.clone())
    }
}

impl<St: TokenStore> From<Authenticator<St>> for TokenAuthLayer<St> {
    fn from(auth: Authenticator<St>) -> Self {
        Self::new(auth)
    }
}

impl<S, St: TokenStore> Layer<S> for TokenAuthLayer<St> {
    type Service = TokenAuth<S, St>;

    fn layer(&self, inner: S) -> Self::Service {
        TokenAuth::new(inner, self.auth.clone())
    }
}
