//! What the app allows a client (PROTOCOL.md, "Limits and hostile clients"):
//! every limit is a `serve` option, with the default given there.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

/// The limits of one `serve` process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// A request head must be complete within this (`--header-timeout-secs`, 10 s).
    pub header_timeout: Duration,
    /// A request body must be complete within this of its head (`--body-timeout-secs`, 10 s).
    pub body_timeout: Duration,
    /// Connections open at once; more are closed at once (`--max-connections`, 10,000).
    pub max_connections: usize,
    /// Password checks running at once (`--max-concurrent-logins`, the number of cores).
    pub max_concurrent_logins: usize,
    /// Password checks waiting for a turn; more are answered 429.
    pub login_queue: usize,
    /// How long a login's token lives (`--login-token-ttl-secs`, 14 days).
    pub login_token_ttl: Duration,
    /// How long before its token's expiry a socket is warned (`--expiry-warning-secs`, 60 s).
    pub expiry_warning: Duration,
    /// How long a connect ticket lives (`--ticket-ttl`, 30 s).
    pub ticket_ttl: Duration,
    /// The largest request head, on every path (`--max-head-bytes`, 32 KiB):
    /// a larger one is answered 431 as soon as the bound is passed.
    pub max_head_bytes: usize,
    /// Open sockets one user may hold (`--max-sockets-per-user`, 100), and
    /// never more than half of `max_connections`.
    pub max_sockets_per_user: usize,
    /// Tokens, and tickets, one user may be issued a minute
    /// (`--max-issues-per-minute`, 30 of each).
    pub max_issues_per_minute: usize,
    /// How often expired tokens and tickets are deleted (`--purge-every-secs`, 60 s).
    pub purge_every: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        Self {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            max_connections: 10_000,
            max_concurrent_logins: cores,
            login_queue: 2 * cores,
            login_token_ttl: Duration::from_secs(14 * 24 * 3600),
            expiry_warning: Duration::from_secs(60),
            ticket_ttl: ws_token_auth::ticket::DEFAULT_TICKET_TTL,
            max_head_bytes: 32 * 1024,
            max_sockets_per_user: 100,
            max_issues_per_minute: 30,
            purge_every: Duration::from_secs(60),
        }
    }
}

/// Failed logins of one username from one address that start throttling.
pub const THROTTLE_FAILURES: usize = 5;
/// The window in which they count.
pub const THROTTLE_WINDOW: Duration = Duration::from_secs(60);
/// Past this many (address, username) pairs, old ones are swept.
const THROTTLE_SWEEP_AT: usize = 10_000;

/// Why a login was not checked: answer 429 with `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooMany {
    /// Seconds until it is worth trying again.
    pub retry_after: u64,
}

/// Password checks: bounded in number (argon2 takes ~19 MiB each) with a
/// short queue, and throttled per username and client address.
#[derive(Debug)]
pub struct LoginGate {
    permits: Arc<Semaphore>,
    /// Checks running or waiting.
    admitted: AtomicUsize,
    capacity: usize,
    attempts: Mutex<HashMap<(IpAddr, String), Attempts>>,
}

/// One username's attempts from one address.
#[derive(Debug, Default)]
struct Attempts {
    /// When the recent failures were.
    failures: VecDeque<Instant>,
    /// Attempts let through and not finished: each may still fail, so each
    /// counts against the limit until it is known.
    pending: usize,
}

/// A login attempt let through by [`LoginGate::throttled`]: it counts
/// against the limit until it is dropped (a success, or a client gone) or
/// [`failed`](Self::failed) (then it is a failure of the window).
#[derive(Debug)]
pub struct Attempt<'a> {
    gate: &'a LoginGate,
    key: Option<(IpAddr, String)>,
}

impl Attempt<'_> {
    /// The password was wrong (or the user cannot log in): a failure.
    pub fn failed(mut self) {
        if let Some(key) = self.key.take() {
            self.gate.finish(key, true);
        }
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.gate.finish(key, false);
        }
    }
}

impl LoginGate {
    /// A gate for `limits`.
    pub fn new(limits: &Limits) -> Self {
        let running = limits.max_concurrent_logins.max(1);
        Self {
            permits: Arc::new(Semaphore::new(running)),
            admitted: AtomicUsize::new(0),
            capacity: running + limits.login_queue,
            attempts: Mutex::default(),
        }
    }

    /// Lets a login for `username` from `ip` be checked, or refuses it while
    /// [`THROTTLE_FAILURES`] failures within [`THROTTLE_WINDOW`], counting
    /// the attempts still being checked as possible failures, have been
    /// reached: however many requests arrive at once, no more than
    /// [`THROTTLE_FAILURES`] wrong passwords are checked in a window. A
    /// refused attempt is not a failure: it does not extend the window.
    pub fn throttled(&self, ip: IpAddr, username: &str) -> Result<Attempt<'_>, TooMany> {
        let mut attempts = self.attempts.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if attempts.len() >= THROTTLE_SWEEP_AT {
            attempts.retain(|_, a| {
                a.pending > 0 || a.failures.back().is_some_and(|at| now.duration_since(*at) < THROTTLE_WINDOW)
            });
        }
        let key = (ip, username.to_owned());
        let entry = attempts.entry(key.clone()).or_default();
        while entry.failures.front().is_some_and(|at| now.duration_since(*at) >= THROTTLE_WINDOW) {
            entry.failures.pop_front();
        }
        if entry.failures.len() + entry.pending < THROTTLE_FAILURES {
            entry.pending += 1;
            return Ok(Attempt { gate: self, key: Some(key) });
        }
        // Full of failures: until the oldest that counts leaves the window.
        // Full of attempts in flight: soon.
        let retry_after = match entry.failures.len().checked_sub(THROTTLE_FAILURES) {
            Some(oldest) => {
                let left = THROTTLE_WINDOW.saturating_sub(now.duration_since(entry.failures[oldest]));
                left.as_secs() + 1
            }
            None => 1,
        };
        Err(TooMany { retry_after })
    }

    /// An attempt ended; `failed` records it as a failure.
    fn finish(&self, key: (IpAddr, String), failed: bool) {
        let mut attempts = self.attempts.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(entry) = attempts.get_mut(&key) else { return };
        entry.pending = entry.pending.saturating_sub(1);
        if failed {
            entry.failures.push_back(Instant::now());
            if entry.failures.len() > THROTTLE_FAILURES {
                entry.failures.pop_front();
            }
        }
        if entry.pending == 0 && entry.failures.is_empty() {
            attempts.remove(&key);
        }
    }

    /// Runs `check` (a password hash comparison) on the blocking pool when a
    /// turn comes; refuses at once when the queue is full. The turn is held
    /// until the check ends, even if the client goes away meanwhile, so that
    /// memory stays bounded whatever the number of login requests.
    pub async fn check<T: Send + 'static>(&self, check: impl FnOnce() -> T + Send + 'static) -> Result<T, TooMany> {
        if self.admitted.fetch_add(1, Ordering::SeqCst) >= self.capacity {
            self.admitted.fetch_sub(1, Ordering::SeqCst);
            return Err(TooMany { retry_after: 1 });
        }
        struct Admitted<'a>(&'a AtomicUsize);
        impl Drop for Admitted<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        let _admitted = Admitted(&self.admitted);
        let permit = Arc::clone(&self.permits).acquire_owned().await.map_err(|_| TooMany { retry_after: 1 })?;
        tokio::task::spawn_blocking(move || {
            let _turn = permit;
            check()
        })
        .await
        .map_err(|_| TooMany { retry_after: 1 })
    }
}

/// At most `max` events per key within `window`: issued tokens and tickets
/// per user (PROTOCOL.md: `--max-issues-per-minute`).
#[derive(Debug)]
pub struct RateLimit<K> {
    max: usize,
    window: Duration,
    seen: Mutex<HashMap<K, VecDeque<Instant>>>,
}

impl<K: std::hash::Hash + Eq + Clone> RateLimit<K> {
    /// `max` events per key within `window`.
    pub fn new(max: usize, window: Duration) -> Self {
        Self { max: max.max(1), window, seen: Mutex::default() }
    }

    /// Counts one event for `key`, or refuses it (not counted) when `key`
    /// had `max` within the window.
    pub fn take(&self, key: &K) -> Result<(), TooMany> {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if seen.len() >= THROTTLE_SWEEP_AT {
            seen.retain(|_, times| times.back().is_some_and(|at| now.duration_since(*at) < self.window));
        }
        let times = seen.entry(key.clone()).or_default();
        while times.front().is_some_and(|at| now.duration_since(*at) >= self.window) {
            times.pop_front();
        }
        if let Some(oldest) = times.front().filter(|_| times.len() >= self.max) {
            let left = self.window.saturating_sub(now.duration_since(*oldest));
            return Err(TooMany { retry_after: left.as_secs() + 1 });
        }
        times.push_back(now);
        Ok(())
    }
}

/// Open sockets per user, capped (PROTOCOL.md: `--max-sockets-per-user`).
#[derive(Debug)]
pub struct UserSockets {
    cap: usize,
    open: Mutex<HashMap<i64, usize>>,
}

/// One open socket of a user: counted until dropped.
#[derive(Debug)]
pub struct UserSocket {
    owner: Arc<UserSockets>,
    user: i64,
}

/// How long a user at its socket cap is asked to wait before trying again.
pub const SOCKETS_RETRY_AFTER: u64 = 5;

impl UserSockets {
    /// At most `limits.max_sockets_per_user` sockets per user, and never more
    /// than half of `limits.max_connections`: one user's sockets cannot take
    /// the connections the others need.
    pub fn new(limits: &Limits) -> Self {
        let cap = limits.max_sockets_per_user.min(limits.max_connections / 2).max(1);
        Self { cap, open: Mutex::default() }
    }

    /// The most sockets one user may hold.
    pub fn cap(&self) -> usize {
        self.cap
    }

    /// Counts a socket of `user`, or refuses it when the user holds the cap.
    pub fn open(self: &Arc<Self>, user: i64) -> Result<UserSocket, TooMany> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(user).or_default();
        if *count >= self.cap {
            return Err(TooMany { retry_after: SOCKETS_RETRY_AFTER });
        }
        *count += 1;
        Ok(UserSocket { owner: Arc::clone(self), user })
    }

    /// How many sockets `user` holds.
    pub fn held(&self, user: i64) -> usize {
        self.open.lock().unwrap_or_else(PoisonError::into_inner).get(&user).copied().unwrap_or(0)
    }
}

impl Drop for UserSocket {
    fn drop(&mut self) {
        let mut open = self.owner.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.user) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_failures_throttle_that_username_from_that_address_only() {
        let gate = LoginGate::new(&Limits::default());
        let (a, b): (IpAddr, IpAddr) = ("127.0.0.1".parse().unwrap(), "127.0.0.2".parse().unwrap());
        for _ in 0..THROTTLE_FAILURES {
            gate.throttled(a, "alice").unwrap().failed();
        }
        let refused = gate.throttled(a, "alice").unwrap_err();
        assert!((2..=61).contains(&refused.retry_after), "{refused:?}");
        assert!(gate.throttled(b, "alice").is_ok(), "another address");
        assert!(gate.throttled(a, "bob").is_ok(), "another username");
    }

    #[test]
    fn attempts_in_flight_count_so_a_burst_checks_no_more_than_the_limit() {
        let gate = LoginGate::new(&Limits::default());
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        // A burst: every attempt let through before any is known to fail.
        let burst: Vec<_> = (0..50).filter_map(|_| gate.throttled(a, "alice").ok()).collect();
        assert_eq!(burst.len(), THROTTLE_FAILURES, "let through at once");
        for attempt in burst {
            attempt.failed();
        }
        assert!(gate.throttled(a, "alice").is_err(), "the right password waits for the window too");
        // A success (dropped, not failed) frees its place and records nothing.
        let gate = LoginGate::new(&Limits::default());
        drop(gate.throttled(a, "bob").unwrap());
        for _ in 0..THROTTLE_FAILURES {
            gate.throttled(a, "bob").unwrap().failed();
        }
        assert!(gate.throttled(a, "bob").is_err());
    }

    #[test]
    fn issues_are_limited_per_key_within_the_window() {
        let limit = RateLimit::new(3, Duration::from_secs(60));
        for _ in 0..3 {
            assert_eq!(limit.take(&1), Ok(()));
        }
        let refused = limit.take(&1).unwrap_err();
        assert!((59..=61).contains(&refused.retry_after), "{refused:?}");
        assert_eq!(limit.take(&2), Ok(()), "another user");
        let short = RateLimit::new(1, Duration::from_millis(50));
        assert_eq!(short.take(&1), Ok(()));
        assert!(short.take(&1).is_err());
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(short.take(&1), Ok(()), "the window passed");
    }

    #[test]
    fn a_user_holds_at_most_its_cap_and_never_half_the_connections() {
        let limits = Limits { max_sockets_per_user: 3, max_connections: 100, ..Limits::default() };
        let sockets = Arc::new(UserSockets::new(&limits));
        let held: Vec<_> = (0..3).map(|_| sockets.open(7).unwrap()).collect();
        assert_eq!(sockets.open(7).unwrap_err().retry_after, SOCKETS_RETRY_AFTER);
        assert!(sockets.open(8).is_ok(), "another user");
        drop(held);
        assert_eq!(sockets.held(7), 0);
        assert!(sockets.open(7).is_ok());
        let small = Limits { max_sockets_per_user: 100, max_connections: 6, ..Limits::default() };
        assert_eq!(UserSockets::new(&small).cap(), 3, "half the connection cap");
    }

    #[tokio::test]
    async fn checks_beyond_the_queue_are_refused_and_the_rest_run() {
        let limits = Limits { max_concurrent_logins: 1, login_queue: 1, ..Limits::default() };
        let gate = Arc::new(LoginGate::new(&limits));
        let slow = || std::thread::sleep(Duration::from_millis(200));
        let runs: Vec<_> = (0..4)
            .map(|_| {
                let gate = Arc::clone(&gate);
                tokio::spawn(async move { gate.check(slow).await })
            })
            .collect();
        let mut refused = 0;
        for run in runs {
            refused += usize::from(run.await.unwrap().is_err());
        }
        assert_eq!(refused, 2, "one running, one waiting, two refused");
        assert!(gate.check(|| 7).await == Ok(7), "free again");
    }
}
