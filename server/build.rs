//! Generates the etcd v3 gRPC types and service traits from `proto/etcd` (Cairn's own
//! definitions of etcd's wire format), and their JSON mapping for the v3 JSON gateway.
//!
//! protoc comes from `protoc-bin-vendored`, so building needs no system install; it is handed
//! to prost-build directly rather than through the process environment.

use std::io;
use std::path::PathBuf;

fn main() -> io::Result<()> {
    let protoc = protoc_bin_vendored::protoc_bin_path().map_err(|e| io::Error::other(e.to_string()))?;
    let out_dir =
        PathBuf::from(std::env::var_os("OUT_DIR").ok_or_else(|| io::Error::other("OUT_DIR unset"))?);
    let descriptors = out_dir.join("etcd_descriptors.bin");
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc);
    // `bytes` fields as `bytes::Bytes`: keys and values move between the wire and the core's
    // `Bytes` without copying.
    config.bytes(["."]);
    config.file_descriptor_set_path(&descriptors);
    // Every service decodes with Cairn's codec: prost's, but a txn's nesting walked without
    // recursion (src/grpc/codec.rs).
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .codec_path("crate::grpc::codec::EtcdCodec")
        .compile_with_config(
            config,
            &["proto/etcd/mvccpb/kv.proto", "proto/etcd/etcdserverpb/rpc.proto"],
            &["proto/etcd"],
        )?;

    // serde impls in protobuf's JSON mapping, as etcd's grpc-gateway speaks it: original field
    // names (`create_revision`, `ID`, `dbSize`) on output, either spelling accepted on input,
    // and unknown fields ignored (grpc-gateway v1 decodes with jsonpb's AllowUnknownFields).
    let descriptor_set = std::fs::read(&descriptors)?;
    pbjson_build::Builder::new()
        .register_descriptors(&descriptor_set)
        .map_err(|e| io::Error::other(e.to_string()))?
        .preserve_proto_field_names()
        .ignore_unknown_fields()
        .build(&[".mvccpb", ".etcdserverpb"])
        .map_err(|e| io::Error::other(e.to_string()))
}
