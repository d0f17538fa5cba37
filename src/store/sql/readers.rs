//! [`Readers`]: SQLite connections of the store's own, for token lookups.
//!
//! sqlx runs each SQLite connection on a thread of its own, so every query is
//! a round trip to that thread. Through the pool, a lookup pays more: a
//! check-out, a spawned task to give the connection back, and a ping on the
//! way back (a second round trip). A handshake that misses the cache waits
//! for all of it, so the store keeps a few connections for its lookups and
//! pays one round trip each (BENCHMARKS.md, issue 14's third pass).

use std::sync::atomic::{AtomicUsize, Ordering};

use sqlx::sqlite::{SqliteConnection, SqlitePool, SqliteRow};
use sqlx::{ConnectOptions, Error};
use tokio::sync::Mutex;

/// Connections that only run the token lookup, opened on first use with the
/// pool's own options (same file, same pragmas), and kept.
pub(super) struct Readers {
    slots: Box<[Mutex<Option<SqliteConnection>>]>,
    next: AtomicUsize,
}

impl std::fmt::Debug for Readers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readers").field("slots", &self.slots.len()).finish_non_exhaustive()
    }
}

impl Readers {
    /// Room for as many connections as the machine has cores (2 to 8).
    pub(super) fn for_this_machine() -> Self {
        let count = crate::store::table::lookup_connections();
        Self { slots: (0..count).map(|_| Mutex::new(None)).collect(), next: AtomicUsize::new(0) }
    }

    /// Runs `sql` with `id` bound to its one parameter on a free connection
    /// (else waits for the next in turn), opening it if need be.
    pub(super) async fn fetch_all(&self, pool: &SqlitePool, sql: &str, id: String) -> Result<Vec<SqliteRow>, Error> {
        if pool.is_closed() {
            return Err(Error::PoolClosed);
        }
        let first = self.next.fetch_add(1, Ordering::Relaxed);
        let free = (0..self.slots.len()).find_map(|i| self.slots[(first + i) % self.slots.len()].try_lock().ok());
        let mut slot = match free {
            Some(slot) => slot,
            None => self.slots[first % self.slots.len()].lock().await,
        };
        // Out of its slot while in use: if this future is dropped mid-query
        // (a store timeout) or the query fails, the connection goes, and the
        // next lookup here opens a fresh one.
        let mut connection = match slot.take() {
            Some(connection) => connection,
            None => pool.connect_options().connect().await?,
        };
        let rows = sqlx::query(sql).bind(id).fetch_all(&mut connection).await?;
        *slot = Some(connection);
        Ok(rows)
    }
}
