//! Backups are the state at their revision: every backup a client took (`Request::Backup`, what
//! `etcdctl snapshot save` streams) decodes, and holds exactly the keys, values and revisions
//! the converged store shows when read at the backup's revision. A backup made from a member
//! still catching up, from a snapshot abandoned by a compaction, or mixing two points in time
//! fails it.
//!
//! Checked at the end of a run against the converged state; a backup below that state's
//! compacted revision can no longer be compared and is skipped (counted by the caller).

use bytes::Bytes;
use cairn_core::kv::{KeyValue, RangeRequest};
use cairn_core::state_machine::StateMachine;

use super::describe_kv;
use crate::observe::Violation;

/// A backup a client received.
#[derive(Clone, Debug)]
pub struct Backup {
    pub member: u64,
    /// The store revision it says it holds.
    pub revision: i64,
    /// Its live keys, or why its data did not decode.
    pub kvs: Result<Vec<KeyValue>, String>,
}

impl Backup {
    pub fn of(member: u64, revision: i64, data: &[u8]) -> Backup {
        let kvs = StateMachine::decode(data).map_err(|e| e.to_string()).and_then(|sm| {
            if sm.mvcc().current_revision() != revision {
                return Err(format!(
                    "it says revision {revision} and holds revision {}",
                    sm.mvcc().current_revision()
                ));
            }
            all_keys(&sm, 0)
        });
        Backup { member, revision, kvs }
    }
}

fn all_keys(sm: &StateMachine, revision: i64) -> Result<Vec<KeyValue>, String> {
    let req = RangeRequest {
        key: Bytes::from_static(&[0]),
        range_end: Bytes::from_static(&[0]),
        revision,
        ..Default::default()
    };
    sm.mvcc().range(&req).map(|r| r.kvs).map_err(|e| e.to_string())
}

fn violation(detail: String) -> Violation {
    Violation { property: "Backup Is A Point In Time", section: "backups", detail }
}

/// Checks `backup` against `final_state`; false when it is too old to compare.
pub fn check(final_state: &StateMachine, backup: &Backup) -> Result<bool, Violation> {
    let who = format!("the backup member {} made at revision {}", backup.member, backup.revision);
    let kvs = backup.kvs.as_ref().map_err(|e| violation(format!("{who} is unreadable: {e}")))?;
    if backup.revision < final_state.mvcc().compacted_revision() {
        return Ok(false);
    }
    let expected = all_keys(final_state, backup.revision)
        .map_err(|e| violation(format!("{who}: the final store cannot be read there: {e}")))?;
    if *kvs == expected {
        return Ok(true);
    }
    let first_difference = kvs
        .iter()
        .map(Some)
        .chain(std::iter::repeat(None))
        .zip(expected.iter().map(Some).chain(std::iter::repeat(None)))
        .take(kvs.len().max(expected.len()))
        .find(|(a, b)| a != b)
        .map(|(a, b)| {
            let show = |kv: Option<&KeyValue>| kv.map_or("nothing".to_string(), describe_kv);
            format!("it holds {} where the store held {}", show(a), show(b))
        })
        .unwrap_or_default();
    Err(violation(format!(
        "{who} differs from the store at that revision ({} keys against {}): {first_difference}",
        kvs.len(),
        expected.len()
    )))
}
