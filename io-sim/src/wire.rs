//! What travels between simulated members and clients. Payloads go through madsim's network
//! as typed values (no encoding): the simulator tests the core, not a codec.

use bytes::Bytes;
use cairn_core::eraftpb::Message;
use cairn_core::kv::Event;
use cairn_core::{Error, Request, Response};

#[derive(Clone, Debug)]
pub enum Wire {
    /// Member to member.
    Raft(Message),
    /// Member to member: a forwarded lease request or its reply (`cairn_core::forward`).
    Forward(cairn_core::Forward),
    /// Member to member: "the configuration removed member `id`", to the address a removed
    /// member's message came from (as the real peer port answers its hello). The receiver stops
    /// only if it is that member: a message can arrive from an address another member holds
    /// later or held before.
    Removed {
        id: u64,
    },
    /// Member to member: "which members are there, and where?", from a member that has
    /// messages for a member its applied configuration does not hold yet (it fell behind the
    /// change that added it), as the real peer port answers a join query.
    DirectoryQuery,
    Directory(Vec<(u64, Vec<String>)>),
    /// Client to member: `id` is the client's own, echoed in the reply; `who` the user the
    /// client acts as (as a real front end would have verified its token).
    Request {
        id: u64,
        request: Request,
        who: Option<cairn_core::auth::AuthInfo>,
    },
    Reply {
        id: u64,
        result: Result<Response, Error>,
    },
    /// Client to member: stream events for keys in range from `start_revision` (0: from now).
    Watch {
        watch: u64,
        key: Bytes,
        range_end: Bytes,
        start_revision: i64,
        who: Option<cairn_core::auth::AuthInfo>,
    },
    CancelWatch {
        watch: u64,
    },
    /// Member to client: one batch of a watch's events; `seq` counts batches from 0 so the
    /// client sees a lost batch and resumes from its last revision.
    WatchEvents {
        watch: u64,
        seq: u64,
        events: Vec<Event>,
    },
    WatchEnded {
        watch: u64,
        end: WatchEnd,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchEnd {
    Canceled,
    /// The start revision was compacted away (etcd cancels such a watch with the compact
    /// revision).
    Compacted {
        compact_revision: i64,
    },
}
