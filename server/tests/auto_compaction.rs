//! `--auto-compaction-mode periodic --auto-compaction-retention 2s` on a live cluster: old
//! revisions go, recent ones stay, on every member.

#[path = "support/ports.rs"]
mod ports;
mod support;

use std::time::{Duration, Instant};

use support::Cluster;

#[test]
fn periodic_auto_compaction_drops_old_revisions_and_keeps_recent_ones() {
    let flags = vec!["--auto-compaction-retention".to_string(), "2s".to_string()];
    let c = Cluster::start_with(&[flags.clone(), flags.clone(), flags]);
    let first: serde_json::Value = serde_json::from_str(&c.ok(&["put", "k", "first", "-w", "json"])).unwrap();
    let first_rev = first["header"]["revision"].as_i64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        c.ok(&["put", "k", "later"]);
        let out = c.ctl(&["get", "k", "--rev", &first_rev.to_string()]);
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains("required revision has been compacted"), "{err}");
            break;
        }
        assert!(Instant::now() < deadline, "revision {first_rev} was never compacted");
        std::thread::sleep(Duration::from_millis(200));
    }
    // What was written within the retention is still readable.
    let recent: serde_json::Value =
        serde_json::from_str(&c.ok(&["put", "k", "recent", "-w", "json"])).unwrap();
    let recent_rev = recent["header"]["revision"].as_i64().unwrap();
    for i in 0..3 {
        let out = c.ctl_at(
            &c.endpoint(i),
            &["get", "k", "--rev", &recent_rev.to_string(), "--print-value-only"],
            None,
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "recent");
    }
}
