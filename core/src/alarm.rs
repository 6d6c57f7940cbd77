//! Alarms (etcd's Maintenance.Alarm): raised by a member for itself, replicated through the log
//! so every member holds the same list, lifted by an operator (`etcdctl alarm disarm`).
//!
//! `NoSpace`: the member's store passed its quota (`Config::quota_bytes`). While any member's
//! `NoSpace` alarm is up, every member refuses, when applying, the writes that would grow the
//! store (puts, txns with a put, lease grants) with `Error::NoSpace`; reads, deletes,
//! compaction and disarming go on, so an operator can make room and lift it.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum AlarmKind {
    /// etcd's NOSPACE (1).
    NoSpace,
    /// etcd's CORRUPT (2).
    Corrupt,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AlarmAction {
    /// List the alarms up.
    Get,
    Activate,
    Deactivate,
}

/// One alarm up: which member raised it, and what it says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Alarm {
    pub member: u64,
    pub kind: AlarmKind,
}
