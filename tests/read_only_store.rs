//! Watching without managing: a store that can only answer (another app's
//! tables, read-only, as Django's are to this crate) gets the whole socket
//! side of the lifecycle: watches, revalidation with the right close codes,
//! and the other nodes' changes. Issuing, revoking and locking are not
//! there to call (they need `ManageTokens`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use ws_token_auth::extract::CredentialKind;
use ws_token_auth::live::{AccessEvent, CloseReason};
use ws_token_auth::{Authenticated, AuthenticatedUser, Lifecycle, StoreError, Token, TokenStore};

/// Rows another app writes: token digest to (user, active).
#[derive(Default)]
struct TheirTables(Mutex<HashMap<[u8; 32], (String, bool)>>);

#[async_trait]
impl TokenStore for TheirTables {
    type User = String;

    async fn authenticate(&self, token: &Token) -> Result<Option<Authenticated<String>>, StoreError> {
        let rows = self.0.lock().unwrap();
        Ok(rows.get(token.digest()).filter(|(_, active)| *active).map(|(user, _)| Authenticated::new(user.clone())))
    }

    async fn is_locked_out(&self, token: &Token) -> Result<bool, StoreError> {
        Ok(self.0.lock().unwrap().get(token.digest()).is_some_and(|(_, active)| !active))
    }
}

fn socket(user: &str, token: &Token) -> AuthenticatedUser<String> {
    AuthenticatedUser::new(user.to_owned(), token.clone(), CredentialKind::Cookie, None)
}

async fn within(watch: ws_token_auth::live::Watch) -> CloseReason {
    tokio::time::timeout(Duration::from_secs(2), watch).await.expect("the socket was not closed")
}

#[tokio::test]
async fn a_read_only_store_gets_watches_and_revalidation_with_the_right_codes() {
    let tables = Arc::new(TheirTables::default());
    let (alice, bob, carol) = (Token::generate(), Token::generate(), Token::generate());
    for (token, user) in [(&alice, "alice"), (&bob, "bob"), (&carol, "carol")] {
        tables.0.lock().unwrap().insert(*token.digest(), (user.to_owned(), true));
    }
    let lifecycle = Lifecycle::new(Arc::clone(&tables));
    let alice_socket = lifecycle.watch(&socket("alice", &alice));
    let bob_socket = lifecycle.watch(&socket("bob", &bob));
    let carol_socket = lifecycle.watch(&socket("carol", &carol));

    // The other app logs alice out (deletes her row) and deactivates bob.
    tables.0.lock().unwrap().remove(alice.digest());
    tables.0.lock().unwrap().get_mut(bob.digest()).unwrap().1 = false;
    assert_eq!(lifecycle.revalidate_once().await, 2);
    assert_eq!(within(alice_socket).await, CloseReason::Revoked);
    assert_eq!(within(bob_socket).await, CloseReason::AccessLost);

    // A change heard from another node applies here too.
    assert_eq!(lifecycle.heard(&AccessEvent::user_locked_out("carol")).await, 1);
    assert_eq!(within(carol_socket).await, CloseReason::AccessLost);
}
