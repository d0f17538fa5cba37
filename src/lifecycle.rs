//! [`Lifecycle`]: one handle over the store, its cache, this node's open
//! sockets and the other nodes.

use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use crate::authenticator::Authenticator;
use crate::identity::AuthenticatedUser;
use crate::live::{AccessEvent, Bus, CloseReason, Listener, Revocations, Watch, jittered};
use crate::rejection::Rejection;
use crate::store::{ManageTokens, StoreError, TokenStore, UserId};
use crate::ticket::TicketStore;
use crate::token::Token;

/// One handle over the store, its cache, this node's open
/// sockets and the other nodes. One call per intent, correct by default.
///
/// | intent | call | sockets | close code |
/// | --- | --- | --- | --- |
/// | log in | [`issue`](Lifecycle::issue) | | |
/// | log out | [`revoke`](Lifecycle::revoke) | the token's | 4401 |
/// | log out everywhere, password change | [`revoke_user`](Lifecycle::revoke_user) | the user's | 4401 |
/// | deactivate | [`lock_out`](Lifecycle::lock_out) | the user's | 4403 |
/// | reactivate | [`let_in`](Lifecycle::let_in) | | |
///
/// Each call changes the store first (a `CachedTokenStore` in front of it
/// drops what it must by itself), then closes this node's sockets, then
/// publishes the change to the other nodes (with a bus, feature `redis`),
/// which apply it to their own caches and sockets with no app code; close
/// reasons survive the trip. A socket whose handshake was authenticated
/// before the change reached its node, and which registers after it, is
/// closed as soon as it registers (see [`live`](crate::live)).
///
/// ```
/// use std::sync::Arc;
/// use ws_token_auth::{Authenticator, Lifecycle, MemoryTokenStore, TokenStore};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), ws_token_auth::StoreError> {
/// let store = Arc::new(MemoryTokenStore::<String>::new());
/// let auth = Authenticator::from_shared(Arc::clone(&store)); // for the layer
/// let lifecycle = Lifecycle::new(store);                      // for login, logout, the sockets
///
/// let token = lifecycle.issue(&"alice".to_string(), None).await?; // login
/// assert!(auth.store().authenticate(&token).await?.is_some());
/// lifecycle.revoke(&token).await?;                                // logout: one call
/// assert!(auth.store().authenticate(&token).await?.is_none());
/// # Ok(()) }
/// ```
///
/// The socket side (watch, revalidation, the other nodes' changes, the bus)
/// works for any [`TokenStore`], a read-only one included (another app's
/// tables); issuing, revoking and locking need a store that can
/// ([`ManageTokens`]).
///
/// Cheap to clone (one reference count); clones share everything.
#[derive(Debug)]
pub struct Lifecycle<St> {
    shared: Arc<Shared<St>>,
}

impl<St> Clone for Lifecycle<St> {
    fn clone(&self) -> Self {
        Self { shared: Arc::clone(&self.shared) }
    }
}

#[derive(Debug)]
struct Shared<St> {
    store: Arc<St>,
    revocations: Revocations,
    bus: Option<Arc<dyn Bus>>,
    tickets: Tickets,
}

/// The lifecycle's ticket store, set once by the builder and shared by clones.
#[derive(Default)]
struct Tickets(std::sync::Mutex<Option<Arc<dyn TicketStore>>>);

impl Tickets {
    fn get(&self) -> Option<Arc<dyn TicketStore>> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    fn set(&self, tickets: Arc<dyn TicketStore>) {
        *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(tickets);
    }
}

impl std::fmt::Debug for Tickets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tickets").field("set", &self.get().is_some()).finish()
    }
}

impl<St: TokenStore> Lifecycle<St> {
    /// The lifecycle of `store` on this node, with a fresh socket registry.
    ///
    /// ```
    /// use ws_token_auth::{Lifecycle, MemoryTokenStore};
    /// let lifecycle = Lifecycle::new(std::sync::Arc::new(MemoryTokenStore::<String>::new()));
    /// assert!(lifecycle.revocations().is_empty());
    /// ```
    #[must_use]
    pub fn new(store: Arc<St>) -> Self {
        let shared = Shared { store, revocations: Revocations::new(), bus: None, tickets: Tickets::default() };
        Self { shared: Arc::new(shared) }
    }

    /// Joins the other nodes over `bus` (a [`Bus`]: Redis pub/sub with
    /// [`RevocationBus`](crate::live::redis::RevocationBus), feature `redis`,
    /// or your own): changes made here are published, and changes heard are
    /// applied here, to the store's cache and to the open sockets. When the
    /// bus says it may have missed events (after it loses and regains its
    /// connection, or when the source of truth asks every node to
    /// revalidate), the cache forgets every answer
    /// ([`StoreCache::forget_all`](crate::store::StoreCache::forget_all)) and
    /// every open socket's token is revalidated. Needs a tokio
    /// runtime; the bus's listening ends when the last clone of this
    /// lifecycle is dropped and a message or a reconnection comes.
    ///
    /// ```no_run
    /// # #[cfg(feature = "redis")]
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// use ws_token_auth::{Lifecycle, MemoryTokenStore, live::redis::RevocationBus};
    ///
    /// let bus = RevocationBus::connect("redis://127.0.0.1:6379", "myapp:access").await?;
    /// let lifecycle = Lifecycle::new(std::sync::Arc::new(MemoryTokenStore::<String>::new())).with_bus(bus);
    /// # let _ = lifecycle; Ok(()) }
    /// ```
    #[must_use]
    pub fn with_bus(self, bus: impl Bus) -> Self {
        self.listening_on(Arc::new(bus))
    }

    /// Puts `bus` in a copy of this lifecycle and has it listen for that copy.
    fn listening_on(self, bus: Arc<dyn Bus>) -> Self {
        let shared = Shared {
            store: Arc::clone(&self.shared.store),
            revocations: self.shared.revocations.clone(),
            bus: Some(Arc::clone(&bus)),
            tickets: Tickets::default(),
        };
        if let Some(tickets) = self.shared.tickets.get() {
            shared.tickets.set(tickets);
        }
        let shared = Arc::new(shared);
        let (on_event, on_gap, alive) = (Arc::downgrade(&shared), Arc::downgrade(&shared), Arc::downgrade(&shared));
        bus.listen(Listener::new(
            move |event| {
                let node = on_event.upgrade().map(|shared| Self { shared });
                async move {
                    match node {
                        Some(node) => {
                            node.heard(&event).await;
                            true
                        }
                        None => false,
                    }
                }
            },
            move || {
                let node = on_gap.upgrade().map(|shared| Self { shared });
                async move {
                    if let Some(node) = node {
                        node.gap().await;
                    }
                }
            },
            move || alive.strong_count() > 0,
        ));
        Self { shared }
    }

    /// Where connect tickets are kept (a store the nodes share, often the
    /// token store itself): every [`authenticator`](Self::authenticator)
    /// this lifecycle hands out issues and redeems tickets there. Clones
    /// share the setting.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use ws_token_auth::{Lifecycle, MemoryTokenStore};
    ///
    /// let store = Arc::new(MemoryTokenStore::<String>::new());
    /// let lifecycle = Lifecycle::new(Arc::clone(&store)).tickets(store);
    /// # let _ = lifecycle;
    /// ```
    #[must_use]
    pub fn tickets(self, tickets: impl TicketStore) -> Self {
        self.shared.tickets.set(Arc::new(tickets));
        self
    }

    /// Warns a socket `lead` before its token expires ([`Watch::signal`](crate::live::Watch::signal)
    /// says [`ExpiringSoon`](crate::live::Signal::ExpiringSoon)), so that the
    /// app can have its client take a fresh token. Without it, no warning:
    /// the socket closes at expiry. Clones share the setting.
    ///
    /// ```
    /// # use std::time::Duration;
    /// use ws_token_auth::{Lifecycle, MemoryTokenStore};
    /// let lifecycle = Lifecycle::new(std::sync::Arc::new(MemoryTokenStore::<String>::new()))
    ///     .warn_before(Duration::from_secs(60));
    /// # let _ = lifecycle;
    /// ```
    #[must_use]
    pub fn warn_before(self, lead: Duration) -> Self {
        let _ = self.shared.revocations.clone().warn_before(lead);
        self
    }

    /// How long a revocation is remembered, for sockets whose handshake was
    /// authenticated before it and which register after it (default
    /// [`DEFAULT_REMEMBER_FOR`](crate::live::DEFAULT_REMEMBER_FOR)): longer
    /// than any handshake takes. Clones share the setting.
    ///
    /// ```
    /// # use std::time::Duration;
    /// use ws_token_auth::{Lifecycle, MemoryTokenStore};
    /// let lifecycle = Lifecycle::new(std::sync::Arc::new(MemoryTokenStore::<String>::new()))
    ///     .remember_for(Duration::from_secs(600));
    /// # let _ = lifecycle;
    /// ```
    #[must_use]
    pub fn remember_for(self, window: Duration) -> Self {
        let _ = self.shared.revocations.clone().remember_for(window);
        self
    }

    /// An authenticator over this lifecycle's store and tickets: what the
    /// layer, the axum extractors and the tungstenite acceptor take. Each
    /// call gives one to configure on its own (an API route that reads a
    /// header, a socket route that takes tickets too); all of them ask the
    /// one store, so a lifecycle and its authenticators cannot disagree
    /// about who is who.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use ws_token_auth::extract::TokenSource;
    /// use ws_token_auth::{Identity, Lifecycle, MemoryTokenStore};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = Arc::new(MemoryTokenStore::<String>::new());
    /// let lifecycle = Lifecycle::new(Arc::clone(&store)).tickets(store);
    /// let api = lifecycle.authenticator().sources([TokenSource::authorization(["Token"])]);
    /// let sockets = lifecycle.authenticator().sources([TokenSource::cookie("key"), TokenSource::ticket("ticket")]);
    ///
    /// let token = lifecycle.issue(&"alice".to_string(), None).await?;
    /// let mut headers = http::HeaderMap::new();
    /// headers.insert("authorization", format!("Token {}", token.expose_secret()).parse()?);
    /// let Identity::User(alice) = api.authenticate(&headers, &"/api/ticket".parse()?).await? else { unreachable!() };
    /// let ticket = api.issue_ticket(&alice).await?;
    /// let uri = format!("/chat/stream/?ticket={}", ticket.expose_secret()).parse()?;
    /// assert!(matches!(sockets.authenticate(&http::HeaderMap::new(), &uri).await?, Identity::User(_)));
    /// # Ok(()) }
    /// ```
    pub fn authenticator(&self) -> Authenticator<St> {
        let auth = Authenticator::from_shared(Arc::clone(&self.shared.store));
        match self.shared.tickets.get() {
            Some(tickets) => auth.shared_tickets(tickets),
            None => auth,
        }
    }

    /// The store.
    ///
    /// ```
    /// # use ws_token_auth::{Lifecycle, MemoryTokenStore};
    /// let lifecycle = Lifecycle::new(std::sync::Arc::new(MemoryTokenStore::<String>::new()));
    /// assert!(lifecycle.store().is_empty());
    /// ```
    #[must_use]
    pub fn store(&self) -> &Arc<St> {
        &self.shared.store
    }

    /// This node's registry of open sockets.
    ///
    /// ```
    /// # use ws_token_auth::{Lifecycle, MemoryTokenStore};
    /// let lifecycle = Lifecycle::new(std::sync::Arc::new(MemoryTokenStore::<String>::new()));
    /// assert_eq!(lifecycle.revocations().len(), 0);
    /// ```
    #[must_use]
    pub fn revocations(&self) -> &Revocations {
        &self.shared.revocations
    }

    /// Registers a socket of `user` with this node's registry (in the upgrade
    /// handler, before the 101); close the socket with the reason's
    /// [`code`](CloseReason::code) when the [`Watch`] resolves, and drop it
    /// when the socket ends. See [`Revocations::watch`].
    ///
    /// ```
    /// # use ws_token_auth::{AuthenticatedUser, Lifecycle, MemoryTokenStore, Token, extract::CredentialKind};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), ws_token_auth::StoreError> {
    /// let lifecycle = Lifecycle::new(std::sync::Arc::new(MemoryTokenStore::new()));
    /// let token = lifecycle.issue(&"alice", None).await?;
    /// let user = AuthenticatedUser::new("alice", token.clone(), CredentialKind::Cookie, None);
    /// let watch = lifecycle.watch(&user);
    /// lifecycle.revoke(&token).await?;
    /// assert_eq!(watch.await.code(), 4401);
    /// # Ok(()) }
    /// ```
    pub fn watch(&self, user: &AuthenticatedUser<St::User>) -> Watch {
        self.shared.revocations.watch(user)
    }

    /// Applies a change made on another node: the store's cache drops what it
    /// must, then this node's sockets close (for a
    /// [`UserChanged`](AccessEvent::UserChanged), those of the user's
    /// sockets whose tokens the store now refuses). What the bus calls;
    /// returns how many sockets closed.
    ///
    /// ```
    /// # use ws_token_auth::{Lifecycle, MemoryTokenStore, live::AccessEvent};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let lifecycle = Lifecycle::new(std::sync::Arc::new(MemoryTokenStore::<String>::new()));
    /// assert_eq!(lifecycle.heard(&AccessEvent::user_locked_out("bob")).await, 0);
    /// # }
    /// ```
    pub async fn heard(&self, event: &AccessEvent) -> usize {
        let closed = self.forget_and_close(event).await;
        match event {
            // Only the store can judge: ask it about the user's sockets.
            AccessEvent::UserChanged { user } => {
                closed + self.revalidate(self.shared.revocations.tokens_of(user)).await
            }
            _ => closed,
        }
    }

    async fn forget_and_close(&self, event: &AccessEvent) -> usize {
        // The cache first: a handshake that starts after this line reads the
        // store; one that started before is closed when it registers.
        if let Some(cache) = self.shared.store.cache() {
            cache.forget(event).await;
        }
        self.shared.revocations.apply(event)
    }

    /// Here: close the sockets; elsewhere: publish.
    async fn changed(&self, event: AccessEvent) {
        let closed = self.shared.revocations.apply(&event);
        tracing::debug!(target: "ws_token_auth", %event, closed, "access changed");
        if let Some(bus) = &self.shared.bus {
            if let Err(error) = bus.publish(&event).await {
                tracing::warn!(
                    target: "ws_token_auth",
                    %event,
                    error = %crate::store::ErrorChain(&error),
                    "the other nodes were not told; they find out at their next revalidation",
                );
            }
        }
    }

    /// Asks the store's source of truth ([`StoreCache::revalidate`](crate::store::StoreCache::revalidate) past a cache)
    /// about every distinct token of this node's open sockets once; a token
    /// it no longer accepts is revoked here (its sockets close with 4401, or
    /// 4403 when [`TokenStore::is_locked_out`](crate::TokenStore::is_locked_out)
    /// says its user is locked out; the cache never answers for it again). A store error stops the pass
    /// and closes nothing: an outage is not a revocation. A later expiry in
    /// the answer (a sliding expiry extended by the lookup) moves the
    /// sockets' expiry and warning with it. Returns how many sockets closed.
    /// Lookups are made one after another, not in a burst.
    ///
    /// ```
    /// # use ws_token_auth::{Lifecycle, MemoryTokenStore};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let lifecycle = Lifecycle::new(std::sync::Arc::new(MemoryTokenStore::<String>::new()));
    /// assert_eq!(lifecycle.revalidate_once().await, 0);
    /// # }
    /// ```
    pub async fn revalidate_once(&self) -> usize {
        self.revalidate(self.shared.revocations.tokens()).await
    }

    /// [`revalidate_once`](Self::revalidate_once) for `tokens`.
    async fn revalidate(&self, tokens: Vec<Token>) -> usize {
        let mut closed = 0;
        for token in tokens {
            match crate::store::revalidate(&*self.shared.store, &token).await {
                Ok(Some(found)) if !found.is_expired_at(SystemTime::now()) => {
                    // A sliding expiry moved by use: the token's sockets follow.
                    if let Some(at) = found.expires_at {
                        self.shared.revocations.extend(token.id(), at);
                    }
                }
                Ok(_) => {
                    // A deactivated user's sockets close with 4403, as the
                    // lock-out itself would have closed them.
                    let locked = self.shared.store.is_locked_out(&token).await.unwrap_or(false);
                    let reason = if locked { CloseReason::AccessLost } else { CloseReason::Revoked };
                    let event = AccessEvent::TokenRevoked { id: token.id(), reason };
                    closed += self.forget_and_close(&event).await;
                }
                Err(error) => {
                    tracing::warn!(
                        target: "ws_token_auth",
                        error = %crate::store::ErrorChain(&error),
                        "revalidation skipped: the store failed",
                    );
                    return closed;
                }
            }
        }
        if closed > 0 {
            tracing::debug!(target: "ws_token_auth", closed, "revalidation closed sockets");
        }
        closed
    }

    /// The bus may have missed events, the source of truth says anything may
    /// have changed, or it is time for the periodic revalidation: no cached
    /// answer is trusted, and every open socket's token is asked about.
    async fn gap(&self) {
        if let Some(cache) = self.shared.store.cache() {
            cache.forget_all().await;
        }
        self.revalidate_once().await;
    }

    /// Spawns a task that, every `every` (default [`DEFAULT_REVALIDATE_EVERY`](crate::live::DEFAULT_REVALIDATE_EVERY)),
    /// has the store's cache forget every answer
    /// ([`StoreCache::forget_all`](crate::store::StoreCache::forget_all)) and
    /// calls [`revalidate_once`](Self::revalidate_once), each time with up to
    /// 10 % random jitter so that nodes started together do not ask the store
    /// in step: the bound on how long a change made behind the lifecycle's
    /// back (straight in the database, by a node with no bus) takes to close
    /// sockets and to be refused, caches included, whatever the cache's TTLs.
    /// The task ends when every clone of this lifecycle is dropped.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use ws_token_auth::{Lifecycle, MemoryTokenStore};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let lifecycle = Lifecycle::new(std::sync::Arc::new(MemoryTokenStore::<String>::new()));
    /// let task = lifecycle.revalidate_every(Duration::from_secs(60));
    /// # task.abort();
    /// # }
    /// ```
    pub fn revalidate_every(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        self.every(every, |node| async move {
            node.gap().await;
        })
    }

    /// Runs `work` every `every` (jittered) while this lifecycle lives.
    fn every<F, Fut>(&self, every: Duration, work: F) -> tokio::task::JoinHandle<()>
    where
        F: Fn(Self) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let node: Weak<Shared<St>> = Arc::downgrade(&self.shared);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(jittered(every)).await;
                let Some(shared) = node.upgrade() else { return };
                work(Self { shared }).await;
            }
        })
    }
}

// Issuing, revoking and locking: for stores that can
// (`ManageTokens`). A read-only store (another app's tables) gets the
// socket side above all the same.
impl<St: ManageTokens> Lifecycle<St> {
    /// Issues a token for `user` (login), valid for `ttl` or until revoked.
    /// A user who is locked out gets none: the store's source of truth
    /// ([`TokenStore::is_locked_out`](crate::TokenStore::is_locked_out)) is
    /// asked about the new token, and a token it refuses is revoked at once.
    ///
    /// # Errors
    /// [`StoreError::LockedOut`] for a locked-out user; [`StoreError`] if the
    /// store refuses.
    ///
    /// ```
    /// # use ws_token_auth::{Lifecycle, MemoryTokenStore, StoreError};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), ws_token_auth::StoreError> {
    /// let lifecycle = Lifecycle::new(std::sync::Arc::new(MemoryTokenStore::new()));
    /// let token = lifecycle.issue(&"alice", Some(std::time::Duration::from_secs(3600))).await?;
    ///
    /// lifecycle.lock_out(&"alice").await?;
    /// assert!(matches!(lifecycle.issue(&"alice", None).await, Err(StoreError::LockedOut)));
    /// # let _ = token; Ok(()) }
    /// ```
    pub async fn issue(&self, user: &St::User, ttl: Option<Duration>) -> Result<Token, StoreError> {
        let store = &self.shared.store;
        let token = store.issue(user, ttl).await?;
        match store.is_locked_out(&token).await {
            Ok(false) => Ok(token),
            Ok(true) => {
                store.revoke(&token).await?;
                Err(StoreError::LockedOut)
            }
            Err(error) => {
                // Not known to be fine: nothing handed out.
                let _ = store.revoke(&token).await;
                Err(error)
            }
        }
    }

    /// Issues a fresh token for the user of `caller`'s token (a client that
    /// renews its own token with it), once the store's source of truth
    /// ([`StoreCache::revalidate`](crate::store::StoreCache::revalidate) past a cache) has
    /// confirmed that token: a token revoked on another node, or whose user
    /// was locked out, but still in this node's cache, mints nothing that
    /// would outlive its revocation. A refused token is revoked here too (its
    /// sockets on this node close).
    ///
    /// # Errors
    /// [`Rejection::InvalidToken`] when the source of truth no longer accepts
    /// `caller`'s token; [`Rejection::StoreUnavailable`] when the store fails.
    ///
    /// ```
    /// # use ws_token_auth::{AuthenticatedUser, Lifecycle, MemoryTokenStore, Rejection, extract::CredentialKind};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let lifecycle = Lifecycle::new(std::sync::Arc::new(MemoryTokenStore::new()));
    /// let token = lifecycle.issue(&"alice", None).await?;
    /// let caller = AuthenticatedUser::new("alice", token.clone(), CredentialKind::Authorization, None);
    /// let fresh = lifecycle.issue_from(&caller, None).await?;
    /// assert_ne!(fresh.id(), token.id());
    ///
    /// lifecycle.revoke(&token).await?;
    /// assert!(matches!(lifecycle.issue_from(&caller, None).await, Err(Rejection::InvalidToken)));
    /// # Ok(()) }
    /// ```
    pub async fn issue_from(
        &self,
        caller: &AuthenticatedUser<St::User>,
        ttl: Option<Duration>,
    ) -> Result<Token, Rejection> {
        let store = &self.shared.store;
        let confirmed = match crate::store::revalidate(&**store, caller.token()).await {
            Ok(Some(found)) if !found.is_expired_at(SystemTime::now()) => found,
            Ok(_) => {
                let locked = store.is_locked_out(caller.token()).await.unwrap_or(false);
                let reason = if locked { CloseReason::AccessLost } else { CloseReason::Revoked };
                self.shared.revocations.apply(&AccessEvent::TokenRevoked { id: caller.token_id(), reason });
                return Err(Rejection::InvalidToken);
            }
            Err(error) => return Err(Rejection::StoreUnavailable(error)),
        };
        store.issue(&confirmed.user, ttl).await.map_err(Rejection::StoreUnavailable)
    }

    /// Revokes one token (logout): the store forgets it, its sockets close
    /// with 4401 here and on every node, and no cache answers for it again.
    /// Returns whether the store held it.
    ///
    /// # Errors
    /// [`StoreError`] if the store cannot revoke it: then nothing else was
    /// done. A bus that cannot publish is logged, not returned: the other
    /// nodes find out at their next revalidation.
    ///
    /// ```
    /// # use ws_token_auth::{Lifecycle, MemoryTokenStore};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), ws_token_auth::StoreError> {
    /// let lifecycle = Lifecycle::new(std::sync::Arc::new(MemoryTokenStore::new()));
    /// let token = lifecycle.issue(&"alice", None).await?;
    /// assert!(lifecycle.revoke(&token).await?);
    /// assert!(!lifecycle.revoke(&token).await?);
    /// # Ok(()) }
    /// ```
    pub async fn revoke(&self, token: &Token) -> Result<bool, StoreError> {
        let revoked = self.shared.store.revoke(token).await?;
        self.changed(AccessEvent::token_revoked(token.id())).await;
        Ok(revoked)
    }

    /// Revokes every token of the user `id` (log out everywhere, password
    /// change): their sockets close with 4401 on every node. Returns how many
    /// tokens the store held.
    ///
    /// # Errors
    /// As [`revoke`](Self::revoke).
    ///
    /// ```
    /// # use ws_token_auth::{Lifecycle, MemoryTokenStore};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), ws_token_auth::StoreError> {
    /// let lifecycle = Lifecycle::new(std::sync::Arc::new(MemoryTokenStore::new()));
    /// lifecycle.issue(&"alice", None).await?;
    /// lifecycle.issue(&"alice", None).await?;
    /// assert_eq!(lifecycle.revoke_user(&"alice").await?, 2);
    /// # Ok(()) }
    /// ```
    pub async fn revoke_user(&self, id: &UserId<St>) -> Result<u64, StoreError> {
        let revoked = self.shared.store.revoke_user(id).await?;
        self.changed(AccessEvent::user_revoked(id.to_string())).await;
        Ok(revoked)
    }

    /// Locks the user `id` out (deactivation): their tokens are refused (401)
    /// on every node at once, whatever the caches held, and their sockets
    /// close with 4403. [`let_in`](Self::let_in) undoes it.
    ///
    /// # Errors
    /// As [`revoke`](Self::revoke); [`StoreError::Unsupported`] from a store
    /// that cannot lock users out as configured.
    ///
    /// ```
    /// # use ws_token_auth::{Lifecycle, MemoryTokenStore, TokenStore};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), ws_token_auth::StoreError> {
    /// let lifecycle = Lifecycle::new(std::sync::Arc::new(MemoryTokenStore::new()));
    /// let token = lifecycle.issue(&"alice", None).await?;
    /// lifecycle.lock_out(&"alice").await?;
    /// assert!(lifecycle.store().authenticate(&token).await?.is_none());
    /// lifecycle.let_in(&"alice").await?;
    /// assert!(lifecycle.store().authenticate(&token).await?.is_some());
    /// # Ok(()) }
    /// ```
    pub async fn lock_out(&self, id: &UserId<St>) -> Result<(), StoreError> {
        self.shared.store.lock_out(id).await?;
        self.changed(AccessEvent::user_locked_out(id.to_string())).await;
        Ok(())
    }

    /// Lets a locked-out user in again: their unexpired tokens work again at
    /// once on every node (no cached refusal outlives this call).
    ///
    /// # Errors
    /// As [`lock_out`](Self::lock_out).
    ///
    /// ```
    /// # use ws_token_auth::{Lifecycle, MemoryTokenStore};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), ws_token_auth::StoreError> {
    /// let lifecycle = Lifecycle::new(std::sync::Arc::new(MemoryTokenStore::<String>::new()));
    /// lifecycle.let_in(&"bob".to_string()).await?;
    /// # Ok(()) }
    /// ```
    pub async fn let_in(&self, id: &UserId<St>) -> Result<(), StoreError> {
        self.shared.store.let_in(id).await?;
        self.changed(AccessEvent::user_restored(id.to_string())).await;
        Ok(())
    }

    /// Spawns a task that deletes expired tokens and connect tickets from the
    /// store ([`ManageTokens::purge_expired`]) every `every` (with up to 10 %
    /// jitter): a ticket or token row never outlives its expiry by more than
    /// that, used or not. A store error is logged and tried again next time.
    /// The task ends when every clone of this lifecycle is dropped.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use ws_token_auth::{Lifecycle, MemoryTokenStore};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let lifecycle = Lifecycle::new(std::sync::Arc::new(MemoryTokenStore::<String>::new()));
    /// let task = lifecycle.purge_every(Duration::from_secs(60));
    /// # task.abort();
    /// # }
    /// ```
    pub fn purge_every(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        self.every(every, |node| async move {
            match node.shared.store.purge_expired().await {
                Ok(purged) => tracing::debug!(target: "ws_token_auth", purged, "expired tokens and tickets purged"),
                Err(error) => tracing::warn!(
                    target: "ws_token_auth",
                    error = %crate::store::ErrorChain(&error),
                    "purge of expired tokens and tickets failed; trying again later",
                ),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::CredentialKind;
    use crate::store::MemoryTokenStore;
    use crate::store::testing::Stale;

    #[tokio::test]
    async fn revalidation_closes_a_socket_whose_token_the_store_says_has_expired() {
        let lifecycle = Lifecycle::new(Arc::new(Stale::default()));
        let user = AuthenticatedUser::new("alice".to_owned(), Token::generate(), CredentialKind::Cookie, None);
        let watch = lifecycle.watch(&user);
        assert_eq!(lifecycle.revalidate_once().await, 1);
        assert_eq!(watch.await, CloseReason::Revoked);
    }

    #[tokio::test]
    async fn an_open_socket_follows_the_sliding_expiry_that_revalidation_extends() {
        use crate::live::Signal;
        use crate::store::{SlidingExpiry, TokenStore};
        use std::time::{Duration, Instant};
        let ms = Duration::from_millis;
        let sliding = SlidingExpiry::new(ms(400), Duration::from_secs(60)).write_every(ms(100));
        let store = Arc::new(MemoryTokenStore::<String>::new().sliding(sliding));
        let lifecycle = Lifecycle::new(store).warn_before(ms(150));
        let token = lifecycle.issue(&"alice".to_owned(), None).await.unwrap();
        let found = lifecycle.store().authenticate(&token).await.unwrap().unwrap();
        let user = AuthenticatedUser::new("alice".to_owned(), token, CredentialKind::Cookie, found.expires_at);
        let started = Instant::now();
        let mut watch = lifecycle.watch(&user);
        tokio::time::sleep(ms(200)).await;
        assert_eq!(lifecycle.revalidate_once().await, 0);
        // Without the extension, the warning would come at 250 ms and the close at 400 ms.
        assert!(matches!(watch.signal().await, Signal::ExpiringSoon { .. }));
        assert!(started.elapsed() >= ms(400), "warned for the old expiry at {:?}", started.elapsed());
        assert_eq!(watch.signal().await, Signal::Close(CloseReason::Expired));
        assert!(started.elapsed() >= ms(550), "closed at the old expiry: {:?}", started.elapsed());
    }

    #[tokio::test]
    async fn watches_go_to_the_registry_that_revocations_returns() {
        let lifecycle = Lifecycle::new(Arc::new(MemoryTokenStore::<String>::new()));
        let token = lifecycle.issue(&"alice".to_owned(), None).await.unwrap();
        let user = AuthenticatedUser::new("alice".to_owned(), token.clone(), CredentialKind::Cookie, None);
        let watch = lifecycle.watch(&user);
        assert_eq!(lifecycle.revocations().len(), 1);
        assert_eq!(lifecycle.clone().revocations().len(), 1, "clones share it");
        lifecycle.revoke(&token).await.unwrap();
        assert_eq!(watch.await, CloseReason::Revoked);
        assert!(lifecycle.revocations().is_empty());
    }
}
