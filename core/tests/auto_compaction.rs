//! Auto-compaction (etcd's `--auto-compaction-mode periodic|revision`): the leader compacts on
//! schedule through the log, keeping the history asked for, the same on every member.

mod support;

use cairn_core::config::AutoCompaction;
use support::Cluster;

/// Writes one key every 100 ms for `ms`; returns (time, revision) after each write.
fn write_for(c: &mut Cluster, l: u64, ms: u64) -> Vec<(u64, i64)> {
    let mut written = vec![];
    for i in 0..ms / 100 {
        let r = c.put(l, &format!("k{}", i % 4), "v").unwrap();
        written.push((c.now_ms, r.header.revision));
        c.run_for(100);
    }
    written
}

#[test]
fn periodic_keeps_the_retention_of_history_and_compacts_the_rest() {
    let retention_ms = 2_000;
    let mut c = Cluster::with_config(3, 31, |cfg| {
        cfg.auto_compaction = Some(AutoCompaction::Periodic { retention_ms })
    });
    let l = c.wait_for_leader();
    let written = write_for(&mut c, l, 8_000);
    let now = c.now_ms;
    let compacted = c.core(l).state().mvcc().compacted_revision();
    assert!(compacted > 1, "never compacted");
    // Everything written within the retention (less one sample interval) is still there...
    let kept_from = written.iter().find(|(t, _)| *t + retention_ms - 200 >= now).unwrap().1;
    assert!(compacted <= kept_from, "compacted to {compacted}, but {kept_from} is within the retention");
    // ...and compaction keeps up: nothing older than two retentions is left.
    let gone_by = written.iter().rev().find(|(t, _)| *t + 2 * retention_ms + 200 <= now).unwrap().1;
    assert!(compacted >= gone_by, "compacted to {compacted}; {gone_by} is two retentions old");
    c.stabilize();
    for id in 1..=3 {
        assert_eq!(c.core(id).state().mvcc().compacted_revision(), compacted);
    }
    c.assert_converged();
}

#[test]
fn revision_mode_keeps_the_last_revisions() {
    let auto = AutoCompaction::Revision { retain: 10, interval_ms: 1_000 };
    let mut c = Cluster::with_config(3, 32, |cfg| cfg.auto_compaction = Some(auto));
    let l = c.wait_for_leader();
    write_for(&mut c, l, 5_000);
    let mvcc = c.core(l).state().mvcc();
    let (current, compacted) = (mvcc.current_revision(), mvcc.compacted_revision());
    // Compacted within the last interval (10 writes) to 10 behind the revision then.
    assert!(compacted > 1);
    assert!((10..=21).contains(&(current - compacted)), "current {current}, compacted {compacted}");
}

#[test]
fn no_compaction_without_the_setting() {
    let mut c = Cluster::new(3, 33);
    let l = c.wait_for_leader();
    write_for(&mut c, l, 3_000);
    assert_eq!(c.core(l).state().mvcc().compacted_revision(), 0);
}
