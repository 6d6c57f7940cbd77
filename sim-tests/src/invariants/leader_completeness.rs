//! Leader Completeness (Raft §5.4): if a log entry is committed in a given term, then that
//! entry will be present in the logs of the leaders for all higher-numbered terms.
//!
//! # How it is checked
//! When a member leads term `t`, its log must hold every entry committed in a term before `t`,
//! exactly as committed. Which entries those are: every index up to
//! `Logs::commit_before_term(t)`, the highest commit index seen while no member had reached
//! term `t` yet. "Every entry known committed when the leader is observed" would be wrong: a
//! leader of `t` can be elected late (its votes delayed in the network) after a leader of
//! `t + 1` has committed entries the leader of `t` never had, which Raft allows.
//!
//! The check runs once per leader and term, on the logs as they are *after* the observation
//! that completes the picture: the member observed as `Leader` of `t` and its mirror ending in
//! an entry of term `t` (the empty entry raft-rs appends on election). So the leader's log is
//! seen whole whichever order the driver reports the `Role` and the `Appended` of one advance
//! in. The leader's entries at or below its floor are not in its mirror: they are covered by a
//! snapshot (installed only from a committed index, see `state_machine_safety`) or were
//! applied, hence equal to the committed entries (`state_machine_safety` checks each applied
//! entry), and no append may replace them: an `Appended` entry at or below a member's floor
//! must be the committed entry there, checked here as well.
//!
//! Catches: a leader elected without some committed entry (a vote granted to a stale log, an
//! acknowledged append lost in a crash so that a quorum forgot it), a committed entry
//! overwritten by a later append. Cannot catch: an entry whose content nobody has applied yet
//! when the leader is checked (only its presence is checked then; `state_machine_safety`
//! catches the divergence when the leader applies it); a leader that never appends in its term
//! (no observation shows its log then).
//!
//! Memory: one term per member.

use std::collections::BTreeMap;

use super::{describe_entry, Logs};
use crate::observe::{EntryId, Observation, Role, Violation};

#[derive(Debug, Default)]
pub struct LeaderCompleteness {
    /// Per member, the last term it was checked as leader of.
    checked: BTreeMap<u64, u64>,
}

fn violation(detail: String) -> Violation {
    Violation { property: "Leader Completeness", section: "5.4", detail }
}

impl LeaderCompleteness {
    /// Checks `obs` against the logs as they are after it.
    pub fn observe(&mut self, logs: &Logs, obs: &Observation) -> Result<(), Violation> {
        match obs {
            Observation::Role { member, .. } => self.check_leader(logs, *member),
            Observation::Appended { member, entries } => {
                check_no_overwrite(logs, *member, entries)?;
                self.check_leader(logs, *member)
            }
            _ => Ok(()),
        }
    }

    fn check_leader(&mut self, logs: &Logs, member: u64) -> Result<(), Violation> {
        let log = logs.member(member);
        let term = log.term();
        if log.role() != Role::Leader
            || log.last_term() != Some(term)
            || self.checked.get(&member) == Some(&term)
        {
            return Ok(());
        }
        self.checked.insert(member, term);
        let bound = logs.commit_before_term(term);
        for index in log.floor() + 1..=bound {
            let Some(held) = log.entry(index) else {
                return Err(violation(format!(
                    "member {member} leads term {term} without index {index}, committed before term \
                     {term}{}: its log ends at index {}",
                    describe_committed(logs, index),
                    log.last_index()
                )));
            };
            if let Some(c) = logs.committed(index) {
                if c.id != held.id {
                    return Err(violation(format!(
                        "member {member} leads term {term} holding {} where {} was committed before \
                         term {term} (applied by member {})",
                        describe_entry(&held.id),
                        describe_entry(&c.id),
                        c.member
                    )));
                }
            }
        }
        Ok(())
    }
}

/// An append at or below the member's floor may only repeat what is committed there.
fn check_no_overwrite(logs: &Logs, member: u64, entries: &[EntryId]) -> Result<(), Violation> {
    let floor = logs.member(member).floor();
    for e in entries.iter().filter(|e| e.index <= floor) {
        if let Some(c) = logs.committed(e.index) {
            if c.id != *e {
                return Err(violation(format!(
                    "member {member} appended {} over the committed {} (it had already applied or \
                     snapshotted index {floor})",
                    describe_entry(e),
                    describe_entry(&c.id)
                )));
            }
        }
    }
    Ok(())
}

fn describe_committed(logs: &Logs, index: u64) -> String {
    match logs.committed(index) {
        Some(c) => format!(" ({} applied by member {})", describe_entry(&c.id), c.member),
        None => String::new(),
    }
}
