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

/// A txn nested too deep is refused as invalid with etcd's answer, never as an internal error
/// (etcd refuses past its operation budget, about 127 levels; Cairn past what its decoder
/// follows, about 49: see `grpc::too_deep_as_etcd_answers`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_txn_nested_too_deep_is_invalid_not_internal() {
    use cairn_server::grpc::pb::etcdserverpb::{kv_client::KvClient, request_op, RequestOp, TxnRequest};
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
    let answer = |r: Result<tonic::Response<_>, tonic::Status>| match r {
        Ok(_) => "ok".to_string(),
        Err(e) => format!("{:?}: {}", e.code(), e.message()),
    };
    let mut at_200 = Vec::new();
    for url in [&etcd.url, &cairn.url] {
        let mut kv = KvClient::connect(url.clone()).await.expect("connect");
        assert_eq!(answer(kv.txn(nested(40)).await), "ok", "{url}: 40 levels");
        at_200.push(answer(kv.txn(nested(200)).await));
    }
    assert_eq!(at_200[0], at_200[1], "200 levels: etcd, then Cairn");
    assert_eq!(at_200[1], "InvalidArgument: etcdserver: too many operations in txn request");
    let mut kv = KvClient::connect(cairn.url.clone()).await.expect("connect");
    assert_eq!(
        answer(kv.txn(nested(60)).await),
        "InvalidArgument: etcdserver: too many operations in txn request",
        "60 levels: refused as invalid by Cairn (etcd serves it)"
    );
}
