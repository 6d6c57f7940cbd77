//! `SimDisk`: a member's durable storage as one append-only journal, with real crash semantics.
//!
//! The model is FoundationDB's `AsyncFileNonDurable`, for an append-only file. Writes land in a
//! volatile buffer (the page cache); `sync` makes everything written so far durable (fsync);
//! `crash` loses the volatile buffer except a random prefix of it, which may end in the middle
//! of a record (a torn write). Whatever was synced is never lost, so a driver that syncs before
//! `Core::on_persisted` never loses an acknowledged write.
//!
//! Pure and deterministic: no I/O, no clock, no threads; the randomness of a crash comes in as
//! an `Rng` argument.
//!
//! ## Record format
//!
//! The journal is a sequence of records, each
//!
//! ```text
//! [len: u32 LE][crc32 of payload: u32 LE][payload: len bytes]
//! payload = tag: u8, body
//! ```
//!
//! | tag | record          | body                                                 |
//! |-----|-----------------|------------------------------------------------------|
//! | 1   | conf state      | `ConfState`, protobuf                                |
//! | 2   | leader snapshot | `Snapshot`, protobuf                                 |
//! | 3   | entry           | one `Entry`, protobuf                                |
//! | 4   | hard state      | `HardState`, protobuf                                |
//! | 5   | own snapshot    | `log_first_index`: u64 LE, then `Snapshot`, protobuf |
//!
//! `len` is at least 1 (the tag) and at most `RECORD_BYTES_MAX`. An output is written as one
//! record per piece of state (each entry its own record), in the order `Disk::write` in the
//! core's test support applies them: conf state; then `Persist`'s snapshot, entries and hard
//! state; then the member's own snapshot. A crash can therefore keep any prefix of those
//! records, as a real disk can keep any prefix of an unsynced write.
//!
//! ## Recovery
//!
//! `recover` replays the records in order, with the semantics of the core's reference disk:
//! a leader snapshot replaces the log; an entry at index i replaces every entry at index >= i;
//! an own snapshot keeps the snapshot and drops entries before `log_first_index`; conf state
//! and hard state: the latest wins. A damaged record (short, over the bound, failing its
//! checksum) with no intact record anywhere after it is a torn tail: it is dropped and the
//! journal truncated there. A damaged record followed by an intact one, or an intact record
//! that does not decode, is corruption: `DiskError::Corrupt`, and the member must not boot
//! (the simulator reports a crash failure; a real member would need an operator).

use std::fmt;

use cairn_core::eraftpb::{ConfState, Entry, HardState, Snapshot};
use cairn_core::{DiskWriteKind, Recovered};
use protobuf::Message as _;
use rand::Rng;

/// Largest record payload. A length prefix above it is damage, not a record, so a torn or
/// corrupted length can never make recovery allocate or scan more than this. Writing a larger
/// record panics: the simulator's workloads stay far below it.
pub const RECORD_BYTES_MAX: u32 = 256 << 20;

/// A journal shorter than this is never worth compacting (see `compaction_due`).
pub const COMPACTION_FLOOR_BYTES: u64 = 1 << 20;

const HEADER_BYTES: usize = 8;

const TAG_CONF_STATE: u8 = 1;
const TAG_LEADER_SNAPSHOT: u8 = 2;
const TAG_ENTRY: u8 = 3;
const TAG_HARD_STATE: u8 = 4;
const TAG_OWN_SNAPSHOT: u8 = 5;

/// The journal is damaged beyond a torn tail.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DiskError {
    /// A damaged record followed by an intact one, or an intact record that does not decode.
    /// `offset` is the byte offset of the bad record in the journal.
    Corrupt { offset: u64, reason: String },
}

impl fmt::Display for DiskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DiskError::Corrupt { offset, reason } => {
                write!(f, "journal corrupt at byte {offset}: {reason}")
            }
        }
    }
}

impl std::error::Error for DiskError {}

/// What `recover` found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Intact records replayed.
    pub records: u64,
    /// Bytes of a torn tail that were dropped; the journal was truncated by this much.
    pub torn_bytes: u64,
    /// Journal length after recovery (durable and volatile).
    pub journal_bytes: u64,
}

/// A member's simulated durable storage. It outlives the member's crashes: the simulator keeps
/// one per member and hands it to each boot.
#[derive(Clone, Debug, Default)]
pub struct SimDisk {
    /// The journal as a reader sees it: durable bytes, then volatile (written, unsynced) ones.
    /// The volatile part always holds whole records.
    bytes: Vec<u8>,
    durable_len: usize,
    /// Planted bug: `sync` does nothing (see `set_skip_sync`).
    skip_sync: bool,
    /// Set by `crash` and `from_durable_bytes`: the journal may end in a torn record, so
    /// `recover` must run before anything is appended after it.
    needs_recovery: bool,
    /// Journal length right after the last compaction, 0 before the first.
    compacted_len: usize,
}

/// One piece of durable state, as one record.
enum Record {
    ConfState(ConfState),
    LeaderSnapshot(Snapshot),
    Entry(Entry),
    HardState(HardState),
    OwnSnapshot { snapshot: Snapshot, log_first_index: u64 },
}

impl SimDisk {
    /// An empty disk: a member booting from it is new (`recover` gives `None`).
    pub fn new() -> SimDisk {
        SimDisk::default()
    }

    /// A disk whose durable journal is exactly `bytes`, as if the machine had just crashed:
    /// call `recover` before writing. For tests that damage a journal on purpose.
    pub fn from_durable_bytes(bytes: Vec<u8>) -> SimDisk {
        let durable_len = bytes.len();
        SimDisk { bytes, durable_len, needs_recovery: true, ..SimDisk::default() }
    }

    /// The durable journal's bytes, for tests that damage or inspect it.
    pub fn durable_bytes(&self) -> &[u8] {
        &self.bytes[..self.durable_len]
    }

    /// Bytes that survive any crash.
    pub fn durable_len(&self) -> u64 {
        self.durable_len as u64
    }

    /// Bytes written since the last `sync`: a crash keeps a random prefix of them.
    pub fn volatile_len(&self) -> u64 {
        (self.bytes.len() - self.durable_len) as u64
    }

    /// Appends one write the pipeline handed out (`DiskWriteKind`), volatile until the next
    /// `sync`: a persist's membership, leader snapshot, entries and hard state, in that order,
    /// or the record of the member's own snapshot.
    ///
    /// Panics if a crash has not been followed by `recover` (appending after a torn record
    /// would turn a torn tail into corruption), if `persist.entries` are not contiguous, or if
    /// a record would exceed `RECORD_BYTES_MAX`.
    pub fn write(&mut self, w: &DiskWriteKind) {
        assert!(!self.needs_recovery, "write after a crash without recover(): the journal may end torn");
        match w {
            DiskWriteKind::Persist(p) => {
                if let Some(cs) = &p.conf_state {
                    self.append(&Record::ConfState(cs.clone()));
                }
                if let Some(s) = &p.snapshot {
                    self.append(&Record::LeaderSnapshot(s.clone()));
                }
                for pair in p.entries.windows(2) {
                    assert_eq!(pair[1].index, pair[0].index + 1, "entries to persist must be contiguous");
                }
                for e in &p.entries {
                    self.append(&Record::Entry(e.clone()));
                }
                if let Some(hs) = &p.hard_state {
                    self.append(&Record::HardState(hs.clone()));
                }
            }
            DiskWriteKind::RecordSnapshot { snapshot, log_first_index } => {
                self.append(&Record::OwnSnapshot {
                    snapshot: snapshot.clone(),
                    log_first_index: *log_first_index,
                });
            }
        }
    }

    /// Bytes written so far, durable or not: where an fsync started now reaches (`sync_to`).
    pub fn written_len(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// An fsync that started when `written_len()` was `len` has completed: the bytes before it
    /// are durable; those written while it ran are still volatile (a real fsync may cover them
    /// too, but nothing may count on it). Does nothing under `set_skip_sync`.
    ///
    /// Panics if `len` is past what was written (the journal never shrinks between an fsync's
    /// start and end: compaction and recovery happen between fsyncs).
    pub fn sync_to(&mut self, len: u64) {
        let len = len as usize;
        assert!(len <= self.bytes.len(), "an fsync reached past the journal's end");
        if !self.skip_sync {
            self.durable_len = self.durable_len.max(len);
        }
    }

    /// Makes everything written so far durable (fsync). Does nothing under `set_skip_sync`.
    pub fn sync(&mut self) {
        if !self.skip_sync {
            self.durable_len = self.bytes.len();
        }
    }

    /// The machine loses power: the volatile bytes are lost except a prefix of them, of a
    /// length drawn uniformly from `0..=volatile_len()`, which may cut a record in two. The
    /// survivors become durable. Call `recover` before writing again.
    pub fn crash(&mut self, rng: &mut impl Rng) {
        let kept = rng.gen_range(0..=self.bytes.len() - self.durable_len);
        self.bytes.truncate(self.durable_len + kept);
        self.durable_len = self.bytes.len();
        self.needs_recovery = true;
    }

    /// A planted bug, "a disk that lies about fsync": while on, `sync` does nothing, so a crash
    /// can lose writes the member acknowledged. It exists only to prove that the simulator's
    /// checkers catch lost acknowledged writes; never set it otherwise.
    pub fn set_skip_sync(&mut self, skip: bool) {
        self.skip_sync = skip;
    }

    /// Reads the journal at boot and replays it into what the member recovered: `None` when
    /// it holds no intact record (the member is new: `Core::new(config, None)`), else the
    /// state to restart from. A torn tail is dropped and truncated away (see the module docs);
    /// volatile records, if there are any (a restart without a crash), are read too, as a
    /// reader sees the page cache.
    ///
    /// On `Err` the journal is left as it was: the member must not boot from it.
    pub fn recover(&mut self) -> Result<(Option<Recovered>, RecoveryReport), DiskError> {
        let replayed = replay(&self.bytes)?;
        if replayed.torn_bytes > 0 {
            // Only a crash leaves a torn record, and a crash leaves nothing volatile after it.
            assert_eq!(self.volatile_len(), 0, "a torn record before volatile ones");
            self.bytes.truncate(replayed.intact_len);
            self.durable_len = self.durable_len.min(self.bytes.len());
        }
        self.needs_recovery = false;
        let report = RecoveryReport {
            records: replayed.records,
            torn_bytes: replayed.torn_bytes as u64,
            journal_bytes: self.bytes.len() as u64,
        };
        Ok((replayed.state, report))
    }

    /// Whether the durable journal has grown enough past its last compaction to be worth
    /// compacting: over `COMPACTION_FLOOR_BYTES` and over 4 times its length right after the
    /// last compaction, which keeps the cost of compaction linear in the bytes written.
    pub fn compaction_due(&self) -> bool {
        let threshold = (COMPACTION_FLOOR_BYTES as usize).max(self.compacted_len.saturating_mul(4));
        self.durable_len > threshold
    }

    /// Rewrites the durable journal as the state it holds: conf state, snapshot, live entries,
    /// hard state. Volatile records stay volatile, after it. This keeps long simulations'
    /// journals bounded by the live state.
    ///
    /// The model is the usual atomic replace: write a new file, fsync it, rename it over the
    /// journal, fsync the directory. A crash sees either journal, and both replay to the same
    /// state, so it is one instantaneous durable step here. `set_skip_sync` does not affect it.
    ///
    /// Panics after a crash without `recover`. On `Err` (corrupt journal) nothing changes.
    pub fn compact(&mut self) -> Result<(), DiskError> {
        assert!(!self.needs_recovery, "compact after a crash without recover()");
        let before = replay(&self.bytes[..self.durable_len])?;
        assert_eq!(before.torn_bytes, 0, "a recovered journal has no torn record");
        let volatile = self.bytes.split_off(self.durable_len);
        self.bytes.clear();
        if let Some(state) = &before.state {
            self.append(&Record::ConfState(state.conf_state.clone()));
            if let Some(s) = &state.snapshot {
                self.append(&Record::LeaderSnapshot(s.clone()));
            }
            for e in &state.entries {
                self.append(&Record::Entry(e.clone()));
            }
            self.append(&Record::HardState(state.hard_state.clone()));
        }
        self.durable_len = self.bytes.len();
        self.compacted_len = self.bytes.len();
        self.bytes.extend_from_slice(&volatile);

        let after = replay(&self.bytes[..self.durable_len]).expect("a journal just compacted reads back");
        assert_eq!(after.torn_bytes, 0);
        match (&before.state, &after.state) {
            (None, None) => {}
            (Some(a), Some(b)) => assert!(same_state(a, b), "compaction changed the durable state"),
            _ => panic!("compaction changed whether the disk holds a member"),
        }
        Ok(())
    }

    fn append(&mut self, record: &Record) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(&[0; HEADER_BYTES]);
        let message: &dyn protobuf::Message = match record {
            Record::ConfState(cs) => {
                self.bytes.push(TAG_CONF_STATE);
                cs
            }
            Record::LeaderSnapshot(s) => {
                self.bytes.push(TAG_LEADER_SNAPSHOT);
                s
            }
            Record::Entry(e) => {
                self.bytes.push(TAG_ENTRY);
                e
            }
            Record::HardState(hs) => {
                self.bytes.push(TAG_HARD_STATE);
                hs
            }
            Record::OwnSnapshot { snapshot, log_first_index } => {
                self.bytes.push(TAG_OWN_SNAPSHOT);
                self.bytes.extend_from_slice(&log_first_index.to_le_bytes());
                snapshot
            }
        };
        message.write_to_vec(&mut self.bytes).expect("raft's messages have no required fields");
        let payload_len = self.bytes.len() - start - HEADER_BYTES;
        assert!(payload_len <= RECORD_BYTES_MAX as usize, "record of {payload_len} bytes exceeds the bound");
        let crc = crc32fast::hash(&self.bytes[start + HEADER_BYTES..]);
        self.bytes[start..start + 4].copy_from_slice(&(payload_len as u32).to_le_bytes());
        self.bytes[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
        assert!(frame_at(&self.bytes, start).is_ok(), "a record just written reads back");
    }
}

/// Whether two recovered states are the same (`Recovered` has no `PartialEq`).
pub fn same_state(a: &Recovered, b: &Recovered) -> bool {
    a.hard_state == b.hard_state
        && a.conf_state == b.conf_state
        && a.snapshot == b.snapshot
        && a.entries == b.entries
}

struct Replayed {
    state: Option<Recovered>,
    records: u64,
    /// Length of the intact prefix: where a torn tail starts, or the whole journal.
    intact_len: usize,
    torn_bytes: usize,
}

fn replay(bytes: &[u8]) -> Result<Replayed, DiskError> {
    let mut state: Option<Recovered> = None;
    let mut records = 0;
    let mut pos = 0;
    while pos < bytes.len() {
        let payload = match frame_at(bytes, pos) {
            Ok(payload) => payload,
            Err(damage) => {
                // A torn write leaves nothing intact after it; anything else is corruption. A
                // torn tail holds part of one record's payload, which embeds no record framing,
                // so a false "intact" match here needs a checksum collision.
                if let Some(next) = (pos + 1..bytes.len()).find(|&at| frame_at(bytes, at).is_ok()) {
                    return Err(DiskError::Corrupt {
                        offset: pos as u64,
                        reason: format!(
                            "damaged record ({damage}) with an intact record after it, at byte {next}"
                        ),
                    });
                }
                break;
            }
        };
        let record = decode(payload).map_err(|reason| DiskError::Corrupt {
            offset: pos as u64,
            reason: format!("intact record does not decode: {reason}"),
        })?;
        apply(state.get_or_insert_with(Recovered::default), record);
        records += 1;
        pos += HEADER_BYTES + payload.len();
    }
    if let Some(s) = &state {
        assert!(s.entries.windows(2).all(|w| w[0].index < w[1].index), "replay keeps entries in order");
    }
    Ok(Replayed { state, records, intact_len: pos, torn_bytes: bytes.len() - pos })
}

/// The payload of the record at `pos`, if a whole, checksummed record starts there.
fn frame_at(bytes: &[u8], pos: usize) -> Result<&[u8], &'static str> {
    let header = bytes.get(pos..pos.saturating_add(HEADER_BYTES)).ok_or("header cut short")?;
    let len = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes"));
    let crc = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
    if len == 0 || len > RECORD_BYTES_MAX {
        return Err("length out of bounds");
    }
    let start = pos + HEADER_BYTES;
    let payload = bytes.get(start..start.saturating_add(len as usize)).ok_or("payload cut short")?;
    if crc32fast::hash(payload) != crc {
        return Err("checksum mismatch");
    }
    Ok(payload)
}

fn decode(payload: &[u8]) -> Result<Record, String> {
    let (&tag, body) = payload.split_first().ok_or("empty payload")?;
    let pb = |e: protobuf::ProtobufError| e.to_string();
    Ok(match tag {
        TAG_CONF_STATE => Record::ConfState(ConfState::parse_from_bytes(body).map_err(pb)?),
        TAG_LEADER_SNAPSHOT => Record::LeaderSnapshot(Snapshot::parse_from_bytes(body).map_err(pb)?),
        TAG_ENTRY => Record::Entry(Entry::parse_from_bytes(body).map_err(pb)?),
        TAG_HARD_STATE => Record::HardState(HardState::parse_from_bytes(body).map_err(pb)?),
        TAG_OWN_SNAPSHOT => {
            let index = body.get(..8).ok_or("own snapshot record cut short")?;
            Record::OwnSnapshot {
                log_first_index: u64::from_le_bytes(index.try_into().expect("8 bytes")),
                snapshot: Snapshot::parse_from_bytes(&body[8..]).map_err(pb)?,
            }
        }
        other => return Err(format!("unknown record tag {other}")),
    })
}

/// Applies one record as the core's reference disk (`Disk::write` in its test support) does.
///
/// Keeps `entries` strictly increasing by index, whatever the records: an entry drops every
/// entry at or after its index before it is pushed, and the other records only remove entries.
fn apply(state: &mut Recovered, record: Record) {
    match record {
        Record::ConfState(cs) => state.conf_state = cs,
        Record::LeaderSnapshot(s) => {
            state.snapshot = Some(s);
            state.entries.clear();
        }
        Record::Entry(e) => {
            let kept = state.entries.partition_point(|x| x.index < e.index);
            state.entries.truncate(kept);
            state.entries.push(e);
        }
        Record::HardState(hs) => state.hard_state = hs,
        Record::OwnSnapshot { snapshot, log_first_index } => {
            state.snapshot = Some(snapshot);
            let dropped = state.entries.partition_point(|x| x.index < log_first_index);
            state.entries.drain(..dropped);
        }
    }
}
