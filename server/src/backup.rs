//! Backup files: what Maintenance.Snapshot streams (`etcdctl snapshot save`) and what
//! `cairn snapshot status` and `cairn snapshot restore` read.
//!
//! A file is a header, the member's state machine as `cairn_core::Request::Backup` encoded it,
//! and a SHA-256 of everything before it as the last 32 bytes (etcd, too, ends its snapshot
//! stream with a SHA-256 of what came before):
//!
//! | bytes  | field                                                    |
//! | ------ | -------------------------------------------------------- |
//! | 8      | magic `CAIRNBAK`                                         |
//! | 4      | file format version (big-endian u32, `FORMAT_VERSION`)   |
//! | 8 each | Raft index, Raft term, store revision, cluster id, member id (big-endian) |
//! | 8      | length of the state that follows                          |
//! | n      | the state (`cairn_core::state_machine::StateMachine::decode`) |
//! | 0-511  | zeros, to a multiple of 512 bytes                         |
//! | 32     | SHA-256 of all the above                                  |
//!
//! The padding is for `etcdctl snapshot save`, which takes a file whose length is not 32 more
//! than a multiple of 512 (a page-aligned bolt file and its checksum) as cut short.
//!
//! A file that is truncated, altered, or not a Cairn backup is refused with a message saying
//! which; the state inside is decoded and its invariants checked before anything uses it.

use bytes::Bytes;
use cairn_core::kv::RangeRequest;
use cairn_core::state_machine::StateMachine;
use sha2::{Digest, Sha256};

pub const MAGIC: &[u8; 8] = b"CAIRNBAK";
pub const FORMAT_VERSION: u32 = 1;
/// Magic, version, five u64 fields, the state's length.
pub const HEADER_BYTES: usize = 8 + 4 + 5 * 8 + 8;
pub const TRAILER_BYTES: usize = 32;

/// Where the backed-up state came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Origin {
    pub index: u64,
    pub term: u64,
    pub revision: i64,
    pub cluster_id: u64,
    pub member_id: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("not a Cairn backup (it does not start with {MAGIC:?}; etcd's own snapshot files are not read)")]
    NotABackup,
    #[error("backup file format {0}; this build reads format {FORMAT_VERSION}")]
    UnsupportedVersion(u32),
    #[error("the backup is truncated: {have} bytes, {want} expected")]
    Truncated { have: u64, want: u64 },
    #[error("the backup has {0} bytes after its end")]
    TrailingBytes(u64),
    #[error("the backup's checksum does not match its contents: the file is damaged")]
    ChecksumMismatch,
    #[error("the backup's state cannot be read: {0}")]
    State(cairn_core::Error),
}

/// Zeros after `state_len` bytes of state, to a multiple of `ALIGN_BYTES`.
pub const ALIGN_BYTES: usize = 512;

fn padding(state_len: u64) -> u64 {
    let used = (HEADER_BYTES as u64 + state_len) % ALIGN_BYTES as u64;
    (ALIGN_BYTES as u64 - used) % ALIGN_BYTES as u64
}

/// The header for a backup of `state_len` bytes of state.
pub fn header(origin: &Origin, state_len: u64) -> [u8; HEADER_BYTES] {
    let mut h = [0u8; HEADER_BYTES];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_be_bytes());
    let fields =
        [origin.index, origin.term, origin.revision as u64, origin.cluster_id, origin.member_id, state_len];
    for (i, f) in fields.iter().enumerate() {
        h[12 + 8 * i..20 + 8 * i].copy_from_slice(&f.to_be_bytes());
    }
    h
}

/// A whole backup file, in memory.
pub fn encode(origin: &Origin, state: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_BYTES + state.len() + TRAILER_BYTES);
    out.extend_from_slice(&header(origin, state.len() as u64));
    out.extend_from_slice(state);
    out.resize(out.len() + padding(state.len() as u64) as usize, 0);
    let sum = Sha256::digest(&out);
    out.extend_from_slice(&sum);
    out
}

/// Chunks of a backup for streaming: the header, the state in `chunk_bytes` slices (shared,
/// not copied), then the checksum, computed as the chunks pass.
pub struct Chunks {
    pending: std::collections::VecDeque<Bytes>,
    hasher: Option<Sha256>,
}

impl Chunks {
    pub fn new(origin: &Origin, state: Bytes, chunk_bytes: usize) -> Chunks {
        let mut pending = std::collections::VecDeque::new();
        pending.push_back(Bytes::copy_from_slice(&header(origin, state.len() as u64)));
        let mut at = 0;
        while at < state.len() {
            let end = (at + chunk_bytes.max(1)).min(state.len());
            pending.push_back(state.slice(at..end));
            at = end;
        }
        let pad = padding(state.len() as u64) as usize;
        if pad > 0 {
            pending.push_back(Bytes::from(vec![0; pad]));
        }
        Chunks { pending, hasher: Some(Sha256::new()) }
    }

    /// Total bytes the backup file has.
    pub fn total_bytes(&self) -> u64 {
        self.pending.iter().map(|c| c.len() as u64).sum::<u64>() + TRAILER_BYTES as u64
    }
}

impl Iterator for Chunks {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        if let Some(chunk) = self.pending.pop_front() {
            if let Some(h) = self.hasher.as_mut() {
                h.update(&chunk);
            }
            return Some(chunk);
        }
        let sum = self.hasher.take()?.finalize();
        Some(Bytes::copy_from_slice(&sum))
    }
}

/// A backup file checked whole: its origin and its state's bytes.
pub fn parse(file: &[u8]) -> Result<(Origin, &[u8]), BackupError> {
    if file.len() < MAGIC.len() || &file[..MAGIC.len()] != MAGIC {
        return Err(BackupError::NotABackup);
    }
    let min = (HEADER_BYTES + TRAILER_BYTES) as u64;
    if (file.len() as u64) < min {
        return Err(BackupError::Truncated { have: file.len() as u64, want: min });
    }
    let version = u32::from_be_bytes(file[8..12].try_into().unwrap_or_default());
    if version != FORMAT_VERSION {
        return Err(BackupError::UnsupportedVersion(version));
    }
    let field = |i: usize| u64::from_be_bytes(file[12 + 8 * i..20 + 8 * i].try_into().unwrap_or_default());
    let origin = Origin {
        index: field(0),
        term: field(1),
        revision: field(2) as i64,
        cluster_id: field(3),
        member_id: field(4),
    };
    let state_len = field(5);
    let want = (HEADER_BYTES as u64)
        .saturating_add(state_len)
        .saturating_add(padding(state_len))
        .saturating_add(TRAILER_BYTES as u64);
    let have = file.len() as u64;
    if have < want {
        return Err(BackupError::Truncated { have, want });
    }
    if have > want {
        return Err(BackupError::TrailingBytes(have - want));
    }
    let body_end = file.len() - TRAILER_BYTES;
    if Sha256::digest(&file[..body_end])[..] != file[body_end..] {
        return Err(BackupError::ChecksumMismatch);
    }
    let state_end = HEADER_BYTES + state_len as usize;
    if file[state_end..body_end].iter().any(|&b| b != 0) {
        return Err(BackupError::ChecksumMismatch);
    }
    Ok((origin, &file[HEADER_BYTES..state_end]))
}

/// What `cairn snapshot status` reports (etcdctl's fields).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// `etcdctl endpoint hashkv`'s hash of the keys at the backup's revision (Cairn's HashKV),
    /// so a backup can be checked against a live member.
    pub hash: u32,
    pub revision: i64,
    pub total_keys: u64,
    pub total_size: u64,
}

/// Checks a backup file whole and decodes its state.
pub fn read(file: &[u8]) -> Result<(Origin, StateMachine), BackupError> {
    let (origin, state) = parse(file)?;
    let sm = StateMachine::decode(state).map_err(BackupError::State)?;
    Ok((origin, sm))
}

pub fn status(file: &[u8]) -> Result<Status, BackupError> {
    let (_, sm) = read(file)?;
    let all = RangeRequest {
        key: Bytes::from_static(&[0]),
        range_end: Bytes::from_static(&[0]),
        ..Default::default()
    };
    let page = sm.mvcc().range(&all).map_err(BackupError::State)?;
    let mut hash = crate::kv_hash::KvHash::new();
    for kv in &page.kvs {
        hash.add(kv);
    }
    Ok(Status {
        hash: hash.finish(),
        revision: sm.mvcc().current_revision(),
        total_keys: sm.mvcc().len() as u64,
        total_size: file.len() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> Origin {
        Origin { index: 7, term: 2, revision: 5, cluster_id: 0xc, member_id: 0xa }
    }

    #[test]
    fn streamed_chunks_make_the_file_encode_makes_and_parse_reads_it_back() {
        let state = StateMachine::new().encode();
        let whole = encode(&origin(), &state);
        let chunks = Chunks::new(&origin(), Bytes::from(state.clone()), 3);
        assert_eq!(chunks.total_bytes(), whole.len() as u64);
        let streamed: Vec<u8> = chunks.flat_map(|c| c.to_vec()).collect();
        assert_eq!(streamed, whole);
        assert_eq!(whole.len() % ALIGN_BYTES, TRAILER_BYTES, "etcdctl's length check");
        assert_eq!(parse(&whole).ok(), Some((origin(), &state[..])));
        assert_eq!(status(&whole).ok().map(|s| s.total_keys), Some(0));
    }

    #[test]
    fn damaged_files_are_refused_saying_why() {
        let whole = encode(&origin(), &StateMachine::new().encode());
        assert!(matches!(parse(b"SQLite format 3\0"), Err(BackupError::NotABackup)));
        assert!(matches!(parse(&whole[..whole.len() - 1]), Err(BackupError::Truncated { .. })));
        assert!(matches!(parse(&whole[..20]), Err(BackupError::Truncated { .. })));
        let mut longer = whole.clone();
        longer.push(0);
        assert!(matches!(parse(&longer), Err(BackupError::TrailingBytes(1))));
        let mut flipped = whole.clone();
        flipped[HEADER_BYTES] ^= 1;
        assert!(matches!(parse(&flipped), Err(BackupError::ChecksumMismatch)));
        let mut version = whole.clone();
        version[11] = 9;
        assert!(matches!(parse(&version), Err(BackupError::UnsupportedVersion(9))));
        // Intact framing around a state that is not one.
        let junk = encode(&origin(), b"\x04not a state");
        assert!(matches!(read(&junk), Err(BackupError::State(_))));
    }
}
