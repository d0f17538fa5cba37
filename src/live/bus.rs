//! [`Bus`]: how the nodes of one deployment tell each other about access
//! changes. Redis pub/sub implements it ([`RevocationBus`](super::redis::RevocationBus),
//! feature `redis`); so can any broadcast channel.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;

use super::AccessEvent;

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A bus could not take or carry a message; the cause is its
/// [`source`](std::error::Error::source).
///
/// ```
/// use ws_token_auth::live::BusError;
///
/// let error = BusError::new(std::io::Error::other("connection refused"));
/// assert_eq!(error.to_string(), "access bus failed");
/// assert!(std::error::Error::source(&error).is_some());
/// ```
#[derive(Debug, thiserror::Error)]
#[error("access bus failed")]
pub struct BusError(#[source] BoxError);

impl BusError {
    /// Wraps the cause.
    pub fn new(cause: impl Into<BoxError>) -> Self {
        Self(cause.into())
    }
}

/// Carries [`AccessEvent`]s between the nodes of one deployment: a
/// [`Lifecycle`](crate::Lifecycle) publishes each change it makes, and
/// applies each change it hears to its store's cache and its open sockets.
///
/// An implementation sends every published event to every listening node
/// (the publisher's own included: applying an event twice is harmless), and
/// tells its [`Listener`] when it may have missed some (after a lost
/// connection), so that the node revalidates its sockets with the store.
///
/// ```
/// use std::sync::Arc;
/// use async_trait::async_trait;
/// use tokio::sync::broadcast;
/// use ws_token_auth::live::{AccessEvent, Bus, BusError, Listener};
///
/// /// Every node in one process: a broadcast channel.
/// #[derive(Debug, Clone)]
/// struct InProcess(broadcast::Sender<String>);
///
/// #[async_trait]
/// impl Bus for InProcess {
///     async fn publish(&self, event: &AccessEvent) -> Result<(), BusError> {
///         let _ = self.0.send(event.to_string()); // no listener yet: nothing to tell
///         Ok(())
///     }
///
///     fn listen(&self, listener: Listener) {
///         let mut heard = self.0.subscribe();
///         tokio::spawn(async move {
///             loop {
///                 match heard.recv().await {
///                     Ok(text) => {
///                         let Ok(event) = text.parse::<AccessEvent>() else { continue };
///                         if !listener.heard(event).await {
///                             return; // the node is gone
///                         }
///                     }
///                     // Messages were dropped: what they said is unknown.
///                     Err(broadcast::error::RecvError::Lagged(_)) => listener.gap().await,
///                     Err(broadcast::error::RecvError::Closed) => return,
///                 }
///             }
///         });
///     }
/// }
/// ```
#[async_trait]
pub trait Bus: fmt::Debug + Send + Sync + 'static {
    /// Sends `event` to every node.
    ///
    /// # Errors
    /// [`BusError`] if the bus does not take it. The lifecycle logs it and
    /// goes on: the other nodes learn of the change at their next
    /// revalidation.
    async fn publish(&self, event: &AccessEvent) -> Result<(), BusError>;

    /// Starts hearing the other nodes, on a task of its own that hands every
    /// event to `listener` and ends when [`Listener::heard`] returns `false`
    /// or [`Listener::is_alive`] says the node is gone.
    fn listen(&self, listener: Listener);
}

#[async_trait]
impl<B: Bus + ?Sized> Bus for Arc<B> {
    async fn publish(&self, event: &AccessEvent) -> Result<(), BusError> {
        (**self).publish(event).await
    }

    fn listen(&self, listener: Listener) {
        (**self).listen(listener);
    }
}

type Heard = Box<dyn Fn(AccessEvent) -> Pin<Box<dyn Future<Output = bool> + Send>> + Send + Sync>;
type Gap = Box<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// A node's ear on a [`Bus`]: what a bus implementation calls with what it
/// hears. Made by the [`Lifecycle`](crate::Lifecycle) it belongs to; cheap
/// to clone.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use async_trait::async_trait;
/// use ws_token_auth::{Lifecycle, MemoryTokenStore, live::{AccessEvent, Bus, BusError, Listener}};
///
/// /// A bus that only keeps the listener it is given.
/// #[derive(Debug, Default)]
/// struct Keep(Mutex<Option<Listener>>);
///
/// #[async_trait]
/// impl Bus for Keep {
///     async fn publish(&self, _: &AccessEvent) -> Result<(), BusError> { Ok(()) }
///     fn listen(&self, listener: Listener) { *self.0.lock().unwrap() = Some(listener); }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let bus = Arc::new(Keep::default());
/// let lifecycle = Lifecycle::new(Arc::new(MemoryTokenStore::<String>::new())).with_bus(Arc::clone(&bus));
/// let listener = bus.0.lock().unwrap().clone().unwrap();
/// assert!(listener.heard(AccessEvent::user_locked_out("bob")).await);
/// drop(lifecycle);
/// assert!(!listener.is_alive(), "the node is gone: stop listening");
/// assert!(!listener.heard(AccessEvent::user_locked_out("bob")).await);
/// # }
/// ```
#[derive(Clone)]
pub struct Listener {
    inner: Arc<Ear>,
}

struct Ear {
    heard: Heard,
    gap: Gap,
    alive: Box<dyn Fn() -> bool + Send + Sync>,
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listener").field("alive", &self.is_alive()).finish()
    }
}

impl Listener {
    pub(crate) fn new<H, HF, G, GF>(heard: H, gap: G, alive: impl Fn() -> bool + Send + Sync + 'static) -> Self
    where
        H: Fn(AccessEvent) -> HF + Send + Sync + 'static,
        HF: Future<Output = bool> + Send + 'static,
        G: Fn() -> GF + Send + Sync + 'static,
        GF: Future<Output = ()> + Send + 'static,
    {
        let ear = Ear {
            heard: Box::new(move |event| Box::pin(heard(event))),
            gap: Box::new(move || Box::pin(gap())),
            alive: Box::new(alive),
        };
        Self { inner: Arc::new(ear) }
    }

    /// Applies an event heard from another node (to the cache, then the
    /// sockets). `false` when the node is gone: stop listening.
    ///
    /// ```
    /// # use std::sync::{Arc, Mutex};
    /// # use async_trait::async_trait;
    /// # use ws_token_auth::{Lifecycle, MemoryTokenStore, live::{AccessEvent, Bus, BusError, Listener}};
    /// # #[derive(Debug, Default)]
    /// # struct Keep(Mutex<Option<Listener>>);
    /// # #[async_trait]
    /// # impl Bus for Keep {
    /// #     async fn publish(&self, _: &AccessEvent) -> Result<(), BusError> { Ok(()) }
    /// #     fn listen(&self, listener: Listener) { *self.0.lock().unwrap() = Some(listener); }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let bus = Arc::new(Keep::default());
    /// # let lifecycle = Lifecycle::new(Arc::new(MemoryTokenStore::<String>::new())).with_bus(Arc::clone(&bus));
    /// # let listener = bus.0.lock().unwrap().clone().unwrap();
    /// assert!(listener.heard(AccessEvent::user_locked_out("bob")).await);
    /// # drop(lifecycle); }
    /// ```
    pub async fn heard(&self, event: AccessEvent) -> bool {
        (self.inner.heard)(event).await
    }

    /// The bus may have missed events (it lost its connection, it lagged),
    /// or the source of truth says anything may have changed: the node's
    /// cache forgets every answer and the node revalidates every open
    /// socket's token with the store once.
    ///
    /// ```
    /// # use std::sync::{Arc, Mutex};
    /// # use async_trait::async_trait;
    /// # use ws_token_auth::{Lifecycle, MemoryTokenStore, live::{AccessEvent, Bus, BusError, Listener}};
    /// # #[derive(Debug, Default)]
    /// # struct Keep(Mutex<Option<Listener>>);
    /// # #[async_trait]
    /// # impl Bus for Keep {
    /// #     async fn publish(&self, _: &AccessEvent) -> Result<(), BusError> { Ok(()) }
    /// #     fn listen(&self, listener: Listener) { *self.0.lock().unwrap() = Some(listener); }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let bus = Arc::new(Keep::default());
    /// # let lifecycle = Lifecycle::new(Arc::new(MemoryTokenStore::<String>::new())).with_bus(Arc::clone(&bus));
    /// # let listener = bus.0.lock().unwrap().clone().unwrap();
    /// listener.gap().await; // no socket open: nothing to revalidate
    /// # drop(lifecycle); }
    /// ```
    pub async fn gap(&self) {
        (self.inner.gap)().await;
    }

    /// Whether the node still exists (a bus that reconnects asks this before
    /// trying again).
    ///
    /// ```
    /// # use std::sync::{Arc, Mutex};
    /// # use async_trait::async_trait;
    /// # use ws_token_auth::{Lifecycle, MemoryTokenStore, live::{AccessEvent, Bus, BusError, Listener}};
    /// # #[derive(Debug, Default)]
    /// # struct Keep(Mutex<Option<Listener>>);
    /// # #[async_trait]
    /// # impl Bus for Keep {
    /// #     async fn publish(&self, _: &AccessEvent) -> Result<(), BusError> { Ok(()) }
    /// #     fn listen(&self, listener: Listener) { *self.0.lock().unwrap() = Some(listener); }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let bus = Arc::new(Keep::default());
    /// # let lifecycle = Lifecycle::new(Arc::new(MemoryTokenStore::<String>::new())).with_bus(Arc::clone(&bus));
    /// # let listener = bus.0.lock().unwrap().clone().unwrap();
    /// assert!(listener.is_alive());
    /// drop(lifecycle);
    /// assert!(!listener.is_alive());
    /// # }
    /// ```
    #[must_use]
    pub fn is_alive(&self) -> bool {
        (self.inner.alive)()
    }
}
