//! An in-process cluster of `Core`s for tests: no I/O, no threads, no real time.
//!
//! The "network" is a FIFO queue with a set of cut links; the "disk" of each member is a plain
//! struct that `Persist` outputs are written to synchronously. Time is a number the test moves.
//! Everything is deterministic: the same calls give the same run.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use cairn_core::auth::AuthInfo;
use cairn_core::eraftpb::{ConfState, Entry, HardState, Message, Snapshot};
use cairn_core::kv::{Event, KeyValue, PutRequest, RangeRequest};
use cairn_core::pipeline::DiskWriteKind;
use cairn_core::{
    Config, Core, Error, Output, Pipeline, Recovered, Request, RequestId, Response, ResponseBody,
};

/// What a member wrote durably.
#[derive(Clone, Debug, Default)]
pub struct Disk {
    pub hard_state: HardState,
    pub conf_state: ConfState,
    pub snapshot: Option<Snapshot>,
    pub entries: Vec<Entry>,
    /// Snapshots received from a leader, for tests that check catch-up by snapshot.
    pub snapshots_installed: u64,
}

impl Disk {
    fn write(&mut self, w: &DiskWriteKind) {
        match w {
            DiskWriteKind::Persist(p) => {
                if let Some(cs) = &p.conf_state {
                    self.conf_state = cs.clone();
                }
                if let Some(s) = &p.snapshot {
                    self.snapshot = Some(s.clone());
                    self.entries.clear();
                    self.snapshots_installed += 1;
                }
                if let Some(first) = p.entries.first() {
                    self.entries.retain(|e| e.index < first.index);
                    self.entries.extend(p.entries.iter().cloned());
                }
                if let Some(hs) = &p.hard_state {
                    self.hard_state = hs.clone();
                }
            }
            DiskWriteKind::RecordSnapshot { snapshot, log_first_index } => {
                self.snapshot = Some(snapshot.clone());
                self.entries.retain(|e| e.index >= *log_first_index);
            }
        }
    }

    fn recovered(&self) -> Recovered {
        Recovered {
            hard_state: self.hard_state.clone(),
            conf_state: self.conf_state.clone(),
            snapshot: self.snapshot.clone(),
            entries: self.entries.clone(),
        }
    }
}

pub struct Member {
    pub core: Option<Core>,
    pub disk: Disk,
    pub config: Config,
    /// Every event this member emitted, in order, since its last boot.
    pub events: Vec<Event>,
    /// Every watch update this member emitted, in order, since its last boot.
    pub watch_updates: Vec<(cairn_core::WatchId, cairn_core::WatchUpdate)>,
    /// Every v2 watch update this member emitted, in order, since its last boot.
    pub v2_watch_updates: Vec<(cairn_core::v2::V2WatchId, Result<cairn_core::v2::V2Event, Error>)>,
    pub boots: u64,
}

/// Decides, message by message, which to drop.
pub type DropFilter = Box<dyn FnMut(&Message) -> bool>;

impl Member {
    /// A member that has never run, booted with an empty disk.
    fn boot(config: Config) -> Member {
        let core = Core::new(config.clone(), None).expect("new member");
        Member {
            core: Some(core),
            disk: Disk::default(),
            config,
            events: vec![],
            watch_updates: vec![],
            v2_watch_updates: vec![],
            boots: 1,
        }
    }
}

pub struct Cluster {
    pub members: BTreeMap<u64, Member>,
    pub now_ms: u64,
    net: VecDeque<Message>,
    /// Directed links that drop messages: (from, to).
    cut: BTreeSet<(u64, u64)>,
    pub responses: BTreeMap<RequestId, Result<Response, Error>>,
    next_request: RequestId,
    /// Every output of every member, rendered, in order: what determinism tests hash.
    pub trace: Vec<String>,
    /// Drops the messages it returns true for (in addition to cut links).
    pub drop_if: Option<DropFilter>,
    /// Paused members: no time passes for them, and messages to them wait in `held`.
    paused: BTreeSet<u64>,
    held: BTreeMap<u64, Vec<Message>>,
    /// Forwarded lease requests and replies in flight (dropped over cut links and to paused or
    /// crashed members, as a lost forward is).
    forwards: VecDeque<cairn_core::Forward>,
}

impl Cluster {
    pub fn new(n: u64, seed: u64) -> Cluster {
        Cluster::with_config(n, seed, |_| {})
    }

    pub fn with_config(n: u64, seed: u64, tweak: impl Fn(&mut Config)) -> Cluster {
        let voters: Vec<u64> = (1..=n).collect();
        let mut members = BTreeMap::new();
        for &id in &voters {
            let mut config = Config::new(id, voters.clone(), seed.wrapping_mul(1000).wrapping_add(id));
            tweak(&mut config);
            members.insert(id, Member::boot(config));
        }
        Cluster {
            members,
            now_ms: 0,
            net: VecDeque::new(),
            cut: BTreeSet::new(),
            responses: BTreeMap::new(),
            next_request: 1,
            trace: vec![],
            drop_if: None,
            paused: BTreeSet::new(),
            held: BTreeMap::new(),
            forwards: VecDeque::new(),
        }
    }

    pub fn core(&self, id: u64) -> &Core {
        self.members[&id].core.as_ref().expect("member is down")
    }

    pub fn core_mut(&mut self, id: u64) -> &mut Core {
        self.members.get_mut(&id).unwrap().core.as_mut().expect("member is down")
    }

    pub fn is_up(&self, id: u64) -> bool {
        self.members[&id].core.is_some()
    }

    /// The member every live member that knows a leader agrees on, if any.
    pub fn leader(&self) -> Option<u64> {
        let leaders: Vec<u64> = self
            .members
            .values()
            .filter_map(|m| m.core.as_ref())
            .filter(|c| c.is_leader())
            .map(|c| c.id())
            .collect();
        // Several may think they lead in different terms; the highest term wins.
        leaders.into_iter().max_by_key(|&id| self.core(id).term())
    }

    /// Runs every member until no member has output and no message is in flight.
    pub fn stabilize(&mut self) {
        for _ in 0..100_000 {
            let mut busy = false;
            let ids: Vec<u64> = self.members.keys().copied().collect();
            for id in ids {
                busy |= self.drain(id);
            }
            if let Some(m) = self.net.pop_front() {
                busy = true;
                self.deliver(m);
            }
            if let Some(f) = self.forwards.pop_front() {
                busy = true;
                if !self.cut.contains(&(f.from, f.to)) && !self.paused.contains(&f.to) {
                    if let Some(core) = self.members.get_mut(&f.to).and_then(|m| m.core.as_mut()) {
                        core.receive_forward(f);
                    }
                }
            }
            if !busy {
                return;
            }
        }
        panic!("cluster did not stabilize");
    }

    /// Runs one member's outputs into the network (delivering nothing), through the same
    /// `Pipeline` the drivers run, with a disk on which every write is durable at once and a
    /// snapshot file written as soon as it is asked for.
    pub fn drain(&mut self, id: u64) -> bool {
        let member = self.members.get_mut(&id).unwrap();
        let Some(core) = member.core.take() else { return false };
        let mut pipeline = Pipeline::new(core);
        let (trace, now_ms) = (&mut self.trace, self.now_ms);
        let mut any = false;
        loop {
            let mut observe = |_: &Core, out: &Output| trace.push(format!("{id} @{now_ms} {}", render(out)));
            let mut fx = pipeline.pump(&mut observe).expect("fatal core error");
            if fx.is_empty() {
                break;
            }
            any = true;
            if fx.snapshot_file.take().is_some() {
                fx.append(pipeline.on_snapshot_file_written(Ok(())).expect("a snapshot file was asked for"));
            }
            let mut durable = None;
            for w in std::mem::take(&mut fx.writes) {
                durable = w.ticket.or(durable);
                member.disk.write(&w.kind);
            }
            if let Some(ticket) = durable {
                fx.append(pipeline.on_durable(ticket));
            }
            member.events.extend(fx.events);
            member.watch_updates.extend(fx.watch_updates);
            member.v2_watch_updates.extend(fx.v2_watch_updates);
            self.net.extend(fx.messages);
            self.forwards.extend(fx.forwards);
            for (rid, r) in fx.responses {
                let prev = self.responses.insert(rid, r);
                assert!(prev.is_none(), "request {rid} answered twice");
            }
        }
        assert_eq!(pipeline.unacked_persists(), 0, "every write was durable at once");
        member.core = Some(pipeline.into_core());
        any
    }

    pub fn deliver(&mut self, m: Message) {
        if self.cut.contains(&(m.from, m.to)) {
            return;
        }
        if let Some(f) = self.drop_if.as_mut() {
            if f(&m) {
                return;
            }
        }
        if self.paused.contains(&m.to) {
            self.held.entry(m.to).or_default().push(m);
            return;
        }
        if let Some(member) = self.members.get_mut(&m.to) {
            if let Some(core) = member.core.as_mut() {
                core.step(m);
            }
        }
    }

    /// Moves time forward by `ms`, one tick interval at a time, stabilizing after each.
    pub fn run_for(&mut self, ms: u64) {
        let end = self.now_ms + ms;
        while self.now_ms < end {
            let step = self.tick_ms().min(end - self.now_ms);
            self.now_ms += step;
            let now = self.now_ms;
            for (id, m) in self.members.iter_mut() {
                if self.paused.contains(id) {
                    continue;
                }
                if let Some(c) = m.core.as_mut() {
                    c.set_wall_clock(wall_ns(now));
                    c.handle_timeout(now);
                }
            }
            self.stabilize();
        }
    }

    fn tick_ms(&self) -> u64 {
        self.members.values().next().unwrap().config.tick_ms
    }

    /// Runs until some member leads and every live member connected to it knows it.
    pub fn wait_for_leader(&mut self) -> u64 {
        for _ in 0..600 {
            self.run_for(self.tick_ms());
            if let Some(l) = self.leader() {
                let agreed = self
                    .members
                    .values()
                    .filter_map(|m| m.core.as_ref())
                    .filter(|c| !self.cut.contains(&(l, c.id())))
                    .all(|c| c.leader() == l);
                if agreed && self.core(l).applied_index() >= self.core(l).commit_index() {
                    return l;
                }
            }
        }
        panic!("no leader elected");
    }

    /// Submits a request to member `id` and runs (moving time) until it is answered.
    pub fn request(&mut self, id: u64, req: Request) -> Result<Response, Error> {
        let rid = self.submit(id, req);
        self.wait(rid)
    }

    pub fn submit(&mut self, id: u64, req: Request) -> RequestId {
        self.submit_as(id, req, None)
    }

    /// `request` from a client with credentials (see `cairn_core::auth`).
    pub fn request_as(&mut self, id: u64, req: Request, who: Option<AuthInfo>) -> Result<Response, Error> {
        let rid = self.submit_as(id, req, who);
        self.wait(rid)
    }

    pub fn submit_as(&mut self, id: u64, req: Request, who: Option<AuthInfo>) -> RequestId {
        let rid = self.next_request;
        self.next_request += 1;
        self.core_mut(id).submit_with_auth(rid, req, who);
        self.stabilize();
        rid
    }

    /// Submits without running anything: the test controls what happens next.
    pub fn submit_quiet(&mut self, id: u64, req: Request) -> RequestId {
        let rid = self.next_request;
        self.next_request += 1;
        self.core_mut(id).submit(rid, req);
        rid
    }

    pub fn wait(&mut self, rid: RequestId) -> Result<Response, Error> {
        for _ in 0..1_000 {
            if let Some(r) = self.responses.remove(&rid) {
                return r;
            }
            self.run_for(self.tick_ms());
        }
        panic!("request {rid} was never answered");
    }

    pub fn put(&mut self, id: u64, key: &str, value: &str) -> Result<Response, Error> {
        self.request(id, Request::Put(PutRequest { key: b(key), value: b(value), ..Default::default() }))
    }

    pub fn put_lease(&mut self, id: u64, key: &str, value: &str, lease: i64) -> Result<Response, Error> {
        self.request(
            id,
            Request::Put(PutRequest { key: b(key), value: b(value), lease, ..Default::default() }),
        )
    }

    /// A linearizable (or, with `serializable`, local) read of one key.
    pub fn get(&mut self, id: u64, key: &str, serializable: bool) -> Result<Option<KeyValue>, Error> {
        let r = self
            .request(id, Request::Range(RangeRequest { key: b(key), serializable, ..Default::default() }))?;
        match r.body {
            ResponseBody::Range(rr) => Ok(rr.kvs.into_iter().next()),
            other => panic!("range answered with {other:?}"),
        }
    }

    /// Cuts every link between the two groups, both ways.
    pub fn partition(&mut self, a: &[u64], b: &[u64]) {
        for &x in a {
            for &y in b {
                self.cut.insert((x, y));
                self.cut.insert((y, x));
            }
        }
    }

    pub fn isolate(&mut self, id: u64) {
        let others: Vec<u64> = self.members.keys().copied().filter(|&m| m != id).collect();
        self.partition(&[id], &others);
    }

    pub fn heal(&mut self) {
        self.cut.clear();
    }

    /// Freezes a member: it sees no time and no messages (they are held for it) until resumed.
    pub fn pause(&mut self, id: u64) {
        self.paused.insert(id);
    }

    /// Unfreezes a member and returns the messages held for it, for the test to deliver
    /// (with `deliver`) when it chooses.
    pub fn resume(&mut self, id: u64) -> Vec<Message> {
        self.paused.remove(&id);
        self.held.remove(&id).unwrap_or_default()
    }

    /// Starts a member that joins the running cluster (empty disk, no initial voters): it
    /// learns everything from the leader once a membership change has added `id`.
    pub fn join(&mut self, id: u64) {
        let first = self.members.values().next().expect("a cluster has members");
        let mut config = first.config.clone();
        config.id = id;
        config.voters = vec![];
        config.seed = config.seed.wrapping_mul(31).wrapping_add(id);
        self.members.insert(id, Member::boot(config));
    }

    /// Stops a member as a crash would: everything not on its disk is gone. Messages already
    /// in flight to it are dropped on delivery.
    pub fn crash(&mut self, id: u64) {
        self.members.get_mut(&id).unwrap().core = None;
    }

    /// Boots a crashed member from its disk, with a fresh seed as a real boot would have.
    pub fn restart(&mut self, id: u64) {
        let m = self.members.get_mut(&id).unwrap();
        assert!(m.core.is_none(), "restart needs a crash first");
        m.boots += 1;
        let mut config = m.config.clone();
        config.seed = config.seed.wrapping_add(m.boots.wrapping_mul(0x9e37_79b9));
        m.core = Some(Core::new(config, Some(m.disk.recovered())).expect("restart from disk"));
        m.events.clear();
        m.watch_updates.clear();
        m.v2_watch_updates.clear();
        let now = self.now_ms;
        m.core.as_mut().unwrap().handle_timeout(now);
        self.stabilize();
    }

    /// Every live member has applied the same state (compared as a whole).
    pub fn assert_converged(&self) {
        let states: Vec<(u64, &cairn_core::state_machine::StateMachine)> =
            self.members.values().filter_map(|m| m.core.as_ref()).map(|c| (c.id(), c.state())).collect();
        let (first_id, first) = states[0];
        for (id, s) in &states[1..] {
            assert_eq!(s.applied_index(), first.applied_index(), "member {id} vs {first_id}: applied index");
            assert!(*s == first, "member {id} and member {first_id} applied the same entries but differ");
        }
    }
}

/// A stable text rendering of an output, for traces and determinism hashes.
fn render(out: &Output) -> String {
    let mut s = String::new();
    for m in &out.messages {
        s += &format!(
            "msg {:?} {}->{} t{} i{} c{} n{};",
            m.get_msg_type(),
            m.from,
            m.to,
            m.term,
            m.index,
            m.commit,
            m.entries.len()
        );
    }
    if let Some(p) = &out.persist {
        s += &format!(
            "persist #{} cs={:?} snap={} ents={:?} hs={:?} after={};",
            p.number,
            p.conf_state.as_ref().map(|c| (&c.voters, &c.learners)),
            p.snapshot.as_ref().map_or(0, |x| x.get_metadata().index),
            p.entries.iter().map(|e| (e.index, e.term, e.data.len())).collect::<Vec<_>>(),
            p.hard_state.as_ref().map(|h| (h.term, h.vote, h.commit)),
            p.messages.len()
        );
    }
    for (id, r) in &out.responses {
        s += &format!("resp {id} {r:?};");
    }
    for e in &out.events {
        s += &format!("event {e:?};");
    }
    s
}

/// The wall clock every member reads at harness time `now_ms` (Unix ns; from 2026-01-01).
pub fn wall_ns(now_ms: u64) -> i64 {
    1_767_225_600_000_000_000 + now_ms as i64 * 1_000_000
}

pub fn b(s: &str) -> bytes::Bytes {
    bytes::Bytes::copy_from_slice(s.as_bytes())
}
