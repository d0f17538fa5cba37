//! Stores and helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

pub mod nodes;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use http::StatusCode;
pub use testkit::{Socket, next_text};
use tokio_tungstenite::tungstenite::Message;
use ws_token_auth::store::ManageTokens;
use ws_token_auth::{Authenticated, StoreError, Token, TokenStore, TokenUser};

/// Implements `ManageTokens` for a test store by forwarding every call to
/// its field `$field`, a store.
#[macro_export]
macro_rules! forward_manage_tokens {
    (impl [$($generics:tt)*] for $ty:ty => $field:ident) => {
        #[async_trait::async_trait]
        impl<$($generics)*> ws_token_auth::store::ManageTokens for $ty {
            async fn issue(
                &self,
                user: &<Self as ws_token_auth::TokenStore>::User,
                ttl: Option<std::time::Duration>,
            ) -> Result<ws_token_auth::Token, ws_token_auth::StoreError> {
                self.$field.issue(user, ttl).await
            }
            async fn revoke(&self, token: &ws_token_auth::Token) -> Result<bool, ws_token_auth::StoreError> {
                self.$field.revoke(token).await
            }
            async fn revoke_user(&self, id: &ws_token_auth::UserId<Self>) -> Result<u64, ws_token_auth::StoreError> {
                self.$field.revoke_user(id).await
            }
            async fn lock_out(&self, id: &ws_token_auth::UserId<Self>) -> Result<(), ws_token_auth::StoreError> {
                self.$field.lock_out(id).await
            }
            async fn let_in(&self, id: &ws_token_auth::UserId<Self>) -> Result<(), ws_token_auth::StoreError> {
                self.$field.let_in(id).await
            }
            async fn purge_expired(&self) -> Result<u64, ws_token_auth::StoreError> {
                self.$field.purge_expired().await
            }
        }
    };
}

/// A user as an app would define one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: u32,
    pub name: String,
}

impl User {
    pub fn named(id: u32, name: &str) -> Self {
        Self { id, name: name.to_owned() }
    }
}

impl TokenUser for User {
    type Id = u32;
    fn id(&self) -> u32 {
        self.id
    }
}

/// A fresh token for `user`, valid until revoked.
pub async fn issue<St: ManageTokens>(store: &St, user: &St::User) -> Token {
    store.issue(user, None).await.expect("the store issues a token")
}

/// Wraps a store and counts its calls.
#[derive(Debug, Default)]
pub struct Counting<S> {
    pub inner: S,
    calls: AtomicUsize,
}

impl<S> Counting<S> {
    pub fn new(inner: S) -> Self {
        Self { inner, calls: AtomicUsize::new(0) }
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl<S: TokenStore> TokenStore for Counting<S> {
    type User = S::User;

    async fn authenticate(&self, token: &Token) -> Result<Option<Authenticated<S::User>>, StoreError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.authenticate(token).await
    }
}

forward_manage_tokens!(impl [S: ManageTokens] for Counting<S> => inner);

/// A store whose backend is down, for users of type `U`.
#[derive(Debug)]
pub struct FailingStore<U = User>(std::marker::PhantomData<fn() -> U>);

/// A store whose backend is down.
pub fn failing<U>() -> FailingStore<U> {
    FailingStore(std::marker::PhantomData)
}

#[async_trait]
impl<U: TokenUser> TokenStore for FailingStore<U> {
    type User = U;

    async fn authenticate(&self, _token: &Token) -> Result<Option<Authenticated<U>>, StoreError> {
        Err(StoreError::unavailable(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "connection refused by 127.0.0.1:5432",
        )))
    }
}

/// A store that never answers.
#[derive(Debug, Default)]
pub struct HangingStore;

#[async_trait]
impl TokenStore for HangingStore {
    type User = User;

    async fn authenticate(&self, _token: &Token) -> Result<Option<Authenticated<User>>, StoreError> {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok(None)
    }
}

/// Connects to `ws://addr/ws` with the given extra headers; the handshake's
/// status, and the socket when it was upgraded.
pub async fn connect(addr: SocketAddr, headers: &[(&str, &str)]) -> (StatusCode, Option<Socket>) {
    let (status, _, socket) = connect_full(addr, headers).await;
    (status, socket)
}

/// As [`connect`], with the response's headers.
pub async fn connect_full(addr: SocketAddr, headers: &[(&str, &str)]) -> (StatusCode, http::HeaderMap, Option<Socket>) {
    testkit::handshake(&format!("ws://{addr}/ws"), headers).await
}

/// Header lines: name, value.
pub type Headers<'a> = Vec<(&'a str, &'a str)>;

/// What every adapter example promises: a socket opened on `addr` with the
/// cookie `key=<token>` and no Origin is upgraded, greeted `hello <name>`,
/// and echoed.
pub async fn assert_greets_and_echoes(addr: SocketAddr, token: &Token, name: &str) {
    use futures_util::SinkExt;
    let cookie = format!("key={}", token.expose_secret());
    let (status, socket) = connect(addr, &[("cookie", &cookie)]).await;
    assert_eq!(status, StatusCode::SWITCHING_PROTOCOLS);
    let mut socket = socket.unwrap();
    assert_eq!(next_text(&mut socket).await, format!("hello {name}"));
    socket.send(Message::Text("echo me".into())).await.unwrap();
    assert_eq!(next_text(&mut socket).await, "echo me");
}
