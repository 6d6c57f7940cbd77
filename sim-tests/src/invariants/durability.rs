//! Durability (Raft Figure 2, "persistent state on all servers, updated on stable storage
//! before responding to RPCs"): what a member's disk said it synced is still there after a
//! crash. Raft's safety argument counts on it: an entry acknowledged to a leader, or a vote
//! granted, must survive a restart, or a quorum can forget a committed entry.
//!
//! # How it is checked
//! At each `SyncStarted` the checker notes the member's last index and the entry there; at the
//! `Synced` that completes that fsync, the log up to there is durable (appends made while the
//! fsync ran are not covered). An append that replaces entries at or below a noted or durable
//! index (a new leader overwriting uncommitted entries) lowers it to just before the replaced
//! part, since a crash may then recover either version; an installed snapshot clears both until
//! the next fsync.
//! On `Restarted`, the recovered snapshot or log must reach that index, holding the same entry
//! there.
//!
//! When the member acknowledges entries to a leader (`Acknowledged`), its synced log must
//! already reach them: an acknowledgement counts toward a commit, so it may only describe what
//! survives a crash.
//!
//! Catches: a disk that acknowledges fsync without making writes durable, a recovery that drops
//! a synced tail or resurrects an overwritten entry, a driver that acknowledges appends before
//! their fsync completes. Cannot catch: lost hard state (term, vote,
//! commit), which no observation reports directly (a forgotten vote shows up as two leaders in
//! `election_safety`).
//!
//! Memory: one point per member.

use std::collections::BTreeMap;

use super::{describe_entry, Logs};
use crate::observe::{EntryId, Observation, Violation};

#[derive(Debug, Default)]
pub struct Durability {
    /// Per member, the last log index known durable and the entry there (`None` for an index
    /// not held as an entry: 0, or one whose entry the checker no longer knows).
    synced: BTreeMap<u64, (u64, Option<EntryId>)>,
    /// Per member, what the fsync in progress makes durable when it completes.
    syncing: BTreeMap<u64, (u64, Option<EntryId>)>,
}

/// Lowers a noted point when `entries` replace the log at or below it.
fn lower(point: &mut BTreeMap<u64, (u64, Option<EntryId>)>, member: u64, start: u64, logs: &Logs) {
    if let Some(&(index, _)) = point.get(&member) {
        if start <= index {
            let kept = start - 1;
            let log = logs.member(member);
            let id = log.entry(kept).map(|e| e.id).or_else(|| logs.committed(kept).map(|c| c.id));
            point.insert(member, (kept, id));
        }
    }
}

fn violation(detail: String) -> Violation {
    Violation { property: "Durability", section: "Figure 2", detail }
}

impl Durability {
    /// Checks `obs` against the logs as they were before it.
    pub fn observe(&mut self, logs: &Logs, obs: &Observation) -> Result<(), Violation> {
        match obs {
            Observation::Acknowledged { member, term, index } => {
                let synced = self.synced.get(member).map_or(0, |&(i, _)| i);
                let floor = logs.member(*member).floor();
                if *index > synced && *index > floor {
                    return Err(violation(format!(
                        "member {member} acknowledged entries through index {index} in term {term}, \
                         but its disk had synced its log only through index {synced}"
                    )));
                }
                Ok(())
            }
            Observation::SyncStarted { member } => {
                let log = logs.member(*member);
                let last = log.last_index();
                let id = log.entry(last).map(|e| e.id).or_else(|| logs.committed(last).map(|c| c.id));
                self.syncing.insert(*member, (last, id));
                Ok(())
            }
            Observation::Synced { member } => {
                if let Some(point) = self.syncing.remove(member) {
                    self.synced.insert(*member, point);
                }
                Ok(())
            }
            Observation::Appended { member, entries } => {
                let log = logs.member(*member);
                if let Some(start) = entries.iter().map(|e| e.index).find(|&i| i > log.floor()) {
                    lower(&mut self.synced, *member, start, logs);
                    lower(&mut self.syncing, *member, start, logs);
                }
                Ok(())
            }
            Observation::SnapshotInstalled { member, .. } => {
                self.synced.remove(member);
                self.syncing.remove(member);
                Ok(())
            }
            Observation::Restarted { member, snapshot_index, log } => {
                self.syncing.remove(member);
                let checked = self.check_recovered(*member, *snapshot_index, log);
                // What a member recovered is on its disk: durable until it is overwritten.
                let durable = match log.last() {
                    Some(last) if last.index > *snapshot_index => (last.index, Some(*last)),
                    _ => (*snapshot_index, None),
                };
                self.synced.insert(*member, durable);
                checked
            }
            _ => Ok(()),
        }
    }

    fn check_recovered(
        &mut self,
        member: u64,
        snapshot_index: u64,
        log: &[EntryId],
    ) -> Result<(), Violation> {
        let Some((index, id)) = self.synced.remove(&member) else { return Ok(()) };
        if snapshot_index >= index {
            return Ok(());
        }
        let recovered = log.iter().find(|e| e.index == index);
        let lost = match (recovered, id) {
            (None, _) => true,
            (Some(r), Some(id)) => *r != id,
            (Some(_), None) => false,
        };
        if !lost {
            return Ok(());
        }
        let had = id.map_or(format!("index {index}"), |id| describe_entry(&id));
        let got = match (recovered, log.last()) {
            (Some(r), _) => format!("{} there", describe_entry(r)),
            (None, Some(last)) => format!("a log ending at {}", describe_entry(last)),
            (None, None) => format!("only its snapshot at index {snapshot_index}"),
        };
        Err(violation(format!(
            "member {member} synced its log through {had}, but recovered {got} after its crash"
        )))
    }
}
