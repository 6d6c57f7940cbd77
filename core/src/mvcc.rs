//! The multi-version key-value store: etcd v3's `mvcc` package together with the request
//! semantics of its `etcdserver/apply.go` and the request checks of `v3rpc/key.go` (etcd 3.4),
//! in one deterministic structure with no I/O. The whole store is the Raft snapshot.
//!
//! # Model
//! Every key has a history: its changes in revision order, each a put (the key's new state) or
//! a tombstone (a deletion). A write that changes anything takes the next *main* revision, and
//! each change inside it the next *sub* revision (0, 1, 2, .. in execution order). Reading at
//! revision `R` sees, per key, the last change with `main <= R`; a tombstone there means the
//! key did not exist at `R`. A write that changes nothing does not take a revision. An empty
//! store is at revision 1 (etcd's), so the first write makes revision 2.
//!
//! Within one main revision a key changes at most once: `validate_txn` rejects a txn that would
//! put a key twice or put a key it also deletes (`Error::DuplicateKey`), a second delete of a
//! key finds nothing, and `delete_keys` removes duplicates. So a key's history is strictly
//! ascending in main revision, which the write path asserts.
//!
//! # Cost
//! With `n` keys in the map (live, or deleted but not yet compacted away) and `h` changes in a
//! key's history: reading one key at a revision is `O(log n + log h)`; a range over `k` keys is
//! `O(k log h)` plus sorting, including deleted keys in the span until a compaction drops them;
//! `events` is `O(k h)` plus sorting what it returns; `compact` is `O(n + total history)`.
//! Nothing is cached, so nothing can go stale.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::kv::{
    Compare, CompareResult, CompareTarget, DeleteRangeRequest, DeleteRangeResponse, Event, EventKind,
    KeyValue, PutRequest, PutResponse, RangeRequest, RangeResponse, RequestOp, ResponseOp, SortOrder,
    SortTarget, TxnRequest, TxnResponse,
};

/// etcd's default `--max-txn-ops`: the most compares, and the most ops in each branch, of one
/// txn. A nested txn gets what its parent did not use (etcd's `checkTxnRequest`), which also
/// bounds how deep txns nest. Over the bound: `Error::TooManyOps`.
pub const MAX_TXN_OPS: usize = 128;

/// The store. See the module documentation for the model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(from = "MvccStored")]
pub struct Mvcc {
    /// Per key, its changes in strictly ascending revision order; never an empty `Vec`.
    history: BTreeMap<Blob, Vec<Entry>>,
    current_revision: i64,
    /// Reads below this revision fail with `Error::Compacted`; 0 before any compaction.
    compacted_revision: i64,
    /// Keys that exist now (whose last change is a put), kept as changes are recorded; not
    /// stored, but counted again when a store is decoded.
    #[serde(skip_serializing)]
    live_keys: usize,
    /// What the store holds, as `bytes` counts it; kept as changes are recorded and
    /// compacted, and counted again on decoding.
    #[serde(skip_serializing)]
    bytes: u64,
}

/// What one change costs in `Mvcc::bytes` beyond its key and value: its revision, version,
/// create revision, lease and the handles holding them.
pub const CHANGE_OVERHEAD_BYTES: u64 = 64;

fn change_bytes(key: &[u8], entry: &Entry) -> u64 {
    key.len() as u64 + entry.record.as_ref().map_or(0, |r| r.value.len() as u64) + CHANGE_OVERHEAD_BYTES
}

fn history_bytes(history: &BTreeMap<Blob, Vec<Entry>>) -> u64 {
    history.iter().map(|(k, h)| h.iter().map(|e| change_bytes(k, e)).sum::<u64>()).sum()
}

/// `Mvcc` as encoded: everything but what is counted again on decoding.
#[derive(Deserialize)]
struct MvccStored {
    history: BTreeMap<Blob, Vec<Entry>>,
    current_revision: i64,
    compacted_revision: i64,
}

impl From<MvccStored> for Mvcc {
    fn from(s: MvccStored) -> Mvcc {
        let live_keys = s.history.values().filter(|h| h.last().is_some_and(|e| e.record.is_some())).count();
        let bytes = history_bytes(&s.history);
        Mvcc {
            history: s.history,
            current_revision: s.current_revision,
            compacted_revision: s.compacted_revision,
            live_keys,
            bytes,
        }
    }
}

/// What one `Mvcc::encode_keys` call wrote.
pub(crate) struct KeysEncoded {
    /// Keys written.
    pub keys: u64,
    /// The last key looked at, to continue after; `None` once every key was.
    pub last: Option<Box<[u8]>>,
}

/// What a write txn did: its response, its changes for watchers, and the store's revision
/// after it (the new revision if it changed anything, else the unchanged one).
#[derive(Clone, Debug, PartialEq)]
pub struct TxnOutcome {
    pub response: TxnResponse,
    pub events: Vec<Event>,
    pub revision: i64,
}

/// A change `Mvcc::events_page` chose, ordered by revision alone (revisions are unique).
struct Chosen<'a> {
    revision: Revision,
    size: usize,
    key: &'a Blob,
    history: &'a [Entry],
    index: usize,
}

impl PartialEq for Chosen<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.revision == other.revision
    }
}

impl Eq for Chosen<'_> {}

impl PartialOrd for Chosen<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Chosen<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.revision.cmp(&other.revision)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct Revision {
    main: i64,
    sub: i64,
}

/// One change of one key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    revision: Revision,
    /// The key's state after the change; `None` for a tombstone.
    record: Option<Record>,
}

/// A key's state, less what the history already holds (the key, and `mod_revision`, which is
/// the entry's main revision).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Record {
    create_revision: i64,
    version: i64,
    value: Blob,
    lease: i64,
}

/// A key or value as the store holds it: one exact-size allocation and a 16-byte handle.
///
/// Not `Bytes`, which the requests, responses and events use: a `Bytes` handle is 32 bytes,
/// and the first clone of one made from a `Vec` (every value, when its event is built)
/// allocates a 24-byte shared header as well. With a million keys that is 80 bytes a key more
/// than this. Reads copy out into a fresh `Bytes` instead (`Entry::kv`), a memcpy of what the
/// response would have to encode anyway. Serialized as bytes, exactly as `Bytes` is.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Blob(Box<[u8]>);

impl Blob {
    fn of(bytes: &[u8]) -> Blob {
        Blob(bytes.into())
    }

    fn to_bytes(&self) -> Bytes {
        Bytes::copy_from_slice(&self.0)
    }
}

impl std::borrow::Borrow<[u8]> for Blob {
    fn borrow(&self) -> &[u8] {
        &self.0
    }
}

impl std::ops::Deref for Blob {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Blob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // As `Bytes` prints: b"..." with escapes.
        std::fmt::Debug::fmt(&Bytes::copy_from_slice(&self.0), f)
    }
}

impl Serialize for Blob {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Blob {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Blob, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Blob;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> std::result::Result<Blob, E> {
                Ok(Blob::of(v))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> std::result::Result<Blob, E> {
                Ok(Blob(v.into_boxed_slice()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<Blob, A::Error> {
                let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
                while let Some(b) = seq.next_element()? {
                    v.push(b);
                }
                Ok(Blob(v.into_boxed_slice()))
            }
        }
        d.deserialize_bytes(Visitor)
    }
}

impl Entry {
    fn kv(&self, key: &Blob) -> Option<KeyValue> {
        self.kv_keyed(key.to_bytes())
    }

    fn kv_keyed(&self, key: Bytes) -> Option<KeyValue> {
        self.record.as_ref().map(|r| KeyValue {
            key,
            create_revision: r.create_revision,
            mod_revision: self.revision.main,
            version: r.version,
            value: r.value.to_bytes(),
            lease: r.lease,
        })
    }

    /// Whether the key existed just before this change: a tombstone deletes something, and a
    /// put after creation has a predecessor.
    fn had_prev(&self) -> bool {
        match &self.record {
            None => true,
            Some(r) => r.version > 1,
        }
    }

    /// The watch event for this change, given the key's state just before it. Both the write
    /// path and `Mvcc::events` build events here, so they cannot disagree.
    fn event(&self, key: Bytes, prev_kv: Option<KeyValue>) -> Event {
        match self.kv_keyed(key.clone()) {
            Some(kv) => Event { kind: EventKind::Put, kv, prev_kv },
            // etcd's tombstone: only the key and the deletion's revision.
            None => Event {
                kind: EventKind::Delete,
                kv: KeyValue { key, mod_revision: self.revision.main, ..KeyValue::default() },
                prev_kv,
            },
        }
    }
}

/// Bounds for `BTreeMap::range` over keys.
type KeyBounds<'a> = (Bound<&'a [u8]>, Bound<&'a [u8]>);

/// The entry of `history` in effect at `revision`: the last with `main <= revision`.
fn entry_at(history: &[Entry], revision: i64) -> Option<&Entry> {
    let after = history.partition_point(|e| e.revision.main <= revision);
    after.checked_sub(1).map(|i| &history[i])
}

/// The keys a `key`/`range_end` pair selects, with etcd's conventions: `range_end` empty is the
/// single key, `[0]` is every key `>= key` (so `key == [0]` too is every key), otherwise
/// `[key, range_end)`. `None` when the span is empty (`range_end <= key`), which `BTreeMap::range`
/// would reject.
fn key_bounds<'a>(key: &'a [u8], range_end: &'a [u8]) -> Option<KeyBounds<'a>> {
    if range_end.is_empty() {
        Some((Bound::Included(key), Bound::Included(key)))
    } else if range_end == b"\0" {
        Some((Bound::Included(key), Bound::Unbounded))
    } else if range_end <= key {
        None
    } else {
        Some((Bound::Included(key), Bound::Excluded(range_end)))
    }
}

impl Default for Mvcc {
    fn default() -> Self {
        Mvcc::new()
    }
}

impl Mvcc {
    /// An empty store at revision 1, nothing compacted.
    pub fn new() -> Mvcc {
        Mvcc { history: BTreeMap::new(), current_revision: 1, compacted_revision: 0, live_keys: 0, bytes: 0 }
    }

    /// The revision of the last write that changed something (1 in an empty store).
    pub fn current_revision(&self) -> i64 {
        self.current_revision
    }

    /// The revision of the last compaction, 0 if none. Reads and event queries below it fail;
    /// at it and above they are answered in full.
    pub fn compacted_revision(&self) -> i64 {
        self.compacted_revision
    }

    /// The key's current state, if it exists.
    pub fn kv_at(&self, key: &[u8]) -> Option<KeyValue> {
        self.kv_at_revision(key, self.current_revision)
    }

    /// The number of keys that exist now. `O(1)`.
    pub fn len(&self) -> usize {
        self.live_keys
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The store's size for its space quota: every change it holds (compacted ones are gone),
    /// its key and value bytes plus `CHANGE_OVERHEAD_BYTES`. The same on every replica at the
    /// same revision. `O(1)`.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    // ---- Reads ----

    /// etcd's Range. Errors: `EmptyKey`; `FutureRevision` when `req.revision` is beyond the
    /// current revision; `Compacted` when it is below the compacted revision (reading at the
    /// compacted revision itself works). `revision <= 0` reads the current revision. The
    /// `serializable` flag is the node's business and ignored here.
    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse> {
        check_range_request(req)?;
        if req.revision > self.current_revision {
            return Err(Error::FutureRevision);
        }
        let revision = if req.revision <= 0 { self.current_revision } else { req.revision };
        if revision < self.compacted_revision {
            return Err(self.compacted());
        }
        Ok(self.range_at(req, revision))
    }

    /// The changes with main revision `>= start_revision` to keys in `key`/`range_end` (same
    /// conventions as a range), in revision order, each exactly as the write path emitted it
    /// (`prev_kv` always filled when the key existed before). `start_revision <= 0` means "from
    /// the next revision", which has no changes yet, as does any future revision.
    /// `Error::Compacted` when `start_revision` is below the compacted revision.
    ///
    /// `compact` keeps what this needs at and above the compacted revision, including the
    /// state before a change made at exactly the compacted revision, so `prev_kv` is never
    /// missing from what this returns.
    pub fn events(&self, key: &[u8], range_end: &[u8], start_revision: i64) -> Result<Vec<Event>> {
        if start_revision <= 0 {
            return Ok(Vec::new());
        }
        if start_revision < self.compacted_revision {
            return Err(self.compacted());
        }
        let Some(bounds) = key_bounds(key, range_end) else {
            return Ok(Vec::new());
        };
        let mut events = Vec::new();
        for (key, history) in self.history.range::<[u8], _>(bounds) {
            let first = history.partition_point(|e| e.revision.main < start_revision);
            for i in first..history.len() {
                let prev = i.checked_sub(1).and_then(|p| history[p].kv(key));
                let entry = &history[i];
                // A tombstone, or a put to a key that already existed, has a live predecessor;
                // `compact` keeps it for any change at or above the compacted revision.
                assert_eq!(
                    prev.is_some(),
                    entry.had_prev(),
                    "history of {key:?} lacks the state before {:?}",
                    entry.revision
                );
                events.push((entry.revision, entry.event(key.to_bytes(), prev)));
            }
        }
        events.sort_by_key(|(revision, _)| *revision);
        Ok(events.into_iter().map(|(_, e)| e).collect())
    }

    /// `events`, a page at a time: the changes in the span from `start_revision` on, in
    /// revision order and whole revisions at a time, as many as fit in `max_bytes` (as
    /// `change_bytes` counts them; always at least one revision, however large), and the revision
    /// the next page starts at (past the current revision once nothing is left).
    ///
    /// Costs one pass over the span's keys (a binary search in each history) and copies only
    /// what the page holds, so a watcher replaying a long history from revision 1 holds one page
    /// at a time instead of a copy of everything it is owed.
    pub fn events_page(
        &self,
        key: &[u8],
        range_end: &[u8],
        start_revision: i64,
        max_bytes: usize,
    ) -> Result<(Vec<Event>, i64)> {
        let start = start_revision.max(1);
        if start < self.compacted_revision {
            return Err(self.compacted());
        }
        let done = self.current_revision + 1;
        let Some(bounds) = key_bounds(key, range_end) else {
            return Ok((Vec::new(), done));
        };
        // The earliest changes that fit, chosen without copying: a heap with the latest on top,
        // evicted while over the budget. `cut` is the earliest change left out (rejected or
        // evicted): every change before it is chosen, none at or after it is kept, so the page is
        // a prefix of the history in revision order. A key's later changes are not looked at
        // once one is left out.
        let mut chosen: std::collections::BinaryHeap<Chosen<'_>> = std::collections::BinaryHeap::new();
        let mut bytes = 0usize;
        let mut cut: Option<Revision> = None;
        for (k, history) in self.history.range::<[u8], _>(bounds) {
            let first = history.partition_point(|e| e.revision.main < start);
            for (index, e) in history.iter().enumerate().skip(first) {
                if cut.is_some_and(|c| e.revision >= c) {
                    break;
                }
                let size = change_bytes(k, e) as usize;
                if bytes + size > max_bytes && chosen.peek().is_some_and(|top| top.revision < e.revision) {
                    cut = Some(cut.map_or(e.revision, |c| c.min(e.revision)));
                    break;
                }
                chosen.push(Chosen { revision: e.revision, size, key: k, history, index });
                bytes += size;
                while bytes > max_bytes && chosen.len() > 1 {
                    let evicted = chosen.pop().expect("more than one");
                    bytes -= evicted.size;
                    cut = Some(cut.map_or(evicted.revision, |c| c.min(evicted.revision)));
                }
            }
        }
        let mut chosen = chosen.into_sorted_vec();
        let next = match cut {
            None => done,
            Some(cut) => {
                // The revision the cut falls in may be partly chosen: it starts the next page.
                chosen.retain(|c| c.revision.main < cut.main);
                if chosen.is_empty() {
                    // That revision alone is over the budget (a large txn): the page is all of it.
                    for (k, history) in self.history.range::<[u8], _>(bounds) {
                        let at = history.partition_point(|e| e.revision.main < cut.main);
                        for (index, e) in history.iter().enumerate().skip(at) {
                            if e.revision.main != cut.main {
                                break;
                            }
                            chosen.push(Chosen { revision: e.revision, size: 0, key: k, history, index });
                        }
                    }
                    chosen.sort();
                    cut.main + 1
                } else {
                    cut.main
                }
            }
        };
        let events = chosen
            .into_iter()
            .map(|c| {
                let prev = c.index.checked_sub(1).and_then(|p| c.history[p].kv(c.key));
                c.history[c.index].event(c.key.to_bytes(), prev)
            })
            .collect();
        Ok((events, next))
    }

    fn compacted(&self) -> Error {
        Error::Compacted { compacted_revision: self.compacted_revision }
    }

    fn kv_at_revision(&self, key: &[u8], revision: i64) -> Option<KeyValue> {
        let (key, history) = self.history.get_key_value(key)?;
        entry_at(history, revision)?.kv(key)
    }

    /// The keys in the span that exist at `revision`, in key order.
    fn kvs_at<'a>(
        &'a self,
        key: &'a [u8],
        range_end: &'a [u8],
        revision: i64,
    ) -> impl Iterator<Item = KeyValue> + 'a {
        key_bounds(key, range_end)
            .into_iter()
            .flat_map(move |bounds| self.history.range::<[u8], _>(bounds))
            .filter_map(move |(k, h)| entry_at(h, revision)?.kv(k))
    }

    /// A range at an already checked revision, with etcd's options in etcd's order
    /// (`applierV3backend.Range`): count everything in the span, drop by the min/max filters,
    /// sort, apply the limit, strip values.
    fn range_at(&self, req: &RangeRequest, revision: i64) -> RangeResponse {
        if req.count_only {
            let count = self.kvs_at(&req.key, &req.range_end, revision).count();
            return RangeResponse { kvs: Vec::new(), more: false, count: count as i64 };
        }
        let mut kvs: Vec<KeyValue> = self.kvs_at(&req.key, &req.range_end, revision).collect();
        let count = kvs.len() as i64;
        // 0 means no bound, for each of the four.
        let within =
            |value: i64, min: i64, max: i64| (min == 0 || value >= min) && (max == 0 || value <= max);
        kvs.retain(|kv| {
            within(kv.mod_revision, req.min_mod_revision, req.max_mod_revision)
                && within(kv.create_revision, req.min_create_revision, req.max_create_revision)
        });
        sort_kvs(&mut kvs, req.sort_order, req.sort_target);
        let mut more = false;
        if req.limit > 0 && kvs.len() as i64 > req.limit {
            kvs.truncate(req.limit as usize);
            more = true;
        }
        if req.keys_only {
            for kv in &mut kvs {
                kv.value = Bytes::new();
            }
        }
        RangeResponse { kvs, more, count }
    }

    /// etcd's `applyCompares`: every compare holds at `revision`. An empty list holds.
    fn compares_hold(&self, compares: &[Compare], revision: i64) -> bool {
        compares.iter().all(|c| {
            let mut kvs = self.kvs_at(&c.key, &c.range_end, revision).peekable();
            if kvs.peek().is_none() {
                // A missing key compares as all zeroes, except that there is no value to
                // compare: gRPC cannot tell an empty value from none, so etcd fails it.
                return !matches!(c.target, CompareTarget::Value(_))
                    && compare_holds(c, &KeyValue::default());
            }
            kvs.all(|kv| compare_holds(c, &kv))
        })
    }

    // ---- Writes ----

    /// Applies a txn atomically: etcd's `applierV3backend.Txn`.
    ///
    /// Order, as etcd's: `validate_txn` (both branches, statically); then choose the branch by
    /// the compares; then check the chosen path against the store before changing anything:
    /// every put's `ignore_value`/`ignore_lease` key must exist (`KeyNotFound`) and its lease
    /// must exist (`LeaseNotFound`, asked through `lease_exists`), then every range's revision
    /// must be readable (`FutureRevision`, `Compacted`). On any error nothing changes.
    ///
    /// All compares, nested txns' included, are evaluated against the store as it was before
    /// the txn, as etcd does (`compareToPath` fixes the whole path up front). Ops then run in
    /// order, and a range with `revision <= 0` sees the txn's earlier writes; one with a
    /// revision reads that revision, which may be at most the pre-txn revision. The existence
    /// checks above use the pre-txn store too, which is exact: `validate_txn` guarantees that
    /// no earlier op of the txn touched a key that a put writes.
    pub fn txn(&mut self, req: &TxnRequest, lease_exists: &dyn Fn(i64) -> bool) -> Result<TxnOutcome> {
        validate_txn(req)?;
        let before = self.current_revision;
        self.for_each_op_on_path(req, &mut |op| match op {
            RequestOp::Put(p) => self.check_put_against_store(p, lease_exists),
            _ => Ok(()),
        })?;
        self.for_each_op_on_path(req, &mut |op| match op {
            RequestOp::Range(r) if r.revision > before => Err(Error::FutureRevision),
            RequestOp::Range(r) if r.revision > 0 && r.revision < self.compacted_revision => {
                Err(self.compacted())
            }
            _ => Ok(()),
        })?;
        let mut batch = Batch::new(before + 1);
        let response = self.apply_txn(&mut batch, req);
        let (events, revision) = self.commit(batch);
        Ok(TxnOutcome { response, events, revision })
    }

    /// etcd's Put: a txn of one put, except that, as in etcd, a missing lease is reported before
    /// a missing key.
    pub fn put(
        &mut self,
        req: &PutRequest,
        lease_exists: &dyn Fn(i64) -> bool,
    ) -> Result<(PutResponse, Vec<Event>, i64)> {
        check_put_request(req)?;
        if req.lease != 0 && !lease_exists(req.lease) {
            return Err(Error::LeaseNotFound);
        }
        let txn = TxnRequest { success: vec![RequestOp::Put(req.clone())], ..TxnRequest::default() };
        let out = self.txn(&txn, lease_exists)?;
        match out.response.responses.into_iter().next() {
            Some(ResponseOp::Put(resp)) => Ok((resp, out.events, out.revision)),
            other => unreachable!("a one-put txn answered {other:?}"),
        }
    }

    /// etcd's DeleteRange: a txn of one delete. Deleting nothing does not move the revision.
    pub fn delete_range(
        &mut self,
        req: &DeleteRangeRequest,
    ) -> Result<(DeleteRangeResponse, Vec<Event>, i64)> {
        let txn = TxnRequest { success: vec![RequestOp::DeleteRange(req.clone())], ..TxnRequest::default() };
        let out = self.txn(&txn, &|_| false)?;
        match out.response.responses.into_iter().next() {
            Some(ResponseOp::DeleteRange(resp)) => Ok((resp, out.events, out.revision)),
            other => unreachable!("a one-delete txn answered {other:?}"),
        }
    }

    /// Deletes those of `keys` that exist, all in one revision: a lease revocation takes its
    /// keys away atomically. Keys are deleted in key order whatever the order given (etcd
    /// sorts a lease's keys before revoking), duplicates once. Returns the events and the
    /// revision after; deleting nothing does not move the revision.
    pub fn delete_keys(&mut self, keys: &[Bytes]) -> (Vec<Event>, i64) {
        let keys: BTreeSet<&Bytes> = keys.iter().collect();
        let mut batch = Batch::new(self.current_revision + 1);
        for key in keys {
            if let Some(prev) = self.kv_at_revision(key, batch.main) {
                self.append(&mut batch, key, None, Some(prev));
            }
        }
        self.commit(batch)
    }

    /// Drops history no read at or above `revision` needs (etcd's Compact, always "physical").
    /// Errors: `Compacted` when `revision` is not above the compacted revision,
    /// `FutureRevision` when it is beyond the current one. Does not move the revision.
    ///
    /// Per key it keeps the last change at or below `revision` and everything after. Unlike
    /// etcd, which also drops a tombstone made at exactly `revision`, it keeps such a tombstone
    /// and the state before any change made at `revision`, so `events(.., revision)` is still
    /// complete. Older tombstones go, and so do keys left with no history.
    pub fn compact(&mut self, revision: i64) -> Result<()> {
        if revision <= self.compacted_revision {
            return Err(self.compacted());
        }
        if revision > self.current_revision {
            return Err(Error::FutureRevision);
        }
        let mut freed = 0;
        self.history.retain(|key, history| {
            let after = history.partition_point(|e| e.revision.main <= revision);
            if let Some(last) = after.checked_sub(1) {
                let entry = &history[last];
                let keep_from = if entry.revision.main == revision && entry.had_prev() {
                    // A change at `revision` whose event has a prev_kv: keep the state before.
                    last - 1
                } else if entry.record.is_none() {
                    // The key did not exist at `revision`: nothing at or below it matters.
                    after
                } else {
                    last
                };
                freed += history.drain(..keep_from).map(|e| change_bytes(key, &e)).sum::<u64>();
                if history.capacity() > 2 * history.len() {
                    history.shrink_to_fit();
                }
            }
            !history.is_empty()
        });
        self.compacted_revision = revision;
        self.bytes -= freed;
        Ok(())
    }

    /// Encodes keys after `after` (from the first if `None`), in key order, each with its
    /// changes at or below `revision`, in the layout of `history` in this store's bincode
    /// encoding; a key with none is skipped. Stops once `bytes_max` bytes are written.
    ///
    /// Histories only grow at their end (a change takes a revision above every existing one)
    /// and shrink only by `compact`, so until the next compaction, successive calls, with
    /// writes in between, encode exactly the history as it stood at `revision`: a snapshot a
    /// piece at a time (`SnapshotBuilder`).
    pub(crate) fn encode_keys(
        &self,
        after: Option<&[u8]>,
        revision: i64,
        bytes_max: usize,
        buf: &mut Vec<u8>,
    ) -> KeysEncoded {
        use bincode::Options;
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        let start = buf.len();
        let mut out = KeysEncoded { keys: 0, last: None };
        for (key, history) in self.history.range::<[u8], _>((lower, Bound::Unbounded)) {
            if buf.len() - start >= bytes_max {
                return out;
            }
            out.last = Some(key.0.clone());
            let upto = history.partition_point(|e| e.revision.main <= revision);
            if upto > 0 {
                crate::request::codec()
                    .serialize_into(&mut *buf, &(key, &history[..upto]))
                    .expect("encoding into a Vec cannot fail");
                out.keys += 1;
            }
        }
        out.last = None;
        out
    }

    /// Checks the store's invariants: run it on a store decoded from a snapshot, before
    /// trusting it. `O(total history)`. `Error::Corrupt` says which one failed.
    pub fn check_invariants(&self) -> Result<()> {
        let corrupt = |what: String| Err(Error::Corrupt(format!("mvcc: {what}")));
        if self.current_revision < 1
            || self.compacted_revision < 0
            || self.compacted_revision > self.current_revision
        {
            return corrupt(format!(
                "revision {} with compacted revision {}",
                self.current_revision, self.compacted_revision
            ));
        }
        // Sub revisions used, per main revision.
        let mut subs: BTreeMap<i64, BTreeSet<i64>> = BTreeMap::new();
        for (key, history) in &self.history {
            if key.is_empty() || history.is_empty() {
                return corrupt(format!("empty key or history at {key:?}"));
            }
            let mut prev: Option<&Entry> = None;
            let mut at_or_below_compacted = 0;
            for entry in history {
                let Revision { main, sub } = entry.revision;
                if main < 2
                    || main > self.current_revision
                    || sub < 0
                    || !subs.entry(main).or_default().insert(sub)
                {
                    return corrupt(format!("{key:?}: bad or repeated revision {:?}", entry.revision));
                }
                if prev.is_some_and(|p| p.revision.main >= main) {
                    return corrupt(format!("{key:?}: history not ascending at {:?}", entry.revision));
                }
                let prev_record = prev.and_then(|p| p.record.as_ref());
                let ok = match (&entry.record, prev_record) {
                    (None, prev_record) => prev_record.is_some(),
                    (Some(r), Some(p)) => {
                        r.version == p.version + 1 && r.create_revision == p.create_revision
                    }
                    (Some(r), None) if r.version == 1 => r.create_revision == main,
                    // The first entry left by a compaction.
                    (Some(r), None) => prev.is_none() && r.version > 1 && r.create_revision < main,
                };
                if !ok {
                    return corrupt(format!(
                        "{key:?}: change at {:?} does not follow the one before",
                        entry.revision
                    ));
                }
                if main <= self.compacted_revision {
                    at_or_below_compacted += 1;
                }
                prev = Some(entry);
            }
            // At most the state at the compacted revision and, if that is a change made at
            // exactly the compacted revision, the state before it; no old tombstone.
            let made_at_compacted_with_prev =
                |e: &Entry| e.revision.main == self.compacted_revision && e.had_prev();
            let kept_ok = match at_or_below_compacted {
                0 => true,
                1 => history[0].record.is_some() && !made_at_compacted_with_prev(&history[0]),
                2 => made_at_compacted_with_prev(&history[1]),
                _ => false,
            };
            if !kept_ok {
                return corrupt(format!(
                    "{key:?}: history kept below compacted revision {}",
                    self.compacted_revision
                ));
            }
        }
        // Every revision from the compacted one up was a write that changed something, and its
        // changes are numbered 0, 1, 2, ..; none is dropped until it is below the compacted
        // revision.
        for main in self.compacted_revision.max(2)..=self.current_revision {
            let used = subs.get(&main).map(|s| s.len()).unwrap_or(0);
            let dense = subs.get(&main).is_some_and(|s| s.iter().copied().eq(0..used as i64));
            if !dense {
                return corrupt(format!("revision {main} has changes {:?}", subs.get(&main)));
            }
        }
        let live = self.history.values().filter(|h| h.last().is_some_and(|e| e.record.is_some())).count();
        if live != self.live_keys {
            return corrupt(format!("{} keys counted, {live} exist", self.live_keys));
        }
        let bytes = history_bytes(&self.history);
        if bytes != self.bytes {
            return corrupt(format!("{} bytes counted, {bytes} held", self.bytes));
        }
        Ok(())
    }

    /// Calls `f` on every non-txn op on the path the txn will take, in execution order, with
    /// compares evaluated against the current store (etcd's `checkRequests` over
    /// `compareToPath`).
    fn for_each_op_on_path(
        &self,
        req: &TxnRequest,
        f: &mut dyn FnMut(&RequestOp) -> Result<()>,
    ) -> Result<()> {
        let ops =
            if self.compares_hold(&req.compare, self.current_revision) { &req.success } else { &req.failure };
        for op in ops {
            match op {
                RequestOp::Txn(t) => self.for_each_op_on_path(t, f)?,
                op => f(op)?,
            }
        }
        Ok(())
    }

    /// The puts and deletes on the path a txn would take (see `for_each_op_on_path`), nested
    /// txns' included.
    pub fn writes_on_path(&self, req: &TxnRequest) -> (Vec<PutRequest>, Vec<DeleteRangeRequest>) {
        let (mut puts, mut deletes) = (vec![], vec![]);
        let _ = self.for_each_op_on_path(req, &mut |op| {
            match op {
                RequestOp::Put(p) => puts.push(p.clone()),
                RequestOp::DeleteRange(d) => deletes.push(d.clone()),
                _ => {}
            }
            Ok(())
        });
        (puts, deletes)
    }

    /// etcd's `checkPut`, against the store before the txn.
    fn check_put_against_store(&self, req: &PutRequest, lease_exists: &dyn Fn(i64) -> bool) -> Result<()> {
        if (req.ignore_value || req.ignore_lease) && self.kv_at(&req.key).is_none() {
            return Err(Error::KeyNotFound);
        }
        if req.lease != 0 && !lease_exists(req.lease) {
            return Err(Error::LeaseNotFound);
        }
        Ok(())
    }

    /// Runs a checked txn's path; cannot fail. Compares read the pre-txn store, which is
    /// `batch.main - 1` since the txn's own changes are all at `batch.main`.
    fn apply_txn(&mut self, batch: &mut Batch, req: &TxnRequest) -> TxnResponse {
        let succeeded = self.compares_hold(&req.compare, batch.main - 1);
        let ops = if succeeded { &req.success } else { &req.failure };
        let mut responses = Vec::with_capacity(ops.len());
        for op in ops {
            responses.push(match op {
                RequestOp::Range(r) => {
                    let revision = if r.revision <= 0 { batch.main } else { r.revision };
                    ResponseOp::Range(self.range_at(r, revision))
                }
                RequestOp::Put(p) => ResponseOp::Put(self.apply_put(batch, p)),
                RequestOp::DeleteRange(d) => ResponseOp::DeleteRange(self.apply_delete_range(batch, d)),
                RequestOp::Txn(t) => ResponseOp::Txn(self.apply_txn(batch, t)),
            });
        }
        TxnResponse { succeeded, responses }
    }

    fn apply_put(&mut self, batch: &mut Batch, req: &PutRequest) -> PutResponse {
        let prev = self.kv_at_revision(&req.key, batch.main);
        let mut record =
            Record { create_revision: batch.main, version: 1, value: Blob::of(&req.value), lease: req.lease };
        match &prev {
            Some(p) => {
                record.create_revision = p.create_revision;
                record.version = p.version + 1;
                if req.ignore_value {
                    record.value = Blob::of(&p.value);
                }
                if req.ignore_lease {
                    record.lease = p.lease;
                }
            }
            None => assert!(
                !req.ignore_value && !req.ignore_lease,
                "txn checks let an ignore_value/ignore_lease put through on missing key {:?}",
                req.key
            ),
        }
        self.append(batch, &req.key, Some(record), prev.clone());
        PutResponse { prev_kv: if req.prev_kv { prev } else { None } }
    }

    fn apply_delete_range(&mut self, batch: &mut Batch, req: &DeleteRangeRequest) -> DeleteRangeResponse {
        let deleted: Vec<KeyValue> = self.kvs_at(&req.key, &req.range_end, batch.main).collect();
        for kv in &deleted {
            self.append(batch, &kv.key, None, Some(kv.clone()));
        }
        DeleteRangeResponse {
            deleted: deleted.len() as i64,
            prev_kvs: if req.prev_kv { deleted } else { Vec::new() },
        }
    }

    /// Records one change at the batch's next sub revision. `prev` is the key's state before.
    fn append(&mut self, batch: &mut Batch, key: &Bytes, record: Option<Record>, prev: Option<KeyValue>) {
        let entry = Entry { revision: Revision { main: batch.main, sub: batch.changes() }, record };
        if !self.history.contains_key(&key[..]) {
            // Most keys are written once between compactions: room for one change, not the
            // four a `Vec`'s first push reserves.
            self.history.insert(Blob::of(key), Vec::with_capacity(1));
        }
        let history = self.history.get_mut(&key[..]).expect("inserted above");
        let last_main = history.last().map_or(0, |last| last.revision.main);
        assert!(last_main < batch.main, "key {key:?} changed twice in revision {}", batch.main);
        assert!(!key.is_empty(), "empty key written");
        batch.events.push(entry.event(key.clone(), prev));
        let was_live = history.last().is_some_and(|e| e.record.is_some());
        self.bytes += change_bytes(key, &entry);
        match (was_live, entry.record.is_some()) {
            (false, true) => self.live_keys += 1,
            (true, false) => self.live_keys -= 1,
            _ => {}
        }
        history.push(entry);
    }

    /// Ends a write: the revision moves if and only if something changed.
    fn commit(&mut self, batch: Batch) -> (Vec<Event>, i64) {
        assert_eq!(batch.main, self.current_revision + 1, "a write must start from the current revision");
        if !batch.events.is_empty() {
            self.current_revision = batch.main;
        }
        (batch.events, self.current_revision)
    }
}

/// The changes of one write in progress, all at main revision `main`.
struct Batch {
    main: i64,
    events: Vec<Event>,
}

impl Batch {
    fn new(main: i64) -> Batch {
        Batch { main, events: Vec::new() }
    }

    /// The next sub revision: one per change so far.
    fn changes(&self) -> i64 {
        self.events.len() as i64
    }
}

/// etcd's `compareKV`: `<target of kv> <result> <operand>`; values compare as byte strings.
fn compare_holds(c: &Compare, kv: &KeyValue) -> bool {
    let ordering = match &c.target {
        CompareTarget::Version(v) => kv.version.cmp(v),
        CompareTarget::Create(v) => kv.create_revision.cmp(v),
        CompareTarget::Mod(v) => kv.mod_revision.cmp(v),
        CompareTarget::Lease(v) => kv.lease.cmp(v),
        CompareTarget::Value(v) => kv.value.as_ref().cmp(v.as_ref()),
    };
    match c.result {
        CompareResult::Equal => ordering == Ordering::Equal,
        CompareResult::NotEqual => ordering != Ordering::Equal,
        CompareResult::Greater => ordering == Ordering::Greater,
        CompareResult::Less => ordering == Ordering::Less,
    }
}

/// Sorts key-ordered `kvs` as etcd does: order `None` is key order, unless the target is not
/// the key, which then means ascending. Sorting is stable, so ties (equal versions, values, ..)
/// stay in key order whether ascending or descending; etcd's Go `sort.Sort` leaves their order
/// unspecified.
fn sort_kvs(kvs: &mut [KeyValue], order: SortOrder, target: SortTarget) {
    let descend = match (order, target) {
        (SortOrder::None, SortTarget::Key) | (SortOrder::Ascend, SortTarget::Key) => return,
        (SortOrder::None, _) | (SortOrder::Ascend, _) => false,
        (SortOrder::Descend, _) => true,
    };
    kvs.sort_by(|a, b| {
        let ordering = match target {
            SortTarget::Key => a.key.cmp(&b.key),
            SortTarget::Version => a.version.cmp(&b.version),
            SortTarget::Create => a.create_revision.cmp(&b.create_revision),
            SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
            SortTarget::Value => a.value.cmp(&b.value),
        };
        if descend {
            ordering.reverse()
        } else {
            ordering
        }
    });
}

// ---- Request checks that need no store (etcd's v3rpc/key.go) ----

/// Checks a txn as etcd's gRPC layer does before proposing it, over both branches and every
/// nested txn whatever the compares will say: `TooManyOps` (see `MAX_TXN_OPS`), `EmptyKey`
/// for a compare, range, put or delete with an empty key, `ValueProvided` / `LeaseProvided`
/// for an `ignore_value` put with a value / `ignore_lease` put with a lease, then
/// `DuplicateKey` (see `branch_writes`). The node may call it at propose time; `Mvcc::txn`
/// calls it again.
pub fn validate_txn(req: &TxnRequest) -> Result<()> {
    check_txn_request(req, MAX_TXN_OPS)?;
    branch_writes(&req.success)?;
    branch_writes(&req.failure)?;
    Ok(())
}

/// etcd's `checkTxnRequest`: `ops_max` is what the enclosing txns left.
fn check_txn_request(req: &TxnRequest, ops_max: usize) -> Result<()> {
    let ops = req.compare.len().max(req.success.len()).max(req.failure.len());
    if ops > ops_max {
        return Err(Error::TooManyOps);
    }
    if req.compare.iter().any(|c| c.key.is_empty()) {
        return Err(Error::EmptyKey);
    }
    for op in req.success.iter().chain(&req.failure) {
        match op {
            RequestOp::Range(r) => check_range_request(r)?,
            RequestOp::Put(p) => check_put_request(p)?,
            RequestOp::DeleteRange(d) => check_delete_request(d)?,
            RequestOp::Txn(t) => check_txn_request(t, ops_max - ops)?,
        }
    }
    Ok(())
}

pub(crate) fn check_range_request(req: &RangeRequest) -> Result<()> {
    if req.key.is_empty() {
        return Err(Error::EmptyKey);
    }
    Ok(())
}

pub(crate) fn check_put_request(req: &PutRequest) -> Result<()> {
    if req.key.is_empty() {
        return Err(Error::EmptyKey);
    }
    if req.ignore_value && !req.value.is_empty() {
        return Err(Error::ValueProvided);
    }
    if req.ignore_lease && req.lease != 0 {
        return Err(Error::LeaseProvided);
    }
    Ok(())
}

pub(crate) fn check_delete_request(req: &DeleteRangeRequest) -> Result<()> {
    if req.key.is_empty() {
        return Err(Error::EmptyKey);
    }
    Ok(())
}

/// A span of keys to be deleted, half-open; `end == None` is unbounded.
#[derive(Clone, Debug)]
struct Interval {
    start: Bytes,
    end: Option<Bytes>,
}

impl Interval {
    /// The keys a delete of `key`/`range_end` selects (as `key_bounds`); `None` when empty.
    fn of(key: &Bytes, range_end: &Bytes) -> Option<Interval> {
        let end = if range_end.is_empty() {
            let mut point = key.to_vec();
            point.push(0);
            Some(Bytes::from(point))
        } else if range_end.as_ref() == b"\0" {
            None
        } else if range_end <= key {
            return None;
        } else {
            Some(range_end.clone())
        };
        Some(Interval { start: key.clone(), end })
    }

    fn contains(&self, key: &Bytes) -> bool {
        self.start <= *key && !self.ends_at_or_before(key)
    }

    fn ends_at_or_before(&self, key: &Bytes) -> bool {
        self.end.as_ref().is_some_and(|end| end <= key)
    }

    fn ends_before(&self, key: &Bytes) -> bool {
        self.end.as_ref().is_some_and(|end| end < key)
    }
}

/// Sorted, disjoint, non-adjacent intervals covering the same keys.
fn merge(mut intervals: Vec<Interval>) -> Vec<Interval> {
    intervals.sort_by(|a, b| a.start.cmp(&b.start));
    let mut merged: Vec<Interval> = Vec::with_capacity(intervals.len());
    for iv in intervals {
        match merged.last_mut() {
            // Overlapping or adjacent: `last` does not end before `iv` starts.
            Some(last) if !last.ends_before(&iv.start) => {
                last.end = match (&last.end, iv.end) {
                    (Some(a), Some(b)) => Some(a.clone().max(b)),
                    _ => None,
                };
            }
            _ => merged.push(iv),
        }
    }
    merged
}

/// Whether sorted, disjoint `intervals` cover `key`.
fn covered(intervals: &[Interval], key: &Bytes) -> bool {
    let starting_at_or_before = intervals.partition_point(|iv| iv.start <= *key);
    starting_at_or_before.checked_sub(1).is_some_and(|i| intervals[i].contains(key))
}

/// What one branch may write: the keys it puts and the spans it deletes, over both branches of
/// its nested txns (only one of which runs).
#[derive(Default)]
struct Writes {
    puts: BTreeSet<Bytes>,
    /// Sorted and disjoint (`merge`).
    deletes: Vec<Interval>,
}

/// etcd's `checkIntervals`: within one branch, no key may be put by two ops, nor put by one op
/// and lie in a span deleted by another, where a nested txn counts as one op doing what either
/// of its branches does (its two branches exclude each other, so they may overlap). Checked
/// for nested txns' branches too. Errors: `DuplicateKey`.
///
/// Two deliberate differences from etcd 3.4, both cases where etcd accepts a txn that writes
/// a key twice in one revision: etcd checks a nested txn's puts only against deletes of ops
/// before it, here every other op counts; and etcd does not treat a delete's `range_end` of
/// `[0]` as "to the end", so it misses puts inside such a delete.
///
/// Cost: `O((p + d) log (p + d))` per level for `p` puts and `d` deletes under it; etcd uses an
/// interval tree for the same reason, to stay clear of quadratic work on large txns.
fn branch_writes(ops: &[RequestOp]) -> Result<Writes> {
    let mut per_op = Vec::with_capacity(ops.len());
    for op in ops {
        per_op.push(match op {
            RequestOp::Range(_) => Writes::default(),
            RequestOp::Put(p) => Writes { puts: BTreeSet::from([p.key.clone()]), deletes: Vec::new() },
            RequestOp::DeleteRange(d) => Writes {
                puts: BTreeSet::new(),
                deletes: Interval::of(&d.key, &d.range_end).into_iter().collect(),
            },
            RequestOp::Txn(t) => {
                let mut writes = branch_writes(&t.success)?;
                let otherwise = branch_writes(&t.failure)?;
                writes.puts.extend(otherwise.puts);
                writes.deletes.extend(otherwise.deletes);
                writes.deletes = merge(writes.deletes);
                writes
            }
        });
    }
    // Each op's puts are a set, so a key seen twice is put by two ops.
    let mut puts = BTreeSet::new();
    for key in per_op.iter().flat_map(|w| &w.puts) {
        if !puts.insert(key.clone()) {
            return Err(Error::DuplicateKey);
        }
    }
    // Each op's deletes are disjoint, so the number of intervals containing a key is the
    // number of ops deleting it: those starting at or before it less those ending at or
    // before it.
    let mut starts: Vec<&Bytes> = per_op.iter().flat_map(|w| &w.deletes).map(|iv| &iv.start).collect();
    let mut ends: Vec<&Bytes> =
        per_op.iter().flat_map(|w| &w.deletes).filter_map(|iv| iv.end.as_ref()).collect();
    starts.sort();
    ends.sort();
    for w in &per_op {
        for key in &w.puts {
            let deleting_ops = starts.partition_point(|s| *s <= key) - ends.partition_point(|e| *e <= key);
            let deleting_self = usize::from(covered(&w.deletes, key));
            if deleting_ops > deleting_self {
                return Err(Error::DuplicateKey);
            }
        }
    }
    let deletes = merge(per_op.iter_mut().flat_map(|w| std::mem::take(&mut w.deletes)).collect());
    Ok(Writes { puts, deletes })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a key costs the store is most of a member's memory (docs/benchmarks.md, "Memory").
    #[test]
    fn a_key_written_once_costs_one_exact_allocation_for_its_history() {
        assert!(std::mem::size_of::<Entry>() <= 56, "Entry is {} bytes", std::mem::size_of::<Entry>());
        assert_eq!(std::mem::size_of::<Blob>(), 16);
        let mut store = Mvcc::new();
        let put = PutRequest {
            key: Bytes::from_static(b"k"),
            value: Bytes::from(vec![7; 256]),
            ..Default::default()
        };
        store.put(&put, &|_| false).expect("put");
        let history = &store.history[&b"k"[..]];
        assert_eq!((history.len(), history.capacity()), (1, 1));
        assert_eq!(history[0].record.as_ref().expect("a put").value.len(), 256);
        store.put(&put, &|_| false).expect("put");
        store.put(&put, &|_| false).expect("put");
        store.compact(store.current_revision()).expect("compact");
        let history = &store.history[&b"k"[..]];
        assert!(history.capacity() <= 2 * history.len(), "compaction left {history:?} oversized");
    }

    /// The store's snapshot encoding is unchanged by how it holds keys and values: bytes with a
    /// u64 length, as `Bytes` encodes them.
    #[test]
    fn blobs_encode_as_bytes_do() {
        use bincode::Options;
        let codec = crate::request::codec;
        let blob = codec().serialize(&Blob::of(b"abc")).expect("encodes");
        assert_eq!(blob, codec().serialize(&Bytes::from_static(b"abc")).expect("encodes"));
        let back: Blob = codec().deserialize(&blob).expect("decodes");
        assert_eq!(&back[..], b"abc");
    }
}
