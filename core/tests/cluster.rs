//! Multi-member behaviour of the core, in-process: elections, replication, failures,
//! linearizable reads, catch-up by snapshot, and leases across leader changes.

mod support;

use cairn_core::kv::{EventKind, RangeRequest};
use cairn_core::{Error, Request, ResponseBody};
use support::Cluster;

fn value(kv: Option<cairn_core::kv::KeyValue>) -> Option<String> {
    kv.map(|kv| String::from_utf8(kv.value.to_vec()).unwrap())
}

#[test]
fn elects_one_leader_and_replicates_to_all() {
    let mut c = Cluster::new(3, 1);
    let l = c.wait_for_leader();
    let r = c.put(l, "a", "1").expect("put on the leader");
    assert_eq!(r.header.revision, 2, "the first write makes revision 2");
    c.run_for(500);
    for id in 1..=3 {
        assert_eq!(value(c.get(id, "a", true).unwrap()), Some("1".into()), "member {id} has the write");
    }
    c.assert_converged();
    let leaders = (1..=3).filter(|&id| c.core(id).is_leader()).count();
    assert_eq!(leaders, 1);
}

#[test]
fn writes_through_a_follower_are_forwarded() {
    let mut c = Cluster::new(3, 2);
    let l = c.wait_for_leader();
    let f = (1..=3).find(|&id| id != l).unwrap();
    c.put(f, "k", "via-follower").expect("follower forwards the proposal");
    assert_eq!(value(c.get(l, "k", false).unwrap()), Some("via-follower".into()));
}

#[test]
fn killed_leader_is_replaced_and_catches_up_on_restart() {
    let mut c = Cluster::new(3, 3);
    let l1 = c.wait_for_leader();
    c.put(l1, "before", "x").unwrap();
    c.crash(l1);
    let l2 = c.wait_for_leader();
    assert_ne!(l1, l2);
    c.put(l2, "after", "y").expect("the new leader accepts writes");
    assert_eq!(value(c.get(l2, "before", false).unwrap()), Some("x".into()), "acknowledged writes survive");
    c.restart(l1);
    c.run_for(1_000);
    assert_eq!(value(c.get(l1, "after", true).unwrap()), Some("y".into()), "the old leader catches up");
    c.assert_converged();
}

#[test]
fn minority_cannot_write_or_read_linearizably_and_heals() {
    let mut c = Cluster::new(5, 4);
    let l = c.wait_for_leader();
    c.put(l, "k", "old").unwrap();
    c.run_for(300);
    // Cut the leader and one follower off from the other three.
    let f = (1..=5).find(|&id| id != l).unwrap();
    let majority: Vec<u64> = (1..=5).filter(|&id| id != l && id != f).collect();
    c.partition(&[l, f], &majority);
    let l2 = {
        let mut new = None;
        for _ in 0..100 {
            c.run_for(100);
            new = majority.iter().copied().find(|&id| c.core(id).is_leader());
            if new.is_some() {
                break;
            }
        }
        new.expect("the majority elects a leader")
    };
    c.put(l2, "k", "new").expect("the majority accepts writes");

    // The old leader may still believe it leads for a while, but a linearizable read there
    // must never return the overwritten value.
    match c.get(l, "k", false) {
        Ok(kv) => panic!("minority served a linearizable read: {:?}", value(kv)),
        Err(Error::TimedOut | Error::NoLeader) => {}
        Err(e) => panic!("unexpected error {e}"),
    }
    // A serializable read is local and may be stale: that is its contract.
    assert_eq!(value(c.get(f, "k", true).unwrap()), Some("old".into()));
    // A write on the minority side cannot commit.
    assert!(c.put(l, "k", "lost").is_err());

    c.heal();
    c.run_for(2_000);
    for id in 1..=5 {
        assert_eq!(value(c.get(id, "k", false).unwrap()), Some("new".into()), "member {id} after heal");
    }
    c.assert_converged();
}

#[test]
fn lagging_follower_catches_up_by_snapshot() {
    let mut c = Cluster::with_config(3, 5, |cfg| {
        cfg.snapshot_entries = 20;
        cfg.snapshot_catch_up_entries = 5;
    });
    let l = c.wait_for_leader();
    let lagging = (1..=3).find(|&id| id != l).unwrap();
    c.isolate(lagging);
    for i in 0..60 {
        c.put(l, &format!("k{i:02}"), &i.to_string()).unwrap();
    }
    assert!(c.members[&l].disk.snapshot.is_some(), "the leader snapshotted and compacted its log");
    c.heal();
    c.run_for(2_000);
    assert_eq!(c.members[&lagging].disk.snapshots_installed, 1, "caught up by one snapshot");
    assert_eq!(value(c.get(lagging, "k59", true).unwrap()), Some("59".into()));
    c.assert_converged();

    // And it restarts from that snapshot plus its log.
    c.crash(lagging);
    c.restart(lagging);
    assert_eq!(value(c.get(lagging, "k00", true).unwrap()), Some("0".into()));
}

#[test]
fn snapshots_are_built_a_step_at_a_time_and_rebuilt_for_a_lagging_follower() {
    let mut c = Cluster::with_config(3, 5, |cfg| {
        cfg.snapshot_entries = 20;
        cfg.snapshot_catch_up_entries = 5;
        // About one key per `advance`: a snapshot of this store takes many.
        cfg.snapshot_step_bytes = 16;
    });
    let l = c.wait_for_leader();
    let lagging = (1..=3).find(|&id| id != l).unwrap();
    c.isolate(lagging);
    let mut building_seen = false;
    for i in 0..60 {
        c.put(l, &format!("k{i:02}"), &i.to_string()).unwrap();
        // While a snapshot is being built the member asks to be called again at once.
        building_seen |= c.core(l).poll_timeout() == c.core(l).now_ms();
    }
    assert!(building_seen, "no snapshot was ever in progress between calls");
    c.run_for(1_000);
    assert!(c.members[&l].disk.snapshot.is_some(), "the leader snapshotted and compacted its log");
    c.heal();
    c.run_for(3_000);
    // The leader kept no snapshot data after persisting its own; it built one for the follower.
    assert_eq!(c.members[&lagging].disk.snapshots_installed, 1, "caught up by one snapshot");
    assert_eq!(value(c.get(lagging, "k59", true).unwrap()), Some("59".into()));
    c.assert_converged();
    c.crash(lagging);
    c.restart(lagging);
    assert_eq!(value(c.get(lagging, "k00", true).unwrap()), Some("0".into()));
}

#[test]
fn a_lost_snapshot_message_is_sent_again() {
    let mut c = Cluster::with_config(3, 13, |cfg| {
        cfg.snapshot_entries = 10;
        cfg.snapshot_catch_up_entries = 2;
    });
    let l = c.wait_for_leader();
    let lagging = (1..=3).find(|&id| id != l).unwrap();
    c.isolate(lagging);
    for i in 0..30 {
        c.put(l, &format!("k{i:02}"), "v").unwrap();
    }
    // The first snapshot sent to the lagging member is lost on the way.
    let mut dropped = 0;
    c.drop_if = Some(Box::new(move |m| {
        if m.get_msg_type() == cairn_core::eraftpb::MessageType::MsgSnapshot && dropped == 0 {
            dropped += 1;
            return true;
        }
        false
    }));
    c.heal();
    c.run_for(5_000);
    assert_eq!(c.members[&lagging].disk.snapshots_installed, 1, "the snapshot was sent again");
    assert_eq!(value(c.get(lagging, "k29", true).unwrap()), Some("v".into()));
    c.assert_converged();
}

#[test]
fn whole_cluster_restarts_from_disk() {
    let mut c = Cluster::with_config(3, 6, |cfg| cfg.snapshot_entries = 7);
    let l = c.wait_for_leader();
    for i in 0..20 {
        c.put(l, &format!("k{i}"), &i.to_string()).unwrap();
    }
    for id in 1..=3 {
        c.crash(id);
    }
    for id in 1..=3 {
        c.restart(id);
    }
    let l = c.wait_for_leader();
    for i in 0..20 {
        assert_eq!(value(c.get(l, &format!("k{i}"), false).unwrap()), Some(i.to_string()));
    }
    c.assert_converged();
}

fn grant(c: &mut Cluster, on: u64, ttl_secs: i64) -> i64 {
    match c.request(on, Request::LeaseGrant { id: 0, ttl_secs }).unwrap().body {
        ResponseBody::LeaseGrant { id, .. } => id,
        other => panic!("{other:?}"),
    }
}

fn lease_exists(c: &mut Cluster, on: u64, id: i64) -> bool {
    match c.request(on, Request::LeaseLeases).unwrap().body {
        ResponseBody::LeaseLeases { ids } => ids.contains(&id),
        other => panic!("{other:?}"),
    }
}

#[test]
fn lease_expires_on_every_replica_and_deletes_its_keys_at_one_revision() {
    let mut c = Cluster::new(3, 7);
    let l = c.wait_for_leader();
    let id = grant(&mut c, l, 3);
    c.put_lease(l, "a", "1", id).unwrap();
    c.put_lease(l, "b", "2", id).unwrap();
    c.put(l, "c", "no lease").unwrap();
    c.run_for(2_000);
    assert!(lease_exists(&mut c, l, id), "not expired after 2 of 3 seconds");
    c.run_for(2_000);
    for m in 1..=3 {
        assert!(!lease_exists(&mut c, m, id), "member {m} dropped the lease");
        assert_eq!(c.get(m, "a", true).unwrap(), None);
        assert_eq!(c.get(m, "b", true).unwrap(), None);
        assert!(c.get(m, "c", true).unwrap().is_some());
        let deletes: Vec<i64> = c.members[&m]
            .events
            .iter()
            .filter(|e| e.kind == EventKind::Delete)
            .map(|e| e.kv.mod_revision)
            .collect();
        assert_eq!(deletes.len(), 2);
        assert_eq!(deletes[0], deletes[1], "both keys go in the same revision");
    }
    c.assert_converged();
}

#[test]
fn keep_alive_holds_a_lease_and_time_to_live_counts_down() {
    let mut c = Cluster::new(3, 8);
    let l = c.wait_for_leader();
    let id = grant(&mut c, l, 3);
    for _ in 0..5 {
        c.run_for(1_000);
        let r = c.request(l, Request::LeaseKeepAlive { id }).expect("keep-alive on the leader");
        assert!(matches!(r.body, ResponseBody::LeaseKeepAlive { ttl_secs: 3, .. }));
    }
    c.run_for(1_000);
    match c.request(l, Request::LeaseTimeToLive { id, keys: false }).unwrap().body {
        ResponseBody::LeaseTimeToLive { ttl_secs, granted_ttl_secs, .. } => {
            assert_eq!(granted_ttl_secs, 3);
            assert!((1..=2).contains(&ttl_secs), "remaining {ttl_secs}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(c.request(l, Request::LeaseKeepAlive { id: 12345 }).unwrap_err(), Error::LeaseNotFound);
}

/// A follower hands keep-alive and time-to-live to the leader, whose lease clock counts, and
/// answers with the leader's reply (etcd forwards them likewise); with no way to the leader,
/// the request times out rather than hang.
#[test]
fn a_followers_keep_alive_and_time_to_live_are_served_by_the_leader() {
    let mut c = Cluster::new(3, 8);
    let l = c.wait_for_leader();
    let id = grant(&mut c, l, 3);
    let f = (1..=3).find(|&m| m != l).unwrap();
    for _ in 0..4 {
        c.run_for(1_000);
        let r = c.request(f, Request::LeaseKeepAlive { id }).expect("keep-alive through a follower");
        assert!(matches!(r.body, ResponseBody::LeaseKeepAlive { ttl_secs: 3, .. }), "{r:?}");
    }
    // Kept alive through the follower: the lease is still there, with the leader's countdown.
    match c.request(f, Request::LeaseTimeToLive { id, keys: false }).unwrap().body {
        ResponseBody::LeaseTimeToLive { ttl_secs, granted_ttl_secs, .. } => {
            assert_eq!(granted_ttl_secs, 3);
            assert!((2..=3).contains(&ttl_secs), "remaining {ttl_secs}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(c.request(f, Request::LeaseKeepAlive { id: 12345 }).unwrap_err(), Error::LeaseNotFound);
    // The leader unreachable from the follower: its forward is lost; the follower answers
    // "timed out" once the request's time is up.
    c.partition(&[f], &[l]);
    let rid = c.submit(f, Request::LeaseKeepAlive { id });
    c.run_for(100);
    assert!(!c.responses.contains_key(&rid), "not answered before its time");
    c.run_for(c.core(f).config().request_timeout_ms);
    assert_eq!(c.responses.get(&rid).cloned().map(|r| r.map(|_| ())), Some(Err(Error::TimedOut)));
}

#[test]
fn lease_survives_a_leader_change() {
    let mut c = Cluster::new(3, 9);
    let l1 = c.wait_for_leader();
    let id = grant(&mut c, l1, 4);
    c.put_lease(l1, "held", "v", id).unwrap();
    c.run_for(2_500);
    c.crash(l1);
    let l2 = c.wait_for_leader();
    // The new leader restarts every lease's clock with an election timeout to spare (etcd's
    // Promote): a full TTL and more remains, though most of it had run down before.
    match c.request(l2, Request::LeaseTimeToLive { id, keys: true }).unwrap().body {
        ResponseBody::LeaseTimeToLive { ttl_secs, keys, .. } => {
            assert!(ttl_secs >= 4, "remaining {ttl_secs}s after the election");
            assert_eq!(keys, vec![bytes::Bytes::from_static(b"held")]);
        }
        other => panic!("{other:?}"),
    }
    c.run_for(2_000);
    assert!(lease_exists(&mut c, l2, id), "the election did not expire the lease");
    c.request(l2, Request::LeaseKeepAlive { id }).expect("the new leader renews it");
    c.run_for(3_000);
    assert!(lease_exists(&mut c, l2, id));
    // Without keep-alives it does expire, on the new leader's clock.
    c.run_for(3_000);
    assert!(!lease_exists(&mut c, l2, id));
    assert_eq!(c.get(l2, "held", false).unwrap(), None);
}

#[test]
fn revoke_deletes_attached_keys_and_unknown_lease_fails() {
    let mut c = Cluster::new(3, 10);
    let l = c.wait_for_leader();
    let id = grant(&mut c, l, 100);
    c.put_lease(l, "x", "1", id).unwrap();
    assert_eq!(c.put_lease(l, "y", "1", 999).unwrap_err(), Error::LeaseNotFound);
    c.request(l, Request::LeaseRevoke { id }).unwrap();
    assert_eq!(c.get(l, "x", false).unwrap(), None);
    assert_eq!(c.request(l, Request::LeaseRevoke { id }).unwrap_err(), Error::LeaseNotFound);
}

#[test]
fn requests_out_of_bounds_are_refused_clearly() {
    let mut c = Cluster::new(3, 11);
    let l = c.wait_for_leader();
    let big = "x".repeat(cairn_core::config::REQUEST_BYTES_MAX_DEFAULT + 1);
    assert_eq!(c.put(l, "big", &big).unwrap_err(), Error::RequestTooLarge);
    let ops = (0..129)
        .map(|i| {
            cairn_core::kv::RequestOp::Put(cairn_core::kv::PutRequest {
                key: format!("k{i}").into(),
                ..Default::default()
            })
        })
        .collect();
    let txn = cairn_core::kv::TxnRequest { success: ops, ..Default::default() };
    assert_eq!(c.request(l, Request::Txn(txn)).unwrap_err(), Error::TooManyOps);
    // The member keeps serving.
    c.put(l, "small", "ok").unwrap();
}

#[test]
fn linearizable_range_reads_see_every_acknowledged_write_on_any_member() {
    let mut c = Cluster::new(3, 12);
    let l = c.wait_for_leader();
    for i in 0..10 {
        let on = 1 + (i % 3);
        c.put(l, "counter", &i.to_string()).unwrap();
        // Immediately, from any member, without waiting for replication to settle.
        assert_eq!(value(c.get(on, "counter", false).unwrap()), Some(i.to_string()), "read on {on}");
    }
    let r = c
        .request(
            2,
            Request::Range(RangeRequest { key: "\0".into(), range_end: "\0".into(), ..Default::default() }),
        )
        .unwrap();
    assert!(matches!(r.body, ResponseBody::Range(ref rr) if rr.count == 1));
}

#[test]
fn a_member_whose_disk_lost_acknowledged_entries_stops_with_a_clear_error() {
    let mut c = Cluster::new(3, 14);
    let l = c.wait_for_leader();
    for i in 0..5 {
        c.put(l, &format!("k{i}"), "v").unwrap();
    }
    let f = (1..=3).find(|&id| id != l).unwrap();
    c.crash(f);
    // A disk that lied about fsync: everything after the first entry is gone.
    c.members.get_mut(&f).unwrap().disk.entries.truncate(1);
    c.members.get_mut(&f).unwrap().disk.hard_state.commit = 1;
    let m = c.members.get_mut(&f).unwrap();
    let mut config = m.config.clone();
    config.seed += 1;
    let mut core = cairn_core::Core::new(config, Some(support_recovered(&m.disk))).unwrap();
    // The leader's heartbeat commits what the member had acknowledged.
    let mut hb = cairn_core::eraftpb::Message::default();
    hb.set_msg_type(cairn_core::eraftpb::MessageType::MsgHeartbeat);
    hb.from = l;
    hb.to = f;
    hb.term = c.core(l).term();
    hb.commit = c.core(l).commit_index();
    core.step(hb);
    match core.advance() {
        Err(Error::Corrupt(why)) => assert!(why.contains("lost entries"), "{why}"),
        other => panic!("expected a fatal error, got {other:?}"),
    }
    assert!(core.advance().is_err(), "the member stays stopped");
}

fn support_recovered(d: &support::Disk) -> cairn_core::Recovered {
    cairn_core::Recovered {
        hard_state: d.hard_state.clone(),
        conf_state: d.conf_state.clone(),
        snapshot: d.snapshot.clone(),
        entries: d.entries.clone(),
    }
}

#[test]
fn a_proposal_delivered_twice_applies_once() {
    use std::cell::RefCell;
    use std::rc::Rc;
    let mut c = Cluster::new(3, 15);
    let l = c.wait_for_leader();
    let f = (1..=3).find(|&id| id != l).unwrap();
    c.put(l, "k", "v1").unwrap();
    // Keep a copy of the delete the follower forwards to the leader.
    let copies: Rc<RefCell<Vec<cairn_core::eraftpb::Message>>> = Rc::default();
    let seen = copies.clone();
    c.drop_if = Some(Box::new(move |m| {
        if m.get_msg_type() == cairn_core::eraftpb::MessageType::MsgPropose {
            seen.borrow_mut().push(m.clone());
        }
        false
    }));
    let del = Request::DeleteRange(cairn_core::kv::DeleteRangeRequest {
        key: support::b("k"),
        ..Default::default()
    });
    c.request(f, del).unwrap();
    c.drop_if = None;
    c.put(l, "k", "v2").unwrap();
    // The network delivers the old proposal again, after the newer put.
    let copy = copies.borrow().first().cloned().expect("the follower forwarded its proposal");
    c.deliver(copy);
    c.run_for(1_000);
    assert_eq!(
        value(c.get(l, "k", false).unwrap()),
        Some("v2".into()),
        "the copy must not delete the newer value"
    );
    c.assert_converged();
}

#[test]
fn a_paused_leader_does_not_serve_a_stale_read_from_old_acknowledgements() {
    // Found by the simulator (seed 4741): a leader serving a follower's forwarded read sends
    // heartbeats carrying the follower's read context; the acknowledgements are still in
    // flight when the leader pauses. Resumed in a later term it does not know of yet, it
    // starts a read of its own, then the old acknowledgements arrive: they must not count.
    use std::cell::RefCell;
    use std::rc::Rc;
    let mut c = Cluster::new(3, 16);
    c.core_mut(1).campaign();
    c.stabilize();
    assert!(c.core(1).is_leader());
    c.put(1, "k", "v1").unwrap();
    // Follower 2 reads through leader 1. The leader's own ack and the first follower's make
    // a quorum and serve that read; the second follower's ack is left over, still in flight.
    let acks: Rc<RefCell<Vec<cairn_core::eraftpb::Message>>> = Rc::default();
    let held_acks = acks.clone();
    let mut seen = 0;
    c.drop_if = Some(Box::new(move |m| {
        let ack = m.get_msg_type() == cairn_core::eraftpb::MessageType::MsgHeartbeatResponse
            && m.to == 1
            && !m.context.is_empty();
        if ack {
            seen += 1;
            if seen == 2 {
                held_acks.borrow_mut().push(m.clone());
                return true;
            }
        }
        false
    }));
    let range =
        || Request::Range(cairn_core::kv::RangeRequest { key: support::b("k"), ..Default::default() });
    let first = c.submit(2, range());
    assert!(c.wait(first).is_ok());
    assert_eq!(acks.borrow().len(), 1, "one acknowledgement left over");
    c.drop_if = None;
    // Leader 1 pauses; the others elect a new leader and overwrite the key.
    c.pause(1);
    c.run_for(3_000);
    let l2 = c.leader().expect("the others elect a new leader");
    assert_ne!(l2, 1);
    c.put(l2, "k", "v2").unwrap();
    // Leader 1 resumes: it starts a read round, then the old acknowledgements arrive, then
    // what was sent to it while paused.
    let held = c.resume(1);
    let read = c.submit_quiet(1, range());
    c.drain(1);
    for m in acks.borrow().iter() {
        c.deliver(m.clone());
    }
    // As a real loop does, the member acts on each message before taking the next.
    c.drain(1);
    for m in held {
        c.deliver(m);
    }
    match c.wait(read) {
        Ok(r) => match r.body {
            ResponseBody::Range(rr) => {
                let v = rr.kvs.first().map(|kv| kv.value.clone());
                assert_eq!(v, Some(bytes::Bytes::from_static(b"v2")), "a stale read was served")
            }
            other => panic!("{other:?}"),
        },
        Err(Error::TimedOut | Error::NoLeader) => {}
        Err(e) => panic!("unexpected {e}"),
    }
}

/// A single range, put or delete that can only fail is refused when submitted, as etcd's gRPC
/// layer refuses it, and costs no log entry: every front end gets the same checks.
#[test]
fn single_requests_that_can_only_fail_are_refused_before_the_log() {
    use cairn_core::kv::{DeleteRangeRequest, PutRequest, RangeRequest};
    let mut c = Cluster::new(3, 21);
    let l = c.wait_for_leader();
    let last = c.core(l).commit_index();
    let k = |s: &str| bytes::Bytes::from(s.to_string());
    let refused = [
        (Request::Range(RangeRequest::default()), Error::EmptyKey),
        (Request::DeleteRange(DeleteRangeRequest::default()), Error::EmptyKey),
        (Request::Put(PutRequest::default()), Error::EmptyKey),
        (
            Request::Put(PutRequest { key: k("k"), value: k("v"), ignore_value: true, ..Default::default() }),
            Error::ValueProvided,
        ),
        (
            Request::Put(PutRequest { key: k("k"), lease: 1, ignore_lease: true, ..Default::default() }),
            Error::LeaseProvided,
        ),
    ];
    for (request, err) in refused {
        assert_eq!(c.request(l, request.clone()).unwrap_err(), err, "{request:?}");
    }
    assert_eq!(c.core(l).commit_index(), last, "no entry was proposed");
    let ok = PutRequest { key: k("k"), ignore_value: true, ignore_lease: true, ..Default::default() };
    // Allowed by the checks; fails on apply as etcd's does (the key does not exist yet).
    assert_eq!(c.request(l, Request::Put(ok)).unwrap_err(), Error::KeyNotFound);
}
