//! After the upgrade: [`Revocations`] closes the sockets of a token that was
//! revoked or expired, or of a user who was revoked or locked out.
//!
//! Django Channels checks the token once, at connect; a socket then lives on
//! after logout, a password change or a deleted token. Here the upgrade handler
//! registers each socket and gets a [`Watch`]: a future that resolves with a
//! [`CloseReason`] when
//!
//! - the token is revoked or its user revoked or locked out, through the app's
//!   [`Lifecycle`](crate::Lifecycle), on this node or another,
//! - the token's expiry passes, or
//! - revalidation with the store ([`Lifecycle::revalidate_every`](crate::Lifecycle::revalidate_every))
//!   finds the token no longer valid.
//!
//! The handler then closes the socket with [`CloseReason::code`] (4401 for a
//! revoked or expired token, 4403 for lost access). Dropping the `Watch`, as a
//! handler does when its socket ends, removes the registration.
//!
//! A revocation wins against every handshake in flight: the registry
//! remembers what it closed for a while ([`Revocations::remember_for`],
//! default 2 minutes), and a socket that registers afterwards is closed at
//! once if its token was revoked, or if its user was revoked or locked out
//! after its handshake began to authenticate.
//!
//! ```
//! use std::sync::Arc;
//! use ws_token_auth::live::CloseReason;
//! use ws_token_auth::{AuthenticatedUser, Lifecycle, MemoryTokenStore, extract::CredentialKind};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), ws_token_auth::StoreError> {
//! let lifecycle = Lifecycle::new(Arc::new(MemoryTokenStore::new()));
//! let token = lifecycle.issue(&"alice", None).await?;
//! let user = AuthenticatedUser::new("alice", token.clone(), CredentialKind::Cookie, None);
//! let watch = lifecycle.watch(&user);
//!
//! // Later, on logout (on this node or another):
//! lifecycle.revoke(&token).await?;
//! assert_eq!(watch.await, CloseReason::Revoked);
//! assert!(lifecycle.revocations().is_empty());
//!
//! // A socket of that token that registers only now is closed at once.
//! assert_eq!(lifecycle.watch(&user).await, CloseReason::Revoked);
//! # Ok(()) }
//! ```

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::oneshot;

use crate::authenticator::Authenticator;
use crate::extract::CredentialKind;
use crate::identity::AuthenticatedUser;
use crate::rejection::Rejection;
use crate::store::{TokenStore, TokenUser};
use crate::token::{Token, TokenId};

mod bus;
#[cfg(any(feature = "redis", feature = "postgres"))]
mod listening;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod postgres;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis;

pub use bus::{Bus, BusError, Listener};

use crate::access::Recent;
pub use crate::access::{AccessEvent, CloseReason, ParseEventError};

/// The default interval between revalidations with the store.
pub const DEFAULT_REVALIDATE_EVERY: Duration = Duration::from_secs(60);

/// How long the registry remembers a revocation by default: longer than any
/// handshake takes between authentication and registration.
pub const DEFAULT_REMEMBER_FOR: Duration = Duration::from_secs(120);

/// The registry of open sockets by token and by user. Cheap to clone (one
/// reference count); clones share the registry.
///
/// ```
/// use std::time::Duration;
/// use ws_token_auth::live::Revocations;
///
/// let revocations = Revocations::new().remember_for(Duration::from_secs(300));
/// assert!(revocations.is_empty());
/// ```
#[derive(Debug, Clone, Default)]
pub struct Revocations {
    pub(crate) inner: Arc<Mutex<Registry>>,
}

#[derive(Debug, Default)]
pub(crate) struct Registry {
    next_id: u64,
    entries: HashMap<u64, Entry>,
    by_token: HashMap<TokenId, Ids>,
    by_user: HashMap<Arc<str>, Ids>,
    /// Later expiries learned for the tokens of open sockets (a sliding
    /// expiry extended by use), which their watches follow.
    extended: HashMap<TokenId, SystemTime>,
    memory: Memory,
}

#[derive(Debug)]
struct Entry {
    token: Token,
    /// Shared with the `by_user` key: one allocation per socket, not two.
    user: Arc<str>,
    notify: oneshot::Sender<CloseReason>,
}

/// What the registry closed lately, so that a socket registering after the
/// fact is closed too; and the registry's settings.
#[derive(Debug, Default)]
struct Memory {
    /// `None`: [`DEFAULT_REMEMBER_FOR`].
    remember_for: Option<Duration>,
    /// How long before a token's expiry its sockets hear of it; `None`: never.
    warn_before: Option<Duration>,
    closed: Recent<CloseReason>,
}

impl Memory {
    fn window(&self) -> Duration {
        self.remember_for.unwrap_or(DEFAULT_REMEMBER_FOR)
    }

    fn token(&mut self, id: TokenId, reason: CloseReason) {
        let window = self.window();
        self.closed.token(id, reason, window);
    }

    fn user(&mut self, user: &str, reason: CloseReason) {
        let window = self.window();
        self.closed.user(user, reason, window);
    }

    /// Why a socket of this token and user, authenticated from
    /// `authenticated_at` on, must close already, if it must.
    fn verdict(&self, id: TokenId, user: &str, authenticated_at: Instant) -> Option<CloseReason> {
        let window = self.window();
        let now = Instant::now();
        let fresh = |at: Instant| now.saturating_duration_since(at) <= window;
        // A revoked token never comes back; a user may (logged in again, let
        // back in): only a user revocation learned after the handshake began
        // to authenticate closes the socket.
        if let Some((_, reason)) = self.closed.of_token(&id).filter(|(at, _)| fresh(*at)) {
            return Some(*reason);
        }
        self.closed.of_user(user).filter(|(at, _)| fresh(*at) && *at >= authenticated_at).map(|(_, reason)| *reason)
    }
}

/// The sockets of one token or one user: most often one, so one is kept
/// without a set (a set per socket would cost every open socket an
/// allocation).
#[derive(Debug)]
enum Ids {
    One(u64),
    Many(HashSet<u64>),
}

impl Ids {
    fn insert(&mut self, id: u64) {
        match self {
            Self::One(one) if *one == id => {}
            Self::One(one) => *self = Self::Many(HashSet::from([*one, id])),
            Self::Many(ids) => {
                ids.insert(id);
            }
        }
    }

    /// Removes `id`; returns whether no socket is left.
    fn remove(&mut self, id: u64) -> bool {
        match self {
            Self::One(one) => *one == id,
            Self::Many(ids) => {
                ids.remove(&id);
                ids.is_empty()
            }
        }
    }

    fn first(&self) -> Option<u64> {
        match self {
            Self::One(one) => Some(*one),
            Self::Many(ids) => ids.iter().next().copied(),
        }
    }

    fn to_vec(&self) -> Vec<u64> {
        match self {
            Self::One(one) => vec![*one],
            Self::Many(ids) => ids.iter().copied().collect(),
        }
    }
}

/// Adds socket `id` to `key`'s sockets in `index`.
fn index<K: Eq + std::hash::Hash>(index: &mut HashMap<K, Ids>, key: K, id: u64) {
    index.entry(key).and_modify(|ids| ids.insert(id)).or_insert(Ids::One(id));
}

impl Registry {
    /// Removes an entry from every index.
    fn remove(&mut self, id: u64) -> Option<Entry> {
        let entry = self.entries.remove(&id)?;
        let token_id = entry.token.id();
        self.unindex_token(token_id, id);
        if self.by_user.get_mut(&entry.user).is_some_and(|ids| ids.remove(id)) {
            self.by_user.remove(&entry.user);
        }
        Some(entry)
    }

    /// Takes socket `id` out of its token's set, and forgets the token when
    /// no socket lives by it any more.
    fn unindex_token(&mut self, token_id: TokenId, id: u64) {
        if self.by_token.get_mut(&token_id).is_some_and(|ids| ids.remove(id)) {
            self.by_token.remove(&token_id);
            self.extended.remove(&token_id);
        }
    }

    /// The later expiry learned for socket `id`'s token, if one is later than `than`.
    fn extension(&self, id: u64, than: Option<SystemTime>) -> Option<SystemTime> {
        let entry = self.entries.get(&id)?;
        let at = *self.extended.get(&entry.token.id())?;
        than.is_some_and(|than| at > than).then_some(at)
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
    ///
    /// ```
    /// assert!(ws_token_auth::live::Revocations::new().is_empty());
    /// ```
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets how long a revocation is remembered for sockets that register
    /// after it (default [`DEFAULT_REMEMBER_FOR`], 2 minutes). Make it longer
    /// than the longest time between a handshake's authentication and its
    /// [`watch`](Self::watch), store timeout included.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let revocations = ws_token_auth::live::Revocations::new().remember_for(Duration::from_secs(30));
    /// # let _ = revocations;
    /// ```
    #[must_use]
    pub fn remember_for(self, window: Duration) -> Self {
        self.lock().memory.remember_for = Some(window);
        self
    }

    /// Sets how long before a token's expiry its sockets' [`Watch::signal`]
    /// says [`Signal::ExpiringSoon`] (once per token; at once if less time is
    /// left), so that the app can warn its client and take a fresh token
    /// ([`Watch::refresh`]). Without it, no warning: the socket closes at expiry.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let revocations = ws_token_auth::live::Revocations::new().warn_before(Duration::from_secs(60));
    /// # let _ = revocations;
    /// ```
    #[must_use]
    pub fn warn_before(self, lead: Duration) -> Self {
        self.lock().memory.warn_before = Some(lead);
        self
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        // Every critical section leaves the maps consistent.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a socket of `user`. The returned [`Watch`] resolves when the
    /// socket must close (at once if its token, or its user since the
    /// handshake began, was revoked already); drop it when the socket ends.
    ///
    /// ```
    /// # use ws_token_auth::{AuthenticatedUser, Token, extract::CredentialKind, live::Revocations};
    /// let revocations = Revocations::new();
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # let _guard = rt.enter();
    /// let user = AuthenticatedUser::new("alice", Token::generate(), CredentialKind::Cookie, None);
    /// let watch = revocations.watch(&user);
    /// assert_eq!(revocations.len(), 1);
    /// drop(watch);
    /// assert!(revocations.is_empty());
    /// ```
    pub fn watch<U: TokenUser>(&self, user: &AuthenticatedUser<U>) -> Watch {
        let token = user.token().clone();
        let key: Arc<str> = user.user.id().to_string().into();
        let mut registry = self.lock();
        let timers = Timers::new(user.expires_at, registry.memory.warn_before);
        if let Some(reason) = registry.memory.verdict(token.id(), &key, user.authenticated_at()) {
            drop(registry);
            tracing::debug!(
                target: "ws_token_auth",
                token_id = %token.id(),
                reason = reason.as_str(),
                "socket closed at registration: revoked while its handshake was under way",
            );
            let kind = user.credential_kind();
            return Watch { id: 0, registry: Weak::new(), receiver: None, timers, done: Some(reason), kind };
        }
        let (notify, receiver) = oneshot::channel();
        registry.next_id += 1;
        let id = registry.next_id;
        index(&mut registry.by_token, token.id(), id);
        index(&mut registry.by_user, Arc::clone(&key), id);
        registry.entries.insert(id, Entry { token, user: key, notify });
        drop(registry);
        let kind = user.credential_kind();
        Watch { id, registry: Arc::downgrade(&self.inner), receiver: Some(receiver), timers, done: None, kind }
    }

    /// Closes the sockets an event concerns, and remembers it for sockets
    /// that register later; returns how many closed. A restored user closes
    /// nothing. Apps go through the lifecycle ([`Lifecycle::revoke`](crate::Lifecycle::revoke)
    /// and its kin, or [`Lifecycle::heard`](crate::Lifecycle::heard) for a
    /// change heard from another node).
    pub(crate) fn apply(&self, event: &AccessEvent) -> usize {
        let mut registry = self.lock();
        match event {
            AccessEvent::TokenRevoked { id, reason } => {
                registry.memory.token(*id, *reason);
                let ids = registry.by_token.get(id).map(Ids::to_vec).unwrap_or_default();
                registry.close(ids, *reason)
            }
            AccessEvent::UserRevoked { user, reason } => {
                registry.memory.user(user, *reason);
                let ids = registry.by_user.get(user.as_str()).map(Ids::to_vec).unwrap_or_default();
                registry.close(ids, *reason)
            }
            AccessEvent::UserRestored { .. } | AccessEvent::UserChanged { .. } => 0,
        }
    }

    /// Tells the sockets of token `id` that it now expires at `expires_at`
    /// (a sliding expiry extended it): they close at the later expiry, and
    /// their warning comes before it. An earlier expiry changes nothing.
    /// [`Lifecycle::revalidate_once`](crate::Lifecycle::revalidate_once)
    /// calls it with what the store answers.
    pub(crate) fn extend(&self, id: TokenId, expires_at: SystemTime) {
        let mut registry = self.lock();
        if registry.by_token.contains_key(&id) {
            let known = registry.extended.entry(id).or_insert(expires_at);
            *known = (*known).max(expires_at);
        }
    }

    /// How many sockets are registered.
    ///
    /// ```
    /// assert_eq!(ws_token_auth::live::Revocations::new().len(), 0);
    /// ```
    #[must_use]
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether no socket is registered.
    ///
    /// ```
    /// assert!(ws_token_auth::live::Revocations::new().is_empty());
    /// ```
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The distinct tokens of the registered sockets.
    pub(crate) fn tokens(&self) -> Vec<Token> {
        let registry = self.lock();
        registry.by_token.values().filter_map(Ids::first).map(|id| registry.entries[&id].token.clone()).collect()
    }

    /// The distinct tokens of `user`'s open sockets.
    pub(crate) fn tokens_of(&self, user: &str) -> Vec<Token> {
        let registry = self.lock();
        let mut tokens: Vec<Token> = registry
            .by_user
            .get(user)
            .map(Ids::to_vec)
            .unwrap_or_default()
            .into_iter()
            .map(|id| registry.entries[&id].token.clone())
            .collect();
        tokens.sort_by_key(Token::id);
        tokens.dedup_by_key(|token| token.id());
        tokens
    }
}

/// `every` plus up to 10 % of it, at random.
pub(crate) fn jittered(every: Duration) -> Duration {
    let mut byte = [0u8; 1];
    let fraction = if getrandom::fill(&mut byte).is_ok() { f64::from(byte[0]) / 255.0 } else { 0.5 };
    every + every.mul_f64(0.1 * fraction)
}

/// What a [`Watch`] has to say: the token expires soon, or the socket must close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Signal {
    /// The token expires in `expires_in` (set with [`Revocations::warn_before`]):
    /// a client may hand over a fresh one ([`Watch::refresh`]). Once per token.
    ExpiringSoon {
        /// Time left until the token's expiry, at the moment of the signal.
        expires_in: Duration,
    },
    /// The socket must close, for this reason.
    Close(CloseReason),
}

/// The expiry of the token a socket lives by, and the warning before it.
#[derive(Debug)]
struct Timers {
    expires_at: Option<SystemTime>,
    expiry: Option<Pin<Box<tokio::time::Sleep>>>,
    /// `None` once given (or when no warning is wanted).
    warning: Option<Warning>,
}

#[derive(Debug)]
enum Warning {
    /// Less time is left than the lead: due at the first poll (a zero-length
    /// sleep would only be ready after the timer's next turn).
    Now,
    At(Pin<Box<tokio::time::Sleep>>),
}

impl Timers {
    fn new(expires_at: Option<SystemTime>, warn_before: Option<Duration>) -> Self {
        let left = expires_at.map(|at| at.duration_since(SystemTime::now()).unwrap_or_default());
        Self {
            expires_at,
            expiry: left.map(|left| Box::pin(tokio::time::sleep(left))),
            warning: left.zip(warn_before).map(|(left, lead)| match left.checked_sub(lead) {
                Some(wait) if !wait.is_zero() => Warning::At(Box::pin(tokio::time::sleep(wait))),
                _ => Warning::Now,
            }),
        }
    }

    fn expires_in(&self) -> Duration {
        self.expires_at.and_then(|at| at.duration_since(SystemTime::now()).ok()).unwrap_or_default()
    }
}

/// Resolves with the reason a watched socket must close. Dropping it removes
/// the socket from the registry. Made by [`Revocations::watch`].
///
/// As a future it says only why the socket must close; [`signal`](Self::signal)
/// also says when its token expires soon, and [`refresh`](Self::refresh) moves
/// the socket to a refreshed token.
#[derive(Debug)]
pub struct Watch {
    id: u64,
    registry: Weak<Mutex<Registry>>,
    /// `None` once the registry is gone: nothing can revoke the socket any
    /// more (a oneshot receiver must not be polled after it completed).
    receiver: Option<oneshot::Receiver<CloseReason>>,
    timers: Timers,
    done: Option<CloseReason>,
    /// How the socket's client presented its credential: what a refreshed
    /// identity says too.
    kind: CredentialKind,
}

/// Why [`Watch::refresh`] did not move a socket to a fresh token.
///
/// ```
/// use ws_token_auth::Rejection;
/// use ws_token_auth::live::{RebindError, RefreshError};
///
/// let error = RefreshError::from(RebindError::OtherUser);
/// assert_eq!(error.to_string(), "the socket cannot move to this token");
/// assert!(matches!(RefreshError::from(Rejection::InvalidToken), RefreshError::Rejected(Rejection::InvalidToken)));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RefreshError {
    /// The token was refused as a handshake's would be: malformed (400),
    /// unknown, revoked or expired (401), or the store failed (503).
    #[error("the token was refused")]
    Rejected(#[from] Rejection),
    /// The token is good but not for this socket: another user's, revoked
    /// meanwhile, or the socket is closing.
    #[error("the socket cannot move to this token")]
    NotRebound(#[from] RebindError),
}

/// Why a socket cannot move to a token ([`RefreshError::NotRebound`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RebindError {
    /// The new token belongs to another user.
    #[error("the token belongs to another user")]
    OtherUser,
    /// The new token was revoked (or its user since it was authenticated).
    #[error("the token was revoked")]
    Revoked,
    /// The socket must close already, or its registry is gone.
    #[error("the socket is closing")]
    Closed,
}

impl Watch {
    /// The reason, if the socket must close already; does not wait.
    ///
    /// ```
    /// # use ws_token_auth::{AuthenticatedUser, Token, extract::CredentialKind, live::Revocations};
    /// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # let _guard = rt.enter();
    /// let revocations = Revocations::new();
    /// let mut watch = revocations.watch(&AuthenticatedUser::new("alice", Token::generate(), CredentialKind::Cookie, None));
    /// assert_eq!(watch.reason(), None);
    /// ```
    pub fn reason(&mut self) -> Option<CloseReason> {
        if self.done.is_none() {
            self.done = self.receiver.as_mut().and_then(|receiver| receiver.try_recv().ok());
        }
        if self.done.is_none()
            && self.timers.expiry.as_ref().is_some_and(|sleep| sleep.is_elapsed())
            && !self.follow_extension()
        {
            self.done = Some(CloseReason::Expired);
        }
        self.done
    }

    /// Moves the timers to a later expiry of the socket's token, if the
    /// registry learned one; returns whether it did.
    fn follow_extension(&mut self) -> bool {
        let Some(registry) = self.registry.upgrade() else { return false };
        let registry = registry.lock().unwrap_or_else(PoisonError::into_inner);
        match registry.extension(self.id, self.timers.expires_at) {
            Some(at) => {
                self.timers = Timers::new(Some(at), registry.memory.warn_before);
                true
            }
            None => false,
        }
    }

    /// The next signal: [`Signal::ExpiringSoon`] once per token (with
    /// [`Revocations::warn_before`]), then [`Signal::Close`]. Cancel safe: use
    /// it in a `select!` loop.
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use ws_token_auth::{AuthenticatedUser, Token, extract::CredentialKind};
    /// use ws_token_auth::live::{CloseReason, Revocations, Signal};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let revocations = Revocations::new().warn_before(Duration::from_secs(60));
    /// let soon = SystemTime::now() + Duration::from_millis(100);
    /// let user = AuthenticatedUser::new("alice", Token::generate(), CredentialKind::Cookie, Some(soon));
    /// let mut watch = revocations.watch(&user);
    /// assert!(matches!(watch.signal().await, Signal::ExpiringSoon { .. })); // at once: less than 60 s left
    /// assert_eq!(watch.signal().await, Signal::Close(CloseReason::Expired));
    /// # }
    /// ```
    pub async fn signal(&mut self) -> Signal {
        std::future::poll_fn(|cx| self.poll_signal(cx)).await
    }

    fn poll_signal(&mut self, cx: &mut Context<'_>) -> Poll<Signal> {
        if let Poll::Ready(reason) = Pin::new(&mut *self).poll(cx) {
            return Poll::Ready(Signal::Close(reason));
        }
        loop {
            let due = match self.timers.warning.as_mut() {
                Some(Warning::Now) => true,
                Some(Warning::At(sleep)) => sleep.as_mut().poll(cx).is_ready(),
                None => false,
            };
            if !due {
                return Poll::Pending;
            }
            // An extension learned meanwhile re-arms the warning for the later expiry.
            if !self.follow_extension() {
                self.timers.warning = None;
                return Poll::Ready(Signal::ExpiringSoon { expires_in: self.timers.expires_in() });
            }
            if let Poll::Ready(reason) = Pin::new(&mut *self).poll(cx) {
                return Poll::Ready(Signal::Close(reason));
            }
        }
    }

    /// Moves the socket to a fresh token its client handed over in-band
    /// (an expiry warning answered, say), in one call: `presented` is judged
    /// by `auth` as a handshake's token would be (the same rules and store
    /// timeout, the store's source of truth asked past any cache), and, if it
    /// belongs to the socket's user, the socket lives by it from now on: the
    /// old token's revocation no longer closes it, the new one's does, and the
    /// expiry (and the warning before it) are the new token's. Returns the
    /// new identity (with the socket's credential kind). The same token
    /// again changes nothing.
    ///
    /// # Errors
    /// [`RefreshError`]; the socket then still lives by its old token.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use ws_token_auth::{AuthenticatedUser, Lifecycle, MemoryTokenStore, Rejection, extract::CredentialKind};
    /// use ws_token_auth::live::{CloseReason, RebindError, RefreshError};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let lifecycle = Lifecycle::new(Arc::new(MemoryTokenStore::new()));
    /// let auth = lifecycle.authenticator();
    /// let (old, fresh) = (lifecycle.issue(&"alice", None).await?, lifecycle.issue(&"alice", None).await?);
    /// let bobs = lifecycle.issue(&"bob", None).await?;
    /// let mut watch = lifecycle.watch(&AuthenticatedUser::new("alice", old.clone(), CredentialKind::Cookie, None));
    ///
    /// let moved = watch.refresh(&auth, fresh.expose_secret()).await?;
    /// assert_eq!((moved.user, moved.token_id()), ("alice", fresh.id()));
    /// assert!(matches!(watch.refresh(&auth, bobs.expose_secret()).await, Err(RefreshError::NotRebound(RebindError::OtherUser))));
    /// assert!(matches!(watch.refresh(&auth, "not a token").await, Err(RefreshError::Rejected(Rejection::Malformed(_)))));
    ///
    /// lifecycle.revoke(&old).await?; // no longer this socket's token
    /// lifecycle.revoke(&fresh).await?;
    /// assert_eq!(watch.await, CloseReason::Revoked);
    /// # Ok(()) }
    /// ```
    pub async fn refresh<St: TokenStore>(
        &mut self,
        auth: &Authenticator<St>,
        presented: &str,
    ) -> Result<AuthenticatedUser<St::User>, RefreshError> {
        let fresh = auth.check_token(presented, self.kind).await?;
        self.rebind(&fresh)?;
        Ok(fresh)
    }

    /// Moves the socket to `user`'s token; what [`refresh`](Self::refresh)
    /// does once the token is judged. Only for the same user.
    pub(crate) fn rebind<U: TokenUser>(&mut self, user: &AuthenticatedUser<U>) -> Result<(), RebindError> {
        if self.reason().is_some() {
            return Err(RebindError::Closed);
        }
        let registry = self.registry.upgrade().ok_or(RebindError::Closed)?;
        let mut registry = registry.lock().unwrap_or_else(PoisonError::into_inner);
        let registry = &mut *registry;
        let entry = registry.entries.get_mut(&self.id).ok_or(RebindError::Closed)?;
        if *entry.user != *user.user.id().to_string() {
            return Err(RebindError::OtherUser);
        }
        let token = user.token().clone();
        if registry.memory.verdict(token.id(), &entry.user, user.authenticated_at()).is_some() {
            return Err(RebindError::Revoked);
        }
        let (old, new) = (entry.token.id(), token.id());
        entry.token = token;
        if old != new {
            registry.unindex_token(old, self.id);
            index(&mut registry.by_token, new, self.id);
        }
        self.timers = Timers::new(user.expires_at, registry.memory.warn_before);
        Ok(())
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
            loop {
                let expiry = self.timers.expiry.as_mut()?;
                if expiry.as_mut().poll(cx).is_pending() {
                    return None;
                }
                if !self.follow_extension() {
                    return Some(CloseReason::Expired);
                }
            }
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
    async fn a_revoked_token_closes_that_tokens_sockets_only() {
        let revocations = Revocations::new();
        let alice = user("alice", None);
        let bob = user("bob", None);
        let (mut a1, mut a2, mut b) = (revocations.watch(&alice), revocations.watch(&alice), revocations.watch(&bob));
        assert_eq!(revocations.len(), 3);
        assert_eq!(revocations.apply(&AccessEvent::token_revoked(alice.token_id())), 2);
        assert_eq!((&mut a1).await, CloseReason::Revoked);
        assert_eq!((&mut a2).await, CloseReason::Revoked);
        assert_eq!(b.reason(), None);
        assert_eq!(revocations.len(), 1);
        drop(b);
        assert!(revocations.is_empty());
    }

    #[tokio::test]
    async fn a_locked_out_user_loses_every_socket_with_4403() {
        let revocations = Revocations::new();
        let (phone, laptop, other) = (user("alice", None), user("alice", None), user("bob", None));
        let watches = [revocations.watch(&phone), revocations.watch(&laptop)];
        let mut bob = revocations.watch(&other);
        assert_eq!(revocations.apply(&AccessEvent::user_locked_out("alice")), 2);
        for watch in watches {
            assert_eq!(watch.await.code(), 4403);
        }
        assert_eq!(bob.reason(), None);
    }

    #[tokio::test]
    async fn a_socket_registering_after_its_revocation_closes_at_once() {
        let revocations = Revocations::new();
        let alice = user("alice", None);
        revocations.apply(&AccessEvent::token_revoked(alice.token_id()));
        let mut late = revocations.watch(&alice);
        assert_eq!(late.reason(), Some(CloseReason::Revoked));
        assert!(revocations.is_empty(), "a socket closed at registration is not registered");

        // The user was revoked after this handshake began: closed, with the reason kept.
        let bob = user("bob", None);
        revocations.apply(&AccessEvent::user_locked_out("bob"));
        assert_eq!(revocations.watch(&bob).await, CloseReason::AccessLost);
        // A handshake that began after the user revocation is someone let back in.
        let bob_again = user("bob", None);
        let mut fresh = revocations.watch(&bob_again);
        assert_eq!(fresh.reason(), None);
    }

    #[tokio::test]
    async fn revocations_are_forgotten_after_the_window() {
        let revocations = Revocations::new().remember_for(Duration::from_millis(50));
        let alice = user("alice", None);
        revocations.apply(&AccessEvent::token_revoked(alice.token_id()));
        tokio::time::sleep(Duration::from_millis(80)).await;
        let mut watch = revocations.watch(&alice);
        assert_eq!(watch.reason(), None);
        // Forgotten entries are dropped as new ones come.
        revocations.apply(&AccessEvent::token_revoked(Token::generate().id()));
        assert_eq!(revocations.lock().memory.closed.len(), 1);
    }

    #[tokio::test]
    async fn the_warning_comes_once_at_its_lead_time_then_the_close() {
        let revocations = Revocations::new().warn_before(Duration::from_millis(300));
        let alice = user("alice", Some(SystemTime::now() + Duration::from_millis(500)));
        let mut watch = revocations.watch(&alice);
        let started = std::time::Instant::now();
        let Signal::ExpiringSoon { expires_in } = watch.signal().await else { panic!("no warning first") };
        assert!(started.elapsed() >= Duration::from_millis(150), "warned too early: {:?}", started.elapsed());
        assert!(expires_in <= Duration::from_millis(300) && expires_in > Duration::ZERO, "{expires_in:?}");
        assert_eq!(watch.signal().await, Signal::Close(CloseReason::Expired), "once, then the close");

        // Without warn_before, no warning at all.
        let quiet = Revocations::new();
        let mut watch = quiet.watch(&user("bob", Some(SystemTime::now() + Duration::from_millis(50))));
        assert_eq!(watch.signal().await, Signal::Close(CloseReason::Expired));
    }

    #[tokio::test]
    async fn with_less_time_left_than_the_lead_the_warning_is_due_at_the_first_poll() {
        let revocations = Revocations::new().warn_before(Duration::from_secs(60));
        let mut watch = revocations.watch(&user("alice", Some(SystemTime::now() + Duration::from_secs(5))));
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let Poll::Ready(Signal::ExpiringSoon { expires_in }) = watch.poll_signal(&mut cx) else {
            panic!("the warning was not due at once");
        };
        assert!(expires_in > Duration::from_secs(4) && expires_in <= Duration::from_secs(5), "{expires_in:?}");
        assert!(watch.poll_signal(&mut cx).is_pending(), "once");
    }

    #[tokio::test]
    async fn rebind_moves_the_socket_to_the_new_tokens_revocation_expiry_and_warning() {
        let revocations = Revocations::new().warn_before(Duration::from_millis(200));
        let old = user("alice", Some(SystemTime::now() + Duration::from_millis(250)));
        let mut watch = revocations.watch(&old);
        assert!(matches!(watch.signal().await, Signal::ExpiringSoon { .. }));
        let fresh = user("alice", Some(SystemTime::now() + Duration::from_millis(900)));
        watch.rebind(&fresh).unwrap();
        // The old expiry passes: nothing. The warning is re-armed for the new one.
        let started = std::time::Instant::now();
        assert!(matches!(watch.signal().await, Signal::ExpiringSoon { .. }));
        assert!(started.elapsed() >= Duration::from_millis(500), "the old expiry still counted");
        // The old token's revocation no longer closes it; the new one's does.
        assert_eq!(revocations.apply(&AccessEvent::token_revoked(old.token_id())), 0);
        assert_eq!(watch.reason(), None);
        // A token revoked already is refused, and changes nothing.
        let revoked = user("alice", None);
        revocations.apply(&AccessEvent::token_revoked(revoked.token_id()));
        assert_eq!(watch.rebind(&revoked), Err(RebindError::Revoked));
        assert_eq!(watch.rebind(&user("mallory", None)), Err(RebindError::OtherUser));
        assert_eq!(watch.rebind(&fresh), Ok(()), "the same token again");
        assert_eq!(revocations.apply(&AccessEvent::token_revoked(fresh.token_id())), 1);
        assert_eq!(watch.signal().await, Signal::Close(CloseReason::Revoked));
        assert_eq!(watch.rebind(&fresh), Err(RebindError::Closed));
        let registry = revocations.lock();
        assert!(registry.by_token.is_empty() && registry.entries.is_empty());
    }

    #[tokio::test]
    async fn expiry_closes_by_itself() {
        let revocations = Revocations::new();
        let soon = user("alice", Some(SystemTime::now() + Duration::from_millis(50)));
        let watch = revocations.watch(&soon);
        let reason = tokio::time::timeout(Duration::from_secs(5), watch).await.unwrap();
        assert_eq!(reason, CloseReason::Expired);
        assert!(revocations.is_empty(), "a finished watch is dropped and unregistered");
    }

    #[tokio::test]
    async fn a_watch_outliving_its_registry_stays_pending_until_expiry() {
        let revocations = Revocations::new();
        let soon = user("alice", Some(SystemTime::now() + Duration::from_millis(100)));
        let mut watch = revocations.watch(&soon);
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
        for round in 0..100 {
            let users: Vec<_> = (0..100).map(|i| user(&format!("{round}-{i}"), None)).collect();
            let watches: Vec<_> = users.iter().map(|u| revocations.watch(u)).collect();
            assert_eq!(revocations.len(), 100);
            if round % 2 == 0 {
                revocations.apply(&AccessEvent::user_revoked(format!("{round}-1")));
            }
            drop(watches);
        }
        let registry = revocations.lock();
        assert_eq!((registry.entries.len(), registry.by_token.len(), registry.by_user.len()), (0, 0, 0));
    }
}
