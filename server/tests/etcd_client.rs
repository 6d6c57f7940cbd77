//! The Rust `etcd-client` crate, unchanged, against a 3-member Cairn cluster of real processes.

#[path = "support/ports.rs"]
mod ports;
mod support;

use etcd_client::{Client, Compare, CompareOp, EventType, GetOptions, PutOptions, Txn, TxnOp, WatchOptions};
use support::Cluster;

fn endpoints(c: &Cluster) -> Vec<String> {
    (0..c.members.len()).map(|i| format!("http://{}", c.endpoint(i))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_txn_watch_lease_and_cluster_calls_work_from_rust() {
    let c = Cluster::start(3);
    let mut client = Client::connect(endpoints(&c), None).await.expect("connect");

    // KV with prefixes.
    client.put("svc/a", "1", None).await.unwrap();
    client.put("svc/b", "2", None).await.unwrap();
    let r = client.get("svc/", Some(GetOptions::new().with_prefix())).await.unwrap();
    let got: Vec<(String, String)> = r
        .kvs()
        .iter()
        .map(|kv| (kv.key_str().unwrap().to_string(), kv.value_str().unwrap().to_string()))
        .collect();
    assert_eq!(got, [("svc/a".to_string(), "1".to_string()), ("svc/b".to_string(), "2".to_string())]);
    let start_revision = r.header().unwrap().revision();

    // Compare-and-swap.
    let cas = |expected: &'static str| {
        Txn::new()
            .when([Compare::value("svc/a", CompareOp::Equal, expected)])
            .and_then([TxnOp::put("svc/a", "swapped", None)])
    };
    assert!(client.txn(cas("1")).await.unwrap().succeeded());
    assert!(!client.txn(cas("1")).await.unwrap().succeeded());

    // Watch from a past revision sees the history, then live changes.
    let mut stream = client
        .watch("svc/", Some(WatchOptions::new().with_prefix().with_start_revision(start_revision)))
        .await
        .unwrap();
    client.delete("svc/b", None).await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let resp = tokio::time::timeout(std::time::Duration::from_secs(10), stream.message())
            .await
            .expect("watch events in time")
            .unwrap()
            .expect("stream open");
        for e in resp.events() {
            seen.push((e.event_type(), e.kv().unwrap().key_str().unwrap().to_string()));
        }
    }
    // From the revision of the put of svc/b on: that put, the swap, the delete.
    let expected = [(EventType::Put, "svc/b"), (EventType::Put, "svc/a"), (EventType::Delete, "svc/b")];
    assert_eq!(seen, expected.map(|(t, k)| (t, k.to_string())));

    // Leases: grant, attach, keep alive, time to live, revoke.
    let lease = client.lease_grant(60, None).await.unwrap().id();
    client.put("svc/held", "x", Some(PutOptions::new().with_lease(lease))).await.unwrap();
    let (mut keeper, mut responses) = client.lease_keep_alive(lease).await.unwrap();
    keeper.keep_alive().await.unwrap();
    let ka = responses.message().await.unwrap().expect("a keep-alive answer");
    assert_eq!(ka.ttl(), 60);
    let ttl = client.lease_time_to_live(lease, None).await.unwrap();
    assert!(ttl.ttl() > 50 && ttl.ttl() <= 60, "{}", ttl.ttl());
    client.lease_revoke(lease).await.unwrap();
    assert!(client.get("svc/held", None).await.unwrap().kvs().is_empty());

    // Cluster and maintenance.
    let members = client.member_list().await.unwrap();
    assert_eq!(members.members().len(), 3);
    let status = client.status().await.unwrap();
    assert_ne!(status.leader(), 0);
}

/// A client library's auth flow: it calls Authenticate with its user and password and sends the
/// token with every request; users, roles and permissions made with the library itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_library_authenticates_and_is_held_to_its_permissions() {
    use etcd_client::{ConnectOptions, Permission};
    let c = Cluster::start_with(&[vec!["--bcrypt-cost".into(), "4".into()]]);
    let mut admin = Client::connect(endpoints(&c), None).await.expect("connect");
    admin.user_add("root", "rootpw", None).await.unwrap();
    admin.user_grant_role("root", "root").await.unwrap();
    admin.user_add("app", "apppw", None).await.unwrap();
    admin.role_add("svc").await.unwrap();
    admin.role_grant_permission("svc", Permission::read_write("svc/").with_prefix()).await.unwrap();
    admin.user_grant_role("app", "svc").await.unwrap();
    admin.auth_enable().await.unwrap();

    let as_app = ConnectOptions::new().with_user("app", "apppw");
    let mut app = Client::connect(endpoints(&c), Some(as_app)).await.expect("authenticate as app");
    app.put("svc/a", "1", None).await.unwrap();
    let got = app.get("svc/a", None).await.unwrap();
    assert_eq!(got.kvs()[0].value_str().unwrap(), "1");
    let denied = app.put("other", "1", None).await.unwrap_err().to_string();
    assert!(denied.contains("permission denied"), "{denied}");

    let wrong = ConnectOptions::new().with_user("app", "nope");
    let refused =
        Client::connect(endpoints(&c), Some(wrong)).await.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(refused.contains("authentication failed"), "{refused}");

    // The root user's token lists users; the app's may not.
    let mut root = Client::connect(endpoints(&c), Some(ConnectOptions::new().with_user("root", "rootpw")))
        .await
        .unwrap();
    let users = root.user_list().await.unwrap();
    assert_eq!(users.users(), ["app", "root"]);
    assert!(app.user_list().await.unwrap_err().to_string().contains("permission denied"));
}
