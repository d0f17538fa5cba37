//! One Redis connection that is replaced whenever it may be broken (feature
//! `redis`). Shared by `RedisTokenStore` and `RevocationBus`.
//!
//! redis' own `ConnectionManager` reconnects only when a command fails; when
//! the caller gives up first (the layer's store timeout drops the lookup), it
//! may never learn, and stays on a dead connection. Here a command that does
//! not finish, or fails with a connection error, discards its connection, and
//! the next command connects anew (one connect at a time, bounded in time).

use std::future::Future;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, RedisError, RedisResult};

/// How long connecting, and then each command, may take.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
pub(crate) const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

pub(crate) struct Reconnecting {
    client: Client,
    /// The current connection and its generation.
    slot: Mutex<(u64, Option<MultiplexedConnection>)>,
    /// Held while connecting, so a burst of commands makes one connection.
    connecting: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Reconnecting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reconnecting").finish_non_exhaustive()
    }
}

impl Reconnecting {
    pub(crate) fn new(client: Client) -> Self {
        Self { client, slot: Mutex::new((0, None)), connecting: tokio::sync::Mutex::new(()) }
    }

    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    fn current(&self) -> (u64, Option<MultiplexedConnection>) {
        self.slot.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn discard(&self, generation: u64) {
        let mut slot = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.0 == generation {
            slot.1 = None;
        }
    }

    /// The current connection, or a new one.
    pub(crate) async fn connection(&self) -> RedisResult<(u64, MultiplexedConnection)> {
        if let (generation, Some(conn)) = self.current() {
            return Ok((generation, conn));
        }
        let _connecting = self.connecting.lock().await;
        if let (generation, Some(conn)) = self.current() {
            return Ok((generation, conn)); // made while we waited
        }
        let config =
            AsyncConnectionConfig::new().set_connection_timeout(CONNECT_TIMEOUT).set_response_timeout(COMMAND_TIMEOUT);
        let connect = self.client.get_multiplexed_async_connection_with_config(&config);
        let conn = tokio::time::timeout(CONNECT_TIMEOUT + Duration::from_millis(500), connect)
            .await
            .unwrap_or_else(|_| Err(timed_out()))?;
        let mut slot = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
        slot.0 += 1;
        slot.1 = Some(conn.clone());
        Ok((slot.0, conn))
    }

    /// Runs one command (or pipeline) on the connection. If it fails with a
    /// connection error, or is dropped before it finishes, the connection is
    /// discarded.
    pub(crate) async fn run<T, F, Fut>(&self, command: F) -> RedisResult<T>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let (generation, conn) = self.connection().await?;
        let mut guard = DiscardUnlessDone { owner: self, generation, done: false };
        let result = command(conn).await;
        guard.done = !matches!(&result, Err(e) if is_connection_error(e));
        result
    }
}

struct DiscardUnlessDone<'a> {
    owner: &'a Reconnecting,
    generation: u64,
    done: bool,
}

impl Drop for DiscardUnlessDone<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.owner.discard(self.generation);
        }
    }
}

/// Errors that say the connection is unusable, not that a command was wrong.
pub(crate) fn is_connection_error(error: &RedisError) -> bool {
    error.is_io_error()
        || error.is_timeout()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_unrecoverable_error()
}

pub(crate) fn timed_out() -> RedisError {
    RedisError::from((redis::ErrorKind::IoError, "timed out connecting to Redis"))
}
