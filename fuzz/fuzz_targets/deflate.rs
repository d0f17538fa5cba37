//! The permessage-deflate layer: arbitrary offers never panic in
//! negotiation, and arbitrary bytes from the peer (read side, either role)
//! or from tungstenite (write side) never panic, loop or make the layer hold
//! more than its message limit. Input: `offer\nbytes`; the first byte of
//! the bytes picks the side and role.
#![no_main]

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use ws_token_auth::deflate::{Deflate, Role, negotiate};

/// A connection that has `input` to read, then ends, and takes every write.
struct Wire {
    input: Vec<u8>,
    at: usize,
    written: usize,
}

impl AsyncRead for Wire {
    fn poll_read(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let n = (self.input.len() - self.at).min(buf.remaining()).min(97); // odd-sized reads
        let at = self.at;
        buf.put_slice(&self.input[at..at + n]);
        self.at += n;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Wire {
    fn poll_write(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.written += buf.len();
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

const LIMIT: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|b| *b == b'\n').unwrap_or(data.len());
    let (offer, bytes) = (&data[..split], data.get(split + 1..).unwrap_or_default());
    let mut headers = http::HeaderMap::new();
    if let Ok(value) = http::HeaderValue::from_bytes(offer) {
        headers.insert("sec-websocket-extensions", value);
    }
    let agreed = negotiate(&headers).or_else(|| negotiate(&{
        let mut h = http::HeaderMap::new();
        h.insert("sec-websocket-extensions", http::HeaderValue::from_static("permessage-deflate"));
        h
    }));
    let Some((&pick, bytes)) = bytes.split_first() else { return };
    let role = if pick & 1 == 0 { Role::Server } else { Role::Client };
    let mut cx = Context::from_waker(Waker::noop());
    if pick & 2 == 0 {
        // Read side: whatever the peer sends, read to the end.
        let wire = Wire { input: bytes.to_vec(), at: 0, written: 0 };
        let mut layer = Deflate::new(wire, role, agreed, LIMIT);
        let mut out = [0u8; 1024];
        let mut total = 0usize;
        for _ in 0..100_000 {
            let mut buf = ReadBuf::new(&mut out);
            match Pin::new(&mut layer).poll_read(&mut cx, &mut buf) {
                Poll::Ready(Ok(())) if buf.filled().is_empty() => return,
                Poll::Ready(Ok(())) => total += buf.filled().len(),
                _ => return,
            }
            // Each inflated message is at most the limit, plus its header.
            assert!(total <= bytes.len().saturating_mul(2) + 16 * (LIMIT + 14), "{total}");
        }
        panic!("the read side did not end");
    } else {
        // Write side: whatever tungstenite might write, in pieces.
        let wire = Wire { input: Vec::new(), at: 0, written: 0 };
        let mut layer = Deflate::new(wire, role, agreed, LIMIT);
        for piece in bytes.chunks(61) {
            let _ = Pin::new(&mut layer).poll_write(&mut cx, piece);
        }
        let _ = Pin::new(&mut layer).poll_flush(&mut cx);
    }
});
