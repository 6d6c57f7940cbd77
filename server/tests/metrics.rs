//! GET /metrics on a live 3-member cluster: etcd's metric names, read with sane values after
//! real traffic from etcdctl, on the client port and on `--listen-metrics-urls`.

#[path = "support/ports.rs"]
mod ports;
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use support::Cluster;

/// One scrape: each sample line's name with labels (as written) to its value.
fn scrape(url: &str) -> BTreeMap<String, f64> {
    let out = std::process::Command::new("curl").args(["-s", "-m", "10", url]).output().expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut samples = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let (name, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("not a sample line: {line:?}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("not a number in {line:?}"));
        samples.insert(name.to_string(), value);
    }
    samples
}

fn value(samples: &BTreeMap<String, f64>, name: &str) -> f64 {
    *samples
        .get(name)
        .unwrap_or_else(|| panic!("{name} missing; have {:?}", samples.keys().collect::<Vec<_>>()))
}

#[test]
fn metrics_carry_etcds_names_and_what_the_member_did() {
    let metrics_port = ports::free_port();
    let extra = vec!["--listen-metrics-urls".to_string(), format!("http://127.0.0.1:{metrics_port}")];
    let mut c = Cluster::start_with(&[extra, vec![], vec![]]);
    // The harness's own calls may have gone to member 0: count from here.
    let before = scrape(&format!("http://{}/metrics", c.endpoint(0)));
    // Every call through member 0, whose calls are counted.
    let at0 = |args: &[&str]| c.ctl_at(&c.endpoint(0), args, None);
    for i in 0..20 {
        assert!(at0(&["put", &format!("k{i}"), "v"]).status.success());
    }
    assert!(at0(&["put", "k0", "again"]).status.success());
    assert!(at0(&["get", "k", "--prefix"]).status.success());
    assert!(at0(&["compaction", "5"]).status.success());
    // A read below the compacted revision: OutOfRange.
    assert!(!at0(&["get", "k1", "--rev", "2"]).status.success());

    let url = format!("http://{}/metrics", c.endpoint(0));
    let s = scrape(&url);
    assert_eq!(value(&s, "etcd_server_has_leader"), 1.0);
    assert!(value(&s, "etcd_server_leader_changes_seen_total") >= 1.0);
    assert!(value(&s, "etcd_server_proposals_committed_total") >= 21.0);
    assert!(value(&s, "etcd_server_proposals_applied_total") >= 21.0);
    assert!(
        value(&s, "etcd_server_proposals_applied_total")
            <= value(&s, "etcd_server_proposals_committed_total")
    );
    assert_eq!(value(&s, "etcd_server_proposals_pending"), 0.0);
    // A proposal may have failed while the cluster elected its first leader.
    value(&s, "etcd_server_proposals_failed_total");
    // k0..k19, and the harness's `__ready`.
    assert_eq!(value(&s, "etcd_debugging_mvcc_keys_total"), 21.0);
    assert!(value(&s, "etcd_disk_wal_fsync_duration_seconds_count") >= 21.0);
    assert!(value(&s, "etcd_disk_wal_fsync_duration_seconds_bucket{le=\"+Inf\"}") >= 21.0);
    assert!(value(&s, "etcd_disk_backend_commit_duration_seconds_count") >= 21.0);
    assert!(value(&s, "etcd_mvcc_db_total_size_in_bytes") > 0.0);
    assert!(value(&s, "etcd_mvcc_db_total_size_in_use_in_bytes") > 0.0);
    assert!(value(&s, "process_resident_memory_bytes") > 1e6);
    assert!(value(&s, "process_open_fds") > 5.0);
    let put = "grpc_method=\"Put\",grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"";
    let delta = |name: String| value(&s, &name) - value(&before, &name);
    assert_eq!(delta(format!("grpc_server_started_total{{{put}}}")), 21.0);
    assert_eq!(delta(format!("grpc_server_handled_total{{grpc_code=\"OK\",{put}}}")), 21.0);
    let range = "grpc_method=\"Range\",grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"";
    assert_eq!(delta(format!("grpc_server_handled_total{{grpc_code=\"OutOfRange\",{range}}}")), 1.0);
    // Listed before any call, as etcd lists them.
    let watch = "grpc_method=\"Watch\",grpc_service=\"etcdserverpb.Watch\",grpc_type=\"bidi_stream\"";
    assert_eq!(value(&s, &format!("grpc_server_started_total{{{watch}}}")), 0.0);

    // The metrics listener serves the same registry, and /health.
    let m = scrape(&format!("http://127.0.0.1:{metrics_port}/metrics"));
    assert_eq!(value(&m, "etcd_debugging_mvcc_keys_total"), 21.0);
    let health = std::process::Command::new("curl")
        .args(["-s", "-m", "10", &format!("http://127.0.0.1:{metrics_port}/health")])
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&health.stdout), "{\"health\":\"true\"}");

    // The leader times heartbeats to each follower; a follower that is gone shows as send
    // failures to it.
    let status = c.ok(&["endpoint", "status", "--cluster", "-w", "json"]);
    let leader_index = (0..3)
        .find(|&i| {
            let s = scrape(&format!("http://{}/metrics", c.endpoint(i)));
            s.keys().any(|k| k.starts_with("etcd_network_peer_round_trip_time_seconds_count"))
        })
        .unwrap_or_else(|| panic!("no member timed a heartbeat round trip; status {status}"));
    let victim = (leader_index + 1) % 3;
    c.kill(victim);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = scrape(&format!("http://{}/metrics", c.endpoint(leader_index)));
        if s.iter().any(|(k, v)| k.starts_with("etcd_network_peer_sent_failures_total") && *v > 0.0) {
            break;
        }
        assert!(Instant::now() < deadline, "no send failures counted after a follower died: {s:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}
