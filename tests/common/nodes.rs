//! Two nodes over one bus (any `Bus`): each node has its own cache in front
//! of one shared store. The scenario every bus must pass.

use std::sync::Arc;
use std::time::Duration;

use ws_token_auth::extract::CredentialKind;
use ws_token_auth::live::CloseReason;
use ws_token_auth::store::{CachedTokenStore, ManageTokens};
use ws_token_auth::{AuthenticatedUser, Lifecycle, MemoryTokenStore, Token, TokenStore};

/// The store the nodes share.
pub type Shared = Arc<MemoryTokenStore<String>>;
/// A node: its own cache over the shared store.
pub type Node = Lifecycle<CachedTokenStore<Shared>>;

/// A node's lifecycle over its own cache of `store` (give it a bus).
pub fn cached(store: &Shared) -> Node {
    Lifecycle::new(Arc::new(CachedTokenStore::new(Arc::clone(store))))
}

/// A socket of `token`'s user on `node`, authenticated through its cache
/// (which now holds the answer).
pub async fn socket_on(node: &Node, token: &Token) -> AuthenticatedUser<String> {
    let found = node.store().authenticate(token).await.unwrap().expect("a valid token");
    AuthenticatedUser::new(found.user, token.clone(), CredentialKind::Cookie, None)
}

/// Whether `node` (through its cache) accepts `token`.
pub async fn accepted(node: &Node, token: &Token) -> bool {
    node.store().authenticate(token).await.unwrap().is_some()
}

async fn within<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(1), future).await.expect("not within 1 s")
}

/// Nodes `a` and `b` (listening on one bus, over `store`): a logout and a
/// lock-out made on A close B's sockets with their reasons and empty B's
/// cache; a let-in made on B is accepted on A again, whatever A's cache
/// held; other sockets stay open.
pub async fn a_change_on_one_node_reaches_the_other(a: &Node, b: &Node, store: &Shared) {
    let alice = store.issue(&"alice".to_owned(), None).await.unwrap();
    let bob = store.issue(&"bob".to_owned(), None).await.unwrap();
    let alice_on_b = b.watch(&socket_on(b, &alice).await);
    let mut bob_on_b = b.watch(&socket_on(b, &bob).await);
    let bob_on_a = a.watch(&socket_on(a, &bob).await);

    // Logout on node A: one call.
    assert!(a.revoke(&alice).await.unwrap());
    assert_eq!(within(alice_on_b).await, CloseReason::Revoked);
    assert!(!accepted(b, &alice).await, "node B's cache refuses it at once");
    assert_eq!(bob_on_b.reason(), None, "other tokens stay open");

    // Lock-out on node A: 4403 everywhere, refused everywhere.
    a.lock_out(&"bob".to_owned()).await.unwrap();
    assert_eq!(within(bob_on_a).await, CloseReason::AccessLost);
    assert_eq!(within(&mut bob_on_b).await.code(), 4403);
    assert!(!accepted(a, &bob).await && !accepted(b, &bob).await);

    // Let in on node B: accepted again on node A, whatever A's cache held.
    b.let_in(&"bob".to_owned()).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    while !accepted(a, &bob).await {
        assert!(tokio::time::Instant::now() < deadline, "node A still refuses bob 1 s after the let-in");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(bob_on_b);
    assert!(a.revocations().is_empty() && b.revocations().is_empty());
}
