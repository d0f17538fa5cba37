//! The chat core: rooms, membership, commands and fan-out, per PROTOCOL.md.
//!
//! Each socket has an outgoing queue bounded in bytes (`outbox.rs`), drained
//! a batch at a time by its own writer task.
//! Room frames are serialized once and shared by every receiver (a
//! `Utf8Bytes` clone is a reference count). Nothing awaits while a room's
//! lock is held: a push never waits, and a client whose queue is full is
//! kicked (its socket closes, it leaves its rooms) instead of stalling the
//! room.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Poll;
use std::time::{Duration, SystemTime};

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use ws_token_auth::live::{CloseReason, RefreshError, Signal, Watch};
use ws_token_auth::{AuthenticatedUser, Authenticator, Rejection};

use super::api::Store;
use super::db::{ChatUser, RoomRow};
use super::outbox::{Close, Outbox, Then};
use super::protocol::{self, Command, Malformed};
use super::relay::{RelayQueue, Relayed};

/// The longest chat message, in characters.
pub const MAX_MESSAGE_CHARS: usize = 4096;
/// The largest frame a client may send, in bytes; larger ones close with 1009.
pub const MAX_FRAME_BYTES: usize = 64 * 1024;
/// How many bytes of frames may wait for a client before it is dropped as too
/// slow. Bytes, not frames: a join storm queues thousands of small notices
/// (2,000 joiners: ~130 KB each) that a healthy client reads in a moment,
/// while a stuck client is found out after a few large messages.
pub const QUEUE_BYTES: usize = 1 << 20;

/// The close code for a frame over [`MAX_FRAME_BYTES`].
pub const CLOSE_TOO_BIG: u16 = 1009;
/// The close code for a WebSocket protocol violation.
pub const CLOSE_PROTOCOL_ERROR: u16 = 1002;
/// The close code for a text frame that is not valid UTF-8 (RFC 6455, 7.4.1).
pub const CLOSE_INVALID_DATA: u16 = 1007;
/// A pong's frame header (a control frame's payload is at most 125 bytes).
const PONG_HEADER_BYTES: usize = 2;

/// A socket to which nothing could be written for this long is dropped: its
/// client stopped reading (PROTOCOL.md, "Limits and hostile clients").
pub const WRITE_DEADLINE: Duration = Duration::from_secs(10);
/// Once a socket must close, how long its writer may take to send what is
/// queued and the close frame before the connection is dropped: a revoked
/// socket closes within a second even when its client reads nothing.
pub const CLOSE_GRACE: Duration = Duration::from_millis(500);

/// Every room and its members.
#[derive(Debug)]
pub struct Hub {
    rooms: HashMap<String, Room>,
    notices: bool,
    next_id: AtomicU64,
    /// With several processes: where room frames go instead of the local members.
    relay: Option<Arc<RelayQueue>>,
}

#[derive(Debug)]
struct Room {
    id: String,
    title: String,
    staff_only: bool,
    members: Mutex<Members>,
}

/// A room's sockets on this process.
#[derive(Debug, Default)]
struct Members {
    /// Those that get the room's frames.
    active: HashMap<u64, Member>,
    /// With a relay: joined, waiting for their own enter notice to come back
    /// through Redis, with the reply to their `join`. Every process applies
    /// joins in the order Redis delivers them, so no one gets the notice of a
    /// join made before their own; and the reply is sent only then, so a
    /// join made anywhere after the reply comes after this one, and its
    /// notice reaches this joiner.
    /// (While Redis does not carry frames, the reply went out at once.)
    pending: HashMap<u64, (Member, Option<Utf8Bytes>)>,
}

impl Members {
    fn contains(&self, id: u64) -> bool {
        self.active.contains_key(&id) || self.pending.contains_key(&id)
    }

    fn remove(&mut self, id: u64) {
        self.active.remove(&id);
        // A join still on its way is answered all the same, before what follows.
        if let Some((member, Some(reply))) = self.pending.remove(&id) {
            member.push(reply);
        }
    }

    fn push_all(&self, frame: &Utf8Bytes, skip: Option<u64>) {
        for (_, member) in self.active.iter().filter(|(id, _)| Some(**id) != skip) {
            // A full queue kicks its socket; a closing one takes nothing more.
            member.push(frame.clone());
        }
    }
}

/// A socket in a room: its queue, which is also how to kick it.
type Member = Arc<Outbox>;

impl Hub {
    /// A hub over the database's rooms; `notices` sends enter/leave notices;
    /// `relay` carries room frames to every process (see `relay.rs`).
    pub fn new(rooms: Vec<RoomRow>, notices: bool, relay: Option<Arc<RelayQueue>>) -> Self {
        let rooms = rooms
            .into_iter()
            .map(|r| {
                let id = r.id.to_string();
                let room = Room { id: id.clone(), title: r.title, staff_only: r.staff_only, members: Mutex::default() };
                (id, room)
            })
            .collect();
        Self { rooms, notices, next_id: AtomicU64::new(1), relay }
    }

    /// Sends a room frame to the room's members but `skip`: through the relay
    /// when there is one, else straight to this process's members (whose lock
    /// the caller holds).
    fn broadcast(&self, room: &Room, members: &Members, frame: Utf8Bytes, skip: Option<u64>) {
        match &self.relay {
            Some(relay) => {
                relay.push(Relayed { room: room.id.clone(), skip, frame: Some(frame), join: false });
            }
            None => members.push_all(&frame, skip),
        }
    }

    /// Delivers what came through the relay: the frame to this process's
    /// members of `room` but `skip`, then, for a join made here, makes `skip` a
    /// member.
    pub fn deliver_local(&self, room: &str, skip: Option<u64>, frame: Option<Utf8Bytes>, join: bool) {
        if let Some(room) = self.rooms.get(room) {
            let mut members = lock(&room.members);
            if let Some(frame) = frame {
                members.push_all(&frame, skip);
            }
            if let (true, Some(id)) = (join, skip) {
                if let Some((member, reply)) = members.pending.remove(&id) {
                    if let Some(reply) = reply {
                        member.push(reply);
                    }
                    members.active.insert(id, member);
                }
            }
        }
    }

    /// How many sockets of this process are in room `id`.
    pub fn members(&self, id: &str) -> usize {
        self.rooms.get(id).map_or(0, |room| lock(&room.members).active.len())
    }

    /// Serves one authenticated socket until it closes or `watch` says its
    /// token is no longer valid, then leaves its rooms; `keep` (the
    /// connection's slot) is held until then.
    ///
    /// Starts the socket's writer at once and returns the reader: a future
    /// that holds only what the reading needs, since every byte of it is kept
    /// by every open socket. `socket` is any connection the WebSocket runs
    /// on: a TCP stream accepted directly, or one that hyper upgraded.
    pub fn serve<S, K>(
        self: Arc<Self>,
        socket: WebSocketStream<S>,
        user: AuthenticatedUser<ChatUser>,
        watch: Watch,
        auth: Authenticator<Store>,
        keep: K,
    ) -> impl std::future::Future<Output = ()> + Send + 'static
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        K: Send + 'static,
    {
        let (sink, stream) = socket.split();
        let outbox = Arc::new(Outbox::new(QUEUE_BYTES));
        let writer = tokio::spawn(write_all(sink, Arc::clone(&outbox)));
        let conn = Conn { id: self.next_id.fetch_add(1, Ordering::Relaxed), me: outbox, user, joined: Vec::new() };
        self.read_all(stream, conn, watch, auth, writer, keep)
    }

    async fn read_all<S, K>(
        self: Arc<Self>,
        mut stream: SplitStream<WebSocketStream<S>>,
        mut conn: Conn,
        mut watch: Watch,
        auth: Authenticator<Store>,
        mut writer: tokio::task::JoinHandle<()>,
        keep: K,
    ) where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let outbox = Arc::clone(&conn.me);
        loop {
            tokio::select! {
                biased;
                signal = watch.signal() => match signal {
                    Signal::ExpiringSoon { expires_in } => {
                        conn.me.push(frame(&json!({"auth": "expiring", "expires_in": whole_seconds(expires_in)})));
                    }
                    Signal::Close(reason) => {
                        conn.me.close((reason.code(), reason.as_str()));
                        break;
                    }
                    _ => {}
                },
                () = outbox.kicked() => break,
                message = stream.next() => match message {
                    Some(Ok(Message::Text(text))) => {
                        let (command, revoked) = (protocol::parse(&text), watch.reason());
                        if let (Ok(Command::Refresh { token }), None) = (&command, revoked) {
                            // Boxed: a rare, larger future need not enlarge every socket's task.
                            Box::pin(conn.refresh(&auth, &mut watch, token)).await;
                        } else if let Err(reason) = conn.handle(&self, command, revoked) {
                            conn.me.close((reason.code(), reason.as_str()));
                            break;
                        }
                    }
                    Some(Ok(Message::Binary(_))) => conn.error("MALFORMED_COMMAND"),
                    Some(Ok(Message::Close(_))) | None => break,
                    // tungstenite queued the pong itself: it counts toward the
                    // socket's bound, and the writer flushes it (a client that
                    // pings and never reads is dropped like any slow reader).
                    Some(Ok(Message::Ping(payload))) => {
                        conn.me.answered(payload.len() + PONG_HEADER_BYTES);
                    }
                    Some(Ok(_)) => {} // pong
                    Some(Err(error)) => {
                        if let Some(close) = close_for(error) {
                            conn.me.close(close);
                        }
                        break;
                    }
                },
            }
        }
        self.leave_all(&mut conn);
        drop(conn); // ends the queue: the writer sends what is left, then ends
        // Bounded: a client that reads nothing cannot keep its connection.
        if tokio::time::timeout(CLOSE_GRACE, &mut writer).await.is_err() {
            writer.abort();
        }
        drop(keep);
        // Returning drops the read half; with the writer's half gone too, the
        // TCP connection is closed.
    }

    fn leave_all(&self, conn: &mut Conn) {
        for id in std::mem::take(&mut conn.joined) {
            if let Some(room) = self.rooms.get(&id) {
                let mut members = lock(&room.members);
                members.remove(conn.id);
                if self.notices {
                    let notice = frame(&json!({"msg_type": 5, "room": room.id, "username": conn.user.user.username}));
                    self.broadcast(room, &members, notice, None);
                }
            }
        }
    }
}

/// A socket's writer: everything already queued goes out in one write
/// (frames are fed into the socket's write buffer, then flushed once), until
/// the queue ends, a close is sent, or a write misses its deadline.
async fn write_all<S: AsyncRead + AsyncWrite + Unpin>(
    mut sink: SplitSink<WebSocketStream<S>, Message>,
    outbox: Arc<Outbox>,
) {
    let mut batch = VecDeque::new();
    loop {
        // Answers: pongs tungstenite holds; the flush below sends them.
        let (then, answers) = outbox.take(&mut batch).await;
        let mut bytes = answers;
        // A client that reads nothing fills the kernel's buffer and then the
        // write waits: past the deadline, drop it.
        let sent = within(WRITE_DEADLINE, async {
            for text in batch.drain(..) {
                bytes += text.len();
                sink.feed(Message::Text(text)).await?;
            }
            if let Then::Close((code, reason)) = then {
                sink.feed(Message::Close(Some(CloseFrame { code: code.into(), reason: reason.into() }))).await?;
            }
            sink.flush().await
        })
        .await;
        outbox.written(bytes);
        match (then, sent) {
            (Then::More, Some(Ok(()))) => {}
            (Then::More, _) => {
                outbox.kick();
                break;
            }
            _ => break,
        }
    }
    let _ = tokio::time::timeout(CLOSE_GRACE, sink.close()).await;
}

/// Runs `work` to its end, or gives up (`None`) once it has waited `limit`
/// since it first had to wait. The clock is only read, and a timer only set,
/// when the work waits: most batches go out at once, and a timer per batch
/// cost a join storm's writers a clock read and a shared handle each.
async fn within<F: std::future::Future>(limit: Duration, work: F) -> Option<F::Output> {
    let mut work = std::pin::pin!(work);
    let mut deadline: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
    std::future::poll_fn(|cx| {
        if let Poll::Ready(done) = work.as_mut().poll(cx) {
            return Poll::Ready(Some(done));
        }
        let deadline = deadline.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        deadline.as_mut().poll(cx).map(|()| None)
    })
    .await
}

/// One socket's state, owned by its reader.
struct Conn {
    id: u64,
    /// Its queue, also a member of every room it joined.
    me: Member,
    user: AuthenticatedUser<ChatUser>,
    /// The rooms joined: a few at most, so a list (smaller than a set, for
    /// every open socket).
    joined: Vec<String>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        // However the socket ends, even with its reader dropped mid-way.
        self.me.end();
    }
}

impl Conn {
    fn error(&self, code: &str) {
        self.me.push(frame(&json!({ "error": code })));
    }

    /// Handles one parsed text frame; `revoked` says whether the token was
    /// revoked or expired in the meantime, in which case the socket must close.
    fn handle(
        &mut self,
        hub: &Hub,
        command: Result<Command, Malformed>,
        revoked: Option<CloseReason>,
    ) -> Result<(), CloseReason> {
        let Ok(command) = command else {
            self.error("MALFORMED_COMMAND");
            return Ok(());
        };
        if let Some(reason) = revoked {
            // A command that races the close: answered, then the close follows.
            self.error("USER_HAS_TO_LOGIN");
            return Err(reason);
        }
        match command {
            Command::Join { room } => self.join(hub, room),
            Command::Leave { room } => self.leave(hub, room),
            Command::Send { room, message } => self.send(hub, room, &message),
            Command::Refresh { .. } => {} // handled by the socket loop, which can wait for the store
        }
        Ok(())
    }

    /// Moves the socket to a fresh token of the same user, checked by the
    /// same authenticator and store as a handshake; the rooms stay.
    async fn refresh(&mut self, auth: &Authenticator<Store>, watch: &mut Watch, token: &str) {
        // Another user's token is refused too.
        match watch.refresh(auth, token).await {
            Ok(fresh) => {
                let left =
                    fresh.expires_at.map(|at| whole_seconds(at.duration_since(SystemTime::now()).unwrap_or_default()));
                self.me.push(frame(&json!({"auth": "refreshed", "expires_in": left})));
                self.user = fresh;
            }
            Err(RefreshError::Rejected(Rejection::StoreUnavailable(_))) => self.error("UNAVAILABLE"),
            Err(_) => self.error("REFRESH_REJECTED"),
        }
    }

    fn join(&mut self, hub: &Hub, id: Option<String>) {
        let Some(room) = id.and_then(|id| hub.rooms.get(&id)) else { return self.error("ROOM_INVALID") };
        if room.staff_only && !self.user.user.is_staff {
            return self.error("ROOM_ACCESS_DENIED");
        }
        let reply = frame(&json!({"join": room.id, "title": room.title}));
        let mut members = lock(&room.members);
        // The reply goes first, and the notice and the membership change
        // happen under one lock: whatever the room sends next comes after it,
        // and two sockets joining at once each see the other's notice.
        if members.contains(self.id) {
            self.me.push(reply);
            return;
        }
        self.joined.push(room.id.clone());
        let notice = hub
            .notices
            .then(|| json!({"msg_type": 4, "room": room.id, "username": self.user.user.username}).to_string().into());
        match &hub.relay {
            // Active once the join comes back through Redis, in Redis's order.
            Some(relay) => {
                let reply = if relay.is_live() {
                    Some(reply)
                } else {
                    self.me.push(reply);
                    None
                };
                members.pending.insert(self.id, (self.me.clone(), reply));
                relay.push(Relayed { room: room.id.clone(), skip: Some(self.id), frame: notice, join: true });
            }
            // Sent before the joiner is added, so never to the joiner.
            None => {
                self.me.push(reply);
                if let Some(notice) = notice {
                    members.push_all(&notice, None);
                }
                members.active.insert(self.id, self.me.clone());
            }
        }
    }

    fn leave(&mut self, hub: &Hub, id: Option<String>) {
        let Some(room) = id.and_then(|id| hub.rooms.get(&id)) else { return self.error("ROOM_INVALID") };
        let Some(at) = self.joined.iter().position(|joined| *joined == room.id) else {
            return self.error("ROOM_ACCESS_DENIED");
        };
        self.joined.swap_remove(at);
        {
            let mut members = lock(&room.members);
            if hub.notices {
                // The leaver gets it too, as it is sent before the removal;
                // through a relay it would arrive after, so it gets its copy here.
                let notice = frame(&json!({"msg_type": 5, "room": room.id, "username": self.user.user.username}));
                if hub.relay.is_some() {
                    self.me.push(notice.clone());
                }
                hub.broadcast(room, &members, notice, None);
            }
            members.remove(self.id);
        }
        self.me.push(frame(&json!({ "leave": room.id })));
    }

    fn send(&mut self, hub: &Hub, id: Option<String>, message: &str) {
        let Some(id) = id.filter(|id| self.joined.contains(id)) else { return self.error("ROOM_ACCESS_DENIED") };
        let Some(room) = hub.rooms.get(&id) else { return self.error("ROOM_INVALID") };
        if message.chars().count() > MAX_MESSAGE_CHARS {
            return self.error("MESSAGE_TOO_LONG");
        }
        let shared =
            frame(&json!({"msg_type": 0, "room": room.id, "username": self.user.user.username, "message": message}));
        hub.broadcast(room, &lock(&room.members), shared, None);
    }
}

/// Whole seconds, rounded up (PROTOCOL.md: `expires_in`).
fn whole_seconds(left: Duration) -> u64 {
    left.as_secs() + u64::from(left.subsec_nanos() > 0)
}

fn frame(value: &Value) -> Utf8Bytes {
    Utf8Bytes::from(value.to_string())
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every critical section is a few map operations and queue pushes, which
    // leave the map consistent even if a panic interrupted them.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The close frame that answers a read error, if the connection can still
/// take one: 1009 for a message or frame over the limits, 1002 for a
/// WebSocket protocol violation (unmasked client frame, reserved bits,
/// unknown opcode), 1007 for a text message that is not UTF-8; none when the
/// connection broke.
fn close_for(error: WsError) -> Option<Close> {
    match error {
        WsError::Capacity(_) => Some((CLOSE_TOO_BIG, "message too big")),
        WsError::Protocol(_) => Some((CLOSE_PROTOCOL_ERROR, "protocol error")),
        WsError::Utf8(_) => Some((CLOSE_INVALID_DATA, "invalid utf-8")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[tokio::test]
    async fn within_gives_work_its_time_from_the_first_wait_and_no_more() {
        // Done at once: no timer at all.
        assert_eq!(within(Duration::ZERO, async { 7 }).await, Some(7));
        // Waits, but less than the limit.
        let slow = async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            8
        };
        assert_eq!(within(Duration::from_secs(5), slow).await, Some(8));
        // Never done: given up at the limit, not before and not long after.
        let started = Instant::now();
        let given_up = tokio::time::timeout(
            Duration::from_secs(5),
            within(Duration::from_millis(100), std::future::pending::<()>()),
        );
        assert_eq!(given_up.await.expect("within kept waiting past its limit"), None);
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(100) && took < Duration::from_secs(2), "{took:?}");
    }
}
