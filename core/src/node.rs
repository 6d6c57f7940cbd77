//! `Core`: one cluster member as a deterministic state machine.
//!
//! Inputs are method calls (`step`, `handle_timeout`, `submit`, `on_persisted`); everything the
//! member wants done leaves through `advance` as an `Output` value. See the crate docs for the
//! driving loop.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use protobuf::Message as _;
use raft::eraftpb::{ConfChange, ConfChangeV2, ConfState, Entry, EntryType, HardState, Message, Snapshot};
use raft::{RawNode, StateRole};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::config::Config;
use crate::forward::{is_forwardable, Forward, ForwardBody, REMOTE_REQUEST_ID_MIN};
use crate::kv::{Event, TxnRequest};
use crate::lease::Lessor;
use crate::mvcc;
use crate::request::{Command, Header, Origin, Proposal, Request, RequestId, Response, ResponseBody};
use crate::snapshot::{SnapshotBuilder, Step};
use crate::state_machine::StateMachine;
use crate::storage::LogStore;
use crate::v2::{V2Event, V2Get, V2WatchId, V2Watchers};
use crate::watch::{WatchHub, WatchId, WatchRequest, WatchUpdate};
use crate::{Error, Result};

/// How many election timeouts the leader waits for a follower to acknowledge a snapshot before
/// it takes the snapshot as lost and sends it again.
const SNAPSHOT_RETRY_ELECTIONS: u64 = 2;

/// How often, at most, the leader proposes the expiry of v2 keys whose time is up: on a fixed
/// beat, as etcd's 500 ms sync ticker, so a key goes within one beat of its expiry time.
const V2_EXPIRE_BEAT_MS: u64 = 500;

/// What a member recovered from its durable storage at boot.
#[derive(Clone, Debug, Default)]
pub struct Recovered {
    pub hard_state: HardState,
    /// The membership as last persisted (`Output::conf_state`).
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
    /// The membership changed (or the member is new): persist it with the hard state.
    pub conf_state: Option<ConfState>,
    /// The member snapshotted its state machine: persist the snapshot durably; after that, log
    /// entries before `log_first_index` are no longer needed and may be deleted.
    pub snapshot: Option<SnapshotMade>,
    /// Requests for other members to serve, and replies to theirs: send now, to `Forward::to`
    /// (see `forward`).
    pub forwards: Vec<Forward>,
}

/// Durable writes for one Raft ready, in this order: snapshot, entries, hard state.
#[derive(Debug, Default)]
pub struct Persist {
    /// Acknowledge with `on_persisted(number)`; acknowledging a number acknowledges every
    /// smaller one, so a driver may persist several in one fsync and acknowledge the last.
    pub number: u64,
    /// A snapshot from the leader: replaces the whole log up to its index.
    pub snapshot: Option<Snapshot>,
    /// Entries to append. The first may overwrite: an entry at index i replaces every stored
    /// entry at index >= i.
    pub entries: Vec<Entry>,
    pub hard_state: Option<HardState>,
    /// May only be sent once everything above is durable (votes, append acknowledgements).
    pub messages: Vec<Message>,
    /// False when nothing here must survive a crash: no snapshot, no entries, and a hard state
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
            && self.conf_state.is_none()
            && self.snapshot.is_none()
            && self.forwards.is_empty()
    }
}

/// A client request waiting for its entry to apply.
struct PendingWrite {
    id: RequestId,
    deadline_ms: u64,
}

/// A linearizable read waiting for a read index and then for the state machine to reach it.
struct PendingRead {
    id: RequestId,
    request: ReadKind,
    deadline_ms: u64,
    /// The ReadIndex round the read joined (its context), 0 before it joined one.
    round: u64,
    index: Option<u64>,
}

enum ReadKind {
    Range(crate::kv::RangeRequest),
    Txn(TxnRequest),
    V2Get(V2Get),
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
    /// Set when the member found its own state untrustworthy; every later `advance` fails.
    fatal: Option<Error>,
    out: Output,
}

impl Core {
    /// Starts a member: a new one (`recovered` None) or one restarting from its storage.
    pub fn new(config: Config, recovered: Option<Recovered>) -> Result<Core> {
        assert!(config.id != 0, "member ids are non-zero");
        assert!(config.election_ticks > config.heartbeat_ticks, "election timeout must exceed the heartbeat");
        let mut out = Output::default();
        let (store, sm) = match recovered {
            None => {
                let store = LogStore::new_bootstrap(&config.voters);
                out.conf_state = Some(store.conf_state());
                (store, StateMachine::new())
            }
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
                let store = LogStore::recover(r.snapshot, r.hard_state, r.conf_state, &r.entries)
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
            snapshot_bytes_last: 0,
            applied_bytes: 0,
            ticks: 0,
            snapshot_sending_since: BTreeMap::new(),
            snapshot_unpersisted: None,
            term_vote: (raw_hs.term, raw_hs.vote),
            held: Held::default(),
            forwarded: BTreeMap::new(),
            next_forward: 1,
            remote: BTreeMap::new(),
            next_remote: REMOTE_REQUEST_ID_MIN,
            fatal: None,
            out,
            config,
        };
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
    pub fn campaign(&mut self) {
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
    pub fn submit(&mut self, id: RequestId, request: Request) {
        assert!(id < REMOTE_REQUEST_ID_MIN, "request id {id} is in the core's own range");
        self.submit_as(id, request);
    }

    /// A request or reply another member forwarded (see `forward`). Forwards not meant for this
    /// member, requests that may not be forwarded, and replies nothing waits for are dropped.
    pub fn receive_forward(&mut self, f: Forward) {
        if self.fatal.is_some() || f.to != self.config.id {
            return;
        }
        match f.body {
            ForwardBody::Request(request) if is_forwardable(&request) => {
                let id = self.next_remote;
                self.next_remote += 1;
                self.remote.insert(id, (f.from, f.id));
                self.submit_as(id, request);
            }
            ForwardBody::Request(_) => {}
            ForwardBody::Reply(result) => {
                if let Some((id, _)) = self.forwarded.remove(&f.id) {
                    self.respond(id, result);
                }
            }
        }
    }

    fn submit_as(&mut self, id: RequestId, request: Request) {
        if !self.ids.insert(id) {
            // Not recorded: the first request under this id keeps it.
            self.out.responses.push((id, Err(Error::DuplicateRequestId(id))));
            return;
        }
        if let Err(e) = self.route(id, request) {
            self.respond(id, Err(e));
        }
    }

    fn route(&mut self, id: RequestId, request: Request) -> Result<()> {
        if self.writes.len() + self.reads.len() >= self.config.pending_requests_max {
            return Err(Error::TooManyRequests);
        }
        match request {
            Request::Range(r) if r.serializable || self.planted_stale_reads() => {
                let body = self.sm.read_range(&r)?;
                self.respond(id, Ok(self.response(self.sm.mvcc().current_revision(), body)));
                Ok(())
            }
            Request::Range(r) => {
                self.check_size(&r)?;
                self.add_read(id, ReadKind::Range(r));
                Ok(())
            }
            Request::Txn(t) if !t.is_write() => {
                self.check_txn(&t)?;
                if txn_is_serializable(&t) {
                    let body = self.sm.read_txn(&t)?;
                    self.respond(id, Ok(self.response(self.sm.mvcc().current_revision(), body)));
                } else {
                    self.add_read(id, ReadKind::Txn(t));
                }
                Ok(())
            }
            Request::Txn(t) => {
                self.check_txn(&t)?;
                self.propose(id, Command::Txn(t))
            }
            Request::Put(p) => self.propose(id, Command::Put(p)),
            Request::DeleteRange(d) => self.propose(id, Command::DeleteRange(d)),
            Request::Compact(c) => self.propose(id, Command::Compact(c)),
            Request::LeaseGrant { id: lease, ttl_secs } => {
                if lease < 0 {
                    return Err(Error::LeaseNotFound);
                }
                self.propose(id, Command::LeaseGrant { id: lease, ttl_secs })
            }
            Request::LeaseRevoke { id: lease } => self.propose(id, Command::LeaseRevoke { id: lease }),
            Request::PublishMember { member, name, client_urls } => {
                self.propose(id, Command::PublishMember { member, name, client_urls })
            }
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
                self.add_read(id, ReadKind::V2Get(g));
                Ok(())
            }
            Request::V2Write(w) => self.propose(id, Command::V2(w)),
            Request::LeaseLeases => {
                let body = ResponseBody::LeaseLeases { ids: self.sm.leases().ids().collect() };
                self.respond(id, Ok(self.response(self.sm.mvcc().current_revision(), body)));
                Ok(())
            }
        }
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

    /// Whether request `id` may go to the leader: one is known, it is another member, and the
    /// request came from this member's own clients (a forwarded request is not sent on again).
    fn may_forward(&self, id: RequestId) -> bool {
        let leader = self.leader();
        leader != 0 && leader != self.config.id && id < REMOTE_REQUEST_ID_MIN
    }

    fn forward(&mut self, id: RequestId, request: Request) {
        let fid = self.next_forward;
        self.next_forward += 1;
        self.forwarded.insert(fid, (id, self.now_ms + self.config.request_timeout_ms));
        self.out.forwards.push(Forward {
            from: self.config.id,
            to: self.leader(),
            id: fid,
            body: ForwardBody::Request(request),
        });
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

    fn propose(&mut self, id: RequestId, command: Command) -> Result<()> {
        let seq = self.next_seq;
        let origin = Origin { member: self.config.id, nonce: self.nonce, seq };
        // etcd bounds v2 writes only by its HTTP form limit (10 MiB), not --max-request-bytes.
        let max = match command {
            Command::V2(_) => crate::v2::REQUEST_BYTES_MAX,
            _ => self.config.request_bytes_max,
        };
        let data = Proposal { origin: Some(origin), command }.encode();
        if data.len() > max {
            return Err(Error::RequestTooLarge);
        }
        self.hold(data, Some(seq));
        self.next_seq += 1;
        self.writes
            .insert(seq, PendingWrite { id, deadline_ms: self.now_ms + self.config.request_timeout_ms });
        Ok(())
    }

    /// Holds an entry for the next batch of proposals (see `Held`). `seq` names the local write
    /// it carries, answered with an error should its batch be dropped.
    fn hold(&mut self, data: Vec<u8>, seq: Option<u64>) {
        let entry = Entry { data: data.into(), ..Entry::default() };
        self.held.push(vec![entry], seq);
    }

    /// Hands raft-rs one proposal message (one batch) and, as leader, counts it in flight.
    fn step_proposal(&mut self, m: Message) -> Result<()> {
        let result = self.raw.step(m);
        self.sync_role();
        match result {
            Ok(()) => {
                if self.is_leader() {
                    self.held.inflight.push_back(self.raw.raft.raft_log.last_index());
                }
                Ok(())
            }
            Err(raft::Error::ProposalDropped) if self.leader() == 0 => Err(Error::NoLeader),
            Err(raft::Error::ProposalDropped) => Err(Error::TooManyRequests),
            Err(e) => Err(Error::Raft(e.to_string())),
        }
    }

    /// Proposes what is held, as one batch, unless this member leads with
    /// `Config::proposal_batches_max` batches in flight and room in the held one. A member that
    /// does not lead hands raft-rs the batch at once: raft-rs forwards it to the leader as one
    /// message, or drops it when there is none.
    fn release_held(&mut self) {
        let max = self.config.append_bytes_max as usize;
        while !self.held.entries.is_empty() {
            self.held.prune(self.is_leader(), self.raw.raft.raft_log.committed);
            if self.is_leader()
                && self.held.inflight.len() >= self.config.proposal_batches_max
                && self.held.bytes < max
            {
                return;
            }
            // A batch is at most one append message's worth (and at least one entry).
            let (entries, local) = self.held.take(max);
            let mut m = Message::default();
            m.set_msg_type(raft::eraftpb::MessageType::MsgPropose);
            m.from = self.config.id;
            m.set_entries(entries.into());
            if let Err(e) = self.step_proposal(m) {
                for seq in local {
                    if let Some(w) = self.writes.remove(&seq) {
                        self.respond(w.id, Err(e.clone()));
                    }
                }
            }
        }
    }

    fn add_read(&mut self, id: RequestId, request: ReadKind) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let deadline_ms = self.now_ms + self.config.request_timeout_ms;
        self.reads.insert(seq, PendingRead { id, request, deadline_ms, round: 0, index: None });
    }

    /// Opens watch `id` and returns the changes it is owed already (from its start revision up
    /// to this member's applied revision). Later changes come out of `advance` in
    /// `Output::watch_updates`. Watches are served from this member's applied state: a lagging
    /// member delivers late, never out of order, never with gaps.
    pub fn watch(&mut self, id: WatchId, req: WatchRequest) -> Result<Vec<Event>> {
        self.watches.create(id, req, &self.sm)
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
        self.serve_reads();
        self.maybe_snapshot()?;
        self.sync_role();
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
            self.writes.len() + self.reads.len() + self.forwarded.len(),
            "every open request id is a pending write, read or forward, and no more"
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
            self.out.conf_state = Some(snap.get_metadata().get_conf_state().clone());
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
        persist.must_sync |= persist.snapshot.is_some() || !persist.entries.is_empty();
        for rs in rd.take_read_states() {
            self.on_read_state(rs.index, &rs.request_ctx);
        }
        persist.messages = rd.take_persisted_messages();
        if persist.snapshot.is_some()
            || !persist.entries.is_empty()
            || persist.hard_state.is_some()
            || !persist.messages.is_empty()
        {
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
                EntryType::EntryConfChangeV2 => {
                    let mut cc = ConfChangeV2::default();
                    cc.merge_from_bytes(&e.data)
                        .map_err(|err| Error::Corrupt(format!("conf change: {err}")))?;
                    let cs = self.raw.apply_conf_change(&cc);
                    self.on_conf_applied(e, cs)?;
                }
            }
        }
        Ok(())
    }

    fn on_conf_applied(&mut self, e: &Entry, cs: raft::Result<ConfState>) -> Result<()> {
        let cs = cs.map_err(|err| Error::Raft(format!("conf change: {err}")))?;
        self.raw.mut_store().set_conf_state(cs.clone());
        self.out.conf_state = Some(cs);
        self.sm.skip(e.index, e.term, &e.data);
        Ok(())
    }

    fn apply_proposal(&mut self, e: &Entry, proposal: Proposal) {
        let applied =
            self.sm.apply(e.index, e.term, &e.data, &proposal.command, self.config.lease_ttl_secs_min());
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

    fn start_read_round(&mut self) {
        if !self.reads.values().any(|r| r.round == 0) {
            return;
        }
        self.read_round += 1;
        let round = self.read_round;
        for r in self.reads.values_mut().filter(|r| r.round == 0) {
            r.round = round;
        }
        self.raw.read_index(self.read_context(round));
        // A round can be lost (no leader yet, the leader changed, the leader has not committed
        // in its term): start another after an election timeout if it has not answered.
        self.read_retry_ms = self.now_ms + self.config.election_timeout_ms();
        self.sync_role();
    }

    /// A ReadIndex round's context. raft-rs matches heartbeat acknowledgements to pending
    /// reads by context bytes alone, and a leader also serves reads its followers forward,
    /// with their contexts. Were contexts only round numbers, a leader's new round could
    /// collide with a follower's old one, and acknowledgements queued long before (a paused
    /// leader, resumed) would count as a fresh quorum: a deposed leader would serve a stale
    /// read. So a context names the member and its boot as well, and is never reused.
    fn read_context(&self, round: u64) -> Vec<u8> {
        let mut ctx = Vec::with_capacity(24);
        ctx.extend_from_slice(&self.config.id.to_be_bytes());
        ctx.extend_from_slice(&self.nonce.to_be_bytes());
        ctx.extend_from_slice(&round.to_be_bytes());
        ctx
    }

    fn on_read_state(&mut self, index: u64, ctx: &[u8]) {
        let Ok(bytes) = <[u8; 24]>::try_from(ctx) else { return };
        if bytes[..16] != self.read_context(0)[..16] {
            return;
        }
        let round = u64::from_be_bytes(bytes[16..].try_into().expect("8 bytes"));
        for r in self.reads.values_mut().filter(|r| r.round == round && r.index.is_none()) {
            r.index = Some(index);
        }
    }

    fn serve_reads(&mut self) {
        let applied = self.sm.applied_index();
        let ready: Vec<u64> = self
            .reads
            .iter()
            .filter(|(_, r)| r.index.is_some_and(|i| i <= applied))
            .map(|(&s, _)| s)
            .collect();
        for seq in ready {
            let r = self.reads.remove(&seq).expect("listed above");
            let body = match &r.request {
                ReadKind::Range(req) => self.sm.read_range(req),
                ReadKind::Txn(req) => self.sm.read_txn(req),
                ReadKind::V2Get(g) => {
                    self.sm.v2().get(&g.path, g.recursive, g.sorted).map(|e| ResponseBody::V2(Some(e)))
                }
            };
            let result = body.map(|b| self.response(self.sm.mvcc().current_revision(), b));
            self.respond(r.id, result);
        }
    }

    fn expire_requests(&mut self) {
        let now = self.now_ms;
        let no_leader = self.leader() == 0;
        let err = || if no_leader { Error::NoLeader } else { Error::TimedOut };
        let late: Vec<u64> =
            self.writes.iter().filter(|(_, w)| w.deadline_ms <= now).map(|(&s, _)| s).collect();
        for seq in late {
            let w = self.writes.remove(&seq).expect("listed above");
            // The entry may still commit later; the client must treat the outcome as unknown.
            self.respond(w.id, Err(Error::TimedOut));
        }
        let late: Vec<u64> =
            self.reads.iter().filter(|(_, r)| r.deadline_ms <= now).map(|(&s, _)| s).collect();
        for seq in late {
            let r = self.reads.remove(&seq).expect("listed above");
            self.respond(r.id, Err(err()));
        }
        // A forward whose reply never came: lease renewals and time-to-live change nothing
        // durable, so "timed out" is exact.
        let late: Vec<u64> =
            self.forwarded.iter().filter(|(_, (_, at))| *at <= now).map(|(&f, _)| f).collect();
        for fid in late {
            let (id, _) = self.forwarded.remove(&fid).expect("listed above");
            self.respond(id, Err(Error::TimedOut));
        }
    }

    fn retry_lost_snapshots(&mut self) {
        self.release_unneeded_snapshot();
        if !self.is_leader() {
            self.snapshot_sending_since.clear();
            return;
        }
        let patience = SNAPSHOT_RETRY_ELECTIONS * self.config.election_ticks as u64;
        let mut sending = BTreeMap::new();
        for (&id, pr) in self.raw.raft.prs().iter() {
            if pr.state == raft::ProgressState::Snapshot {
                sending.insert(id, self.snapshot_sending_since.get(&id).copied().unwrap_or(self.ticks));
            }
        }
        let stuck: Vec<u64> =
            sending.iter().filter(|(_, &since)| self.ticks - since >= patience).map(|(&id, _)| id).collect();
        for id in stuck {
            self.raw.report_snapshot(id, raft::SnapshotStatus::Failure);
            sending.remove(&id);
        }
        self.snapshot_sending_since = sending;
    }

    /// The wall clock, in Unix nanoseconds. v2 TTLs are wall-clock deadlines (as in etcd): the
    /// leader proposes their expiry stamped with this time, so every replica removes the same
    /// keys at the same index whatever its own clock says. Drivers call it before
    /// `handle_timeout`; a member never told the time expires nothing.
    pub fn set_wall_clock(&mut self, unix_ns: i64) {
        self.wall_ns = unix_ns;
    }

    /// The wall clock as last given (`set_wall_clock`); 0 if never.
    pub fn wall_clock(&self) -> i64 {
        self.wall_ns
    }

    /// As leader (with every earlier term applied), on each beat, proposes the expiry of the v2
    /// keys whose time is up. A lost or repeated proposal is harmless: the next one expires
    /// what is due, and one that finds nothing due changes nothing.
    fn expire_v2(&mut self) {
        if self.now_ms < self.v2_expire_beat_ms {
            return;
        }
        self.v2_expire_beat_ms = self.now_ms + V2_EXPIRE_BEAT_MS;
        if !self.lessor.is_primary() || self.wall_ns == 0 {
            return;
        }
        let Some(due) = self.sm.v2().next_expiry_ns() else { return };
        if due > self.wall_ns {
            return;
        }
        let command = Command::V2(crate::v2::V2Write::Expire { now_ns: self.wall_ns });
        let data = Proposal { origin: None, command }.encode();
        self.hold(data, None);
    }

    /// Drops the latest snapshot's data from memory once no follower needs it: none is being
    /// sent one, and every one can catch up from the log. A follower that later falls behind
    /// the log gets a new snapshot built for it.
    fn release_unneeded_snapshot(&mut self) {
        if !self.raw.store().holds_snapshot_data() {
            return;
        }
        let first_index = self.raw.raft.raft_log.first_index();
        let needed = self.is_leader()
            && self.raw.raft.prs().iter().any(|(&id, pr)| {
                id != self.config.id
                    && (pr.state == raft::ProgressState::Snapshot || pr.matched + 1 < first_index)
            });
        if !needed {
            self.raw.mut_store().release_snapshot_data();
        }
    }

    /// As leader, proposes a revoke for each lease whose TTL ran out on this member's clock.
    fn expire_leases(&mut self) {
        if !self.lessor.is_primary() {
            return;
        }
        for id in self.lessor.take_expired(self.now_ms, self.config.request_timeout_ms) {
            let data = Proposal { origin: None, command: Command::LeaseRevoke { id } }.encode();
            // If dropped (leadership lost meanwhile), the next leader revokes it instead.
            self.hold(data, None);
        }
        self.sync_role();
    }

    /// Snapshots every `snapshot_entries` applied entries, and when raft-rs wants one to send
    /// to a follower and has none in memory; one `SnapshotBuilder` step per call.
    fn maybe_snapshot(&mut self) -> Result<()> {
        if self.snapshot_building.is_none() {
            let applied = self.sm.applied_index();
            let due = applied >= self.last_snapshot_index + self.config.snapshot_entries
                || (self.raw.store().snapshot_wanted() && applied > 0);
            if !due || self.snapshot_unpersisted.is_some() {
                return Ok(());
            }
            let conf_state = self.raw.store().conf_state();
            // Sized up front: a buffer that doubles copies itself whole into memory never
            // touched, and first touches are what a step costs most (see `SnapshotBuilder`).
            let hint = self.snapshot_bytes_last.saturating_add(self.applied_bytes);
            self.applied_bytes = 0;
            self.snapshot_building = Some(SnapshotBuilder::start(&self.sm, conf_state, hint));
        }
        let building = self.snapshot_building.as_mut().expect("started above");
        match building.step(&self.sm, self.config.snapshot_step_bytes) {
            Step::More => return Ok(()),
            // Started again on the next call, from the compacted store.
            Step::Abandoned => {
                self.snapshot_building = None;
                return Ok(());
            }
            Step::Done => {}
        }
        let building = self.snapshot_building.take().expect("stepped above");
        let mut snap = Snapshot::default();
        let meta = snap.mut_metadata();
        let (index, term) = (building.index(), building.term());
        meta.index = index;
        meta.term = term;
        meta.set_conf_state(building.conf_state().clone());
        let data = building.finish();
        self.snapshot_bytes_last = data.len();
        snap.set_data(data.into());
        let log_first_index = index.saturating_sub(self.config.snapshot_catch_up_entries).max(1);
        self.raw
            .mut_store()
            .set_snapshot_and_compact(snap.clone(), log_first_index)
            .map_err(|e| Error::Raft(format!("compacting the log: {e}")))?;
        self.last_snapshot_index = index;
        self.out.snapshot = Some(SnapshotMade { snapshot: snap, log_first_index });
        Ok(())
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

/// A read-only txn is served locally when every op in it is a serializable range (etcd's
/// `isTxnSerializable`; a nested txn counts as not serializable there too).
fn txn_is_serializable(t: &TxnRequest) -> bool {
    use crate::kv::RequestOp;
    t.success.iter().chain(&t.failure).all(|op| matches!(op, RequestOp::Range(r) if r.serializable))
}

/// Proposals a leader holds back while `Config::proposal_batches_max` batches are in flight
/// (appended, not yet committed), to propose them as one batch when one commits. Under load
/// this trades a little waiting for far fewer rounds: every member's fsync, every append and
/// acknowledgement, every wakeup is paid per batch, not per request. A lone client never
/// waits (nothing is in flight when its request comes), and neither does a request while
/// fewer batches are in flight. Held proposals keep their order, and go as soon as this
/// member stops leading (raft-rs forwards them to the new leader, or drops them).
#[derive(Debug, Default)]
struct Held {
    /// Each with the local write it carries (a `Core::writes` key), answered with an error if
    /// its batch is dropped; forwarded and internal proposals carry none.
    entries: VecDeque<(Entry, Option<u64>)>,
    bytes: usize,
    /// Last index of each batch proposed as leader and not yet committed, oldest first.
    inflight: VecDeque<u64>,
}

impl Held {
    fn push(&mut self, entries: Vec<Entry>, seq: Option<u64>) {
        for e in entries {
            self.bytes += e.data.len();
            self.entries.push_back((e, seq));
        }
    }

    /// The oldest entries, up to `max` bytes of data (at least one), and the local writes
    /// among them.
    fn take(&mut self, max: usize) -> (Vec<Entry>, Vec<u64>) {
        let (mut entries, mut local, mut bytes) = (Vec::new(), Vec::new(), 0);
        while let Some((e, _)) = self.entries.front() {
            if !entries.is_empty() && bytes + e.data.len() > max {
                break;
            }
            let (e, seq) = self.entries.pop_front().expect("checked above");
            bytes += e.data.len();
            entries.push(e);
            local.extend(seq);
        }
        self.bytes -= bytes;
        (entries, local)
    }

    /// Forgets batches that committed, or all of them when this member does not lead.
    fn prune(&mut self, leading: bool, committed: u64) {
        if !leading {
            self.inflight.clear();
        }
        while self.inflight.front().is_some_and(|&last| last <= committed) {
            self.inflight.pop_front();
        }
    }
}
