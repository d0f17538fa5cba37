//! permessage-deflate (RFC 7692) beneath tungstenite (feature `tungstenite`).
//!
//! tungstenite has no extension hook and refuses every frame with RSV1 set,
//! so the extension lives one layer down: [`Deflate`] wraps the connection,
//! reads and writes WebSocket frames itself, and shows tungstenite only
//! uncompressed ones.
//!
//! - **In:** a message whose first frame has RSV1 set is collected across its
//!   continuation frames (control frames in between pass at once), inflated
//!   as a whole (RFC 7692, 7.2.2: the payload and `00 00 ff ff`), and handed
//!   up as one unfragmented frame. Uncompressed messages stream through
//!   untouched. Inflation stops at the connection's message limit: a 20 KB
//!   frame claiming 20 MB costs no more than a plain frame of the limit, and
//!   tungstenite then refuses it as too big (close 1009). Data that does not
//!   inflate reaches tungstenite as text that is not UTF-8 (close 1007); RSV1
//!   on a control or continuation frame as a frame with reserved bits set
//!   (close 1002), as does RSV1 on a connection that negotiated nothing,
//!   which is not wrapped at all.
//! - **Out:** every unfragmented data frame tungstenite writes that is
//!   worth it ([`MIN_COMPRESS_BYTES`] and more, and smaller once deflated) is
//!   sent deflated with RSV1 set; the rest as they are.
//! - **Memory:** the server always answers with `server_no_context_takeover`
//!   and `client_no_context_takeover`, so no message depends on the last and
//!   no compression state outlives a message. The (de)compressors are shared
//!   by the connections of a thread and reset per message; an idle
//!   connection holds no buffer at all.
//! - **Once per room frame:** a frame that the process deflated a moment ago
//!   (a room's frame going to each of its members, on any thread) is not
//!   deflated again: the last 2 MiB of messages are remembered, shared by
//!   all connections (at most 4 MiB with what they became, compared in full
//!   before use).
//!
//! Why a layer of its own: tungstenite has no extension hook and its
//! permessage-deflate work has never been merged. The crates that implement
//! RFC 7692 each belong to another WebSocket stack: `ratchet_deflate` is an
//! extension of Ratchet's framing, soketto's deflate (which calls itself
//! "mostly conformant") of soketto's, and the deflate modules of ws-rs and
//! its forks of their own event loops over libz-sys; none of them reads or
//! writes frames for a tokio-tungstenite stream. A layer beneath tungstenite
//! needs no fork, works for every server path that hands a connection to
//! tokio-tungstenite (the [`Acceptor`](crate::tungstenite::Acceptor), hyper
//! and axum upgrades), keeps the RFC's framing rules in one place, and lets
//! this crate decide what compression costs per socket (nothing while idle)
//! and per room frame (one deflation). flate2 over zlib-rs is pure Rust and
//! needs no C toolchain.
//!
//! ```
//! use http::HeaderMap;
//! use ws_token_auth::deflate::negotiate;
//!
//! // nv-websocket-client's bare offer, then a browser's.
//! let mut headers = HeaderMap::new();
//! headers.insert("sec-websocket-extensions", "permessage-deflate".parse().unwrap());
//! let agreed = negotiate(&headers).unwrap();
//! assert_eq!(agreed.response(), "permessage-deflate; server_no_context_takeover; client_no_context_takeover");
//!
//! headers.insert("sec-websocket-extensions", "permessage-deflate; client_max_window_bits".parse().unwrap());
//! assert!(negotiate(&headers).is_some());
//! // An offer with a parameter this server does not know is declined: no compression.
//! headers.insert("sec-websocket-extensions", "permessage-deflate; foo=1".parse().unwrap());
//! assert!(negotiate(&headers).is_none());
//! ```

use std::cell::RefCell;
use std::collections::HashMap;
use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::task::{Context, Poll, ready};

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use http::header::SEC_WEBSOCKET_EXTENSIONS;
use http::{HeaderMap, HeaderValue};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Messages shorter than this go uncompressed (RSV1 clear): a few dozen
/// bytes gain little and cost a deflate call.
pub const MIN_COMPRESS_BYTES: usize = 64;

/// The trailer every message ends with once deflated with a sync flush
/// (RFC 7692, 7.2.1), left off on the wire.
const TRAILER: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// What a server agreed to: permessage-deflate without context takeover
/// either way, and the server's window no larger than the client asked.
///
/// ```
/// use http::HeaderMap;
/// use ws_token_auth::deflate::negotiate;
///
/// let mut headers = HeaderMap::new();
/// headers.insert("sec-websocket-extensions", "permessage-deflate; server_max_window_bits=10".parse().unwrap());
/// let agreed = negotiate(&headers).unwrap();
/// assert_eq!(agreed.server_max_window_bits(), 10);
/// assert!(agreed.response().to_str().unwrap().ends_with("server_max_window_bits=10"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PerMessageDeflate {
    server_max_window_bits: u8,
    /// Whether the offer named `server_max_window_bits` (the answer must too).
    window_asked: bool,
}

impl PerMessageDeflate {
    /// The LZ77 window this server compresses with, in bits (15 unless the
    /// client asked for less).
    #[must_use]
    pub fn server_max_window_bits(&self) -> u8 {
        self.server_max_window_bits
    }

    /// The `Sec-WebSocket-Extensions` value of the 101 that accepts it.
    #[must_use]
    pub fn response(&self) -> HeaderValue {
        let mut answer = String::from("permessage-deflate; server_no_context_takeover; client_no_context_takeover");
        if self.window_asked {
            answer.push_str(&format!("; server_max_window_bits={}", self.server_max_window_bits));
        }
        HeaderValue::from_str(&answer).unwrap_or(HeaderValue::from_static("permessage-deflate"))
    }
}

/// The first permessage-deflate offer of a handshake's
/// `Sec-WebSocket-Extensions` headers that this server can accept, as RFC
/// 7692 says: every parameter honoured, or the offer declined (an unknown
/// parameter, one given twice, a bad value, a window of 8 bits, which zlib
/// cannot make). `None`: no compression, and no extension in the answer.
///
/// ```
/// use http::HeaderMap;
/// use ws_token_auth::deflate::negotiate;
///
/// let mut headers = HeaderMap::new();
/// // The first offer is declined (a window of 8 bits), the second accepted.
/// headers.insert(
///     "sec-websocket-extensions",
///     "permessage-deflate; server_max_window_bits=8, permessage-deflate".parse().unwrap(),
/// );
/// assert_eq!(negotiate(&headers).unwrap().server_max_window_bits(), 15);
/// assert!(negotiate(&HeaderMap::new()).is_none());
/// ```
#[must_use]
pub fn negotiate(headers: &HeaderMap) -> Option<PerMessageDeflate> {
    headers
        .get_all(SEC_WEBSOCKET_EXTENSIONS)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .find_map(accept_offer)
}

/// One offer (`name; param; param=value`), if it is permessage-deflate and
/// every parameter can be honoured.
fn accept_offer(offer: &str) -> Option<PerMessageDeflate> {
    let mut parts = offer.split(';').map(str::trim);
    if !parts.next()?.eq_ignore_ascii_case("permessage-deflate") {
        return None;
    }
    let mut agreed = PerMessageDeflate { server_max_window_bits: 15, window_asked: false };
    let mut seen: Vec<&str> = Vec::new();
    for param in parts {
        let (name, value) = match param.split_once('=') {
            Some((name, value)) => (name.trim(), Some(value.trim().trim_matches('"'))),
            None => (param, None),
        };
        if seen.iter().any(|s| s.eq_ignore_ascii_case(name)) {
            return None; // a parameter given twice declines the offer
        }
        seen.push(name);
        match (name.to_ascii_lowercase().as_str(), value) {
            ("server_no_context_takeover" | "client_no_context_takeover", None) => {}
            ("client_max_window_bits", None) => {}
            ("client_max_window_bits", Some(bits)) => {
                window_bits(bits)?; // any valid value: the client may use a smaller window
            }
            ("server_max_window_bits", Some(bits)) => {
                agreed.server_max_window_bits = window_bits(bits).filter(|bits| *bits >= 9)?;
                agreed.window_asked = true;
            }
            _ => return None,
        }
    }
    Some(agreed)
}

/// A window size as RFC 7692 writes it: 8 to 15, digits only.
fn window_bits(value: &str) -> Option<u8> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) || value.len() > 2 {
        return None;
    }
    value.parse().ok().filter(|bits| (8..=15).contains(bits))
}

/// Which side of the connection this is: a server reads masked frames and
/// writes unmasked ones, a client the other way round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The server's side (the peer is a client).
    Server,
    /// The client's side (the peer is a server): for load tools and tests.
    Client,
}

/// A connection under tungstenite that speaks permessage-deflate when it was
/// negotiated, and passes every byte through untouched when it was not.
///
/// ```
/// use ws_token_auth::deflate::{Deflate, Role, negotiate};
///
/// # async fn run(stream: tokio::net::TcpStream, headers: http::HeaderMap) {
/// // After answering the handshake (with `agreed.response()` when Some):
/// let agreed = negotiate(&headers);
/// let io = Deflate::new(stream, Role::Server, agreed, 64 * 1024);
/// let socket = tokio_tungstenite::WebSocketStream::from_raw_socket(
///     io,
///     tokio_tungstenite::tungstenite::protocol::Role::Server,
///     None,
/// )
/// .await;
/// # let _ = socket;
/// # }
/// ```
#[derive(Debug)]
pub struct Deflate<S> {
    inner: S,
    /// Bytes read from the connection before it was wrapped (the rest of a
    /// handshake's read), given out first.
    prefix: Vec<u8>,
    codec: Option<Box<Codec>>,
}

#[derive(Debug)]
struct Codec {
    role: Role,
    window_bits: u8,
    max_message: usize,
    read: ReadSide,
    write: WriteSide,
}

impl<S> Deflate<S> {
    /// Wraps `inner`; with `agreed`, messages are (de)compressed, and one
    /// that inflates past `max_message` bytes is refused (as tungstenite's
    /// own message limit would).
    pub fn new(inner: S, role: Role, agreed: Option<PerMessageDeflate>, max_message: usize) -> Self {
        Self::with_prefix(inner, Vec::new(), role, agreed, max_message)
    }

    /// As [`new`](Self::new), with bytes already read from `inner` (after a
    /// handshake's head) to be read first.
    pub fn with_prefix(
        inner: S,
        prefix: Vec<u8>,
        role: Role,
        agreed: Option<PerMessageDeflate>,
        max_message: usize,
    ) -> Self {
        let mut this = Self { inner, prefix: Vec::new(), codec: None };
        match agreed {
            Some(agreed) => {
                let mut codec = Codec::new(role, agreed, max_message);
                codec.read.input = prefix;
                this.codec = Some(Box::new(codec));
            }
            None => this.prefix = prefix,
        }
        this
    }

    /// Starts (de)compressing from now on: for a client that learns from the
    /// 101 what was agreed.
    pub fn enable(&mut self, role: Role, agreed: PerMessageDeflate, max_message: usize) {
        let mut codec = Codec::new(role, agreed, max_message);
        codec.read.input = std::mem::take(&mut self.prefix);
        self.codec = Some(Box::new(codec));
    }

    /// Whether permessage-deflate is on.
    #[must_use]
    pub fn is_compressing(&self) -> bool {
        self.codec.is_some()
    }

    /// The wrapped connection.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl Codec {
    fn new(role: Role, agreed: PerMessageDeflate, max_message: usize) -> Self {
        Self {
            role,
            window_bits: agreed.server_max_window_bits,
            max_message,
            read: ReadSide::default(),
            write: WriteSide::default(),
        }
    }
}

/// A frame header as read from the wire.
#[derive(Debug, Clone, Copy)]
struct Header {
    /// FIN, RSV1-3 and the opcode.
    first: u8,
    len: u64,
    mask: Option<[u8; 4]>,
    /// The header's own length in bytes.
    size: usize,
}

impl Header {
    fn parse(buf: &[u8]) -> Option<Self> {
        let (&first, &second) = (buf.first()?, buf.get(1)?);
        let (len, mut size) = match second & 0x7f {
            126 => (u64::from(u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?])), 4),
            127 => (u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?), 10),
            len => (u64::from(len), 2),
        };
        let mask = if second & 0x80 != 0 {
            let key = buf.get(size..size + 4)?.try_into().ok()?;
            size += 4;
            Some(key)
        } else {
            None
        };
        Some(Self { first, len, mask, size })
    }

    fn fin(&self) -> bool {
        self.first & 0x80 != 0
    }

    fn rsv(&self) -> u8 {
        self.first & 0x70
    }

    fn opcode(&self) -> u8 {
        self.first & 0x0f
    }
}

/// Writes a frame header: `first` (FIN, RSV, opcode), the length, and a
/// mask key when `mask` is given.
fn put_header(out: &mut Vec<u8>, first: u8, len: usize, mask: Option<[u8; 4]>) {
    out.push(first);
    let bit = if mask.is_some() { 0x80 } else { 0 };
    match len {
        0..=125 => out.push(bit | len as u8),
        126..=0xffff => {
            out.push(bit | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(bit | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    if let Some(key) = mask {
        out.extend_from_slice(&key);
    }
}

fn unmask(payload: &mut [u8], key: [u8; 4]) {
    for (i, byte) in payload.iter_mut().enumerate() {
        *byte ^= key[i % 4];
    }
}

const RSV1: u8 = 0x40;
const FIN: u8 = 0x80;
const TEXT: u8 = 0x1;

/// What came from the peer, on its way to tungstenite.
#[derive(Debug, Default)]
struct ReadSide {
    /// Bytes read from the connection and not yet looked at.
    input: Vec<u8>,
    /// Bytes for tungstenite, from `given` on.
    output: Vec<u8>,
    given: usize,
    /// Payload bytes of a frame passing through still to come.
    passing: u64,
    /// A compressed message being collected: its opcode and payload so far.
    collecting: Option<(u8, Vec<u8>)>,
    /// A refusal was handed to tungstenite: nothing more is read.
    stopped: bool,
}

impl ReadSide {
    /// Moves what it can from `input` to `output`; false when it needs more input.
    fn step(&mut self, role: Role, max_message: usize) -> bool {
        if self.stopped {
            return false;
        }
        if self.passing > 0 {
            if self.input.is_empty() {
                return false;
            }
            let n = self.input.len().min(usize::try_from(self.passing).unwrap_or(usize::MAX));
            self.output.extend(self.input.drain(..n));
            self.passing -= n as u64;
            return true;
        }
        let Some(header) = Header::parse(&self.input) else { return false };
        let compressed_start = matches!(header.opcode(), 0x1 | 0x2) && header.rsv() == RSV1;
        let continues = header.opcode() == 0x0 && self.collecting.is_some();
        if matches!(header.opcode(), 0x1 | 0x2) && self.collecting.is_some() {
            // A new message while one is unfinished: a protocol violation.
            return self.refuse(Refusal::Violation, role);
        }
        if continues && header.rsv() != 0 {
            return self.refuse(Refusal::Violation, role);
        }
        if !compressed_start && !continues {
            // Passes as it is: tungstenite judges it (control frames, plain
            // messages, reserved bits and opcodes).
            self.output.extend(self.input.drain(..header.size));
            self.passing = header.len;
            return true;
        }
        let collected = self.collecting.as_ref().map_or(0, |(_, payload)| payload.len());
        if header.len > (max_message.saturating_sub(collected)) as u64 {
            // More compressed bytes than the message may have inflated.
            return self.refuse(Refusal::TooBig(max_message), role);
        }
        let total = header.size + header.len as usize;
        if self.input.len() < total {
            self.input.reserve_exact(total - self.input.len());
            return false;
        }
        let mut payload: Vec<u8> = self.input.drain(..total).skip(header.size).collect();
        if let Some(key) = header.mask {
            unmask(&mut payload, key);
        }
        match &mut self.collecting {
            Some((_, so_far)) => so_far.extend_from_slice(&payload),
            None => self.collecting = Some((header.opcode(), payload)),
        }
        if header.fin() {
            let (opcode, compressed) = self.collecting.take().unwrap_or_default();
            match inflate(&compressed, max_message) {
                Ok(message) => {
                    let mask = (role == Role::Server).then_some([0; 4]);
                    put_header(&mut self.output, FIN | opcode, message.len(), mask);
                    self.output.extend_from_slice(&message);
                }
                Err(Inflate::TooBig) => return self.refuse(Refusal::TooBig(max_message), role),
                Err(Inflate::Bad) => return self.refuse(Refusal::BadData, role),
            }
        }
        if self.input.is_empty() && self.input.capacity() > 4096 {
            self.input = Vec::new();
        }
        true
    }

    /// Hands tungstenite a frame that it refuses with the right close code,
    /// and stops reading.
    fn refuse(&mut self, refusal: Refusal, role: Role) -> bool {
        let mask = (role == Role::Server).then_some([0; 4]);
        match refusal {
            // A header claiming more than the limit: tungstenite's 1009.
            Refusal::TooBig(limit) => put_header(&mut self.output, FIN | TEXT, limit + 1, mask),
            // Text that is not UTF-8: tungstenite's 1007.
            Refusal::BadData => {
                put_header(&mut self.output, FIN | TEXT, 1, mask);
                self.output.push(0xff);
            }
            // Reserved bits set: tungstenite's 1002.
            Refusal::Violation => put_header(&mut self.output, FIN | 0x20 | TEXT, 0, mask),
        }
        self.stopped = true;
        self.collecting = None;
        self.input = Vec::new();
        true
    }
}

enum Refusal {
    TooBig(usize),
    BadData,
    Violation,
}

#[derive(Debug, PartialEq, Eq)]
enum Inflate {
    TooBig,
    Bad,
}

/// A message deflated a moment ago: its hash, the window, the message, what
/// it became (empty: not worth compressing).
#[derive(Debug)]
struct Remembered {
    hash: u64,
    window_bits: u8,
    plain: Box<[u8]>,
    compressed: Box<[u8]>,
}

/// Messages deflated a moment ago, shared by every connection of the
/// process: a room's frame goes to each of its members, each through its own
/// connection and on whichever thread runs its writer, and is deflated once
/// (once per window size). A member's writer may be up to its outbox behind
/// the others (a megabyte in the multichat app), so the memory is longer:
/// the last `REMEMBER_BYTES` of messages of up to `REMEMBER_UP_TO` bytes,
/// oldest out first (with what they became, at most twice that). A message is
/// only taken after comparing it in full.
static RECENT: LazyLock<Mutex<Recent>> = LazyLock::new(Mutex::default);
const REMEMBER_BYTES: usize = 2 * 1024 * 1024;
const REMEMBER_UP_TO: usize = 16 * 1024;

#[derive(Debug, Default)]
struct Recent {
    by_hash: HashMap<u64, Arc<Remembered>>,
    /// Oldest first; the sum of their `plain` lengths is `bytes`.
    order: VecDeque<Arc<Remembered>>,
    bytes: usize,
}

impl Recent {
    fn find(&self, hash: u64, window_bits: u8, payload: &[u8]) -> Option<Arc<Remembered>> {
        self.by_hash.get(&hash).filter(|r| r.window_bits == window_bits && *r.plain == *payload).cloned()
    }

    fn remember(&mut self, remembered: Remembered) {
        while self.bytes + remembered.plain.len() > REMEMBER_BYTES {
            let Some(oldest) = self.order.pop_front() else { break };
            self.bytes -= oldest.plain.len();
            if self.by_hash.get(&oldest.hash).is_some_and(|r| Arc::ptr_eq(r, &oldest)) {
                self.by_hash.remove(&oldest.hash);
            }
        }
        let remembered = Arc::new(remembered);
        self.bytes += remembered.plain.len();
        self.by_hash.insert(remembered.hash, remembered.clone());
        self.order.push_back(remembered);
    }
}

/// A fast hash of a message (FxHash's step, 8 bytes at a time): it only picks
/// the candidate, which is then compared in full.
fn hash(payload: &[u8], window_bits: u8) -> u64 {
    const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
    let step = |h: u64, word: u64| (h.rotate_left(5) ^ word).wrapping_mul(K);
    let mut h = step(u64::from(window_bits), payload.len() as u64);
    let mut words = payload.chunks_exact(8);
    for word in &mut words {
        h = step(h, u64::from_le_bytes(word.try_into().unwrap_or_default()));
    }
    let mut tail = [0; 8];
    tail[..words.remainder().len()].copy_from_slice(words.remainder());
    step(h, u64::from_le_bytes(tail))
}

thread_local! {
    /// One inflater per thread, reset for each message: with no context
    /// takeover, no message needs another's window.
    static INFLATER: RefCell<Decompress> = RefCell::new(Decompress::new(false));
    /// One deflater per thread and window size, reset for each message.
    static DEFLATERS: RefCell<Vec<(u8, Compress)>> = const { RefCell::new(Vec::new()) };
}

#[cfg(test)]
thread_local! {
    /// How many messages this thread deflated (not taken from `RECENT`).
    static DEFLATED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Inflates one message (its payload without the trailer), never making more
/// than `limit` bytes.
fn inflate(compressed: &[u8], limit: usize) -> Result<Vec<u8>, Inflate> {
    INFLATER.with_borrow_mut(|inflater| {
        inflater.reset(false);
        let mut out = Vec::with_capacity(compressed.len().saturating_mul(4).clamp(64, limit + 1));
        for chunk in [compressed, &TRAILER[..]] {
            let mut taken = 0;
            loop {
                let (in_before, out_before) = (inflater.total_in(), inflater.total_out());
                if out.len() == out.capacity() {
                    if out.len() > limit {
                        return Err(Inflate::TooBig);
                    }
                    let more = out.capacity().min(limit + 1 - out.len()).max(64);
                    out.reserve_exact(more);
                }
                let status = inflater
                    .decompress_vec(&chunk[taken..], &mut out, FlushDecompress::Sync)
                    .map_err(|_| Inflate::Bad)?;
                if out.len() > limit {
                    return Err(Inflate::TooBig);
                }
                taken += (inflater.total_in() - in_before) as usize;
                let progressed = inflater.total_in() != in_before || inflater.total_out() != out_before;
                if status == Status::StreamEnd {
                    // A final block: allowed, and nothing may follow it but the trailer.
                    break;
                }
                if taken >= chunk.len() && out.len() < out.capacity() {
                    break;
                }
                if !progressed && out.len() < out.capacity() {
                    return Err(Inflate::Bad);
                }
            }
        }
        Ok(out)
    })
}

/// Deflates one message for `window_bits` (without the trailer), or None
/// when that would not make it smaller. A payload this thread deflated a
/// moment ago is not deflated again.
fn deflate(payload: &[u8], window_bits: u8) -> Option<Vec<u8>> {
    let hash = (payload.len() <= REMEMBER_UP_TO).then(|| hash(payload, window_bits));
    if let Some(hash) = hash {
        let remembered = RECENT.lock().unwrap_or_else(PoisonError::into_inner).find(hash, window_bits, payload);
        if let Some(hit) = remembered {
            return (!hit.compressed.is_empty()).then(|| hit.compressed.to_vec());
        }
    }
    #[cfg(test)]
    DEFLATED.set(DEFLATED.get() + 1);
    let compressed = DEFLATERS.with_borrow_mut(|deflaters| {
        let at = match deflaters.iter().position(|(bits, _)| *bits == window_bits) {
            Some(at) => at,
            None => {
                deflaters
                    .push((window_bits, Compress::new_with_window_bits(Compression::default(), false, window_bits)));
                deflaters.len() - 1
            }
        };
        let deflater = &mut deflaters[at].1;
        deflater.reset();
        let mut out = Vec::with_capacity(payload.len() + 64);
        let mut taken = 0;
        loop {
            let before = deflater.total_in();
            if deflater.compress_vec(&payload[taken..], &mut out, FlushCompress::Sync).is_err() {
                return Vec::new();
            }
            taken += (deflater.total_in() - before) as usize;
            if taken >= payload.len() && out.len() < out.capacity() {
                break;
            }
            out.reserve(out.capacity().max(64));
        }
        if out.ends_with(&TRAILER) {
            out.truncate(out.len() - TRAILER.len());
        }
        // Not worth it: sent as it is (remembered as such, empty).
        if out.len() >= payload.len() { Vec::new() } else { out }
    });
    if let Some(hash) = hash {
        let remembered =
            Remembered { hash, window_bits, plain: payload.into(), compressed: compressed.as_slice().into() };
        RECENT.lock().unwrap_or_else(PoisonError::into_inner).remember(remembered);
    }
    (!compressed.is_empty()).then_some(compressed)
}

/// What tungstenite wrote, on its way to the peer.
#[derive(Debug, Default)]
struct WriteSide {
    /// Written by tungstenite, not yet a whole frame.
    input: Vec<u8>,
    /// For the connection, from `sent` on.
    output: Vec<u8>,
    sent: usize,
    /// Inside a fragmented message of tungstenite's: not compressed.
    fragmented: bool,
}

impl WriteSide {
    /// Turns every whole frame of `input` into `output`.
    fn process(&mut self, role: Role, window_bits: u8) {
        let mut at = 0;
        while let Some(header) = Header::parse(&self.input[at..]) {
            let Some(total) = usize::try_from(header.len).ok().and_then(|len| len.checked_add(header.size)) else {
                break;
            };
            if self.input.len() - at < total {
                break;
            }
            let frame = &self.input[at..at + total];
            let whole_data = matches!(header.opcode(), 0x1 | 0x2) && header.fin() && header.rsv() == 0;
            let mut sent = false;
            if whole_data && !self.fragmented && header.len as usize >= MIN_COMPRESS_BYTES {
                let mut payload = frame[header.size..].to_vec();
                if let Some(key) = header.mask {
                    unmask(&mut payload, key);
                }
                if let Some(mut compressed) = deflate(&payload, window_bits) {
                    // A client masks again, with tungstenite's own key.
                    let mask = if role == Role::Client { header.mask } else { None };
                    put_header(&mut self.output, header.first | RSV1, compressed.len(), mask);
                    if let Some(key) = mask {
                        unmask(&mut compressed, key);
                    }
                    self.output.extend_from_slice(&compressed);
                    sent = true;
                }
            }
            if !sent {
                self.output.extend_from_slice(frame);
            }
            match header.opcode() {
                0x1 | 0x2 => self.fragmented = !header.fin(),
                0x0 if header.fin() => self.fragmented = false,
                _ => {}
            }
            at += total;
        }
        self.input.drain(..at);
    }

    fn pending(&self) -> &[u8] {
        &self.output[self.sent..]
    }
}

/// How much the write side may hold for the connection before it pushes back.
const WRITE_HIGH_WATER: usize = 64 * 1024;

impl<S: AsyncRead + AsyncWrite + Unpin> Deflate<S> {
    /// Writes what the write side holds; Ready once all of it is out.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(codec) = self.codec.as_mut() else { return Poll::Ready(Ok(())) };
        let write = &mut codec.write;
        while !write.pending().is_empty() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, write.pending()))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            write.sent += n;
        }
        write.output.clear();
        write.sent = 0;
        if write.output.capacity() > WRITE_HIGH_WATER {
            write.output = Vec::new();
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Deflate<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let Some(codec) = this.codec.as_mut() else {
            if !this.prefix.is_empty() {
                let n = this.prefix.len().min(buf.remaining());
                buf.put_slice(&this.prefix[..n]);
                this.prefix.drain(..n);
                if this.prefix.is_empty() {
                    this.prefix = Vec::new();
                }
                return Poll::Ready(Ok(()));
            }
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        };
        loop {
            let read = &mut codec.read;
            if read.given < read.output.len() {
                let n = (read.output.len() - read.given).min(buf.remaining());
                buf.put_slice(&read.output[read.given..read.given + n]);
                read.given += n;
                if read.given == read.output.len() {
                    read.output.clear();
                    read.given = 0;
                    if read.output.capacity() > 4096 {
                        read.output = Vec::new();
                    }
                }
                return Poll::Ready(Ok(()));
            }
            if read.step(codec.role, codec.max_message) {
                continue;
            }
            if read.stopped {
                return Poll::Ready(Ok(())); // the refusal was given: end of stream
            }
            let mut chunk = [0u8; 4096];
            let mut chunk = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut chunk))?;
            if chunk.filled().is_empty() {
                return Poll::Ready(Ok(())); // end of stream; a frame cut short is tungstenite's to judge
            }
            read.input.extend_from_slice(chunk.filled());
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Deflate<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let Some(codec) = this.codec.as_mut() else { return Pin::new(&mut this.inner).poll_write(cx, buf) };
        if !codec.write.pending().is_empty() {
            // Push back while the connection has not taken what is held.
            ready!(this.poll_send(cx))?;
        }
        let Some(codec) = this.codec.as_mut() else { return Poll::Ready(Ok(0)) };
        codec.write.input.extend_from_slice(buf);
        codec.write.process(codec.role, codec.window_bits);
        // Sent now if the connection takes it; else held, and the next write or flush waits.
        let _ = this.poll_send(cx)?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(value: &str) -> Option<PerMessageDeflate> {
        let mut headers = HeaderMap::new();
        headers.insert(SEC_WEBSOCKET_EXTENSIONS, value.parse().unwrap());
        negotiate(&headers)
    }

    #[test]
    fn offers_are_accepted_honoured_or_declined_as_the_rfc_says() {
        let plain = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";
        for accepted in [
            "permessage-deflate",
            "permessage-deflate; client_max_window_bits",
            "permessage-deflate; client_max_window_bits=10",
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
            "PerMessage-Deflate",
            "x-webkit-deflate-frame, permessage-deflate",
        ] {
            assert_eq!(offer(accepted).map(|a| a.response()), Some(HeaderValue::from_static(plain)), "{accepted}");
        }
        let windowed = offer("permessage-deflate; server_max_window_bits=\"12\"").unwrap();
        assert_eq!(windowed.response(), format!("{plain}; server_max_window_bits=12").as_str());
        for declined in [
            "permessage-deflate; foo",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=8",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; client_max_window_bits=7",
            "permessage-deflate; client_max_window_bits=0x0f",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "deflate-frame",
        ] {
            assert_eq!(offer(declined), None, "{declined}");
        }
        // Several header lines, the first acceptable offer wins.
        let mut headers = HeaderMap::new();
        headers.append(SEC_WEBSOCKET_EXTENSIONS, "permessage-deflate; bogus".parse().unwrap());
        headers.append(SEC_WEBSOCKET_EXTENSIONS, "permessage-deflate; server_max_window_bits=9".parse().unwrap());
        assert_eq!(negotiate(&headers).unwrap().server_max_window_bits(), 9);
    }

    #[test]
    fn inflation_never_makes_more_than_the_limit() {
        let bomb = deflate(&vec![b'a'; 1 << 20], 15).unwrap();
        assert!(bomb.len() < 2048, "{}", bomb.len());
        assert_eq!(inflate(&bomb, 64 * 1024), Err(Inflate::TooBig));
        assert_eq!(inflate(&bomb, 1 << 20).unwrap().len(), 1 << 20);
        assert_eq!(inflate(&[0xff, 0xfe, 0x00, 0x12], 1024), Err(Inflate::Bad));
    }

    #[test]
    fn deflate_round_trips_for_every_window_and_skips_what_does_not_shrink() {
        let text = br#"{"msg_type": 0, "room": "1", "username": "alice", "message": "hello hello hello hello"}"#;
        for bits in 9..=15 {
            let compressed = deflate(text, bits).unwrap();
            assert!(compressed.len() < text.len());
            assert_eq!(inflate(&compressed, 1024).unwrap(), text);
        }
        let noise: Vec<u8> = (0..200u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        assert_eq!(deflate(&noise, 15), None, "incompressible: sent as it is");
    }

    /// A frame as tungstenite writes it on a server: final, unmasked.
    fn server_frame(payload: &[u8]) -> Vec<u8> {
        assert!(payload.len() < 126);
        [&[0x81, payload.len() as u8][..], payload].concat()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_room_frame_is_deflated_once_for_all_its_receivers() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let agreed = offer("permessage-deflate").unwrap();
        let messages: Vec<String> = (0..300)
            .map(|i| {
                format!(
                    r#"{{"msg_type": 0, "room": "1", "username": "once", "message": "line {i}, once, once, once"}}"#
                )
            })
            .collect();
        let before = DEFLATED.get();
        // Each receiver's writer writes the room's last 300 frames in a burst,
        // one receiver after another (the order that defeats a short memory).
        let mut receivers = Vec::new();
        for _ in 0..100 {
            let (ours, theirs) = tokio::io::duplex(64 * 1024);
            let mut io = Deflate::new(ours, Role::Server, Some(agreed), 64 * 1024);
            for message in &messages {
                io.write_all(&server_frame(message.as_bytes())).await.unwrap();
            }
            io.flush().await.unwrap();
            receivers.push((io, theirs));
        }
        assert_eq!(DEFLATED.get() - before, messages.len(), "deflations for 100 receivers of 300 frames");
        for (_io, mut theirs) in receivers {
            for message in &messages {
                let mut head = [0; 2];
                theirs.read_exact(&mut head).await.unwrap();
                assert_eq!(head[0], 0xc1, "final, RSV1, text");
                let mut payload = vec![0; usize::from(head[1])];
                theirs.read_exact(&mut payload).await.unwrap();
                assert_eq!(inflate(&payload, 1024).unwrap(), message.as_bytes());
            }
        }
    }
}
