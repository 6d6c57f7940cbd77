//! `SnapshotBuilder`: a state machine snapshot encoded a bounded piece at a time.
//!
//! Encoding a million keys at once takes the member's loop away for seconds (docs/benchmarks.md
//! measured a 6.3 s put stall), and the core has no thread to hand it to. It need not: the
//! MVCC store keeps every revision until a compaction, so the state at the snapshot's revision
//! can still be read, key by key, while later entries apply. `start` writes everything but the
//! store (small: leases, members, the v2 store, the applied index) at once; each `step` writes
//! the next keys' histories up to the snapshot's revision; `finish` hands back the very bytes
//! `StateMachine::encode` would have produced at the start.
//!
//! A compaction while building drops history the snapshot still needs: `step` then says
//! `Abandoned`, and the member starts again.

use raft::eraftpb::ConfState;

use crate::state_machine::StateMachine;

/// Where a snapshot being built stands after a `step`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Keys remain: call `step` again.
    More,
    /// Every key is written: call `finish`.
    Done,
    /// The store was compacted meanwhile: the snapshot cannot be completed; drop it.
    Abandoned,
}

/// The buffer holds a snapshot up to `1 + 1 / HEADROOM_DIVISOR` times the hint without growing.
pub const HEADROOM_DIVISOR: usize = 2;

pub struct SnapshotBuilder {
    index: u64,
    term: u64,
    conf_state: ConfState,
    /// The store's revision and compacted revision at the start.
    revision: i64,
    compacted_revision: i64,
    buf: Vec<u8>,
    /// Where in `buf` the history map's length goes (bincode's fixed 8 bytes, written at the end).
    keys_at: usize,
    keys: u64,
    /// The last key written, to continue after; None before the first step.
    cursor: Option<Box<[u8]>>,
    done: bool,
}

impl SnapshotBuilder {
    /// Starts a snapshot of `sm` as it is now, with the membership at this point.
    /// `bytes_hint` (the previous snapshot's size, say) sizes the buffer up front, with
    /// `HEADROOM_DIVISOR` room to grow: a buffer that grows is copied whole in one step, and
    /// that copy of a growing store's snapshot (300 MB for a million 256-byte values) held the
    /// member up for most of a second. Room not written to costs address space, not memory.
    pub fn start(sm: &StateMachine, conf_state: ConfState, bytes_hint: usize) -> SnapshotBuilder {
        let mut buf = Vec::with_capacity(bytes_hint.saturating_add(bytes_hint / HEADROOM_DIVISOR));
        sm.encode_header(&mut buf);
        let keys_at = buf.len();
        buf.extend_from_slice(&0u64.to_le_bytes());
        SnapshotBuilder {
            index: sm.applied_index(),
            term: sm.applied_term(),
            conf_state,
            revision: sm.mvcc().current_revision(),
            compacted_revision: sm.mvcc().compacted_revision(),
            buf,
            keys_at,
            keys: 0,
            cursor: None,
            done: false,
        }
    }

    /// The Raft index and term the snapshot is of.
    pub fn index(&self) -> u64 {
        self.index
    }

    pub fn term(&self) -> u64 {
        self.term
    }

    pub fn conf_state(&self) -> &ConfState {
        &self.conf_state
    }

    /// Writes about `bytes_max` more bytes (at least one key) of `sm`, which must be the state
    /// machine the snapshot started from, advanced by any number of entries since.
    pub fn step(&mut self, sm: &StateMachine, bytes_max: usize) -> Step {
        assert!(!self.done, "a finished snapshot was stepped");
        assert!(sm.applied_index() >= self.index, "the state machine went back under a snapshot");
        if sm.mvcc().compacted_revision() != self.compacted_revision {
            return Step::Abandoned;
        }
        let out =
            sm.mvcc().encode_keys(self.cursor.as_deref(), self.revision, bytes_max.max(1), &mut self.buf);
        self.keys += out.keys;
        self.cursor = out.last;
        if self.cursor.is_some() {
            return Step::More;
        }
        self.done = true;
        Step::Done
    }

    /// The encoded snapshot. Panics unless the last `step` said `Done`.
    pub fn finish(mut self) -> Vec<u8> {
        use bincode::Options;
        assert!(self.done, "snapshot finished before its last key");
        self.buf[self.keys_at..self.keys_at + 8].copy_from_slice(&self.keys.to_le_bytes());
        let tail = (self.revision, self.compacted_revision);
        crate::request::codec()
            .serialize_into(&mut self.buf, &tail)
            .expect("encoding into a Vec cannot fail");
        self.buf
    }
}
