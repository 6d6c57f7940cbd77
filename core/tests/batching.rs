//! Proposal batching (`Config::proposal_batches_max`) and `Persist::must_sync`: what a member
//! hands raft-rs and its driver under concurrent writes.

mod support;

use std::cell::RefCell;
use std::rc::Rc;

use cairn_core::eraftpb::{Message, MessageType};
use cairn_core::kv::PutRequest;
use cairn_core::{Config, Core, Error, Request, RequestId};
use support::{b, Cluster};

fn put(key: &str) -> Request {
    Request::Put(PutRequest { key: b(key), value: b("v"), ..Default::default() })
}

/// Records every message the cluster delivers (dropping none).
fn record(c: &mut Cluster) -> Rc<RefCell<Vec<Message>>> {
    let seen = Rc::new(RefCell::new(Vec::new()));
    let log = seen.clone();
    c.drop_if = Some(Box::new(move |m: &Message| {
        log.borrow_mut().push(m.clone());
        false
    }));
    seen
}

/// Entries carrying proposals (not the leader's empty term entries) in each of `msgs` that is
/// an append, in order; appends without such entries are left out.
fn proposals_per_append<'a>(msgs: impl IntoIterator<Item = &'a Message>) -> Vec<usize> {
    msgs.into_iter()
        .filter(|m| m.get_msg_type() == MessageType::MsgAppend)
        .map(|m| m.entries.iter().filter(|e| !e.data.is_empty()).count())
        .filter(|&n| n > 0)
        .collect()
}

/// `proposals_per_append` of the appends from `from` to `to`.
fn append_sizes(seen: &[Message], from: u64, to: u64) -> Vec<usize> {
    proposals_per_append(seen.iter().filter(|m| m.from == from && m.to == to))
}

fn followers(c: &Cluster, leader: u64) -> Vec<u64> {
    (1..=3).filter(|&id| id != leader && c.is_up(id)).collect()
}

/// A 3-member cluster (seed `seed`) allowing `batches` proposal batches in flight, its leader,
/// and its two followers, paused: nothing the leader sends them is acknowledged yet.
fn leader_with_paused_followers(seed: u64, batches: usize) -> (Cluster, u64, Vec<u64>) {
    let mut c = Cluster::with_config(3, seed, |cfg| cfg.proposal_batches_max = batches);
    let l = c.wait_for_leader();
    let fs = followers(&c, l);
    for &f in &fs {
        c.pause(f);
    }
    (c, l, fs)
}

fn answered_ok(c: &mut Cluster, rids: &[RequestId]) {
    for &rid in rids {
        c.wait(rid).unwrap_or_else(|e| panic!("request {rid} failed: {e:?}"));
    }
}

#[test]
fn writes_submitted_together_go_in_one_append() {
    let mut c = Cluster::new(3, 11);
    let l = c.wait_for_leader();
    let seen = record(&mut c);
    let rids: Vec<RequestId> = (0..10).map(|i| c.submit_quiet(l, put(&format!("k{i}")))).collect();
    c.stabilize();
    answered_ok(&mut c, &rids);
    for f in followers(&c, l) {
        assert_eq!(append_sizes(&seen.borrow(), l, f), vec![10], "appends from {l} to {f}");
    }
}

#[test]
fn a_follower_forwards_its_writes_as_one_proposal() {
    let mut c = Cluster::new(3, 12);
    let l = c.wait_for_leader();
    let f = followers(&c, l)[0];
    let seen = record(&mut c);
    let rids: Vec<RequestId> = (0..5).map(|i| c.submit_quiet(f, put(&format!("k{i}")))).collect();
    c.stabilize();
    answered_ok(&mut c, &rids);
    let proposals: Vec<usize> = seen
        .borrow()
        .iter()
        .filter(|m| m.get_msg_type() == MessageType::MsgPropose && m.from == f)
        .map(|m| m.entries.len())
        .collect();
    assert_eq!(proposals, vec![5], "one forwarded proposal carrying every write");
}

#[test]
fn the_leader_holds_writes_while_batches_are_in_flight() {
    let (mut c, l, fs) = leader_with_paused_followers(13, 1);
    // Nothing in flight: a lone write goes at once.
    let first = c.submit(l, put("a"));
    // Its batch is in flight (the followers have not acknowledged it): later writes wait.
    let later: Vec<RequestId> = ["b", "c", "d"].iter().map(|k| c.submit(l, put(k))).collect();
    let mut held = Vec::new();
    for &f in &fs {
        held.extend(c.resume(f));
    }
    let sizes = proposals_per_append(&held);
    assert_eq!(sizes, vec![1, 1], "only the first write was sent to each follower: {sizes:?}");
    let seen = record(&mut c);
    for m in held {
        c.deliver(m);
    }
    c.stabilize();
    answered_ok(&mut c, &[first]);
    answered_ok(&mut c, &later);
    for &f in &fs {
        // The first write's append (delivered late), then one append with the three held.
        assert_eq!(append_sizes(&seen.borrow(), l, f), vec![1, 3], "appends from {l} to {f}");
    }
    c.assert_converged();
}

#[test]
fn with_room_for_two_batches_the_second_does_not_wait() {
    let (mut c, l, fs) = leader_with_paused_followers(14, 2);
    let mut rids = vec![c.submit(l, put("a")), c.submit(l, put("b"))];
    rids.extend(["c", "d"].iter().map(|k| c.submit(l, put(k))));
    let mut held = Vec::new();
    for &f in &fs {
        held.extend(c.resume(f));
    }
    let mut sizes = proposals_per_append(&held);
    sizes.sort_unstable();
    assert_eq!(sizes, vec![1, 1, 1, 1], "two one-write batches to each follower, the rest held");
    for m in held {
        c.deliver(m);
    }
    c.stabilize();
    answered_ok(&mut c, &rids);
    c.assert_converged();
}

#[test]
fn writes_held_by_a_deposed_leader_are_answered_and_none_is_applied_twice() {
    let mut c = Cluster::with_config(3, 15, |cfg| cfg.proposal_batches_max = 1);
    let l = c.wait_for_leader();
    c.isolate(l);
    // The first goes out (to nobody) and stays in flight; the rest are held behind it.
    let rids: Vec<RequestId> = (0..4).map(|i| c.submit(l, put(&format!("h{i}")))).collect();
    // The others elect a leader; the old one steps down (check quorum) and lets its held
    // writes go: to a leader it knows of, or answered with an error.
    c.run_for(5_000);
    c.heal();
    c.run_for(5_000);
    let new = c.wait_for_leader();
    assert_ne!(new, l, "the isolated leader was replaced");
    let mut ok = 0;
    for rid in rids {
        match c.wait(rid) {
            Ok(_) => ok += 1,
            Err(Error::NoLeader | Error::NotLeader { .. } | Error::TimedOut) => {}
            Err(e) => panic!("unexpected error {e:?}"),
        }
    }
    c.run_for(1_000);
    c.assert_converged();
    // Whatever was acknowledged is there, exactly once.
    let revision = c.core(new).state().mvcc().current_revision();
    // Revision 1 is the empty store; each acknowledged write adds one.
    assert!(revision > ok, "acknowledged writes applied: revision {revision}, {ok} ok");
}

/// A member booted alone, without pre-vote, so that its first election changes term and vote.
fn lone_candidate() -> Core {
    let mut config = Config::new(1, vec![1, 2, 3], 7);
    config.pre_vote = false;
    Core::new(config, None).unwrap()
}

#[test]
fn a_new_term_or_vote_must_be_synced() {
    let mut core = lone_candidate();
    let mut synced_vote = false;
    for now in (0..10_000).step_by(100) {
        core.handle_timeout(now);
        while let Some(p) = core.advance().unwrap().persist {
            if p.hard_state.as_ref().is_some_and(|hs| hs.vote == 1 && hs.term >= 1) {
                assert!(p.must_sync, "a vote must be durable before it is sent: {p:?}");
                synced_vote = true;
            }
            core.on_persisted(p.number);
        }
        if synced_vote {
            return;
        }
    }
    panic!("the member never campaigned");
}

#[test]
fn entries_must_be_synced_and_a_commit_index_alone_need_not_be() {
    let mut c = Cluster::new(3, 16);
    let l = c.wait_for_leader();
    let f = followers(&c, l)[0];
    let rid = c.submit_quiet(l, put("x"));
    let mut answered = false;
    // By hand: the leader's ready carries the entry; the follower's too; then the commit.
    let out = c.core_mut(l).advance().unwrap();
    let lp = out.persist.expect("the leader persists the new entry");
    assert!(lp.must_sync && !lp.entries.is_empty());
    let to_f: Vec<Message> = out.messages.into_iter().filter(|m| m.to == f).collect();
    assert!(!to_f.is_empty(), "the leader sends before its own fsync");
    for m in to_f {
        c.core_mut(f).step(m);
    }
    let fo = c.core_mut(f).advance().unwrap();
    let fp = fo.persist.expect("the follower persists the entry");
    assert!(fp.must_sync && !fp.entries.is_empty(), "{fp:?}");
    c.core_mut(f).on_persisted(fp.number);
    for m in fp.messages {
        c.core_mut(l).step(m);
    }
    // Acknowledged by a majority (the follower and, once persisted, the leader): committed.
    c.core_mut(l).on_persisted(lp.number);
    let mut commit_only = Vec::new();
    for _ in 0..4 {
        let out = c.core_mut(l).advance().unwrap();
        answered |= out.responses.iter().any(|(id, r)| *id == rid && r.is_ok());
        if let Some(p) = out.persist {
            if p.entries.is_empty() && p.hard_state.is_some() {
                commit_only.push(p.must_sync);
            }
            c.core_mut(l).on_persisted(p.number);
        }
        for m in out.messages.into_iter().filter(|m| m.to == f) {
            c.core_mut(f).step(m);
        }
        let fo = c.core_mut(f).advance().unwrap();
        if let Some(p) = fo.persist {
            if p.entries.is_empty() && p.hard_state.is_some() {
                commit_only.push(p.must_sync);
            }
            c.core_mut(f).on_persisted(p.number);
        }
    }
    assert!(!commit_only.is_empty(), "the commit index moved on the leader and the follower");
    assert!(commit_only.iter().all(|&s| !s), "a commit index alone needs no fsync: {commit_only:?}");
    assert!(answered, "the write was acknowledged once committed");
}
