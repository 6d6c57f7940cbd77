//! The core's one error enum. Messages are etcd's gRPC error strings where clients depend on
//! them, so front ends can pass `to_string()` through unchanged.

/// Errors a request can end in, plus the fatal ones that stop the node.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum Error {
    // ---- MVCC ----
    #[error("etcdserver: mvcc: required revision has been compacted")]
    Compacted { compacted_revision: i64 },
    #[error("etcdserver: mvcc: required revision is a future revision")]
    FutureRevision,
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    #[error("etcdserver: key not found")]
    KeyNotFound,
    #[error("etcdserver: value is provided")]
    ValueProvided,
    #[error("etcdserver: lease is provided")]
    LeaseProvided,
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps,
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    /// Anything but alarm requests while a `Corrupt` alarm is up: a member's state differs
    /// from the leader's (see `node::corruption`).
    #[error("etcdserver: corrupt cluster")]
    CorruptCluster,
    /// A write that would take a prefix past its quota (see `prefix_quota`).
    #[error("etcdserver: quota exceeded for prefix {prefix:?}: at most {limit}")]
    PrefixQuotaExceeded { prefix: String, limit: String },
    #[error("etcdserver: invalid prefix quota: {0}")]
    InvalidQuota(String),
    #[error("etcdserver: no quota on that prefix")]
    QuotaNotFound,
    /// A write that would grow the store, while a `NoSpace` alarm is up (see `alarm`).
    #[error("etcdserver: mvcc: database space exceeded")]
    NoSpace,

    // ---- Leases ----
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    #[error("etcdserver: lease already exists")]
    LeaseExists,
    #[error("etcdserver: too large lease TTL")]
    LeaseTtlTooLarge,

    // ---- Request admission and cluster state ----
    #[error("etcdserver: request is too large")]
    RequestTooLarge,
    #[error("etcdserver: too many requests")]
    TooManyRequests,
    #[error("etcdserver: no leader")]
    NoLeader,
    /// The request must be served by the leader (lease keep-alive and time-to-live).
    /// `leader` is the known leader's id, 0 if none.
    #[error("etcdserver: not leader")]
    NotLeader { leader: u64 },
    /// The request's outcome is unknown: it may or may not have been applied.
    #[error("etcdserver: request timed out")]
    TimedOut,
    #[error("etcdserver: duplicate request id {0}")]
    DuplicateRequestId(u64),

    // ---- Membership ----
    #[error("etcdserver: member ID already exist")]
    MemberExists,
    #[error("etcdserver: Peer URLs already exists")]
    PeerUrlExists,
    #[error("etcdserver: member not found")]
    MemberNotFound,
    /// The id belonged to a member that was removed; ids are never reused. (etcd's v3 API
    /// answers it as "member not found"; its v2 API with 410 Gone.)
    #[error("etcdserver: ID removed")]
    IdRemoved,
    #[error("etcdserver: can only promote a learner member")]
    MemberNotLearner,
    #[error("etcdserver: can only promote a learner member which is in sync with leader")]
    LearnerNotReady,
    #[error("etcdserver: too many learner members in cluster")]
    TooManyLearners,
    /// etcd's strict reconfiguration check: after the change, fewer voters than a quorum
    /// would be started and in touch with the leader.
    #[error("etcdserver: re-configuration failed due to not enough started members")]
    NotEnoughStartedMembers,
    /// Another configuration change is in the log and not yet applied: one at a time.
    #[error("etcdserver: a membership change is already in progress; retry when it is applied")]
    MembershipChangePending,
    /// A learner serves serializable reads only.
    #[error("etcdserver: rpc not supported for learner")]
    NotSupportedForLearner,
    /// Leadership can only be moved by the leader (etcd's ErrGRPCNotLeader).
    #[error("etcdserver: not leader")]
    MoveLeaderNotLeader,
    #[error("etcdserver: bad leader transferee")]
    BadLeaderTransferee,
    #[error("etcdserver: request timed out, leader transfer took too long")]
    LeaderTransferTimedOut,
    /// raft-rs refused a configuration change when it applied (the leader's checks admit
    /// only changes it accepts; this is the answer should one slip through).
    #[error("etcdserver: membership change refused: {0}")]
    ConfChangeRefused(String),
    /// This member was removed from the cluster; it serves nothing more.
    #[error("etcdserver: server stopped: this member was removed from the cluster")]
    MemberRemoved,

    // ---- Auth (see `auth`) ----
    #[error("etcdserver: authentication is not enabled")]
    AuthNotEnabled,
    #[error("etcdserver: authentication failed, invalid user ID or password")]
    AuthFailed,
    #[error("etcdserver: invalid auth token")]
    InvalidAuthToken,
    /// The client's credentials were issued before the auth store's latest change.
    #[error("etcdserver: revision of auth store is old")]
    AuthOldRevision,
    #[error("etcdserver: permission denied")]
    PermissionDenied,
    #[error("etcdserver: user name is empty")]
    UserEmpty,
    #[error("etcdserver: user name already exists")]
    UserAlreadyExists,
    #[error("etcdserver: user name not found")]
    UserNotFound,
    #[error("etcdserver: role name is empty")]
    RoleEmpty,
    #[error("etcdserver: role name already exists")]
    RoleAlreadyExists,
    #[error("etcdserver: role name not found")]
    RoleNotFound,
    #[error("etcdserver: role is not granted to the user")]
    RoleNotGranted,
    #[error("etcdserver: permission is not granted to the role")]
    PermissionNotGranted,
    #[error("etcdserver: root user does not exist")]
    RootUserNotExist,
    #[error("etcdserver: root user does not have root role")]
    RootRoleNotExist,
    /// Removing the root user or role, or root's root role, while authentication is on.
    #[error("etcdserver: invalid auth management")]
    InvalidAuthManagement,

    // ---- The v2 keys store ----
    /// An etcd v2 error: `code` is etcd's error code, `cause` what it concerns (a path, a
    /// failed comparison), `index` the v2 store's index when it happened.
    #[error("{}", v2_message(*code))]
    V2 { code: u32, cause: String, index: u64 },

    // ---- Fatal: the node must stop ----
    /// A log entry, snapshot or recovered state could not be decoded or is inconsistent.
    #[error("cairn: corrupt state: {0}")]
    Corrupt(String),
    /// raft-rs refused an operation that the core's contract should have made impossible.
    #[error("cairn: raft: {0}")]
    Raft(String),
}

impl Error {
    /// Fatal errors mean the node's state cannot be trusted; the driver must stop the node.
    pub fn is_fatal(&self) -> bool {
        matches!(self, Error::Corrupt(_) | Error::Raft(_))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// etcd's message for a v2 error code.
pub fn v2_message(code: u32) -> &'static str {
    match code {
        100 => "Key not found",
        101 => "Compare failed",
        102 => "Not a file",
        103 => "Reached the max number of peers in the cluster",
        104 => "Not a directory",
        105 => "Key already exists",
        106 => "The prefix of given key is a keyword in etcd",
        107 => "Root is read only",
        108 => "Directory not empty",
        109 => "Peer address has existed",
        110 => "The request requires user authentication",
        200 => "Value is Required in POST form",
        201 => "PrevValue is Required in POST form",
        202 => "The given TTL in POST form is not a number",
        203 => "The given index in POST form is not a number",
        204 => "Value or TTL is required in POST form",
        205 => "The given timeout in POST form is not a number",
        206 => "Name is required in POST form",
        207 => "Index or value is required",
        208 => "Index and value cannot both be specified",
        209 => "Invalid field",
        210 => "Invalid POST form",
        211 => "Value provided on refresh",
        212 => "A TTL must be provided on refresh",
        300 => "Raft Internal Error",
        301 => "During Leader Election",
        400 => "watcher is cleared due to etcd recovery",
        401 => "The event in requested index is outdated and cleared",
        _ => "Unknown error",
    }
}
