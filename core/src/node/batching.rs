//! Writes proposed in batches: everything submitted (or forwarded by followers) between two
//! `advance` calls goes to raft-rs as one proposal, and a leader with
//! `Config::proposal_batches_max` batches in flight holds new writes until one commits (`Held`).

#[allow(unused_imports)]
use super::*;

/// A client request waiting for its entry to apply.
pub(super) struct PendingWrite {
    pub(super) id: RequestId,
    pub(super) deadline_ms: u64,
}

/// Proposals a leader holds back while `Config::proposal_batches_max` batches are in flight
/// (appended, not yet committed), to propose them as one batch when one commits. Under load
/// this trades a little waiting for far fewer rounds: every member's fsync, every append and
/// acknowledgement, every wakeup is paid per batch, not per request. A lone client never
/// waits (nothing is in flight when its request comes), and neither does a request while
/// fewer batches are in flight. Held proposals keep their order, and go as soon as this
/// member stops leading (raft-rs forwards them to the new leader, or drops them).
#[derive(Debug, Default)]
pub(super) struct Held {
    /// Each with the local write it carries (a `Core::writes` key), answered with an error if
    /// its batch is dropped; forwarded and internal proposals carry none.
    pub(super) entries: VecDeque<(Entry, Option<u64>)>,
    pub(super) bytes: usize,
    /// Last index of each batch proposed as leader and not yet committed, oldest first.
    pub(super) inflight: VecDeque<u64>,
}

impl Held {
    pub(super) fn push(&mut self, entries: Vec<Entry>, seq: Option<u64>) {
        for e in entries {
            self.bytes += e.data.len();
            self.entries.push_back((e, seq));
        }
    }

    /// The oldest entries, up to `max` bytes of data (at least one), and the local writes
    /// among them.
    pub(super) fn take(&mut self, max: usize) -> (Vec<Entry>, Vec<u64>) {
        let (mut entries, mut local, mut bytes) = (Vec::new(), Vec::new(), 0);
        while let Some((e, _)) = self.entries.front() {
            if !entries.is_empty() && bytes + e.data.len() > max {
                break;
            }
            let (e, seq) = self.entries.pop_front().expect("checked above");
            bytes += e.data.len();
            entries.push(e);
            local.extend(seq);
        }
        self.bytes -= bytes;
        (entries, local)
    }

    /// Forgets batches that committed, or all of them when this member does not lead.
    pub(super) fn prune(&mut self, leading: bool, committed: u64) {
        if !leading {
            self.inflight.clear();
        }
        while self.inflight.front().is_some_and(|&last| last <= committed) {
            self.inflight.pop_front();
        }
    }
}

impl Core {
    pub(super) fn propose(&mut self, id: RequestId, caller: Caller, command: Command) -> Result<()> {
        let caller = self.planted_auth_at_proposal(caller, &command)?;
        let seq = self.next_seq;
        let origin = Origin { member: self.config.id, nonce: self.nonce, seq };
        // etcd bounds v2 writes only by its HTTP form limit (10 MiB), not --max-request-bytes.
        let max = match command {
            Command::V2(_) => crate::v2::REQUEST_BYTES_MAX,
            _ => self.config.request_bytes_max,
        };
        let data = Proposal { origin: Some(origin), caller, command }.encode();
        if data.len() > max {
            return Err(Error::RequestTooLarge);
        }
        self.hold(data, Some(seq));
        self.next_seq += 1;
        self.writes
            .insert(seq, PendingWrite { id, deadline_ms: self.now_ms + self.config.request_timeout_ms });
        Ok(())
    }

    /// `Config::planted_bug_auth_at_proposal`: the caller checked now and the entry proposed
    /// as a member's, which the state machine does not check. Without planted bugs, `caller`.
    fn planted_auth_at_proposal(&self, caller: Caller, command: &Command) -> Result<Caller> {
        #[cfg(feature = "planted-bugs")]
        if self.config.planted_bug_auth_at_proposal {
            self.sm.permitted(&caller, command)?;
            return Ok(Caller::Member);
        }
        let _ = command;
        Ok(caller)
    }

    /// Holds an entry for the next batch of proposals (see `Held`). `seq` names the local write
    /// it carries, answered with an error should its batch be dropped.
    pub(super) fn hold(&mut self, data: Vec<u8>, seq: Option<u64>) {
        let entry = Entry { data: data.into(), ..Entry::default() };
        self.held.push(vec![entry], seq);
    }

    /// Hands raft-rs one proposal message (one batch) and, as leader, counts it in flight.
    pub(super) fn step_proposal(&mut self, m: Message) -> Result<()> {
        let result = self.raw.step(m);
        self.sync_role();
        match result {
            Ok(()) => {
                if self.is_leader() {
                    self.held.inflight.push_back(self.raw.raft.raft_log.last_index());
                }
                Ok(())
            }
            Err(raft::Error::ProposalDropped) if self.leader() == 0 => Err(Error::NoLeader),
            Err(raft::Error::ProposalDropped) => Err(Error::TooManyRequests),
            Err(e) => Err(Error::Raft(e.to_string())),
        }
    }

    /// Proposes what is held, as one batch, unless this member leads with
    /// `Config::proposal_batches_max` batches in flight and room in the held one. A member that
    /// does not lead hands raft-rs the batch at once: raft-rs forwards it to the leader as one
    /// message, or drops it when there is none.
    pub(super) fn release_held(&mut self) {
        let max = self.config.append_bytes_max as usize;
        while !self.held.entries.is_empty() {
            self.held.prune(self.is_leader(), self.raw.raft.raft_log.committed);
            if self.is_leader()
                && self.held.inflight.len() >= self.config.proposal_batches_max
                && self.held.bytes < max
            {
                return;
            }
            // A batch is at most one append message's worth (and at least one entry).
            let (entries, local) = self.held.take(max);
            let mut m = Message::default();
            m.set_msg_type(raft::eraftpb::MessageType::MsgPropose);
            m.from = self.config.id;
            m.set_entries(entries.into());
            if let Err(e) = self.step_proposal(m) {
                for seq in local {
                    if let Some(w) = self.writes.remove(&seq) {
                        self.counters.proposals_failed += 1;
                        self.respond(w.id, Err(e.clone()));
                    }
                }
            }
        }
    }
}
