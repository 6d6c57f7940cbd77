//! What the simulated clients did: every operation with its invoke and complete times (global
//! simulated time) and outcome, the input of the linearizability checker; and what each watch
//! received, the input of the watch checker.

use std::sync::{Arc, Mutex};

use crate::auth_check::{AdminOp, AdminOutcome, UserOp};
use crate::invariants::backups::Backup;
use crate::invariants::no_lost_write::AckedWrite;
use crate::linearizability::{Input, Op, Outcome};
use crate::watch_check::WatchSession;

#[derive(Clone, Debug, Default)]
pub struct Counts {
    pub ok: u64,
    pub failed: u64,
    pub unknown: u64,
    pub serializable_reads: u64,
    pub lease_ops: u64,
    pub watch_events: u64,
    pub backups: u64,
    /// Writes refused for want of space (NOSPACE), each followed by a compaction and disarm.
    pub nospace: u64,
    /// Writes refused by a prefix quota.
    pub prefix_quota_refusals: u64,
    /// Backups compared with the converged store (the others were below its compaction).
    pub backups_checked: u64,
    /// Auth changes applied, user operations that succeeded (each checked against the
    /// permissions in force), and user operations refused for want of a permission.
    pub auth_changes: u64,
    pub auth_ops: u64,
    pub auth_denied: u64,
}

/// Shared by every client task of a run.
#[derive(Clone, Default)]
pub struct History {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Default)]
struct Inner {
    ops: Vec<Op>,
    acked: Vec<AckedWrite>,
    watches: Vec<WatchSession>,
    backups: Vec<Backup>,
    auth_changes: Vec<AdminOp>,
    auth_ops: Vec<UserOp>,
    counts: Counts,
}

impl History {
    pub fn record(&self, op: Op, acked: Option<AckedWrite>) {
        let mut h = self.inner.lock().unwrap();
        match op.outcome {
            Outcome::Ok(_) => h.counts.ok += 1,
            Outcome::Failed => h.counts.failed += 1,
            Outcome::Unknown => h.counts.unknown += 1,
        }
        if let Some(a) = acked {
            h.acked.push(a);
        }
        h.ops.push(op);
    }

    /// An acknowledged write that is not part of the linearizability history (lease keys).
    pub fn record_acked(&self, acked: AckedWrite) {
        self.inner.lock().unwrap().acked.push(acked);
    }

    pub fn count(&self, f: impl FnOnce(&mut Counts)) {
        f(&mut self.inner.lock().unwrap().counts)
    }

    pub fn record_watch(&self, session: WatchSession) {
        let mut h = self.inner.lock().unwrap();
        h.counts.watch_events += session.received.len() as u64;
        h.watches.push(session);
    }

    pub fn record_backup(&self, backup: Backup) {
        let mut h = self.inner.lock().unwrap();
        h.counts.backups += 1;
        h.backups.push(backup);
    }

    pub fn record_auth_change(&self, op: AdminOp) {
        let mut h = self.inner.lock().unwrap();
        if matches!(op.outcome, AdminOutcome::Applied { .. }) {
            h.counts.auth_changes += 1;
        }
        h.auth_changes.push(op);
    }

    pub fn record_auth_op(&self, op: UserOp) {
        let mut h = self.inner.lock().unwrap();
        h.counts.auth_ops += 1;
        h.auth_ops.push(op);
    }

    /// Auth changes in the order the admin made them, and the users' successful operations.
    pub fn auth(&self) -> (Vec<AdminOp>, Vec<UserOp>) {
        let h = self.inner.lock().unwrap();
        (h.auth_changes.clone(), h.auth_ops.clone())
    }

    pub fn backups(&self) -> Vec<Backup> {
        self.inner.lock().unwrap().backups.clone()
    }

    pub fn ops(&self) -> Vec<Op> {
        self.inner.lock().unwrap().ops.clone()
    }

    pub fn acked(&self) -> Vec<AckedWrite> {
        self.inner.lock().unwrap().acked.clone()
    }

    pub fn watches(&self) -> Vec<WatchSession> {
        self.inner.lock().unwrap().watches.clone()
    }

    pub fn counts(&self) -> Counts {
        self.inner.lock().unwrap().counts.clone()
    }
}

/// The key an operation touches.
pub fn key_of(input: &Input) -> &[u8] {
    match input {
        Input::Get { key } | Input::Put { key, .. } | Input::Delete { key } | Input::Cas { key, .. } => key,
    }
}
