//! A client that opens many watches on one gRPC stream without waiting for each `created`
//! reply, each create in a DATA frame of its own (as etcd's Go clients send them): every watch
//! is created, the connection stays up, and events reach them. HTTP/2 spelled out with the h2
//! crate, so that the frames are what a multiplexing client sends rather than what tonic's own
//! client would batch.

#[path = "support/ports.rs"]
mod ports;
mod support;

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use cairn_server::grpc::pb::etcdserverpb::{watch_request, WatchCreateRequest, WatchRequest, WatchResponse};
use prost::Message as _;
use support::Cluster;

const WATCHES: usize = 20_000;

/// One gRPC message: compression flag, length, protobuf.
fn grpc_frame(m: &impl prost::Message) -> Bytes {
    let body = m.encode_to_vec();
    let mut b = BytesMut::with_capacity(5 + body.len());
    b.put_u8(0);
    b.put_u32(body.len() as u32);
    b.put_slice(&body);
    b.freeze()
}

/// A Watch call on a new HTTP/2 connection to `endpoint`: the client (kept to keep the
/// connection), the response to come, and the request body to send creates on.
async fn watch_stream(
    endpoint: &str,
) -> (h2::client::SendRequest<Bytes>, h2::client::ResponseFuture, h2::SendStream<Bytes>) {
    let tcp = tokio::net::TcpStream::connect(endpoint).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.expect("HTTP/2 handshake");
    tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    let request = http::Request::post(format!("http://{endpoint}/etcdserverpb.Watch/Watch"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    let (response, send) = client.send_request(request, false).unwrap();
    (client, response, send)
}

/// Watch responses from the response body, as their bytes arrive.
struct Reader {
    body: h2::RecvStream,
    buf: BytesMut,
}

impl Reader {
    async fn next(&mut self) -> Result<Option<WatchResponse>, h2::Error> {
        loop {
            if self.buf.len() >= 5 {
                let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
                if self.buf.len() >= 5 + len {
                    self.buf.advance(5);
                    let msg = self.buf.split_to(len);
                    return Ok(Some(WatchResponse::decode(msg.freeze()).expect("a watch response")));
                }
            }
            let Some(chunk) =
                tokio::time::timeout(Duration::from_secs(60), self.body.data()).await.expect("in time")
            else {
                return Ok(None);
            };
            let chunk = chunk?;
            let _ = self.body.flow_control().release_capacity(chunk.len());
            self.buf.extend_from_slice(&chunk);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_pipelined_watch_creates_each_in_its_own_frame_are_all_served() {
    let c = Cluster::start(1);
    let (_client, response, mut send) = watch_stream(&c.endpoint(0)).await;
    let sender = tokio::spawn(async move {
        for i in 0..WATCHES {
            let create = WatchCreateRequest {
                key: format!("pipelined/{}", i % 100).into_bytes().into(),
                ..Default::default()
            };
            let req =
                WatchRequest { request_union: Some(watch_request::RequestUnion::CreateRequest(create)) };
            let frame = grpc_frame(&req);
            // Wait for flow-control window, as any client must; never for a reply.
            send.reserve_capacity(frame.len());
            while send.capacity() < frame.len() {
                match std::future::poll_fn(|cx| send.poll_capacity(cx)).await {
                    Some(Ok(_)) => {}
                    other => panic!("the stream closed under the client after {i} creates: {other:?}"),
                }
            }
            send.send_data(frame, false).expect("send a create");
        }
        send
    });
    let mut reader =
        Reader { body: response.await.expect("response headers").into_body(), buf: BytesMut::new() };
    let mut created = 0;
    while created < WATCHES {
        let r = match reader.next().await {
            Ok(Some(r)) => r,
            Ok(None) => panic!("the stream ended after {created} creates"),
            Err(e) => panic!("the stream failed after {created} creates: {e}; member log:\n{}", c.logs()),
        };
        assert!(!r.canceled, "watch {} refused: {}", r.watch_id, r.cancel_reason);
        created += usize::from(r.created);
    }
    let _send = sender.await.unwrap();
    // The connection is still up, and a change reaches the watches on its key.
    c.ok(&["put", "pipelined/7", "v"]);
    let mut notified = 0;
    while notified < WATCHES / 100 {
        let r = reader.next().await.expect("the stream stays up").expect("events");
        notified += usize::from(!r.events.is_empty());
    }
}

fn rss_mb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the member's /proc status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS");
    kb / 1024
}

/// Clients that watch the whole key space from revision 1 and then read nothing make the member
/// hold a page of history each (and what their stream's queue allows), not a copy of the whole
/// history: 10 of them over a 20 MB history grew the member by over 200 MB when each watch
/// copied its history at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_watchers_from_revision_1_hold_a_page_each_not_the_history() {
    use cairn_server::grpc::pb::etcdserverpb::{kv_client::KvClient, PutRequest};
    let c = Cluster::start(1);
    let mut kv = KvClient::connect(format!("http://{}", c.endpoint(0))).await.expect("connect");
    for i in 0..2_000 {
        let put = PutRequest {
            key: format!("k{i:05}").into_bytes().into(),
            value: vec![b'v'; 10_240].into(),
            ..Default::default()
        };
        kv.put(put).await.expect("put");
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pid = c.members[0].child.as_ref().expect("running").id();
    let before = rss_mb(pid);
    let mut stalled = Vec::new();
    for _ in 0..10 {
        let (client, response, mut send) = watch_stream(&c.endpoint(0)).await;
        let create = WatchCreateRequest {
            key: vec![0].into(),
            range_end: vec![0].into(),
            start_revision: 1,
            ..Default::default()
        };
        let req = WatchRequest { request_union: Some(watch_request::RequestUnion::CreateRequest(create)) };
        send.send_data(grpc_frame(&req), false).expect("send the create");
        // The response is never read: its window fills and stays full.
        stalled.push((client, send, response));
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let during = rss_mb(pid);
    assert!(during < before + 100, "10 stalled watchers over a 20 MB history: {before} MB -> {during} MB");
    c.ok(&["put", "still", "serving"]);
    drop(stalled);
}
