//! One simulated run (TigerBeetle's VOPR shape): the seed derives every parameter; a safety
//! phase runs the workload under faults; a heal phase removes every fault and the cluster must
//! converge (one leader, every member at the same applied state, a fresh write commits). A
//! failure is a crash (a member stopped on its own, or something panicked), a liveness failure
//! (no convergence in time) or a correctness failure (a safety property, linearizability or
//! the watch guarantees broke).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn_core::kv::PutRequest;
use cairn_core::pipeline::PlantedPipelineBug;
use cairn_core::{Config, Request};
use cairn_io_sim::clock::ClockModel;
use cairn_io_sim::disk::SimDisk;
use cairn_io_sim::member::{self, MemberEnv, SendFaults};
use madsim::net::NetSim;
use madsim::runtime::{Handle, NodeHandle};
use madsim::time::Instant;
use rand::Rng;
use serde_json::json;

use crate::history::{Counts, History};
use crate::linearizability::{self, Budget, Verdict};
use crate::observer::SimObserver;
use crate::params::{PlantedBug, RunParams};
use crate::trace::Trace;
use crate::watch_check;
use crate::workload::{self, ClientCtx};

#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    pub planted: PlantedBug,
    /// Keep every trace line (for `replay`); the hash is always computed.
    pub keep_trace: bool,
    /// Override the seed's safety phase length (tests that want a short run).
    pub safety_ms: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    Crash(String),
    Liveness(String),
    Correctness(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Crash(s) => write!(f, "crash: {s}"),
            Failure::Liveness(s) => write!(f, "liveness: {s}"),
            Failure::Correctness(s) => write!(f, "correctness: {s}"),
        }
    }
}

#[derive(Clone, Debug)]
pub struct RunReport {
    pub seed: u64,
    pub params: RunParams,
    pub failure: Option<Failure>,
    pub trace_hash: u64,
    pub trace_len: u64,
    pub trace_lines: Vec<String>,
    pub counts: Counts,
    /// Simulated milliseconds the run lasted.
    pub sim_ms: u64,
    /// Operations the linearizability checker looked at.
    pub checked_ops: usize,
    /// Wall-clock time the end-of-run checks (linearizability, watches, lost writes) took.
    /// Not part of the trace: it varies from machine to machine.
    pub check_wall: Duration,
}

/// Runs one seed to completion. Deterministic: the same seed and options give the same report
/// (and trace hash).
pub fn run_seed(seed: u64, opts: &RunOptions) -> RunReport {
    let mut params = RunParams::from_seed(seed, opts.planted);
    if let Some(ms) = opts.safety_ms {
        params.safety_ms = ms;
    }
    let mut config = madsim::Config::default();
    config.net.packet_loss_rate = params.packet_loss;
    config.net.send_latency =
        Duration::from_millis(params.latency_ms_min)..Duration::from_millis(params.latency_ms_max);
    let rt = madsim::runtime::Runtime::with_seed_and_config(seed, config);
    let p = params.clone();
    let keep = opts.keep_trace;
    let simulated = std::panic::catch_unwind(AssertUnwindSafe(|| rt.block_on(simulate(p, keep))));
    let (mut report, observer, history) = match simulated {
        Ok(done) => done,
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".into());
            return RunReport {
                seed,
                params,
                failure: Some(Failure::Crash(format!("panic: {msg}"))),
                trace_hash: 0,
                trace_len: 0,
                trace_lines: vec![],
                counts: Counts::default(),
                sim_ms: 0,
                checked_ops: 0,
                check_wall: Duration::ZERO,
            };
        }
    };
    // Outside the simulation, so that the checks' cost is real time.
    let started = std::time::Instant::now();
    if report.failure.is_none() {
        report.failure = check_histories(&observer, &history, &history.ops());
    }
    report.check_wall = started.elapsed();
    report
}

struct Member {
    node: NodeHandle,
    env: Arc<MemberEnv>,
    down: bool,
    paused: bool,
}

fn member_addr(id: u64) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, id as u8)), 2380)
}

fn client_addr(id: u64) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 1, id as u8)), 4000)
}

fn global_ms(epoch: Instant) -> u64 {
    Instant::now().duration_since(epoch).as_millis() as u64
}

/// Runs the cluster through both phases; the end-of-run checks are left to the caller.
async fn simulate(params: RunParams, keep_trace: bool) -> (RunReport, Arc<SimObserver>, History) {
    let handle = Handle::current();
    let epoch = Instant::now();
    let trace = Trace::new(keep_trace);
    let observer = Arc::new(SimObserver::new(epoch, trace.clone()));
    let history = History::default();
    let stop = Arc::new(AtomicBool::new(false));
    trace.record(0, "params", json!({ "params": format!("{params:?}") }));

    let ids: Vec<u64> = (1..=params.members).collect();
    let peers: BTreeMap<u64, SocketAddr> = ids.iter().map(|&i| (i, member_addr(i))).collect();
    let mut members: BTreeMap<u64, Member> = BTreeMap::new();
    for &id in &ids {
        let mut config = Config::new(id, ids.clone(), params.seed.wrapping_mul(31).wrapping_add(id));
        config.snapshot_entries = params.snapshot_entries;
        config.snapshot_catch_up_entries = params.snapshot_entries / 2;
        // Shorter than the clients' own timeout, so members usually answer "timed out" first.
        config.request_timeout_ms = 1_500;
        config.planted_bug_stale_reads = params.planted == PlantedBug::StaleReads;
        let mut disk = SimDisk::new();
        disk.set_skip_sync(params.planted == PlantedBug::SkipFsync);
        let clock = ClockModel::random(&mut madsim::rand::thread_rng(), params.skew);
        let env = Arc::new(MemberEnv {
            id,
            addr: member_addr(id),
            peers: peers.clone(),
            config,
            disk: Arc::new(Mutex::new(disk)),
            clock: Arc::new(Mutex::new(clock)),
            send_faults: Arc::new(Mutex::new(SendFaults { duplicate_rate: params.duplicate_rate })),
            observer: observer.clone(),
            epoch,
            fsync_us_max: params.fsync_us_max,
            planted: match params.planted {
                PlantedBug::AckBeforeSync => PlantedPipelineBug::AckBeforeSync,
                _ => PlantedPipelineBug::None,
            },
            boots: AtomicU64::new(0),
        });
        let init_env = env.clone();
        let node = handle
            .create_node()
            .name(format!("member-{id}"))
            .ip(member_addr(id).ip())
            .init(move || member::run(init_env.clone()))
            .build();
        members.insert(id, Member { node, env, down: false, paused: false });
    }

    let member_list: Vec<(u64, SocketAddr)> = peers.iter().map(|(&i, &a)| (i, a)).collect();
    let mut client_nodes = Vec::new();
    let mut next_client = 1u64;
    let mut spawn_client = |kind: &str| {
        let id = next_client;
        next_client += 1;
        let ctx = ClientCtx {
            id,
            addr: client_addr(id),
            members: member_list.clone(),
            history: history.clone(),
            trace: trace.clone(),
            epoch,
            params: params.clone(),
            stop: stop.clone(),
        };
        let node = handle.create_node().name(format!("{kind}-{id}")).ip(client_addr(id).ip()).build();
        match kind {
            "kv" => drop(node.spawn(workload::kv_client(ctx))),
            "lease" => drop(node.spawn(workload::lease_client(ctx))),
            _ => drop(node.spawn(workload::watcher(ctx))),
        }
        client_nodes.push(node);
    };
    for _ in 0..params.clients {
        spawn_client("kv");
    }
    for _ in 0..params.lease_clients {
        spawn_client("lease");
    }
    for _ in 0..params.watchers {
        spawn_client("watch");
    }

    // ---- Safety phase: workload under faults ----
    let mut faults = Faults { restarts: vec![], resumes: vec![], heal_partition_at: None };
    let safety_end = epoch + Duration::from_millis(params.safety_ms);
    while Instant::now() < safety_end && observer.violation().is_none() && observer.stopped().is_none() {
        let wait = madsim::rand::thread_rng()
            .gen_range(params.fault_interval_ms / 2..=params.fault_interval_ms * 3 / 2);
        madsim::time::sleep(Duration::from_millis(wait)).await;
        faults.due(&handle, &mut members, &client_nodes, &trace, epoch);
        faults.inject(&params, &handle, &mut members, &client_nodes, &observer, &trace, epoch);
    }

    // ---- Heal phase: remove every fault, stop the workload, converge ----
    let heal_start = global_ms(epoch);
    trace.record(heal_start, "heal", json!({}));
    unclog_all(&members, &client_nodes);
    for (&id, m) in members.iter_mut() {
        if m.down {
            handle.restart(m.node.id());
            m.down = false;
            trace.record(global_ms(epoch), "restart", json!({ "member": id }));
        }
        if m.paused {
            handle.resume(m.node.id());
            m.paused = false;
        }
    }
    stop.store(true, Ordering::SeqCst);

    // A broken safety property is reported before a member's stop: the stop is usually how
    // raft noticed the same damage later (a member that lost acknowledged entries).
    let mut failure = observer.violation().map(|v| Failure::Correctness(v.to_string()));
    if failure.is_none() {
        failure = observer.stopped().map(|(m, why)| Failure::Crash(format!("member {m} stopped: {why}")));
    }
    if failure.is_none() {
        failure = converge(&params, &observer, &members, &history, epoch, &trace).await.err();
    }
    // Clients finish their last operation (each gives up after its timeout).
    madsim::time::sleep(Duration::from_millis(3_000)).await;
    let sim_ms = global_ms(epoch);
    trace.record(sim_ms, "end", json!({ "failure": failure.as_ref().map(|f| f.to_string()) }));
    let report = RunReport {
        seed: params.seed,
        failure,
        trace_hash: trace.hash(),
        trace_len: trace.len(),
        trace_lines: trace.lines(),
        counts: history.counts(),
        sim_ms,
        checked_ops: history.ops().len(),
        check_wall: Duration::ZERO,
        params,
    };
    (report, observer, history)
}

/// Waits for the healed cluster to agree: a fresh write through the leader commits, then every
/// member applies it and reaches the same state.
async fn converge(
    params: &RunParams,
    observer: &SimObserver,
    members: &BTreeMap<u64, Member>,
    history: &History,
    epoch: Instant,
    trace: &Trace,
) -> Result<(), Failure> {
    let deadline = Instant::now() + Duration::from_millis(params.heal_ms_max);
    let sentinel = ClientCtx {
        id: 200,
        addr: client_addr(200),
        members: members.keys().map(|&i| (i, member_addr(i))).collect(),
        history: history.clone(),
        trace: trace.clone(),
        epoch,
        params: params.clone(),
        stop: Arc::new(AtomicBool::new(false)),
    };
    let put =
        Request::Put(PutRequest { key: "sentinel".into(), value: "converged".into(), ..Default::default() });
    // Keep each member's state from here on: every member that converges applies the
    // sentinel write below, so each leaves a final state for the end-of-run checks.
    observer.capture_final_state(true);
    let node = Handle::current().create_node().name("sentinel").ip(sentinel.addr.ip()).build();
    let written = node.spawn(async move { workload::call_until_ok(&sentinel, put, deadline).await }).await;
    let Some(revision) = written.ok().flatten() else {
        return Err(Failure::Liveness(format!(
            "no write committed within {} ms of healing (members: {})",
            params.heal_ms_max,
            observer.describe_members()
        )));
    };
    loop {
        if observer.violation().is_some() || observer.stopped().is_some() {
            return Ok(()); // reported by the caller's checks
        }
        if observer.converged(members.len(), revision) {
            trace.record(global_ms(epoch), "converged", json!({ "revision": revision }));
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Failure::Liveness(format!(
                "members did not converge within {} ms of healing: {}",
                params.heal_ms_max,
                observer.describe_members()
            )));
        }
        madsim::time::sleep(Duration::from_millis(100)).await;
    }
}

fn check_histories(
    observer: &SimObserver,
    history: &History,
    ops: &[linearizability::Op],
) -> Option<Failure> {
    if let Some(v) = observer.violation() {
        return Some(Failure::Correctness(v.to_string()));
    }
    if let Some((m, why)) = observer.stopped() {
        return Some(Failure::Crash(format!("member {m} stopped: {why}")));
    }
    match linearizability::check(ops, Budget::default()) {
        Verdict::Linearizable => {}
        Verdict::Violation(v) => return Some(Failure::Correctness(format!("not linearizable: {v}"))),
        Verdict::Malformed { index, reason } => {
            return Some(Failure::Correctness(format!("client history malformed at op {index}: {reason}")))
        }
        Verdict::Unknown { key, reason } => {
            return Some(Failure::Correctness(format!(
                "linearizability undecided for key {:?}: {reason}",
                String::from_utf8_lossy(&key)
            )))
        }
    }
    let final_state = observer.final_state();
    let verdict = observer.with_invariants(|inv| {
        for s in history.watches() {
            watch_check::check_session(inv.reference_events(), &s)?;
        }
        let state = final_state.as_ref().expect("a converged run captured its final state");
        inv.check_final(state, &history.acked())
    });
    verdict.err().map(|v| Failure::Correctness(v.to_string()))
}

/// Fault actions and their scheduled undoing.
struct Faults {
    restarts: Vec<(Instant, u64)>,
    resumes: Vec<(Instant, u64)>,
    heal_partition_at: Option<Instant>,
}

impl Faults {
    /// Undoes faults whose time has come.
    fn due(
        &mut self,
        handle: &Handle,
        members: &mut BTreeMap<u64, Member>,
        clients: &[NodeHandle],
        trace: &Trace,
        epoch: Instant,
    ) {
        let now = Instant::now();
        let (due, later): (Vec<_>, Vec<_>) = self.restarts.drain(..).partition(|(at, _)| *at <= now);
        self.restarts = later;
        for (_, id) in due {
            let m = members.get_mut(&id).unwrap();
            handle.restart(m.node.id());
            m.down = false;
            trace.record(global_ms(epoch), "restart", json!({ "member": id }));
        }
        let (due, later): (Vec<_>, Vec<_>) = self.resumes.drain(..).partition(|(at, _)| *at <= now);
        self.resumes = later;
        for (_, id) in due {
            let m = members.get_mut(&id).unwrap();
            handle.resume(m.node.id());
            m.paused = false;
            trace.record(global_ms(epoch), "resume", json!({ "member": id }));
        }
        if self.heal_partition_at.is_some_and(|at| at <= now) {
            self.heal_partition_at = None;
            unclog_all(members, clients);
            trace.record(global_ms(epoch), "heal-partition", json!({}));
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn inject(
        &mut self,
        params: &RunParams,
        handle: &Handle,
        members: &mut BTreeMap<u64, Member>,
        clients: &[NodeHandle],
        observer: &SimObserver,
        trace: &Trace,
        epoch: Instant,
    ) {
        let mut rng = madsim::rand::thread_rng();
        let total =
            params.crash_weight + params.partition_weight + params.pause_weight + params.clock_step_weight;
        let mut roll = rng.gen_range(0..total.max(1));
        let ids: Vec<u64> = members.keys().copied().collect();
        let now = Instant::now();
        let at = global_ms(epoch);
        if roll < params.crash_weight {
            let Some(id) = pick_running(members, &mut rng) else { return };
            let m = members.get_mut(&id).unwrap();
            handle.kill(m.node.id());
            m.env.disk.lock().unwrap().crash(&mut rng);
            m.down = true;
            observer.crashed(id);
            let after = rng.gen_range(200..5_000);
            self.restarts.push((now + Duration::from_millis(after), id));
            trace.record(at, "crash", json!({ "member": id, "restart_after_ms": after }));
            return;
        }
        roll -= params.crash_weight;
        if roll < params.partition_weight {
            unclog_all(members, clients);
            let net = NetSim::current();
            let node = |i: u64| members[&i].node.id();
            let mut shuffled = ids.clone();
            for i in (1..shuffled.len()).rev() {
                shuffled.swap(i, rng.gen_range(0..=i));
            }
            let kind = rng.gen_range(0..5);
            let description = match kind {
                0 => {
                    // One member alone.
                    let x = shuffled[0];
                    for &y in &shuffled[1..] {
                        net.clog_link(node(x), node(y));
                        net.clog_link(node(y), node(x));
                    }
                    format!("isolate {x}")
                }
                1 => {
                    // A minority and a majority, cut both ways.
                    let k = rng.gen_range(1..=shuffled.len() / 2);
                    let (a, b) = shuffled.split_at(k);
                    for &x in a {
                        for &y in b {
                            net.clog_link(node(x), node(y));
                            net.clog_link(node(y), node(x));
                        }
                    }
                    format!("split {a:?} | {b:?}")
                }
                2 => {
                    // Asymmetric: one side hears the other but cannot answer.
                    let k = rng.gen_range(1..shuffled.len());
                    let (a, b) = shuffled.split_at(k);
                    for &x in a {
                        for &y in b {
                            net.clog_link(node(x), node(y));
                        }
                    }
                    format!("one-way {a:?} -/-> {b:?}")
                }
                3 if shuffled.len() >= 3 => {
                    // Bridge: two sides that only one member connects.
                    let bridge = shuffled[0];
                    let rest = &shuffled[1..];
                    let (a, b) = rest.split_at(rest.len() / 2);
                    for &x in a {
                        for &y in b {
                            net.clog_link(node(x), node(y));
                            net.clog_link(node(y), node(x));
                        }
                    }
                    format!("bridge {a:?} <-{bridge}-> {b:?}")
                }
                _ => {
                    // Clients cut off from some members.
                    let Some(c) = clients.get(rng.gen_range(0..clients.len().max(1))) else { return };
                    let x = shuffled[0];
                    net.clog_link(c.id(), node(x));
                    net.clog_link(node(x), c.id());
                    format!("client {} from {x}", c.id())
                }
            };
            let after = rng.gen_range(500..6_000);
            self.heal_partition_at = Some(now + Duration::from_millis(after));
            trace.record(at, "partition", json!({ "what": description, "heal_after_ms": after }));
            return;
        }
        roll -= params.partition_weight;
        if roll < params.pause_weight {
            let Some(id) = pick_running(members, &mut rng) else { return };
            let m = members.get_mut(&id).unwrap();
            handle.pause(m.node.id());
            m.paused = true;
            let after = rng.gen_range(200..4_000);
            self.resumes.push((now + Duration::from_millis(after), id));
            trace.record(at, "pause", json!({ "member": id, "resume_after_ms": after }));
            return;
        }
        let id = ids[rng.gen_range(0..ids.len())];
        let delta: i64 =
            if rng.gen_bool(0.5) { rng.gen_range(100..3_000) } else { -rng.gen_range(100..3_000) };
        members[&id].env.clock.lock().unwrap().add_step(at, delta);
        trace.record(at, "clock-step", json!({ "member": id, "delta_ms": delta }));
    }
}

/// A member that is neither crashed nor paused, chosen at random; None if there is none.
fn pick_running(members: &BTreeMap<u64, Member>, rng: &mut impl Rng) -> Option<u64> {
    let running: Vec<u64> = members.iter().filter(|(_, m)| !m.down && !m.paused).map(|(&id, _)| id).collect();
    (!running.is_empty()).then(|| running[rng.gen_range(0..running.len())])
}

fn unclog_all(members: &BTreeMap<u64, Member>, clients: &[NodeHandle]) {
    let net = NetSim::current();
    let mut nodes: Vec<_> = members.values().map(|m| m.node.id()).collect();
    nodes.extend(clients.iter().map(|c| c.id()));
    let set: BTreeSet<_> = nodes.iter().copied().collect();
    for &a in &set {
        for &b in &set {
            if a != b {
                net.unclog_link(a, b);
            }
        }
    }
}
