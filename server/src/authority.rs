//! Client connections whose HTTP/2 `:authority` carries a URL scheme, served as etcd serves them.
//!
//! etcd 3.4's Go clients (etcdctl's `endpoint status`, `endpoint hashkv`, `defrag`,
//! `move-leader`, every `--cluster` variant) dial each endpoint as the user or the member list
//! wrote it, and send that string as the request's `:authority`: `http://127.0.0.1:2379`. Go's
//! HTTP/2 server takes it; the `h2` crate under hyper and tonic refuses it as a malformed URI
//! and resets the stream with PROTOCOL_ERROR, before any of Cairn's code sees the request.
//!
//! [`FixAuthority`] sits between the TCP stream and hyper. It reads the client's first header
//! block (HPACK-decoded with `loona_hpack`, keeping the client's compression context):
//! - a connection that is not HTTP/2 with prior knowledge (HTTP/1.1: the v2 API, the gateway),
//!   or whose first `:authority` is a valid authority or absent, is handed through unchanged
//!   from then on: a read goes straight to the socket, nothing is copied or parsed again;
//! - a connection whose first `:authority` is not a valid authority is rewritten for its life:
//!   every header block is decoded and re-encoded, the scheme and a trailing `/` stripped from
//!   `:authority` (`http://127.0.0.1:2379` becomes `127.0.0.1:2379`), or the field dropped when
//!   what remains is still not an authority (h2 serves a request without one). The re-encoded
//!   blocks use only literals without indexing, so the server's decoder keeps an empty dynamic
//!   table and never has to agree with the client's.
//!
//! What the client sends is otherwise passed on byte for byte, and the server's bytes go to the
//! client untouched. Bounds: one header block may hold at most [`HEADER_BLOCK_BYTES_MAX`]
//! (a client past it is disconnected, as h2 would for a header list that large); bytes are held
//! only until the frame they belong to is complete.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The HTTP/2 client connection preface (RFC 9113, section 3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// HTTP/2 frame header bytes.
const FRAME_HEADER_BYTES: usize = 9;
const FRAME_HEADERS: u8 = 0x1;
const FRAME_CONTINUATION: u8 = 0x9;
const FLAG_END_STREAM: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_PADDED: u8 = 0x8;
const FLAG_PRIORITY: u8 = 0x20;
/// The largest frame payload a client may send before the server raises it, and so the size
/// of the frames a rewritten header block is cut into (h2 never raises it).
const FRAME_PAYLOAD_BYTES_MAX: usize = 16_384;
/// The largest header block (all of its HEADERS and CONTINUATION fragments) taken from a client
/// whose header blocks are rewritten; beyond it the connection fails.
pub const HEADER_BLOCK_BYTES_MAX: usize = 1 << 20;
/// The dynamic table size the server's SETTINGS allow the client's encoder (h2's default,
/// never changed by hyper's server), and so the most the client's decoder mirror may hold.
const HPACK_TABLE_BYTES_MAX: usize = 4096;

/// What the connection is doing with the client's bytes.
enum Mode {
    /// Reading the preface and the frames before the first header block.
    Sniff,
    /// Every header block is re-encoded with a fixed `:authority`.
    Rewrite,
    /// Bytes go from the socket to hyper untouched.
    Through,
}

/// A client connection, read through the `:authority` fix described in the module docs.
pub struct FixAuthority<S> {
    inner: S,
    mode: Mode,
    /// Bytes read from the client and not yet parsed into whole frames.
    input: BytesMut,
    /// Bytes ready for hyper.
    output: BytesMut,
    /// Whether the preface has been seen (only in `Sniff` and `Rewrite`).
    preface_done: bool,
    /// The header block being collected: the HEADERS frame's flags and priority fields, and
    /// the fragments so far.
    block: Option<PendingBlock>,
    /// The client's HPACK compression context, mirrored.
    decoder: loona_hpack::Decoder<'static>,
    /// The read side reached end of file.
    eof: bool,
    /// The connection's place under the client connection cap, given back when it closes.
    _slot: Option<Slot>,
}

struct PendingBlock {
    stream_id: u32,
    end_stream: bool,
    priority: Option<[u8; 5]>,
    fragments: BytesMut,
    /// The frames as received, for a block that turns out not to need rewriting.
    raw: BytesMut,
}

impl<S> FixAuthority<S> {
    /// `new`, holding the connection's place under the cap for its life.
    pub fn with_slot(inner: S, slot: Slot) -> FixAuthority<S> {
        let mut io = FixAuthority::new(inner);
        io._slot = Some(slot);
        io
    }

    /// Wraps a freshly accepted client connection.
    pub fn new(inner: S) -> FixAuthority<S> {
        let mut decoder = loona_hpack::Decoder::new();
        decoder.set_max_allowed_table_size(HPACK_TABLE_BYTES_MAX);
        FixAuthority {
            inner,
            mode: Mode::Sniff,
            input: BytesMut::new(),
            output: BytesMut::new(),
            preface_done: false,
            block: None,
            decoder,
            eof: false,
            _slot: None,
        }
    }

    /// True once the connection is handed through untouched.
    pub fn is_pass_through(&self) -> bool {
        matches!(self.mode, Mode::Through)
    }

    /// Parses what `input` holds into `output`, as far as whole frames go.
    fn process(&mut self) -> io::Result<()> {
        if !self.preface_done {
            let n = self.input.len().min(PREFACE.len());
            if self.input[..n] != PREFACE[..n] {
                // Not HTTP/2 with prior knowledge: nothing to fix.
                self.pass_through();
                return Ok(());
            }
            if n < PREFACE.len() {
                return Ok(());
            }
            self.output.extend_from_slice(&self.input.split_to(PREFACE.len()));
            self.preface_done = true;
        }
        while !matches!(self.mode, Mode::Through) && self.input.len() >= FRAME_HEADER_BYTES {
            let len = u32::from_be_bytes([0, self.input[0], self.input[1], self.input[2]]) as usize;
            if self.input.len() < FRAME_HEADER_BYTES + len {
                // h2 refuses frames above its maximum size; hold at most that much meanwhile.
                if len > FRAME_PAYLOAD_BYTES_MAX {
                    return Err(invalid("an HTTP/2 frame larger than the server allows"));
                }
                self.input.reserve(FRAME_HEADER_BYTES + len - self.input.len());
                return Ok(());
            }
            let kind = self.input[3];
            let flags = self.input[4];
            let stream_id = u32::from_be_bytes([self.input[5], self.input[6], self.input[7], self.input[8]])
                & 0x7fff_ffff;
            let frame = self.input.split_to(FRAME_HEADER_BYTES + len).freeze();
            match (kind, self.block.is_some()) {
                (FRAME_HEADERS, false) => self.start_block(frame, flags, stream_id)?,
                (FRAME_CONTINUATION, true) => self.continue_block(frame, flags, stream_id)?,
                // Anything else in the middle of a header block is the server's to refuse
                // (RFC 9113, section 6.10); so is a CONTINUATION without a block.
                (_, true) => return Err(invalid("a frame inside an HTTP/2 header block")),
                _ => self.output.extend_from_slice(&frame),
            }
        }
        Ok(())
    }

    fn start_block(&mut self, frame: Bytes, flags: u8, stream_id: u32) -> io::Result<()> {
        let mut payload = frame.slice(FRAME_HEADER_BYTES..);
        let mut pad = 0usize;
        if flags & FLAG_PADDED != 0 {
            if payload.is_empty() {
                return Err(invalid("a padded HEADERS frame without its pad length"));
            }
            pad = payload.get_u8() as usize;
        }
        let mut priority = None;
        if flags & FLAG_PRIORITY != 0 {
            if payload.len() < 5 {
                return Err(invalid("a HEADERS frame too short for its priority"));
            }
            let mut p = [0u8; 5];
            payload.copy_to_slice(&mut p);
            priority = Some(p);
        }
        if pad > payload.len() {
            return Err(invalid("HEADERS frame padding longer than the frame"));
        }
        let fragment = payload.slice(..payload.len() - pad);
        let mut block = PendingBlock {
            stream_id,
            end_stream: flags & FLAG_END_STREAM != 0,
            priority,
            fragments: BytesMut::from(&fragment[..]),
            raw: BytesMut::new(),
        };
        if matches!(self.mode, Mode::Sniff) {
            block.raw.extend_from_slice(&frame);
        }
        self.block = Some(block);
        if flags & FLAG_END_HEADERS != 0 {
            self.finish_block()?;
        }
        Ok(())
    }

    fn continue_block(&mut self, frame: Bytes, flags: u8, stream_id: u32) -> io::Result<()> {
        let sniffing = matches!(self.mode, Mode::Sniff);
        let Some(block) = self.block.as_mut() else {
            return Err(invalid("a CONTINUATION frame without a header block"));
        };
        if block.stream_id != stream_id {
            return Err(invalid("a CONTINUATION frame on another stream"));
        }
        if block.fragments.len() + frame.len() > HEADER_BLOCK_BYTES_MAX {
            return Err(invalid("an HTTP/2 header block above 1 MiB"));
        }
        block.fragments.extend_from_slice(&frame[FRAME_HEADER_BYTES..]);
        if sniffing {
            block.raw.extend_from_slice(&frame);
        }
        if flags & FLAG_END_HEADERS != 0 {
            self.finish_block()?;
        }
        Ok(())
    }

    /// A whole header block has arrived: decides the connection's mode on the first one, and
    /// writes the block out as received or rewritten.
    fn finish_block(&mut self) -> io::Result<()> {
        let Some(block) = self.block.take() else { return Ok(()) };
        let mut fields: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        self.decoder
            .decode_with_cb(&block.fragments, |name, value| {
                fields.push((name.into_owned(), value.into_owned()))
            })
            .map_err(|e| invalid(&format!("an HTTP/2 header block that does not decode: {e:?}")))?;
        if matches!(self.mode, Mode::Sniff) {
            let valid = fields
                .iter()
                .filter(|(name, _)| name.as_slice() == b":authority")
                .all(|(_, value)| is_authority(value));
            if valid {
                self.output.extend_from_slice(&block.raw);
                self.pass_through();
                return Ok(());
            }
            self.mode = Mode::Rewrite;
        }
        let mut encoded = BytesMut::with_capacity(block.fragments.len() + 64);
        for (name, value) in &fields {
            if name.as_slice() == b":authority" {
                match fixed_authority(value) {
                    Some(fixed) => encode_literal(&mut encoded, name, fixed),
                    None => continue,
                }
            } else {
                encode_literal(&mut encoded, name, value);
            }
        }
        self.write_block(&block, encoded.freeze());
        Ok(())
    }

    /// Frames a re-encoded header block: one HEADERS frame (with the original's END_STREAM and
    /// priority, without padding), then CONTINUATION frames, each within the frame size limit.
    fn write_block(&mut self, block: &PendingBlock, mut encoded: Bytes) {
        let mut first = true;
        loop {
            let room = if first && block.priority.is_some() {
                FRAME_PAYLOAD_BYTES_MAX - 5
            } else {
                FRAME_PAYLOAD_BYTES_MAX
            };
            let chunk = encoded.split_to(encoded.len().min(room));
            let last = encoded.is_empty();
            let mut flags = if last { FLAG_END_HEADERS } else { 0 };
            let kind = if first { FRAME_HEADERS } else { FRAME_CONTINUATION };
            let mut len = chunk.len();
            if first {
                if block.end_stream {
                    flags |= FLAG_END_STREAM;
                }
                if block.priority.is_some() {
                    flags |= FLAG_PRIORITY;
                    len += 5;
                }
            }
            self.output.put_slice(&(len as u32).to_be_bytes()[1..]);
            self.output.put_u8(kind);
            self.output.put_u8(flags);
            self.output.put_u32(block.stream_id);
            if first {
                if let Some(p) = block.priority {
                    self.output.put_slice(&p);
                }
            }
            self.output.put_slice(&chunk);
            first = false;
            if last {
                return;
            }
        }
    }

    /// From now on reads go straight to the socket once `output` and `input` are drained.
    fn pass_through(&mut self) {
        self.mode = Mode::Through;
        let rest = self.input.split();
        self.output.extend_from_slice(&rest);
    }
}

/// Whether h2 takes `value` as a request's `:authority`.
fn is_authority(value: &[u8]) -> bool {
    axum::http::uri::Authority::try_from(value).is_ok()
}

/// `http://host:port/` as `host:port`, if that is an authority.
fn fixed_authority(value: &[u8]) -> Option<&[u8]> {
    if is_authority(value) {
        return Some(value);
    }
    let rest = value.strip_prefix(b"http://").or_else(|| value.strip_prefix(b"https://")).unwrap_or(value);
    let rest = rest.strip_suffix(b"/").unwrap_or(rest);
    is_authority(rest).then_some(rest)
}

/// HPACK "literal header field without indexing, new name" (RFC 7541, section 6.2.2), strings
/// without Huffman coding.
fn encode_literal(out: &mut BytesMut, name: &[u8], value: &[u8]) {
    out.put_u8(0);
    for s in [name, value] {
        out.put_slice(&loona_hpack::encoder::encode_integer(s.len(), 7));
        out.put_slice(s);
    }
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("client connection: {what}"))
}

impl<S: AsyncRead + Unpin> AsyncRead for FixAuthority<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if !this.output.is_empty() {
                let n = this.output.len().min(buf.remaining());
                buf.put_slice(&this.output.split_to(n));
                return Poll::Ready(Ok(()));
            }
            if matches!(this.mode, Mode::Through) || this.eof {
                return Pin::new(&mut this.inner).poll_read(cx, buf);
            }
            let mut chunk = [0u8; 8192];
            let mut read = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
            if read.filled().is_empty() {
                this.eof = true;
                // Whatever was held is an incomplete frame; hyper sees the connection end.
                this.input.clear();
                continue;
            }
            this.input.extend_from_slice(read.filled());
            this.process()?;
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FixAuthority<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Accepts client connections for `axum::serve`, each with no Nagle (small gRPC frames would
/// otherwise wait out the peer's delayed ACK, ~40 ms) and read through [`FixAuthority`]. With a
/// cap (`crate::limits`), a connection beyond it is closed as soon as it is accepted: the
/// member keeps serving the ones it has, and keeps its descriptors for storage and peers.
///
/// Connections are accepted on a thread of their own, which does nothing else: under a connect
/// flood the kernel's accept queue is drained at once, whatever the member's runtime is busy
/// with, so a client connecting meanwhile is not dropped at the SYN and left to retransmit it a
/// second later. (On the member's runtime, with one thread, the accept loop waited its turn
/// behind every connection the flood had opened: a new client's put took up to 1.2 s, etcd's
/// 0.16 s; `scripts/bench-flood`.) At most `ACCEPTED_QUEUE` accepted connections wait for the
/// runtime; beyond, the thread waits and the kernel queue holds the rest.
pub struct ClientListener {
    accepted: tokio::sync::mpsc::Receiver<(std::net::TcpStream, std::net::SocketAddr)>,
    cap: ConnectionCap,
    local_addr: std::net::SocketAddr,
}

/// Accepted connections waiting for the member's runtime to take them.
pub const ACCEPTED_QUEUE: usize = 1024;

/// How long the accept thread waits after an error that is not one connection's (out of
/// descriptors, out of memory) before it accepts again.
const ACCEPT_ERROR_PAUSE: std::time::Duration = std::time::Duration::from_millis(50);

/// The cap on client connections, shared by every client listener of the member.
#[derive(Clone, Debug, Default)]
pub struct ConnectionCap {
    /// The most client connections open at once; `None`: no cap.
    pub max: Option<usize>,
    /// Client connections open now.
    pub open: Arc<AtomicUsize>,
    /// Connections refused at the cap, since start.
    pub refused: Arc<AtomicU64>,
}

impl ConnectionCap {
    pub fn new(max: Option<usize>) -> ConnectionCap {
        ConnectionCap { max, ..ConnectionCap::default() }
    }
}

/// One open client connection, counted until dropped.
pub struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The least time between two log lines about refused connections.
const REFUSED_LOG_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// Refusals since the last log line, logged at most once per `REFUSED_LOG_INTERVAL`.
#[derive(Default)]
struct RefusedLog {
    last: Option<std::time::Instant>,
    since: u64,
}

impl RefusedLog {
    fn note(&mut self, cap: &ConnectionCap, addr: std::net::SocketAddr) {
        cap.refused.fetch_add(1, Ordering::Relaxed);
        self.since += 1;
        let now = std::time::Instant::now();
        if self.last.is_some_and(|last| now.duration_since(last) < REFUSED_LOG_INTERVAL) {
            return;
        }
        let count = std::mem::take(&mut self.since);
        self.last = Some(now);
        tracing::warn!(%addr, refused = count, cap = cap.max, "client connections at the cap: refused (logged at most once per 10 s)");
    }
}

impl ClientListener {
    /// Takes over `listener` and starts its accept thread, which ends once this is dropped
    /// (at the next connection it accepts).
    pub fn new(listener: tokio::net::TcpListener, cap: ConnectionCap) -> io::Result<ClientListener> {
        let listener = listener.into_std()?;
        listener.set_nonblocking(false)?;
        let local_addr = listener.local_addr()?;
        let (tx, accepted) = tokio::sync::mpsc::channel(ACCEPTED_QUEUE);
        let thread_cap = cap.clone();
        std::thread::Builder::new()
            .name(format!("accept {local_addr}"))
            .spawn(move || accept_loop(&listener, &thread_cap, &tx))?;
        Ok(ClientListener { accepted, cap, local_addr })
    }

    /// The next connection within the cap, with its place under the cap (given back when the
    /// slot is dropped); connections past the cap were closed by the accept thread.
    pub async fn accept_counted(&mut self) -> (tokio::net::TcpStream, std::net::SocketAddr, Slot) {
        loop {
            let Some((tcp, addr)) = self.accepted.recv().await else {
                // The accept thread ended (it never does while this listener lives); serve no
                // more connections rather than spin.
                std::future::pending::<()>().await;
                unreachable!("pending never completes");
            };
            let slot = Slot(self.cap.open.clone());
            if tcp.set_nonblocking(true).is_err() {
                continue;
            }
            match tokio::net::TcpStream::from_std(tcp) {
                Ok(tcp) => return (tcp, addr, slot),
                Err(e) => tracing::debug!(%addr, error = %e, "an accepted connection could not be served"),
            }
        }
    }
}

/// The accept thread: accepts, closes what is past the cap, counts the rest under it (so the
/// cap holds however many wait in the queue) and hands them to the runtime.
fn accept_loop(
    listener: &std::net::TcpListener,
    cap: &ConnectionCap,
    tx: &tokio::sync::mpsc::Sender<(std::net::TcpStream, std::net::SocketAddr)>,
) {
    let mut refused = RefusedLog::default();
    // When an accept error was last logged.
    let mut error_logged: Option<std::time::Instant> = None;
    loop {
        let (tcp, addr) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                if error_logged.is_none_or(|last| last.elapsed() >= REFUSED_LOG_INTERVAL) {
                    error_logged = Some(std::time::Instant::now());
                    tracing::warn!(error = %e, "accepting client connections failed; retrying (logged at most once per 10 s)");
                }
                std::thread::sleep(ACCEPT_ERROR_PAUSE);
                continue;
            }
        };
        if cap.max.is_some_and(|max| cap.open.load(Ordering::Relaxed) >= max) {
            drop(tcp);
            refused.note(cap, addr);
            continue;
        }
        cap.open.fetch_add(1, Ordering::Relaxed);
        let _ = tcp.set_nodelay(true);
        if tx.blocking_send((tcp, addr)).is_err() {
            cap.open.fetch_sub(1, Ordering::Relaxed);
            return;
        }
    }
}

/// An accept error that concerns only the connection being accepted (as hyper and axum judge
/// them): accept the next one at once.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}

impl axum::serve::Listener for ClientListener {
    type Io = FixAuthority<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (tcp, addr, slot) = self.accept_counted().await;
        (FixAuthority::with_slot(tcp, slot), addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn listener(backlog: u32, max: Option<usize>) -> io::Result<(ClientListener, ConnectionCap)> {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))?;
        let cap = ConnectionCap::new(max);
        Ok((ClientListener::new(socket.listen(backlog)?, cap.clone())?, cap))
    }

    async fn until(what: &str, f: impl Fn() -> bool) {
        for _ in 0..500 {
            if f() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("never: {what}");
    }

    /// Connections are accepted while nothing on the runtime asks for one (the runtime may be
    /// busy): far more than the kernel's queue of 8 holds.
    #[tokio::test]
    async fn connections_are_accepted_off_the_runtime() -> TestResult {
        let (mut listener, cap) = listener(8, None)?;
        let addr = axum::serve::Listener::local_addr(&listener)?;
        let clients = (0..200).map(|_| std::net::TcpStream::connect(addr)).collect::<io::Result<Vec<_>>>()?;
        until("200 accepted", || cap.open.load(Ordering::Relaxed) == 200).await;
        let mut served = vec![];
        for _ in 0..200 {
            served.push(listener.accept_counted().await);
        }
        drop(served);
        assert_eq!(cap.open.load(Ordering::Relaxed), 0, "each slot is given back");
        drop(clients);
        Ok(())
    }

    /// Past the cap, the accept thread closes connections at once, and counts them.
    #[tokio::test]
    async fn connections_past_the_cap_are_closed_by_the_accept_thread() -> TestResult {
        let (listener, cap) = listener(64, Some(20))?;
        let addr = axum::serve::Listener::local_addr(&listener)?;
        let clients = (0..50).map(|_| std::net::TcpStream::connect(addr)).collect::<io::Result<Vec<_>>>()?;
        until("30 refused", || cap.refused.load(Ordering::Relaxed) == 30).await;
        assert_eq!(cap.open.load(Ordering::Relaxed), 20);
        drop(clients);
        Ok(())
    }
}
