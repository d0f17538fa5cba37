//! Several `serve` processes as one chat (`--redis-url`): room frames travel
//! over Redis pub/sub, the way channels_redis carries a Django Channels group,
//! and revocations over the crate's `RevocationBus`.
//!
//! With a relay, a node sends every room frame to Redis only, and delivers to
//! its own sockets what comes back, like every other node: each socket gets
//! each frame exactly once. A frame names the node and socket it must skip
//! (the joiner of an enter notice). Joins travel the same way and take effect
//! when they come back, so every node applies them in Redis's one order.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use redis::AsyncCommands;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::chat::Hub;

/// A room frame on its way to every node.
#[derive(Debug)]
pub struct Relayed {
    pub room: String,
    /// The socket (on this node) that must not get the frame.
    pub skip: Option<u64>,
    /// The frame; none for a join with notices off.
    pub frame: Option<Utf8Bytes>,
    /// A join by `skip`: it becomes a member when this comes back.
    pub join: bool,
}

/// The channel names of one chat: derived from the database URL, so that the
/// processes serving one database form one chat and others stay apart.
pub fn channels(database_url: &str) -> (String, String) {
    let id = ws_token_auth::Token::new(database_url.replace(' ', "%20"))
        .map(|t| t.id().to_string())
        .unwrap_or_else(|_| "default".into());
    (format!("multichat:{id}:rooms"), format!("multichat:{id}:revocations"))
}

/// Starts the tasks that publish this node's frames and deliver every node's.
pub fn start(
    client: redis::Client,
    publisher: redis::aio::ConnectionManager,
    channel: String,
    node: u64,
    hub: Arc<Hub>,
    mut outgoing: mpsc::UnboundedReceiver<Relayed>,
) {
    let out_channel = channel.clone();
    tokio::spawn(async move {
        let mut publisher = publisher;
        while let Some(relayed) = outgoing.recv().await {
            let skip = relayed.skip.map_or_else(|| "-".to_owned(), |s| s.to_string());
            let frame = relayed.frame.as_ref().map_or("", Utf8Bytes::as_str);
            let payload = format!("{} {node} {skip} {}\n{frame}", relayed.room, u8::from(relayed.join));
            if let Err(error) = publisher.publish::<_, _, usize>(&out_channel, payload).await {
                tracing::warn!(%error, "relay: cannot publish a room frame");
            }
        }
    });
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(250);
        loop {
            match subscribe(&client, &channel).await {
                Ok(mut pubsub) => {
                    backoff = Duration::from_millis(250);
                    let mut messages = pubsub.on_message();
                    while let Some(message) = messages.next().await {
                        if let Some((room, skip, frame, join)) = parse(message.get_payload_bytes(), node) {
                            hub.deliver_local(room, skip, frame, join);
                        }
                    }
                    tracing::warn!("relay: lost the Redis subscription; reconnecting");
                }
                Err(error) => tracing::warn!(%error, "relay: cannot subscribe to Redis; retrying"),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    });
}

async fn subscribe(client: &redis::Client, channel: &str) -> redis::RedisResult<redis::aio::PubSub> {
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(channel).await?;
    Ok(pubsub)
}

/// `room node skip join\nframe` → the room, the socket of this node to skip,
/// the frame, and whether it is a join made on this node.
fn parse(payload: &[u8], this_node: u64) -> Option<(&str, Option<u64>, Option<Utf8Bytes>, bool)> {
    let text = std::str::from_utf8(payload).ok()?;
    let (head, frame) = text.split_once('\n')?;
    let mut parts = head.split(' ');
    let (room, node, skip, join) = (parts.next()?, parts.next()?.parse::<u64>().ok()?, parts.next()?, parts.next()?);
    let ours = node == this_node;
    let skip = if ours { skip.parse().ok() } else { None };
    let frame = (!frame.is_empty()).then(|| Utf8Bytes::from(frame.to_owned()));
    Some((room, skip, frame, ours && join == "1"))
}
