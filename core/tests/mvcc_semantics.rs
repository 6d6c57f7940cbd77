//! The etcd v3 semantics of `Mvcc`, one behaviour per test, named for the behaviour.

use bytes::Bytes;
use cairn_core::kv::{
    Compare, CompareResult, CompareTarget, DeleteRangeRequest, DeleteRangeResponse, Event, EventKind,
    KeyValue, PutRequest, PutResponse, RangeRequest, RangeResponse, RequestOp, ResponseOp, SortOrder,
    SortTarget, TxnRequest, TxnResponse,
};
use cairn_core::mvcc::{validate_txn, Mvcc, TxnOutcome, MAX_TXN_OPS};
use cairn_core::Error;

// ---- Helpers ----

/// The only lease that exists in these tests.
const LEASE: i64 = 7;

fn lease_exists(id: i64) -> bool {
    id == LEASE
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn put_req(key: &str, value: &str) -> PutRequest {
    PutRequest { key: b(key), value: b(value), ..PutRequest::default() }
}

fn del_req(key: &str, range_end: &str) -> DeleteRangeRequest {
    DeleteRangeRequest { key: b(key), range_end: b(range_end), prev_kv: false }
}

fn range_req(key: &str, range_end: &str) -> RangeRequest {
    RangeRequest { key: b(key), range_end: b(range_end), ..RangeRequest::default() }
}

/// Puts `key = value`, returning the revision after.
fn put(store: &mut Mvcc, key: &str, value: &str) -> i64 {
    store.put(&put_req(key, value), &lease_exists).unwrap().2
}

fn try_put(store: &mut Mvcc, req: PutRequest) -> Result<(PutResponse, Vec<Event>, i64), Error> {
    store.put(&req, &lease_exists)
}

fn delete(store: &mut Mvcc, key: &str, range_end: &str) -> (DeleteRangeResponse, Vec<Event>, i64) {
    store.delete_range(&del_req(key, range_end)).unwrap()
}

fn get(store: &Mvcc, key: &str) -> Option<KeyValue> {
    store.kv_at(key.as_bytes())
}

fn range(store: &Mvcc, req: RangeRequest) -> RangeResponse {
    store.range(&req).unwrap()
}

fn keys(kvs: &[KeyValue]) -> Vec<String> {
    kvs.iter().map(|kv| String::from_utf8(kv.key.to_vec()).unwrap()).collect()
}

fn kv(key: &str, value: &str, create: i64, modified: i64, version: i64, lease: i64) -> KeyValue {
    KeyValue { key: b(key), value: b(value), create_revision: create, mod_revision: modified, version, lease }
}

fn cmp(key: &str, target: CompareTarget, result: CompareResult) -> Compare {
    Compare { result, target, key: b(key), range_end: Bytes::new() }
}

fn cmp_range(key: &str, range_end: &str, target: CompareTarget, result: CompareResult) -> Compare {
    Compare { result, target, key: b(key), range_end: b(range_end) }
}

fn txn(compare: Vec<Compare>, success: Vec<RequestOp>, failure: Vec<RequestOp>) -> TxnRequest {
    TxnRequest { compare, success, failure }
}

fn op_put(key: &str, value: &str) -> RequestOp {
    RequestOp::Put(put_req(key, value))
}

fn op_del(key: &str, range_end: &str) -> RequestOp {
    RequestOp::DeleteRange(del_req(key, range_end))
}

fn op_range(key: &str, range_end: &str) -> RequestOp {
    RequestOp::Range(range_req(key, range_end))
}

fn run(store: &mut Mvcc, req: &TxnRequest) -> TxnOutcome {
    store.txn(req, &lease_exists).unwrap()
}

/// Runs a txn that must fail with `expected` and must leave the store untouched.
fn txn_fails(store: &mut Mvcc, req: &TxnRequest, expected: Error) {
    let before = store.clone();
    assert_eq!(store.txn(req, &lease_exists), Err(expected));
    assert_eq!(*store, before, "a failed txn changed the store");
}

/// Whether the compare holds on the store: the txn takes its success branch.
fn holds(store: &mut Mvcc, compare: Compare) -> bool {
    run(store, &txn(vec![compare], vec![], vec![])).response.succeeded
}

fn range_response(outcome: &TxnOutcome, i: usize) -> &RangeResponse {
    match &outcome.response.responses[i] {
        ResponseOp::Range(r) => r,
        other => panic!("expected a range response, got {other:?}"),
    }
}

/// A store holding a=1 (rev 2), b=2 (rev 3), c=3 (rev 4), d=4 (rev 5).
fn abcd() -> Mvcc {
    let mut store = Mvcc::new();
    for (key, value) in [("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")] {
        put(&mut store, key, value);
    }
    assert_eq!(store.current_revision(), 5);
    store
}

// ---- Revisions and key metadata ----

#[test]
fn empty_store_is_at_revision_one_with_nothing_compacted() {
    let store = Mvcc::new();
    assert_eq!(store.current_revision(), 1);
    assert_eq!(store.compacted_revision(), 0);
    assert!(store.is_empty());
    assert_eq!(range(&store, range_req("\0", "\0")), RangeResponse::default());
}

#[test]
fn first_put_gets_revision_two() {
    let mut store = Mvcc::new();
    assert_eq!(put(&mut store, "a", "1"), 2);
    assert_eq!(get(&store, "a"), Some(kv("a", "1", 2, 2, 1, 0)));
}

#[test]
fn put_bumps_version_and_mod_revision_but_keeps_create_revision() {
    let mut store = Mvcc::new();
    put(&mut store, "a", "1");
    put(&mut store, "b", "x");
    put(&mut store, "a", "2");
    assert_eq!(get(&store, "a"), Some(kv("a", "2", 2, 4, 2, 0)));
    assert_eq!(store.len(), 2);
}

#[test]
fn put_after_delete_recreates_key_with_version_one() {
    let mut store = Mvcc::new();
    put(&mut store, "a", "1");
    put(&mut store, "a", "2");
    delete(&mut store, "a", "");
    assert_eq!(get(&store, "a"), None);
    put(&mut store, "a", "3");
    assert_eq!(get(&store, "a"), Some(kv("a", "3", 5, 5, 1, 0)));
}

#[test]
fn put_records_lease() {
    let mut store = Mvcc::new();
    try_put(&mut store, PutRequest { lease: LEASE, ..put_req("a", "1") }).unwrap();
    assert_eq!(get(&store, "a").unwrap().lease, LEASE);
}

#[test]
fn put_prev_kv_only_when_asked_and_key_existed() {
    let mut store = Mvcc::new();
    let asked = PutRequest { prev_kv: true, ..put_req("a", "1") };
    assert_eq!(try_put(&mut store, asked.clone()).unwrap().0.prev_kv, None, "no previous key");
    assert_eq!(try_put(&mut store, put_req("a", "2")).unwrap().0.prev_kv, None, "not asked");
    let (resp, _, _) = try_put(&mut store, PutRequest { value: b("3"), ..asked }).unwrap();
    assert_eq!(resp.prev_kv, Some(kv("a", "2", 2, 3, 2, 0)));
}

#[test]
fn ignore_value_keeps_old_value() {
    let mut store = Mvcc::new();
    put(&mut store, "a", "old");
    try_put(&mut store, PutRequest { ignore_value: true, lease: LEASE, ..put_req("a", "") }).unwrap();
    assert_eq!(get(&store, "a"), Some(kv("a", "old", 2, 3, 2, LEASE)));
}

#[test]
fn ignore_lease_keeps_old_lease() {
    let mut store = Mvcc::new();
    try_put(&mut store, PutRequest { lease: LEASE, ..put_req("a", "1") }).unwrap();
    try_put(&mut store, PutRequest { ignore_lease: true, ..put_req("a", "2") }).unwrap();
    assert_eq!(get(&store, "a"), Some(kv("a", "2", 2, 3, 2, LEASE)));
}

// ---- Put and delete errors ----

#[test]
fn put_errors() {
    let table: Vec<(&str, PutRequest, Error)> = vec![
        ("empty key", put_req("", "1"), Error::EmptyKey),
        ("missing lease", PutRequest { lease: 99, ..put_req("a", "1") }, Error::LeaseNotFound),
        (
            "ignore_value with a value",
            PutRequest { ignore_value: true, ..put_req("a", "1") },
            Error::ValueProvided,
        ),
        (
            "ignore_lease with a lease",
            PutRequest { ignore_lease: true, lease: LEASE, ..put_req("a", "1") },
            Error::LeaseProvided,
        ),
    ];
    for (name, req, expected) in table {
        let mut store = abcd();
        let before = store.clone();
        assert_eq!(try_put(&mut store, req).map(|_| ()), Err(expected), "{name}");
        assert_eq!(store, before, "{name}: store changed");
    }
}

#[test]
fn ignore_value_on_missing_key_fails() {
    let mut store = abcd();
    let req = PutRequest { ignore_value: true, ..put_req("zz", "") };
    assert_eq!(try_put(&mut store, req).map(|_| ()), Err(Error::KeyNotFound));
    assert_eq!(store.current_revision(), 5);
}

#[test]
fn ignore_lease_on_deleted_key_fails() {
    let mut store = abcd();
    delete(&mut store, "a", "");
    let req = PutRequest { ignore_lease: true, ..put_req("a", "1") };
    assert_eq!(try_put(&mut store, req).map(|_| ()), Err(Error::KeyNotFound));
}

#[test]
fn standalone_put_reports_missing_lease_before_missing_key() {
    // etcd's Put checks the lease before reading the key; in a txn the key comes first.
    let mut store = Mvcc::new();
    let req = PutRequest { ignore_value: true, lease: 99, ..put_req("a", "") };
    assert_eq!(try_put(&mut store, req.clone()).map(|_| ()), Err(Error::LeaseNotFound));
    txn_fails(&mut store, &txn(vec![], vec![RequestOp::Put(req)], vec![]), Error::KeyNotFound);
}

#[test]
fn delete_range_with_empty_key_fails() {
    let mut store = abcd();
    assert_eq!(store.delete_range(&del_req("", "z")).map(|_| ()), Err(Error::EmptyKey));
}

// ---- Delete ----

#[test]
fn delete_range_counts_and_returns_prev_kvs_only_when_asked() {
    let mut store = abcd();
    let (resp, events, revision) = delete(&mut store, "a", "c");
    assert_eq!(resp, DeleteRangeResponse { deleted: 2, prev_kvs: vec![] });
    assert_eq!(events.len(), 2);
    assert_eq!(revision, 6);
    let asked = DeleteRangeRequest { prev_kv: true, ..del_req("c", "\0") };
    let (resp, _, _) = store.delete_range(&asked).unwrap();
    assert_eq!(resp.deleted, 2);
    assert_eq!(resp.prev_kvs, vec![kv("c", "3", 4, 4, 1, 0), kv("d", "4", 5, 5, 1, 0)]);
    assert!(store.is_empty());
}

#[test]
fn delete_of_missing_keys_does_not_bump_revision() {
    let mut store = abcd();
    let (resp, events, revision) = delete(&mut store, "x", "z");
    assert_eq!((resp.deleted, events.len(), revision), (0, 0, 5));
    assert_eq!(store.current_revision(), 5);
}

#[test]
fn deleted_key_is_visible_at_older_revisions() {
    let mut store = abcd();
    delete(&mut store, "a", "");
    assert_eq!(range(&store, range_req("a", "")).kvs, vec![]);
    let old = range(&store, RangeRequest { revision: 5, ..range_req("a", "") });
    assert_eq!(old.kvs, vec![kv("a", "1", 2, 2, 1, 0)]);
}

// ---- Range: spans ----

#[test]
fn range_spans_follow_etcd_conventions() {
    let store = abcd();
    let table = [
        ("single key", "b", "", vec!["b"]),
        ("single missing key", "bb", "", vec![]),
        ("half-open interval", "b", "d", vec!["b", "c"]),
        ("range_end \\0 is every key from key", "b", "\0", vec!["b", "c", "d"]),
        ("key \\0 and range_end \\0 is every key", "\0", "\0", vec!["a", "b", "c", "d"]),
        ("range_end equal to key is empty", "b", "b", vec![]),
        ("range_end before key is empty", "c", "a", vec![]),
    ];
    for (name, key, range_end, expected) in table {
        assert_eq!(keys(&range(&store, range_req(key, range_end)).kvs), expected, "{name}");
    }
}

#[test]
fn range_with_empty_key_fails() {
    assert_eq!(abcd().range(&range_req("", "z")), Err(Error::EmptyKey));
}

// ---- Range: revisions ----

#[test]
fn range_at_old_revision_sees_old_values() {
    let mut store = abcd();
    put(&mut store, "a", "new");
    let at = |revision| range(&store, RangeRequest { revision, ..range_req("a", "") }).kvs;
    assert_eq!(at(0), vec![kv("a", "new", 2, 6, 2, 0)]);
    assert_eq!(at(-3), vec![kv("a", "new", 2, 6, 2, 0)], "negative reads the current revision");
    assert_eq!(at(5), vec![kv("a", "1", 2, 2, 1, 0)]);
    assert_eq!(at(1), vec![], "before the key was created");
}

#[test]
fn range_at_future_revision_fails() {
    let store = abcd();
    let req = RangeRequest { revision: 6, ..range_req("a", "") };
    assert_eq!(store.range(&req), Err(Error::FutureRevision));
}

#[test]
fn range_at_compacted_revision_fails() {
    let mut store = abcd();
    store.compact(4).unwrap();
    let req = RangeRequest { revision: 3, ..range_req("a", "\0") };
    assert_eq!(store.range(&req), Err(Error::Compacted { compacted_revision: 4 }));
}

#[test]
fn range_at_exactly_the_compacted_revision_succeeds() {
    let mut store = abcd();
    store.compact(4).unwrap();
    let req = RangeRequest { revision: 4, ..range_req("a", "\0") };
    assert_eq!(keys(&range(&store, req).kvs), vec!["a", "b", "c"]);
}

// ---- Range: options ----

#[test]
fn range_limit_sets_more_and_count_counts_everything() {
    let store = abcd();
    let resp = range(&store, RangeRequest { limit: 2, ..range_req("a", "\0") });
    assert_eq!((keys(&resp.kvs), resp.more, resp.count), (vec!["a".into(), "b".into()], true, 4));
    let resp = range(&store, RangeRequest { limit: 4, ..range_req("a", "\0") });
    assert_eq!((resp.kvs.len(), resp.more, resp.count), (4, false, 4));
}

#[test]
fn range_count_only_returns_no_kvs() {
    let store = abcd();
    let resp = range(&store, RangeRequest { count_only: true, limit: 1, ..range_req("b", "\0") });
    assert_eq!(resp, RangeResponse { kvs: vec![], more: false, count: 3 });
}

#[test]
fn range_keys_only_empties_values() {
    let store = abcd();
    let resp = range(&store, RangeRequest { keys_only: true, ..range_req("a", "c") });
    assert_eq!(resp.kvs, vec![kv("a", "", 2, 2, 1, 0), kv("b", "", 3, 3, 1, 0)]);
}

#[test]
fn range_sorts_like_etcd() {
    // Values chosen so value order differs from key order; b and c tie on version.
    let mut store = Mvcc::new();
    for (key, value) in [("a", "z"), ("b", "x"), ("c", "y"), ("a", "w"), ("d", "v"), ("d", "u")] {
        put(&mut store, key, value);
    }
    use SortOrder::*;
    use SortTarget::*;
    let table = [
        (None, Key, vec!["a", "b", "c", "d"]),
        (Ascend, Key, vec!["a", "b", "c", "d"]),
        (Descend, Key, vec!["d", "c", "b", "a"]),
        // Order None with a target other than the key means ascending.
        (None, Value, vec!["d", "a", "b", "c"]),
        (Descend, Value, vec!["c", "b", "a", "d"]),
        (Ascend, Mod, vec!["b", "c", "a", "d"]),
        (Descend, Create, vec!["d", "c", "b", "a"]),
        // Ties (b, c at version 1; a, d at 2) keep key order, ascending or descending.
        (Ascend, Version, vec!["b", "c", "a", "d"]),
        (Descend, Version, vec!["a", "d", "b", "c"]),
    ];
    for (order, target, expected) in table {
        let req = RangeRequest { sort_order: order, sort_target: target, ..range_req("\0", "\0") };
        assert_eq!(keys(&range(&store, req).kvs), expected, "{order:?} by {target:?}");
    }
}

#[test]
fn range_sort_applies_before_limit() {
    let store = abcd();
    let req = RangeRequest { sort_order: SortOrder::Descend, limit: 1, ..range_req("a", "\0") };
    let resp = range(&store, req);
    assert_eq!((keys(&resp.kvs), resp.more, resp.count), (vec!["d".into()], true, 4));
}

#[test]
fn range_revision_filters_apply_before_limit_and_not_to_count() {
    let mut store = abcd(); // a..d created at 2..5
    put(&mut store, "a", "again"); // a modified at 6
    let table = [
        ("min mod", RangeRequest { min_mod_revision: 4, ..range_req("a", "\0") }, vec!["a", "c", "d"]),
        ("max mod", RangeRequest { max_mod_revision: 4, ..range_req("a", "\0") }, vec!["b", "c"]),
        ("min create", RangeRequest { min_create_revision: 4, ..range_req("a", "\0") }, vec!["c", "d"]),
        ("max create", RangeRequest { max_create_revision: 3, ..range_req("a", "\0") }, vec!["a", "b"]),
        (
            "both create bounds",
            RangeRequest { min_create_revision: 3, max_create_revision: 4, ..range_req("a", "\0") },
            vec!["b", "c"],
        ),
    ];
    for (name, req, expected) in table {
        let resp = range(&store, req);
        assert_eq!(keys(&resp.kvs), expected, "{name}");
        assert_eq!(resp.count, 4, "{name}: count is before filters");
    }
    // The limit counts what the filters let through: 3 pass, 2 are returned.
    let req = RangeRequest { min_mod_revision: 4, limit: 2, ..range_req("a", "\0") };
    let resp = range(&store, req);
    assert_eq!((keys(&resp.kvs), resp.more), (vec!["a".into(), "c".into()], true));
    let req = RangeRequest { min_mod_revision: 4, limit: 3, ..range_req("a", "\0") };
    assert!(!range(&store, req).more);
}

// ---- Txn: compares ----

#[test]
fn txn_compare_targets_and_results() {
    use CompareResult::*;
    use CompareTarget::*;
    let mut store = abcd();
    put(&mut store, "a", "2"); // a: create 2, mod 6, version 2, value "2"
    try_put(&mut store, PutRequest { lease: LEASE, ..put_req("b", "b") }).unwrap();
    let table = [
        (cmp("a", Version(2), Equal), true),
        (cmp("a", Version(2), NotEqual), false),
        (cmp("a", Version(1), Greater), true),
        (cmp("a", Version(3), Less), true),
        (cmp("a", Create(2), Equal), true),
        (cmp("a", Mod(6), Equal), true),
        (cmp("a", Mod(6), Less), false),
        (cmp("a", Value(b("2")), Equal), true),
        (cmp("a", Value(b("10")), Greater), true), // bytewise: "2" > "10"
        (cmp("a", Value(b("3")), Less), true),
        (cmp("b", Lease(LEASE), Equal), true),
        (cmp("a", Lease(0), Equal), true),
    ];
    for (compare, expected) in table {
        assert_eq!(holds(&mut store, compare.clone()), expected, "{compare:?}");
    }
}

#[test]
fn txn_compare_on_missing_key_sees_zeroes_but_value_never_holds() {
    use CompareResult::*;
    use CompareTarget::*;
    let mut store = abcd();
    let table = [
        (cmp("zz", Version(0), Equal), true),
        (cmp("zz", Create(0), Equal), true),
        (cmp("zz", Mod(0), Equal), true),
        (cmp("zz", Lease(0), Equal), true),
        (cmp("zz", Version(0), Greater), false),
        (cmp("zz", Value(b("")), Equal), false),
        (cmp("zz", Value(b("x")), NotEqual), false),
    ];
    for (compare, expected) in table {
        assert_eq!(holds(&mut store, compare.clone()), expected, "{compare:?}");
    }
}

#[test]
fn txn_compare_over_range_holds_only_if_every_key_does() {
    use CompareResult::*;
    use CompareTarget::*;
    let mut store = abcd(); // versions all 1, mods 2..5
    put(&mut store, "c", "3");
    let table = [
        (cmp_range("a", "e", Version(1), Equal), false),
        (cmp_range("a", "c", Version(1), Equal), true),
        (cmp_range("a", "e", Mod(1), Greater), true),
        (cmp_range("a", "\0", Mod(5), Less), false),
        (cmp_range("a", "e", Value(b("9")), Less), true),
        // An empty range compares like a missing key.
        (cmp_range("x", "z", Version(0), Equal), true),
        (cmp_range("x", "z", Value(b("")), Equal), false),
    ];
    for (compare, expected) in table {
        assert_eq!(holds(&mut store, compare.clone()), expected, "{compare:?}");
    }
}

#[test]
fn txn_chooses_branch_by_all_compares() {
    use CompareResult::*;
    use CompareTarget::*;
    let mut store = abcd();
    let req = txn(
        vec![cmp("a", Value(b("1")), Equal), cmp("b", Value(b("nope")), Equal)],
        vec![op_put("s", "1")],
        vec![op_put("f", "1")],
    );
    let out = run(&mut store, &req);
    assert!(!out.response.succeeded);
    assert_eq!(out.response.responses, vec![ResponseOp::Put(PutResponse { prev_kv: None })]);
    assert!(get(&store, "f").is_some() && get(&store, "s").is_none());
}

// ---- Txn: execution ----

#[test]
fn txn_changes_share_one_revision_with_sub_revisions_in_execution_order() {
    let mut store = abcd();
    let req = txn(vec![], vec![op_put("z", "1"), op_del("a", "c"), op_put("m", "1")], vec![]);
    let out = run(&mut store, &req);
    assert_eq!(out.revision, 6);
    let order: Vec<(String, EventKind, i64)> = out
        .events
        .iter()
        .map(|e| (String::from_utf8(e.kv.key.to_vec()).unwrap(), e.kind, e.kv.mod_revision))
        .collect();
    let expected =
        [("z", EventKind::Put), ("a", EventKind::Delete), ("b", EventKind::Delete), ("m", EventKind::Put)];
    assert_eq!(order, expected.map(|(k, kind)| (k.to_string(), kind, 6)));
    // Events read back from history come in the same (main, sub) order.
    assert_eq!(store.events(b"\0", b"\0", 6).unwrap(), out.events);
}

#[test]
fn txn_reads_see_its_own_earlier_writes() {
    let mut store = abcd();
    let req = txn(
        vec![],
        vec![op_range("a", ""), op_put("a", "new"), op_range("a", ""), op_del("b", ""), op_range("a", "\0")],
        vec![],
    );
    let out = run(&mut store, &req);
    assert_eq!(range_response(&out, 0).kvs, vec![kv("a", "1", 2, 2, 1, 0)]);
    assert_eq!(range_response(&out, 2).kvs, vec![kv("a", "new", 2, 6, 2, 0)]);
    assert_eq!(keys(&range_response(&out, 4).kvs), vec!["a", "c", "d"]);
}

#[test]
fn txn_range_with_revision_reads_that_revision() {
    let mut store = abcd();
    let old = RequestOp::Range(RangeRequest { revision: 5, ..range_req("a", "") });
    let out = run(&mut store, &txn(vec![], vec![op_put("a", "new"), old], vec![]));
    assert_eq!(range_response(&out, 1).kvs, vec![kv("a", "1", 2, 2, 1, 0)]);
}

#[test]
fn txn_range_at_future_or_compacted_revision_fails() {
    let mut store = abcd();
    store.compact(3).unwrap();
    // The txn's own revision (6) is still the future for its reads, as in etcd.
    let future = RequestOp::Range(RangeRequest { revision: 6, ..range_req("a", "") });
    txn_fails(&mut store, &txn(vec![], vec![op_put("x", "1"), future], vec![]), Error::FutureRevision);
    let compacted = RequestOp::Range(RangeRequest { revision: 2, ..range_req("a", "") });
    txn_fails(
        &mut store,
        &txn(vec![], vec![op_put("x", "1"), compacted], vec![]),
        Error::Compacted { compacted_revision: 3 },
    );
}

#[test]
fn txn_that_changes_nothing_does_not_bump_revision() {
    let mut store = abcd();
    let table = [
        ("empty txn", txn(vec![], vec![], vec![])),
        ("only reads", txn(vec![], vec![op_range("a", "\0")], vec![])),
        ("deletes nothing", txn(vec![], vec![op_del("x", "z"), op_range("a", "")], vec![])),
        (
            "nested, deletes nothing",
            txn(vec![], vec![RequestOp::Txn(txn(vec![], vec![op_del("q", "")], vec![]))], vec![]),
        ),
    ];
    for (name, req) in table {
        let out = run(&mut store, &req);
        assert_eq!((out.revision, out.events.len()), (5, 0), "{name}");
        assert_eq!(store.current_revision(), 5, "{name}");
    }
}

#[test]
fn txn_nested_shares_the_revision_and_answers_in_place() {
    use CompareResult::*;
    use CompareTarget::*;
    let mut store = abcd();
    let inner = txn(vec![cmp("b", Version(1), Equal)], vec![op_put("y", "1")], vec![op_put("n", "1")]);
    let req = txn(vec![], vec![op_put("x", "1"), RequestOp::Txn(inner), op_range("x", "z")], vec![]);
    let out = run(&mut store, &req);
    assert_eq!(out.revision, 6);
    assert_eq!(out.events.len(), 2);
    assert!(out.events.iter().all(|e| e.kv.mod_revision == 6));
    match &out.response.responses[1] {
        ResponseOp::Txn(TxnResponse { succeeded: true, responses }) => assert_eq!(responses.len(), 1),
        other => panic!("{other:?}"),
    }
    assert_eq!(keys(&range_response(&out, 2).kvs), vec!["x", "y"]);
}

#[test]
fn txn_nested_compares_see_the_store_before_the_txn() {
    // etcd 3.4 decides every branch (compareToPath) before running any op.
    use CompareResult::*;
    use CompareTarget::*;
    let mut store = abcd();
    let inner = txn(vec![cmp("a", Value(b("1")), Equal)], vec![op_put("old", "1")], vec![op_put("new", "1")]);
    let req = txn(vec![], vec![op_put("a", "changed"), RequestOp::Txn(inner)], vec![]);
    run(&mut store, &req);
    assert!(get(&store, "old").is_some() && get(&store, "new").is_none());
}

#[test]
fn txn_failure_applies_nothing() {
    // The failing put comes last; the earlier put and delete must not happen.
    let mut store = abcd();
    let req = txn(
        vec![],
        vec![
            op_put("x", "1"),
            op_del("a", ""),
            RequestOp::Put(PutRequest { lease: 99, ..put_req("y", "1") }),
        ],
        vec![],
    );
    txn_fails(&mut store, &req, Error::LeaseNotFound);
    assert_eq!(store.current_revision(), 5);
}

#[test]
fn txn_put_with_missing_lease_in_untaken_branch_is_fine() {
    let mut store = abcd();
    let bad = RequestOp::Put(PutRequest { lease: 99, ..put_req("y", "1") });
    let out = run(&mut store, &txn(vec![], vec![op_put("x", "1")], vec![bad]));
    assert!(out.response.succeeded);
}

// ---- Txn: request checks ----

#[test]
fn txn_put_duplicate_key_fails() {
    let mut store = abcd();
    txn_fails(
        &mut store,
        &txn(vec![], vec![op_put("x", "1"), op_put("x", "2")], vec![]),
        Error::DuplicateKey,
    );
}

#[test]
fn txn_put_inside_deleted_range_fails() {
    let mut store = abcd();
    let table = [
        ("put then delete of the key", vec![op_put("b", "1"), op_del("b", "")]),
        ("delete of the key then put", vec![op_del("b", ""), op_put("b", "1")]),
        ("put inside a deleted interval", vec![op_del("a", "c"), op_put("b", "1")]),
        ("put inside a delete to the end", vec![op_put("zz", "1"), op_del("b", "\0")]),
        (
            "delete in a nested txn",
            vec![RequestOp::Txn(txn(vec![], vec![], vec![op_del("b", "")])), op_put("b", "1")],
        ),
        (
            "put in a nested txn",
            vec![RequestOp::Txn(txn(vec![], vec![op_put("b", "1")], vec![])), op_del("a", "z")],
        ),
    ];
    for (name, ops) in table {
        let req = txn(vec![], ops, vec![]);
        assert_eq!(validate_txn(&req), Err(Error::DuplicateKey), "{name}");
        txn_fails(&mut store, &req, Error::DuplicateKey);
    }
}

#[test]
fn txn_put_duplicate_across_nested_txns_fails() {
    let nested = |key| RequestOp::Txn(txn(vec![], vec![op_put(key, "1")], vec![]));
    let req = txn(vec![], vec![nested("k"), nested("k")], vec![]);
    assert_eq!(validate_txn(&req), Err(Error::DuplicateKey));
    let req = txn(vec![], vec![op_put("k", "1"), nested("k")], vec![]);
    assert_eq!(validate_txn(&req), Err(Error::DuplicateKey));
}

#[test]
fn txn_duplicates_are_allowed_across_exclusive_branches() {
    let table = [
        ("success and failure", txn(vec![], vec![op_put("k", "1")], vec![op_put("k", "2")])),
        (
            "nested success and failure",
            txn(
                vec![],
                vec![RequestOp::Txn(txn(vec![], vec![op_put("k", "1")], vec![op_put("k", "2")]))],
                vec![],
            ),
        ),
        (
            "nested put and nested delete in other branch",
            txn(
                vec![],
                vec![RequestOp::Txn(txn(vec![], vec![op_put("k", "1")], vec![op_del("a", "z")]))],
                vec![],
            ),
        ),
        ("two deletes overlapping", txn(vec![], vec![op_del("a", "z"), op_del("k", "")], vec![])),
        ("put next to a deleted interval", txn(vec![], vec![op_del("a", "k"), op_put("k", "1")], vec![])),
        ("put next to an empty delete", txn(vec![], vec![op_del("z", "a"), op_put("k", "1")], vec![])),
    ];
    for (name, req) in table {
        assert_eq!(validate_txn(&req), Ok(()), "{name}");
        let mut store = abcd();
        store.txn(&req, &lease_exists).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn txn_checks_apply_to_the_untaken_branch_too() {
    // As etcd's gRPC layer, which checks a txn before knowing which branch runs.
    let mut store = abcd();
    let table = [
        (txn(vec![], vec![], vec![op_put("x", "1"), op_put("x", "1")]), Error::DuplicateKey),
        (txn(vec![], vec![], vec![op_put("", "1")]), Error::EmptyKey),
        (
            txn(vec![], vec![], vec![RequestOp::Put(PutRequest { ignore_value: true, ..put_req("a", "v") })]),
            Error::ValueProvided,
        ),
    ];
    for (req, expected) in table {
        txn_fails(&mut store, &req, expected);
    }
}

#[test]
fn txn_empty_keys_fail() {
    let mut store = abcd();
    let table = [
        ("compare", txn(vec![cmp("", CompareTarget::Version(0), CompareResult::Equal)], vec![], vec![])),
        ("range", txn(vec![], vec![op_range("", "z")], vec![])),
        ("put", txn(vec![], vec![op_put("", "1")], vec![])),
        ("delete", txn(vec![], vec![op_del("", "z")], vec![])),
        ("nested put", txn(vec![], vec![RequestOp::Txn(txn(vec![], vec![], vec![op_put("", "1")]))], vec![])),
    ];
    for (name, req) in table {
        assert_eq!(validate_txn(&req), Err(Error::EmptyKey), "{name}");
        txn_fails(&mut store, &req, Error::EmptyKey);
    }
}

#[test]
fn txn_ignore_flags_fail_on_missing_key_or_given_value_or_lease() {
    let mut store = abcd();
    let table = [
        (PutRequest { ignore_value: true, ..put_req("zz", "") }, Error::KeyNotFound),
        (PutRequest { ignore_lease: true, ..put_req("zz", "1") }, Error::KeyNotFound),
        (PutRequest { ignore_value: true, ..put_req("a", "v") }, Error::ValueProvided),
        (PutRequest { ignore_lease: true, lease: LEASE, ..put_req("a", "v") }, Error::LeaseProvided),
        (PutRequest { lease: 99, ..put_req("a", "v") }, Error::LeaseNotFound),
    ];
    for (put, expected) in table {
        txn_fails(&mut store, &txn(vec![], vec![op_put("x", "1"), RequestOp::Put(put)], vec![]), expected);
    }
}

#[test]
fn txn_ignore_value_checks_key_before_the_txn() {
    // Documented choice (etcd's checkPut): existence is judged on the store before the txn.
    // A delete of the key earlier in the same txn is a duplicate-key error anyway.
    let mut store = abcd();
    let ignore = RequestOp::Put(PutRequest { ignore_value: true, ..put_req("a", "") });
    txn_fails(&mut store, &txn(vec![], vec![op_del("a", ""), ignore.clone()], vec![]), Error::DuplicateKey);
    let out = run(&mut store, &txn(vec![], vec![op_put("x", "1"), ignore], vec![]));
    assert_eq!(out.events[1].kv, kv("a", "1", 2, 6, 2, 0));
}

#[test]
fn txn_too_many_ops_fails() {
    let many_puts = |n: usize| (0..n).map(|i| op_put(&format!("k{i}"), "v")).collect::<Vec<_>>();
    let many_compares = |n: usize| {
        (0..n).map(|_| cmp("a", CompareTarget::Version(0), CompareResult::Greater)).collect::<Vec<_>>()
    };
    let table = [
        ("compares", txn(many_compares(MAX_TXN_OPS + 1), vec![], vec![]), Err(Error::TooManyOps)),
        ("success", txn(vec![], many_puts(MAX_TXN_OPS + 1), vec![]), Err(Error::TooManyOps)),
        ("failure", txn(vec![], vec![], many_puts(MAX_TXN_OPS + 1)), Err(Error::TooManyOps)),
        (
            "at the bound",
            txn(many_compares(MAX_TXN_OPS), many_puts(MAX_TXN_OPS), many_puts(MAX_TXN_OPS)),
            Ok(()),
        ),
        (
            // etcd's checkTxnRequest: a nested txn may use only what its parent left.
            "nested over what the parent left",
            txn(
                vec![],
                vec![op_put("a", "1"), RequestOp::Txn(txn(vec![], many_puts(MAX_TXN_OPS - 1), vec![]))],
                vec![],
            ),
            Err(Error::TooManyOps),
        ),
        (
            "nested within what the parent left",
            txn(
                vec![],
                vec![op_put("a", "1"), RequestOp::Txn(txn(vec![], many_puts(MAX_TXN_OPS - 2), vec![]))],
                vec![],
            ),
            Ok(()),
        ),
    ];
    for (name, req, expected) in table {
        assert_eq!(validate_txn(&req), expected, "{name}");
        let mut store = abcd();
        assert_eq!(store.txn(&req, &lease_exists).map(|_| ()), expected, "{name}");
    }
}

// ---- Events ----

#[test]
fn put_event_carries_new_kv_and_prev_kv_even_if_not_asked() {
    let mut store = Mvcc::new();
    let (_, events, _) = try_put(&mut store, put_req("a", "1")).unwrap();
    assert_eq!(events, vec![Event { kind: EventKind::Put, kv: kv("a", "1", 2, 2, 1, 0), prev_kv: None }]);
    let (resp, events, _) = try_put(&mut store, put_req("a", "2")).unwrap();
    assert_eq!(resp.prev_kv, None);
    assert_eq!(
        events,
        vec![Event {
            kind: EventKind::Put,
            kv: kv("a", "2", 2, 3, 2, 0),
            prev_kv: Some(kv("a", "1", 2, 2, 1, 0))
        }]
    );
}

#[test]
fn delete_event_carries_tombstone_kv() {
    let mut store = abcd();
    let (_, events, _) = delete(&mut store, "b", "");
    let tombstone = KeyValue { key: b("b"), mod_revision: 6, ..KeyValue::default() };
    assert_eq!(
        events,
        vec![Event { kind: EventKind::Delete, kv: tombstone, prev_kv: Some(kv("b", "2", 3, 3, 1, 0)) }]
    );
}

#[test]
fn events_from_history_equal_emitted_events() {
    let mut store = Mvcc::new();
    let mut emitted = vec![Vec::new(), Vec::new()]; // by revision; none at 0 and 1
    emitted.push(store.put(&put_req("a", "1"), &lease_exists).unwrap().1);
    emitted.push(store.put(&put_req("b", "1"), &lease_exists).unwrap().1);
    emitted.push(
        run(&mut store, &txn(vec![], vec![op_put("a", "2"), op_del("b", ""), op_put("c", "1")], vec![]))
            .events,
    );
    emitted.push(store.delete_keys(&[b("c"), b("a")]).0);
    emitted.push(store.put(&put_req("a", "3"), &lease_exists).unwrap().1);
    assert_eq!(store.current_revision(), 6);
    for start in 1..=7 {
        let expected: Vec<Event> = emitted.iter().skip(start as usize).flatten().cloned().collect();
        assert_eq!(store.events(b"\0", b"\0", start).unwrap(), expected, "from {start}");
    }
    let only_a: Vec<Event> = emitted.iter().flatten().filter(|e| e.kv.key == "a").cloned().collect();
    assert_eq!(store.events(b"a", b"", 1).unwrap(), only_a);
}

#[test]
fn events_from_revision_zero_are_empty() {
    let store = abcd();
    assert_eq!(store.events(b"\0", b"\0", 0).unwrap(), vec![]);
    assert_eq!(store.events(b"\0", b"\0", 6).unwrap(), vec![], "the next revision has no events yet");
}

#[test]
fn events_before_compacted_revision_fail() {
    let mut store = abcd();
    store.compact(4).unwrap();
    assert_eq!(store.events(b"\0", b"\0", 3), Err(Error::Compacted { compacted_revision: 4 }));
    assert_eq!(store.events(b"\0", b"\0", 4).unwrap().len(), 2);
}

// ---- delete_keys (lease revocation) ----

#[test]
fn delete_keys_deletes_existing_keys_in_one_revision_in_key_order() {
    let mut store = abcd();
    let (events, revision) = store.delete_keys(&[b("c"), b("zz"), b("a"), b("c")]);
    assert_eq!(revision, 6);
    assert_eq!(keys(&events.iter().map(|e| e.kv.clone()).collect::<Vec<_>>()), vec!["a", "c"]);
    assert!(events.iter().all(|e| e.kind == EventKind::Delete && e.kv.mod_revision == 6));
    assert_eq!(keys(&range(&store, range_req("\0", "\0")).kvs), vec!["b", "d"]);
}

#[test]
fn delete_keys_of_missing_keys_does_not_bump_revision() {
    let mut store = abcd();
    assert_eq!(store.delete_keys(&[b("x"), b("")]), (vec![], 5));
}

// ---- Compaction ----

#[test]
fn compact_errors() {
    let mut store = abcd();
    assert_eq!(store.compact(6), Err(Error::FutureRevision));
    assert_eq!(store.compact(0), Err(Error::Compacted { compacted_revision: 0 }));
    store.compact(3).unwrap();
    assert_eq!(store.compact(3), Err(Error::Compacted { compacted_revision: 3 }));
    assert_eq!(store.compact(2), Err(Error::Compacted { compacted_revision: 3 }));
    store.compact(5).unwrap();
    assert_eq!(store.compacted_revision(), 5);
}

#[test]
fn compact_does_not_bump_revision_and_keeps_reads_at_or_above_it() {
    let mut store = abcd();
    put(&mut store, "a", "2"); // 6
    delete(&mut store, "b", ""); // 7
    put(&mut store, "b", "again"); // 8
    delete(&mut store, "c", ""); // 9
    let before: Vec<_> =
        (0..=9).map(|r| store.range(&RangeRequest { revision: r, ..range_req("\0", "\0") })).collect();
    store.compact(7).unwrap();
    assert_eq!(store.current_revision(), 9);
    store.check_invariants().unwrap();
    for r in 7..=9 {
        assert_eq!(
            store.range(&RangeRequest { revision: r, ..range_req("\0", "\0") }),
            before[r as usize],
            "at {r}"
        );
    }
    assert_eq!(range(&store, range_req("\0", "\0")), before[0].clone().unwrap());
}

#[test]
fn compact_keeps_changes_at_the_compacted_revision_complete_in_events() {
    let mut store = abcd();
    put(&mut store, "a", "2"); // 6
    let (_, deleted, _) = delete(&mut store, "b", ""); // 7
    let (_, rewritten, _) = try_put(&mut store, put_req("a", "3")).unwrap(); // 8
    store.compact(7).unwrap();
    let expected: Vec<Event> = deleted.into_iter().chain(rewritten).collect();
    assert_eq!(store.events(b"\0", b"\0", 7).unwrap(), expected);
    // The tombstone at 7 goes with the next compaction, and with it the key.
    store.compact(8).unwrap();
    assert_eq!(store.events(b"b", b"", 8).unwrap(), vec![]);
    assert_eq!(store.len(), 3);
    store.check_invariants().unwrap();
}

#[test]
fn snapshot_roundtrip_through_bincode_is_identical() {
    let mut store = abcd();
    delete(&mut store, "b", "");
    put(&mut store, "a", "2");
    store.compact(6).unwrap();
    let bytes = bincode::serialize(&store).unwrap();
    let decoded: Mvcc = bincode::deserialize(&bytes).unwrap();
    decoded.check_invariants().unwrap();
    assert_eq!(decoded, store);
}
