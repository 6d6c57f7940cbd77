//! Malformed protobuf on the gRPC port gets a clear error, and the member keeps serving.

#[path = "support/ports.rs"]
mod ports;
mod support;

use bytes::{Buf, BufMut};
use support::Cluster;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::Status;

/// Sends and receives raw bytes, so a test can put anything on the wire.
#[derive(Clone, Copy, Default)]
struct RawCodec;
struct Raw;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let v = src.chunk().to_vec();
        src.advance(v.len());
        Ok(Some(v))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_protobuf_is_refused_and_the_member_keeps_serving() {
    let c = Cluster::start(3);
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", c.endpoint(0)))
        .unwrap()
        .connect()
        .await
        .expect("connect");
    let garbage: [&[u8]; 4] = [
        &[0xff, 0xff, 0xff, 0xff, 0x0f],       // a varint that never ends
        &[0x0a, 0xff, 0xff, 0xff, 0x7f, 0x01], // a key length far past the end
        &[0x12, 0x05, b'a'],                   // truncated value
        &[0x07],                               // wire type 7 does not exist
    ];
    for path in [
        "/etcdserverpb.KV/Put",
        "/etcdserverpb.KV/Range",
        "/etcdserverpb.KV/Txn",
        "/etcdserverpb.Lease/LeaseGrant",
    ] {
        for bytes in garbage {
            let mut grpc = tonic::client::Grpc::new(channel.clone());
            grpc.ready().await.unwrap();
            let path = tonic::codegen::http::uri::PathAndQuery::from_static(path);
            let r = grpc.unary(tonic::Request::new(bytes.to_vec()), path, RawCodec).await;
            let status = r.expect_err("garbage must not be accepted");
            assert!(
                matches!(status.code(), tonic::Code::Internal | tonic::Code::InvalidArgument),
                "{:?}: {}",
                status.code(),
                status.message()
            );
        }
    }
    // Still serving, on every member.
    assert_eq!(c.ok(&["put", "after-garbage", "ok"]).trim(), "OK");
    for i in 0..3 {
        let out = c.ctl_at(&c.endpoint(i), &["get", "after-garbage", "--print-value-only"], None);
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok", "member {i}");
    }
}
