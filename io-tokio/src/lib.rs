//! # cairn-io-tokio
//!
//! The real driver for `cairn-core`: the member loop on tokio (`member`, as in cairn-io-sim), which carries out what
//! `cairn_core::Pipeline` asks, durable storage on fjall with snapshots in their own files
//! (`storage`, `snapshot_file`) written and fsynced on a thread of its own (`writer`), the TCP
//! peer transport with its hello and bounds (`transport`), peer traffic statistics (`stats`),
//! Prometheus metrics under etcd's names (`metrics`),
//! slow-step warnings (`slow`) and the driver's errors (`error`). A thin loop, no protocol logic
//! and no ordering of its own: the order is the pipeline's, which the simulator runs too.

pub mod error;
pub mod member;
pub mod metrics;
pub mod slow;
pub mod snapshot_file;
pub mod stats;
pub mod storage;
pub mod transport;
pub mod writer;

pub use error::Error;
pub use member::{start, unix_now_ns, MemberConfig, MemberHandle, MemberStatus, V2WatchStream, WatchStream};
