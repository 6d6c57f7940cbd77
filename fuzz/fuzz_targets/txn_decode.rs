//! Arbitrary bytes as a gRPC `TxnRequest`: Cairn's decoder (which walks a txn's nesting without
//! recursion) answers a txn or an error, never a panic or a stack overflow, and whenever prost
//! decodes the same bytes too, both give the same txn.
#![no_main]

use bytes::Bytes;
use cairn_server::grpc::codec::decode_txn;
use cairn_server::grpc::pb::etcdserverpb::TxnRequest;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let ours = decode_txn(Bytes::copy_from_slice(data));
    if let (Ok(a), Ok(b)) = (&ours, TxnRequest::decode(data)) {
        assert_eq!(a, &b);
    }
});
