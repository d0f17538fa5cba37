//! What the layer puts into a request's extensions: [`AuthenticatedUser`],
//! [`Anonymous`], and [`Identity`] (one of the two).
//!
//! Every request that reaches the inner service carries an [`Identity`]; an
//! authenticated one also carries its [`AuthenticatedUser`], an anonymous one
//! (in [`optional`](crate::Authenticator::optional) mode) its [`Anonymous`].
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

use std::time::{Instant, SystemTime};

use crate::extract::CredentialKind;
use crate::rejection::Refusals;
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
    authenticated_at: Instant,
}

impl<U> AuthenticatedUser<U> {
    /// An authenticated user, for servers that authenticate a request
    /// themselves and for tests; authenticated now.
    ///
    /// ```
    /// use ws_token_auth::{AuthenticatedUser, Token, extract::CredentialKind};
    ///
    /// let user = AuthenticatedUser::new("alice", Token::generate(), CredentialKind::Cookie, None);
    /// assert_eq!(user.user, "alice");
    /// ```
    pub fn new(user: U, token: Token, kind: CredentialKind, expires_at: Option<SystemTime>) -> Self {
        Self { user, expires_at, token, kind, authenticated_at: Instant::now() }
    }

    /// Sets when authentication began (when the store was asked).
    pub(crate) fn asked_at(mut self, at: Instant) -> Self {
        self.authenticated_at = at;
        self
    }

    /// When the store was asked about this token: a revocation of the user
    /// after this instant closes the socket even if it registers later.
    ///
    /// ```
    /// # use ws_token_auth::{AuthenticatedUser, Token, extract::CredentialKind};
    /// let user = AuthenticatedUser::new("alice", Token::generate(), CredentialKind::Cookie, None);
    /// assert!(user.authenticated_at() <= std::time::Instant::now());
    /// ```
    #[must_use]
    pub fn authenticated_at(&self) -> Instant {
        self.authenticated_at
    }

    /// The token the request presented.
    ///
    /// ```
    /// # use ws_token_auth::{AuthenticatedUser, Token, extract::CredentialKind};
    /// let token = Token::generate();
    /// let user = AuthenticatedUser::new("alice", token.clone(), CredentialKind::Cookie, None);
    /// assert_eq!(user.token(), &token);
    /// ```
    #[must_use]
    pub fn token(&self) -> &Token {
        &self.token
    }

    /// The token's public fingerprint, safe to log.
    ///
    /// ```
    /// # use ws_token_auth::{AuthenticatedUser, Token, extract::CredentialKind};
    /// let token = Token::generate();
    /// let user = AuthenticatedUser::new("alice", token.clone(), CredentialKind::Cookie, None);
    /// assert_eq!(user.token_id(), token.id());
    /// ```
    #[must_use]
    pub fn token_id(&self) -> TokenId {
        self.token.id()
    }

    /// Where the token was found.
    ///
    /// ```
    /// # use ws_token_auth::{AuthenticatedUser, Token, extract::CredentialKind};
    /// let user = AuthenticatedUser::new("alice", Token::generate(), CredentialKind::Cookie, None);
    /// assert_eq!(user.credential_kind(), CredentialKind::Cookie);
    /// ```
    #[must_use]
    pub fn credential_kind(&self) -> CredentialKind {
        self.kind
    }
}

/// A request the layer let through without a user, in
/// [`optional`](crate::Authenticator::optional) mode.
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
    /// No valid token, in [`optional`](crate::Authenticator::optional) mode.
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
    /// the [`AuthenticatedUser`] or the [`Anonymous`] it holds, and the
    /// marker that carries the authenticator's refusals for extractors.
    pub(crate) fn insert_into(self, extensions: &mut http::Extensions, refusals: std::sync::Arc<Refusals>) {
        match &self {
            Self::User(user) => {
                extensions.insert(user.clone());
            }
            Self::Anonymous(anonymous) => {
                extensions.insert(*anonymous);
            }
        }
        extensions.insert(IdentityMarker(refusals));
        extensions.insert(self);
    }
}

/// Says that the layer ran, whatever the user type: lets extractors that do
/// not know `U` tell "authenticated" from "no layer", and refuse the way the
/// layer's authenticator does.
#[derive(Debug, Clone)]
#[cfg_attr(not(feature = "axum"), allow(dead_code))]
pub(crate) struct IdentityMarker(pub(crate) std::sync::Arc<Refusals>);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_says_who() {
        let user = Identity::User(AuthenticatedUser::new("alice", Token::generate(), CredentialKind::Cookie, None));
        assert!(!user.is_anonymous());
        assert_eq!(user.user().map(|u| u.user), Some("alice"));
        let nobody = Identity::<&str>::Anonymous(Anonymous::new(AnonymousReason::InvalidToken));
        assert!(nobody.is_anonymous());
        assert!(nobody.user().is_none());
    }
}
