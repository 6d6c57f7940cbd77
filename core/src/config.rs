//! A member's configuration. Every member of a cluster must use the same values for the
//! settings marked *cluster-wide*: they shape what the state machine does on apply.

/// etcd's default `--max-request-bytes` (1.5 MiB).
pub const REQUEST_BYTES_MAX_DEFAULT: usize = 1536 * 1024;

/// etcd's default `--quota-backend-bytes` (2 GiB).
pub const QUOTA_BYTES_DEFAULT: u64 = 2 * 1024 * 1024 * 1024;

/// etcd's auto-compaction modes (see `node::compaction`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AutoCompaction {
    /// Keep `retention_ms` of history.
    Periodic { retention_ms: u64 },
    /// Keep `retain` revisions, compacting every `interval_ms` (etcd: five minutes).
    Revision { retain: i64, interval_ms: u64 },
}

#[derive(Clone, Debug)]
pub struct Config {
    /// This member's id, non-zero.
    pub id: u64,
    /// The voters a new cluster starts with (ignored on restart: membership comes from the log).
    /// Empty for a member joining an existing cluster: it learns the members from the leader.
    pub voters: Vec<u64>,
    /// The initial voters' peer URLs, written with them into a new cluster's first entries
    /// (*cluster-wide*: every initial member must give the same).
    pub peer_urls: std::collections::BTreeMap<u64, Vec<String>>,
    /// Seeds everything random in the member (election timeouts, proposal nonces). Must differ
    /// between members, and between boots of one member, for elections to break ties and for
    /// proposals from before a restart never to be taken for ones after it. A simulator derives
    /// it from its run seed; a real driver draws it from the OS.
    pub seed: u64,
    /// Milliseconds per Raft tick (etcd's `--heartbeat-interval`).
    pub tick_ms: u64,
    /// Heartbeat interval in ticks.
    pub heartbeat_ticks: usize,
    /// Election timeout in ticks; the randomized timeout is drawn from
    /// `[election_ticks, 2 * election_ticks)`.
    pub election_ticks: usize,
    /// Applied entries between state machine snapshots (etcd's `--snapshot-count`).
    pub snapshot_entries: u64,
    /// Entries kept in the log behind a snapshot, so a follower that is only a little behind
    /// catches up from the log rather than by snapshot (etcd's `SnapshotCatchUpEntries`).
    pub snapshot_catch_up_entries: u64,
    /// Snapshot bytes encoded per `Core::advance`, about: a large store is snapshotted over
    /// many calls (see `SnapshotBuilder`), so that no call holds up the member for long
    /// (encoding runs at several hundred MiB/s; the first touch of the buffer's fresh pages
    /// costs more: on a virtual machine here, ~5 ms per MiB).
    pub snapshot_step_bytes: usize,
    /// Largest encoded request accepted (`Error::RequestTooLarge` above it).
    pub request_bytes_max: usize,
    /// The store's space quota in bytes (etcd's `--quota-backend-bytes`), measured as
    /// `Mvcc::bytes`: a write that would take the store past it is refused with
    /// `Error::NoSpace` and raises this member's `NoSpace` alarm (see `alarm`).
    pub quota_bytes: u64,
    /// As leader, send followers the state machine digest at this member's applied index this
    /// often; a follower whose own digest at that index differs raises a CORRUPT alarm
    /// (`node::corruption`). None: no check.
    pub corrupt_check_ms: Option<u64>,
    /// Compact the store on a schedule (leader's decision, through the log); None: only on
    /// request. Not cluster-wide: whichever member leads applies its own setting.
    pub auto_compaction: Option<AutoCompaction>,
    /// Most operations in one txn's compare, success or failure list (`Error::TooManyOps`),
    /// checked when the txn is submitted. The store checks `mvcc::MAX_TXN_OPS` (etcd's 128) again
    /// at apply, identically on every replica, so a larger value here has no effect.
    pub txn_ops_max: usize,
    /// Most history a watch page holds (`watch::WatchPage`), as `Mvcc::events_page` counts it;
    /// a single revision larger than this is a page of its own.
    pub watch_page_bytes: usize,
    /// Largest append message, in bytes of entries (raft-rs `max_size_per_msg`).
    pub append_bytes_max: u64,
    /// Appends in flight to one follower before the leader waits for acknowledgements.
    pub appends_inflight_max: usize,
    /// Batches of proposals a leader keeps in flight (appended, not yet committed) before it
    /// holds new proposals back to go as one batch when one commits (see `node::Held`).
    pub proposal_batches_max: usize,
    /// Requests a member holds awaiting commit or a read index; more are refused with
    /// `Error::TooManyRequests` rather than queued.
    pub pending_requests_max: usize,
    /// A request not answered within this many milliseconds ends in `Error::TimedOut`
    /// (its outcome unknown).
    pub request_timeout_ms: u64,
    /// As leader, promote a learner on its own once it has been in sync (etcd's promotion rule)
    /// and in touch for this many milliseconds without a break; None: only on request (etcd's
    /// behaviour). Not cluster-wide: whichever member leads applies its own setting.
    pub auto_promote_learners_after_ms: Option<u64>,
    /// Raft pre-vote (a partitioned member cannot disrupt the cluster when it returns).
    pub pre_vote: bool,
    /// Raft check-quorum (a leader steps down when it loses touch with a majority).
    pub check_quorum: bool,
    /// A deliberately planted bug, for proving that the simulator's checkers catch one:
    /// linearizable ranges are served from local state without a ReadIndex round, so a
    /// partitioned or lagging member answers stale reads. Only with the `planted-bugs`
    /// feature, which production builds do not enable.
    #[cfg(feature = "planted-bugs")]
    pub planted_bug_stale_reads: bool,
    /// A deliberately planted bug: a learner is added to Raft's configuration as a voter
    /// while the member list says learner, so it votes and counts toward commits.
    #[cfg(feature = "planted-bugs")]
    pub planted_bug_learner_votes: bool,
    /// A deliberately planted bug: a write's permissions are checked against this member's
    /// auth store when it is proposed, not when it applies, so a write proposed before a
    /// revocation and applied after it goes through.
    #[cfg(feature = "planted-bugs")]
    pub planted_bug_auth_at_proposal: bool,
}

impl Config {
    /// Defaults matching etcd's where etcd has one, for member `id` of a cluster of `voters`.
    pub fn new(id: u64, voters: Vec<u64>, seed: u64) -> Config {
        Config {
            id,
            voters,
            peer_urls: Default::default(),
            seed,
            tick_ms: 100,
            heartbeat_ticks: 1,
            election_ticks: 10,
            snapshot_entries: 100_000,
            snapshot_catch_up_entries: 5_000,
            snapshot_step_bytes: 1 << 20,
            request_bytes_max: REQUEST_BYTES_MAX_DEFAULT,
            quota_bytes: QUOTA_BYTES_DEFAULT,
            auto_compaction: None,
            corrupt_check_ms: Some(5_000),
            txn_ops_max: crate::mvcc::MAX_TXN_OPS,
            watch_page_bytes: 1 << 20,
            append_bytes_max: 1024 * 1024,
            appends_inflight_max: 256,
            proposal_batches_max: 2,
            pending_requests_max: 10_000,
            request_timeout_ms: 7_000,
            auto_promote_learners_after_ms: None,
            pre_vote: true,
            check_quorum: true,
            #[cfg(feature = "planted-bugs")]
            planted_bug_stale_reads: false,
            #[cfg(feature = "planted-bugs")]
            planted_bug_learner_votes: false,
            #[cfg(feature = "planted-bugs")]
            planted_bug_auth_at_proposal: false,
        }
    }

    pub fn election_timeout_ms(&self) -> u64 {
        self.election_ticks as u64 * self.tick_ms
    }

    /// etcd's minimum lease TTL: 1.5 election timeouts, rounded up to whole seconds.
    /// *Cluster-wide*: grants apply it.
    pub fn lease_ttl_secs_min(&self) -> i64 {
        let ms = 3 * self.election_timeout_ms() / 2;
        ms.div_ceil(1000) as i64
    }
}
