//! Stores and helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use http::StatusCode;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use ws_token_auth::{Authenticated, ManageTokens, StoreError, Token, TokenStore, TokenUser, UserId};

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

#[async_trait]
impl<S: ManageTokens> ManageTokens for Counting<S> {
    async fn issue(&self, user: &S::User, ttl: Option<Duration>) -> Result<Token, StoreError> {
        self.inner.issue(user, ttl).await
    }
    async fn revoke(&self, token: &Token) -> Result<bool, StoreError> {
        self.inner.revoke(token).await
    }
    async fn revoke_user(&self, id: &UserId<Self>) -> Result<u64, StoreError> {
        self.inner.revoke_user(id).await
    }
    async fn lock_user(&self, id: &UserId<Self>) -> Result<(), StoreError> {
        self.inner.lock_user(id).await
    }
    async fn unlock_user(&self, id: &UserId<Self>) -> Result<(), StoreError> {
        self.inner.unlock_user(id).await
    }
    async fn purge_expired(&self) -> Result<u64, StoreError> {
        self.inner.purge_expired().await
    }
}

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

/// A client WebSocket over TCP.
pub type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Connects to `ws://addr/ws` with the given extra headers; the handshake's
/// status, and the socket when it was upgraded.
pub async fn connect(addr: SocketAddr, headers: &[(&str, &str)]) -> (StatusCode, Option<Socket>) {
    let (status, _, socket) = connect_full(addr, headers).await;
    (status, socket)
}

/// As [`connect`], with the response's headers.
pub async fn connect_full(addr: SocketAddr, headers: &[(&str, &str)]) -> (StatusCode, http::HeaderMap, Option<Socket>) {
    let mut req = format!("ws://{addr}/ws").into_client_request().unwrap();
    for (name, value) in headers {
        req.headers_mut().append(http::HeaderName::from_bytes(name.as_bytes()).unwrap(), value.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((socket, response)) => (response.status(), response.headers().clone(), Some(socket)),
        Err(WsError::Http(response)) => (response.status(), response.headers().clone(), None),
        Err(other) => panic!("handshake failed below HTTP: {other}"),
    }
}

/// Header lines: name, value.
pub type Headers<'a> = Vec<(&'a str, &'a str)>;

/// The next frame, which must be text.
pub async fn next_text<S>(socket: &mut S) -> String
where
    S: StreamExt<Item = Result<Message, WsError>> + Unpin,
{
    match socket.next().await {
        Some(Ok(Message::Text(text))) => text.to_string(),
        other => panic!("expected a text frame, got {other:?}"),
    }
}

/// A loopback TCP proxy to a service (Redis, PostgreSQL) that a test can cut
/// and restore, to play an outage.
pub struct Proxy {
    pub addr: std::net::SocketAddr,
    up: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    pub async fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (up2, links2) = (up.clone(), links.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else { return };
                if !up2.load(Ordering::SeqCst) {
                    continue; // dropped: the connection is refused in effect
                }
                let target = target.clone();
                links2.lock().await.push(tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                }));
            }
        });
        Self { addr, up, links }
    }

    /// Drops every open connection and refuses new ones.
    pub async fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for link in self.links.lock().await.drain(..) {
            link.abort();
        }
    }

    /// Accepts and forwards connections again.
    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

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
