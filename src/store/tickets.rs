//! The ticket contract of the stores ([`TicketStore`], public as
//! `ticket::TicketStore`): here, beside the stores that implement it, so
//! that the stores need nothing from the ticket module above them.

use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;

use crate::store::StoreError;
use crate::token::DIGEST_LEN;

/// Where tickets wait for their one use: a record per ticket, named by the
/// ticket's SHA-256 digest, holding bytes the store need not understand.
///
/// [`MemoryTokenStore`](crate::MemoryTokenStore), `SqlTokenStore` and
/// `RedisTokenStore` implement it (a `CachedTokenStore` passes it to the store
/// behind it); an app with its own token store can use one of those for its
/// tickets, or implement the two methods on its own database.
///
/// ```
/// use std::collections::HashMap;
/// use std::sync::Mutex;
/// use std::time::SystemTime;
/// use async_trait::async_trait;
/// use ws_token_auth::{DIGEST_LEN, StoreError, ticket::TicketStore};
///
/// #[derive(Default)]
/// struct MyTickets(Mutex<HashMap<[u8; DIGEST_LEN], (Vec<u8>, SystemTime)>>);
///
/// #[async_trait]
/// impl TicketStore for MyTickets {
///     async fn put_ticket(&self, digest: &[u8; DIGEST_LEN], record: &[u8], expires_at: SystemTime) -> Result<(), StoreError> {
///         self.0.lock().unwrap().insert(*digest, (record.to_vec(), expires_at));
///         Ok(())
///     }
///     async fn take_ticket(&self, digest: &[u8; DIGEST_LEN]) -> Result<Option<Vec<u8>>, StoreError> {
///         // Removal and answer in one step: the second taker finds nothing.
///         let taken = self.0.lock().unwrap().remove(digest);
///         Ok(taken.filter(|(_, at)| *at > SystemTime::now()).map(|(record, _)| record))
///     }
/// }
/// ```
#[async_trait]
pub trait TicketStore: Send + Sync + 'static {
    /// Keeps `record` under the ticket digest `digest` until `expires_at`.
    async fn put_ticket(
        &self,
        digest: &[u8; DIGEST_LEN],
        record: &[u8],
        expires_at: SystemTime,
    ) -> Result<(), StoreError>;

    /// Removes the ticket `digest` and returns its record, atomically: of any
    /// number of calls for one ticket, at once or not, on one node or many,
    /// exactly one gets it. `None` for an unknown, used or expired ticket.
    async fn take_ticket(&self, digest: &[u8; DIGEST_LEN]) -> Result<Option<Vec<u8>>, StoreError>;
}

macro_rules! forward_tickets {
    ($($ptr:ident),*) => {$(
        #[async_trait]
        impl<T: TicketStore + ?Sized> TicketStore for $ptr<T> {
            async fn put_ticket(
                &self,
                digest: &[u8; DIGEST_LEN],
                record: &[u8],
                expires_at: SystemTime,
            ) -> Result<(), StoreError> {
                (**self).put_ticket(digest, record, expires_at).await
            }
            async fn take_ticket(&self, digest: &[u8; DIGEST_LEN]) -> Result<Option<Vec<u8>>, StoreError> {
                (**self).take_ticket(digest).await
            }
        }
    )*};
}
forward_tickets!(Arc, Box);
