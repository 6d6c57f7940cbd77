//! `Pipeline`: what every driver does with a `Core`'s outputs, once, sans I/O.
//!
//! The core says *what* must be durable before what may be sent or acknowledged (`Output`,
//! `Persist`). Turning that into an order of operations is the same work for every driver: keep
//! the persists handed to the disk and not yet durable, with the messages that wait for them;
//! take the no-fsync fast path when nothing before a persist is waiting; write the member's own
//! snapshot file before recording it; hand back responses and watch updates. The pipeline does
//! that work, and the drivers (`cairn-io-tokio`, `cairn-io-sim`) only carry out what it asks:
//! they differ in *what* sends, writes, fsyncs and tells time, never in *when*. That is what
//! lets the simulator's seeds stand for production.
//!
//! Why a sans-I/O pump beside the core rather than the real loop compiled under the simulator:
//! the pump is plain data in, data out, so it runs unchanged under tokio, under madsim and in
//! in-process test harnesses, and it is tested without any runtime at all; the drivers'
//! remaining code is I/O plumbing a few hundred lines long.
//!
//! ## The contract with a driver
//! 1. After any input to the core (`Pipeline::core_mut`: `step`, `submit`, `handle_timeout`...),
//!    call `pump`. It advances the core until it has nothing more to say and returns `Effects`.
//! 2. Carry out `Effects` in field order: send `messages` at once; hand `writes` to the disk in
//!    order (a disk worker may take them while the member goes on stepping); start writing
//!    `snapshot_file` if there is one; deliver responses and watch updates.
//! 3. The disk worker writes jobs in order, fsyncs when any job in a batch asks (`sync`), and
//!    reports the last `ticket` of the batch once everything before it is durable:
//!    `on_durable(ticket)`, then `pump` again. A failed write or fsync stops the member.
//! 4. When the snapshot file is durable: `on_snapshot_file_written`, then `pump` again.
//!
//! A driver never acknowledges a persist itself and never sends `Persist::messages` itself.

use std::collections::VecDeque;

use raft::eraftpb::{Message, Snapshot, SnapshotMetadata};

use crate::node::{Core, Output, Persist, SnapshotMade};
use crate::request::{RequestId, Response};
use crate::v2::{V2Event, V2WatchId};
use crate::watch::{WatchId, WatchUpdate};
use crate::{Error, Result};

/// Most `Core::advance` calls in one `pump`. The core empties its output within a handful of
/// calls (one Raft ready each); the bound keeps a misbehaving core from holding the driver.
pub const ADVANCES_PER_PUMP_MAX: usize = 1024;

/// One job for the member's disk, in the order given.
#[derive(Debug)]
pub struct DiskWrite {
    /// Reported back through `Pipeline::on_durable` once this write (and all before it) is
    /// durable; `None` for a write nothing waits for.
    pub ticket: Option<u64>,
    /// The write must be fsynced before `ticket` is reported.
    pub sync: bool,
    pub kind: DiskWriteKind,
}

/// Nearly every write is a `Persist`: boxing it to match the rarer `RecordSnapshot` would add an
/// allocation per write.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum DiskWriteKind {
    /// A Raft ready's durable parts, in `Persist`'s field order. `messages` is always empty
    /// here: the pipeline holds them until the write is durable.
    Persist(Persist),
    /// The member's own snapshot, whose file is durable: record it; log entries before
    /// `log_first_index` may then go.
    RecordSnapshot { snapshot: Snapshot, log_first_index: u64 },
}

impl DiskWrite {
    /// The snapshot metadata a `RecordSnapshot` records.
    pub fn recorded_snapshot(&self) -> Option<(&SnapshotMetadata, u64)> {
        match &self.kind {
            DiskWriteKind::RecordSnapshot { snapshot, log_first_index } => {
                Some((snapshot.get_metadata(), *log_first_index))
            }
            DiskWriteKind::Persist(_) => None,
        }
    }
}

/// What a driver must do after `pump`, `on_durable` or `on_snapshot_file_written`, in field
/// order.
#[derive(Debug, Default)]
pub struct Effects {
    /// Send now, in order.
    pub messages: Vec<Message>,
    /// Hand to the disk, in order, after any handed before.
    pub writes: Vec<DiskWrite>,
    /// Write this snapshot's file durably, off the write queue; then call
    /// `on_snapshot_file_written`. At most one is being written at a time.
    pub snapshot_file: Option<Snapshot>,
    pub responses: Vec<(RequestId, Result<Response>)>,
    pub watch_updates: Vec<(WatchId, WatchUpdate)>,
    pub v2_watch_updates: Vec<(V2WatchId, Result<V2Event>)>,
    /// Every change to the store, in revision order (`Output::events`).
    pub events: Vec<crate::kv::Event>,
    /// Send now, each to its `to` member (`Output::forwards`).
    pub forwards: Vec<crate::forward::Forward>,
}

impl Effects {
    /// Adds `more` after what this already asks, keeping each field's order.
    pub fn append(&mut self, mut more: Effects) {
        self.messages.append(&mut more.messages);
        self.writes.append(&mut more.writes);
        if more.snapshot_file.is_some() {
            debug_assert!(self.snapshot_file.is_none(), "one snapshot file at a time");
            self.snapshot_file = more.snapshot_file;
        }
        self.responses.append(&mut more.responses);
        self.watch_updates.append(&mut more.watch_updates);
        self.v2_watch_updates.append(&mut more.v2_watch_updates);
        self.events.append(&mut more.events);
        self.forwards.append(&mut more.forwards);
    }

    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
            && self.writes.is_empty()
            && self.snapshot_file.is_none()
            && self.responses.is_empty()
            && self.watch_updates.is_empty()
            && self.v2_watch_updates.is_empty()
            && self.events.is_empty()
            && self.forwards.is_empty()
    }
}

/// Bugs planted on purpose in the pipeline, to show that the simulator catches them. Only with
/// the `planted-bugs` feature, which production builds do not enable.
#[cfg(feature = "planted-bugs")]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PlantedPipelineBug {
    #[default]
    None,
    /// Acknowledges a persist and sends its messages when the write is handed to the disk,
    /// not when it is durable: a crash can then lose a vote or an entry already acknowledged.
    AckBeforeSync,
}

/// The member's own snapshots on their way to disk: one file write at a time; a snapshot made
/// meanwhile waits, and a newer one replaces a waiting one (the log keeps the entries either
/// would let go until the newer is recorded).
#[derive(Debug, Default)]
struct SnapshotFiles {
    /// The snapshot whose file is being written, with its `log_first_index`.
    writing: Option<(Snapshot, u64)>,
    waiting: Option<SnapshotMade>,
}

/// A `Core` and the order its outputs are carried out in. See the module docs.
pub struct Pipeline {
    core: Core,
    /// Persists handed to the disk and not yet durable, oldest first: their numbers and the
    /// messages that may go only once they are.
    unacked: VecDeque<(u64, Vec<Message>)>,
    snapshots: SnapshotFiles,
    #[cfg(feature = "planted-bugs")]
    planted: PlantedPipelineBug,
}

impl Pipeline {
    pub fn new(core: Core) -> Pipeline {
        Pipeline {
            core,
            unacked: VecDeque::new(),
            snapshots: SnapshotFiles::default(),
            #[cfg(feature = "planted-bugs")]
            planted: PlantedPipelineBug::None,
        }
    }

    /// Plants `bug` (simulator tests only).
    #[cfg(feature = "planted-bugs")]
    pub fn plant(&mut self, bug: PlantedPipelineBug) {
        self.planted = bug;
    }

    /// The core back, for a driver that carries out every effect before it lets go of the
    /// pipeline (the in-process test harness). Panics if a persist is still waiting to be
    /// durable or a snapshot file to be written: that state would be lost.
    pub fn into_core(self) -> Core {
        assert!(self.unacked.is_empty(), "a persist is still waiting to be durable");
        assert!(self.snapshots.writing.is_none(), "a snapshot file is still being written");
        self.core
    }

    pub fn core(&self) -> &Core {
        &self.core
    }

    /// The core, for inputs (`step`, `submit`, `handle_timeout`, watches). Call `pump` after.
    pub fn core_mut(&mut self) -> &mut Core {
        &mut self.core
    }

    /// Persists handed to the disk and not yet reported durable.
    pub fn unacked_persists(&self) -> usize {
        self.unacked.len()
    }

    /// Advances the core until its output is empty and says what to do. `observe` sees each
    /// output as the core gave it, before the pipeline takes it apart (the simulator's trace
    /// and invariant checkers).
    ///
    /// An error is fatal: the core found its state untrustworthy; the member must stop.
    pub fn pump(&mut self, observe: &mut dyn FnMut(&Core, &Output)) -> Result<Effects> {
        let mut fx = Effects::default();
        for _ in 0..ADVANCES_PER_PUMP_MAX {
            let out = self.core.advance()?;
            if out.is_empty() {
                break;
            }
            observe(&self.core, &out);
            self.take(out, &mut fx);
        }
        self.check_invariants();
        Ok(fx)
    }

    fn take(&mut self, mut out: Output, fx: &mut Effects) {
        fx.messages.append(&mut out.messages);
        if let Some(made) = out.snapshot.take() {
            self.snapshot_made(made, fx);
        }
        if let Some(mut p) = out.persist.take() {
            let messages = std::mem::take(&mut p.messages);
            let number = p.number;
            let sync = p.must_sync;
            if !sync && self.unacked.is_empty() || self.acks_before_sync() {
                // Only a commit index moved, and nothing before it waits to be durable: its
                // messages go now, and the write needs no fsync (etcd's MustSync).
                fx.writes.push(DiskWrite { ticket: None, sync, kind: DiskWriteKind::Persist(p) });
                fx.messages.extend(messages);
                self.core.on_persisted(number);
            } else {
                self.unacked.push_back((number, messages));
                fx.writes.push(DiskWrite { ticket: Some(number), sync, kind: DiskWriteKind::Persist(p) });
            }
        }
        fx.responses.append(&mut out.responses);
        fx.watch_updates.append(&mut out.watch_updates);
        fx.v2_watch_updates.append(&mut out.v2_watch_updates);
        fx.events.append(&mut out.events);
        fx.forwards.append(&mut out.forwards);
    }

    fn acks_before_sync(&self) -> bool {
        #[cfg(feature = "planted-bugs")]
        {
            self.planted == PlantedPipelineBug::AckBeforeSync
        }
        #[cfg(not(feature = "planted-bugs"))]
        {
            false
        }
    }

    fn snapshot_made(&mut self, made: SnapshotMade, fx: &mut Effects) {
        if self.snapshots.writing.is_some() {
            self.snapshots.waiting = Some(made);
            return;
        }
        fx.snapshot_file = Some(made.snapshot.clone());
        self.snapshots.writing = Some((made.snapshot, made.log_first_index));
    }

    /// The disk made everything up to `ticket` durable (the last ticket of the batch it
    /// wrote; tickets are persist numbers and cover every smaller one). Sends what waited for
    /// it and acknowledges it to the core; call `pump` after.
    pub fn on_durable(&mut self, ticket: u64) -> Effects {
        let mut fx = Effects::default();
        let mut acked = false;
        while self.unacked.front().is_some_and(|(number, _)| *number <= ticket) {
            let (_, messages) = self.unacked.pop_front().expect("checked above");
            fx.messages.extend(messages);
            acked = true;
        }
        if acked {
            self.core.on_persisted(ticket);
        }
        fx
    }

    /// The snapshot file `Effects::snapshot_file` asked for is written: durably (`Ok`), in
    /// which case its record goes to the disk next, or not (`Err`, fatal: the disk cannot be
    /// trusted). Starts the next waiting file, if any.
    pub fn on_snapshot_file_written(&mut self, result: std::result::Result<(), String>) -> Result<Effects> {
        let Some((snapshot, log_first_index)) = self.snapshots.writing.take() else {
            return Err(Error::Corrupt(
                "a snapshot file was reported written, but none was being written".into(),
            ));
        };
        result.map_err(|e| Error::Corrupt(format!("writing a snapshot failed: {e}")))?;
        let mut fx = Effects::default();
        fx.writes.push(DiskWrite {
            ticket: None,
            sync: true,
            kind: DiskWriteKind::RecordSnapshot { snapshot, log_first_index },
        });
        if let Some(made) = self.snapshots.waiting.take() {
            self.snapshot_made(made, &mut fx);
        }
        Ok(fx)
    }

    /// What must hold between any two calls (cheap: kept on in release).
    fn check_invariants(&self) {
        let mut last = 0;
        for (number, _) in &self.unacked {
            assert!(*number > last, "unacknowledged persists are in ready order");
            last = *number;
        }
        assert!(
            self.snapshots.waiting.is_none() || self.snapshots.writing.is_some(),
            "a snapshot waits only behind one being written"
        );
    }
}
