//! One socket's outgoing frames: a queue bounded in bytes that rooms fill
//! without ever waiting, and that the socket's writer empties a batch at a
//! time.
//!
//! Why not a channel: a join storm pushes millions of small frames, each to a
//! queue of its own, from whichever thread holds the room. A channel pays an
//! atomic slot claim, a byte count and a wake-up per frame, and allocates a
//! block of slots for every socket before its first frame. Here a frame is a
//! push under an uncontended lock, the writer is woken only when its queue
//! turns non-empty, and it takes everything queued in one swap; an idle
//! socket's queue holds no allocation.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};

use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// The close frame a socket ends with: code and reason.
pub type Close = (u16, &'static str);

/// What [`Outbox::push`] did with a frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Pushed {
    /// Queued for the writer.
    Queued,
    /// Refused: the client already has more than the bound waiting; it has
    /// been asked to leave ([`Outbox::kicked`]).
    Full,
    /// Dropped: the socket is closing and its writer takes nothing more.
    Ended,
}

/// What the writer is to do after the frames [`Outbox::take`] handed it.
#[derive(Debug, PartialEq, Eq)]
pub enum Then {
    /// Wait for more.
    More,
    /// Send this close frame and stop.
    Close(Close),
    /// Stop: the socket ends without a close frame of ours.
    End,
}

/// One socket's queue, shared by its reader, the rooms it is in and its writer.
#[derive(Debug)]
pub struct Outbox {
    limit: usize,
    state: Mutex<State>,
    /// Wakes the writer when the queue turns non-empty or ends.
    ready: Notify,
    /// Tells the reader its socket must go: its client is too slow, or the
    /// writer failed.
    kick: Notify,
}

#[derive(Debug, Default)]
struct State {
    frames: VecDeque<Utf8Bytes>,
    /// Bytes queued or taken and not yet written.
    bytes: usize,
    /// Bytes of automatic answers (pongs) that tungstenite holds for the
    /// writer's next flush, not yet taken.
    answers: usize,
    ended: bool,
    close: Option<Close>,
}

/// How many frames a queue and its writer's batch keep room for while the
/// socket is idle: a storm's buffers are kept while it lasts, not for the
/// socket's life.
const IDLE_CAPACITY: usize = 64;

impl Outbox {
    /// An empty queue that refuses a frame once `limit` bytes are waiting.
    pub fn new(limit: usize) -> Self {
        Self { limit, state: Mutex::default(), ready: Notify::new(), kick: Notify::new() }
    }

    /// Queues a text frame without waiting. A frame that would take the
    /// bytes waiting past the bound is refused and the socket kicked: one
    /// client that reads nothing must not hold the room's memory.
    pub fn push(&self, frame: Utf8Bytes) -> Pushed {
        self.admit(frame.len(), |state| state.frames.push_back(frame))
    }

    /// Counts `bytes` of an automatic answer (the pong tungstenite queued
    /// for a ping) toward the bound, and has the writer flush it. A client
    /// that sends pings and never reads is kicked once its answers pass the
    /// bound, as one whose frames do.
    pub fn answered(&self, bytes: usize) -> Pushed {
        self.admit(bytes, |state| state.answers += bytes)
    }

    /// Counts `bytes` toward the bound and, within it, `add`s them to the
    /// queue; wakes the writer when the queue had nothing for it. Past the
    /// bound nothing is added and the socket is kicked.
    fn admit(&self, bytes: usize, add: impl FnOnce(&mut State)) -> Pushed {
        let mut state = self.lock();
        if state.ended {
            return Pushed::Ended;
        }
        if state.bytes + bytes > self.limit {
            drop(state);
            self.kick.notify_one();
            return Pushed::Full;
        }
        state.bytes += bytes;
        let was_idle = state.frames.is_empty() && state.answers == 0;
        add(&mut state);
        drop(state);
        if was_idle {
            // A writer that is busy finds it when it next takes; the permit
            // this leaves then only costs it one empty look.
            self.ready.notify_one();
        }
        Pushed::Queued
    }

    /// Ends the queue with a close frame, sent after what is already queued
    /// (unless the queue had already ended). Not bound by the byte limit.
    pub fn close(&self, close: Close) {
        let mut state = self.lock();
        if !state.ended {
            state.close = Some(close);
        }
        state.ended = true;
        drop(state);
        self.ready.notify_one();
    }

    /// Ends the queue: later pushes are dropped; the writer takes what is
    /// left, then stops.
    pub fn end(&self) {
        self.lock().ended = true;
        self.ready.notify_one();
    }

    /// Waits for frames, answers to flush or the end, moves every queued
    /// frame into `batch` (which the writer passes back empty, to keep its
    /// allocation), and says what comes after them and how many bytes of
    /// answers the flush after them sends (to pass to [`written`](Self::written)).
    pub async fn take(&self, batch: &mut VecDeque<Utf8Bytes>) -> (Then, usize) {
        loop {
            {
                let mut state = self.lock();
                let answers = std::mem::take(&mut state.answers);
                if state.ended {
                    std::mem::swap(&mut state.frames, batch);
                    return (state.close.take().map_or(Then::End, Then::Close), answers);
                }
                if !state.frames.is_empty() || answers > 0 {
                    std::mem::swap(&mut state.frames, batch);
                    return (Then::More, answers);
                }
                state.frames.shrink_to(IDLE_CAPACITY);
            }
            batch.shrink_to(IDLE_CAPACITY);
            self.ready.notified().await;
        }
    }

    /// The writer wrote `bytes` of what it took: they no longer count
    /// against the bound.
    pub fn written(&self, bytes: usize) {
        let mut state = self.lock();
        state.bytes = state.bytes.saturating_sub(bytes);
    }

    /// Asks the reader to close the socket.
    pub fn kick(&self) {
        self.kick.notify_one();
    }

    /// Resolves once the socket has been kicked.
    pub async fn kicked(&self) {
        self.kick.notified().await;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every critical section is a few field updates, which leave the
        // state whole even if a panic interrupted them.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    fn text(s: &str) -> Utf8Bytes {
        s.into()
    }

    fn texts(batch: &VecDeque<Utf8Bytes>) -> Vec<String> {
        batch.iter().map(ToString::to_string).collect()
    }

    #[tokio::test]
    async fn the_writer_takes_everything_queued_in_order_in_one_batch() {
        let outbox = Outbox::new(100);
        for s in ["a", "b", "c"] {
            assert_eq!(outbox.push(text(s)), Pushed::Queued);
        }
        let mut batch = VecDeque::new();
        assert_eq!(outbox.take(&mut batch).await, (Then::More, 0));
        assert_eq!(texts(&batch), ["a", "b", "c"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_waiting_writer_wakes_for_each_push_and_for_the_close() {
        let outbox = Arc::new(Outbox::new(100));
        let (seen, mut echo) = tokio::sync::mpsc::unbounded_channel();
        let writer = tokio::spawn({
            let outbox = Arc::clone(&outbox);
            async move {
                let mut batch = VecDeque::new();
                loop {
                    let (then, _) = outbox.take(&mut batch).await;
                    for text in batch.drain(..) {
                        let _ = seen.send(text.to_string());
                    }
                    if then != Then::More {
                        return then;
                    }
                }
            }
        });
        // Each frame reaches the writer while the queue stays open: the push
        // woke it, nothing else did.
        for i in 0..20 {
            outbox.push(text(&i.to_string()));
            let got = tokio::time::timeout(Duration::from_secs(2), echo.recv()).await;
            assert_eq!(got.expect("the writer was not woken by a push"), Some(i.to_string()));
        }
        outbox.close((4401, "revoked"));
        let then = tokio::time::timeout(Duration::from_secs(2), writer).await.expect("woken by the close").unwrap();
        assert_eq!(then, Then::Close((4401, "revoked")));
    }

    #[tokio::test]
    async fn the_bound_counts_bytes_until_written_and_kicks_when_passed() {
        let outbox = Outbox::new(10);
        assert_eq!(outbox.push(text("123456")), Pushed::Queued);
        let mut batch = VecDeque::new();
        assert_eq!(outbox.take(&mut batch).await, (Then::More, 0));
        // Taken but not yet written: still counted.
        assert_eq!(outbox.push(text("12345")), Pushed::Full);
        tokio::time::timeout(Duration::from_secs(1), outbox.kicked()).await.expect("kicked");
        outbox.written(6);
        assert_eq!(outbox.push(text("12345")), Pushed::Queued);
        assert_eq!(outbox.push(text("12345")), Pushed::Queued);
        // The close frame is not bound: a full queue still ends with it.
        outbox.close((1000, "bye"));
        batch.clear();
        assert_eq!(outbox.take(&mut batch).await, (Then::Close((1000, "bye")), 0));
        assert_eq!(texts(&batch), ["12345", "12345"]);
    }

    #[tokio::test]
    async fn an_ended_queue_drains_then_refuses() {
        let outbox = Outbox::new(100);
        outbox.push(text("last"));
        outbox.end();
        assert_eq!(outbox.push(text("late")), Pushed::Ended);
        // A close after the end is not sent: the socket already ends.
        outbox.close((1000, "late"));
        let mut batch = VecDeque::new();
        assert_eq!(outbox.take(&mut batch).await, (Then::End, 0));
        assert_eq!(texts(&batch), ["last"]);
    }

    #[tokio::test]
    async fn an_idle_queue_gives_back_a_storms_buffers() {
        let outbox = Outbox::new(1 << 20);
        for _ in 0..1000 {
            outbox.push(text("notice"));
        }
        let mut batch = VecDeque::new();
        assert_eq!(outbox.take(&mut batch).await, (Then::More, 0));
        assert!(batch.capacity() >= 1000);
        batch.clear();
        // Nothing queued: the writer waits, and both buffers shrink first.
        let waiting = tokio::time::timeout(Duration::from_millis(50), outbox.take(&mut batch)).await;
        assert!(waiting.is_err(), "nothing was queued");
        assert!(batch.capacity() <= IDLE_CAPACITY, "{}", batch.capacity());
        assert!(outbox.lock().frames.capacity() <= IDLE_CAPACITY);
    }

    #[tokio::test]
    async fn answers_wake_the_writer_count_toward_the_bound_and_kick_past_it() {
        let outbox = Outbox::new(300);
        let mut batch = VecDeque::new();
        // An answer alone wakes the writer, with no frame to send: it flushes.
        assert_eq!(outbox.answered(127), Pushed::Queued);
        let taken = tokio::time::timeout(Duration::from_secs(1), outbox.take(&mut batch)).await;
        assert_eq!(taken.expect("woken by an answer"), (Then::More, 127));
        assert!(batch.is_empty());
        // Not yet written: still counted, with frames and other answers.
        assert_eq!(outbox.answered(127), Pushed::Queued);
        assert_eq!(outbox.answered(127), Pushed::Full, "past the bound");
        tokio::time::timeout(Duration::from_secs(1), outbox.kicked()).await.expect("kicked");
        outbox.written(127);
        assert_eq!(outbox.push(text("frame")), Pushed::Queued);
        assert_eq!(outbox.take(&mut batch).await, (Then::More, 127));
        assert_eq!(texts(&batch), ["frame"]);
    }
}
