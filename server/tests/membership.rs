//! Membership changes on a live 3-member cluster with etcd's own etcdctl, while a writer runs:
//! a learner added (joining with `--initial-cluster-state existing`), caught up, promoted; a
//! second joiner killed with -9 in the middle of its catch-up and restarted; an original
//! member removed (it stops, and will not start again on its data); a peer URL updated; the
//! leader moved. The writer loses no acknowledged write.

#[path = "support/ports.rs"]
mod ports;
mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::Cluster;

/// `etcdctl member add` output: the member's id and the `ETCD_INITIAL_CLUSTER` it printed.
fn parse_add(out: &str) -> (String, String) {
    let id =
        out.split_whitespace().skip_while(|w| *w != "Member").nth(1).expect("Member <id> added").to_string();
    let cluster = out
        .lines()
        .find_map(|l| l.strip_prefix("ETCD_INITIAL_CLUSTER=\""))
        .and_then(|l| l.strip_suffix('"'))
        .expect("ETCD_INITIAL_CLUSTER line")
        .to_string();
    assert!(out.contains("ETCD_INITIAL_CLUSTER_STATE=\"existing\""), "{out}");
    (id, cluster)
}

/// Member `name`'s id, from `etcdctl member list`.
fn member_id(c: &Cluster, name: &str) -> String {
    let list = c.ok(&["member", "list"]);
    list.lines()
        .find(|l| l.split(", ").nth(2) == Some(name))
        .and_then(|l| l.split(", ").next())
        .unwrap_or_else(|| panic!("{name} not in {list}"))
        .to_string()
}

fn wait_until(what: &str, c: &Cluster, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}\n{}", c.logs());
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn wait_exit(c: &mut Cluster, i: usize, what: &str) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(s) = c.exited(i) {
            return s;
        }
        assert!(Instant::now() < deadline, "{what}: not within 15 s\n{}", c.logs());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Adds `name` as a learner and starts it with what `member add` printed; its index.
fn add_learner(c: &mut Cluster, name: &str) -> (usize, String) {
    let i = c.reserve_member(name);
    let url = format!("--peer-urls=http://127.0.0.1:{}", c.members[i].peer);
    let out = c.ok(&["member", "add", name, "--learner", &url]);
    let (id, cluster) = parse_add(&out);
    c.members[i].initial_cluster = Some(cluster);
    c.members[i].args = vec!["--initial-cluster-state".into(), "existing".into()];
    c.start_member(i);
    (i, id)
}

/// A serializable get on member `i` alone.
fn local_get(c: &Cluster, i: usize, key: &str) -> Option<String> {
    let out = c.ctl_at(&c.endpoint(i), &["get", key, "--consistency=s", "--print-value-only"], None);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}

#[test]
fn add_promote_remove_update_and_move_leader_under_a_writer() {
    let mut c = Cluster::start(3);
    // Something to catch up on.
    for i in 0..200 {
        c.ok(&["put", &format!("pre{i}"), "v"]);
    }

    // The writer: sequential puts through every original member, each acknowledged one noted.
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let endpoints = c.endpoints();
    let writer = {
        let (stop, acked) = (stop.clone(), acked.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                let key = format!("w{n}");
                let out = std::process::Command::new("etcdctl")
                    .env("ETCDCTL_API", "3")
                    .arg(format!("--endpoints={endpoints}"))
                    .args(["--command-timeout=5s", "put", &key, "x"])
                    .output()
                    .expect("etcdctl");
                if out.status.success() {
                    acked.lock().unwrap().push(key);
                }
                n += 1;
            }
        })
    };

    // A learner joins and catches up; it serves serializable reads only.
    let (m4, m4_id) = add_learner(&mut c, "m4");
    wait_until("m4 caught up", &c, Duration::from_secs(30), || {
        local_get(&c, m4, "pre199").as_deref() == Some("v")
    });
    let list = c.ok(&["member", "list"]);
    assert!(list.lines().any(|l| l.starts_with(&m4_id) && l.ends_with("true")), "{list}");
    let linearizable = c.ctl_at(&c.endpoint(m4), &["get", "pre1"], None);
    assert!(!linearizable.status.success());
    assert!(String::from_utf8_lossy(&linearizable.stderr).contains("rpc not supported for learner"));
    // Promoted once in sync (retried: the leader may not count it in sync at once).
    wait_until("m4 promoted", &c, Duration::from_secs(30), || {
        c.ctl(&["member", "promote", &m4_id]).status.success()
    });
    let list = c.ok(&["member", "list", "-w", "json"]);
    assert!(!list.contains("\"isLearner\":true"), "{list}");

    // A second learner, killed -9 in the middle of its catch-up, restarted on its data: it
    // still joins.
    let (m5, _m5_id) = add_learner(&mut c, "m5");
    std::thread::sleep(Duration::from_millis(300));
    c.kill(m5);
    c.start_member(m5);
    wait_until("m5 caught up after kill -9", &c, Duration::from_secs(30), || {
        local_get(&c, m5, "pre199").as_deref() == Some("v")
    });

    // An original member removed: it stops, and does not start again on its data dir.
    let m1_id = member_id(&c, "m1");
    let out = c.ok(&["member", "remove", &m1_id]);
    assert!(out.contains("removed from cluster"), "{out}");
    let status = wait_exit(&mut c, 0, "m1 stopped");
    assert!(!status.success());
    assert!(c.log(0).contains("removed from the cluster"), "{}", c.log(0));
    c.members[0].child = None;
    c.start_member(0);
    let status = wait_exit(&mut c, 0, "m1 refused to start again");
    assert!(!status.success());
    c.members[0].child = None;

    // The members left agree on a leader (m1 may have led and handed over).
    wait_until("one leader after m1 left", &c, Duration::from_secs(15), || {
        let live: Vec<usize> = (1..c.members.len()).filter(|&i| c.members[i].child.is_some()).collect();
        let leaders: Vec<String> = live
            .iter()
            .map(|&i| {
                let out = c.ctl_at(&c.endpoint(i), &["endpoint", "status", "-w", "json"], None);
                let s = String::from_utf8_lossy(&out.stdout).into_owned();
                s.split("\"leader\":").nth(1).and_then(|x| x.split(',').next()).unwrap_or("0").to_string()
            })
            .collect();
        leaders.iter().all(|l| l != "0" && *l == leaders[0])
    });

    // A peer URL updated: the same port under another name.
    let m2_id = member_id(&c, "m2");
    let url = format!("--peer-urls=http://localhost:{}", c.members[1].peer);
    c.ok(&["member", "update", &m2_id, &url]);
    // Member lists are served from each member's applied state (as etcd 3.4 serves them):
    // every live member shows the change once it has applied it.
    let updated = format!("http://localhost:{}", c.members[1].peer);
    for i in (1..c.members.len()).filter(|&i| c.members[i].child.is_some()) {
        wait_until("the update on every member", &c, Duration::from_secs(15), || {
            let out = c.ctl_at(&c.endpoint(i), &["member", "list"], None);
            let list = String::from_utf8_lossy(&out.stdout).into_owned();
            list.contains(&updated) && list.lines().count() == 4
        });
    }

    // The leader moved to the promoted member.
    let status = c.ok(&["endpoint", "status", "-w", "json"]);
    let leader = status
        .split("\"leader\":")
        .nth(1)
        .and_then(|s| s.split(|ch: char| !ch.is_ascii_digit()).next())
        .expect("a leader in the status")
        .to_string();
    let leader_hex = format!("{:x}", leader.parse::<u64>().unwrap());
    let leader_ep = (1..c.members.len())
        .find(|&i| {
            c.members[i].child.is_some()
                && c.ctl_at(&c.endpoint(i), &["endpoint", "status"], None).status.success()
                && String::from_utf8_lossy(&c.ctl_at(&c.endpoint(i), &["endpoint", "status"], None).stdout)
                    .contains(&leader_hex)
        })
        .map(|i| c.endpoint(i))
        .expect("the leader's endpoint");
    if leader_hex != m4_id {
        let out = c.ctl_at(&leader_ep, &["move-leader", &m4_id], None);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let status = c.ctl_at(&c.endpoint(m4), &["endpoint", "status", "-w", "json"], None);
    let m4_dec = u64::from_str_radix(&m4_id, 16).unwrap().to_string();
    assert!(String::from_utf8_lossy(&status.stdout).contains(&format!("\"leader\":{m4_dec}")));

    // Writes go on; none acknowledged is lost.
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 10, "the writer made progress: {} writes", acked.len());
    let live = (1..c.members.len())
        .filter(|&i| c.members[i].child.is_some())
        .map(|i| c.endpoint(i))
        .collect::<Vec<_>>();
    let out = c.ctl_at(&live.join(","), &["get", "w", "--prefix", "--keys-only"], None);
    let keys = String::from_utf8_lossy(&out.stdout).into_owned();
    for k in &acked {
        assert!(keys.lines().any(|l| l == k), "acknowledged write {k} lost");
    }
}
