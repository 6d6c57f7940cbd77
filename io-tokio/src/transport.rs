//! The TCP peer transport: length-delimited frames, each a kind byte and a body (a Raft
//! message as protobuf, or a forwarded client request or reply as bincode).
//!
//! Each peer has its own outbound queue and writer task: a slow or dead peer fills only its
//! own queue, and once that is full its messages are dropped, which Raft tolerates (it resends
//! what matters). Writers reconnect with capped exponential backoff. Inbound frames over
//! `FRAME_BYTES_MAX` close the connection.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use cairn_core::eraftpb::Message;
use protobuf::Message as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Largest frame accepted or sent (a snapshot travels in one message).
pub const FRAME_BYTES_MAX: usize = 512 << 20;
/// Messages queued per peer before new ones are dropped.
pub const OUTBOUND_QUEUED_MAX: usize = 4096;
/// Messages received but not yet stepped before new ones are dropped.
pub const INBOUND_QUEUED_MAX: usize = 8192;
const BACKOFF_MS_MIN: u64 = 50;
const BACKOFF_MS_MAX: u64 = 2_000;

/// What travels between members. Besides Raft's own messages, members forward the client
/// requests only the leader can serve (lease keep-alive and time-to-live), as etcd forwards
/// them over its peer URL.
#[derive(Clone, Debug)]
pub enum PeerFrame {
    Raft(Message),
    /// A client request forwarded to the leader; answered with a `Reply` carrying `id`.
    Request {
        from: u64,
        id: u64,
        request: cairn_core::Request,
    },
    Reply {
        id: u64,
        result: Result<cairn_core::Response, cairn_core::Error>,
    },
}

const KIND_RAFT: u8 = 1;
const KIND_REQUEST: u8 = 2;
const KIND_REPLY: u8 = 3;

#[derive(serde::Serialize, serde::Deserialize)]
struct ForwardedRequest {
    from: u64,
    id: u64,
    request: cairn_core::Request,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ForwardedReply {
    id: u64,
    result: Result<cairn_core::Response, cairn_core::Error>,
}

impl PeerFrame {
    fn to(&self) -> Option<u64> {
        match self {
            PeerFrame::Raft(m) => Some(m.to),
            _ => None,
        }
    }

    fn encode(&self) -> io::Result<Vec<u8>> {
        let (kind, body) = match self {
            PeerFrame::Raft(m) => (KIND_RAFT, m.write_to_bytes().map_err(io::Error::other)?),
            PeerFrame::Request { from, id, request } => (
                KIND_REQUEST,
                bincode::serialize(&ForwardedRequest { from: *from, id: *id, request: request.clone() })
                    .map_err(io::Error::other)?,
            ),
            PeerFrame::Reply { id, result } => (
                KIND_REPLY,
                bincode::serialize(&ForwardedReply { id: *id, result: result.clone() })
                    .map_err(io::Error::other)?,
            ),
        };
        let mut out = Vec::with_capacity(body.len() + 1);
        out.push(kind);
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Decodes a frame; None for anything malformed (the connection is then dropped).
    fn decode(buf: &[u8]) -> Option<PeerFrame> {
        let (&kind, body) = buf.split_first()?;
        use bincode::Options;
        let opts =
            || bincode::DefaultOptions::new().with_fixint_encoding().with_limit(body.len() as u64 * 2 + 64);
        match kind {
            KIND_RAFT => Message::parse_from_bytes(body).ok().map(PeerFrame::Raft),
            KIND_REQUEST => opts().deserialize::<ForwardedRequest>(body).ok().map(|f| PeerFrame::Request {
                from: f.from,
                id: f.id,
                request: f.request,
            }),
            KIND_REPLY => opts()
                .deserialize::<ForwardedReply>(body)
                .ok()
                .map(|f| PeerFrame::Reply { id: f.id, result: f.result }),
            _ => None,
        }
    }
}

pub struct Transport {
    peers: BTreeMap<u64, mpsc::Sender<PeerFrame>>,
    inbound: mpsc::Receiver<PeerFrame>,
}

impl Transport {
    /// Binds `listen` and starts a writer per peer.
    pub async fn start(
        _id: u64,
        listen: SocketAddr,
        peers: BTreeMap<u64, SocketAddr>,
    ) -> io::Result<Transport> {
        let listener = TcpListener::bind(listen).await?;
        let (in_tx, inbound) = mpsc::channel(INBOUND_QUEUED_MAX);
        tokio::spawn(accept_loop(listener, in_tx));
        let mut queues = BTreeMap::new();
        for (peer, addr) in peers {
            let (tx, rx) = mpsc::channel(OUTBOUND_QUEUED_MAX);
            tokio::spawn(write_loop(addr, rx));
            queues.insert(peer, tx);
        }
        Ok(Transport { peers: queues, inbound })
    }

    /// Queues messages for their peers; never waits. Messages to unknown peers, or to a peer
    /// whose queue is full, are dropped.
    pub fn send(&mut self, msgs: impl Iterator<Item = Message>) {
        for m in msgs {
            let frame = PeerFrame::Raft(m);
            if let Some(q) = frame.to().and_then(|to| self.peers.get(&to)) {
                let _ = q.try_send(frame);
            }
        }
    }

    /// Queues a forwarded request or reply for member `to`; false if it cannot be queued.
    pub fn forward(&mut self, to: u64, frame: PeerFrame) -> bool {
        self.peers.get(&to).is_some_and(|q| q.try_send(frame).is_ok())
    }

    pub async fn recv(&mut self) -> Option<PeerFrame> {
        self.inbound.recv().await
    }

    /// A frame already received, if any; never waits.
    pub fn try_recv(&mut self) -> Option<PeerFrame> {
        self.inbound.try_recv().ok()
    }
}

async fn accept_loop(listener: TcpListener, inbound: mpsc::Sender<PeerFrame>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(BACKOFF_MS_MIN)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(read_loop(stream, inbound.clone()));
    }
}

/// Reads frames until the connection ends or sends garbage.
async fn read_loop(stream: TcpStream, inbound: mpsc::Sender<PeerFrame>) {
    // Buffered: a burst of small frames (heartbeats, append acknowledgements) costs one read
    // call, not two per frame.
    let mut stream = tokio::io::BufReader::with_capacity(64 * 1024, stream);
    let mut buf = Vec::new();
    loop {
        let Ok(len) = stream.read_u32().await else { return };
        let len = len as usize;
        if len > FRAME_BYTES_MAX {
            return;
        }
        buf.resize(len, 0);
        if stream.read_exact(&mut buf).await.is_err() {
            return;
        }
        let Some(msg) = PeerFrame::decode(&buf) else { return };
        if inbound.try_send(msg).is_err() && inbound.is_closed() {
            return;
        }
    }
}

async fn write_loop(addr: SocketAddr, mut queue: mpsc::Receiver<PeerFrame>) {
    let mut backoff = BACKOFF_MS_MIN;
    loop {
        let stream = match TcpStream::connect(addr).await {
            Ok(s) => s,
            Err(_) => {
                // Drop what queued up meanwhile: it is stale, and Raft will resend.
                while queue.try_recv().is_ok() {}
                tokio::time::sleep(Duration::from_millis(backoff)).await;
                backoff = (backoff * 2).min(BACKOFF_MS_MAX);
                continue;
            }
        };
        backoff = BACKOFF_MS_MIN;
        let _ = stream.set_nodelay(true);
        let mut w = BufWriter::new(stream);
        loop {
            let Some(msg) = queue.recv().await else { return };
            if write_frame(&mut w, &msg).await.is_err() {
                break;
            }
            // Batch whatever else is queued into the same flush.
            let mut failed = false;
            while let Ok(msg) = queue.try_recv() {
                if write_frame(&mut w, &msg).await.is_err() {
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

async fn write_frame(w: &mut BufWriter<TcpStream>, frame: &PeerFrame) -> io::Result<()> {
    let bytes = frame.encode()?;
    if bytes.len() > FRAME_BYTES_MAX {
        // Too large to send; Raft treats it as lost.
        return Ok(());
    }
    w.write_u32(bytes.len() as u32).await?;
    w.write_all(&bytes).await
}
