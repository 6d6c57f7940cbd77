//! A snapshot in its own file, written whole and checksummed, so that it never goes through
//! fjall's journal and memtable (a 300 MB value there was copied, compressed and fsynced on
//! the member loop: docs/benchmarks.md, "The snapshot stall").
//!
//! ## Format
//!
//! | bytes        | what                                                   |
//! |--------------|--------------------------------------------------------|
//! | 8            | `MAGIC`                                                |
//! | 4            | `FILE_VERSION`, u32 little-endian                      |
//! | 4            | m, the metadata's length, u32 little-endian            |
//! | m            | `SnapshotMetadata`, protobuf (index, term, membership) |
//! | 8            | d, the data's length, u64 little-endian                |
//! | d            | the snapshot's data (the encoded state machine)        |
//! | 4            | CRC-32 of every byte before it, little-endian          |
//!
//! etcd's `.snap` files likewise end their record with a CRC. `read` checks the magic, the
//! lengths against the file's size and the CRC: a torn or damaged file is an error, never a
//! snapshot.
//!
//! ## Durability
//!
//! `write` writes a temporary file, fsyncs it, renames it to `file_name(index, term)` and fsyncs
//! the directory: once it returns, the file survives power loss under its final name, and a
//! crash before that leaves at most a temporary or unreferenced file, which `Storage::open`
//! deletes. A snapshot counts only once `Storage` has recorded it (see storage.rs).

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use cairn_core::eraftpb::{Snapshot, SnapshotMetadata};
use protobuf::Message as _;

pub const MAGIC: &[u8; 8] = b"CAIRNSNP";
pub const FILE_VERSION: u32 = 1;
/// Temporary files end with this; `Storage::open` deletes any it finds.
pub const TEMP_SUFFIX: &str = ".tmp";
const SUFFIX: &str = ".snap";

/// Writes in flight at once (the member's own, off the loop, and a leader's, on it) each get
/// their own temporary file.
static TEMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// The final name of the snapshot at `index`, `term`. Two snapshots at the same index and term
/// hold the same committed state, so one may replace the other.
pub fn file_name(index: u64, term: u64) -> String {
    format!("{index:016x}-{term:016x}{SUFFIX}")
}

/// Writes `s` durably to `dir/file_name(..)` (see "Durability") and returns its path. Blocks
/// on the disk: call it off the member loop where it can wait. An error leaves no file under
/// the final name that was not there before.
pub fn write(dir: &Path, s: &Snapshot) -> io::Result<PathBuf> {
    let meta = s.get_metadata();
    assert!(meta.index >= 1 && meta.term >= 1, "snapshot at index {} term {}", meta.index, meta.term);
    let path = dir.join(file_name(meta.index, meta.term));
    let seq = TEMP_SEQ.fetch_add(1, Ordering::Relaxed);
    let temp = dir.join(format!("{}.{seq}{TEMP_SUFFIX}", file_name(meta.index, meta.term)));
    let result = write_temp(&temp, s).and_then(|()| fs::rename(&temp, &path)).and_then(|()| sync_dir(dir));
    if result.is_err() {
        // Best effort: `Storage::open` deletes it anyway.
        let _ = fs::remove_file(&temp);
    }
    result.map(|()| path)
}

fn write_temp(temp: &Path, s: &Snapshot) -> io::Result<()> {
    let meta = s.get_metadata().write_to_bytes().expect("raft's messages have no required fields");
    let mut head = Vec::with_capacity(32 + meta.len());
    head.extend_from_slice(MAGIC);
    head.extend_from_slice(&FILE_VERSION.to_le_bytes());
    head.extend_from_slice(&u32::try_from(meta.len()).expect("metadata under 4 GiB").to_le_bytes());
    head.extend_from_slice(&meta);
    head.extend_from_slice(&(s.data.len() as u64).to_le_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&head);
    crc.update(&s.data);
    let mut f = File::create(temp)?;
    f.write_all(&head)?;
    // In pieces, each made durable before the next is written: the disk then never holds a
    // whole snapshot's writeback in its queue, in front of the fsyncs of the member's log
    // (written all at once, a 33 MB snapshot held those up for 20-30 ms here).
    for piece in s.data.chunks(WRITEBACK_BYTES) {
        f.write_all(piece)?;
        f.sync_data()?;
    }
    f.write_all(&crc.finalize().to_le_bytes())?;
    f.sync_all()
}

/// Bytes of a snapshot file written between two of its fsyncs.
const WRITEBACK_BYTES: usize = 1 << 20;

/// Fsyncs a directory, so that names created, renamed or removed in it are durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Why a snapshot file could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("{0}")]
    Damaged(String),
}

/// Reads and verifies the snapshot file at `path`: `Damaged` if it is torn, altered or not a
/// snapshot file at all.
pub fn read(path: &Path) -> Result<Snapshot, ReadError> {
    let damaged = |what: String| ReadError::Damaged(format!("snapshot file {}: {what}", path.display()));
    let mut bytes = Vec::new();
    File::open(path)?.read_to_end(&mut bytes)?;
    if bytes.len() < 8 + 4 + 4 + 8 + 4 || &bytes[..8] != MAGIC {
        return Err(damaged(format!("not a snapshot file ({} bytes)", bytes.len())));
    }
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    let version = u32_at(8);
    if version != FILE_VERSION {
        return Err(damaged(format!("file version {version}, this build reads {FILE_VERSION}")));
    }
    let meta_len = u32_at(12) as usize;
    let data_at = 16 + meta_len + 8;
    if bytes.len() < data_at + 4 {
        return Err(damaged(format!("{} bytes, too short for {meta_len} bytes of metadata", bytes.len())));
    }
    let data_len = u64::from_le_bytes(bytes[data_at - 8..data_at].try_into().expect("8 bytes"));
    if (bytes.len() - data_at - 4) as u64 != data_len {
        return Err(damaged(format!("{} bytes, not the {data_len} bytes of data it announces", bytes.len())));
    }
    let crc_at = bytes.len() - 4;
    let (expected, found) = (u32_at(crc_at), crc32fast::hash(&bytes[..crc_at]));
    if expected != found {
        return Err(damaged(format!("checksum {found:08x}, expected {expected:08x}")));
    }
    let meta = SnapshotMetadata::parse_from_bytes(&bytes[16..16 + meta_len])
        .map_err(|e| damaged(format!("metadata: {e}")))?;
    let data = bytes::Bytes::from(bytes).slice(data_at..crc_at);
    let mut s = Snapshot::default();
    s.set_metadata(meta);
    s.data = data;
    Ok(s)
}

/// Whether `name` is one of this module's files, final or temporary.
pub fn is_snapshot_file(name: &str) -> bool {
    name.ends_with(SUFFIX) || name.ends_with(TEMP_SUFFIX)
}
