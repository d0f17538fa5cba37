//! [`Authenticator`]: the decision the layer makes for each request, usable on
//! its own by servers that are not tower services (the tokio-tungstenite
//! adapter, a custom accept loop).
//!
//! One straight line: headers and URI → [`Extractor`] → [`Credential`] →
//! [`OriginPolicy`] (cookie credentials only) → [`TokenStore`] (bounded by the
//! store timeout) → [`Identity`] or [`Rejection`]. Each outcome is logged with
//! `tracing` under the target `ws_token_auth`, with the token's [`TokenId`]
//! and never the token.
//!
//! [`TokenId`]: crate::TokenId

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderValue, Uri};

use crate::extract::{Credential, CredentialKind, Extractor};
use crate::identity::{Anonymous, AnonymousReason, AuthenticatedUser, Identity};
use crate::origin::OriginPolicy;
use crate::rejection::Rejection;
use crate::store::{Authenticated, StoreError, TokenStore};
use crate::token::Token;

/// The default bound on one store call.
pub const DEFAULT_STORE_TIMEOUT: Duration = Duration::from_secs(5);

/// Decides who a request is. Cheap to clone (one reference count).
///
/// Get one from [`TokenAuthLayer::authenticator`](crate::TokenAuthLayer::authenticator),
/// so the layer and any other entry point share one configuration.
///
/// ```
/// use http::Request;
/// use ws_token_auth::{Identity, MemoryTokenStore, TokenAuthLayer};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let store = std::sync::Arc::new(MemoryTokenStore::new());
/// let token = store.issue("alice".to_string());
/// let auth = TokenAuthLayer::new(store).authenticator().clone();
///
/// let req = Request::get("/ws")
///     .header("authorization", format!("Token {}", token.expose_secret()))
///     .body(())
///     .unwrap();
/// let identity = auth.authenticate(req.headers(), req.uri()).await.unwrap();
/// assert_eq!(identity.user().unwrap().user, "alice");
/// # }
/// ```
#[derive(Debug)]
pub struct Authenticator<St> {
    config: Arc<Config<St>>,
}

impl<St> Clone for Authenticator<St> {
    fn clone(&self) -> Self {
        Self { config: Arc::clone(&self.config) }
    }
}

#[derive(Debug)]
struct Config<St> {
    store: Arc<St>,
    extractor: Extractor,
    origin: OriginPolicy,
    optional: bool,
    store_timeout: Duration,
    challenge: HeaderValue,
}

impl<St> Clone for Config<St> {
    fn clone(&self) -> Self {
        Self {
            store: Arc::clone(&self.store),
            extractor: self.extractor.clone(),
            origin: self.origin.clone(),
            optional: self.optional,
            store_timeout: self.store_timeout,
            challenge: self.challenge.clone(),
        }
    }
}

/// The store's answer, with the token handed back, from a future that owns
/// what it needs ('static), so the layer's response future can hold it.
pub(crate) type Lookup<U> = Pin<Box<dyn Future<Output = (Token, Result<Option<Authenticated<U>>, StoreError>)> + Send>>;

/// What the headers alone decide.
pub(crate) enum Begin {
    /// No credential, in optional mode.
    Anonymous(Anonymous),
    /// A credential for the store to judge.
    Lookup(Credential),
}

impl<St: TokenStore> Authenticator<St> {
    pub(crate) fn new(store: Arc<St>) -> Self {
        let extractor = Extractor::default();
        let challenge = challenge_for(&extractor);
        Self {
            config: Arc::new(Config {
                store,
                extractor,
                origin: OriginPolicy::default(),
                optional: false,
                store_timeout: DEFAULT_STORE_TIMEOUT,
                challenge,
            }),
        }
    }

    pub(crate) fn set_extractor(&mut self, extractor: Extractor) {
        let config = Arc::make_mut(&mut self.config);
        config.challenge = challenge_for(&extractor);
        config.extractor = extractor;
    }

    pub(crate) fn set_origin_policy(&mut self, origin: OriginPolicy) {
        Arc::make_mut(&mut self.config).origin = origin;
    }

    pub(crate) fn set_optional(&mut self, optional: bool) {
        Arc::make_mut(&mut self.config).optional = optional;
    }

    pub(crate) fn set_store_timeout(&mut self, timeout: Duration) {
        Arc::make_mut(&mut self.config).store_timeout = timeout;
    }

    /// The store.
    #[must_use]
    pub fn store(&self) -> &Arc<St> {
        &self.config.store
    }

    /// The extractor, for servers that need to read the credential themselves.
    #[must_use]
    pub fn extractor(&self) -> &Extractor {
        &self.config.extractor
    }

    /// The `WWW-Authenticate` value sent with a 401: the first configured
    /// `Authorization` scheme, else `Token`.
    #[must_use]
    pub fn challenge(&self) -> &HeaderValue {
        &self.config.challenge
    }

    /// Decides who made a request with these headers and this URI.
    ///
    /// # Errors
    /// The [`Rejection`] to answer with.
    pub async fn authenticate(&self, headers: &HeaderMap, uri: &Uri) -> Result<Identity<St::User>, Rejection> {
        match self.begin(headers, uri)? {
            Begin::Anonymous(anonymous) => Ok(Identity::Anonymous(anonymous)),
            Begin::Lookup(credential) => {
                let kind = credential.kind();
                let (token, answer) = self.lookup(credential.into_token()).await;
                self.finish(kind, token, answer)
            }
        }
    }

    /// Extraction and the origin check: everything decided before the store.
    pub(crate) fn begin(&self, headers: &HeaderMap, uri: &Uri) -> Result<Begin, Rejection> {
        let config = &*self.config;
        let credential = match config.extractor.extract(headers, uri) {
            Ok(Some(credential)) => credential,
            Ok(None) if config.optional => {
                tracing::debug!(target: "ws_token_auth", outcome = "anonymous", reason = "no_credential");
                return Ok(Begin::Anonymous(Anonymous::new(AnonymousReason::NoCredential)));
            }
            Ok(None) => {
                tracing::debug!(target: "ws_token_auth", outcome = "rejected", reason = "missing_credential");
                return Err(Rejection::MissingCredential);
            }
            Err(error) => {
                tracing::info!(target: "ws_token_auth", outcome = "rejected", reason = "malformed", %error);
                return Err(Rejection::Malformed(error));
            }
        };
        if credential.kind().is_ambient() {
            if let Err(error) = config.origin.check_request(headers, uri) {
                tracing::info!(
                    target: "ws_token_auth",
                    outcome = "rejected",
                    reason = "origin",
                    token_id = %credential.token().id(),
                    %error,
                );
                return Err(Rejection::Origin(error));
            }
        }
        Ok(Begin::Lookup(credential))
    }

    /// The store call, bounded by the store timeout.
    pub(crate) fn lookup(&self, token: Token) -> Lookup<St::User> {
        let config = Arc::clone(&self.config);
        Box::pin(async move {
            let answer = match tokio::time::timeout(config.store_timeout, config.store.authenticate(&token)).await {
                Ok(answer) => answer,
                Err(_elapsed) => Err(StoreError::Timeout),
            };
            (token, answer)
        })
    }

    /// Turns the store's answer into an identity or a rejection.
    pub(crate) fn finish(
        &self,
        kind: CredentialKind,
        token: Token,
        answer: Result<Option<Authenticated<St::User>>, StoreError>,
    ) -> Result<Identity<St::User>, Rejection> {
        let token_id = token.id();
        match answer {
            Ok(Some(found)) if !found.is_expired_at(SystemTime::now()) => {
                tracing::debug!(target: "ws_token_auth", outcome = "authenticated", %token_id, credential = %kind);
                Ok(Identity::User(AuthenticatedUser::new(found.user, token, kind, found.expires_at)))
            }
            Ok(_) if self.config.optional => {
                tracing::debug!(target: "ws_token_auth", outcome = "anonymous", reason = "invalid_token", %token_id);
                Ok(Identity::Anonymous(Anonymous::new(AnonymousReason::InvalidToken)))
            }
            Ok(_) => {
                tracing::debug!(target: "ws_token_auth", outcome = "rejected", reason = "invalid_token", %token_id);
                Err(Rejection::InvalidToken)
            }
            Err(error) => {
                tracing::warn!(
                    target: "ws_token_auth",
                    outcome = "rejected",
                    reason = "store_unavailable",
                    %token_id,
                    error = %ErrorChain(&error),
                );
                Err(Rejection::StoreUnavailable(error))
            }
        }
    }
}

fn challenge_for(extractor: &Extractor) -> HeaderValue {
    extractor
        .sources()
        .iter()
        .find_map(|s| s.first_scheme())
        .and_then(|scheme| HeaderValue::from_str(scheme).ok())
        .unwrap_or(HeaderValue::from_static("Token"))
}

/// Displays an error and its sources, `a: b: c`.
struct ErrorChain<'a>(&'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(error) = source {
            write!(f, ": {error}")?;
            source = error.source();
        }
        Ok(())
    }
}
