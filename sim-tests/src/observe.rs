//! What the simulator observes of each member as the run goes: the input of the invariant
//! checkers (`invariants`) and of the trace. Plain data; the driver records one
//! `Observation` per change it sees after each `Core::advance`.

use cairn_core::kv::Event;

/// Simulated time in milliseconds (madsim's global clock, not a member's skewed clock).
pub type SimMs = u64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    Follower,
    PreCandidate,
    Candidate,
    Leader,
}

/// One log entry as the checkers see it: the payload is reduced to a hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EntryId {
    pub index: u64,
    pub term: u64,
    pub data_hash: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Observation {
    /// The member's role, term or known leader changed.
    Role { member: u64, term: u64, role: Role, leader: u64 },
    /// The member wrote entries to its log (not yet necessarily synced): each entry at index i
    /// replaces the member's entries at index >= i, as Raft's append does.
    Appended { member: u64, entries: Vec<EntryId> },
    /// The member installed a snapshot from the leader: its log now starts after `index`.
    SnapshotInstalled { member: u64, index: u64, term: u64 },
    /// The member's commit index moved (Raft hard state).
    Committed { member: u64, commit: u64 },
    /// The member applied entries up to `index`; `digest` is the state machine's hash chain
    /// over everything applied (`StateMachine::applied_digest`).
    Applied { member: u64, index: u64, term: u64, digest: u64 },
    /// The member's applied changes, in revision order (every member emits every revision it
    /// applies; a restarted member replays from its snapshot).
    Events { member: u64, events: Vec<Event> },
    /// The member sent a successful append response in its current term: it told the leader
    /// its log holds the leader's entries through `index` (Raft §5.3), which Figure 2 allows
    /// only once they are on stable storage.
    Acknowledged { member: u64, term: u64, index: u64 },
    /// The member's disk started an fsync: what the member appended before it is what the
    /// next `Synced` makes durable.
    SyncStarted { member: u64 },
    /// The fsync last started completed: everything the member appended before it started is
    /// durable (its disk claims so).
    Synced { member: u64 },
    /// The member crashed: what it had not synced is gone.
    Crashed { member: u64 },
    /// The member booted from its disk: `log` is its recovered log after `snapshot_index`.
    Restarted { member: u64, snapshot_index: u64, log: Vec<EntryId> },
    /// The member granted its vote to `candidate` in `term` (a vote response sent).
    Voted { member: u64, term: u64, candidate: u64 },
    /// The member's applied member list changed (or it booted): its Raft configuration as
    /// raft-rs applied it, and the voters and learners its member list names, each sorted.
    Configuration {
        member: u64,
        raft_voters: std::collections::BTreeSet<u64>,
        raft_learners: std::collections::BTreeSet<u64>,
        listed_voters: std::collections::BTreeSet<u64>,
        listed_learners: std::collections::BTreeSet<u64>,
    },
    /// The member applied the removal of member `removed`, in an entry of term `term`.
    MemberRemoved { member: u64, removed: u64, term: u64 },
    /// The member's counts (its metrics) changed.
    Counters { member: u64, counters: cairn_core::Counters },
}

impl Observation {
    pub fn member(&self) -> u64 {
        match self {
            Observation::Role { member, .. }
            | Observation::Appended { member, .. }
            | Observation::SnapshotInstalled { member, .. }
            | Observation::Committed { member, .. }
            | Observation::Applied { member, .. }
            | Observation::Events { member, .. }
            | Observation::Acknowledged { member, .. }
            | Observation::SyncStarted { member }
            | Observation::Synced { member }
            | Observation::Crashed { member }
            | Observation::Restarted { member, .. }
            | Observation::Voted { member, .. }
            | Observation::Configuration { member, .. }
            | Observation::MemberRemoved { member, .. }
            | Observation::Counters { member, .. } => *member,
        }
    }
}

/// A broken safety property: which one, the Raft paper section it comes from, and what was
/// seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub property: &'static str,
    pub section: &'static str,
    pub detail: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.section.starts_with(|c: char| c.is_ascii_digit()) || self.section.starts_with("Figure") {
            write!(f, "{} (Raft §{}): {}", self.property, self.section, self.detail)
        } else {
            write!(f, "{} ({}): {}", self.property, self.section, self.detail)
        }
    }
}

/// A stable 64-bit hash of bytes (FNV-1a), the same on every platform and run.
pub fn hash_bytes(b: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &x in b {
        h ^= x as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}
