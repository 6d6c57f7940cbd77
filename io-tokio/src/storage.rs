//! `Storage`: a member's durable state on fjall: the Raft log, the hard state, the membership
//! and the latest snapshot, with the semantics of the simulator's `SimDisk`
//! (`cairn_io_sim::disk`) and of `Disk::write` in the core's test support.
//!
//! ## Driving it
//!
//! At boot: `Storage::open`, then `recover`, then `Core::new(config, recovered)`. Then, for every
//! write the pipeline hands out (`cairn_core::pipeline::DiskWrite`), in order:
//!
//! 1. `write(&kind)`: a `Persist` (membership, leader snapshot, entries, hard state), or the
//!    record of the member's own snapshot, whose file the driver already made durable
//!    (`snapshot_file::write` into `snapshot_dir()`, off the loop: see "Own snapshots off the
//!    loop");
//! 2. `sync()` when any write asked for it: one fsync makes every write before it durable, so
//!    a driver may write several and sync once (group commit);
//! 3. only after `sync` returns: report the last ticket to the pipeline (`on_durable`), which
//!    sends what waited and acknowledges the persists to the core.
//!
//! Storage never sees messages or responses: the types keep them out (`Persist::messages` is
//! empty by the time a persist reaches the disk).
//!
//! The member loop (`member`) does this on a thread of its own (`writer`), so that an fsync never
//! stalls the loop.
//!
//! Any error from `open`, `write`, `sync` or `recover` stops the node (see "Durability").
//!
//! ## Layout
//!
//! One fjall database in the member's directory, two keyspaces, and the snapshot in its own
//! file in the `snapshots` subdirectory (format in `snapshot_file`):
//!
//! | keyspace | key                                  | value                               |
//! |----------|--------------------------------------|-------------------------------------|
//! | `log`    | entry index, u64 big-endian          | `Entry`, protobuf                   |
//! | `meta`   | `format_version`                     | `FORMAT_VERSION`, u32 big-endian    |
//! | `meta`   | `hard_state`                         | `HardState`, protobuf               |
//! | `meta`   | `conf_state`                         | `ConfState`, protobuf               |
//! | `meta`   | `snapshot`                           | its `SnapshotMetadata`, protobuf    |
//!
//! Big-endian keys sort in index order. The snapshot carries the whole state machine, so it is
//! as large as the store (hundreds of MiB): it goes to a file of its own, and fjall holds only
//! the record of which snapshot is the member's (its metadata, which names the file
//! `snapshot_file::file_name(index, term)`). A file that is not recorded is not a snapshot: a
//! crash may leave one behind, and `open` deletes it. A key that was never written
//! reads as its default (`HardState::default()`, no snapshot), as in `SimDisk`. The format
//! version is written with the first write that persists anything; a directory without it and
//! without any other key is fresh.
//!
//! ## Semantics
//!
//! `persist` applies, in this order: `conf_state` (latest wins); `snapshot` (a leader's
//! snapshot: its file written and fsynced first, then recorded, and the whole log dropped);
//! `entries` (an entry at index i replaces every stored entry at index >= i); `hard_state`
//! (latest wins). `record_snapshot` records the member's own snapshot, then drops the entries
//! before `log_first_index`. `recover` hands back
//! the result: the snapshot, and every stored entry in order, including the ones at or below
//! the snapshot's index that compaction kept for catching followers up.
//!
//! ## Durability and atomicity
//!
//! - `write` commits one fjall write batch per write. fjall frames a batch in its journal with
//!   a start marker, an item count and a checksummed end marker, and its recovery drops a batch
//!   that lacks its end: after a crash a write is there entirely or not at all. The batch is
//!   handed to the OS (it survives the process dying) but not fsynced.
//! - `sync` fsyncs fjall's journal (`PersistMode::SyncAll`): every write before it survives
//!   power loss. A crash before `sync` keeps some prefix of the unsynced writes (the journal is
//!   append-only and fjall truncates a torn tail); that is `SimDisk`'s crash model, at the grain
//!   of whole writes rather than records.
//! - A failed write or sync poisons the `Storage` (fjall poisons its database too): every later
//!   call returns `StorageError::Poisoned`. Never retry an fsync: after a failed fsync the
//!   kernel may have dropped the dirty pages and marked them clean, so a retry that succeeds
//!   proves nothing (PostgreSQL's "fsyncgate", 2018; Rebello et al., "Can Applications Recover
//!   from fsync Failures?", ATC '20). The node must stop and restart from what is on disk.
//! - A snapshot file is durable (fsynced, renamed, directory fsynced) before the batch that
//!   records it is written, so a record never names a file that a crash could lose. The file
//!   it replaces is deleted only once the new record is synced. `recover` reads the recorded
//!   file and checks its CRC: a torn or damaged recorded file is `Corrupt` (the log behind it
//!   may be gone, so there is nothing consistent to fall back to).
//! - Limits. fjall checksums journal batches and table blocks, so damaged bytes read back as an
//!   error rather than as data. What recovery cannot see: a disk that acknowledges an fsync it
//!   did not do (a volatile write cache), and a directory wiped clean, which reads as a fresh
//!   member. A member that forgot its vote may vote twice in a term: as with etcd, an operator
//!   must never restart a member on an empty directory under its old id.
//!
//! ## Bounds
//!
//! - The log is bounded by the core: it snapshots every `Config::snapshot_entries` applied
//!   entries and then drops all but `Config::snapshot_catch_up_entries` of the log behind the
//!   snapshot, so the log holds about their sum plus the entries not yet applied.
//! - One snapshot is kept; each new one replaces it. Files not recorded (at most the one being
//!   written, or what a crash left) are deleted by `open`.
//! - fjall holds at most `MEMTABLE_BYTES_MAX` per keyspace in memory before flushing it.
//! - `recover` reads the whole state into memory: the log and the snapshot, once, at boot.
//! - A write batch holds one write: the entries of one Raft ready (bounded by raft-rs's
//!   message and ready sizes), or, for a snapshot, its record plus one tombstone per entry of
//!   the log it drops. fjall drops tombstones in compaction.
//!
//! ## Own snapshots off the loop
//!
//! The core's contract on `Output::snapshot`: persist the snapshot durably; after that, log
//! entries before `log_first_index` may be deleted. So a driver may write the file on another
//! thread (`snapshot_file::write(storage.snapshot_dir(), ..)`) while the loop goes on, and call
//! `record_snapshot` once it is durable: the record is one batch, durable at the next `sync`.
//! Until then the log keeps every entry, and a crash recovers from the previous snapshot and
//! the whole log. The entries the record makes unneeded go `TRIM_ENTRIES_MAX` per batch, with
//! the record and the writes after it, so that no one batch holds a snapshot's worth of
//! deletions; a crash meanwhile recovers some of them too, all before the snapshot. A snapshot
//! older than the one recorded meanwhile (a leader's) is not recorded, and its file is deleted.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cairn_core::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use cairn_core::{DiskWriteKind, Persist, Recovered};
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode, Readable};
use protobuf::Message as _;

use crate::snapshot_file;

/// The on-disk format this build reads and writes. Version 1 kept the snapshot itself in
/// `meta`; version 2 keeps it in a file and its metadata in `meta`.
pub const FORMAT_VERSION: u32 = 2;

/// The keyspace holding the Raft log.
pub const LOG_KEYSPACE: &str = "log";
/// The keyspace holding the hard state, membership, snapshot and format version.
pub const META_KEYSPACE: &str = "meta";
// Keys in `META_KEYSPACE` (see the layout above). Public for tools and for tests that damage
// the storage on purpose.
pub const KEY_FORMAT_VERSION: &[u8] = b"format_version";
pub const KEY_HARD_STATE: &[u8] = b"hard_state";
pub const KEY_CONF_STATE: &[u8] = b"conf_state";
pub const KEY_SNAPSHOT: &[u8] = b"snapshot";
/// The most each keyspace's fjall memtable holds before fjall flushes it to a table on its
/// background thread (fjall's default is 64 MiB). What Cairn writes is read back only at boot
/// (the log lives in the core's memory too), so a memtable is memory held for nothing: with
/// the default, the two memtables (entries, tombstones and every hard state written) held
/// ~146 MB of a member's heap after a million puts. Set when a keyspace is created.
pub const MEMTABLE_BYTES_MAX: u64 = 8 << 20;
/// Most log entries `record_snapshot` and each later `write` delete of those a recorded
/// snapshot made unneeded (about 1.5 ms of fjall's time per batch here).
pub const TRIM_ENTRIES_MAX: u64 = 1024;
/// The subdirectory of the member's directory that holds snapshot files.
pub const SNAPSHOT_DIR: &str = "snapshots";

/// Storage failed; every variant stops the node.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// fjall failed: an I/O error (a full disk, a failed fsync), a damaged journal or table
    /// that its checksums caught, or the directory locked by another process.
    #[error("storage: fjall: {0}")]
    Fjall(#[from] fjall::Error),
    /// Writing, syncing or reading a snapshot file failed.
    #[error("storage: snapshot file: {0}")]
    Io(#[from] std::io::Error),
    /// What fjall holds is intact but not a state Cairn could have written.
    #[error("storage corrupt: {what}")]
    Corrupt { what: String },
    /// Written by another (newer) build: this one must not guess at it.
    #[error("storage format version {found}; this build reads version {FORMAT_VERSION}")]
    UnsupportedVersion { found: u32 },
    /// An earlier write or sync failed: what is in memory and on disk can no longer be trusted.
    #[error("storage: an earlier write or sync failed; restart the node from disk")]
    Poisoned,
}

fn corrupt(what: impl Into<String>) -> StorageError {
    StorageError::Corrupt { what: what.into() }
}

/// A member's durable storage: one fjall database in one directory, which it locks.
pub struct Storage {
    db: Database,
    log: Keyspace,
    meta: Keyspace,
    /// Where snapshot files go.
    snapshot_dir: PathBuf,
    /// Files to delete once the next `sync` has made the record that replaced them durable.
    obsolete: Vec<PathBuf>,
    /// What is stored, in brief: read by `open`, kept up to date by `write`, and asserted
    /// equal to what `recover` reads. Truncation and compaction delete exactly the keys that
    /// exist, without reading, and without scanning over the tombstones of earlier deletions.
    stored: Stored,
    /// Log entries before this index may be deleted, `TRIM_ENTRIES_MAX` per batch (see
    /// `record_snapshot`); 0 when none wait. Not durable: entries a crash leaves behind are
    /// before the recorded snapshot, where `recover` allows them.
    trim_to: u64,
    /// Written since the last `sync`.
    dirty: bool,
    /// A write or sync failed (see `StorageError::Poisoned`).
    poisoned: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stored {
    /// Indexes of the first and last entry in the log keyspace; None when it is empty.
    log: Option<(u64, u64)>,
    /// The recorded snapshot's index and term, 0 without one.
    snapshot_index: u64,
    snapshot_term: u64,
    /// The format version is written.
    formatted: bool,
}

impl Stored {
    /// What every write keeps true, and `recover` checks: the log starts at 1 or is joined to
    /// the snapshot without a gap.
    fn check(&self) {
        if let Some((first, last)) = self.log {
            assert!(1 <= first && first <= last, "log bounds [{first}, {last}]");
            assert!(first <= self.snapshot_index + 1, "log starts at {first}, after a gap");
        }
    }
}

impl Storage {
    /// Opens (or creates) the storage in `dir`. Reads the log's bounds, the snapshot's record and
    /// the format version; `Corrupt` or `UnsupportedVersion` if those cannot be read. Deletes
    /// snapshot files that are not recorded (left by a crash).
    pub fn open(dir: &Path) -> Result<Storage, StorageError> {
        let db = Database::builder(dir).open()?;
        let snapshot_dir = dir.join(SNAPSHOT_DIR);
        if !snapshot_dir.is_dir() {
            std::fs::create_dir_all(&snapshot_dir)?;
            snapshot_file::sync_dir(dir)?;
        }
        let options = || KeyspaceCreateOptions::default().max_memtable_size(MEMTABLE_BYTES_MAX);
        let log = db.keyspace(LOG_KEYSPACE, options)?;
        let meta = db.keyspace(META_KEYSPACE, options)?;
        let formatted = match meta.get(KEY_FORMAT_VERSION)? {
            None => false,
            Some(v) => {
                let found = u32::from_be_bytes(
                    v.as_ref()
                        .try_into()
                        .map_err(|_| corrupt(format!("format version of {} bytes", v.len())))?,
                );
                if found != FORMAT_VERSION {
                    return Err(StorageError::UnsupportedVersion { found });
                }
                true
            }
        };
        let first = log.first_key_value().map(|g| g.key()).transpose()?;
        let last = log.last_key_value().map(|g| g.key()).transpose()?;
        let bounds = match (first, last) {
            (Some(f), Some(l)) => Some((index_of(&f)?, index_of(&l)?)),
            _ => None,
        };
        let snapshot = decode_opt::<SnapshotMetadata>(meta.get(KEY_SNAPSHOT)?, "snapshot")?;
        let (snapshot_index, snapshot_term) = snapshot.map_or((0, 0), |m| (m.index, m.term));
        let stored = Stored { log: bounds, snapshot_index, snapshot_term, formatted };
        let storage = Storage {
            db,
            log,
            meta,
            snapshot_dir,
            obsolete: Vec::new(),
            trim_to: 0,
            stored,
            dirty: false,
            poisoned: false,
        };
        storage.delete_unrecorded_files()?;
        Ok(storage)
    }

    /// Where snapshot files go (for `snapshot_file::write`).
    pub fn snapshot_dir(&self) -> &Path {
        &self.snapshot_dir
    }

    /// The recorded snapshot's file, if there is a snapshot.
    fn recorded_file(&self) -> Option<PathBuf> {
        let Stored { snapshot_index: index, snapshot_term: term, .. } = self.stored;
        (index > 0).then(|| self.snapshot_dir.join(snapshot_file::file_name(index, term)))
    }

    fn delete_unrecorded_files(&self) -> Result<(), StorageError> {
        let recorded = self.recorded_file();
        let mut deleted = false;
        for dirent in std::fs::read_dir(&self.snapshot_dir)? {
            let path = dirent?.path();
            let ours = path.file_name().and_then(|n| n.to_str()).is_some_and(snapshot_file::is_snapshot_file);
            if ours && Some(&path) != recorded.as_ref() {
                std::fs::remove_file(&path)?;
                deleted = true;
            }
        }
        if deleted {
            snapshot_file::sync_dir(&self.snapshot_dir)?;
        }
        Ok(())
    }

    /// Carries out one write the pipeline handed out (`cairn_core::pipeline`): a persist
    /// (`persist`) or the record of the member's own snapshot, whose file is durable
    /// (`record_snapshot`). Durable only after the next `sync`.
    pub fn write(&mut self, w: &DiskWriteKind) -> Result<(), StorageError> {
        match w {
            DiskWriteKind::Persist(p) => self.persist(p),
            DiskWriteKind::RecordSnapshot { snapshot, log_first_index } => {
                self.record_snapshot(snapshot.get_metadata(), *log_first_index).map(|_| ())
            }
        }
    }

    /// Writes `p`'s durable parts (membership, leader snapshot, entries, hard state) as one
    /// atomic batch, durable only after the next `sync`; a leader snapshot's file is written
    /// and fsynced first. A persist with nothing durable (only messages) writes nothing.
    /// Visible to `recover` at once.
    ///
    /// Panics on data the core cannot have produced: entries that are not contiguous, that
    /// leave a gap after the log, or whose terms go down; a snapshot older than the stored one.
    pub fn persist(&mut self, p: &Persist) -> Result<(), StorageError> {
        self.check_usable()?;
        // The file first: a record must never name a file that is not durable.
        if let Some(s) = &p.snapshot {
            if let Err(e) = snapshot_file::write(&self.snapshot_dir, s) {
                self.poisoned = true;
                return Err(e.into());
            }
        }
        let mut plan = Plan { stored: self.stored, log: BTreeMap::new(), meta: BTreeMap::new() };
        if let Some(cs) = &p.conf_state {
            plan.meta.insert(KEY_CONF_STATE, encode(cs));
        }
        if let Some(s) = &p.snapshot {
            plan.leader_snapshot(s);
        }
        if !p.entries.is_empty() {
            plan.append(&p.entries);
        }
        if let Some(hs) = &p.hard_state {
            plan.meta.insert(KEY_HARD_STATE, encode(hs));
        }
        if !plan.is_empty() {
            plan.trim(self.trim_to);
        }
        self.commit(plan)
    }

    /// Records the member's own snapshot, whose file `snapshot_file::write` made durable in
    /// `snapshot_dir()`: one batch, durable at the next `sync`, like `write`. Returns false,
    /// recording nothing and deleting the file, if a snapshot at or past its index was recorded
    /// meanwhile (a leader's).
    ///
    /// The log entries before `log_first_index` are deleted `TRIM_ENTRIES_MAX` per batch, in
    /// this one and in the batches `write` commits next: deleting the ~100,000 a snapshot makes
    /// unneeded in one batch took 70-130 ms, and every write waiting behind it (so every commit)
    /// waited as long. Until they are all gone, `recover` hands back some of them too.
    pub fn record_snapshot(
        &mut self,
        meta: &SnapshotMetadata,
        log_first_index: u64,
    ) -> Result<bool, StorageError> {
        self.check_usable()?;
        assert!(
            log_first_index <= meta.index + 1,
            "compacting to {log_first_index} past the snapshot at {}",
            meta.index
        );
        if meta.index <= self.stored.snapshot_index {
            let path = self.snapshot_dir.join(snapshot_file::file_name(meta.index, meta.term));
            if Some(&path) != self.recorded_file().as_ref() {
                // Not yet durable if we crash now: `open` deletes it then.
                self.obsolete.push(path);
            }
            return Ok(false);
        }
        let mut plan = Plan { stored: self.stored, log: BTreeMap::new(), meta: BTreeMap::new() };
        plan.put_snapshot(meta);
        self.trim_to = self.trim_to.max(log_first_index);
        plan.trim(self.trim_to);
        self.commit(plan)?;
        Ok(true)
    }

    fn commit(&mut self, mut plan: Plan) -> Result<(), StorageError> {
        if plan.log.is_empty() && plan.meta.is_empty() {
            return Ok(());
        }
        if !plan.stored.formatted {
            plan.meta.insert(KEY_FORMAT_VERSION, FORMAT_VERSION.to_be_bytes().to_vec());
            plan.stored.formatted = true;
        }
        plan.stored.check();

        let mut batch = self.db.batch();
        for (index, value) in plan.log {
            match value {
                Some(bytes) => batch.insert(&self.log, index.to_be_bytes().to_vec(), bytes),
                None => batch.remove(&self.log, index.to_be_bytes().to_vec()),
            }
        }
        for (key, bytes) in plan.meta {
            batch.insert(&self.meta, key, bytes);
        }
        if let Err(e) = batch.commit() {
            self.poisoned = true;
            return Err(e.into());
        }
        let recorded = |s: &Stored| (s.snapshot_index, s.snapshot_term);
        if recorded(&plan.stored) != recorded(&self.stored) {
            self.obsolete.extend(self.recorded_file());
        }
        self.stored = plan.stored;
        self.dirty = true;
        Ok(())
    }

    /// Writes `first` as the first state of a member that never ran (a restored backup,
    /// `cairn_core::backup::restore`), durably: its snapshot (file and record), membership
    /// and hard state, as if received from a leader. Refuses storage that holds state already.
    pub fn initialize(&mut self, first: &Recovered) -> Result<(), StorageError> {
        if self.recover()?.is_some() {
            return Err(corrupt("the data dir already holds a member's state; restore into an empty one"));
        }
        self.persist(&Persist {
            conf_state: Some(first.conf_state.clone()),
            snapshot: first.snapshot.clone(),
            entries: first.entries.clone(),
            hard_state: Some(first.hard_state.clone()),
            must_sync: true,
            ..Persist::default()
        })?;
        self.sync()
    }

    /// Makes every `write` so far durable with one fsync of fjall's journal. Does nothing if
    /// nothing was written since the last sync. On error the storage is poisoned: never retry.
    pub fn sync(&mut self) -> Result<(), StorageError> {
        self.check_usable()?;
        if !self.dirty {
            return Ok(());
        }
        if let Err(e) = self.db.persist(PersistMode::SyncAll) {
            self.poisoned = true;
            return Err(e.into());
        }
        self.dirty = false;
        // The records that replaced these are durable now. A file left by a failure here is
        // deleted by the next `open`.
        if !self.obsolete.is_empty() {
            for path in self.obsolete.drain(..) {
                let _ = std::fs::remove_file(path);
            }
            let _ = snapshot_file::sync_dir(&self.snapshot_dir);
        }
        Ok(())
    }

    /// What the member recovers at boot: `None` for a directory nothing was ever written to,
    /// else the state to restart from (unsynced writes included, as a reader of the page cache
    /// sees them).
    ///
    /// Validates while reading: every value decodes, each entry sits under its own index, the
    /// log is contiguous with terms that never go down and starts at 1 or within the snapshot,
    /// the entry at the snapshot's index has the snapshot's term. Anything else is `Corrupt`.
    pub fn recover(&self) -> Result<Option<Recovered>, StorageError> {
        self.check_usable()?;
        let view = self.db.snapshot();
        if !self.stored.formatted {
            if !view.is_empty(&self.meta)? || !view.is_empty(&self.log)? {
                return Err(corrupt("state without a format version"));
            }
            return Ok(None);
        }
        let hard_state = decode_opt::<HardState>(view.get(&self.meta, KEY_HARD_STATE)?, "hard state")?;
        let conf_state = decode_opt::<ConfState>(view.get(&self.meta, KEY_CONF_STATE)?, "conf state")?;
        let record = decode_opt::<SnapshotMetadata>(view.get(&self.meta, KEY_SNAPSHOT)?, "snapshot")?;
        let snapshot = match record {
            None => None,
            Some(meta) => {
                if meta.index == 0 || meta.term == 0 {
                    return Err(corrupt(format!("snapshot at index {} term {}", meta.index, meta.term)));
                }
                let path = self.snapshot_dir.join(snapshot_file::file_name(meta.index, meta.term));
                let s = snapshot_file::read(&path).map_err(|e| match e {
                    snapshot_file::ReadError::Io(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        corrupt(format!("the recorded snapshot file {} is missing", path.display()))
                    }
                    snapshot_file::ReadError::Io(e) => StorageError::Io(e),
                    snapshot_file::ReadError::Damaged(what) => corrupt(what),
                })?;
                if s.get_metadata() != &meta {
                    return Err(corrupt(format!(
                        "snapshot file {} holds {:?}, recorded as {meta:?}",
                        path.display(),
                        s.get_metadata()
                    )));
                }
                Some(s)
            }
        };
        let mut entries: Vec<Entry> = Vec::new();
        for guard in view.iter(&self.log) {
            let (key, value) = guard.into_inner()?;
            let index = index_of(&key)?;
            let e =
                Entry::parse_from_bytes(&value).map_err(|err| corrupt(format!("entry {index}: {err}")))?;
            if e.index != index {
                return Err(corrupt(format!("entry {} stored under index {index}", e.index)));
            }
            if let Some(prev) = entries.last() {
                if index != prev.index + 1 {
                    return Err(corrupt(format!(
                        "log has a gap: entry {index} follows entry {}",
                        prev.index
                    )));
                }
                if e.term < prev.term {
                    return Err(corrupt(format!(
                        "entry {index} has term {}, below the term {} before it",
                        e.term, prev.term
                    )));
                }
            }
            entries.push(e);
        }
        let snapshot_index = snapshot.as_ref().map_or(0, |s| s.get_metadata().index);
        if let Some(first) = entries.first() {
            if first.index == 0 || first.index > snapshot_index + 1 {
                return Err(corrupt(format!(
                    "log starts at {} after a snapshot at {snapshot_index}",
                    first.index
                )));
            }
        }
        if let Some(s) = &snapshot {
            let covered = entries.iter().find(|e| e.index == snapshot_index);
            if let Some(e) = covered.filter(|e| e.term != s.get_metadata().term) {
                return Err(corrupt(format!(
                    "entry {snapshot_index} has term {}, the snapshot there term {}",
                    e.term,
                    s.get_metadata().term
                )));
            }
        }

        let read = Stored {
            log: entries.first().zip(entries.last()).map(|(f, l)| (f.index, l.index)),
            snapshot_index,
            snapshot_term: snapshot.as_ref().map_or(0, |s| s.get_metadata().term),
            formatted: true,
        };
        assert_eq!(read, self.stored, "what was read back differs from what was written");
        Ok(Some(Recovered {
            hard_state: hard_state.unwrap_or_default(),
            conf_state: conf_state.unwrap_or_default(),
            snapshot,
            entries,
        }))
    }

    fn check_usable(&self) -> Result<(), StorageError> {
        if self.poisoned {
            return Err(StorageError::Poisoned);
        }
        Ok(())
    }
}

/// One write's changes as the final value of each key it touches, `None` for a deletion:
/// fjall gives a batch one sequence number, so a key must not appear in it twice.
struct Plan {
    /// What will be stored once the batch commits.
    stored: Stored,
    log: BTreeMap<u64, Option<Vec<u8>>>,
    meta: BTreeMap<&'static [u8], Vec<u8>>,
}

impl Plan {
    fn is_empty(&self) -> bool {
        self.log.is_empty() && self.meta.is_empty()
    }

    /// Deletes up to `TRIM_ENTRIES_MAX` entries from the front of the log, none at or after
    /// `trim_to`.
    fn trim(&mut self, trim_to: u64) {
        let Some((first, last)) = self.stored.log else { return };
        if first >= trim_to {
            return;
        }
        let end = (trim_to - 1).min(last).min(first + TRIM_ENTRIES_MAX - 1);
        self.delete_entries(first, end);
        self.stored.log = (end < last).then_some((end + 1, last));
    }

    fn delete_entries(&mut self, first: u64, last: u64) {
        for index in first..=last {
            self.log.insert(index, None);
        }
    }

    /// Records the snapshot `meta` describes; its file must be durable already.
    fn put_snapshot(&mut self, meta: &SnapshotMetadata) {
        let index = meta.index;
        assert!(index >= 1 && meta.term >= 1, "snapshot at index {index}");
        assert!(
            index >= self.stored.snapshot_index,
            "snapshot at {index} older than the stored one at {}",
            self.stored.snapshot_index
        );
        self.meta.insert(KEY_SNAPSHOT, encode(meta));
        self.stored.snapshot_index = index;
        self.stored.snapshot_term = meta.term;
    }

    /// A snapshot from the leader replaces the whole log.
    fn leader_snapshot(&mut self, s: &Snapshot) {
        self.put_snapshot(s.get_metadata());
        if let Some((first, last)) = self.stored.log.take() {
            self.delete_entries(first, last);
        }
    }

    /// The first entry, at index i, replaces every stored entry at index >= i.
    fn append(&mut self, entries: &[Entry]) {
        for pair in entries.windows(2) {
            assert_eq!(pair[1].index, pair[0].index + 1, "entries to persist must be contiguous");
            assert!(pair[1].term >= pair[0].term, "entry terms must not go down");
        }
        let (from, to) = (entries[0].index, entries[entries.len() - 1].index);
        let end = self.stored.log.map_or(0, |(_, last)| last).max(self.stored.snapshot_index);
        assert!(from >= 1 && from <= end + 1, "entry {from} would leave a gap after {end}");
        self.stored.log = match self.stored.log {
            Some((first, last)) => {
                if from <= last {
                    self.delete_entries(from.max(first), last);
                }
                Some((first.min(from), to))
            }
            None => Some((from, to)),
        };
        for e in entries {
            self.log.insert(e.index, Some(encode(e)));
        }
    }
}

fn encode<M: protobuf::Message>(m: &M) -> Vec<u8> {
    m.write_to_bytes().expect("raft's messages have no required fields")
}

fn decode_opt<M: protobuf::Message>(
    bytes: Option<fjall::Slice>,
    what: &str,
) -> Result<Option<M>, StorageError> {
    bytes.map(|b| M::parse_from_bytes(&b).map_err(|e| corrupt(format!("{what}: {e}")))).transpose()
}

fn index_of(key: &[u8]) -> Result<u64, StorageError> {
    let bytes: [u8; 8] = key.try_into().map_err(|_| corrupt(format!("log key of {} bytes", key.len())))?;
    Ok(u64::from_be_bytes(bytes))
}
