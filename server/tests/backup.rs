//! Backup and restore end to end: `etcdctl snapshot save` from a live member, `cairn snapshot
//! status`, `cairn snapshot restore` into a new 3-member cluster that serves every key and
//! lease of the backup and nothing written after it; damaged files and non-empty data dirs
//! refused.

#[path = "support/ports.rs"]
mod ports;
mod support;

use std::path::Path;
use std::process::{Command, Output};

use support::Cluster;

fn cairn(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cairn")).args(args).output().expect("run cairn")
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn restore(file: &Path, c: &Cluster, i: usize) -> Output {
    let m = &c.members[i];
    cairn(&[
        "snapshot",
        "restore",
        file.to_str().unwrap(),
        "--name",
        &m.name,
        "--data-dir",
        c.data_dir(i).to_str().unwrap(),
        "--initial-cluster",
        c.initial_cluster(),
        "--initial-advertise-peer-urls",
        &format!("http://127.0.0.1:{}", m.peer),
        "--initial-cluster-token",
        "restored",
    ])
}

#[test]
fn a_backup_restores_into_a_new_cluster_with_every_key_and_lease_and_nothing_later() {
    let mut old = Cluster::start(3);
    for i in 0..100 {
        old.ok(&["put", &format!("key{i:03}"), &format!("value{i}")]);
    }
    old.ok(&["del", "key050"]);
    let granted = old.ok(&["lease", "grant", "600"]);
    let lease = granted.split_whitespace().nth(1).expect("a lease id").to_string();
    old.ok(&["put", "leased", "x", &format!("--lease={lease}")]);
    let file = old.dir.path().join("backup.db");
    let saved = old.ctl_at(&old.endpoint(1), &["snapshot", "save", file.to_str().unwrap()], None);
    assert!(saved.status.success(), "{}", text(&saved));
    assert!(String::from_utf8_lossy(&saved.stdout).contains("Snapshot saved at"), "{}", text(&saved));
    old.ok(&["put", "after", "the backup"]);

    // status: the revision, the keys, and the hash `endpoint hashkv` gives at that revision.
    let status = cairn(&["snapshot", "status", file.to_str().unwrap(), "-w", "json"]);
    assert!(status.status.success(), "{}", text(&status));
    let st: serde_json::Value = serde_json::from_slice(&status.stdout).expect("json");
    // 100 keys, one deleted, the leased key and the harness's `__ready`.
    assert_eq!(st["totalKey"], 101);
    assert_eq!(st["totalSize"].as_u64().unwrap(), std::fs::metadata(&file).unwrap().len());
    let revision = st["revision"].as_i64().unwrap();
    let hashkv = old.ok(&["endpoint", "hashkv", "--rev", &revision.to_string(), "-w", "json"]);
    let hashkv: serde_json::Value = serde_json::from_str(&hashkv).expect("json");
    assert_eq!(hashkv[0]["HashKV"]["hash"], st["hash"], "{hashkv}");
    for i in 0..3 {
        old.kill(i);
    }

    // Three new members from the one file.
    let mut new = Cluster::prepare(&[vec![], vec![], vec![]]);
    for i in 0..3 {
        let out = restore(&file, &new, i);
        assert!(out.status.success(), "{}", text(&out));
    }
    // A data dir in use is never written into.
    let again = restore(&file, &new, 0);
    assert!(!again.status.success());
    assert!(text(&again).contains("exists"), "{}", text(&again));
    for i in 0..3 {
        new.start_member(i);
    }
    new.wait_healthy();
    assert_eq!(new.ok(&["get", "key000", "--print-value-only"]).trim(), "value0");
    assert_eq!(new.ok(&["get", "key099", "--print-value-only"]).trim(), "value99");
    assert_eq!(new.ok(&["get", "key050"]).trim(), "");
    assert_eq!(new.ok(&["get", "after"]).trim(), "", "a write after the backup is not restored");
    let leased: serde_json::Value = serde_json::from_str(&new.ok(&["get", "leased", "-w", "json"])).unwrap();
    assert_eq!(format!("{:x}", leased["kvs"][0]["lease"].as_i64().unwrap()), lease);
    let ttl = new.ok(&["lease", "timetolive", &lease, "--keys"]);
    assert!(ttl.contains("attached keys([leased])"), "{ttl}");
    // Revisions go on from the backup's.
    let put: serde_json::Value = serde_json::from_str(&new.ok(&["put", "fresh", "v", "-w", "json"])).unwrap();
    assert!(put["header"]["revision"].as_i64().unwrap() > revision);
    let members = new.ok(&["member", "list"]);
    assert_eq!(members.lines().count(), 3, "{members}");
    for m in &new.members {
        assert!(members.contains(&format!("http://127.0.0.1:{}", m.peer)), "{members}");
    }
}

#[test]
fn damaged_and_foreign_files_are_refused_saying_why() {
    let c = Cluster::start(1);
    c.ok(&["put", "k", "v"]);
    let file = c.dir.path().join("backup.db");
    c.ok(&["snapshot", "save", file.to_str().unwrap()]);
    let bytes = std::fs::read(&file).unwrap();
    let cases: [(&str, Vec<u8>, &str); 3] = [
        ("truncated.db", bytes[..bytes.len() - 100].to_vec(), "truncated"),
        (
            "flipped.db",
            {
                let mut b = bytes.clone();
                b[100] ^= 0xff;
                b
            },
            "checksum does not match",
        ),
        ("foreign.db", b"SQLite format 3\0 and then some".to_vec(), "not a Cairn backup"),
    ];
    let target = Cluster::prepare(&[vec![]]);
    for (name, content, says) in cases {
        let path = c.dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        let status = cairn(&["snapshot", "status", path.to_str().unwrap()]);
        assert!(!status.status.success());
        assert!(text(&status).contains(says), "{name}: {}", text(&status));
        let out = restore(&path, &target, 0);
        assert!(!out.status.success());
        assert!(text(&out).contains(says), "{name}: {}", text(&out));
        assert!(!target.data_dir(0).exists(), "a refused restore leaves no data dir");
    }
}
