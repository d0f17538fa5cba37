//! After the upgrade: [`Revocations`] closes the sockets of a token that was
//! revoked or expired, or that the store no longer accepts.
//!
//! Django Channels checks the token once, at connect; a socket then lives on
//! after logout, a password change or a deleted token. Here the upgrade handler
//! registers each socket and gets a [`Watch`]: a future that resolves with a
//! [`CloseReason`] when
//!
//! - the app calls [`Revocations::revoke_token`] (logout) or
//!   [`Revocations::revoke_user`] (deactivation, password change, "log out
//!   everywhere"),
//! - the token's expiry passes, or
//! - periodic revalidation with the store ([`Revocations::revalidate`]) finds
//!   the token no longer valid.
//!
//! The handler then closes the socket with [`CloseReason::code`] (4401 for a
//! revoked or expired token, 4403 for lost access). Dropping the `Watch`, as a
//! handler does when its socket ends, removes the registration.
//!
//! ```
//! use std::sync::Arc;
//! use ws_token_auth::live::{CloseReason, Revocations};
//! use ws_token_auth::{AuthenticatedUser, Token, extract::CredentialKind};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let revocations = Revocations::new();
//! let token = Token::generate();
//! let user = AuthenticatedUser::new("alice", token.clone(), CredentialKind::Cookie, None);
//! let watch = revocations.watch(&user, "alice");
//!
//! // Later, on logout:
//! assert_eq!(revocations.revoke_token(token.id()), 1);
//! assert_eq!(watch.await, CloseReason::Revoked);
//! assert!(revocations.is_empty());
//! # }
//! ```
//!
//! Across nodes, publish revocations so that every node's registry applies
//! them (feature `redis`: `live::redis::RevocationBus`).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use tokio::sync::oneshot;

use crate::identity::AuthenticatedUser;

#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis;
use crate::store::TokenStore;
use crate::token::{Token, TokenId};

/// The default interval between revalidations with the store.
pub const DEFAULT_REVALIDATE_EVERY: Duration = Duration::from_secs(60);

/// Why a watched socket must close.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseReason {
    /// The token was revoked (logout, admin revoke, deleted in the store). 4401.
    Revoked,
    /// The token's expiry passed. 4401.
    Expired,
    /// The user lost access (deactivated, removed from the app). 4403.
    AccessLost,
}

impl CloseReason {
    /// The WebSocket close code: 4401 for a revoked or expired token, 4403 for
    /// lost access.
    #[must_use]
    pub fn code(self) -> u16 {
        match self {
            Self::Revoked | Self::Expired => 4401,
            Self::AccessLost => 4403,
        }
    }

    /// A short reason for the close frame.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Revoked => "token revoked",
            Self::Expired => "token expired",
            Self::AccessLost => "access lost",
        }
    }
}

/// The registry of open sockets by token and by user. Cheap to clone (one
/// reference count); clones share the registry.
#[derive(Debug, Clone, Default)]
pub struct Revocations {
    inner: Arc<Mutex<Registry>>,
}

#[derive(Debug, Default)]
struct Registry {
    next_id: u64,
    entries: HashMap<u64, Entry>,
    by_token: HashMap<TokenId, HashSet<u64>>,
    by_user: HashMap<String, HashSet<u64>>,
}

#[derive(Debug)]
struct Entry {
    token: Token,
    user: String,
    notify: oneshot::Sender<CloseReason>,
}

impl Registry {
    /// Removes an entry from every index.
    fn remove(&mut self, id: u64) -> Option<Entry> {
        let entry = self.entries.remove(&id)?;
        let token_id = entry.token.id();
        if let Some(ids) = self.by_token.get_mut(&token_id) {
            ids.remove(&id);
            if ids.is_empty() {
                self.by_token.remove(&token_id);
            }
        }
        if let Some(ids) = self.by_user.get_mut(&entry.user) {
            ids.remove(&id);
            if ids.is_empty() {
                self.by_user.remove(&entry.user);
            }
        }
        Some(entry)
    }

    fn close(&mut self, ids: impl IntoIterator<Item = u64>, reason: CloseReason) -> usize {
        let mut closed = 0;
        for id in ids {
            if let Some(entry) = self.remove(id) {
                // The socket may be ending already: nobody to tell.
                let _ = entry.notify.send(reason);
                closed += 1;
            }
        }
        closed
    }
}

impl Revocations {
    /// An empty registry.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        // Every critical section leaves the maps consistent.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a socket of `user`, known to the registry as `user_key` (a
    /// user id, say: what [`revoke_user`](Self::revoke_user) is called with).
    /// The returned [`Watch`] resolves when the socket must close; drop it when
    /// the socket ends.
    pub fn watch<U>(&self, user: &AuthenticatedUser<U>, user_key: impl Into<String>) -> Watch {
        self.watch_token(user.token().clone(), user_key, user.expires_at)
    }

    /// [`watch`](Self::watch) for a token and expiry at hand.
    pub fn watch_token(&self, token: Token, user_key: impl Into<String>, expires_at: Option<SystemTime>) -> Watch {
        let (notify, receiver) = oneshot::channel();
        let user = user_key.into();
        let mut registry = self.lock();
        registry.next_id += 1;
        let id = registry.next_id;
        registry.by_token.entry(token.id()).or_default().insert(id);
        registry.by_user.entry(user.clone()).or_default().insert(id);
        registry.entries.insert(id, Entry { token, user, notify });
        drop(registry);
        let expiry = expires_at.map(|at| {
            let left = at.duration_since(SystemTime::now()).unwrap_or_default();
            Box::pin(tokio::time::sleep(left))
        });
        Watch { id, registry: Arc::downgrade(&self.inner), receiver: Some(receiver), expiry, done: None }
    }

    /// Closes every socket of the token `id` (reason [`CloseReason::Revoked`]);
    /// returns how many.
    pub fn revoke_token(&self, id: TokenId) -> usize {
        self.close_token(id, CloseReason::Revoked)
    }

    /// Closes every socket of the token `id` with `reason`; returns how many.
    pub fn close_token(&self, id: TokenId, reason: CloseReason) -> usize {
        let mut registry = self.lock();
        let ids = registry.by_token.get(&id).cloned().unwrap_or_default();
        registry.close(ids, reason)
    }

    /// Closes every socket of the user `user_key` with `reason`; returns how many.
    pub fn revoke_user(&self, user_key: &str, reason: CloseReason) -> usize {
        let mut registry = self.lock();
        let ids = registry.by_user.get(user_key).cloned().unwrap_or_default();
        registry.close(ids, reason)
    }

    /// How many sockets are registered.
    #[must_use]
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether no socket is registered.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The distinct tokens of the registered sockets.
    fn tokens(&self) -> Vec<Token> {
        let registry = self.lock();
        registry
            .by_token
            .values()
            .filter_map(|ids| ids.iter().next())
            .map(|id| registry.entries[id].token.clone())
            .collect()
    }

    /// Asks `store` about every distinct registered token once, and closes the
    /// sockets of those it no longer accepts ([`CloseReason::Revoked`]). A store
    /// error closes nothing: an outage is not a revocation. Returns how many
    /// sockets were closed.
    ///
    /// Calls are made one after another, so 10,000 sockets of 10,000 tokens
    /// cost the store 10,000 sequential lookups, not a burst.
    pub async fn revalidate_once<St: TokenStore>(&self, store: &St) -> usize {
        let mut closed = 0;
        for token in self.tokens() {
            match store.authenticate(&token).await {
                Ok(Some(found)) if !found.is_expired_at(SystemTime::now()) => {}
                Ok(_) => closed += self.revoke_token(token.id()),
                Err(error) => {
                    tracing::warn!(target: "ws_token_auth", %error, "revalidation skipped: the store failed");
                    return closed;
                }
            }
        }
        if closed > 0 {
            tracing::debug!(target: "ws_token_auth", closed, "revalidation closed sockets");
        }
        closed
    }

    /// Spawns a task that calls [`revalidate_once`](Self::revalidate_once)
    /// every `every` (default [`DEFAULT_REVALIDATE_EVERY`]), each time with up
    /// to 10 % random jitter so that nodes started together do not ask the
    /// store in step. The task ends when every clone of the registry is dropped.
    pub fn revalidate<St: TokenStore>(&self, store: Arc<St>, every: Duration) -> tokio::task::JoinHandle<()> {
        let registry = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(jittered(every)).await;
                let Some(inner) = registry.upgrade() else { return };
                let revocations = Revocations { inner };
                revocations.revalidate_once(&*store).await;
            }
        })
    }
}

/// `every` plus up to 10 % of it, at random.
fn jittered(every: Duration) -> Duration {
    let mut byte = [0u8; 1];
    let fraction = if getrandom::fill(&mut byte).is_ok() { f64::from(byte[0]) / 255.0 } else { 0.5 };
    every + every.mul_f64(0.1 * fraction)
}

/// Resolves with the reason a watched socket must close. Dropping it removes
/// the socket from the registry. Made by [`Revocations::watch`].
#[derive(Debug)]
pub struct Watch {
    id: u64,
    registry: Weak<Mutex<Registry>>,
    /// `None` once the registry is gone: nothing can revoke the socket any
    /// more (a oneshot receiver must not be polled after it completed).
    receiver: Option<oneshot::Receiver<CloseReason>>,
    expiry: Option<Pin<Box<tokio::time::Sleep>>>,
    done: Option<CloseReason>,
}

impl Watch {
    /// The reason, if the socket must close already; does not wait.
    pub fn reason(&mut self) -> Option<CloseReason> {
        if self.done.is_none() {
            self.done = self.receiver.as_mut().and_then(|receiver| receiver.try_recv().ok());
        }
        if self.done.is_none() && self.expiry.as_ref().is_some_and(|sleep| sleep.is_elapsed()) {
            self.done = Some(CloseReason::Expired);
        }
        self.done
    }
}

impl Future for Watch {
    type Output = CloseReason;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<CloseReason> {
        if let Some(reason) = self.done {
            return Poll::Ready(reason);
        }
        let reason = match self.receiver.as_mut().map(|receiver| Pin::new(receiver).poll(cx)) {
            Some(Poll::Ready(Ok(reason))) => Some(reason),
            Some(Poll::Ready(Err(_))) => {
                // The registry is gone: nothing will revoke this socket any more.
                self.receiver = None;
                None
            }
            Some(Poll::Pending) | None => None,
        };
        let reason = reason.or_else(|| {
            let expiry = self.expiry.as_mut()?;
            expiry.as_mut().poll(cx).is_ready().then_some(CloseReason::Expired)
        });
        match reason {
            Some(reason) => {
                self.done = Some(reason);
                Poll::Ready(reason)
            }
            None => Poll::Pending,
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Some(registry) = self.registry.upgrade() {
            registry.lock().unwrap_or_else(PoisonError::into_inner).remove(self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::CredentialKind;

    fn user(name: &str, expires_at: Option<SystemTime>) -> AuthenticatedUser<String> {
        AuthenticatedUser::new(name.to_owned(), Token::generate(), CredentialKind::Cookie, expires_at)
    }

    #[tokio::test]
    async fn revoke_token_closes_that_tokens_sockets_only() {
        let revocations = Revocations::new();
        let alice = user("alice", None);
        let bob = user("bob", None);
        let (mut a1, mut a2, mut b) =
            (revocations.watch(&alice, "1"), revocations.watch(&alice, "1"), revocations.watch(&bob, "2"));
        assert_eq!(revocations.len(), 3);
        assert_eq!(revocations.revoke_token(alice.token_id()), 2);
        assert_eq!((&mut a1).await, CloseReason::Revoked);
        assert_eq!((&mut a2).await, CloseReason::Revoked);
        assert_eq!(b.reason(), None);
        assert_eq!(revocations.len(), 1);
        drop(b);
        assert!(revocations.is_empty());
    }

    #[tokio::test]
    async fn revoke_user_closes_every_token_of_the_user() {
        let revocations = Revocations::new();
        let (phone, laptop, other) = (user("alice", None), user("alice", None), user("bob", None));
        let watches = [revocations.watch(&phone, "7"), revocations.watch(&laptop, "7")];
        let mut bob = revocations.watch(&other, "8");
        assert_eq!(revocations.revoke_user("7", CloseReason::AccessLost), 2);
        for watch in watches {
            assert_eq!(watch.await.code(), 4403);
        }
        assert_eq!(bob.reason(), None);
    }

    #[tokio::test]
    async fn expiry_closes_by_itself() {
        let revocations = Revocations::new();
        let soon = user("alice", Some(SystemTime::now() + Duration::from_millis(50)));
        let watch = revocations.watch(&soon, "1");
        let reason = tokio::time::timeout(Duration::from_secs(5), watch).await.unwrap();
        assert_eq!(reason, CloseReason::Expired);
        assert!(revocations.is_empty(), "a finished watch is dropped and unregistered");
    }

    #[tokio::test]
    async fn a_watch_outliving_its_registry_stays_pending_until_expiry() {
        let revocations = Revocations::new();
        let soon = user("alice", Some(SystemTime::now() + Duration::from_millis(100)));
        let mut watch = revocations.watch(&soon, "1");
        drop(revocations);
        // Polled again and again (as a `select!` loop does), it must not panic.
        for _ in 0..3 {
            assert!(tokio::time::timeout(Duration::from_millis(10), &mut watch).await.is_err());
            assert_eq!(watch.reason(), None);
        }
        assert_eq!(tokio::time::timeout(Duration::from_secs(5), watch).await, Ok(CloseReason::Expired));
    }

    #[tokio::test]
    async fn ten_thousand_sockets_leave_nothing_behind() {
        let revocations = Revocations::new();
        let users: Vec<_> = (0..100).map(|i| user(&i.to_string(), None)).collect();
        for round in 0..100 {
            let watches: Vec<_> = users.iter().map(|u| revocations.watch(u, format!("{round}"))).collect();
            assert_eq!(revocations.len(), 100);
            if round % 2 == 0 {
                revocations.revoke_user(&round.to_string(), CloseReason::Revoked);
            }
            drop(watches);
        }
        let registry = revocations.lock();
        assert_eq!((registry.entries.len(), registry.by_token.len(), registry.by_user.len()), (0, 0, 0));
    }
}
