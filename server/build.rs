//! Generates the etcd v3 gRPC types and service traits from `proto/etcd` (Cairn's own
//! definitions of etcd's wire format).
//!
//! protoc comes from `protoc-bin-vendored`, so building needs no system install; it is handed
//! to prost-build directly rather than through the process environment.

use std::io;

fn main() -> io::Result<()> {
    let protoc = protoc_bin_vendored::protoc_bin_path().map_err(|e| io::Error::other(e.to_string()))?;
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc);
    // `bytes` fields as `bytes::Bytes`: keys and values move between the wire and the core's
    // `Bytes` without copying.
    config.bytes(["."]);
    tonic_prost_build::configure().build_client(true).build_server(true).compile_with_config(
        config,
        &["proto/etcd/mvccpb/kv.proto", "proto/etcd/etcdserverpb/rpc.proto"],
        &["proto/etcd"],
    )
}
