//! Scenario scripts: `core/tests/scenarios/*.txt`, in the style of etcd-io/raft's datadriven
//! interaction tests. Each block is a command, a `----` line, and the expected output up to a
//! blank line:
//!
//! ```text
//! put 1 foo bar
//! ----
//! ok rev=2
//! ```
//!
//! Golden output is rewritten on purpose with `CAIRN_REWRITE=1 cargo test -p cairn-core --test
//! scenario` and reviewed as a diff.
//!
//! Commands (member ids are numbers; `run` moves simulated time):
//! - `cluster N [seed=S] [snapshot-entries=K]`: a fresh cluster of N members
//! - `campaign ID`, `run MS`, `wait-leader`, `status`
//! - `put ID KEY VALUE [lease=L]`, `get ID KEY [serializable]`, `del ID KEY [prefix]`
//! - `range ID KEY END [limit=N] [rev=R]`, `cas ID KEY EXPECTED_VERSION VALUE`, `compact ID REV`
//! - `lease-grant ID TTL` (prints `lease=<n>`: later commands use `L<n>` for it, in order),
//!   `lease-keepalive ID L1`, `lease-ttl ID L1`, `lease-revoke ID L1`
//! - `isolate ID`, `partition A,B C,D`, `heal`, `crash ID`, `restart ID`
//! - `events ID`: the events member ID emitted since the last `events ID`
//! - `disk ID`: what member ID has on its disk: snapshot index, log range, snapshots installed

mod support;

use std::collections::BTreeMap;
use std::fmt::Write;

use cairn_core::kv::*;
use cairn_core::{Request, Response, ResponseBody};
use support::{b, Cluster};

struct Script {
    cluster: Option<Cluster>,
    leases: Vec<i64>,
    events_seen: BTreeMap<u64, usize>,
}

impl Script {
    fn c(&mut self) -> &mut Cluster {
        self.cluster.as_mut().expect("`cluster N` first")
    }

    fn lease(&self, name: &str) -> i64 {
        let n: usize = name.trim_start_matches('L').parse().expect("lease names are L1, L2, ...");
        self.leases[n - 1]
    }

    fn run(&mut self, line: &str) -> String {
        let words: Vec<&str> = line.split_whitespace().collect();
        let opt = |name: &str| -> Option<&str> {
            words.iter().find_map(|w| w.strip_prefix(name).and_then(|r| r.strip_prefix('=')))
        };
        let num = |i: usize| -> u64 {
            words[i].parse().unwrap_or_else(|_| panic!("`{line}`: word {i} is a number"))
        };
        match words[0] {
            "cluster" => {
                let seed = opt("seed").map_or(1, |s| s.parse().unwrap());
                let snap = opt("snapshot-entries").map(|s| s.parse().unwrap());
                self.cluster = Some(Cluster::with_config(num(1), seed, |cfg| {
                    if let Some(n) = snap {
                        cfg.snapshot_entries = n;
                        cfg.snapshot_catch_up_entries = n / 4;
                    }
                }));
                self.leases.clear();
                self.events_seen.clear();
                "ok".into()
            }
            "campaign" => {
                let id = num(1);
                self.c().core_mut(id).campaign();
                self.c().stabilize();
                self.status_of(id)
            }
            "run" => {
                self.c().run_for(num(1));
                "ok".into()
            }
            "wait-leader" => format!("leader={}", self.c().wait_for_leader()),
            "status" => {
                let ids: Vec<u64> = self.c().members.keys().copied().collect();
                ids.iter().map(|&id| self.status_of(id)).collect::<Vec<_>>().join("\n")
            }
            "put" => {
                let lease = opt("lease").map_or(0, |l| self.lease(l));
                let req = PutRequest {
                    key: b(words[2]),
                    value: b(words[3]),
                    lease,
                    prev_kv: true,
                    ..Default::default()
                };
                let r = self.c().request(num(1), Request::Put(req));
                show(r)
            }
            "get" => {
                let serializable = words.get(3) == Some(&"serializable");
                let req = RangeRequest { key: b(words[2]), serializable, ..Default::default() };
                show(self.c().request(num(1), Request::Range(req)))
            }
            "range" => {
                let req = RangeRequest {
                    key: b(words[2]),
                    range_end: b(words[3]),
                    limit: opt("limit").map_or(0, |s| s.parse().unwrap()),
                    revision: opt("rev").map_or(0, |s| s.parse().unwrap()),
                    ..Default::default()
                };
                show(self.c().request(num(1), Request::Range(req)))
            }
            "del" => {
                let mut end = bytes::Bytes::new();
                if words.get(3) == Some(&"prefix") {
                    let mut e = words[2].as_bytes().to_vec();
                    *e.last_mut().unwrap() += 1;
                    end = e.into();
                }
                let req = DeleteRangeRequest { key: b(words[2]), range_end: end, prev_kv: true };
                show(self.c().request(num(1), Request::DeleteRange(req)))
            }
            "cas" => {
                let txn = TxnRequest {
                    compare: vec![Compare {
                        result: CompareResult::Equal,
                        target: CompareTarget::Version(num(3) as i64),
                        key: b(words[2]),
                        range_end: Default::default(),
                    }],
                    success: vec![RequestOp::Put(PutRequest {
                        key: b(words[2]),
                        value: b(words[4]),
                        ..Default::default()
                    })],
                    failure: vec![RequestOp::Range(RangeRequest { key: b(words[2]), ..Default::default() })],
                };
                show(self.c().request(num(1), Request::Txn(txn)))
            }
            "compact" => {
                let req = CompactionRequest { revision: num(2) as i64, physical: false };
                show(self.c().request(num(1), Request::Compact(req)))
            }
            "lease-grant" => {
                let r = self.c().request(num(1), Request::LeaseGrant { id: 0, ttl_secs: num(2) as i64 });
                match r {
                    Ok(Response { body: ResponseBody::LeaseGrant { id, ttl_secs }, header }) => {
                        self.leases.push(id);
                        format!("ok rev={} lease=L{} ttl={ttl_secs}", header.revision, self.leases.len())
                    }
                    other => show(other),
                }
            }
            "lease-keepalive" => {
                let id = self.lease(words[2]);
                show(self.c().request(num(1), Request::LeaseKeepAlive { id }))
            }
            "lease-ttl" => {
                let id = self.lease(words[2]);
                show(self.c().request(num(1), Request::LeaseTimeToLive { id, keys: true }))
            }
            "lease-revoke" => {
                let id = self.lease(words[2]);
                show(self.c().request(num(1), Request::LeaseRevoke { id }))
            }
            "isolate" => {
                let id = num(1);
                self.c().isolate(id);
                "ok".into()
            }
            "partition" => {
                let group = |w: &str| -> Vec<u64> { w.split(',').map(|x| x.parse().unwrap()).collect() };
                let (a, bb) = (group(words[1]), group(words[2]));
                self.c().partition(&a, &bb);
                "ok".into()
            }
            "heal" => {
                self.c().heal();
                "ok".into()
            }
            "crash" => {
                let id = num(1);
                self.c().crash(id);
                "ok".into()
            }
            "restart" => {
                let id = num(1);
                self.c().restart(id);
                self.events_seen.insert(id, 0);
                self.status_of(id)
            }
            "disk" => {
                let d = &self.c().members[&num(1)].disk;
                format!(
                    "snapshot={} log=[{}..{}] snapshots-installed={}",
                    d.snapshot.as_ref().map_or(0, |s| s.get_metadata().index),
                    d.entries.first().map_or(0, |e| e.index),
                    d.entries.last().map_or(0, |e| e.index),
                    d.snapshots_installed
                )
            }
            "events" => {
                let id = num(1);
                let seen = self.events_seen.get(&id).copied().unwrap_or(0);
                let events = &self.cluster.as_ref().expect("`cluster N` first").members[&id].events;
                let mut s = String::new();
                for e in &events[seen..] {
                    let kv = &e.kv;
                    let _ = write!(s, "{:?} {} rev={}", e.kind, text(&kv.key), kv.mod_revision);
                    if e.kind == EventKind::Put {
                        let _ = write!(
                            s,
                            " value={} ver={} lease={}",
                            text(&kv.value),
                            kv.version,
                            lease_name(&self.leases, kv.lease)
                        );
                    }
                    if let Some(p) = &e.prev_kv {
                        let _ = write!(s, " prev={}", text(&p.value));
                    }
                    s.push('\n');
                }
                let n = events.len();
                self.events_seen.insert(id, n);
                if s.is_empty() {
                    "none".into()
                } else {
                    s.trim_end().into()
                }
            }
            other => panic!("unknown command `{other}`"),
        }
    }

    fn status_of(&mut self, id: u64) -> String {
        let c = self.c();
        if !c.is_up(id) {
            return format!("{id}: down");
        }
        let core = c.core(id);
        format!(
            "{id}: {:?} term={} leader={} commit={} applied={} rev={}",
            core.role(),
            core.term(),
            core.leader(),
            core.commit_index(),
            core.applied_index(),
            core.state().mvcc().current_revision()
        )
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn lease_name(leases: &[i64], id: i64) -> String {
    match leases.iter().position(|&l| l == id) {
        Some(i) => format!("L{}", i + 1),
        None => id.to_string(),
    }
}

/// Renders a response compactly; lease ids are not shown (they are derived from log indexes).
fn show(r: cairn_core::Result<Response>) -> String {
    let r = match r {
        Ok(r) => r,
        Err(e) => return format!("error: {e}"),
    };
    let kv = |kv: &KeyValue| {
        format!(
            "{}={} (create={} mod={} ver={})",
            text(&kv.key),
            text(&kv.value),
            kv.create_revision,
            kv.mod_revision,
            kv.version
        )
    };
    let body = match &r.body {
        ResponseBody::Put(p) => p.prev_kv.as_ref().map_or("prev=none".into(), |p| format!("prev={}", kv(p))),
        ResponseBody::Range(rr) => {
            let mut s = format!("count={} more={}", rr.count, rr.more);
            for x in &rr.kvs {
                s += &format!("\n  {}", kv(x));
            }
            s
        }
        ResponseBody::DeleteRange(d) => format!("deleted={}", d.deleted),
        ResponseBody::Txn(t) => format!("succeeded={} responses={}", t.succeeded, t.responses.len()),
        ResponseBody::Compact => "compacted".into(),
        ResponseBody::LeaseKeepAlive { ttl_secs, .. } => format!("ttl={ttl_secs}"),
        ResponseBody::LeaseTimeToLive { ttl_secs, granted_ttl_secs, keys, .. } => {
            let keys: Vec<String> = keys.iter().map(|k| text(k)).collect();
            format!("ttl={ttl_secs} granted={granted_ttl_secs} keys={keys:?}")
        }
        other => format!("{other:?}"),
    };
    format!("ok rev={} {body}", r.header.revision)
}

fn run_file(path: &std::path::Path) -> (String, String) {
    let input = std::fs::read_to_string(path).unwrap();
    let mut script = Script { cluster: None, leases: vec![], events_seen: BTreeMap::new() };
    let mut rewritten = String::new();
    let mut lines = input.lines().peekable();
    while let Some(line) = lines.next() {
        if line.trim().is_empty() || line.starts_with('#') {
            rewritten += line;
            rewritten.push('\n');
            continue;
        }
        let sep = lines.next();
        assert_eq!(sep, Some("----"), "{}: `{line}` must be followed by ----", path.display());
        while lines.peek().is_some_and(|l| !l.trim().is_empty()) {
            lines.next();
        }
        let got = script.run(line);
        let _ = write!(rewritten, "{line}\n----\n{got}\n");
    }
    (input, rewritten)
}

#[test]
fn scenarios() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios");
    let mut paths: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    paths.sort();
    assert!(!paths.is_empty());
    let rewrite = std::env::var_os("CAIRN_REWRITE").is_some();
    let mut failed = vec![];
    for path in paths {
        let (want, got) = run_file(&path);
        if want != got {
            if rewrite {
                std::fs::write(&path, &got).unwrap();
            } else {
                eprintln!("--- {} differs; got:\n{got}", path.display());
                failed.push(path.display().to_string());
            }
        }
    }
    assert!(failed.is_empty(), "scenarios differ from golden output: {failed:?} (CAIRN_REWRITE=1 to accept)");
}
