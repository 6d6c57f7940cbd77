//! The v2 keys store as a replicated store: writes through any member, TTL expiry decided by
//! the leader with its wall clock and applied by every replica at the same index, expiry
//! surviving a change of leader, and v2 watches on a member that is not the writer's.

mod support;

use cairn_core::v2::{V2Action, V2Event, V2Get, V2Write};
use cairn_core::{Error, Request, ResponseBody};
use support::{wall_ns, Cluster};

fn set(path: &str, value: &str, expire_ns: Option<i64>) -> Request {
    Request::V2Write(V2Write::Set {
        path: path.into(),
        dir: false,
        value: value.into(),
        expire_ns,
        refresh: false,
    })
}

/// A local read of `path` on member `m`: the node's value, or None if it is not there.
fn read(c: &mut Cluster, m: u64, path: &str) -> Option<String> {
    let get = V2Get { path: path.into(), recursive: false, sorted: false, quorum: false };
    match c.request(m, Request::V2Get(get)) {
        Ok(r) => match r.body {
            ResponseBody::V2(Some(e)) => e.node.value,
            other => panic!("{other:?}"),
        },
        Err(Error::V2 { code: 100, .. }) => None,
        Err(e) => panic!("{e}"),
    }
}

fn last_event(c: &Cluster, m: u64, path: &str) -> Option<V2Event> {
    c.core(m).state().v2().scan(path, false, 1).ok().flatten().and_then(|_| {
        // The newest event on `path`: scan from each index until none is left.
        let v2 = c.core(m).state().v2();
        (1..=v2.index()).rev().find_map(|i| v2.scan(path, false, i).ok().flatten().filter(|e| e.index() == i))
    })
}

#[test]
fn a_ttl_key_expires_once_at_the_same_index_on_every_replica() {
    let mut c = Cluster::new(3, 21);
    let l = c.wait_for_leader();
    let follower = (1..=3).find(|&m| m != l).unwrap();
    // Written through a follower, with a deadline 2 s ahead by the cluster's wall clock.
    let expire = wall_ns(c.now_ms) + 2_000_000_000;
    c.request(follower, set("/lock", "held", Some(expire))).expect("set");
    c.request(follower, set("/keep", "forever", None)).expect("set");
    c.run_for(1_000);
    for m in 1..=3 {
        assert_eq!(read(&mut c, m, "/lock").as_deref(), Some("held"), "member {m} before the deadline");
    }
    c.run_for(2_000);
    let mut expired_at = vec![];
    for m in 1..=3 {
        assert_eq!(read(&mut c, m, "/lock"), None, "member {m} after the deadline");
        assert_eq!(read(&mut c, m, "/keep").as_deref(), Some("forever"));
        let e = last_event(&c, m, "/lock").expect("an event on /lock");
        assert_eq!(e.action, V2Action::Expire);
        expired_at.push((e.index(), c.core(m).state().v2().index()));
    }
    assert!(expired_at.windows(2).all(|w| w[0] == w[1]), "one expiry, one index: {expired_at:?}");
    c.assert_converged();
}

#[test]
fn a_new_leader_expires_what_the_old_one_did_not() {
    let mut c = Cluster::new(3, 22);
    let l = c.wait_for_leader();
    let expire = wall_ns(c.now_ms) + 1_500_000_000;
    c.request(l, set("/session", "s1", Some(expire))).expect("set");
    // The leader is cut off before the deadline; the others elect a new one, which expires the
    // key on its own beat.
    c.isolate(l);
    c.run_for(4_000);
    let others: Vec<u64> = (1..=3).filter(|&m| m != l).collect();
    for &m in &others {
        assert_eq!(read(&mut c, m, "/session"), None, "member {m}");
    }
    c.heal();
    c.run_for(2_000);
    assert_eq!(read(&mut c, l, "/session"), None, "the old leader catches up on the expiry");
    c.assert_converged();
}

#[test]
fn a_follower_never_expires_keys_by_its_own_clock() {
    // Expiry is proposed by the leader only; followers never remove keys by their own clocks,
    // even when theirs run far ahead.
    let mut c = Cluster::new(3, 23);
    let l = c.wait_for_leader();
    let expire = wall_ns(c.now_ms) + 60_000_000_000;
    c.request(l, set("/k", "v", Some(expire))).expect("set");
    for m in (1..=3).filter(|&m| m != l) {
        // Past the member's next expiry beat.
        let now = c.now_ms + 600;
        c.core_mut(m).set_wall_clock(expire + 1);
        c.core_mut(m).handle_timeout(now);
    }
    c.stabilize();
    for m in 1..=3 {
        assert_eq!(read(&mut c, m, "/k").as_deref(), Some("v"), "member {m}");
    }
}

#[test]
fn a_wait_on_one_member_fires_with_a_write_made_through_another() {
    let mut c = Cluster::new(3, 24);
    let l = c.wait_for_leader();
    let watcher = (1..=3).find(|&m| m != l).unwrap();
    let (start, first) = c.core_mut(watcher).v2_watch(7, "/cfg", true, false, 0).expect("watch");
    assert!(first.is_none());
    c.request(l, set("/cfg/a", "1", None)).expect("set");
    let fired: Vec<_> = c.members[&watcher].v2_watch_updates.clone();
    assert_eq!(fired.len(), 1, "{fired:?}");
    let (id, e) = &fired[0];
    assert_eq!(*id, 7);
    let e = e.as_ref().expect("an event");
    assert_eq!(e.node.key, "/cfg/a");
    assert_eq!(e.index(), start + 1);
    // One-shot: a second write fires nothing more.
    c.request(l, set("/cfg/b", "2", None)).expect("set");
    assert_eq!(c.members[&watcher].v2_watch_updates.len(), 1);
}
