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
use crate::workload::{self, ClientCtx, Credentials, Directory};

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
    report.counts = history.counts();
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
        let m = start_member(&params, &handle, id, ids.clone(), peers.clone(), &observer, epoch);
        members.insert(id, m);
    }

    let directory: Directory = Arc::new(Mutex::new(peers.iter().map(|(&i, &a)| (i, a)).collect()));
    // With auth on, every client but the users acts as root.
    let root = params.auth.then(|| Credentials::new(cairn_core::auth::ROOT));
    let client_ctx = |id: u64| ClientCtx {
        id,
        creds: root.clone(),
        addr: client_addr(id),
        members: directory.clone(),
        history: history.clone(),
        trace: trace.clone(),
        epoch,
        params: params.clone(),
        stop: stop.clone(),
    };
    let mut client_nodes = Vec::new();
    let mut next_client = 1u64;
    let mut spawn_client = |kind: &str| {
        let id = next_client;
        next_client += 1;
        let ctx = client_ctx(id);
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

    if params.auth {
        let setup_deadline = epoch + Duration::from_millis(params.safety_ms);
        let ctx = client_ctx(203);
        let node = handle.create_node().name("auth-admin").ip(client_addr(203).ip()).build();
        drop(node.spawn(crate::auth_workload::admin(ctx, setup_deadline)));
        client_nodes.push(node);
        for (i, user) in crate::auth_workload::USERS.iter().enumerate() {
            let id = 204 + i as u64;
            let ctx = ClientCtx { creds: Some(Credentials::new(user)), ..client_ctx(id) };
            let node = handle.create_node().name(format!("user-{user}")).ip(client_addr(id).ip()).build();
            drop(node.spawn(crate::auth_workload::user(ctx)));
            client_nodes.push(node);
        }
    }

    if params.prefix_quotas {
        // Set through any member, retried under the faults like any client write.
        let ctx = client_ctx(202);
        let quotas = [("k", (params.keys as u64).saturating_sub(1).max(1)), ("lease/", 3)];
        let deadline = epoch + Duration::from_millis(params.safety_ms);
        let node = handle.create_node().name("quota-admin").ip(client_addr(202).ip()).build();
        drop(node.spawn(async move {
            for (prefix, keys_max) in quotas {
                let limits = cairn_core::prefix_quota::Limits { bytes_max: 0, keys_max };
                let set = Request::PrefixQuotaSet { prefix: prefix.into(), limits };
                let done = workload::call_until_ok(&ctx, set, deadline).await;
                ctx.trace.record(
                    global_ms(ctx.epoch),
                    "prefix-quota",
                    json!({ "prefix": prefix, "keys_max": keys_max, "set": done.is_some() }),
                );
            }
        }));
        client_nodes.push(node);
    }

    // ---- Safety phase: workload under faults ----
    let mut faults = Faults { restarts: vec![], resumes: vec![], heal_partition_at: None, shutdowns: vec![] };
    let admin = handle.create_node().name("admin").ip(client_addr(201).ip()).build();
    let mut changes = MemberChanges {
        next_id: params.members + 1,
        directory: directory.clone(),
        admin,
        root: root.clone(),
    };
    let safety_end = epoch + Duration::from_millis(params.safety_ms);
    while Instant::now() < safety_end && observer.violation().is_none() && observer.stopped().is_none() {
        let wait = madsim::rand::thread_rng()
            .gen_range(params.fault_interval_ms / 2..=params.fault_interval_ms * 3 / 2);
        madsim::time::sleep(Duration::from_millis(wait)).await;
        let now = Instant::now();
        let (due, later): (Vec<_>, Vec<_>) = faults.shutdowns.drain(..).partition(|(at, _)| *at <= now);
        faults.shutdowns = later;
        for (_, id) in due {
            shut_down(&handle, &mut members, &directory, &observer, &trace, id, epoch);
        }
        faults.due(&handle, &mut members, &client_nodes, &trace, epoch);
        let total = params.crash_weight
            + params.partition_weight
            + params.pause_weight
            + params.clock_step_weight
            + params.membership_weight;
        if madsim::rand::thread_rng().gen_range(0..total.max(1)) < params.membership_weight {
            changes
                .act(&params, &handle, &mut members, &mut faults, &observer, &history, &trace, epoch)
                .await;
        } else {
            faults.inject(&params, &handle, &mut members, &client_nodes, &observer, &trace, epoch);
        }
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
    // Members whose shutdown was pending go now; then the harness's member set is made the
    // cluster's (a change whose answer never came may or may not have applied).
    for (_, id) in std::mem::take(&mut faults.shutdowns) {
        shut_down(&handle, &mut members, &changes.directory, &observer, &trace, id, epoch);
    }
    if params.membership_weight > 0 && observer.violation().is_none() && observer.stopped().is_none() {
        changes.reconcile(&params, &handle, &mut members, &observer, &history, &trace, epoch).await;
    }

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
        creds: params.auth.then(|| Credentials::new(cairn_core::auth::ROOT)),
        addr: client_addr(200),
        members: Arc::new(Mutex::new(members.keys().map(|&i| (i, member_addr(i))).collect())),
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
    let (auth_changes, auth_ops) = history.auth();
    if let Err(why) = crate::auth_check::check(&auth_changes, &auth_ops) {
        return Some(Failure::Correctness(format!("auth: {why}")));
    }
    let verdict = observer.with_invariants(|inv| {
        for s in history.watches() {
            watch_check::check_session(inv.reference_events(), &s)?;
        }
        let state = final_state.as_ref().expect("a converged run captured its final state");
        for backup in history.backups() {
            if crate::invariants::backups::check(state, &backup)? {
                history.count(|c| c.backups_checked += 1);
            }
        }
        inv.check_final(state, &history.acked())
    });
    verdict.err().map(|v| Failure::Correctness(v.to_string()))
}

/// Starts member `id` on a node of its own: a new cluster's member (`voters` its initial
/// voters) or one joining (`voters` empty), with a fresh disk and clock.
fn start_member(
    params: &RunParams,
    handle: &Handle,
    id: u64,
    voters: Vec<u64>,
    peers: BTreeMap<u64, SocketAddr>,
    observer: &Arc<SimObserver>,
    epoch: Instant,
) -> Member {
    let mut config = Config::new(id, voters.clone(), params.seed.wrapping_mul(31).wrapping_add(id));
    for &v in &voters {
        config.peer_urls.insert(v, vec![peer_url(v)]);
    }
    config.snapshot_entries = params.snapshot_entries;
    config.watch_page_bytes = params.watch_page_bytes;
    config.snapshot_catch_up_entries = params.snapshot_entries / 2;
    // Shorter than the clients' own timeout, so members usually answer "timed out" first.
    config.request_timeout_ms = 1_500;
    config.planted_bug_stale_reads = params.planted == PlantedBug::StaleReads;
    config.planted_bug_learner_votes = params.planted == PlantedBug::LearnerVotes;
    config.planted_bug_auth_at_proposal = params.planted == PlantedBug::AuthAtProposal;
    config.auto_promote_learners_after_ms = params.auto_promote_ms;
    if let Some(q) = params.quota_bytes {
        config.quota_bytes = q;
    }
    config.auto_compaction = params.auto_compaction;
    let mut disk = SimDisk::new();
    disk.set_skip_sync(params.planted == PlantedBug::SkipFsync);
    let clock = ClockModel::random(&mut madsim::rand::thread_rng(), params.skew);
    let env = Arc::new(MemberEnv {
        id,
        addr: member_addr(id),
        peers,
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
    Member { node, env, down: false, paused: false }
}

/// A member's peer URL: its simulated address (`io-sim` reaches peers by their first one).
fn peer_url(id: u64) -> String {
    format!("http://{}", member_addr(id))
}

/// Shuts a removed member's machine down: it leaves the harness, the clients' directory and
/// the convergence check.
fn shut_down(
    handle: &Handle,
    members: &mut BTreeMap<u64, Member>,
    directory: &Directory,
    observer: &SimObserver,
    trace: &Trace,
    id: u64,
    epoch: Instant,
) {
    let Some(m) = members.remove(&id) else { return };
    handle.kill(m.node.id());
    directory.lock().unwrap().retain(|(i, _)| *i != id);
    observer.forget(id);
    trace.record(global_ms(epoch), "shutdown", json!({ "member": id }));
}

/// Membership changes the harness makes, as an operator would, under every fault.
struct MemberChanges {
    next_id: u64,
    directory: Directory,
    /// The node the operator's requests come from.
    admin: NodeHandle,
    /// The operator's credentials, with auth on.
    root: Option<Credentials>,
}

/// Most members the harness grows a cluster to.
const MEMBERS_MAX: usize = 7;

impl MemberChanges {
    /// One request as the admin client, to `to`; None when no answer came.
    async fn call(
        &self,
        params: &RunParams,
        history: &History,
        trace: &Trace,
        epoch: Instant,
        to: u64,
        request: Request,
    ) -> Option<Result<cairn_core::Response, cairn_core::Error>> {
        let ctx = ClientCtx {
            id: 201,
            creds: self.root.clone(),
            addr: client_addr(201),
            members: self.directory.clone(),
            history: history.clone(),
            trace: trace.clone(),
            epoch,
            params: params.clone(),
            stop: Arc::new(AtomicBool::new(false)),
        };
        self.admin.spawn(async move { workload::call_once(&ctx, to, request).await }).await.ok().flatten()
    }

    /// The member list as the leader has it applied (a member cut off, or removed without
    /// knowing it, lists what it last knew).
    async fn list(
        &self,
        params: &RunParams,
        history: &History,
        trace: &Trace,
        epoch: Instant,
        observer: &SimObserver,
    ) -> Option<Vec<cairn_core::Member>> {
        let leader = observer.leader()?;
        match self.call(params, history, trace, epoch, leader, Request::MemberList).await {
            Some(Ok(cairn_core::Response {
                body: cairn_core::ResponseBody::Members { members, .. },
                ..
            })) => Some(members),
            _ => None,
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn act(
        &mut self,
        params: &RunParams,
        handle: &Handle,
        members: &mut BTreeMap<u64, Member>,
        faults: &mut Faults,
        observer: &Arc<SimObserver>,
        history: &History,
        trace: &Trace,
        epoch: Instant,
    ) {
        let Some(list) = self.list(params, history, trace, epoch, observer).await else { return };
        let learners: Vec<u64> = list.iter().filter(|m| m.learner).map(|m| m.id).collect();
        let voters: Vec<u64> = list.iter().filter(|m| !m.learner).map(|m| m.id).collect();
        let to = observer.leader().unwrap_or(voters[0]);
        let (roll, pick) = {
            let mut rng = madsim::rand::thread_rng();
            (rng.gen_range(0..6u32), rng.gen_range(0..list.len()))
        };
        let down: Vec<u64> =
            voters.iter().copied().filter(|v| members.get(v).is_some_and(|m| m.down)).collect();
        let (kind, id, request) = match roll {
            // Replace a crashed voter: remove it (a fresh one is added as a learner later).
            0 | 1 if !down.is_empty() && voters.len() >= 3 => {
                ("member_remove", down[0], Request::MemberRemove { id: down[0] })
            }
            0 | 1 | 2 if learners.is_empty() && list.len() < MEMBERS_MAX && self.next_id < 250 => {
                let id = self.next_id;
                self.next_id += 1;
                ("member_add", id, Request::MemberAdd { id, peer_urls: vec![peer_url(id)], learner: true })
            }
            0..=2 if !learners.is_empty() => {
                ("member_promote", learners[0], Request::MemberPromote { id: learners[0] })
            }
            3 => {
                let id = list[pick].id;
                if !list[pick].learner && voters.len() <= 3 {
                    return;
                }
                ("member_remove", id, Request::MemberRemove { id })
            }
            4 => {
                let target = voters[pick % voters.len()];
                ("move_leader", target, Request::MoveLeader { to: target })
            }
            _ => {
                let m = &list[pick];
                // The same address, written another way: the peers must follow.
                let url = if m.peer_urls.first().is_some_and(|u| u.ends_with('/')) {
                    peer_url(m.id)
                } else {
                    peer_url(m.id) + "/"
                };
                ("member_update", m.id, Request::MemberUpdate { id: m.id, peer_urls: vec![url] })
            }
        };
        let answer = self.call(params, history, trace, epoch, to, request).await;
        let (committed, detail) = match &answer {
            Some(Ok(_)) => (Some(true), String::new()),
            Some(Err(e)) => (Some(false), e.to_string()),
            None => (None, "no answer".into()),
        };
        trace.record(
            global_ms(epoch),
            kind,
            json!({ "member": id, "via": to, "committed": committed, "error": detail }),
        );
        match kind {
            // Started whatever the answer: if the add did not apply the member waits, unknown
            // to the cluster, until the end-of-run reconciliation shuts it down.
            "member_add" if committed != Some(false) => {
                // Its peers to start with: the members as the clients know them (a real joining
                // member learns them from its peers, `transport::discover`).
                let peers: BTreeMap<u64, SocketAddr> =
                    self.directory.lock().unwrap().iter().copied().collect();
                let m = start_member(params, handle, id, vec![], peers, observer, epoch);
                members.insert(id, m);
                self.directory.lock().unwrap().push((id, member_addr(id)));
            }
            "member_remove" if committed == Some(true) => {
                // The operator shuts the machine down a little later (it may be cut off meanwhile
                // and never hear of its removal).
                let after = madsim::rand::thread_rng().gen_range(0..3_000);
                faults.shutdowns.push((Instant::now() + Duration::from_millis(after), id));
            }
            _ => {}
        }
    }

    /// After healing: members the cluster does not list are shut down, so the harness
    /// expects exactly the cluster's members to converge.
    #[allow(clippy::too_many_arguments)]
    async fn reconcile(
        &mut self,
        params: &RunParams,
        handle: &Handle,
        members: &mut BTreeMap<u64, Member>,
        observer: &SimObserver,
        history: &History,
        trace: &Trace,
        epoch: Instant,
    ) {
        // A change whose answer never came may still be in the log: the list counts once the
        // leader gives the same one twice, a while apart.
        let deadline = Instant::now() + Duration::from_millis(params.heal_ms_max / 2);
        let mut last: Option<BTreeSet<u64>> = None;
        while Instant::now() < deadline {
            if let Some(list) = self.list(params, history, trace, epoch, observer).await {
                let listed: BTreeSet<u64> = list.iter().map(|m| m.id).collect();
                if last.as_ref() != Some(&listed) {
                    last = Some(listed);
                    madsim::time::sleep(Duration::from_millis(1_500)).await;
                    continue;
                }
                let gone: Vec<u64> = members.keys().copied().filter(|id| !listed.contains(id)).collect();
                for id in gone {
                    shut_down(handle, members, &self.directory, observer, trace, id, epoch);
                }
                trace.record(global_ms(epoch), "members", json!({ "listed": listed }));
                return;
            }
            madsim::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Fault actions and their scheduled undoing.
struct Faults {
    restarts: Vec<(Instant, u64)>,
    resumes: Vec<(Instant, u64)>,
    heal_partition_at: Option<Instant>,
    /// Removed members whose machines go down at the given time.
    shutdowns: Vec<(Instant, u64)>,
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
            let Some(m) = members.get_mut(&id) else { continue };
            handle.restart(m.node.id());
            m.down = false;
            trace.record(global_ms(epoch), "restart", json!({ "member": id }));
        }
        let (due, later): (Vec<_>, Vec<_>) = self.resumes.drain(..).partition(|(at, _)| *at <= now);
        self.resumes = later;
        for (_, id) in due {
            let Some(m) = members.get_mut(&id) else { continue };
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
