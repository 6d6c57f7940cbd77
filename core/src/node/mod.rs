//! `Core`: one cluster member as a deterministic state machine.
//!
//! Inputs are method calls (`step`, `handle_timeout`, `submit`, `on_persisted`); everything the
//! member wants done leaves through `advance` as an `Output` value. See the crate docs for the
//! driving loop.
//!
//! Here: the driver API, `advance` and applying entries. By concept, beside it: `reads`
//! (ReadIndex), `batching` (proposals held and proposed in batches), `snapshots` (when to
//! snapshot, and sending them), `expiry` (requests, leases, v2 TTLs), `forwarding` (lease
//! requests to the leader).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use protobuf::Message as _;
use raft::eraftpb::{ConfChange, ConfChangeV2, ConfState, Entry, EntryType, HardState, Message, Snapshot};
use raft::{RawNode, StateRole};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::alarm::{AlarmAction, AlarmKind};
use crate::auth::{Access, AuthInfo};
use crate::config::Config;
use crate::forward::{is_forwardable, Forward, ForwardBody, REMOTE_REQUEST_ID_MIN};
use crate::kv::{Event, TxnRequest};
use crate::lease::Lessor;
use crate::mvcc;
use crate::request::{Caller, Command, Header, Origin, Proposal, Request, RequestId, Response, ResponseBody};
use crate::snapshot::{SnapshotBuilder, Step};
use crate::state_machine::StateMachine;
use crate::storage::LogStore;
use crate::v2::{V2Event, V2Get, V2WatchId, V2Watchers};
use crate::watch::{WatchHub, WatchId, WatchPage, WatchRequest, WatchUpdate};
use crate::{Error, Result};

mod batching;
mod compaction;
mod corruption;
mod expiry;
mod forwarding;
mod membership;
mod reads;
mod snapshots;

use batching::{Held, PendingWrite};
use membership::PendingMove;
use reads::{txn_is_serializable, PendingRead, ReadKind};

/// What a member recovered from its durable storage at boot.
#[derive(Clone, Debug, Default)]
pub struct Recovered {
    pub hard_state: HardState,
    /// The membership as last persisted (`Output::conf_state`). Not what the member restarts
    /// with: that is the snapshot's, the changes after it being applied again from the log.
    pub conf_state: ConfState,
    /// The latest snapshot, if one was persisted.
    pub snapshot: Option<Snapshot>,
    /// Every entry after the snapshot, contiguous and in order.
    pub entries: Vec<Entry>,
}

/// Everything `advance` hands the driver. Fields say when they may be acted on.
#[derive(Debug, Default)]
pub struct Output {
    /// Send now, in order, before or while persisting.
    pub messages: Vec<Message>,
    /// Write durably, then send `persist.messages`, then call `on_persisted(persist.number)`.
    pub persist: Option<Persist>,
    /// Answers to `submit`, each exactly once per request id. May be delivered at once.
    pub responses: Vec<(RequestId, Result<Response>)>,
    /// Every change to the store, in revision order, as entries apply. Events of one revision
    /// are contiguous. A member replays committed entries after a restart, so a driver may see
    /// a revision again after `Core::new`; never within one boot.
    pub events: Vec<Event>,
    /// What each open watch is owed (see `Core::watch`), in order per watch.
    pub watch_updates: Vec<(WatchId, WatchUpdate)>,
    /// What open v2 watches (`Core::v2_watch`) fire with: an event, or error 400 when a
    /// snapshot replaced the store. A one-shot watch is closed once it fired.
    pub v2_watch_updates: Vec<(V2WatchId, Result<V2Event>)>,
    /// The member snapshotted its state machine: persist the snapshot durably; after that, log
    /// entries before `log_first_index` are no longer needed and may be deleted.
    pub snapshot: Option<SnapshotMade>,
    /// Requests for other members to serve, and replies to theirs: send now, to `Forward::to`
    /// (see `forward`).
    pub forwards: Vec<Forward>,
}

/// Durable writes for one Raft ready, in field order: membership, snapshot, entries, hard
/// state; then, once all of them are durable, the messages. Storage takes this (with the
/// member's own snapshot record, `pipeline::DiskWriteKind`) and nothing else of an `Output`.
#[derive(Debug, Default)]
pub struct Persist {
    /// Acknowledge with `on_persisted(number)`; acknowledging a number acknowledges every
    /// smaller one, so a driver may persist several in one fsync and acknowledge the last.
    pub number: u64,
    /// The membership, when a configuration change or a leader's snapshot moved it (latest
    /// wins). A restarted member must know the voters it last applied before it may vote or
    /// count votes, so this is as durable as the entries.
    pub conf_state: Option<ConfState>,
    /// A snapshot from the leader: replaces the whole log up to its index.
    pub snapshot: Option<Snapshot>,
    /// Entries to append. The first may overwrite: an entry at index i replaces every stored
    /// entry at index >= i.
    pub entries: Vec<Entry>,
    pub hard_state: Option<HardState>,
    /// May only be sent once everything above is durable (votes, append acknowledgements).
    pub messages: Vec<Message>,
    /// False when nothing here must survive a crash: no membership, snapshot or entries, and a hard state
    /// whose term and vote are as last persisted (only the commit index moved, which a
    /// restarted member learns again from the leader; a snapshot raises it on recovery). The
    /// driver still writes it, in order, but need not fsync for it: if nothing written before
    /// it waits for an fsync, it may send `messages` and acknowledge `number` at once. This is
    /// etcd's `MustSync`; it spares followers and the leader an fsync per commit-index change.
    pub must_sync: bool,
}

#[derive(Debug)]
pub struct SnapshotMade {
    pub snapshot: Snapshot,
    pub log_first_index: u64,
}

impl Output {
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
            && self.persist.is_none()
            && self.responses.is_empty()
            && self.events.is_empty()
            && self.watch_updates.is_empty()
            && self.v2_watch_updates.is_empty()
            && self.snapshot.is_none()
            && self.forwards.is_empty()
    }
}

pub struct Core {
    config: Config,
    raw: RawNode<LogStore>,
    sm: StateMachine,
    rng: ChaCha8Rng,
    /// Drawn from the seed at boot; marks this boot's proposals (see `Origin`).
    nonce: u64,
    next_seq: u64,
    now_ms: u64,
    next_tick_ms: u64,
    /// Wall-clock time (Unix nanoseconds) as the driver last gave it; 0 until then.
    wall_ns: i64,
    /// When the next v2 expiry beat is due (`now_ms` scale).
    v2_expire_beat_ms: u64,

    /// Role and term as last seen, to notice elections (see `sync_role`).
    role: StateRole,
    term: u64,
    /// The randomized election timeout the core last chose.
    election_timeout_ticks: usize,
    /// As leader: index of the first entry of this term; 0 otherwise.
    term_start_index: u64,

    ids: BTreeSet<RequestId>,
    writes: BTreeMap<u64, PendingWrite>,
    reads: BTreeMap<u64, PendingRead>,
    /// The ReadIndex round last started; rounds number from 1.
    read_round: u64,
    /// When unresolved reads next start a new ReadIndex round (the last may have been lost).
    read_retry_ms: u64,
    lessor: Lessor,
    watches: WatchHub,
    v2_watches: V2Watchers,
    last_snapshot_index: u64,
    /// The snapshot being encoded, a step per `advance` (see `SnapshotBuilder`).
    snapshot_building: Option<SnapshotBuilder>,
    /// Backups asked for since the snapshot being built started (answered by the next one),
    /// and those the one being built answers, with the store revision it started at.
    backups_waiting: Vec<RequestId>,
    backups_building: Vec<RequestId>,
    backup_revision: i64,
    /// The size of the last snapshot built, to size the next one's buffer.
    snapshot_bytes_last: usize,
    /// Bytes of entries applied since the last snapshot started: with `snapshot_bytes_last`,
    /// about how large the next one is (a store without compactions keeps what it applied).
    applied_bytes: usize,
    /// Raft ticks since boot.
    ticks: u64,
    /// As leader: peers raft-rs is sending a snapshot to, with the tick it started. A snapshot
    /// message can be lost, and raft-rs then waits for `report_snapshot` forever; the core
    /// reports failure after `SNAPSHOT_RETRY_ELECTIONS` election timeouts so it is sent again.
    snapshot_sending_since: BTreeMap<u64, u64>,
    /// A leader snapshot waiting to be acknowledged as persisted before raft-rs may count it
    /// as applied: (ready number, snapshot index).
    snapshot_unpersisted: Option<(u64, u64)>,
    /// The membership as the entries applied in this ready left it, for its `Persist`.
    conf_applied: Option<ConfState>,
    /// Term and vote as last handed out to persist (see `Persist::must_sync`).
    term_vote: (u64, u64),
    /// Proposals waiting for a batch in flight to commit (see `Held`).
    held: Held,
    /// Requests this member forwarded to the leader, by forward id: the request they answer,
    /// and when to give up on the reply.
    forwarded: BTreeMap<u64, (RequestId, u64)>,
    next_forward: u64,
    /// Requests other members forwarded here, by the id this member serves them under: who
    /// sent each, and its forward id.
    remote: BTreeMap<RequestId, (u64, u64)>,
    next_remote: RequestId,
    /// Leader moves waiting for their transferee to lead.
    moves: Vec<PendingMove>,
    /// `campaign` was called before committed entries were applied (see there).
    campaign_when_applied: bool,
    /// When a message from each peer last arrived (`now_ms`), for the strict reconfiguration
    /// check.
    heard_from: BTreeMap<u64, u64>,
    /// As leader with auto-promotion: since when each learner has been in sync.
    in_sync_since: BTreeMap<u64, u64>,
    /// A configuration change removed this member (see `is_removed`).
    removed: bool,
    /// Set when the member found its own state untrustworthy; every later `advance` fails.
    fatal: Option<Error>,
    /// What the member counted since boot (see `Counters`).
    counters: Counters,
    /// When this member last proposed its `NoSpace` alarm (see `check_quota`).
    nospace_raised_ms: Option<u64>,
    /// Revision samples and timing for auto-compaction (see `compaction`).
    compactor: compaction::Compactor,
    /// Recent applied digests, for the corruption check (see `corruption`).
    digests: corruption::DigestLog,
    /// The last leader seen (0 before any), for `Counters::leader_changes_seen`.
    last_leader: u64,
    out: Output,
}

/// What a CORRUPT alarm stops (etcd's corrupt applier): the key-value store and leases.
fn refused_when_corrupt(request: &Request) -> bool {
    matches!(
        request,
        Request::Range(_)
            | Request::Put(_)
            | Request::DeleteRange(_)
            | Request::Txn(_)
            | Request::Compact(_)
            | Request::LeaseGrant { .. }
            | Request::LeaseRevoke { .. }
    )
}

/// What a lease costs against the space quota (etcd's lease overhead).
const LEASE_COST_BYTES: u64 = 64;

/// What a put adds to `Mvcc::bytes`, about (the store counts the key and value as held).
fn put_cost(p: &crate::kv::PutRequest) -> u64 {
    (p.key.len() + p.value.len()) as u64 + crate::mvcc::CHANGE_OVERHEAD_BYTES
}

/// Every put a txn could make, on either branch.
fn txn_cost(t: &TxnRequest) -> u64 {
    t.success
        .iter()
        .chain(&t.failure)
        .map(|op| match op {
            crate::kv::RequestOp::Put(p) => put_cost(p),
            crate::kv::RequestOp::Txn(inner) => txn_cost(inner),
            _ => 0,
        })
        .sum()
}

/// Totals a member keeps since it booted, for its operator's metrics (etcd's
/// `etcd_server_leader_changes_seen_total` and `etcd_server_proposals_failed_total`). Counted
/// by the core, so the same inputs count the same on every driver.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Times this member saw a leader other than the last one it saw (the first counts).
    pub leader_changes_seen: u64,
    /// Writes proposed here that failed before they were applied: the proposal was refused,
    /// dropped or timed out (a write answered with an error of its own, e.g. a failed
    /// compare, was applied and is not counted).
    pub proposals_failed: u64,
    /// Times this member found its state machine digest differs from the leader's at the same
    /// index (see `corruption`).
    pub corruption_detected: u64,
}

impl Core {
    /// Starts a member: a new one (`recovered` None) or one restarting from its storage.
    pub fn new(config: Config, recovered: Option<Recovered>) -> Result<Core> {
        assert!(config.id != 0, "member ids are non-zero");
        assert!(config.election_ticks > config.heartbeat_ticks, "election timeout must exceed the heartbeat");
        let out = Output::default();
        let bootstrap = recovered.is_none() && !config.voters.is_empty();
        let (store, sm) = match recovered {
            // A new cluster's member (see `bootstrap`), or one joining an existing cluster,
            // which learns everything from the leader.
            None => (LogStore::new_empty(), StateMachine::new()),
            Some(r) => {
                let sm = match &r.snapshot {
                    Some(s) => StateMachine::decode(s.get_data())?,
                    None => StateMachine::new(),
                };
                if let Some(s) = &r.snapshot {
                    let meta = s.get_metadata();
                    if sm.applied_index() != meta.index {
                        return Err(Error::Corrupt(format!(
                            "snapshot at index {} holds state applied to {}",
                            meta.index,
                            sm.applied_index()
                        )));
                    }
                }
                // The configuration as of the snapshot (or the empty one before the first
                // entry), not the latest persisted: committed entries after the snapshot are
                // applied again, configuration changes among them, and each must apply to the
                // configuration it was made for (as etcd restores it from its snapshot).
                let conf_state = r
                    .snapshot
                    .as_ref()
                    .map(|s| s.get_metadata().get_conf_state().clone())
                    .unwrap_or_default();
                // Without a snapshot the log must start with the configuration: a new cluster's
                // bootstrap entries, or the leader's log from them. One that does not was written
                // by a Cairn from before membership changes, and would start with no voters.
                if r.snapshot.is_none()
                    && r.entries
                        .first()
                        .is_some_and(|e| e.index == 1 && e.get_entry_type() != EntryType::EntryConfChangeV2)
                {
                    return Err(Error::Corrupt(
                        "this log was written by an older Cairn (its first entry is not the cluster's \
                         configuration): start this member with an empty data dir, after `etcdctl member \
                         remove` and `member add`, and it catches up from its peers"
                            .into(),
                    ));
                }
                let store = LogStore::recover(r.snapshot, r.hard_state, conf_state, &r.entries)
                    .map_err(|e| Error::Corrupt(format!("recovered log: {e}")))?;
                (store, sm)
            }
        };
        let raft_config = raft::Config {
            id: config.id,
            election_tick: config.election_ticks,
            heartbeat_tick: config.heartbeat_ticks,
            applied: sm.applied_index(),
            max_size_per_msg: config.append_bytes_max,
            max_inflight_msgs: config.appends_inflight_max,
            check_quorum: config.check_quorum,
            pre_vote: config.pre_vote,
            read_only_option: raft::ReadOnlyOption::Safe,
            max_committed_size_per_ready: 4 * config.append_bytes_max,
            batch_append: true,
            ..Default::default()
        };
        raft_config.validate().map_err(|e| Error::Raft(e.to_string()))?;
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let raw = RawNode::new(&raft_config, store, &logger).map_err(|e| Error::Raft(e.to_string()))?;
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let nonce = rng.gen();
        let last_snapshot_index = sm.applied_index();
        // What recovery read (or a new member's zero state): already durable.
        let raw_hs = raw.raft.hard_state();
        let mut core = Core {
            raw,
            sm,
            rng,
            nonce,
            next_seq: 1,
            now_ms: 0,
            next_tick_ms: config.tick_ms,
            wall_ns: 0,
            v2_expire_beat_ms: 0,
            role: StateRole::Follower,
            term: u64::MAX,
            election_timeout_ticks: 0,
            term_start_index: 0,
            ids: BTreeSet::new(),
            writes: BTreeMap::new(),
            reads: BTreeMap::new(),
            read_round: 0,
            read_retry_ms: 0,
            lessor: Lessor::default(),
            watches: WatchHub::default(),
            v2_watches: V2Watchers::default(),
            last_snapshot_index,
            snapshot_building: None,
            backups_waiting: Vec::new(),
            backups_building: Vec::new(),
            backup_revision: 0,
            snapshot_bytes_last: 0,
            applied_bytes: 0,
            ticks: 0,
            snapshot_sending_since: BTreeMap::new(),
            snapshot_unpersisted: None,
            conf_applied: None,
            term_vote: (raw_hs.term, raw_hs.vote),
            held: Held::default(),
            forwarded: BTreeMap::new(),
            next_forward: 1,
            remote: BTreeMap::new(),
            next_remote: REMOTE_REQUEST_ID_MIN,
            moves: Vec::new(),
            campaign_when_applied: false,
            heard_from: BTreeMap::new(),
            in_sync_since: BTreeMap::new(),
            removed: false,
            fatal: None,
            counters: Counters::default(),
            nospace_raised_ms: None,
            compactor: compaction::Compactor::default(),
            digests: corruption::DigestLog::default(),
            last_leader: 0,
            out,
            config,
        };
        if bootstrap {
            core.bootstrap();
        }
        if core.sm.was_removed(core.config.id) {
            core.removed = true;
        }
        core.sync_role();
        Ok(core)
    }

    pub fn id(&self) -> u64 {
        self.config.id
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The leader this member knows of, 0 if none.
    pub fn leader(&self) -> u64 {
        self.raw.raft.leader_id
    }

    pub fn is_leader(&self) -> bool {
        self.raw.raft.state == StateRole::Leader
    }

    pub fn role(&self) -> StateRole {
        self.raw.raft.state
    }

    pub fn term(&self) -> u64 {
        self.raw.raft.term
    }

    pub fn commit_index(&self) -> u64 {
        self.raw.raft.raft_log.committed
    }

    pub fn applied_index(&self) -> u64 {
        self.sm.applied_index()
    }

    /// The replicated state as applied so far: for status pages, for a watch server reading
    /// history (`state().mvcc().events(..)`), and for tests comparing replicas.
    /// What the member counted since boot.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Writes proposed through this member and not yet answered (etcd's
    /// `etcd_server_proposals_pending`).
    pub fn proposals_pending(&self) -> usize {
        self.writes.len()
    }

    pub fn state(&self) -> &StateMachine {
        &self.sm
    }

    /// The time the core last saw, in the driver's milliseconds.
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// When to call `handle_timeout` next, in the driver's milliseconds. A simulator may jump
    /// straight there.
    pub fn poll_timeout(&self) -> u64 {
        if self.snapshot_building.is_some() {
            // Work to do at once: the next step of the snapshot.
            return self.now_ms;
        }
        self.next_tick_ms
    }

    /// Starts an election at once rather than waiting for the timeout (tests, leader
    /// transfer, a single-member cluster's first boot).
    ///
    /// raft-rs will not campaign while committed configuration changes wait to be applied (a
    /// new member's bootstrap entries, at first): the election then starts once they are.
    pub fn campaign(&mut self) {
        if self.raw.raft.raft_log.committed > self.raw.raft.raft_log.applied {
            self.campaign_when_applied = true;
            return;
        }
        self.campaign_when_applied = false;
        // Refused only when this member cannot be leader (not a voter): nothing to do then.
        let _ = self.raw.campaign();
        self.sync_role();
    }

    /// A Raft message from a peer. Messages that are not for this member, or that raft-rs
    /// rejects as malformed (a local message type, an unknown peer), are dropped.
    pub fn step(&mut self, msg: Message) {
        if self.fatal.is_some()
            || msg.to != self.config.id
            || raft::raw_node::is_local_msg(msg.get_msg_type())
        {
            return;
        }
        // A leader only sends a heartbeat committing up to what this member acknowledged as
        // persisted. If that is past the end of the log, this member's storage lost entries it
        // had acknowledged: its state cannot be trusted (raft-rs would panic here).
        let last_index = self.raw.raft.raft_log.last_index();
        if msg.get_msg_type() == raft::eraftpb::MessageType::MsgHeartbeat
            && msg.term >= self.raw.raft.term
            && msg.commit > last_index
        {
            self.fatal = Some(Error::Corrupt(format!(
                "leader {} says entries up to {} are committed here, but this member's log ends at {}: \
                 storage lost entries it had acknowledged as persisted",
                msg.from, msg.commit, last_index
            )));
            return;
        }
        self.heard_from.insert(msg.from, self.now_ms);
        if msg.get_msg_type() == raft::eraftpb::MessageType::MsgPropose && !msg.entries.is_empty() {
            // Proposals a follower forwarded: batched with this member's own.
            self.held.push(msg.entries.into(), None);
            return;
        }
        let _ = self.raw.step(msg);
        self.sync_role();
    }

    /// Time passes. `now_ms` is the member's clock; a clock that goes backwards is held where
    /// it was. At most one Raft tick fires per call, as with a ticker that drops late ticks: a
    /// clock that leaps forward does not fire a burst of elections.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        self.now_ms = self.now_ms.max(now_ms);
        if self.now_ms >= self.next_tick_ms {
            self.raw.tick();
            self.ticks += 1;
            self.next_tick_ms = self.now_ms + self.config.tick_ms;
            self.sync_role();
            self.retry_lost_snapshots();
            self.auto_promote();
            self.auto_compact();
            self.send_digest_checks();
        }
        self.expire_requests();
        self.expire_leases();
        self.expire_v2();
        if self.read_retry_ms != 0 && self.now_ms >= self.read_retry_ms {
            // Unresolved reads start a new round: the old one may have died with a leader.
            for r in self.reads.values_mut().filter(|r| r.index.is_none()) {
                r.round = 0;
            }
            self.read_retry_ms = 0;
        }
    }

    /// A client request. The answer comes out of `advance` under `id`, exactly once. `id` must
    /// be below `forward::REMOTE_REQUEST_ID_MIN`.
    /// The client gave no credentials: once authentication is on, it may do nothing.
    pub fn submit(&mut self, id: RequestId, request: Request) {
        self.submit_with_auth(id, request, None);
    }

    /// A client request from `who`, as the front end verified their token or certificate (see
    /// `auth`); None for a client without credentials.
    pub fn submit_with_auth(&mut self, id: RequestId, request: Request, who: Option<AuthInfo>) {
        self.submit_by(id, request, Caller::client(who));
    }

    /// `submit` for `caller`: a client (`Caller::client`), or the member's own driver
    /// (`Caller::Member`: its health probes, its publication of itself), which auth never
    /// refuses.
    pub fn submit_by(&mut self, id: RequestId, request: Request, caller: Caller) {
        assert!(id < REMOTE_REQUEST_ID_MIN, "request id {id} is in the core's own range");
        self.submit_as(id, request, caller);
    }

    fn submit_as(&mut self, id: RequestId, request: Request, caller: Caller) {
        if !self.ids.insert(id) {
            // Not recorded: the first request under this id keeps it.
            self.out.responses.push((id, Err(Error::DuplicateRequestId(id))));
            return;
        }
        if self.is_removed() {
            self.respond(id, Err(Error::MemberRemoved));
            return;
        }
        if self.is_learner() && !Core::learner_may_serve(&request) {
            self.respond(id, Err(Error::NotSupportedForLearner));
            return;
        }
        if let Err(e) = self.route(id, request, caller) {
            self.respond(id, Err(e));
        }
    }

    /// Checks what `caller` may do before the request goes further: requests served here and
    /// now, and those that need the root role (membership, maintenance). Writes through the log
    /// are checked again when they apply, as the auth store stands then; linearizable reads
    /// when they are served.
    fn check_caller(&self, caller: &Caller, request: &Request) -> Result<()> {
        match request {
            // Open to every client, as etcd 3.4 leaves them (a keep-alive stream outlives
            // tokens and auth changes; a lease's keys are checked when it is revoked): a
            // member announcing itself; the auth store's queries, which check their callers
            // themselves (its status tells a client with old credentials to authenticate
            // again); the member list; leases granted, kept alive, listed, looked at without
            // their keys; alarms listed.
            Request::PublishMember { .. }
            | Request::AuthQuery(_)
            | Request::MemberList
            | Request::LeaseGrant { .. }
            | Request::LeaseKeepAlive { .. }
            | Request::LeaseTimeToLive { keys: false, .. }
            | Request::LeaseLeases
            | Request::LeaseRevoke { .. }
            | Request::Alarm { action: AlarmAction::Get, .. } => return Ok(()),
            _ => {}
        }
        let leases = self.sm.leases();
        self.check_needs(caller, |needs| match request {
            Request::Range(r) => needs.push(Access::Read { key: &r.key, range_end: &r.range_end }),
            Request::Txn(t) if !t.is_write() => crate::auth::txn_accesses(t, needs),
            // The keys of a lease, listed, must be readable (etcd 3.4.26's rule).
            Request::LeaseTimeToLive { id, .. } => {
                if let Some(lease) = leases.get(*id) {
                    needs.extend(lease.keys.iter().map(|k| Access::Read { key: k, range_end: &[] }));
                }
            }
            Request::MemberAdd { .. }
            | Request::MemberRemove { .. }
            | Request::MemberUpdate { .. }
            | Request::MemberPromote { .. }
            | Request::MoveLeader { .. }
            | Request::Backup
            | Request::PrefixQuotaList
            | Request::V2Get(_) => needs.push(Access::Admin),
            Request::Alarm { action, .. } if *action != AlarmAction::Get => needs.push(Access::Admin),
            // Writes: checked when they apply; here, only that the credentials are valid (a
            // compaction needs no more, as in etcd 3.4).
            _ => {}
        })
    }

    /// Whether `caller` may do what `needs` lists, as this member's auth store stands.
    pub(super) fn check_needs<'a>(
        &self,
        caller: &Caller,
        needs: impl FnOnce(&mut Vec<Access<'a>>),
    ) -> Result<()> {
        let auth = self.sm.auth();
        if !auth.is_enabled() {
            return Ok(());
        }
        let who = match caller {
            Caller::Member => return Ok(()),
            Caller::Anonymous => return Err(Error::UserEmpty),
            Caller::User(who) => who,
        };
        let mut list = vec![];
        needs(&mut list);
        auth.check(who, &list)
    }

    fn route(&mut self, id: RequestId, request: Request, caller: Caller) -> Result<()> {
        if self.writes.len() + self.reads.len() >= self.config.pending_requests_max {
            return Err(Error::TooManyRequests);
        }
        if self.sm.alarms().iter().any(|a| a.kind == AlarmKind::Corrupt) && refused_when_corrupt(&request) {
            return Err(Error::CorruptCluster);
        }
        self.check_caller(&caller, &request)?;
        // etcd's gRPC layer refuses these before they reach Raft, so a request that can only
        // fail costs no log entry; every front end gets the same checks here.
        match &request {
            Request::Range(r) => mvcc::check_range_request(r)?,
            Request::Put(p) => mvcc::check_put_request(p)?,
            Request::DeleteRange(d) => mvcc::check_delete_request(d)?,
            _ => {}
        }
        match request {
            Request::Range(r) if r.serializable || self.planted_stale_reads() => {
                let body = self.sm.read_range(&r)?;
                self.respond(id, Ok(self.response(self.sm.mvcc().current_revision(), body)));
                Ok(())
            }
            Request::Range(r) => {
                self.check_size(&r)?;
                self.add_read(id, ReadKind::Range(r), caller);
                Ok(())
            }
            Request::Txn(t) if !t.is_write() => {
                self.check_txn(&t)?;
                if txn_is_serializable(&t) {
                    let body = self.sm.read_txn(&t)?;
                    self.respond(id, Ok(self.response(self.sm.mvcc().current_revision(), body)));
                } else {
                    self.add_read(id, ReadKind::Txn(t), caller);
                }
                Ok(())
            }
            Request::Txn(t) => {
                self.check_txn(&t)?;
                if crate::state_machine::txn_has_put(&t) {
                    self.check_quota(txn_cost(&t))?;
                }
                self.propose(id, caller.clone(), Command::Txn(t))
            }
            Request::Put(p) => {
                self.check_quota(put_cost(&p))?;
                self.propose(id, caller.clone(), Command::Put(p))
            }
            Request::Alarm { action, member, kind } => {
                self.propose(id, caller.clone(), Command::Alarm { action, member, kind })
            }
            Request::PrefixQuotaSet { prefix, limits } => {
                self.propose(id, caller.clone(), Command::PrefixQuotaSet { prefix, limits })
            }
            Request::PrefixQuotaRemove { prefix } => {
                self.propose(id, caller.clone(), Command::PrefixQuotaRemove { prefix })
            }
            Request::PrefixQuotaList => {
                let body = ResponseBody::PrefixQuotas(self.sm.prefix_quotas().list());
                self.respond(id, Ok(self.response(self.sm.mvcc().current_revision(), body)));
                Ok(())
            }
            Request::DeleteRange(d) => self.propose(id, caller.clone(), Command::DeleteRange(d)),
            Request::Compact(c) => self.propose(id, caller.clone(), Command::Compact(c)),
            Request::LeaseGrant { id: lease, ttl_secs } => {
                if lease < 0 {
                    return Err(Error::LeaseNotFound);
                }
                self.check_quota(LEASE_COST_BYTES)?;
                // A TTL below this member's minimum is raised to it, as etcd does, here and
                // not when it applies: the entry carries the TTL every member grants.
                let ttl_secs = ttl_secs.max(self.config.lease_ttl_secs_min());
                self.propose(id, caller.clone(), Command::LeaseGrant { id: lease, ttl_secs })
            }
            Request::LeaseRevoke { id: lease } => {
                self.propose(id, caller.clone(), Command::LeaseRevoke { id: lease })
            }
            Request::PublishMember { member, name, client_urls } => {
                self.propose(id, Caller::Member, Command::PublishMember { member, name, client_urls })
            }
            Request::MemberList => {
                let r = self.member_list_response();
                self.respond(id, Ok(r));
                Ok(())
            }
            Request::MoveLeader { to } => self.move_leader(id, to),
            Request::Backup => {
                self.backups_waiting.push(id);
                Ok(())
            }
            Request::MemberAdd { .. }
            | Request::MemberRemove { .. }
            | Request::MemberUpdate { .. }
            | Request::MemberPromote { .. }
                if !self.is_leader() =>
            {
                if !self.may_forward(id) {
                    return Err(Error::NoLeader);
                }
                self.forward(id, request);
                Ok(())
            }
            Request::MemberAdd { .. }
            | Request::MemberRemove { .. }
            | Request::MemberUpdate { .. }
            | Request::MemberPromote { .. } => self.change_members(id, request),
            Request::LeaseKeepAlive { .. } | Request::LeaseTimeToLive { .. }
                if !self.lessor.is_primary() && self.may_forward(id) =>
            {
                self.forward(id, request);
                Ok(())
            }
            Request::LeaseKeepAlive { id: lease } => {
                self.check_lease_primary()?;
                let ttl_secs = self.lessor.renew(self.sm.leases(), lease, self.now_ms)?;
                let body = ResponseBody::LeaseKeepAlive { id: lease, ttl_secs };
                self.respond(id, Ok(self.response(self.sm.mvcc().current_revision(), body)));
                Ok(())
            }
            Request::LeaseTimeToLive { id: lease, keys } => {
                self.check_lease_primary()?;
                let l = self.sm.leases().get(lease).ok_or(Error::LeaseNotFound)?;
                let ttl_secs = self.lessor.remaining_secs(lease, self.now_ms).unwrap_or(0);
                let body = ResponseBody::LeaseTimeToLive {
                    id: lease,
                    ttl_secs,
                    granted_ttl_secs: l.ttl_secs,
                    keys: if keys { l.keys.iter().cloned().collect() } else { vec![] },
                };
                self.respond(id, Ok(self.response(self.sm.mvcc().current_revision(), body)));
                Ok(())
            }
            Request::V2Get(g) if !g.quorum => {
                let body = ResponseBody::V2(Some(self.sm.v2().get(&g.path, g.recursive, g.sorted)?));
                self.respond(id, Ok(self.response(self.sm.mvcc().current_revision(), body)));
                Ok(())
            }
            Request::V2Get(g) => {
                self.check_size(&g)?;
                self.add_read(id, ReadKind::V2Get(g), caller);
                Ok(())
            }
            Request::V2Write(w) => self.propose(id, caller, Command::V2(w)),
            Request::Auth(change) => self.propose(id, caller, Command::Auth(change)),
            Request::AuthQuery(q) => {
                let who = match &caller {
                    Caller::User(who) => Some(who),
                    Caller::Anonymous if self.sm.auth().is_enabled() => return Err(Error::UserEmpty),
                    Caller::Anonymous | Caller::Member => None,
                };
                let body = ResponseBody::Auth(self.sm.auth().query(&q, who)?);
                self.respond(id, Ok(self.response(self.sm.mvcc().current_revision(), body)));
                Ok(())
            }
            Request::LeaseLeases => {
                let body = ResponseBody::LeaseLeases { ids: self.sm.leases().ids().collect() };
                self.respond(id, Ok(self.response(self.sm.mvcc().current_revision(), body)));
                Ok(())
            }
        }
    }

    /// etcd's quota check, before a write that would grow the store is proposed: refused with
    /// `Error::NoSpace` when the store (`Mvcc::bytes`) plus `cost` passes `Config::quota_bytes`
    /// or a `NoSpace` alarm is up already; the first refusal raises this member's alarm
    /// through the log (once per election timeout while it has not applied, so a stream of
    /// refused writes does not flood the log).
    fn check_quota(&mut self, cost: u64) -> Result<()> {
        if self.sm.alarms().iter().any(|a| a.kind == AlarmKind::NoSpace) {
            return Err(Error::NoSpace);
        }
        if self.sm.mvcc().bytes().saturating_add(cost) <= self.config.quota_bytes {
            return Ok(());
        }
        let again_at = self.nospace_raised_ms.map_or(0, |at| at + self.config.election_timeout_ms());
        if self.nospace_raised_ms.is_none() || self.now_ms >= again_at {
            self.nospace_raised_ms = Some(self.now_ms);
            let command = Command::Alarm {
                action: AlarmAction::Activate,
                member: self.config.id,
                kind: Some(AlarmKind::NoSpace),
            };
            self.hold(Proposal { origin: None, caller: Caller::Member, command }.encode(), None);
        }
        Err(Error::NoSpace)
    }

    /// `Config::planted_bug_stale_reads`, false in builds without planted bugs.
    fn planted_stale_reads(&self) -> bool {
        #[cfg(feature = "planted-bugs")]
        {
            self.config.planted_bug_stale_reads
        }
        #[cfg(not(feature = "planted-bugs"))]
        {
            false
        }
    }

    fn check_size<T: serde::Serialize>(&self, req: &T) -> Result<()> {
        use bincode::Options;
        let size = crate::request::codec().serialized_size(req).unwrap_or(u64::MAX);
        if size > self.config.request_bytes_max as u64 {
            return Err(Error::RequestTooLarge);
        }
        Ok(())
    }

    fn check_txn(&self, t: &TxnRequest) -> Result<()> {
        let max = self.config.txn_ops_max;
        if t.compare.len() > max || t.success.len() > max || t.failure.len() > max {
            return Err(Error::TooManyOps);
        }
        mvcc::validate_txn(t)
    }

    /// Keep-alive and time-to-live need the leader, and a leader that has applied everything
    /// from earlier terms (else it may not know the lease yet).
    fn check_lease_primary(&self) -> Result<()> {
        if !self.lessor.is_primary() {
            return Err(match self.leader() {
                0 => Error::NoLeader,
                l if l == self.config.id => Error::NoLeader,
                l => Error::NotLeader { leader: l },
            });
        }
        Ok(())
    }

    /// Opens watch `id` and returns the first page of the changes it is owed already (from its
    /// start revision up to this member's applied revision); while the page says `more`, ask
    /// for the next with `watch_next_page`. Later changes come out of `advance` in
    /// `Output::watch_updates`, once the watch has taken its last page. Watches are served from
    /// this member's applied state: a lagging member delivers late, never out of order, never
    /// with gaps.
    pub fn watch(&mut self, id: WatchId, req: WatchRequest) -> Result<WatchPage> {
        self.watch_with_auth(id, req, None)
    }

    /// `watch` for `who` (see `submit_with_auth`), who must be allowed to read the keys watched, as
    /// this member's auth store stands (etcd checks a watch when it is created).
    pub fn watch_with_auth(
        &mut self,
        id: WatchId,
        req: WatchRequest,
        who: Option<AuthInfo>,
    ) -> Result<WatchPage> {
        self.watch_by(id, req, Caller::client(who))
    }

    /// `watch` for `caller`; `Caller::Member` for a watch the driver opens again after dropping
    /// a lagging one the client was allowed (etcd checks a watch once, when it opens).
    pub fn watch_by(&mut self, id: WatchId, req: WatchRequest, caller: Caller) -> Result<WatchPage> {
        self.check_needs(&caller, |needs| {
            needs.push(Access::Read { key: &req.key, range_end: &req.range_end })
        })?;
        self.watches.create(id, req, &self.sm, self.config.watch_page_bytes)
    }

    /// The next page of the history watch `id` is owed (see `watch`). Ask for it when the client
    /// has taken the last one: that is what bounds what a slow client makes the member hold.
    /// `Error::Compacted` (the watch is closed) if its next revision was compacted meanwhile.
    pub fn watch_next_page(&mut self, id: WatchId) -> Result<WatchPage> {
        self.watches.next_page(id, &self.sm, self.config.watch_page_bytes)
    }

    /// Closes watch `id`; false if it was not open.
    pub fn cancel_watch(&mut self, id: WatchId) -> bool {
        self.watches.cancel(id)
    }

    /// Opens v2 watch `id` (etcd's `wait=true`) on `key` (its subtree with `recursive`) from
    /// v2 index `since` (0: the next change). Returns the v2 store's index now and, if its
    /// history already holds a matching event, that event (the watch is then closed unless
    /// `stream`). Otherwise the event comes out of `advance` in `Output::v2_watch_updates`.
    /// Error 401 if `since` is older than the history.
    pub fn v2_watch(
        &mut self,
        id: V2WatchId,
        key: &str,
        recursive: bool,
        stream: bool,
        since: u64,
    ) -> Result<(u64, Option<V2Event>)> {
        self.v2_watches.open(id, self.sm.v2(), key, recursive, stream, since)
    }

    /// Closes v2 watch `id`; false if it was not open.
    pub fn cancel_v2_watch(&mut self, id: V2WatchId) -> bool {
        self.v2_watches.cancel(id)
    }

    /// The driver made durable everything in `Persist`s up to `number`.
    pub fn on_persisted(&mut self, number: u64) {
        self.raw.on_persist_ready(number);
        if let Some((n, _)) = self.snapshot_unpersisted {
            if n <= number {
                self.snapshot_unpersisted = None;
            }
        }
        self.sync_role();
    }

    /// Collects what the member wants done. Call after every input, and again while the
    /// output is not empty. Handles at most one Raft ready per call.
    ///
    /// An error is fatal: the log or a snapshot is corrupt, and the node must stop.
    pub fn advance(&mut self) -> Result<Output> {
        if let Some(e) = &self.fatal {
            return Err(e.clone());
        }
        self.release_held();
        self.start_read_round();
        if self.raw.has_ready() {
            self.handle_ready()?;
        }
        self.report_applied();
        if self.campaign_when_applied {
            self.campaign();
        }
        self.serve_reads();
        self.maybe_snapshot()?;
        self.sync_role();
        self.resolve_moves();
        self.check_invariants();
        Ok(std::mem::take(&mut self.out))
    }

    /// What holds after every `advance` (TigerBeetle ends each step with its invariants). Each
    /// check is O(1) or O(batches in flight), so they stay on in release builds: a broken one
    /// is a bug in the core, and the member must not go on with state it cannot trust.
    fn check_invariants(&self) {
        let log = &self.raw.raft.raft_log;
        assert!(
            self.sm.applied_index() <= log.committed,
            "applied {} past the commit index {}",
            self.sm.applied_index(),
            log.committed
        );
        assert!(log.committed <= log.last_index(), "commit index past the log");
        assert_eq!(
            self.ids.len(),
            self.writes.len()
                + self.reads.len()
                + self.forwarded.len()
                + self.moves.len()
                + self.backups_waiting.len()
                + self.backups_building.len(),
            "every open request id is a pending write, read, forward, leader move or backup, and no more"
        );
        assert!(self.held.inflight.iter().zip(self.held.inflight.iter().skip(1)).all(|(a, b)| a < b));
        assert!(self.remote.keys().all(|&id| id >= REMOTE_REQUEST_ID_MIN && self.ids.contains(&id)));
        if self.role == StateRole::Leader {
            assert_eq!(self.leader(), self.config.id, "a leader knows itself as leader");
        }
        assert!(self.term_vote.0 <= self.raw.raft.term, "persisted term ahead of the current one");
    }

    fn handle_ready(&mut self) -> Result<()> {
        let mut rd = self.raw.ready();
        self.out.messages.extend(rd.take_messages());
        let mut persist = Persist { number: rd.number(), ..Persist::default() };

        if !rd.snapshot().is_empty() {
            let snap = rd.snapshot().clone();
            let sm = StateMachine::decode(snap.get_data())?;
            let index = snap.get_metadata().index;
            if sm.applied_index() != index {
                return Err(Error::Corrupt(format!(
                    "leader snapshot at {index} holds state applied to {}",
                    sm.applied_index()
                )));
            }
            self.raw
                .mut_store()
                .apply_snapshot(snap.clone())
                .map_err(|e| Error::Raft(format!("installing snapshot: {e}")))?;
            self.sm = sm;
            // A snapshot of the replaced state would be of the wrong history.
            self.snapshot_building = None;
            self.last_snapshot_index = index;
            self.snapshot_unpersisted = Some((rd.number(), index));
            persist.conf_state = Some(snap.get_metadata().get_conf_state().clone());
            if self.sm.was_removed(self.config.id) {
                self.on_removed();
            }
            // Leases the old state knew may be gone; the leader's clock restarts from the new
            // state if this member leads again.
            self.lessor.demote();
            // The state jumped without events: watchers get what it covered from history.
            self.out.watch_updates.extend(self.watches.catch_up(&self.sm));
            // v2 watchers cannot be caught up (etcd's answer: error 400, watch again).
            self.out.v2_watch_updates.extend(self.v2_watches.clear(self.sm.v2().index()));
            persist.snapshot = Some(snap);
        }

        let committed = rd.take_committed_entries();
        self.apply_entries(&committed)?;
        if let Some(cs) = self.conf_applied.take() {
            persist.conf_state = Some(cs);
        }

        let entries = rd.take_entries();
        if !entries.is_empty() {
            self.raw.mut_store().append(&entries).map_err(|e| Error::Raft(format!("appending: {e}")))?;
            persist.entries = entries;
        }
        if let Some(hs) = rd.hs() {
            self.raw.mut_store().set_hard_state(hs.clone());
            persist.hard_state = Some(hs.clone());
            if (hs.term, hs.vote) != self.term_vote {
                self.term_vote = (hs.term, hs.vote);
                persist.must_sync = true;
            }
        }
        persist.must_sync |=
            persist.conf_state.is_some() || persist.snapshot.is_some() || !persist.entries.is_empty();
        for rs in rd.take_read_states() {
            self.on_read_state(rs.index, &rs.request_ctx);
        }
        persist.messages = rd.take_persisted_messages();
        if persist.must_sync || persist.hard_state.is_some() || !persist.messages.is_empty() {
            self.out.persist = Some(persist);
        }
        self.raw.advance_append_async(rd);
        Ok(())
    }

    /// Tells raft-rs how far the state machine has applied, once that is within what raft-rs
    /// allows (never past what is locally persisted: a leader snapshot counts only once it is).
    fn report_applied(&mut self) {
        if self.snapshot_unpersisted.is_some() {
            return;
        }
        let log = &self.raw.raft.raft_log;
        let applied = self.sm.applied_index();
        if applied > log.applied && applied <= log.committed.min(log.persisted) {
            self.raw.advance_apply_to(applied);
        }
    }

    fn apply_entries(&mut self, entries: &[Entry]) -> Result<()> {
        for e in entries {
            if e.index <= self.sm.applied_index() {
                continue;
            }
            self.applied_bytes = self.applied_bytes.saturating_add(e.data.len());
            match e.get_entry_type() {
                EntryType::EntryNormal if e.data.is_empty() => self.sm.skip(e.index, e.term, &e.data),
                EntryType::EntryNormal => {
                    let proposal = Proposal::decode(&e.data)?;
                    match proposal.origin {
                        Some(origin) if !self.sm.first_application(origin, e.index) => {
                            self.sm.skip(e.index, e.term, &e.data)
                        }
                        _ => self.apply_proposal(e, proposal),
                    }
                }
                EntryType::EntryConfChange => {
                    let mut cc = ConfChange::default();
                    cc.merge_from_bytes(&e.data)
                        .map_err(|err| Error::Corrupt(format!("conf change: {err}")))?;
                    let cs = self.raw.apply_conf_change(&cc);
                    self.on_conf_applied(e, cs)?;
                }
                EntryType::EntryConfChangeV2 => self.apply_conf_change_entry(e)?,
            }
            self.record_digest(e.index);
        }
        Ok(())
    }

    fn on_conf_applied(&mut self, e: &Entry, cs: raft::Result<ConfState>) -> Result<()> {
        let cs = cs.map_err(|err| Error::Raft(format!("conf change: {err}")))?;
        self.raw.mut_store().set_conf_state(cs.clone());
        self.conf_applied = Some(cs);
        self.sm.skip(e.index, e.term, &e.data);
        Ok(())
    }

    fn apply_proposal(&mut self, e: &Entry, proposal: Proposal) {
        let applied = self.sm.apply(
            e.index,
            e.term,
            &e.data,
            &proposal.command,
            &proposal.caller,
            self.config.lease_ttl_secs_min(),
        );
        if let Some(lease) = &applied.granted {
            self.lessor.on_grant(lease, self.now_ms);
        }
        if let Some(id) = applied.revoked {
            self.lessor.on_revoke(id);
        }
        self.out.watch_updates.extend(self.watches.on_events(&applied.events));
        self.out.events.extend(applied.events);
        for (e, removed) in &applied.v2_events {
            self.out.v2_watch_updates.extend(self.v2_watches.on_event(e, removed));
        }
        let Some(origin) = proposal.origin else { return };
        if origin.member != self.config.id || origin.nonce != self.nonce {
            return;
        }
        if let Some(w) = self.writes.remove(&origin.seq) {
            let result = applied.result.map(|body| self.response(applied.revision, body));
            self.respond(w.id, result);
        }
    }

    /// Notices role and term changes after anything that may have moved raft-rs.
    ///
    /// raft-rs draws a new randomized election timeout from rand's thread-local generator each time it resets
    /// (becoming follower, candidate or leader); no simulator controls that. Every reset changes
    /// the term or the role, so on each change the core overwrites the timeout with one drawn
    /// from its own seeded generator before the next tick can read it.
    fn sync_role(&mut self) {
        let raft = &self.raw.raft;
        let (term, role) = (raft.term, raft.state);
        if raft.leader_id != 0 && raft.leader_id != self.last_leader {
            self.last_leader = raft.leader_id;
            self.counters.leader_changes_seen += 1;
        }
        let reset = (term, role) != (self.term, self.role)
            || raft.randomized_election_timeout() != self.election_timeout_ticks;
        if reset {
            let e = self.config.election_ticks;
            self.election_timeout_ticks = self.rng.gen_range(e..2 * e);
            self.raw.raft.set_randomized_election_timeout(self.election_timeout_ticks);
        }
        if role != self.role {
            // Batches in flight are counted per term of leadership.
            self.held.inflight.clear();
            if role == StateRole::Leader {
                // raft-rs appended this term's empty entry on becoming leader.
                self.term_start_index = self.raw.raft.raft_log.last_index();
            } else if self.role == StateRole::Leader {
                self.term_start_index = 0;
                self.lessor.demote();
            }
        }
        self.term = term;
        self.role = role;
        if role == StateRole::Leader
            && !self.lessor.is_primary()
            && self.sm.applied_index() >= self.term_start_index
        {
            // Everything from earlier terms is applied: every lease is known. Extend them all
            // by an election timeout, so leases do not expire because of the election.
            self.lessor.promote(self.sm.leases(), self.now_ms, self.config.election_timeout_ms());
        }
    }

    fn response(&self, revision: i64, body: ResponseBody) -> Response {
        Response { header: Header { revision, raft_term: self.raw.raft.term }, body }
    }

    fn respond(&mut self, id: RequestId, result: Result<Response>) {
        let was_pending = self.ids.remove(&id);
        assert!(was_pending, "request {id} answered twice");
        match self.remote.remove(&id) {
            Some((from, fid)) => self.out.forwards.push(Forward {
                from: self.config.id,
                to: from,
                id: fid,
                body: ForwardBody::Reply(result),
            }),
            None => self.out.responses.push((id, result)),
        }
    }
}
