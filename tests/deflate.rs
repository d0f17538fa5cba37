//! permessage-deflate (RFC 7692) on the tungstenite `Acceptor`, frame by
//! frame over a raw TCP client: the offers browsers and nv-websocket-client
//! make, compressed and plain messages both ways, fragments with a ping in
//! between, bad data, RSV1 where it does not belong, a decompression bomb,
//! window sizes, an offer declined. The client's codec is flate2 used
//! directly, not the crate's. The echo server closes on a read error with
//! the code the multichat app uses (1009, 1007, 1002): what is checked is
//! which error the layer makes tungstenite report.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use ws_token_auth::tungstenite::Acceptor;
use ws_token_auth::{Authenticated, Authenticator, MemoryTokenStore, Token};

const LIMIT: usize = 64 * 1024;

/// An echo server over the `Acceptor` (permessage-deflate offered, messages
/// limited to 64 KiB); the token alice's.
async fn echo_server() -> (SocketAddr, Token) {
    let store = Arc::new(MemoryTokenStore::new());
    let token = Token::generate();
    store.insert(&token, Authenticated::new("alice".to_owned()));
    let config = WebSocketConfig::default().max_message_size(Some(LIMIT)).max_frame_size(Some(LIMIT));
    let acceptor =
        Arc::new(Acceptor::new(Authenticator::from_shared(store)).websocket_config(config).permessage_deflate(true));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let acceptor = Arc::clone(&acceptor);
            tokio::spawn(async move {
                let Ok(accepted) = acceptor.accept(stream).await else { return };
                let mut socket = accepted.socket;
                while let Some(read) = socket.next().await {
                    match read {
                        Ok(message) if message.is_text() || message.is_binary() => {
                            let _ = socket.send(message).await;
                        }
                        Ok(_) => {}
                        // What tungstenite made of the layer's refusals, answered as the app does.
                        Err(error) => {
                            let code = match error {
                                WsError::Capacity(_) => 1009,
                                WsError::Utf8(_) => 1007,
                                WsError::Protocol(_) => 1002,
                                _ => return,
                            };
                            let close = CloseFrame { code: CloseCode::from(code), reason: "".into() };
                            let _ = socket.send(Message::Close(Some(close))).await;
                            return;
                        }
                    }
                }
            });
        }
    });
    (addr, token)
}

/// Opens a socket with `extensions` offered (none when empty): the 101's head
/// and the stream.
async fn open(addr: SocketAddr, token: &Token, extensions: &str) -> (String, TcpStream) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let offer =
        if extensions.is_empty() { String::new() } else { format!("Sec-WebSocket-Extensions: {extensions}\r\n") };
    let head = format!(
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Cookie: key={}\r\n{offer}\r\n",
        token.expose_secret()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    while !response.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        assert_eq!(stream.read(&mut byte).await.unwrap(), 1);
        response.push(byte[0]);
    }
    let response = String::from_utf8(response).unwrap();
    assert!(response.starts_with("HTTP/1.1 101"), "{response}");
    (response, stream)
}

fn extensions_of(head: &str) -> Option<String> {
    head.lines().find_map(|l| l.strip_prefix("Sec-WebSocket-Extensions: ").map(str::to_owned))
}

/// A masked client frame: `first` is FIN, RSV and opcode.
fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let key = [0x9a, 0x1b, 0x7c, 0x3d];
    let mut out = vec![first];
    match payload.len() {
        len @ 0..=125 => out.push(0x80 | len as u8),
        len @ 126..=0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&key);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    out
}

/// Deflates as a permessage-deflate client does (a sync flush, the trailer
/// cut), with a fresh context.
fn deflate(message: &[u8]) -> Vec<u8> {
    let mut compress = Compress::new(Compression::default(), false);
    let mut out = Vec::with_capacity(message.len() + 64);
    compress.compress_vec(message, &mut out, FlushCompress::Sync).unwrap();
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(out.len() - 4);
    out
}

fn inflate(payload: &[u8], window_bits: u8) -> Vec<u8> {
    let mut decompress = Decompress::new_with_window_bits(false, window_bits);
    let mut input = payload.to_vec();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut out = Vec::with_capacity(LIMIT);
    decompress.decompress_vec(&input, &mut out, FlushDecompress::Sync).unwrap();
    out
}

/// The next frame from the server: its first byte and payload (unmasked).
async fn read_frame(stream: &mut TcpStream) -> (u8, Vec<u8>) {
    let read = async {
        let mut head = [0u8; 2];
        stream.read_exact(&mut head).await.unwrap();
        assert_eq!(head[1] & 0x80, 0, "a server frame is not masked");
        let len = match head[1] & 0x7f {
            126 => {
                let mut len = [0u8; 2];
                stream.read_exact(&mut len).await.unwrap();
                u64::from(u16::from_be_bytes(len))
            }
            127 => {
                let mut len = [0u8; 8];
                stream.read_exact(&mut len).await.unwrap();
                u64::from_be_bytes(len)
            }
            len => u64::from(len),
        };
        let mut payload = vec![0u8; len as usize];
        stream.read_exact(&mut payload).await.unwrap();
        (head[0], payload)
    };
    tokio::time::timeout(Duration::from_secs(5), read).await.expect("no frame within 5 s")
}

/// The close code of the server's next frame, which must be a close.
async fn close_code(stream: &mut TcpStream) -> u16 {
    let (first, payload) = read_frame(stream).await;
    assert_eq!(first & 0x0f, 0x8, "a close frame: {first:#x}");
    u16::from_be_bytes([payload[0], payload[1]])
}

const BARE: &str = "permessage-deflate";
const ANSWER: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

fn chat_line(i: usize) -> String {
    format!(
        "{{\"command\": \"send\", \"room\": \"1\", \"message\": \"line {i}: the quick brown fox jumps over the lazy dog\"}}"
    )
}

#[tokio::test]
async fn a_bare_offer_as_nv_websocket_client_sends_it_compresses_both_ways() {
    let (addr, token) = echo_server().await;
    let (head, mut stream) = open(addr, &token, BARE).await;
    assert_eq!(extensions_of(&head).as_deref(), Some(ANSWER));
    for i in 0..3 {
        let line = chat_line(i);
        stream.write_all(&frame(0xc1, &deflate(line.as_bytes()))).await.unwrap();
        let (first, payload) = read_frame(&mut stream).await;
        assert_eq!(first, 0xc1, "FIN, RSV1, text: the echo comes back compressed");
        assert!(payload.len() < line.len());
        assert_eq!(inflate(&payload, 15), line.as_bytes());
    }
    // Uncompressed messages on a compressed socket are still taken; a short
    // one comes back uncompressed.
    stream.write_all(&frame(0x81, b"hi")).await.unwrap();
    assert_eq!(read_frame(&mut stream).await, (0x81, b"hi".to_vec()));
    let line = chat_line(9);
    stream.write_all(&frame(0x81, line.as_bytes())).await.unwrap();
    let (first, payload) = read_frame(&mut stream).await;
    assert_eq!((first, inflate(&payload, 15)), (0xc1, line.into_bytes()));
}

#[tokio::test]
async fn a_browser_offer_and_fragments_with_a_ping_between() {
    let (addr, token) = echo_server().await;
    let offer = "permessage-deflate; client_max_window_bits, x-webkit-deflate-frame";
    let (head, mut stream) = open(addr, &token, offer).await;
    assert_eq!(extensions_of(&head).as_deref(), Some(ANSWER));
    let message: String = (0..40).map(chat_line).collect();
    let compressed = deflate(message.as_bytes());
    let third = compressed.len() / 3;
    stream.write_all(&frame(0x41, &compressed[..third])).await.unwrap(); // RSV1, text, not FIN
    stream.write_all(&frame(0x89, b"mid")).await.unwrap(); // a ping between fragments
    stream.write_all(&frame(0x00, &compressed[third..2 * third])).await.unwrap();
    stream.write_all(&frame(0x80, &compressed[2 * third..])).await.unwrap();
    assert_eq!(read_frame(&mut stream).await, (0x8a, b"mid".to_vec()), "the pong, at once");
    let (first, payload) = read_frame(&mut stream).await;
    assert_eq!(first, 0xc1);
    assert_eq!(inflate(&payload, 15), message.as_bytes());
}

#[tokio::test]
async fn bad_compressed_data_closes_1007() {
    let (addr, token) = echo_server().await;
    let (_, mut stream) = open(addr, &token, BARE).await;
    stream.write_all(&frame(0xc1, &[0xff, 0xfe, 0xfd, 0x00, 0x12, 0x34])).await.unwrap();
    assert_eq!(close_code(&mut stream).await, 1007);
}

#[tokio::test]
async fn rsv1_on_a_control_frame_a_continuation_or_without_negotiation_closes_1002() {
    let (addr, token) = echo_server().await;
    let (_, mut stream) = open(addr, &token, BARE).await;
    stream.write_all(&frame(0xc9, b"ping")).await.unwrap(); // RSV1 on a ping
    assert_eq!(close_code(&mut stream).await, 1002);

    let (_, mut stream) = open(addr, &token, BARE).await;
    let compressed = deflate(chat_line(1).as_bytes());
    stream.write_all(&frame(0x41, &compressed[..4])).await.unwrap();
    stream.write_all(&frame(0xc0, &compressed[4..])).await.unwrap(); // RSV1 on a continuation
    assert_eq!(close_code(&mut stream).await, 1002);

    let (head, mut stream) = open(addr, &token, "").await;
    assert_eq!(extensions_of(&head), None, "nothing offered, nothing answered");
    stream.write_all(&frame(0xc1, &compressed)).await.unwrap(); // RSV1, not negotiated
    assert_eq!(close_code(&mut stream).await, 1002);
}

#[tokio::test]
async fn a_bomb_closes_1009_without_being_inflated() {
    let (addr, token) = echo_server().await;
    let (_, mut stream) = open(addr, &token, BARE).await;
    let bomb = deflate(&vec![b'a'; 20 << 20]); // 20 MB of one letter
    assert!(bomb.len() < 64 * 1024, "{}", bomb.len());
    stream.write_all(&frame(0xc1, &bomb)).await.unwrap();
    assert_eq!(close_code(&mut stream).await, 1009);
    // A message just under the limit is fine.
    let (_, mut stream) = open(addr, &token, BARE).await;
    let big = vec![b'b'; LIMIT - 10];
    stream.write_all(&frame(0xc1, &deflate(&big))).await.unwrap();
    let (first, payload) = read_frame(&mut stream).await;
    assert_eq!((first, inflate(&payload, 15).len()), (0xc1, big.len()));
}

#[tokio::test]
async fn the_server_window_is_honoured() {
    let (addr, token) = echo_server().await;
    let (head, mut stream) = open(addr, &token, "permessage-deflate; server_max_window_bits=10").await;
    assert_eq!(extensions_of(&head), Some(format!("{ANSWER}; server_max_window_bits=10")));
    // Random letters repeated 2 KB apart: a 15-bit window reaches back for the
    // repeats (the message shrinks to about a third), a 10-bit one cannot
    // (letters alone: about 60 %). (zlib's inflater checks distances against
    // what it has output, not against its window, so the size tells.)
    let mut seed = 0x2545_f491_u32;
    let block: String = (0..2048)
        .map(|_| {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            char::from(b'a' + (seed >> 24) as u8 % 26)
        })
        .collect();
    let message = format!("{block}{block}{block}");
    stream.write_all(&frame(0xc1, &deflate(message.as_bytes()))).await.unwrap();
    let (first, payload) = read_frame(&mut stream).await;
    assert_eq!(first, 0xc1);
    assert_eq!(inflate(&payload, 10), message.as_bytes());
    assert!(payload.len() > message.len() / 2, "{} of {}: repeats 2 KB back were used", payload.len(), message.len());
}

#[tokio::test]
async fn an_unknown_parameter_declines_and_the_protocol_stays_plain() {
    let (addr, token) = echo_server().await;
    for offer in ["permessage-deflate; foo=1", "permessage-deflate; server_max_window_bits=8", "deflate-stream"] {
        let (head, mut stream) = open(addr, &token, offer).await;
        assert_eq!(extensions_of(&head), None, "{offer}");
        let line = chat_line(1);
        stream.write_all(&frame(0x81, line.as_bytes())).await.unwrap();
        assert_eq!(read_frame(&mut stream).await, (0x81, line.into_bytes()), "{offer}: plain frames");
    }
}
