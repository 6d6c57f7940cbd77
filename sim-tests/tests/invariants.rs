//! The Raft invariants against hand-built observation sequences: for each property, one run of
//! observations that keeps it and one that breaks it. The end-of-run checks run on real
//! `StateMachine`s.

use bytes::Bytes;
use cairn_core::kv::{CompactionRequest, DeleteRangeRequest, Event, PutRequest, RequestOp, TxnRequest};
use cairn_core::request::Command;
use cairn_core::state_machine::StateMachine;
use cairn_sim_tests::invariants::{AckedWrite, Invariants};
use cairn_sim_tests::observe::{hash_bytes, EntryId, Observation, Role, Violation};

// ---- Observations, as a script ----

fn e(index: u64, term: u64, data: &str) -> EntryId {
    EntryId { index, term, data_hash: hash_bytes(data.as_bytes()) }
}

fn boot(member: u64) -> Observation {
    Observation::Restarted { member, snapshot_index: 0, log: vec![] }
}

fn leader(member: u64, term: u64) -> Observation {
    Observation::Role { member, term, role: Role::Leader, leader: member }
}

fn follower(member: u64, term: u64, leader: u64) -> Observation {
    Observation::Role { member, term, role: Role::Follower, leader }
}

fn candidate(member: u64, term: u64) -> Observation {
    Observation::Role { member, term, role: Role::Candidate, leader: 0 }
}

fn append(member: u64, entries: &[EntryId]) -> Observation {
    Observation::Appended { member, entries: entries.to_vec() }
}

fn commit(member: u64, commit: u64) -> Observation {
    Observation::Committed { member, commit }
}

/// The digest every member reaches at `index` in these scripts (`history` names the run of
/// entries applied, so that a divergent history gets another digest).
fn digest(history: &str, index: u64) -> u64 {
    hash_bytes(format!("{history}/{index}").as_bytes())
}

fn apply(member: u64, index: u64, term: u64) -> Observation {
    Observation::Applied { member, index, term, digest: digest("main", index) }
}

fn crash(member: u64) -> Observation {
    Observation::Crashed { member }
}

fn restart(member: u64, snapshot_index: u64, log: &[EntryId]) -> Observation {
    Observation::Restarted { member, snapshot_index, log: log.to_vec() }
}

fn snapshot(member: u64, index: u64, term: u64) -> Observation {
    Observation::SnapshotInstalled { member, index, term }
}

fn events(member: u64, events: &[Event]) -> Observation {
    Observation::Events { member, events: events.to_vec() }
}

/// Feeds `script` in order; the first violation.
fn run(script: &[Observation]) -> Result<Invariants, Violation> {
    let mut inv = Invariants::new();
    for (at, obs) in script.iter().enumerate() {
        inv.observe(at as u64 * 10, obs)?;
    }
    Ok(inv)
}

#[track_caller]
fn assert_holds(script: &[Observation]) -> Invariants {
    match run(script) {
        Ok(inv) => inv,
        Err(v) => panic!("expected no violation, got: {v}"),
    }
}

#[track_caller]
fn assert_violates(script: &[Observation], property: &str, detail_has: &str) -> Violation {
    match run(script) {
        Ok(_) => panic!("expected a {property} violation, got none"),
        Err(v) => {
            assert_eq!(v.property, property, "{v}");
            assert!(v.detail.contains(detail_has), "expected {detail_has:?} in: {v}");
            v
        }
    }
}

/// Three members; member 1 leads term 1 and replicates `a`, `b` to everyone; all commit and
/// apply them.
fn healthy_start() -> Vec<Observation> {
    let log = [e(1, 1, ""), e(2, 1, "a"), e(3, 1, "b")];
    let mut s = vec![boot(1), boot(2), boot(3), candidate(1, 1), leader(1, 1), append(1, &log[..1])];
    s.extend([follower(2, 1, 1), follower(3, 1, 1), append(2, &log[..1]), append(3, &log[..1])]);
    s.extend([append(1, &log[1..]), append(2, &log[1..]), append(3, &log[1..])]);
    s.extend([commit(1, 3), apply(1, 3, 1), commit(2, 3), commit(3, 3), apply(2, 3, 1), apply(3, 3, 1)]);
    s
}

// ---- Election Safety (§5.2) ----

mod election_safety {
    use super::*;

    #[test]
    fn one_leader_per_term_across_terms() {
        let mut s = healthy_start();
        s.extend([candidate(2, 2), leader(2, 2), follower(1, 2, 2), follower(3, 2, 2), leader(3, 3)]);
        assert_holds(&s);
    }

    #[test]
    fn two_members_leading_one_term() {
        let s = [boot(1), boot(2), leader(1, 3), leader(2, 3)];
        let v = assert_violates(&s, "Election Safety", "term 3 has two leaders: member 1");
        assert_eq!(v.section, "5.2");
    }

    #[test]
    fn a_follower_naming_another_leader_of_the_term() {
        let s = [boot(1), boot(2), boot(3), leader(1, 3), follower(3, 3, 2)];
        assert_violates(&s, "Election Safety", "member 2 (named leader by member 3)");
    }
}

// ---- Log Matching (§5.3) ----

mod log_matching {
    use super::*;

    #[test]
    fn holds_through_truncation_snapshot_and_restart() {
        let mut s = healthy_start();
        // Member 1, still leader of term 1, appends c to itself only, then loses leadership.
        s.extend([append(1, &[e(4, 1, "c")]), candidate(2, 2), leader(2, 2)]);
        // Member 2 leads term 2 without c (uncommitted) and overwrites it on member 1.
        s.extend([
            append(2, &[e(4, 2, ""), e(5, 2, "d")]),
            follower(1, 2, 2),
            append(1, &[e(4, 2, ""), e(5, 2, "d")]),
        ]);
        s.extend([commit(2, 5), apply(2, 5, 2), commit(1, 5), apply(1, 5, 2)]);
        // Member 3 was away: it catches up by snapshot, then by entries.
        s.extend([follower(3, 2, 2), snapshot(3, 5, 2), apply(3, 5, 2), append(3, &[e(6, 2, "e")])]);
        s.push(append(2, &[e(6, 2, "e")]));
        // Member 1 crashes having synced only up to index 5; its recovered log ends there.
        s.extend([
            crash(1),
            restart(1, 0, &[e(1, 1, ""), e(2, 1, "a"), e(3, 1, "b"), e(4, 2, ""), e(5, 2, "d")]),
        ]);
        s.extend([follower(1, 2, 2), append(1, &[e(6, 2, "e"), e(7, 2, "f")])]);
        assert_holds(&s);
    }

    #[test]
    fn a_restart_from_a_snapshot_continues_the_logs_hash_chain() {
        let mut s = healthy_start();
        s.extend([append(1, &[e(4, 1, "c")]), append(2, &[e(4, 1, "c")]), append(3, &[e(4, 1, "c")])]);
        // Member 2 snapshotted at 3 (what it applied), crashes, and boots from the snapshot.
        s.extend([crash(2), restart(2, 3, &[e(4, 1, "c")]), follower(2, 1, 1)]);
        // Its log goes on from the committed log's chain: no false difference with member 1's.
        s.extend([append(1, &[e(5, 1, "d")]), append(2, &[e(5, 1, "d")]), commit(1, 5), apply(1, 5, 1)]);
        s.extend([commit(2, 5), apply(2, 5, 1)]);
        let inv = assert_holds(&s);
        let (m1, m2) = (inv.logs().member(1), inv.logs().member(2));
        assert_eq!(m1.floor(), 5);
        assert_eq!(inv.logs().committed(5).unwrap().chain, m1.chain_at(5).unwrap());
        assert!(m2.chain_at(5).unwrap().is_some());
        assert_eq!(m2.chain_at(5), m1.chain_at(5));
    }

    #[test]
    fn two_entries_with_the_same_index_and_term() {
        let s = [boot(1), boot(2), append(1, &[e(1, 1, "a")]), append(2, &[e(1, 1, "x")])];
        let v = assert_violates(&s, "Log Matching", "two different entries at index 1 in term 1");
        assert_eq!(v.section, "5.3");
    }

    #[test]
    fn one_entry_over_two_different_prefixes() {
        // Same (3, 2, c) on both, but index 2 differs: the append's consistency check failed.
        let s = [
            boot(1),
            boot(2),
            append(1, &[e(1, 1, "a"), e(2, 1, "b"), e(3, 2, "c")]),
            append(2, &[e(1, 1, "a"), e(2, 2, "y"), e(3, 2, "c")]),
        ];
        assert_violates(&s, "Log Matching", "their logs differ before it: first at index 2");
    }

    #[test]
    fn different_prefixes_found_across_a_snapshot() {
        // Member 2 boots from a snapshot at 2 of the committed log; member 3 appended (3, 2, c)
        // on top of a log that never held the committed (2, 1, b).
        let mut s = vec![boot(1), boot(2), boot(3), leader(1, 1)];
        s.extend([append(1, &[e(1, 1, "a"), e(2, 1, "b")]), commit(1, 2), apply(1, 2, 1)]);
        s.extend([snapshot(2, 2, 1), append(2, &[e(3, 2, "c")])]);
        s.extend([append(3, &[e(1, 1, "a"), e(2, 2, "z"), e(3, 2, "c")])]);
        assert_violates(&s, "Log Matching", "members 2 and 3 both hold (index 3, term 2");
    }

    #[test]
    fn an_append_leaving_a_hole() {
        let s = [boot(1), append(1, &[e(1, 1, "a")]), append(1, &[e(3, 1, "c")])];
        assert_violates(&s, "Log Matching", "its log ends at index 1");
    }

    #[test]
    fn terms_going_back_along_a_log() {
        let s = [boot(1), append(1, &[e(1, 2, "a")]), append(1, &[e(2, 1, "b")])];
        assert_violates(&s, "Log Matching", "terms go back");
    }

    #[test]
    fn a_recovered_entry_nobody_appended() {
        let s = [boot(1), append(1, &[e(1, 1, "a")]), crash(1), restart(1, 0, &[e(1, 1, "a"), e(2, 1, "?")])];
        assert_violates(&s, "Log Matching", "which no member ever appended");
    }
}

// ---- Leader Completeness (§5.4) ----

mod leader_completeness {
    use super::*;

    #[test]
    fn a_new_leader_holding_every_committed_entry() {
        let mut s = healthy_start();
        s.extend([append(1, &[e(4, 1, "c")]), append(3, &[e(4, 1, "c")]), commit(1, 4)]);
        // Member 3 has c (committed but not applied anywhere yet) and wins term 2.
        s.extend([candidate(3, 2), leader(3, 2), append(3, &[e(5, 2, "")])]);
        assert_holds(&s);
    }

    #[test]
    fn a_new_leader_missing_a_committed_entry() {
        let mut s = healthy_start();
        s.extend([append(1, &[e(4, 1, "c")]), append(2, &[e(4, 1, "c")]), commit(1, 4), apply(1, 4, 1)]);
        // Member 3 never got c, yet leads term 2.
        s.extend([candidate(3, 2), leader(3, 2), append(3, &[e(4, 2, "")])]);
        let v = assert_violates(&s, "Leader Completeness", "member 3 leads term 2 holding (index 4, term 2");
        assert_eq!(v.section, "5.4");
    }

    #[test]
    fn a_new_leader_whose_log_is_too_short() {
        let mut s = healthy_start();
        let tail = [e(4, 1, "c"), e(5, 1, "d"), e(6, 1, "e")];
        s.extend([append(1, &tail), append(2, &tail), append(3, &tail[..1])]);
        // Committed to 6, applied (content known) only to 4.
        s.extend([commit(1, 6), apply(1, 4, 1)]);
        // The Role comes after the leader's own empty entry: the check waits for both. Index 5
        // holds something (its committed content is not known yet); index 6 is missing.
        s.extend([candidate(3, 2), append(3, &[e(5, 2, "")]), leader(3, 2)]);
        assert_violates(&s, "Leader Completeness", "member 3 leads term 2 without index 6");
    }

    #[test]
    fn entries_committed_in_a_later_term_need_not_be_in_a_late_leader() {
        // Member 3 campaigns in term 2; before its votes arrive, member 1 wins term 3 and
        // commits an entry member 3 lacks. Member 3 then becomes leader of term 2: allowed.
        let mut s = vec![boot(1), boot(2), boot(3), boot(4), boot(5), candidate(3, 2), leader(1, 3)];
        let log = [e(1, 3, ""), e(2, 3, "a")];
        s.extend([append(1, &log), append(2, &log), append(4, &log), commit(1, 2), apply(1, 2, 3)]);
        s.extend([leader(3, 2), append(3, &[e(1, 2, "")])]);
        assert_holds(&s);
    }

    #[test]
    fn an_applied_entry_overwritten() {
        let mut s = healthy_start();
        s.push(append(2, &[e(3, 2, "x")]));
        assert_violates(&s, "Leader Completeness", "member 2 appended (index 3, term 2");
    }
}

// ---- State Machine Safety (§5.4.3) ----

mod state_machine_safety {
    use super::*;

    #[test]
    fn same_states_across_members_and_a_replay() {
        let mut s = healthy_start();
        s.extend([
            crash(2),
            restart(2, 0, &[e(1, 1, ""), e(2, 1, "a"), e(3, 1, "b")]),
            apply(2, 2, 1),
            apply(2, 3, 1),
        ]);
        assert_holds(&s);
    }

    #[test]
    fn two_members_in_different_states_at_one_index() {
        let mut s = healthy_start();
        s.truncate(s.len() - 1);
        s.push(Observation::Applied { member: 3, index: 3, term: 1, digest: digest("other", 3) });
        let v = assert_violates(&s, "State Machine Safety", "member 3 reached state");
        assert!(v.detail.contains("member 1 reached"), "{v}");
        assert_eq!(v.section, "5.4.3");
    }

    #[test]
    fn a_replay_after_restart_reaching_another_state() {
        let mut s = healthy_start();
        s.extend([crash(2), restart(2, 0, &[e(1, 1, ""), e(2, 1, "a"), e(3, 1, "b")])]);
        s.push(Observation::Applied { member: 2, index: 3, term: 1, digest: digest("replay", 3) });
        assert_violates(&s, "State Machine Safety", "member 1 reached");
    }

    #[test]
    fn two_members_applying_different_entries() {
        // Member 2 holds another term's entry at index 2 (no Log Matching conflict) and applies it.
        let mut s = vec![boot(1), boot(2), leader(1, 1), append(1, &[e(1, 1, ""), e(2, 1, "a")])];
        s.extend([commit(1, 2), apply(1, 2, 1), append(2, &[e(1, 1, ""), e(2, 2, "x")]), commit(2, 2)]);
        s.push(Observation::Applied { member: 2, index: 2, term: 2, digest: digest("other", 2) });
        assert_violates(&s, "State Machine Safety", "members 1 and 2 applied different entries at index 2");
    }

    #[test]
    fn applying_an_entry_the_log_does_not_hold() {
        let s = [boot(1), append(1, &[e(1, 1, "")]), apply(1, 2, 1)];
        assert_violates(&s, "State Machine Safety", "member 1 applied index 2, which its log does not hold");
    }

    #[test]
    fn a_snapshot_ending_at_an_uncommitted_entry() {
        let mut s = healthy_start();
        s.push(snapshot(3, 3, 2));
        assert_violates(&s, "State Machine Safety", "installed a snapshot ending at index 3 in term 2");
    }

    #[test]
    fn events_build_one_reference_history() {
        let (_, applied) = store();
        let mut s = vec![boot(1), boot(2)];
        s.extend([events(1, &applied[0]), events(2, &applied[0]), events(2, &applied[1])]);
        s.extend([events(1, &[applied[1].clone(), applied[2].clone()].concat())]);
        let inv = assert_holds(&s);
        let reference = inv.reference_events();
        assert_eq!(reference.keys().copied().collect::<Vec<_>>(), vec![2, 3, 4]);
        assert_eq!(reference[&3], applied[1]);
    }

    #[test]
    fn two_members_emitting_different_events_at_one_revision() {
        let (_, applied) = store();
        let mut other = applied[1].clone();
        other[0].kv.value = Bytes::from_static(b"other");
        let s = [
            boot(1),
            boot(2),
            events(1, &applied[0]),
            events(2, &applied[0]),
            events(1, &applied[1]),
            events(2, &other),
        ];
        assert_violates(&s, "State Machine Safety", "members 1 and 2 emitted different events at revision 3");
    }

    #[test]
    fn a_member_skipping_a_revision() {
        let (_, applied) = store();
        let s = [boot(1), events(1, &applied[0]), events(1, &applied[2])];
        assert_violates(&s, "State Machine Safety", "member 1 emitted revision 4 right after revision 2");
    }
}

// ---- Durability (Figure 2) ----

mod durability {
    use super::*;

    fn started(member: u64) -> Observation {
        Observation::SyncStarted { member }
    }

    fn synced(member: u64) -> Observation {
        Observation::Synced { member }
    }

    fn log() -> [EntryId; 3] {
        [e(1, 1, ""), e(2, 1, "a"), e(3, 1, "b")]
    }

    #[test]
    fn synced_entries_survive_a_crash_unsynced_ones_may_not() {
        let s = [
            boot(1),
            append(1, &log()),
            started(1),
            synced(1),
            append(1, &[e(4, 1, "c")]),
            crash(1),
            restart(1, 0, &log()),
        ];
        assert_holds(&s);
        // A snapshot covering the synced entries will do too.
        let s = [boot(1), append(1, &log()), started(1), synced(1), crash(1), restart(1, 3, &[])];
        assert_holds(&s);
    }

    #[test]
    fn a_synced_entry_lost_in_a_crash() {
        let s = [boot(1), append(1, &log()), started(1), synced(1), crash(1), restart(1, 0, &log()[..2])];
        let v = assert_violates(&s, "Durability", "member 1 synced its log through (index 3, term 1");
        assert!(v.detail.contains("but recovered a log ending at (index 2, term 1"), "{v}");
        assert_eq!(v.section, "Figure 2");
    }

    #[test]
    fn an_overwrite_after_the_sync_lowers_what_must_survive() {
        // The overwrite at 2 was not synced: either version may come back, but index 1 must.
        let s = [boot(1), append(1, &log()), started(1), synced(1), append(1, &[e(2, 2, "x")]), crash(1)];
        assert_holds(&[s.to_vec(), vec![restart(1, 0, &log())]].concat());
        assert_holds(&[s.to_vec(), vec![restart(1, 0, &[e(1, 1, ""), e(2, 2, "x")])]].concat());
        assert_violates(
            &[s.to_vec(), vec![restart(1, 0, &[])]].concat(),
            "Durability",
            "recovered only its snapshot",
        );
    }

    #[test]
    fn an_append_while_an_fsync_runs_is_not_covered_by_it() {
        let s = [boot(1), append(1, &log()[..2]), started(1), append(1, &log()[2..]), synced(1), crash(1)];
        assert_holds(&[s.to_vec(), vec![restart(1, 0, &log()[..2])]].concat());
        assert_violates(
            &[s.to_vec(), vec![restart(1, 0, &log()[..1])]].concat(),
            "Durability",
            "synced its log through (index 2, term 1",
        );
    }

    #[test]
    fn a_synced_overwrite_undone_by_a_crash() {
        let s = [
            boot(1),
            append(1, &log()),
            append(1, &[e(2, 2, "x")]),
            started(1),
            synced(1),
            crash(1),
            restart(1, 0, &log()),
        ];
        assert_violates(&s, "Durability", "but recovered (index 2, term 1");
    }
}

// ---- End of run: No Lost Write, and the final store against the reference ----

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn put(key: &str, value: &str) -> Command {
    Command::Put(PutRequest { key: b(key), value: b(value), ..PutRequest::default() })
}

fn delete(key: &str) -> Command {
    Command::DeleteRange(DeleteRangeRequest { key: b(key), ..DeleteRangeRequest::default() })
}

/// A store built by applying `commands` as log entries 1, 2, ..; with the events of each.
fn apply_all(commands: &[Command]) -> (StateMachine, Vec<Vec<Event>>) {
    let mut sm = StateMachine::new();
    let mut applied = Vec::new();
    for (i, c) in commands.iter().enumerate() {
        applied.push(sm.apply(i as u64 + 1, 1, b"", c, &cairn_core::Caller::Member, 1).events);
    }
    (sm, applied)
}

/// Revisions 2..=5: put a=1; txn put a=2, b=1; delete a; put a=3.
fn store() -> (StateMachine, Vec<Vec<Event>>) {
    let txn = Command::Txn(TxnRequest {
        compare: vec![],
        success: vec![
            RequestOp::Put(PutRequest { key: b("a"), value: b("2"), ..PutRequest::default() }),
            RequestOp::Put(PutRequest { key: b("b"), value: b("1"), ..PutRequest::default() }),
        ],
        failure: vec![],
    });
    apply_all(&[put("a", "1"), txn, delete("a"), put("a", "3")])
}

fn acked(key: &str, value: Option<&str>, revision: i64) -> AckedWrite {
    AckedWrite { key: b(key), value: value.map(b), revision }
}

/// Invariants that saw two members emit `applied`.
fn observed(applied: &[Vec<Event>]) -> Invariants {
    let mut s = vec![boot(1), boot(2)];
    for evs in applied {
        s.extend([events(1, evs), events(2, evs)]);
    }
    assert_holds(&s)
}

fn all_acked() -> Vec<AckedWrite> {
    vec![
        acked("a", Some("1"), 2),
        acked("a", Some("2"), 3),
        acked("b", Some("1"), 3),
        acked("a", None, 4),
        acked("a", Some("3"), 5),
    ]
}

mod no_lost_write {
    use super::*;

    #[test]
    fn every_acknowledged_write_is_kept() {
        let (sm, applied) = store();
        observed(&applied).check_final(&sm, &all_acked()).unwrap();
    }

    #[test]
    fn compacted_writes_are_checked_against_the_reference() {
        let (mut sm, applied) = store();
        sm.apply(
            5,
            1,
            b"",
            &Command::Compact(CompactionRequest { revision: 4, physical: true }),
            &cairn_core::Caller::Member,
            1,
        );
        observed(&applied).check_final(&sm, &all_acked()).unwrap();
        let lost = [acked("a", Some("9"), 2)];
        let v = observed(&applied).check_final(&sm, &lost).unwrap_err();
        assert_eq!(v.property, "No Lost Write", "{v}");
    }

    #[test]
    fn a_write_no_member_applied() {
        let (sm, applied) = store();
        let v = observed(&applied).check_final(&sm, &[acked("c", Some("1"), 6)]).unwrap_err();
        assert_eq!(v.property, "No Lost Write", "{v}");
        assert!(v.detail.contains("no member applied revision 6"), "{v}");
    }

    #[test]
    fn a_write_applied_with_another_value() {
        let (sm, applied) = store();
        let v = observed(&applied).check_final(&sm, &[acked("b", Some("9"), 3)]).unwrap_err();
        assert!(
            v.detail.contains("acknowledged put \"b\"=\"9\" at revision 3 is lost: members applied"),
            "{v}"
        );
    }

    #[test]
    fn an_acknowledged_delete_that_did_not_happen() {
        let (sm, applied) = store();
        let v = observed(&applied).check_final(&sm, &[acked("b", None, 3)]).unwrap_err();
        assert!(v.detail.contains("acknowledged delete of \"b\" at revision 3 is lost"), "{v}");
    }

    #[test]
    fn a_write_missing_from_the_final_store() {
        // Every member emitted put a=1 at revision 2, but the final store made revision 2 another
        // way.
        let (_, applied) = store();
        let (other, _) = apply_all(&[put("a", "x"), put("b", "1"), delete("a"), put("a", "3")]);
        let v = observed(&applied).check_final(&other, &[acked("a", Some("1"), 2)]).unwrap_err();
        assert_eq!(v.property, "No Lost Write", "{v}");
        assert!(
            v.detail.contains("the final store (at revision 5, compacted at 0) holds {\"a\"=\"x\""),
            "{v}"
        );
    }

    #[test]
    fn a_final_store_whose_history_differs_from_the_reference() {
        let (_, applied) = store();
        let (other, _) = apply_all(&[put("a", "1"), put("b", "1"), delete("a"), put("a", "3")]);
        let v = observed(&applied).check_final(&other, &[]).unwrap_err();
        assert_eq!(v.property, "State Machine Safety", "{v}");
        assert!(v.detail.contains("the final store's history at revision 3"), "{v}");
    }

    #[test]
    fn a_reference_beyond_the_final_store() {
        let (sm, applied) = store();
        let (behind, applied_first) = apply_all(&[put("a", "1")]);
        let v = observed(&applied).check_final(&behind, &[]).unwrap_err();
        assert!(
            v.detail.contains("the final store is at revision 2, but member 1 applied revision 5"),
            "{v}"
        );
        // And the other way: the store holds revisions no member emitted.
        let v = observed(&applied_first).check_final(&sm, &[]).unwrap_err();
        assert!(v.detail.contains("the final store's history at revision 3"), "{v}");
    }

    #[test]
    fn a_hole_in_the_reference() {
        // Member 2 jumps past revision 3 by a snapshot, and member 1 never emits it.
        let (sm, applied) = store();
        let s = [boot(1), boot(2), events(1, &applied[0]), snapshot(2, 3, 1), events(2, &applied[2])];
        let v = assert_holds(&s).check_final(&sm, &[]).unwrap_err();
        assert_eq!(v.property, "State Machine Safety", "{v}");
        assert!(v.detail.contains("no member emitted revision 3, yet member 2 emitted revision 4"), "{v}");
    }
}
