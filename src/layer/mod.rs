//! [`TokenAuthLayer`]: the tower middleware.
//!
//! The layer authenticates every request that passes through it (a WebSocket
//! handshake, or any other HTTP request) with the [`Authenticator`], then
//! either calls the inner service with the identity in the request's
//! extensions, or answers with the [`Rejection`](crate::Rejection)'s response
//! without calling it.

use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;

use crate::authenticator::Authenticator;
use crate::extract::{Extractor, TokenSource};
use crate::origin::OriginPolicy;
use crate::rejection::DefaultRejection;
use crate::store::TokenStore;

mod future;
mod service;

pub use future::ResponseFuture;
pub use service::TokenAuth;

/// Authenticates requests with a token from a [`TokenStore`].
///
/// Defaults: sources `Cookie: key=…`, then `Authorization: Token|Bearer …`;
/// the [same-host](OriginPolicy::same_host) origin policy for cookies; a user
/// required (401 without one); 256-byte tokens at most; a 5 s store timeout;
/// [`DefaultRejection`] responses. The layer needs a tokio runtime (for the
/// store timeout).
///
/// ```
/// use axum::{Router, routing::get};
/// use ws_token_auth::{AuthenticatedUser, MemoryTokenStore, TokenAuthLayer};
///
/// #[derive(Clone)]
/// struct User { name: String }
///
/// let store = std::sync::Arc::new(MemoryTokenStore::<User>::new());
/// let app: Router = Router::new()
///     .route("/ws", get(|req: axum::extract::Request| async move {
///         let user = req.extensions().get::<AuthenticatedUser<User>>().unwrap();
///         format!("hello {}", user.user.name)
///     }))
///     .layer(TokenAuthLayer::new(store));
/// # let _ = app;
/// ```
#[derive(Debug)]
#[must_use]
pub struct TokenAuthLayer<St, R = DefaultRejection> {
    auth: Authenticator<St>,
    responder: R,
}

impl<St, R: Clone> Clone for TokenAuthLayer<St, R> {
    fn clone(&self) -> Self {
        Self { auth: self.auth.clone(), responder: self.responder.clone() }
    }
}

impl<St: TokenStore> TokenAuthLayer<St> {
    /// A layer asking `store`, with the defaults above.
    pub fn new(store: St) -> Self {
        Self::from_shared(Arc::new(store))
    }

    /// A layer asking a store the app also holds (to issue and revoke tokens).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use ws_token_auth::{MemoryTokenStore, TokenAuthLayer};
    ///
    /// let store = Arc::new(MemoryTokenStore::<String>::new());
    /// let layer = TokenAuthLayer::from_shared(Arc::clone(&store));
    /// let _token = store.issue("alice".into());
    /// # let _ = layer;
    /// ```
    pub fn from_shared(store: Arc<St>) -> Self {
        Self { auth: Authenticator::new(store), responder: DefaultRejection }
    }
}

impl<St: TokenStore, R> TokenAuthLayer<St, R> {
    /// Sets where to look for the token, in order; the first source that holds
    /// one wins.
    ///
    /// ```
    /// use ws_token_auth::{MemoryTokenStore, TokenAuthLayer, extract::TokenSource};
    ///
    /// let layer = TokenAuthLayer::new(MemoryTokenStore::<String>::new())
    ///     .sources([TokenSource::cookie("sessionid"), TokenSource::subprotocol("token.")]);
    /// # let _ = layer;
    /// ```
    pub fn sources(mut self, sources: impl IntoIterator<Item = TokenSource>) -> Self {
        let max = self.auth.extractor().max_len();
        self.auth.set_extractor(Extractor::new(sources).max_token_len(max));
        self
    }

    /// Sets the longest token accepted, in bytes (default 256); a longer one
    /// is answered 400 without asking the store.
    ///
    /// ```
    /// # use ws_token_auth::{MemoryTokenStore, TokenAuthLayer};
    /// let layer = TokenAuthLayer::new(MemoryTokenStore::<String>::new()).max_token_len(64);
    /// # let _ = layer;
    /// ```
    pub fn max_token_len(mut self, max: usize) -> Self {
        let extractor = self.auth.extractor().clone().max_token_len(max);
        self.auth.set_extractor(extractor);
        self
    }

    /// Sets which `Origin`s may present a cookie credential.
    ///
    /// ```
    /// # use ws_token_auth::{MemoryTokenStore, OriginPolicy, TokenAuthLayer};
    /// let layer = TokenAuthLayer::new(MemoryTokenStore::<String>::new())
    ///     .origin_policy(OriginPolicy::same_host().allow("https://app.example.com").unwrap());
    /// # let _ = layer;
    /// ```
    pub fn origin_policy(mut self, policy: OriginPolicy) -> Self {
        self.auth.set_origin_policy(policy);
        self
    }

    /// Lets requests without a valid token through as [`Anonymous`](crate::Anonymous)
    /// instead of answering 401. Malformed credentials (400), refused origins
    /// (403) and store failures (503) are still refused.
    ///
    /// ```
    /// # use ws_token_auth::{MemoryTokenStore, TokenAuthLayer};
    /// let layer = TokenAuthLayer::new(MemoryTokenStore::<String>::new()).optional();
    /// # let _ = layer;
    /// ```
    pub fn optional(mut self) -> Self {
        self.auth.set_optional(true);
        self
    }

    /// Requires a user: a request without a valid token is answered 401 (the default).
    ///
    /// ```
    /// # use ws_token_auth::{MemoryTokenStore, TokenAuthLayer};
    /// let layer = TokenAuthLayer::new(MemoryTokenStore::<String>::new()).require_user();
    /// # let _ = layer;
    /// ```
    pub fn require_user(mut self) -> Self {
        self.auth.set_optional(false);
        self
    }

    /// Sets how long one store call may take before the request is answered
    /// 503 (default 5 s).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use ws_token_auth::{MemoryTokenStore, TokenAuthLayer};
    /// let layer = TokenAuthLayer::new(MemoryTokenStore::<String>::new())
    ///     .store_timeout(Duration::from_millis(500));
    /// # let _ = layer;
    /// ```
    pub fn store_timeout(mut self, timeout: Duration) -> Self {
        self.auth.set_store_timeout(timeout);
        self
    }

    /// Sets how refusals are answered; see [`RejectionResponder`](crate::RejectionResponder).
    pub fn on_rejection<R2>(self, responder: R2) -> TokenAuthLayer<St, R2> {
        TokenAuthLayer { auth: self.auth, responder }
    }

    /// The authenticator this layer uses, for other entry points that must
    /// decide the same way.
    #[must_use]
    pub fn authenticator(&self) -> &Authenticator<St> {
        &self.auth
    }
}

impl<S, St: TokenStore, R: Clone> Layer<S> for TokenAuthLayer<St, R> {
    type Service = TokenAuth<S, St, R>;

    fn layer(&self, inner: S) -> Self::Service {
        TokenAuth::new(inner, self.auth.clone(), self.responder.clone())
    }
}
