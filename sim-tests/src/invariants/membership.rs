//! Membership (Raft thesis §4, etcd's learners): the Raft configuration and the member list
//! move together, a leader is elected by a quorum of the voters its member list names (so a
//! learner's vote never counts), and a member removed from the cluster never becomes leader in
//! a term after its removal.
//!
//! Learners may answer vote requests (etcd's raft lets them: one promoted without knowing it
//! yet must be able to vote); what matters is that a candidate does not count them.
//!
//! - `Configuration` is observed when a member's applied member list changes, with its Raft
//!   configuration as raft-rs applied it: they must agree (voters and learners).
//! - `Voted` records granted votes per (term, candidate); when a member is seen leading a
//!   term, the votes it was granted, with its own, must be a quorum of the voters its member
//!   list names (as of its last two configurations: one may have applied in the advance that
//!   elected it).
//! - `MemberRemoved` (any member applied the removal, in an entry of some term) and a later
//!   `Role` of that member as leader in a higher term is a violation.
//!
//! Catches: a learner added to Raft's configuration as a voter (`--planted learner-votes`), a
//! candidate counting a learner's or a stranger's vote, a removed member that campaigns its
//! way back. Memory: per member its last two configurations; the votes of the last
//! `VOTE_TERMS_KEPT` terms; one entry per removed member.

use std::collections::{BTreeMap, BTreeSet};

use crate::observe::{Observation, Role, Violation};

/// Terms of votes kept below the latest election seen.
const VOTE_TERMS_KEPT: u64 = 1_000;

#[derive(Debug, Default)]
pub struct Membership {
    /// Per member, the voters its member list named, latest last (at most two kept).
    voters: BTreeMap<u64, Vec<BTreeSet<u64>>>,
    /// (term, candidate) -> members that granted it their vote.
    votes: BTreeMap<(u64, u64), BTreeSet<u64>>,
    /// Removed member -> the term of the entry that removed it (the lowest seen).
    removed: BTreeMap<u64, u64>,
}

impl Membership {
    pub fn observe(&mut self, obs: &Observation) -> Result<(), Violation> {
        match obs {
            Observation::Configuration {
                member,
                raft_voters,
                raft_learners,
                listed_voters,
                listed_learners,
            } => {
                if raft_voters != listed_voters || raft_learners != listed_learners {
                    return Err(Violation {
                        property: "The Raft configuration is the member list",
                        section: "thesis 4.1",
                        detail: format!(
                            "member {member}: Raft has voters {raft_voters:?} and learners {raft_learners:?}, its member list voters {listed_voters:?} and learners {listed_learners:?}"
                        ),
                    });
                }
                let v = self.voters.entry(*member).or_default();
                v.push(listed_voters.clone());
                if v.len() > 2 {
                    v.remove(0);
                }
                Ok(())
            }
            Observation::Voted { member, term, candidate } => {
                self.votes.entry((*term, *candidate)).or_default().insert(*member);
                Ok(())
            }
            Observation::MemberRemoved { removed, term, .. } => {
                let t = self.removed.entry(*removed).or_insert(*term);
                *t = (*t).min(*term);
                Ok(())
            }
            Observation::Role { member, term, role: Role::Leader, .. } => {
                if let Some(&at) = self.removed.get(member) {
                    if *term > at {
                        return Err(Violation {
                            property: "A removed member never leads",
                            section: "thesis 4.2.2",
                            detail: format!(
                                "member {member}, removed in term {at}, became leader in term {term}"
                            ),
                        });
                    }
                }
                self.check_quorum(*member, *term)
            }
            _ => Ok(()),
        }
    }

    fn check_quorum(&mut self, leader: u64, term: u64) -> Result<(), Violation> {
        let Some(configs) = self.voters.get(&leader) else { return Ok(()) };
        let mut granted = self.votes.get(&(term, leader)).cloned().unwrap_or_default();
        granted.insert(leader);
        let won = |voters: &BTreeSet<u64>| granted.intersection(voters).count() > voters.len() / 2;
        if configs.iter().any(won) {
            // Votes of terms long past are dropped. Not of the terms just before: a member
            // cut off or paused can be seen winning an old term after a later one was won.
            self.votes = self.votes.split_off(&(term.saturating_sub(VOTE_TERMS_KEPT), 0));
            return Ok(());
        }
        Err(Violation {
            property: "A leader is elected by a quorum of voters",
            section: "5.2, thesis 4.2.1",
            detail: format!(
                "member {leader} leads term {term} with votes from {granted:?}, not a quorum of the voters its member list names ({configs:?})"
            ),
        })
    }
}
