//! One member under madsim: a thin loop that carries out what `cairn_core::Pipeline` asks on
//! the simulated network and disk and feeds the core time from the member's own skewed clock.
//! No protocol logic and no ordering of its own: the pipeline is the one the real driver
//! (`cairn-io-tokio`) runs.
//!
//! The loop also serves the simulator's clients (requests and watches) over the same
//! endpoint, so partitions and crashes hit clients as they hit peers.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn_core::pipeline::PlantedPipelineBug;
use cairn_core::{
    Config, Core, Effects, Output, Pipeline, Recovered, RequestId, WatchId, WatchRequest, WatchUpdate,
};
use futures::{FutureExt, StreamExt};
use madsim::net::Endpoint;
use madsim::time::Instant;
use rand::Rng;

use crate::clock::ClockModel;
use crate::disk::SimDisk;
use crate::wire::{WatchEnd, Wire};

/// The one message tag every Cairn endpoint uses; `Wire` says what a message is.
pub const TAG: u64 = 0xCA12;

/// Network faults madsim has no knob for, applied by the sender.
#[derive(Clone, Debug, Default)]
pub struct SendFaults {
    /// Chance that a message is sent twice.
    pub duplicate_rate: f64,
}

/// What observes a member (the simulator's trace and invariant checkers). Called
/// synchronously from the member's loop; must not block.
pub trait Observer: Send + Sync {
    fn booted(&self, member: u64, core: &Core, recovered: Option<&Recovered>);
    fn advanced(&self, member: u64, core: &Core, out: &Output);
    /// The member is sending these messages now (not when the core produced them: the
    /// pipeline holds some until the writes before them are durable).
    fn sent(&self, member: u64, msgs: &[cairn_core::eraftpb::Message], forwards: &[cairn_core::Forward]);
    /// The member's disk started an fsync of everything written so far.
    fn sync_started(&self, member: u64);
    /// The fsync last started completed: what was written before it started is durable.
    fn synced(&self, member: u64);
    fn stopped(&self, member: u64, reason: &str);
    /// A configuration change removed the member and it stopped, as a real one does.
    fn removed(&self, member: u64);
}

/// Everything about a member that outlives its crashes: its address, its disk, its clock.
pub struct MemberEnv {
    pub id: u64,
    pub addr: SocketAddr,
    /// Whom to reach until the member set is known from the log (see `peer_addresses`).
    pub peers: BTreeMap<u64, SocketAddr>,
    pub config: Config,
    pub disk: Arc<Mutex<SimDisk>>,
    pub clock: Arc<Mutex<ClockModel>>,
    pub send_faults: Arc<Mutex<SendFaults>>,
    pub observer: Arc<dyn Observer>,
    /// The simulation's time zero, from which global milliseconds count.
    pub epoch: Instant,
    /// Largest simulated fsync latency in microseconds.
    pub fsync_us_max: u64,
    /// A bug planted in the member's pipeline (simulator tests of the checkers only).
    pub planted: PlantedPipelineBug,
    pub boots: AtomicU64,
}

impl MemberEnv {
    pub fn global_ms(&self) -> u64 {
        Instant::now().duration_since(self.epoch).as_millis() as u64
    }

    fn local_ms(&self) -> u64 {
        self.clock.lock().unwrap().now_ms(self.global_ms())
    }
}

/// Runs a member until it is killed (madsim drops its tasks) or hits a fatal error (it stops
/// and reports why: the simulator counts that as a crash failure).
///
/// The member's outputs go through `cairn_core::Pipeline`, exactly as in the real driver:
/// writes land in the disk's volatile journal when the pipeline hands them over (a real
/// storage thread's queue is lost in a crash the same way: some prefix of it survives), and a
/// disk task fsyncs them asynchronously, a latency drawn per fsync, while the member goes on
/// stepping, voting and answering reads. Messages and acknowledgements that wait for durability
/// are released only when that task reports the fsync done.
pub async fn run(env: Arc<MemberEnv>) {
    let boot = env.boots.fetch_add(1, Ordering::SeqCst) + 1;
    let recovered = match env.disk.lock().unwrap().recover() {
        Ok((r, _report)) => r,
        Err(e) => return env.observer.stopped(env.id, &format!("disk recovery failed: {e}")),
    };
    let mut config = env.config.clone();
    // A fresh seed per boot, as a real boot draws one from the OS (see `Config::seed`).
    config.seed = config.seed ^ boot.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let core = match Core::new(config, recovered.clone()) {
        Ok(c) => c,
        Err(e) => return env.observer.stopped(env.id, &format!("boot failed: {e}")),
    };
    env.observer.booted(env.id, &core, recovered.as_ref());
    let mut pipeline = Pipeline::new(core);
    pipeline.plant(env.planted);
    let ep = Arc::new(Endpoint::bind(env.addr).await.expect("bind the member's address"));

    // One task receives; the loop below owns the core.
    let (tx, mut rx) = futures::channel::mpsc::unbounded::<(Wire, SocketAddr)>();
    let recv_ep = ep.clone();
    madsim::task::spawn(async move {
        while let Ok((payload, from)) = recv_ep.recv_from_raw(TAG).await {
            if let Ok(w) = payload.downcast::<Wire>() {
                if tx.unbounded_send((*w, from)).is_err() {
                    return;
                }
            }
        }
    });
    // The disk task: fsyncs what was written, reports tickets durable.
    let (sync_tx, sync_rx) = futures::channel::mpsc::unbounded::<(Option<u64>, bool)>();
    let (durable_tx, mut durable_rx) = futures::channel::mpsc::unbounded::<Result<u64, String>>();
    madsim::task::spawn(disk_task(env.clone(), sync_rx, durable_tx));
    // Snapshot files: written by a task of their own, reported back when durable.
    let (file_tx, mut file_rx) = futures::channel::mpsc::unbounded::<()>();

    let mut next_request: RequestId = 1;
    let mut requests: BTreeMap<RequestId, (SocketAddr, u64)> = BTreeMap::new();
    // The core's watch id for each client's watch, and back.
    let mut next_watch: WatchId = 1;
    let mut watch_ids: BTreeMap<(SocketAddr, u64), WatchId> = BTreeMap::new();
    let mut watch_owners: BTreeMap<WatchId, (SocketAddr, u64, u64)> = BTreeMap::new();
    // Watches still taking their history a page at a time: one page each per turn of the loop,
    // so writes, elections and snapshots happen between pages (as between a slow client's reads).
    let mut paging: BTreeSet<WatchId> = BTreeSet::new();

    pipeline.core_mut().set_wall_clock(crate::clock::wall_ns(env.local_ms()));
    pipeline.core_mut().handle_timeout(env.local_ms());
    let mut fx = Effects::default();
    // The peers follow the configuration, as the real transport's do: every member's first
    // peer URL, once the member set is known from the log.
    let mut peers = env.peers.clone();
    let mut peer_set: Vec<(u64, Vec<String>)> = Vec::new();
    // Members learned from peers' answers that this member's applied configuration does not
    // hold yet (it fell behind the change that added them), and when it last asked.
    let mut learned: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    let mut directory_asked_ms: Option<u64> = None;
    // The member publishes its name through the log until that commits, as the daemon does
    // at start (etcd's "started": the strict reconfiguration check counts only those).
    let mut publish_due: Option<u64> = Some(0);
    loop {
        // Carry out what the pipeline asks until it asks nothing more.
        loop {
            let more = match pipeline.pump(&mut |core, out| env.observer.advanced(env.id, core, out)) {
                Ok(more) => more,
                Err(e) => return env.observer.stopped(env.id, &format!("fatal: {e}")),
            };
            fx.append(more);
            if fx.is_empty() {
                break;
            }
            let done = std::mem::take(&mut fx);
            // Writes first, before anything that awaits: the disk task may start an fsync at any
            // await, and what the core appended (and the observer saw) must be on the disk by
            // then, as a real storage thread has every job handed to it.
            if !done.writes.is_empty() {
                let mut disk = env.disk.lock().unwrap();
                for w in done.writes {
                    let (ticket, sync) = (w.ticket, w.sync);
                    disk.write(&w.kind);
                    let _ = sync_tx.unbounded_send((ticket, sync));
                }
            }
            env.observer.sent(env.id, &done.messages, &done.forwards);
            let unknown = done.messages.iter().any(|m| !peers.contains_key(&m.to))
                || done.forwards.iter().any(|f| !peers.contains_key(&f.to));
            if unknown && directory_asked_ms.is_none_or(|at| env.global_ms() >= at + DIRECTORY_RETRY_MS) {
                directory_asked_ms = Some(env.global_ms());
                for &addr in peers.values() {
                    let _ = ep.send_to_raw(addr, TAG, Box::new(Wire::DirectoryQuery)).await;
                }
            }
            send_all(
                &env,
                &peers,
                &ep,
                done.messages.into_iter().map(Wire::Raft).chain(done.forwards.into_iter().map(Wire::Forward)),
            )
            .await;
            if done.snapshot_file.is_some() {
                let (env, file_tx) = (env.clone(), file_tx.clone());
                madsim::task::spawn(async move {
                    // Writing and fsyncing the file; its data goes to the journal with its record.
                    let us = madsim::rand::thread_rng().gen_range(0..=env.fsync_us_max * 4);
                    madsim::time::sleep(Duration::from_micros(us)).await;
                    let _ = file_tx.unbounded_send(());
                });
            }
            for (rid, result) in done.responses {
                if rid == PUBLISH_REQUEST {
                    publish_due = result.is_err().then(|| env.local_ms() + PUBLISH_RETRY_MS);
                    continue;
                }
                if let Some((client, client_id)) = requests.remove(&rid) {
                    let _ =
                        ep.send_to_raw(client, TAG, Box::new(Wire::Reply { id: client_id, result })).await;
                }
            }
            for (wid, update) in done.watch_updates {
                let Some((client, watch, seq)) = watch_owners.get_mut(&wid) else { continue };
                let msg = match update {
                    WatchUpdate::Events(events) => {
                        *seq += 1;
                        Wire::WatchEvents { watch: *watch, seq: *seq - 1, events }
                    }
                    WatchUpdate::Compacted { compact_revision } => {
                        Wire::WatchEnded { watch: *watch, end: WatchEnd::Compacted { compact_revision } }
                    }
                };
                let _ = ep.send_to_raw(*client, TAG, Box::new(msg)).await;
            }
        }

        let core = pipeline.core();
        if core.may_stop() {
            return env.observer.removed(env.id);
        }
        let members = core.state().members();
        if !members.is_empty()
            && (members.len() != peer_set.len()
                || members.values().zip(&peer_set).any(|(m, (id, urls))| m.id != *id || &m.peer_urls != urls))
        {
            peer_set = members.values().map(|m| (m.id, m.peer_urls.clone())).collect();
            learned.retain(|id, _| !members.contains_key(id) && !core.state().was_removed(*id));
            peers = peer_addresses(env.id, &peer_set);
            let extra: Vec<(u64, Vec<String>)> = learned.iter().map(|(id, u)| (*id, u.clone())).collect();
            peers.extend(peer_addresses(env.id, &extra));
        }

        for wid in std::mem::take(&mut paging) {
            let Some(&(client, watch, seq)) = watch_owners.get(&wid) else { continue };
            let msg = match pipeline.core_mut().watch_next_page(wid) {
                Ok(page) => {
                    if page.more {
                        paging.insert(wid);
                    }
                    if let Some(owner) = watch_owners.get_mut(&wid) {
                        owner.2 += 1;
                    }
                    Wire::WatchEvents { watch, seq, events: page.events }
                }
                Err(e) => {
                    watch_owners.remove(&wid);
                    watch_ids.remove(&(client, watch));
                    let end = match e {
                        cairn_core::Error::Compacted { compacted_revision } => {
                            WatchEnd::Compacted { compact_revision: compacted_revision }
                        }
                        _ => WatchEnd::Canceled,
                    };
                    Wire::WatchEnded { watch, end }
                }
            };
            let _ = ep.send_to_raw(client, TAG, Box::new(msg)).await;
        }

        // Wait for a message, the disk, or the core's next deadline on this member's clock.
        let wake_global_ms =
            env.clock.lock().unwrap().global_ms_for(pipeline.core().poll_timeout(), env.global_ms());
        let deadline = env.epoch + Duration::from_millis(wake_global_ms);
        futures::select_biased! {
            durable = durable_rx.next() => match durable {
                Some(Ok(ticket)) => fx = pipeline.on_durable(ticket),
                Some(Err(e)) => return env.observer.stopped(env.id, &e),
                None => return,
            },
            written = file_rx.next() => if written.is_some() {
                match pipeline.on_snapshot_file_written(Ok(())) {
                    Ok(more) => fx = more,
                    Err(e) => return env.observer.stopped(env.id, &format!("fatal: {e}")),
                }
            },
            msg = rx.next() => match msg {
                Some((Wire::Raft(m), from)) => {
                    if peers.get(&m.from).is_some_and(|&a| a != from) {
                        // A message claiming a sender other than the member it came from (raft-rs
                        // passes on a message to the leader with its first sender's id): the real
                        // transport drops those after the hello, and so does this one.
                    } else if pipeline.core().state().was_removed(m.from) {
                        let _ = ep.send_to_raw(from, TAG, Box::new(Wire::Removed { id: m.from })).await;
                    } else {
                        pipeline.core_mut().step(m);
                    }
                }
                Some((Wire::DirectoryQuery, from)) => {
                    let list = pipeline.core().state().members().values().map(|m| (m.id, m.peer_urls.clone())).collect();
                    let _ = ep.send_to_raw(from, TAG, Box::new(Wire::Directory(list))).await;
                }
                Some((Wire::Directory(list), from)) => {
                    // Believed from a member of the configuration as this one knows it only.
                    if peers.values().any(|&a| a == from) {
                        let core = pipeline.core();
                        for (id, urls) in list {
                            if id != env.id && !core.state().members().contains_key(&id) && !core.state().was_removed(id) {
                                learned.insert(id, urls);
                            }
                        }
                        let extra: Vec<(u64, Vec<String>)> = learned.iter().map(|(id, u)| (*id, u.clone())).collect();
                        peers.extend(peer_addresses(env.id, &extra));
                    }
                }
                Some((Wire::Removed { id }, from)) => {
                    // Only about this member, and only from a member of the configuration as
                    // this one knows it.
                    if id == env.id && peers.values().any(|&a| a == from) {
                        return env.observer.removed(env.id);
                    }
                }
                Some((Wire::Forward(f), _)) => pipeline.core_mut().receive_forward(f),
                Some((Wire::Request { id, request, who }, from)) => {
                    let rid = next_request;
                    next_request += 1;
                    requests.insert(rid, (from, id));
                    pipeline.core_mut().submit_with_auth(rid, request, who);
                }
                Some((Wire::Watch { watch, key, range_end, start_revision, who }, from)) => {
                    let wid = next_watch;
                    next_watch += 1;
                    let req = WatchRequest { key, range_end, start_revision, prev_kv: true, ..Default::default() };
                    match pipeline.core_mut().watch_with_auth(wid, req, who) {
                        Ok(page) => {
                            watch_ids.insert((from, watch), wid);
                            watch_owners.insert(wid, (from, watch, 1));
                            if page.more {
                                paging.insert(wid);
                            }
                            let msg = Wire::WatchEvents { watch, seq: 0, events: page.events };
                            let _ = ep.send_to_raw(from, TAG, Box::new(msg)).await;
                        }
                        Err(e) => {
                            let end = match e {
                                cairn_core::Error::Compacted { compacted_revision } => {
                                    WatchEnd::Compacted { compact_revision: compacted_revision }
                                }
                                _ => WatchEnd::Canceled,
                            };
                            let _ = ep.send_to_raw(from, TAG, Box::new(Wire::WatchEnded { watch, end })).await;
                        }
                    }
                }
                Some((Wire::CancelWatch { watch }, from)) => {
                    if let Some(wid) = watch_ids.remove(&(from, watch)) {
                        watch_owners.remove(&wid);
                        pipeline.core_mut().cancel_watch(wid);
                    }
                }
                Some((Wire::Reply { .. } | Wire::WatchEvents { .. } | Wire::WatchEnded { .. }, _)) => {}
                None => return,
            },
            _ = madsim::time::sleep_until(deadline).fuse() => {}
        }
        let core = pipeline.core_mut();
        core.set_wall_clock(crate::clock::wall_ns(env.local_ms()));
        core.handle_timeout(env.local_ms());
        if publish_due.is_some_and(|at| env.local_ms() >= at) {
            publish_due = None;
            let request = cairn_core::Request::PublishMember {
                member: env.id,
                name: format!("member-{}", env.id),
                client_urls: vec![format!("http://{}", env.addr)],
            };
            core.submit(PUBLISH_REQUEST, request);
        }
    }
}

/// How long a member waits before asking its peers for the member list again.
const DIRECTORY_RETRY_MS: u64 = 500;

/// The request id the member's own publication goes under (clients' ids count up from 1).
const PUBLISH_REQUEST: RequestId = 1 << 62;
/// How long after a failed publication the member tries again.
const PUBLISH_RETRY_MS: u64 = 500;

/// The member's disk as its storage thread: takes every write handed over since it last
/// looked, fsyncs once if any asked for it (group commit), taking a latency drawn per fsync,
/// then reports the last ticket among them durable. Only bytes written before the fsync
/// started count as synced.
async fn disk_task(
    env: Arc<MemberEnv>,
    mut writes: futures::channel::mpsc::UnboundedReceiver<(Option<u64>, bool)>,
    durable: futures::channel::mpsc::UnboundedSender<Result<u64, String>>,
) {
    while let Some(first) = writes.next().await {
        let (mut ticket, mut sync) = first;
        while let Ok((t, s)) = writes.try_recv() {
            ticket = t.or(ticket);
            sync |= s;
        }
        if sync {
            let len = env.disk.lock().unwrap().written_len();
            env.observer.sync_started(env.id);
            let us = madsim::rand::thread_rng().gen_range(0..=env.fsync_us_max);
            madsim::time::sleep(Duration::from_micros(us)).await;
            let mut disk = env.disk.lock().unwrap();
            disk.sync_to(len);
            env.observer.synced(env.id);
            if disk.compaction_due() {
                if let Err(e) = disk.compact() {
                    let _ = durable.unbounded_send(Err(format!("disk compaction failed: {e}")));
                    return;
                }
            }
        }
        if let Some(t) = ticket {
            if durable.unbounded_send(Ok(t)).is_err() {
                return;
            }
        }
    }
}

/// Every other member's address, from its first peer URL (`http://ip:port`).
fn peer_addresses(me: u64, members: &[(u64, Vec<String>)]) -> BTreeMap<u64, SocketAddr> {
    members
        .iter()
        .filter(|(id, _)| *id != me)
        .filter_map(|(id, urls)| {
            let url = urls.first()?;
            let rest = url.strip_prefix("http://").unwrap_or(url).trim_end_matches('/');
            rest.parse().ok().map(|a| (*id, a))
        })
        .collect()
}

async fn send_all(
    env: &MemberEnv,
    peers: &BTreeMap<u64, SocketAddr>,
    ep: &Endpoint,
    msgs: impl Iterator<Item = Wire>,
) {
    let dup = env.send_faults.lock().unwrap().duplicate_rate;
    for w in msgs {
        let to = match &w {
            Wire::Raft(m) => m.to,
            Wire::Forward(f) => f.to,
            _ => continue,
        };
        let Some(&addr) = peers.get(&to) else { continue };
        if dup > 0.0 && madsim::rand::thread_rng().gen_bool(dup) {
            let _ = ep.send_to_raw(addr, TAG, Box::new(w.clone())).await;
        }
        let _ = ep.send_to_raw(addr, TAG, Box::new(w)).await;
    }
}
