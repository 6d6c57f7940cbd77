//! The core's side of `crate::forward`: a follower's lease keep-alive and time-to-live go to
//! the leader, and the leader serves those other members forward.

#[allow(unused_imports)]
use super::*;

impl Core {
    /// A request or reply another member forwarded (see `forward`). Forwards not meant for this
    /// member, requests that may not be forwarded, and replies nothing waits for are dropped.
    pub fn receive_forward(&mut self, f: Forward) {
        if self.fatal.is_some() || f.to != self.config.id {
            return;
        }
        match f.body {
            ForwardBody::Request(request) if is_forwardable(&request) => {
                let id = self.next_remote;
                self.next_remote += 1;
                self.remote.insert(id, (f.from, f.id));
                // Its caller was checked by the member that forwarded it.
                self.submit_as(id, request, Caller::Member);
            }
            ForwardBody::Request(_) => {}
            ForwardBody::Reply(result) => {
                if let Some((id, _)) = self.forwarded.remove(&f.id) {
                    self.respond(id, result);
                }
            }
            // Only from the leader this member knows.
            ForwardBody::DigestCheck { index, .. } if f.from == self.leader() => {
                self.receive_digest_check(f.from, index)
            }
            ForwardBody::DigestCheck { .. } => {}
            ForwardBody::DigestReply { index, digest } => self.receive_digest_reply(f.from, index, digest),
        }
    }

    /// Whether request `id` may go to the leader: one is known, it is another member, and the
    /// request came from this member's own clients (a forwarded request is not sent on again).
    pub(super) fn may_forward(&self, id: RequestId) -> bool {
        let leader = self.leader();
        leader != 0 && leader != self.config.id && id < REMOTE_REQUEST_ID_MIN
    }

    pub(super) fn forward(&mut self, id: RequestId, request: Request) {
        let fid = self.next_forward;
        self.next_forward += 1;
        self.forwarded.insert(fid, (id, self.now_ms + self.config.request_timeout_ms));
        self.out.forwards.push(Forward {
            from: self.config.id,
            to: self.leader(),
            id: fid,
            body: ForwardBody::Request(request),
        });
    }
}
