//! Watches served by a member: history from any uncompacted revision, then live changes, with
//! no gap and no repeat even when the member lags or catches up by snapshot.

mod support;

use cairn_core::kv::{CompactionRequest, Event, EventKind};
use cairn_core::{Error, Request, WatchRequest, WatchUpdate};
use support::{b, Cluster};

fn all_keys(start_revision: i64) -> WatchRequest {
    WatchRequest { key: b("\0"), range_end: b("\0"), start_revision, prev_kv: true, ..Default::default() }
}

/// Everything watch `id` on `member` received: the initial history, then its updates.
fn received(c: &Cluster, member: u64, id: u64, initial: &[Event]) -> Vec<Event> {
    let mut all = initial.to_vec();
    for (wid, u) in &c.members[&member].watch_updates {
        if *wid == id {
            match u {
                WatchUpdate::Events(evs) => all.extend(evs.iter().cloned()),
                WatchUpdate::Compacted { .. } => panic!("unexpected compaction"),
            }
        }
    }
    all
}

fn revisions(events: &[Event]) -> Vec<i64> {
    events.iter().map(|e| e.kv.mod_revision).collect()
}

#[test]
fn watch_from_an_old_revision_replays_history_then_follows_live_changes() {
    let mut c = Cluster::new(3, 21);
    let l = c.wait_for_leader();
    for i in 0..5 {
        c.put(l, &format!("a{i}"), "1").unwrap();
    }
    let initial = c.core_mut(l).watch(1, all_keys(3)).unwrap().events;
    assert_eq!(revisions(&initial), vec![3, 4, 5, 6]);
    c.put(l, "a0", "2").unwrap();
    c.request(
        l,
        Request::DeleteRange(cairn_core::kv::DeleteRangeRequest { key: b("a1"), ..Default::default() }),
    )
    .unwrap();
    let got = received(&c, l, 1, &initial);
    assert_eq!(revisions(&got), vec![3, 4, 5, 6, 7, 8]);
    let emitted: Vec<&Event> = c.members[&l].events.iter().filter(|e| e.kv.mod_revision >= 3).collect();
    assert_eq!(got.iter().collect::<Vec<_>>(), emitted, "the watch saw exactly what the member applied");
    assert_eq!(got[4].prev_kv.as_ref().unwrap().value, "1");
    assert_eq!(got[5].kind, EventKind::Delete);
}

#[test]
fn a_watcher_on_a_member_that_catches_up_by_snapshot_misses_nothing() {
    let mut c = Cluster::with_config(3, 22, |cfg| {
        cfg.snapshot_entries = 10;
        cfg.snapshot_catch_up_entries = 2;
    });
    let l = c.wait_for_leader();
    let lagging = (1..=3).find(|&id| id != l).unwrap();
    c.put(l, "k", "0").unwrap();
    c.run_for(300);
    let initial = c.core_mut(lagging).watch(7, all_keys(0)).unwrap().events;
    assert!(initial.is_empty());
    c.isolate(lagging);
    for i in 1..=30 {
        c.put(l, "k", &i.to_string()).unwrap();
    }
    c.heal();
    c.run_for(3_000);
    assert_eq!(c.members[&lagging].disk.snapshots_installed, 1, "the member caught up by snapshot");
    let got = received(&c, lagging, 7, &initial);
    assert_eq!(revisions(&got), (3..=32).collect::<Vec<_>>(), "every revision, once, in order");
}

#[test]
fn a_watch_ahead_of_a_lagging_member_waits_for_its_start_revision() {
    let mut c = Cluster::new(3, 23);
    let l = c.wait_for_leader();
    let lagging = (1..=3).find(|&id| id != l).unwrap();
    c.isolate(lagging);
    for i in 0..5 {
        c.put(l, "k", &i.to_string()).unwrap();
    }
    // The member is at revision 1; the watch asks for revision 5 on.
    let initial = c.core_mut(lagging).watch(1, all_keys(5)).unwrap().events;
    assert!(initial.is_empty());
    c.heal();
    c.run_for(1_000);
    assert_eq!(revisions(&received(&c, lagging, 1, &initial)), vec![5, 6]);
}

#[test]
fn watch_from_a_compacted_revision_fails_and_filters_apply() {
    let mut c = Cluster::new(3, 24);
    let l = c.wait_for_leader();
    for i in 0..4 {
        c.put(l, "k", &i.to_string()).unwrap();
    }
    c.request(l, Request::Compact(CompactionRequest { revision: 4, physical: false })).unwrap();
    assert_eq!(c.core_mut(l).watch(1, all_keys(3)).unwrap_err(), Error::Compacted { compacted_revision: 4 });
    let req = WatchRequest { key: b("k"), no_delete: true, start_revision: 4, ..Default::default() };
    let initial = c.core_mut(l).watch(2, req).unwrap().events;
    assert_eq!(revisions(&initial), vec![4, 5]);
    assert!(initial.iter().all(|e| e.prev_kv.is_none()), "prev_kv only when asked");
    c.request(
        l,
        Request::DeleteRange(cairn_core::kv::DeleteRangeRequest { key: b("k"), ..Default::default() }),
    )
    .unwrap();
    c.put(l, "k", "again").unwrap();
    assert_eq!(revisions(&received(&c, l, 2, &initial)), vec![4, 5, 7], "the delete at 6 is filtered out");
    assert!(c.core_mut(l).cancel_watch(2));
    assert!(!c.core_mut(l).cancel_watch(2));
}

/// A watch replaying history a page at a time while writes go on: pages hold whole revisions
/// within the budget, live changes reach it only after its last page, and what it receives in
/// all is every change from its start revision, once each, in order.
#[test]
fn history_comes_a_page_at_a_time_and_live_changes_follow_the_last_page() {
    let mut c = Cluster::with_config(3, 25, |config| config.watch_page_bytes = 300);
    let l = c.wait_for_leader();
    for i in 0..30 {
        c.put(l, &format!("k{}", i % 7), "value").unwrap();
    }
    let mut first = c.core_mut(l).watch(1, all_keys(1)).unwrap();
    assert!(first.more, "30 changes do not fit 300 bytes");
    let mut got = std::mem::take(&mut first.events);
    let mut pages = 1;
    let mut more = first.more;
    while more {
        // A write between pages: the watch must not get it live before its last page.
        c.put(l, "live", &pages.to_string()).unwrap();
        assert!(
            c.members[&l].watch_updates.iter().all(|(id, _)| *id != 1),
            "no live update while the watch is still paging"
        );
        let page = c.core_mut(l).watch_next_page(1).unwrap();
        let size: usize = page.events.iter().map(|e| e.kv.key.len() + e.kv.value.len() + 64).sum();
        let revisions: std::collections::BTreeSet<i64> =
            page.events.iter().map(|e| e.kv.mod_revision).collect();
        assert!(size <= 300 || revisions.len() == 1, "a page within its budget: {size} bytes");
        got.extend(page.events);
        more = page.more;
        pages += 1;
        assert!(pages < 100, "paging ends");
    }
    assert!(pages >= 5, "{pages} pages");
    assert_eq!(c.core_mut(l).watch_next_page(1).unwrap(), cairn_core::WatchPage::default());
    c.put(l, "after", "1").unwrap();
    c.run_for(100);
    let got = received(&c, l, 1, &got);
    let current = c.core_mut(l).state().mvcc().current_revision();
    assert_eq!(revisions(&got), (2..=current).collect::<Vec<_>>(), "every change once, in order");
    assert_eq!(got.last().unwrap().kv.key, b("after"));
}

/// A compaction past where a paging watch has got to closes it, as etcd cancels a slow watcher
/// overtaken by compaction.
#[test]
fn a_compaction_past_a_paging_watch_closes_it() {
    let mut c = Cluster::with_config(3, 26, |config| config.watch_page_bytes = 100);
    let l = c.wait_for_leader();
    for i in 0..10 {
        c.put(l, "k", &i.to_string()).unwrap();
    }
    assert!(c.core_mut(l).watch(1, all_keys(1)).unwrap().more);
    c.request(l, Request::Compact(CompactionRequest { revision: 8, physical: false })).unwrap();
    assert_eq!(c.core_mut(l).watch_next_page(1).unwrap_err(), Error::Compacted { compacted_revision: 8 });
    assert!(!c.core_mut(l).cancel_watch(1), "the watch is closed");
}
