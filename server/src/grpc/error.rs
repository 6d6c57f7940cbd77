//! Core errors as gRPC statuses, with etcd's codes and messages.
//!
//! etcd clients recognise server errors by their message string (Go's `rpctypes.Error` looks
//! the message up in a table, and takes the code from that table, not from the wire), so the
//! message is the core error's `Display`, which is etcd's string. The codes follow etcd 3.4's
//! `etcdserver/api/v3rpc/rpctypes/error.go` and the `togRPCError` table in `v3rpc/util.go`;
//! the one deliberate difference is `NotLeader` (see `code` and `message`).

use cairn_core::Error;
use tonic::{Code, Status};

/// The status a failed request answers with.
pub fn status(e: &Error) -> Status {
    Status::new(code(e), message(e))
}

/// etcd's message for the error: the core error's `Display`, except for `NotLeader`.
///
/// etcd never lets a client see "etcdserver: not leader" from a lease keep-alive or
/// time-to-live (a follower forwards those to the leader); Cairn, which does not forward yet,
/// must have the client retry on another member instead. Go's clientv3 decides whether to
/// retry from the message, not the code: `rpctypes.Error` turns every message in its table
/// into an error that is never retried except for codes the table marks UNAVAILABLE, and
/// "etcdserver: not leader" is in the table as FAILED_PRECONDITION (and `KeepAliveOnce`
/// retries only plain UNAVAILABLE statuses). So the message is one the table does not hold,
/// which keeps the UNAVAILABLE code in force: unary calls are retried on the next endpoint,
/// keep-alive streams reopened, and a user who does see it learns who leads.
pub fn message(e: &Error) -> String {
    match e {
        // etcd's v3 API turns membership.ErrIDRemoved into ErrGRPCMemberNotFound.
        Error::IdRemoved => Error::MemberNotFound.to_string(),
        Error::NotLeader { leader } => {
            format!("{e}: lease renewals and time-to-live are served by the leader, member {leader:x}")
        }
        e => e.to_string(),
    }
}

/// The gRPC code for a core error.
pub fn code(e: &Error) -> Code {
    match e {
        // rpctypes: ErrGRPCCompacted, ErrGRPCFutureRev.
        Error::Compacted { .. } | Error::FutureRevision => Code::OutOfRange,
        // rpctypes: ErrGRPCEmptyKey, ErrGRPCKeyNotFound, ErrGRPCValueProvided,
        // ErrGRPCLeaseProvided, ErrGRPCTooManyOps, ErrGRPCDuplicateKey.
        Error::EmptyKey
        | Error::KeyNotFound
        | Error::ValueProvided
        | Error::LeaseProvided
        | Error::TooManyOps
        | Error::DuplicateKey => Code::InvalidArgument,
        // rpctypes: ErrGRPCCorrupt.
        Error::CorruptCluster => Code::DataLoss,
        // Cairn's own: per-prefix quotas.
        Error::PrefixQuotaExceeded { .. } => Code::ResourceExhausted,
        Error::InvalidQuota(_) => Code::InvalidArgument,
        Error::QuotaNotFound => Code::NotFound,
        // rpctypes: ErrGRPCNoSpace.
        Error::NoSpace => Code::ResourceExhausted,
        // rpctypes: ErrGRPCLeaseNotFound.
        Error::LeaseNotFound => Code::NotFound,
        // rpctypes: ErrGRPCLeaseExist.
        Error::LeaseExists => Code::FailedPrecondition,
        // rpctypes: ErrGRPCLeaseTTLTooLarge.
        Error::LeaseTtlTooLarge => Code::OutOfRange,
        // rpctypes: ErrGRPCRequestTooLarge.
        Error::RequestTooLarge => Code::InvalidArgument,
        // rpctypes: ErrGRPCRequestTooManyRequests. (etcd 3.4's togRPCError maps to the
        // client-side error value by mistake, which reaches the wire as UNKNOWN; the intended
        // code is the one declared in rpctypes.)
        Error::TooManyRequests => Code::ResourceExhausted,
        // rpctypes: ErrGRPCNoLeader, ErrGRPCTimeout.
        Error::NoLeader | Error::TimedOut => Code::Unavailable,
        // rpctypes declares ErrGRPCNotLeader as FAILED_PRECONDITION, but etcd never lets a
        // lease keep-alive or time-to-live fail with it: a follower forwards those to the
        // leader, and when that fails the client sees UNAVAILABLE (ErrGRPCTimeout /
        // ErrGRPCNoLeader). Cairn answers instead of forwarding (for now), so the code says
        // what the client should do: try another member.
        Error::NotLeader { .. } => Code::Unavailable,
        // The driver handed the core a request id already in flight: a Cairn bug, not the
        // client's.
        Error::DuplicateRequestId(_) => Code::Internal,
        // The member has stopped (a fatal error, or shutdown): like etcd's ErrGRPCStopped, the
        // client should go to another member.
        Error::Corrupt(_) | Error::Raft(_) => Code::Unavailable,
        // rpctypes: ErrGRPCMemberExist, ErrGRPCPeerURLExist, ErrGRPCMemberNotLearner,
        // ErrGRPCLearnerNotReady, ErrGRPCTooManyLearners, ErrGRPCMemberNotEnoughStarted,
        // ErrGRPCNotLeader (MoveLeader), ErrGRPCBadLeaderTransferee.
        Error::MemberExists
        | Error::PeerUrlExists
        | Error::MemberNotLearner
        | Error::LearnerNotReady
        | Error::TooManyLearners
        | Error::NotEnoughStartedMembers
        | Error::MoveLeaderNotLeader
        | Error::BadLeaderTransferee
        | Error::ConfChangeRefused(_) => Code::FailedPrecondition,
        // rpctypes: ErrGRPCMemberNotFound (also for a removed id, as etcd).
        Error::MemberNotFound | Error::IdRemoved => Code::NotFound,
        // rpctypes: ErrGRPCNotSupportedForLearner, ErrGRPCTimeoutLeaderTransfer; a change
        // waiting on another and a removed member: try again, or elsewhere.
        Error::NotSupportedForLearner
        | Error::LeaderTransferTimedOut
        | Error::MembershipChangePending
        | Error::MemberRemoved => Code::Unavailable,
        // rpctypes: ErrGRPCUserEmpty, ErrGRPCRoleEmpty, ErrGRPCAuthFailed, ErrGRPCAuthOldRevision.
        Error::UserEmpty | Error::RoleEmpty | Error::AuthFailed | Error::AuthOldRevision => {
            Code::InvalidArgument
        }
        // rpctypes: ErrGRPCPermissionDenied, ErrGRPCInvalidAuthToken.
        Error::PermissionDenied => Code::PermissionDenied,
        Error::InvalidAuthToken => Code::Unauthenticated,
        // rpctypes: ErrGRPCRootUserNotExist, ErrGRPCRootRoleNotExist, ErrGRPCUserAlreadyExist,
        // ErrGRPCUserNotFound, ErrGRPCRoleAlreadyExist, ErrGRPCRoleNotFound,
        // ErrGRPCRoleNotGranted, ErrGRPCPermissionNotGranted, ErrGRPCAuthNotEnabled,
        // ErrGRPCInvalidAuthMgmt.
        Error::RootUserNotExist
        | Error::RootRoleNotExist
        | Error::UserAlreadyExists
        | Error::UserNotFound
        | Error::RoleAlreadyExists
        | Error::RoleNotFound
        | Error::RoleNotGranted
        | Error::PermissionNotGranted
        | Error::AuthNotEnabled
        | Error::InvalidAuthManagement => Code::FailedPrecondition,
        // Variants added to the core later: a safe default until they are mapped here.
        _ => Code::Unknown,
    }
}

/// A response body that does not match the request: a Cairn bug, reported rather than
/// panicked on.
pub fn unexpected(what: &str, body: &impl std::fmt::Debug) -> Status {
    Status::internal(format!("cairn: expected a {what} response, got {body:?}"))
}
