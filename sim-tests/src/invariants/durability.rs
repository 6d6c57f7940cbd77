//! Durability (Raft Figure 2, "persistent state on all servers, updated on stable storage
//! before responding to RPCs"): what a member's disk said it synced is still there after a
//! crash. Raft's safety argument counts on it: an entry acknowledged to a leader, or a vote
//! granted, must survive a restart, or a quorum can forget a committed entry.
//!
//! # How it is checked
//! At each `Synced` the member's log up to its last index is durable: the checker keeps that
//! index and the entry there. An append that replaces entries at or below it (a new leader
//! overwriting uncommitted entries) lowers it to just before the replaced part, since a crash
//! may then recover either version; an installed snapshot clears it until the next `Synced`.
//! On `Restarted`, the recovered snapshot or log must reach that index, holding the same entry
//! there.
//!
//! Catches: a disk that acknowledges fsync without making writes durable, a recovery that drops
//! a synced tail or resurrects an overwritten entry. Cannot catch: lost hard state (term, vote,
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
}

fn violation(detail: String) -> Violation {
    Violation { property: "Durability", section: "Figure 2", detail }
}

impl Durability {
    /// Checks `obs` against the logs as they were before it.
    pub fn observe(&mut self, logs: &Logs, obs: &Observation) -> Result<(), Violation> {
        match obs {
            Observation::Synced { member } => {
                let log = logs.member(*member);
                let last = log.last_index();
                let id = log.entry(last).map(|e| e.id).or_else(|| logs.committed(last).map(|c| c.id));
                self.synced.insert(*member, (last, id));
                Ok(())
            }
            Observation::Appended { member, entries } => {
                let log = logs.member(*member);
                let start = entries.iter().map(|e| e.index).find(|&i| i > log.floor());
                if let (Some(start), Some(&(index, _))) = (start, self.synced.get(member)) {
                    if start <= index {
                        let kept = start - 1;
                        let id = log.entry(kept).map(|e| e.id).or_else(|| logs.committed(kept).map(|c| c.id));
                        self.synced.insert(*member, (kept, id));
                    }
                }
                Ok(())
            }
            Observation::SnapshotInstalled { member, .. } => {
                self.synced.remove(member);
                Ok(())
            }
            Observation::Restarted { member, snapshot_index, log } => {
                let Some((index, id)) = self.synced.remove(member) else { return Ok(()) };
                if *snapshot_index >= index {
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
            _ => Ok(()),
        }
    }
}
