//! The space quota end to end with etcdctl: a 3-member cluster with a small
//! `--quota-backend-bytes` fills up, raises NOSPACE on every member, refuses puts and lease
//! grants with etcd's error while serving reads and deletes; compaction, defragment and
//! `alarm disarm` let writes in again, with less in use.

#[path = "support/ports.rs"]
mod ports;
mod support;

use support::Cluster;

fn status(c: &Cluster, i: usize) -> serde_json::Value {
    let out = c.ctl_at(&c.endpoint(i), &["endpoint", "status", "-w", "json"], None);
    assert!(out.status.success());
    serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()[0]["Status"].clone()
}

#[test]
fn a_full_store_raises_nospace_and_compaction_and_disarm_let_writes_in_again() {
    let flags = vec![
        "--quota-backend-bytes".to_string(),
        "200000".to_string(),
        "--snapshot-count".to_string(),
        "20".to_string(),
    ];
    let c = Cluster::start_with(&[flags.clone(), flags.clone(), flags]);
    let value = "x".repeat(20_000);
    let mut refused = None;
    for i in 0..40 {
        let out = c.ctl(&["put", &format!("k{}", i % 3), &value]);
        if !out.status.success() {
            refused = Some(String::from_utf8_lossy(&out.stderr).into_owned());
            break;
        }
    }
    let refused = refused.expect("the quota never bit");
    assert!(refused.contains("etcdserver: mvcc: database space exceeded"), "{refused}");

    let alarms = c.ok(&["alarm", "list"]);
    assert!(alarms.contains("alarm:NOSPACE"), "{alarms}");
    let in_use_full = status(&c, 0)["dbSizeInUse"].as_i64().unwrap();
    for i in 0..3 {
        let st = status(&c, i);
        let errors = st["errors"].to_string();
        assert!(errors.contains("alarm:NOSPACE"), "member {i}: {st}");
        // Every member refuses to grow the store; reads are served.
        let out = c.ctl_at(&c.endpoint(i), &["put", "small", "v"], None);
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("database space exceeded"));
        let got = c.ctl_at(&c.endpoint(i), &["get", "k0", "--print-value-only"], None);
        assert_eq!(String::from_utf8_lossy(&got.stdout).trim().len(), 20_000);
    }
    assert!(c.err(&["lease", "grant", "60"]).contains("database space exceeded"));
    c.ok(&["del", "k1"]);

    // Compaction frees the superseded values; defragment is accepted; disarm lifts the alarm.
    let revision = status(&c, 0)["header"]["revision"].as_i64().unwrap();
    c.ok(&["compaction", &revision.to_string()]);
    c.ok(&["defrag", "--cluster"]);
    assert!(
        c.err(&["put", "small", "v"]).contains("database space exceeded"),
        "the alarm stays until disarmed"
    );
    c.ok(&["alarm", "disarm"]);
    assert_eq!(c.ok(&["alarm", "list"]).trim(), "");
    c.ok(&["put", "small", "v"]);
    let in_use_after = status(&c, 0)["dbSizeInUse"].as_i64().unwrap();
    assert!(
        in_use_after < in_use_full / 2,
        "in use: {in_use_full} when full, {in_use_after} after compaction"
    );
    c.ok(&["lease", "grant", "60"]);
}
