//! The watch checker against a reference history made by a real `StateMachine`: sessions that
//! keep etcd's watch guarantees, and one mutation away from breaking each of them.

use std::collections::BTreeMap;

use bytes::Bytes;
use cairn_core::kv::{DeleteRangeRequest, Event, PutRequest, RequestOp, TxnRequest};
use cairn_core::request::Command;
use cairn_core::state_machine::StateMachine;
use cairn_sim_tests::observe::Violation;
use cairn_sim_tests::watch_check::{check_session, check_watches, key_in_range, WatchEnd, WatchSession};

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn put_op(key: &str, value: &str) -> PutRequest {
    PutRequest { key: b(key), value: b(value), ..PutRequest::default() }
}

/// Revisions 2..=6: put a=1; txn put a=2, b=1; put c=1; delete a; put b=2.
fn reference() -> BTreeMap<i64, Vec<Event>> {
    let txn = TxnRequest {
        compare: vec![],
        success: vec![RequestOp::Put(put_op("a", "2")), RequestOp::Put(put_op("b", "1"))],
        failure: vec![],
    };
    let commands = [
        Command::Put(put_op("a", "1")),
        Command::Txn(txn),
        Command::Put(put_op("c", "1")),
        Command::DeleteRange(DeleteRangeRequest { key: b("a"), ..DeleteRangeRequest::default() }),
        Command::Put(put_op("b", "2")),
    ];
    let mut sm = StateMachine::new();
    let mut reference: BTreeMap<i64, Vec<Event>> = BTreeMap::new();
    for (i, c) in commands.iter().enumerate() {
        for e in sm.apply(i as u64 + 1, 1, b"", c, &cairn_core::Caller::Member, 1).events {
            reference.entry(e.kv.mod_revision).or_default().push(e);
        }
    }
    assert_eq!(reference.keys().copied().collect::<Vec<_>>(), vec![2, 3, 4, 5, 6]);
    reference
}

/// The reference's events at `revisions`, in range, in order: what a correct watch receives.
fn delivered(
    reference: &BTreeMap<i64, Vec<Event>>,
    key: &str,
    range_end: &str,
    revisions: &[i64],
) -> Vec<Event> {
    revisions
        .iter()
        .flat_map(|r| {
            reference[r].iter().filter(|e| key_in_range(key.as_bytes(), range_end.as_bytes(), &e.kv.key))
        })
        .cloned()
        .collect()
}

fn session(key: &str, range_end: &str, start_revision: i64, received: Vec<Event>) -> WatchSession {
    WatchSession {
        client: 7,
        watch: 3,
        key: b(key),
        range_end: b(range_end),
        start_revision,
        received,
        end: WatchEnd::Open,
    }
}

/// Every key.
fn all(start_revision: i64, received: Vec<Event>) -> WatchSession {
    session("\0", "\0", start_revision, received)
}

#[track_caller]
fn assert_violates(
    reference: &BTreeMap<i64, Vec<Event>>,
    s: &WatchSession,
    property: &str,
    detail_has: &str,
) -> Violation {
    match check_session(reference, s) {
        Ok(()) => panic!("expected a {property} violation, got none"),
        Err(v) => {
            assert_eq!(v.property, property, "{v}");
            assert!(v.detail.contains(detail_has), "expected {detail_has:?} in: {v}");
            assert!(v.detail.starts_with("client 7 watch 3 "), "{v}");
            v
        }
    }
}

// ---- Sessions that keep the guarantees ----

#[test]
fn whole_history_on_every_key() {
    let r = reference();
    check_session(&r, &all(1, delivered(&r, "\0", "\0", &[2, 3, 4, 5, 6]))).unwrap();
}

#[test]
fn one_key_from_a_start_revision() {
    let r = reference();
    // "a" changes at 2, 3, 5; from 3 on that is 3 (its half of the txn) and 5.
    check_session(&r, &session("a", "", 3, delivered(&r, "a", "", &[3, 5]))).unwrap();
}

#[test]
fn a_key_range_skips_revisions_outside_it() {
    let r = reference();
    // [a, c): revision 4 (put c) has nothing in range, so it is not owed.
    check_session(&r, &session("a", "c", 2, delivered(&r, "a", "c", &[2, 3, 5, 6]))).unwrap();
}

#[test]
fn a_session_that_stopped_early_or_started_now() {
    let r = reference();
    check_session(&r, &all(2, delivered(&r, "\0", "\0", &[2, 3]))).unwrap();
    check_session(&r, &all(0, delivered(&r, "\0", "\0", &[5, 6]))).unwrap();
    check_session(&r, &all(7, vec![])).unwrap();
}

#[test]
fn compacted_before_it_could_start() {
    let r = reference();
    let s = WatchSession { end: WatchEnd::Compacted { compact_revision: 4 }, ..all(2, vec![]) };
    check_session(&r, &s).unwrap();
}

#[test]
fn check_watches_finds_the_bad_session() {
    let r = reference();
    let good = all(1, delivered(&r, "\0", "\0", &[2, 3]));
    let bad = WatchSession { watch: 4, ..all(1, delivered(&r, "\0", "\0", &[2, 4])) };
    check_watches(&r, &[good.clone(), good.clone()]).unwrap();
    let v = check_watches(&r, &[good, bad]).unwrap_err();
    assert!(v.detail.starts_with("client 7 watch 4 "), "{v}");
}

// ---- Each guarantee broken ----

#[test]
fn a_gap() {
    let r = reference();
    let s = all(1, delivered(&r, "\0", "\0", &[2, 4, 5]));
    let v = assert_violates(&r, &s, "Watch Reliable", "missed revision 3");
    assert!(v.detail.contains("before revision 4"), "{v}");
}

#[test]
fn a_gap_before_the_first_event() {
    let r = reference();
    let s = session("a", "", 2, delivered(&r, "a", "", &[3, 5]));
    assert_violates(&r, &s, "Watch Reliable", "missed revision 2");
}

#[test]
fn an_event_delivered_twice() {
    let r = reference();
    let mut received = delivered(&r, "\0", "\0", &[2, 3]);
    received.insert(1, received[0].clone());
    assert_violates(&r, &all(2, received), "Watch Unique", "twice");
}

#[test]
fn a_revision_delivered_again() {
    let r = reference();
    let s = all(2, delivered(&r, "\0", "\0", &[2, 3, 4, 3]));
    assert_violates(&r, &s, "Watch Unique", "revision 3 delivered again, after revision 4");
}

#[test]
fn revisions_out_of_order() {
    let r = reference();
    let s = all(2, delivered(&r, "\0", "\0", &[2, 4, 3, 5]));
    assert_violates(&r, &s, "Watch Ordered", "revision 3 delivered after revision 4");
}

#[test]
fn events_of_a_revision_out_of_order() {
    let r = reference();
    let mut received = delivered(&r, "\0", "\0", &[2, 3]);
    received.swap(1, 2);
    assert_violates(
        &r,
        &all(2, received),
        "Watch Ordered",
        "revision 3 delivered in another order than made",
    );
}

#[test]
fn a_torn_revision() {
    let r = reference();
    let mut received = delivered(&r, "\0", "\0", &[2, 3, 4]);
    received.remove(2);
    assert_violates(&r, &all(2, received), "Watch Atomic", "revision 3 delivered torn: 1 of its 2 events");
}

#[test]
fn a_torn_revision_at_the_end() {
    let r = reference();
    let mut received = delivered(&r, "\0", "\0", &[2, 3]);
    received.pop();
    assert_violates(&r, &all(2, received), "Watch Atomic", "missing put {\"b\"=\"1\"");
}

#[test]
fn a_wrong_prev_kv() {
    let r = reference();
    let mut received = delivered(&r, "\0", "\0", &[2, 3, 4, 5]);
    // The delete of "a" at 5 must carry a=2 (from revision 3) as its previous value.
    let delete = received.last_mut().unwrap();
    delete.prev_kv.as_mut().unwrap().value = b("1");
    let v = assert_violates(&r, &all(2, received), "Watch Accurate", "wrong event for \"a\"");
    assert!(v.detail.contains("prev {\"a\"=\"2\""), "{v}");
    assert!(v.detail.contains("prev {\"a\"=\"1\""), "{v}");
}

#[test]
fn a_missing_prev_kv() {
    let r = reference();
    let mut received = delivered(&r, "\0", "\0", &[2, 3]);
    received[1].prev_kv = None;
    assert_violates(&r, &all(2, received), "Watch Accurate", "wrong event for \"a\"");
}

#[test]
fn an_event_for_a_revision_no_member_applied() {
    let r = reference();
    let mut received = delivered(&r, "\0", "\0", &[2, 3, 4, 5, 6]);
    let mut extra = received.last().unwrap().clone();
    extra.kv.mod_revision = 7;
    received.push(extra);
    assert_violates(&r, &all(2, received), "Watch Accurate", "at revision 7, which no member applied");
}

#[test]
fn an_event_outside_the_watched_range() {
    let r = reference();
    // A watch on "a" sent the whole txn at revision 3.
    let mut received = delivered(&r, "a", "", &[2]);
    received.extend(r[&3].iter().cloned());
    assert_violates(&r, &session("a", "", 2, received), "Watch Accurate", "outside the watched range");
}

#[test]
fn an_event_below_the_start_revision() {
    let r = reference();
    let s = all(3, delivered(&r, "\0", "\0", &[2, 3]));
    assert_violates(&r, &s, "Watch Accurate", "before the start revision");
}

#[test]
fn an_event_nobody_made() {
    let r = reference();
    let mut received = delivered(&r, "\0", "\0", &[2]);
    let mut ghost = received[0].clone();
    ghost.kv.key = b("zz");
    received.push(ghost);
    assert_violates(&r, &all(2, received), "Watch Accurate", "but at revision 2 members applied");
}

#[test]
fn compacted_although_nothing_it_needed_was() {
    let r = reference();
    let s = WatchSession {
        end: WatchEnd::Compacted { compact_revision: 3 },
        ..all(2, delivered(&r, "\0", "\0", &[2, 3]))
    };
    assert_violates(
        &r,
        &s,
        "Watch Reliable",
        "ended as compacted at revision 3, yet it needed only revisions from 4 on",
    );
}
