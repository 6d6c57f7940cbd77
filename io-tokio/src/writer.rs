//! The member's storage on a thread of its own: the member loop hands it the writes the
//! pipeline asks for and goes on serving (stepping acknowledgements, applying, answering) while the
//! thread writes and fsyncs. An fsync on this machine takes ~150 us of wall time; done on the
//! loop, it stalled every other step of the member for as long.
//!
//! The thread takes every job queued, writes each (one fjall batch per write, in order), and
//! fsyncs once if any of them needs it (group commit), then reports the last persist number
//! the batch covered. Jobs are never reordered, so a report for number n covers every write
//! sent before n's. A failed write or fsync is reported and ends the thread: the member stops
//! (see `storage` on why an fsync is never retried).

use std::path::PathBuf;
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use cairn_core::{DiskWrite, DiskWriteKind};
use tokio::sync::mpsc;

use crate::metrics::Metrics;
use crate::storage::{Storage, StorageError};

/// What the member loop asks of its storage thread, in order: `cairn_core::DiskWrite`s, as the
/// pipeline hands them over.
pub type Job = DiskWrite;

/// A batch is done: everything sent before the last job in it is written, and durable where it
/// asked to be; the number is the last persist number among its jobs.
pub type Report = Result<Option<u64>, StorageError>;

pub struct Writer {
    jobs: Option<std_mpsc::Sender<Vec<Job>>>,
    thread: Option<JoinHandle<()>>,
    pub snapshot_dir: PathBuf,
}

impl Writer {
    /// Moves `storage` to a new thread; reports come on the returned receiver. Write and fsync
    /// times go to `metrics`.
    pub fn start(
        storage: Storage,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<(Writer, mpsc::UnboundedReceiver<Report>)> {
        let snapshot_dir = storage.snapshot_dir().to_path_buf();
        let (jobs, rx) = std_mpsc::channel();
        let (reports, reports_rx) = mpsc::unbounded_channel();
        let thread = std::thread::Builder::new()
            .name("cairn-storage".into())
            .spawn(move || run(storage, rx, reports, &metrics))?;
        Ok((Writer { jobs: Some(jobs), thread: Some(thread), snapshot_dir }, reports_rx))
    }

    /// Queues jobs, in order; never waits. Jobs sent after the thread stopped (on an error,
    /// already reported) are dropped.
    pub fn send(&self, batch: Vec<Job>) {
        if let Some(jobs) = &self.jobs {
            let _ = jobs.send(batch);
        }
    }

    /// Finishes the jobs queued, then stops the thread and closes the storage.
    pub async fn close(mut self) {
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

fn run(
    mut storage: Storage,
    jobs: std_mpsc::Receiver<Vec<Job>>,
    reports: mpsc::UnboundedSender<Report>,
    metrics: &Metrics,
) {
    while let Ok(first) = jobs.recv() {
        let batch_started = Instant::now();
        let mut number = None;
        let mut sync = false;
        let mut result = Ok(());
        let queued = std::iter::once(first).chain(std::iter::from_fn(|| jobs.try_recv().ok()));
        for job in queued.flatten() {
            if result.is_err() {
                break;
            }
            sync |= job.sync;
            number = job.ticket.or(number);
            let started = Instant::now();
            result = storage.write(&job.kind);
            let what = match job.kind {
                DiskWriteKind::RecordSnapshot { .. } => "recording a snapshot",
                DiskWriteKind::Persist(_) => "writing",
            };
            crate::slow::warn_if_slow(what, started);
        }
        if result.is_ok() {
            metrics.observe_commit(batch_started.elapsed());
        }
        if result.is_ok() && sync {
            let started = Instant::now();
            result = storage.sync();
            metrics.observe_fsync(started.elapsed());
            crate::slow::warn_if_slow("fsync", started);
        }
        let failed = result.is_err();
        if reports.send(result.map(|()| number)).is_err() || failed {
            return;
        }
    }
}
