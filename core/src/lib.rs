//! # cairn-core
//!
//! One member of a Cairn cluster as a deterministic state machine: Raft consensus (raft-rs), an
//! MVCC key-value store with etcd v3 semantics, leases, and the change events watches are made
//! of.
//!
//! What it is not: it has no network, no disk, no clock, no threads, no randomness of its own
//! and no async runtime. Time comes in as milliseconds handed to `handle_timeout`; randomness
//! comes from the seed in `Config`; everything the member wants done (messages to send,
//! entries to persist, client responses, watch events) leaves as an `Output` value. The same
//! inputs give the same outputs, always: the real driver (`cairn-io-tokio`) and the simulator
//! (`cairn-io-sim`) run exactly this code.
//!
//! ## Driving a member
//!
//! The loop every driver runs: feed inputs, then call `advance` until the output is empty,
//! acting on each field as its doc says (send `messages` now; make `persist` durable, then send
//! `persist.messages` and acknowledge with `on_persisted`; a `persist` whose `must_sync` is false
//! needs no fsync of its own), then wait until `poll_timeout` or the next input.
//!
//! Writes are proposed in batches: everything submitted (or forwarded by followers) between two
//! `advance` calls goes to raft-rs as one proposal, and a leader with
//! `Config::proposal_batches_max` batches in flight holds new writes until one commits, so that
//! under load one round of appends, acknowledgements and fsyncs carries many writes.
//!
//! ```
//! use cairn_core::kv::{PutRequest, RangeRequest};
//! use cairn_core::{Config, Core, Error, Request, RequestId, Response, ResponseBody};
//!
//! /// Drives a single-member cluster (no peers to send to; the "disk" is a Vec) until request
//! /// `id` is answered.
//! fn run_until_answered(core: &mut Core, disk: &mut Vec<u64>, id: RequestId) -> Result<Response, Error> {
//!     loop {
//!         let out = core.advance().expect("a fatal error stops the node");
//!         if out.is_empty() {
//!             // Nothing to do before the next deadline: a real driver sleeps, a simulator jumps.
//!             let now_ms = core.poll_timeout();
//!             core.handle_timeout(now_ms);
//!             continue;
//!         }
//!         assert!(out.messages.is_empty(), "no peers");
//!         if let Some(p) = out.persist {
//!             // Write p.snapshot, p.entries and p.hard_state, fsync, then send p.messages.
//!             disk.extend(p.entries.iter().map(|e| e.index));
//!             core.on_persisted(p.number);
//!         }
//!         if let Some((_, result)) = out.responses.into_iter().find(|(rid, _)| *rid == id) {
//!             return result;
//!         }
//!     }
//! }
//!
//! let mut core = Core::new(Config::new(1, vec![1], 7), None).unwrap();
//! let mut disk = Vec::new();
//!
//! // Not yet leader: a write is refused at once (a client would retry).
//! core.submit(1, Request::Put(PutRequest { key: "foo".into(), value: "bar".into(), ..Default::default() }));
//! assert_eq!(run_until_answered(&mut core, &mut disk, 1).unwrap_err(), Error::NoLeader);
//!
//! // A linearizable read waits out the election (it retries its ReadIndex round).
//! core.submit(2, Request::Range(RangeRequest { key: "foo".into(), ..Default::default() }));
//! let r = run_until_answered(&mut core, &mut disk, 2).unwrap();
//! assert!(core.is_leader() && core.now_ms() >= 1_000, "elected after an election timeout");
//! assert!(matches!(r.body, ResponseBody::Range(ref rr) if rr.kvs.is_empty()));
//!
//! core.submit(3, Request::Put(PutRequest { key: "foo".into(), value: "bar".into(), ..Default::default() }));
//! let put = run_until_answered(&mut core, &mut disk, 3).unwrap();
//! assert_eq!(put.header.revision, 2);
//! assert!(!disk.is_empty(), "the entry was persisted before it was acknowledged");
//!
//! core.submit(4, Request::Range(RangeRequest { key: "foo".into(), ..Default::default() }));
//! match run_until_answered(&mut core, &mut disk, 4).unwrap().body {
//!     ResponseBody::Range(r) => assert_eq!(r.kvs[0].value, "bar"),
//!     other => panic!("unexpected {other:?}"),
//! }
//! ```
//!
//! ## Map
//! - `node`: `Core`, the driver API, and `Output` / `Persist`.
//! - `pipeline`: `Pipeline`, the order every driver carries outputs out in (persists queued
//!   until durable, the no-fsync fast path, own snapshots written then recorded).
//! - `state_machine`: the replicated state (store + leases) and how entries apply.
//! - `mvcc`: the multi-version store: revisions, ranges, txns, compaction, event history.
//! - `lease`: the lease registry and the leader's expiry clock.
//! - `watch`: which changes each watcher is owed, from any uncompacted revision.
//! - `request`: client requests and responses, and the log entry encoding.
//! - `storage`: the in-memory Raft log raft-rs reads from.
//! - `kv`: etcd-shaped key-value types.
//! - `forward`: lease requests a follower hands the leader, and the replies.
//! - `membership`: the member set as replicated state, and the changes to it.
//! - `auth`: users, roles and permissions as replicated state, and the permission check.

pub mod alarm;
pub mod auth;
pub mod backup;
pub mod config;
pub mod error;
pub mod forward;
pub mod kv;
pub mod lease;
pub mod membership;
pub mod mvcc;
pub mod node;
pub mod pipeline;
pub mod prefix_quota;
pub mod quota_table;
pub mod request;
pub mod snapshot;
pub mod state_machine;
pub mod storage;
pub mod v2;
pub mod watch;

pub use config::Config;
pub use error::{Error, Result};
pub use forward::{Forward, ForwardBody};
pub use membership::Member;
pub use node::{Core, Counters, Output, Persist, Recovered, SnapshotMade};
pub use pipeline::{DiskWrite, DiskWriteKind, Effects, Pipeline};
pub use request::{Caller, Header, Request, RequestId, Response, ResponseBody};
pub use watch::{WatchId, WatchPage, WatchRequest, WatchUpdate};

/// raft-rs's message and log types, which cross the core's boundary.
pub use raft::eraftpb;
pub use raft::StateRole;
