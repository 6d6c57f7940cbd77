//! What time ends: requests past their deadline, leases whose TTL ran out on the leader's
//! clock, v2 keys past their wall-clock expiry. Expiry is the leader's decision, proposed
//! through the log, so every replica removes the same keys at the same index.

#[allow(unused_imports)]
use super::*;

/// How often, at most, the leader proposes the expiry of v2 keys whose time is up: on a fixed
/// beat, as etcd's 500 ms sync ticker, so a key goes within one beat of its expiry time.
pub(super) const V2_EXPIRE_BEAT_MS: u64 = 500;

impl Core {
    pub(super) fn expire_requests(&mut self) {
        let now = self.now_ms;
        let no_leader = self.leader() == 0;
        let err = || if no_leader { Error::NoLeader } else { Error::TimedOut };
        let late: Vec<u64> =
            self.writes.iter().filter(|(_, w)| w.deadline_ms <= now).map(|(&s, _)| s).collect();
        for seq in late {
            let w = self.writes.remove(&seq).expect("listed above");
            self.counters.proposals_failed += 1;
            // The entry may still commit later; the client must treat the outcome as unknown.
            self.respond(w.id, Err(Error::TimedOut));
        }
        let late: Vec<u64> =
            self.reads.iter().filter(|(_, r)| r.deadline_ms <= now).map(|(&s, _)| s).collect();
        for seq in late {
            let r = self.reads.remove(&seq).expect("listed above");
            self.respond(r.id, Err(err()));
        }
        // A forward whose reply never came: lease renewals and time-to-live change nothing
        // durable, so "timed out" is exact.
        let late: Vec<u64> =
            self.forwarded.iter().filter(|(_, (_, at))| *at <= now).map(|(&f, _)| f).collect();
        for fid in late {
            let (id, _) = self.forwarded.remove(&fid).expect("listed above");
            self.respond(id, Err(Error::TimedOut));
        }
    }

    /// The wall clock, in Unix nanoseconds. v2 TTLs are wall-clock deadlines (as in etcd): the
    /// leader proposes their expiry stamped with this time, so every replica removes the same
    /// keys at the same index whatever its own clock says. Drivers call it before
    /// `handle_timeout`; a member never told the time expires nothing.
    pub fn set_wall_clock(&mut self, unix_ns: i64) {
        self.wall_ns = unix_ns;
    }

    /// The wall clock as last given (`set_wall_clock`); 0 if never.
    pub fn wall_clock(&self) -> i64 {
        self.wall_ns
    }

    /// As leader (with every earlier term applied), on each beat, proposes the expiry of the v2
    /// keys whose time is up. A lost or repeated proposal is harmless: the next one expires
    /// what is due, and one that finds nothing due changes nothing.
    pub(super) fn expire_v2(&mut self) {
        if self.now_ms < self.v2_expire_beat_ms {
            return;
        }
        self.v2_expire_beat_ms = self.now_ms + V2_EXPIRE_BEAT_MS;
        if !self.lessor.is_primary() || self.wall_ns == 0 {
            return;
        }
        let Some(due) = self.sm.v2().next_expiry_ns() else { return };
        if due > self.wall_ns {
            return;
        }
        let command = Command::V2(crate::v2::V2Write::Expire { now_ns: self.wall_ns });
        let data = Proposal { origin: None, caller: Caller::Member, command }.encode();
        self.hold(data, None);
    }

    /// As leader, proposes a revoke for each lease whose TTL ran out on this member's clock.
    pub(super) fn expire_leases(&mut self) {
        if !self.lessor.is_primary() {
            return;
        }
        for id in self.lessor.take_expired(self.now_ms, self.config.request_timeout_ms) {
            let data =
                Proposal { origin: None, caller: Caller::Member, command: Command::LeaseRevoke { id } }
                    .encode();
            // If dropped (leadership lost meanwhile), the next leader revokes it instead.
            self.hold(data, None);
        }
        self.sync_role();
    }
}
