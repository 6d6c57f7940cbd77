//! Per-prefix quotas: bounds on the live keys and bytes under a prefix, replicated, enforced
//! identically on every member when writes apply.

mod support;

use bytes::Bytes;
use cairn_core::kv::{
    Compare, CompareResult, CompareTarget, DeleteRangeRequest, PutRequest, RequestOp, TxnRequest,
};
use cairn_core::prefix_quota::{Limits, QuotaStatus, Usage};
use cairn_core::{Error, Request, ResponseBody};
use support::{b, Cluster};

fn set(c: &mut Cluster, at: u64, prefix: &str, bytes_max: u64, keys_max: u64) -> Vec<QuotaStatus> {
    let req = Request::PrefixQuotaSet { prefix: b(prefix), limits: Limits { bytes_max, keys_max } };
    match c.request(at, req).unwrap().body {
        ResponseBody::PrefixQuotas(q) => q,
        other => panic!("{other:?}"),
    }
}

fn list(c: &mut Cluster, at: u64) -> Vec<QuotaStatus> {
    match c.request(at, Request::PrefixQuotaList).unwrap().body {
        ResponseBody::PrefixQuotas(q) => q,
        other => panic!("{other:?}"),
    }
}

fn put_op(key: &str, value: &str) -> RequestOp {
    RequestOp::Put(PutRequest { key: b(key), value: b(value), ..Default::default() })
}

#[test]
fn a_prefix_quota_bounds_keys_and_bytes_under_its_prefix_only() {
    let mut c = Cluster::new(3, 51);
    let l = c.wait_for_leader();
    c.put(l, "/events/a", "1").unwrap();
    // Counted from what is there already.
    let q = set(&mut c, l, "/events/", 0, 3);
    assert_eq!(q[0].usage, Usage { keys: 1, bytes: 10 });
    c.put(l, "/events/b", "2").unwrap();
    c.put(l, "/events/c", "3").unwrap();
    let refused = c.put(l, "/events/d", "4").unwrap_err();
    assert_eq!(refused, Error::PrefixQuotaExceeded { prefix: "/events/".into(), limit: "3 keys".into() });
    assert_eq!(refused.to_string(), "etcdserver: quota exceeded for prefix \"/events/\": at most 3 keys");
    // Other prefixes, and overwriting a key already counted, go on.
    c.put(l, "/other/x", "v").unwrap();
    c.put(l, "/events/a", "one").unwrap();
    // A txn is checked on the branch it takes.
    let two_new = TxnRequest { compare: vec![], success: vec![put_op("/events/y", "v")], failure: vec![] };
    assert!(c.request(l, Request::Txn(two_new)).is_err());
    let other_branch = TxnRequest {
        compare: vec![Compare {
            result: CompareResult::Equal,
            target: CompareTarget::Version(0),
            key: b("/events/a"),
            range_end: Bytes::new(),
        }],
        success: vec![put_op("/events/z", "v")],
        failure: vec![put_op("/other/y", "v")],
    };
    assert!(c.request(l, Request::Txn(other_branch)).is_ok());
    // A delete makes room.
    c.request(l, Request::DeleteRange(DeleteRangeRequest { key: b("/events/b"), ..Default::default() }))
        .unwrap();
    c.put(l, "/events/d", "4").unwrap();

    // Bytes: key plus value of each live key.
    set(&mut c, l, "/big/", 30, 0);
    c.put(l, "/big/k", &"x".repeat(20)).unwrap(); // 6 + 20
    let refused = c.put(l, "/big/j", "xx").unwrap_err();
    assert_eq!(refused, Error::PrefixQuotaExceeded { prefix: "/big/".into(), limit: "30 bytes".into() });
    c.put(l, "/big/k", &"x".repeat(24)).unwrap(); // exactly 30

    // Every member agrees on the usage, and counts it again from a snapshot.
    c.stabilize();
    let expected = list(&mut c, l);
    assert_eq!(expected[0].usage, Usage { keys: 1, bytes: 30 });
    // /events/a=one, /events/c=3, /events/d=4.
    assert_eq!(expected[1].usage, Usage { keys: 3, bytes: 12 + 10 + 10 });
    for id in 1..=3 {
        assert_eq!(list(&mut c, id), expected);
    }
    let f = (1..=3).find(|&id| id != l).unwrap();
    c.crash(f);
    c.restart(f);
    assert_eq!(list(&mut c, f), expected);
    c.assert_converged();

    // Removed: no bound.
    c.request(l, Request::PrefixQuotaRemove { prefix: b("/events/") }).unwrap();
    c.put(l, "/events/e", "5").unwrap();
    assert!(c.request(l, Request::PrefixQuotaRemove { prefix: b("/events/") }).is_err());
    assert!(c.request(l, Request::PrefixQuotaSet { prefix: b(""), limits: Limits::default() }).is_err());
}

#[test]
fn expired_leases_give_their_keys_room_back() {
    let mut c = Cluster::new(3, 52);
    let l = c.wait_for_leader();
    set(&mut c, l, "/svc/", 0, 2);
    let granted = c.request(l, Request::LeaseGrant { id: 0, ttl_secs: 2 }).unwrap();
    let ResponseBody::LeaseGrant { id: lease, .. } = granted.body else { panic!() };
    c.put_lease(l, "/svc/a", "v", lease).unwrap();
    c.put_lease(l, "/svc/b", "v", lease).unwrap();
    assert!(c.put(l, "/svc/c", "v").is_err());
    c.run_for(5_000);
    assert_eq!(list(&mut c, l)[0].usage, Usage::default());
    c.put(l, "/svc/c", "v").unwrap();
}

#[test]
fn a_txn_that_deletes_under_a_prefix_makes_room_for_its_own_puts() {
    let mut c = Cluster::new(3, 53);
    let l = c.wait_for_leader();
    set(&mut c, l, "/jobs/", 0, 2);
    c.put(l, "/jobs/a", "1").unwrap();
    c.put(l, "/jobs/b", "2").unwrap();
    // Full: a plain put is refused, but a txn swapping one key for another fits.
    assert!(c.put(l, "/jobs/c", "3").is_err());
    let swap = TxnRequest {
        compare: vec![],
        success: vec![
            RequestOp::DeleteRange(DeleteRangeRequest { key: b("/jobs/a"), ..Default::default() }),
            put_op("/jobs/c", "3"),
        ],
        failure: vec![],
    };
    c.request(l, Request::Txn(swap)).unwrap();
    assert_eq!(list(&mut c, l)[0].usage, Usage { keys: 2, bytes: 16 });
    // Deleting a key outside the prefix makes no room under it.
    c.put(l, "/other", "x").unwrap();
    let no_room = TxnRequest {
        compare: vec![],
        success: vec![
            RequestOp::DeleteRange(DeleteRangeRequest { key: b("/other"), ..Default::default() }),
            put_op("/jobs/d", "4"),
        ],
        failure: vec![],
    };
    let refused = c.request(l, Request::Txn(no_room)).unwrap_err();
    assert_eq!(refused, Error::PrefixQuotaExceeded { prefix: "/jobs/".into(), limit: "2 keys".into() });
    // A range delete credits every live key it removes (b and c; the puts lie past its end, as
    // a txn may not touch a key twice).
    let sweep = TxnRequest {
        compare: vec![],
        success: vec![
            RequestOp::DeleteRange(DeleteRangeRequest {
                key: b("/jobs/a"),
                range_end: b("/jobs/d"),
                ..Default::default()
            }),
            put_op("/jobs/x", "1"),
            put_op("/jobs/y", "2"),
        ],
        failure: vec![],
    };
    c.request(l, Request::Txn(sweep)).unwrap();
    assert_eq!(list(&mut c, l)[0].usage, Usage { keys: 2, bytes: 16 });
    c.stabilize();
    c.assert_converged();
}
