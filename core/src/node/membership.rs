//! Membership changes (see `crate::membership`): the leader checks and proposes them, every
//! member applies them, a new cluster writes its initial members as its first entries, a
//! removed member stops, and leadership moves on request.

#[allow(unused_imports)]
use super::*;

use crate::membership::{learner_in_sync, quorum, Member, MemberChange, LEARNERS_MAX};
use crate::request::ConfContext;

/// A `MoveLeader` waiting for its transferee to lead.
pub(super) struct PendingMove {
    pub(super) id: RequestId,
    pub(super) to: u64,
    pub(super) deadline_ms: u64,
}

impl Core {
    /// A new cluster's first entries: one `AddNode` per initial voter at term 1, committed, as
    /// etcd's bootstrap writes them. They are persisted and applied like any other entries, so
    /// every member's log holds the whole history of the configuration from index 1, and a
    /// member that joins later replays it (or receives a snapshot). raft-rs learns the voters
    /// at once, as etcd's raft does at bootstrap.
    pub(super) fn bootstrap(&mut self) {
        let mut voters = self.config.voters.clone();
        voters.sort_unstable();
        voters.dedup();
        let entries: Vec<Entry> = voters
            .iter()
            .enumerate()
            .map(|(i, &id)| {
                let peer_urls = self.config.peer_urls.get(&id).cloned().unwrap_or_default();
                let cc =
                    ConfContext { origin: None, change: MemberChange::Add { id, peer_urls, learner: false } }
                        .to_conf_change();
                let mut e = Entry::default();
                e.set_entry_type(EntryType::EntryConfChangeV2);
                e.term = 1;
                e.index = i as u64 + 1;
                e.data = cc.write_to_bytes().expect("a conf change always encodes").into();
                e
            })
            .collect();
        self.raw.raft.become_follower(1, raft::INVALID_ID);
        self.raw.raft.raft_log.append(&entries);
        self.raw.raft.raft_log.commit_to(entries.len() as u64);
        for e in &entries {
            let mut cc = ConfChangeV2::default();
            cc.merge_from_bytes(&e.data).expect("encoded above");
            let cs = self.raw.apply_conf_change(&cc).expect("adding voters to an empty configuration");
            self.raw.mut_store().set_conf_state(cs);
        }
    }

    /// Voters and learners as raft-rs last applied them.
    pub fn conf_state(&self) -> ConfState {
        self.raw.store().conf_state()
    }

    /// Whether this member is a learner (it receives the log, does not vote).
    pub fn is_learner(&self) -> bool {
        // Asked on every request: raft-rs's own view, without copying the configuration.
        let raft = &self.raw.raft;
        !raft.promotable() && raft.prs().get(self.config.id).is_some()
    }

    /// Whether a configuration change that removes this member has applied: it serves nothing
    /// more, and a driver stops it once `may_stop` (a restart on the same data replays the
    /// removal and finds it removed again).
    pub fn is_removed(&self) -> bool {
        self.removed
    }

    /// A removed member may stop (it has handed leadership over, if it led, and stepped down).
    pub fn may_stop(&self) -> bool {
        self.is_removed() && !self.is_leader()
    }

    /// Requests a learner may serve: reads that need no quorum, its own publication, the
    /// member list. etcd 3.4 refuses everything else with "rpc not supported for learner".
    pub(super) fn learner_may_serve(request: &Request) -> bool {
        match request {
            Request::Range(r) => r.serializable,
            Request::Txn(t) => !t.is_write() && txn_is_serializable(t),
            Request::V2Get(g) => !g.quorum,
            Request::PublishMember { .. } | Request::MemberList | Request::LeaseLeases => true,
            // Membership changes go to the leader.
            r => {
                is_forwardable(r)
                    && !matches!(r, Request::LeaseKeepAlive { .. } | Request::LeaseTimeToLive { .. })
            }
        }
    }

    /// A membership change, on the leader: checked against what the leader knows, then
    /// proposed. Answered when it applies.
    pub(super) fn change_members(&mut self, id: RequestId, request: Request) -> Result<()> {
        if self.raw.raft.has_pending_conf() {
            return Err(Error::MembershipChangePending);
        }
        let members = self.sm.members().clone();
        let cs = self.conf_state();
        let change = match request {
            Request::MemberAdd { id: member, peer_urls, learner } => {
                let member = match member {
                    0 => self.new_member_id(),
                    m if members.contains_key(&m) => return Err(Error::MemberExists),
                    m if self.sm.was_removed(m) => return Err(Error::IdRemoved),
                    m => m,
                };
                if members.values().any(|m| m.peer_urls.iter().any(|u| peer_urls.contains(u))) {
                    return Err(Error::PeerUrlExists);
                }
                if learner {
                    if cs.learners.len() >= LEARNERS_MAX {
                        return Err(Error::TooManyLearners);
                    }
                } else {
                    self.check_voters_after(cs.voters.len() + 1, None)?;
                }
                MemberChange::Add { id: member, peer_urls, learner }
            }
            Request::MemberRemove { id: member } => {
                if !members.contains_key(&member)
                    && !cs.voters.contains(&member)
                    && !cs.learners.contains(&member)
                {
                    return Err(if self.sm.was_removed(member) {
                        Error::IdRemoved
                    } else {
                        Error::MemberNotFound
                    });
                }
                if cs.voters.contains(&member) {
                    self.check_voters_after(cs.voters.len() - 1, Some(member))?;
                }
                MemberChange::Remove { id: member }
            }
            Request::MemberPromote { id: member } => {
                if !members.contains_key(&member) {
                    return Err(Error::MemberNotFound);
                }
                if !cs.learners.contains(&member) {
                    return Err(Error::MemberNotLearner);
                }
                let matched = |id| self.raw.raft.prs().get(id).map_or(0, |p| p.matched);
                if !learner_in_sync(matched(member), matched(self.config.id)) {
                    return Err(Error::LearnerNotReady);
                }
                self.check_voters_after(cs.voters.len() + 1, None)?;
                MemberChange::Promote { id: member }
            }
            Request::MemberUpdate { id: member, peer_urls } => {
                if !members.contains_key(&member) {
                    return Err(if self.sm.was_removed(member) {
                        Error::IdRemoved
                    } else {
                        Error::MemberNotFound
                    });
                }
                if members
                    .values()
                    .any(|m| m.id != member && m.peer_urls.iter().any(|u| peer_urls.contains(u)))
                {
                    return Err(Error::PeerUrlExists);
                }
                return self.propose(id, Caller::Member, Command::MemberUpdate { id: member, peer_urls });
            }
            other => unreachable!("not a membership change: {other:?}"),
        };
        self.propose_conf_change(id, change)
    }

    /// etcd's strict reconfiguration check, on the leader: with `voters` voters after the
    /// change, at least a quorum of them must be started (published) and in touch with the
    /// leader (heard from within an election timeout), not counting `leaving`.
    fn check_voters_after(&self, voters: usize, leaving: Option<u64>) -> Result<()> {
        let members = self.sm.members();
        let active = self
            .conf_state()
            .voters
            .iter()
            .filter(|&&v| Some(v) != leaving)
            .filter(|&&v| members.get(&v).is_some_and(Member::is_started))
            .filter(|&&v| v == self.config.id || self.heard_recently(v))
            .count();
        if voters == 0 || active < quorum(voters) {
            return Err(Error::NotEnoughStartedMembers);
        }
        Ok(())
    }

    /// Whether a message from `peer` arrived within the last election timeout (etcd asks its
    /// peer transport the same: is it connected, and since when).
    fn heard_recently(&self, peer: u64) -> bool {
        self.heard_from.get(&peer).is_some_and(|&at| at + self.config.election_timeout_ms() >= self.now_ms)
    }

    /// An id no member has or had, drawn from the member's seed.
    fn new_member_id(&mut self) -> u64 {
        loop {
            let id: u64 = self.rng.gen();
            if id != 0 && !self.sm.members().contains_key(&id) && !self.sm.was_removed(id) {
                return id;
            }
        }
    }

    fn propose_conf_change(&mut self, id: RequestId, change: MemberChange) -> Result<()> {
        let seq = self.next_seq;
        let origin = Origin { member: self.config.id, nonce: self.nonce, seq };
        let learner = matches!(change, MemberChange::Add { learner: true, .. });
        let mut cc = ConfContext { origin: Some(origin), change }.to_conf_change();
        if learner && self.planted_learner_votes() {
            // The planted bug: the member list says learner, raft-rs is told voter.
            cc.mut_changes()[0].set_change_type(raft::eraftpb::ConfChangeType::AddNode);
        }
        match self.raw.propose_conf_change(vec![], cc) {
            Ok(()) => {}
            Err(raft::Error::ProposalDropped) => return Err(Error::NoLeader),
            Err(e) => return Err(Error::Raft(e.to_string())),
        }
        self.sync_role();
        self.next_seq += 1;
        self.writes
            .insert(seq, PendingWrite { id, deadline_ms: self.now_ms + self.config.request_timeout_ms });
        Ok(())
    }

    /// Applies a configuration-change entry: raft-rs's configuration and the member set move
    /// together, and the proposer answers its client. A change raft-rs refuses (which the
    /// leader's checks should have prevented) applies as a no-op on every replica alike.
    pub(super) fn apply_conf_change_entry(&mut self, e: &Entry) -> Result<()> {
        let mut cc = ConfChangeV2::default();
        cc.merge_from_bytes(&e.data).map_err(|err| Error::Corrupt(format!("conf change: {err}")))?;
        let context = if cc.context.is_empty() { None } else { Some(ConfContext::decode(&cc.context)?) };
        let result = match self.raw.apply_conf_change(&cc) {
            Ok(cs) => {
                self.raw.mut_store().set_conf_state(cs.clone());
                self.conf_applied = Some(cs);
                match &context {
                    Some(ctx) => {
                        let member = self.sm.apply_member_change(e.index, e.term, &e.data, &ctx.change);
                        if matches!(ctx.change, MemberChange::Remove { id } if id == self.config.id) {
                            self.on_removed();
                        }
                        Ok(ResponseBody::Members { member: Some(member), members: self.sm.member_list() })
                    }
                    None => {
                        self.sm.skip(e.index, e.term, &e.data);
                        Ok(ResponseBody::Members { member: None, members: self.sm.member_list() })
                    }
                }
            }
            Err(err) => {
                self.sm.skip(e.index, e.term, &e.data);
                Err(Error::ConfChangeRefused(err.to_string()))
            }
        };
        let Some(origin) = context.and_then(|c| c.origin) else { return Ok(()) };
        if origin.member != self.config.id || origin.nonce != self.nonce {
            return Ok(());
        }
        if let Some(w) = self.writes.remove(&origin.seq) {
            let revision = self.sm.mvcc().current_revision();
            let result = result.map(|body| self.response(revision, body));
            self.respond(w.id, result);
        }
        Ok(())
    }

    /// This member's removal applied. A leader hands leadership to the voter that has the
    /// most of the log (raft-rs sends it TimeoutNow at once when it has all of it) and steps
    /// down: raft-rs cannot go on leading a configuration without itself (it would count its
    /// own progress, which is gone), and etcd's raft steps down there too.
    pub(super) fn on_removed(&mut self) {
        self.removed = true;
        if !self.is_leader() {
            return;
        }
        let cs = self.conf_state();
        let best = cs
            .voters
            .iter()
            .filter(|&&v| v != self.config.id)
            .filter_map(|&v| self.raw.raft.prs().get(v).map(|p| (p.matched, v)))
            .max();
        if let Some((_, to)) = best {
            self.raw.transfer_leader(to);
        }
        let term = self.raw.raft.term;
        self.raw.raft.become_follower(term, raft::INVALID_ID);
    }

    /// `Request::MoveLeader`, answered when `to` leads (see `resolve_moves`).
    pub(super) fn move_leader(&mut self, id: RequestId, to: u64) -> Result<()> {
        if !self.is_leader() {
            return Err(Error::MoveLeaderNotLeader);
        }
        if to == self.config.id {
            self.respond(id, Ok(self.response(self.sm.mvcc().current_revision(), ResponseBody::MovedLeader)));
            return Ok(());
        }
        if !self.conf_state().voters.contains(&to) {
            return Err(Error::BadLeaderTransferee);
        }
        self.raw.transfer_leader(to);
        self.sync_role();
        self.moves.push(PendingMove { id, to, deadline_ms: self.now_ms + self.config.request_timeout_ms });
        Ok(())
    }

    /// Answers leader moves whose transferee leads now, or whose time ran out.
    pub(super) fn resolve_moves(&mut self) {
        if self.moves.is_empty() {
            return;
        }
        let (leader, now) = (self.leader(), self.now_ms);
        let moves = std::mem::take(&mut self.moves);
        for m in moves {
            if leader == m.to {
                self.respond(
                    m.id,
                    Ok(self.response(self.sm.mvcc().current_revision(), ResponseBody::MovedLeader)),
                );
            } else if now >= m.deadline_ms {
                self.respond(m.id, Err(Error::LeaderTransferTimedOut));
            } else {
                self.moves.push(m);
            }
        }
    }

    /// `Config::planted_bug_learner_votes`, false in builds without planted bugs.
    fn planted_learner_votes(&self) -> bool {
        #[cfg(feature = "planted-bugs")]
        {
            self.config.planted_bug_learner_votes
        }
        #[cfg(not(feature = "planted-bugs"))]
        {
            false
        }
    }

    /// Auto-promotion (`Config::auto_promote_learners_after_ms`), on the leader, each tick: a
    /// learner in sync and heard from since long enough is promoted, through the same checks a
    /// requested promotion passes. Beyond etcd 3.4-3.6, which promote only on request.
    pub(super) fn auto_promote(&mut self) {
        let Some(window) = self.config.auto_promote_learners_after_ms else { return };
        if !self.is_leader() {
            self.in_sync_since.clear();
            return;
        }
        let learners = self.conf_state().learners;
        self.in_sync_since.retain(|id, _| learners.contains(id));
        let matched = |core: &Core, id| core.raw.raft.prs().get(id).map_or(0, |p| p.matched);
        let mut due = None;
        for &l in &learners {
            let ready =
                learner_in_sync(matched(self, l), matched(self, self.config.id)) && self.heard_recently(l);
            if !ready {
                self.in_sync_since.remove(&l);
                continue;
            }
            let since = *self.in_sync_since.entry(l).or_insert(self.now_ms);
            if self.now_ms >= since + window {
                due = Some(l);
            }
        }
        let Some(l) = due else { return };
        if self.raw.raft.has_pending_conf()
            || self.check_voters_after(self.conf_state().voters.len() + 1, None).is_err()
        {
            return;
        }
        let cc = ConfContext { origin: None, change: MemberChange::Promote { id: l } }.to_conf_change();
        if self.raw.propose_conf_change(vec![], cc).is_ok() {
            self.in_sync_since.remove(&l);
            self.sync_role();
        }
    }

    /// Serves `Request::MemberList` from the applied state.
    pub(super) fn member_list_response(&self) -> Response {
        let body = ResponseBody::Members { member: None, members: self.sm.member_list() };
        self.response(self.sm.mvcc().current_revision(), body)
    }
}
