//! Requests one member hands another to serve: lease keep-alive and time-to-live, which only
//! the leader can answer (its lease clock is the one that counts), as etcd forwards them to the
//! leader over its peer URL; and membership changes, which the leader checks against what only
//! it knows (which members are in touch, how far a learner has caught up).
//!
//! A follower that gets one while it knows a leader sends it on (`Output::forwards`) and answers
//! its client when the leader's reply comes back (`Core::receive_forward`), or with
//! `Error::TimedOut` after `Config::request_timeout_ms`. Lease requests change nothing durable,
//! so a lost, duplicated or late forward is harmless: a late reply finds no request waiting and
//! is dropped, and "timed out" is exact. A membership change may have been applied when its
//! reply is lost; "timed out" then means what it means for any write: the outcome is unknown
//! (and a duplicated one is refused by the leader's checks: the member exists, or is gone). Forwards travel beside Raft messages, best effort, and
//! may be sent at once: nothing needs to be durable first.

use serde::{Deserialize, Serialize};

use crate::request::{Request, RequestId, Response};
use crate::Error;

/// Request ids at or above this are the core's own, for requests other members forwarded here;
/// a driver's ids must stay below it.
pub const REMOTE_REQUEST_ID_MIN: RequestId = 1 << 63;

/// One request or reply between members.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Forward {
    pub from: u64,
    pub to: u64,
    /// Chosen by the member that forwarded the request; its reply carries the same id.
    pub id: u64,
    pub body: ForwardBody,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ForwardBody {
    Request(Request),
    Reply(Result<Response, Error>),
    /// The leader's corruption check (`node::corruption`): its state machine digest after
    /// applying `index`. Answered with a `DigestReply`.
    DigestCheck {
        index: u64,
        digest: u64,
    },
    /// A member's own digest after applying `index`, for the leader's check.
    DigestReply {
        index: u64,
        digest: u64,
    },
}

/// Whether a request may be forwarded to the leader.
pub fn is_forwardable(request: &Request) -> bool {
    matches!(
        request,
        Request::LeaseKeepAlive { .. }
            | Request::LeaseTimeToLive { .. }
            | Request::MemberAdd { .. }
            | Request::MemberRemove { .. }
            | Request::MemberUpdate { .. }
            | Request::MemberPromote { .. }
    )
}
