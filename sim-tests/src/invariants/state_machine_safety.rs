//! State Machine Safety (Raft §5.4.3): if a server has applied a log entry at a given index to
//! its state machine, no other server will ever apply a different log entry for the same index.
//!
//! # How it is checked
//! - Entries: when a member applies up to `index`, each newly applied entry in its log must be
//!   the committed entry recorded there (`Logs`: the first member to apply an index records
//!   it), and its log must hold it at all (raft-rs applies only what its log holds). Applied
//!   indices only go forward, except through a restart.
//! - State: `Applied` carries the state machine's digest, a hash chain over every entry applied
//!   (index, term, payload). One digest per index across all members and restarts: a member
//!   replaying its log after a restart must reach the same digest at the same index. This also
//!   checks what the log check cannot: the state a snapshot carries (a member reports the digest
//!   of a state it installed) and the bytes actually applied.
//! - Snapshots: a snapshot installed at (index, term) must end at the committed entry there.
//! - Events: at one revision, every member emits the same events in the same order. The first
//!   member to emit a revision sets the reference history (`reference`), which the watch checker
//!   and `no_lost_write` compare against. Each member emits consecutive revisions (a restart
//!   from a snapshot, or an installed snapshot, starts it anew at an unknown revision).
//! - At the end (`check_final`): the reference has no hole, and the converged store's own
//!   history (`Mvcc::events`) from its compacted revision on is exactly the reference.
//!
//! Digests are compared at the indices members report, one `Applied` per advance, so two
//! members are compared directly only where their reports land on a common index; since each
//! digest chains everything before it, a divergence shows at the next common index, and the
//! per-entry log check covers every index in between.
//!
//! Memory: one digest per `Applied` observation, and the reference history (every event);
//! `O(entries)`.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;

use cairn_core::kv::Event;
use cairn_core::state_machine::StateMachine;

use super::{describe_entry, describe_event, describe_events, Logs};
use crate::observe::{Observation, Violation};

#[derive(Debug, Default)]
pub struct StateMachineSafety {
    /// Per applied index reported: the digest, the term, and the member that reported it first.
    digests: BTreeMap<u64, (u64, u64, u64)>,
    reference: BTreeMap<i64, Vec<Event>>,
    /// Per revision of `reference`, the member that emitted it first.
    emitted_by: BTreeMap<i64, u64>,
    /// Per member, the last revision it emitted since its state was last replaced; `None` after a
    /// snapshot replaced it, until it emits again.
    revision_last: BTreeMap<u64, Option<i64>>,
}

fn violation(detail: String) -> Violation {
    Violation { property: "State Machine Safety", section: "5.4.3", detail }
}

/// A fresh store is at revision 1; the first write makes revision 2.
const REVISION_EMPTY: i64 = 1;

impl StateMachineSafety {
    pub fn reference(&self) -> &BTreeMap<i64, Vec<Event>> {
        &self.reference
    }

    /// Checks `obs` against the logs as they were before it.
    pub fn observe(&mut self, logs: &Logs, obs: &Observation) -> Result<(), Violation> {
        match obs {
            Observation::Applied { member, index, term, digest } => {
                self.applied(logs, *member, *index, *term, *digest)
            }
            Observation::SnapshotInstalled { member, index, term } => {
                self.revision_last.insert(*member, None);
                match logs.committed(*index) {
                    Some(c) if c.id.term != *term => Err(violation(format!(
                        "member {member} installed a snapshot ending at index {index} in term {term}, \
                         but {} was committed there (applied by member {})",
                        describe_entry(&c.id),
                        c.member
                    ))),
                    _ => Ok(()),
                }
            }
            Observation::Events { member, events } => self.events(*member, events),
            Observation::Crashed { member } => {
                self.revision_last.insert(*member, None);
                Ok(())
            }
            Observation::Restarted { member, snapshot_index, .. } => {
                let start = (*snapshot_index == 0).then_some(REVISION_EMPTY);
                self.revision_last.insert(*member, start);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn applied(
        &mut self,
        logs: &Logs,
        member: u64,
        index: u64,
        term: u64,
        digest: u64,
    ) -> Result<(), Violation> {
        let log = logs.member(member);
        let prev = log.applied();
        if index < prev {
            return Err(violation(format!(
                "member {member} applied up to index {index} after index {prev}, without a restart"
            )));
        }
        for i in prev.max(log.floor()) + 1..=index {
            let Some(e) = log.entry(i) else {
                return Err(violation(format!(
                    "member {member} applied index {i}, which its log does not hold (it holds \
                     {}..={})",
                    log.floor() + 1,
                    log.last_index()
                )));
            };
            if let Some(c) = logs.committed(i) {
                if c.id != e.id {
                    return Err(violation(format!(
                        "members {} and {member} applied different entries at index {i}: {} and {}",
                        c.member,
                        describe_entry(&c.id),
                        describe_entry(&e.id)
                    )));
                }
            }
            if i == index && e.id.term != term {
                return Err(violation(format!(
                    "member {member} reports applying index {index} in term {term}, but its log holds {}",
                    describe_entry(&e.id)
                )));
            }
        }
        if let Some(c) = logs.committed(index) {
            if c.id.term != term {
                return Err(violation(format!(
                    "member {member} applied index {index} in term {term}, but {} was committed there \
                     (applied by member {})",
                    describe_entry(&c.id),
                    c.member
                )));
            }
        }
        match self.digests.entry(index) {
            Entry::Vacant(v) => {
                v.insert((digest, term, member));
            }
            Entry::Occupied(o) => {
                let (d, t, m) = *o.get();
                if d != digest || t != term {
                    let who =
                        if m == member { "before a restart".to_string() } else { format!("member {m}") };
                    return Err(violation(format!(
                        "member {member} reached state {digest:016x} at index {index} (term {term}), \
                         {who} reached {d:016x} there (term {t})"
                    )));
                }
            }
        }
        Ok(())
    }

    fn events(&mut self, member: u64, events: &[Event]) -> Result<(), Violation> {
        let mut last = *self.revision_last.entry(member).or_insert(Some(REVISION_EMPTY));
        let mut rest = events;
        while let Some(first) = rest.first() {
            let revision = first.kv.mod_revision;
            let n = rest.iter().take_while(|e| e.kv.mod_revision == revision).count();
            let (group, tail) = rest.split_at(n);
            rest = tail;
            if let Some(l) = last {
                if revision != l + 1 {
                    return Err(violation(format!(
                        "member {member} emitted revision {revision} right after revision {l}"
                    )));
                }
            }
            last = Some(revision);
            match self.reference.entry(revision) {
                Entry::Vacant(v) => {
                    v.insert(group.to_vec());
                    self.emitted_by.insert(revision, member);
                }
                Entry::Occupied(o) => {
                    if o.get() != group {
                        let by = self.emitted_by[&revision];
                        return Err(violation(format!(
                            "members {by} and {member} emitted different events at revision \
                             {revision}{}",
                            describe_difference(o.get(), group, by, member)
                        )));
                    }
                }
            }
        }
        self.revision_last.insert(member, last);
        Ok(())
    }

    /// The end-of-run check of a converged member's state: the reference history has no hole,
    /// and the store's history from its compacted revision up is exactly the reference (so what
    /// watchers were sent is what the store holds). A reference beyond the store's revision means
    /// some member applied what the converged member has not.
    pub fn check_final(&self, final_state: &StateMachine) -> Result<(), Violation> {
        for (expect, &revision) in (REVISION_EMPTY + 1..).zip(self.reference.keys()) {
            if revision != expect {
                return Err(violation(format!(
                    "no member emitted revision {expect}, yet member {} emitted revision {revision}",
                    self.emitted_by[&revision]
                )));
            }
        }
        let mvcc = final_state.mvcc();
        let current = mvcc.current_revision();
        if let Some((&last, _)) = self.reference.last_key_value() {
            if last > current {
                return Err(violation(format!(
                    "the final store is at revision {current}, but member {} applied revision {last}",
                    self.emitted_by[&last]
                )));
            }
        }
        let start = mvcc.compacted_revision().max(REVISION_EMPTY);
        let held = mvcc.events(b"\0", b"\0", start).expect("events from the compacted revision on are kept");
        let mut held_by_revision: BTreeMap<i64, Vec<Event>> = BTreeMap::new();
        for e in held {
            held_by_revision.entry(e.kv.mod_revision).or_default().push(e);
        }
        let empty = Vec::new();
        for revision in start..=current {
            let store = held_by_revision.get(&revision).unwrap_or(&empty);
            let members = self.reference.get(&revision).unwrap_or(&empty);
            if store != members {
                return Err(violation(format!(
                    "the final store's history at revision {revision} is {}, but members emitted {}",
                    describe_events(store),
                    describe_events(members)
                )));
            }
        }
        Ok(())
    }
}

/// The first difference between two members' events at one revision.
fn describe_difference(a: &[Event], b: &[Event], member_a: u64, member_b: u64) -> String {
    let k = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    match (a.get(k), b.get(k)) {
        (Some(x), Some(y)) => format!(
            ": event {k}: member {member_a} {}, member {member_b} {}",
            describe_event(x),
            describe_event(y)
        ),
        (Some(x), None) => format!(": member {member_b} lacks event {k}, {}", describe_event(x)),
        (None, Some(y)) => format!(": member {member_b} has an extra event {k}, {}", describe_event(y)),
        (None, None) => String::new(),
    }
}
