//! leanchat: the multichat protocol as lean as we can make it, with no
//! authentication and no database: the ceiling the app is measured against
//! (`scripts/bench-compare.sh`, server `lean`). Written apart from the app on
//! purpose, so that the app's own costs are not on both sides of the ratio.
//!
//! Plain tokio + tokio-tungstenite (no HTTP framework): the handshake is
//! tungstenite's own; the user's name is the `key` cookie's value, unchecked;
//! rooms 1 (`General`) and 2 (`Staff`, open to all here); the frames, replies,
//! notices and errors of PROTOCOL.md. Each socket has one writer that sends
//! everything queued, then flushes once.
//!
//! ```sh
//! cargo run --release -p leanchat -- --bind 127.0.0.1:8700 [--no-notices]
//! ```
//! Prints `http://ADDR` on stdout once it listens. Loopback use only.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

/// Frames a socket may have waiting before it is dropped as too slow.
const QUEUE_FRAMES: usize = 16 * 1024;

struct Room {
    id: &'static str,
    title: &'static str,
    members: Mutex<HashMap<u64, mpsc::Sender<Utf8Bytes>>>,
}

struct Hub {
    rooms: [Room; 2],
    notices: bool,
    next_id: AtomicU64,
}

impl Hub {
    fn room(&self, value: Option<&Value>) -> Option<&Room> {
        let id = match value? {
            Value::String(s) => s.parse::<u64>().ok()?,
            Value::Number(n) => n.as_u64()?,
            _ => return None,
        };
        self.rooms.iter().find(|room| room.id.parse::<u64>().ok() == Some(id))
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn text(value: &Value) -> Utf8Bytes {
    Utf8Bytes::from(value.to_string())
}

/// Sends `frame` to every member but `skip`; a member whose queue is full is dropped.
fn broadcast(members: &mut HashMap<u64, mpsc::Sender<Utf8Bytes>>, frame: &Utf8Bytes, skip: Option<u64>) {
    members.retain(|id, queue| Some(*id) == skip || queue.try_send(frame.clone()).is_ok());
}

async fn serve_socket(hub: Arc<Hub>, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut name = String::from("anonymous");
    // The error type is tungstenite's (an HTTP response), not ours to shrink.
    #[allow(clippy::result_large_err)]
    let callback = |request: &Request, response: Response| {
        let cookie = request.headers().get("cookie").and_then(|v| v.to_str().ok()).unwrap_or("");
        if let Some(value) = cookie.split(';').find_map(|c| c.trim().strip_prefix("key=")) {
            name = value.chars().take(12).collect();
        }
        Ok(response)
    };
    let config = WebSocketConfig::default()
        .read_buffer_size(1024)
        .write_buffer_size(16 * 1024)
        .max_message_size(Some(64 * 1024))
        .max_frame_size(Some(64 * 1024));
    let Ok(socket) = tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(config)).await else {
        return;
    };
    let (mut sink, mut source) = socket.split();
    let (queue, mut outgoing) = mpsc::channel::<Utf8Bytes>(QUEUE_FRAMES);
    let writer = tokio::spawn(async move {
        while let Some(frame) = outgoing.recv().await {
            if sink.feed(Message::Text(frame)).await.is_err() {
                return;
            }
            // Everything already queued goes in the same write.
            while let Ok(frame) = outgoing.try_recv() {
                if sink.feed(Message::Text(frame)).await.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
        let _ = sink.close().await;
    });
    let id = hub.next_id.fetch_add(1, Ordering::Relaxed);
    let mut joined: Vec<&Room> = Vec::new();
    let error = |code: &str| text(&json!({ "error": code }));
    while let Some(Ok(message)) = source.next().await {
        let Message::Text(frame) = message else {
            if matches!(message, Message::Close(_)) {
                break;
            }
            if matches!(message, Message::Binary(_)) {
                let _ = queue.try_send(error("MALFORMED_COMMAND"));
            }
            continue;
        };
        let Ok(Value::Object(command)) = serde_json::from_str::<Value>(&frame) else {
            let _ = queue.try_send(error("MALFORMED_COMMAND"));
            continue;
        };
        let room = hub.room(command.get("room"));
        let reply = match command.get("command").and_then(Value::as_str) {
            Some("join") => match room {
                None => error("ROOM_INVALID"),
                Some(room) => {
                    let mut members = lock(&room.members);
                    let _ = queue.try_send(text(&json!({"join": room.id, "title": room.title})));
                    if !members.contains_key(&id) {
                        if hub.notices {
                            broadcast(
                                &mut members,
                                &text(&json!({"msg_type": 4, "room": room.id, "username": name})),
                                None,
                            );
                        }
                        members.insert(id, queue.clone());
                        joined.push(room);
                    }
                    continue;
                }
            },
            Some("leave") => match room.filter(|room| joined.iter().any(|r| r.id == room.id)) {
                None if room.is_none() => error("ROOM_INVALID"),
                None => error("ROOM_ACCESS_DENIED"),
                Some(room) => {
                    let mut members = lock(&room.members);
                    if hub.notices {
                        broadcast(
                            &mut members,
                            &text(&json!({"msg_type": 5, "room": room.id, "username": name})),
                            None,
                        );
                    }
                    members.remove(&id);
                    joined.retain(|r| r.id != room.id);
                    text(&json!({"leave": room.id}))
                }
            },
            Some("send") => match (command.get("message").and_then(Value::as_str), room) {
                (None, _) => error("MALFORMED_COMMAND"),
                (Some(message), _) if message.chars().count() > 4096 => error("MESSAGE_TOO_LONG"),
                (Some(message), Some(room)) if joined.iter().any(|r| r.id == room.id) => {
                    let frame = text(&json!({"msg_type": 0, "room": room.id, "username": name, "message": message}));
                    broadcast(&mut lock(&room.members), &frame, None);
                    continue;
                }
                (Some(_), _) => error("ROOM_ACCESS_DENIED"),
            },
            _ => error("MALFORMED_COMMAND"),
        };
        if queue.try_send(reply).is_err() {
            break;
        }
    }
    for room in joined {
        let mut members = lock(&room.members);
        if hub.notices {
            broadcast(&mut members, &text(&json!({"msg_type": 5, "room": room.id, "username": name})), None);
        }
        members.remove(&id);
    }
    drop(queue);
    let _ = writer.await;
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let bind: SocketAddr = args
        .iter()
        .position(|a| a == "--bind")
        .and_then(|i| args.get(i + 1))
        .map_or(Ok(SocketAddr::from(([127, 0, 0, 1], 8700))), |a| a.parse())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("--bind: {e}")))?;
    let hub = Arc::new(Hub {
        rooms: [
            Room { id: "1", title: "General", members: Mutex::default() },
            Room { id: "2", title: "Staff", members: Mutex::default() },
        ],
        notices: !args.iter().any(|a| a == "--no-notices"),
        next_id: AtomicU64::new(1),
    });
    let listener = TcpListener::bind(bind).await?;
    println!("http://{}", listener.local_addr()?);
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(_) => {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        tokio::spawn(serve_socket(Arc::clone(&hub), stream));
    }
}
