//! End-to-end recipes on the v2 keys API, the way v2 clients used etcd: service discovery with
//! TTL heartbeats, a config watch, a lock, a work queue, leader election. Against a single
//! Cairn member; `CAIRN_V2_DIFF_AGAINST=etcd` runs them against etcd 3.4, which is how the
//! recipes themselves are checked.

#[path = "support/ports.rs"]
mod ports;
#[path = "support/v2.rs"]
mod v2;

use std::time::{Duration, Instant};

use serde_json::Value;
use v2::{delete, get, post, put, system_under_test, Server};

/// A server and the answers its recipes read: (status, JSON body).
struct Kv(Server);

impl Kv {
    fn start() -> Kv {
        Kv(Server::start(system_under_test()))
    }

    fn call(&self, r: v2::Request) -> (u16, Value) {
        let a = self.0.send(&r);
        let body = serde_json::from_str(&a.body)
            .unwrap_or_else(|e| panic!("{} {}: not JSON ({e}): {a:?}", r.method, r.target));
        (a.status, body)
    }

    fn put(&self, target: &str, form: &str) -> (u16, Value) {
        self.call(put(target, form))
    }

    fn get(&self, target: &str) -> (u16, Value) {
        self.call(get(target))
    }

    /// The keys directly under a directory, sorted.
    fn list(&self, dir: &str) -> Vec<String> {
        let (status, body) = self.get(&format!("/v2/keys{dir}?sorted=true"));
        if status == 404 {
            return Vec::new();
        }
        assert_eq!(status, 200, "{body}");
        body["node"]["nodes"]
            .as_array()
            .map(|nodes| nodes.iter().map(|n| n["key"].as_str().unwrap().to_string()).collect())
            .unwrap_or_default()
    }
}

fn index(body: &Value) -> u64 {
    body["node"]["modifiedIndex"].as_u64().unwrap_or_else(|| panic!("no modifiedIndex: {body}"))
}

fn error_code(body: &Value) -> u64 {
    body["errorCode"].as_u64().unwrap_or_else(|| panic!("not an error: {body}"))
}

#[test]
fn service_registration_with_heartbeats() {
    let kv = Kv::start();
    for name in ["a", "b"] {
        let (status, _) =
            kv.put(&format!("/v2/keys/services/web/{name}"), &format!("value=10.0.0.{name}:80&ttl=2"));
        assert_eq!(status, 201);
    }
    assert_eq!(kv.list("/services/web"), ["/services/web/a", "/services/web/b"]);

    // `a` heartbeats by refreshing its TTL (no value, so watchers are not woken); `b` stops.
    let until = Instant::now() + Duration::from_millis(3500);
    while Instant::now() < until {
        let (status, body) = kv.put("/v2/keys/services/web/a?prevExist=true", "refresh=true&ttl=2");
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["node"]["value"], "10.0.0.a:80", "a refresh keeps the value");
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(kv.list("/services/web"), ["/services/web/a"], "b stopped heartbeating and expired");

    let (status, body) = kv.get("/v2/keys/services/web/b");
    assert_eq!((status, error_code(&body)), (404, 100));
}

#[test]
fn config_watch_sees_a_change() {
    let kv = Kv::start();
    let (_, body) = kv.put("/v2/keys/config/app/level", "value=info");
    // Waiting from the next index cannot miss a change made before the poll is registered.
    let next = index(&body) + 1;
    let watch =
        v2::start(&kv.0.url, &get(&format!("/v2/keys/config/app?wait=true&recursive=true&waitIndex={next}")));
    kv.put("/v2/keys/config/app/level", "value=debug");
    let event = watch.finish();
    assert_eq!(event.status, 200);
    let event = event.json();
    assert_eq!(event["action"], "set");
    assert_eq!(event["node"]["key"], "/config/app/level");
    assert_eq!(event["node"]["value"], "debug");
    assert_eq!(event["prevNode"]["value"], "info");

    // A plain wait=true registered first, then the change.
    let watch = v2::start(&kv.0.url, &get("/v2/keys/config/app/level?wait=true"));
    kv.put("/v2/keys/config/app/level?prevValue=debug", "value=warn");
    let event = watch.finish().json();
    assert_eq!(
        (event["action"].as_str(), event["node"]["value"].as_str()),
        (Some("compareAndSwap"), Some("warn"))
    );
}

#[test]
fn lock_by_prev_exist() {
    let kv = Kv::start();
    let (status, _) = kv.put("/v2/keys/locks/job?prevExist=false", "value=alice&ttl=30");
    assert_eq!(status, 201, "alice takes the free lock");

    let (status, body) = kv.put("/v2/keys/locks/job?prevExist=false", "value=bob&ttl=30");
    assert_eq!((status, error_code(&body)), (412, 105), "bob must wait: {body}");
    let held_at = body["index"].as_u64().unwrap();

    // Bob waits for the lock to go; only its holder may release it.
    let watch =
        v2::start(&kv.0.url, &get(&format!("/v2/keys/locks/job?wait=true&waitIndex={}", held_at + 1)));
    let (status, body) = kv.call(delete("/v2/keys/locks/job?prevValue=bob"));
    assert_eq!((status, error_code(&body)), (412, 101), "bob cannot release alice's lock");
    let (status, _) = kv.call(delete("/v2/keys/locks/job?prevValue=alice"));
    assert_eq!(status, 200);
    let event = watch.finish().json();
    assert_eq!(event["action"], "compareAndDelete");

    let (status, _) = kv.put("/v2/keys/locks/job?prevExist=false", "value=bob&ttl=1");
    assert_eq!(status, 201, "bob gets it after release");

    // Bob dies holding it: carol gets it once the TTL runs out.
    let (status, _) = kv.put("/v2/keys/locks/job?prevExist=false", "value=carol&ttl=30");
    assert_eq!(status, 412);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, body) = kv.put("/v2/keys/locks/job?prevExist=false", "value=carol&ttl=30");
        if status == 201 {
            assert_eq!(body["node"]["value"], "carol");
            break;
        }
        assert_eq!(error_code(&body), 105, "{body}");
        assert!(Instant::now() < deadline, "bob's lock never expired");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn ordered_queue() {
    let kv = Kv::start();
    for job in ["first", "second", "third"] {
        let (status, body) = kv.call(post("/v2/keys/queue", &format!("value={job}")));
        assert_eq!((status, body["action"].as_str()), (201, Some("create")));
        let key = body["node"]["key"].as_str().unwrap();
        let name = key.strip_prefix("/queue/").unwrap();
        assert!(name.len() == 20 && name.bytes().all(|b| b.is_ascii_digit()), "{key}");
    }

    // Two consumers look at the head at once; compareAndDelete lets exactly one take it.
    let (_, listing) = kv.get("/v2/keys/queue?sorted=true");
    let nodes = listing["node"]["nodes"].as_array().unwrap().clone();
    let values: Vec<&str> = nodes.iter().map(|n| n["value"].as_str().unwrap()).collect();
    assert_eq!(values, ["first", "second", "third"]);
    let head = &nodes[0];
    let take = |n: &Value| {
        kv.call(delete(&format!("/v2/keys{}?prevIndex={}", n["key"].as_str().unwrap(), n["modifiedIndex"])))
    };
    let (status, body) = take(head);
    assert_eq!((status, body["action"].as_str()), (200, Some("compareAndDelete")));
    assert_eq!(body["prevNode"]["value"], "first");
    let (status, body) = take(head);
    assert_eq!((status, error_code(&body)), (404, 100), "the loser finds it gone");

    let mut consumed = Vec::new();
    loop {
        let (_, listing) = kv.get("/v2/keys/queue?sorted=true");
        let Some(next) = listing["node"]["nodes"].as_array().and_then(|n| n.first()).cloned() else { break };
        let (status, body) = take(&next);
        assert_eq!(status, 200, "{body}");
        consumed.push(body["prevNode"]["value"].as_str().unwrap().to_string());
    }
    assert_eq!(consumed, ["second", "third"]);
    assert!(kv.list("/queue").is_empty());
}

#[test]
fn leader_election_by_compare_and_swap() {
    let kv = Kv::start();
    let campaign =
        |who: &str| kv.put("/v2/keys/election/leader?prevExist=false", &format!("value={who}&ttl=2"));
    let renew = |who: &str| {
        kv.put(&format!("/v2/keys/election/leader?prevValue={who}"), &format!("value={who}&ttl=2"))
    };

    let (status, _) = campaign("alpha");
    assert_eq!(status, 201, "alpha is elected");
    let (status, body) = campaign("beta");
    assert_eq!((status, error_code(&body)), (412, 105), "beta loses while alpha holds it");

    // alpha renews past its first TTL.
    for _ in 0..4 {
        std::thread::sleep(Duration::from_millis(600));
        let (status, body) = renew("alpha");
        assert_eq!((status, body["action"].as_str()), (200, Some("compareAndSwap")), "{body}");
    }
    let (status, body) = renew("beta");
    assert_eq!((status, error_code(&body)), (412, 101), "beta cannot renew alpha's term");

    // alpha stops renewing: beta campaigns until the term has expired.
    let deadline = Instant::now() + Duration::from_secs(6);
    loop {
        let (status, body) = campaign("beta");
        if status == 201 {
            break;
        }
        assert_eq!(error_code(&body), 105, "{body}");
        assert!(Instant::now() < deadline, "alpha's term never expired");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (status, body) = renew("alpha");
    assert_eq!((status, error_code(&body)), (412, 101), "a deposed leader's renewal fails");
    let (_, body) = kv.get("/v2/keys/election/leader");
    assert_eq!(body["node"]["value"], "beta");
}
