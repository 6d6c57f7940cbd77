//! What stops the real driver, said by cause: an operator reading it knows whether to look at
//! the disk, the network or the member's own state.

use std::net::SocketAddr;

use crate::storage::StorageError;

/// Why `start` failed, or why a running member's loop stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The peer listener could not be bound (the address is in use, or not this machine's).
    #[error("binding the peer listener {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    /// The member's storage failed to open, recover, write or fsync: it stops rather than go on
    /// with state that may not be on disk (see `storage` on why an fsync is never retried).
    #[error("{0}")]
    Storage(#[from] StorageError),
    /// Writing the member's own snapshot file failed.
    #[error("writing a snapshot file: {0}")]
    SnapshotFile(String),
    /// The storage thread could not be started, or stopped without saying why.
    #[error("the storage thread: {0}")]
    StorageThread(String),
    /// The member's metrics could not be set up.
    #[error("the metrics registry: {0}")]
    Metrics(String),
    /// A configuration change removed this member from the cluster.
    #[error("this member was removed from the cluster")]
    Removed,
    /// The core stopped: its state is untrustworthy (a corrupt log or snapshot, a disk that lost
    /// acknowledged entries), or it could not start from what storage recovered.
    #[error("{0}")]
    Core(#[from] cairn_core::Error),
}
