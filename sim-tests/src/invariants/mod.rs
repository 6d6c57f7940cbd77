//! Raft's safety properties (Figure 3 of the Raft paper), checked online while the simulator
//! observes each member, and two end-of-run checks of the key-value layer. One property per
//! module:
//!
//! - `election_safety` (§5.2): at most one leader per term.
//! - `log_matching` (§5.3): two logs holding an entry with the same index and term hold the same
//!   entry there and are identical up to it.
//! - `leader_completeness` (§5.4): an entry committed in a term is in the log of the leader of
//!   every later term.
//! - `state_machine_safety` (§5.4.3): no two members apply different entries at one index; at
//!   one revision every member emits the same events. It builds the reference event history
//!   the watch checker and `no_lost_write` compare against.
//! - `durability` (Figure 2, persistent state): what a member's disk said it synced survives
//!   a crash.
//! - `membership` (thesis §4): the Raft configuration is the member list; a leader has a
//!   quorum of the listed voters' votes (a learner's never counts); a removed member never
//!   leads again.
//! - `counters` (metrics): a member's counts never go down within a boot, and it counts every
//!   change of leader it was seen to make.
//! - `backups` (end of run): every backup a client took is the store at its revision.
//! - `no_lost_write` (end of run): every acknowledged write is in the converged store and in the
//!   reference history.
//!
//! # Driving it
//! `Invariants::observe` takes every `Observation` of the run in the order the driver saw
//! them; the first `Err` is the first broken property, and the checker is spent after it (its
//! state is left as the failed check found it). After healing, `check_final` checks the state of a
//! converged member against the acknowledged writes and the reference history.
//!
//! # What the checkers assume of the observation stream
//! `observer::SimObserver` meets all of these; a driver reordering observations could break them.
//! - A member's `Role` is observed in the advance it changed in, before that advance's messages
//!   are sent (so no member learns of a commit in a term before that term's leader is seen;
//!   `Logs` relies on it to tell which entries a leader must hold).
//! - `Appended` of an entry comes before the `Applied` that covers it (raft-rs applies only
//!   persisted entries, appended in an earlier advance), and `SnapshotInstalled` before the
//!   `Applied` and `Events` that follow from it.
//! - `Events` carries whole revisions: the events of one revision are never split across two
//!   observations (they come from one `StateMachine::apply`).
//! - No observation of a member between its `Crashed` and its next `Restarted`; every boot after
//!   a crash is a `Restarted` (the first boot may be one, with an empty log, or go unreported).
//! - `SyncStarted` comes after the `Appended` of everything the fsync covers, and `Synced` once
//!   the disk says that fsync is done (a crash before that is observed with no `Synced`);
//!   appends between the two are not covered.
//!
//! The order of `Role` against `Appended` within one advance does not matter
//! (`leader_completeness` waits for both).
//!
//! # Memory
//! Per member or per term: `election_safety`, `leader_completeness`, `durability`.
//! The mirror logs hold, per member, only the entries above what it has applied (applied
//! entries are dropped once recorded as committed, see `Logs`). What grows with the run, all
//! `O(entries)` at a few tens of bytes each, so about 10 MB for 10^5 entries: the committed
//! entries (`Logs`), every (index, term) ever appended (`log_matching`), the applied digests
//! (`state_machine_safety`), and the reference event history, which the final checks need
//! whole anyway. Pruning the first two below every member's snapshot would be possible only
//! if the observations said which snapshot each member holds durably (a restart can go back
//! to an older one), so they are kept.

pub mod backups;
pub mod counters;
pub mod durability;
pub mod election_safety;
pub mod leader_completeness;
pub mod log_matching;
pub mod membership;
pub mod no_lost_write;
pub mod state_machine_safety;

use std::collections::{BTreeMap, VecDeque};

use cairn_core::kv::{Event, EventKind, KeyValue};
use cairn_core::state_machine::StateMachine;

use crate::observe::{EntryId, Observation, Role, SimMs, Violation};

pub use no_lost_write::AckedWrite;

use counters::Counters;
use durability::Durability;
use election_safety::ElectionSafety;
use leader_completeness::LeaderCompleteness;
use log_matching::LogMatching;
use membership::Membership;
use state_machine_safety::StateMachineSafety;

/// Every online property, fed one observation at a time.
#[derive(Debug, Default)]
pub struct Invariants {
    logs: Logs,
    election_safety: ElectionSafety,
    log_matching: LogMatching,
    leader_completeness: LeaderCompleteness,
    state_machine_safety: StateMachineSafety,
    durability: Durability,
    membership: Membership,
    counters: Counters,
}

impl Invariants {
    pub fn new() -> Invariants {
        Invariants::default()
    }

    /// Checks `obs`, made at simulated time `at`, against every online property, then takes it
    /// into the checkers' state. Call with every observation, in order; after an `Err` the
    /// checker is spent.
    pub fn observe(&mut self, at: SimMs, obs: &Observation) -> Result<(), Violation> {
        self.check(obs).map_err(|mut v| {
            v.detail = format!("at {at} ms: {}", v.detail);
            v
        })
    }

    fn check(&mut self, obs: &Observation) -> Result<(), Violation> {
        self.election_safety.observe(obs)?;
        self.membership.observe(obs)?;
        self.counters.observe(obs)?;
        // These read the logs as they were before `obs`...
        self.log_matching.observe(&self.logs, obs)?;
        self.state_machine_safety.observe(&self.logs, obs)?;
        self.durability.observe(&self.logs, obs)?;
        self.logs.update(obs);
        // ...and this one as they are after it (see `leader_completeness` for why).
        self.leader_completeness.observe(&self.logs, obs)
    }

    /// Every revision any member applied, with its events in the order they were made
    /// (`state_machine_safety` checks that all members agree on them).
    pub fn reference_events(&self) -> &BTreeMap<i64, Vec<Event>> {
        self.state_machine_safety.reference()
    }

    /// What is known of each member's log and of what is committed.
    pub fn logs(&self) -> &Logs {
        &self.logs
    }

    /// The end-of-run checks, given the state of a member that has converged (applied
    /// everything committed) and every write a client saw acknowledged: no acknowledged write
    /// is lost (`no_lost_write`), and the store's history agrees with the reference history
    /// (`state_machine_safety::StateMachineSafety::check_final`).
    pub fn check_final(&self, final_state: &StateMachine, acked: &[AckedWrite]) -> Result<(), Violation> {
        no_lost_write::check(final_state, self.reference_events(), acked)?;
        self.state_machine_safety.check_final(final_state)
    }
}

/// One entry of a mirror log: the entry, and a hash chained over the member's whole log up to
/// and including it (`chain_next`); `None` when the log's start is not known (see `Logs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MirrorEntry {
    pub id: EntryId,
    pub chain: Option<u64>,
}

/// The checkers' copy of one member's log, kept from its observations.
///
/// Everything at or below `floor` is out of the mirror: covered by a snapshot the member
/// installed or booted from, or applied by the member (and then recorded in
/// `Logs::committed`). `floor_chain` is the chain hash of the log up to `floor`.
#[derive(Clone, Debug)]
pub struct MirrorLog {
    floor: u64,
    floor_chain: Option<u64>,
    /// The entries at `floor + 1 ..`, consecutive.
    entries: VecDeque<MirrorEntry>,
    applied: u64,
    term: u64,
    role: Role,
    /// False between `Crashed` and `Restarted`.
    up: bool,
}

/// The mirror of a member not observed yet: an empty log, as every member starts with.
static FRESH_LOG: MirrorLog = MirrorLog::new();

impl MirrorLog {
    const fn new() -> MirrorLog {
        MirrorLog {
            floor: 0,
            floor_chain: Some(CHAIN_ROOT),
            entries: VecDeque::new(),
            applied: 0,
            term: 0,
            role: Role::Follower,
            up: true,
        }
    }

    /// The highest index not held in the mirror from below (see the type's doc).
    pub fn floor(&self) -> u64 {
        self.floor
    }

    pub fn last_index(&self) -> u64 {
        self.floor + self.entries.len() as u64
    }

    /// The term of the last entry held, if any is.
    pub fn last_term(&self) -> Option<u64> {
        self.entries.back().map(|e| e.id.term)
    }

    /// The entry at `index`, if held (above the floor, not above the last index).
    pub fn entry(&self, index: u64) -> Option<&MirrorEntry> {
        if index <= self.floor {
            return None;
        }
        self.entries.get((index - self.floor - 1) as usize)
    }

    /// The chain hash of the log up to `index`: `Some(chain)` for the floor and every entry
    /// held, `None` for an index outside the mirror.
    pub fn chain_at(&self, index: u64) -> Option<Option<u64>> {
        if index == self.floor {
            Some(self.floor_chain)
        } else {
            self.entry(index).map(|e| e.chain)
        }
    }

    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// The member's term and role as last observed.
    pub fn term(&self) -> u64 {
        self.term
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn is_up(&self) -> bool {
        self.up
    }

    /// Raft's append: entries at or below the floor are dropped (the member holds them in a
    /// snapshot, or has applied them); the rest replace the log from the first of them on.
    /// `log_matching` has checked they are consecutive and leave no hole.
    fn append(&mut self, entries: &[EntryId]) {
        let Some(first) = entries.iter().position(|e| e.index > self.floor) else { return };
        let entries = &entries[first..];
        let start = entries[0].index;
        let mut chain = self.chain_at(start - 1).unwrap_or_else(|| {
            panic!("append at {start} leaves a hole after {} (log_matching checks this)", self.last_index())
        });
        self.entries.truncate((start - self.floor - 1) as usize);
        for e in entries {
            chain = chain_next(chain, e);
            self.entries.push_back(MirrorEntry { id: *e, chain });
        }
    }

    /// The log now starts after `floor` (a snapshot), with nothing in it.
    fn reset(&mut self, floor: u64, floor_chain: Option<u64>) {
        self.floor = floor;
        self.floor_chain = floor_chain;
        self.entries.clear();
    }

    /// Drops the entries at or below `index` from the mirror.
    fn drop_through(&mut self, index: u64) {
        while let Some(e) = self.entries.front() {
            if e.id.index > index {
                break;
            }
            self.floor = e.id.index;
            self.floor_chain = e.chain;
            self.entries.pop_front();
        }
    }
}

/// An entry known committed: the first member to apply it held it in its log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommittedEntry {
    pub id: EntryId,
    /// The chain hash of the committed log up to this entry, if known.
    pub chain: Option<u64>,
    /// The member it was recorded from.
    pub member: u64,
}

/// What the checkers know of the members' logs, shared by the properties: one mirror log per
/// member, the committed entries, and when commits happened relative to terms. `Invariants`
/// updates it after the pre-observation checks (`update`); the properties only read it.
///
/// # Committed entries
/// When a member applies index `i`, every entry up to `i` is committed, and the member's log
/// holds them (raft-rs applies only what its log holds): `committed[j]` is recorded for each
/// newly applied `j` from that member's mirror, the first member to apply it wins, and
/// `state_machine_safety` checks every later applier against it. The member's mirror then drops
/// what it applied: its log can no longer change there (`leader_completeness` checks an append
/// below the floor against `committed`), and `committed` holds it.
///
/// # When an entry was committed
/// Leader Completeness speaks of entries committed *in* a term. The highest term observed
/// anywhere when a commit index is first seen is at least the term it was committed in: a
/// leader's `Role` is observed in the advance it was elected in, before it sends anything, so
/// before any member can learn of a commit of its term. `commit_before_term(t)` is therefore a
/// commit index whose entries were all committed in terms before `t`.
///
/// # Chain hashes
/// Each mirror entry carries a hash over the member's whole log up to it, from an empty log
/// (`CHAIN_ROOT`, as every member starts) on. After a snapshot at index `s` the chain goes on
/// from the chain of the committed entry at `s`; if that is not known, the member's chains
/// are `None` until its log is next rebuilt from a known point. `log_matching` compares chains
/// to check whole prefixes in `O(1)` per entry.
#[derive(Debug, Default)]
pub struct Logs {
    members: BTreeMap<u64, MirrorLog>,
    committed: BTreeMap<u64, CommittedEntry>,
    /// The highest term any member has been observed in.
    term_max: u64,
    /// The highest index any member has been observed to know committed.
    commit_max: u64,
    /// For each value `term_max` had when `commit_max` rose, the highest `commit_max` then.
    commit_max_by_term: BTreeMap<u64, u64>,
}

impl Logs {
    /// The member's mirror log (an empty one for a member not observed yet).
    pub fn member(&self, member: u64) -> &MirrorLog {
        self.members.get(&member).unwrap_or(&FRESH_LOG)
    }

    /// The committed entry at `index`, if some member has applied it from its log.
    pub fn committed(&self, index: u64) -> Option<&CommittedEntry> {
        self.committed.get(&index)
    }

    /// The chain hash of the committed log up to `index` (the start of a snapshot's log).
    pub fn committed_chain(&self, index: u64) -> Option<u64> {
        if index == 0 {
            Some(CHAIN_ROOT)
        } else {
            self.committed.get(&index).and_then(|c| c.chain)
        }
    }

    pub fn commit_max(&self) -> u64 {
        self.commit_max
    }

    /// The highest commit index observed while no member had yet reached term `term`: every
    /// entry up to it was committed in a term before `term` (see the type's doc).
    pub fn commit_before_term(&self, term: u64) -> u64 {
        self.commit_max_by_term.range(..term).next_back().map_or(0, |(_, &c)| c)
    }

    /// Takes `obs` in. The properties have checked it, so what they rule out is asserted.
    fn update(&mut self, obs: &Observation) {
        let member = obs.member();
        let log = self.members.entry(member).or_insert_with(MirrorLog::new);
        assert!(
            log.up || matches!(obs, Observation::Restarted { .. } | Observation::Crashed { .. }),
            "observation of member {member} between its crash and its restart: {obs:?}"
        );
        match obs {
            Observation::Role { term, role, .. } => {
                log.term = *term;
                log.role = *role;
                self.term_max = self.term_max.max(*term);
            }
            Observation::Appended { entries, .. } => log.append(entries),
            Observation::SnapshotInstalled { index, term, .. } => {
                let chain = match self.committed.get(index) {
                    Some(c) if c.id.term == *term => c.chain,
                    _ => None,
                };
                log.reset(*index, chain);
                log.applied = log.applied.max(*index);
                self.raise_commit(*index);
            }
            Observation::Committed { commit, .. } => self.raise_commit(*commit),
            Observation::Applied { index, .. } => {
                for i in log.applied.max(log.floor) + 1..=*index {
                    let Some(e) = log.entry(i) else { continue };
                    let c = self.committed.entry(i).or_insert(CommittedEntry {
                        id: e.id,
                        chain: e.chain,
                        member,
                    });
                    if c.chain.is_none() && c.id == e.id {
                        c.chain = e.chain;
                    }
                }
                log.applied = *index;
                log.drop_through(*index);
                self.raise_commit(*index);
            }
            Observation::Events { .. }
            | Observation::Acknowledged { .. }
            | Observation::SyncStarted { .. }
            | Observation::Synced { .. }
            | Observation::Voted { .. }
            | Observation::Configuration { .. }
            | Observation::MemberRemoved { .. }
            | Observation::Counters { .. } => {}
            Observation::Crashed { .. } => log.up = false,
            Observation::Restarted { snapshot_index, log: entries, .. } => {
                let chain = if *snapshot_index == 0 {
                    Some(CHAIN_ROOT)
                } else {
                    self.committed.get(snapshot_index).and_then(|c| c.chain)
                };
                log.reset(*snapshot_index, chain);
                log.append(entries);
                log.applied = *snapshot_index;
                log.role = Role::Follower;
                log.up = true;
            }
        }
    }

    fn raise_commit(&mut self, commit: u64) {
        if commit > self.commit_max {
            self.commit_max = commit;
            self.commit_max_by_term.insert(self.term_max, commit);
        }
    }
}

/// The chain hash of an empty log.
pub const CHAIN_ROOT: u64 = 0;

/// The chain hash of a log ending in `e`, given that of the log before it.
pub fn chain_next(prev: Option<u64>, e: &EntryId) -> Option<u64> {
    prev.map(|p| mix64(mix64(mix64(p ^ mix64(e.index)) ^ e.term) ^ e.data_hash))
}

/// splitmix64's finalizer: a fixed, well-spread 64-bit mix.
fn mix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// `(index 7, term 3, data 0123abcd..)`, for violation details.
pub fn describe_entry(e: &EntryId) -> String {
    format!("(index {}, term {}, data {:016x})", e.index, e.term, e.data_hash)
}

/// Bytes as a quoted, escaped string.
pub fn describe_bytes(b: &[u8]) -> String {
    format!("\"{}\"", b.escape_ascii())
}

/// `{"k"="v" mod=5 create=3 version=2 lease=0}`.
pub fn describe_kv(kv: &KeyValue) -> String {
    format!(
        "{{{}={} mod={} create={} version={} lease={}}}",
        describe_bytes(&kv.key),
        describe_bytes(&kv.value),
        kv.mod_revision,
        kv.create_revision,
        kv.version,
        kv.lease
    )
}

/// One event, every field shown: `put {"k"="v" mod=5 ..} prev {"k"="u" mod=3 ..}`. A delete's
/// kv is shown as `{"k" mod=5}` when it has etcd's tombstone shape (nothing but key and
/// revision), in full otherwise.
pub fn describe_event(e: &Event) -> String {
    let prev = match &e.prev_kv {
        Some(kv) => describe_kv(kv),
        None => "none".to_string(),
    };
    let tombstone =
        KeyValue { key: e.kv.key.clone(), mod_revision: e.kv.mod_revision, ..KeyValue::default() };
    match e.kind {
        EventKind::Put => format!("put {} prev {prev}", describe_kv(&e.kv)),
        EventKind::Delete if e.kv == tombstone => {
            format!("delete {{{} mod={}}} prev {prev}", describe_bytes(&e.kv.key), e.kv.mod_revision)
        }
        EventKind::Delete => format!("delete {} prev {prev}", describe_kv(&e.kv)),
    }
}

/// Events as a bracketed list, at most `SHOWN` of them.
pub fn describe_events<'a>(events: impl IntoIterator<Item = &'a Event>) -> String {
    const SHOWN: usize = 4;
    let events: Vec<&Event> = events.into_iter().collect();
    let mut parts: Vec<String> = events.iter().take(SHOWN).map(|e| describe_event(e)).collect();
    if events.len() > SHOWN {
        parts.push(format!("... {} more", events.len() - SHOWN));
    }
    format!("[{}]", parts.join("; "))
}
