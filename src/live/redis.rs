//! Access events across nodes over Redis pub/sub (feature `redis`).
//!
//! Every node connects one [`RevocationBus`] and hands it to its
//! [`Lifecycle`](crate::Lifecycle) with
//! [`with_bus`](crate::Lifecycle::with_bus): each revocation, lock-out and
//! restoration made on any node is then published on a Redis channel and
//! applied on every node, to its cache and to its open sockets, with its close
//! reason. The subscriber reconnects by itself (with backoff, 250 ms doubling
//! to 5 s); after a gap in which it may have missed messages, the lifecycle
//! empties its cache and revalidates every open socket's token with the
//! store once. A message `revalidate` on the channel (from a script, say,
//! after a bulk change in the database) does the same on every node.
//!
//! ```no_run
//! use ws_token_auth::{Lifecycle, MemoryTokenStore, live::redis::RevocationBus};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let store = std::sync::Arc::new(MemoryTokenStore::<String>::new());
//! let bus = RevocationBus::connect("redis://127.0.0.1:6379", "myapp:access").await?;
//! let lifecycle = Lifecycle::new(store).with_bus(bus);
//! # let _ = lifecycle;
//! # Ok(()) }
//! ```

use std::sync::Arc;
use std::time::Duration;

use ::redis::{AsyncCommands, Client, RedisError};
use async_trait::async_trait;
use futures_util::StreamExt;

use super::listening::{Subscription, keep_listening};
use super::{AccessEvent, Bus, BusError, Listener};
use crate::redis_conn::{Reconnecting, timed_out};

impl From<RedisError> for BusError {
    fn from(error: RedisError) -> Self {
        Self::new(error)
    }
}

/// Publishes and hears [`AccessEvent`]s over one Redis channel: the
/// [`Bus`] for deployments with Redis.
#[derive(Clone)]
pub struct RevocationBus {
    publisher: Arc<Reconnecting>,
    channel: String,
}

impl std::fmt::Debug for RevocationBus {
    // The URL may hold a password: only the channel is shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RevocationBus").field("channel", &self.channel).finish_non_exhaustive()
    }
}

impl RevocationBus {
    /// Connects to Redis at `url` and uses `channel`. Connecting gives up after
    /// 2 s and commands after 2 s, so a Redis outage fails quickly instead of
    /// hanging the caller; the connection is replaced by itself when it breaks.
    ///
    /// # Errors
    /// [`BusError`] if the URL is invalid or Redis cannot be reached.
    pub async fn connect(url: &str, channel: impl Into<String>) -> Result<Self, BusError> {
        let bus = Self::new(url, channel)?;
        bus.publisher.connection().await?;
        Ok(bus)
    }

    /// A bus for Redis at `url` and `channel` that connects when first used,
    /// not now: a node that starts while Redis is down serves its own sockets
    /// at once, and joins the others when Redis answers (the listener retries
    /// by itself, and revalidates what it may have missed). Publishing while
    /// Redis is down fails quickly (see [`connect`](Self::connect)).
    ///
    /// ```
    /// use ws_token_auth::live::redis::RevocationBus;
    ///
    /// // Nothing listens on port 1: the bus is made all the same.
    /// let bus = RevocationBus::new("redis://127.0.0.1:1", "myapp:access").unwrap();
    /// assert_eq!(bus.channel(), "myapp:access");
    /// assert!(RevocationBus::new("not a url", "myapp:access").is_err());
    /// ```
    ///
    /// # Errors
    /// [`BusError`] if the URL is invalid.
    pub fn new(url: &str, channel: impl Into<String>) -> Result<Self, BusError> {
        let publisher = Arc::new(Reconnecting::new(Client::open(url)?));
        Ok(Self { publisher, channel: channel.into() })
    }

    /// The channel.
    #[must_use]
    pub fn channel(&self) -> &str {
        &self.channel
    }
}

#[async_trait]
impl Bus for RevocationBus {
    /// PUBLISH on the channel: every subscribed node hears it (this one
    /// included, when it listens).
    async fn publish(&self, event: &AccessEvent) -> Result<(), BusError> {
        let (channel, message) = (self.channel.clone(), event.to_string());
        let _receivers: usize =
            self.publisher.run(|mut conn| async move { conn.publish(channel, message).await }).await?;
        Ok(())
    }

    /// SUBSCRIBE on a connection of its own, in a task that reconnects by
    /// itself (250 ms doubling to 5 s) and calls [`Listener::gap`] after each
    /// reconnection, and on a message `revalidate`.
    fn listen(&self, listener: Listener) {
        let (client, channel) = (self.publisher.client().clone(), self.channel.clone());
        keep_listening(listener, "redis", channel.clone(), move || {
            let (client, channel) = (client.clone(), channel.clone());
            async move { subscribe(&client, &channel).await }
        });
    }
}

/// The subscription's messages, for as long as the connection lasts.
struct Messages(std::pin::Pin<Box<dyn futures_util::Stream<Item = ::redis::Msg> + Send>>);

#[async_trait]
impl Subscription for Messages {
    async fn next_text(&mut self) -> Option<String> {
        let message = self.0.next().await?;
        Some(String::from_utf8_lossy(message.get_payload_bytes()).into_owned())
    }
}

async fn subscribe(client: &Client, channel: &str) -> Result<Messages, RedisError> {
    let connect = async {
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(channel).await?;
        Ok(Messages(Box::pin(pubsub.into_on_message())))
    };
    tokio::time::timeout(Duration::from_secs(5), connect).await.unwrap_or_else(|_| Err(timed_out()))
}
