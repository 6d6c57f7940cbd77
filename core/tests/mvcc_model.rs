//! `Mvcc` against a model too simple to be wrong: a full copy of the key space at every
//! revision, and the events of every revision, with requests answered by linear scans.
//!
//! Random sequences of puts, deletes, lease revocations, txns (compares on every target and
//! result, over keys and ranges, nested txns), compactions, ranges at any revision (with
//! limit, sort, filters, count_only, keys_only) and event queries run on both; every answer,
//! every error, and the state after each step must agree. Errors are compared against the set
//! of errors the request deserves, so the test does not depend on which check runs first
//! (`mvcc_semantics` pins that down).

use std::collections::BTreeMap;

use bytes::Bytes;
use cairn_core::kv::{
    Compare, CompareResult, CompareTarget, DeleteRangeRequest, DeleteRangeResponse, Event, EventKind,
    KeyValue, PutRequest, PutResponse, RangeRequest, RangeResponse, RequestOp, ResponseOp, SortOrder,
    SortTarget, TxnRequest, TxnResponse,
};
use cairn_core::mvcc::{Mvcc, TxnOutcome};
use cairn_core::Error;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;

// ---- The model ----

type State = BTreeMap<Bytes, KeyValue>;

/// Leases 1 and 2 exist; the generators also use 0 (none) and 3 (missing).
fn lease_exists(id: i64) -> bool {
    id == 1 || id == 2
}

#[derive(Clone, Debug)]
struct Model {
    /// `states[r]` is the key space at revision `r`; revisions 0 and 1 are empty.
    states: Vec<State>,
    /// `events[r]` are the changes made at revision `r`.
    events: Vec<Vec<Event>>,
    compacted: i64,
}

/// etcd's span conventions, as a predicate.
fn in_span(k: &[u8], key: &[u8], range_end: &[u8]) -> bool {
    if range_end.is_empty() {
        k == key
    } else if range_end == b"\0" {
        k >= key
    } else {
        k >= key && k < range_end
    }
}

fn in_state<'a>(
    state: &'a State,
    key: &'a [u8],
    range_end: &'a [u8],
) -> impl Iterator<Item = &'a KeyValue> + 'a {
    state.values().filter(move |kv| in_span(&kv.key, key, range_end))
}

fn range_in(state: &State, req: &RangeRequest) -> RangeResponse {
    let all: Vec<KeyValue> = in_state(state, &req.key, &req.range_end).cloned().collect();
    let count = all.len() as i64;
    if req.count_only {
        return RangeResponse { kvs: vec![], more: false, count };
    }
    let ok = |v: i64, min: i64, max: i64| (min == 0 || v >= min) && (max == 0 || v <= max);
    let mut kvs: Vec<KeyValue> = all
        .into_iter()
        .filter(|kv| ok(kv.mod_revision, req.min_mod_revision, req.max_mod_revision))
        .filter(|kv| ok(kv.create_revision, req.min_create_revision, req.max_create_revision))
        .collect();
    let order = match (req.sort_order, req.sort_target) {
        (SortOrder::None, SortTarget::Key) => SortOrder::None,
        (SortOrder::None, _) => SortOrder::Ascend,
        (order, _) => order,
    };
    let sort_key = |kv: &KeyValue| -> (i64, Bytes) {
        match req.sort_target {
            SortTarget::Key => (0, kv.key.clone()),
            SortTarget::Version => (kv.version, Bytes::new()),
            SortTarget::Create => (kv.create_revision, Bytes::new()),
            SortTarget::Mod => (kv.mod_revision, Bytes::new()),
            SortTarget::Value => (0, kv.value.clone()),
        }
    };
    // Stable sorts: ties stay in key order.
    match order {
        SortOrder::None => {}
        SortOrder::Ascend => kvs.sort_by_key(|kv| sort_key(kv)),
        SortOrder::Descend => kvs.sort_by_key(|kv| std::cmp::Reverse(sort_key(kv))),
    }
    let more = req.limit > 0 && kvs.len() as i64 > req.limit;
    if more {
        kvs.truncate(req.limit as usize);
    }
    if req.keys_only {
        kvs.iter_mut().for_each(|kv| kv.value = Bytes::new());
    }
    RangeResponse { kvs, more, count }
}

fn compare_kv(c: &Compare, kv: &KeyValue) -> bool {
    let ord = match &c.target {
        CompareTarget::Version(v) => kv.version.cmp(v),
        CompareTarget::Create(v) => kv.create_revision.cmp(v),
        CompareTarget::Mod(v) => kv.mod_revision.cmp(v),
        CompareTarget::Lease(v) => kv.lease.cmp(v),
        CompareTarget::Value(v) => kv.value.cmp(v),
    };
    match c.result {
        CompareResult::Equal => ord.is_eq(),
        CompareResult::NotEqual => ord.is_ne(),
        CompareResult::Greater => ord.is_gt(),
        CompareResult::Less => ord.is_lt(),
    }
}

fn compares_hold(state: &State, compares: &[Compare]) -> bool {
    compares.iter().all(|c| {
        let kvs: Vec<&KeyValue> = in_state(state, &c.key, &c.range_end).collect();
        if kvs.is_empty() {
            !matches!(c.target, CompareTarget::Value(_)) && compare_kv(c, &KeyValue::default())
        } else {
            kvs.iter().all(|kv| compare_kv(c, kv))
        }
    })
}

/// A write as the duplicate-key rule sees it.
#[derive(Clone, Debug)]
enum Write {
    Put(Bytes),
    Delete(Bytes, Bytes),
}

/// Every sequence of writes `ops` could make, one per choice of branch in each nested txn.
fn write_paths(ops: &[RequestOp]) -> Vec<Vec<Write>> {
    let mut paths = vec![vec![]];
    for op in ops {
        let choices: Vec<Vec<Write>> = match op {
            RequestOp::Range(_) => vec![vec![]],
            RequestOp::Put(p) => vec![vec![Write::Put(p.key.clone())]],
            RequestOp::DeleteRange(d) => vec![vec![Write::Delete(d.key.clone(), d.range_end.clone())]],
            RequestOp::Txn(t) => write_paths(&t.success).into_iter().chain(write_paths(&t.failure)).collect(),
        };
        paths = paths
            .iter()
            .flat_map(|p| choices.iter().map(move |c| p.iter().chain(c).cloned().collect()))
            .collect();
    }
    paths
}

/// Whether some way through `ops` writes a key twice.
fn writes_a_key_twice(ops: &[RequestOp]) -> bool {
    write_paths(ops).iter().any(|path| {
        path.iter().enumerate().any(|(i, a)| {
            path.iter().enumerate().any(|(j, b)| {
                i != j
                    && match (a, b) {
                        (Write::Put(x), Write::Put(y)) => x == y,
                        (Write::Put(x), Write::Delete(k, e)) => in_span(x, k, e),
                        _ => false,
                    }
            })
        })
    })
}

/// Errors the request deserves before looking at the store: over both branches, all nesting.
fn static_errors(req: &TxnRequest, out: &mut Vec<Error>) {
    if req.compare.iter().any(|c| c.key.is_empty()) {
        out.push(Error::EmptyKey);
    }
    for op in req.success.iter().chain(&req.failure) {
        match op {
            RequestOp::Range(r) if r.key.is_empty() => out.push(Error::EmptyKey),
            RequestOp::DeleteRange(d) if d.key.is_empty() => out.push(Error::EmptyKey),
            RequestOp::Put(p) => out.extend(put_static_errors(p)),
            RequestOp::Txn(t) => static_errors(t, out),
            _ => {}
        }
    }
    if writes_a_key_twice(&req.success) || writes_a_key_twice(&req.failure) {
        out.push(Error::DuplicateKey);
    }
}

fn put_static_errors(p: &PutRequest) -> Vec<Error> {
    let mut out = vec![];
    if p.key.is_empty() {
        out.push(Error::EmptyKey);
    }
    if p.ignore_value && !p.value.is_empty() {
        out.push(Error::ValueProvided);
    }
    if p.ignore_lease && p.lease != 0 {
        out.push(Error::LeaseProvided);
    }
    out
}

impl Model {
    fn new() -> Model {
        Model { states: vec![State::new(), State::new()], events: vec![vec![], vec![]], compacted: 0 }
    }

    fn current(&self) -> i64 {
        self.states.len() as i64 - 1
    }

    fn now(&self) -> &State {
        self.states.last().unwrap()
    }

    fn compacted_error(&self) -> Error {
        Error::Compacted { compacted_revision: self.compacted }
    }

    fn range(&self, req: &RangeRequest) -> Result<RangeResponse, Error> {
        if req.key.is_empty() {
            return Err(Error::EmptyKey);
        }
        if req.revision > self.current() {
            return Err(Error::FutureRevision);
        }
        let revision = if req.revision <= 0 { self.current() } else { req.revision };
        if revision < self.compacted {
            return Err(self.compacted_error());
        }
        Ok(range_in(&self.states[revision as usize], req))
    }

    fn events(&self, key: &[u8], range_end: &[u8], start: i64) -> Result<Vec<Event>, Error> {
        if start <= 0 {
            return Ok(vec![]);
        }
        if start < self.compacted {
            return Err(self.compacted_error());
        }
        Ok(self
            .events
            .iter()
            .skip(start as usize)
            .flatten()
            .filter(|e| in_span(&e.kv.key, key, range_end))
            .cloned()
            .collect())
    }

    /// Errors the chosen path deserves against the store before the txn.
    fn path_errors(&self, req: &TxnRequest, out: &mut Vec<Error>) {
        let pre = self.now();
        let ops = if compares_hold(pre, &req.compare) { &req.success } else { &req.failure };
        for op in ops {
            match op {
                RequestOp::Put(p) => {
                    if (p.ignore_value || p.ignore_lease) && !pre.contains_key(&p.key) {
                        out.push(Error::KeyNotFound);
                    }
                    if p.lease != 0 && !lease_exists(p.lease) {
                        out.push(Error::LeaseNotFound);
                    }
                }
                RequestOp::Range(r) if r.revision > self.current() => out.push(Error::FutureRevision),
                RequestOp::Range(r) if r.revision > 0 && r.revision < self.compacted => {
                    out.push(self.compacted_error())
                }
                RequestOp::Txn(t) => self.path_errors(t, out),
                _ => {}
            }
        }
    }

    /// The errors the txn may fail with; empty if it must succeed.
    fn txn_errors(&self, req: &TxnRequest) -> Vec<Error> {
        let mut errors = vec![];
        static_errors(req, &mut errors);
        if errors.is_empty() {
            self.path_errors(req, &mut errors);
        }
        errors
    }

    /// Runs a txn that passed its checks.
    fn txn(&mut self, req: &TxnRequest) -> TxnOutcome {
        let pre = self.now().clone();
        let mut state = pre.clone();
        let main = self.current() + 1;
        let mut events = vec![];
        let response = self.exec(&pre, &mut state, main, &mut events, req);
        self.commit(state, events.clone());
        TxnOutcome { response, events, revision: self.current() }
    }

    fn exec(
        &self,
        pre: &State,
        state: &mut State,
        main: i64,
        events: &mut Vec<Event>,
        req: &TxnRequest,
    ) -> TxnResponse {
        let succeeded = compares_hold(pre, &req.compare);
        let mut responses = vec![];
        for op in if succeeded { &req.success } else { &req.failure } {
            responses.push(match op {
                RequestOp::Range(r) if r.revision > 0 => {
                    ResponseOp::Range(range_in(&self.states[r.revision as usize], r))
                }
                RequestOp::Range(r) => ResponseOp::Range(range_in(state, r)),
                RequestOp::Put(p) => {
                    let prev = state.get(&p.key).cloned();
                    let kv = KeyValue {
                        key: p.key.clone(),
                        create_revision: prev.as_ref().map_or(main, |kv| kv.create_revision),
                        mod_revision: main,
                        version: prev.as_ref().map_or(1, |kv| kv.version + 1),
                        value: if p.ignore_value {
                            prev.as_ref().unwrap().value.clone()
                        } else {
                            p.value.clone()
                        },
                        lease: if p.ignore_lease { prev.as_ref().unwrap().lease } else { p.lease },
                    };
                    state.insert(p.key.clone(), kv.clone());
                    events.push(Event { kind: EventKind::Put, kv, prev_kv: prev.clone() });
                    ResponseOp::Put(PutResponse { prev_kv: if p.prev_kv { prev } else { None } })
                }
                RequestOp::DeleteRange(d) => {
                    let gone = delete_from(state, main, events, |k| in_span(k, &d.key, &d.range_end));
                    ResponseOp::DeleteRange(DeleteRangeResponse {
                        deleted: gone.len() as i64,
                        prev_kvs: if d.prev_kv { gone } else { vec![] },
                    })
                }
                RequestOp::Txn(t) => ResponseOp::Txn(self.exec(pre, state, main, events, t)),
            });
        }
        TxnResponse { succeeded, responses }
    }

    fn delete_keys(&mut self, keys: &[Bytes]) -> (Vec<Event>, i64) {
        let mut state = self.now().clone();
        let mut events = vec![];
        delete_from(&mut state, self.current() + 1, &mut events, |k| keys.iter().any(|x| x == k));
        self.commit(state, events.clone());
        (events, self.current())
    }

    fn commit(&mut self, state: State, events: Vec<Event>) {
        if !events.is_empty() {
            self.states.push(state);
            self.events.push(events);
        }
    }

    fn compact(&mut self, revision: i64) -> Result<(), Error> {
        if revision <= self.compacted {
            return Err(self.compacted_error());
        }
        if revision > self.current() {
            return Err(Error::FutureRevision);
        }
        self.compacted = revision;
        Ok(())
    }
}

/// Deletes the keys `which` selects, in key order, recording events; returns what it deleted.
fn delete_from(
    state: &mut State,
    main: i64,
    events: &mut Vec<Event>,
    which: impl Fn(&[u8]) -> bool,
) -> Vec<KeyValue> {
    let gone: Vec<KeyValue> = state.values().filter(|kv| which(&kv.key)).cloned().collect();
    for kv in &gone {
        state.remove(&kv.key);
        let tombstone = KeyValue { key: kv.key.clone(), mod_revision: main, ..KeyValue::default() };
        events.push(Event { kind: EventKind::Delete, kv: tombstone, prev_kv: Some(kv.clone()) });
    }
    gone
}

// ---- Generators ----

const KEYS: [&str; 5] = ["a", "b", "c", "d", "e"];

fn bytes(s: &'static str) -> Bytes {
    Bytes::from_static(s.as_bytes())
}

/// A key to write: mostly from a small alphabet so writes collide, rarely empty (an error).
fn write_key() -> impl Strategy<Value = Bytes> {
    prop_oneof![60 => select(KEYS.to_vec()).prop_map(bytes), 1 => Just(Bytes::new())]
}

/// A key to start a span at: also `\0`, which with range_end `\0` is every key.
fn span_key() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        60 => select(KEYS.to_vec()).prop_map(bytes),
        4 => Just(bytes("\0")),
        1 => Just(Bytes::new()),
    ]
}

fn range_end() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        4 => Just(Bytes::new()),
        1 => Just(bytes("\0")),
        3 => select(vec!["a", "b", "c", "d", "e", "f"]).prop_map(bytes),
    ]
}

fn value() -> impl Strategy<Value = Bytes> {
    select(vec!["", "x", "y", "z"]).prop_map(bytes)
}

fn put_request() -> impl Strategy<Value = PutRequest> {
    (write_key(), value(), select(vec![0i64, 0, 0, 1, 2, 3]), any::<bool>(), 0..16u8).prop_map(
        |(key, value, lease, prev_kv, flags)| {
            // Mostly plain puts; the ignore flags mostly with an empty value / no lease, as valid.
            let ignore_value = flags < 2;
            let ignore_lease = flags == 1 || flags == 2;
            PutRequest {
                key,
                value: if ignore_value && flags != 0 { Bytes::new() } else { value },
                lease: if ignore_lease { 0 } else { lease },
                prev_kv,
                ignore_value,
                ignore_lease,
            }
        },
    )
}

fn delete_request() -> impl Strategy<Value = DeleteRangeRequest> {
    // Mostly single keys, so the store does not stay nearly empty.
    let range_end = prop_oneof![2 => Just(Bytes::new()), 1 => range_end()];
    (span_key(), range_end, any::<bool>()).prop_map(|(key, range_end, prev_kv)| DeleteRangeRequest {
        key,
        range_end,
        prev_kv,
    })
}

/// A range request; `revision` is chosen by the caller.
fn range_request(revision: impl Strategy<Value = i64>) -> impl Strategy<Value = RangeRequest> {
    let order = select(vec![SortOrder::None, SortOrder::Ascend, SortOrder::Descend]);
    let target = select(vec![
        SortTarget::Key,
        SortTarget::Version,
        SortTarget::Create,
        SortTarget::Mod,
        SortTarget::Value,
    ]);
    let bound = prop_oneof![10 => Just(0i64), 1 => 1..12i64];
    // Reads favour spans of several keys, so limits, sorting and filters have work to do.
    let range_end = prop_oneof![2 => range_end(), 1 => Just(bytes("\0")), 1 => Just(bytes("f"))];
    (
        (span_key(), range_end, 0..4i64, revision),
        (order, target, any::<bool>(), prop::bool::weighted(0.15)),
        (bound.clone(), bound.clone(), bound.clone(), bound),
    )
        .prop_map(
            |(
                (key, range_end, limit, revision),
                (sort_order, sort_target, keys_only, count_only),
                (a, b, c, d),
            )| {
                RangeRequest {
                    key,
                    range_end,
                    limit,
                    revision,
                    sort_order,
                    sort_target,
                    serializable: false,
                    keys_only,
                    count_only,
                    min_mod_revision: a,
                    max_mod_revision: b,
                    min_create_revision: c,
                    max_create_revision: d,
                }
            },
        )
}

fn compare() -> impl Strategy<Value = Compare> {
    let target = prop_oneof![
        (0..4i64).prop_map(CompareTarget::Version),
        (0..12i64).prop_map(CompareTarget::Create),
        (0..12i64).prop_map(CompareTarget::Mod),
        value().prop_map(CompareTarget::Value),
        (0..3i64).prop_map(CompareTarget::Lease),
    ];
    let result = select(vec![
        CompareResult::Equal,
        CompareResult::NotEqual,
        CompareResult::Greater,
        CompareResult::Less,
    ]);
    let range_end = prop_oneof![3 => Just(Bytes::new()), 1 => range_end()];
    (result, target, span_key(), range_end).prop_map(|(result, target, key, range_end)| Compare {
        result,
        target,
        key,
        range_end,
    })
}

fn request_op(depth: u32) -> BoxedStrategy<RequestOp> {
    // Reads inside txns mostly at the txn's own state; sometimes at an older or bad revision.
    let revision = prop_oneof![6 => Just(0i64), 1 => -1..40i64];
    let leaf = prop_oneof![
        2 => range_request(revision).prop_map(RequestOp::Range),
        4 => put_request().prop_map(RequestOp::Put),
        1 => delete_request().prop_map(RequestOp::DeleteRange),
    ];
    if depth == 0 {
        leaf.boxed()
    } else {
        prop_oneof![3 => leaf, 1 => txn_request(depth - 1).prop_map(RequestOp::Txn)].boxed()
    }
}

/// Up to 3 ops per branch keeps the model's path enumeration small.
fn txn_request(depth: u32) -> BoxedStrategy<TxnRequest> {
    (vec(compare(), 0..3), vec(request_op(depth), 0..4), vec(request_op(depth), 0..3))
        .prop_map(|(compare, success, failure)| TxnRequest { compare, success, failure })
        .boxed()
}

/// A revision picked relative to the store when the step runs (`pick` modulo the useful
/// span), so compactions and old reads hit interesting revisions at any length of history.
#[derive(Clone, Debug)]
struct Pick(u16);

impl Pick {
    /// A revision in `low..=high`.
    fn within(&self, low: i64, high: i64) -> i64 {
        low + i64::from(self.0) % (high - low + 1)
    }
}

#[derive(Clone, Debug)]
enum Step {
    Put(PutRequest),
    Delete(DeleteRangeRequest),
    DeleteKeys(Vec<Bytes>),
    Txn(TxnRequest),
    /// The request's revision is replaced by one picked in `-1..=current + 1`, or by 0.
    Range(RangeRequest, Option<Pick>),
    /// At a revision picked in `compacted..=current + 1`, so both errors happen too.
    Compact(Pick),
    /// From a revision picked in `-1..=current + 1`.
    Events(Bytes, Bytes, Pick),
}

fn step() -> impl Strategy<Value = Step> {
    let pick = any::<u16>().prop_map(Pick);
    prop_oneof![
        6 => put_request().prop_map(Step::Put),
        1 => delete_request().prop_map(Step::Delete),
        1 => vec(write_key(), 0..4).prop_map(Step::DeleteKeys),
        5 => txn_request(2).prop_map(Step::Txn),
        3 => (range_request(Just(0)), prop::option::of(pick.clone())).prop_map(|(r, p)| Step::Range(r, p)),
        1 => pick.clone().prop_map(Step::Compact),
        1 => (span_key(), range_end(), pick).prop_map(|(k, e, p)| Step::Events(k, e, p)),
    ]
}

// ---- The test ----

/// Checks an error against the errors the request deserves, and that the store is untouched.
fn check_error(error: Error, allowed: &[Error], store: &Mvcc, before: &Mvcc) {
    assert!(allowed.contains(&error), "store failed with {error:?}, model allows {allowed:?}");
    assert_eq!(store, before, "a failed write changed the store");
}

fn check_write(before: i64, events: &[Event], after: i64) {
    let expected = if events.is_empty() { before } else { before + 1 };
    assert_eq!(after, expected, "the revision moves by one exactly when something changed");
}

fn run_step(store: &mut Mvcc, model: &mut Model, step: &Step) {
    let before = store.clone();
    let revision_before = store.current_revision();
    let current = model.current();
    match step {
        Step::Put(req) => {
            let mut allowed = put_static_errors(req);
            if allowed.is_empty() {
                if req.lease != 0 && !lease_exists(req.lease) {
                    allowed.push(Error::LeaseNotFound);
                }
                if (req.ignore_value || req.ignore_lease) && !model.now().contains_key(&req.key) {
                    allowed.push(Error::KeyNotFound);
                }
            }
            match store.put(req, &lease_exists) {
                Err(e) => check_error(e, &allowed, store, &before),
                Ok((resp, events, revision)) => {
                    assert!(allowed.is_empty(), "put succeeded, model expects one of {allowed:?}");
                    let txn =
                        TxnRequest { success: vec![RequestOp::Put(req.clone())], ..TxnRequest::default() };
                    let out = model.txn(&txn);
                    assert_eq!(out.response.responses, vec![ResponseOp::Put(resp)]);
                    assert_eq!((out.events, out.revision), (events.clone(), revision));
                    check_write(revision_before, &events, revision);
                }
            }
        }
        Step::Delete(req) => match store.delete_range(req) {
            Err(e) => {
                let allowed = if req.key.is_empty() { vec![Error::EmptyKey] } else { vec![] };
                check_error(e, &allowed, store, &before)
            }
            Ok((resp, events, revision)) => {
                let txn = TxnRequest {
                    success: vec![RequestOp::DeleteRange(req.clone())],
                    ..TxnRequest::default()
                };
                let out = model.txn(&txn);
                assert_eq!(out.response.responses, vec![ResponseOp::DeleteRange(resp)]);
                assert_eq!((out.events, out.revision), (events.clone(), revision));
                check_write(revision_before, &events, revision);
            }
        },
        Step::DeleteKeys(keys) => {
            let (events, revision) = store.delete_keys(keys);
            assert_eq!(model.delete_keys(keys), (events.clone(), revision));
            check_write(revision_before, &events, revision);
        }
        Step::Txn(req) => {
            let allowed = model.txn_errors(req);
            match store.txn(req, &lease_exists) {
                Err(e) => check_error(e, &allowed, store, &before),
                Ok(out) => {
                    assert!(allowed.is_empty(), "txn succeeded, model expects one of {allowed:?}");
                    check_write(revision_before, &out.events, out.revision);
                    assert_eq!(out, model.txn(req));
                }
            }
        }
        Step::Range(req, pick) => {
            let revision = pick.as_ref().map_or(0, |p| p.within(-1, current + 1));
            let req = RangeRequest { revision, ..req.clone() };
            assert_eq!(store.range(&req), model.range(&req), "{req:?}");
        }
        Step::Compact(pick) => {
            let revision = pick.within(model.compacted, current + 1);
            assert_eq!(store.compact(revision), model.compact(revision), "compact at {revision}");
        }
        Step::Events(key, range_end, pick) => {
            let start = pick.within(-1, current + 1);
            assert_eq!(store.events(key, range_end, start), model.events(key, range_end, start));
        }
    }
    check_state(store, model);
}

/// The whole observable state agrees: revisions, every readable revision, the event history.
fn check_state(store: &Mvcc, model: &Model) {
    store.check_invariants().unwrap();
    assert_eq!(store.current_revision(), model.current());
    assert_eq!(store.compacted_revision(), model.compacted);
    assert_eq!(store.len(), model.now().len());
    for key in KEYS {
        assert_eq!(store.kv_at(key.as_bytes()).as_ref(), model.now().get(key.as_bytes()), "key {key}");
    }
    let all = RangeRequest { key: bytes("\0"), range_end: bytes("\0"), ..RangeRequest::default() };
    for revision in model.compacted.max(1)..=model.current() {
        let req = RangeRequest { revision, ..all.clone() };
        assert_eq!(store.range(&req), model.range(&req), "everything at {revision}");
    }
    // Events from every revision the store still has equal what the writes emitted.
    for start in model.compacted.max(1)..=model.current() + 1 {
        assert_eq!(
            store.events(b"\0", b"\0", start),
            model.events(b"\0", b"\0", start),
            "events from {start}"
        );
    }
    // The same events a page at a time, for any budget: whole revisions, in order, nothing
    // twice, nothing missed, within the budget unless one revision alone is over it.
    for (key, range_end) in [(&b"\0"[..], &b"\0"[..]), (b"b", b"d"), (b"a", b"")] {
        let start = model.compacted.max(1);
        let Ok(all) = model.events(key, range_end, start) else { continue };
        for budget in [1usize, 80, 150, 400, 5_000, usize::MAX] {
            let (mut from, mut paged, mut pages) = (start, Vec::new(), 0);
            loop {
                let (page, next) = store.events_page(key, range_end, from, budget).unwrap();
                pages += 1;
                assert!(pages <= all.len() + 2, "paging ends");
                if let (Some(first), Some(last)) = (page.first(), page.last()) {
                    assert!(first.kv.mod_revision >= from, "a page starts where asked");
                    assert!(last.kv.mod_revision < next, "the next page starts after this one");
                    let revisions: std::collections::BTreeSet<i64> =
                        page.iter().map(|e| e.kv.mod_revision).collect();
                    let size: usize = page.iter().map(|e| e.kv.key.len() + e.kv.value.len() + 64).sum();
                    assert!(
                        size <= budget || revisions.len() == 1,
                        "{size} bytes over {budget} in {} revisions",
                        revisions.len()
                    );
                }
                paged.extend(page);
                if next > store.current_revision() {
                    break;
                }
                from = next;
            }
            assert_eq!(paged, all, "pages of {budget} bytes from {start} over {key:?}..{range_end:?}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn mvcc_matches_model(steps in vec(step(), 1..60)) {
        let mut store = Mvcc::new();
        let mut model = Model::new();
        for step in &steps {
            run_step(&mut store, &mut model, step);
        }
        let decoded: Mvcc = bincode::deserialize(&bincode::serialize(&store).unwrap()).unwrap();
        decoded.check_invariants().unwrap();
        prop_assert_eq!(decoded, store);
    }
}

/// The model's own sanity: a fixed script whose answers are known.
#[test]
fn model_sanity() {
    let mut model = Model::new();
    let put = |key: &'static str| TxnRequest {
        success: vec![RequestOp::Put(PutRequest {
            key: bytes(key),
            value: bytes("v"),
            ..PutRequest::default()
        })],
        ..TxnRequest::default()
    };
    assert_eq!(model.txn(&put("a")).revision, 2);
    assert_eq!(model.txn(&put("a")).events[0].kv.version, 2);
    assert_eq!(model.current(), 3);
    let dup = TxnRequest {
        success: vec![put("b").success[0].clone(), put("b").success[0].clone()],
        ..TxnRequest::default()
    };
    assert_eq!(model.txn_errors(&dup), vec![Error::DuplicateKey]);
}
