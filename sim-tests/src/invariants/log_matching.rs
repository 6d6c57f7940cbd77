//! Log Matching (Raft §5.3): if two logs contain an entry with the same index and term, then
//! the logs are identical in all entries up through that index.
//!
//! # How it is checked
//! Raft argues the property in two steps: a leader creates at most one entry per index in its
//! term, so one (index, term) names one entry; and the consistency check of AppendEntries (the
//! follower must hold the leader's entry just before the new ones) extends that by induction to
//! the whole prefix. Checking only the first step, and trusting the second to raft-rs's append
//! check, would leave the very code under test unchecked. So both are checked directly:
//!
//! - every (index, term) any member has ever held is kept with its `data_hash`; a member holding
//!   a different one at the same (index, term) is a violation;
//! - every mirror entry carries a hash chained over the member's whole log up to it
//!   (`invariants::chain_next`); two members holding the same (index, term) with different
//!   chain hashes have logs that differ somewhere below, which is a violation too. That is the
//!   whole property, at `O(1)` per appended entry.
//!
//! Chains are absolute (they start from the empty log every member boots with), so they stay
//! comparable across snapshots: a log that starts after a snapshot at `s` continues from the
//! chain of the committed entry at `s` (`Logs`). Where that is unknown, the member's chains are
//! unknown and only the per-(index, term) check applies to it until its log is rebuilt.
//!
//! Appends are also checked for shape: consecutive indices, terms never going back along the
//! log, and no hole (an append at `i` needs the member's entry at `i - 1`, or `i - 1` at its
//! floor: its snapshot, or what it applied). A recovered log (`Restarted`) must start right
//! after the snapshot it boots from and hold only entries some member has appended.
//!
//! Cannot catch: a divergence that no observation shows (both logs are only seen through
//! `Appended` and `Restarted`); a hash collision (2^-64).
//!
//! Memory: one record per (index, term) ever appended, `O(entries)`; see the module `invariants`.

use std::collections::HashMap;

use super::{chain_next, describe_entry, Logs, MirrorLog};
use crate::observe::{EntryId, Observation, Violation};

#[derive(Debug, Default)]
pub struct LogMatching {
    /// Every (index, term) held by some member, with what it held.
    seen: HashMap<(u64, u64), Seen>,
}

#[derive(Clone, Copy, Debug)]
struct Seen {
    data_hash: u64,
    chain: Option<u64>,
    /// The member first seen holding it.
    member: u64,
}

fn violation(detail: String) -> Violation {
    Violation { property: "Log Matching", section: "5.3", detail }
}

impl LogMatching {
    /// Checks `obs` against the logs as they were before it.
    pub fn observe(&mut self, logs: &Logs, obs: &Observation) -> Result<(), Violation> {
        match obs {
            Observation::Appended { member, entries } => self.appended(logs, *member, entries),
            Observation::Restarted { member, snapshot_index, log } => {
                self.restarted(logs, *member, *snapshot_index, log)
            }
            _ => Ok(()),
        }
    }

    fn appended(&mut self, logs: &Logs, member: u64, entries: &[EntryId]) -> Result<(), Violation> {
        check_shape(member, "appended", entries)?;
        let log = logs.member(member);
        for e in entries.iter().filter(|e| e.index <= log.floor()) {
            // Below the floor there is no chain to compare; `leader_completeness` checks these
            // against the committed entries.
            self.check(logs, member, e, None, Prefix { log: Some(log), floor: log.floor(), pending: &[] })?;
        }
        let new: Vec<EntryId> = entries.iter().filter(|e| e.index > log.floor()).copied().collect();
        let Some(first) = new.first() else { return Ok(()) };
        let Some(mut chain) = log.chain_at(first.index - 1) else {
            return Err(violation(format!(
                "member {member} appended {} but its log ends at index {}: the entries between are \
                 missing",
                describe_entry(first),
                log.last_index()
            )));
        };
        if let Some(prev) = log.entry(first.index - 1) {
            if prev.id.term > first.term {
                return Err(violation(format!(
                    "member {member} appended {} after {}: terms go back along its log",
                    describe_entry(first),
                    describe_entry(&prev.id)
                )));
            }
        }
        for (k, e) in new.iter().enumerate() {
            chain = chain_next(chain, e);
            self.check(
                logs,
                member,
                e,
                chain,
                Prefix { log: Some(log), floor: log.floor(), pending: &new[..k] },
            )?;
        }
        Ok(())
    }

    fn restarted(
        &mut self,
        logs: &Logs,
        member: u64,
        snapshot_index: u64,
        log: &[EntryId],
    ) -> Result<(), Violation> {
        check_shape(member, "recovered", log)?;
        if let Some(first) = log.first() {
            if first.index != snapshot_index + 1 {
                return Err(violation(format!(
                    "member {member} recovered a log starting at {} after a snapshot at index \
                     {snapshot_index}",
                    describe_entry(first)
                )));
            }
        }
        let mut chain = logs.committed_chain(snapshot_index);
        for (k, e) in log.iter().enumerate() {
            if !self.seen.contains_key(&(e.index, e.term)) {
                return Err(violation(format!(
                    "member {member} recovered {}, which no member ever appended",
                    describe_entry(e)
                )));
            }
            chain = chain_next(chain, e);
            self.check(
                logs,
                member,
                e,
                chain,
                Prefix { log: None, floor: snapshot_index, pending: &log[..k] },
            )?;
        }
        Ok(())
    }

    /// `member` holds `e` with chain hash `chain`, after `before`.
    fn check(
        &mut self,
        logs: &Logs,
        member: u64,
        e: &EntryId,
        chain: Option<u64>,
        before: Prefix,
    ) -> Result<(), Violation> {
        let seen =
            self.seen.entry((e.index, e.term)).or_insert(Seen { data_hash: e.data_hash, chain, member });
        if seen.data_hash != e.data_hash {
            return Err(violation(format!(
                "two different entries at index {} in term {}: member {} held {}, member {member} holds {}",
                e.index,
                e.term,
                seen.member,
                describe_entry(&EntryId { data_hash: seen.data_hash, ..*e }),
                describe_entry(e)
            )));
        }
        match (seen.chain, chain) {
            (Some(a), Some(b)) if a != b => {
                let other = seen.member;
                Err(violation(format!(
                    "members {other} and {member} both hold {} but their logs differ before it{}",
                    describe_entry(e),
                    first_difference(logs, other, member, e.index, before)
                )))
            }
            (None, Some(_)) => {
                seen.chain = chain;
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// Consecutive indices, terms never going back.
fn check_shape(member: u64, what: &str, entries: &[EntryId]) -> Result<(), Violation> {
    for w in entries.windows(2) {
        if w[1].index != w[0].index + 1 {
            return Err(violation(format!(
                "member {member} {what} entries that are not consecutive: {} then {}",
                describe_entry(&w[0]),
                describe_entry(&w[1])
            )));
        }
        if w[1].term < w[0].term {
            return Err(violation(format!(
                "member {member} {what} {} after {}: terms go back along its log",
                describe_entry(&w[1]),
                describe_entry(&w[0])
            )));
        }
    }
    Ok(())
}

/// What a member holds just before an entry being checked: its mirror (if it still applies)
/// down to `floor`, overlaid with `pending`, the earlier entries of the same observation that
/// the mirror does not show yet.
#[derive(Clone, Copy)]
struct Prefix<'a> {
    log: Option<&'a MirrorLog>,
    floor: u64,
    pending: &'a [EntryId],
}

impl Prefix<'_> {
    fn entry(&self, index: u64) -> Option<EntryId> {
        match self.pending.first() {
            Some(p) if index >= p.index => self.pending.get((index - p.index) as usize).copied(),
            _ if index <= self.floor => None,
            _ => self.log.and_then(|l| l.entry(index)).map(|m| m.id),
        }
    }
}

/// Where the logs of `a` (its mirror now) and `b` (`b_prefix`) first differ below `index`, as
/// far as both still show: for the detail of a violation.
fn first_difference(logs: &Logs, a: u64, b: u64, index: u64, b_prefix: Prefix) -> String {
    let la = logs.member(a);
    let b_entry = |i: u64| b_prefix.entry(i);
    let low = la.floor().max(b_prefix.floor) + 1;
    for i in low..index {
        match (la.entry(i).map(|m| m.id), b_entry(i)) {
            (Some(x), Some(y)) if x != y => {
                return format!(
                    ": first at index {i}, member {a} holds {}, member {b} holds {}",
                    describe_entry(&x),
                    describe_entry(&y)
                )
            }
            (Some(_), Some(_)) => {}
            _ => break,
        }
    }
    format!(" (at or below index {}, beyond what the checker's mirrors still show)", low - 1)
}
