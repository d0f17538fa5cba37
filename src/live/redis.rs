//! Revocations across nodes over Redis pub/sub (feature `redis`).
//!
//! Every node runs one [`RevocationBus`]: [`publish`](RevocationBus::publish)
//! sends a [`Revocation`] on a Redis channel, and the task started by
//! [`apply`](RevocationBus::apply) hands every revocation heard on it to the
//! node's [`Revocations`]. The subscriber reconnects by itself (with backoff,
//! 250 ms doubling to 5 s); after a gap in which it may have missed messages,
//! it revalidates every open socket's token with the store once.
//!
//! ```no_run
//! use std::sync::Arc;
//! use ws_token_auth::live::{Revocations, redis::{Revocation, RevocationBus}};
//! use ws_token_auth::MemoryTokenStore;
//!
//! # async fn run(token: ws_token_auth::Token) -> Result<(), Box<dyn std::error::Error>> {
//! let store = Arc::new(MemoryTokenStore::<String>::new());
//! let revocations = Revocations::new();
//! let bus = RevocationBus::connect("redis://127.0.0.1:6379", "myapp:revocations").await?;
//! bus.apply(revocations.clone(), store);
//!
//! // On logout, on any node: every node closes that token's sockets.
//! bus.publish(&Revocation::Token(token.id())).await?;
//! # Ok(()) }
//! ```

use std::sync::Arc;
use std::time::Duration;

use ::redis::{AsyncCommands, Client, RedisError};
use futures_util::StreamExt;

use super::{CloseReason, Revocations};
use crate::redis_conn::{Reconnecting, timed_out};
use crate::store::TokenStore;
use crate::token::TokenId;

/// What to close, on every node.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Revocation {
    /// Every socket of this token ([`CloseReason::Revoked`]).
    Token(TokenId),
    /// Every socket of this user.
    User {
        /// The user key the sockets were registered with.
        key: String,
        /// Why they close.
        reason: CloseReason,
    },
}

impl Revocation {
    /// The message text: `token <id>` or `user <code> <key>`. Holds no secret.
    #[must_use]
    pub fn encode(&self) -> String {
        match self {
            Self::Token(id) => format!("token {id}"),
            Self::User { key, reason } => format!("user {} {key}", reason.code()),
        }
    }

    /// Reads a message made by [`encode`](Self::encode).
    #[must_use]
    pub fn decode(message: &str) -> Option<Self> {
        match message.split_once(' ')? {
            ("token", id) => id.parse().ok().map(Self::Token),
            ("user", rest) => {
                let (code, key) = rest.split_once(' ')?;
                let reason = match code {
                    "4401" => CloseReason::Revoked,
                    "4403" => CloseReason::AccessLost,
                    _ => return None,
                };
                Some(Self::User { key: key.to_owned(), reason })
            }
            _ => None,
        }
    }

    /// Applies the revocation to a node's registry; returns how many sockets closed.
    pub fn apply(&self, revocations: &Revocations) -> usize {
        match self {
            Self::Token(id) => revocations.revoke_token(*id),
            Self::User { key, reason } => revocations.revoke_user(key, *reason),
        }
    }
}

/// Redis could not be reached or refused a command.
#[derive(Debug, thiserror::Error)]
#[error("redis: {0}")]
pub struct BusError(#[from] RedisError);

/// Publishes and applies revocations over one Redis channel.
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
        let publisher = Arc::new(Reconnecting::new(Client::open(url)?));
        publisher.connection().await?;
        Ok(Self { publisher, channel: channel.into() })
    }

    /// The channel.
    #[must_use]
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// Sends `revocation` to every node (this one included, when it applies the bus).
    ///
    /// # Errors
    /// [`BusError`] if Redis does not take the message.
    pub async fn publish(&self, revocation: &Revocation) -> Result<(), BusError> {
        let (channel, message) = (self.channel.clone(), revocation.encode());
        let _receivers: usize =
            self.publisher.run(|mut conn| async move { conn.publish(channel, message).await }).await?;
        Ok(())
    }

    /// Spawns the task that applies every revocation heard on the channel to
    /// `revocations`, reconnecting by itself; after each reconnection it
    /// revalidates the open sockets' tokens with `store`, for what it may have
    /// missed. The task ends when every clone of `revocations`' registry is
    /// dropped and a message or a reconnection comes.
    pub fn apply<St: TokenStore>(&self, revocations: Revocations, store: Arc<St>) -> tokio::task::JoinHandle<()> {
        self.apply_with(revocations, store, |_| async {})
    }

    /// [`apply`](Self::apply), also calling `on_revocation` with every
    /// revocation heard: to drop a cached answer on every node, say
    /// (`CachedTokenStore::invalidate_id`).
    pub fn apply_with<St, F, Fut>(
        &self,
        revocations: Revocations,
        store: Arc<St>,
        on_revocation: F,
    ) -> tokio::task::JoinHandle<()>
    where
        St: TokenStore,
        F: Fn(Revocation) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let (client, channel) = (self.publisher.client().clone(), self.channel.clone());
        let registry = Arc::downgrade(&revocations.inner);
        drop(revocations);
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(250);
            let mut gap = false;
            loop {
                match subscribe(&client, &channel).await {
                    Ok(mut pubsub) => {
                        backoff = Duration::from_millis(250);
                        let Some(inner) = registry.upgrade() else { return };
                        let revocations = Revocations { inner };
                        if gap {
                            tracing::info!(target: "ws_token_auth", %channel, "revocation bus reconnected; revalidating");
                            revocations.revalidate_once(&*store).await;
                        }
                        drop(revocations);
                        let mut messages = pubsub.on_message();
                        while let Some(message) = messages.next().await {
                            let Some(inner) = registry.upgrade() else { return };
                            let text = String::from_utf8_lossy(message.get_payload_bytes());
                            match Revocation::decode(&text) {
                                Some(revocation) => {
                                    revocation.apply(&Revocations { inner });
                                    on_revocation(revocation).await;
                                }
                                None => tracing::warn!(target: "ws_token_auth", %channel, "unknown revocation message"),
                            }
                        }
                        tracing::warn!(target: "ws_token_auth", %channel, "revocation bus lost its connection");
                    }
                    Err(error) => {
                        tracing::warn!(target: "ws_token_auth", %channel, %error, "revocation bus cannot subscribe");
                    }
                }
                if registry.strong_count() == 0 {
                    return;
                }
                gap = true;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        })
    }
}

async fn subscribe(client: &Client, channel: &str) -> Result<::redis::aio::PubSub, RedisError> {
    let connect = async {
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(channel).await?;
        Ok(pubsub)
    };
    tokio::time::timeout(Duration::from_secs(5), connect).await.unwrap_or_else(|_| Err(timed_out()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_junk_is_refused() {
        let id: TokenId = "0123456789abcdef".parse().unwrap();
        for revocation in [
            Revocation::Token(id),
            Revocation::User { key: "42".into(), reason: CloseReason::Revoked },
            Revocation::User { key: "a user with spaces".into(), reason: CloseReason::AccessLost },
        ] {
            assert_eq!(Revocation::decode(&revocation.encode()), Some(revocation));
        }
        for junk in ["", "token", "token xyz", "user 4401", "user 1000 bob", "hello world"] {
            assert_eq!(Revocation::decode(junk), None, "{junk:?}");
        }
    }
}
