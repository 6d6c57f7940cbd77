//! The in-memory Raft log the core hands to raft-rs.
//!
//! This is not durable storage: durability belongs to the driver, which receives every entry,
//! hard state and snapshot as an output (see `Persist`) and writes them before acknowledging.
//! This copy serves raft-rs's reads (`entries`, `term`, `snapshot`) and is rebuilt from what the
//! driver recovered at boot.
//!
//! raft-rs's `MemStorage` keeps the log but builds snapshots without data; `LogStore` wraps it
//! and answers `snapshot()` with the state machine snapshot the core made (or received) last.

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::storage::{MemStorage, RaftState, Storage};
use raft::{GetEntriesContext, StorageError};

pub struct LogStore {
    mem: MemStorage,
    /// The latest snapshot with state machine data, index 0 if none was made yet.
    snapshot: Snapshot,
}

impl LogStore {
    /// A log for a member that has never run: empty, with the initial voters.
    pub fn new_bootstrap(voters: &[u64]) -> LogStore {
        let mem = MemStorage::new_with_conf_state(ConfState::from((voters.to_vec(), vec![])));
        LogStore { mem, snapshot: Snapshot::default() }
    }

    /// Rebuilds the log from what the driver recovered: the latest snapshot (if any), the hard
    /// state, and the entries after the snapshot, in order and contiguous.
    pub fn recover(
        snapshot: Option<Snapshot>,
        mut hard_state: HardState,
        conf_state: ConfState,
        entries: &[Entry],
    ) -> raft::Result<LogStore> {
        let mem = MemStorage::new();
        let mut store = LogStore { mem, snapshot: Snapshot::default() };
        let snap_index = snapshot.as_ref().map_or(0, |s| s.get_metadata().index);
        if let Some(snap) = snapshot {
            store.apply_snapshot(snap)?;
        }
        // Entries the snapshot covers may still be on disk (kept for catching followers up);
        // the rest must follow it without a gap. raft-rs's MemStorage panics on either, so a
        // damaged log is refused here instead.
        let entries: Vec<Entry> = entries.iter().filter(|e| e.index > snap_index).cloned().collect();
        for (i, e) in entries.iter().enumerate() {
            if e.index != snap_index + 1 + i as u64 {
                return Err(raft::Error::Store(StorageError::Other(
                    format!("log has a gap: entry {} where {} belongs", e.index, snap_index + 1 + i as u64)
                        .into(),
                )));
            }
        }
        let last_index = snap_index + entries.len() as u64;
        // A snapshot holds only committed state, and may have reached the disk before the hard
        // state that recorded its commit did.
        hard_state.commit = hard_state.commit.max(snap_index);
        if hard_state.commit > last_index {
            return Err(raft::Error::Store(StorageError::Other(
                format!("commit index {} outside the log [{snap_index}, {last_index}]", hard_state.commit)
                    .into(),
            )));
        }
        {
            let mut core = store.mem.wl();
            core.append(&entries)?;
            core.set_conf_state(conf_state);
            core.set_hardstate(hard_state);
        }
        Ok(store)
    }

    pub fn append(&mut self, entries: &[Entry]) -> raft::Result<()> {
        self.mem.wl().append(entries)
    }

    pub fn set_hard_state(&mut self, hs: HardState) {
        self.mem.wl().set_hardstate(hs);
    }

    pub fn set_commit(&mut self, commit: u64) {
        self.mem.wl().mut_hard_state().commit = commit;
    }

    pub fn set_conf_state(&mut self, cs: ConfState) {
        self.mem.wl().set_conf_state(cs);
    }

    pub fn conf_state(&self) -> ConfState {
        self.mem.initial_state().expect("MemStorage's state is always readable").conf_state
    }

    /// Installs a snapshot received from the leader (or recovered at boot): the log before and
    /// at its index is discarded.
    pub fn apply_snapshot(&mut self, snap: Snapshot) -> raft::Result<()> {
        self.mem.wl().apply_snapshot(snap.clone())?;
        self.snapshot = snap;
        Ok(())
    }

    /// Records a snapshot the state machine made of itself and drops log entries before
    /// `compact_index` (which must not pass the snapshot's index, so that every index raft-rs
    /// may still ask for is either in the log or covered by the snapshot).
    pub fn set_snapshot_and_compact(&mut self, snap: Snapshot, compact_index: u64) -> raft::Result<()> {
        let snap_index = snap.get_metadata().index;
        assert!(compact_index <= snap_index + 1, "compacting past the snapshot would lose entries");
        assert!(snap_index >= self.snapshot.get_metadata().index, "snapshots must not go back");
        self.snapshot = snap;
        if compact_index > self.first_index()? {
            self.mem.wl().compact(compact_index)?;
        }
        Ok(())
    }

    pub fn latest_snapshot(&self) -> &Snapshot {
        &self.snapshot
    }
}

impl Storage for LogStore {
    fn initial_state(&self) -> raft::Result<RaftState> {
        self.mem.initial_state()
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        self.mem.entries(low, high, max_size, context)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx == self.snapshot.get_metadata().index && idx != 0 {
            return Ok(self.snapshot.get_metadata().term);
        }
        self.mem.term(idx)
    }

    fn first_index(&self) -> raft::Result<u64> {
        self.mem.first_index()
    }

    fn last_index(&self) -> raft::Result<u64> {
        self.mem.last_index()
    }

    /// raft-rs asks for a snapshot when a follower needs entries the log no longer has. The
    /// core snapshots before it compacts, so the latest snapshot always covers them; if none
    /// has been made yet the log was never compacted and this is not reached, but answering
    /// "temporarily unavailable" lets raft-rs retry rather than fail.
    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let snap = &self.snapshot;
        if snap.get_metadata().index == 0 || snap.get_metadata().index < request_index {
            return Err(raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable));
        }
        Ok(snap.clone())
    }
}
