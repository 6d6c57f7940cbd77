//! The member set as replicated state, and the changes to it.
//!
//! Who votes is raft-rs's configuration (`ConfState`); who the members are (their peer URLs,
//! name, client URLs, learner flag) is this module's, kept in the state machine so that every
//! replica lists the same members, snapshots carry them and a restarted member recovers them.
//! The two move together: every change that adds, removes or promotes a member is one
//! `ConfChangeV2` log entry whose context is a `request::ConfContext`, so raft-rs changes the voters
//! and the state machine changes the member set at the same index, on every replica.
//!
//! A new cluster's first entries are its initial members, one `AddNode` each (as etcd's
//! bootstrap writes them), so a member that joins later rebuilds every configuration by
//! replaying the log from index 1, or takes it whole from a snapshot.

use serde::{Deserialize, Serialize};

/// One member, as every replica knows it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Member {
    pub id: u64,
    /// Empty until the member publishes itself (`Request::PublishMember`): etcd's "unstarted".
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
    pub learner: bool,
}

impl Member {
    /// etcd's `IsStarted`: the member has run and published its name.
    pub fn is_started(&self) -> bool {
        !self.name.is_empty()
    }
}

/// A change to the member set that is also a change to Raft's configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberChange {
    /// A voter (`learner` false) or a learner.
    Add {
        id: u64,
        peer_urls: Vec<String>,
        learner: bool,
    },
    Remove {
        id: u64,
    },
    /// A learner becomes a voter.
    Promote {
        id: u64,
    },
}

impl MemberChange {
    pub fn id(&self) -> u64 {
        match self {
            MemberChange::Add { id, .. } | MemberChange::Remove { id } | MemberChange::Promote { id } => *id,
        }
    }

    /// raft-rs's form of the change.
    pub fn to_raft(&self) -> raft::eraftpb::ConfChangeSingle {
        use raft::eraftpb::ConfChangeType;
        let (change_type, node_id) = match self {
            MemberChange::Add { id, learner: false, .. } | MemberChange::Promote { id } => {
                (ConfChangeType::AddNode, *id)
            }
            MemberChange::Add { id, learner: true, .. } => (ConfChangeType::AddLearnerNode, *id),
            MemberChange::Remove { id } => (ConfChangeType::RemoveNode, *id),
        };
        let mut s = raft::eraftpb::ConfChangeSingle::default();
        s.set_change_type(change_type);
        s.node_id = node_id;
        s
    }
}

/// Most learners a cluster may have at once (etcd 3.4's `maxLearners`).
pub const LEARNERS_MAX: usize = 1;

/// etcd's rule for promoting a learner: its log is within 10% of the leader's.
pub fn learner_in_sync(learner_matched: u64, leader_matched: u64) -> bool {
    learner_matched as f64 >= leader_matched as f64 * 0.9
}

/// Majority of `n` voters.
pub fn quorum(n: usize) -> usize {
    n / 2 + 1
}
