//! No lost write: every write a client saw acknowledged is in the replicated history. The
//! key-value consequence of Leader Completeness and State Machine Safety (Raft §5.4): an
//! acknowledged write was applied by the leader, so its entry was committed, so every later
//! leader holds it and every member applies it at the same index, making the same revision.
//!
//! Checked at the end of a run, for each acknowledged write at revision `r`:
//! - the reference history (what members emitted) has a change to its key at `r`, a put of the
//!   acknowledged value, or a delete;
//! - the converged store, read at `r`, shows it: for a put, the key with `mod_revision == r` and
//!   the value; for a delete, no key. Writes below the store's compacted revision can no longer
//!   be read there and are checked against the reference only.
//!
//! Catches: a write acknowledged and then lost (its entry overwritten after a crash forgot it, a
//! leader answering before commit, a snapshot missing it), a write applied at another revision
//! than acknowledged. Cannot catch: a lost write nobody saw acknowledged (the client timed
//! out), or a write whose value was later overwritten and compacted away, beyond the reference.

use std::collections::BTreeMap;

use bytes::Bytes;
use cairn_core::kv::{Event, EventKind, RangeRequest};
use cairn_core::state_machine::StateMachine;

use super::{describe_bytes, describe_events, describe_kv};
use crate::observe::Violation;

/// A write a client saw succeed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AckedWrite {
    pub key: Bytes,
    /// The value put; `None` for a delete that deleted something.
    pub value: Option<Bytes>,
    /// The revision the write made (the response header's revision).
    pub revision: i64,
}

fn violation(detail: String) -> Violation {
    Violation { property: "No Lost Write", section: "5.4", detail }
}

/// Checks every write in `acked` against `reference` (the events members emitted, per revision)
/// and `final_state` (a member that has applied everything committed).
pub fn check(
    final_state: &StateMachine,
    reference: &BTreeMap<i64, Vec<Event>>,
    acked: &[AckedWrite],
) -> Result<(), Violation> {
    for w in acked {
        check_reference(reference, w)?;
        check_store(final_state, w)?;
    }
    Ok(())
}

fn describe_write(w: &AckedWrite) -> String {
    match &w.value {
        Some(v) => format!(
            "acknowledged put {}={} at revision {}",
            describe_bytes(&w.key),
            describe_bytes(v),
            w.revision
        ),
        None => format!("acknowledged delete of {} at revision {}", describe_bytes(&w.key), w.revision),
    }
}

fn check_reference(reference: &BTreeMap<i64, Vec<Event>>, w: &AckedWrite) -> Result<(), Violation> {
    let Some(events) = reference.get(&w.revision) else {
        return Err(violation(format!(
            "{} is lost: no member applied revision {}",
            describe_write(w),
            w.revision
        )));
    };
    let found = events.iter().find(|e| e.kv.key == w.key);
    let matches = match (found, &w.value) {
        (Some(e), Some(v)) => e.kind == EventKind::Put && e.kv.value == v,
        (Some(e), None) => e.kind == EventKind::Delete,
        (None, _) => false,
    };
    if matches {
        return Ok(());
    }
    Err(violation(format!(
        "{} is lost: members applied {} at revision {}",
        describe_write(w),
        describe_events(events),
        w.revision
    )))
}

fn check_store(final_state: &StateMachine, w: &AckedWrite) -> Result<(), Violation> {
    let mvcc = final_state.mvcc();
    if w.revision < mvcc.compacted_revision() {
        return Ok(());
    }
    let req = RangeRequest { key: w.key.clone(), revision: w.revision, ..RangeRequest::default() };
    let kv = match mvcc.range(&req) {
        Ok(r) => r.kvs.into_iter().next(),
        Err(e) => {
            return Err(violation(format!(
                "{} is lost: the final store (at revision {}) cannot be read there: {e}",
                describe_write(w),
                mvcc.current_revision()
            )))
        }
    };
    let holds = match (&kv, &w.value) {
        (Some(kv), Some(v)) => kv.mod_revision == w.revision && kv.value == v,
        (None, None) => true,
        _ => false,
    };
    if holds {
        return Ok(());
    }
    let shown = kv.as_ref().map_or("no such key".to_string(), describe_kv);
    Err(violation(format!(
        "{} is lost: the final store (at revision {}, compacted at {}) holds {shown} at revision {}",
        describe_write(w),
        mvcc.current_revision(),
        mvcc.compacted_revision(),
        w.revision
    )))
}
