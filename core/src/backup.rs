//! Restoring a backup (`Request::Backup`'s data) as the first state of a new cluster, as
//! etcd's `snapshot restore` does: the keys, their revisions, leases and the v2 store come from
//! the backup; the members, the Raft log and the cluster's identity are new.
//!
//! Every member of the new cluster restores the same backup with the same member list and gets
//! the very same state: a snapshot at Raft index `members.len()` of term 1 (the indexes a new
//! cluster's bootstrap entries would take), the members as voters, committed. Each then boots
//! from it as from a snapshot it had received.

use raft::eraftpb::{ConfState, HardState, Snapshot};

use crate::membership::Member;
use crate::node::Recovered;
use crate::state_machine::StateMachine;
use crate::{Error, Result};

/// What a member of the new cluster starts from, given the backup's data and the new cluster's
/// members (ids and peer URLs; names and client URLs come when each publishes itself).
/// `Error::Corrupt` if the data is not a state this Cairn can read.
pub fn restore(data: &[u8], members: &[Member]) -> Result<Recovered> {
    let ids: std::collections::BTreeSet<u64> = members.iter().map(|m| m.id).collect();
    if members.is_empty() || ids.contains(&0) || ids.len() != members.len() {
        return Err(Error::ConfChangeRefused(
            "a restored cluster needs members with distinct, non-zero ids".into(),
        ));
    }
    let sm = StateMachine::decode(data)?;
    let index = members.len() as u64;
    let term = 1;
    let sm = sm.into_new_cluster(members, index, term);
    let mut conf_state = ConfState::default();
    conf_state.set_voters(members.iter().map(|m| m.id).collect());
    let mut snapshot = Snapshot::default();
    let meta = snapshot.mut_metadata();
    meta.index = index;
    meta.term = term;
    meta.set_conf_state(conf_state.clone());
    snapshot.set_data(sm.encode().into());
    let mut hard_state = HardState::default();
    hard_state.term = term;
    hard_state.commit = index;
    Ok(Recovered { hard_state, conf_state, snapshot: Some(snapshot), entries: Vec::new() })
}
