//! The etcd v2 HTTP+JSON API on the client port: `/v2/keys` (directories, TTLs, compare-and-
//! swap, in-order keys, `wait` watches), `/v2/members`, `/v2/machines` and `/v2/stats/*`, with
//! etcd 3.4's JSON shapes, headers, statuses and error codes.
//!
//! Requests are parsed as etcd's v2 handler parses them (`parse`), turned into one core
//! request each (`cairn_core::v2`: reads served locally or, with `quorum=true`, by ReadIndex;
//! writes through the Raft log), and answered in etcd's JSON (`json`).

pub mod form;
pub mod json;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use axum::routing::any;
use axum::Router;
use cairn_core::v2::{V2Action, V2Event, V2Get, V2Write};
use cairn_core::{Error, Request, ResponseBody};
use cairn_io_tokio::{unix_now_ns, MemberHandle};
use serde::Serialize;

use crate::info::ServerInfo;
use form::Form;

/// How long a `wait=true` request waits for its event (etcd: 5 minutes); then the answer ends
/// empty and the client waits again.
const WATCH_TIMEOUT: Duration = Duration::from_secs(300);

/// Go's limit on a form body (`http: POST too large` beyond it), which is what bounds etcd's v2
/// values.
const FORM_BYTES_MAX: usize = 10 << 20;

/// How much of a body past [`FORM_BYTES_MAX`] is read and thrown away before the refusal is
/// sent, and for how long. A client that writes its whole request before reading (most HTTP/1
/// clients) would otherwise meet a connection reset mid-write and never see the answer; past
/// these bounds the connection is closed anyway, so a sender cannot hold it open.
const DRAIN_BYTES_MAX: usize = 64 << 20;
const DRAIN_TIME_MAX: Duration = Duration::from_secs(2);

/// Reads a form body of at most [`FORM_BYTES_MAX`] bytes; `None` when it is larger (or the
/// connection fails), after draining what follows within [`DRAIN_BYTES_MAX`] and
/// [`DRAIN_TIME_MAX`]. Memory held stays within the form limit whatever is sent.
async fn read_form(body: Body) -> Option<Bytes> {
    use futures::StreamExt;
    let mut stream = body.into_data_stream();
    let mut form = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.ok()?;
        if form.len() + chunk.len() > FORM_BYTES_MAX {
            let mut drained = 0usize;
            let drain = async {
                while let Some(Ok(chunk)) = stream.next().await {
                    drained += chunk.len();
                    if drained > DRAIN_BYTES_MAX {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(DRAIN_TIME_MAX, drain).await;
            return None;
        }
        form.extend_from_slice(&chunk);
    }
    Some(Bytes::from(form))
}

#[derive(Clone)]
struct V2 {
    node: MemberHandle,
    info: Arc<ServerInfo>,
    stats: Arc<StoreStats>,
    started: SystemTime,
}

/// The v2 routes, served from `node`.
pub fn router(node: MemberHandle, info: Arc<ServerInfo>) -> Router {
    let state = V2 { node, info, stats: Arc::new(StoreStats::default()), started: SystemTime::now() };
    Router::new()
        .route("/v2/keys", any(keys))
        .route("/v2/keys/", any(keys))
        .route("/v2/keys/{*path}", any(keys))
        .route("/v2/members", any(members))
        .route("/v2/members/", any(members))
        .route("/v2/members/{id}", any(member))
        .route("/v2/machines", any(machines))
        .route("/v2/stats/self", any(stats_self))
        .route("/v2/stats/leader", any(stats_leader))
        .route("/v2/stats/store", any(stats_store))
        .route("/v2/{*rest}", any(not_found))
        // Bodies are read with Go's form limit in `keys`.
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}

/// A parsed `/v2/keys` request.
enum Op {
    Get(V2Get),
    Watch { path: String, recursive: bool, stream: bool, since: u64 },
    Write(V2Write),
}

/// A v2 error before it reaches the store (etcd's `NewRequestError`: index 0).
struct ReqError {
    code: u32,
    cause: String,
}

fn req_err(code: u32, cause: impl Into<String>) -> ReqError {
    ReqError { code, cause: cause.into() }
}

/// etcd's HTTP status for a v2 error code.
fn status_of(code: u32) -> StatusCode {
    match code {
        100 => StatusCode::NOT_FOUND,
        102 | 108 => StatusCode::FORBIDDEN,
        110 => StatusCode::UNAUTHORIZED,
        101 | 105 => StatusCode::PRECONDITION_FAILED,
        300 | 301 => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    }
}

impl V2 {
    fn cluster_id(&self) -> HeaderValue {
        hv(&format!("{:x}", self.info.cluster_id))
    }

    fn error_response(&self, code: u32, cause: &str, index: u64) -> Response {
        let body = json::error(code, cairn_core::v2::message(code), cause, index);
        let mut r = Response::new(Body::from(body));
        *r.status_mut() = status_of(code);
        let h = r.headers_mut();
        h.insert("X-Etcd-Cluster-Id", self.cluster_id());
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h.insert("X-Etcd-Index", hv(&index.to_string()));
        r
    }

    /// A core error as etcd answers it: v2 store errors as they are, anything else (no leader,
    /// timeouts, a request too large) as error 300 with the reason as its cause.
    fn core_error(&self, e: &Error) -> Response {
        match e {
            Error::V2 { code, cause, index } => self.error_response(*code, cause, *index),
            Error::UserEmpty | Error::PermissionDenied => {
                self.error_response(110, INSUFFICIENT_CREDENTIALS, 0)
            }
            e => self.error_response(300, &e.to_string(), 0),
        }
    }

    fn raft_headers(&self, h: &mut HeaderMap, etcd_index: u64) {
        let st = self.node.status();
        h.insert("X-Etcd-Cluster-Id", self.cluster_id());
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h.insert("X-Etcd-Index", hv(&etcd_index.to_string()));
        h.insert("X-Raft-Index", hv(&st.commit_index.to_string()));
        h.insert("X-Raft-Term", hv(&st.term.to_string()));
    }

    fn event_response(&self, e: &V2Event, no_value: bool) -> Response {
        let no_value = no_value
            && matches!(
                e.action,
                V2Action::Set | V2Action::CompareAndSwap | V2Action::Create | V2Action::Update
            );
        let mut r = Response::new(Body::from(json::event(e, unix_now_ns(), no_value)));
        if e.is_created() {
            *r.status_mut() = StatusCode::CREATED;
        }
        self.raft_headers(r.headers_mut(), e.etcd_index);
        r
    }
}

fn hv(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// etcd v2's cause for a request refused by its auth (error 110, HTTP 401).
const INSUFFICIENT_CREDENTIALS: &str = "Insufficient credentials";

async fn keys(State(v2): State<V2>, method: Method, uri: Uri, headers: HeaderMap, body: Body) -> Response {
    if method == Method::OPTIONS {
        // etcd answers OPTIONS (its CORS preflight) with an empty 200.
        return Response::new(Body::empty());
    }
    if let Some(r) = redirect_unclean(&method, &uri) {
        return r;
    }
    if !matches!(method, Method::GET | Method::HEAD | Method::PUT | Method::POST | Method::DELETE) {
        let mut r = Response::new(Body::from("Method Not Allowed\n"));
        *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
        r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("HEAD,GET,PUT,POST,DELETE"));
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
        return r;
    }
    if form::unescape(uri.path(), false).is_err() {
        // Go's HTTP server refuses a path it cannot unescape before any handler runs.
        let mut r = Response::new(Body::from("400 Bad Request"));
        *r.status_mut() = StatusCode::BAD_REQUEST;
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
        r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        r.extensions_mut().insert(crate::cors::BeforeHandlers);
        return r;
    }
    let body = match read_form(body).await {
        Some(b) => b,
        None => {
            let mut r = v2.error_response(210, "http: POST too large", 0);
            r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
            return r;
        }
    };
    let (op, no_value) = match parse(&method, &uri, &headers, &body) {
        Ok(x) => x,
        Err(e) => return v2.error_response(e.code, &e.cause, 0),
    };
    if v2.node.with_status(|st| st.auth.is_enabled()) {
        // The v2 keys store has no users of its own: with v3 authentication on, it is closed
        // (the core refuses its requests too, should authentication come on meanwhile).
        return v2.error_response(110, INSUFFICIENT_CREDENTIALS, 0);
    }
    match op {
        Op::Get(g) => {
            let result = v2.node.request(Request::V2Get(g)).await;
            v2.stats.count(V2Action::Get, result.is_ok());
            match result {
                Ok(resp) => match resp.body {
                    ResponseBody::V2(Some(e)) => v2.event_response(&e, no_value),
                    _ => v2.error_response(300, "unexpected response", 0),
                },
                Err(e) => v2.core_error(&e),
            }
        }
        Op::Write(w) => {
            let action = write_action(&w);
            let result = v2.node.request(Request::V2Write(w)).await;
            v2.stats.count(action, result.is_ok());
            match result {
                Ok(resp) => match resp.body {
                    ResponseBody::V2(Some(e)) => v2.event_response(&e, no_value),
                    _ => v2.error_response(300, "unexpected response", 0),
                },
                Err(e) => v2.core_error(&e),
            }
        }
        Op::Watch { path, recursive, stream, since } => watch(v2, &path, recursive, stream, since).await,
    }
}

/// `wait=true`: the headers go out at once (with the store's index at the start), the event
/// when it happens; the answer ends after one event (or keeps streaming with `stream=true`),
/// or empty after `WATCH_TIMEOUT`.
async fn watch(v2: V2, path: &str, recursive: bool, stream: bool, since: u64) -> Response {
    let (start, mut w) = match v2.node.v2_watch(path, recursive, stream, since).await {
        Ok(x) => x,
        Err(e) => return v2.core_error(&e),
    };
    v2.stats.watchers.fetch_add(1, Ordering::Relaxed);
    let stats = v2.stats.clone();
    let body = async_stream(move |tx| async move {
        let deadline = tokio::time::Instant::now() + WATCH_TIMEOUT;
        loop {
            let next = tokio::time::timeout_at(deadline, w.recv()).await;
            match next {
                Ok(Some(Ok(e))) => {
                    if tx.send(Bytes::from(json::event(&e, unix_now_ns(), false))).await.is_err() || !stream {
                        break;
                    }
                }
                Ok(Some(Err(Error::V2 { code, cause, index }))) => {
                    let _ = tx
                        .send(Bytes::from(json::error(code, cairn_core::v2::message(code), &cause, index)))
                        .await;
                    break;
                }
                _ => break,
            }
        }
        stats.watchers.fetch_sub(1, Ordering::Relaxed);
    });
    let mut r = Response::new(body);
    v2.raft_headers(r.headers_mut(), start);
    r
}

/// A response body fed by a task; the task's sender fails once the client is gone, and the
/// task (with what it owns, such as a watch) is dropped with the body.
fn async_stream<F, Fut>(f: F) -> Body
where
    F: FnOnce(tokio::sync::mpsc::Sender<Bytes>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    let task = tokio::spawn(f(tx));
    let guard = AbortOnDrop(task);
    let s = futures::stream::poll_fn(move |cx| {
        let _ = &guard;
        rx.poll_recv(cx).map(|b| b.map(Ok::<Bytes, std::convert::Infallible>))
    });
    Body::from_stream(s)
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Go's `ServeMux` answers a path with empty, "." or ".." segments with a redirect to its
/// clean form (a trailing slash kept).
fn redirect_unclean(method: &Method, uri: &Uri) -> Option<Response> {
    let p = uri.path();
    let mut clean = cairn_core::v2::clean(p);
    if p.ends_with('/') && clean != "/" {
        clean.push('/');
    }
    if clean == p {
        return None;
    }
    let location = match uri.query() {
        Some(q) => format!("{clean}?{q}"),
        None => clean.clone(),
    };
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::MOVED_PERMANENTLY;
    r.headers_mut().insert(header::LOCATION, hv(&location));
    if *method == Method::GET || *method == Method::HEAD {
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
        *r.body_mut() = Body::from(format!("<a href=\"{location}\">Moved Permanently</a>.\n\n"));
    }
    Some(r)
}

fn write_action(w: &V2Write) -> V2Action {
    match w {
        V2Write::Set { .. } => V2Action::Set,
        V2Write::Create { .. } => V2Action::Create,
        V2Write::Update { .. } => V2Action::Update,
        V2Write::CompareAndSwap { .. } => V2Action::CompareAndSwap,
        V2Write::Delete { .. } => V2Action::Delete,
        V2Write::CompareAndDelete { .. } => V2Action::CompareAndDelete,
        V2Write::Expire { .. } => V2Action::Expire,
    }
}

/// etcd's `parseKeyRequest` and its v2 applier's choice of operation. Returns the operation and
/// `noValueOnSuccess`.
fn parse(method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Result<(Op, bool), ReqError> {
    let form_body = matches!(*method, Method::PUT | Method::POST)
        && headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|ct| ct.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"));
    let (f, parse_err) = Form::parse(form_body.then_some(body), uri.query().unwrap_or(""));
    if let Some(e) = parse_err {
        return Err(req_err(210, e));
    }
    let raw = uri.path();
    let Some(rest) = raw.strip_prefix("/v2/keys") else {
        return Err(req_err(210, "incorrect key prefix"));
    };
    let path = cairn_core::v2::clean(&form::unescape(rest, false).map_err(|e| req_err(210, e))?);

    let prev_index = f.u64("prevIndex").map_err(|_| req_err(203, "invalid value for \"prevIndex\""))?;
    let wait_index = f.u64("waitIndex").map_err(|_| req_err(203, "invalid value for \"waitIndex\""))?;
    let flag = |k: &str| f.bool(k).map_err(|_| req_err(209, format!("invalid value for \"{k}\"")));
    let recursive = flag("recursive")?;
    let sorted = flag("sorted")?;
    let wait = flag("wait")?;
    let dir = flag("dir")?;
    let quorum = flag("quorum")?;
    let stream = flag("stream")?;
    if wait && *method != Method::GET {
        return Err(req_err(209, "\"wait\" can only be used with GET requests"));
    }
    let prev_value = f.value("prevValue").to_string();
    if f.has("prevValue") && prev_value.is_empty() {
        return Err(req_err(201, "\"prevValue\" cannot be empty"));
    }
    let no_value = flag("noValueOnSuccess")?;
    let ttl = match f.value("ttl") {
        "" => None,
        v => Some(form::parse_u64(v).map_err(|_| req_err(202, "invalid value for \"ttl\""))?),
    };
    let prev_exist = match f.get("prevExist") {
        None => None,
        Some(v) => Some(form::parse_bool(v).map_err(|_| req_err(209, "invalid value for prevExist"))?),
    };
    let refresh = match f.get("refresh") {
        None => false,
        Some(v) => {
            let r = form::parse_bool(v).map_err(|_| req_err(209, "invalid value for refresh"))?;
            if r {
                if f.has("value") && !f.value("value").is_empty() {
                    return Err(req_err(211, "A value was provided on a refresh"));
                }
                if ttl.is_none() {
                    return Err(req_err(212, "No TTL value set"));
                }
            }
            r
        }
    };
    let value = f.value("value").to_string();
    let expire_ns = ttl.map(|t| {
        let ns = (t as i128) * 1_000_000_000 + unix_now_ns() as i128;
        ns.min(i64::MAX as i128) as i64
    });

    let op = match *method {
        Method::GET | Method::HEAD if wait => Op::Watch { path, recursive, stream, since: wait_index },
        Method::GET | Method::HEAD => Op::Get(V2Get { path, recursive, sorted, quorum }),
        Method::POST => Op::Write(V2Write::Create { path, dir, value, unique: true, expire_ns }),
        Method::PUT => Op::Write(match prev_exist {
            Some(true) if prev_index == 0 && prev_value.is_empty() => {
                V2Write::Update { path, value, expire_ns, refresh }
            }
            Some(true) => V2Write::CompareAndSwap { path, prev_value, prev_index, value, expire_ns, refresh },
            Some(false) => V2Write::Create { path, dir, value, unique: false, expire_ns },
            None if prev_index > 0 || !prev_value.is_empty() => {
                V2Write::CompareAndSwap { path, prev_value, prev_index, value, expire_ns, refresh }
            }
            None => V2Write::Set { path, dir, value, expire_ns, refresh },
        }),
        _ => Op::Write(if prev_index > 0 || !prev_value.is_empty() {
            V2Write::CompareAndDelete { path, prev_value, prev_index }
        } else {
            V2Write::Delete { path, dir, recursive }
        }),
    };
    Ok((op, no_value))
}

// ---- /v2/members, /v2/machines, /v2/stats ----

#[derive(Serialize)]
struct MemberJson {
    id: String,
    name: String,
    #[serde(rename = "peerURLs")]
    peer_urls: Vec<String>,
    #[serde(rename = "clientURLs")]
    client_urls: Vec<String>,
}

fn member_json(m: &cairn_core::Member) -> MemberJson {
    MemberJson {
        id: format!("{:x}", m.id),
        name: m.name.clone(),
        peer_urls: m.peer_urls.clone(),
        client_urls: m.client_urls.clone(),
    }
}

fn member_list(v2: &V2) -> Vec<MemberJson> {
    let members = v2.node.with_status(|st| crate::info::members(&v2.info, st));
    members
        .iter()
        .map(|m| MemberJson {
            id: format!("{:x}", m.id),
            name: m.name.clone(),
            peer_urls: m.peer_urls.clone(),
            client_urls: m.client_urls.clone(),
        })
        .collect()
}

fn json_response(status: StatusCode, body: Vec<u8>, v2: &V2) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r.headers_mut().insert("X-Etcd-Cluster-Id", v2.cluster_id());
    r
}

/// Go's answer to a method a handler does not take.
fn method_not_allowed(allow: &'static str) -> Response {
    let mut r = Response::new(Body::from("Method Not Allowed\n"));
    *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    let h = r.headers_mut();
    h.insert(header::ALLOW, HeaderValue::from_static(allow));
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    h.insert("X-Content-Type-Options", HeaderValue::from_static("nosniff"));
    r
}

fn is_read(m: &Method) -> bool {
    *m == Method::GET || *m == Method::HEAD
}

/// A v2 membership change: `POST /v2/members` adds (`{"peerURLs": [...]}`), `PUT
/// /v2/members/<id>` changes peer URLs, `DELETE /v2/members/<id>` removes, with etcd's
/// statuses (201, 204; 409 for a taken peer URL, 404 for an unknown member, 410 for a removed
/// one) and messages. Bodies must be JSON, as etcd requires.
async fn members_write(
    v2: &V2,
    method: &Method,
    headers: &HeaderMap,
    id: Option<&str>,
    body: Body,
) -> Response {
    #[derive(Serialize)]
    struct Msg {
        message: String,
    }
    let error = |status: StatusCode, message: String| {
        let mut body = json::encode(&Msg { message });
        body.pop(); // without a newline, as etcd writes it
        json_response(status, body, v2)
    };
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let is_json = ct.split(';').next().is_some_and(|c| c.trim() == "application/json");
    let id = match id {
        None if *method == Method::POST => None,
        None => return method_not_allowed("GET,POST"),
        Some(_) if *method == Method::POST => return method_not_allowed("GET,DELETE,PUT"),
        Some(raw) => match u64::from_str_radix(raw, 16) {
            Ok(id) => Some(id),
            Err(_) => return error(StatusCode::NOT_FOUND, format!("No such member: {raw}")),
        },
    };
    let peer_urls = if *method == Method::DELETE {
        vec![]
    } else {
        if !is_json {
            return error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("Bad Content-Type {ct}, accept application/json"),
            );
        }
        #[derive(serde::Deserialize)]
        struct Change {
            #[serde(rename = "peerURLs")]
            peer_urls: Vec<String>,
        }
        let Some(bytes) = read_form(body).await else {
            return error(StatusCode::BAD_REQUEST, "http: request body too large".into());
        };
        match serde_json::from_slice::<Change>(&bytes) {
            Ok(c) if crate::grpc::cluster::check_peer_urls(&c.peer_urls).is_ok() => c.peer_urls,
            Ok(_) => {
                return error(StatusCode::BAD_REQUEST, "etcdserver: given member URLs are invalid".into())
            }
            Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
        }
    };
    let request = match (method, id) {
        (&Method::POST, _) => Request::MemberAdd { id: 0, peer_urls, learner: false },
        (&Method::PUT, Some(id)) => Request::MemberUpdate { id, peer_urls },
        (_, Some(id)) => Request::MemberRemove { id },
        _ => return method_not_allowed("GET,POST"),
    };
    let shown = id.map(|i| format!("{i:x}")).unwrap_or_default();
    match v2.node.request(request).await {
        Ok(resp) => match (method, resp.body) {
            (&Method::POST, ResponseBody::Members { member: Some(m), .. }) => {
                json_response(StatusCode::CREATED, json::encode(&member_json(&m)), v2)
            }
            _ => {
                let mut r = json_response(StatusCode::NO_CONTENT, Vec::new(), v2);
                r.headers_mut().remove(header::CONTENT_TYPE);
                r
            }
        },
        Err(Error::MemberExists) => error(StatusCode::CONFLICT, "membership: ID exists".into()),
        Err(Error::PeerUrlExists) => error(StatusCode::CONFLICT, "membership: peerURL exists".into()),
        Err(Error::MemberNotFound) => error(StatusCode::NOT_FOUND, format!("No such member: {shown}")),
        Err(Error::IdRemoved) => error(StatusCode::GONE, format!("Member permanently removed: {shown}")),
        Err(e @ (Error::NotEnoughStartedMembers | Error::MembershipChangePending)) => {
            error(StatusCode::CONFLICT, e.to_string())
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// Go's answer for a path no handler serves.
async fn not_found() -> Response {
    let mut r = Response::new(Body::from("404 page not found\n"));
    *r.status_mut() = StatusCode::NOT_FOUND;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    h.insert("X-Content-Type-Options", HeaderValue::from_static("nosniff"));
    r
}

async fn members(State(v2): State<V2>, method: Method, headers: HeaderMap, body: Body) -> Response {
    if !is_read(&method) {
        if matches!(method, Method::POST | Method::PUT | Method::DELETE) {
            return members_write(&v2, &method, &headers, None, body).await;
        }
        return method_not_allowed("GET,POST,DELETE,PUT");
    }
    #[derive(Serialize)]
    struct Members {
        members: Vec<MemberJson>,
    }
    json_response(StatusCode::OK, json::encode(&Members { members: member_list(&v2) }), &v2)
}

/// `/v2/members/leader`: the leader's entry; any other name is not found.
async fn member(
    State(v2): State<V2>,
    method: Method,
    headers: HeaderMap,
    axum::extract::Path(id): axum::extract::Path<String>,
    body: Body,
) -> Response {
    if !is_read(&method) {
        if matches!(method, Method::POST | Method::PUT | Method::DELETE) {
            return members_write(&v2, &method, &headers, Some(&id), body).await;
        }
        return method_not_allowed("GET,POST,DELETE,PUT");
    }
    #[derive(Serialize)]
    struct Msg {
        message: &'static str,
    }
    let leader = format!("{:x}", v2.node.status().leader);
    if id == "leader" {
        if let Some(m) = member_list(&v2).into_iter().find(|m| m.id == leader) {
            return json_response(StatusCode::OK, json::encode(&m), &v2);
        }
        return json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            json::encode(&Msg { message: "During election" }),
            &v2,
        );
    }
    let mut body = json::encode(&Msg { message: "Not found" });
    body.pop(); // etcd writes this one without a newline
    json_response(StatusCode::NOT_FOUND, body, &v2)
}

async fn machines(State(v2): State<V2>, method: Method) -> Response {
    if !is_read(&method) {
        return method_not_allowed("GET,HEAD");
    }
    let urls: Vec<String> = member_list(&v2).into_iter().flat_map(|m| m.client_urls).collect();
    let mut r = Response::new(Body::from(urls.join(", ")));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

async fn stats_self(State(v2): State<V2>, method: Method) -> Response {
    if method != Method::GET {
        return method_not_allowed("GET");
    }
    #[derive(Serialize)]
    struct LeaderInfo {
        leader: String,
        uptime: String,
        #[serde(rename = "startTime")]
        start_time: String,
    }
    #[derive(Serialize)]
    struct SelfStats {
        name: String,
        id: String,
        state: &'static str,
        #[serde(rename = "startTime")]
        start_time: String,
        #[serde(rename = "leaderInfo")]
        leader_info: LeaderInfo,
        #[serde(rename = "recvAppendRequestCnt")]
        recv_append_request_cnt: u64,
        // Rates are left out when zero, as etcd leaves them out (a leader receives no
        // appends; a follower sends none).
        #[serde(rename = "recvPkgRate", skip_serializing_if = "is_zero")]
        recv_pkg_rate: f64,
        #[serde(rename = "recvBandwidthRate", skip_serializing_if = "is_zero")]
        recv_bandwidth_rate: f64,
        #[serde(rename = "sendAppendRequestCnt")]
        send_append_request_cnt: u64,
        #[serde(rename = "sendPkgRate", skip_serializing_if = "is_zero")]
        send_pkg_rate: f64,
        #[serde(rename = "sendBandwidthRate", skip_serializing_if = "is_zero")]
        send_bandwidth_rate: f64,
    }
    let st = v2.node.status();
    let peers = v2.node.peer_stats();
    let now = std::time::Instant::now();
    let (recv_pkg_rate, recv_bandwidth_rate) = peers.received.rates(now);
    let (send_pkg_rate, send_bandwidth_rate) = peers.sent.rates(now);
    let me = crate::info::members(&v2.info, &st).into_iter().find(|m| m.id == v2.info.member_id);
    let started = v2.started.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64);
    let uptime = SystemTime::now().duration_since(v2.started).unwrap_or_default();
    let s = SelfStats {
        name: me.map(|m| m.name.clone()).unwrap_or_default(),
        id: format!("{:x}", v2.info.member_id),
        state: if st.leader == st.id && st.leader != 0 { "StateLeader" } else { "StateFollower" },
        start_time: json::rfc3339_nano(started),
        leader_info: LeaderInfo {
            leader: format!("{:x}", st.leader),
            uptime: json::go_duration(uptime),
            start_time: json::rfc3339_nano(started),
        },
        recv_append_request_cnt: peers.received.count,
        recv_pkg_rate,
        recv_bandwidth_rate,
        send_append_request_cnt: peers.sent.count,
        send_pkg_rate,
        send_bandwidth_rate,
    };
    stats_response(StatusCode::OK, &s)
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

/// Stats answers: JSON without a trailing newline and without etcd's headers.
fn stats_response<T: Serialize>(status: StatusCode, v: &T) -> Response {
    let mut body = json::encode(v);
    body.pop();
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

async fn stats_leader(State(v2): State<V2>, method: Method) -> Response {
    if method != Method::GET {
        return method_not_allowed("GET");
    }
    let st = v2.node.status();
    if st.leader != st.id || st.leader == 0 {
        #[derive(Serialize)]
        struct Msg {
            message: &'static str,
        }
        return stats_response(StatusCode::FORBIDDEN, &Msg { message: "not current leader" });
    }
    #[derive(Serialize)]
    struct Counts {
        fail: u64,
        success: u64,
    }
    /// Seconds, as etcd reports them.
    #[derive(Serialize)]
    struct Latency {
        current: f64,
        average: f64,
        #[serde(rename = "standardDeviation")]
        standard_deviation: f64,
        minimum: f64,
        maximum: f64,
    }
    #[derive(Serialize)]
    struct Follower {
        latency: Latency,
        counts: Counts,
    }
    #[derive(Serialize)]
    struct LeaderStats {
        leader: String,
        followers: std::collections::BTreeMap<String, Follower>,
    }
    let peers = v2.node.peer_stats();
    let followers = st
        .voters
        .iter()
        .filter(|&&id| id != st.id)
        .map(|id| {
            let f = peers.followers.get(id).cloned().unwrap_or_default();
            let follower = Follower {
                latency: Latency {
                    current: f.latency_current,
                    average: f.latency_mean,
                    standard_deviation: f.latency_stddev(),
                    minimum: f.latency_min,
                    maximum: f.latency_max,
                },
                counts: Counts { fail: f.fail, success: f.success },
            };
            (format!("{id:x}"), follower)
        })
        .collect();
    stats_response(StatusCode::OK, &LeaderStats { leader: format!("{:x}", st.id), followers })
}

/// Counts of v2 operations this member served (etcd's store statistics).
#[derive(Default)]
struct StoreStats {
    ok: [AtomicU64; 8],
    fail: [AtomicU64; 8],
    watchers: AtomicU64,
}

impl StoreStats {
    fn count(&self, action: V2Action, ok: bool) {
        let i = action as usize;
        if ok { &self.ok[i] } else { &self.fail[i] }.fetch_add(1, Ordering::Relaxed);
    }
}

async fn stats_store(State(v2): State<V2>, method: Method) -> Response {
    if method != Method::GET {
        return method_not_allowed("GET");
    }
    let s = &v2.stats;
    let g = |a: &[AtomicU64; 8], act: V2Action| a[act as usize].load(Ordering::Relaxed);
    use V2Action::*;
    let fields: Vec<(&str, u64)> = vec![
        ("getsSuccess", g(&s.ok, Get)),
        ("getsFail", g(&s.fail, Get)),
        ("setsSuccess", g(&s.ok, Set)),
        ("setsFail", g(&s.fail, Set)),
        ("deleteSuccess", g(&s.ok, Delete)),
        ("deleteFail", g(&s.fail, Delete)),
        ("updateSuccess", g(&s.ok, Update)),
        ("updateFail", g(&s.fail, Update)),
        ("createSuccess", g(&s.ok, Create)),
        ("createFail", g(&s.fail, Create)),
        ("compareAndSwapSuccess", g(&s.ok, CompareAndSwap)),
        ("compareAndSwapFail", g(&s.fail, CompareAndSwap)),
        ("compareAndDeleteSuccess", g(&s.ok, CompareAndDelete)),
        ("compareAndDeleteFail", g(&s.fail, CompareAndDelete)),
        ("expireCount", v2.node.status().v2_expired),
        ("watchers", s.watchers.load(Ordering::Relaxed)),
    ];
    // In etcd's field order.
    let body: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
    let mut r = Response::new(Body::from(format!("{{{}}}", body.join(","))));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}
