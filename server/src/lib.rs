//! # cairn-server
//!
//! The front ends of a Cairn member: the etcd v3 gRPC API (`grpc`) over a running member's
//! `cairn_io_tokio::MemberHandle`, etcd's v3 JSON gateway over the same services (`gateway`),
//! etcd's v2 HTTP+JSON keys API (`v2`), and what the member reports about itself (`info`). The `cairn` binary (`main.rs`) parses
//! flags, starts the member and serves these.
//!
//! It holds no consensus or storage logic: every request becomes a `cairn_core::Request`, and
//! every answer is translated back into etcd's wire types.

pub mod authority;
pub mod backup;
pub mod cors;
pub mod credentials;
pub mod gateway;
pub mod grpc;
pub mod info;
pub mod kv_hash;
pub mod limits;
pub mod metrics;
pub mod probes;
pub mod quota_api;
pub mod serve;
pub mod tls;
pub mod v2;
