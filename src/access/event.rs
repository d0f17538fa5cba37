//! [`AccessEvent`]: one change of who may keep a socket open, as every node
//! applies it and as it travels between nodes.

use std::fmt;
use std::str::FromStr;

use super::CloseReason;
use crate::token::TokenId;

/// A change to apply on every node: to its cache and to its open sockets.
///
/// Made by [`Lifecycle`](crate::Lifecycle); its text form (`Display` /
/// `FromStr`) is what travels between nodes, and holds no secret: a token is
/// named by its [`TokenId`], a user by the `Display` of its
/// [`TokenUser::Id`](crate::TokenUser::Id).
///
/// ```
/// use ws_token_auth::live::{AccessEvent, CloseReason};
///
/// let event = AccessEvent::user_locked_out("42");
/// assert_eq!(event.to_string(), "user access_lost 42");
/// assert_eq!("user access_lost 42".parse::<AccessEvent>().unwrap(), event);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AccessEvent {
    /// A token stops authenticating: its sockets close with `reason`.
    TokenRevoked {
        /// The token's fingerprint.
        id: TokenId,
        /// Why: [`CloseReason::Revoked`] or [`CloseReason::Expired`].
        reason: CloseReason,
    },
    /// Every token of a user stops authenticating: their sockets close with
    /// `reason` ([`CloseReason::Revoked`] for "log out everywhere",
    /// [`CloseReason::AccessLost`] for a lock-out).
    UserRevoked {
        /// The user's id, as text.
        user: String,
        /// Why.
        reason: CloseReason,
    },
    /// A locked-out user is let back in: refusals cached for their tokens
    /// are dropped. Closes nothing.
    UserRestored {
        /// The user's id, as text.
        user: String,
    },
    /// Something about a user changed that only the store can judge (a
    /// password change ends a Django user's sessions and not their DRF
    /// token): answers cached for their tokens are dropped, and the tokens
    /// of their open sockets are asked about again; those the store refuses
    /// close (4401, or 4403 for a locked-out user).
    UserChanged {
        /// The user's id, as text.
        user: String,
    },
}

impl AccessEvent {
    /// A token revoked (logout): its sockets close with 4401.
    ///
    /// ```
    /// # use ws_token_auth::{Token, live::AccessEvent};
    /// let event = AccessEvent::token_revoked(Token::generate().id());
    /// # let _ = event;
    /// ```
    #[must_use]
    pub fn token_revoked(id: TokenId) -> Self {
        Self::TokenRevoked { id, reason: CloseReason::Revoked }
    }

    /// Every token of a user revoked ("log out everywhere"): 4401.
    ///
    /// ```
    /// # use ws_token_auth::live::AccessEvent;
    /// assert_eq!(AccessEvent::user_revoked("7").to_string(), "user revoked 7");
    /// ```
    #[must_use]
    pub fn user_revoked(user: impl Into<String>) -> Self {
        Self::UserRevoked { user: user.into(), reason: CloseReason::Revoked }
    }

    /// A user locked out (deactivated): 4403.
    ///
    /// ```
    /// # use ws_token_auth::live::AccessEvent;
    /// assert_eq!(AccessEvent::user_locked_out("7").to_string(), "user access_lost 7");
    /// ```
    #[must_use]
    pub fn user_locked_out(user: impl Into<String>) -> Self {
        Self::UserRevoked { user: user.into(), reason: CloseReason::AccessLost }
    }

    /// A user let back in.
    ///
    /// ```
    /// # use ws_token_auth::live::AccessEvent;
    /// assert_eq!(AccessEvent::user_restored("7").to_string(), "restore 7");
    /// ```
    #[must_use]
    pub fn user_restored(user: impl Into<String>) -> Self {
        Self::UserRestored { user: user.into() }
    }

    /// A user whose tokens the store must judge again (a password change).
    ///
    /// ```
    /// # use ws_token_auth::live::AccessEvent;
    /// assert_eq!(AccessEvent::user_changed("7").to_string(), "revalidate 7");
    /// ```
    #[must_use]
    pub fn user_changed(user: impl Into<String>) -> Self {
        Self::UserChanged { user: user.into() }
    }
}

fn reason_name(reason: CloseReason) -> &'static str {
    match reason {
        CloseReason::Revoked => "revoked",
        CloseReason::Expired => "expired",
        CloseReason::AccessLost => "access_lost",
    }
}

fn reason_from(name: &str) -> Option<CloseReason> {
    match name {
        "revoked" => Some(CloseReason::Revoked),
        "expired" => Some(CloseReason::Expired),
        "access_lost" => Some(CloseReason::AccessLost),
        _ => None,
    }
}

impl fmt::Display for AccessEvent {
    /// `token <reason> <id>`, `user <reason> <user>`, `restore <user>` or
    /// `revalidate <user>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TokenRevoked { id, reason } => write!(f, "token {} {id}", reason_name(*reason)),
            Self::UserRevoked { user, reason } => write!(f, "user {} {user}", reason_name(*reason)),
            Self::UserRestored { user } => write!(f, "restore {user}"),
            Self::UserChanged { user } => write!(f, "revalidate {user}"),
        }
    }
}

/// The text is not an [`AccessEvent`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not an access event (`token REASON ID`, `user REASON USER`, `restore USER` or `revalidate USER`)")]
pub struct ParseEventError;

impl FromStr for AccessEvent {
    type Err = ParseEventError;

    fn from_str(text: &str) -> Result<Self, ParseEventError> {
        let (kind, rest) = text.split_once(' ').ok_or(ParseEventError)?;
        let reasoned = || {
            let (reason, subject) = rest.split_once(' ')?;
            Some((reason_from(reason)?, subject))
        };
        match kind {
            "token" => {
                let (reason, id) = reasoned().ok_or(ParseEventError)?;
                Ok(Self::TokenRevoked { id: id.parse().map_err(|_| ParseEventError)?, reason })
            }
            "user" => {
                let (reason, user) = reasoned().ok_or(ParseEventError)?;
                if user.is_empty() {
                    return Err(ParseEventError);
                }
                Ok(Self::UserRevoked { user: user.to_owned(), reason })
            }
            "restore" if !rest.is_empty() => Ok(Self::UserRestored { user: rest.to_owned() }),
            "revalidate" if !rest.is_empty() => Ok(Self::UserChanged { user: rest.to_owned() }),
            _ => Err(ParseEventError),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_with_their_reasons_and_junk_is_refused() {
        let id: TokenId = "0123456789abcdef".parse().unwrap();
        for event in [
            AccessEvent::token_revoked(id),
            AccessEvent::TokenRevoked { id, reason: CloseReason::Expired },
            AccessEvent::user_revoked("42"),
            AccessEvent::user_locked_out("a user with spaces"),
            AccessEvent::user_restored("42"),
            AccessEvent::user_changed("6f1c1a52-3b7e-4f7e-9a59-0d6a3c2b9e11"),
        ] {
            assert_eq!(event.to_string().parse::<AccessEvent>(), Ok(event));
        }
        for junk in [
            "",
            "token",
            "token revoked xyz",
            "token 4401 0123456789abcdef",
            "user revoked",
            "user revoked ",
            "user closed 7",
            "restore",
            "restore ",
            "revalidate ",
            "hello world",
        ] {
            assert_eq!(junk.parse::<AccessEvent>(), Err(ParseEventError), "{junk:?}");
        }
    }
}
