//! The member's own counts, as its metrics export them (`cairn_core::Counters`:
//! `etcd_server_leader_changes_seen_total`, `etcd_server_proposals_failed_total`): within a
//! boot they never go down, and a member has counted at least every change of known leader it
//! was observed to make. A count that goes backwards or misses leader changes would make an
//! operator's alerts (`increase(leader_changes_seen_total[1h]) > 3`) lie exactly when faults
//! happen, which is when the simulator looks. And a member never finds its state machine digest
//! differs from the leader's (`corruption_detected`, which raises a CORRUPT alarm): replicas
//! that applied the same entries agree, so in a correct run the corruption check is silent.
//!
//! Memory: per member, its last counts and the leader changes observed since its boot.

use std::collections::BTreeMap;

use crate::observe::{Observation, Violation};

#[derive(Debug, Default)]
pub struct Counters {
    members: BTreeMap<u64, Member>,
}

#[derive(Debug, Default)]
struct Member {
    /// The last leader observed (0 before any), and the changes to a new one seen since boot.
    leader: u64,
    leader_changes: u64,
    counted: Option<cairn_core::Counters>,
}

impl Counters {
    pub fn observe(&mut self, obs: &Observation) -> Result<(), Violation> {
        match *obs {
            Observation::Restarted { member, .. } => {
                self.members.insert(member, Member::default());
            }
            Observation::Role { member, leader, .. } => {
                let m = self.members.entry(member).or_default();
                if leader != 0 && leader != m.leader {
                    m.leader = leader;
                    m.leader_changes += 1;
                }
            }
            Observation::Counters { member, counters } => {
                let m = self.members.entry(member).or_default();
                let fail =
                    |detail: String| Err(Violation { property: "Counters", section: "metrics", detail });
                if let Some(last) = m.counted {
                    if counters.leader_changes_seen < last.leader_changes_seen
                        || counters.proposals_failed < last.proposals_failed
                    {
                        return fail(format!(
                            "member {member}'s counts went down: {last:?} then {counters:?}"
                        ));
                    }
                }
                if counters.corruption_detected > 0 {
                    return fail(format!(
                        "member {member}'s corruption check found its state differs from the leader's at the same index"
                    ));
                }
                if counters.leader_changes_seen < m.leader_changes {
                    return fail(format!(
                        "member {member} counted {} leader changes, {} were observed since it booted",
                        counters.leader_changes_seen, m.leader_changes
                    ));
                }
                m.counted = Some(counters);
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::Role;

    fn counted(member: u64, leader_changes_seen: u64, proposals_failed: u64) -> Observation {
        Observation::Counters {
            member,
            counters: cairn_core::Counters { leader_changes_seen, proposals_failed, corruption_detected: 0 },
        }
    }

    fn role(member: u64, leader: u64) -> Observation {
        Observation::Role { member, term: 1, role: Role::Follower, leader }
    }

    #[test]
    fn counts_must_grow_within_a_boot_and_cover_observed_leader_changes() {
        let mut c = Counters::default();
        c.observe(&role(1, 2)).unwrap();
        c.observe(&counted(1, 1, 0)).unwrap();
        c.observe(&role(1, 0)).unwrap();
        c.observe(&role(1, 3)).unwrap();
        let missed = c.observe(&counted(1, 1, 0)).unwrap_err();
        assert!(missed.detail.contains("counted 1 leader changes, 2 were observed"), "{missed}");

        let mut c = Counters::default();
        c.observe(&counted(1, 0, 2)).unwrap();
        assert!(c.observe(&counted(1, 0, 1)).unwrap_err().detail.contains("went down"));
        // A reboot starts the counts again.
        c.observe(&Observation::Restarted { member: 1, snapshot_index: 0, log: vec![] }).unwrap();
        c.observe(&counted(1, 0, 0)).unwrap();

        let found = Observation::Counters {
            member: 2,
            counters: cairn_core::Counters { corruption_detected: 1, ..Default::default() },
        };
        assert!(c.observe(&found).unwrap_err().detail.contains("state differs from the leader's"));
    }
}
