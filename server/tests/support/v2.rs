//! The etcd v2 HTTP+JSON API on real processes: a reference etcd 3.4 (`/usr/bin/etcd
//! --enable-v2`) and the system under test, a single-member `cairn` unless
//! `CAIRN_V2_DIFF_AGAINST=etcd` makes it a second etcd (that is how the harness itself is
//! checked: every scenario must pass etcd against etcd).
//!
//! A scenario is a list of HTTP steps sent in order to both servers. Each answer is normalised
//! per side and the two are compared: status, JSON body, and the headers clients read. What may
//! legitimately differ is mapped away first:
//!
//! - v2 store indexes (`modifiedIndex`, `createdIndex`, an error's `index`, `X-Etcd-Index`,
//!   the 20-digit names POST creates, the indexes in the causes of errors 101 and 401) become
//!   `i+K`, relative to the `X-Etcd-Index` the side had when the scenario started: etcd writes
//!   its own membership into the store first, Cairn starts elsewhere. Index 0 (etcd's answer to
//!   a request it rejects before reading the store, error codes 2xx) stays as it is.
//! - `expiration` must be RFC 3339 with fractional seconds in UTC, then is masked; `ttl` may
//!   differ by one second.
//! - cluster ids and raft index/term headers: present or absent, never values.
//! - a directory listing asked for without `sorted=true` comes in Go map order: compared as a
//!   set.
//!
//! A step's path and form may use the side's own value from an earlier answer:
//! `{3/node/modifiedIndex}` (a JSON pointer into step 3's body), `{3@x-etcd-index}` (a header
//! of step 3), `{base}` (the side's index at the start); each may end in `+N` or `-N`.
//!
//! `CAIRN_V2_DIFF_PRINT=1` prints every answer of the reference etcd as it comes, which is how
//! docs/v2-etcd-behaviour.md was written.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Longest any one request may take, long polls included: a server that never answers fails
/// the test instead of hanging it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a server gets from spawn to serving `GET /v2/keys/`.
const START_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Etcd,
    Cairn,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::Etcd => "etcd",
            Kind::Cairn => "cairn",
        }
    }
}

/// Cairn unless `CAIRN_V2_DIFF_AGAINST=etcd`.
pub fn system_under_test() -> Kind {
    match std::env::var("CAIRN_V2_DIFF_AGAINST").as_deref() {
        Err(_) | Ok("") | Ok("cairn") => Kind::Cairn,
        Ok("etcd") => Kind::Etcd,
        Ok(other) => panic!("CAIRN_V2_DIFF_AGAINST={other}: expected `etcd` or `cairn`"),
    }
}

fn free_port() -> u16 {
    crate::ports::free_port()
}

/// One single-member server process on loopback, killed on drop.
pub struct Server {
    pub kind: Kind,
    /// `http://127.0.0.1:PORT`, the client URL.
    pub url: String,
    child: Child,
    dir: tempfile::TempDir,
}

impl Server {
    /// Starts a server and waits until it serves the v2 keys API.
    pub fn start(kind: Kind) -> Server {
        let s = Server::spawn(kind);
        s.wait_ready();
        s
    }

    /// Starts a server without waiting; see [`Server::wait_ready`].
    pub fn spawn(kind: Kind) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let (client, peer) = (free_port(), free_port());
        let name = kind.label();
        let url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let program = match kind {
            Kind::Etcd => "etcd",
            Kind::Cairn => env!("CARGO_BIN_EXE_cairn"),
        };
        let log = std::fs::File::create(dir.path().join("log")).expect("log file");
        let mut cmd = Command::new(program);
        cmd.args(["--name", name])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--listen-client-urls", &url, "--advertise-client-urls", &url])
            .args(["--listen-peer-urls", &peer_url, "--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("{name}={peer_url}")])
            // A single member elects itself after one election timeout: keep it short.
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"]);
        if kind == Kind::Etcd {
            cmd.arg("--enable-v2");
        }
        let child = cmd.stdout(Stdio::null()).stderr(log).spawn().unwrap_or_else(|e| {
            panic!("start {program}: {e} (etcd comes from Debian's etcd-server, installed by .ci/run)")
        });
        Server { kind, url, child, dir }
    }

    /// Waits until the server has a leader (a quorum read goes through its log) and its store
    /// index has settled: etcd writes its own member attributes and cluster version into the v2
    /// store just after the first election, and a scenario's indexes are counted from after that.
    pub fn wait_ready(&self) {
        let started = Instant::now();
        let mut last = None;
        loop {
            let answer = try_send(&self.url, &get("/v2/keys/?quorum=true"));
            let index = answer
                .as_ref()
                .ok()
                .filter(|r| r.status == 200)
                .and_then(|r| r.header("x-etcd-index").and_then(|v| v.parse::<u64>().ok()));
            if index.is_some() && index == last {
                return;
            }
            last = index;
            // A server that is up and answers anything but JSON (a 404 page, a gRPC
            // "unimplemented") has no v2 API: no point in waiting out the deadline.
            let no_v2 = matches!(&answer, Ok(r) if r.header("content-type") != Some("application/json"));
            if started.elapsed() > START_TIMEOUT || (no_v2 && started.elapsed() > Duration::from_secs(3)) {
                panic!(
                    "{} did not serve /v2/keys/ within {:?} (last answer {answer:?}):\n{}",
                    self.kind.label(),
                    started.elapsed(),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    pub fn send(&self, req: &Request) -> Response {
        try_send(&self.url, req)
            .unwrap_or_else(|e| panic!("{} at {}: {}: {e}", self.kind.label(), self.url, req.describe()))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What is compared of a step's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compare {
    /// Status, headers and the normalised body.
    Exact,
    /// Status, headers, and the body's shape: object keys and value types, not values.
    Shape,
}

#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    /// Path and query, sent exactly as written (after `{..}` substitution): bad percent-encoding
    /// stays bad.
    pub target: String,
    /// `application/x-www-form-urlencoded` body, sent as written.
    pub form: Option<String>,
    pub compare: Compare,
}

impl Request {
    pub fn shape(mut self) -> Request {
        self.compare = Compare::Shape;
        self
    }

    pub fn describe(&self) -> String {
        match &self.form {
            Some(f) if f.len() > 200 => {
                format!("{} {} form ({} bytes) {:?}...", self.method, self.target, f.len(), &f[..60])
            }
            Some(f) => format!("{} {} form {:?}", self.method, self.target, f),
            None => format!("{} {}", self.method, self.target),
        }
    }

    /// Whether the query or form sets this boolean true anywhere: decides whether a listing is
    /// compared in order (`sorted=true`) or as a set.
    fn query_flag(&self, name: &str) -> bool {
        let query = self.target.split_once('?').map(|(_, q)| q).unwrap_or("");
        let form = self.form.as_deref().unwrap_or("");
        query.split('&').chain(form.split('&')).any(|kv| {
            kv.split_once('=')
                .is_some_and(|(k, v)| k == name && matches!(v, "true" | "1" | "t" | "T" | "TRUE" | "True"))
        })
    }
}

pub fn req(method: &str, target: &str, form: Option<&str>) -> Request {
    Request {
        method: method.into(),
        target: target.into(),
        form: form.map(Into::into),
        compare: Compare::Exact,
    }
}
pub fn get(target: &str) -> Request {
    req("GET", target, None)
}
pub fn put(target: &str, form: &str) -> Request {
    req("PUT", target, Some(form))
}
pub fn post(target: &str, form: &str) -> Request {
    req("POST", target, Some(form))
}
pub fn delete(target: &str) -> Request {
    req("DELETE", target, None)
}

#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    /// Lower-cased names, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    pub fn etcd_index(&self) -> u64 {
        self.header("x-etcd-index")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no X-Etcd-Index: {self:?}"))
    }

    fn raw(&self) -> String {
        let mut s = format!("HTTP {}\n", self.status);
        for (k, v) in &self.headers {
            if k != "date" {
                s += &format!("{k}: {v}\n");
            }
        }
        let body = if self.body.len() > 2000 {
            format!("{}... ({} bytes)", &self.body[..2000], self.body.len())
        } else {
            self.body.clone()
        };
        s + "\n" + &body
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .allow_non_standard_methods(true)
        .max_redirects(0)
        .timeout_global(Some(REQUEST_TIMEOUT))
        .build()
        .into()
}

fn build(base: &str, r: &Request) -> ureq::http::request::Builder {
    let mut b = ureq::http::Request::builder().method(r.method.as_str()).uri(format!("{base}{}", r.target));
    if r.form.is_some() {
        b = b.header("Content-Type", "application/x-www-form-urlencoded");
    }
    b
}

fn run_head(
    agent: &ureq::Agent,
    base: &str,
    r: &Request,
) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
    let b = build(base, r);
    match &r.form {
        Some(f) => agent.run(b.body(f.clone().into_bytes()).expect("request")),
        None => agent.run(b.body(()).expect("request")),
    }
}

fn read_body(mut resp: ureq::http::Response<ureq::Body>) -> Result<Response, ureq::Error> {
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_ascii_lowercase(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let bytes = resp.body_mut().with_config().limit(64 << 20).read_to_vec()?;
    Ok(Response { status, headers, body: String::from_utf8_lossy(&bytes).into_owned() })
}

pub fn try_send(base: &str, r: &Request) -> Result<Response, ureq::Error> {
    read_body(run_head(&agent(), base, r)?)
}

/// Sends one request; any answer, 4xx and 5xx included, is returned.
pub fn send(base: &str, r: &Request) -> Response {
    try_send(base, r).unwrap_or_else(|e| panic!("{base}: {}: {e}", r.describe()))
}

/// A request whose answer's head has arrived and whose body is still coming: a long poll.
pub struct Pending(JoinHandle<Response>);

impl Pending {
    pub fn finish(self) -> Response {
        self.0.join().expect("long-poll thread")
    }
}

/// Sends a request on a thread and returns once the answer's head is in: for `wait=true` that
/// is when the watch is registered (etcd flushes the head before waiting), so a write made after
/// this returns is one the watch sees.
pub fn start(base: &str, r: &Request) -> Pending {
    let (tx, rx) = mpsc::channel();
    let (base, r) = (base.to_string(), r.clone());
    let handle = std::thread::spawn(move || {
        let head = run_head(&agent(), &base, &r).unwrap_or_else(|e| panic!("{base}: {}: {e}", r.describe()));
        let _ = tx.send(());
        read_body(head).unwrap_or_else(|e| panic!("{base}: {}: body: {e}", r.describe()))
    });
    if rx.recv_timeout(REQUEST_TIMEOUT).is_err() {
        // The thread panicked (its message says why) or no head came in time.
        match handle.join() {
            Err(e) => std::panic::resume_unwind(e),
            Ok(r) => panic!("a long poll's head never came: {r:?}"),
        }
    }
    Pending(handle)
}

// ---------------------------------------------------------------------------------------------
// Scenarios

pub enum Step {
    /// Send to both sides, compare.
    Send(Request),
    /// The first request to the reference, the second to the system under test, compared as
    /// if they were one: the harness's own check that a difference is caught.
    Diverge(Request, Request),
    /// Sent to the system under test only, not compared: for the harness's own check that a
    /// write on one side only shows in later steps.
    TestedOnly(Request),
    /// Send to both sides on threads; go on once both heads are in. Compared at `Finish`.
    Start(Request),
    /// Wait for the body of the `Start` at this step number, then compare.
    Finish(usize),
    Sleep(Duration),
    /// The same request sent this many times, from several threads per side at once: for
    /// filling etcd's 1000-event history quickly. Only the statuses are compared.
    Burst(Request, usize),
}

impl From<Request> for Step {
    fn from(r: Request) -> Step {
        Step::Send(r)
    }
}

pub fn start_step(r: Request) -> Step {
    Step::Start(r)
}
pub fn finish(step: usize) -> Step {
    Step::Finish(step)
}
pub fn sleep_ms(ms: u64) -> Step {
    Step::Sleep(Duration::from_millis(ms))
}
pub fn burst(r: Request, times: usize) -> Step {
    Step::Burst(r, times)
}

/// Sends `r` `times` times from a few threads; returns the statuses seen, sorted.
fn send_burst(base: &str, r: &Request, times: usize) -> Vec<u16> {
    const THREADS: usize = 8;
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut statuses: Vec<u16> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..THREADS)
            .map(|_| {
                scope.spawn(|| {
                    let agent = agent();
                    let mut seen = Vec::new();
                    while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < times {
                        let head = run_head(&agent, base, r)
                            .unwrap_or_else(|e| panic!("{base}: {}: {e}", r.describe()));
                        seen.push(read_body(head).expect("body").status);
                    }
                    seen
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().expect("burst thread")).collect()
    });
    statuses.sort_unstable();
    statuses
}

struct Side {
    server: Server,
    /// `X-Etcd-Index` when the scenario started.
    base: u64,
    answers: Vec<Option<Response>>,
    pending: BTreeMap<usize, Pending>,
}

impl Side {
    /// `{3/node/modifiedIndex}`, `{3@x-etcd-index}`, `{base}`, each with an optional `+N`/`-N`.
    fn substitute(&self, text: &str) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            out += &rest[..open];
            let close =
                rest[open..].find('}').map(|c| open + c).unwrap_or_else(|| panic!("unclosed {{ in {text:?}"));
            out += &self.resolve(&rest[open + 1..close], text);
            rest = &rest[close + 1..];
        }
        out + rest
    }

    fn resolve(&self, expr: &str, text: &str) -> String {
        let (expr, offset) = match expr.rfind(['+', '-']) {
            Some(i) if expr[i + 1..].parse::<i64>().is_ok() => {
                let n: i64 = expr[i + 1..].parse().unwrap();
                (&expr[..i], if &expr[i..i + 1] == "-" { -n } else { n })
            }
            _ => (expr, 0),
        };
        let value = if expr == "base" {
            self.base.to_string()
        } else {
            let digits = expr.find(|c: char| !c.is_ascii_digit()).unwrap_or(expr.len());
            let step: usize =
                expr[..digits].parse().unwrap_or_else(|_| panic!("bad reference {{{expr}}} in {text:?}"));
            let answer = self
                .answers
                .get(step)
                .and_then(Option::as_ref)
                .unwrap_or_else(|| panic!("{{{expr}}}: step {step} has no answer yet"));
            let what = &expr[digits..];
            if let Some(h) = what.strip_prefix('@') {
                answer
                    .header(&h.to_ascii_lowercase())
                    .unwrap_or_else(|| panic!("{{{expr}}}: no header {h}"))
                    .to_string()
            } else {
                match answer.json().pointer(what) {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Number(n)) => n.to_string(),
                    other => panic!("{{{expr}}}: {other:?} in {}", answer.body),
                }
            }
        };
        if offset == 0 {
            return value;
        }
        let n: i64 = value.parse().unwrap_or_else(|_| panic!("{{{expr}}}: {value:?} is not a number"));
        (n + offset).to_string()
    }

    fn bind(&self, r: &Request) -> Request {
        Request {
            target: self.substitute(&r.target),
            form: r.form.as_ref().map(|f| self.substitute(f)),
            ..r.clone()
        }
    }
}

fn print_reference() -> bool {
    std::env::var("CAIRN_V2_DIFF_PRINT").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Runs a scenario on a fresh reference etcd and a fresh system under test.
pub fn run(name: &str, steps: Vec<Step>) {
    let sut = system_under_test();
    let (reference, tested) = (Server::spawn(Kind::Etcd), Server::spawn(sut));
    reference.wait_ready();
    tested.wait_ready();
    run_on(name, reference, tested, steps);
}

/// Runs a scenario on two fresh etcds, whatever `CAIRN_V2_DIFF_AGAINST` says: for checking
/// the harness itself.
pub fn run_etcd_pair(name: &str, steps: Vec<Step>) {
    let (reference, tested) = (Server::spawn(Kind::Etcd), Server::spawn(Kind::Etcd));
    reference.wait_ready();
    tested.wait_ready();
    run_on(name, reference, tested, steps);
}

fn run_on(name: &str, reference: Server, tested: Server, steps: Vec<Step>) {
    let mut sides: Vec<Side> = [reference, tested]
        .into_iter()
        .map(|server| {
            let base = server.send(&get("/v2/keys/")).etcd_index();
            Side { server, base, answers: Vec::new(), pending: BTreeMap::new() }
        })
        .collect();
    let labels = ["etcd (reference)".to_string(), format!("{} (under test)", sides[1].server.kind.label())];
    for (i, step) in steps.iter().enumerate() {
        for s in sides.iter_mut() {
            s.answers.push(None);
        }
        let request = match step {
            Step::Sleep(d) => {
                std::thread::sleep(*d);
                continue;
            }
            Step::Burst(r, times) => {
                let statuses: Vec<Vec<u16>> = std::thread::scope(|scope| {
                    let runs: Vec<_> = sides
                        .iter()
                        .map(|s| {
                            let bound = s.bind(r);
                            scope.spawn(move || send_burst(&s.server.url, &bound, *times))
                        })
                        .collect();
                    runs.into_iter().map(|h| h.join().expect("burst")).collect()
                });
                let count = |v: &Vec<u16>| {
                    let mut c = BTreeMap::new();
                    v.iter().for_each(|s| *c.entry(*s).or_insert(0) += 1);
                    c
                };
                assert_eq!(
                    count(&statuses[0]),
                    count(&statuses[1]),
                    "scenario `{name}`, step {i}: {} sent {times} times: statuses (status: count) differ",
                    r.describe()
                );
                continue;
            }
            Step::Send(r) => {
                for s in sides.iter_mut() {
                    let bound = s.bind(r);
                    s.answers[i] = Some(s.server.send(&bound));
                }
                r
            }
            Step::TestedOnly(r) => {
                let bound = sides[1].bind(r);
                sides[1].server.send(&bound);
                continue;
            }
            Step::Diverge(r, other) => {
                for (s, r) in sides.iter_mut().zip([r, other]) {
                    let bound = s.bind(r);
                    s.answers[i] = Some(s.server.send(&bound));
                }
                r
            }
            Step::Start(r) => {
                for s in sides.iter_mut() {
                    let bound = s.bind(r);
                    let p = start(&s.server.url, &bound);
                    s.pending.insert(i, p);
                }
                continue;
            }
            Step::Finish(k) => {
                let Step::Start(r) = &steps[*k] else {
                    panic!("{name}: step {i} finishes step {k}, which is no Start")
                };
                for s in sides.iter_mut() {
                    let p = s.pending.remove(k).unwrap_or_else(|| panic!("{name}: step {k} finished twice"));
                    s.answers[*k] = Some(p.finish());
                }
                r
            }
        };
        let at = match step {
            Step::Finish(k) => *k,
            _ => i,
        };
        let observed: Vec<Observed> =
            sides.iter().map(|s| observe(s.answers[at].as_ref().unwrap(), request, s.base)).collect();
        if print_reference() {
            eprintln!(
                "--- {name} step {at}: {}\n{}\n",
                sides[0].bind(request).describe(),
                sides[0].answers[at].as_ref().unwrap().raw()
            );
        }
        let diffs = differences(&observed[0], &observed[1]);
        if !diffs.is_empty() {
            let mut msg = format!("scenario `{name}`, step {at}: {}\n", request.describe());
            for d in &diffs {
                msg += &format!("  {d}\n");
            }
            for (s, label) in sides.iter().zip(&labels) {
                msg += &format!(
                    "--- {label}, sent {}, index at start {}:\n{}\n",
                    s.bind(request).describe(),
                    s.base,
                    s.answers[at].as_ref().unwrap().raw()
                );
            }
            panic!("{msg}");
        }
    }
    for s in &sides {
        assert!(s.pending.is_empty(), "{name}: steps {:?} started and never finished", s.pending.keys());
    }
}

// ---------------------------------------------------------------------------------------------
// Normalisation

/// One side's answer with everything that may legitimately differ mapped away.
#[derive(Debug)]
struct Observed {
    status: u16,
    headers: BTreeMap<&'static str, String>,
    body: Value,
    /// Go's encoder ends every JSON answer with a newline.
    trailing_newline: bool,
    /// `\u003c` and friends as written: Go escapes `<`, `>` and `&` in JSON strings.
    escapes: Vec<String>,
}

/// An index relative to the side's index at the start. Stores may start anywhere, at 0
/// included, so 0 is mapped like any other index; only the index of an error given before the
/// store is read (codes 2xx, see `request_error`) is compared as it is.
fn map_index(n: u64, base: u64) -> String {
    if n >= base {
        format!("i+{}", n - base)
    } else {
        format!("i-{}", base - n)
    }
}

/// Errors etcd gives before reading the store (bad parameters), with index 0.
fn request_error(code: Option<u64>) -> bool {
    matches!(code, Some(200..=299))
}

/// Replaces each run of exactly 20 digits (a POST-created key name) with its mapped index.
fn map_key_names(s: &str, base: u64) -> String {
    let b = s.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_digit() {
            let j = (i..b.len()).find(|&j| !b[j].is_ascii_digit()).unwrap_or(b.len());
            if j - i == 20 {
                out += &format!("<{}>", map_index(s[i..j].parse().unwrap(), base));
            } else {
                out += &s[i..j];
            }
            i = j;
        } else {
            let c = s[i..].chars().next().unwrap();
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// Maps every number inside `[...]` in an error cause: `[5 != 7]` (error 101, prevIndex) and
/// `[3/1004]` (error 401). Scenarios compare values that are not numbers, so that a
/// `[prevValue != value]` cause is never mistaken for indexes.
fn map_bracketed_numbers(s: &str, base: u64) -> String {
    let mut out = String::new();
    let mut depth = 0;
    let mut digits = String::new();
    for c in s.chars() {
        if depth > 0 && c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        if !digits.is_empty() {
            out += &map_index(digits.parse().unwrap_or(0), base);
            digits.clear();
        }
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            _ => {}
        }
        out.push(c);
    }
    out + &digits
}

/// `2006-01-02T15:04:05.999999999Z`: Go's RFC3339Nano in UTC (trailing zeros dropped).
pub fn is_rfc3339_nano_utc(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| r.clone().all(|i| b.get(i).is_some_and(u8::is_ascii_digit));
    if b.len() < 20 || !digits(0..4) || b[4] != b'-' || !digits(5..7) || b[7] != b'-' || !digits(8..10) {
        return false;
    }
    if b[10] != b'T'
        || !digits(11..13)
        || b[13] != b':'
        || !digits(14..16)
        || b[16] != b':'
        || !digits(17..19)
    {
        return false;
    }
    let rest = &s[19..];
    let rest = match rest.strip_prefix('.') {
        Some(frac) => {
            let n = frac.find(|c: char| !c.is_ascii_digit()).unwrap_or(frac.len());
            if n == 0 || n > 9 {
                return false;
            }
            &frac[n..]
        }
        None => rest,
    };
    rest == "Z"
}

fn normalise(v: &mut Value, base: u64, unsorted: bool, error_code: Option<u64>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map.iter_mut() {
                match (k.as_str(), &*child) {
                    ("modifiedIndex" | "createdIndex" | "index", Value::Number(n))
                        if n.as_u64().is_some() =>
                    {
                        let n = n.as_u64().unwrap();
                        *child = Value::String(if request_error(error_code) {
                            n.to_string()
                        } else {
                            map_index(n, base)
                        });
                    }
                    ("expiration", Value::String(s)) => {
                        *child = Value::String(if is_rfc3339_nano_utc(s) {
                            "<RFC 3339 with nanoseconds, UTC>".into()
                        } else {
                            format!("<not Go's RFC3339Nano in UTC: {s}>")
                        });
                    }
                    ("cause", Value::String(s)) if matches!(error_code, Some(101 | 401)) => {
                        *child = Value::String(map_bracketed_numbers(s, base));
                    }
                    _ => normalise(child, base, unsorted, error_code),
                }
            }
            if unsorted {
                if let Some(Value::Array(nodes)) = map.get_mut("nodes") {
                    nodes.sort_by_key(|n| n.get("key").map(Value::to_string).unwrap_or_default());
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|c| normalise(c, base, unsorted, error_code)),
        Value::String(s) => *s = map_key_names(s, base),
        _ => {}
    }
}

/// Object keys and value types, not values; an array's distinct element shapes.
fn shape(v: &Value) -> Value {
    match v {
        Value::Null => "null".into(),
        Value::Bool(_) => "bool".into(),
        Value::Number(_) => "number".into(),
        Value::String(_) => "string".into(),
        Value::Array(items) => {
            let mut shapes: Vec<Value> = items.iter().map(shape).collect();
            shapes.sort_by_key(Value::to_string);
            shapes.dedup();
            Value::Array(shapes)
        }
        Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), shape(v))).collect()),
    }
}

/// Loopback URLs (member client and peer URLs) in text answers such as /v2/machines.
fn mask_urls(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("http://127.0.0.1:") {
        out += &rest[..i];
        out += "<url>";
        rest = &rest[i + "http://127.0.0.1:".len()..];
        rest = rest.trim_start_matches(|c: char| c.is_ascii_digit());
    }
    out + rest
}

fn observe(r: &Response, request: &Request, base: u64) -> Observed {
    let error_code =
        serde_json::from_str::<Value>(&r.body).ok().and_then(|v| v.get("errorCode").and_then(Value::as_u64));
    let mut headers = BTreeMap::new();
    for (name, masked) in [
        ("content-type", false),
        ("x-etcd-index", false),
        ("x-raft-index", true),
        ("x-raft-term", true),
        ("x-etcd-cluster-id", true),
        ("allow", false),
        ("location", false),
        ("access-control-allow-headers", false),
        ("access-control-allow-methods", false),
        ("access-control-allow-origin", false),
    ] {
        if let Some(v) = r.header(name) {
            let v = if name == "x-etcd-index" {
                match v.parse::<u64>() {
                    Ok(n) if request_error(error_code) => n.to_string(),
                    Ok(n) => map_index(n, base),
                    Err(_) => format!("<not a number: {v}>"),
                }
            } else if masked {
                let ok = if name == "x-etcd-cluster-id" {
                    !v.is_empty() && v.chars().all(|c| c.is_ascii_hexdigit())
                } else {
                    v.parse::<u64>().is_ok()
                };
                if ok {
                    "<present>".into()
                } else {
                    format!("<malformed: {v}>")
                }
            } else {
                v.to_string()
            };
            headers.insert(name, v);
        }
    }
    let escapes =
        r.body.match_indices("\\u").map(|(i, _)| r.body[i..(i + 6).min(r.body.len())].to_string()).collect();
    let body = match serde_json::from_str::<Value>(&r.body) {
        Ok(mut v) => {
            if request.compare == Compare::Shape {
                if request.target == "/version" {
                    // Cairn adds its own version beside etcd's two fields, on purpose (see
                    // `serde_version` in main.rs); etcd's fields must match.
                    if let Some(map) = v.as_object_mut() {
                        map.remove("cairn");
                    }
                }
                shape(&v)
            } else {
                let code = v.get("errorCode").and_then(Value::as_u64);
                normalise(&mut v, base, !request.query_flag("sorted"), code);
                v
            }
        }
        Err(_) if request.compare == Compare::Shape => Value::String(format!("text: {}", mask_urls(&r.body))),
        Err(_) => Value::String(format!("text: {}", r.body)),
    };
    Observed { status: r.status, headers, body, trailing_newline: r.body.ends_with('\n'), escapes }
}

fn differences(a: &Observed, b: &Observed) -> Vec<String> {
    let mut out = Vec::new();
    if a.status != b.status {
        out.push(format!("status: {} vs {}", a.status, b.status));
    }
    let names: std::collections::BTreeSet<_> = a.headers.keys().chain(b.headers.keys()).collect();
    for n in names {
        let (x, y) = (a.headers.get(n), b.headers.get(n));
        if x != y {
            out.push(format!("header {n}: {x:?} vs {y:?}"));
        }
    }
    diff_json(&a.body, &b.body, "body", &mut out);
    if a.trailing_newline != b.trailing_newline {
        out.push(format!("body ends with a newline: {} vs {}", a.trailing_newline, b.trailing_newline));
    }
    if a.escapes != b.escapes {
        out.push(format!("\\u escapes in the body: {:?} vs {:?}", a.escapes, b.escapes));
    }
    out
}

fn diff_json(a: &Value, b: &Value, path: &str, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<_> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let p = format!("{path}.{k}");
                match (x.get(k), y.get(k)) {
                    (Some(Value::Number(m)), Some(Value::Number(n))) if k == "ttl" => {
                        let (m, n) = (m.as_i64().unwrap_or(i64::MIN), n.as_i64().unwrap_or(i64::MAX));
                        if m.abs_diff(n) > 1 {
                            out.push(format!("{p}: {m} vs {n} (more than 1 s apart)"));
                        }
                    }
                    (Some(m), Some(n)) => diff_json(m, n, &p, out),
                    (m, n) => out.push(format!("{p}: {} vs {}", show(m), show(n))),
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (m, n)) in x.iter().zip(y).enumerate() {
                diff_json(m, n, &format!("{path}[{i}]"), out);
            }
        }
        _ if a == b => {}
        _ => out.push(format!("{path}: {a} vs {b}")),
    }
}

fn show(v: Option<&Value>) -> String {
    v.map(Value::to_string).unwrap_or_else(|| "(absent)".into())
}
