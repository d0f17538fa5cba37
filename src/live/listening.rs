//! The listening loop every shipped bus runs: subscribe, hand what is heard
//! to the node, and on a lost connection subscribe again (250 ms doubling to
//! 5 s), telling the node it may have missed something.

use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;

use super::{AccessEvent, Listener};

/// The message that asks every node to empty its cache and revalidate its
/// sockets' tokens (what a database trigger sends for a change only the
/// store can judge).
pub(crate) const REVALIDATE: &str = "revalidate";

/// A bus's subscription on a connection of its own.
#[async_trait]
pub(crate) trait Subscription: Send {
    /// The next message's text; `None` once the connection is lost.
    async fn next_text(&mut self) -> Option<String>;
}

/// Spawns the loop: `subscribe` (under its own timeout) gives a
/// [`Subscription`]; each message is an [`AccessEvent`] for the node or
/// [`REVALIDATE`]; after every reconnection the node hears of the gap. Ends
/// when the node is gone. `bus` names the bus in the logs.
pub(crate) fn keep_listening<S, E, F, Fut>(listener: Listener, bus: &'static str, channel: String, subscribe: F)
where
    S: Subscription + 'static,
    E: std::error::Error + Send + 'static,
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = Result<S, E>> + Send,
{
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(250);
        let mut gap = false;
        loop {
            match subscribe().await {
                Ok(mut subscription) => {
                    backoff = Duration::from_millis(250);
                    if gap {
                        tracing::info!(target: "ws_token_auth", bus, %channel, "access bus reconnected; revalidating");
                        listener.gap().await;
                    }
                    while let Some(text) = subscription.next_text().await {
                        if text == REVALIDATE {
                            listener.gap().await;
                        } else {
                            match text.parse::<AccessEvent>() {
                                Ok(event) => {
                                    if !listener.heard(event).await {
                                        return;
                                    }
                                }
                                Err(error) => {
                                    tracing::warn!(target: "ws_token_auth", bus, %channel, %error, "message ignored")
                                }
                            }
                        }
                        if !listener.is_alive() {
                            return;
                        }
                    }
                    tracing::warn!(target: "ws_token_auth", bus, %channel, "access bus lost its connection");
                }
                Err(error) => {
                    tracing::warn!(
                        target: "ws_token_auth",
                        bus,
                        %channel,
                        error = %crate::store::ErrorChain(&error),
                        "access bus cannot subscribe",
                    );
                }
            }
            if !listener.is_alive() {
                return;
            }
            gap = true;
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    });
}
