//! etcd's own `etcdctl` against a 3-member Cairn cluster of real processes on loopback.

#[path = "support/ports.rs"]
mod ports;
mod support;

use std::time::Duration;

use support::Cluster;

#[test]
fn put_get_delete_with_prefixes_and_revisions() {
    let c = Cluster::start(3);
    assert_eq!(c.ok(&["put", "foo", "bar"]).trim(), "OK");
    assert_eq!(c.ok(&["get", "foo"]), "foo\nbar\n");
    c.ok(&["put", "foo2", "baz"]);
    c.ok(&["put", "other", "x"]);
    assert_eq!(c.ok(&["get", "--prefix", "foo"]), "foo\nbar\nfoo2\nbaz\n");
    assert_eq!(
        c.ok(&["get", "--prefix", "foo", "--keys-only"]).split_whitespace().collect::<Vec<_>>(),
        ["foo", "foo2"]
    );
    assert!(c.ok(&["get", "--prefix", "foo", "-w", "fields"]).contains(r#""Count" : 2"#));
    // Reads from each member see the write (linearizable by default).
    for i in 0..3 {
        let out = c.ctl_at(&c.endpoint(i), &["get", "foo"], None);
        assert_eq!(String::from_utf8_lossy(&out.stdout), "foo\nbar\n", "member {i}");
    }
    assert_eq!(c.ok(&["del", "--prefix", "foo"]).trim(), "2");
    assert_eq!(c.ok(&["get", "foo"]), "");
    // Old revisions stay readable until compacted.
    let rev_line = c.ok(&["put", "r", "1", "-w", "fields"]);
    let rev: i64 = rev_line
        .lines()
        .find_map(|l| l.strip_prefix("\"Revision\" : "))
        .and_then(|v| v.trim().parse().ok())
        .expect("put reports its revision");
    c.ok(&["put", "r", "2"]);
    assert_eq!(c.ok(&["get", "r", &format!("--rev={rev}")]), "r\n1\n");
    c.ok(&["compaction", &(rev + 1).to_string()]);
    let err = c.err(&["get", "r", &format!("--rev={rev}")]);
    assert!(err.contains("required revision has been compacted"), "{err}");
}

#[test]
fn txn_compare_and_swap() {
    let c = Cluster::start(3);
    c.ok(&["put", "k", "v0"]);
    let txn = |expected: &str| {
        let input = format!("value(\"k\") = \"{expected}\"\n\nput k swapped\n\nput k lost\n\n");
        let out = c.ctl_at(&c.endpoints(), &["txn"], Some(&input));
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(txn("v0").starts_with("SUCCESS"));
    assert_eq!(c.ok(&["get", "k", "--print-value-only"]).trim(), "swapped");
    assert!(txn("v0").starts_with("FAILURE"));
    assert_eq!(c.ok(&["get", "k", "--print-value-only"]).trim(), "lost");
}

#[test]
fn watch_from_a_past_revision_sees_history_then_live_changes() {
    let c = Cluster::start(3);
    c.ok(&["put", "w", "1"]);
    c.ok(&["put", "w", "2"]);
    let mut watch = std::process::Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", c.endpoint(1)))
        .args(["watch", "w", "--rev=1", "--prev-kv"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    c.ok(&["put", "w", "3"]);
    c.ok(&["del", "w"]);
    std::thread::sleep(Duration::from_millis(800));
    let _ = watch.kill();
    let out = watch.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.iter().filter(|l| **l == "PUT").count(), 3, "{text}");
    assert_eq!(lines.iter().filter(|l| **l == "DELETE").count(), 1, "{text}");
    let values: Vec<&str> = lines.iter().copied().filter(|l| ["1", "2", "3"].contains(l)).collect();
    assert_eq!(values.first(), Some(&"1"), "{text}");
}

#[test]
fn leases_grant_keep_alive_time_to_live_and_revoke() {
    let c = Cluster::start(3);
    let out = c.ok(&["lease", "grant", "30"]);
    // "lease 694d77aa9e38260f granted with TTL(30s)"
    let id = out.split_whitespace().nth(1).expect("lease id").to_string();
    assert!(out.contains("granted with TTL(30s)"), "{out}");
    c.ok(&["put", "--lease", &id, "held", "v"]);
    let ka = c.ok(&["lease", "keep-alive", "--once", &id]);
    assert!(ka.contains("keepalived with TTL(30)"), "{ka}");
    let ttl = c.ok(&["lease", "timetolive", &id, "--keys"]);
    assert!(ttl.contains("granted with TTL(30s)") && ttl.contains("attached keys([held])"), "{ttl}");
    assert!(c.ok(&["lease", "list"]).contains(&id));
    // Every member answers, followers by forwarding to the leader (as etcd does).
    for i in 0..3 {
        let out = c.ctl_at(&c.endpoint(i), &["lease", "keep-alive", "--once", &id], None);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && text.contains("keepalived with TTL(30)"), "member {i}: {text}");
        let out = c.ctl_at(&c.endpoint(i), &["lease", "timetolive", &id], None);
        assert!(String::from_utf8_lossy(&out.stdout).contains("granted with TTL(30s)"), "member {i}");
    }
    c.ok(&["lease", "revoke", &id]);
    assert_eq!(c.ok(&["get", "held"]), "");
    let err = c.err(&["put", "--lease", &id, "again", "v"]);
    assert!(err.contains("requested lease not found"), "{err}");
}

#[test]
fn member_list_and_endpoint_status() {
    let c = Cluster::start(3);
    // A member is listed "unstarted", without its name, until its publication has applied (as
    // with etcd): wait for all three.
    let mut list = String::new();
    for _ in 0..50 {
        list = c.ok(&["member", "list"]);
        if c.members.iter().all(|m| list.contains(&format!(", started, {},", m.name))) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(list.lines().count(), 3, "{list}");
    for m in &c.members {
        assert!(list.contains(&m.name), "{list}");
        assert!(list.contains(&format!("http://127.0.0.1:{}", m.peer)), "{list}");
    }
    // Each member published its client URLs through the log: every member lists them all.
    for i in 0..3 {
        let mut listed = String::new();
        for _ in 0..50 {
            listed = String::from_utf8_lossy(&c.ctl_at(&c.endpoint(i), &["member", "list"], None).stdout)
                .into_owned();
            if c.members.iter().all(|m| listed.contains(&format!("http://127.0.0.1:{}", m.client))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        for m in &c.members {
            assert!(listed.contains(&format!("http://127.0.0.1:{}", m.client)), "member {i} lists: {listed}");
        }
    }
    let status = c.ok(&["endpoint", "status", "-w", "table"]);
    assert_eq!(status.matches("127.0.0.1").count(), 3, "{status}");
    assert_eq!(status.matches("true").count(), 1, "exactly one leader: {status}");
}

#[test]
fn bad_input_gets_etcd_errors_and_the_member_keeps_serving() {
    let c = Cluster::start(3);
    // Over the 1.5 MiB request limit, under etcdctl's own 2 MiB one; the value goes on stdin
    // (a command-line argument this long exceeds the OS's limit).
    let big = "x".repeat(1_700_000);
    let out = c.ctl_at(&c.endpoints(), &["put", "big"], Some(&big));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("request is too large"), "{err}");
    let err = c.err(&["put", "--lease", "1234abcd", "k", "v"]);
    assert!(err.contains("requested lease not found"), "{err}");
    let mut many = String::from("\n");
    for i in 0..129 {
        many += &format!("put k{i} v\n");
    }
    many += "\n\n";
    let out = c.ctl_at(&c.endpoints(), &["txn"], Some(&many));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("too many operations in txn request"));
    assert_eq!(c.ok(&["put", "still", "serving"]).trim(), "OK");
}

#[test]
fn members_on_one_thread_and_on_several_serve_the_same_cluster() {
    // `--threads 1` (the default) runs a member on tokio's current-thread runtime, anything more
    // on its multi-thread one: both must serve writes, reads, watches and leases.
    let threads = |n: &str| vec!["--threads".to_string(), n.to_string()];
    let c = Cluster::start_with(&[threads("1"), threads("2"), threads("4")]);
    for (i, want) in [0, 2, 4].into_iter().enumerate() {
        let pid = c.members[i].child.as_ref().expect("running").id();
        let workers = std::fs::read_dir(format!("/proc/{pid}/task"))
            .expect("the member's threads")
            .filter(|t| {
                let comm = t.as_ref().ok().and_then(|t| std::fs::read_to_string(t.path().join("comm")).ok());
                comm.is_some_and(|c| c.starts_with("tokio-rt-worker"))
            })
            .count();
        assert_eq!(workers, want, "member {i}'s runtime worker threads");
    }
    for i in 0..3 {
        let at = c.endpoint(i);
        let out = c.ctl_at(&at, &["put", &format!("k{i}"), &format!("from {i}")], None);
        assert!(out.status.success(), "put at member {i}: {}", c.logs());
    }
    // A watch never ends by itself: each is stopped after 3 s, having printed the history from
    // revision 1.
    let watches: Vec<_> = (0..3)
        .map(|i| {
            std::process::Command::new("timeout")
                .args([
                    "3",
                    "etcdctl",
                    &format!("--endpoints={}", c.endpoint(i)),
                    "watch",
                    "--prefix",
                    "k",
                    "--rev=1",
                ])
                .env("ETCDCTL_API", "3")
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("run etcdctl")
        })
        .collect();
    for i in 0..3 {
        let out = c.ctl_at(&c.endpoint(i), &["get", "--prefix", "k"], None);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "k0\nfrom 0\nk1\nfrom 1\nk2\nfrom 2\n",
            "member {i}"
        );
    }
    for (i, watch) in watches.into_iter().enumerate() {
        let out = watch.wait_with_output().expect("etcdctl watch");
        let seen = String::from_utf8_lossy(&out.stdout);
        assert!(seen.contains("PUT\nk2\nfrom 2"), "member {i} watched: {seen}");
    }
    let grant = c.ctl_at(&c.endpoint(1), &["lease", "grant", "30"], None);
    let lease =
        String::from_utf8_lossy(&grant.stdout).split_whitespace().nth(1).unwrap_or_default().to_string();
    let out = c.ctl_at(&c.endpoint(2), &["lease", "timetolive", &lease], None);
    assert!(String::from_utf8_lossy(&out.stdout).contains("granted with TTL(30s)"), "{}", c.logs());
}

#[test]
fn a_killed_member_loses_no_acknowledged_write_and_a_killed_leader_is_replaced() {
    let mut c = Cluster::start(3);
    // A write whose outcome is unknown (timed out while a leader died) is retried, as a client
    // would; the check is that every acknowledged write survives.
    let put = |c: &Cluster, i: usize| {
        for _ in 0..60 {
            if c.ctl(&["put", &format!("key{i:03}"), &format!("v{i}")]).status.success() {
                return;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!("put {i} never acknowledged: {}", c.logs());
    };
    for i in 0..50 {
        put(&c, i);
    }
    // kill -9 a member (the leader or not), keep writing, restart it.
    c.kill(2);
    for i in 50..80 {
        put(&c, i);
    }
    c.start_member(2);
    std::thread::sleep(Duration::from_secs(2));
    let all = c.ctl_at(&c.endpoint(2), &["get", "--prefix", "key", "--keys-only"], None);
    let keys = String::from_utf8_lossy(&all.stdout).split_whitespace().count();
    assert_eq!(keys, 80, "the restarted member has every acknowledged write");

    // Kill the leader: a new one is elected and writes continue.
    let status = c.ok(&["endpoint", "status", "-w", "fields"]);
    let leader_id =
        status.lines().find_map(|l| l.strip_prefix("\"Leader\" : ")).expect("leader").trim().to_string();
    let leader = (0..3)
        .find(|&i| {
            let s = c.ctl_at(&c.endpoint(i), &["endpoint", "status", "-w", "fields"], None);
            String::from_utf8_lossy(&s.stdout).contains(&format!("\"MemberID\" : {leader_id}"))
        })
        .expect("the leader is one of the members");
    c.kill(leader);
    let mut written = false;
    for _ in 0..50 {
        if c.ctl(&["put", "after", "leader-died"]).status.success() {
            written = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(written, "no write succeeded after the leader died: {}", c.logs());
    assert_eq!(c.ok(&["get", "--prefix", "key", "--keys-only"]).split_whitespace().count(), 80);
}

#[test]
fn kill_9_under_a_write_load_loses_no_acknowledged_write() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let mut c = Cluster::start(3);
    let endpoints = c.endpoints();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut acked = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                i += 1;
                let out = std::process::Command::new("timeout")
                    .args(["30", "etcdctl", &format!("--endpoints={endpoints}"), "--command-timeout=5s"])
                    .args(["put", &format!("load{i:05}"), &format!("v{i}")])
                    .env("ETCDCTL_API", "3")
                    .output()
                    .expect("run etcdctl");
                if out.status.success() {
                    acked.push(i);
                }
            }
            acked
        })
    };
    std::thread::sleep(Duration::from_millis(1500));
    c.kill(1); // mid-write, whatever it was doing
    std::thread::sleep(Duration::from_millis(1500));
    c.start_member(1);
    std::thread::sleep(Duration::from_millis(1500));
    stop.store(true, Ordering::SeqCst);
    let acked = writer.join().unwrap();
    assert!(acked.len() > 10, "the load did little: {} writes", acked.len());
    std::thread::sleep(Duration::from_secs(2));
    for m in 0..3 {
        let out = c.ctl_at(&c.endpoint(m), &["get", "--prefix", "load", "--keys-only"], None);
        let keys: std::collections::BTreeSet<String> =
            String::from_utf8_lossy(&out.stdout).split_whitespace().map(str::to_string).collect();
        for i in &acked {
            assert!(keys.contains(&format!("load{i:05}")), "member {m} lost acknowledged write {i}");
        }
    }
}

/// etcdctl sends an endpoint written as a URL (`http://127.0.0.1:2379`, and every advertised
/// client URL under `--cluster`) as the HTTP/2 `:authority`; each per-endpoint command must
/// work with it, as with etcd.
#[test]
fn endpoints_written_as_urls_serve_every_per_endpoint_command() {
    let c = Cluster::start(3);
    let urls: Vec<String> = (0..3).map(|i| format!("http://{}", c.endpoint(i))).collect();
    let run = |eps: &str, args: &[&str]| {
        let out = c.ctl_at(eps, args, None);
        assert!(out.status.success(), "etcdctl {args:?} at {eps}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let status = run(&urls[0], &["endpoint", "status", "--cluster", "-w", "table"]);
    assert_eq!(status.matches("http://127.0.0.1:").count(), 3, "{status}");
    assert_eq!(status.matches("true").count(), 1, "exactly one leader: {status}");
    assert!(status.contains("+cairn."), "status says what answers: {status}");
    assert!(!status.contains(" 0 B "), "status reports the data on disk: {status}");
    let hashes = run(&urls.join(","), &["endpoint", "hashkv"]);
    assert_eq!(hashes.lines().count(), 3, "{hashes}");
    run(&urls[1], &["defrag", "--cluster"]);
    assert_eq!(run(&urls[2], &["put", "k", "v"]).trim(), "OK");
    assert_eq!(run(&urls.join(","), &["get", "k", "--print-value-only"]).trim(), "v");
}

/// A client configured with a user and password authenticates first; with authentication
/// disabled, etcd answers "not enabled" and the client goes on without a token.
#[test]
fn a_client_with_credentials_is_served_while_authentication_is_disabled() {
    let c = Cluster::start(1);
    c.ok(&["put", "k", "v"]);
    assert_eq!(c.ok(&["--user", "root:secret", "get", "k", "--print-value-only"]).trim(), "v");
    assert_eq!(c.ok(&["user", "list"]), "");
    assert!(c.err(&["user", "get", "nobody"]).contains("user name not found"));
    assert!(c.ok(&["auth", "disable"]).contains("Authentication Disabled"));
    // As etcd: no root user yet.
    let err = c.err(&["auth", "enable"]);
    assert!(err.contains("etcdserver: root user does not exist"), "{err}");
}

/// `endpoint hashkv --rev R` at or below the compacted revision fails as etcd's does.
#[test]
fn hashkv_at_a_compacted_revision_is_refused() {
    let c = Cluster::start(1);
    c.ok(&["put", "a", "1"]);
    c.ok(&["put", "a", "2"]);
    c.ok(&["put", "a", "3"]);
    c.ok(&["compaction", "3"]);
    for rev in ["2", "3"] {
        let err = c.err(&["endpoint", "hashkv", "--rev", rev]);
        assert!(err.contains("required revision has been compacted"), "rev {rev}: {err}");
    }
    assert!(c.ok(&["endpoint", "hashkv", "--rev", "4"]).contains("127.0.0.1"));
}

/// A member whose open-files limit is low, flooded with idle client connections: the ones past
/// its cap are closed at once, it keeps serving (writes, snapshots, its peers), and once the
/// flood is gone clients connect again.
#[test]
fn a_connection_flood_at_a_low_open_files_limit_is_refused_and_the_member_keeps_serving() {
    let c = {
        let mut c = Cluster::start(1);
        c.kill(0);
        c.members[0].fd_limit = Some(256);
        // Snapshots every 50 writes: each needs a file while the flood holds its sockets.
        c.members[0].args = vec!["--snapshot-count".into(), "50".into()];
        c.start_member(0);
        c.wait_healthy();
        c
    };
    let addr = c.endpoint(0);
    let mut flood = Vec::new();
    for _ in 0..400 {
        if let Ok(s) = std::net::TcpStream::connect(&addr) {
            flood.push(s);
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    // Past the cap, connections were closed by the member.
    let mut closed = 0;
    for s in &mut flood {
        use std::io::Read;
        s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        if matches!(s.read(&mut [0u8; 1]), Ok(0)) {
            closed += 1;
        }
    }
    assert!(closed >= 200, "only {closed} of 400 connections past a 256-descriptor limit were closed");
    let logs = c.logs();
    assert!(logs.contains("client connections at the cap"), "{logs}");
    assert!(logs.contains("open-files limit (ulimit -n) is low"), "{logs}");
    drop(flood);
    std::thread::sleep(Duration::from_millis(300));
    for i in 0..120 {
        assert_eq!(c.ok(&["put", &format!("k{i}"), "v"]).trim(), "OK", "put {i}");
    }
    assert_eq!(c.ok(&["get", "k119", "--print-value-only"]).trim(), "v");
    let logs = c.logs();
    assert!(!logs.contains("corrupt") && !logs.contains("Too many open files"), "{logs}");
}

/// A client that trickles an HTTP/1 request header (slowloris) is cut off after the header
/// timeout instead of holding its connection for as long as it likes.
#[test]
fn a_slowloris_client_is_closed_after_the_header_timeout() {
    use std::io::{Read, Write};
    let c = Cluster::start(1);
    let started = std::time::Instant::now();
    let mut s = std::net::TcpStream::connect(c.endpoint(0)).unwrap();
    s.write_all(b"GET /v2/keys/a HTTP/1.1\r\nHost: x\r\n").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let mut closed = false;
    while started.elapsed() < Duration::from_secs(25) {
        // A header line every second, never the blank line that ends the header.
        if s.write_all(b"X-Slow: 1\r\n").is_err() {
            closed = true;
            break;
        }
        match s.read(&mut [0u8; 256]) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(_) => {
                // An answer (408 or similar) before the close counts as closing it.
                closed = true;
                break;
            }
            Err(_) => {}
        }
    }
    let took = started.elapsed();
    assert!(closed, "the connection was still open after {took:?}");
    assert!(took >= Duration::from_secs(8) && took < Duration::from_secs(20), "closed after {took:?}");
    assert_eq!(c.ok(&["put", "still", "serving"]).trim(), "OK");
}

/// Connections an outsider breaks on purpose (here: HTTP/2 frames that are a protocol error)
/// are counted in one log line per interval, not logged one line each.
#[test]
fn broken_client_connections_cannot_flood_the_log() {
    use std::io::{Read, Write};
    let c = Cluster::start(1);
    for _ in 0..200 {
        let mut s = std::net::TcpStream::connect(c.endpoint(0)).unwrap();
        let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        bytes.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]); // SETTINGS
        bytes.extend_from_slice(&[0, 0, 1, 0, 0, 0, 0, 0, 0, 0]); // DATA on stream 0: forbidden
        let _ = s.write_all(&bytes);
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let _ = s.read(&mut [0u8; 1024]);
    }
    std::thread::sleep(Duration::from_millis(300));
    let logs = c.logs();
    let lines = logs.lines().filter(|l| l.contains("client connections ended in an error")).count();
    assert!((1..=2).contains(&lines), "{lines} lines for 200 broken connections:\n{logs}");
    assert_eq!(c.ok(&["put", "still", "serving"]).trim(), "OK");
}

/// A path nothing serves answers etcd's plain 404 (not a 200 carrying a gRPC status), and
/// `/version` names Cairn beside the etcd API level.
#[test]
fn an_unknown_http_path_is_a_404_and_version_names_cairn() {
    use std::io::{Read, Write};
    let c = Cluster::start(1);
    let get = |path: &str| {
        let mut s = std::net::TcpStream::connect(c.endpoint(0)).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        answer
    };
    for path in ["/nope", "/v3alpha/kv/range", "/etcdserverpb.KV/Nope"] {
        let answer = get(path);
        assert!(answer.starts_with("HTTP/1.1 404"), "{path}: {answer}");
        assert!(answer.ends_with("404 page not found\n"), "{path}: {answer}");
        assert!(!answer.contains("grpc-status"), "{path}: {answer}");
    }
    let version = get("/version");
    assert!(version.contains(r#""etcdserver":"3.4.0""#) && version.contains(r#""cairn":""#), "{version}");
}
