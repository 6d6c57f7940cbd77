//! The in-memory Raft log the core hands to raft-rs.
//!
//! This is not durable storage: durability belongs to the driver, which receives every entry,
//! hard state and snapshot as an output (see `Persist`) and writes them before acknowledging.
//! This copy serves raft-rs's reads (`entries`, `term`, `snapshot`) and is rebuilt from what the
//! driver recovered at boot.
//!
//! raft-rs's `MemStorage` keeps the log but builds snapshots without data; `LogStore` wraps it
//! and answers `snapshot()` with the state machine snapshot the core made (or received) last.
//!
//! A snapshot's data is as large as the store, and is on the driver's disk once made: it is
//! kept here only while a follower needs it. When raft-rs asks for a snapshot whose data is not
//! here, `snapshot()` answers "temporarily unavailable" (raft-rs tries again on the follower's
//! next response) and marks it wanted; the core then builds a new one (`snapshot_wanted`).

use std::cell::Cell;

use bytes::Bytes;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::storage::{MemStorage, RaftState, Storage};
use raft::{GetEntriesContext, StorageError};

pub struct LogStore {
    mem: MemStorage,
    /// The latest snapshot's metadata (its data always empty), index 0 if none was made yet.
    snapshot: Snapshot,
    /// The latest snapshot's data, while a follower may need it (see the module docs).
    data: Option<Bytes>,
    /// raft-rs asked for a snapshot that `data` could not answer.
    wanted: Cell<bool>,
}

impl LogStore {
    /// A log for a member that has never run: empty, with no voters yet (a new cluster's
    /// member writes its initial voters as its first entries; a joining one learns them).
    pub fn new_empty() -> LogStore {
        LogStore {
            mem: MemStorage::new(),
            snapshot: Snapshot::default(),
            data: None,
            wanted: Cell::new(false),
        }
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
        let mut store = LogStore { mem, snapshot: Snapshot::default(), data: None, wanted: Cell::new(false) };
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
    /// Its data is not kept: the driver persists it, and the member rebuilds one if a follower
    /// needs it.
    pub fn apply_snapshot(&mut self, mut snap: Snapshot) -> raft::Result<()> {
        snap.data = Bytes::new();
        self.mem.wl().apply_snapshot(snap.clone())?;
        self.snapshot = snap;
        self.data = None;
        Ok(())
    }

    /// Records a snapshot the state machine made of itself and drops log entries before
    /// `compact_index` (which must not pass the snapshot's index, so that every index raft-rs
    /// may still ask for is either in the log or covered by the snapshot).
    ///
    /// The data is kept only if raft-rs wanted a snapshot since the last one was made.
    pub fn set_snapshot_and_compact(&mut self, mut snap: Snapshot, compact_index: u64) -> raft::Result<()> {
        let snap_index = snap.get_metadata().index;
        assert!(compact_index <= snap_index + 1, "compacting past the snapshot would lose entries");
        assert!(snap_index >= self.snapshot.get_metadata().index, "snapshots must not go back");
        let data = std::mem::take(&mut snap.data);
        self.data = self.wanted.replace(false).then_some(data);
        self.snapshot = snap;
        if compact_index > self.first_index()? {
            self.mem.wl().compact(compact_index)?;
        }
        Ok(())
    }

    /// The latest snapshot's index, 0 if none.
    pub fn snapshot_index(&self) -> u64 {
        self.snapshot.get_metadata().index
    }

    /// raft-rs asked for a snapshot to send and none is in memory: the core should build one.
    pub fn snapshot_wanted(&self) -> bool {
        self.wanted.get()
    }

    /// Whether the latest snapshot's data is in memory.
    pub fn holds_snapshot_data(&self) -> bool {
        self.data.is_some()
    }

    /// Drops the latest snapshot's data (no follower needs it any more).
    pub fn release_snapshot_data(&mut self) {
        self.data = None;
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
    /// core snapshots before it compacts, so the latest snapshot always covers them. Without
    /// its data in memory (or with none made yet), the answer is "temporarily unavailable",
    /// which raft-rs retries, and the snapshot is marked wanted for the core to build. The same
    /// goes for a snapshot made before `to` joined: its configuration does not hold `to`, and
    /// raft-rs's receiver refuses such a snapshot (it would not know itself a member).
    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        let meta = self.snapshot.get_metadata();
        let index = meta.index;
        let cs = meta.get_conf_state();
        let holds_to = cs.voters.contains(&to) || cs.learners.contains(&to);
        match &self.data {
            Some(data) if index != 0 && index >= request_index && holds_to => {
                let mut snap = self.snapshot.clone();
                snap.data = data.clone();
                Ok(snap)
            }
            _ => {
                self.wanted.set(true);
                Err(raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable))
            }
        }
    }
}
