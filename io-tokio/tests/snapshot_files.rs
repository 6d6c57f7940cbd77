//! Snapshots in their own files: a crash at any point of persisting one (file written, not yet
//! recorded; record written; old file not yet deleted) recovers a consistent state with every
//! acknowledged write, and a torn or damaged snapshot file is never taken for a snapshot.

use std::fs;
use std::path::{Path, PathBuf};

use cairn_core::eraftpb::{ConfState, Entry, Snapshot};
use cairn_core::kv::{PutRequest, RangeRequest};
use cairn_core::{Config, Core, Persist, Request, RequestId, Response, ResponseBody, SnapshotMade};
use cairn_io_tokio::snapshot_file;
use cairn_io_tokio::storage::{Storage, StorageError};

fn entry(index: u64, term: u64) -> Entry {
    Entry { index, term, data: format!("entry {index}").into_bytes().into(), ..Entry::default() }
}

fn append(from: u64, to: u64) -> Persist {
    let entries = (from..=to).map(|i| entry(i, 1)).collect();
    Persist { entries, ..Persist::default() }
}

fn snapshot(index: u64, term: u64, data: &[u8]) -> Snapshot {
    let mut s = Snapshot::default();
    s.set_data(data.to_vec().into());
    s.mut_metadata().index = index;
    s.mut_metadata().term = term;
    s.mut_metadata().set_conf_state(ConfState::from((vec![1], vec![])));
    s
}

fn snapshot_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir.join("snapshots"))
        .unwrap()
        .map(|d| d.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

fn file_of(dir: &Path, index: u64, term: u64) -> PathBuf {
    dir.join("snapshots").join(snapshot_file::file_name(index, term))
}

/// Entries 1..=10, a snapshot at 4 recorded the way the member loop records one (file, then
/// record and compaction to 3, then sync).
fn log_and_snapshot(dir: &Path) -> Storage {
    let mut storage = Storage::open(dir).unwrap();
    storage.persist(&append(1, 10)).unwrap();
    let s = snapshot(4, 1, b"state at 4");
    snapshot_file::write(storage.snapshot_dir(), &s).unwrap();
    assert!(storage.record_snapshot(s.get_metadata(), 3).unwrap());
    storage.sync().unwrap();
    storage
}

fn recover(dir: &Path) -> Result<Option<cairn_core::Recovered>, StorageError> {
    Storage::open(dir)?.recover()
}

fn assert_corrupt(result: Result<Option<cairn_core::Recovered>, StorageError>, expected: &str) {
    match result {
        Err(StorageError::Corrupt { what }) => {
            assert!(what.contains(expected), "{what:?} lacks {expected:?}")
        }
        other => panic!("expected Corrupt ({expected}), got {:?}", other.map(|r| r.map(|r| r.entries.len()))),
    }
}

// ---- The file itself ----

#[test]
fn a_snapshot_file_reads_back_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let s = snapshot(7, 2, &[0xab; 100_000]);
    let path = snapshot_file::write(dir.path(), &s).unwrap();
    assert_eq!(path, dir.path().join(snapshot_file::file_name(7, 2)));
    assert_eq!(snapshot_file::read(&path).unwrap(), s);
    let names: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|d| d.unwrap().file_name()).collect();
    assert_eq!(names.len(), 1, "no temporary file left: {names:?}");
}

#[test]
fn a_torn_snapshot_file_is_never_read_as_a_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let path = snapshot_file::write(dir.path(), &snapshot(7, 2, &[0xab; 1000])).unwrap();
    let whole = fs::read(&path).unwrap();
    for len in [0, 5, 8, 16, 30, 100, whole.len() / 2, whole.len() - 5, whole.len() - 1] {
        fs::write(&path, &whole[..len]).unwrap();
        let err = snapshot_file::read(&path).expect_err("a torn file");
        assert!(matches!(err, snapshot_file::ReadError::Damaged(_)), "torn at {len}: {err}");
    }
    // Torn and then extended with zeroes, as a file system may leave it after a crash.
    let mut zeroed = whole[..whole.len() / 2].to_vec();
    zeroed.resize(whole.len(), 0);
    fs::write(&path, &zeroed).unwrap();
    assert!(snapshot_file::read(&path).unwrap_err().to_string().contains("checksum"));
}

#[test]
fn a_flipped_bit_anywhere_in_a_snapshot_file_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let path = snapshot_file::write(dir.path(), &snapshot(7, 2, b"some state")).unwrap();
    let whole = fs::read(&path).unwrap();
    for at in 0..whole.len() {
        let mut damaged = whole.clone();
        damaged[at] ^= 0x10;
        fs::write(&path, &damaged).unwrap();
        assert!(snapshot_file::read(&path).is_err(), "a flipped bit at byte {at} went unnoticed");
    }
}

// ---- Crashes while persisting a snapshot ----

#[test]
fn a_crash_after_the_file_before_its_record_recovers_the_previous_snapshot_and_the_whole_log() {
    let dir = tempfile::tempdir().unwrap();
    let storage = log_and_snapshot(dir.path());
    // The next snapshot's file is durable, but the member stops before recording it.
    snapshot_file::write(storage.snapshot_dir(), &snapshot(9, 1, b"state at 9")).unwrap();
    drop(storage);

    let r = recover(dir.path()).unwrap().unwrap();
    assert_eq!(r.snapshot.unwrap(), snapshot(4, 1, b"state at 4"));
    let indexes: Vec<u64> = r.entries.iter().map(|e| e.index).collect();
    assert_eq!(indexes, (3..=10).collect::<Vec<_>>(), "the log keeps what the unrecorded snapshot covers");
    assert_eq!(snapshot_files(dir.path()), [snapshot_file::file_name(4, 1)], "the stray file is gone");
}

#[test]
fn a_crash_while_writing_the_file_leaves_a_temporary_file_that_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    drop(log_and_snapshot(dir.path()));
    let temp = dir.path().join("snapshots").join(format!("{}.0.tmp", snapshot_file::file_name(9, 1)));
    fs::write(&temp, b"CAIRNSNP half a snap").unwrap();
    // And a torn file under a final name that was never recorded (a rename without the data
    // reaching the disk, on a file system that allows it).
    fs::write(file_of(dir.path(), 12, 1), b"CAIRNSNP torn").unwrap();

    let r = recover(dir.path()).unwrap().unwrap();
    assert_eq!(r.snapshot.unwrap().get_metadata().index, 4);
    assert_eq!(r.entries.last().unwrap().index, 10);
    assert_eq!(snapshot_files(dir.path()), [snapshot_file::file_name(4, 1)]);
}

#[test]
fn a_recorded_snapshot_replaces_the_old_file_once_synced() {
    let dir = tempfile::tempdir().unwrap();
    let mut storage = log_and_snapshot(dir.path());
    let s = snapshot(9, 1, b"state at 9");
    snapshot_file::write(storage.snapshot_dir(), &s).unwrap();
    assert!(storage.record_snapshot(s.get_metadata(), 8).unwrap());
    // Recorded but not synced: the old file must still be there for a crash now.
    assert_eq!(snapshot_files(dir.path()).len(), 2);
    storage.sync().unwrap();
    assert_eq!(snapshot_files(dir.path()), [snapshot_file::file_name(9, 1)]);
    drop(storage);

    let r = recover(dir.path()).unwrap().unwrap();
    assert_eq!(r.snapshot.unwrap(), s);
    assert_eq!(r.entries.iter().map(|e| e.index).collect::<Vec<_>>(), vec![8, 9, 10]);
}

#[test]
fn a_crash_after_the_record_before_deleting_the_old_file_deletes_it_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let storage = log_and_snapshot(dir.path());
    // The old file survived (a crash between the sync and the deletion).
    fs::copy(file_of(dir.path(), 4, 1), file_of(dir.path(), 2, 1)).unwrap();
    drop(storage);
    assert_eq!(recover(dir.path()).unwrap().unwrap().snapshot.unwrap().get_metadata().index, 4);
    assert_eq!(snapshot_files(dir.path()), [snapshot_file::file_name(4, 1)]);
}

#[test]
fn an_own_snapshot_older_than_a_leader_snapshot_recorded_meanwhile_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let mut storage = log_and_snapshot(dir.path());
    let own = snapshot(8, 1, b"own state at 8");
    snapshot_file::write(storage.snapshot_dir(), &own).unwrap();
    // While it was being written, a leader's snapshot at 20 replaced the log.
    let leader = snapshot(20, 2, b"leader state at 20");
    storage.persist(&Persist { snapshot: Some(leader.clone()), ..Persist::default() }).unwrap();
    assert!(!storage.record_snapshot(own.get_metadata(), 5).unwrap(), "stale: not recorded");
    storage.sync().unwrap();
    assert_eq!(snapshot_files(dir.path()), [snapshot_file::file_name(20, 2)]);
    drop(storage);
    let r = recover(dir.path()).unwrap().unwrap();
    assert_eq!(r.snapshot.unwrap(), leader);
    assert!(r.entries.is_empty());
}

// ---- Damage to the recorded snapshot ----

#[test]
fn a_torn_recorded_snapshot_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    drop(log_and_snapshot(dir.path()));
    let path = file_of(dir.path(), 4, 1);
    let whole = fs::read(&path).unwrap();
    fs::write(&path, &whole[..whole.len() - 3]).unwrap();
    assert_corrupt(recover(dir.path()), "bytes of data");
}

#[test]
fn a_damaged_recorded_snapshot_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    drop(log_and_snapshot(dir.path()));
    let path = file_of(dir.path(), 4, 1);
    let mut whole = fs::read(&path).unwrap();
    let at = whole.len() - 6;
    whole[at] ^= 1;
    fs::write(&path, &whole).unwrap();
    assert_corrupt(recover(dir.path()), "checksum");
}

#[test]
fn a_missing_recorded_snapshot_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    drop(log_and_snapshot(dir.path()));
    fs::remove_file(file_of(dir.path(), 4, 1)).unwrap();
    assert_corrupt(recover(dir.path()), "missing");
}

#[test]
fn a_recorded_snapshot_file_holding_another_snapshot_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    drop(log_and_snapshot(dir.path()));
    let other = snapshot_file::write(&dir.path().join("snapshots"), &snapshot(4, 3, b"other")).unwrap();
    fs::rename(other, file_of(dir.path(), 4, 1)).unwrap();
    assert_corrupt(recover(dir.path()), "recorded as");
}

// ---- A member whose snapshots are written off its loop ----

/// A single member driven as io-tokio's loop drives it: its own snapshots are taken out of the
/// output and persisted apart, the file first and the record later, or never (a crash).
struct Member {
    core: Core,
    storage: Storage,
    next_id: RequestId,
    /// Own snapshots whose files are written but not recorded yet.
    unrecorded: Vec<SnapshotMade>,
}

impl Member {
    fn boot(dir: &Path, seed: u64) -> Member {
        let storage = Storage::open(dir).unwrap();
        let recovered = storage.recover().unwrap();
        let mut config = Config::new(1, vec![1], seed);
        config.snapshot_entries = 10;
        config.snapshot_catch_up_entries = 3;
        let core = Core::new(config, recovered).unwrap();
        Member { core, storage, next_id: 1, unrecorded: vec![] }
    }

    fn run(&mut self, id: Option<RequestId>) -> Option<Result<Response, cairn_core::Error>> {
        for _ in 0..100_000 {
            let mut out = self.core.advance().expect("no fatal error");
            if out.is_empty() {
                id?;
                let now_ms = self.core.poll_timeout();
                self.core.handle_timeout(now_ms);
                continue;
            }
            if let Some(made) = out.snapshot.take() {
                snapshot_file::write(self.storage.snapshot_dir(), &made.snapshot).unwrap();
                self.unrecorded.push(made);
            }
            let persisted = out.persist.as_ref().map(|p| p.number);
            if let Some(p) = out.persist.take() {
                self.storage.persist(&p).unwrap();
            }
            self.storage.sync().unwrap();
            if let Some(number) = persisted {
                self.core.on_persisted(number);
            }
            if let Some((_, r)) = out.responses.into_iter().find(|(rid, _)| Some(*rid) == id) {
                return Some(r);
            }
        }
        panic!("the member did not settle");
    }

    /// Records every snapshot written so far, as the loop does when their writes end.
    fn record(&mut self) {
        for made in self.unrecorded.drain(..) {
            self.storage.record_snapshot(made.snapshot.get_metadata(), made.log_first_index).unwrap();
        }
        self.storage.sync().unwrap();
    }

    fn request(&mut self, request: Request) -> Response {
        let id = self.next_id;
        self.next_id += 1;
        self.core.submit(id, request);
        self.run(Some(id)).unwrap().unwrap()
    }

    fn put(&mut self, key: &str, value: &str) {
        let (key, value) = (key.to_owned().into(), value.to_owned().into());
        self.request(Request::Put(PutRequest { key, value, ..Default::default() }));
    }

    fn get(&mut self, key: &str) -> Option<String> {
        let key = key.to_owned().into();
        match self
            .request(Request::Range(RangeRequest { key, serializable: true, ..Default::default() }))
            .body
        {
            ResponseBody::Range(r) => r.kvs.first().map(|kv| String::from_utf8(kv.value.to_vec()).unwrap()),
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// Puts keys 0..n (each acknowledged), recording snapshots after every `record_every` puts but
/// never the ones written after the last of those: then a crash, a reboot, and every key read.
fn crash_with_unrecorded_snapshots(n: usize, record_every: usize) {
    let dir = tempfile::tempdir().unwrap();
    let mut member = Member::boot(dir.path(), 1);
    member.core.campaign();
    member.run(None);
    for i in 0..n {
        member.put(&format!("key{i}"), &format!("value{i}"));
        if (i + 1) % record_every == 0 {
            member.record();
        }
    }
    assert!(!member.unrecorded.is_empty(), "the crash leaves a snapshot unrecorded");
    let applied = member.core.applied_index();
    drop(member);

    let recovered = recover(dir.path()).unwrap().unwrap();
    assert_eq!(recovered.entries.last().unwrap().index, applied);
    let mut member = Member::boot(dir.path(), 2);
    member.run(None);
    assert_eq!(member.core.applied_index(), applied, "committed entries were replayed");
    for i in 0..n {
        assert_eq!(member.get(&format!("key{i}")), Some(format!("value{i}")), "key{i}");
    }
    // And it snapshots and records again from there.
    member.core.campaign();
    for i in 0..25 {
        member.put(&format!("after{i}"), "x");
    }
    member.record();
    drop(member);
    let mut member = Member::boot(dir.path(), 3);
    member.run(None);
    assert_eq!(member.get("after24").as_deref(), Some("x"));
    assert_eq!(member.get("key0").as_deref(), Some("value0"));
}

#[test]
fn a_crash_with_no_snapshot_ever_recorded_loses_no_acknowledged_write() {
    crash_with_unrecorded_snapshots(35, usize::MAX);
}

#[test]
fn a_crash_with_the_latest_snapshots_unrecorded_loses_no_acknowledged_write() {
    crash_with_unrecorded_snapshots(55, 20);
}
