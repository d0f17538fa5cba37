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
    failures: Mutex<HashMap<(IpAddr, String), VecDeque<Instant>>>,
}

impl LoginGate {
    /// A gate for `limits`.
    pub fn new(limits: &Limits) -> Self {
        let running = limits.max_concurrent_logins.max(1);
        Self {
            permits: Arc::new(Semaphore::new(running)),
            admitted: AtomicUsize::new(0),
            capacity: running + limits.login_queue,
            failures: Mutex::default(),
        }
    }

    /// Refuses a login for `username` from `ip` while it has had
    /// [`THROTTLE_FAILURES`] failures within [`THROTTLE_WINDOW`]. A throttled
    /// attempt is not a failure: it does not extend the window.
    pub fn throttled(&self, ip: IpAddr, username: &str) -> Result<(), TooMany> {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let Some(times) = failures.get_mut(&(ip, username.to_owned())) else { return Ok(()) };
        while times.front().is_some_and(|at| now.duration_since(*at) >= THROTTLE_WINDOW) {
            times.pop_front();
        }
        if times.len() < THROTTLE_FAILURES {
            return Ok(());
        }
        let oldest = times[times.len() - THROTTLE_FAILURES];
        let left = THROTTLE_WINDOW.saturating_sub(now.duration_since(oldest));
        Err(TooMany { retry_after: left.as_secs() + 1 })
    }

    /// Records a failed login of `username` from `ip`.
    pub fn failed(&self, ip: IpAddr, username: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if failures.len() >= THROTTLE_SWEEP_AT {
            failures.retain(|_, times| times.back().is_some_and(|at| now.duration_since(*at) < THROTTLE_WINDOW));
        }
        let times = failures.entry((ip, username.to_owned())).or_default();
        times.push_back(now);
        if times.len() > THROTTLE_FAILURES {
            times.pop_front();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_failures_throttle_that_username_from_that_address_only() {
        let gate = LoginGate::new(&Limits::default());
        let (a, b): (IpAddr, IpAddr) = ("127.0.0.1".parse().unwrap(), "127.0.0.2".parse().unwrap());
        for _ in 0..THROTTLE_FAILURES {
            assert_eq!(gate.throttled(a, "alice"), Ok(()));
            gate.failed(a, "alice");
        }
        let refused = gate.throttled(a, "alice").unwrap_err();
        assert!((1..=60).contains(&refused.retry_after), "{refused:?}");
        assert_eq!(gate.throttled(b, "alice"), Ok(()), "another address");
        assert_eq!(gate.throttled(a, "bob"), Ok(()), "another username");
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
