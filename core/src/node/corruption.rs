//! The corruption check (etcd's periodic hash check, `--experimental-corrupt-check-time`):
//! replicas that applied the same entries hold the same state machine digest
//! (`StateMachine::applied_digest`, a hash chain over every entry applied). Every
//! `Config::corrupt_check_ms` the leader sends each follower its digest at its applied index;
//! the follower compares it with its own at that index (now, or once it applies that far) and,
//! if they differ, raises a CORRUPT alarm for itself through the log. While one is up, every
//! member refuses key-value requests with "etcdserver: corrupt cluster" (etcd's rule), until
//! an operator lifts it.
//!
//! A follower keeps the digests of its last `DIGESTS_KEPT` applied entries; a check for an
//! index it applied longer ago is skipped (the next one covers a later index).

#[allow(unused_imports)]
use super::*;
use crate::alarm::{AlarmAction, AlarmKind};

/// Applied entries whose digests a member keeps for the leader's checks.
pub(super) const DIGESTS_KEPT: usize = 4096;

#[derive(Debug, Default)]
pub(super) struct DigestLog {
    /// (index, digest after applying it), ascending.
    recent: VecDeque<(u64, u64)>,
    /// The leader's latest check for an index not applied here yet.
    pending: Option<(u64, u64)>,
    /// When the leader last sent checks.
    last_sent_ms: u64,
    /// A mismatch was found and the alarm proposed (once per boot).
    raised: bool,
}

impl Core {
    /// After each applied entry.
    pub(super) fn record_digest(&mut self, index: u64) {
        let d = &mut self.digests;
        if d.recent.len() == DIGESTS_KEPT {
            d.recent.pop_front();
        }
        d.recent.push_back((index, self.sm.applied_digest()));
        if let Some((at, digest)) = d.pending {
            if at == index {
                d.pending = None;
                self.compare_digest(at, digest);
            }
        }
    }

    /// Every tick: the leader sends its digest to every other member.
    pub(super) fn send_digest_checks(&mut self) {
        let Some(every) = self.config.corrupt_check_ms else { return };
        if !self.is_leader() || self.now_ms < self.digests.last_sent_ms + every {
            return;
        }
        self.digests.last_sent_ms = self.now_ms;
        let Some(&(index, digest)) = self.digests.recent.back() else { return };
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

    /// The leader's digest at `index`.
    pub(super) fn receive_digest_check(&mut self, index: u64, digest: u64) {
        if index > self.sm.applied_index() {
            self.digests.pending = Some((index, digest));
        } else {
            self.compare_digest(index, digest);
        }
    }

    fn compare_digest(&mut self, index: u64, leader_digest: u64) {
        let d = &self.digests;
        let Ok(at) = d.recent.binary_search_by_key(&index, |&(i, _)| i) else { return };
        if d.recent[at].1 == leader_digest || d.raised {
            return;
        }
        self.digests.raised = true;
        self.counters.corruption_detected += 1;
        let command = Command::Alarm {
            action: AlarmAction::Activate,
            member: self.config.id,
            kind: Some(AlarmKind::Corrupt),
        };
        self.hold(Proposal { origin: None, caller: Caller::Member, command }.encode(), None);
    }
}
