//! Linearizable reads by Raft's ReadIndex (Raft thesis §6.4): reads join a round, the round's
//! index comes back once a quorum confirmed this member's leadership (or the leader's, for a
//! follower), and a read is served once the state machine has applied that index.

#[allow(unused_imports)]
use super::*;

/// A linearizable read waiting for a read index and then for the state machine to reach it.
pub(super) struct PendingRead {
    pub(super) id: RequestId,
    pub(super) request: ReadKind,
    /// Checked again when the read is served: a permission revoked before then is refused.
    pub(super) caller: Caller,
    pub(super) deadline_ms: u64,
    /// The ReadIndex round the read joined (its context), 0 before it joined one.
    pub(super) round: u64,
    pub(super) index: Option<u64>,
}

pub(super) enum ReadKind {
    Range(crate::kv::RangeRequest),
    Txn(TxnRequest),
    V2Get(V2Get),
}

/// A read-only txn is served locally when every op in it is a serializable range (etcd's
/// `isTxnSerializable`; a nested txn counts as not serializable there too).
pub(super) fn txn_is_serializable(t: &TxnRequest) -> bool {
    use crate::kv::RequestOp;
    t.success.iter().chain(&t.failure).all(|op| matches!(op, RequestOp::Range(r) if r.serializable))
}

impl Core {
    pub(super) fn add_read(&mut self, id: RequestId, request: ReadKind, caller: Caller) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let deadline_ms = self.now_ms + self.config.request_timeout_ms;
        self.reads.insert(seq, PendingRead { id, request, caller, deadline_ms, round: 0, index: None });
    }

    pub(super) fn start_read_round(&mut self) {
        if !self.reads.values().any(|r| r.round == 0) {
            return;
        }
        self.read_round += 1;
        let round = self.read_round;
        for r in self.reads.values_mut().filter(|r| r.round == 0) {
            r.round = round;
        }
        self.raw.read_index(self.read_context(round));
        // A round can be lost (no leader yet, the leader changed, the leader has not committed
        // in its term): start another after an election timeout if it has not answered.
        self.read_retry_ms = self.now_ms + self.config.election_timeout_ms();
        self.sync_role();
    }

    /// A ReadIndex round's context. raft-rs matches heartbeat acknowledgements to pending
    /// reads by context bytes alone, and a leader also serves reads its followers forward,
    /// with their contexts. Were contexts only round numbers, a leader's new round could
    /// collide with a follower's old one, and acknowledgements queued long before (a paused
    /// leader, resumed) would count as a fresh quorum: a deposed leader would serve a stale
    /// read. So a context names the member and its boot as well, and is never reused.
    pub(super) fn read_context(&self, round: u64) -> Vec<u8> {
        let mut ctx = Vec::with_capacity(24);
        ctx.extend_from_slice(&self.config.id.to_be_bytes());
        ctx.extend_from_slice(&self.nonce.to_be_bytes());
        ctx.extend_from_slice(&round.to_be_bytes());
        ctx
    }

    pub(super) fn on_read_state(&mut self, index: u64, ctx: &[u8]) {
        let Ok(bytes) = <[u8; 24]>::try_from(ctx) else { return };
        if bytes[..16] != self.read_context(0)[..16] {
            return;
        }
        let round = u64::from_be_bytes(bytes[16..].try_into().expect("8 bytes"));
        for r in self.reads.values_mut().filter(|r| r.round == round && r.index.is_none()) {
            r.index = Some(index);
        }
    }

    pub(super) fn serve_reads(&mut self) {
        let applied = self.sm.applied_index();
        let ready: Vec<u64> = self
            .reads
            .iter()
            .filter(|(_, r)| r.index.is_some_and(|i| i <= applied))
            .map(|(&s, _)| s)
            .collect();
        for seq in ready {
            let r = self.reads.remove(&seq).expect("listed above");
            // A permission revoked since the read came is refused.
            let body = self.check_read(&r.caller, &r.request).and_then(|()| self.serve(&r.request));
            let result = body.map(|b| self.response(self.sm.mvcc().current_revision(), b));
            self.respond(r.id, result);
        }
    }

    fn check_read(&self, caller: &Caller, request: &ReadKind) -> Result<()> {
        self.check_needs(caller, |needs| match request {
            ReadKind::Range(r) => needs.push(Access::Read { key: &r.key, range_end: &r.range_end }),
            ReadKind::Txn(t) => crate::auth::txn_accesses(t, needs),
            ReadKind::V2Get(_) => needs.push(Access::Admin),
        })
    }

    fn serve(&mut self, request: &ReadKind) -> Result<ResponseBody> {
        match request {
            ReadKind::Range(req) => self.sm.read_range(req),
            ReadKind::Txn(req) => self.sm.read_txn(req),
            ReadKind::V2Get(g) => {
                self.sm.v2().get(&g.path, g.recursive, g.sorted).map(|e| ResponseBody::V2(Some(e)))
            }
        }
    }
}
