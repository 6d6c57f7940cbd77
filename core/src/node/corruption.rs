//! The corruption check (etcd's periodic hash check, `--experimental-corrupt-check-time`):
//! replicas that applied the same entries hold the same state machine digest
//! (`StateMachine::applied_digest`, a hash chain over every entry applied). Every
//! `Config::corrupt_check_ms` the leader sends every other member its digest at its applied
//! index; each answers with its own digest at that index (now, or once it applies that far).
//! The leader decides by majority: once the digests of a majority of the voters (its own among
//! them) agree, every member that answered with another one is corrupt; if all the voters
//! answered and no majority agrees, the leader cannot vouch for its own state and names itself.
//! So a damaged leader is named as such, not the healthy followers that disagree with it. The
//! leader raises a CORRUPT alarm for each member it names, through the log. While one is up,
//! every member refuses key-value requests with "etcdserver: corrupt cluster" (etcd's rule),
//! until an operator lifts it.
//!
//! A member keeps the digests of its last `DIGESTS_KEPT` applied entries; a check for an index
//! it applied longer ago goes unanswered (the next round covers a later index).

#[allow(unused_imports)]
use super::*;
use crate::alarm::{AlarmAction, AlarmKind};

/// Applied entries whose digests a member keeps for the leader's checks.
pub(super) const DIGESTS_KEPT: usize = 4096;

#[derive(Debug, Default)]
pub(super) struct DigestLog {
    /// (index, digest after applying it), ascending.
    recent: VecDeque<(u64, u64)>,
    /// The leader's latest check for an index not applied here yet: the index, and who asked.
    pending: Option<(u64, u64)>,
    /// As leader: when it last sent checks, and the round they started.
    last_sent_ms: u64,
    round: Option<DigestRound>,
    /// Members this member named corrupt (once each per boot).
    named: BTreeSet<u64>,
}

/// The leader's check of one index: the digests members answered with, its own included.
#[derive(Debug)]
struct DigestRound {
    index: u64,
    digests: BTreeMap<u64, u64>,
}

impl Core {
    /// As leader: the index its latest corruption check is about, and the digests members
    /// answered with so far (its own included). For diagnostics and tests.
    pub fn corruption_check(&self) -> Option<(u64, &BTreeMap<u64, u64>)> {
        self.digests.round.as_ref().map(|r| (r.index, &r.digests))
    }

    /// After each applied entry.
    pub(super) fn record_digest(&mut self, index: u64) {
        let d = &mut self.digests;
        if d.recent.len() == DIGESTS_KEPT {
            d.recent.pop_front();
        }
        d.recent.push_back((index, self.sm.applied_digest()));
        if let Some((at, leader)) = d.pending {
            if at == index {
                d.pending = None;
                self.reply_digest(leader, at);
            }
        }
    }

    /// Every tick: the leader starts a round, sending its digest to every other member.
    pub(super) fn send_digest_checks(&mut self) {
        let Some(every) = self.config.corrupt_check_ms else { return };
        if !self.is_leader() || self.now_ms < self.digests.last_sent_ms + every {
            return;
        }
        self.digests.last_sent_ms = self.now_ms;
        let Some(&(index, digest)) = self.digests.recent.back() else { return };
        self.digests.round = Some(DigestRound { index, digests: BTreeMap::from([(self.config.id, digest)]) });
        let peers: Vec<u64> = self.sm.members().keys().copied().filter(|&id| id != self.config.id).collect();
        for to in peers {
            self.out.forwards.push(Forward {
                from: self.config.id,
                to,
                id: 0,
                body: ForwardBody::DigestCheck { index, digest },
            });
        }
    }

    /// The leader's check at `index`: answered with this member's digest there, now or once
    /// it has applied that far.
    pub(super) fn receive_digest_check(&mut self, leader: u64, index: u64) {
        if index > self.sm.applied_index() {
            self.digests.pending = Some((index, leader));
        } else {
            self.reply_digest(leader, index);
        }
    }

    fn reply_digest(&mut self, leader: u64, index: u64) {
        let d = &self.digests;
        let Ok(at) = d.recent.binary_search_by_key(&index, |&(i, _)| i) else { return };
        let digest = d.recent[at].1;
        self.out.forwards.push(Forward {
            from: self.config.id,
            to: leader,
            id: 0,
            body: ForwardBody::DigestReply { index, digest },
        });
    }

    /// A member's answer to this leader's check.
    pub(super) fn receive_digest_reply(&mut self, from: u64, index: u64, digest: u64) {
        if !self.is_leader() || !self.sm.members().contains_key(&from) {
            return;
        }
        let Some(round) = self.digests.round.as_mut().filter(|r| r.index == index) else { return };
        round.digests.insert(from, digest);
        self.judge_digests();
    }

    /// The majority rule (see the module docs) over the round's answers so far.
    fn judge_digests(&mut self) {
        let Some(round) = &self.digests.round else { return };
        let voters = self.conf_state().voters;
        let quorum = voters.len() / 2 + 1;
        let mut votes: BTreeMap<u64, usize> = BTreeMap::new();
        for (id, digest) in &round.digests {
            if voters.contains(id) {
                *votes.entry(*digest).or_default() += 1;
            }
        }
        let majority = votes.iter().find(|(_, &n)| n >= quorum).map(|(&digest, _)| digest);
        let corrupt: Vec<u64> = match majority {
            Some(good) => round.digests.iter().filter(|(_, &d)| d != good).map(|(&id, _)| id).collect(),
            None if voters.iter().all(|v| round.digests.contains_key(v)) => vec![self.config.id],
            None => return,
        };
        for member in corrupt {
            if !self.digests.named.insert(member) {
                continue;
            }
            self.counters.corruption_detected += 1;
            let command =
                Command::Alarm { action: AlarmAction::Activate, member, kind: Some(AlarmKind::Corrupt) };
            self.hold(Proposal { origin: None, caller: Caller::Member, command }.encode(), None);
        }
    }
}
