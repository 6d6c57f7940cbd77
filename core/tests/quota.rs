//! The space quota and its `NoSpace` alarm (etcd's `--quota-backend-bytes`): a write that
//! would pass the quota is refused and raises the alarm through the log; while it is up every
//! member refuses what would grow the store and serves the rest; compaction makes room and
//! disarming lifts it.

mod support;

use cairn_core::alarm::{Alarm, AlarmAction, AlarmKind};
use cairn_core::kv::{CompactionRequest, DeleteRangeRequest, PutRequest, RequestOp, TxnRequest};
use cairn_core::{Error, Request, ResponseBody};
use support::{b, Cluster};

const QUOTA: u64 = 8_000;

fn alarms(c: &mut Cluster, at: u64) -> Vec<Alarm> {
    let get = Request::Alarm { action: AlarmAction::Get, member: 0, kind: None };
    match c.request(at, get).unwrap().body {
        ResponseBody::Alarms(a) => a,
        other => panic!("{other:?}"),
    }
}

fn txn_put(key: &str) -> Request {
    Request::Txn(TxnRequest {
        compare: vec![],
        success: vec![RequestOp::Put(PutRequest { key: b(key), value: b("v"), ..Default::default() })],
        failure: vec![],
    })
}

#[test]
fn a_full_store_raises_nospace_refuses_growth_everywhere_and_recovers_after_compaction_and_disarm() {
    let mut c = Cluster::with_config(3, 21, |cfg| cfg.quota_bytes = QUOTA);
    let l = c.wait_for_leader();
    let f = (1..=3).find(|&id| id != l).unwrap();
    let value = "x".repeat(100);
    let mut written = 0;
    let refused = loop {
        match c.put(f, &format!("k{}", written % 5), &value) {
            Ok(_) => written += 1,
            Err(e) => break e,
        }
        assert!(written < 1_000, "the quota never bit");
    };
    assert_eq!(refused, Error::NoSpace);
    assert_eq!(refused.to_string(), "etcdserver: mvcc: database space exceeded");
    assert!(c.core(f).state().mvcc().bytes() <= QUOTA);
    // The member that refused raised its alarm, and every member applied it.
    c.stabilize();
    let raised = vec![Alarm { member: f, kind: AlarmKind::NoSpace }];
    for id in 1..=3 {
        assert_eq!(c.core(id).state().alarms().iter().copied().collect::<Vec<_>>(), raised);
    }
    assert_eq!(alarms(&mut c, l), raised);

    // Everything that grows the store is refused on every member; the rest is served.
    for id in 1..=3 {
        assert_eq!(c.put(id, "small", "v").unwrap_err(), Error::NoSpace);
        assert_eq!(c.request(id, txn_put("t")).unwrap_err(), Error::NoSpace);
        let grant = Request::LeaseGrant { id: 0, ttl_secs: 60 };
        assert_eq!(c.request(id, grant).unwrap_err(), Error::NoSpace);
        assert!(c.get(id, "k0", false).unwrap().is_some());
    }
    let read_only = Request::Txn(TxnRequest { compare: vec![], success: vec![], failure: vec![] });
    assert!(c.request(l, read_only).is_ok());
    let del = Request::DeleteRange(DeleteRangeRequest { key: b("k1"), ..Default::default() });
    let deleted = c.request(l, del).unwrap();

    // Compacting makes room; the alarm stays until disarmed; then writes go in again.
    let compact = CompactionRequest { revision: deleted.header.revision, physical: false };
    c.request(l, Request::Compact(compact)).unwrap();
    assert!(c.core(l).state().mvcc().bytes() < QUOTA / 2, "compaction frees the superseded values");
    assert_eq!(c.put(l, "small", "v").unwrap_err(), Error::NoSpace);
    let disarm =
        Request::Alarm { action: AlarmAction::Deactivate, member: f, kind: Some(AlarmKind::NoSpace) };
    match c.request(l, disarm).unwrap().body {
        ResponseBody::Alarms(lifted) => assert_eq!(lifted, raised),
        other => panic!("{other:?}"),
    }
    assert_eq!(alarms(&mut c, f), vec![]);
    c.put(f, "small", "v").unwrap();
    c.assert_converged();
}

#[test]
fn a_write_proposed_before_the_alarm_applied_after_it_is_refused_identically_everywhere() {
    let mut c = Cluster::with_config(3, 22, |cfg| cfg.quota_bytes = QUOTA);
    let l = c.wait_for_leader();
    let raise = Request::Alarm { action: AlarmAction::Activate, member: l, kind: Some(AlarmKind::NoSpace) };
    // Both in one batch: the alarm applies first, then the put meets it.
    let alarm = c.submit_quiet(l, raise);
    let put =
        c.submit_quiet(l, Request::Put(PutRequest { key: b("k"), value: b("v"), ..Default::default() }));
    c.stabilize();
    assert!(c.wait(alarm).is_ok());
    assert_eq!(c.wait(put).unwrap_err(), Error::NoSpace);
    c.assert_converged();
    for id in 1..=3 {
        assert!(c.core(id).state().mvcc().kv_at(b"k").is_none());
    }
}

#[test]
fn alarms_survive_a_restart_from_snapshot() {
    let mut c = Cluster::with_config(3, 23, |cfg| {
        cfg.quota_bytes = QUOTA;
        cfg.snapshot_entries = 5;
    });
    let l = c.wait_for_leader();
    let raise = Request::Alarm { action: AlarmAction::Activate, member: l, kind: Some(AlarmKind::NoSpace) };
    c.request(l, raise).unwrap();
    for i in 0..10 {
        let del = Request::DeleteRange(DeleteRangeRequest { key: b(&format!("d{i}")), ..Default::default() });
        c.request(l, del).unwrap();
    }
    let f = (1..=3).find(|&id| id != l).unwrap();
    c.crash(f);
    c.restart(f);
    assert_eq!(c.core(f).state().alarms().len(), 1);
    assert_eq!(c.put(f, "k", "v").unwrap_err(), Error::NoSpace);
}
