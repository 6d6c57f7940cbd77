//! Per-prefix quotas (beyond etcd; asked for in etcd-io/etcd#10084 and Kubernetes KEP 2754):
//! an operator bounds the live keys and bytes (key plus value, of each key's current value)
//! under a key prefix, e.g. `/registry/events/`. A put or txn that would take a prefix past
//! either bound is refused with `Error::PrefixQuotaExceeded`, naming the prefix and the bound;
//! keys under other prefixes are unaffected, and deletes always go through.
//!
//! The quota table is replicated state (set and removed through the log, kept in snapshots);
//! the usage under each quota's prefix is derived from the store (counted when a quota is set
//! or a snapshot decoded, then kept as changes apply), and the check runs when a write applies,
//! identically on every member. A txn is checked on the puts of the branch its compares
//! choose; its deletes are not counted in its favour.
//!
//! This module holds what requests and answers carry; the table the state machine keeps is
//! `quota_table::PrefixQuotas`.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Most quotas a cluster holds: each write is checked against every quota whose prefix covers
/// its key, and the table is small enough to scan.
pub const QUOTAS_MAX: usize = 1024;

/// The bounds on one prefix; 0 is no bound.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Limits {
    pub bytes_max: u64,
    pub keys_max: u64,
}

/// What is under a prefix now: live keys, and their keys' and values' bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Usage {
    pub bytes: u64,
    pub keys: u64,
}

/// One quota as listed.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct QuotaStatus {
    pub prefix: Bytes,
    pub limits: Limits,
    pub usage: Usage,
}
