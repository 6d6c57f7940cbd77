//! The v3 JSON gateway against etcd 3.4's: one real etcd and one `cairn` member, both fresh
//! (revision 1), are sent the same requests, and their answers compared as JSON once what
//! legitimately differs is set aside (ids, raft terms, versions, sizes; see `normalised`).
//!
//! Needs `/usr/bin/etcd` (Debian's etcd-server, installed by `.ci/run`).

#[path = "support/ports.rs"]
mod ports;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const ETCD: &str = "/usr/bin/etcd";

/// A server process on loopback, killed when dropped.
struct Server {
    child: Child,
    client_port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    crate::ports::free_port()
}

/// Starts `program` with etcd's flags for a single member named `name`.
fn start(program: &str, name: &str) -> Server {
    let dir = tempfile::tempdir().expect("temp dir");
    let (client_port, peer_port) = (free_port(), free_port());
    let client = format!("http://127.0.0.1:{client_port}");
    let peer = format!("http://127.0.0.1:{peer_port}");
    let log = std::fs::File::create(dir.path().join("log")).expect("log file");
    let child = Command::new(program)
        .args(["--name", name])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
        .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
        .args(["--initial-cluster", &format!("{name}={peer}")])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("start {program}: {e}"));
    Server { child, client_port, _dir: dir }
}

impl Server {
    /// Waits until the member has a leader (`/health`), without writing anything.
    fn wait_ready(&self, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(resp) = self.request("GET", "/health", "") {
                if resp.status == 200 && resp.body.contains("true") {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "{what} not healthy after 15 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn post(&self, path: &str, body: &str) -> Answer {
        self.request("POST", path, body).unwrap_or_else(|e| panic!("POST {path}: {e}"))
    }

    /// One HTTP/1.0 exchange: the server closes the connection after the answer, so a streamed
    /// answer needs no chunked decoding.
    fn request(&self, method: &str, path: &str, body: &str) -> std::io::Result<Answer> {
        let mut conn = self.send(method, path, body)?;
        let (status, content_type) = read_head(&mut conn)?;
        let mut body = String::new();
        conn.read_to_string(&mut body)?;
        Ok(Answer { status, content_type, body })
    }

    fn send(&self, method: &str, path: &str, body: &str) -> std::io::Result<BufReader<TcpStream>> {
        let mut conn = TcpStream::connect(("127.0.0.1", self.client_port))?;
        conn.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(
            conn,
            "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )?;
        Ok(BufReader::new(conn))
    }

    /// Opens a stream (watch, keep-alive) whose answers are read line by line.
    fn open_stream(&self, path: &str, body: &str) -> Lines {
        let mut conn = self.send("POST", path, body).unwrap_or_else(|e| panic!("POST {path}: {e}"));
        let (status, _) = read_head(&mut conn).unwrap_or_else(|e| panic!("POST {path}: {e}"));
        Lines { status, conn }
    }
}

/// A stream whose requests are sent one at a time, in a chunked HTTP/1.1 body, while its
/// answers are read: the way a client adds and cancels watches on an open watch stream.
struct Upload {
    conn: TcpStream,
    answers: BufReader<TcpStream>,
    /// Answer text read but not yet taken (chunks need not end at a newline).
    pending: String,
}

impl Upload {
    /// Opens the stream with its first request (etcd sends no status line before it answers
    /// one).
    fn open(server: &Server, path: &str, first: &str) -> Upload {
        let mut conn = TcpStream::connect(("127.0.0.1", server.client_port)).expect("connect");
        conn.set_read_timeout(Some(Duration::from_secs(5))).expect("read timeout");
        write!(
            conn,
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        )
        .expect("send");
        let answers = BufReader::new(conn.try_clone().expect("clone"));
        let mut upload = Upload { conn, answers, pending: String::new() };
        upload.send(first);
        let (status, _) = read_head(&mut upload.answers).expect("a status line");
        assert_eq!(status, 200, "POST {path} {first}");
        upload
    }

    fn send(&mut self, request: &str) {
        write!(self.conn, "{:x}\r\n{request}\r\n", request.len()).expect("send a request");
    }

    /// The next answer line, read from the chunked body.
    fn next(&mut self) -> Value {
        loop {
            if let Some(end) = self.pending.find('\n') {
                let line: String = self.pending.drain(..=end).collect();
                return serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"));
            }
            let mut size = String::new();
            self.answers.read_line(&mut size).expect("a chunk within 5 s");
            let size =
                usize::from_str_radix(size.trim(), 16).unwrap_or_else(|e| panic!("chunk size {size:?}: {e}"));
            assert!(size > 0, "the stream ended");
            let mut chunk = vec![0; size + 2];
            self.answers.read_exact(&mut chunk).expect("a whole chunk");
            self.pending.push_str(std::str::from_utf8(&chunk[..size]).expect("UTF-8"));
        }
    }
}

/// Reads the status line and headers; returns the status and the content type.
fn read_head(conn: &mut BufReader<TcpStream>) -> std::io::Result<(u16, String)> {
    let mut line = String::new();
    conn.read_line(&mut line)?;
    let status = line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut content_type = String::new();
    loop {
        line.clear();
        if conn.read_line(&mut line)? == 0 || line.trim().is_empty() {
            return Ok((status, content_type));
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-type") {
                content_type = value.trim().to_string();
            }
        }
    }
}

struct Answer {
    status: u16,
    content_type: String,
    body: String,
}

impl Answer {
    /// The status and the body as JSON (`null` for an empty body).
    fn json(&self) -> (u16, Value) {
        let body = if self.body.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&self.body)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {:?} (status {})", self.body, self.status))
        };
        (self.status, body)
    }
}

struct Lines {
    status: u16,
    conn: BufReader<TcpStream>,
}

impl Lines {
    /// The next streamed answer, one JSON object a line.
    fn next(&mut self) -> Value {
        let mut line = String::new();
        self.conn.read_line(&mut line).expect("a streamed answer within 5 s");
        assert!(line.ends_with('\n'), "a streamed answer ends with a newline: {line:?}");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"))
    }
}

/// `v` with what legitimately differs between etcd and Cairn replaced by placeholders:
/// cluster and member ids, raft terms, member names and URLs, versions, raft indexes and
/// database sizes, and a lease's remaining TTL (a second may pass between the two).
/// Revisions, lease ids (the test chooses them) and everything else are left as they are.
fn normalised(mut v: Value) -> Value {
    fn walk(v: &mut Value) {
        match v {
            Value::Object(m) => {
                for (k, field) in m.iter_mut() {
                    match k.as_str() {
                        "cluster_id" | "member_id" | "raft_term" | "leader" | "raftIndex" | "raftTerm"
                        | "raftAppliedIndex" | "version" | "name" | "peerURLs" | "clientURLs" => {
                            *field = json!("<differs>")
                        }
                        _ => walk(field),
                    }
                }
                // Cairn does not measure its storage (0, so left out); etcd's bolt file does.
                m.remove("dbSize");
                m.remove("dbSizeInUse");
            }
            Value::Array(a) => a.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut v);
    v
}

/// The pair of servers the requests go to.
struct Pair {
    etcd: Server,
    cairn: Server,
}

impl Pair {
    fn start() -> Pair {
        assert!(
            Path::new(ETCD).exists(),
            "{ETCD} is missing: the gateway is compared with etcd 3.4's (apt-get install etcd-server; .ci/run does)"
        );
        let pair = Pair { etcd: start(ETCD, "etcd"), cairn: start(env!("CARGO_BIN_EXE_cairn"), "cairn") };
        pair.etcd.wait_ready("etcd");
        pair.cairn.wait_ready("cairn");
        pair
    }

    /// Posts `body` to both; asserts the same status and the same JSON once normalised.
    /// Returns etcd's answer.
    fn same(&self, path: &str, body: &str) -> Value {
        self.same_with(path, body, normalised)
    }

    fn same_with(&self, path: &str, body: &str, normalise: impl Fn(Value) -> Value) -> Value {
        let (etcd, cairn) = (self.etcd.post(path, body), self.cairn.post(path, body));
        assert_eq!(cairn.content_type, "application/json", "POST {path} {body}: content type");
        let (etcd, cairn) = (etcd.json(), cairn.json());
        assert_eq!(
            (cairn.0, normalise(cairn.1.clone())),
            (etcd.0, normalise(etcd.1.clone())),
            "POST {path} {body}\n cairn: {cairn:?}\n  etcd: {etcd:?}"
        );
        etcd.1
    }

    /// Like `same`, for an error whose message is Go's or serde's own words on a body that
    /// does not decode: the same status and code, and a message on both.
    fn same_error_code(&self, path: &str, body: &str) -> (u16, Value) {
        let (etcd, cairn) = (self.etcd.post(path, body).json(), self.cairn.post(path, body).json());
        let shape = |(status, v): &(u16, Value)| {
            let message = v["message"].as_str().unwrap_or_default();
            assert_eq!(v["error"].as_str(), Some(message), "error and message agree: {v}");
            assert!(!message.is_empty(), "a message: {v}");
            (*status, v["code"].clone(), v.as_object().map(|m| m.keys().cloned().collect::<Vec<_>>()))
        };
        assert_eq!(shape(&cairn), shape(&etcd), "POST {path} {body}\n cairn: {cairn:?}\n  etcd: {etcd:?}");
        etcd
    }
}

/// Standard base64 with padding, as protobuf's JSON mapping writes bytes.
fn b64(s: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in s.as_bytes().chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, &b)| n | (b as u32) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn gateway_answers_as_etcd_does() {
    let p = Pair::start();
    let (foo, bar, baz) = (b64("foo"), b64("bar"), b64("baz"));

    // Key-value: both stores are at revision 1, so revisions compare as they are.
    let put = p.same("/v3/kv/put", &format!(r#"{{"key":"{foo}","value":"{bar}"}}"#));
    assert_eq!(put["header"]["revision"], "2", "revisions are compared, and are strings");
    let range = p.same("/v3/kv/range", &format!(r#"{{"key":"{foo}"}}"#));
    assert_eq!(range["kvs"][0]["create_revision"], "2", "original field names");
    // camelCase names, enums by name, 64-bit integers as strings, unknown fields ignored,
    // and only the first JSON value read.
    p.same(
        "/v3/kv/range",
        &format!(r#"{{"key":"{foo}","rangeEnd":"AA==","sortOrder":"DESCEND","keysOnly":true,"limit":"5","bogus":1}} xx"#),
    );
    p.same("/v3/kv/range", &format!(r#"{{"key":"{foo}","sort_order":1,"count_only":true}}"#));
    p.same("/v3/kv/range", &format!(r#"{{"key":"{}"}}"#, b64("none")));
    p.same("/v3beta/kv/range", &format!(r#"{{"key":"{foo}"}}"#));
    // jsonpb: null is the default, and of a field given twice the last counts.
    p.same("/v3/kv/range", &format!(r#"{{"key":"{foo}","range_end":null,"limit":null}}"#));
    p.same("/v3/kv/range", &format!(r#"{{"key":"{}","key":"{foo}"}}"#, b64("none")));

    // Errors: etcd's message, gRPC code and grpc-gateway's HTTP status.
    let future = p.same("/v3/kv/range", &format!(r#"{{"key":"{foo}","revision":100}}"#));
    assert_eq!(future["code"], 11);
    p.same("/v3/kv/put", &format!(r#"{{"key":"","value":"{bar}"}}"#));
    p.same("/v3/kv/range", "");
    p.same("/v3/kv/range", "null");
    let truncated = p.same("/v3/kv/range", r#"{"key":"#);
    assert_eq!(truncated, json!({"error": "unexpected EOF", "message": "unexpected EOF", "code": 3}));
    assert_eq!(p.same_error_code("/v3/kv/range", "[]").0, 400);
    p.same_error_code("/v3/kv/range", r#"{"key":5}"#);
    p.same_error_code("/v3/kv/range", r#"{"key":"!!"}"#);
    // bytes in Go's standard base64 only: URL-safe, unpadded, a space, bad padding, trailing
    // data are refused with Go's own message; line breaks are skipped; fields the request does
    // not have are not looked at.
    for bad in [r#"{"key":"-_8="}"#, r#"{"key":"Zm9vYg"}"#, r#"{"key":"Zm9v YQ=="}"#, r#"{"key":"Zm9vYg=x"}"#]
    {
        p.same("/v3/kv/range", bad);
    }
    p.same("/v3/kv/put", r#"{"key":"Zm9v","value":"eA"}"#);
    p.same("/v3/kv/txn", r#"{"compare":[{"key":"Zm9v","value":"e-A=","target":"VALUE"}]}"#);
    p.same("/v3/kv/range", r#"{"key":"Zm9vYg==","value":"eA"}"#);
    p.same("/v3/kv/range", r#"{"key":"Zm9v\nYmFy"}"#);
    p.same_error_code("/v3/kv/range", r#"{"key":"Zm9v","limit":"abc"}"#);
    p.same_error_code("/v3/kv/range", r#"{"key":"Zm9v","sort_order":"BOGUS"}"#);
    // Beyond --max-request-bytes (1.5 MiB) the member refuses the request; beyond 2 MiB the
    // gRPC server does, with RESOURCE_EXHAUSTED (HTTP 429) and grpc-go's message.
    for value_bytes in [1_700_000, 2_500_000] {
        let big = format!(r#"{{"key":"{}","value":"{}"}}"#, b64("big"), b64(&"x".repeat(value_bytes)));
        p.same("/v3/kv/put", &big);
    }

    // Txn, with nested responses and their partial headers.
    let txn = format!(
        r#"{{"compare":[{{"key":"{foo}","result":"EQUAL","target":"VALUE","value":"{bar}"}}],
            "success":[{{"request_put":{{"key":"{foo}","value":"{baz}","prev_kv":true}}}},{{"requestRange":{{"key":"{foo}"}}}}],
            "failure":[{{"request_delete_range":{{"key":"{foo}"}}}}]}}"#
    );
    let txn = p.same("/v3/kv/txn", &txn);
    assert_eq!(txn["succeeded"], true);
    p.same("/v3/kv/txn", "{}");
    let ops: Vec<Value> =
        (0..129).map(|i| json!({"request_put": {"key": b64(&format!("k{i}")), "value": bar}})).collect();
    p.same("/v3/kv/txn", &json!({ "success": ops }).to_string());

    // Leases, with ids chosen here so that they compare.
    let grant = p.same("/v3/lease/grant", r#"{"TTL":60,"ID":1000}"#);
    assert_eq!(grant["ID"], "1000", "etcd's ID and TTL field names");
    let exists = p.same("/v3/lease/grant", r#"{"TTL":60,"ID":1000}"#);
    assert_eq!(exists["code"], 9, "FAILED_PRECONDITION, HTTP 412");
    p.same("/v3/kv/put", &format!(r#"{{"key":"{}","value":"{bar}","lease":"1000"}}"#, b64("leased")));
    p.same("/v3/kv/put", &format!(r#"{{"key":"{}","value":"{bar}","lease":999}}"#, b64("leased")));
    p.same_with("/v3/lease/timetolive", r#"{"ID":1000,"keys":true}"#, |mut v| {
        // The remaining TTL is 60 or a second less, by when the second is read.
        let ttl = v["TTL"].as_str().and_then(|t| t.parse::<i64>().ok()).unwrap_or(-1);
        assert!((58..=60).contains(&ttl), "TTL left: {v}");
        v["TTL"] = json!("<ttl>");
        normalised(v)
    });
    p.same("/v3/lease/timetolive", r#"{"ID":999}"#);
    p.same("/v3/kv/lease/timetolive", r#"{"ID":999}"#);
    p.same("/v3/lease/leases", "{}");

    // Keep-alive: one {"result": ...} line per request; TTL left out (0) for an unknown lease.
    for body in [r#"{"ID":1000}{"ID":999}"#, "", r#"{"ID":1000} xx"#] {
        let (etcd, cairn) =
            (p.etcd.post("/v3/lease/keepalive", body), p.cairn.post("/v3/lease/keepalive", body));
        let lines = |a: &Answer| -> (u16, Vec<Value>) {
            (
                a.status,
                a.body.lines().map(|l| normalised(serde_json::from_str(l).expect("a JSON line"))).collect(),
            )
        };
        assert_eq!(
            lines(&cairn),
            lines(&etcd),
            "keepalive {body}\n cairn: {}\n  etcd: {}",
            cairn.body,
            etcd.body
        );
        assert!(cairn.body.is_empty() || cairn.body.ends_with("}\n"), "newline-delimited: {:?}", cairn.body);
    }
    // A first request that does not decode is the answer: UNKNOWN, HTTP 500.
    p.same("/v3/lease/keepalive", "{");
    p.same_error_code("/v3/lease/keepalive", "[]");

    p.same("/v3/lease/revoke", r#"{"ID":1000}"#);
    p.same("/v3/lease/revoke", r#"{"ID":1000}"#);
    p.same("/v3/kv/lease/revoke", r#"{"ID":999}"#);
    p.same("/v3/lease/leases", "");

    // Delete, compaction and the errors it brings.
    p.same("/v3/kv/deleterange", &format!(r#"{{"key":"{foo}","prev_kv":true}}"#));
    p.same("/v3/kv/compaction", r#"{"revision":3}"#);
    let compacted = p.same("/v3/kv/compaction", r#"{"revision":3}"#);
    assert_eq!(compacted["message"], "etcdserver: mvcc: required revision has been compacted");
    p.same("/v3/kv/range", &format!(r#"{{"key":"{foo}","revision":2}}"#));
    p.same("/v3/kv/compaction", r#"{"revision":100}"#);

    // Cluster and maintenance. The member list header has no revision (etcd's cluster
    // server fills only ids and term).
    p.same_with("/v3/cluster/member/list", "", |mut v| {
        let member_id = v["header"]["member_id"].clone();
        // The one member is the one answering; its id is its own.
        assert_eq!(v["members"][0]["ID"], member_id, "{v}");
        v["members"][0]["ID"] = json!("<differs>");
        normalised(v)
    });
    p.same("/v3/maintenance/status", "{}");
    // etcd answers these two without a header.
    p.same("/v3/maintenance/alarm", r#"{"action":"GET"}"#);
    p.same("/v3/maintenance/defragment", "{}");

    // Watch: created, then the events of puts made while it is open, with prev_kv.
    let w = b64("w");
    let mut streams: Vec<Lines> = [&p.etcd, &p.cairn]
        .iter()
        .map(|s| {
            s.open_stream("/v3/watch", &format!(r#"{{"create_request":{{"key":"{w}","prev_kv":true}}}}"#))
        })
        .collect();
    let created: Vec<Value> = streams.iter_mut().map(|s| normalised(s.next())).collect();
    assert_eq!(created[1], created[0], "watch created");
    assert_eq!(created[0]["result"]["created"], true);
    // Each event is read before the next put, so that neither side may batch the two.
    let mut events = Vec::new();
    for value in ["1", "2"] {
        p.same("/v3/kv/put", &format!(r#"{{"key":"{w}","value":"{}"}}"#, b64(value)));
        let answers: Vec<Value> = streams.iter_mut().map(|s| normalised(s.next())).collect();
        assert_eq!(answers[1], answers[0], "watch event for {value}");
        events.push(answers[0].clone());
    }
    assert_eq!(events[1]["result"]["events"][0]["prev_kv"]["value"], b64("1"));
    assert_eq!(streams[1].status, 200);
    drop(streams);

    // A watch from a compacted revision: created, then canceled with the compact revision.
    // Watch ids given by the client, and a duplicate refused.
    for body in [
        format!(r#"{{"create_request":{{"key":"{w}","start_revision":2}}}}"#),
        format!(
            r#"{{"create_request":{{"key":"{w}","watch_id":3}}}}{{"createRequest":{{"key":"{w}","watch_id":3}}}}{{"cancel_request":{{"watch_id":3}}}}"#
        ),
    ] {
        let mut streams: Vec<Lines> =
            [&p.etcd, &p.cairn].iter().map(|s| s.open_stream("/v3/watch", &body)).collect();
        let n = if body.contains("cancel") { 3 } else { 2 };
        let answers: Vec<Vec<Value>> =
            streams.iter_mut().map(|s| (0..n).map(|_| normalised(s.next())).collect()).collect();
        assert_eq!(answers[1], answers[0], "watch {body}");
    }
    // Requests that arrive while the stream is open: a create, then, after an event, a cancel.
    let z = b64("z");
    let mut uploads: Vec<Upload> = [&p.etcd, &p.cairn]
        .iter()
        .map(|s| {
            Upload::open(s, "/v3/watch", &format!(r#"{{"create_request":{{"key":"{z}","watch_id":7}}}}"#))
        })
        .collect();
    let mut answers = vec![uploads.iter_mut().map(|u| normalised(u.next())).collect::<Vec<_>>()];
    p.same("/v3/kv/put", &format!(r#"{{"key":"{z}","value":"{}"}}"#, b64("1")));
    answers.push(uploads.iter_mut().map(|u| normalised(u.next())).collect());
    uploads.iter_mut().for_each(|u| u.send(r#"{"cancel_request":{"watch_id":7}}"#));
    answers.push(uploads.iter_mut().map(|u| normalised(u.next())).collect());
    for a in &answers {
        assert_eq!(a[1], a[0], "watch with requests arriving");
    }
    assert_eq!(answers[2][0]["result"]["canceled"], true);
    drop(uploads);

    // A first request that does not decode is the answer.
    p.same("/v3/watch", "{");

    // What is not a gateway call: Go's plain-text answers.
    for (method, path) in [("GET", "/v3/kv/range"), ("POST", "/v3/kv/nope")] {
        let (etcd, cairn) = (p.etcd.request(method, path, ""), p.cairn.request(method, path, ""));
        let (etcd, cairn) = (etcd.expect("etcd answers"), cairn.expect("cairn answers"));
        assert_eq!(
            (cairn.status, &cairn.content_type, &cairn.body),
            (etcd.status, &etcd.content_type, &etcd.body)
        );
    }
}
