//! Several `serve` processes as one chat (`--redis-url`): room frames travel
//! over Redis pub/sub, the way channels_redis carries a Django Channels group,
//! and revocations over the crate's `RevocationBus`.
//!
//! With a relay, a node sends every room frame to Redis only, and delivers to
//! its own sockets what comes back, like every other node: each socket gets
//! each frame exactly once. A frame names the node and socket it must skip
//! (the joiner of an enter notice). Joins travel the same way and take effect
//! when they come back, so every node applies them in Redis's one order.
//!
//! Facing a slow or absent Redis (PROTOCOL.md, "Limits and hostile clients"):
//! - frames wait in a [`RelayQueue`] bounded in bytes ([`QUEUE_BYTES`]); past
//!   it the oldest are dropped and counted in the log, never an unbounded
//!   queue. A dropped join takes effect here at once (without its notice), so
//!   no socket waits for ever for a join that will not come back;
//! - the publisher sends everything queued as one message (a batch) per
//!   round trip, each bounded in time ([`PUBLISH_TIMEOUT`]): one round trip
//!   per frame made the relay the chat's bottleneck;
//! - a batch that Redis refused because the connection is gone stays queued
//!   and goes out on the next connection; one that timed out is dropped
//!   (Redis may still deliver it: sent twice would be worse);
//! - the publisher waits until the subscriber has heard itself (a probe
//!   published and received back), so that after an outage nothing is
//!   published that this node would not hear back;
//! - the process starts while Redis is down, and both tasks reconnect by
//!   themselves.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::StreamExt;
use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;
use tokio::sync::Notify;
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

impl Relayed {
    /// What it costs in the queue, about.
    fn bytes(&self) -> usize {
        self.room.len() + self.frame.as_ref().map_or(0, |frame| frame.as_str().len()) + RECORD_OVERHEAD
    }
}

/// The bytes a record takes beside its room and frame (its header, the struct).
const RECORD_OVERHEAD: usize = 64;
/// How many bytes of frames may wait for Redis on one process.
pub const QUEUE_BYTES: usize = 1 << 20;
/// The most one published message (a batch of frames) carries.
const BATCH_BYTES: usize = 256 * 1024;
/// How long Redis has to answer a publish, and to accept a connection.
pub const PUBLISH_TIMEOUT: Duration = Duration::from_secs(2);
/// Backoff between attempts to reach Redis.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// How soon an unheard probe is sent again, the first time.
const PROBE_FIRST_RETRY: Duration = Duration::from_millis(25);

/// The channel names of one chat: derived from the database URL, so that the
/// processes serving one database form one chat and others stay apart.
pub fn channels(database_url: &str) -> (String, String) {
    let id = ws_token_auth::Token::new(database_url.replace(' ', "%20"))
        .map(|t| t.id().to_string())
        .unwrap_or_else(|_| "default".into());
    (format!("multichat:{id}:rooms"), format!("multichat:{id}:revocations"))
}

/// Frames waiting for the publisher: pushed without waiting by whoever holds
/// a room, bounded in bytes.
#[derive(Debug)]
pub struct RelayQueue {
    limit: usize,
    state: Mutex<Queue>,
    ready: Notify,
    /// Frames dropped over the bound or lost to a timed-out publish.
    dropped: AtomicU64,
    /// Whether this node's subscriber hears the channel (see `deliver_all`).
    subscribed: Arc<Subscribed>,
}

#[derive(Debug, Default)]
struct Queue {
    records: VecDeque<Relayed>,
    bytes: usize,
    /// Joins dropped over the bound: applied here by the publisher's task.
    orphans: Vec<(String, u64)>,
}

impl RelayQueue {
    /// An empty queue bounded at `limit` bytes.
    pub fn new(limit: usize) -> Self {
        let subscribed = Arc::default();
        Self { limit, state: Mutex::default(), ready: Notify::new(), dropped: AtomicU64::new(0), subscribed }
    }

    /// Whether frames go round through Redis now (this node hears its own):
    /// a join is answered once Redis has ordered it. While not, joins are
    /// answered at once and take effect when Redis is back.
    pub fn is_live(&self) -> bool {
        self.subscribed.now.load(Ordering::SeqCst)
    }

    /// Queues a frame for every node; drops the oldest past the bound.
    pub fn push(&self, relayed: Relayed) {
        let mut queue = self.lock();
        queue.bytes += relayed.bytes();
        queue.records.push_back(relayed);
        let dropped = self.trim(&mut queue);
        drop(queue);
        if dropped > 0 {
            self.dropped.fetch_add(dropped, Ordering::Relaxed);
        }
        self.ready.notify_one();
    }

    /// Drops the oldest records until the queue is within its bound; returns
    /// how many went.
    fn trim(&self, queue: &mut Queue) -> u64 {
        let mut dropped = 0;
        while queue.bytes > self.limit {
            let Some(old) = queue.records.pop_front() else { break };
            queue.bytes -= old.bytes();
            dropped += 1;
            if let (true, Some(id)) = (old.join, old.skip) {
                queue.orphans.push((old.room, id));
            }
        }
        dropped
    }

    /// Takes up to [`BATCH_BYTES`] of the oldest records (at least one).
    fn take_batch(&self) -> Vec<Relayed> {
        let mut queue = self.lock();
        let mut batch = Vec::new();
        let mut bytes = 0;
        while let Some(next) = queue.records.front() {
            if !batch.is_empty() && bytes + next.bytes() > BATCH_BYTES {
                break;
            }
            bytes += next.bytes();
            batch.extend(queue.records.pop_front());
        }
        queue.bytes -= bytes;
        if queue.records.is_empty() {
            queue.records.shrink_to(64);
        }
        batch
    }

    /// Puts a batch that could not be sent back in front, within the bound.
    fn put_back(&self, batch: Vec<Relayed>) {
        let mut queue = self.lock();
        for relayed in batch.into_iter().rev() {
            queue.bytes += relayed.bytes();
            queue.records.push_front(relayed);
        }
        // Past the bound, the oldest go: these, first.
        let dropped = self.trim(&mut queue);
        drop(queue);
        self.dropped.fetch_add(dropped, Ordering::Relaxed);
    }

    fn is_empty(&self) -> bool {
        self.lock().records.is_empty()
    }

    fn orphans(&self) -> Vec<(String, u64)> {
        std::mem::take(&mut self.lock().orphans)
    }

    /// Bytes waiting.
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    /// Frames dropped so far (over the bound, or lost to a timed-out publish).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Starts the tasks that publish this node's frames and deliver every node's.
/// Neither needs Redis to be up now.
pub fn start(client: redis::Client, channel: String, node: u64, hub: Arc<Hub>, queue: Arc<RelayQueue>) {
    let subscribed = Arc::clone(&queue.subscribed);
    tokio::spawn(publish_all(client.clone(), channel.clone(), node, Arc::clone(&hub), queue, Arc::clone(&subscribed)));
    tokio::spawn(deliver_all(client, channel, node, hub, subscribed));
}

/// Whether the subscriber is listening, and a wake-up when it starts.
#[derive(Debug, Default)]
struct Subscribed {
    now: AtomicBool,
    changed: Notify,
}

impl Subscribed {
    fn set(&self, subscribed: bool) {
        self.now.store(subscribed, Ordering::SeqCst);
        self.changed.notify_waiters();
    }

    async fn wait(&self) {
        loop {
            let changed = self.changed.notified();
            if self.now.load(Ordering::SeqCst) {
                return;
            }
            // Bounded: a missed wake-up costs a short wait, never a stall.
            let _ = tokio::time::timeout(BACKOFF_MAX, changed).await;
        }
    }
}

async fn connect(client: &redis::Client) -> redis::RedisResult<MultiplexedConnection> {
    let config =
        AsyncConnectionConfig::new().set_connection_timeout(PUBLISH_TIMEOUT).set_response_timeout(PUBLISH_TIMEOUT);
    let connecting = client.get_multiplexed_async_connection_with_config(&config);
    match tokio::time::timeout(PUBLISH_TIMEOUT + Duration::from_millis(500), connecting).await {
        Ok(connected) => connected,
        Err(_) => Err(redis::RedisError::from((redis::ErrorKind::IoError, "timed out connecting to Redis"))),
    }
}

/// The publisher: everything queued, a batch per message, as long as the
/// process lives.
async fn publish_all(
    client: redis::Client,
    channel: String,
    node: u64,
    hub: Arc<Hub>,
    queue: Arc<RelayQueue>,
    subscribed: Arc<Subscribed>,
) {
    let mut conn: Option<MultiplexedConnection> = None;
    let mut backoff = BACKOFF_MIN;
    let mut reported = 0;
    loop {
        let ready = queue.ready.notified();
        for (room, id) in queue.orphans() {
            hub.deliver_local(&room, Some(id), None, true);
        }
        let dropped = queue.dropped();
        if dropped > reported {
            tracing::warn!(
                dropped = dropped - reported,
                total = dropped,
                "relay: room frames dropped waiting for Redis"
            );
            reported = dropped;
        }
        if queue.is_empty() {
            ready.await;
            continue;
        }
        subscribed.wait().await;
        let mut connection = match conn.take() {
            Some(connection) => connection,
            None => match connect(&client).await {
                Ok(connection) => connection,
                Err(error) => {
                    tracing::warn!(%error, "relay: cannot reach Redis; frames wait (bounded)");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    continue;
                }
            },
        };
        let batch = queue.take_batch();
        let payload = encode(node, &batch);
        let mut command = redis::cmd("PUBLISH");
        command.arg(&channel).arg(payload);
        match tokio::time::timeout(PUBLISH_TIMEOUT, command.query_async::<usize>(&mut connection)).await {
            Ok(Ok(_)) => {
                backoff = BACKOFF_MIN;
                conn = Some(connection);
            }
            Ok(Err(error)) if is_connection_error(&error) => {
                // Not sent: on the next connection.
                tracing::warn!(%error, "relay: lost Redis; reconnecting");
                queue.put_back(batch);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, frames = batch.len(), "relay: Redis refused a batch of room frames");
                queue.dropped.fetch_add(batch.len() as u64, Ordering::Relaxed);
                conn = Some(connection);
            }
            Err(_elapsed) => {
                // Maybe sent: Redis may deliver it when it wakes. Not again.
                tracing::warn!(frames = batch.len(), "relay: Redis did not answer in time; reconnecting");
                queue.dropped.fetch_add(batch.len() as u64, Ordering::Relaxed);
            }
        }
    }
}

fn is_connection_error(error: &redis::RedisError) -> bool {
    error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_timeout()
        || error.is_unrecoverable_error()
}

/// The subscriber: delivers every node's frames to this node's sockets, and
/// says when it listens. A subscription counts once it has heard itself: it
/// publishes a probe (a message of no records, which every node ignores)
/// until the probe comes back: again after 25 ms, then doubling to a second. (A Redis that refuses SUBSCRIBE,
/// by ACL or renamed command, is answered with an error that redis-rs 0.32
/// passes as success; frames published then would be heard by no one.)
async fn deliver_all(client: redis::Client, channel: String, node: u64, hub: Arc<Hub>, subscribed: Arc<Subscribed>) {
    let mut backoff = BACKOFF_MIN;
    let probe = format!("{node}\n#probe {}", ws_token_auth::Token::generate().id());
    loop {
        match subscribe(&client, &channel).await {
            Ok(mut pubsub) => {
                let mut messages = pubsub.on_message();
                let mut heard_itself = false;
                // The first probe may race the subscription itself: the
                // next ones follow soon (25 ms, doubling to a second), so
                // that this node hears the others' frames, and lets its own
                // joins through, within moments of starting.
                let mut probe_every = PROBE_FIRST_RETRY;
                let next_probe = tokio::time::sleep(Duration::ZERO);
                tokio::pin!(next_probe);
                loop {
                    tokio::select! {
                        message = messages.next() => {
                            let Some(message) = message else { break };
                            let payload = message.get_payload_bytes();
                            if payload == probe.as_bytes() {
                                if !heard_itself {
                                    heard_itself = true;
                                    backoff = BACKOFF_MIN;
                                    subscribed.set(true);
                                }
                                continue;
                            }
                            for (room, skip, frame, join) in Records::new(payload, node) {
                                hub.deliver_local(room, skip, frame, join);
                            }
                        }
                        () = &mut next_probe, if !heard_itself => {
                            publish_probe(&client, &channel, &probe).await;
                            next_probe.as_mut().reset(tokio::time::Instant::now() + probe_every);
                            probe_every = (probe_every * 2).min(BACKOFF_MAX);
                        }
                    }
                }
                subscribed.set(false);
                tracing::warn!("relay: lost the Redis subscription; reconnecting");
            }
            Err(error) => tracing::warn!(%error, "relay: cannot subscribe to Redis; retrying"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Publishes the subscriber's probe on a connection of its own; a failure
/// is tried again at the next tick.
async fn publish_probe(client: &redis::Client, channel: &str, probe: &str) {
    let Ok(mut connection) = connect(client).await else { return };
    let mut command = redis::cmd("PUBLISH");
    command.arg(channel).arg(probe);
    let _ = tokio::time::timeout(PUBLISH_TIMEOUT, command.query_async::<usize>(&mut connection)).await;
}

async fn subscribe(client: &redis::Client, channel: &str) -> redis::RedisResult<redis::aio::PubSub> {
    let subscribing = async {
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(channel).await?;
        Ok(pubsub)
    };
    match tokio::time::timeout(PUBLISH_TIMEOUT, subscribing).await {
        Ok(subscribed) => subscribed,
        Err(_) => Err(redis::RedisError::from((redis::ErrorKind::IoError, "timed out subscribing"))),
    }
}

/// One message for a batch: `node\n`, then per frame `room skip join len\n`
/// and the frame's `len` bytes (`skip` is `-` for none; `join` 0 or 1).
fn encode(node: u64, batch: &[Relayed]) -> Vec<u8> {
    let size: usize = batch.iter().map(Relayed::bytes).sum();
    let mut out = Vec::with_capacity(size + 24);
    out.extend_from_slice(node.to_string().as_bytes());
    out.push(b'\n');
    for relayed in batch {
        let frame = relayed.frame.as_ref().map_or("", Utf8Bytes::as_str);
        let skip = relayed.skip.map_or_else(|| "-".to_owned(), |s| s.to_string());
        let head = format!("{} {skip} {} {}\n", relayed.room, u8::from(relayed.join), frame.len());
        out.extend_from_slice(head.as_bytes());
        out.extend_from_slice(frame.as_bytes());
    }
    out
}

/// The records of a batch message, as this node applies them: the room, the
/// socket of this node to skip, the frame, and whether it is a join made on
/// this node. A malformed message ends the records where it breaks.
struct Records<'a> {
    rest: &'a str,
    ours: bool,
}

impl<'a> Records<'a> {
    fn new(payload: &'a [u8], this_node: u64) -> Self {
        let text = std::str::from_utf8(payload).unwrap_or("");
        match text.split_once('\n') {
            Some((node, rest)) => Self { rest, ours: node.parse() == Ok(this_node) },
            None => Self { rest: "", ours: false },
        }
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = (&'a str, Option<u64>, Option<Utf8Bytes>, bool);

    fn next(&mut self) -> Option<Self::Item> {
        let (head, rest) = self.rest.split_once('\n')?;
        let mut parts = head.split(' ');
        let (room, skip, join, len) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let len: usize = len.parse().ok()?;
        let (frame, rest) = (rest.get(..len)?, rest.get(len..)?);
        self.rest = rest;
        let skip = if self.ours { skip.parse().ok() } else { None };
        let frame = (!frame.is_empty()).then(|| Utf8Bytes::from(frame.to_owned()));
        Some((room, skip, frame, self.ours && join == "1"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relayed(room: &str, frame: &str, skip: Option<u64>, join: bool) -> Relayed {
        let frame = (!frame.is_empty()).then(|| Utf8Bytes::from(frame.to_owned()));
        Relayed { room: room.into(), skip, frame, join }
    }

    #[test]
    fn a_batch_reads_back_as_its_frames_in_order() {
        let batch = [
            relayed("1", "{\"message\": \"a b\\nc\"}", None, false),
            relayed("2", "", Some(7), true),
            relayed("1", "é", Some(3), false),
        ];
        let payload = encode(42, &batch);
        let ours: Vec<_> = Records::new(&payload, 42).map(|(r, s, f, j)| (r, s, f.map(|f| f.to_string()), j)).collect();
        assert_eq!(
            ours,
            [
                ("1", None, Some("{\"message\": \"a b\\nc\"}".to_owned()), false),
                ("2", Some(7), None, true),
                ("1", Some(3), Some("é".to_owned()), false),
            ]
        );
        // Another node's: no skip, no join of its own.
        let theirs: Vec<_> = Records::new(&payload, 1).map(|(_, s, _, j)| (s, j)).collect();
        assert_eq!(theirs, [(None, false), (None, false), (None, false)]);
        // Cut short: the whole records before the break.
        assert_eq!(Records::new(&payload[..payload.len() - 2], 42).count(), 2);
        assert_eq!(Records::new(b"garbage", 42).count(), 0);
        // A subscriber's probe carries no record: every node ignores it.
        assert_eq!(Records::new(b"42\n#probe 0123456789abcdef", 42).count(), 0);
    }

    #[test]
    fn the_queue_drops_its_oldest_past_the_bound_and_orphans_dropped_joins() {
        let queue = RelayQueue::new(1000);
        queue.push(relayed("1", "", Some(9), true));
        for _ in 0..100 {
            queue.push(relayed("1", &"x".repeat(100), None, false));
        }
        assert!(queue.bytes() <= 1000, "{}", queue.bytes());
        assert!(queue.dropped() >= 90, "{}", queue.dropped());
        assert_eq!(queue.orphans(), [("1".to_owned(), 9)], "the dropped join takes effect here");
        // Batches take the oldest first, and what goes back stays in front.
        let batch = queue.take_batch();
        let left = queue.bytes();
        assert!(!batch.is_empty());
        queue.put_back(batch);
        assert!(queue.bytes() > left);
        assert!(queue.bytes() <= 1000);
    }
}
