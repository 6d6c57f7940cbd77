//! When the member snapshots its state machine (every `snapshot_entries` applied entries, or
//! when raft-rs wants one for a follower), a step at a time; and the leader's side of sending
//! one: retrying a snapshot message that was lost, dropping snapshot data no follower needs.

#[allow(unused_imports)]
use super::*;

/// How many election timeouts the leader waits for a follower to acknowledge a snapshot before
/// it takes the snapshot as lost and sends it again.
pub(super) const SNAPSHOT_RETRY_ELECTIONS: u64 = 2;

impl Core {
    pub(super) fn retry_lost_snapshots(&mut self) {
        self.release_unneeded_snapshot();
        if !self.is_leader() {
            self.snapshot_sending_since.clear();
            return;
        }
        let patience = SNAPSHOT_RETRY_ELECTIONS * self.config.election_ticks as u64;
        let mut sending = BTreeMap::new();
        for (&id, pr) in self.raw.raft.prs().iter() {
            if pr.state == raft::ProgressState::Snapshot {
                sending.insert(id, self.snapshot_sending_since.get(&id).copied().unwrap_or(self.ticks));
            }
        }
        let stuck: Vec<u64> =
            sending.iter().filter(|(_, &since)| self.ticks - since >= patience).map(|(&id, _)| id).collect();
        for id in stuck {
            self.raw.report_snapshot(id, raft::SnapshotStatus::Failure);
            sending.remove(&id);
        }
        self.snapshot_sending_since = sending;
    }

    /// Drops the latest snapshot's data from memory once no follower needs it: none is being
    /// sent one, and every one can catch up from the log. A follower that later falls behind
    /// the log gets a new snapshot built for it.
    pub(super) fn release_unneeded_snapshot(&mut self) {
        if !self.raw.store().holds_snapshot_data() {
            return;
        }
        let first_index = self.raw.raft.raft_log.first_index();
        let needed = self.is_leader()
            && self.raw.raft.prs().iter().any(|(&id, pr)| {
                id != self.config.id
                    && (pr.state == raft::ProgressState::Snapshot || pr.matched + 1 < first_index)
            });
        if !needed {
            self.raw.mut_store().release_snapshot_data();
        }
    }

    /// Snapshots every `snapshot_entries` applied entries, and when raft-rs wants one to send
    /// to a follower and has none in memory; one `SnapshotBuilder` step per call.
    pub(super) fn maybe_snapshot(&mut self) -> Result<()> {
        if self.snapshot_building.is_none() {
            let applied = self.sm.applied_index();
            let due = applied >= self.last_snapshot_index + self.config.snapshot_entries
                || (self.raw.store().snapshot_wanted() && applied > 0)
                || (!self.backups_waiting.is_empty() && applied > 0);
            if !due || self.snapshot_unpersisted.is_some() {
                return Ok(());
            }
            let conf_state = self.raw.store().conf_state();
            // Sized up front: a buffer that doubles copies itself whole into memory never
            // touched, and first touches are what a step costs most (see `SnapshotBuilder`).
            let hint = self.snapshot_bytes_last.saturating_add(self.applied_bytes);
            self.applied_bytes = 0;
            self.snapshot_building = Some(SnapshotBuilder::start(&self.sm, conf_state, hint));
            // Backups asked for until now are answered by this snapshot: it holds everything
            // applied before they came.
            self.backups_building.append(&mut self.backups_waiting);
            self.backup_revision = self.sm.mvcc().current_revision();
        }
        let building = self.snapshot_building.as_mut().expect("started above");
        match building.step(&self.sm, self.config.snapshot_step_bytes) {
            Step::More => return Ok(()),
            // Started again on the next call, from the compacted store.
            Step::Abandoned => {
                self.snapshot_building = None;
                let mut building = std::mem::take(&mut self.backups_building);
                building.append(&mut self.backups_waiting);
                self.backups_waiting = building;
                return Ok(());
            }
            Step::Done => {}
        }
        let building = self.snapshot_building.take().expect("stepped above");
        let mut snap = Snapshot::default();
        let meta = snap.mut_metadata();
        let (index, term) = (building.index(), building.term());
        meta.index = index;
        meta.term = term;
        meta.set_conf_state(building.conf_state().clone());
        let data = bytes::Bytes::from(building.finish());
        self.snapshot_bytes_last = data.len();
        for id in std::mem::take(&mut self.backups_building) {
            let body =
                ResponseBody::Backup { data: data.clone(), index, term, revision: self.backup_revision };
            self.respond(id, Ok(self.response(self.backup_revision, body)));
        }
        snap.set_data(data);
        let log_first_index = index.saturating_sub(self.config.snapshot_catch_up_entries).max(1);
        self.raw
            .mut_store()
            .set_snapshot_and_compact(snap.clone(), log_first_index)
            .map_err(|e| Error::Raft(format!("compacting the log: {e}")))?;
        self.last_snapshot_index = index;
        self.out.snapshot = Some(SnapshotMade { snapshot: snap, log_first_index });
        Ok(())
    }
}
