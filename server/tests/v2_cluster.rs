//! The v2 keys API on a 3-member Cairn cluster: one replicated store, whichever member a
//! client talks to. Writes on any member, linearizable reads (`quorum=true`) everywhere, waits
//! on one member woken by writes made on another, TTL expiry decided once for all replicas,
//! compare-and-swap under contention from every member, and v2 data surviving kill -9.

#[path = "support/ports.rs"]
mod ports;
mod support;
#[path = "support/v2.rs"]
mod v2;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::Cluster;
use v2::{get, put, Response};

fn url(c: &Cluster, i: usize) -> String {
    format!("http://{}", c.endpoint(i))
}

fn send(c: &Cluster, i: usize, r: &v2::Request) -> Response {
    v2::send(&url(c, i), r)
}

/// Retries `r` on member `i` until `ok` holds (a member may still be catching up after a
/// restart), or fails after 20 s.
fn eventually(c: &Cluster, i: usize, r: &v2::Request, ok: impl Fn(&Response) -> bool) -> Response {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(resp) = v2::try_send(&url(c, i), r) {
            if ok(&resp) {
                return resp;
            }
            if Instant::now() > deadline {
                panic!("member {i}: {} never satisfied the check; last answer {resp:?}", r.describe());
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn one_store_whichever_member_is_asked() {
    let c = Cluster::start(3);
    // A write on each member; every member reads all three, linearizably.
    for i in 0..3 {
        let r = send(&c, i, &put(&format!("/v2/keys/svc/m{i}"), &format!("value=v{i}")));
        assert_eq!(r.status, 201, "{r:?}");
    }
    let mut indexes = vec![];
    for i in 0..3 {
        let r = send(&c, i, &get("/v2/keys/svc?quorum=true&sorted=true"));
        assert_eq!(r.status, 200, "{r:?}");
        let nodes = r.json()["node"]["nodes"].clone();
        let values: Vec<&str> =
            nodes.as_array().unwrap().iter().map(|n| n["value"].as_str().unwrap()).collect();
        assert_eq!(values, ["v0", "v1", "v2"], "member {i}");
        indexes.push(r.etcd_index());
    }
    assert!(indexes.windows(2).all(|w| w[0] == w[1]), "one index on every member: {indexes:?}");

    // A wait on member 0 is woken by a write through member 2.
    let pending = v2::start(&url(&c, 0), &get("/v2/keys/svc?wait=true&recursive=true"));
    let w = send(&c, 2, &put("/v2/keys/svc/m9", "value=late"));
    assert_eq!(w.status, 201);
    let event = pending.finish();
    assert_eq!(event.status, 200);
    let e = event.json();
    assert_eq!(e["action"], "set");
    assert_eq!(e["node"]["key"], "/svc/m9");
    assert_eq!(e["node"]["modifiedIndex"], w.json()["node"]["modifiedIndex"]);

    // The same history on every member: a waitIndex replay answers the same event.
    let at = w.json()["node"]["modifiedIndex"].as_u64().unwrap();
    let replays: Vec<Value> = (0..3)
        .map(|i| send(&c, i, &get(&format!("/v2/keys/svc/m9?wait=true&waitIndex={at}"))).json())
        .collect();
    assert!(replays.iter().all(|r| r["node"] == e["node"]), "{replays:?}");
}

#[test]
fn a_ttl_key_expires_once_for_every_replica() {
    let c = Cluster::start(3);
    let r = send(&c, 1, &put("/v2/keys/lease?ttl=1", "value=held"));
    assert_eq!(r.status, 201, "{r:?}");
    let created = r.json()["node"]["modifiedIndex"].as_u64().unwrap();
    // Expiry is one replicated change: each member ends up without the key, at the same index,
    // with the same `expire` event in its history.
    for i in 0..3 {
        eventually(&c, i, &get("/v2/keys/lease?quorum=true"), |r| r.status == 404);
    }
    let events: Vec<Value> = (0..3)
        .map(|i| send(&c, i, &get(&format!("/v2/keys/lease?wait=true&waitIndex={}", created + 1))).json())
        .collect();
    for e in &events {
        assert_eq!(e["action"], "expire", "{events:?}");
        assert_eq!(e["node"]["modifiedIndex"], created + 1, "{events:?}");
        assert_eq!(e["prevNode"]["value"], "held");
    }
    for i in 0..3 {
        let stats = send(&c, i, &get("/v2/stats/store")).json();
        assert_eq!(stats["expireCount"], 1, "member {i}: {stats}");
    }
}

#[test]
fn compare_and_swap_from_every_member_loses_no_increment() {
    let c = Cluster::start(3);
    assert_eq!(send(&c, 0, &put("/v2/keys/counter", "value=0")).status, 201);
    let per_client = 15;
    let urls: Vec<String> = (0..3).map(|i| url(&c, i)).collect();
    let handles: Vec<_> = urls
        .into_iter()
        .map(|base| {
            std::thread::spawn(move || {
                let mut done = 0;
                while done < per_client {
                    let cur = v2::send(&base, &get("/v2/keys/counter?quorum=true"));
                    let n: u64 = cur.json()["node"]["value"].as_str().unwrap().parse().unwrap();
                    let idx = cur.json()["node"]["modifiedIndex"].as_u64().unwrap();
                    let r = v2::send(
                        &base,
                        &put(&format!("/v2/keys/counter?prevIndex={idx}"), &format!("value={}", n + 1)),
                    );
                    match r.status {
                        200 => done += 1,
                        412 => assert_eq!(r.json()["errorCode"], 101, "{r:?}"),
                        s => panic!("unexpected {s}: {r:?}"),
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("client thread");
    }
    for i in 0..3 {
        let r = send(&c, i, &get("/v2/keys/counter?quorum=true"));
        assert_eq!(r.json()["node"]["value"], (3 * per_client).to_string(), "member {i}");
    }
}

#[test]
fn v2_data_survives_kill_9() {
    let mut c = Cluster::start(3);
    for k in 0..20 {
        let r = send(&c, k % 3, &put(&format!("/v2/keys/dir/k{k:02}"), &format!("value={k}")));
        assert_eq!(r.status, 201);
    }
    let before = send(&c, 0, &get("/v2/keys/dir?quorum=true&recursive=true&sorted=true")).json();
    for i in 0..3 {
        c.kill(i);
    }
    for i in 0..3 {
        c.start_member(i);
    }
    c.wait_healthy();
    for i in 0..3 {
        let after = eventually(&c, i, &get("/v2/keys/dir?quorum=true&recursive=true&sorted=true"), |r| {
            r.status == 200
        });
        assert_eq!(after.json()["node"], before["node"], "member {i} after restart");
    }
}

/// `/v2/stats/self` and `/v2/stats/leader` report the peer traffic as etcd does: followers count
/// the append requests (appends and heartbeats) they receive, with rates over the last second,
/// the leader those it sends, and the leader each follower's response latency and counts.
#[test]
fn peer_stats_count_appends_rates_and_follower_latency() {
    let c = Cluster::start(3);
    for i in 0..3 {
        send(&c, i, &put("/v2/keys/s", &format!("value={i}")));
    }
    std::thread::sleep(Duration::from_millis(500));
    let selves: Vec<Value> = (0..3).map(|i| send(&c, i, &get("/v2/stats/self")).json()).collect();
    let leader = selves.iter().position(|s| s["state"] == "StateLeader").expect("a leader");
    for (i, s) in selves.iter().enumerate() {
        if i == leader {
            assert!(s["sendAppendRequestCnt"].as_u64().unwrap() > 0, "{s}");
            assert!(s["sendPkgRate"].as_f64().unwrap() > 0.0, "{s}");
            assert!(s["sendBandwidthRate"].as_f64().unwrap() > 0.0, "{s}");
            assert!(s.get("recvPkgRate").is_none(), "a leader receives no appends: {s}");
        } else {
            assert!(s["recvAppendRequestCnt"].as_u64().unwrap() > 0, "{s}");
            assert!(s["recvPkgRate"].as_f64().unwrap() > 0.0, "{s}");
            assert!(s["recvBandwidthRate"].as_f64().unwrap() > 0.0, "{s}");
            assert_eq!(s["sendAppendRequestCnt"], 0, "{s}");
        }
    }
    let stats = send(&c, leader, &get("/v2/stats/leader")).json();
    let followers = stats["followers"].as_object().expect("followers");
    assert_eq!(followers.len(), 2, "{stats}");
    for (id, f) in followers {
        assert!(f["counts"]["success"].as_u64().unwrap() > 0, "{id}: {f}");
        let l = &f["latency"];
        let (min, avg, max) =
            (l["minimum"].as_f64().unwrap(), l["average"].as_f64().unwrap(), l["maximum"].as_f64().unwrap());
        assert!(0.0 < min && min <= avg && avg <= max && max < 1.0, "{id}: {f}");
    }
    let follower = (0..3).find(|&i| i != leader).unwrap();
    assert_eq!(send(&c, follower, &get("/v2/stats/leader")).status, 403);
}

/// curl: the status and the body.
fn curl(method: &str, url: &str, json: Option<&str>) -> (u16, String) {
    let mut cmd = std::process::Command::new("curl");
    cmd.args(["-s", "-w", "\n%{http_code}", "-X", method, url]);
    if let Some(body) = json {
        cmd.args(["-H", "Content-Type: application/json", "-d", body]);
    }
    let out = cmd.output().expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').expect("a status line");
    (status.trim().parse().expect("a status"), body.to_string())
}

#[test]
fn members_added_updated_and_removed_through_v2() {
    let c = Cluster::start(3);
    let members = format!("{}/v2/members", url(&c, 0));
    let spare = ports::free_port();
    // A voter added (v2 has no learners): the three started members stay a quorum of four.
    let (status, body) =
        curl("POST", &members, Some(&format!(r#"{{"peerURLs":["http://127.0.0.1:{spare}"]}}"#)));
    assert_eq!(status, 201, "{body}");
    let added: Value = serde_json::from_str(&body).unwrap();
    let id = added["id"].as_str().unwrap().to_string();
    assert_eq!(added["peerURLs"][0], format!("http://127.0.0.1:{spare}"));
    assert_eq!(added["name"], "");
    // Listed by every member once applied.
    for i in 0..3 {
        let list = format!("{}/v2/members", url(&c, i));
        let deadline = Instant::now() + Duration::from_secs(10);
        while !curl("GET", &list, None).1.contains(&id) {
            assert!(Instant::now() < deadline, "member {i} never listed {id}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    // The same peer URL again: 409.
    let (status, body) =
        curl("POST", &members, Some(&format!(r#"{{"peerURLs":["http://127.0.0.1:{spare}"]}}"#)));
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("membership: peerURL exists"), "{body}");
    // Not JSON: 415; bad URLs: 400.
    let (status, _) = curl("POST", &members, None);
    assert_eq!(status, 415);
    assert_eq!(curl("POST", &members, Some(r#"{"peerURLs":["nope"]}"#)).0, 400);
    // Updated, then removed; a removed member is 410 from then on, an unknown one 404.
    let other = ports::free_port();
    let (status, body) = curl(
        "PUT",
        &format!("{members}/{id}"),
        Some(&format!(r#"{{"peerURLs":["http://127.0.0.1:{other}"]}}"#)),
    );
    assert_eq!(status, 204, "{body}");
    assert!(curl("GET", &members, None).1.contains(&format!("127.0.0.1:{other}")));
    assert_eq!(curl("DELETE", &format!("{members}/{id}"), None).0, 204);
    let (status, body) = curl("DELETE", &format!("{members}/{id}"), None);
    assert_eq!(
        (status, body.as_str()),
        (410, format!(r#"{{"message":"Member permanently removed: {id}"}}"#).as_str())
    );
    assert_eq!(curl("DELETE", &format!("{members}/ffff"), None).0, 404);
    // The cluster still serves.
    assert_eq!(send(&c, 1, &put("/v2/keys/after", "value=members")).status, 201);
}
