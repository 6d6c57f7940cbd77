//! The translations back, from etcd's wire types as a server answers them to the core's and
//! from the core's requests to the wire: what a client does, which the tests need to check the
//! server's translations round trip. Not in the server crate, which never needs them.

#![allow(dead_code)]

use cairn_core::kv;
use cairn_server::grpc::pb::etcdserverpb as pb;
use cairn_server::grpc::pb::mvccpb;
use pb::compare::{CompareResult, CompareTarget, TargetUnion};
use pb::range_request::{SortOrder, SortTarget};
use pb::request_op::Request as PbRequest;
use pb::response_op::Response as PbResponse;
use tonic::Status;

fn invalid(what: &str, value: i32) -> Status {
    Status::invalid_argument(format!("etcdserver: unknown {what} {value}"))
}

pub fn key_value_from_pb(kv: mvccpb::KeyValue) -> kv::KeyValue {
    kv::KeyValue {
        key: kv.key,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        value: kv.value,
        lease: kv.lease,
    }
}

pub fn event_from_pb(e: mvccpb::Event) -> Result<kv::Event, Status> {
    let kind = match mvccpb::event::EventType::try_from(e.r#type) {
        Ok(mvccpb::event::EventType::Put) => kv::EventKind::Put,
        Ok(mvccpb::event::EventType::Delete) => kv::EventKind::Delete,
        Err(_) => return Err(invalid("event type", e.r#type)),
    };
    Ok(kv::Event {
        kind,
        kv: e.kv.map(key_value_from_pb).unwrap_or_default(),
        prev_kv: e.prev_kv.map(key_value_from_pb),
    })
}

pub fn range_request_to_pb(r: kv::RangeRequest) -> pb::RangeRequest {
    let sort_order = match r.sort_order {
        kv::SortOrder::None => SortOrder::None,
        kv::SortOrder::Ascend => SortOrder::Ascend,
        kv::SortOrder::Descend => SortOrder::Descend,
    };
    let sort_target = match r.sort_target {
        kv::SortTarget::Key => SortTarget::Key,
        kv::SortTarget::Version => SortTarget::Version,
        kv::SortTarget::Create => SortTarget::Create,
        kv::SortTarget::Mod => SortTarget::Mod,
        kv::SortTarget::Value => SortTarget::Value,
    };
    pb::RangeRequest {
        key: r.key,
        range_end: r.range_end,
        limit: r.limit,
        revision: r.revision,
        sort_order: sort_order as i32,
        sort_target: sort_target as i32,
        serializable: r.serializable,
        keys_only: r.keys_only,
        count_only: r.count_only,
        min_mod_revision: r.min_mod_revision,
        max_mod_revision: r.max_mod_revision,
        min_create_revision: r.min_create_revision,
        max_create_revision: r.max_create_revision,
    }
}

pub fn range_response_from_pb(r: pb::RangeResponse) -> kv::RangeResponse {
    kv::RangeResponse {
        kvs: r.kvs.into_iter().map(key_value_from_pb).collect(),
        more: r.more,
        count: r.count,
    }
}

pub fn put_request_to_pb(r: kv::PutRequest) -> pb::PutRequest {
    pb::PutRequest {
        key: r.key,
        value: r.value,
        lease: r.lease,
        prev_kv: r.prev_kv,
        ignore_value: r.ignore_value,
        ignore_lease: r.ignore_lease,
    }
}

pub fn put_response_from_pb(r: pb::PutResponse) -> kv::PutResponse {
    kv::PutResponse { prev_kv: r.prev_kv.map(key_value_from_pb) }
}

pub fn delete_request_to_pb(r: kv::DeleteRangeRequest) -> pb::DeleteRangeRequest {
    pb::DeleteRangeRequest { key: r.key, range_end: r.range_end, prev_kv: r.prev_kv }
}

pub fn delete_response_from_pb(r: pb::DeleteRangeResponse) -> kv::DeleteRangeResponse {
    kv::DeleteRangeResponse {
        deleted: r.deleted,
        prev_kvs: r.prev_kvs.into_iter().map(key_value_from_pb).collect(),
    }
}

pub fn compare_to_pb(c: kv::Compare) -> pb::Compare {
    let result = match c.result {
        kv::CompareResult::Equal => CompareResult::Equal,
        kv::CompareResult::Greater => CompareResult::Greater,
        kv::CompareResult::Less => CompareResult::Less,
        kv::CompareResult::NotEqual => CompareResult::NotEqual,
    };
    let (target, operand) = match c.target {
        kv::CompareTarget::Version(v) => (CompareTarget::Version, TargetUnion::Version(v)),
        kv::CompareTarget::Create(v) => (CompareTarget::Create, TargetUnion::CreateRevision(v)),
        kv::CompareTarget::Mod(v) => (CompareTarget::Mod, TargetUnion::ModRevision(v)),
        kv::CompareTarget::Value(v) => (CompareTarget::Value, TargetUnion::Value(v)),
        kv::CompareTarget::Lease(v) => (CompareTarget::Lease, TargetUnion::Lease(v)),
    };
    pb::Compare {
        result: result as i32,
        target: target as i32,
        key: c.key,
        target_union: Some(operand),
        range_end: c.range_end,
    }
}

pub fn txn_request_to_pb(t: kv::TxnRequest) -> pb::TxnRequest {
    pb::TxnRequest {
        compare: t.compare.into_iter().map(compare_to_pb).collect(),
        success: t.success.into_iter().map(request_op_to_pb).collect(),
        failure: t.failure.into_iter().map(request_op_to_pb).collect(),
    }
}

pub fn request_op_to_pb(op: kv::RequestOp) -> pb::RequestOp {
    let request = match op {
        kv::RequestOp::Range(r) => PbRequest::RequestRange(range_request_to_pb(r)),
        kv::RequestOp::Put(p) => PbRequest::RequestPut(put_request_to_pb(p)),
        kv::RequestOp::DeleteRange(d) => PbRequest::RequestDeleteRange(delete_request_to_pb(d)),
        kv::RequestOp::Txn(t) => PbRequest::RequestTxn(txn_request_to_pb(t)),
    };
    pb::RequestOp { request: Some(request) }
}

pub fn txn_response_from_pb(t: pb::TxnResponse) -> Result<kv::TxnResponse, Status> {
    Ok(kv::TxnResponse {
        succeeded: t.succeeded,
        responses: t.responses.into_iter().map(response_op_from_pb).collect::<Result<_, _>>()?,
    })
}

pub fn response_op_from_pb(op: pb::ResponseOp) -> Result<kv::ResponseOp, Status> {
    Ok(match op.response {
        Some(PbResponse::ResponseRange(r)) => kv::ResponseOp::Range(range_response_from_pb(r)),
        Some(PbResponse::ResponsePut(p)) => kv::ResponseOp::Put(put_response_from_pb(p)),
        Some(PbResponse::ResponseDeleteRange(d)) => kv::ResponseOp::DeleteRange(delete_response_from_pb(d)),
        Some(PbResponse::ResponseTxn(t)) => kv::ResponseOp::Txn(txn_response_from_pb(t)?),
        None => return Err(Status::invalid_argument("etcdserver: txn response has no response")),
    })
}

pub fn compaction_request_to_pb(c: kv::CompactionRequest) -> pb::CompactionRequest {
    pb::CompactionRequest { revision: c.revision, physical: c.physical }
}
