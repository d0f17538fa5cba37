//! A real WebSocket client (tokio-tungstenite) over loopback.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, StatusCode};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// A client WebSocket over TCP.
pub type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens `url` with the given extra headers: the handshake's status, the
/// response's headers, and the socket when it was upgraded. Panics when the
/// handshake fails below HTTP.
pub async fn handshake(url: &str, headers: &[(&str, &str)]) -> (StatusCode, HeaderMap, Option<Socket>) {
    let mut req = url.into_client_request().unwrap();
    for (name, value) in headers {
        req.headers_mut().append(http::HeaderName::from_bytes(name.as_bytes()).unwrap(), value.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((socket, response)) => (response.status(), response.headers().clone(), Some(socket)),
        Err(WsError::Http(response)) => (response.status(), response.headers().clone(), None),
        Err(other) => panic!("handshake failed below HTTP: {other}"),
    }
}

/// The next frame, which must be text (pings and pongs skipped); fails after 5 s.
pub async fn next_text<S>(socket: &mut S) -> String
where
    S: StreamExt<Item = Result<Message, WsError>> + Unpin,
{
    next_text_within(socket, Duration::from_secs(5)).await
}

/// [`next_text`], waiting up to `within` (a browser on the other side is slow).
pub async fn next_text_within<S>(socket: &mut S, within: Duration) -> String
where
    S: StreamExt<Item = Result<Message, WsError>> + Unpin,
{
    loop {
        match tokio::time::timeout(within, socket.next()).await.expect("no frame in time") {
            Some(Ok(Message::Text(text))) => return text.to_string(),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

/// The next text frame as JSON; fails after 5 s.
pub async fn next_json(socket: &mut Socket) -> serde_json::Value {
    serde_json::from_str(&next_text(socket).await).expect("a JSON frame")
}

/// Sends `value` as a text frame.
pub async fn send_json(socket: &mut Socket, value: serde_json::Value) {
    socket.send(Message::Text(value.to_string().into())).await.unwrap();
}

/// The close code the server sends within `within` (other frames skipped);
/// `None` if the connection ends without one or nothing comes in time.
pub async fn close_code(socket: &mut Socket, within: Duration) -> Option<u16> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, socket.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => return frame.map(|f| u16::from(f.code)),
            Ok(Some(Ok(_))) => continue,
            Ok(_) | Err(_) => return None,
        }
    }
}
