//! The real member driver: one tokio task owns the member's `cairn_core::Pipeline` and carries
//! out what it asks with fjall storage (on the storage thread, `writer`), the TCP peer transport
//! and tokio timers: the same pipeline the simulator runs (`cairn-io-sim`), so the order of
//! sends, writes, fsyncs and acknowledgements here is the one its seeds test. Front ends talk
//! to it through a cloneable `MemberHandle`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_core::auth::{AuthInfo, AuthStore};
use cairn_core::v2::{V2Event, V2WatchId};
use cairn_core::Caller;
use cairn_core::{
    Config, Core, Effects, Error, Pipeline, Request, RequestId, Response, WatchId, WatchPage, WatchRequest,
    WatchUpdate,
};
use tokio::sync::{mpsc, oneshot, watch};

use crate::error::Error as DriverError;
use crate::metrics::Metrics;
use crate::slow::warn_if_slow;
use crate::snapshot_file;
use crate::stats::PeerStats;
use crate::storage::Storage;
use crate::transport::{PeerFrame, Transport};
use crate::writer::{Job, Writer};

/// Requests from front ends waiting for the loop; past this, callers wait (backpressure).
const INPUTS_QUEUED_MAX: usize = 4096;
/// Least time between two questions to peers for the member list.
const DIRECTORY_RETRY: Duration = Duration::from_secs(1);
/// How long a removed member lingers before it stops, for its last messages to go out and
/// the answers it waits for to come in.
const REMOVED_GRACE: Duration = Duration::from_secs(1);
/// Watch updates buffered per watcher; a watcher that falls this far behind is dropped
/// (its stream ends and the client re-watches from its last revision, as with etcd).
pub const WATCH_BUFFER_MAX: usize = 1024;

#[derive(Clone, Debug)]
pub struct MemberConfig {
    pub core: Config,
    /// The cluster's id: peers must name it when they connect (see `transport`).
    pub cluster_id: u64,
    pub data_dir: PathBuf,
    /// Where this member listens for peers.
    pub listen_peer: SocketAddr,
    /// Every other member's peer address, to reach until the member set is known from the
    /// log (a new cluster's initial members; a joining member's, as `transport::discover`
    /// answered). After that the peers follow the configuration.
    pub peers: BTreeMap<u64, SocketAddr>,
    /// Mutual TLS on the peer port, both ways (None: plaintext).
    pub peer_tls: Option<crate::transport::PeerTls>,
}

/// What front ends show about the member (etcd's Status / MemberList / response headers).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemberStatus {
    pub id: u64,
    pub leader: u64,
    pub term: u64,
    pub commit_index: u64,
    pub applied_index: u64,
    pub revision: i64,
    pub compacted_revision: i64,
    pub voters: Vec<u64>,
    /// Every member (ids, names, peer and client URLs, learner flags), as applied here.
    pub members: BTreeMap<u64, cairn_core::Member>,
    /// Whether this member is a learner.
    pub is_learner: bool,
    /// The alarms up, as applied here.
    pub alarms: std::collections::BTreeSet<cairn_core::alarm::Alarm>,
    /// The store's size against its space quota (`Mvcc::bytes`).
    pub store_bytes: u64,
    /// The v2 keys store's index (etcd's `X-Etcd-Index`).
    pub v2_index: u64,
    /// v2 keys expired so far.
    pub v2_expired: u64,
    /// The auth store, as applied here (replaced when its revision moves).
    pub auth: Arc<AuthStore>,
}

/// A watch's stream of updates, in order. The stream ends if the member drops the watcher
/// (it fell `WATCH_BUFFER_MAX` behind, or the member stopped).
pub type WatchStream = mpsc::Receiver<WatchUpdate>;

/// A v2 watch (`wait=true`): the event (or error) it fires with; a one-shot watch gets one.
/// Dropping it closes the watch on the member.
pub struct V2WatchStream {
    id: V2WatchId,
    rx: mpsc::Receiver<Result<V2Event, Error>>,
    /// Weak, so that open watches do not keep the loop alive once every handle is gone.
    tx: mpsc::WeakSender<Input>,
}

impl V2WatchStream {
    /// The next event; `None` once the watch is over (fired once, dropped, or the member
    /// stopped).
    pub async fn recv(&mut self) -> Option<Result<V2Event, Error>> {
        self.rx.recv().await
    }
}

impl Drop for V2WatchStream {
    fn drop(&mut self) {
        // Best effort: a full queue means the member is busy; the watch then stays open until
        // it fires, which costs one event.
        if let Some(tx) = self.tx.upgrade() {
            let _ = tx.try_send(Input::CancelV2Watch { id: self.id });
        }
    }
}

/// A watch as opened: its id, the history it is owed, and the stream of what follows.
type OpenedWatch = (WatchId, WatchPage, WatchStream);

enum Input {
    V2Watch {
        key: String,
        recursive: bool,
        stream: bool,
        since: u64,
        reply: oneshot::Sender<Result<(u64, V2WatchStream), Error>>,
    },
    CancelV2Watch {
        id: V2WatchId,
    },
    Submit {
        request: Request,
        caller: Caller,
        reply: oneshot::Sender<Result<Response, Error>>,
    },
    Watch {
        req: WatchRequest,
        caller: Caller,
        reply: oneshot::Sender<Result<OpenedWatch, Error>>,
    },
    WatchPage {
        id: WatchId,
        reply: oneshot::Sender<Result<WatchPage, Error>>,
    },
    CancelWatch {
        id: WatchId,
    },
}

/// A cloneable handle on the member's loop.
#[derive(Clone)]
pub struct MemberHandle {
    tx: mpsc::Sender<Input>,
    status: watch::Receiver<MemberStatus>,
    peer_stats: Arc<Mutex<PeerStats>>,
    metrics: Arc<Metrics>,
}

/// The loop stopped (fatal error or shutdown); requests fail with this.
fn stopped() -> Error {
    Error::Raft("the member has stopped".into())
}

impl MemberHandle {
    /// Sends a request through the member and waits for its answer (a client without
    /// credentials: see `request_as`).
    pub async fn request(&self, request: Request) -> Result<Response, Error> {
        self.request_as(None, request).await
    }

    /// `request` for `who`, as the front end verified their token or certificate.
    pub async fn request_as(&self, who: Option<AuthInfo>, request: Request) -> Result<Response, Error> {
        self.submit(Caller::client(who), request).await
    }

    /// `request` as the member itself (its health probes, its publication of itself): never
    /// refused by auth.
    pub async fn request_as_member(&self, request: Request) -> Result<Response, Error> {
        self.submit(Caller::Member, request).await
    }

    async fn submit(&self, caller: Caller, request: Request) -> Result<Response, Error> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Input::Submit { request, caller, reply }).await.map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }

    /// Opens a watch for `who`: returns its id, the first page of the history it is owed
    /// already (while the page says `more`, take the next with `watch_next_page`), and the
    /// stream of what follows the last page.
    pub async fn watch(
        &self,
        who: Option<AuthInfo>,
        req: WatchRequest,
    ) -> Result<(WatchId, WatchPage, WatchStream), Error> {
        self.open_watch(Caller::client(who), req).await
    }

    /// A watch opened again for a client who was allowed it when it first opened (etcd checks
    /// a watch once): not checked again.
    pub async fn watch_as_member(
        &self,
        req: WatchRequest,
    ) -> Result<(WatchId, WatchPage, WatchStream), Error> {
        self.open_watch(Caller::Member, req).await
    }

    async fn open_watch(
        &self,
        caller: Caller,
        req: WatchRequest,
    ) -> Result<(WatchId, WatchPage, WatchStream), Error> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Input::Watch { req, caller, reply }).await.map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }

    /// The next page of the history watch `id` is owed (`cairn_core::Core::watch_next_page`):
    /// ask once the client has taken the last, so a slow client holds one page at a time.
    pub async fn watch_next_page(&self, id: WatchId) -> Result<WatchPage, Error> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Input::WatchPage { id, reply }).await.map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }

    /// Opens a v2 watch on `key` (its subtree with `recursive`) from v2 index `since` (0: the
    /// next change); returns the v2 index at the start and the watch.
    pub async fn v2_watch(
        &self,
        key: &str,
        recursive: bool,
        stream: bool,
        since: u64,
    ) -> Result<(u64, V2WatchStream), Error> {
        let (reply, rx) = oneshot::channel();
        let input = Input::V2Watch { key: key.to_string(), recursive, stream, since, reply };
        self.tx.send(input).await.map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }

    pub async fn cancel_watch(&self, id: WatchId) {
        let _ = self.tx.send(Input::CancelWatch { id }).await;
    }

    /// A copy of the member's peer traffic statistics (etcd's v2 stats).
    pub fn peer_stats(&self) -> PeerStats {
        self.peer_stats.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// The member's Prometheus metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The member's latest status.
    pub fn status(&self) -> MemberStatus {
        self.status.borrow().clone()
    }

    /// `f` of the member's latest status, without copying it (every response header reads
    /// the revision and term; hold no lock across an await).
    pub fn with_status<R>(&self, f: impl FnOnce(&MemberStatus) -> R) -> R {
        f(&self.status.borrow())
    }
}

/// Starts the member: recovers from `data_dir`, binds the peer listener, and spawns the loop.
/// The returned join handle ends with the loop: `Ok` on shutdown (all handles dropped), `Err`
/// on a fatal error (storage, corruption), after which the process must exit. Requests through
/// the handle keep failing with the core's errors (`cairn_core::Error`), as clients see them.
pub async fn start(
    cfg: MemberConfig,
) -> Result<(MemberHandle, tokio::task::JoinHandle<Result<(), DriverError>>), DriverError> {
    let storage = Storage::open(&cfg.data_dir)?;
    let recovered = storage.recover()?;
    let mut config = cfg.core.clone();
    // A fresh seed every boot, from the OS (see `Config::seed`).
    config.seed = seed_from_os();
    let core = Core::new(config, recovered)?;
    let transport = Transport::start_with_tls(
        cfg.core.id,
        cfg.cluster_id,
        cfg.listen_peer,
        cfg.peers.clone(),
        cfg.peer_tls.clone(),
    )
    .await
    .map_err(|source| DriverError::Bind { addr: cfg.listen_peer, source })?;
    let metrics = Arc::new(Metrics::new().map_err(|e| DriverError::Metrics(e.to_string()))?);
    metrics.follow_transport(transport.stats());
    let (tx, rx) = mpsc::channel(INPUTS_QUEUED_MAX);
    let (status_tx, status_rx) = watch::channel(MemberStatus::default());
    let (writer, reports) =
        Writer::start(storage, metrics.clone()).map_err(|e| DriverError::StorageThread(e.to_string()))?;
    let weak = tx.downgrade();
    let peer_stats = PeerStats::shared();
    let stats = peer_stats.clone();
    let loop_metrics = metrics.clone();
    let task = tokio::spawn(async move {
        let result = run(core, &writer, reports, transport, rx, weak, status_tx, stats, loop_metrics).await;
        // Whatever was queued is written before the storage closes (a restart in the same
        // process can then open it again).
        writer.close().await;
        result
    });
    Ok((MemberHandle { tx, status: status_rx, peer_stats, metrics }, task))
}

fn seed_from_os() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    // RandomState is seeded from the OS's randomness; no extra dependency needed.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos(),
    );
    h.finish()
}

#[allow(clippy::too_many_arguments)]
async fn run(
    core: Core,
    writer: &Writer,
    mut reports: mpsc::UnboundedReceiver<crate::writer::Report>,
    mut transport: Transport,
    mut rx: mpsc::Receiver<Input>,
    tx: mpsc::WeakSender<Input>,
    status: watch::Sender<MemberStatus>,
    peer_stats: Arc<Mutex<PeerStats>>,
    metrics: Arc<Metrics>,
) -> Result<(), DriverError> {
    let epoch = Instant::now();
    let now_ms = || epoch.elapsed().as_millis() as u64;
    let mut s = LoopState {
        next_request: 1,
        next_watch: 1,
        pending: BTreeMap::new(),
        watchers: BTreeMap::new(),
        v2_watchers: BTreeMap::new(),
        tx,
    };
    let mut pipeline = Pipeline::new(core);
    // Snapshot files are written on a blocking thread, one at a time (the pipeline asks for
    // the next only after the last is reported); its outcome comes back here.
    let (file_tx, mut file_done) = mpsc::channel::<std::io::Result<()>>(1);
    let mut fx = Effects::default();
    let mut was_leading = false;
    let mut removed_notices = transport.removed_notices();
    // Member lists asked of peers when this member fell behind a configuration change (see
    // `Transport::directory_wanted`), at most one question per `DIRECTORY_RETRY`.
    let (directory_tx, mut directory_rx) = mpsc::channel::<Vec<(u64, Vec<String>)>>(1);
    let mut directory_asked: Option<Instant> = None;
    // When a removed member stops (see `REMOVED_GRACE`).
    let mut stopping_at: Option<Instant> = None;
    // The member set the transport was last given (ids and peer URLs).
    let mut peer_set: Vec<(u64, Vec<String>)> = Vec::new();
    let timer = tokio::time::sleep_until(epoch.into());
    tokio::pin!(timer);
    loop {
        // Carry out what the pipeline asks until it asks nothing more. Writes go to the storage
        // thread once per turn (one wakeup for all of them); it fsyncs once for all it has and
        // reports the last ticket durable, which releases what waited for it.
        let mut jobs: Vec<Job> = Vec::new();
        loop {
            let started = Instant::now();
            let more = pipeline.pump(&mut |_, _| {})?;
            warn_if_slow("advance", started);
            fx.append(more);
            if fx.is_empty() {
                break;
            }
            let done = std::mem::take(&mut fx);
            let started = Instant::now();
            if let Ok(mut st) = peer_stats.lock() {
                st.on_sent(started, done.messages.iter());
            }
            transport.send(
                done.messages
                    .into_iter()
                    .map(PeerFrame::Raft)
                    .chain(done.forwards.into_iter().map(PeerFrame::Forward)),
            );
            warn_if_slow("sending messages", started);
            jobs.extend(done.writes);
            if let Some(snapshot) = done.snapshot_file {
                write_snapshot_file(writer.snapshot_dir.clone(), snapshot, file_tx.clone());
            }
            for (id, result) in done.responses {
                s.on_response(id, result);
            }
            let core = pipeline.core_mut();
            for (id, update) in done.watch_updates {
                let Some(w) = s.watchers.get(&id) else { continue };
                if w.try_send(update).is_err() {
                    // Too far behind, or gone: drop it; its stream ends.
                    s.watchers.remove(&id);
                    core.cancel_watch(id);
                }
            }
            for (id, update) in done.v2_watch_updates {
                let Some((w, stream)) = s.v2_watchers.get(&id) else { continue };
                let last = !*stream || update.is_err();
                if w.try_send(update).is_err() || last {
                    s.v2_watchers.remove(&id);
                    core.cancel_v2_watch(id);
                }
            }
        }
        if !jobs.is_empty() {
            writer.send(jobs);
        }
        let core = pipeline.core();
        if core.may_stop() {
            // It goes on a moment: what it sent last (the TimeoutNow handing leadership over,
            // its answers) is still in the peer writers' queues, and the leader's answer to a
            // change a client sent through this member (its own removal) may be on its way.
            match stopping_at {
                None => {
                    tracing::error!(
                        member = %format!("{:x}", core.id()),
                        "this member was removed from the cluster; stopping (its data dir cannot serve it again: start a new member with an empty data dir after `member add`)"
                    );
                    stopping_at = Some(Instant::now() + REMOVED_GRACE);
                }
                Some(at) if Instant::now() >= at => return Err(DriverError::Removed),
                Some(_) => {}
            }
        }
        let members = core.state().members();
        if !members.is_empty()
            && (members.len() != peer_set.len()
                || members.values().zip(&peer_set).any(|(m, (id, urls))| m.id != *id || &m.peer_urls != urls))
        {
            peer_set = members.values().map(|m| (m.id, m.peer_urls.clone())).collect();
            let removed: Vec<u64> = core.state().removed_ids().collect();
            transport.set_members(&peer_set, &removed);
            tracing::info!(members = ?peer_set, "peers follow the configuration");
        }
        if transport.directory_wanted() && directory_asked.is_none_or(|at| at.elapsed() >= DIRECTORY_RETRY) {
            directory_asked = Some(Instant::now());
            let (addrs, tx, tls) = (transport.peer_addrs(), directory_tx.clone(), transport.tls());
            tokio::spawn(async move {
                if let Ok(answer) = crate::transport::directory(&addrs, tls.as_ref()).await {
                    let _ = tx.send(answer.members).await;
                }
            });
        }
        publish_status(pipeline.core(), &status);
        metrics.record_core(pipeline.core());
        // Follower figures are the leader's; they go when it stops leading (checked on the
        // change, not every turn).
        let leading = pipeline.core().is_leader();
        if was_leading && !leading {
            if let Ok(mut st) = peer_stats.lock() {
                st.forget_followers();
            }
        }
        was_leading = leading;

        // One timer for the loop's life, moved only when the core's deadline moves (a timer
        // made and dropped every turn costs two trips through the runtime's timer wheel).
        let deadline =
            tokio::time::Instant::from(epoch + Duration::from_millis(pipeline.core().poll_timeout()));
        if timer.deadline() != deadline {
            timer.as_mut().reset(deadline);
        }
        tokio::select! {
            input = rx.recv() => match input {
                None => return Ok(()),
                Some(input) => s.on_input(pipeline.core_mut(), input),
            },
            Some(members) = directory_rx.recv() => transport.learn(members),
            Some(by) = removed_notices.recv() => {
                // A member of the configuration says this one is not in it any more: its
                // removal committed while it was away, so it never applied it.
                tracing::error!(
                    member = %format!("{:x}", pipeline.core().id()),
                    told_by = %format!("{by:x}"),
                    "this member was removed from the cluster (a peer says so); stopping"
                );
                return Err(DriverError::Removed);
            }
            Some(frame) = transport.recv() => {
                count_received(&peer_stats, &metrics, &frame);
                s.on_frame(pipeline.core_mut(), frame);
            }
            report = reports.recv() => {
                // A failed write or fsync stops the member: never carry on with state that
                // may not be on disk (fsyncgate).
                let durable = match report {
                    Some(Ok(durable)) => durable,
                    Some(Err(e)) => return Err(DriverError::Storage(e)),
                    None => return Err(DriverError::StorageThread("it stopped".into())),
                };
                if let Some(ticket) = durable {
                    fx = pipeline.on_durable(ticket);
                }
            }
            Some(written) = file_done.recv() => {
                // A failed write or fsync stops the member, as on the loop.
                if let Err(e) = written {
                    return Err(DriverError::SnapshotFile(e.to_string()));
                }
                fx = pipeline.on_snapshot_file_written(Ok(()))?;
            }
            _ = timer.as_mut() => {}
        }
        // Take whatever else is already waiting, so that one ready (and one fsync) covers many
        // requests. Bounded, so the loop still gets back to its timers.
        for _ in 0..INPUT_BATCH_MAX {
            match rx.try_recv() {
                Ok(input) => s.on_input(pipeline.core_mut(), input),
                Err(_) => break,
            }
        }
        for _ in 0..INPUT_BATCH_MAX {
            match transport.try_recv() {
                Some(frame) => {
                    count_received(&peer_stats, &metrics, &frame);
                    s.on_frame(pipeline.core_mut(), frame);
                }
                None => break,
            }
        }
        let core = pipeline.core_mut();
        core.set_wall_clock(unix_now_ns());
        core.handle_timeout(now_ms());
    }
}

/// Writes and fsyncs the member's own snapshot file on a blocking thread while the loop goes
/// on; the outcome comes back on `done`. The data is shared (`Bytes`), not copied, and freed
/// when the write is over.
fn write_snapshot_file(
    dir: std::path::PathBuf,
    snapshot: cairn_core::eraftpb::Snapshot,
    done: mpsc::Sender<std::io::Result<()>>,
) {
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let result = snapshot_file::write(&dir, &snapshot).map(|_| ());
        tracing::debug!(
            index = snapshot.get_metadata().index,
            bytes = snapshot.data.len(),
            took_ms = started.elapsed().as_millis() as u64,
            "snapshot written"
        );
        // One write in flight and room for one outcome: never blocks. Fails only if the loop
        // is gone.
        let _ = done.blocking_send(result);
    });
}

fn count_received(stats: &Mutex<PeerStats>, metrics: &Metrics, frame: &PeerFrame) {
    if let (PeerFrame::Raft(m), Ok(mut st)) = (frame, stats.lock()) {
        if let Some((peer, took)) = st.on_received(Instant::now(), m) {
            metrics.observe_peer_rtt(peer, took);
        }
    }
}

/// Updates the status front ends read, if anything in it changed (without copying what did
/// not: this runs every turn of the loop).
fn publish_status(core: &Core, status: &watch::Sender<MemberStatus>) {
    let st = core.state();
    // The lists are left empty here (no allocation) and copied in only when they changed.
    let fresh = MemberStatus {
        id: core.id(),
        leader: core.leader(),
        term: core.term(),
        commit_index: core.commit_index(),
        applied_index: core.applied_index(),
        revision: st.mvcc().current_revision(),
        compacted_revision: st.mvcc().compacted_revision(),
        voters: Vec::new(),
        members: BTreeMap::new(),
        is_learner: core.is_learner(),
        alarms: Default::default(),
        store_bytes: st.mvcc().bytes(),
        v2_index: st.v2().index(),
        v2_expired: st.v2().expired_count(),
        auth: Arc::default(),
    };
    status.send_if_modified(|s| {
        if s.auth.revision() != st.auth().revision() {
            s.auth = Arc::new(st.auth().clone());
        }
        let fresh = MemberStatus { auth: s.auth.clone(), ..fresh };
        if &s.members != st.members() || &s.alarms != st.alarms() {
            // The voters are the members that are not learners: the member list and Raft's
            // configuration change together.
            let voters = st.members().values().filter(|m| !m.learner).map(|m| m.id).collect();
            *s = MemberStatus { voters, members: st.members().clone(), alarms: st.alarms().clone(), ..fresh };
            return true;
        }
        // Lists unchanged: set them aside, compare the rest, put them back.
        let (voters, members, alarms) =
            (std::mem::take(&mut s.voters), std::mem::take(&mut s.members), std::mem::take(&mut s.alarms));
        let changed = *s != fresh;
        *s = MemberStatus { voters, members, alarms, ..fresh };
        changed
    });
}

/// Most inputs (and, separately, peer frames) taken in one turn of the loop.
const INPUT_BATCH_MAX: usize = 1024;

/// The loop's bookkeeping of requests, forwards and watchers.
struct LoopState {
    next_request: RequestId,
    next_watch: WatchId,
    /// Front ends waiting for the core's answer to each request.
    pending: BTreeMap<RequestId, oneshot::Sender<Result<Response, Error>>>,
    watchers: BTreeMap<WatchId, mpsc::Sender<WatchUpdate>>,
    /// Open v2 watches, and whether each streams (else it ends after one event).
    v2_watchers: BTreeMap<V2WatchId, (mpsc::Sender<Result<V2Event, Error>>, bool)>,
    /// The loop's own input queue, for `V2WatchStream`s to cancel through.
    tx: mpsc::WeakSender<Input>,
}

impl LoopState {
    /// Hands the core's answer to request `id` to the front end waiting for it.
    fn on_response(&mut self, id: RequestId, result: Result<Response, Error>) {
        if let Some(reply) = self.pending.remove(&id) {
            let _ = reply.send(result);
        }
    }

    fn on_input(&mut self, core: &mut Core, input: Input) {
        match input {
            Input::V2Watch { key, recursive, stream, since, reply } => {
                let id = self.next_watch;
                self.next_watch += 1;
                let result = core.v2_watch(id, &key, recursive, stream, since).map(|(index, first)| {
                    let (wtx, wrx) = mpsc::channel(WATCH_BUFFER_MAX);
                    match first {
                        // Answered from history: the watch is already over.
                        Some(e) => {
                            let _ = wtx.try_send(Ok(e));
                        }
                        None => {
                            self.v2_watchers.insert(id, (wtx, stream));
                        }
                    }
                    (index, V2WatchStream { id, rx: wrx, tx: self.tx.clone() })
                });
                let _ = reply.send(result);
            }
            Input::CancelV2Watch { id } => {
                self.v2_watchers.remove(&id);
                core.cancel_v2_watch(id);
            }
            Input::Submit { request, caller, reply } => {
                let id = self.next_request;
                self.next_request += 1;
                self.pending.insert(id, reply);
                core.submit_by(id, request, caller);
            }
            Input::Watch { req, caller, reply } => {
                let id = self.next_watch;
                self.next_watch += 1;
                let result = core.watch_by(id, req, caller).map(|page| {
                    let (wtx, wrx) = mpsc::channel(WATCH_BUFFER_MAX);
                    self.watchers.insert(id, wtx);
                    (id, page, wrx)
                });
                let _ = reply.send(result);
            }
            Input::WatchPage { id, reply } => {
                let page = core.watch_next_page(id);
                if page.is_err() {
                    // Closed by the core (compacted away).
                    self.watchers.remove(&id);
                }
                let _ = reply.send(page);
            }
            Input::CancelWatch { id } => {
                self.watchers.remove(&id);
                core.cancel_watch(id);
            }
        }
    }

    fn on_frame(&mut self, core: &mut Core, frame: PeerFrame) {
        match frame {
            PeerFrame::Raft(msg) => core.step(msg),
            PeerFrame::Forward(f) => core.receive_forward(f),
        }
    }
}

/// Wall-clock time as Unix nanoseconds (v2 TTLs are wall-clock deadlines, as in etcd).
pub fn unix_now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos().min(i64::MAX as u128) as i64)
        .unwrap_or(0)
}
