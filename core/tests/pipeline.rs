//! The driver pipeline without any runtime: what waits for durability waits, the fast path
//! needs nothing durable, and a member's own snapshot is recorded only after its file is written.

use cairn_core::kv::PutRequest;
use cairn_core::{Config, Core, DiskWriteKind, Effects, Pipeline, Request};

fn put(key: &str) -> Request {
    Request::Put(PutRequest { key: key.to_string().into(), value: "v".into(), ..Default::default() })
}

/// A single-member pipeline that has elected itself and made its first writes durable.
fn leader(snapshot_entries: u64) -> Pipeline {
    let mut config = Config::new(1, vec![1], 7);
    config.snapshot_entries = snapshot_entries;
    config.snapshot_catch_up_entries = 1;
    let mut p = Pipeline::new(Core::new(config, None).unwrap());
    p.core_mut().campaign();
    drain_durably(&mut p);
    assert!(p.core().is_leader());
    p
}

fn pump(p: &mut Pipeline) -> Effects {
    p.pump(&mut |_, _| {}).unwrap()
}

/// Pumps, reporting every write durable at once and every snapshot file written, until the
/// pipeline asks nothing more; returns the responses seen.
fn drain_durably(p: &mut Pipeline) -> usize {
    let mut responses = 0;
    let mut fx = pump(p);
    while !fx.is_empty() {
        responses += fx.responses.len();
        let last = fx.writes.iter().filter_map(|w| w.ticket).max();
        let file = fx.snapshot_file.is_some();
        let mut more = Effects::default();
        if let Some(t) = last {
            more = p.on_durable(t);
        }
        if file {
            more.writes.extend(p.on_snapshot_file_written(Ok(())).unwrap().writes);
        }
        responses += more.responses.len();
        fx = pump(p);
        fx.writes.extend(more.writes);
    }
    responses
}

#[test]
fn a_write_is_answered_only_after_its_entries_are_durable() {
    let mut p = leader(1000);
    p.core_mut().submit(10, put("a"));
    let fx = pump(&mut p);
    assert!(fx.responses.is_empty(), "nothing answered before the disk says durable");
    let tickets: Vec<u64> = fx.writes.iter().filter_map(|w| w.ticket).collect();
    assert_eq!(tickets.len(), 1, "one persist waits: {:?}", fx.writes);
    assert!(fx.writes[0].sync, "entries must be fsynced");
    assert_eq!(p.unacked_persists(), 1);
    // Pumping again changes nothing while the write is not durable.
    let again = pump(&mut p);
    assert!(again.responses.is_empty());
    let _ = p.on_durable(tickets[0]);
    assert_eq!(p.unacked_persists(), 0);
    let fx = pump(&mut p);
    assert_eq!(fx.responses.len(), 1, "answered once durable");
    assert_eq!(fx.responses[0].0, 10);
}

#[test]
fn a_commit_index_alone_takes_the_fast_path_only_when_nothing_waits() {
    let mut p = leader(1000);
    p.core_mut().submit(10, put("a"));
    let fx = pump(&mut p);
    let ticket = fx.writes.iter().find_map(|w| w.ticket).unwrap();
    let _ = p.on_durable(ticket);
    // Applying the entry moves the commit index: a write without fsync, acknowledged at once.
    let fx = pump(&mut p);
    assert!(!fx.writes.is_empty(), "the commit index is written");
    for w in &fx.writes {
        assert!(w.ticket.is_none() && !w.sync, "commit-only writes need no fsync: {w:?}");
    }
    assert_eq!(p.unacked_persists(), 0);
}

#[test]
fn an_own_snapshot_is_recorded_only_after_its_file_is_written() {
    let mut p = leader(5);
    let mut file = None;
    for i in 0..20 {
        p.core_mut().submit(100 + i, put(&format!("k{i}")));
        let mut fx = pump(&mut p);
        loop {
            assert!(
                !fx.writes.iter().any(|w| matches!(w.kind, DiskWriteKind::RecordSnapshot { .. })),
                "no record before the file"
            );
            if let Some(s) = fx.snapshot_file.take() {
                file = Some(s);
            }
            let Some(t) = fx.writes.iter().filter_map(|w| w.ticket).max() else { break };
            let _ = p.on_durable(t);
            fx = pump(&mut p);
        }
        if file.is_some() {
            break;
        }
    }
    let snapshot = file.expect("a snapshot after 5 entries");
    let fx = p.on_snapshot_file_written(Ok(())).unwrap();
    match &fx.writes[..] {
        [w] => match &w.kind {
            DiskWriteKind::RecordSnapshot { snapshot: s, .. } => {
                assert_eq!(s.get_metadata().index, snapshot.get_metadata().index);
                assert!(w.sync, "a snapshot record is fsynced");
            }
            other => panic!("expected the record, got {other:?}"),
        },
        other => panic!("expected one write, got {other:?}"),
    }
    assert!(p.on_snapshot_file_written(Ok(())).is_err(), "no second report for one file");
}

#[test]
fn a_failed_snapshot_file_is_fatal() {
    let mut p = leader(3);
    for i in 0..10 {
        p.core_mut().submit(100 + i, put(&format!("k{i}")));
        let mut fx = pump(&mut p);
        while let Some(t) = fx.writes.iter().filter_map(|w| w.ticket).max() {
            if fx.snapshot_file.is_some() {
                let err = p.on_snapshot_file_written(Err("disk full".into())).unwrap_err();
                assert!(err.to_string().contains("disk full"), "{err}");
                return;
            }
            let _ = p.on_durable(t);
            fx = pump(&mut p);
        }
        if fx.snapshot_file.is_some() {
            assert!(p.on_snapshot_file_written(Err("disk full".into())).is_err());
            return;
        }
    }
    panic!("no snapshot was made");
}

#[test]
fn writes_drained_durably_are_all_answered() {
    let mut p = leader(4);
    for i in 0..30 {
        p.core_mut().submit(100 + i, put(&format!("k{}", i % 3)));
    }
    assert_eq!(drain_durably(&mut p), 30);
}

#[test]
fn a_membership_change_reaches_the_disk_inside_a_persist_that_is_fsynced() {
    let mut p = leader(1000);
    p.core_mut()
        .submit(10, Request::MemberAdd { id: 2, peer_urls: vec!["http://m2:2380".into()], learner: true });
    let mut carried = vec![];
    let mut answered = false;
    for _ in 0..20 {
        let fx = pump(&mut p);
        answered |= fx.responses.iter().any(|(id, r)| *id == 10 && r.is_ok());
        for w in &fx.writes {
            if let DiskWriteKind::Persist(persist) = &w.kind {
                if let Some(cs) = &persist.conf_state {
                    assert!(w.sync, "a membership change must be fsynced: {w:?}");
                    assert!(persist.must_sync);
                    carried.push(cs.clone());
                }
            }
        }
        if let Some(t) = fx.writes.iter().filter_map(|w| w.ticket).max() {
            let _ = p.on_durable(t);
        }
        if answered && fx.is_empty() {
            break;
        }
    }
    assert!(answered, "the learner was added");
    assert_eq!(carried.len(), 1, "one persist carries the new membership: {carried:?}");
    assert_eq!(carried[0].voters, vec![1]);
    assert_eq!(carried[0].learners, vec![2]);
}
