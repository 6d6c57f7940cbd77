//! The corruption check: the leader sends its state machine digest, every member answers with
//! its own at that index, and the leader decides by majority which members are corrupt (itself
//! included), raising CORRUPT for each; the cluster then refuses key-value requests until the
//! alarm is lifted. Healthy clusters never raise it (the simulator checks that under every
//! fault class).

mod support;

use cairn_core::alarm::{Alarm, AlarmAction, AlarmKind};
use cairn_core::{Error, Forward, ForwardBody, Request};
use support::Cluster;

/// A three-member cluster checked every 300 ms, with some writes, and its leader.
fn cluster(seed: u64) -> (Cluster, u64, u64, u64) {
    let mut c = Cluster::with_config(3, seed, |config| config.corrupt_check_ms = Some(300));
    let l = c.wait_for_leader();
    for i in 0..10 {
        c.put(l, &format!("k{i}"), "v").unwrap();
    }
    let mut followers = (1..=3).filter(|&id| id != l);
    let (a, b) = (followers.next().unwrap(), followers.next().unwrap());
    (c, l, a, b)
}

/// Starts a round whose checks the followers never see (they are paused, as if slow), then
/// hands the leader the answers `replies`, as those members would send them.
fn round_with_replies(c: &mut Cluster, l: u64, followers: [u64; 2], replies: &[(u64, u64)]) {
    let before = c.core(l).corruption_check().map(|(index, _)| index);
    c.put(l, "moves-the-index", "v").unwrap();
    for f in followers {
        c.pause(f);
    }
    c.run_for(400);
    let (index, _) = c.core(l).corruption_check().expect("a round started");
    assert_ne!(Some(index), before);
    for &(from, digest) in replies {
        reply(c, l, from, index, digest);
    }
    for f in followers {
        for m in c.resume(f) {
            c.deliver(m);
        }
    }
    c.stabilize();
}

/// Hands the leader `from`'s answer to its check at `index`, as `from` would send it.
fn reply(c: &mut Cluster, l: u64, from: u64, index: u64, digest: u64) {
    c.core_mut(l).receive_forward(Forward {
        from,
        to: l,
        id: 0,
        body: ForwardBody::DigestReply { index, digest },
    });
}

fn alarms(c: &Cluster, id: u64) -> Vec<Alarm> {
    c.core(id).state().alarms().iter().copied().collect()
}

#[test]
fn a_healthy_cluster_answers_every_check_and_raises_nothing() {
    let (mut c, l, a, b) = cluster(41);
    c.run_for(3_000);
    let (index, digests) = c.core(l).corruption_check().expect("the leader checks");
    assert_eq!(digests.len(), 3, "every member answered the check at {index}: {digests:?}");
    assert!(digests.values().all(|d| *d == digests[&l]));
    for id in [l, a, b] {
        assert!(alarms(&c, id).is_empty());
        assert_eq!(c.core(id).counters().corruption_detected, 0);
    }
}

#[test]
fn a_follower_that_disagrees_with_the_majority_is_named_and_the_cluster_stops_until_disarmed() {
    let (mut c, l, a, b) = cluster(42);
    // The leader's digest is its own at the round's index: b agrees with it, a does not.
    round_with_replies(&mut c, l, [a, b], &[]);
    let (index, digests) = c.core(l).corruption_check().unwrap();
    let leader_digest = digests[&l];
    for (from, digest) in [(b, leader_digest), (a, leader_digest ^ 1)] {
        reply(&mut c, l, from, index, digest);
    }
    c.stabilize();
    let raised = vec![Alarm { member: a, kind: AlarmKind::Corrupt }];
    for id in [l, a, b] {
        assert_eq!(alarms(&c, id), raised);
    }
    assert_eq!(c.core(l).counters().corruption_detected, 1);
    assert_eq!(c.put(l, "k", "v").unwrap_err(), Error::CorruptCluster);
    assert_eq!(c.get(b, "k0", true).unwrap_err(), Error::CorruptCluster);
    assert_eq!(Error::CorruptCluster.to_string(), "etcdserver: corrupt cluster");

    let disarm =
        Request::Alarm { action: AlarmAction::Deactivate, member: a, kind: Some(AlarmKind::Corrupt) };
    c.request(l, disarm).unwrap();
    c.put(l, "k", "v").unwrap();
    c.assert_converged();
}

#[test]
fn a_leader_the_followers_agree_against_is_named_itself() {
    let (mut c, l, a, b) = cluster(43);
    round_with_replies(&mut c, l, [a, b], &[]);
    let (index, digests) = c.core(l).corruption_check().unwrap();
    let other = digests[&l] ^ 0xff;
    // The first answer alone decides nothing (one each); the second makes a majority.
    reply(&mut c, l, a, index, other);
    c.stabilize();
    assert!(alarms(&c, l).is_empty(), "one against one: no majority yet");
    reply(&mut c, l, b, index, other);
    c.stabilize();
    assert_eq!(alarms(&c, a), vec![Alarm { member: l, kind: AlarmKind::Corrupt }]);
}

#[test]
fn with_no_majority_the_leader_names_itself() {
    let (mut c, l, a, b) = cluster(44);
    round_with_replies(&mut c, l, [a, b], &[]);
    let (index, digests) = c.core(l).corruption_check().unwrap();
    let mine = digests[&l];
    for (from, digest) in [(a, mine ^ 1), (b, mine ^ 2)] {
        reply(&mut c, l, from, index, digest);
    }
    c.stabilize();
    assert_eq!(alarms(&c, b), vec![Alarm { member: l, kind: AlarmKind::Corrupt }]);
}

#[test]
fn answers_from_non_members_or_for_another_index_are_ignored() {
    let (mut c, l, a, b) = cluster(45);
    round_with_replies(&mut c, l, [a, b], &[]);
    let (index, digests) = c.core(l).corruption_check().unwrap();
    let wrong = digests[&l] ^ 1;
    for (from, at) in [(99, index), (a, index + 1), (b, index.saturating_sub(1))] {
        reply(&mut c, l, from, at, wrong);
    }
    c.stabilize();
    assert!(alarms(&c, l).is_empty());
}
