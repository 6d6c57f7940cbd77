//! The peer port against hostile input: announced lengths that are never sent, connections
//! from another cluster or from no member, messages that lie about their sender.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use cairn_core::eraftpb::{Message, MessageType};
use cairn_io_tokio::transport::{Hello, PeerFrame, Transport, CONNECTIONS_PER_ADDRESS_MAX};
use protobuf::Message as _;

const CLUSTER: u64 = 0xc1;
const ME: u64 = 1;
const PEER: u64 = 2;

/// A transport for member 1 of {1, 2} on a free port (member 2's address is a closed port:
/// nothing here needs it to answer).
async fn transport() -> Transport {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let peers = BTreeMap::from([(PEER, closed)]);
    Transport::start(ME, CLUSTER, "127.0.0.1:0".parse().unwrap(), peers).await.unwrap()
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut f = (body.len() as u32).to_be_bytes().to_vec();
    f.extend_from_slice(body);
    f
}

fn raft(from: u64, to: u64, term: u64) -> Vec<u8> {
    let mut m = Message::new();
    m.set_msg_type(MessageType::MsgHeartbeat);
    m.from = from;
    m.to = to;
    m.term = term;
    let mut body = vec![1u8];
    body.extend_from_slice(&m.write_to_bytes().unwrap());
    frame(&body)
}

fn hello(cluster_id: u64, from: u64, to: u64) -> Vec<u8> {
    frame(&Hello { cluster_id, from, to }.encode())
}

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// True once the server has closed `s` (a read returns end of file or an error).
fn closed_by_server(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut b = [0u8; 1];
    matches!(s.read(&mut b), Ok(0) | Err(_))
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announced_lengths_cost_no_memory_before_or_after_the_hello() {
    let t = transport().await;
    let addr = t.local_addr();
    let before = resident_bytes();
    let grown = blocking(move || {
        let mut conns = Vec::new();
        // 100 connections, each announcing a 400 MiB frame and sending 1 KiB of it: before a
        // hello, each is refused at its first 4 bytes.
        for _ in 0..100 {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(&(400u32 << 20).to_be_bytes()).unwrap();
            let _ = s.write_all(&[7u8; 1024]);
            conns.push(s);
        }
        for s in &mut conns {
            assert!(closed_by_server(s), "a connection without a hello is closed");
        }
        // After a valid hello, from a member: only the bytes sent are held, and only
        // CONNECTIONS_PER_ADDRESS_MAX connections from this address are kept at all.
        let mut kept = 0;
        let mut members = Vec::new();
        for _ in 0..100 {
            let mut s = TcpStream::connect(addr).unwrap();
            let mut bytes = hello(CLUSTER, PEER, ME);
            bytes.extend_from_slice(&(400u32 << 20).to_be_bytes());
            bytes.extend_from_slice(&[7u8; 1024]);
            let _ = s.write_all(&bytes);
            members.push(s);
        }
        std::thread::sleep(Duration::from_millis(300));
        for s in &mut members {
            s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
            let mut b = [0u8; 1];
            if let Err(e) = s.read(&mut b) {
                if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut {
                    kept += 1;
                }
            }
        }
        assert_eq!(kept, CONNECTIONS_PER_ADDRESS_MAX, "connections kept from one address");
        resident_bytes().saturating_sub(before)
    })
    .await;
    assert!(grown < 50 << 20, "200 connections announcing 400 MiB each grew the process by {grown} bytes");
    let stats = t.stats();
    assert!(
        stats.connections_refused.load(Ordering::Relaxed) >= 100 + 100 - CONNECTIONS_PER_ADDRESS_MAX as u64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_member_of_this_cluster_gets_a_message_through_and_only_as_itself() {
    let mut t = transport().await;
    let addr: SocketAddr = t.local_addr();
    blocking(move || {
        for (bytes, what) in [
            (hello(0xbad, PEER, ME), "another cluster"),
            (hello(CLUSTER, 99, ME), "a member id outside the configuration"),
            (hello(CLUSTER, PEER, 3), "meant for another member"),
            (raft(PEER, ME, 1000), "no hello"),
        ] {
            let mut s = TcpStream::connect(addr).unwrap();
            let mut bytes = bytes;
            bytes.extend(raft(PEER, ME, 1000));
            let _ = s.write_all(&bytes);
            assert!(closed_by_server(&mut s), "{what}: closed");
        }
        // A member's connection: a message claiming another sender is dropped, its own gets
        // through.
        let mut s = TcpStream::connect(addr).unwrap();
        let mut bytes = hello(CLUSTER, PEER, ME);
        bytes.extend(raft(3, ME, 2000));
        bytes.extend(raft(PEER, ME, 7));
        s.write_all(&bytes).unwrap();
        s
    })
    .await;
    let got = tokio::time::timeout(Duration::from_secs(5), t.recv()).await.unwrap().unwrap();
    match got {
        PeerFrame::Raft(m) => assert_eq!((m.from, m.term), (PEER, 7), "only the true sender's message"),
        other => panic!("unexpected frame {other:?}"),
    }
    assert!(t.try_recv().is_none());
    let stats = t.stats();
    assert_eq!(stats.connections_refused.load(Ordering::Relaxed), 4);
    assert_eq!(stats.frames_refused.load(Ordering::Relaxed), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_members_exchange_messages_after_their_hellos() {
    // Two transports that know each other's addresses.
    let a_addr = free_addr();
    let b_addr = free_addr();
    let mut a = Transport::start(1, CLUSTER, a_addr, BTreeMap::from([(2, b_addr)])).await.unwrap();
    let mut b = Transport::start(2, CLUSTER, b_addr, BTreeMap::from([(1, a_addr)])).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut m = Message::new();
    m.set_msg_type(MessageType::MsgHeartbeat);
    m.from = 1;
    m.to = 2;
    loop {
        a.send(std::iter::once(PeerFrame::Raft(m.clone())));
        if let Ok(Some(PeerFrame::Raft(got))) =
            tokio::time::timeout(Duration::from_millis(100), b.recv()).await
        {
            assert_eq!(got.from, 1);
            break;
        }
        assert!(Instant::now() < deadline, "no message from a to b");
    }
    let mut back = m.clone();
    back.from = 2;
    back.to = 1;
    b.send(std::iter::once(PeerFrame::Raft(back)));
    let got = tokio::time::timeout(Duration::from_secs(5), a.recv()).await.unwrap().unwrap();
    assert!(matches!(got, PeerFrame::Raft(m) if m.from == 2));
    assert_eq!(a.stats().connections_refused.load(Ordering::Relaxed), 0);
}

/// A heartbeat from `from` to `to`, as a frame to send.
fn heartbeat(from: u64, to: u64) -> PeerFrame {
    let mut m = Message::new();
    m.set_msg_type(MessageType::MsgHeartbeat);
    m.from = from;
    m.to = to;
    PeerFrame::Raft(m)
}

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

/// A member removed while it was away says hello to a member of the configuration: it is told,
/// and learns it (its driver then stops). A member merely unknown is not told.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_member_is_told_so_when_it_says_hello() {
    let a_addr = free_addr();
    let mut a = Transport::start(1, CLUSTER, a_addr, BTreeMap::new()).await.unwrap();
    a.set_members(&[(1, vec![format!("http://{a_addr}")]), (3, vec!["http://127.0.0.1:9".into()])], &[2]);
    // Member 2, removed, still has member 1 as its peer.
    let mut removed = Transport::start(2, CLUSTER, free_addr(), BTreeMap::from([(1, a_addr)])).await.unwrap();
    let mut notices = removed.removed_notices();
    removed.send(std::iter::once(heartbeat(2, 1)));
    let told = tokio::time::timeout(Duration::from_secs(5), notices.recv()).await;
    assert_eq!(told.expect("told within 5 s"), Some(1));
    // Member 4, never a member: refused, not told.
    let mut stranger =
        Transport::start(4, CLUSTER, free_addr(), BTreeMap::from([(1, a_addr)])).await.unwrap();
    let mut notices = stranger.removed_notices();
    stranger.send(std::iter::once(heartbeat(4, 1)));
    let told = tokio::time::timeout(Duration::from_secs(1), notices.recv()).await;
    assert!(told.is_err(), "a member that was never removed is not told it was");
    assert_eq!(a.stats().connections_refused.load(Ordering::Relaxed), 2);
}

/// A member that fell behind the configuration change adding a new leader refuses that
/// leader's hello (it does not know the id), wants the member list, learns it from a peer it
/// knows, and from then on takes the leader's messages and can answer them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_behind_a_configuration_change_learns_the_new_members_from_its_peers() {
    let (a_addr, b_addr, c_addr) = (free_addr(), free_addr(), free_addr());
    let url = |a: SocketAddr| vec![format!("http://{a}")];
    let everyone = [(1, url(a_addr)), (2, url(b_addr)), (5, url(c_addr))];
    // Member 1 applied {1, 2} only; members 2 and 5 applied {1, 2, 5}.
    let mut a = Transport::start(1, CLUSTER, a_addr, BTreeMap::new()).await.unwrap();
    a.set_members(&everyone[..2], &[]);
    let mut b = Transport::start(2, CLUSTER, b_addr, BTreeMap::new()).await.unwrap();
    b.set_members(&everyone, &[]);
    let mut c = Transport::start(5, CLUSTER, c_addr, BTreeMap::new()).await.unwrap();
    c.set_members(&everyone, &[]);

    c.send(std::iter::once(heartbeat(5, 1)));
    let deadline = Instant::now() + Duration::from_secs(5);
    while !a.directory_wanted() {
        assert!(Instant::now() < deadline, "member 1 never wanted the member list");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let answer = cairn_io_tokio::transport::directory(&a.peer_addrs(), None).await.unwrap();
    assert_eq!(answer.members.len(), 3);
    a.learn(answer.members);

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        c.send(std::iter::once(heartbeat(5, 1)));
        if let Ok(Some(PeerFrame::Raft(got))) =
            tokio::time::timeout(Duration::from_millis(200), a.recv()).await
        {
            assert_eq!(got.from, 5);
            break;
        }
        assert!(Instant::now() < deadline, "member 5's messages never reached member 1");
    }
    a.send(std::iter::once(heartbeat(1, 5)));
    let got = tokio::time::timeout(Duration::from_secs(5), c.recv()).await.unwrap().unwrap();
    assert!(matches!(got, PeerFrame::Raft(m) if m.from == 1));
    drop(b);
}
