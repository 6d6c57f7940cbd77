//! The gRPC front end's translations, checked without a running server: etcd wire types to
//! the core's and back, error statuses, watch events and responses, and a few encodings
//! byte for byte against etcd's field numbers.

#[path = "support/convert_back.rs"]
mod back;

use bytes::Bytes;
use cairn_core::kv::{
    Compare, CompareResult, CompareTarget, DeleteRangeRequest, DeleteRangeResponse, Event, EventKind,
    KeyValue, PutRequest, PutResponse, RangeRequest, RangeResponse, RequestOp, ResponseOp, SortOrder,
    SortTarget, TxnRequest, TxnResponse,
};
use cairn_core::{Error, Header};
use cairn_io_tokio::MemberStatus;
use cairn_server::grpc::pb::etcdserverpb as pb;
use cairn_server::grpc::pb::mvccpb;
use cairn_server::grpc::{convert, error, watch};
use cairn_server::info::{MemberInfo, ServerInfo};
use prost::Message;
use tonic::Code;

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn kv(key: &str, value: &str, rev: i64) -> KeyValue {
    KeyValue {
        key: b(key),
        create_revision: rev - 1,
        mod_revision: rev,
        version: 2,
        value: b(value),
        lease: 7,
    }
}

fn full_range() -> RangeRequest {
    RangeRequest {
        key: b("a"),
        range_end: b("z"),
        limit: 10,
        revision: 42,
        sort_order: SortOrder::Descend,
        sort_target: SortTarget::Mod,
        serializable: true,
        keys_only: true,
        count_only: true,
        min_mod_revision: 1,
        max_mod_revision: 2,
        min_create_revision: 3,
        max_create_revision: 4,
    }
}

fn full_put() -> PutRequest {
    PutRequest { key: b("k"), value: b("v"), lease: 9, prev_kv: true, ignore_value: true, ignore_lease: true }
}

fn full_delete() -> DeleteRangeRequest {
    DeleteRangeRequest { key: b("d"), range_end: b("e"), prev_kv: true }
}

fn every_compare() -> Vec<Compare> {
    let targets = [
        CompareTarget::Version(3),
        CompareTarget::Create(4),
        CompareTarget::Mod(5),
        CompareTarget::Value(b("val")),
        CompareTarget::Lease(6),
    ];
    let results =
        [CompareResult::Equal, CompareResult::Greater, CompareResult::Less, CompareResult::NotEqual];
    targets
        .iter()
        .zip(results.iter().cycle())
        .map(|(t, r)| Compare { result: *r, target: t.clone(), key: b("c"), range_end: b("d") })
        .collect()
}

fn nested_txn() -> TxnRequest {
    let inner = TxnRequest {
        compare: vec![Compare {
            result: CompareResult::Equal,
            target: CompareTarget::Version(0),
            key: b("inner"),
            range_end: Bytes::new(),
        }],
        success: vec![RequestOp::Put(full_put())],
        failure: vec![RequestOp::Range(full_range())],
    };
    TxnRequest {
        compare: every_compare(),
        success: vec![
            RequestOp::Range(full_range()),
            RequestOp::Put(full_put()),
            RequestOp::DeleteRange(full_delete()),
            RequestOp::Txn(inner.clone()),
        ],
        failure: vec![RequestOp::Txn(TxnRequest {
            compare: vec![],
            success: vec![],
            failure: vec![RequestOp::Txn(inner)],
        })],
    }
}

fn info() -> ServerInfo {
    ServerInfo {
        cluster_id: 0xc1,
        member_id: 0xa1,
        name: "one".into(),
        client_urls: vec!["http://127.0.0.1:2379".into()],
        etcd_version: "3.4.0".into(),
        max_request_bytes: 1536 * 1024,
        data_dir: None,
        auth: Default::default(),
    }
}

// ---- Requests: pb <-> core ----

#[test]
fn range_request_round_trips_every_field() {
    let core = full_range();
    let wire = back::range_request_to_pb(core.clone());
    assert_eq!(wire.sort_order, pb::range_request::SortOrder::Descend as i32);
    assert_eq!(wire.sort_target, pb::range_request::SortTarget::Mod as i32);
    assert_eq!(wire.max_create_revision, 4);
    assert_eq!(convert::range_request_from_pb(wire).unwrap(), core);
}

#[test]
fn range_request_sort_enums_map_one_to_one() {
    for (order, want) in [(0, SortOrder::None), (1, SortOrder::Ascend), (2, SortOrder::Descend)] {
        let r = convert::range_request_from_pb(pb::RangeRequest { sort_order: order, ..Default::default() })
            .unwrap();
        assert_eq!(r.sort_order, want);
    }
    let targets = [
        (0, SortTarget::Key),
        (1, SortTarget::Version),
        (2, SortTarget::Create),
        (3, SortTarget::Mod),
        (4, SortTarget::Value),
    ];
    for (target, want) in targets {
        let r =
            convert::range_request_from_pb(pb::RangeRequest { sort_target: target, ..Default::default() })
                .unwrap();
        assert_eq!(r.sort_target, want);
    }
}

#[test]
fn unknown_enum_values_are_invalid_arguments_not_panics() {
    let bad_order = convert::range_request_from_pb(pb::RangeRequest { sort_order: 9, ..Default::default() });
    assert_eq!(bad_order.unwrap_err().code(), Code::InvalidArgument);
    let bad_target =
        convert::range_request_from_pb(pb::RangeRequest { sort_target: -1, ..Default::default() });
    assert_eq!(bad_target.unwrap_err().code(), Code::InvalidArgument);
    let bad_result = convert::compare_from_pb(pb::Compare { result: 4, ..Default::default() });
    assert_eq!(bad_result.unwrap_err().code(), Code::InvalidArgument);
    let bad_cmp_target = convert::compare_from_pb(pb::Compare { target: 5, ..Default::default() });
    assert_eq!(bad_cmp_target.unwrap_err().code(), Code::InvalidArgument);
    let bad_event = back::event_from_pb(mvccpb::Event { r#type: 2, ..Default::default() });
    assert_eq!(bad_event.unwrap_err().code(), Code::InvalidArgument);
}

#[test]
fn put_and_delete_requests_round_trip() {
    let put = full_put();
    let wire = back::put_request_to_pb(put.clone());
    assert!(wire.prev_kv && wire.ignore_value && wire.ignore_lease && wire.lease == 9);
    assert_eq!(convert::put_request_from_pb(wire), put);

    let del = full_delete();
    assert_eq!(convert::delete_request_from_pb(back::delete_request_to_pb(del.clone())), del);
}

#[test]
fn compare_targets_round_trip_through_the_oneof() {
    use pb::compare::TargetUnion;
    for c in every_compare() {
        let wire = back::compare_to_pb(c.clone());
        let expected_union = match &c.target {
            CompareTarget::Version(v) => TargetUnion::Version(*v),
            CompareTarget::Create(v) => TargetUnion::CreateRevision(*v),
            CompareTarget::Mod(v) => TargetUnion::ModRevision(*v),
            CompareTarget::Value(v) => TargetUnion::Value(v.clone()),
            CompareTarget::Lease(v) => TargetUnion::Lease(*v),
        };
        assert_eq!(wire.target_union, Some(expected_union));
        assert_eq!(wire.range_end, b("d"));
        assert_eq!(convert::compare_from_pb(wire).unwrap(), c);
    }
}

#[test]
fn compare_operand_defaults_to_zero_when_the_oneof_disagrees_with_the_target() {
    use pb::compare::{CompareTarget as T, TargetUnion};
    // etcd's compareKV reads the operand by target; another member, or none, reads as zero.
    let mismatched = pb::Compare {
        target: T::Mod as i32,
        key: b("k"),
        target_union: Some(TargetUnion::Version(5)),
        ..Default::default()
    };
    assert_eq!(convert::compare_from_pb(mismatched).unwrap().target, CompareTarget::Mod(0));
    let missing = pb::Compare { target: T::Value as i32, key: b("k"), ..Default::default() };
    assert_eq!(convert::compare_from_pb(missing).unwrap().target, CompareTarget::Value(Bytes::new()));
    let lease = pb::Compare {
        target: T::Lease as i32,
        key: b("k"),
        target_union: Some(TargetUnion::Lease(77)),
        ..Default::default()
    };
    assert_eq!(convert::compare_from_pb(lease).unwrap().target, CompareTarget::Lease(77));
}

#[test]
fn nested_txn_request_round_trips() {
    let txn = nested_txn();
    let wire = back::txn_request_to_pb(txn.clone());
    assert_eq!(wire.compare.len(), 5);
    match &wire.success[3].request {
        Some(pb::request_op::Request::RequestTxn(inner)) => {
            assert!(matches!(inner.success[0].request, Some(pb::request_op::Request::RequestPut(_))));
        }
        other => panic!("expected a nested txn, got {other:?}"),
    }
    // Through the wire bytes too, so the nested oneofs decode as they encode.
    let decoded = pb::TxnRequest::decode(wire.encode_to_vec().as_slice()).unwrap();
    assert_eq!(convert::txn_request_from_pb(decoded).unwrap(), txn);
}

#[test]
fn txn_op_without_a_request_is_refused() {
    let wire = pb::TxnRequest { success: vec![pb::RequestOp { request: None }], ..Default::default() };
    assert_eq!(convert::txn_request_from_pb(wire).unwrap_err().code(), Code::InvalidArgument);
}

#[test]
fn compaction_request_round_trips() {
    let c = cairn_core::kv::CompactionRequest { revision: 12, physical: true };
    assert_eq!(convert::compaction_request_from_pb(back::compaction_request_to_pb(c.clone())), c);
}

// ---- Responses: core -> pb (and back, to check nothing is lost) ----

fn header() -> Option<pb::ResponseHeader> {
    Some(pb::ResponseHeader { cluster_id: 1, member_id: 2, revision: 30, raft_term: 4 })
}

#[test]
fn range_put_delete_responses_carry_header_and_fields() {
    let range = RangeResponse { kvs: vec![kv("a", "1", 5), kv("b", "2", 6)], more: true, count: 9 };
    let wire = convert::range_response_to_pb(range.clone(), header());
    assert_eq!(wire.header, header());
    assert_eq!(wire.kvs[1].value, b("2"));
    assert_eq!(wire.kvs[0].lease, 7);
    assert_eq!(back::range_response_from_pb(wire), range);

    let put = PutResponse { prev_kv: Some(kv("a", "0", 3)) };
    let wire = convert::put_response_to_pb(put.clone(), header());
    assert_eq!(wire.prev_kv.as_ref().map(|p| p.mod_revision), Some(3));
    assert_eq!(back::put_response_from_pb(wire), put);
    assert_eq!(convert::put_response_to_pb(PutResponse { prev_kv: None }, header()).prev_kv, None);

    let del = DeleteRangeResponse { deleted: 2, prev_kvs: vec![kv("a", "1", 5)] };
    let wire = convert::delete_response_to_pb(del.clone(), header());
    assert_eq!(wire.deleted, 2);
    assert_eq!(back::delete_response_from_pb(wire), del);
}

#[test]
fn nested_txn_response_round_trips_with_nested_headers() {
    let inner =
        TxnResponse { succeeded: false, responses: vec![ResponseOp::Range(RangeResponse::default())] };
    let txn = TxnResponse {
        succeeded: true,
        responses: vec![
            ResponseOp::Range(RangeResponse { kvs: vec![kv("a", "1", 5)], more: false, count: 1 }),
            ResponseOp::Put(PutResponse { prev_kv: None }),
            ResponseOp::DeleteRange(DeleteRangeResponse { deleted: 1, prev_kvs: vec![] }),
            ResponseOp::Txn(inner),
        ],
    };
    let wire = convert::txn_response_to_pb(txn.clone(), header());
    assert_eq!(wire.header, header());
    assert!(wire.succeeded);
    // etcd fills only the revision of nested responses' headers.
    let nested = Some(pb::ResponseHeader { revision: 30, ..Default::default() });
    match &wire.responses[3].response {
        Some(pb::response_op::Response::ResponseTxn(t)) => {
            assert_eq!(t.header, nested);
            match &t.responses[0].response {
                Some(pb::response_op::Response::ResponseRange(r)) => assert_eq!(r.header, nested),
                other => panic!("expected a range response, got {other:?}"),
            }
        }
        other => panic!("expected a txn response, got {other:?}"),
    }
    match &wire.responses[1].response {
        Some(pb::response_op::Response::ResponsePut(p)) => assert_eq!(p.header, nested),
        other => panic!("expected a put response, got {other:?}"),
    }
    let decoded = pb::TxnResponse::decode(wire.encode_to_vec().as_slice()).unwrap();
    assert_eq!(back::txn_response_from_pb(decoded).unwrap(), txn);
}

#[test]
fn header_prefers_the_core_and_falls_back_to_status() {
    let info = info();
    let status = MemberStatus { revision: 50, term: 3, ..Default::default() };
    let h = convert::header(&info, &status, Some(Header { revision: 44, raft_term: 2 }));
    assert_eq!(h, pb::ResponseHeader { cluster_id: 0xc1, member_id: 0xa1, revision: 44, raft_term: 2 });
    let h = convert::header(&info, &status, None);
    assert_eq!(h, pb::ResponseHeader { cluster_id: 0xc1, member_id: 0xa1, revision: 50, raft_term: 3 });
    let h = convert::header(&info, &status, Some(Header { revision: 0, raft_term: 0 }));
    assert_eq!((h.revision, h.raft_term), (50, 3));
}

#[test]
fn member_conversion() {
    let m = convert::member_to_pb(&MemberInfo {
        id: 0xa1,
        name: "one".into(),
        peer_urls: vec!["http://127.0.0.1:2380".into()],
        client_urls: vec!["http://127.0.0.1:2379".into()],
        is_learner: false,
    });
    assert_eq!(m.id, 0xa1);
    assert_eq!(m.name, "one");
    assert_eq!(m.peer_ur_ls, vec!["http://127.0.0.1:2380".to_string()]);
    assert_eq!(m.client_ur_ls, vec!["http://127.0.0.1:2379".to_string()]);
    assert!(!m.is_learner);
}

// ---- Errors ----

#[test]
fn every_core_error_maps_to_etcds_code_and_message() {
    let table: Vec<(Error, Code, &str)> = vec![
        (
            Error::Compacted { compacted_revision: 5 },
            Code::OutOfRange,
            "etcdserver: mvcc: required revision has been compacted",
        ),
        (Error::FutureRevision, Code::OutOfRange, "etcdserver: mvcc: required revision is a future revision"),
        (Error::EmptyKey, Code::InvalidArgument, "etcdserver: key is not provided"),
        (Error::KeyNotFound, Code::InvalidArgument, "etcdserver: key not found"),
        (Error::ValueProvided, Code::InvalidArgument, "etcdserver: value is provided"),
        (Error::LeaseProvided, Code::InvalidArgument, "etcdserver: lease is provided"),
        (Error::TooManyOps, Code::InvalidArgument, "etcdserver: too many operations in txn request"),
        (Error::DuplicateKey, Code::InvalidArgument, "etcdserver: duplicate key given in txn request"),
        (Error::LeaseNotFound, Code::NotFound, "etcdserver: requested lease not found"),
        (Error::LeaseExists, Code::FailedPrecondition, "etcdserver: lease already exists"),
        (Error::LeaseTtlTooLarge, Code::OutOfRange, "etcdserver: too large lease TTL"),
        (Error::RequestTooLarge, Code::InvalidArgument, "etcdserver: request is too large"),
        (Error::TooManyRequests, Code::ResourceExhausted, "etcdserver: too many requests"),
        (Error::NoLeader, Code::Unavailable, "etcdserver: no leader"),
        // Not etcd's exact string on purpose: Go clients never retry that one (see
        // grpc::error::message), and on a follower the client should try the next member.
        (
            Error::NotLeader { leader: 0x2a },
            Code::Unavailable,
            "etcdserver: not leader: lease renewals and time-to-live are served by the leader, member 2a",
        ),
        (Error::TimedOut, Code::Unavailable, "etcdserver: request timed out"),
        (Error::DuplicateRequestId(3), Code::Internal, "etcdserver: duplicate request id 3"),
        (Error::Corrupt("bad".into()), Code::Unavailable, "cairn: corrupt state: bad"),
        (
            Error::Raft("the member has stopped".into()),
            Code::Unavailable,
            "cairn: raft: the member has stopped",
        ),
    ];
    for (e, code, message) in table {
        let s = error::status(&e);
        assert_eq!((s.code(), s.message()), (code, message), "for {e:?}");
    }
}

// ---- Events ----

#[test]
fn put_and_delete_events_convert_with_and_without_prev_kv() {
    let put = Event { kind: EventKind::Put, kv: kv("k", "new", 9), prev_kv: Some(kv("k", "old", 8)) };
    let wire = convert::event_to_pb(put.clone());
    assert_eq!(wire.r#type, mvccpb::event::EventType::Put as i32);
    assert_eq!(wire.kv.as_ref().map(|k| k.value.clone()), Some(b("new")));
    assert_eq!(wire.prev_kv.as_ref().map(|k| k.value.clone()), Some(b("old")));
    assert_eq!(back::event_from_pb(wire).unwrap(), put);

    let tombstone = KeyValue { key: b("k"), mod_revision: 10, ..Default::default() };
    let delete = Event { kind: EventKind::Delete, kv: tombstone, prev_kv: None };
    let wire = convert::event_to_pb(delete.clone());
    assert_eq!(wire.r#type, mvccpb::event::EventType::Delete as i32);
    assert_eq!(wire.prev_kv, None);
    assert_eq!(wire.kv.as_ref().map(|k| (k.mod_revision, k.version)), Some((10, 0)));
    assert_eq!(back::event_from_pb(wire).unwrap(), delete);
}

// ---- Watch ----

#[test]
fn watch_create_maps_key_range_filters_and_start() {
    use pb::watch_create_request::FilterType;
    let c = pb::WatchCreateRequest {
        key: b("a"),
        range_end: b("b"),
        start_revision: 0,
        filters: vec![FilterType::Noput as i32, FilterType::Nodelete as i32, 7],
        prev_kv: true,
        ..Default::default()
    };
    let req = watch::watch_request_from_pb(&c, 20).unwrap();
    assert_eq!((req.key, req.range_end), (b("a"), b("b")));
    assert_eq!(req.start_revision, 21, "a watch from now is pinned right after the current revision");
    assert!(req.no_put && req.no_delete && req.prev_kv);

    let from = pb::WatchCreateRequest { key: b("a"), start_revision: 5, ..Default::default() };
    let req = watch::watch_request_from_pb(&from, 20).unwrap();
    assert_eq!(req.start_revision, 5);
    assert!(!req.no_put && !req.no_delete && !req.prev_kv);

    // etcd watches "\0" when given no key, and "\0" as range end means every key from key on.
    let all = pb::WatchCreateRequest { range_end: Bytes::from_static(&[0]), ..Default::default() };
    let req = watch::watch_request_from_pb(&all, 1).unwrap();
    assert_eq!((req.key.as_ref(), req.range_end.as_ref()), (&[0u8][..], &[0u8][..]));

    // An empty range is refused (etcd: "mvcc: watcher range is empty").
    let backwards = pb::WatchCreateRequest { key: b("b"), range_end: b("a"), ..Default::default() };
    assert!(watch::watch_request_from_pb(&backwards, 1).is_none());
    let same = pb::WatchCreateRequest { key: b("b"), range_end: b("b"), ..Default::default() };
    assert!(watch::watch_request_from_pb(&same, 1).is_none());
}

fn put_event(key: &str, value_len: usize, rev: i64) -> Event {
    let value = Bytes::from(vec![b'x'; value_len]);
    Event {
        kind: EventKind::Put,
        kv: KeyValue { key: b(key), value, mod_revision: rev, ..Default::default() },
        prev_kv: None,
    }
}

fn revisions(resp: &pb::WatchResponse) -> Vec<i64> {
    resp.events.iter().map(|e| e.kv.as_ref().map_or(0, |k| k.mod_revision)).collect()
}

#[test]
fn watch_events_go_out_in_whole_revisions_within_the_size_limit() {
    let events =
        vec![put_event("a", 10, 5), put_event("b", 10, 5), put_event("c", 10, 6), put_event("d", 10, 7)];
    // Everything fits: one response.
    let out = watch::event_responses(3, header(), events.clone(), false, 1 << 20);
    assert_eq!(out.len(), 1);
    assert_eq!(revisions(&out[0]), vec![5, 5, 6, 7]);
    assert_eq!((out[0].watch_id, out[0].fragment, out[0].header), (3, false, header()));

    // Room for about one revision: revision 5's two events stay together.
    let out = watch::event_responses(3, header(), events, false, 40);
    let split: Vec<Vec<i64>> = out.iter().map(revisions).collect();
    assert_eq!(split, vec![vec![5, 5], vec![6], vec![7]]);
    assert!(out.iter().all(|r| !r.fragment));
    assert!(watch::event_responses(3, header(), vec![], false, 40).is_empty());
}

#[test]
fn an_oversized_revision_is_fragmented_only_when_asked() {
    let events =
        vec![put_event("a", 100, 5), put_event("b", 100, 5), put_event("c", 100, 5), put_event("d", 1, 6)];
    let whole = watch::event_responses(1, header(), events.clone(), false, 150);
    assert_eq!(whole.iter().map(revisions).collect::<Vec<_>>(), vec![vec![5, 5, 5], vec![6]]);

    let fragmented = watch::event_responses(1, header(), events, true, 150);
    let flags: Vec<bool> = fragmented.iter().map(|r| r.fragment).collect();
    assert_eq!(flags, vec![true, true, false, false], "every piece but the revision's last is a fragment");
    let pieces: Vec<Vec<i64>> = fragmented.iter().map(revisions).collect();
    assert_eq!(pieces, vec![vec![5], vec![5], vec![5], vec![6]]);
}

// ---- Wire format: etcd's field numbers, byte for byte ----

#[test]
fn field_numbers_match_etcd_on_the_wire() {
    // Compare.range_end is field 64: tag (64 << 3 | 2) = 0x82 0x04.
    let c = pb::Compare { range_end: b("z"), ..Default::default() };
    assert_eq!(c.encode_to_vec(), vec![0x82, 0x04, 0x01, b'z']);
    // Compare's oneof operand value is field 7, sent even when empty (oneof presence).
    let c = pb::Compare {
        target_union: Some(pb::compare::TargetUnion::Value(Bytes::new())),
        ..Default::default()
    };
    assert_eq!(c.encode_to_vec(), vec![0x3a, 0x00]);
    // WatchResponse.events is field 11 (0x5a), after fragment (7).
    let w =
        pb::WatchResponse { fragment: true, events: vec![mvccpb::Event::default()], ..Default::default() };
    assert_eq!(w.encode_to_vec(), vec![0x38, 0x01, 0x5a, 0x00]);
    // LeaseGrantRequest: TTL = 1, ID = 2.
    let g = pb::LeaseGrantRequest { ttl: 5, id: 9 };
    assert_eq!(g.encode_to_vec(), vec![0x08, 0x05, 0x10, 0x09]);
    // LeaseTimeToLiveResponse.grantedTTL is field 4, keys field 5.
    let t = pb::LeaseTimeToLiveResponse { granted_ttl: 1, keys: vec![b("k")], ..Default::default() };
    assert_eq!(t.encode_to_vec(), vec![0x20, 0x01, 0x2a, 0x01, b'k']);
    // KeyValue: key 1, create_revision 2, mod_revision 3, version 4, value 5, lease 6.
    let k = mvccpb::KeyValue {
        key: b("k"),
        create_revision: 2,
        mod_revision: 3,
        version: 4,
        value: b("v"),
        lease: 6,
    };
    assert_eq!(
        k.encode_to_vec(),
        vec![0x0a, 0x01, b'k', 0x10, 2, 0x18, 3, 0x20, 4, 0x2a, 0x01, b'v', 0x30, 6]
    );
    // WatchCreateRequest: filters (5) are packed enums, watch_id 7, fragment 8.
    let w = pb::WatchCreateRequest { filters: vec![1], watch_id: 3, fragment: true, ..Default::default() };
    assert_eq!(w.encode_to_vec(), vec![0x2a, 0x01, 0x01, 0x38, 0x03, 0x40, 0x01]);
    // StatusResponse: raftAppliedIndex 7, dbSizeInUse 9, isLearner 10.
    let s = pb::StatusResponse {
        raft_applied_index: 1,
        db_size_in_use: 2,
        is_learner: true,
        ..Default::default()
    };
    assert_eq!(s.encode_to_vec(), vec![0x38, 0x01, 0x48, 0x02, 0x50, 0x01]);
}

#[test]
fn requests_encoded_as_etcd_clients_do_decode() {
    // A RangeRequest as Go's clientv3 encodes `Get("foo", WithPrefix(), WithLimit(2))`:
    // key "foo" (1), range_end "fop" (2), limit 2 (3).
    let bytes = [0x0a, 0x03, b'f', b'o', b'o', 0x12, 0x03, b'f', b'o', b'p', 0x18, 0x02];
    let r = convert::range_request_from_pb(pb::RangeRequest::decode(&bytes[..]).unwrap()).unwrap();
    assert_eq!((r.key, r.range_end, r.limit), (b("foo"), b("fop"), 2));
    // A WatchRequest with a create_request (1) for key "k" and prev_kv (6).
    let bytes = [0x0a, 0x05, 0x0a, 0x01, b'k', 0x30, 0x01];
    match pb::WatchRequest::decode(&bytes[..]).unwrap().request_union {
        Some(pb::watch_request::RequestUnion::CreateRequest(c)) => assert!(c.key == b("k") && c.prev_kv),
        other => panic!("expected a create request, got {other:?}"),
    }
}
