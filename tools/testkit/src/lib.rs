//! Test helpers shared by the workspace's packages (the library's tests and
//! the multichat app's): real WebSocket clients over loopback, a TCP proxy a
//! test can cut to play an outage, a private Redis to stop and freeze, and a
//! counting allocator, and a real Django app over a fresh database.

mod counting_alloc;
mod django;
mod proxy;
mod redis;
mod text;
mod ws;

pub use counting_alloc::{CountingAlloc, live_bytes};
pub use django::Django;
pub use proxy::{Proxy, host_port, through};
pub use redis::PrivateRedis;
pub use text::log_paste;
pub use ws::{Socket, close_code, handshake, next_json, next_text, next_text_within, send_json};
