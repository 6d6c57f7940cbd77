//! The corruption check: the leader sends its state machine digest; a follower whose own digest
//! at that index differs raises CORRUPT, after which the cluster refuses key-value requests
//! until the alarm is lifted. Healthy clusters never raise it (the simulator checks that under
//! every fault class).

mod support;

use cairn_core::alarm::{Alarm, AlarmAction, AlarmKind};
use cairn_core::{Error, Forward, ForwardBody, Request};
use support::Cluster;

fn check(c: &mut Cluster, from: u64, to: u64, index: u64, digest: u64) {
    c.core_mut(to).receive_forward(Forward {
        from,
        to,
        id: 0,
        body: ForwardBody::DigestCheck { index, digest },
    });
    c.stabilize();
}

#[test]
fn a_digest_that_differs_raises_corrupt_and_the_cluster_stops_changing_until_disarmed() {
    let mut c = Cluster::new(3, 41);
    let l = c.wait_for_leader();
    for i in 0..10 {
        c.put(l, &format!("k{i}"), "v").unwrap();
    }
    // Healthy: checks go out every 5 s and find nothing.
    c.run_for(12_000);
    for id in 1..=3 {
        assert!(c.core(id).state().alarms().is_empty());
        assert_eq!(c.core(id).counters().corruption_detected, 0);
    }
    let f = (1..=3).find(|&id| id != l).unwrap();
    let other = (1..=3).find(|&id| id != l && id != f).unwrap();
    let applied = c.core(f).applied_index();
    let real = c.core(f).state().applied_digest();

    // The right digest, or a wrong one from a member that is not the leader: nothing.
    check(&mut c, l, f, applied, real);
    check(&mut c, other, f, applied, real ^ 1);
    assert!(c.core(f).state().alarms().is_empty());

    // A check for an index the follower has not applied yet waits for it.
    check(&mut c, l, f, applied + 3, 0xdead);
    assert!(c.core(f).state().alarms().is_empty());
    for i in 0..3 {
        c.put(l, &format!("more{i}"), "v").unwrap();
    }
    c.stabilize();
    let raised = vec![Alarm { member: f, kind: AlarmKind::Corrupt }];
    for id in 1..=3 {
        assert_eq!(c.core(id).state().alarms().iter().copied().collect::<Vec<_>>(), raised);
    }
    assert_eq!(c.core(f).counters().corruption_detected, 1);
    assert_eq!(c.put(l, "k", "v").unwrap_err(), Error::CorruptCluster);
    assert_eq!(c.get(other, "k0", true).unwrap_err(), Error::CorruptCluster);
    assert_eq!(Error::CorruptCluster.to_string(), "etcdserver: corrupt cluster");

    let disarm =
        Request::Alarm { action: AlarmAction::Deactivate, member: f, kind: Some(AlarmKind::Corrupt) };
    c.request(l, disarm).unwrap();
    c.put(l, "k", "v").unwrap();
    c.assert_converged();
}
