//! What clients ask of a member and what it answers, and how writes travel in the Raft log.

use serde::{Deserialize, Serialize};

use crate::kv::{
    CompactionRequest, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse, RangeRequest,
    RangeResponse, TxnRequest, TxnResponse,
};
use crate::v2::{V2Event, V2Get, V2Write};
use crate::{Error, Result};

/// The driver's name for one client request; responses come back under it. Ids must be unique
/// among the requests in flight on one member (`Error::DuplicateRequestId` otherwise).
pub type RequestId = u64;

/// A client request, as the etcd v3 API has them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    Range(RangeRequest),
    Put(PutRequest),
    DeleteRange(DeleteRangeRequest),
    Txn(TxnRequest),
    Compact(CompactionRequest),
    /// `id` 0 lets the cluster choose one.
    LeaseGrant {
        id: i64,
        ttl_secs: i64,
    },
    LeaseRevoke {
        id: i64,
    },
    /// Served by the leader only (`Error::NotLeader` elsewhere), not replicated.
    LeaseKeepAlive {
        id: i64,
    },
    /// Served by the leader only.
    LeaseTimeToLive {
        id: i64,
        keys: bool,
    },
    LeaseLeases,
    /// A member announces its name and client URLs to the cluster, through the log (etcd's
    /// "publish"), so every member can list every member's client URLs.
    PublishMember {
        member: u64,
        name: String,
        client_urls: Vec<String>,
    },
    /// Adds a voter, or a learner. `id` 0 lets the leader choose one. Served by the leader
    /// (forwarded to it from other members); answered once the change is applied.
    MemberAdd {
        id: u64,
        peer_urls: Vec<String>,
        learner: bool,
    },
    MemberRemove {
        id: u64,
    },
    /// Changes a member's peer URLs (no change to who votes).
    MemberUpdate {
        id: u64,
        peer_urls: Vec<String>,
    },
    /// A learner that has caught up becomes a voter.
    MemberPromote {
        id: u64,
    },
    /// Served by this member's applied state, as etcd's MemberList.
    MemberList,
    /// Hands leadership to voter `to`; only the leader takes it (`Error::MoveLeaderNotLeader`).
    /// Answered once `to` leads.
    MoveLeader {
        to: u64,
    },
    /// etcd's Maintenance.Alarm, through the log: list (`Get`), raise or lift an alarm.
    /// `kind` None with `Get` lists every alarm.
    Alarm {
        action: crate::alarm::AlarmAction,
        member: u64,
        kind: Option<crate::alarm::AlarmKind>,
    },
    /// Sets the quota on a key prefix (see `prefix_quota`), through the log.
    PrefixQuotaSet {
        prefix: bytes::Bytes,
        limits: crate::prefix_quota::Limits,
    },
    PrefixQuotaRemove {
        prefix: bytes::Bytes,
    },
    /// The quotas and the usage under each, from this member's applied state.
    PrefixQuotaList,
    /// A backup: the member's whole state as of now (everything it applied before the request
    /// came), in the state machine's snapshot encoding. Served by this member alone, from a
    /// snapshot built a step at a time while it goes on serving (`ResponseBody::Backup`).
    Backup,
    /// A change to the auth store (users, roles, permissions, enabling), through the log.
    Auth(crate::auth::AuthChange),
    /// A read of the auth store, from this member's applied state.
    AuthQuery(crate::auth::AuthQuery),
    /// A read of the etcd v2 keys store.
    V2Get(V2Get),
    /// A change to the etcd v2 keys store, through the log.
    V2Write(V2Write),
}

/// etcd's `ResponseHeader`, minus the ids the front end adds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Header {
    /// The store's revision when the request was served (for a write, the revision it made).
    pub revision: i64,
    pub raft_term: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ResponseBody {
    Range(RangeResponse),
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(TxnResponse),
    Compact,
    LeaseGrant {
        id: i64,
        ttl_secs: i64,
    },
    LeaseRevoke,
    LeaseKeepAlive {
        id: i64,
        ttl_secs: i64,
    },
    LeaseTimeToLive {
        id: i64,
        ttl_secs: i64,
        granted_ttl_secs: i64,
        keys: Vec<bytes::Bytes>,
    },
    LeaseLeases {
        ids: Vec<i64>,
    },
    Published,
    /// A membership change or list: the member concerned (added, removed, updated or
    /// promoted), and every member after the change.
    Members {
        member: Option<crate::membership::Member>,
        members: Vec<crate::membership::Member>,
    },
    MovedLeader,
    /// The alarms up after an alarm request: for `Get`, all of them; for `Activate` and
    /// `Deactivate`, the one raised or lifted (none if there was nothing to lift).
    Alarms(Vec<crate::alarm::Alarm>),
    /// Every prefix quota with the usage under it (after a set or remove, as applied).
    PrefixQuotas(Vec<crate::prefix_quota::QuotaStatus>),
    /// The state machine encoded (`StateMachine::decode` reads it), as applied through Raft
    /// index `index` of term `term`, at store revision `revision`.
    Backup {
        data: bytes::Bytes,
        index: u64,
        term: u64,
        revision: i64,
    },
    /// A v2 read or write (for `V2Write::Expire`, the last key it expired, if any).
    V2(Option<V2Event>),
    Auth(crate::auth::AuthAnswer),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Response {
    pub header: Header,
    pub body: ResponseBody,
}

/// A change to the replicated state, as carried in a log entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    Put(PutRequest),
    DeleteRange(DeleteRangeRequest),
    Txn(TxnRequest),
    Compact(CompactionRequest),
    /// `id` 0: the state machine assigns one from the entry's index, identically everywhere.
    /// `ttl_secs` as granted: the proposer raised it to its minimum (`Config::lease_ttl_secs_min`)
    /// before the entry entered the log, so applying it reads nothing from a member's config.
    LeaseGrant {
        id: i64,
        ttl_secs: i64,
    },
    /// Client revoke, or the leader's revoke of an expired lease.
    LeaseRevoke {
        id: i64,
    },
    PublishMember {
        member: u64,
        name: String,
        client_urls: Vec<String>,
    },
    V2(V2Write),
    MemberUpdate {
        id: u64,
        peer_urls: Vec<String>,
    },
    Alarm {
        action: crate::alarm::AlarmAction,
        member: u64,
        kind: Option<crate::alarm::AlarmKind>,
    },
    PrefixQuotaSet {
        prefix: bytes::Bytes,
        limits: crate::prefix_quota::Limits,
    },
    PrefixQuotaRemove {
        prefix: bytes::Bytes,
    },
    Auth(crate::auth::AuthChange),
    /// A grant from a log written before TTLs were stamped (proposal format 1): its TTL is
    /// raised to the applying member's minimum, as it was then. Never proposed.
    LeaseGrantUnstamped {
        id: i64,
        ttl_secs: i64,
    },
}

/// The context of a configuration-change entry: the member change, and who proposed it (so
/// that member answers its client when the entry applies; None for the bootstrap entries).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfContext {
    pub origin: Option<Origin>,
    pub change: crate::membership::MemberChange,
}

impl ConfContext {
    pub fn encode(&self) -> Vec<u8> {
        use bincode::Options;
        codec().serialize(self).expect("a conf context always encodes")
    }

    pub fn decode(bytes: &[u8]) -> Result<ConfContext> {
        use bincode::Options;
        codec().deserialize(bytes).map_err(|e| Error::Corrupt(format!("conf change context: {e}")))
    }

    /// The `ConfChangeV2` entry data for this change.
    pub fn to_conf_change(&self) -> raft::eraftpb::ConfChangeV2 {
        let mut cc = raft::eraftpb::ConfChangeV2::default();
        cc.set_changes(vec![self.change.to_raft()].into());
        cc.context = self.encode().into();
        cc
    }
}

/// Who proposed an entry, so that exactly that member answers the client when it applies.
/// `nonce` is drawn from the member's seed at boot: entries proposed before a restart can never
/// be mistaken for requests made after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    pub member: u64,
    pub nonce: u64,
    pub seq: u64,
}

/// The payload of every normal log entry Cairn writes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    /// None for proposals the member makes on its own (lease expiry).
    pub origin: Option<Origin>,
    /// Who asked: the state machine checks their permissions as they stand when the entry
    /// applies (see `auth`).
    pub caller: Caller,
    pub command: Command,
}

/// Who a request comes from, as far as permissions go.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Caller {
    /// A member, on its own (lease expiry, alarms, publishing itself) or for a client it has
    /// checked already (a forwarded request): never refused.
    Member,
    /// A client that gave no credentials.
    Anonymous,
    /// A client as its token or certificate names it.
    User(crate::auth::AuthInfo),
}

impl Caller {
    /// A client: `Anonymous` without credentials.
    pub fn client(who: Option<crate::auth::AuthInfo>) -> Caller {
        who.map_or(Caller::Anonymous, Caller::User)
    }
}

/// Leading byte of an encoded proposal; bumped when the encoding changes.
const PROPOSAL_FORMAT: u8 = 2;
/// Proposals before callers and stamped lease TTLs (a client's read as anonymous, a member's as
/// a member's; lease grants as `Command::LeaseGrantUnstamped`).
const PROPOSAL_FORMAT_NO_CALLER: u8 = 1;

impl Proposal {
    /// The entry payload, in a buffer of exactly its size: it stays in the Raft log (in
    /// memory until the next snapshot, 100,000 entries), where a buffer grown by doubling
    /// held a 300-byte put in 512 bytes.
    pub fn encode(&self) -> Vec<u8> {
        use bincode::Options;
        let size = codec().serialized_size(self).expect("sizing cannot fail") as usize;
        let mut buf = Vec::with_capacity(1 + size);
        buf.push(PROPOSAL_FORMAT);
        codec().serialize_into(&mut buf, self).expect("encoding into a Vec cannot fail");
        buf
    }

    /// Decodes a log entry's payload. Bad bytes are an error (a corrupt log), never a panic.
    pub fn decode(data: &[u8]) -> Result<Proposal> {
        match data.split_first() {
            Some((&PROPOSAL_FORMAT, rest)) => {
                use bincode::Options;
                codec().deserialize(rest).map_err(|e| Error::Corrupt(format!("undecodable log entry: {e}")))
            }
            Some((&PROPOSAL_FORMAT_NO_CALLER, rest)) => {
                use bincode::Options;
                let (origin, command): (Option<Origin>, Command) = codec()
                    .deserialize(rest)
                    .map_err(|e| Error::Corrupt(format!("undecodable log entry: {e}")))?;
                let command = match command {
                    Command::LeaseGrant { id, ttl_secs } => Command::LeaseGrantUnstamped { id, ttl_secs },
                    other => other,
                };
                // Written before auth existed, so applied while it was off; a client's entry is
                // a client's all the same, should one ever apply with auth on.
                let caller = if origin.is_some() { Caller::Anonymous } else { Caller::Member };
                Ok(Proposal { origin, caller, command })
            }
            Some((v, _)) => Err(Error::Corrupt(format!("unknown log entry format {v}"))),
            None => Err(Error::Corrupt("empty log entry payload".into())),
        }
    }
}

/// The one bincode configuration for everything the core encodes (entries, snapshots).
/// Decoding rejects trailing bytes, and bincode bounds its up-front allocation so a corrupt
/// length prefix cannot make it reserve gigabytes.
pub(crate) fn codec() -> impl bincode::Options {
    use bincode::Options;
    bincode::DefaultOptions::new().with_fixint_encoding().reject_trailing_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::PutRequest;

    #[test]
    fn an_encoded_proposal_fills_its_buffer_exactly_and_decodes_back() {
        let command = Command::Put(PutRequest {
            key: bytes::Bytes::from_static(b"key00001"),
            value: vec![7u8; 256].into(),
            ..PutRequest::default()
        });
        let p = Proposal {
            origin: Some(Origin { member: 1, nonce: 9, seq: 42 }),
            caller: Caller::Anonymous,
            command,
        };
        let buf = p.encode();
        assert_eq!(buf.len(), buf.capacity(), "spare capacity stays allocated in the Raft log");
        assert_eq!(Proposal::decode(&buf).unwrap(), p);
    }

    #[test]
    fn a_format_1_lease_grant_reads_as_unstamped() {
        use bincode::Options;
        let mut buf = vec![PROPOSAL_FORMAT_NO_CALLER];
        codec()
            .serialize_into(&mut buf, &(None::<Origin>, Command::LeaseGrant { id: 7, ttl_secs: 1 }))
            .unwrap();
        assert_eq!(
            Proposal::decode(&buf).unwrap().command,
            Command::LeaseGrantUnstamped { id: 7, ttl_secs: 1 }
        );
    }

    #[test]
    fn a_format_1_clients_proposal_reads_as_anonymous() {
        use bincode::Options;
        let command = Command::LeaseRevoke { id: 5 };
        let origin = Some(Origin { member: 2, nonce: 1, seq: 3 });
        let mut buf = vec![PROPOSAL_FORMAT_NO_CALLER];
        codec().serialize_into(&mut buf, &(origin, command.clone())).unwrap();
        assert_eq!(Proposal::decode(&buf).unwrap(), Proposal { origin, caller: Caller::Anonymous, command });
    }
}
