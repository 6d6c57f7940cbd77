//! `Storage` against its contract: what is written comes back after a reopen, with the
//! semantics of the simulator's `SimDisk`, and damage is reported as `Corrupt`, never a panic.

use std::collections::BTreeMap;
use std::path::Path;

use cairn_core::eraftpb::{ConfState, Entry, HardState, Snapshot};
use cairn_core::kv::{PutRequest, RangeRequest};
use cairn_core::{
    Config, Core, DiskWriteKind, Output, Persist, Recovered, Request, RequestId, Response, ResponseBody,
    SnapshotMade,
};
use cairn_io_sim::disk::{same_state, SimDisk};
use cairn_io_tokio::storage::{
    Storage, StorageError, FORMAT_VERSION, KEY_FORMAT_VERSION, KEY_HARD_STATE, KEY_SNAPSHOT, LOG_KEYSPACE,
    META_KEYSPACE,
};
use protobuf::Message as _;

// ---- Building outputs by hand ----

fn entry(index: u64, term: u64) -> Entry {
    Entry { index, term, data: format!("entry {index} term {term}").into_bytes().into(), ..Entry::default() }
}

fn entries(indexes: std::ops::RangeInclusive<u64>, term: u64) -> Vec<Entry> {
    indexes.map(|i| entry(i, term)).collect()
}

fn snapshot(index: u64, term: u64, data: Vec<u8>) -> Snapshot {
    let mut s = Snapshot::default();
    s.set_data(data.into());
    s.mut_metadata().index = index;
    s.mut_metadata().term = term;
    s.mut_metadata().set_conf_state(ConfState::from((vec![1, 2, 3], vec![])));
    s
}

fn hard_state(term: u64, commit: u64) -> HardState {
    HardState { term, vote: 1, commit, ..HardState::default() }
}

fn append(entries: Vec<Entry>) -> DiskWriteKind {
    DiskWriteKind::Persist(Persist { entries, ..Persist::default() })
}

fn leader_snapshot(s: Snapshot, then: Vec<Entry>) -> Persist {
    Persist { snapshot: Some(s), entries: then, ..Persist::default() }
}

fn own_snapshot(s: Snapshot, log_first_index: u64) -> DiskWriteKind {
    DiskWriteKind::RecordSnapshot { snapshot: s, log_first_index }
}

/// Writes `w` as the member loop does: an own snapshot's file first (off the loop there), then
/// the write itself.
fn store(storage: &mut Storage, w: &DiskWriteKind) {
    if let DiskWriteKind::RecordSnapshot { snapshot, .. } = w {
        cairn_io_tokio::snapshot_file::write(storage.snapshot_dir(), snapshot).unwrap();
    }
    storage.write(w).unwrap();
}

/// The writes the pipeline would hand the disk for `out`: its persist, then the record of the
/// member's own snapshot (whose file it writes first).
fn writes_of(out: &mut Output) -> Vec<DiskWriteKind> {
    let mut writes: Vec<DiskWriteKind> = out.persist.take().map(DiskWriteKind::Persist).into_iter().collect();
    if let Some(SnapshotMade { snapshot, log_first_index }) = out.snapshot.take() {
        writes.push(DiskWriteKind::RecordSnapshot { snapshot, log_first_index });
    }
    writes
}

fn indexes(r: &Recovered) -> Vec<(u64, u64)> {
    r.entries.iter().map(|e| (e.index, e.term)).collect()
}

/// Writes and syncs `outs`, reopens the directory, and recovers.
fn write_reopen_recover(dir: &Path, writes: &[DiskWriteKind]) -> Recovered {
    let mut storage = Storage::open(dir).unwrap();
    for w in writes {
        store(&mut storage, w);
    }
    storage.sync().unwrap();
    drop(storage);
    Storage::open(dir).unwrap().recover().unwrap().expect("written to")
}

// ---- Fresh directories ----

#[test]
fn a_fresh_directory_recovers_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut storage = Storage::open(dir.path()).unwrap();
    assert!(storage.recover().unwrap().is_none());
    // Messages are not the storage's business: a persist without durable parts writes nothing.
    storage.persist(&Persist::default()).unwrap();
    storage.sync().unwrap();
    drop(storage);
    assert!(Storage::open(dir.path()).unwrap().recover().unwrap().is_none());
}

// ---- Semantics, by hand ----

#[test]
fn everything_written_comes_back_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let conf = ConfState::from((vec![1, 2, 3], vec![]));
    let persist = Persist {
        conf_state: Some(conf.clone()),
        entries: entries(1..=3, 1),
        hard_state: Some(hard_state(1, 2)),
        ..Persist::default()
    };
    let r = write_reopen_recover(dir.path(), &[DiskWriteKind::Persist(persist)]);
    assert_eq!(r.conf_state, conf);
    assert_eq!(r.hard_state, hard_state(1, 2));
    assert!(r.snapshot.is_none());
    assert_eq!(r.entries, entries(1..=3, 1));
}

#[test]
fn entries_at_an_index_replace_the_suffix_from_it() {
    let dir = tempfile::tempdir().unwrap();
    let r = write_reopen_recover(dir.path(), &[append(entries(1..=5, 1)), append(entries(3..=4, 2))]);
    assert_eq!(indexes(&r), vec![(1, 1), (2, 1), (3, 2), (4, 2)], "entry 5 went with the old suffix");

    // Appending right after the end keeps everything; overwriting at the very start drops all.
    let r = write_reopen_recover(dir.path(), &[append(entries(5..=6, 2))]);
    assert_eq!(indexes(&r), vec![(1, 1), (2, 1), (3, 2), (4, 2), (5, 2), (6, 2)]);
    let r = write_reopen_recover(dir.path(), &[append(entries(1..=1, 3))]);
    assert_eq!(indexes(&r), vec![(1, 3)]);
}

#[test]
fn an_own_snapshot_compacts_the_log_before_log_first_index() {
    let dir = tempfile::tempdir().unwrap();
    let s = snapshot(8, 1, b"state at 8".to_vec());
    let r = write_reopen_recover(dir.path(), &[append(entries(1..=10, 1)), own_snapshot(s.clone(), 6)]);
    assert_eq!(r.snapshot, Some(s), "the snapshot is stored");
    assert_eq!(indexes(&r), (6..=10).map(|i| (i, 1)).collect::<Vec<_>>(), "entries 6..=8 kept for catch-up");

    // A later snapshot that compacts past the end empties the log; appends continue after it.
    let s = snapshot(10, 1, b"state at 10".to_vec());
    let r = write_reopen_recover(dir.path(), &[own_snapshot(s.clone(), 11), append(entries(11..=11, 2))]);
    assert_eq!(r.snapshot, Some(s));
    assert_eq!(indexes(&r), vec![(11, 2)]);
}

#[test]
fn a_recorded_snapshot_deletes_the_log_before_it_a_chunk_per_batch() {
    use cairn_io_tokio::snapshot_file;
    use cairn_io_tokio::storage::TRIM_ENTRIES_MAX as CHUNK;
    let dir = tempfile::tempdir().unwrap();
    let last = 3 * CHUNK;
    // Not on a chunk's boundary, so that a chunk that overran it would show.
    let keep_from = 2 * CHUNK - 9;
    let reopen = |storage: Storage| {
        drop(storage);
        let storage = Storage::open(dir.path()).unwrap();
        let r = storage.recover().unwrap().expect("written to");
        (storage, r)
    };
    let mut storage = Storage::open(dir.path()).unwrap();
    storage.write(&append(entries(1..=last, 1))).unwrap();
    storage.sync().unwrap();
    // A snapshot at 2.5 chunks that lets everything before `keep_from` go.
    let s = snapshot(5 * CHUNK / 2, 1, b"state".to_vec());
    snapshot_file::write(storage.snapshot_dir(), &s).unwrap();
    assert!(storage.record_snapshot(s.get_metadata(), keep_from).unwrap());
    storage.sync().unwrap();
    let (mut storage, r) = reopen(storage);
    assert_eq!(r.snapshot, Some(s.clone()));
    assert_eq!(indexes(&r), (CHUNK + 1..=last).map(|i| (i, 1)).collect::<Vec<_>>(), "one chunk deleted");

    // Not durable: entries a reopen left behind stay until the next snapshot's record.
    storage.write(&append(entries(last + 1..=last + 1, 1))).unwrap();
    storage.sync().unwrap();
    let (mut storage, r) = reopen(storage);
    assert_eq!(r.entries.first().map(|e| e.index), Some(CHUNK + 1));
    let s = snapshot(last, 1, b"state 2".to_vec());
    snapshot_file::write(storage.snapshot_dir(), &s).unwrap();
    assert!(storage.record_snapshot(s.get_metadata(), keep_from).unwrap());
    // The next write deletes the rest, never an entry at or after `log_first_index`.
    storage.write(&append(entries(last + 2..=last + 2, 1))).unwrap();
    storage.write(&append(entries(last + 3..=last + 3, 1))).unwrap();
    storage.sync().unwrap();
    let (_, r) = reopen(storage);
    assert_eq!(r.snapshot, Some(s));
    assert_eq!(indexes(&r), (keep_from..=last + 3).map(|i| (i, 1)).collect::<Vec<_>>());
}

#[test]
fn a_leader_snapshot_replaces_the_whole_log() {
    let dir = tempfile::tempdir().unwrap();
    let s = snapshot(20, 2, b"leader's state at 20".to_vec());
    // The old log reaches past the snapshot's index: it goes too.
    let r = write_reopen_recover(
        dir.path(),
        &[append(entries(1..=25, 1)), DiskWriteKind::Persist(leader_snapshot(s.clone(), vec![]))],
    );
    assert_eq!(r.snapshot, Some(s));
    assert!(r.entries.is_empty());

    // A snapshot and the entries after it in one ready.
    let s = snapshot(30, 3, b"leader's state at 30".to_vec());
    let r = write_reopen_recover(
        dir.path(),
        &[DiskWriteKind::Persist(leader_snapshot(s.clone(), entries(31..=32, 3)))],
    );
    assert_eq!(r.snapshot, Some(s));
    assert_eq!(indexes(&r), vec![(31, 3), (32, 3)]);
}

#[test]
fn several_writes_become_durable_with_one_sync() {
    let dir = tempfile::tempdir().unwrap();
    let mut storage = Storage::open(dir.path()).unwrap();
    for i in 1..=10 {
        let persist = Persist {
            entries: vec![entry(i, 1)],
            hard_state: Some(hard_state(1, i - 1)),
            ..Persist::default()
        };
        storage.persist(&persist).unwrap();
        // Visible to recover before the sync, as the page cache is to a reader.
        assert_eq!(storage.recover().unwrap().unwrap().entries.len() as u64, i);
    }
    storage.sync().unwrap();
    drop(storage);
    let r = Storage::open(dir.path()).unwrap().recover().unwrap().unwrap();
    assert_eq!(r.entries, entries(1..=10, 1));
    assert_eq!(r.hard_state, hard_state(1, 9));
}

#[test]
#[should_panic(expected = "would leave a gap")]
fn writing_entries_after_a_gap_panics() {
    let dir = tempfile::tempdir().unwrap();
    let mut storage = Storage::open(dir.path()).unwrap();
    storage.write(&append(entries(1..=3, 1))).unwrap();
    let _ = storage.write(&append(entries(5..=6, 1)));
}

#[test]
#[should_panic(expected = "must be contiguous")]
fn writing_entries_out_of_order_panics() {
    let dir = tempfile::tempdir().unwrap();
    let mut storage = Storage::open(dir.path()).unwrap();
    let _ = storage.write(&append(vec![entry(1, 1), entry(3, 1)]));
}

// ---- The same state as the simulator's disk ----

/// A small deterministic generator (xorshift64*), so that no test depends on a crate for it.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// Writes a Raft member could produce: appends that never overwrite committed entries, terms
/// that never go down, own snapshots of committed state, leader snapshots past the commit.
struct Outputs {
    rng: Rng,
    /// The log as the generator wrote it: index to term.
    log: BTreeMap<u64, u64>,
    snapshot_index: u64,
    commit: u64,
    term: u64,
    number: u64,
    /// How many of each kind of write were generated: leader snapshots, overwrites of a
    /// suffix, own snapshots that dropped entries.
    leader_snapshots: u64,
    overwrites: u64,
    compactions: u64,
}

impl Outputs {
    fn new(seed: u64) -> Outputs {
        Outputs {
            rng: Rng(seed | 1),
            log: BTreeMap::new(),
            snapshot_index: 0,
            commit: 0,
            term: 1,
            number: 0,
            leader_snapshots: 0,
            overwrites: 0,
            compactions: 0,
        }
    }

    fn last(&self) -> u64 {
        self.log.keys().next_back().copied().unwrap_or(0).max(self.snapshot_index)
    }

    fn data(&mut self) -> Vec<u8> {
        // Now and then past fjall's journal compression threshold (4 KiB).
        let len = if self.rng.chance(10) { self.rng.range(5_000, 100_000) } else { self.rng.range(0, 64) };
        (0..len).map(|i| (i as u8).wrapping_mul(31) ^ (self.number as u8)).collect()
    }

    /// One ready's writes: its persist, then perhaps the record of an own snapshot.
    fn next(&mut self) -> Vec<DiskWriteKind> {
        self.number += 1;
        let mut writes = vec![];
        let mut persist = Persist { number: self.number, ..Persist::default() };
        if self.rng.chance(15) {
            let voters: Vec<u64> = (1..=self.rng.range(1, 5)).collect();
            persist.conf_state = Some(ConfState::from((voters, vec![])));
        }
        if self.rng.chance(8) {
            if self.rng.chance(50) {
                self.term += 1;
            }
            let index = self.rng.range(self.commit + 1, self.last() + 5);
            persist.snapshot = Some(snapshot(index, self.term, self.data()));
            self.log.clear();
            self.snapshot_index = index;
            self.commit = index;
            self.leader_snapshots += 1;
        }
        if self.rng.chance(60) {
            let from = self.rng.range(self.commit + 1, self.last() + 1);
            if from <= self.last() {
                self.overwrites += 1;
                self.term += 1;
            } else if self.rng.chance(10) {
                self.term += 1;
            }
            let to = from + self.rng.range(0, 4);
            self.log.split_off(&from);
            for index in from..=to {
                self.log.insert(index, self.term);
                persist.entries.push(entry(index, self.term));
            }
        }
        if self.rng.chance(50) {
            self.commit = self.rng.range(self.commit, self.last());
            persist.hard_state = Some(hard_state(self.term, self.commit));
        }
        if persist.conf_state.is_some()
            || persist.snapshot.is_some()
            || !persist.entries.is_empty()
            || persist.hard_state.is_some()
        {
            writes.push(DiskWriteKind::Persist(persist));
        }
        if self.commit > self.snapshot_index && self.rng.chance(15) {
            let index = self.rng.range(self.snapshot_index + 1, self.commit);
            let term = self.log[&index];
            let first = self.log.keys().next().copied().expect("the commit is in the log");
            let log_first_index = self.rng.range(first, index + 1);
            self.compactions += u64::from(log_first_index > first);
            self.log = self.log.split_off(&log_first_index);
            self.snapshot_index = index;
            writes.push(own_snapshot(snapshot(index, term, self.data()), log_first_index));
        }
        writes
    }
}

fn assert_same(storage: &Storage, sim: &mut SimDisk, context: &str) {
    let (expected, _) = sim.recover().expect("the simulator's journal is intact");
    let got = storage.recover().unwrap();
    match (&expected, &got) {
        (None, None) => {}
        (Some(e), Some(g)) => assert!(
            same_state(e, g),
            "{context}: storage recovered {:?} / snapshot {:?}, the simulator {:?} / snapshot {:?}",
            indexes(g),
            g.snapshot.as_ref().map(|s| s.get_metadata().index),
            indexes(e),
            e.snapshot.as_ref().map(|s| s.get_metadata().index),
        ),
        _ => panic!("{context}: storage recovered {}, the simulator {}", got.is_some(), expected.is_some()),
    }
}

#[test]
fn recovers_the_same_state_as_the_simulator_disk_for_generated_outputs() {
    for seed in 1..=8u64 {
        let dir = tempfile::tempdir().unwrap();
        let mut storage = Storage::open(dir.path()).unwrap();
        let mut sim = SimDisk::new();
        let mut outputs = Outputs::new(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        for step in 0..300 {
            for w in outputs.next() {
                store(&mut storage, &w);
                sim.write(&w);
            }
            if outputs.rng.chance(30) {
                storage.sync().unwrap();
                sim.sync();
            }
            assert_same(&storage, &mut sim, &format!("seed {seed} step {step}"));
            if outputs.rng.chance(5) {
                storage.sync().unwrap();
                sim.sync();
                drop(storage);
                storage = Storage::open(dir.path()).unwrap();
                assert_same(&storage, &mut sim, &format!("seed {seed} step {step}, reopened"));
            }
        }
        let o = &outputs;
        assert!(
            o.leader_snapshots >= 3 && o.overwrites >= 3 && o.compactions >= 3,
            "seed {seed} generated {} leader snapshots, {} overwrites, {} compactions",
            o.leader_snapshots,
            o.overwrites,
            o.compactions
        );
    }
}

// ---- Driving a real member ----

/// A single-member cluster on real storage. Every output is also written to a `SimDisk`, so
/// the two can be compared at any point.
struct Member {
    core: Core,
    storage: Storage,
    sim: SimDisk,
    next_id: RequestId,
    /// Own snapshots persisted since boot.
    snapshots: Vec<Snapshot>,
}

fn config(seed: u64) -> Config {
    let mut c = Config::new(1, vec![1], seed);
    // Snapshot and compact often, so a short run persists every kind of output.
    c.snapshot_entries = 10;
    c.snapshot_catch_up_entries = 3;
    c
}

impl Member {
    fn boot(dir: &Path, seed: u64, sim: SimDisk) -> Member {
        let storage = Storage::open(dir).unwrap();
        let recovered = storage.recover().unwrap();
        let core = Core::new(config(seed), recovered).unwrap();
        Member { core, storage, sim, next_id: 1, snapshots: vec![] }
    }

    /// Calls `advance` until there is nothing left to do (or `id` is answered), persisting each
    /// output before acknowledging it, as the real driver does.
    fn run(&mut self, id: Option<RequestId>) -> Option<Result<Response, cairn_core::Error>> {
        for _ in 0..100_000 {
            let mut out = self.core.advance().expect("no fatal error");
            if out.is_empty() {
                // Settled, unless waiting for an answer: then time passes until it comes.
                id?;
                let now_ms = self.core.poll_timeout();
                self.core.handle_timeout(now_ms);
                continue;
            }
            assert!(out.messages.is_empty(), "no peers");
            let persisted = out.persist.as_ref().map(|p| p.number);
            for w in writes_of(&mut out) {
                store(&mut self.storage, &w);
                self.sim.write(&w);
                if let DiskWriteKind::RecordSnapshot { snapshot, .. } = w {
                    self.snapshots.push(snapshot);
                }
            }
            self.storage.sync().unwrap();
            self.sim.sync();
            assert_same(&self.storage, &mut self.sim, "after an output of a member");
            if let Some(number) = persisted {
                self.core.on_persisted(number);
            }
            if let Some((_, r)) = out.responses.into_iter().find(|(rid, _)| Some(*rid) == id) {
                return Some(r);
            }
        }
        panic!("the member did not settle");
    }

    fn request(&mut self, request: Request) -> Response {
        let id = self.next_id;
        self.next_id += 1;
        self.core.submit(id, request);
        self.run(Some(id)).unwrap().unwrap()
    }

    fn put(&mut self, key: &str, value: &str) {
        self.request(Request::Put(PutRequest {
            key: key.to_owned().into(),
            value: value.to_owned().into(),
            ..Default::default()
        }));
    }

    /// A serializable read: from this member's own applied state, no Raft round.
    fn get(&mut self, key: &str) -> Option<String> {
        let r = self.request(Request::Range(RangeRequest {
            key: key.to_owned().into(),
            serializable: true,
            ..Default::default()
        }));
        match r.body {
            ResponseBody::Range(r) => r.kvs.first().map(|kv| String::from_utf8(kv.value.to_vec()).unwrap()),
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn a_member_restarts_from_its_storage_with_every_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut member = Member::boot(dir.path(), 1, SimDisk::new());
    member.core.campaign();
    member.run(None);
    assert!(member.core.is_leader());
    for i in 0..35 {
        member.put(&format!("key{i}"), &format!("value{i}"));
    }
    member.put("key0", "overwritten");
    assert!(!member.snapshots.is_empty(), "the member snapshotted and compacted its log");
    let applied = member.core.applied_index();
    let sim = member.sim.clone();
    drop(member);

    let recovered = Storage::open(dir.path()).unwrap().recover().unwrap().expect("written to");
    let snap_index = recovered.snapshot.as_ref().expect("a snapshot was persisted").get_metadata().index;
    assert!(recovered.entries.first().unwrap().index > 1, "compaction dropped the log's head");
    assert!(recovered.entries.first().unwrap().index <= snap_index + 1);
    assert_eq!(recovered.entries.last().unwrap().index, applied);

    // A new boot, with a new seed, that never campaigns: it reads what it recovered.
    let mut member = Member::boot(dir.path(), 2, sim);
    member.run(None);
    assert_eq!(member.core.applied_index(), applied, "committed entries were replayed");
    assert_eq!(member.get("key0").as_deref(), Some("overwritten"));
    for i in 1..35 {
        assert_eq!(member.get(&format!("key{i}")), Some(format!("value{i}")), "key{i}");
    }
    assert_eq!(member.get("missing"), None);

    // And it carries on: a write after the restart survives the next one too.
    member.core.campaign();
    member.put("after", "restart");
    let sim = member.sim.clone();
    drop(member);
    let mut member = Member::boot(dir.path(), 3, sim);
    member.run(None);
    assert_eq!(member.get("after").as_deref(), Some("restart"));
}

#[test]
fn a_member_boots_from_a_snapshot_received_from_a_leader() {
    let leader_dir = tempfile::tempdir().unwrap();
    let mut leader = Member::boot(leader_dir.path(), 1, SimDisk::new());
    leader.core.campaign();
    // It campaigns once its bootstrap entries are persisted and applied.
    leader.run(None);
    for i in 0..12 {
        leader.put(&format!("key{i}"), &format!("value{i}"));
    }
    let snap = leader.snapshots.last().expect("the leader snapshotted").clone();

    // A follower that was sent that snapshot: its old log is replaced.
    let dir = tempfile::tempdir().unwrap();
    let index = snap.get_metadata().index;
    let mut persist = leader_snapshot(snap.clone(), vec![]);
    persist.conf_state = Some(snap.get_metadata().get_conf_state().clone());
    persist.hard_state = Some(hard_state(snap.get_metadata().term, index));
    let mut sim = SimDisk::new();
    let mut storage = Storage::open(dir.path()).unwrap();
    for w in [append(entries(1..=2, 1)), DiskWriteKind::Persist(persist)] {
        store(&mut storage, &w);
        sim.write(&w);
    }
    storage.sync().unwrap();
    sim.sync();
    drop(storage);

    let mut follower = Member::boot(dir.path(), 5, sim);
    follower.run(None);
    assert_eq!(follower.core.applied_index(), index);
    // Entry 1 is the member's bootstrap entry (itself, the only voter), entry 2 the leader's
    // empty entry of its term, then one entry per put: the snapshot holds the first
    // `index - 2` keys, and none after them.
    for i in 0..12 {
        let expected = (i + 2 < index).then(|| format!("value{i}"));
        assert_eq!(follower.get(&format!("key{i}")), expected, "key{i}, snapshot at {index}");
    }
}

// ---- Damage ----

/// Changes the stored state behind `Storage`'s back, through fjall.
fn tamper(dir: &Path, f: impl FnOnce(&fjall::Keyspace, &fjall::Keyspace)) {
    let db = fjall::Database::builder(dir).open().unwrap();
    let log = db.keyspace(LOG_KEYSPACE, fjall::KeyspaceCreateOptions::default).unwrap();
    let meta = db.keyspace(META_KEYSPACE, fjall::KeyspaceCreateOptions::default).unwrap();
    f(&log, &meta);
    db.persist(fjall::PersistMode::SyncAll).unwrap();
}

/// A log of entries 1..=5 and a snapshot at 3, tampered with, then opened and recovered.
fn recover_tampered(
    f: impl FnOnce(&fjall::Keyspace, &fjall::Keyspace),
) -> Result<Option<Recovered>, StorageError> {
    let dir = tempfile::tempdir().unwrap();
    write_reopen_recover(
        dir.path(),
        &[append(entries(1..=5, 1)), own_snapshot(snapshot(3, 1, b"state".to_vec()), 1)],
    );
    tamper(dir.path(), f);
    Storage::open(dir.path())?.recover()
}

fn key(index: u64) -> Vec<u8> {
    index.to_be_bytes().to_vec()
}

fn assert_corrupt(result: Result<Option<Recovered>, StorageError>, expected: &str) {
    match result {
        Err(StorageError::Corrupt { what }) => {
            assert!(what.contains(expected), "{what:?} lacks {expected:?}")
        }
        other => panic!("expected Corrupt ({expected}), got {other:?}"),
    }
}

#[test]
fn an_untampered_log_recovers() {
    let r = recover_tampered(|_, _| {}).unwrap().unwrap();
    assert_eq!(indexes(&r), (1..=5).map(|i| (i, 1)).collect::<Vec<_>>());
}

#[test]
fn a_garbage_entry_is_corrupt() {
    assert_corrupt(recover_tampered(|log, _| log.insert(key(4), vec![0xff; 7]).unwrap()), "entry 4");
}

#[test]
fn an_entry_under_another_index_is_corrupt() {
    let bytes = entry(2, 1).write_to_bytes().unwrap();
    assert_corrupt(recover_tampered(|log, _| log.insert(key(4), bytes).unwrap()), "stored under index 4");
}

#[test]
fn a_missing_middle_entry_is_corrupt() {
    assert_corrupt(recover_tampered(|log, _| log.remove(key(3)).unwrap()), "gap");
}

#[test]
fn a_log_starting_past_the_snapshot_is_corrupt() {
    assert_corrupt(
        recover_tampered(|log, _| {
            for i in 1..=4 {
                log.remove(key(i)).unwrap();
            }
        }),
        "log starts at 5",
    );
}

#[test]
fn terms_that_go_down_are_corrupt() {
    let bytes = entry(5, 0).write_to_bytes().unwrap();
    assert_corrupt(recover_tampered(|log, _| log.insert(key(5), bytes).unwrap()), "below the term");
}

#[test]
fn an_entry_disagreeing_with_the_snapshot_is_corrupt() {
    // Entries 1..=3 rewritten in a term below the snapshot's: the terms still never go down.
    let rewritten: Vec<Vec<u8>> = (1..=3).map(|i| entry(i, 0).write_to_bytes().unwrap()).collect();
    assert_corrupt(
        recover_tampered(|log, _| {
            for (i, bytes) in (1..=3).zip(rewritten) {
                log.insert(key(i), bytes).unwrap();
            }
        }),
        "the snapshot there term 1",
    );
}

#[test]
fn a_log_key_of_the_wrong_length_is_corrupt() {
    assert_corrupt(recover_tampered(|log, _| log.insert("abc", "x").unwrap()), "log key of 3 bytes");
}

#[test]
fn a_garbage_hard_state_is_corrupt() {
    assert_corrupt(
        recover_tampered(|_, meta| meta.insert(KEY_HARD_STATE, vec![0xff; 5]).unwrap()),
        "hard state",
    );
}

#[test]
fn a_garbage_snapshot_is_corrupt() {
    assert_corrupt(recover_tampered(|_, meta| meta.insert(KEY_SNAPSHOT, vec![0xff; 5]).unwrap()), "snapshot");
}

#[test]
fn state_without_a_format_version_is_corrupt() {
    assert_corrupt(recover_tampered(|_, meta| meta.remove(KEY_FORMAT_VERSION).unwrap()), "format version");
}

#[test]
fn a_newer_format_version_is_refused() {
    let newer = (FORMAT_VERSION + 1).to_be_bytes().to_vec();
    match recover_tampered(|_, meta| meta.insert(KEY_FORMAT_VERSION, newer).unwrap()) {
        Err(StorageError::UnsupportedVersion { found }) => assert_eq!(found, FORMAT_VERSION + 1),
        other => panic!("expected UnsupportedVersion, got {other:?}"),
    }
}
