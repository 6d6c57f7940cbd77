//! The Rust `etcd-client` crate, unchanged, running one scenario against etcd 3.4 and against
//! Cairn (a fresh single member of each): what the library hands its caller must be the same,
//! call by call, errors included. Values each server picks on its own (lease ids, member ids,
//! versions, sizes) are recorded as facts about them, not as themselves.
//!
//! Needs `/usr/bin/etcd` (Debian's etcd-server, which the test command installs).

#[path = "support/ports.rs"]
mod ports;
#[path = "support/v2.rs"]
mod v2;

use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, DeleteOptions, GetOptions, PutOptions, Txn, TxnOp, WatchOptions,
};
use v2::{Kind, Server};

/// Runs the scenario through `etcd-client` against `url` and returns its transcript.
async fn scenario(url: &str) -> Vec<String> {
    let mut t = Vec::new();
    let mut c = Client::connect([url], None).await.expect("connect");
    let kvs = |r: &etcd_client::GetResponse| -> Vec<String> {
        r.kvs()
            .iter()
            .map(|kv| {
                format!(
                    "{}={} v{} c{} m{} l{}",
                    kv.key_str().unwrap(),
                    kv.value_str().unwrap(),
                    kv.version(),
                    kv.create_revision(),
                    kv.mod_revision(),
                    kv.lease() != 0
                )
            })
            .collect()
    };

    // KV.
    let r = c.put("a", "1", None).await.unwrap();
    t.push(format!("put a: revision {}", r.header().unwrap().revision()));
    let r = c.put("a", "2", Some(PutOptions::new().with_prev_key())).await.unwrap();
    t.push(format!("put a again: prev {:?}", r.prev_key().map(|kv| kv.value_str().unwrap().to_string())));
    for (k, v) in [("b/1", "x"), ("b/2", "y"), ("b/3", "z"), ("c", "w")] {
        c.put(k, v, None).await.unwrap();
    }
    let r = c.get("b/", Some(GetOptions::new().with_prefix())).await.unwrap();
    t.push(format!("prefix b/: {:?} count {} more {}", kvs(&r), r.count(), r.more()));
    let r = c.get("b/", Some(GetOptions::new().with_prefix().with_limit(2))).await.unwrap();
    t.push(format!("prefix b/ limit 2: {:?} count {} more {}", kvs(&r), r.count(), r.more()));
    let r = c
        .get(
            "b/",
            Some(
                GetOptions::new()
                    .with_prefix()
                    .with_keys_only()
                    .with_sort(etcd_client::SortTarget::Key, etcd_client::SortOrder::Descend),
            ),
        )
        .await
        .unwrap();
    t.push(format!("keys only, descending: {:?}", kvs(&r)));
    let r = c.get("b/", Some(GetOptions::new().with_prefix().with_count_only())).await.unwrap();
    t.push(format!("count only: {} kvs {}", r.count(), r.kvs().len()));
    let r = c.get("a", Some(GetOptions::new().with_revision(2))).await.unwrap();
    t.push(format!("a at revision 2: {:?}", kvs(&r)));
    let r = c.get("a", Some(GetOptions::new().with_serializable())).await.unwrap();
    t.push(format!("a serializable: {:?}", kvs(&r)));
    let e = c.get("a", Some(GetOptions::new().with_revision(1000))).await.unwrap_err();
    t.push(format!("future revision: {e}"));
    let r = c.delete("b/", Some(DeleteOptions::new().with_prefix().with_prev_key())).await.unwrap();
    t.push(format!("delete b/: {} deleted, prev {}", r.deleted(), r.prev_kvs().len()));

    // Transactions.
    let cas = |expected: &'static str| {
        Txn::new()
            .when([Compare::value("a", CompareOp::Equal, expected)])
            .and_then([TxnOp::put("a", "swapped", None), TxnOp::get("c", None)])
            .or_else([TxnOp::get("a", None)])
    };
    let r = c.txn(cas("2")).await.unwrap();
    t.push(format!("txn a==2: succeeded {} ops {}", r.succeeded(), r.op_responses().len()));
    let r = c.txn(cas("2")).await.unwrap();
    t.push(format!("txn a==2 again: succeeded {} ops {}", r.succeeded(), r.op_responses().len()));
    let r = c.txn(Txn::new().when([Compare::version("c", CompareOp::Greater, 0)])).await.unwrap();
    t.push(format!("txn version(c)>0: {}", r.succeeded()));
    let e = c
        .txn(Txn::new().and_then([TxnOp::put("d", "1", None), TxnOp::put("d", "2", None)]))
        .await
        .unwrap_err();
    t.push(format!("txn with a duplicate key: {e}"));

    // Watch from a past revision: history, then a live change.
    let mut stream =
        c.watch("a", Some(WatchOptions::new().with_start_revision(1).with_prev_key())).await.unwrap();
    c.put("a", "live", None).await.unwrap();
    let mut events = Vec::new();
    while events.len() < 4 {
        let msg = tokio::time::timeout(Duration::from_secs(10), stream.message()).await.expect("in time");
        for e in msg.unwrap().expect("open").events() {
            let kv = e.kv().unwrap();
            events.push(format!(
                "{:?} {}={} m{} prev {:?}",
                e.event_type(),
                kv.key_str().unwrap(),
                kv.value_str().unwrap(),
                kv.mod_revision(),
                e.prev_kv().map(|p| p.value_str().unwrap().to_string())
            ));
        }
    }
    t.push(format!("watch a from 1: {events:?}"));

    // Leases.
    let lease = c.lease_grant(30, None).await.unwrap();
    t.push(format!("lease granted: id>0 {} ttl {}", lease.id() > 0, lease.ttl()));
    c.put("held", "h", Some(PutOptions::new().with_lease(lease.id()))).await.unwrap();
    let (mut keeper, mut answers) = c.lease_keep_alive(lease.id()).await.unwrap();
    keeper.keep_alive().await.unwrap();
    let ka = answers.message().await.unwrap().expect("an answer");
    t.push(format!("keep-alive: ttl {}", ka.ttl()));
    let ttl = c
        .lease_time_to_live(lease.id(), Some(etcd_client::LeaseTimeToLiveOptions::new().with_keys()))
        .await
        .unwrap();
    t.push(format!(
        "time to live: granted {} left within 25..=30 {} keys {:?}",
        ttl.granted_ttl(),
        (25..=30).contains(&ttl.ttl()),
        ttl.keys().iter().map(|k| String::from_utf8_lossy(k).into_owned()).collect::<Vec<_>>()
    ));
    let leases = c.leases().await.unwrap();
    t.push(format!("leases: {}", leases.leases().len()));
    c.lease_revoke(lease.id()).await.unwrap();
    t.push(format!("after revoke: {:?}", kvs(&c.get("held", None).await.unwrap())));
    let e = c.lease_revoke(lease.id()).await.unwrap_err();
    t.push(format!("revoke again: {e}"));
    let e = c.put("x", "y", Some(PutOptions::new().with_lease(12345))).await.unwrap_err();
    t.push(format!("put with an unknown lease: {e}"));

    // Compaction.
    let rev = c.put("a", "last", None).await.unwrap().header().unwrap().revision();
    c.compact(rev - 1, None).await.unwrap();
    let e = c.get("a", Some(GetOptions::new().with_revision(rev - 2))).await.unwrap_err();
    t.push(format!("read below the compaction: {e}"));

    // Cluster and maintenance.
    let members = c.member_list().await.unwrap();
    t.push(format!("members: {}", members.members().len()));
    let status = c.status().await.unwrap();
    t.push(format!(
        "status: version 3.4 {} leader is member {} db size > 0 {}",
        status.version().starts_with("3.4."),
        status.leader() == status.header().unwrap().member_id(),
        status.db_size() > 0
    ));
    let alarms = c.alarm(etcd_client::AlarmAction::Get, etcd_client::AlarmType::None, None).await.unwrap();
    t.push(format!("alarms: {}", alarms.alarms().len()));
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_client_sees_the_same_answers_from_cairn_as_from_etcd() {
    let etcd = Server::start(Kind::Etcd);
    let cairn = Server::start(Kind::Cairn);
    let (from_etcd, from_cairn) = (scenario(&etcd.url).await, scenario(&cairn.url).await);
    for (i, (e, c)) in from_etcd.iter().zip(&from_cairn).enumerate() {
        assert_eq!(e, c, "step {i} differs:\n  etcd:  {e}\n  cairn: {c}");
    }
    assert_eq!(from_etcd.len(), from_cairn.len());
    assert_eq!(from_etcd.len(), 26, "the whole scenario ran: {from_etcd:#?}");
}

/// A request over the size limit (`--max-request-bytes` plus etcd's 512 KiB of gRPC overhead)
/// is refused before it is decoded, with etcd's status and message, which clients act on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_request_is_refused_as_etcd_refuses_it() {
    use cairn_server::grpc::pb::etcdserverpb::{kv_client::KvClient, PutRequest};
    let etcd = Server::start(Kind::Etcd);
    let cairn = Server::start(Kind::Cairn);
    let mut answers = Vec::new();
    for url in [&etcd.url, &cairn.url] {
        let mut kv =
            KvClient::connect(url.clone()).await.expect("connect").max_encoding_message_size(16 << 20);
        let put = PutRequest {
            key: b"big".to_vec().into(),
            value: vec![7u8; 3 << 20].into(),
            ..Default::default()
        };
        let e = kv.put(put).await.expect_err("a 3 MiB put is over the limit");
        answers.push((e.code(), e.message().to_string()));
    }
    assert_eq!(answers[0], answers[1], "etcd, then Cairn");
    assert_eq!(answers[1].0, tonic::Code::ResourceExhausted);
}

/// Nested txns: served as deep as etcd serves them (its operation budget, 128 ops shared by a
/// txn and all it nests, is the only bound), refused past that with etcd's answer, never as an
/// internal error; the decoder walks the nesting without recursion (`grpc::codec`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_txns_are_served_and_refused_at_the_depths_etcd_serves_and_refuses() {
    use cairn_server::grpc::pb::etcdserverpb::{request_op, RequestOp, TxnRequest};
    let etcd = Server::start(Kind::Etcd);
    let cairn = Server::start(Kind::Cairn);
    let nested = |depth: usize| {
        let mut t = TxnRequest::default();
        for _ in 0..depth {
            t = TxnRequest {
                success: vec![RequestOp { request: Some(request_op::Request::RequestTxn(t)) }],
                ..Default::default()
            };
        }
        t
    };
    /// The answer's `succeeded` only: a client decoding the whole nested response would stop
    /// at prost's recursion limit, which is the client's, not the server's.
    #[derive(Clone, PartialEq, prost::Message)]
    struct Succeeded {
        #[prost(bool, tag = "2")]
        succeeded: bool,
    }
    let txn = |channel: tonic::transport::Channel, t: TxnRequest| async move {
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready().await.expect("ready");
        let path = axum::http::uri::PathAndQuery::from_static("/etcdserverpb.KV/Txn");
        let codec = tonic_prost::ProstCodec::<TxnRequest, Succeeded>::default();
        match grpc.unary(tonic::Request::new(t), path, codec).await {
            Ok(r) => format!("ok, succeeded: {}", r.into_inner().succeeded),
            Err(e) => format!("{:?}: {}", e.code(), e.message()),
        }
    };
    // `nested(n)` is n + 1 txns deep.
    let depths = [40, 49, 50, 60, 100, 126, 127, 128, 129, 200, 1_000];
    let mut answers = [Vec::new(), Vec::new()];
    for (i, url) in [&etcd.url, &cairn.url].into_iter().enumerate() {
        let channel =
            tonic::transport::Endpoint::from_shared(url.clone()).unwrap().connect().await.expect("connect");
        for depth in depths {
            answers[i].push((depth, txn(channel.clone(), nested(depth)).await));
        }
    }
    assert_eq!(answers[0], answers[1], "etcd, then Cairn");
    let served: Vec<usize> =
        answers[1].iter().filter(|(_, a)| a.starts_with("ok")).map(|(d, _)| *d).collect();
    assert!(served.contains(&127), "etcd serves 127 nested levels: {:?}", answers[0]);
    let (_, deepest) = answers[1].last().unwrap();
    assert_eq!(deepest, "InvalidArgument: etcdserver: too many operations in txn request");
}
