//! What changed about access, below the store: the events that close
//! sockets and travel between nodes ([`AccessEvent`], re-exported by
//! [`live`](crate::live)), why a socket closes ([`CloseReason`]), and the
//! short memory of recent changes that the socket registry and the store's
//! cache both keep. Imports only the token.

mod event;
mod recent;

pub use event::{AccessEvent, ParseEventError};
pub(crate) use recent::Recent;

/// Why a watched socket must close.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseReason {
    /// The token was revoked (logout, admin revoke, deleted in the store), or
    /// its user's tokens were. 4401.
    Revoked,
    /// The token's expiry passed. 4401.
    Expired,
    /// The user lost access (locked out, deactivated). 4403.
    AccessLost,
}

impl CloseReason {
    /// The WebSocket close code: 4401 for a revoked or expired token, 4403 for
    /// lost access.
    ///
    /// ```
    /// use ws_token_auth::live::CloseReason;
    /// assert_eq!(CloseReason::Expired.code(), 4401);
    /// assert_eq!(CloseReason::AccessLost.code(), 4403);
    /// ```
    #[must_use]
    pub fn code(self) -> u16 {
        match self {
            Self::Revoked | Self::Expired => 4401,
            Self::AccessLost => 4403,
        }
    }

    /// A short reason for the close frame.
    ///
    /// ```
    /// assert_eq!(ws_token_auth::live::CloseReason::Revoked.as_str(), "token revoked");
    /// ```
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Revoked => "token revoked",
            Self::Expired => "token expired",
            Self::AccessLost => "access lost",
        }
    }
}
