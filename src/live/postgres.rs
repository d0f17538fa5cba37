//! Access events across nodes over PostgreSQL's `LISTEN`/`NOTIFY` (feature
//! `postgres`): a deployment with PostgreSQL and no Redis gets the same
//! cross-node lifecycle as with [`RevocationBus`](super::redis::RevocationBus).
//!
//! Every node hands a [`PgBus`] over one channel to its
//! [`Lifecycle`](crate::Lifecycle) with
//! [`with_bus`](crate::Lifecycle::with_bus). A change made on any node is sent
//! with `pg_notify` and applied on every node, to its cache and its open
//! sockets. The listener runs on a connection of its own, reconnects by itself
//! (250 ms doubling to 5 s) and, after a gap in which it may have missed
//! notifications, the lifecycle's cache forgets every answer and the
//! lifecycle revalidates every open socket's token once.
//!
//! The payload is the event's text ([`AccessEvent`]'s `Display`: `token
//! revoked <id>`, `user access_lost <user>`, `restore <user>`, `revalidate
//! <user>`), never a token, so a database trigger can send one too (the
//! Django integration's triggers do: `revalidate <user>` for a password
//! change, which ends some credentials of a user and not others, so that only
//! the store can judge them). One more payload, `revalidate` alone, asks every
//! node to empty its cache and revalidate all its sockets' tokens with the
//! store now (after a bulk change, say).
//!
//! Which bus: PostgreSQL's needs nothing more than the database the tokens are
//! in; each notification goes through the database's single notification
//! queue, in commit order, and each node holds a connection for listening.
//! Measured side by side (BENCHMARKS.md, four runs), a revocation crosses it
//! in 0.22-0.27 ms at p50, about 2.2-2.4x Redis's 0.09-0.13 ms: both far
//! under a millisecond.
//! Redis's pub/sub keeps the load off the database: pick it for many nodes or
//! frequent changes.
//!
//! ```no_run
//! use ws_token_auth::{Lifecycle, MemoryTokenStore, live::postgres::PgBus};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let pool = sqlx::PgPool::connect("postgres://postgres@127.0.0.1/app").await?;
//! let store = std::sync::Arc::new(MemoryTokenStore::<String>::new());
//! let lifecycle = Lifecycle::new(store).with_bus(PgBus::new(pool, "myapp_access"));
//! # let _ = lifecycle;
//! # Ok(()) }
//! ```

use std::time::Duration;

use async_trait::async_trait;
use sqlx::PgPool;
use sqlx::postgres::PgListener;

use super::listening::{Subscription, keep_listening};
use super::{AccessEvent, Bus, BusError, Listener};

/// The payload that asks every node to empty its cache and revalidate its
/// sockets' tokens.
pub const REVALIDATE: &str = super::listening::REVALIDATE;

/// A [`Bus`] over PostgreSQL `LISTEN`/`NOTIFY` on one channel. See the
/// [module docs](self).
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use ws_token_auth::live::{Bus, AccessEvent, postgres::PgBus};
///
/// let pool = sqlx::PgPool::connect("postgres://postgres@127.0.0.1/app").await?;
/// let bus = PgBus::new(pool, "myapp_access");
/// bus.publish(&AccessEvent::user_revoked("42")).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct PgBus {
    pool: PgPool,
    channel: String,
}

impl PgBus {
    /// A bus over `pool` on `channel` (any text: the listener quotes it).
    pub fn new(pool: PgPool, channel: impl Into<String>) -> Self {
        Self { pool, channel: channel.into() }
    }

    /// The channel's name.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), sqlx::Error> {
    /// # let pool = sqlx::PgPool::connect("postgres://postgres@127.0.0.1/app").await?;
    /// let bus = ws_token_auth::live::postgres::PgBus::new(pool, "myapp_access");
    /// assert_eq!(bus.channel(), "myapp_access");
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn channel(&self) -> &str {
        &self.channel
    }
}

#[async_trait]
impl Bus for PgBus {
    async fn publish(&self, event: &AccessEvent) -> Result<(), BusError> {
        let notify = sqlx::query("SELECT pg_notify($1, $2)").bind(&self.channel).bind(event.to_string());
        match tokio::time::timeout(Duration::from_secs(5), notify.execute(&self.pool)).await {
            Ok(done) => done.map(drop).map_err(BusError::new),
            Err(_) => Err(BusError::new("pg_notify timed out after 5 s")),
        }
    }

    /// LISTEN on a connection of its own, in a task that reconnects by
    /// itself (250 ms doubling to 5 s) and calls [`Listener::gap`] after each
    /// reconnection, and on a [`REVALIDATE`] notification.
    fn listen(&self, listener: Listener) {
        let (pool, channel) = (self.pool.clone(), self.channel.clone());
        keep_listening(listener, "postgres", channel.clone(), move || {
            let (pool, channel) = (pool.clone(), channel.clone());
            async move { subscribe(&pool, &channel).await }
        });
    }
}

#[async_trait]
impl Subscription for PgListener {
    async fn next_text(&mut self) -> Option<String> {
        // `try_recv` answers None when the connection is lost.
        self.try_recv().await.ok().flatten().map(|notification| notification.payload().to_owned())
    }
}

async fn subscribe(pool: &PgPool, channel: &str) -> Result<PgListener, sqlx::Error> {
    let connect = async {
        let mut listener = PgListener::connect_with(pool).await?;
        listener.listen(channel).await?;
        Ok(listener)
    };
    tokio::time::timeout(Duration::from_secs(5), connect).await.unwrap_or(Err(sqlx::Error::PoolTimedOut))
}
