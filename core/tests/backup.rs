//! Backups (`Request::Backup`) and restoring one as a new cluster (`backup::restore`).

mod support;

use cairn_core::backup::restore;
use cairn_core::membership::Member;
use cairn_core::state_machine::StateMachine;
use cairn_core::{Config, Core, Error, Request, ResponseBody};
use support::{b, Cluster};

fn backup(c: &mut Cluster, id: u64) -> (bytes::Bytes, u64, i64) {
    match c.request(id, Request::Backup).expect("backup").body {
        ResponseBody::Backup { data, index, revision, .. } => (data, index, revision),
        other => panic!("a backup answered {other:?}"),
    }
}

#[test]
fn a_backup_holds_everything_applied_before_it_and_nothing_after() {
    let mut c = Cluster::new(3, 11);
    let l = c.wait_for_leader();
    let f = (1..=3).find(|&id| id != l).unwrap();
    for i in 0..50 {
        c.put(l, &format!("k{i:02}"), "v").unwrap();
    }
    let granted = c.request(l, Request::LeaseGrant { id: 0, ttl_secs: 60 }).unwrap();
    let ResponseBody::LeaseGrant { id: lease, .. } = granted.body else { panic!("{granted:?}") };
    c.put_lease(l, "leased", "v", lease).unwrap();
    // Applied on the follower too before it is asked (stabilize delivers the commit).
    c.stabilize();
    let revision_before = c.core(f).state().mvcc().current_revision();

    let (data, index, revision) = backup(&mut c, f);
    c.put(l, "after", "v").unwrap();

    assert_eq!(revision, revision_before);
    assert!(index >= 52, "backup at index {index}");
    let sm = StateMachine::decode(&data).expect("a backup decodes");
    assert_eq!(sm.mvcc().len(), 51);
    assert!(sm.mvcc().kv_at(b"k49").is_some());
    assert!(sm.mvcc().kv_at(b"after").is_none(), "a write after the backup is not in it");
    assert_eq!(sm.mvcc().kv_at(b"leased").unwrap().lease, lease);
    assert!(sm.leases().get(lease).is_some());

    // Two backups asked at once are both answered, by one snapshot or two.
    let r1 = c.submit_quiet(l, Request::Backup);
    let r2 = c.submit_quiet(l, Request::Backup);
    c.stabilize();
    for r in [r1, r2] {
        assert!(matches!(c.wait(r).unwrap().body, ResponseBody::Backup { .. }));
    }
}

#[test]
fn a_restored_backup_is_the_same_first_state_on_every_new_member() {
    let mut c = Cluster::new(1, 12);
    let l = c.wait_for_leader();
    for i in 0..10 {
        c.put(l, &format!("k{i}"), &format!("v{i}")).unwrap();
    }
    let (data, _, revision) = backup(&mut c, l);

    let members: Vec<Member> = [21, 22, 23]
        .iter()
        .map(|&id| Member { id, peer_urls: vec![format!("http://n{id}:2380")], ..Default::default() })
        .collect();
    let first = restore(&data, &members).expect("restores");
    let again = restore(&data, &members).expect("restores");
    assert_eq!(first.snapshot, again.snapshot, "every new member starts from the same snapshot");
    let snap = first.snapshot.clone().unwrap();
    assert_eq!((snap.get_metadata().index, snap.get_metadata().term), (3, 1));
    assert_eq!(snap.get_metadata().get_conf_state().voters, vec![21, 22, 23]);

    let core = Core::new(Config::new(22, vec![21, 22, 23], 5), Some(first)).expect("boots from the restore");
    let sm = core.state();
    assert_eq!(sm.mvcc().current_revision(), revision, "revisions carry over");
    assert_eq!(sm.mvcc().kv_at(b"k3").unwrap().value, b("v3"));
    assert_eq!(sm.members().keys().copied().collect::<Vec<_>>(), vec![21, 22, 23]);
    assert_eq!(sm.removed_ids().count(), 0);

    // What is not a backup is refused, and so is a member list it cannot stand on.
    assert!(matches!(restore(&data[..data.len() / 2], &members), Err(Error::Corrupt(_))));
    assert!(matches!(restore(b"not a backup", &members), Err(Error::Corrupt(_))));
    assert!(restore(&data, &[]).is_err());
    assert!(restore(&data, &[members[0].clone(), members[0].clone()]).is_err());
}
