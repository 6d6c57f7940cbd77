//! `SimDisk`: what survives a crash, what recovery tolerates (a torn tail) and what it refuses
//! (corruption), checked against the core's reference disk and against a real `Core`.

use std::collections::BTreeMap;

use cairn_core::eraftpb::{ConfState, Entry, HardState, Snapshot};
use cairn_core::kv::{PutRequest, RangeRequest};
use cairn_core::{
    Config, Core, DiskWriteKind, Error, Persist, Recovered, Request, RequestId, Response, ResponseBody,
};
use cairn_core::{SnapshotMade, StateRole};
use cairn_io_sim::disk::{same_state, DiskError, SimDisk};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

// ---------------------------------------------------------------------------------------------
// The reference: the core's test-support disk (core/tests/support/mod.rs, `Disk::write`),
// copied, and outputs cut into the pieces a crash may keep a prefix of.

#[derive(Clone, Debug, Default)]
struct RefDisk {
    /// Whether anything was ever written: a disk with nothing on it boots a new member.
    written: bool,
    hard_state: HardState,
    conf_state: ConfState,
    snapshot: Option<Snapshot>,
    entries: Vec<Entry>,
}

impl RefDisk {
    fn write(&mut self, w: &DiskWriteKind) {
        match w {
            DiskWriteKind::Persist(p) => {
                if let Some(cs) = &p.conf_state {
                    self.written = true;
                    self.conf_state = cs.clone();
                }
                if let Some(s) = &p.snapshot {
                    self.written = true;
                    self.snapshot = Some(s.clone());
                    self.entries.clear();
                }
                if let Some(first) = p.entries.first() {
                    self.written = true;
                    self.entries.retain(|e| e.index < first.index);
                    self.entries.extend(p.entries.iter().cloned());
                }
                if let Some(hs) = &p.hard_state {
                    self.written = true;
                    self.hard_state = hs.clone();
                }
            }
            DiskWriteKind::RecordSnapshot { snapshot, log_first_index } => {
                self.written = true;
                self.snapshot = Some(snapshot.clone());
                self.entries.retain(|e| e.index >= *log_first_index);
            }
        }
    }

    fn recovered(&self) -> Option<Recovered> {
        self.written.then(|| Recovered {
            hard_state: self.hard_state.clone(),
            conf_state: self.conf_state.clone(),
            snapshot: self.snapshot.clone(),
            entries: self.entries.clone(),
        })
    }

    fn matches(&self, got: &Option<Recovered>) -> bool {
        match (self.recovered(), got) {
            (None, None) => true,
            (Some(want), Some(got)) => same_state(&want, got),
            _ => false,
        }
    }
}

/// `w` as the sequence of one-piece writes a crash can keep a prefix of: conf state; leader
/// snapshot, each entry, hard state; or the own snapshot's record.
fn pieces(w: &DiskWriteKind) -> Vec<DiskWriteKind> {
    let persist = |f: &dyn Fn(&mut Persist)| {
        let mut p = Persist::default();
        f(&mut p);
        DiskWriteKind::Persist(p)
    };
    let mut v = vec![];
    match w {
        DiskWriteKind::Persist(p) => {
            if let Some(cs) = &p.conf_state {
                v.push(persist(&|q| q.conf_state = Some(cs.clone())));
            }
            if let Some(s) = &p.snapshot {
                v.push(persist(&|q| q.snapshot = Some(s.clone())));
            }
            for e in &p.entries {
                v.push(persist(&|q| q.entries = vec![e.clone()]));
            }
            if let Some(hs) = &p.hard_state {
                v.push(persist(&|q| q.hard_state = Some(hs.clone())));
            }
        }
        DiskWriteKind::RecordSnapshot { snapshot, log_first_index } => {
            v.push(DiskWriteKind::RecordSnapshot {
                snapshot: snapshot.clone(),
                log_first_index: *log_first_index,
            })
        }
    }
    v
}

// ---------------------------------------------------------------------------------------------
// Building outputs by hand.

fn entry(index: u64, term: u64, data: &[u8]) -> Entry {
    Entry { index, term, data: data.to_vec().into(), ..Entry::default() }
}

fn hard_state(term: u64, vote: u64, commit: u64) -> HardState {
    HardState { term, vote, commit, ..HardState::default() }
}

fn conf_state(voters: &[u64]) -> ConfState {
    ConfState::from((voters.to_vec(), vec![]))
}

fn snapshot(index: u64, term: u64, data: &[u8]) -> Snapshot {
    let mut s = Snapshot { data: data.to_vec().into(), ..Snapshot::default() };
    let meta = s.mut_metadata();
    meta.index = index;
    meta.term = term;
    meta.set_conf_state(conf_state(&[1, 2, 3]));
    s
}

/// What one output persists, as plain values a proptest can generate and shrink.
#[derive(Clone, Debug, Default)]
struct Spec {
    conf: Option<Vec<u64>>,
    leader_snapshot: Option<(u64, u64, Vec<u8>)>,
    /// First index, count, term, data.
    entries: Option<(u64, u64, u64, Vec<u8>)>,
    hard_state: Option<(u64, u64, u64)>,
    /// Snapshot index, log first index.
    own_snapshot: Option<(u64, u64)>,
}

impl Spec {
    /// The writes a driver hands the disk for this: the persist, then the own snapshot's record.
    fn writes(&self) -> Vec<DiskWriteKind> {
        let mut writes = vec![];
        let any = self.conf.is_some()
            || self.leader_snapshot.is_some()
            || self.entries.is_some()
            || self.hard_state.is_some();
        if any {
            writes.push(DiskWriteKind::Persist(Persist {
                number: 1,
                conf_state: self.conf.as_deref().map(conf_state),
                snapshot: self.leader_snapshot.as_ref().map(|(i, t, d)| snapshot(*i, *t, d)),
                entries: self
                    .entries
                    .as_ref()
                    .map(|(first, n, t, d)| (*first..first + n).map(|i| entry(i, *t, d)).collect())
                    .unwrap_or_default(),
                hard_state: self.hard_state.map(|(t, v, c)| hard_state(t, v, c)),
                messages: vec![],
                must_sync: true,
            }));
        }
        if let Some((index, log_first_index)) = self.own_snapshot {
            writes.push(DiskWriteKind::RecordSnapshot {
                snapshot: snapshot(index, 1, b"state"),
                log_first_index,
            });
        }
        writes
    }
}

/// Hands every write of `spec` to `disk`.
fn write_spec(disk: &mut SimDisk, spec: &Spec) {
    for w in spec.writes() {
        disk.write(&w);
    }
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        prop::option::weighted(0.2, prop::collection::vec(1u64..6, 1..4)),
        prop::option::weighted(0.1, (0u64..40, 1u64..5, prop::collection::vec(any::<u8>(), 0..24))),
        prop::option::weighted(0.7, (1u64..40, 1u64..6, 1u64..5, prop::collection::vec(any::<u8>(), 0..24))),
        prop::option::weighted(0.5, (1u64..5, 0u64..4, 0u64..40)),
        prop::option::weighted(0.1, (1u64..40, 1u64..40)),
    )
        .prop_map(|(conf, leader_snapshot, entries, hard_state, own_snapshot)| Spec {
            conf,
            leader_snapshot,
            entries,
            hard_state,
            own_snapshot,
        })
}

#[derive(Clone, Debug)]
enum Op {
    Write(Spec),
    Sync,
    /// Power loss with this crash seed, then recovery.
    Crash(u64),
    /// A restart without a crash: recovery reads the volatile records too.
    Restart,
    Compact,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => spec().prop_map(Op::Write),
        2 => Just(Op::Sync),
        2 => any::<u64>().prop_map(Op::Crash),
        1 => Just(Op::Restart),
        1 => Just(Op::Compact),
    ]
}

/// A journal of `outputs`, all synced, with the byte offset where each record starts.
fn journal(outputs: &[Spec]) -> (Vec<u8>, Vec<usize>) {
    let mut disk = SimDisk::new();
    for s in outputs {
        write_spec(&mut disk, s);
    }
    disk.sync();
    let bytes = disk.durable_bytes().to_vec();
    (bytes.clone(), record_starts(&bytes))
}

/// Walks the documented framing: [len u32 LE][crc u32 LE][payload].
fn record_starts(bytes: &[u8]) -> Vec<usize> {
    let mut starts = vec![];
    let mut pos = 0;
    while pos < bytes.len() {
        starts.push(pos);
        pos += 8 + u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
    }
    assert_eq!(pos, bytes.len());
    starts
}

fn recover_bytes(bytes: &[u8]) -> Result<Option<Recovered>, DiskError> {
    SimDisk::from_durable_bytes(bytes.to_vec()).recover().map(|(r, _)| r)
}

fn reference(outputs: &[Spec]) -> RefDisk {
    let mut r = RefDisk::default();
    for s in outputs {
        for w in s.writes() {
            r.write(&w);
        }
    }
    r
}

fn sample_outputs() -> Vec<Spec> {
    vec![
        Spec { conf: Some(vec![1, 2, 3]), ..Spec::default() },
        Spec { entries: Some((1, 3, 1, b"abc".to_vec())), hard_state: Some((1, 1, 0)), ..Spec::default() },
        Spec {
            entries: Some((3, 2, 2, b"overwrite".to_vec())),
            hard_state: Some((2, 1, 2)),
            ..Spec::default()
        },
        Spec { own_snapshot: Some((3, 2)), ..Spec::default() },
        Spec { entries: Some((5, 1, 2, b"last".to_vec())), ..Spec::default() },
    ]
}

// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    /// Whatever the writes, syncs and crashes, recovery gives the synced outputs plus some
    /// prefix of the unsynced records, in order; never loses a synced one, never invents or
    /// reorders anything.
    #[test]
    fn synced_data_survives_any_crash(ops in prop::collection::vec(op(), 1..40)) {
        let mut disk = SimDisk::new();
        let mut durable = RefDisk::default();
        let mut pending: Vec<DiskWriteKind> = vec![];
        for op in ops {
            match op {
                Op::Write(s) => {
                    for w in s.writes() {
                        disk.write(&w);
                        pending.extend(pieces(&w));
                    }
                }
                Op::Sync => {
                    disk.sync();
                    for p in pending.drain(..) {
                        durable.write(&p);
                    }
                    prop_assert_eq!(disk.volatile_len(), 0);
                }
                Op::Crash(seed) => {
                    disk.crash(&mut ChaCha8Rng::seed_from_u64(seed));
                    let (got, report) = disk.recover().expect("a crash leaves at most a torn tail");
                    prop_assert_eq!(report.journal_bytes, disk.durable_len());
                    prop_assert_eq!(disk.volatile_len(), 0);
                    let mut candidate = durable.clone();
                    let mut kept = candidate.matches(&got).then_some(0);
                    for (k, p) in pending.iter().enumerate() {
                        if kept.is_some() {
                            break;
                        }
                        candidate.write(p);
                        if candidate.matches(&got) {
                            kept = Some(k + 1);
                        }
                    }
                    prop_assert!(kept.is_some(), "recovered {:?}, not synced + a prefix of unsynced", got);
                    durable = candidate;
                    pending.clear();
                }
                Op::Restart => {
                    let (got, report) = disk.recover().unwrap();
                    prop_assert_eq!(report.torn_bytes, 0);
                    let mut all = durable.clone();
                    for p in &pending {
                        all.write(p);
                    }
                    prop_assert!(all.matches(&got));
                }
                Op::Compact => {
                    let before = disk.durable_len();
                    disk.compact().unwrap();
                    prop_assert!(disk.durable_len() <= before + 64, "compaction does not grow the journal much");
                }
            }
        }
        let (got, _) = disk.recover().unwrap();
        for p in &pending {
            durable.write(p);
        }
        prop_assert!(durable.matches(&got));
    }

    /// Any single damaged byte: in the last record it reads as a torn tail (the record is
    /// dropped, nothing else); anywhere before, it is corruption.
    #[test]
    fn a_damaged_byte_is_a_torn_tail_only_in_the_last_record(at in any::<prop::sample::Index>(), mask in 1u8..=255) {
        let outputs = sample_outputs();
        let (mut bytes, starts) = journal(&outputs);
        let last = *starts.last().unwrap();
        let at = at.index(bytes.len());
        bytes[at] ^= mask;
        let mut disk = SimDisk::from_durable_bytes(bytes.clone());
        let result = disk.recover();
        if at >= last {
            let (got, report) = result.expect("damage in the last record is a torn tail");
            prop_assert_eq!(report.torn_bytes, (bytes.len() - last) as u64);
            prop_assert_eq!(disk.durable_len(), last as u64);
            // The last output is a single entry record: everything before it is there.
            prop_assert!(reference(&outputs[..outputs.len() - 1]).matches(&got));
        } else {
            let is_corrupt = matches!(result, Err(DiskError::Corrupt { .. }));
            prop_assert!(is_corrupt, "damage at byte {} of {} went unnoticed", at, bytes.len());
        }
    }

    /// Recovery never panics and never allocates more than the bytes given, whatever they are.
    #[test]
    fn recovery_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2_000)) {
        let _ = recover_bytes(&bytes);
    }

    /// Well-framed records (lengths and checksums right) with arbitrary payloads: the decoder
    /// is reached, and refuses garbage without panicking.
    #[test]
    fn recovery_never_panics_on_framed_garbage(payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..64), 0..8)) {
        let mut bytes = vec![];
        for p in &payloads {
            bytes.extend_from_slice(&(p.len() as u32).to_le_bytes());
            bytes.extend_from_slice(&crc32fast::hash(p).to_le_bytes());
            bytes.extend_from_slice(p);
        }
        let _ = recover_bytes(&bytes);
    }

    /// A torn length prefix claiming up to 4 GiB is refused without allocating it.
    #[test]
    fn a_huge_length_prefix_is_a_torn_tail(len in 1u32.., crc: u32, tail in prop::collection::vec(any::<u8>(), 0..32)) {
        let (mut bytes, _) = journal(&sample_outputs());
        let intact = bytes.len();
        bytes.extend_from_slice(&len.to_le_bytes());
        bytes.extend_from_slice(&crc.to_le_bytes());
        bytes.extend_from_slice(&tail);
        let (_, report) = SimDisk::from_durable_bytes(bytes.clone()).recover().unwrap();
        prop_assert_eq!(report.torn_bytes, (bytes.len() - intact) as u64);
    }
}

#[test]
fn empty_disk_boots_a_new_member() {
    let (got, report) = SimDisk::new().recover().unwrap();
    assert!(got.is_none());
    assert_eq!(report.records, 0);
    let mut disk = SimDisk::new();
    write_spec(&mut disk, &sample_outputs()[0]);
    disk.crash(&mut ChaCha8Rng::seed_from_u64(3));
    let (got, _) = disk.recover().unwrap();
    assert_eq!(got.is_none(), disk.durable_len() == 0, "nothing durable: a new member");
}

#[test]
fn torn_tail_is_dropped_at_every_cut() {
    let outputs = sample_outputs();
    let (bytes, starts) = journal(&outputs);
    let last = *starts.last().unwrap();
    let want = reference(&outputs[..outputs.len() - 1]);
    for cut in last + 1..bytes.len() {
        let mut disk = SimDisk::from_durable_bytes(bytes[..cut].to_vec());
        let (got, report) = disk.recover().unwrap();
        assert!(want.matches(&got), "cut at {cut}");
        assert_eq!(report.torn_bytes, (cut - last) as u64);
        assert_eq!(report.records, starts.len() as u64 - 1);
        assert_eq!(disk.durable_len(), last as u64, "the torn record was truncated away");
        // Appending after the truncation is sound: the journal reads back whole.
        write_spec(&mut disk, &Spec { hard_state: Some((9, 9, 9)), ..Spec::default() });
        disk.sync();
        let (got, report) = disk.recover().unwrap();
        assert_eq!(report.torn_bytes, 0);
        assert_eq!(got.unwrap().hard_state, hard_state(9, 9, 9));
    }
}

#[test]
fn corruption_before_intact_records_is_refused() {
    let (bytes, starts) = journal(&sample_outputs());
    for (i, &start) in starts[..starts.len() - 1].iter().enumerate() {
        for at in [start, start + 4, start + 8, starts[i + 1] - 1] {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x40;
            let err = recover_bytes(&damaged).unwrap_err();
            let DiskError::Corrupt { offset, .. } = &err else { panic!("{err}") };
            assert_eq!(*offset, start as u64, "{err}");
        }
    }
    // A record whose checksum holds but whose payload is not a record: a bug, not a torn write.
    for payload in [&[9u8, 1, 2][..], &[3, 0xff, 0xff, 0xff]] {
        let mut damaged = bytes.clone();
        damaged.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        damaged.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
        damaged.extend_from_slice(payload);
        assert!(matches!(recover_bytes(&damaged), Err(DiskError::Corrupt { .. })));
    }
}

#[test]
fn skip_sync_loses_acknowledged_writes() {
    let outputs = sample_outputs();
    let build = |skip: bool| {
        let mut disk = SimDisk::new();
        disk.set_skip_sync(skip);
        for s in &outputs {
            write_spec(&mut disk, s);
            disk.sync();
        }
        disk
    };
    let want = reference(&outputs);
    let mut lost = 0;
    for seed in 0..20 {
        for skip in [false, true] {
            let mut disk = build(skip);
            disk.crash(&mut ChaCha8Rng::seed_from_u64(seed));
            let (got, _) = disk.recover().unwrap();
            if !skip {
                assert!(want.matches(&got), "an honest disk keeps every synced write");
            } else if !want.matches(&got) {
                lost += 1;
            }
        }
    }
    assert!(lost >= 15, "a disk that lies about fsync loses synced writes on most crashes ({lost}/20)");
}

#[test]
fn compaction_keeps_the_state_and_bounds_the_journal() {
    let mut disk = SimDisk::new();
    let mut want = RefDisk::default();
    let value = vec![7u8; 1024];
    for i in 1..=2_000u64 {
        let mut s =
            Spec { entries: Some((i, 1, 1, value.clone())), hard_state: Some((1, 1, i)), ..Spec::default() };
        if i % 100 == 0 {
            s.own_snapshot = Some((i, i - 10));
        }
        for w in s.writes() {
            disk.write(&w);
            want.write(&w);
        }
        disk.sync();
        if disk.compaction_due() {
            let before = disk.durable_len();
            disk.compact().unwrap();
            assert!(disk.durable_len() < before / 4, "{before} -> {}", disk.durable_len());
            assert!(!disk.compaction_due());
        }
    }
    assert!(disk.durable_len() < 4 << 20, "the journal stays bounded: {} bytes", disk.durable_len());
    // Unsynced records stay volatile across a compaction.
    let tail = Spec { entries: Some((2_001, 1, 1, value.clone())), ..Spec::default() };
    write_spec(&mut disk, &tail);
    let volatile = disk.volatile_len();
    disk.compact().unwrap();
    assert_eq!(disk.volatile_len(), volatile);
    let (got, _) = disk.clone().recover().unwrap();
    for w in tail.writes() {
        want.write(&w);
    }
    assert!(want.matches(&got));
    disk.crash(&mut ChaCha8Rng::seed_from_u64(1));
    assert!(disk.recover().is_ok());
}

// ---------------------------------------------------------------------------------------------
// End to end: a real single-member `Core` on a `SimDisk`.

struct Member {
    core: Core,
    answers: BTreeMap<RequestId, Result<Response, Error>>,
    /// Ids for the test's own reads, clear of the puts' ids.
    next_read_id: RequestId,
}

/// Boots from the disk as a driver does: recover, `Core::new`, then campaign (the only voter)
/// and serve one linearizable read, after which everything committed before is applied.
fn boot(disk: &mut SimDisk, boots: &mut u64) -> Member {
    *boots += 1;
    let (recovered, _) = disk.recover().expect("recovery");
    let mut config = Config::new(1, vec![1], 0x5eed ^ boots.wrapping_mul(0x9e37_79b9));
    // Snapshots every few entries, so the journal holds own-snapshot records.
    config.snapshot_entries = 7;
    config.snapshot_catch_up_entries = 3;
    let core = Core::new(config, recovered).expect("boot from the recovered state");
    let mut m = Member { core, answers: BTreeMap::new(), next_read_id: 1_000_000 };
    m.core.campaign();
    let id = m.next_read_id;
    m.next_read_id += 1;
    m.core.submit(id, Request::Range(RangeRequest { key: "k".into(), ..RangeRequest::default() }));
    let crashed = run_until_answered(&mut m, disk, id, &mut || false);
    assert!(!crashed);
    assert!(m.answers.remove(&id).unwrap().is_ok());
    assert_eq!(m.core.role(), StateRole::Leader);
    m
}

/// Drives the member until `id` is answered, syncing before each `on_persisted`. `crash_now`
/// is asked after each output is written and before it is synced; true stops there (the
/// caller crashes the disk).
fn run_until_answered(
    m: &mut Member,
    disk: &mut SimDisk,
    id: RequestId,
    crash_now: &mut dyn FnMut() -> bool,
) -> bool {
    for _ in 0..10_000 {
        let mut out = m.core.advance().expect("no fatal error");
        if out.is_empty() {
            if m.answers.contains_key(&id) {
                return false;
            }
            let t = m.core.poll_timeout();
            m.core.handle_timeout(t);
            continue;
        }
        let persisted = out.persist.as_ref().map(|p| p.number);
        if let Some(p) = out.persist.take() {
            disk.write(&DiskWriteKind::Persist(p));
        }
        if let Some(made) = out.snapshot.take() {
            let SnapshotMade { snapshot, log_first_index } = made;
            disk.write(&DiskWriteKind::RecordSnapshot { snapshot, log_first_index });
        }
        m.answers.extend(out.responses);
        if crash_now() {
            return true;
        }
        disk.sync();
        if let Some(number) = persisted {
            m.core.on_persisted(number);
        }
    }
    panic!("request {id} never answered");
}

fn read(m: &mut Member, disk: &mut SimDisk, key: &str) -> Option<String> {
    let id = m.next_read_id;
    m.next_read_id += 1;
    m.core.submit(
        id,
        Request::Range(RangeRequest {
            key: key.to_string().into(),
            serializable: true,
            ..RangeRequest::default()
        }),
    );
    assert!(!run_until_answered(m, disk, id, &mut || false));
    match m.answers.remove(&id).unwrap().unwrap().body {
        ResponseBody::Range(r) => r.kvs.first().map(|kv| String::from_utf8(kv.value.to_vec()).unwrap()),
        other => panic!("range answered with {other:?}"),
    }
}

fn put(key: &str, value: &str) -> Request {
    Request::Put(PutRequest {
        key: key.to_string().into(),
        value: value.to_string().into(),
        ..PutRequest::default()
    })
}

#[test]
fn core_restarted_from_recover_still_has_its_keys() {
    let mut disk = SimDisk::new();
    let mut boots = 0;
    let mut m = boot(&mut disk, &mut boots);
    for i in 0..20u64 {
        m.core.submit(i, put(&format!("key{i}"), &format!("value{i}")));
        assert!(!run_until_answered(&mut m, &mut disk, i, &mut || false));
        assert!(m.answers.remove(&i).unwrap().is_ok());
    }
    drop(m);
    disk.crash(&mut ChaCha8Rng::seed_from_u64(7));
    let (recovered, _) = disk.clone().recover().unwrap();
    assert!(recovered.unwrap().snapshot.is_some(), "the member snapshotted (every 7 entries)");
    let mut m = boot(&mut disk, &mut boots);
    for i in 0..20 {
        assert_eq!(read(&mut m, &mut disk, &format!("key{i}")), Some(format!("value{i}")));
    }
}

/// Crashes at random points between writing an output and syncing it, with snapshots every
/// few entries so own-snapshot records are torn too: every acknowledged put survives, and
/// every recovered state boots.
#[test]
fn acknowledged_puts_survive_random_crashes() {
    for seed in 0..6u64 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut disk = SimDisk::new();
        let mut boots = 0;
        let mut m = boot(&mut disk, &mut boots);
        let mut acked = BTreeMap::new();
        for i in 0..80u64 {
            let (key, value) = (format!("key{i}"), format!("value{i}"));
            m.core.submit(i, put(&key, &value));
            let mut crash_rng = ChaCha8Rng::seed_from_u64(rng.gen());
            let crashed = run_until_answered(&mut m, &mut disk, i, &mut || crash_rng.gen_ratio(1, 6));
            if let Some(Ok(_)) = m.answers.remove(&i) {
                acked.insert(key, value);
            }
            if crashed {
                disk.crash(&mut rng);
                m = boot(&mut disk, &mut boots);
            }
        }
        disk.crash(&mut rng);
        let mut m = boot(&mut disk, &mut boots);
        assert!(boots > 5, "seed {seed}: only {boots} boots");
        assert!(acked.len() > 40, "seed {seed}: only {} puts acknowledged", acked.len());
        for (key, value) in &acked {
            assert_eq!(read(&mut m, &mut disk, key).as_ref(), Some(value), "seed {seed}: {key} lost");
        }
    }
}
