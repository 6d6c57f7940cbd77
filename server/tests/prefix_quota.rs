//! Per-prefix quotas end to end: `cairn quota` sets one on a live 3-member cluster, etcdctl
//! writes past it are refused naming the prefix, other prefixes go on; the HTTP API refuses bad
//! requests clearly.

#[path = "support/ports.rs"]
mod ports;
mod support;

use std::process::{Command, Output};

use support::Cluster;

fn quota(c: &Cluster, i: usize, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cairn"))
        .arg("quota")
        .args(args)
        .args(["--endpoint", &format!("http://{}", c.endpoint(i))])
        .output()
        .expect("run cairn quota")
}

fn curl(method: &str, url: &str, body: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "-m", "10", "-X", method, "-w", "\n%{http_code}", url, "-d", body])
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').expect("a status");
    (status.trim().parse().expect("a status"), body.to_string())
}

#[test]
fn a_prefix_quota_refuses_writes_past_it_and_leaves_other_prefixes_alone() {
    let c = Cluster::start(3);
    let set = quota(&c, 0, &["set", "/registry/events/", "--keys", "2", "--bytes", "1000"]);
    assert!(set.status.success(), "{}", String::from_utf8_lossy(&set.stderr));
    c.ok(&["put", "/registry/events/a", "1"]);
    c.ok(&["put", "/registry/events/b", "2"]);
    let refused = c.err(&["put", "/registry/events/c", "3"]);
    assert!(
        refused.contains("etcdserver: quota exceeded for prefix \"/registry/events/\": at most 2 keys"),
        "{refused}"
    );
    c.ok(&["put", "/registry/pods/a", "1"]);
    // Listed from any member, with the usage.
    let listed = quota(&c, 2, &["list"]);
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.status.success());
    let row = text.lines().find(|l| l.starts_with("/registry/events/")).unwrap_or_else(|| panic!("{text}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells, vec!["/registry/events/", "2", "2", "38", "1000"], "{text}");

    let url = format!("http://{}/cairn/v1/quotas", c.endpoint(1));
    let (status, body) = curl("PUT", &url, "{not json");
    assert_eq!(status, 400, "{body}");
    let (status, body) = curl("PUT", &url, r#"{"prefix":"/x/","keys_max":1,"colour":"red"}"#);
    assert_eq!(status, 400);
    assert!(body.contains("unknown field `colour`"), "{body}");
    let (status, body) = curl("PUT", &url, r#"{"prefix":""}"#);
    assert_eq!((status, body.contains("the prefix is empty")), (400, true), "{body}");
    let (status, _) = curl("DELETE", &url, r#"{"prefix":"/nothing/"}"#);
    assert_eq!(status, 404);

    let removed = quota(&c, 1, &["remove", "/registry/events/"]);
    assert!(removed.status.success());
    c.ok(&["put", "/registry/events/c", "3"]);
}
