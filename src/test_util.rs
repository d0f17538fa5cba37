//! The store conformance suite (feature `test-util`): what every shipped
//! store passes, for a store of your own to pass too. Each row gets a fresh
//! store from your factory, issues tokens to the users you give, and checks
//! one promise of [`TokenStore`], [`ManageTokens`] or [`TicketStore`] the
//! way the crate's own tests do: issue and authenticate, unknown and revoked
//! tokens, revoking a user, locking out and letting in (the lifecycle issues
//! a locked-out user nothing), expiry and purging, 40 users at once, and
//! that no token or ticket is stored in clear; tickets: one socket per
//! ticket, a hundred racing redemptions with one winner, revocation and
//! expiry, a ticket is no token and a token no ticket.
//!
//! ```
//! use std::sync::Arc;
//! use ws_token_auth::MemoryTokenStore;
//! use ws_token_auth::test_util::{Subject, check_tickets, check_tokens};
//!
//! async fn subject() -> Subject<MemoryTokenStore<String>> {
//!     let store = Arc::new(MemoryTokenStore::new());
//!     let users = (1..=40).map(|i| format!("user{i}")).collect();
//!     // What the store keeps, as text: for a database, a dump of its tables.
//!     let seen = Arc::clone(&store);
//!     Subject::new(store, users, move || {
//!         let seen = Arc::clone(&seen);
//!         async move { format!("{:?}", seen.digests()) }
//!     })
//! }
//!
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() {
//! check_tokens(subject).await;
//! check_tickets(subject).await;
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderValue, Uri};

use crate::authenticator::Authenticator;
use crate::extract::{CredentialKind, TokenSource};
use crate::identity::Identity;
use crate::lifecycle::Lifecycle;
use crate::rejection::Rejection;
use crate::store::{Authenticated, ManageTokens, StoreError, TokenStore, TokenUser};
use crate::ticket::TicketStore;
use crate::token::{Token, TokenId};

type Stored = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = String> + Send>> + Send + Sync>;

/// A store under test: the store, the users to issue tokens to, and how to
/// read what the store keeps.
///
/// ```
/// use std::sync::Arc;
/// use ws_token_auth::{MemoryTokenStore, test_util::Subject};
///
/// let store = Arc::new(MemoryTokenStore::<String>::new());
/// let users = (1..=5).map(|i| format!("user{i}")).collect();
/// let subject = Subject::new(store, users, || async { String::from("(what the store keeps)") });
/// # let _ = subject;
/// ```
pub struct Subject<St: TokenStore> {
    store: Arc<St>,
    users: Vec<St::User>,
    stored: Stored,
}

impl<St: TokenStore> fmt::Debug for Subject<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subject").field("users", &self.users.len()).finish_non_exhaustive()
    }
}

impl<St: TokenStore> Subject<St> {
    /// `store`, fresh (no tokens yet); `users`, at least 5 distinct ones
    /// the store can issue tokens to (40 make the concurrency row busy);
    /// `stored`, everything the store keeps as text (for a database, its
    /// tables' rows), where the suite looks for tokens and tickets in clear.
    ///
    /// # Panics
    /// With fewer than 5 users.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use ws_token_auth::{MemoryTokenStore, test_util::Subject};
    ///
    /// let store = Arc::new(MemoryTokenStore::<String>::new());
    /// let users = (1..=5).map(|i| format!("user{i}")).collect();
    /// let _ = Subject::new(store, users, || async { String::new() });
    /// ```
    pub fn new<F, Fut>(store: Arc<St>, users: Vec<St::User>, stored: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = String> + Send + 'static,
    {
        assert!(users.len() >= 5, "the suite needs at least 5 users, got {}", users.len());
        Self { store, users, stored: Arc::new(move || Box::pin(stored())) }
    }
}

/// Runs every token row, each on a fresh subject from `make`; panics on the
/// first broken promise, naming its row.
///
/// ```
/// # use std::sync::Arc;
/// # use ws_token_auth::{MemoryTokenStore, test_util::{Subject, check_tokens}};
/// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
/// # async fn main() {
/// check_tokens(|| async {
///     let store = Arc::new(MemoryTokenStore::<String>::new());
///     let seen = Arc::clone(&store);
///     let stored = move || { let seen = Arc::clone(&seen); async move { format!("{:?}", seen.digests()) } };
///     Subject::new(store, (1..=40).map(|i| format!("user{i}")).collect(), stored)
/// })
/// .await;
/// # }
/// ```
pub async fn check_tokens<St, F, Fut>(make: F)
where
    St: ManageTokens,
    St::User: PartialEq + fmt::Debug,
    F: Fn() -> Fut,
    Fut: Future<Output = Subject<St>>,
{
    run("issue_then_authenticate", issue_then_authenticate(make().await)).await;
    run("unknown_is_none", unknown_is_none(make().await)).await;
    run("revoke_is_none", revoke_is_none(make().await)).await;
    run("revoke_user_revokes_all_of_that_user", revoke_user_revokes_all_of_that_user(make().await)).await;
    run("lock_out_and_let_in", lock_out_and_let_in(make().await)).await;
    run("expiry_is_honoured_and_purged", expiry_is_honoured_and_purged(make().await)).await;
    run("concurrent_issue_and_authenticate", concurrent_issue_and_authenticate(make().await)).await;
    run("tokens_are_never_stored_in_clear", tokens_are_never_stored_in_clear(make().await)).await;
}

/// Runs every ticket row, each on a fresh subject from `make` (a store that
/// keeps tickets too); panics on the first broken promise, naming its row.
///
/// ```
/// # use std::sync::Arc;
/// # use ws_token_auth::{MemoryTokenStore, test_util::{Subject, check_tickets}};
/// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
/// # async fn main() {
/// check_tickets(|| async {
///     let store = Arc::new(MemoryTokenStore::<String>::new());
///     let seen = Arc::clone(&store);
///     let stored = move || { let seen = Arc::clone(&seen); async move { format!("{:?}", seen.digests()) } };
///     Subject::new(store, (1..=40).map(|i| format!("user{i}")).collect(), stored)
/// })
/// .await;
/// # }
/// ```
pub async fn check_tickets<St, F, Fut>(make: F)
where
    St: ManageTokens + TicketStore,
    St::User: PartialEq + fmt::Debug,
    F: Fn() -> Fut,
    Fut: Future<Output = Subject<St>>,
{
    run("a_ticket_opens_one_socket_living_by_its_token", a_ticket_opens_one_socket_living_by_its_token(make().await))
        .await;
    run("a_hundred_racing_redemptions_have_one_winner", a_hundred_racing_redemptions_have_one_winner(make().await))
        .await;
    run("a_revoked_token_or_a_late_ticket_opens_nothing", a_revoked_token_or_a_late_ticket_opens_nothing(make().await))
        .await;
    run("a_ticket_is_no_token_and_a_token_no_ticket", a_ticket_is_no_token_and_a_token_no_ticket(make().await)).await;
    run("tickets_are_never_stored_in_clear", tickets_are_never_stored_in_clear(make().await)).await;
}

/// Runs one row, saying which if it fails.
async fn run(row: &str, check: impl Future<Output = ()>) {
    struct Row<'a>(&'a str);
    impl Drop for Row<'_> {
        fn drop(&mut self) {
            if std::thread::panicking() {
                eprintln!("store conformance: row `{}` failed", self.0);
            }
        }
    }
    let guard = Row(row);
    check.await;
    drop(guard);
}

async fn user_of<S: TokenStore>(store: &S, token: &Token) -> Option<S::User> {
    store.authenticate(token).await.unwrap().map(|found: Authenticated<S::User>| found.user)
}

async fn issue<St: ManageTokens>(store: &St, user: &St::User) -> Token {
    store.issue(user, None).await.unwrap()
}

async fn issue_then_authenticate<St>(s: Subject<St>)
where
    St: ManageTokens,
    St::User: PartialEq + fmt::Debug,
{
    let [alice, bob] = [&s.users[0], &s.users[1]].map(Clone::clone);
    let store = &*s.store;
    let (a, b) = (issue(store, &alice).await, issue(store, &bob).await);
    assert_eq!(user_of(store, &a).await, Some(alice.clone()));
    assert_eq!(user_of(store, &b).await, Some(bob));
    assert_eq!(user_of(store, &a).await, Some(alice), "a second lookup answers the same");
}

async fn unknown_is_none<St>(s: Subject<St>)
where
    St: ManageTokens,
    St::User: PartialEq + fmt::Debug,
{
    assert_eq!(user_of(&*s.store, &Token::generate()).await, None);
    assert_eq!(user_of(&*s.store, &Token::new("short").unwrap()).await, None);
}

async fn revoke_is_none<St>(s: Subject<St>)
where
    St: ManageTokens,
    St::User: PartialEq + fmt::Debug,
{
    let alice = s.users[0].clone();
    let store = &*s.store;
    let (first, second) = (issue(store, &alice).await, issue(store, &alice).await);
    assert!(user_of(store, &first).await.is_some());
    assert!(store.revoke(&first).await.unwrap(), "the store held it");
    assert_eq!(user_of(store, &first).await, None);
    assert!(!store.revoke(&first).await.unwrap(), "no longer");
    assert_eq!(user_of(store, &second).await, Some(alice), "only that token");
}

async fn revoke_user_revokes_all_of_that_user<St>(s: Subject<St>)
where
    St: ManageTokens,
    St::User: PartialEq + fmt::Debug,
{
    let [alice, bob] = [&s.users[0], &s.users[1]].map(Clone::clone);
    let store = &*s.store;
    let mut alices = Vec::new();
    for _ in 0..3 {
        alices.push(issue(store, &alice).await);
    }
    let bobs = issue(store, &bob).await;
    for token in &alices {
        assert!(user_of(store, token).await.is_some());
    }
    assert_eq!(store.revoke_user(&alice.id()).await.unwrap(), 3);
    for token in &alices {
        assert_eq!(user_of(store, token).await, None);
    }
    assert_eq!(user_of(store, &bobs).await, Some(bob));
}

async fn lock_out_and_let_in<St>(s: Subject<St>)
where
    St: ManageTokens,
    St::User: PartialEq + fmt::Debug,
{
    let [alice, bob] = [&s.users[0], &s.users[1]].map(Clone::clone);
    let store = &*s.store;
    let (a, b) = (issue(store, &alice).await, issue(store, &bob).await);
    assert!(user_of(store, &a).await.is_some());
    store.lock_out(&alice.id()).await.unwrap();
    assert_eq!(user_of(store, &a).await, None, "locked out");
    let issued_while_locked = issue(store, &alice).await;
    assert_eq!(user_of(store, &issued_while_locked).await, None, "a new token of a locked user is refused too");
    assert_eq!(user_of(store, &b).await, Some(bob), "others are not");
    // Through the lifecycle, a locked-out user is issued nothing at all.
    let lifecycle = Lifecycle::new(Arc::clone(&s.store));
    assert!(matches!(lifecycle.issue(&alice, None).await, Err(StoreError::LockedOut)));
    store.let_in(&alice.id()).await.unwrap();
    assert_eq!(user_of(store, &a).await, Some(alice.clone()), "let back in, at once");
    assert_eq!(user_of(store, &issued_while_locked).await, Some(alice.clone()));
    let token = lifecycle.issue(&alice, None).await.unwrap();
    assert_eq!(user_of(store, &token).await, Some(alice));
}

async fn expiry_is_honoured_and_purged<St>(s: Subject<St>)
where
    St: ManageTokens,
    St::User: PartialEq + fmt::Debug,
{
    let alice = s.users[0].clone();
    let store = &*s.store;
    let short = store.issue(&alice, Some(Duration::from_millis(400))).await.unwrap();
    let long = store.issue(&alice, Some(Duration::from_secs(3600))).await.unwrap();
    let found = store.authenticate(&short).await.unwrap().expect("valid before its expiry");
    assert!(found.expires_at.is_some());
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(user_of(store, &short).await, None, "expired");
    assert_eq!(user_of(store, &long).await, Some(alice));
    assert_eq!(store.purge_expired().await.unwrap(), 1, "the expired token, and only it, is purged");
    assert!(user_of(store, &long).await.is_some());
}

async fn concurrent_issue_and_authenticate<St>(s: Subject<St>)
where
    St: ManageTokens,
    St::User: PartialEq + fmt::Debug,
{
    let tasks: Vec<_> = s
        .users
        .iter()
        .cloned()
        .map(|user| {
            let store = Arc::clone(&s.store);
            tokio::spawn(async move {
                for _ in 0..5 {
                    let token = issue(&*store, &user).await;
                    assert_eq!(user_of(&*store, &token).await, Some(user.clone()));
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
}

async fn tokens_are_never_stored_in_clear<St>(s: Subject<St>)
where
    St: ManageTokens,
    St::User: PartialEq + fmt::Debug,
{
    let mut tokens = Vec::new();
    for user in &s.users[..5] {
        tokens.push(issue(&*s.store, user).await);
        tokens.push(s.store.issue(user, Some(Duration::from_secs(60))).await.unwrap());
    }
    let raw = (s.stored)().await;
    assert!(!raw.is_empty(), "the raw dump shows nothing: the check would prove nothing");
    for token in &tokens {
        let secret = token.expose_secret();
        assert!(!raw.contains(secret), "a token is stored in clear:\n{raw}");
        assert!(!raw.contains(&secret[..16]), "part of a token is stored in clear:\n{raw}");
    }
}

// --- tickets ------------------------------------------------------------------

/// An authenticator as an app's WebSocket endpoint has it: the cookie, then tickets.
fn ticketing<St: ManageTokens + TicketStore>(s: &Subject<St>) -> Authenticator<St> {
    Authenticator::from_shared(Arc::clone(&s.store))
        .sources([TokenSource::cookie("key"), TokenSource::ticket("ticket")])
        .tickets(Arc::clone(&s.store))
}

/// A ticket for a new token of `user`.
async fn ticket_for<St: ManageTokens + TicketStore>(
    auth: &Authenticator<St>,
    user: &St::User,
    ttl: Option<Duration>,
) -> (Token, String) {
    let token = auth.store().issue(user, ttl).await.unwrap();
    let owner = auth.check_token(token.expose_secret(), CredentialKind::Cookie).await.unwrap();
    let ticket = auth.issue_ticket(&owner).await.unwrap();
    (token, ticket.expose_secret().to_owned())
}

async fn connect<St: TokenStore>(
    auth: &Authenticator<St>,
    cookie: Option<&str>,
    ticket: &str,
) -> Result<(St::User, CredentialKind, TokenId), Rejection> {
    let mut headers = HeaderMap::new();
    if let Some(value) = cookie {
        headers.insert("cookie", HeaderValue::from_str(&format!("key={value}")).unwrap());
    }
    let uri: Uri = format!("/chat/stream/?ticket={ticket}").parse().unwrap();
    match auth.authenticate(&headers, &uri).await? {
        Identity::User(user) => Ok((user.user.clone(), user.credential_kind(), user.token_id())),
        Identity::Anonymous(_) => panic!("anonymous in required mode"),
    }
}

async fn a_ticket_opens_one_socket_living_by_its_token<St>(s: Subject<St>)
where
    St: ManageTokens + TicketStore,
    St::User: PartialEq + fmt::Debug,
{
    let auth = ticketing(&s);
    let alice = s.users[0].clone();
    let (token, ticket) = ticket_for(&auth, &alice, None).await;
    let (user, kind, token_id) = connect(&auth, None, &ticket).await.expect("the first use");
    assert_eq!((user, kind, token_id), (alice, CredentialKind::Ticket, token.id()), "the socket lives by the token");
    let again = connect(&auth, None, &ticket).await.unwrap_err();
    assert!(matches!(again, Rejection::InvalidToken), "used up: {again:?}");
}

async fn a_hundred_racing_redemptions_have_one_winner<St>(s: Subject<St>)
where
    St: ManageTokens + TicketStore,
    St::User: PartialEq + fmt::Debug,
{
    let auth = ticketing(&s);
    for round in 0..3 {
        let (_, ticket) = ticket_for(&auth, &s.users[round], None).await;
        let start = Arc::new(tokio::sync::Barrier::new(100));
        let racers: Vec<_> = (0..100)
            .map(|_| {
                let (auth, ticket, start) = (auth.clone(), ticket.clone(), Arc::clone(&start));
                tokio::spawn(async move {
                    start.wait().await;
                    connect(&auth, None, &ticket).await
                })
            })
            .collect();
        let mut winners = 0;
        for racer in racers {
            match racer.await.unwrap() {
                Ok(_) => winners += 1,
                Err(Rejection::InvalidToken) => {}
                Err(other) => panic!("a loser must get 401, not {other:?}"),
            }
        }
        assert_eq!(winners, 1, "round {round}: {winners} handshakes used one ticket");
    }
}

async fn a_revoked_token_or_a_late_ticket_opens_nothing<St>(s: Subject<St>)
where
    St: ManageTokens + TicketStore,
    St::User: PartialEq + fmt::Debug,
{
    let auth = ticketing(&s).ticket_ttl(Duration::from_millis(300));
    let alice = s.users[0].clone();
    let (token, ticket) = ticket_for(&auth, &alice, None).await;
    let (_, spare) = ticket_for(&auth, &alice, None).await;
    assert!(auth.store().revoke(&token).await.unwrap());
    assert!(matches!(connect(&auth, None, &ticket).await, Err(Rejection::InvalidToken)), "voided with its token");
    let (_, late) = ticket_for(&auth, &alice, None).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(matches!(connect(&auth, None, &late).await, Err(Rejection::InvalidToken)), "expired");
    assert!(matches!(connect(&auth, None, &spare).await, Err(Rejection::InvalidToken)), "expired too");

    // Never past the token's own expiry.
    let long = ticketing(&s);
    let token = long.store().issue(&alice, Some(Duration::from_millis(400))).await.unwrap();
    let owner = long.check_token(token.expose_secret(), CredentialKind::Cookie).await.unwrap();
    let ticket = long.issue_ticket(&owner).await.unwrap();
    assert!(ticket.expires_in() <= Duration::from_millis(400), "{:?}", ticket.expires_in());
}

async fn a_ticket_is_no_token_and_a_token_no_ticket<St>(s: Subject<St>)
where
    St: ManageTokens + TicketStore,
    St::User: PartialEq + fmt::Debug,
{
    let auth = ticketing(&s);
    let alice = s.users[0].clone();
    let (token, ticket) = ticket_for(&auth, &alice, None).await;
    let as_cookie = connect(&auth, Some(&ticket), "").await.unwrap_err();
    assert!(matches!(as_cookie, Rejection::InvalidToken), "a ticket as a cookie: {as_cookie:?}");
    let as_ticket = connect(&auth, None, token.expose_secret()).await.unwrap_err();
    assert!(matches!(as_ticket, Rejection::InvalidToken), "a token as a ticket: {as_ticket:?}");
    // A cookie beside the ticket authenticates; the ticket is left unused.
    let (_, kind, _) = connect(&auth, Some(token.expose_secret()), &ticket).await.unwrap();
    assert_eq!(kind, CredentialKind::Cookie);
    let (user, kind, _) = connect(&auth, None, &ticket).await.expect("still unused");
    assert_eq!((user, kind), (alice, CredentialKind::Ticket));
}

async fn tickets_are_never_stored_in_clear<St>(s: Subject<St>)
where
    St: ManageTokens + TicketStore,
    St::User: PartialEq + fmt::Debug,
{
    let auth = ticketing(&s);
    let mut secrets = Vec::new();
    for user in &s.users[..3] {
        let (token, ticket) = ticket_for(&auth, user, None).await;
        secrets.extend([token.expose_secret().to_owned(), ticket]);
    }
    let raw = (s.stored)().await;
    assert!(!raw.is_empty(), "the raw dump shows nothing: the check would prove nothing");
    for secret in &secrets {
        assert!(!raw.contains(&secret[..16]), "a token or ticket is stored in clear:\n{raw}");
    }
}
