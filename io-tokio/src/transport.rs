//! The TCP peer transport: length-delimited frames, each a kind byte and a body (a Raft
//! message as protobuf, or a forwarded client request or reply as bincode).
//!
//! Each peer has its own outbound queue and writer task: a slow or dead peer fills only its
//! own queue, and once that is full its messages are dropped, which Raft tolerates (it resends
//! what matters). Writers reconnect with capped exponential backoff.
//!
//! The peer port faces the network, so what it accepts is bounded and checked:
//! - Every connection opens with a `Hello` frame naming the cluster, the sender and the
//!   receiver (etcd checks `X-Etcd-Cluster-ID` the same way). A wrong cluster, a sender that is
//!   not a member, or no hello within `HELLO_TIMEOUT` closes the connection; after it, a
//!   message claiming another sender is dropped. Each is counted (`TransportStats`) and logged
//!   at most once per `LOG_INTERVAL` with the count since.
//! - A frame is read as its bytes arrive (`FrameReader`): memory grows with what a peer
//!   actually sent, never with the length it announced, and a frame over `FRAME_BYTES_MAX`
//!   closes the connection. A frame that stops arriving for `FRAME_STALL_TIMEOUT`, or a
//!   connection silent for `IDLE_TIMEOUT`, is closed.
//!
//! The cluster id and member ids are no secret (every client response header carries them), so
//! the hello stops a misdirected member or a careless tool, not an attacker who reads them
//! first: that takes mutual TLS on the peer port.
//! - At most `CONNECTIONS_PER_ADDRESS_MAX` connections from one IP address and
//!   `CONNECTIONS_MAX` in all; more are closed at once.
//!
//! The peers follow the configuration: `Transport::set_members` starts a writer for a member
//! added, stops the one of a member removed, and changes who may say hello.
//!
//! A member joining an existing cluster does not know its own id (the leader chose it) nor the
//! cluster's: it asks (`discover`) by opening a connection with a `JoinQuery` (its peer URLs)
//! instead of a hello; the answer (`JoinAnswer`) names the cluster, the member whose peer URLs
//! those are, and every member's id and peer URLs, and the connection closes (etcd's joining
//! member reads the same from its peers' `/members`). The member list is no secret either.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use cairn_core::eraftpb::Message;
use protobuf::Message as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Largest frame accepted or sent. A snapshot travels in one message, so this bounds the
/// snapshot a member can send; what a peer costs in memory is bounded by what it sends.
pub const FRAME_BYTES_MAX: usize = 512 << 20;
/// Bytes read from a peer connection per read call.
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// A connection must say `Hello` within this long of being accepted.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// A frame whose bytes stop arriving for this long closes its connection.
pub const FRAME_STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// A connection with no frame for this long is closed (a writer with nothing to send for that
/// long reconnects when it has).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Inbound peer connections kept from one IP address (a member needs one; a few more ride out
/// reconnects). More are closed at once.
pub const CONNECTIONS_PER_ADDRESS_MAX: usize = 8;
/// Inbound peer connections kept in all.
pub const CONNECTIONS_MAX: usize = 256;
/// The least time between two log lines about the same kind of refused input.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);
/// Messages queued per peer before new ones are dropped.
pub const OUTBOUND_QUEUED_MAX: usize = 4096;
/// Messages received but not yet stepped before new ones are dropped.
pub const INBOUND_QUEUED_MAX: usize = 8192;
const BACKOFF_MS_MIN: u64 = 50;
const BACKOFF_MS_MAX: u64 = 2_000;

/// What travels between members: Raft's own messages, and the core's forwarded requests and
/// replies (`cairn_core::forward`: lease keep-alive and time-to-live go to the leader, as etcd
/// forwards them over its peer URL).
#[derive(Clone, Debug)]
pub enum PeerFrame {
    Raft(Message),
    Forward(cairn_core::Forward),
}

const KIND_RAFT: u8 = 1;
const KIND_FORWARD: u8 = 2;
const KIND_HELLO: u8 = 4;
const KIND_JOIN_QUERY: u8 = 5;
const KIND_JOIN_ANSWER: u8 = 6;
/// The answer to a hello from a member the configuration removed: it stops (etcd answers such
/// a member's messages with "removed" the same way).
const KIND_REMOVED: u8 = 7;
/// Largest join query or answer.
const JOIN_BYTES_MAX: usize = 64 * 1024;
/// How long `discover` waits on one peer.
const JOIN_TIMEOUT: Duration = Duration::from_secs(3);

/// A joining member's question: who am I, given my peer URLs?
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JoinQuery {
    pub peer_urls: Vec<String>,
}

/// The answer: the cluster, the asker's member id (0 if no member has those peer URLs yet),
/// and every member's id and peer URLs.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JoinAnswer {
    pub cluster_id: u64,
    pub member_id: u64,
    pub members: Vec<(u64, Vec<String>)>,
}

/// TLS on the peer port, both ways: the acceptor for connections peers open, the connector
/// for the ones this member opens (presenting its certificate, checking theirs).
#[derive(Clone)]
pub struct PeerTls {
    pub acceptor: tokio_rustls::TlsAcceptor,
    pub connector: tokio_rustls::TlsConnector,
}

impl std::fmt::Debug for PeerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PeerTls")
    }
}

/// A peer connection, plaintext or TLS.
trait PeerIo: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> PeerIo for T {}

/// Connects to `addr`, over TLS with `tls` (the peer's certificate must name its IP address).
async fn dial(addr: SocketAddr, tls: Option<&PeerTls>) -> io::Result<Box<dyn PeerIo>> {
    let tcp = TcpStream::connect(addr).await?;
    let _ = tcp.set_nodelay(true);
    match tls {
        None => Ok(Box::new(tcp)),
        Some(tls) => {
            let name = tokio_rustls::rustls::pki_types::ServerName::IpAddress(addr.ip().into());
            Ok(Box::new(tls.connector.connect(name, tcp).await?))
        }
    }
}

fn join_codec() -> impl bincode::Options {
    use bincode::Options;
    bincode::DefaultOptions::new().with_fixint_encoding().with_limit(JOIN_BYTES_MAX as u64)
}

fn encode_join<T: serde::Serialize>(kind: u8, v: &T) -> io::Result<Vec<u8>> {
    use bincode::Options;
    let mut out = vec![kind];
    join_codec().serialize_into(&mut out, v).map_err(io::Error::other)?;
    Ok(out)
}

fn decode_join<T: serde::de::DeserializeOwned>(kind: u8, buf: &[u8]) -> Option<T> {
    use bincode::Options;
    let (&k, body) = buf.split_first()?;
    (k == kind).then(|| join_codec().deserialize(body).ok()).flatten()
}

/// Asks the members at `peers`, in turn, for the member list (a join query naming no URLs);
/// the first answer.
pub async fn directory(peers: &[SocketAddr], tls: Option<&PeerTls>) -> io::Result<JoinAnswer> {
    let query = encode_join(KIND_JOIN_QUERY, &JoinQuery { peer_urls: vec![] })?;
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no peer to ask");
    for &addr in peers {
        match tokio::time::timeout(JOIN_TIMEOUT, ask(addr, &query, tls)).await {
            Ok(Ok(a)) => return Ok(a),
            Ok(Err(e)) => last = e,
            Err(_) => last = io::Error::new(io::ErrorKind::TimedOut, format!("{addr}: no answer")),
        }
    }
    Err(last)
}

/// One join query to `addr`, and its answer.
async fn ask(addr: SocketAddr, query: &[u8], tls: Option<&PeerTls>) -> io::Result<JoinAnswer> {
    let mut stream = dial(addr, tls).await?;
    stream.write_u32(query.len() as u32).await?;
    stream.write_all(query).await?;
    stream.flush().await?;
    let len = stream.read_u32().await? as usize;
    if len == 0 || len > JOIN_BYTES_MAX {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "a malformed join answer"));
    }
    let mut buf = vec![0u8; len];
    stream.read_exact(&mut buf).await?;
    decode_join::<JoinAnswer>(KIND_JOIN_ANSWER, &buf)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "a malformed join answer"))
}

/// Asks the members at `peers` who the member with `peer_urls` is; the first answer that
/// knows it wins. An error when none does (not added yet, or none reachable).
pub async fn discover(
    peers: &[SocketAddr],
    peer_urls: &[String],
    tls: Option<&PeerTls>,
) -> io::Result<JoinAnswer> {
    let query = encode_join(KIND_JOIN_QUERY, &JoinQuery { peer_urls: peer_urls.to_vec() })?;
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no peer to ask");
    for &addr in peers {
        match tokio::time::timeout(JOIN_TIMEOUT, ask(addr, &query, tls)).await {
            Ok(Ok(a)) if a.member_id != 0 => return Ok(a),
            Ok(Ok(_)) => {
                let hint = "add it first: etcdctl member add";
                let why = format!("{addr} knows no member with peer URLs {peer_urls:?} ({hint})");
                last = io::Error::new(io::ErrorKind::NotFound, why);
            }
            Ok(Err(e)) => last = io::Error::new(e.kind(), format!("{addr}: {e}")),
            Err(_) => last = io::Error::new(io::ErrorKind::TimedOut, format!("{addr}: no answer")),
        }
    }
    Err(last)
}

/// The first frame on a peer connection: which cluster, from which member, to which.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hello {
    pub cluster_id: u64,
    pub from: u64,
    pub to: u64,
}

impl Hello {
    const MAGIC: [u8; 4] = *b"CRN1";
    const BYTES: usize = 1 + 4 + 8 * 3;

    /// The frame body: kind, magic, then the three ids, big-endian.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::BYTES);
        out.push(KIND_HELLO);
        out.extend_from_slice(&Self::MAGIC);
        for v in [self.cluster_id, self.from, self.to] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        out
    }

    /// None for anything but a well-formed hello.
    pub fn decode(buf: &[u8]) -> Option<Hello> {
        if buf.len() != Self::BYTES || buf[0] != KIND_HELLO || buf[1..5] != Self::MAGIC {
            return None;
        }
        let id = |i: usize| u64::from_be_bytes(buf[5 + 8 * i..13 + 8 * i].try_into().unwrap_or([0; 8]));
        Some(Hello { cluster_id: id(0), from: id(1), to: id(2) })
    }
}

/// Frames from a peer connection's bytes, without I/O: bytes go in as they arrive, whole frame
/// bodies come out. It holds at most the bytes received and not yet taken as frames, so what
/// a peer costs is what it sent, whatever length it announced.
#[derive(Debug, Default)]
pub struct FrameReader {
    buf: BytesMut,
}

/// A frame that cannot be from a member: the connection is closed.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    #[error("a frame of {0} bytes, over the {FRAME_BYTES_MAX}-byte limit")]
    TooLarge(usize),
    #[error("an empty frame")]
    Empty,
}

impl FrameReader {
    /// Appends bytes read from the connection.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole frame body, if its bytes have all arrived.
    pub fn next_frame(&mut self) -> Result<Option<BytesMut>, FrameError> {
        if self.buf.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as usize;
        if len > FRAME_BYTES_MAX {
            return Err(FrameError::TooLarge(len));
        }
        if len == 0 {
            return Err(FrameError::Empty);
        }
        if self.buf.len() < 4 + len {
            return Ok(None);
        }
        self.buf.advance(4);
        let frame = self.buf.split_to(len);
        if self.buf.is_empty() && self.buf.capacity() > 4 * READ_CHUNK_BYTES {
            // A large frame's buffer is not kept for the small ones after it.
            self.buf = BytesMut::new();
        }
        Ok(Some(frame))
    }

    /// The length the next frame announces, once its 4 bytes have arrived.
    pub fn announced_len(&self) -> Option<usize> {
        (self.buf.len() >= 4)
            .then(|| u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as usize)
    }

    /// Bytes held: a partial frame, or frames not yet taken.
    pub fn buffered_bytes(&self) -> usize {
        self.buf.len()
    }

    /// True when part of a frame has arrived and the rest has not.
    pub fn in_frame(&self) -> bool {
        !self.buf.is_empty()
    }
}

impl PeerFrame {
    fn to(&self) -> u64 {
        match self {
            PeerFrame::Raft(m) => m.to,
            PeerFrame::Forward(f) => f.to,
        }
    }

    fn encode(&self) -> io::Result<Vec<u8>> {
        let (kind, body) = match self {
            PeerFrame::Raft(m) => (KIND_RAFT, m.write_to_bytes().map_err(io::Error::other)?),
            PeerFrame::Forward(f) => (KIND_FORWARD, bincode::serialize(f).map_err(io::Error::other)?),
        };
        let mut out = Vec::with_capacity(body.len() + 1);
        out.push(kind);
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// The member that sent this frame, by its own account.
    fn sender(&self) -> u64 {
        match self {
            PeerFrame::Raft(m) => m.from,
            PeerFrame::Forward(f) => f.from,
        }
    }

    /// Decodes a frame; None for anything malformed (the connection is then dropped).
    pub fn decode(buf: &[u8]) -> Option<PeerFrame> {
        let (&kind, body) = buf.split_first()?;
        use bincode::Options;
        let opts =
            || bincode::DefaultOptions::new().with_fixint_encoding().with_limit(body.len() as u64 * 2 + 64);
        match kind {
            KIND_RAFT => Message::parse_from_bytes(body).ok().map(PeerFrame::Raft),
            KIND_FORWARD => opts().deserialize::<cairn_core::Forward>(body).ok().map(PeerFrame::Forward),
            _ => None,
        }
    }
}

/// What the peer port refused, counted since the member started.
#[derive(Debug, Default)]
pub struct TransportStats {
    /// Connections closed before or at their hello: a wrong cluster or receiver, a sender
    /// that is not a member, no hello in time, or over a connection limit.
    pub connections_refused: AtomicU64,
    /// Frames dropped after the hello: they claimed a sender other than the connection's, or
    /// were forwards this build cannot read.
    pub frames_refused: AtomicU64,
    /// Connections closed for what they sent: a malformed or oversized frame, a stalled one.
    pub connections_failed: AtomicU64,
    /// Frames to each peer that could not be sent: its queue was full, or they were dropped
    /// while its connection was down or failed.
    pub sent_failures: Mutex<BTreeMap<u64, u64>>,
}

impl TransportStats {
    fn send_failed(&self, peer: u64, frames: u64) {
        if frames > 0 {
            if let Ok(mut f) = self.sent_failures.lock() {
                *f.entry(peer).or_default() += frames;
            }
        }
    }
}

/// A log line at most once per `LOG_INTERVAL`, carrying how many events it stands for: an
/// outsider can trigger these as fast as it can connect.
struct RateLimitedLog {
    state: Mutex<(Option<Instant>, u64)>,
}

impl RateLimitedLog {
    fn new() -> RateLimitedLog {
        RateLimitedLog { state: Mutex::new((None, 0)) }
    }

    fn warn(&self, what: &str, peer: SocketAddr) {
        let Ok(mut st) = self.state.lock() else { return };
        st.1 += 1;
        let now = Instant::now();
        if st.0.is_some_and(|last| now.duration_since(last) < LOG_INTERVAL) {
            return;
        }
        let count = std::mem::take(&mut st.1);
        st.0 = Some(now);
        drop(st);
        tracing::warn!(%peer, events = count, "peer port: {what} (logged at most once per {LOG_INTERVAL:?})");
    }
}

/// What the accept loop and every connection share.
struct Gate {
    id: u64,
    cluster_id: u64,
    /// Members that may connect: every member of the configuration but this one.
    members: Mutex<BTreeSet<u64>>,
    /// Every member's id and peer URLs, for answering join queries.
    directory: Mutex<Vec<(u64, Vec<String>)>>,
    /// Members the configuration removed: told so when they say hello.
    removed: Mutex<BTreeSet<u64>>,
    /// A member of this cluster unknown to this member said hello: this member may have
    /// fallen behind the change that added it (see `Transport::directory_wanted`).
    unknown_hello: std::sync::atomic::AtomicBool,
    per_address: Mutex<HashMap<IpAddr, usize>>,
    stats: Arc<TransportStats>,
    refused_log: RateLimitedLog,
    failed_log: RateLimitedLog,
}

impl Gate {
    /// Takes a connection slot for `ip`, or says why not.
    fn admit(self: &Arc<Gate>, ip: IpAddr) -> Option<Slot> {
        let Ok(mut counts) = self.per_address.lock() else { return None };
        let total: usize = counts.values().sum();
        let n = counts.entry(ip).or_insert(0);
        if *n >= CONNECTIONS_PER_ADDRESS_MAX || total >= CONNECTIONS_MAX {
            return None;
        }
        *n += 1;
        Some(Slot { gate: self.clone(), ip })
    }

    /// A hello for this member, in this cluster, from a member the configuration removed.
    fn was_removed(&self, hello: &Hello) -> bool {
        hello.cluster_id == self.cluster_id
            && hello.to == self.id
            && self.removed.lock().is_ok_and(|r| r.contains(&hello.from))
    }

    fn check_hello(&self, hello: &Hello) -> Result<(), &'static str> {
        if hello.cluster_id != self.cluster_id {
            return Err("a connection from another cluster refused");
        }
        if hello.to != self.id {
            return Err("a connection meant for another member refused");
        }
        if !self.members.lock().is_ok_and(|m| m.contains(&hello.from)) {
            return Err("a connection from a member id outside the configuration refused");
        }
        Ok(())
    }
}

/// A connection's place under the limits; given back when dropped.
struct Slot {
    gate: Arc<Gate>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut counts) = self.gate.per_address.lock() {
            if let Some(n) = counts.get_mut(&self.ip) {
                *n -= 1;
                if *n == 0 {
                    counts.remove(&self.ip);
                }
            }
        }
    }
}

pub struct Transport {
    id: u64,
    cluster_id: u64,
    /// Each peer's address and the queue of its writer.
    peers: BTreeMap<u64, (SocketAddr, mpsc::Sender<PeerFrame>)>,
    gate: Arc<Gate>,
    inbound: mpsc::Receiver<PeerFrame>,
    /// Peers that said this member was removed (see `KIND_REMOVED`).
    removed_tx: mpsc::Sender<u64>,
    removed_rx: Option<mpsc::Receiver<u64>>,
    /// The members as the applied configuration has them, and the ids it removed.
    applied: Vec<(u64, Vec<String>)>,
    removed: Vec<u64>,
    /// Members learned from peers (`learn`) that the applied configuration does not hold yet.
    learned: BTreeMap<u64, Vec<String>>,
    /// Frames were dropped for a peer with no address since `directory_wanted` last asked.
    unknown_send: bool,
    stats: Arc<TransportStats>,
    local_addr: SocketAddr,
    tls: Option<PeerTls>,
}

impl Transport {
    /// Binds `listen` and starts a writer per peer. `id` is this member's, `cluster_id` the
    /// cluster's; both are checked on every inbound connection and sent on every outbound one.
    pub async fn start(
        id: u64,
        cluster_id: u64,
        listen: SocketAddr,
        peers: BTreeMap<u64, SocketAddr>,
    ) -> io::Result<Transport> {
        Transport::start_with_tls(id, cluster_id, listen, peers, None).await
    }

    /// `start`, with every connection, both ways, over TLS when `tls` is given.
    pub async fn start_with_tls(
        id: u64,
        cluster_id: u64,
        listen: SocketAddr,
        peers: BTreeMap<u64, SocketAddr>,
        tls: Option<PeerTls>,
    ) -> io::Result<Transport> {
        let listener = TcpListener::bind(listen).await?;
        let local_addr = listener.local_addr()?;
        let (in_tx, inbound) = mpsc::channel(INBOUND_QUEUED_MAX);
        let stats = Arc::new(TransportStats::default());
        let gate = Arc::new(Gate {
            id,
            cluster_id,
            members: Mutex::new(peers.keys().copied().collect()),
            directory: Mutex::new(Vec::new()),
            removed: Mutex::new(BTreeSet::new()),
            unknown_hello: std::sync::atomic::AtomicBool::new(false),
            per_address: Mutex::new(HashMap::new()),
            stats: stats.clone(),
            refused_log: RateLimitedLog::new(),
            failed_log: RateLimitedLog::new(),
        });
        tokio::spawn(accept_loop(listener, in_tx, gate.clone(), tls.as_ref().map(|t| t.acceptor.clone())));
        let (removed_tx, removed_rx) = mpsc::channel(8);
        let mut t = Transport {
            id,
            cluster_id,
            peers: BTreeMap::new(),
            gate,
            inbound,
            removed_tx,
            removed_rx: Some(removed_rx),
            applied: Vec::new(),
            removed: Vec::new(),
            learned: BTreeMap::new(),
            unknown_send: false,
            stats,
            local_addr,
            tls,
        };
        for (peer, addr) in peers {
            t.connect(peer, addr);
        }
        Ok(t)
    }

    fn connect(&mut self, peer: u64, addr: SocketAddr) {
        let (tx, rx) = mpsc::channel(OUTBOUND_QUEUED_MAX);
        let hello = Hello { cluster_id: self.cluster_id, from: self.id, to: peer };
        tokio::spawn(write_loop(
            addr,
            hello,
            rx,
            self.removed_tx.clone(),
            self.stats.clone(),
            self.tls.clone(),
        ));
        self.peers.insert(peer, (addr, tx));
    }

    /// Follows a configuration change: `members` is every member's id and peer URLs (this
    /// one's included). A writer starts for each member added (or whose address changed) and
    /// stops for each removed, and only members may say hello. A member whose peer URL does
    /// not resolve is left unreachable, and logged. A member in `removed` that says hello is
    /// told it was removed.
    pub fn set_members(&mut self, members: &[(u64, Vec<String>)], removed: &[u64]) {
        self.applied = members.to_vec();
        self.removed = removed.to_vec();
        self.learned.retain(|id, _| !members.iter().any(|(m, _)| m == id) && !removed.contains(id));
        self.apply_peers();
    }

    /// Adds members a peer listed (`directory`) that the applied configuration does not hold
    /// yet: this member fell behind the change that added them, and must reach them (a new
    /// leader among them) to catch up. They go when the applied configuration holds them.
    pub fn learn(&mut self, members: Vec<(u64, Vec<String>)>) {
        let mut changed = false;
        for (id, urls) in members {
            let known =
                id == self.id || self.applied.iter().any(|(m, _)| *m == id) || self.removed.contains(&id);
            if !known && self.learned.get(&id) != Some(&urls) {
                tracing::info!(member = %format!("{id:x}"), ?urls, "a member this one's configuration does not hold yet, learned from a peer");
                self.learned.insert(id, urls);
                changed = true;
            }
        }
        if changed {
            self.apply_peers();
        }
    }

    /// Whether this member should ask its peers for the member list: since it last asked,
    /// frames went unsent for want of an address, or a member of this cluster it does not
    /// know said hello.
    pub fn directory_wanted(&mut self) -> bool {
        let hello = self.gate.unknown_hello.swap(false, Ordering::Relaxed);
        std::mem::take(&mut self.unknown_send) | hello
    }

    /// The addresses of the peers written to.
    pub fn peer_addrs(&self) -> Vec<SocketAddr> {
        self.peers.values().map(|(a, _)| *a).collect()
    }

    fn apply_peers(&mut self) {
        let members: Vec<(u64, Vec<String>)> =
            self.applied.iter().cloned().chain(self.learned.iter().map(|(id, u)| (*id, u.clone()))).collect();
        let removed = self.removed.clone();
        let mut wanted = BTreeMap::new();
        for (id, urls) in members.iter().filter(|(id, _)| *id != self.id) {
            match urls.first().map(|u| url_addr(u)) {
                Some(Some(addr)) => {
                    wanted.insert(*id, addr);
                }
                _ => {
                    tracing::warn!(member = %format!("{id:x}"), ?urls, "a member's peer URL does not resolve; it is unreachable")
                }
            }
        }
        self.peers.retain(|id, (addr, _)| wanted.get(id) == Some(addr));
        for (id, addr) in wanted {
            if !self.peers.contains_key(&id) {
                self.connect(id, addr);
            }
        }
        if let Ok(mut m) = self.gate.members.lock() {
            *m = members.iter().map(|(id, _)| *id).filter(|&id| id != self.id).collect();
        }
        if let Ok(mut d) = self.gate.directory.lock() {
            *d = self.applied.clone();
        }
        if let Ok(mut r) = self.gate.removed.lock() {
            *r = removed.iter().copied().collect();
        }
    }

    /// Where peers that say this member was removed from the cluster are reported (it should
    /// stop), by id. Taken once: later calls get a channel that never reports.
    pub fn removed_notices(&mut self) -> mpsc::Receiver<u64> {
        self.removed_rx.take().unwrap_or_else(|| mpsc::channel(1).1)
    }

    /// The peer port's TLS, if any.
    pub fn tls(&self) -> Option<PeerTls> {
        self.tls.clone()
    }

    /// The peers written to, by id.
    pub fn peer_ids(&self) -> Vec<u64> {
        self.peers.keys().copied().collect()
    }

    /// Queues frames for their peers; never waits. Frames to unknown peers, or to a peer whose
    /// queue is full, are dropped (Raft resends what matters; a lost forward times out).
    pub fn send(&mut self, frames: impl Iterator<Item = PeerFrame>) {
        for frame in frames {
            match self.peers.get(&frame.to()) {
                Some((_, q)) => {
                    let to = frame.to();
                    if q.try_send(frame).is_err() {
                        self.stats.send_failed(to, 1);
                    }
                }
                None => self.unknown_send = true,
            }
        }
    }

    pub async fn recv(&mut self) -> Option<PeerFrame> {
        self.inbound.recv().await
    }

    /// A frame already received, if any; never waits.
    pub fn try_recv(&mut self) -> Option<PeerFrame> {
        self.inbound.try_recv().ok()
    }

    /// What the peer port refused so far.
    pub fn stats(&self) -> Arc<TransportStats> {
        self.stats.clone()
    }

    /// The address the peer listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

async fn accept_loop(
    listener: TcpListener,
    inbound: mpsc::Sender<PeerFrame>,
    gate: Arc<Gate>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    loop {
        let Ok((stream, addr)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(BACKOFF_MS_MIN)).await;
            continue;
        };
        let Some(slot) = gate.admit(addr.ip()) else {
            gate.stats.connections_refused.fetch_add(1, Ordering::Relaxed);
            gate.refused_log.warn("a connection over the connection limits refused", addr);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let inbound = inbound.clone();
        match &tls {
            None => drop(tokio::spawn(read_loop(stream, addr, inbound, slot))),
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    // In the connection's own task, within the hello's time: a peer that never
                    // completes its handshake holds only its own slot, and not for long.
                    match tokio::time::timeout(HELLO_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => read_loop(tls, addr, inbound, slot).await,
                        Ok(Err(e)) => {
                            slot.gate.stats.connections_refused.fetch_add(1, Ordering::Relaxed);
                            slot.gate.refused_log.warn(&format!("a peer's TLS handshake failed: {e}"), addr);
                        }
                        Err(_) => {
                            slot.gate.stats.connections_refused.fetch_add(1, Ordering::Relaxed);
                            slot.gate.refused_log.warn("a peer's TLS handshake did not finish in time", addr);
                        }
                    }
                });
            }
        }
    }
}

/// Why a connection's reading ended early.
enum Closed {
    /// The peer closed it, or the network failed: nothing to report.
    Gone,
    Refused(&'static str),
    Failed(String),
}

/// Reads the hello, then frames, until the connection ends or breaks a rule.
async fn read_loop<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    addr: SocketAddr,
    inbound: mpsc::Sender<PeerFrame>,
    slot: Slot,
) {
    let gate = slot.gate.clone();
    match read_frames(&mut stream, &inbound, &gate).await {
        Closed::Gone => {}
        Closed::Refused(why) => {
            gate.stats.connections_refused.fetch_add(1, Ordering::Relaxed);
            gate.refused_log.warn(why, addr);
        }
        Closed::Failed(why) => {
            gate.stats.connections_failed.fetch_add(1, Ordering::Relaxed);
            gate.failed_log.warn(&format!("a connection closed: {why}"), addr);
        }
    }
    drop(slot);
}

async fn read_frames<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    inbound: &mpsc::Sender<PeerFrame>,
    gate: &Gate,
) -> Closed {
    let mut reader = FrameReader::default();
    let mut chunk = vec![0u8; READ_CHUNK_BYTES];
    let mut sender: Option<u64> = None;
    let accepted = Instant::now();
    loop {
        if sender.is_none()
            && reader.announced_len().is_some_and(|len| len != Hello::BYTES && len > JOIN_BYTES_MAX)
        {
            // Nothing but a hello is read from a connection that has not said one.
            return Closed::Refused("a connection that did not open with a hello refused");
        }
        loop {
            let frame = match reader.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => return Closed::Failed(e.to_string()),
            };
            let Some(from) = sender else {
                if let Some(q) = decode_join::<JoinQuery>(KIND_JOIN_QUERY, &frame) {
                    return answer_join(stream, gate, &q).await;
                }
                let Some(hello) = Hello::decode(&frame) else {
                    return Closed::Refused("a connection that did not open with a hello refused");
                };
                if let Err(why) = gate.check_hello(&hello) {
                    if hello.cluster_id == gate.cluster_id && hello.to == gate.id && !gate.was_removed(&hello)
                    {
                        gate.unknown_hello.store(true, Ordering::Relaxed);
                    }
                    if gate.was_removed(&hello) {
                        let _ = tokio::time::timeout(HELLO_TIMEOUT, async {
                            stream.write_all(&[0, 0, 0, 1, KIND_REMOVED]).await?;
                            stream.flush().await
                        })
                        .await;
                        return Closed::Refused("a removed member's connection refused (it was told so)");
                    }
                    return Closed::Refused(why);
                }
                sender = Some(hello.from);
                continue;
            };
            let Some(msg) = PeerFrame::decode(&frame) else {
                // A forward this build does not know (a newer member's: the forwards grow as
                // the core learns new exchanges) is dropped and counted; the Raft messages and
                // the connection go on.
                if frame.first() == Some(&KIND_FORWARD) {
                    gate.stats.frames_refused.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                return Closed::Failed("a frame that does not decode".into());
            };
            if msg.sender() != from {
                gate.stats.frames_refused.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            if inbound.try_send(msg).is_err() && inbound.is_closed() {
                return Closed::Gone;
            }
        }
        let wait = if sender.is_none() {
            match HELLO_TIMEOUT.checked_sub(accepted.elapsed()) {
                Some(left) => left,
                None => return Closed::Refused("a connection that sent no hello in time closed"),
            }
        } else if reader.in_frame() {
            FRAME_STALL_TIMEOUT
        } else {
            IDLE_TIMEOUT
        };
        match tokio::time::timeout(wait, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Closed::Gone,
            Ok(Ok(n)) => reader.push(&chunk[..n]),
            Err(_) if sender.is_none() => {
                return Closed::Refused("a connection that sent no hello in time closed")
            }
            Err(_) if reader.in_frame() => return Closed::Failed("a frame stalled".into()),
            Err(_) => return Closed::Gone,
        }
    }
}

/// Answers a join query from the directory and closes.
async fn answer_join<S: AsyncWrite + Unpin>(stream: &mut S, gate: &Gate, q: &JoinQuery) -> Closed {
    let members = gate.directory.lock().map(|d| d.clone()).unwrap_or_default();
    let member_id = members
        .iter()
        .find(|(_, urls)| !q.peer_urls.is_empty() && urls.iter().any(|u| q.peer_urls.contains(u)))
        .map_or(0, |(id, _)| *id);
    let answer = JoinAnswer { cluster_id: gate.cluster_id, member_id, members };
    let Ok(bytes) = encode_join(KIND_JOIN_ANSWER, &answer) else { return Closed::Gone };
    let _ = tokio::time::timeout(JOIN_TIMEOUT, async {
        stream.write_u32(bytes.len() as u32).await?;
        stream.write_all(&bytes).await?;
        stream.flush().await
    })
    .await;
    Closed::Gone
}

/// `http://host:port` (or `host:port`) to a socket address; None if it does not resolve.
pub fn url_addr(url: &str) -> Option<SocketAddr> {
    use std::net::ToSocketAddrs;
    let rest = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://")).unwrap_or(url);
    rest.trim_end_matches('/').to_socket_addrs().ok().and_then(|mut a| a.next())
}

async fn write_loop(
    addr: SocketAddr,
    hello: Hello,
    mut queue: mpsc::Receiver<PeerFrame>,
    removed: mpsc::Sender<u64>,
    stats: Arc<TransportStats>,
    tls: Option<PeerTls>,
) {
    let peer = hello.to;
    let drain = |queue: &mut mpsc::Receiver<PeerFrame>| {
        let mut n = 0;
        while queue.try_recv().is_ok() {
            n += 1;
        }
        stats.send_failed(peer, n);
    };
    let mut backoff = BACKOFF_MS_MIN;
    loop {
        if queue.is_closed() {
            // The member left the configuration.
            return;
        }
        let stream = match dial(addr, tls.as_ref()).await {
            Ok(s) => s,
            Err(_) => {
                // Drop what queued up meanwhile: it is stale, and Raft will resend.
                drain(&mut queue);
                tokio::time::sleep(Duration::from_millis(backoff)).await;
                backoff = (backoff * 2).min(BACKOFF_MS_MAX);
                continue;
            }
        };
        backoff = BACKOFF_MS_MIN;
        let (mut r, w) = tokio::io::split(stream);
        // The peer never writes on this connection, except to say this member was removed.
        let (removed, peer) = (removed.clone(), hello.to);
        tokio::spawn(async move {
            let mut answer = [0u8; 5];
            if r.read_exact(&mut answer).await.is_ok() && answer == [0, 0, 0, 1, KIND_REMOVED] {
                let _ = removed.send(peer).await;
            }
        });
        let mut w = BufWriter::new(w);
        let hello = hello.encode();
        if w.write_u32(hello.len() as u32).await.is_err() || w.write_all(&hello).await.is_err() {
            drain(&mut queue);
            tokio::time::sleep(Duration::from_millis(backoff)).await;
            continue;
        }
        loop {
            let Some(msg) = queue.recv().await else { return };
            if write_frame(&mut w, &msg).await.is_err() {
                stats.send_failed(peer, 1);
                break;
            }
            // Batch whatever else is queued into the same flush.
            let mut failed = false;
            while let Ok(msg) = queue.try_recv() {
                if write_frame(&mut w, &msg).await.is_err() {
                    stats.send_failed(peer, 1);
                    failed = true;
                    break;
                }
            }
            if failed || w.flush().await.is_err() {
                break;
            }
        }
    }
}

async fn write_frame<W: AsyncWrite + Unpin>(w: &mut BufWriter<W>, frame: &PeerFrame) -> io::Result<()> {
    let bytes = frame.encode()?;
    if bytes.len() > FRAME_BYTES_MAX {
        // Too large to send; Raft treats it as lost.
        return Ok(());
    }
    w.write_u32(bytes.len() as u32).await?;
    w.write_all(&bytes).await
}
