//! Translation between etcd's wire types (`pb`) and the core's (`cairn_core::kv`), field for
//! field, both ways.
//!
//! Requests come in (`*_from_pb`) and responses go out (`*_to_pb`); the reverse directions
//! exist so the mapping can be checked by round trips and for clients written against the
//! generated types. Conversions from the wire never panic: an enum value etcd does not define
//! is `InvalidArgument`, and fields the core has no use for are ignored as etcd ignores them.

use bytes::Bytes;
use cairn_core::kv;
use cairn_core::Header;
use cairn_io_tokio::MemberStatus;
use tonic::Status;

use super::pb::etcdserverpb as pb;
use super::pb::mvccpb;
use crate::info::{MemberInfo, ServerInfo};

use pb::compare::{CompareResult, CompareTarget, TargetUnion};
use pb::range_request::{SortOrder, SortTarget};
use pb::request_op::Request as PbRequest;
use pb::response_op::Response as PbResponse;

// ---- Response header ----

/// etcd's `ResponseHeader`: who answered (from `info`), and the revision and term of the
/// answer. The core's header wins where it has one; otherwise (requests the core does not
/// answer, and zero fields) the member's latest status stands in, as etcd's `header.fill`
/// uses the server's current revision and term.
pub fn header(info: &ServerInfo, status: &MemberStatus, core: Option<Header>) -> pb::ResponseHeader {
    let core = core.unwrap_or_default();
    pb::ResponseHeader {
        cluster_id: info.cluster_id,
        member_id: info.member_id,
        revision: if core.revision != 0 { core.revision } else { status.revision },
        raft_term: if core.raft_term != 0 { core.raft_term } else { status.term },
    }
}

/// The header of a response nested in a txn response. etcd fills only the revision of
/// nested responses; the ids and term are in the txn's own header.
fn nested_header(revision: i64) -> Option<pb::ResponseHeader> {
    Some(pb::ResponseHeader { revision, ..Default::default() })
}

// ---- Cluster ----

pub fn member_to_pb(m: &MemberInfo) -> pb::Member {
    pb::Member {
        id: m.id,
        name: m.name.clone(),
        peer_ur_ls: m.peer_urls.clone(),
        client_ur_ls: m.client_urls.clone(),
        is_learner: m.is_learner,
    }
}

// ---- mvccpb ----

pub fn key_value_to_pb(kv: kv::KeyValue) -> mvccpb::KeyValue {
    mvccpb::KeyValue {
        key: kv.key,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        value: kv.value,
        lease: kv.lease,
    }
}

pub fn event_to_pb(e: kv::Event) -> mvccpb::Event {
    let kind = match e.kind {
        kv::EventKind::Put => mvccpb::event::EventType::Put,
        kv::EventKind::Delete => mvccpb::event::EventType::Delete,
    };
    mvccpb::Event {
        r#type: kind as i32,
        kv: Some(key_value_to_pb(e.kv)),
        prev_kv: e.prev_kv.map(key_value_to_pb),
    }
}

fn invalid(what: &str, value: i32) -> Status {
    Status::invalid_argument(format!("etcdserver: unknown {what} {value}"))
}

// ---- Range ----

pub fn range_request_from_pb(r: pb::RangeRequest) -> Result<kv::RangeRequest, Status> {
    let sort_order = match SortOrder::try_from(r.sort_order) {
        Ok(SortOrder::None) => kv::SortOrder::None,
        Ok(SortOrder::Ascend) => kv::SortOrder::Ascend,
        Ok(SortOrder::Descend) => kv::SortOrder::Descend,
        Err(_) => return Err(invalid("sort order", r.sort_order)),
    };
    let sort_target = match SortTarget::try_from(r.sort_target) {
        Ok(SortTarget::Key) => kv::SortTarget::Key,
        Ok(SortTarget::Version) => kv::SortTarget::Version,
        Ok(SortTarget::Create) => kv::SortTarget::Create,
        Ok(SortTarget::Mod) => kv::SortTarget::Mod,
        Ok(SortTarget::Value) => kv::SortTarget::Value,
        Err(_) => return Err(invalid("sort target", r.sort_target)),
    };
    Ok(kv::RangeRequest {
        key: r.key,
        range_end: r.range_end,
        limit: r.limit,
        revision: r.revision,
        sort_order,
        sort_target,
        serializable: r.serializable,
        keys_only: r.keys_only,
        count_only: r.count_only,
        min_mod_revision: r.min_mod_revision,
        max_mod_revision: r.max_mod_revision,
        min_create_revision: r.min_create_revision,
        max_create_revision: r.max_create_revision,
    })
}

pub fn range_response_to_pb(r: kv::RangeResponse, header: Option<pb::ResponseHeader>) -> pb::RangeResponse {
    pb::RangeResponse {
        header,
        kvs: r.kvs.into_iter().map(key_value_to_pb).collect(),
        more: r.more,
        count: r.count,
    }
}

// ---- Put ----

pub fn put_request_from_pb(r: pb::PutRequest) -> kv::PutRequest {
    kv::PutRequest {
        key: r.key,
        value: r.value,
        lease: r.lease,
        prev_kv: r.prev_kv,
        ignore_value: r.ignore_value,
        ignore_lease: r.ignore_lease,
    }
}

pub fn put_response_to_pb(r: kv::PutResponse, header: Option<pb::ResponseHeader>) -> pb::PutResponse {
    pb::PutResponse { header, prev_kv: r.prev_kv.map(key_value_to_pb) }
}

// ---- DeleteRange ----

pub fn delete_request_from_pb(r: pb::DeleteRangeRequest) -> kv::DeleteRangeRequest {
    kv::DeleteRangeRequest { key: r.key, range_end: r.range_end, prev_kv: r.prev_kv }
}

pub fn delete_response_to_pb(
    r: kv::DeleteRangeResponse,
    header: Option<pb::ResponseHeader>,
) -> pb::DeleteRangeResponse {
    pb::DeleteRangeResponse {
        header,
        deleted: r.deleted,
        prev_kvs: r.prev_kvs.into_iter().map(key_value_to_pb).collect(),
    }
}

// ---- Compare ----

/// etcd reads the operand according to `target`; when the oneof holds another member, or
/// none, the operand is that target's zero value (etcd's `compareKV` does the same).
pub fn compare_from_pb(c: pb::Compare) -> Result<kv::Compare, Status> {
    let result = match CompareResult::try_from(c.result) {
        Ok(CompareResult::Equal) => kv::CompareResult::Equal,
        Ok(CompareResult::Greater) => kv::CompareResult::Greater,
        Ok(CompareResult::Less) => kv::CompareResult::Less,
        Ok(CompareResult::NotEqual) => kv::CompareResult::NotEqual,
        Err(_) => return Err(invalid("compare result", c.result)),
    };
    let operand = c.target_union;
    let target = match CompareTarget::try_from(c.target) {
        Ok(CompareTarget::Version) => kv::CompareTarget::Version(match operand {
            Some(TargetUnion::Version(v)) => v,
            _ => 0,
        }),
        Ok(CompareTarget::Create) => kv::CompareTarget::Create(match operand {
            Some(TargetUnion::CreateRevision(v)) => v,
            _ => 0,
        }),
        Ok(CompareTarget::Mod) => kv::CompareTarget::Mod(match operand {
            Some(TargetUnion::ModRevision(v)) => v,
            _ => 0,
        }),
        Ok(CompareTarget::Value) => kv::CompareTarget::Value(match operand {
            Some(TargetUnion::Value(v)) => v,
            _ => Bytes::new(),
        }),
        Ok(CompareTarget::Lease) => kv::CompareTarget::Lease(match operand {
            Some(TargetUnion::Lease(v)) => v,
            _ => 0,
        }),
        Err(_) => return Err(invalid("compare target", c.target)),
    };
    Ok(kv::Compare { result, target, key: c.key, range_end: c.range_end })
}

// ---- Txn ----

/// Nesting depth is bounded by the decoder (`codec::TXN_DEPTH_MAX`), so the recursion here is
/// too.
pub fn txn_request_from_pb(t: pb::TxnRequest) -> Result<kv::TxnRequest, Status> {
    Ok(kv::TxnRequest {
        compare: t.compare.into_iter().map(compare_from_pb).collect::<Result<_, _>>()?,
        success: t.success.into_iter().map(request_op_from_pb).collect::<Result<_, _>>()?,
        failure: t.failure.into_iter().map(request_op_from_pb).collect::<Result<_, _>>()?,
    })
}

/// A `RequestOp` with no request set is refused: etcd's apply would skip it and answer with
/// a response missing from the list, which no client expects.
pub fn request_op_from_pb(op: pb::RequestOp) -> Result<kv::RequestOp, Status> {
    Ok(match op.request {
        Some(PbRequest::RequestRange(r)) => kv::RequestOp::Range(range_request_from_pb(r)?),
        Some(PbRequest::RequestPut(p)) => kv::RequestOp::Put(put_request_from_pb(p)),
        Some(PbRequest::RequestDeleteRange(d)) => kv::RequestOp::DeleteRange(delete_request_from_pb(d)),
        Some(PbRequest::RequestTxn(t)) => kv::RequestOp::Txn(txn_request_from_pb(t)?),
        None => return Err(Status::invalid_argument("etcdserver: txn operation has no request")),
    })
}

/// A txn's response. Responses nested in it carry a header with the txn's revision only, as
/// etcd's do.
pub fn txn_response_to_pb(t: kv::TxnResponse, header: Option<pb::ResponseHeader>) -> pb::TxnResponse {
    let revision = header.as_ref().map_or(0, |h| h.revision);
    pb::TxnResponse {
        header,
        succeeded: t.succeeded,
        responses: t.responses.into_iter().map(|r| response_op_to_pb(r, revision)).collect(),
    }
}

fn response_op_to_pb(op: kv::ResponseOp, revision: i64) -> pb::ResponseOp {
    let h = nested_header(revision);
    let response = match op {
        kv::ResponseOp::Range(r) => PbResponse::ResponseRange(range_response_to_pb(r, h)),
        kv::ResponseOp::Put(p) => PbResponse::ResponsePut(put_response_to_pb(p, h)),
        kv::ResponseOp::DeleteRange(d) => PbResponse::ResponseDeleteRange(delete_response_to_pb(d, h)),
        kv::ResponseOp::Txn(t) => PbResponse::ResponseTxn(txn_response_to_pb(t, h)),
    };
    pb::ResponseOp { response: Some(response) }
}

// ---- Compaction ----

pub fn compaction_request_from_pb(c: pb::CompactionRequest) -> kv::CompactionRequest {
    kv::CompactionRequest { revision: c.revision, physical: c.physical }
}
