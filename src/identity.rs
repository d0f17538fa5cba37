//! What the layer puts into a request's extensions: [`AuthenticatedUser`],
//! [`Anonymous`], and [`Identity`] (one of the two).
//!
//! Every request that reaches the inner service carries an [`Identity`]; an
//! authenticated one also carries its [`AuthenticatedUser`], an anonymous one
//! (in [`optional`](crate::TokenAuthLayer::optional) mode) its [`Anonymous`].
//!
//! ```
//! use http::Request;
//! use ws_token_auth::{AuthenticatedUser, Identity};
//!
//! fn greet<B>(req: &Request<B>) -> String {
//!     match req.extensions().get::<Identity<String>>() {
//!         Some(Identity::User(user)) => format!("hello {}", user.user),
//!         Some(Identity::Anonymous(_)) => "hello stranger".into(),
//!         None => "no TokenAuthLayer in front of this service".into(),
//!     }
//! }
//! # let _ = greet::<()>;
//! ```

use std::time::SystemTime;

use crate::extract::CredentialKind;
use crate::token::{Token, TokenId};

/// A request authenticated by a valid token.
///
/// Holds the user the store returned, the token (to revoke it on logout, say;
/// it never prints itself), and where the token came from.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AuthenticatedUser<U> {
    /// The user.
    pub user: U,
    /// When the token expires, as the store said.
    pub expires_at: Option<SystemTime>,
    token: Token,
    kind: CredentialKind,
}

impl<U> AuthenticatedUser<U> {
    /// An authenticated user, for servers that authenticate a request
    /// themselves and for tests.
    pub fn new(user: U, token: Token, kind: CredentialKind, expires_at: Option<SystemTime>) -> Self {
        Self { user, expires_at, token, kind }
    }

    /// The token the request presented.
    #[must_use]
    pub fn token(&self) -> &Token {
        &self.token
    }

    /// The token's public fingerprint, safe to log.
    #[must_use]
    pub fn token_id(&self) -> TokenId {
        self.token.id()
    }

    /// Where the token was found.
    #[must_use]
    pub fn credential_kind(&self) -> CredentialKind {
        self.kind
    }
}

/// A request the layer let through without a user, in
/// [`optional`](crate::TokenAuthLayer::optional) mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Anonymous {
    reason: AnonymousReason,
}

impl Anonymous {
    /// An anonymous identity for `reason`.
    #[must_use]
    pub fn new(reason: AnonymousReason) -> Self {
        Self { reason }
    }

    /// Why the request has no user: a page may tell "please log in" from
    /// "your session has ended".
    #[must_use]
    pub fn reason(&self) -> AnonymousReason {
        self.reason
    }
}

/// Why a request is anonymous.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AnonymousReason {
    /// It carried no token.
    NoCredential,
    /// Its token is unknown, revoked or expired.
    InvalidToken,
}

/// Who made the request: a user, or nobody.
#[derive(Debug, Clone)]
pub enum Identity<U> {
    /// Authenticated by a valid token.
    User(AuthenticatedUser<U>),
    /// No valid token, in [`optional`](crate::TokenAuthLayer::optional) mode.
    Anonymous(Anonymous),
}

impl<U> Identity<U> {
    /// The authenticated user, if any.
    #[must_use]
    pub fn user(&self) -> Option<&AuthenticatedUser<U>> {
        match self {
            Self::User(user) => Some(user),
            Self::Anonymous(_) => None,
        }
    }

    /// Whether the request is anonymous.
    #[must_use]
    pub fn is_anonymous(&self) -> bool {
        matches!(self, Self::Anonymous(_))
    }
}

impl<U: Clone + Send + Sync + 'static> Identity<U> {
    /// Puts the identity into `extensions`: always the [`Identity`], and also
    /// the [`AuthenticatedUser`] or the [`Anonymous`] it holds.
    pub(crate) fn insert_into(self, extensions: &mut http::Extensions) {
        match &self {
            Self::User(user) => {
                extensions.insert(user.clone());
            }
            Self::Anonymous(anonymous) => {
                extensions.insert(*anonymous);
            }
        }
        extensions.insert(IdentityMarker);
        extensions.insert(self);
    }
}

/// Says that the layer ran, whatever the user type: lets extractors that do
/// not know `U` tell "authenticated" from "no layer".
#[derive(Debug, Clone, Copy)]
pub(crate) struct IdentityMarker;
