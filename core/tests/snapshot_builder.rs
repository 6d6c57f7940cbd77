//! `SnapshotBuilder`: a snapshot encoded a piece at a time, with writes applying in between,
//! is byte for byte the snapshot of the state where it started.

use bytes::Bytes;
use cairn_core::kv::{DeleteRangeRequest, PutRequest};
use cairn_core::request::Command;
use cairn_core::snapshot::{SnapshotBuilder, Step};
use cairn_core::state_machine::StateMachine;
use cairn_core::{eraftpb::ConfState, kv::CompactionRequest};

fn put(sm: &mut StateMachine, key: &str, value: &str) {
    let index = sm.applied_index() + 1;
    let cmd = Command::Put(PutRequest {
        key: Bytes::copy_from_slice(key.as_bytes()),
        value: Bytes::copy_from_slice(value.as_bytes()),
        ..PutRequest::default()
    });
    assert!(sm.apply(index, 1, key.as_bytes(), &cmd, &cairn_core::Caller::Member, 1).result.is_ok());
}

fn delete(sm: &mut StateMachine, key: &str) {
    let index = sm.applied_index() + 1;
    let cmd = Command::DeleteRange(DeleteRangeRequest {
        key: Bytes::copy_from_slice(key.as_bytes()),
        ..DeleteRangeRequest::default()
    });
    assert!(sm.apply(index, 1, key.as_bytes(), &cmd, &cairn_core::Caller::Member, 1).result.is_ok());
}

fn compact(sm: &mut StateMachine, revision: i64) {
    let index = sm.applied_index() + 1;
    let cmd = Command::Compact(CompactionRequest { revision, ..CompactionRequest::default() });
    assert!(sm.apply(index, 1, b"compact", &cmd, &cairn_core::Caller::Member, 1).result.is_ok());
}

fn store(keys: usize) -> StateMachine {
    let mut sm = StateMachine::new();
    for i in 0..keys {
        put(&mut sm, &format!("k{i:03}"), "v1");
        if i % 3 == 0 {
            put(&mut sm, &format!("k{i:03}"), "v2");
        }
        if i % 7 == 0 {
            delete(&mut sm, &format!("k{i:03}"));
        }
    }
    sm
}

#[test]
fn a_snapshot_built_in_steps_while_writes_apply_is_the_state_where_it_started() {
    let mut sm = store(100);
    let expected = sm.encode();
    let at_start = sm.clone();
    let mut b = SnapshotBuilder::start(&sm, ConfState::default(), 0);
    let mut steps = 0;
    let mut i = 0;
    loop {
        // Writes between steps: new keys before and after the cursor, changes and deletions of
        // keys already written and of keys still to come.
        put(&mut sm, &format!("k{:03}", (i * 37) % 100), "later");
        put(&mut sm, &format!("a-new-{i}"), "later");
        put(&mut sm, &format!("z-new-{i}"), "later");
        delete(&mut sm, &format!("k{:03}", (i * 53) % 100));
        i += 1;
        steps += 1;
        match b.step(&sm, 16) {
            Step::More => continue,
            Step::Done => break,
            Step::Abandoned => panic!("abandoned without a compaction"),
        }
    }
    assert!(steps > 10, "a 16-byte step writes about one key; took {steps} steps");
    assert_eq!(b.index(), at_start.applied_index());
    let data = b.finish();
    assert!(data == expected, "the built snapshot differs from the state's encoding at the start");
    assert_eq!(StateMachine::decode(&data).expect("decodes"), at_start);
}

#[test]
fn a_compaction_while_building_abandons_the_snapshot() {
    let mut sm = store(50);
    let mut b = SnapshotBuilder::start(&sm, ConfState::default(), 0);
    assert_eq!(b.step(&sm, 16), Step::More);
    let revision = sm.mvcc().current_revision();
    compact(&mut sm, revision);
    assert_eq!(b.step(&sm, 16), Step::Abandoned);
}

#[test]
fn one_step_with_room_for_everything_is_the_whole_snapshot() {
    let sm = store(30);
    let mut b = SnapshotBuilder::start(&sm, ConfState::default(), 0);
    assert_eq!(b.step(&sm, usize::MAX), Step::Done);
    assert!(b.finish() == sm.encode());
}

#[test]
fn a_snapshot_up_to_half_again_its_hint_is_built_without_growing_its_buffer() {
    let sm = store(300);
    let size = sm.encode().len();
    // The previous snapshot was 2/3 of this one: the store grew by half since.
    let hint = size * 2 / 3 + 1;
    let mut b = SnapshotBuilder::start(&sm, ConfState::default(), hint);
    while b.step(&sm, 64) == Step::More {}
    let data = b.finish();
    assert!(data == sm.encode());
    assert_eq!(data.capacity(), hint + hint / 2, "the buffer grew, copying all of it in one step");
}
