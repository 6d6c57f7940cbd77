//! # cairn-io-tokio
//!
//! The real driver for `cairn-core`: the member loop on tokio (`node`), durable storage on
//! fjall with snapshots in their own files (`storage`, `snapshot_file`) written and fsynced on
//! a thread of its own (`writer`), and the TCP peer transport (`transport`). A thin loop, no
//! protocol logic: it moves the core's outputs to disk and network in the order the core's docs
//! prescribe.

pub mod error;
pub mod node;
pub mod slow;
pub mod snapshot_file;
pub mod stats;
pub mod storage;
pub mod transport;
pub mod writer;

pub use error::Error;
pub use node::{start, unix_now_ns, NodeConfig, NodeHandle, NodeStatus, V2WatchStream, WatchStream};
