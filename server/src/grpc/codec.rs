//! The gRPC codec of every service: prost's, except that a `TxnRequest` is decoded without
//! recursion.
//!
//! A txn nests: `TxnRequest.success[i].request_txn` is a `TxnRequest` again. prost decodes
//! nested messages recursively and refuses input nested past its recursion limit (100 messages,
//! so about 49 txns), which keeps a few bytes per level from exhausting the stack. etcd has no
//! such limit in its decoder; its operation budget (`mvcc::MAX_TXN_OPS`, 128, shared by a txn
//! and everything nested in it) is what bounds the nesting, so etcd serves txns nested up to
//! 129 deep. Here the txn's own structure (txn -> op -> txn) is walked with an explicit stack,
//! the leaves (compares, ranges, puts, deletes: messages of fixed, shallow depth) go to prost,
//! and a txn nested deeper than the budget allows is refused with etcd's answer before any of
//! it is built. Everything that handles a decoded txn afterwards recurses over at most that many
//! levels.

use std::any::{Any, TypeId};
use std::marker::PhantomData;

use bytes::{Buf, Bytes};
use prost::encoding::{decode_key, decode_varint, skip_field, DecodeContext, WireType};
use prost::Message;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic::Status;
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

use super::pb::etcdserverpb::{request_op, Compare, RequestOp, TxnRequest};

/// How deep a txn may nest (the outermost counts as 1). A txn at depth k holds at least one op
/// of each enclosing txn's budget, so a txn below depth `MAX_TXN_OPS + 1` could only be
/// refused by `mvcc::validate_txn`; deeper input is refused here, unbuilt.
pub const TXN_DEPTH_MAX: usize = cairn_core::mvcc::MAX_TXN_OPS + 1;

/// prost's codec with `EtcdDecoder` (see the module docs). Named in `build.rs`.
#[derive(Debug, Clone)]
pub struct EtcdCodec<T, U> {
    _pd: PhantomData<(T, U)>,
}

impl<T, U> Default for EtcdCodec<T, U> {
    fn default() -> Self {
        EtcdCodec { _pd: PhantomData }
    }
}

impl<T, U> Codec for EtcdCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = EtcdDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::raw_encoder(BufferSettings::default())
    }

    fn decoder(&mut self) -> Self::Decoder {
        EtcdDecoder { prost: ProstDecoder::default() }
    }
}

/// prost's decoder, but `decode_txn` for a `TxnRequest`.
#[derive(Debug, Clone)]
pub struct EtcdDecoder<U> {
    prost: ProstDecoder<U>,
}

impl<U: Message + Default + 'static> Decoder for EtcdDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        if TypeId::of::<U>() != TypeId::of::<TxnRequest>() {
            return self.prost.decode(buf);
        }
        let bytes = buf.copy_to_bytes(buf.remaining());
        let txn: Box<dyn Any> = Box::new(decode_txn(bytes)?);
        match txn.downcast::<U>() {
            Ok(txn) => Ok(Some(*txn)),
            Err(_) => unreachable!("U is TxnRequest: the type ids are equal"),
        }
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.prost.buffer_settings()
    }
}

/// A txn being decoded, or one of its ops, with where its bytes end.
enum Frame {
    Txn {
        end: usize,
        txn: TxnRequest,
    },
    /// An op of the txn below it on the stack, for its `success` (field 2) or `failure` (3).
    Op {
        end: usize,
        field: u32,
        op: RequestOp,
    },
}

/// Decodes a `TxnRequest` as prost would, without recursing over its nesting; refuses one
/// nested deeper than `TXN_DEPTH_MAX` with etcd's "too many operations in txn request".
pub fn decode_txn(bytes: Bytes) -> Result<TxnRequest, Status> {
    let malformed =
        |e: prost::DecodeError| Status::internal(format!("failed to decode Protobuf message: {e}"));
    let framing =
        |what: &str| Status::internal(format!("failed to decode Protobuf message: TxnRequest: {what}"));
    let mut buf = bytes.clone();
    let len = bytes.len();
    let pos = |buf: &Bytes| len - buf.remaining();
    let mut stack = vec![Frame::Txn { end: len, txn: TxnRequest::default() }];
    let mut depth = 1;
    loop {
        // Close every frame whose bytes are all read, innermost first.
        loop {
            let end = match stack.last() {
                Some(Frame::Txn { end, .. } | Frame::Op { end, .. }) => *end,
                None => unreachable!("the outermost txn is popped only at the end"),
            };
            let at = pos(&buf);
            if at < end {
                break;
            }
            if at > end {
                return Err(framing("delimited length exceeded"));
            }
            match stack.pop() {
                Some(Frame::Txn { txn, .. }) if stack.is_empty() => return Ok(txn),
                Some(Frame::Txn { txn, .. }) => {
                    depth -= 1;
                    let Some(Frame::Op { op, .. }) = stack.last_mut() else {
                        unreachable!("a nested txn sits on an op")
                    };
                    op.request = Some(request_op::Request::RequestTxn(txn));
                }
                Some(Frame::Op { field, op, .. }) => {
                    let Some(Frame::Txn { txn, .. }) = stack.last_mut() else {
                        unreachable!("an op sits on a txn")
                    };
                    if field == 2 {
                        txn.success.push(op);
                    } else {
                        txn.failure.push(op);
                    }
                }
                None => unreachable!("checked above"),
            }
        }
        let (tag, wire_type) = decode_key(&mut buf).map_err(malformed)?;
        if wire_type != WireType::LengthDelimited {
            skip_field(wire_type, tag, &mut buf, DecodeContext::default()).map_err(malformed)?;
            continue;
        }
        let field_len = usize::try_from(decode_varint(&mut buf).map_err(malformed)?)
            .ok()
            .filter(|&n| n <= buf.remaining())
            .ok_or_else(|| framing("buffer underflow"))?;
        let start = pos(&buf);
        let end = start + field_len;
        match stack.last_mut() {
            Some(Frame::Txn { txn, .. }) => match tag {
                1 => txn.compare.push(Compare::decode(buf.split_to(field_len)).map_err(malformed)?),
                2 | 3 => stack.push(Frame::Op { end, field: tag, op: RequestOp::default() }),
                _ => buf.advance(field_len),
            },
            Some(Frame::Op { op, .. }) => {
                use request_op::Request;
                let leaf = buf.slice(..field_len);
                match tag {
                    1 => op.request = Some(Request::RequestRange(Message::decode(leaf).map_err(malformed)?)),
                    2 => op.request = Some(Request::RequestPut(Message::decode(leaf).map_err(malformed)?)),
                    3 => {
                        op.request =
                            Some(Request::RequestDeleteRange(Message::decode(leaf).map_err(malformed)?))
                    }
                    4 => {
                        depth += 1;
                        if depth > TXN_DEPTH_MAX {
                            return Err(Status::invalid_argument(cairn_core::Error::TooManyOps.to_string()));
                        }
                        stack.push(Frame::Txn { end, txn: TxnRequest::default() });
                        continue;
                    }
                    _ => {}
                }
                buf.advance(field_len);
            }
            None => unreachable!("the stack is never empty here"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grpc::pb::etcdserverpb::{PutRequest, RangeRequest};

    fn put(key: &str) -> RequestOp {
        RequestOp {
            request: Some(request_op::Request::RequestPut(PutRequest {
                key: key.to_owned().into(),
                value: "v".into(),
                ..Default::default()
            })),
        }
    }

    /// A txn nested `depth` deep (the outermost is 1), each level with a compare, a put and a
    /// range beside the nested txn, in both branches.
    fn nested(depth: usize) -> TxnRequest {
        let mut txn = TxnRequest { success: vec![put("leaf")], ..Default::default() };
        for level in (1..depth).rev() {
            let range = RequestOp {
                request: Some(request_op::Request::RequestRange(RangeRequest {
                    key: format!("r{level}").into(),
                    ..Default::default()
                })),
            };
            txn = TxnRequest {
                compare: vec![Compare { key: format!("c{level}").into(), ..Default::default() }],
                success: vec![
                    put(&format!("s{level}")),
                    RequestOp { request: Some(request_op::Request::RequestTxn(txn)) },
                ],
                failure: vec![range],
            };
        }
        txn
    }

    #[test]
    fn decodes_what_prost_decodes() {
        for depth in [1, 2, 3, 10, 40] {
            let txn = nested(depth);
            let bytes = Bytes::from(txn.encode_to_vec());
            assert_eq!(decode_txn(bytes.clone()).ok(), Some(txn.clone()), "depth {depth}");
            assert_eq!(TxnRequest::decode(bytes).ok(), Some(txn), "prost agrees at depth {depth}");
        }
        // Unknown fields of every wire type are skipped, as prost skips them.
        let mut bytes = nested(3).encode_to_vec();
        bytes.extend_from_slice(&[0x48, 0x07, 0x52, 0x02, 0xaa, 0xbb, 0x5d, 1, 2, 3, 4]);
        let prost = TxnRequest::decode(&bytes[..]).ok();
        assert!(prost.is_some());
        assert_eq!(decode_txn(bytes.clone().into()).ok(), prost);
    }

    #[test]
    fn serves_the_depths_etcd_serves_and_refuses_deeper_unbuilt() {
        let deepest = nested(TXN_DEPTH_MAX);
        let bytes = Bytes::from(deepest.encode_to_vec());
        assert!(TxnRequest::decode(bytes.clone()).is_err(), "prost alone refuses this depth");
        assert_eq!(decode_txn(bytes).ok(), Some(deepest));
        let Err(err) = decode_txn(nested(TXN_DEPTH_MAX + 1).encode_to_vec().into()) else {
            panic!("one level past the most etcd serves was decoded")
        };
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert_eq!(err.message(), "etcdserver: too many operations in txn request");
        // 100,000 levels in under a megabyte (txn -> success op -> txn ...), built from the
        // innermost outwards, back to front: refused without 100,000 frames.
        let mut reversed: Vec<u8> = vec![];
        for _ in 0..100_000 {
            for tag in [0x22u8, 0x12] {
                let mut len = vec![];
                prost::encoding::encode_varint(reversed.len() as u64, &mut len);
                len.reverse();
                reversed.extend_from_slice(&len);
                reversed.push(tag);
            }
        }
        reversed.reverse();
        let Err(err) = decode_txn(reversed.into()) else { panic!("100,000 levels were decoded") };
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    }

    #[test]
    fn malformed_input_is_an_error_never_a_panic() {
        let good = nested(4).encode_to_vec();
        for cut in 0..good.len() {
            let _ = decode_txn(Bytes::copy_from_slice(&good[..cut]));
        }
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..2_000 {
            let mut bytes = good.clone();
            for _ in 0..3 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let at = (state % bytes.len() as u64) as usize;
                bytes[at] = (state >> 32) as u8;
            }
            let ours = decode_txn(bytes.clone().into());
            let prost = TxnRequest::decode(&bytes[..]);
            if let (Ok(a), Ok(b)) = (&ours, &prost) {
                assert_eq!(a, b);
            }
        }
    }
}
