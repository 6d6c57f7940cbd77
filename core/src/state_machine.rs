//! The replicated state machine: the MVCC store plus the lease registry, advanced one committed
//! log entry at a time. Every replica that applies the same entries holds the same state, so
//! nothing here may depend on the member, its clock or its role.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::alarm::{Alarm, AlarmAction, AlarmKind};
use crate::auth::{Access, AuthStore};
use crate::kv::{Event, RangeRequest, RequestOp, TxnRequest};
use crate::lease::{Lease, Leases};
use crate::membership::{Member, MemberChange};
use crate::mvcc::Mvcc;
use crate::quota_table::PrefixQuotas;
use crate::request::{codec, Caller, Command, Origin, ResponseBody};
use crate::v2::{V2Event, V2Store};
use crate::{Error, Result};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StateMachine {
    // Field order is the snapshot's layout. The MVCC store goes last, so that
    // `SnapshotBuilder` can write every other field at once and then the store a piece at a
    // time (`encode_header`, `Mvcc::encode_keys`).
    leases: Leases,
    /// Which proposals were applied, so each applies at most once (see `first_application`).
    proposals: AppliedProposals,
    /// The members, by id: added by configuration-change entries (see `membership`), named by
    /// what each published about itself (`Request::PublishMember`).
    members: BTreeMap<u64, Member>,
    /// Ids of members removed: never used again (etcd's rule; a fresh member under an old id
    /// could vote twice in one term).
    removed: BTreeSet<u64>,
    /// The alarms up (see `alarm`).
    alarms: BTreeSet<Alarm>,
    /// Quotas on key prefixes (see `prefix_quota`).
    prefix_quotas: PrefixQuotas,
    /// Users, roles and permissions (see `auth`).
    auth: AuthStore,
    /// The etcd v2 keys store (a separate key space, as in etcd).
    v2: V2Store,
    /// Raft index and term of the last entry applied.
    applied_index: u64,
    applied_term: u64,
    /// A hash chain over every entry applied (index, term, payload): two replicas at the same
    /// applied index have the same digest exactly when they applied the same entries. The
    /// simulator checks Raft's state machine safety with it.
    applied_digest: u64,
    mvcc: Mvcc,
}

/// What applying one command did.
#[derive(Debug)]
pub struct Applied {
    pub result: Result<ResponseBody>,
    /// The store's revision after the command.
    pub revision: i64,
    /// Changes, in revision order, for watchers.
    pub events: Vec<Event>,
    /// A lease granted by this command (the leader starts its expiry clock).
    pub granted: Option<Lease>,
    /// A lease revoked by this command (the leader stops its expiry clock).
    pub revoked: Option<i64>,
    /// v2 store events, each with the paths it removed (for v2 watchers).
    pub v2_events: Vec<(V2Event, Vec<String>)>,
}

/// Leading byte of an encoded snapshot; bumped when the encoding changes.
const SNAPSHOT_FORMAT: u8 = 6;
/// The format before the auth store, still read (as a state with no users or roles).
const SNAPSHOT_FORMAT_NO_AUTH: u8 = 5;
/// The format before alarms, still read (as a state with no alarm up).
const SNAPSHOT_FORMAT_NO_ALARMS: u8 = 4;

impl Default for StateMachine {
    fn default() -> Self {
        StateMachine::new()
    }
}

impl StateMachine {
    pub fn new() -> StateMachine {
        StateMachine {
            mvcc: Mvcc::new(),
            leases: Leases::default(),
            proposals: AppliedProposals::default(),
            members: BTreeMap::new(),
            removed: BTreeSet::new(),
            alarms: BTreeSet::new(),
            prefix_quotas: PrefixQuotas::default(),
            auth: AuthStore::default(),
            v2: V2Store::default(),
            applied_index: 0,
            applied_term: 0,
            applied_digest: 0,
        }
    }

    pub fn mvcc(&self) -> &Mvcc {
        &self.mvcc
    }

    pub fn leases(&self) -> &Leases {
        &self.leases
    }

    pub fn v2(&self) -> &V2Store {
        &self.v2
    }

    pub fn auth(&self) -> &AuthStore {
        &self.auth
    }

    pub fn applied_index(&self) -> u64 {
        self.applied_index
    }

    pub fn applied_term(&self) -> u64 {
        self.applied_term
    }

    /// The members, by id.
    pub fn members(&self) -> &BTreeMap<u64, Member> {
        &self.members
    }

    /// The ids of every member removed so far.
    pub fn removed_ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.removed.iter().copied()
    }

    /// Whether `id` belonged to a member that was removed.
    pub fn was_removed(&self, id: u64) -> bool {
        self.removed.contains(&id)
    }

    /// Applies the member change of the configuration-change entry at `index` (raft-rs has
    /// accepted it: it applies on every replica alike). Returns the member concerned.
    pub fn apply_member_change(
        &mut self,
        index: u64,
        term: u64,
        payload: &[u8],
        change: &MemberChange,
    ) -> Member {
        self.advance_to(index, term, payload);
        match change {
            MemberChange::Add { id, peer_urls, learner } => {
                let m = self.members.entry(*id).or_insert_with(|| Member { id: *id, ..Member::default() });
                m.peer_urls = peer_urls.clone();
                m.learner = *learner;
                m.clone()
            }
            MemberChange::Remove { id } => {
                self.removed.insert(*id);
                self.members.remove(id).unwrap_or(Member { id: *id, ..Member::default() })
            }
            MemberChange::Promote { id } => {
                let m = self.members.entry(*id).or_insert_with(|| Member { id: *id, ..Member::default() });
                m.learner = false;
                m.clone()
            }
        }
    }

    /// Every member, by id (etcd lists them so).
    pub fn member_list(&self) -> Vec<Member> {
        self.members.values().cloned().collect()
    }

    pub fn applied_digest(&self) -> u64 {
        self.applied_digest
    }

    /// True the first time a proposal from `origin` reaches the state machine; false for a
    /// copy. A proposal forwarded to the leader can reach it twice (a duplicated or resent
    /// message) and so stand twice in the log; applying the copy would replay a write after
    /// later ones (a delete erasing a newer put). The caller skips copies. Deterministic: every
    /// replica sees the same entries in the same order.
    pub fn first_application(&mut self, origin: Origin, index: u64) -> bool {
        self.proposals.first_time(origin, index)
    }

    /// Marks an entry that carries no command (a leader's empty entry, a configuration change)
    /// as applied.
    pub fn skip(&mut self, index: u64, term: u64, payload: &[u8]) {
        self.advance_to(index, term, payload);
    }

    /// Applies the command of the entry at `index`, if `caller` may do it as the auth store
    /// stands now. Errors in the result are the client's (a failed compare is not an error; a
    /// missing lease is) and leave the state unchanged except for the applied index.
    /// `payload` is the entry's encoded bytes (for the digest). `legacy_ttl_secs_min` serves
    /// only grants from logs written before TTLs were stamped (`Command::LeaseGrantUnstamped`).
    pub fn apply(
        &mut self,
        index: u64,
        term: u64,
        payload: &[u8],
        cmd: &Command,
        caller: &Caller,
        legacy_ttl_secs_min: i64,
    ) -> Applied {
        self.advance_to(index, term, payload);
        let revision_before = self.mvcc.current_revision();
        let mut granted = None;
        let mut revoked = None;
        let mut v2_events = vec![];
        let capped = self.alarms.iter().any(|a| a.kind == AlarmKind::NoSpace);
        let corrupt = self.alarms.iter().any(|a| a.kind == AlarmKind::Corrupt);
        let refusal = self.permitted(caller, cmd).err();
        let (result, events) = match (refusal, cmd) {
            (Some(e), _) => (Err(e), vec![]),
            (None, Command::Auth(change)) => (self.auth.apply(change).map(ResponseBody::Auth), vec![]),
            // A member's state differs from the leader's: no more changes (etcd's rule).
            (None, Command::Put(_))
            | (None, Command::DeleteRange(_))
            | (None, Command::Txn(_))
            | (None, Command::Compact(_))
            | (None, Command::LeaseGrant { .. } | Command::LeaseGrantUnstamped { .. })
            | (None, Command::LeaseRevoke { .. })
                if corrupt =>
            {
                (Err(Error::CorruptCluster), vec![])
            }
            // While the store is out of space, nothing may grow it (etcd's capped applier).
            (None, Command::Put(_) | Command::LeaseGrant { .. } | Command::LeaseGrantUnstamped { .. })
                if capped =>
            {
                (Err(Error::NoSpace), vec![])
            }
            (None, Command::Txn(req)) if capped && txn_has_put(req) => (Err(Error::NoSpace), vec![]),
            (None, Command::Alarm { action, member, kind }) => {
                (Ok(self.apply_alarm(*action, *member, *kind)), vec![])
            }
            (None, Command::PrefixQuotaSet { prefix, limits }) => {
                match self.prefix_quotas.set(prefix.clone(), *limits, &self.mvcc) {
                    Ok(()) => (Ok(ResponseBody::PrefixQuotas(self.prefix_quotas.list())), vec![]),
                    Err(e) => (Err(e), vec![]),
                }
            }
            (None, Command::PrefixQuotaRemove { prefix }) => match self.prefix_quotas.remove(prefix) {
                true => (Ok(ResponseBody::PrefixQuotas(self.prefix_quotas.list())), vec![]),
                false => (Err(Error::QuotaNotFound), vec![]),
            },
            (None, Command::Txn(req)) if !self.prefix_quotas.is_empty() => {
                match self.txn_within_quotas(req) {
                    Err(e) => (Err(e), vec![]),
                    Ok(()) => {
                        let leases = &self.leases;
                        match self.mvcc.txn(req, &|id| leases.contains(id)) {
                            Ok(out) => (Ok(ResponseBody::Txn(out.response)), out.events),
                            Err(e) => (Err(e), vec![]),
                        }
                    }
                }
            }
            (None, Command::Put(req)) => {
                let leases = &self.leases;
                let within = self.prefix_quotas.check(&[req], &self.mvcc);
                match within.and_then(|()| self.mvcc.put(req, &|id| leases.contains(id))) {
                    Ok((resp, events, _)) => (Ok(ResponseBody::Put(resp)), events),
                    Err(e) => (Err(e), vec![]),
                }
            }
            (None, Command::DeleteRange(req)) => match self.mvcc.delete_range(req) {
                Ok((resp, events, _)) => (Ok(ResponseBody::DeleteRange(resp)), events),
                Err(e) => (Err(e), vec![]),
            },
            (None, Command::Txn(req)) => {
                let leases = &self.leases;
                match self.mvcc.txn(req, &|id| leases.contains(id)) {
                    Ok(out) => (Ok(ResponseBody::Txn(out.response)), out.events),
                    Err(e) => (Err(e), vec![]),
                }
            }
            (None, Command::Compact(req)) => {
                (self.mvcc.compact(req.revision).map(|()| ResponseBody::Compact), vec![])
            }
            (None, Command::LeaseGrant { id, ttl_secs } | Command::LeaseGrantUnstamped { id, ttl_secs }) => {
                let id = if *id == 0 { self.auto_lease_id(index) } else { *id };
                let ttl_secs = match cmd {
                    Command::LeaseGrantUnstamped { .. } => (*ttl_secs).max(legacy_ttl_secs_min),
                    _ => *ttl_secs,
                };
                match self.leases.grant(id, ttl_secs) {
                    Ok(lease) => {
                        granted = Some(lease.clone());
                        (Ok(ResponseBody::LeaseGrant { id, ttl_secs: lease.ttl_secs }), vec![])
                    }
                    Err(e) => (Err(e), vec![]),
                }
            }
            (None, Command::PublishMember { member, name, client_urls }) => {
                match self.members.get_mut(member) {
                    Some(m) => {
                        m.name = name.clone();
                        m.client_urls = client_urls.clone();
                        (Ok(ResponseBody::Published), vec![])
                    }
                    // A member removed while its publication was in flight stays removed.
                    None => (Err(Error::MemberNotFound), vec![]),
                }
            }
            (None, Command::MemberUpdate { id, peer_urls }) => {
                let clash = self
                    .members
                    .values()
                    .any(|m| m.id != *id && m.peer_urls.iter().any(|u| peer_urls.contains(u)));
                match self.members.get_mut(id) {
                    None => (Err(Error::MemberNotFound), vec![]),
                    Some(_) if clash => (Err(Error::PeerUrlExists), vec![]),
                    Some(m) => {
                        m.peer_urls = peer_urls.clone();
                        let member = Some(m.clone());
                        (Ok(ResponseBody::Members { member, members: self.member_list() }), vec![])
                    }
                }
            }
            (None, Command::V2(w)) => match self.v2.apply(w) {
                Ok(applied) => {
                    let last = applied.events.last().map(|(e, _)| e.clone());
                    v2_events = applied.events;
                    (Ok(ResponseBody::V2(last)), vec![])
                }
                Err(e) => (Err(e), vec![]),
            },
            (None, Command::LeaseRevoke { id }) => match self.leases.revoke(*id) {
                Ok(keys) => {
                    revoked = Some(*id);
                    let (events, _) = self.mvcc.delete_keys(&keys);
                    (Ok(ResponseBody::LeaseRevoke), events)
                }
                Err(e) => (Err(e), vec![]),
            },
        };
        self.leases.on_events(&events);
        self.prefix_quotas.on_events(&events);
        let revision = self.mvcc.current_revision();
        assert_eq!(
            revision > revision_before,
            !events.is_empty(),
            "the revision moves exactly when something changed"
        );
        Applied { result, revision, events, granted, revoked, v2_events }
    }

    /// Whether `caller` may have `cmd` applied, as the auth store stands (always, while
    /// authentication is off, and for a member).
    pub fn permitted(&self, caller: &Caller, cmd: &Command) -> Result<()> {
        if !self.auth.is_enabled() || *caller == Caller::Member {
            return Ok(());
        }
        let mut needs = vec![];
        // Needing nothing, open to every client (as etcd 3.4 leaves them).
        let mut open = false;
        match cmd {
            Command::Put(p) => {
                needs.push(Access::Write { key: &p.key, range_end: &[] });
                if p.prev_kv {
                    needs.push(Access::Read { key: &p.key, range_end: &[] });
                }
                self.lease_key_writes(p.lease, &mut needs);
            }
            Command::DeleteRange(d) => {
                needs.push(Access::Write { key: &d.key, range_end: &d.range_end });
                if d.prev_kv {
                    needs.push(Access::Read { key: &d.key, range_end: &d.range_end });
                }
            }
            Command::Txn(t) => {
                crate::auth::txn_accesses(t, &mut needs);
                self.txn_lease_key_writes(t, &mut needs);
            }
            // Revoking a lease deletes its keys (etcd asks for write on each; a lease without
            // keys anyone may revoke).
            Command::LeaseRevoke { id } => {
                self.lease_key_writes(*id, &mut needs);
                open = needs.is_empty();
            }
            Command::LeaseGrant { .. }
            | Command::LeaseGrantUnstamped { .. }
            | Command::PublishMember { .. }
            | Command::Alarm { action: AlarmAction::Get, .. } => open = true,
            // Any valid credentials (etcd 3.4 asks no role for it).
            Command::Compact(_) => {}
            Command::Alarm { .. }
            | Command::MemberUpdate { .. }
            | Command::PrefixQuotaSet { .. }
            | Command::PrefixQuotaRemove { .. }
            | Command::Auth(_)
            // The v2 store has no permissions of its own here: only root writes it.
            | Command::V2(_) => needs.push(Access::Admin),
        }
        match caller {
            _ if open => Ok(()),
            Caller::User(who) => self.auth.check(who, &needs),
            Caller::Anonymous | Caller::Member => Err(Error::UserEmpty),
        }
    }

    /// A put with a lease must be allowed to write every key the lease holds already (etcd's
    /// `checkLeasePuts`): else a user could attach a key to someone else's lease and keep them
    /// from revoking it.
    fn lease_key_writes<'a>(&'a self, lease: i64, needs: &mut Vec<Access<'a>>) {
        if let Some(l) = self.leases.get(lease) {
            needs.extend(l.keys.iter().map(|k| Access::Write { key: k, range_end: &[] }));
        }
    }

    fn txn_lease_key_writes<'a>(&'a self, t: &TxnRequest, needs: &mut Vec<Access<'a>>) {
        for op in t.success.iter().chain(&t.failure) {
            match op {
                RequestOp::Put(p) if p.lease != 0 => self.lease_key_writes(p.lease, needs),
                RequestOp::Txn(inner) => self.txn_lease_key_writes(inner, needs),
                _ => {}
            }
        }
    }

    fn apply_alarm(&mut self, action: AlarmAction, member: u64, kind: Option<AlarmKind>) -> ResponseBody {
        match (action, kind) {
            (AlarmAction::Get, _) | (_, None) => ResponseBody::Alarms(self.alarms.iter().copied().collect()),
            (AlarmAction::Activate, Some(kind)) => {
                let alarm = Alarm { member, kind };
                self.alarms.insert(alarm);
                ResponseBody::Alarms(vec![alarm])
            }
            (AlarmAction::Deactivate, Some(kind)) => {
                let alarm = Alarm { member, kind };
                ResponseBody::Alarms(if self.alarms.remove(&alarm) { vec![alarm] } else { vec![] })
            }
        }
    }

    /// The alarms up.
    pub fn alarms(&self) -> &BTreeSet<Alarm> {
        &self.alarms
    }

    pub fn prefix_quotas(&self) -> &PrefixQuotas {
        &self.prefix_quotas
    }

    fn txn_within_quotas(&self, req: &TxnRequest) -> Result<()> {
        let (puts, deletes) = self.mvcc.writes_on_path(req);
        let puts: Vec<&crate::kv::PutRequest> = puts.iter().collect();
        let deletes: Vec<&crate::kv::DeleteRangeRequest> = deletes.iter().collect();
        self.prefix_quotas.check_txn(&puts, &deletes, &self.mvcc)
    }

    /// Serves a read (a range, or a txn that cannot write) at the current state.
    pub fn read_range(&self, req: &RangeRequest) -> Result<ResponseBody> {
        self.mvcc.range(req).map(ResponseBody::Range)
    }

    pub fn read_txn(&mut self, req: &TxnRequest) -> Result<ResponseBody> {
        assert!(!req.is_write(), "writing txns go through the log");
        let leases = &self.leases;
        let out = self.mvcc.txn(req, &|id| leases.contains(id))?;
        assert!(out.events.is_empty(), "a read-only txn changed the store");
        Ok(ResponseBody::Txn(out.response))
    }

    /// etcd picks lease ids itself when the client leaves them 0; Cairn derives them from the
    /// entry's index so that every replica picks the same one.
    fn auto_lease_id(&self, index: u64) -> i64 {
        let mut x = index;
        loop {
            let id = (splitmix64(x) & (i64::MAX as u64)) as i64;
            if id != 0 && !self.leases.contains(id) {
                return id;
            }
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn advance_to(&mut self, index: u64, term: u64, payload: &[u8]) {
        assert!(
            index > self.applied_index,
            "entries apply once, in order: {index} after {}",
            self.applied_index
        );
        assert!(term >= self.applied_term, "terms never go back in the log");
        self.applied_index = index;
        self.applied_term = term;
        let mut h = self.applied_digest ^ splitmix64(index) ^ splitmix64(term).rotate_left(17);
        for chunk in payload.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            h = splitmix64(h ^ u64::from_le_bytes(word));
        }
        self.applied_digest = splitmix64(h ^ payload.len() as u64);
    }

    /// The start of `encode`'s bytes: the format byte and every field before the MVCC store
    /// (`SnapshotBuilder` writes the store after it).
    pub(crate) fn encode_header(&self, buf: &mut Vec<u8>) {
        use bincode::Options;
        /// `StateMachine`'s fields before `mvcc`, in its order, borrowed.
        #[derive(Serialize)]
        struct Header<'a> {
            leases: &'a Leases,
            proposals: &'a AppliedProposals,
            members: &'a BTreeMap<u64, Member>,
            removed: &'a BTreeSet<u64>,
            alarms: &'a BTreeSet<Alarm>,
            prefix_quotas: &'a PrefixQuotas,
            auth: &'a AuthStore,
            v2: &'a V2Store,
            applied_index: u64,
            applied_term: u64,
            applied_digest: u64,
        }
        let header = Header {
            leases: &self.leases,
            proposals: &self.proposals,
            members: &self.members,
            removed: &self.removed,
            alarms: &self.alarms,
            prefix_quotas: &self.prefix_quotas,
            auth: &self.auth,
            v2: &self.v2,
            applied_index: self.applied_index,
            applied_term: self.applied_term,
            applied_digest: self.applied_digest,
        };
        buf.push(SNAPSHOT_FORMAT);
        codec().serialize_into(buf, &header).expect("encoding into a Vec cannot fail");
    }

    /// This state as the first state of a new cluster (`backup::restore`): the same keys,
    /// revisions, leases and v2 store; `members` as the member list (voters, none removed);
    /// applied through `index` of `term`; no memory of the old cluster's proposals.
    pub(crate) fn into_new_cluster(mut self, members: &[Member], index: u64, term: u64) -> StateMachine {
        self.members = members.iter().map(|m| (m.id, Member { learner: false, ..m.clone() })).collect();
        self.removed.clear();
        // Alarms name the old cluster's members.
        self.alarms.clear();
        self.proposals = AppliedProposals::default();
        self.applied_index = index;
        self.applied_term = term;
        self.applied_digest = 0;
        self
    }

    /// The whole state at once. A member snapshots with `SnapshotBuilder` instead, which
    /// produces the same bytes a piece at a time.
    pub fn encode(&self) -> Vec<u8> {
        use bincode::Options;
        let mut buf = vec![SNAPSHOT_FORMAT];
        codec().serialize_into(&mut buf, self).expect("encoding into a Vec cannot fail");
        buf
    }

    pub fn decode(data: &[u8]) -> Result<StateMachine> {
        use bincode::Options;
        match data.split_first() {
            Some((&SNAPSHOT_FORMAT, rest)) => {
                let mut sm: StateMachine = codec()
                    .deserialize(rest)
                    .map_err(|e| Error::Corrupt(format!("undecodable snapshot: {e}")))?;
                // Bytes that decode are not yet a state to trust.
                sm.mvcc.check_invariants()?;
                sm.v2.check_invariants()?;
                sm.prefix_quotas.recount(&sm.mvcc);
                Ok(sm)
            }
            Some((&SNAPSHOT_FORMAT_NO_AUTH, rest)) => {
                /// `StateMachine` as format 5 laid it out: no auth store.
                #[derive(Deserialize)]
                struct NoAuth {
                    leases: Leases,
                    proposals: AppliedProposals,
                    members: BTreeMap<u64, Member>,
                    removed: BTreeSet<u64>,
                    alarms: BTreeSet<Alarm>,
                    prefix_quotas: PrefixQuotas,
                    v2: V2Store,
                    applied_index: u64,
                    applied_term: u64,
                    applied_digest: u64,
                    mvcc: Mvcc,
                }
                let old: NoAuth = codec()
                    .deserialize(rest)
                    .map_err(|e| Error::Corrupt(format!("undecodable snapshot: {e}")))?;
                let mut sm = StateMachine {
                    leases: old.leases,
                    proposals: old.proposals,
                    members: old.members,
                    removed: old.removed,
                    alarms: old.alarms,
                    prefix_quotas: old.prefix_quotas,
                    auth: AuthStore::default(),
                    v2: old.v2,
                    applied_index: old.applied_index,
                    applied_term: old.applied_term,
                    applied_digest: old.applied_digest,
                    mvcc: old.mvcc,
                };
                sm.mvcc.check_invariants()?;
                sm.v2.check_invariants()?;
                sm.prefix_quotas.recount(&sm.mvcc);
                Ok(sm)
            }
            Some((&SNAPSHOT_FORMAT_NO_ALARMS, rest)) => {
                /// `StateMachine` as format 4 laid it out: no alarms.
                #[derive(Deserialize)]
                struct NoAlarms {
                    leases: Leases,
                    proposals: AppliedProposals,
                    members: BTreeMap<u64, Member>,
                    removed: BTreeSet<u64>,
                    v2: V2Store,
                    applied_index: u64,
                    applied_term: u64,
                    applied_digest: u64,
                    mvcc: Mvcc,
                }
                let old: NoAlarms = codec()
                    .deserialize(rest)
                    .map_err(|e| Error::Corrupt(format!("undecodable snapshot: {e}")))?;
                let sm = StateMachine {
                    leases: old.leases,
                    proposals: old.proposals,
                    members: old.members,
                    removed: old.removed,
                    alarms: BTreeSet::new(),
                    prefix_quotas: PrefixQuotas::default(),
                    auth: AuthStore::default(),
                    v2: old.v2,
                    applied_index: old.applied_index,
                    applied_term: old.applied_term,
                    applied_digest: old.applied_digest,
                    mvcc: old.mvcc,
                };
                sm.mvcc.check_invariants()?;
                sm.v2.check_invariants()?;
                Ok(sm)
            }
            Some((v, _)) if *v < SNAPSHOT_FORMAT => Err(Error::Corrupt(format!(
                "snapshot format {v} was written by an older Cairn (this one reads format {SNAPSHOT_FORMAT}, \
                 whose member list carries peer URLs and learners): start this member with an empty \
                 data dir, after `etcdctl member remove` and `member add`, and it catches up from its peers"
            ))),
            Some((v, _)) => Err(Error::Corrupt(format!("unknown snapshot format {v}"))),
            None => Err(Error::Corrupt("empty snapshot".into())),
        }
    }
}

/// Whether a txn may put on either branch, nested txns included (etcd's quota cost check).
pub fn txn_has_put(t: &TxnRequest) -> bool {
    t.success.iter().chain(&t.failure).any(|op| match op {
        RequestOp::Put(_) => true,
        RequestOp::Txn(inner) => txn_has_put(inner),
        _ => false,
    })
}

/// How far behind the newest applied sequence number of a proposer's boot a proposal may be
/// and still be told apart from a copy. A member never has more than
/// `Config::pending_requests_max` requests in flight, far fewer than this; a proposal this far
/// behind was given up on by its proposer long ago, and is refused as a copy.
const PROPOSAL_SEQ_WINDOW: u64 = 1 << 16;

/// Per proposer boot (member, nonce): the sequence numbers applied within the window below
/// the highest. Only the two most recent boots of each member are kept.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct AppliedProposals {
    by_boot: BTreeMap<(u64, u64), BootWindow>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct BootWindow {
    seq_max: u64,
    seqs: BTreeSet<u64>,
    /// Log index of the last proposal applied from this boot (which boot is newest).
    last_index: u64,
}

impl AppliedProposals {
    fn first_time(&mut self, o: Origin, index: u64) -> bool {
        let w = self.by_boot.entry((o.member, o.nonce)).or_default();
        if o.seq + PROPOSAL_SEQ_WINDOW <= w.seq_max || !w.seqs.insert(o.seq) {
            return false;
        }
        w.seq_max = w.seq_max.max(o.seq);
        w.last_index = index;
        let floor = w.seq_max.saturating_sub(PROPOSAL_SEQ_WINDOW);
        w.seqs = w.seqs.split_off(&floor);
        // Forget all but the member's two most recent boots.
        let mut boots: Vec<(u64, u64)> = self
            .by_boot
            .range((o.member, 0)..=(o.member, u64::MAX))
            .map(|(&(_, nonce), w)| (w.last_index, nonce))
            .collect();
        if boots.len() > 2 {
            boots.sort_unstable();
            for &(_, nonce) in &boots[..boots.len() - 2] {
                self.by_boot.remove(&(o.member, nonce));
            }
        }
        true
    }
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Members with different election timeouts (so different lease minimums) grant the same
    /// TTL: the entry carries it. Only grants from old logs use the applying member's minimum.
    #[test]
    fn a_lease_grant_applies_the_same_whatever_the_members_minimum() {
        let grant = Command::LeaseGrant { id: 5, ttl_secs: 2 };
        let (mut a, mut b) = (StateMachine::new(), StateMachine::new());
        a.apply(1, 1, b"g", &grant, &Caller::Member, 3);
        b.apply(1, 1, b"g", &grant, &Caller::Member, 15);
        assert_eq!(a, b);
        assert_eq!(a.leases().get(5).map(|l| l.ttl_secs), Some(2));
        let old = Command::LeaseGrantUnstamped { id: 6, ttl_secs: 2 };
        a.apply(2, 1, b"o", &old, &Caller::Member, 3);
        assert_eq!(a.leases().get(6).map(|l| l.ttl_secs), Some(3));
    }

    #[test]
    fn a_format_5_snapshot_reads_as_the_same_state_with_auth_off_and_no_users() {
        use bincode::Options;
        #[derive(Serialize)]
        struct Format5<'a> {
            leases: &'a Leases,
            proposals: &'a AppliedProposals,
            members: &'a BTreeMap<u64, Member>,
            removed: &'a BTreeSet<u64>,
            alarms: &'a BTreeSet<Alarm>,
            prefix_quotas: &'a PrefixQuotas,
            v2: &'a V2Store,
            applied_index: u64,
            applied_term: u64,
            applied_digest: u64,
            mvcc: &'a Mvcc,
        }
        let mut sm = StateMachine::new();
        sm.members.insert(3, Member { id: 3, name: "m3".into(), ..Default::default() });
        sm.alarms.insert(Alarm { member: 3, kind: AlarmKind::NoSpace });
        sm.applied_index = 40;
        let mut buf = vec![SNAPSHOT_FORMAT_NO_AUTH];
        let old = Format5 {
            leases: &sm.leases,
            proposals: &sm.proposals,
            members: &sm.members,
            removed: &sm.removed,
            alarms: &sm.alarms,
            prefix_quotas: &sm.prefix_quotas,
            v2: &sm.v2,
            applied_index: sm.applied_index,
            applied_term: sm.applied_term,
            applied_digest: sm.applied_digest,
            mvcc: &sm.mvcc,
        };
        codec().serialize_into(&mut buf, &old).unwrap();
        assert_eq!(StateMachine::decode(&buf).unwrap(), sm);
        // And the auth store round-trips in format 6.
        let mut with_auth = sm.clone();
        let add = crate::auth::AuthChange::UserAdd { name: "root".into(), password_hash: Some("h".into()) };
        with_auth.auth.apply(&add).unwrap();
        assert_eq!(StateMachine::decode(&with_auth.encode()).unwrap(), with_auth);
    }

    #[test]
    fn a_format_4_snapshot_reads_as_the_same_state_with_no_alarms() {
        use bincode::Options;
        #[derive(Serialize)]
        struct Format4<'a> {
            leases: &'a Leases,
            proposals: &'a AppliedProposals,
            members: &'a BTreeMap<u64, Member>,
            removed: &'a BTreeSet<u64>,
            v2: &'a V2Store,
            applied_index: u64,
            applied_term: u64,
            applied_digest: u64,
            mvcc: &'a Mvcc,
        }
        let mut sm = StateMachine::new();
        sm.members.insert(7, Member { id: 7, name: "m7".into(), ..Default::default() });
        sm.removed.insert(9);
        sm.applied_index = 12;
        let mut buf = vec![SNAPSHOT_FORMAT_NO_ALARMS];
        let old = Format4 {
            leases: &sm.leases,
            proposals: &sm.proposals,
            members: &sm.members,
            removed: &sm.removed,
            v2: &sm.v2,
            applied_index: sm.applied_index,
            applied_term: sm.applied_term,
            applied_digest: sm.applied_digest,
            mvcc: &sm.mvcc,
        };
        codec().serialize_into(&mut buf, &old).unwrap();
        assert_eq!(StateMachine::decode(&buf).unwrap(), sm);
        let mut with_alarm = sm.clone();
        with_alarm.alarms.insert(Alarm { member: 7, kind: AlarmKind::NoSpace });
        assert_eq!(StateMachine::decode(&with_alarm.encode()).unwrap(), with_alarm);
    }
}
