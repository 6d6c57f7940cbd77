//! Turns what each member does into observations: checked at once by the invariants and
//! written to the trace.

use std::collections::BTreeMap;
use std::sync::Mutex;

use cairn_core::eraftpb::{Message, MessageType};
use cairn_core::state_machine::StateMachine;
use cairn_core::{Core, Output, Recovered, StateRole};
use cairn_io_sim::member::Observer;
use madsim::time::Instant;
use serde_json::json;

use crate::invariants::Invariants;
use crate::observe::{hash_bytes, EntryId, Observation, Role, Violation};
use crate::trace::Trace;

#[derive(Default, Clone, Debug)]
struct Seen {
    /// The member ids in its applied member list, each with its learner flag.
    member_ids: Vec<(u64, bool)>,
    term: u64,
    role: Option<Role>,
    leader: u64,
    commit: u64,
    applied: u64,
    digest: u64,
    revision: i64,
    /// Some v2 key is more than `V2_EXPIRY_SLACK_NS` past its expiry by this member's clock.
    v2_overdue: bool,
    counters: cairn_core::Counters,
}

/// How late past its expiry time (by the leader's clock) a v2 key may still be there: one
/// 500 ms expiry beat, plus the time to commit and apply the expiry.
const V2_EXPIRY_SLACK_NS: i64 = 2_000_000_000;

pub struct SimObserver {
    epoch: Instant,
    pub trace: Trace,
    state: Mutex<State>,
}

struct State {
    invariants: Invariants,
    seen: BTreeMap<u64, Seen>,
    /// The first broken safety property, if any.
    violation: Option<Violation>,
    /// A member that stopped on its own (fatal error), with why.
    stopped: Option<(u64, String)>,
    /// Once set (after healing), each member's state is kept whenever it applies, for the
    /// final checks.
    capture: bool,
    finals: BTreeMap<u64, StateMachine>,
}

impl SimObserver {
    pub fn new(epoch: Instant, trace: Trace) -> SimObserver {
        let state = State {
            invariants: Invariants::new(),
            seen: BTreeMap::new(),
            violation: None,
            stopped: None,
            capture: false,
            finals: BTreeMap::new(),
        };
        SimObserver { epoch, trace, state: Mutex::new(state) }
    }

    fn now_ms(&self) -> u64 {
        Instant::now().duration_since(self.epoch).as_millis() as u64
    }

    pub fn violation(&self) -> Option<Violation> {
        self.state.lock().unwrap().violation.clone()
    }

    pub fn stopped(&self) -> Option<(u64, String)> {
        self.state.lock().unwrap().stopped.clone()
    }

    pub fn with_invariants<T>(&self, f: impl FnOnce(&Invariants) -> T) -> T {
        f(&self.state.lock().unwrap().invariants)
    }

    pub fn capture_final_state(&self, on: bool) {
        self.state.lock().unwrap().capture = on;
    }

    /// The state of the member furthest ahead, as captured after healing.
    pub fn final_state(&self) -> Option<StateMachine> {
        let s = self.state.lock().unwrap();
        s.finals.values().max_by_key(|sm| sm.applied_index()).cloned()
    }

    /// All `members` are up and agree: one leader that all know, every member has applied
    /// everything it knows committed, reached `revision`, and holds the same applied digest.
    pub fn converged(&self, members: usize, revision: i64) -> bool {
        let s = self.state.lock().unwrap();
        if s.seen.len() != members {
            return false;
        }
        let first = s.seen.values().next().cloned().unwrap();
        let leaders = s.seen.values().filter(|x| x.role == Some(Role::Leader)).count();
        // A healed cluster removes v2 keys whose time is up: the leader proposes their expiry
        // by its own clock.
        let expired = s.seen.values().filter(|x| x.role == Some(Role::Leader)).all(|x| !x.v2_overdue);
        leaders == 1
            && expired
            && s.seen.values().all(|x| {
                x.leader == first.leader
                    && x.leader != 0
                    && x.applied == first.applied
                    && x.digest == first.digest
                    && x.commit == x.applied
                    && x.revision >= revision
            })
    }

    /// The member seen leading in the highest term, if any.
    pub fn leader(&self) -> Option<u64> {
        let s = self.state.lock().unwrap();
        s.seen
            .iter()
            .filter(|(_, x)| x.role == Some(Role::Leader))
            .max_by_key(|(_, x)| x.term)
            .map(|(&m, _)| m)
    }

    pub fn describe_members(&self) -> String {
        let s = self.state.lock().unwrap();
        s.seen
            .iter()
            .map(|(m, x)| {
                format!(
                    "{m}: {:?} term={} leader={} commit={} applied={} rev={}",
                    x.role, x.term, x.leader, x.commit, x.applied, x.revision
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// `member` left the cluster (removed, and its machine shut down): no longer expected to
    /// converge.
    pub fn forget(&self, member: u64) {
        let mut s = self.state.lock().unwrap();
        s.seen.remove(&member);
        s.finals.remove(&member);
    }

    /// The harness crashed `member`: its unsynced writes are gone.
    pub fn crashed(&self, member: u64) {
        self.observe(Observation::Crashed { member });
        self.state.lock().unwrap().seen.remove(&member);
    }

    fn observe(&self, obs: Observation) {
        let at = self.now_ms();
        let mut s = self.state.lock().unwrap();
        if s.violation.is_some() {
            return;
        }
        if let Err(v) = s.invariants.observe(at, &obs) {
            self.trace.record(at, "violation", json!({ "detail": v.to_string() }));
            s.violation = Some(v);
        }
    }

    /// One "msg" record per message, written straight into its line: the same line
    /// `Trace::record` would make from a JSON value (keys sorted), without building the value
    /// (messages are most of a trace).
    fn trace_messages<'a>(&self, at: u64, msgs: impl Iterator<Item = &'a Message>) {
        use std::fmt::Write;
        for m in msgs {
            let mut line = String::with_capacity(192);
            let _ = write!(
                line,
                "{{\"commit\":{},\"entries\":{},\"from\":{},\"index\":{},\"kind\":\"msg\",\"log_term\":{},\"reject\":{},\"t\":{},\"term\":{},\"to\":{},\"type\":\"{:?}\"}}",
                m.commit,
                m.entries.len(),
                m.from,
                m.index,
                m.log_term,
                m.reject,
                at,
                m.term,
                m.to,
                m.get_msg_type()
            );
            self.trace.record_line(line);
        }
    }

    fn observe_role(&self, member: u64, core: &Core) {
        let role = match core.role() {
            StateRole::Follower => Role::Follower,
            StateRole::PreCandidate => Role::PreCandidate,
            StateRole::Candidate => Role::Candidate,
            StateRole::Leader => Role::Leader,
        };
        let (term, leader) = (core.term(), core.leader());
        let prev = self.state.lock().unwrap().seen.get(&member).cloned().unwrap_or_default();
        if prev.role != Some(role) || prev.term != term || prev.leader != leader {
            let at = self.now_ms();
            self.trace.record(
                at,
                "role",
                json!({ "member": member, "term": term, "role": format!("{role:?}"), "leader": leader }),
            );
            self.observe(Observation::Role { member, term, role, leader });
            let mut s = self.state.lock().unwrap();
            let seen = s.seen.entry(member).or_default();
            seen.role = Some(role);
            seen.term = term;
            seen.leader = leader;
        }
    }
}

/// A member's applied member list: each id with its learner flag.
fn listed(core: &Core) -> Vec<(u64, bool)> {
    core.state().members().values().map(|m| (m.id, m.learner)).collect()
}

impl SimObserver {
    fn observe_configuration(&self, member: u64, core: &Core) {
        let cs = core.conf_state();
        let members = core.state().members();
        self.observe(Observation::Configuration {
            member,
            raft_voters: cs.voters.iter().copied().collect(),
            raft_learners: cs.learners.iter().copied().collect(),
            listed_voters: members.values().filter(|m| !m.learner).map(|m| m.id).collect(),
            listed_learners: members.values().filter(|m| m.learner).map(|m| m.id).collect(),
        });
    }
}

fn entry_id(e: &cairn_core::eraftpb::Entry) -> EntryId {
    EntryId { index: e.index, term: e.term, data_hash: hash_bytes(&e.data) }
}

impl Observer for SimObserver {
    fn booted(&self, member: u64, core: &Core, recovered: Option<&Recovered>) {
        let at = self.now_ms();
        let (snapshot_index, log) = match recovered {
            Some(r) => (
                r.snapshot.as_ref().map_or(0, |s| s.get_metadata().index),
                r.entries.iter().map(entry_id).collect::<Vec<_>>(),
            ),
            None => (0, vec![]),
        };
        let log: Vec<EntryId> = log.into_iter().filter(|e| e.index > snapshot_index).collect();
        self.trace.record(at, "boot", json!({ "member": member, "snapshot": snapshot_index, "log": log.len(), "applied": core.applied_index() }));
        self.observe(Observation::Restarted { member, snapshot_index, log });
        {
            let mut s = self.state.lock().unwrap();
            let seen = s.seen.entry(member).or_default();
            seen.applied = core.applied_index();
            seen.commit = core.commit_index();
            seen.digest = core.state().applied_digest();
            seen.revision = core.state().mvcc().current_revision();
            seen.member_ids = listed(core);
            seen.counters = cairn_core::Counters::default();
        }
        self.observe_role(member, core);
    }

    fn advanced(&self, member: u64, core: &Core, out: &Output) {
        let at = self.now_ms();
        self.trace_messages(at, out.messages.iter());
        if let Some(p) = &out.persist {
            self.trace_messages(at, p.messages.iter());
            if let Some(snap) = &p.snapshot {
                let meta = snap.get_metadata();
                self.trace.record(
                    at,
                    "install-snapshot",
                    json!({ "member": member, "index": meta.index, "term": meta.term }),
                );
                self.observe(Observation::SnapshotInstalled { member, index: meta.index, term: meta.term });
            }
            if !p.entries.is_empty() {
                self.observe(Observation::Appended {
                    member,
                    entries: p.entries.iter().map(entry_id).collect(),
                });
            }
            if let Some(hs) = &p.hard_state {
                let prev = self.state.lock().unwrap().seen.get(&member).map_or(0, |s| s.commit);
                if hs.commit != prev {
                    self.state.lock().unwrap().seen.entry(member).or_default().commit = hs.commit;
                    self.observe(Observation::Committed { member, commit: hs.commit });
                }
            }
        }
        if let Some(made) = &out.snapshot {
            let index = made.snapshot.get_metadata().index;
            self.trace.record(
                at,
                "snapshot",
                json!({ "member": member, "index": index, "log_first": made.log_first_index }),
            );
        }
        self.observe_role(member, core);
        let counters = core.counters();
        let changed = self.state.lock().unwrap().seen.get(&member).is_none_or(|s| s.counters != counters);
        if changed {
            self.observe(Observation::Counters { member, counters });
            self.state.lock().unwrap().seen.entry(member).or_default().counters = counters;
        }
        let overdue = core.state().v2().next_expiry_ns().is_some_and(|t| {
            core.wall_clock() != 0 && t.saturating_add(V2_EXPIRY_SLACK_NS) < core.wall_clock()
        });
        self.state.lock().unwrap().seen.entry(member).or_default().v2_overdue = overdue;
        let applied = core.applied_index();
        let prev = self.state.lock().unwrap().seen.get(&member).map_or(0, |s| s.applied);
        if applied != prev {
            let sm = core.state();
            let ids_changed = {
                let s = self.state.lock().unwrap();
                let old = s.seen.get(&member).map(|x| x.member_ids.as_slice()).unwrap_or(&[]);
                old.len() != sm.members().len()
                    || !old.iter().copied().eq(sm.members().values().map(|m| (m.id, m.learner)))
            };
            if ids_changed {
                let new = listed(core);
                let old = std::mem::replace(
                    &mut self.state.lock().unwrap().seen.entry(member).or_default().member_ids,
                    new,
                );
                for &(promoted, _) in old
                    .iter()
                    .filter(|(id, learner)| *learner && sm.members().get(id).is_some_and(|m| !m.learner))
                {
                    self.trace.record(
                        at,
                        "member-promoted",
                        json!({ "member": member, "promoted": promoted }),
                    );
                }
                for &(gone, _) in
                    old.iter().filter(|(id, _)| !sm.members().contains_key(id) && sm.was_removed(*id))
                {
                    self.trace.record(at, "member-removed", json!({ "member": member, "removed": gone }));
                    self.observe(Observation::MemberRemoved {
                        member,
                        removed: gone,
                        term: sm.applied_term(),
                    });
                }
                self.observe_configuration(member, core);
            }
            {
                let mut s = self.state.lock().unwrap();
                let seen = s.seen.entry(member).or_default();
                seen.applied = applied;
                seen.digest = sm.applied_digest();
                seen.revision = sm.mvcc().current_revision();
                if s.capture {
                    s.finals.insert(member, sm.clone());
                }
            }
            self.trace.record(
                at,
                "apply",
                json!({ "member": member, "index": applied, "revision": sm.mvcc().current_revision() }),
            );
            self.observe(Observation::Applied {
                member,
                index: applied,
                term: sm.applied_term(),
                digest: sm.applied_digest(),
            });
        }
        if !out.events.is_empty() {
            self.observe(Observation::Events { member, events: out.events.clone() });
        }
    }

    fn sent(&self, member: u64, msgs: &[Message], forwards: &[cairn_core::Forward]) {
        if !forwards.is_empty() {
            let at = self.now_ms();
            for f in forwards {
                let kind = match &f.body {
                    cairn_core::ForwardBody::Request(_) => "request",
                    cairn_core::ForwardBody::Reply(Ok(_)) => "reply",
                    cairn_core::ForwardBody::Reply(Err(_)) => "error",
                    cairn_core::ForwardBody::DigestCheck { .. } => "digest-check",
                    cairn_core::ForwardBody::DigestReply { .. } => "digest-reply",
                };
                self.trace.record(
                    at,
                    "forward",
                    json!({ "from": f.from, "to": f.to, "id": f.id, "body": kind }),
                );
            }
        }
        let term = self.state.lock().unwrap().seen.get(&member).map_or(0, |s| s.term);
        for m in msgs {
            if m.get_msg_type() == MessageType::MsgRequestVoteResponse && !m.reject {
                self.observe(Observation::Voted { member, term: m.term, candidate: m.to });
            }
            // An acknowledgement from an earlier term is refused by whoever gets it; only one
            // in the member's current term can count toward a commit.
            if m.get_msg_type() == MessageType::MsgAppendResponse && !m.reject && m.term == term {
                self.observe(Observation::Acknowledged { member, term, index: m.index });
            }
        }
    }

    fn sync_started(&self, member: u64) {
        self.observe(Observation::SyncStarted { member });
    }

    fn synced(&self, member: u64) {
        self.observe(Observation::Synced { member });
    }

    fn removed(&self, member: u64) {
        let at = self.now_ms();
        self.trace.record(at, "stopped-removed", json!({ "member": member }));
    }

    fn stopped(&self, member: u64, reason: &str) {
        let at = self.now_ms();
        self.trace.record(at, "stopped", json!({ "member": member, "reason": reason }));
        let mut s = self.state.lock().unwrap();
        if s.stopped.is_none() {
            s.stopped = Some((member, reason.to_string()));
        }
    }
}
