//! Election Safety (Raft §5.2): at most one leader can be elected in a given term.
//!
//! Two kinds of observation name the leader of a term: a member observed in role `Leader` in
//! term `t` leads `t`, and a member observed in term `t` that knows a leader (`leader != 0`)
//! names it. raft-rs sets `leader_id` only from a message of the current term's leader (and
//! clears it whenever the term changes), so a name is as good as a sighting. Two different
//! members named for one term is a violation, whoever named them.
//!
//! Catches: a member voting twice in a term (a vote not made durable before it was sent, then
//! forgotten in a crash), a candidate counting votes from another term, a leader kept past a
//! term change. Cannot catch a second leader that no observation reveals: one elected and
//! deposed within a single `Core::advance` and never named by anyone.
//!
//! Memory: one entry per term.

use std::collections::BTreeMap;

use crate::observe::{Observation, Role, Violation};

#[derive(Debug, Default)]
pub struct ElectionSafety {
    /// Per term, its leader and the member whose observation named it first.
    leaders: BTreeMap<u64, (u64, u64)>,
}

impl ElectionSafety {
    pub fn observe(&mut self, obs: &Observation) -> Result<(), Violation> {
        let Observation::Role { member, term, role, leader } = *obs else { return Ok(()) };
        if role == Role::Leader {
            self.named(term, member, member)?;
        }
        if leader != 0 {
            self.named(term, leader, member)?;
        }
        Ok(())
    }

    /// `witness` says `leader` leads `term`.
    fn named(&mut self, term: u64, leader: u64, witness: u64) -> Result<(), Violation> {
        let (known, known_witness) = *self.leaders.entry(term).or_insert((leader, witness));
        if known == leader {
            return Ok(());
        }
        Err(Violation {
            property: "Election Safety",
            section: "5.2",
            detail: format!(
                "term {term} has two leaders: member {known} ({}) and member {leader} ({})",
                describe_witness(known, known_witness),
                describe_witness(leader, witness)
            ),
        })
    }

    /// The leader of `term`, as far as observed.
    pub fn leader(&self, term: u64) -> Option<u64> {
        self.leaders.get(&term).map(|&(l, _)| l)
    }
}

fn describe_witness(leader: u64, witness: u64) -> String {
    if leader == witness {
        "observed as leader".to_string()
    } else {
        format!("named leader by member {witness}")
    }
}
