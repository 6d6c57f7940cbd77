//! One member under madsim: a thin loop that moves `Core` outputs to the simulated network
//! and disk and feeds it time from the member's own skewed clock. No protocol logic: the
//! order of operations is the one `cairn_core`'s crate docs prescribe.
//!
//! The loop also serves the simulator's clients (requests and watches) over the same
//! endpoint, so partitions and crashes hit clients as they hit peers.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn_core::{Config, Core, Output, Recovered, RequestId, WatchId, WatchRequest, WatchUpdate};
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
    /// The member's disk acknowledged an fsync of everything written so far.
    fn synced(&self, member: u64);
    fn stopped(&self, member: u64, reason: &str);
}

/// Everything about a member that outlives its crashes: its address, its disk, its clock.
pub struct MemberEnv {
    pub id: u64,
    pub addr: SocketAddr,
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

/// Runs a member until it is killed (madsim drops the task) or hits a fatal error (it stops
/// and reports why: the simulator counts that as a crash failure).
pub async fn run(env: Arc<MemberEnv>) {
    let boot = env.boots.fetch_add(1, Ordering::SeqCst) + 1;
    let recovered = match env.disk.lock().unwrap().recover() {
        Ok((r, _report)) => r,
        Err(e) => return env.observer.stopped(env.id, &format!("disk recovery failed: {e}")),
    };
    let mut config = env.config.clone();
    // A fresh seed per boot, as a real boot draws one from the OS (see `Config::seed`).
    config.seed = config.seed ^ boot.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let mut core = match Core::new(config, recovered.clone()) {
        Ok(c) => c,
        Err(e) => return env.observer.stopped(env.id, &format!("boot failed: {e}")),
    };
    env.observer.booted(env.id, &core, recovered.as_ref());
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

    let mut next_request: RequestId = 1;
    let mut requests: BTreeMap<RequestId, (SocketAddr, u64)> = BTreeMap::new();
    // The core's watch id for each client's watch, and back.
    let mut next_watch: WatchId = 1;
    let mut watch_ids: BTreeMap<(SocketAddr, u64), WatchId> = BTreeMap::new();
    let mut watch_owners: BTreeMap<WatchId, (SocketAddr, u64, u64)> = BTreeMap::new();

    core.set_wall_clock(crate::clock::wall_ns(env.local_ms()));
    core.handle_timeout(env.local_ms());
    // Messages that may go only once the writes before them are durable, and the last ready
    // number those writes cover: as the real driver does, several readies share one fsync.
    let mut after_sync: Vec<cairn_core::eraftpb::Message> = Vec::new();
    let mut ack: Option<u64> = None;
    loop {
        // Act on everything the core wants done; fsync once when it has nothing more.
        let mut unsynced = false;
        loop {
            let out = match core.advance() {
                Ok(out) => out,
                Err(e) => return env.observer.stopped(env.id, &format!("fatal: {e}")),
            };
            if out.is_empty() {
                if !unsynced {
                    break;
                }
                // fsync: takes a little simulated time (a crash meanwhile loses the writes),
                // then everything written is durable.
                let us = madsim::rand::thread_rng().gen_range(0..=env.fsync_us_max);
                madsim::time::sleep(Duration::from_micros(us)).await;
                {
                    let mut disk = env.disk.lock().unwrap();
                    disk.sync();
                    env.observer.synced(env.id);
                    if disk.compaction_due() {
                        if let Err(e) = disk.compact() {
                            drop(disk);
                            return env.observer.stopped(env.id, &format!("disk compaction failed: {e}"));
                        }
                    }
                }
                unsynced = false;
                send_all(&env, &ep, after_sync.drain(..).map(Wire::Raft)).await;
                if let Some(n) = ack.take() {
                    core.on_persisted(n);
                }
                continue;
            }
            env.observer.advanced(env.id, &core, &out);
            send_all(&env, &ep, out.messages.iter().cloned().map(Wire::Raft)).await;
            if out.persist.is_some() || out.snapshot.is_some() || out.conf_state.is_some() {
                env.disk.lock().unwrap().write_output(&out);
                unsynced |= out.snapshot.is_some()
                    || out.conf_state.is_some()
                    || out.persist.as_ref().is_some_and(|p| p.must_sync);
            }
            if let Some(p) = &out.persist {
                if unsynced {
                    after_sync.extend(p.messages.iter().cloned());
                    ack = Some(p.number);
                } else {
                    // Only a commit index moved, and nothing before it waits for an fsync: as
                    // the real driver does, its messages go now and the write stays volatile
                    // (a crash may lose it).
                    send_all(&env, &ep, p.messages.iter().cloned().map(Wire::Raft)).await;
                    core.on_persisted(p.number);
                }
            }
            for (rid, result) in out.responses {
                if let Some((client, client_id)) = requests.remove(&rid) {
                    let _ =
                        ep.send_to_raw(client, TAG, Box::new(Wire::Reply { id: client_id, result })).await;
                }
            }
            for (wid, update) in out.watch_updates {
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

        // Wait for a message or the core's next deadline on this member's clock.
        let wake_global_ms = env.clock.lock().unwrap().global_ms_for(core.poll_timeout(), env.global_ms());
        let deadline = env.epoch + Duration::from_millis(wake_global_ms);
        futures::select_biased! {
            msg = rx.next() => match msg {
                Some((Wire::Raft(m), _)) => core.step(m),
                Some((Wire::Request { id, request }, from)) => {
                    let rid = next_request;
                    next_request += 1;
                    requests.insert(rid, (from, id));
                    core.submit(rid, request);
                }
                Some((Wire::Watch { watch, key, range_end, start_revision }, from)) => {
                    let wid = next_watch;
                    next_watch += 1;
                    let req = WatchRequest { key, range_end, start_revision, prev_kv: true, ..Default::default() };
                    match core.watch(wid, req) {
                        Ok(events) => {
                            watch_ids.insert((from, watch), wid);
                            watch_owners.insert(wid, (from, watch, 1));
                            let msg = Wire::WatchEvents { watch, seq: 0, events };
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
                        core.cancel_watch(wid);
                    }
                }
                Some((Wire::Reply { .. } | Wire::WatchEvents { .. } | Wire::WatchEnded { .. }, _)) => {}
                None => return,
            },
            _ = madsim::time::sleep_until(deadline).fuse() => {}
        }
        core.set_wall_clock(crate::clock::wall_ns(env.local_ms()));
        core.handle_timeout(env.local_ms());
    }
}

async fn send_all(env: &MemberEnv, ep: &Endpoint, msgs: impl Iterator<Item = Wire>) {
    let dup = env.send_faults.lock().unwrap().duplicate_rate;
    for w in msgs {
        let Wire::Raft(m) = &w else { continue };
        let Some(&addr) = env.peers.get(&m.to) else { continue };
        if dup > 0.0 && madsim::rand::thread_rng().gen_bool(dup) {
            let _ = ep.send_to_raw(addr, TAG, Box::new(w.clone())).await;
        }
        let _ = ep.send_to_raw(addr, TAG, Box::new(w)).await;
    }
}
