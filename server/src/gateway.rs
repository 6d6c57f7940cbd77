//! The etcd v3 JSON gateway: etcd 3.4's grpc-gateway (v1) on the client port, so that `curl`
//! can speak v3: `POST /v3/kv/range` with `{"key": "Zm9v"}` answers what the gRPC Range call
//! answers, as JSON.
//!
//! It holds no request logic of its own. A request's JSON is decoded into the generated prost
//! type, handed to the same tonic service the gRPC API serves (`crate::grpc`), and the answer
//! encoded back to JSON. What it matches, checked against etcd 3.4 (`tests/gateway.rs` runs
//! the same requests against both):
//!
//! - JSON is protobuf's mapping as jsonpb writes it with `OrigName`: original field names
//!   (`create_revision`, `ID`, `TTL`, `dbSize`), bytes as base64, 64-bit integers as strings,
//!   enums by name, zero values left out. Requests may use either the original or the
//!   camelCase name, give 64-bit integers as numbers or strings, and enums by name or number;
//!   unknown fields are ignored, `null` is the default, and of a field given twice the last
//!   counts. An empty body or `null` is the empty request.
//! - Only the first JSON value of a unary request's body is read (Go's `json.Decoder`), so
//!   anything after it is ignored.
//! - A failed call answers `{"error": msg, "message": msg, "code": grpc_code}` with the HTTP
//!   status grpc-gateway v1 gives the code (`http_status`); a body that does not decode
//!   answers the same with INVALID_ARGUMENT, and a request larger than the gRPC services
//!   accept with RESOURCE_EXHAUSTED (HTTP 429), as etcd's gRPC server refuses it.
//! - Watch and LeaseKeepAlive read any number of requests from the body as it arrives and
//!   answer each response as one line, `{"result": {...}}\n`. The first request is read
//!   before the call: if it does not decode, the answer is an error with UNKNOWN (HTTP 500),
//!   as grpc-gateway does; a later one that does not decode just ends the requests (the
//!   client's side of the stream is closed, and an open watch carries on). The HTTP status is
//!   sent with the first response; a stream that fails mid-way ends with
//!   `{"error": {"grpc_code", "http_code", "message", "http_status"}}`, without a newline
//!   (grpc-gateway v1's `errorChunk`, taken from its source: a single etcd member offers no
//!   way to fail a stream mid-way and see it).
//! - Paths under `/v3/` and, as etcd 3.4 also serves them, `/v3beta/`; with etcd's CORS
//!   headers, as etcd sends them for any origin.
//!
//! Where it differs: error messages for JSON that does not decode are serde's, not Go's
//! (except "unexpected EOF" for a truncated body); an enum number that names no value is an
//! error (Go keeps the number); the paths of etcd's Auth service are not served (Cairn has
//! no authentication).

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use axum::body::{Body, BodyDataStream, Bytes};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::{post, MethodRouter};
use axum::Router;
use futures::{Stream, StreamExt};
use prost::Message;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status, Streaming};

use crate::credentials::HttpCredentials;
use crate::grpc::auth::AuthService;
use crate::grpc::cluster::ClusterService;
use crate::grpc::kv::KvService;
use crate::grpc::lease::LeaseService;
use crate::grpc::maintenance::MaintenanceService;
use crate::grpc::pb::etcdserverpb::auth_server::Auth as _;
use crate::grpc::pb::etcdserverpb::cluster_server::Cluster as _;
use crate::grpc::pb::etcdserverpb::kv_server::Kv as _;
use crate::grpc::pb::etcdserverpb::lease_server::Lease as _;
use crate::grpc::pb::etcdserverpb::maintenance_server::Maintenance as _;
use crate::grpc::pb::etcdserverpb::watch_server::Watch as _;
use crate::grpc::watch::{WatchService, PROGRESS_NOTIFY_INTERVAL};
use crate::grpc::{Ctx, GRPC_OVERHEAD_BYTES};

/// Requests decoded from a stream's body but not yet taken by the service. At the bound the
/// body is not read further until the service catches up.
const INBOUND_QUEUED_MAX: usize = 16;

/// The services the gRPC API serves, and the request size they accept.
struct Services {
    kv: KvService,
    watch: WatchService,
    lease: LeaseService,
    cluster: ClusterService,
    maintenance: MaintenanceService,
    auth: AuthService,
    limits: Limits,
}

/// How large a request may be.
#[derive(Clone, Copy)]
struct Limits {
    /// The largest request message the gRPC services decode (`--max-request-bytes` and
    /// `GRPC_OVERHEAD_BYTES`). A larger one is refused with RESOURCE_EXHAUSTED and grpc-go's
    /// message, as etcd's gRPC server refuses what its gateway forwards.
    message_bytes_max: usize,
    /// The JSON for a request message of `message_bytes_max`: base64 makes bytes 4/3 as long,
    /// and field names and escapes add some more. A body still without a complete JSON value
    /// at this size is refused the same way, without reading further.
    json_bytes_max: usize,
}

/// A gRPC request for `msg` with the caller's credentials: the token from the `Authorization`
/// header (as etcd's gateway passes it on), and the client certificate's name.
fn grpc_request<T>(msg: T, creds: HttpCredentials) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    if let Some(value) = creds.token.and_then(|t| t.parse().ok()) {
        req.metadata_mut().insert("authorization", value);
    }
    if let Some(cn) = creds.common_name {
        req.extensions_mut().insert(cn);
    }
    req
}

/// A unary call: one JSON request, one JSON answer.
macro_rules! unary {
    ($s:ident, $service:ident . $method:ident) => {{
        let s = Arc::clone(&$s);
        with_preflight(post(move |creds: HttpCredentials, body: Body| async move {
            let limits = s.limits;
            unary(body, limits, |req| async move { s.$service.$method(grpc_request(req, creds)).await }).await
        }))
    }};
}

/// A call with one JSON request and a stream of answers.
macro_rules! server_streaming {
    ($s:ident, $service:ident . $method:ident) => {{
        let s = Arc::clone(&$s);
        with_preflight(post(move |creds: HttpCredentials, body: Body| async move {
            let limits = s.limits;
            server_streaming(
                body,
                limits,
                |req| async move { s.$service.$method(grpc_request(req, creds)).await },
            )
            .await
        }))
    }};
}

/// A bidirectional stream: JSON requests from the body, a stream of answers.
macro_rules! bidi {
    ($s:ident, $service:ident . $method:ident) => {{
        let s = Arc::clone(&$s);
        with_preflight(post(move |creds: HttpCredentials, body: Body| async move {
            let limits = s.limits;
            bidi(
                body,
                limits,
                |inbound| async move { s.$service.$method(grpc_request(inbound, creds)).await },
            )
            .await
        }))
    }};
}

/// The etcd v3 JSON gateway (`/v3/kv/range`, ...) over the same services as `grpc::routes`,
/// under `/v3/` and `/v3beta/`.
pub fn routes(node: cairn_io_tokio::MemberHandle, info: Arc<crate::info::ServerInfo>) -> Router {
    router(Ctx { node, info })
}

/// The gateway's routes over the member `ctx` serves.
fn router(ctx: Ctx) -> Router {
    let message_bytes_max = ctx.info.max_request_bytes.saturating_add(GRPC_OVERHEAD_BYTES);
    let s = Arc::new(Services {
        kv: KvService::new(ctx.clone()),
        watch: WatchService::new(ctx.clone(), PROGRESS_NOTIFY_INTERVAL),
        lease: LeaseService::new(ctx.clone()),
        cluster: ClusterService::new(ctx.clone()),
        maintenance: MaintenanceService::new(ctx.clone()),
        auth: AuthService::new(ctx),
        limits: Limits { message_bytes_max, json_bytes_max: message_bytes_max.saturating_mul(2) },
    });

    // etcd 3.4's paths (the `google.api.http` options of its rpc.proto). HashKV shares
    // `/maintenance/hash` with Hash there, and Hash answers it; the same here.
    let api = Router::new()
        .route("/kv/range", unary!(s, kv.range))
        .route("/kv/put", unary!(s, kv.put))
        .route("/kv/deleterange", unary!(s, kv.delete_range))
        .route("/kv/txn", unary!(s, kv.txn))
        .route("/kv/compaction", unary!(s, kv.compact))
        .route("/watch", bidi!(s, watch.watch))
        .route("/lease/grant", unary!(s, lease.lease_grant))
        .route("/lease/revoke", unary!(s, lease.lease_revoke))
        .route("/kv/lease/revoke", unary!(s, lease.lease_revoke))
        .route("/lease/keepalive", bidi!(s, lease.lease_keep_alive))
        .route("/lease/timetolive", unary!(s, lease.lease_time_to_live))
        .route("/kv/lease/timetolive", unary!(s, lease.lease_time_to_live))
        .route("/lease/leases", unary!(s, lease.lease_leases))
        .route("/kv/lease/leases", unary!(s, lease.lease_leases))
        .route("/cluster/member/add", unary!(s, cluster.member_add))
        .route("/cluster/member/remove", unary!(s, cluster.member_remove))
        .route("/cluster/member/update", unary!(s, cluster.member_update))
        .route("/cluster/member/list", unary!(s, cluster.member_list))
        .route("/cluster/member/promote", unary!(s, cluster.member_promote))
        .route("/maintenance/alarm", unary!(s, maintenance.alarm))
        .route("/maintenance/status", unary!(s, maintenance.status))
        .route("/maintenance/defragment", unary!(s, maintenance.defragment))
        .route("/maintenance/hash", unary!(s, maintenance.hash))
        .route("/maintenance/snapshot", server_streaming!(s, maintenance.snapshot))
        .route("/maintenance/transfer-leadership", unary!(s, maintenance.move_leader))
        .route("/auth/enable", unary!(s, auth.auth_enable))
        .route("/auth/disable", unary!(s, auth.auth_disable))
        .route("/auth/authenticate", unary!(s, auth.authenticate))
        .route("/auth/user/add", unary!(s, auth.user_add))
        .route("/auth/user/get", unary!(s, auth.user_get))
        .route("/auth/user/list", unary!(s, auth.user_list))
        .route("/auth/user/delete", unary!(s, auth.user_delete))
        .route("/auth/user/changepw", unary!(s, auth.user_change_password))
        .route("/auth/user/grant", unary!(s, auth.user_grant_role))
        .route("/auth/user/revoke", unary!(s, auth.user_revoke_role))
        .route("/auth/role/add", unary!(s, auth.role_add))
        .route("/auth/role/get", unary!(s, auth.role_get))
        .route("/auth/role/list", unary!(s, auth.role_list))
        .route("/auth/role/delete", unary!(s, auth.role_delete))
        .route("/auth/role/grant", unary!(s, auth.role_grant_permission))
        .route("/auth/role/revoke", unary!(s, auth.role_revoke_permission))
        // The client port's other fallback is tonic's, which answers gRPC's UNIMPLEMENTED
        // with HTTP 200.
        .fallback(|| async { plain_text(StatusCode::NOT_FOUND) });
    Router::new()
        .nest("/v3", api.clone())
        .nest("/v3beta", api)
        .layer(axum::middleware::map_response(with_cors_headers))
}

async fn unary<Req, Resp, F, Fut>(body: Body, limits: Limits, call: F) -> Response
where
    Req: DeserializeOwned + Default + Message,
    Resp: Serialize,
    F: FnOnce(Req) -> Fut,
    Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
{
    let req = match JsonValues::new(body, limits).next::<Req>().await {
        None => Req::default(),
        Some(Ok(req)) => req,
        Some(Err(status)) => return error_response(&status),
    };
    match call(req).await {
        Ok(resp) => match serde_json::to_vec(resp.get_ref()) {
            Ok(json) => json_response(StatusCode::OK, Body::from(json)),
            Err(e) => error_response(&Status::internal(format!("cairn: cannot encode the answer: {e}"))),
        },
        Err(status) => error_response(&status),
    }
}

async fn server_streaming<Req, Resp, F, Fut, S>(body: Body, limits: Limits, call: F) -> Response
where
    Req: DeserializeOwned + Default + Message,
    Resp: Serialize + Send + 'static,
    F: FnOnce(Req) -> Fut,
    Fut: Future<Output = Result<tonic::Response<S>, Status>>,
    S: Stream<Item = Result<Resp, Status>> + Send + 'static,
{
    let req = match JsonValues::new(body, limits).next::<Req>().await {
        None => Req::default(),
        Some(Ok(req)) => req,
        Some(Err(status)) => return error_response(&status),
    };
    match call(req).await {
        Ok(responses) => streamed(responses.into_inner()).await,
        Err(status) => error_response(&status),
    }
}

/// Feeds the JSON requests of `body` to `call` as the gRPC request stream it serves, as they
/// arrive. They travel as gRPC frames so that the service is handed the very `Streaming` a
/// gRPC client's requests would be; it is the one type tonic lets a stream handler take.
async fn bidi<Req, Resp, F, Fut, S>(body: Body, limits: Limits, call: F) -> Response
where
    Req: DeserializeOwned + Default + Message + Send + 'static,
    Resp: Serialize + Send + 'static,
    F: FnOnce(Streaming<Req>) -> Fut,
    Fut: Future<Output = Result<tonic::Response<S>, Status>>,
    S: Stream<Item = Result<Resp, Status>> + Send + 'static,
{
    let mut requests = JsonValues::new(body, limits);
    let first = match requests.next::<Req>().await {
        None => None,
        Some(Ok(req)) => Some(req),
        // grpc-gateway returns the decoding error itself here, not wrapped in a status, so
        // it reaches the client as UNKNOWN.
        Some(Err(status)) if status.code() == Code::InvalidArgument => {
            return error_response(&Status::unknown(status.message()))
        }
        Some(Err(status)) => return error_response(&status),
    };
    let (frames, frames_rx) = mpsc::channel::<Bytes>(INBOUND_QUEUED_MAX);
    match first {
        // An empty body: the client's side of the stream is closed from the start.
        None => drop(frames),
        Some(first) => {
            tokio::spawn(async move {
                let mut next = Some(first);
                while let Some(req) = next {
                    if frames.send(grpc_frame(&req)).await.is_err() {
                        return;
                    }
                    next = tokio::select! {
                        _ = frames.closed() => None,
                        // A request that does not decode, like the end of the body, ends the
                        // client's side of the stream.
                        req = requests.next::<Req>() => req.and_then(Result::ok),
                    };
                }
            });
        }
    }
    let inbound = Streaming::new_request(
        tonic_prost::ProstDecoder::<Req>::default(),
        Body::from_stream(ReceiverStream::new(frames_rx).map(Ok::<Bytes, Infallible>)),
        None,
        Some(limits.message_bytes_max),
    );
    match call(inbound).await {
        Ok(responses) => streamed(responses.into_inner()).await,
        Err(status) => error_response(&status),
    }
}

/// `msg` framed as on a gRPC stream: uncompressed, with its length.
fn grpc_frame(msg: &impl Message) -> Bytes {
    let len = msg.encoded_len();
    let mut frame = Vec::with_capacity(5 + len);
    frame.push(0);
    // The message is at most `message_bytes_max` (`JsonValues::next`); were it longer than
    // 4 GiB, the length would saturate and the decoder refuse the frame as too large.
    frame.extend_from_slice(&u32::try_from(len).map_or(u32::MAX, |len| len).to_be_bytes());
    msg.encode_raw(&mut frame);
    Bytes::from(frame)
}

/// Answers a stream of responses, one `{"result": ...}` line each, as grpc-gateway's
/// `ForwardResponseStream` does. The status line waits for the first response, so a stream
/// that fails at once answers with the error's HTTP status, and one that ends at once with
/// an empty 200.
async fn streamed<Resp, S>(responses: S) -> Response
where
    Resp: Serialize + Send + 'static,
    S: Stream<Item = Result<Resp, Status>> + Send + 'static,
{
    let mut responses = Box::pin(responses);
    let first = match responses.next().await {
        None => return json_response(StatusCode::OK, Body::empty()),
        Some(Err(status)) => {
            return json_response(http_status(status.code()), Body::from(stream_error(&status)))
        }
        Some(Ok(first)) => first,
    };
    let responses = futures::stream::once(async { Ok(first) }).chain(responses);
    let chunks = futures::stream::unfold(Some(Box::pin(responses)), |responses| async move {
        let mut responses = responses?;
        match responses.next().await {
            None => None,
            Some(Ok(resp)) => match stream_result(&resp) {
                Ok(chunk) => Some((chunk, Some(responses))),
                Err(status) => Some((stream_error(&status), None)),
            },
            Some(Err(status)) => Some((stream_error(&status), None)),
        }
    });
    json_response(StatusCode::OK, Body::from_stream(chunks.map(Ok::<Bytes, Infallible>)))
}

/// `{"result": resp}` and grpc-gateway's delimiter, a newline.
fn stream_result(resp: &impl Serialize) -> Result<Bytes, Status> {
    let mut chunk = b"{\"result\":".to_vec();
    serde_json::to_writer(&mut chunk, resp)
        .map_err(|e| Status::internal(format!("cairn: cannot encode the answer: {e}")))?;
    chunk.extend_from_slice(b"}\n");
    Ok(Bytes::from(chunk))
}

/// grpc-gateway v1's `errorChunk`: how a stream that fails says so (no delimiter follows).
fn stream_error(status: &Status) -> Bytes {
    let http = http_status(status.code());
    Bytes::from(format!(
        r#"{{"error":{{"grpc_code":{},"http_code":{},"message":{},"http_status":{}}}}}"#,
        status.code() as i32,
        http.as_u16(),
        json_string(status.message()),
        json_string(http.canonical_reason().map_or("", |reason| reason)),
    ))
}

/// grpc-gateway v1's `DefaultHTTPError`: the message twice (as `error` and `message`) and the
/// gRPC code, with `http_status(code)`.
fn error_response(status: &Status) -> Response {
    let message = json_string(status.message());
    let body = format!(r#"{{"error":{message},"message":{message},"code":{}}}"#, status.code() as i32);
    json_response(http_status(status.code()), Body::from(body))
}

fn json_string(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

fn json_response(status: StatusCode, body: Body) -> Response {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// grpc-gateway v1's `HTTPStatusFromCode`, the version etcd 3.4 builds with (it still answers
/// FAILED_PRECONDITION with 412, as etcd does for "lease already exists").
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled => StatusCode::REQUEST_TIMEOUT,
        Code::Unknown => StatusCode::INTERNAL_SERVER_ERROR,
        Code::InvalidArgument => StatusCode::BAD_REQUEST,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::FailedPrecondition => StatusCode::PRECONDITION_FAILED,
        Code::Aborted => StatusCode::CONFLICT,
        Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// etcd answers any origin (its `--cors` default is `*`), on every response and to a CORS
/// preflight.
async fn with_cors_headers(mut resp: Response) -> Response {
    let headers = resp.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("accept, content-type, authorization"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST, GET, OPTIONS, PUT, DELETE"),
    );
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    resp
}

/// A CORS preflight (OPTIONS) answers 200 with nothing but the CORS headers, as etcd does;
/// other methods than POST answer 405 with grpc-gateway's text.
fn with_preflight(route: MethodRouter) -> MethodRouter {
    route
        .options(|| async { StatusCode::OK })
        .fallback(|| async { plain_text(StatusCode::METHOD_NOT_ALLOWED) })
}

/// Go's `http.Error` with the status's own text, as grpc-gateway answers a path or method it
/// does not serve.
fn plain_text(status: StatusCode) -> Response {
    let mut resp = Response::new(Body::from(format!("{}\n", status.canonical_reason().map_or("", |r| r))));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    resp
}

/// The JSON values of a request body, read as the body arrives (Go's `json.Decoder` over it),
/// each decoded as jsonpb does.
struct JsonValues {
    body: BodyDataStream,
    /// Body bytes not yet decoded; at most `limits.json_bytes_max`.
    buf: Vec<u8>,
    limits: Limits,
    /// The body has ended.
    ended: bool,
    /// A value did not decode: nothing further is read.
    failed: bool,
}

enum Decoded {
    Value(Value),
    /// Only whitespace so far.
    Nothing,
    /// The start of a value, not yet complete.
    Incomplete,
    Invalid(String),
}

impl JsonValues {
    fn new(body: Body, limits: Limits) -> JsonValues {
        JsonValues { body: body.into_data_stream(), buf: Vec::new(), limits, ended: false, failed: false }
    }

    /// The next request, `None` at the end of the body, or why it cannot be had (after which
    /// there are no more): INVALID_ARGUMENT for JSON that does not decode into a `T`,
    /// RESOURCE_EXHAUSTED for one too large.
    async fn next<T: DeserializeOwned + Default + Message>(&mut self) -> Option<Result<T, Status>> {
        let value = match self.next_value().await? {
            Ok(value) => value,
            Err(status) => return Some(Err(status)),
        };
        let req = match request::<T>(value) {
            Ok(req) => req,
            Err(message) => return Some(Err(self.fail(Status::invalid_argument(message)))),
        };
        let len = req.encoded_len();
        if len > self.limits.message_bytes_max {
            let max = self.limits.message_bytes_max;
            let message = format!("grpc: received message larger than max ({len} vs. {max})");
            return Some(Err(self.fail(Status::resource_exhausted(message))));
        }
        Some(Ok(req))
    }

    async fn next_value(&mut self) -> Option<Result<Value, Status>> {
        if self.failed {
            return None;
        }
        // Decoding restarts from the value's first byte each time; it is worth trying only
        // once bytes have arrived that can end one (`}`, or the `l` of `null`), so that a large
        // value costs one decode, not one per chunk.
        let mut may_end = !self.buf.is_empty();
        loop {
            if may_end || self.ended {
                match self.decode() {
                    Decoded::Value(v) => return Some(Ok(v)),
                    Decoded::Nothing if self.ended => return None,
                    Decoded::Incomplete if self.ended => {
                        return Some(Err(self.fail(Status::invalid_argument("unexpected EOF"))))
                    }
                    Decoded::Nothing | Decoded::Incomplete => {}
                    Decoded::Invalid(message) => {
                        return Some(Err(self.fail(Status::invalid_argument(message))))
                    }
                }
            }
            if self.buf.len() > self.limits.json_bytes_max {
                let (json, max) = (self.limits.json_bytes_max, self.limits.message_bytes_max);
                let message =
                    format!("grpc: received message larger than max (over {json} bytes of JSON vs. {max})");
                return Some(Err(self.fail(Status::resource_exhausted(message))));
            }
            match self.body.next().await {
                Some(Ok(chunk)) => {
                    may_end = chunk.iter().any(|&b| b == b'}' || b == b'l');
                    self.buf.extend_from_slice(&chunk);
                }
                Some(Err(e)) => return Some(Err(self.fail(Status::invalid_argument(e.to_string())))),
                None => self.ended = true,
            }
        }
    }

    fn decode(&mut self) -> Decoded {
        let mut values = serde_json::Deserializer::from_slice(&self.buf).into_iter::<Value>();
        match values.next() {
            Some(Ok(v)) => {
                let used = values.byte_offset();
                self.buf.drain(..used);
                Decoded::Value(v)
            }
            None => {
                self.buf.clear();
                Decoded::Nothing
            }
            Some(Err(e)) if e.is_eof() => Decoded::Incomplete,
            Some(Err(e)) => Decoded::Invalid(e.to_string()),
        }
    }

    fn fail(&mut self, status: Status) -> Status {
        self.failed = true;
        self.buf = Vec::new();
        status
    }
}

/// A request from its JSON, as jsonpb reads it: `null`, for the whole request or for a field,
/// is the default, and of a field given twice the last counts (both are what decoding into a
/// `Value` first gives).
fn request<T: DeserializeOwned + Default>(mut value: Value) -> Result<T, String> {
    fn drop_nulls(v: &mut Value) {
        match v {
            Value::Object(fields) => {
                fields.retain(|_, field| !field.is_null());
                fields.values_mut().for_each(drop_nulls);
            }
            Value::Array(items) => items.iter_mut().for_each(drop_nulls),
            _ => {}
        }
    }
    drop_nulls(&mut value);
    if value.is_null() {
        return Ok(T::default());
    }
    if let Some(shape) = Shape::of::<T>() {
        check_bytes_fields(&mut value, shape)?;
    }
    serde_json::from_value(value).map_err(|e| e.to_string())
}

/// Where a request message holds `bytes` (keys, range ends, values), by message.
#[derive(Clone, Copy)]
enum Shape {
    /// RangeRequest, DeleteRangeRequest, WatchCreateRequest: a key and a range end.
    KeyRange,
    /// PutRequest: a key and a value.
    Put,
    /// Compare: a key, a range end and a value.
    Compare,
    Txn,
    RequestOp,
    Watch,
}

impl Shape {
    /// The shape of request type `T`, if it holds `bytes` at all.
    fn of<T>() -> Option<Shape> {
        let name = std::any::type_name::<T>().rsplit("::").next().unwrap_or("");
        match name {
            "RangeRequest" | "DeleteRangeRequest" => Some(Shape::KeyRange),
            "PutRequest" => Some(Shape::Put),
            "TxnRequest" => Some(Shape::Txn),
            "WatchRequest" => Some(Shape::Watch),
            _ => None,
        }
    }

    fn bytes_fields(self) -> &'static [&'static str] {
        match self {
            Shape::KeyRange => &["key", "range_end", "rangeEnd"],
            Shape::Put => &["key", "value"],
            Shape::Compare => &["key", "range_end", "rangeEnd", "value"],
            Shape::Txn | Shape::RequestOp | Shape::Watch => &[],
        }
    }

    /// The shape of field `name`'s value (or of each item of it), if it holds `bytes`.
    fn child(self, name: &str) -> Option<Shape> {
        match (self, name) {
            (Shape::Txn, "compare") => Some(Shape::Compare),
            (Shape::Txn, "success" | "failure") => Some(Shape::RequestOp),
            (Shape::RequestOp, "request_range" | "requestRange") => Some(Shape::KeyRange),
            (Shape::RequestOp, "request_put" | "requestPut") => Some(Shape::Put),
            (Shape::RequestOp, "request_delete_range" | "requestDeleteRange") => Some(Shape::KeyRange),
            (Shape::RequestOp, "request_txn" | "requestTxn") => Some(Shape::Txn),
            (Shape::Watch, "create_request" | "createRequest") => Some(Shape::KeyRange),
            _ => None,
        }
    }
}

/// etcd's gateway decodes `bytes` with Go's standard base64 (the `+/` alphabet, padding
/// required, line breaks skipped) and refuses anything else with Go's error; the JSON mapping
/// Cairn's types use takes URL-safe and unpadded base64 too, and no line breaks. So the
/// `bytes` fields a message of `shape` has are checked here, and their line breaks dropped.
/// Fields the message does not have are left alone: jsonpb ignores them, as the decoding after
/// this does.
fn check_bytes_fields(v: &mut Value, shape: Shape) -> Result<(), String> {
    match v {
        Value::Object(fields) => {
            for (name, field) in fields.iter_mut() {
                if let (Value::String(s), true) = (&mut *field, shape.bytes_fields().contains(&name.as_str()))
                {
                    go_std_base64_check(s.as_bytes())
                        .map_err(|at| format!("illegal base64 data at input byte {at}"))?;
                    if s.contains(['\n', '\r']) {
                        s.retain(|c| c != '\n' && c != '\r');
                    }
                } else if let Some(child) = shape.child(name) {
                    check_bytes_fields(field, child)?;
                }
            }
            Ok(())
        }
        Value::Array(items) => items.iter_mut().try_for_each(|item| check_bytes_fields(item, shape)),
        _ => Ok(()),
    }
}

/// Whether Go's `base64.StdEncoding.DecodeString` takes `src`; `Err` carries the offset its
/// `CorruptInputError` would report. (Go skips `\r` and `\n`, requires padding to a multiple
/// of four, and reports a short final group at its first byte.)
fn go_std_base64_check(src: &[u8]) -> Result<(), usize> {
    let is_symbol = |c: u8| c.is_ascii_alphanumeric() || c == b'+' || c == b'/';
    let mut si = 0;
    while si < src.len() {
        let mut j = 0;
        while j < 4 {
            if si == src.len() {
                if j == 0 {
                    return Ok(());
                }
                return Err(si - j);
            }
            let c = src[si];
            si += 1;
            if is_symbol(c) {
                j += 1;
                continue;
            }
            if c == b'\n' || c == b'\r' {
                continue;
            }
            if c != b'=' {
                return Err(si - 1);
            }
            // Padding: only after two or three symbols, "==" after two.
            match j {
                0 | 1 => return Err(si - 1),
                2 => {
                    while si < src.len() && (src[si] == b'\n' || src[si] == b'\r') {
                        si += 1;
                    }
                    if si == src.len() {
                        return Err(src.len());
                    }
                    if src[si] != b'=' {
                        return Err(si - 1);
                    }
                    si += 1;
                }
                _ => {}
            }
            while si < src.len() && (src[si] == b'\n' || src[si] == b'\r') {
                si += 1;
            }
            return if si < src.len() { Err(si) } else { Ok(()) };
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::go_std_base64_check as check;

    #[test]
    fn base64_is_checked_as_gos_standard_encoding_reports_it() {
        // Offsets as etcd 3.4's gateway answered them.
        assert_eq!(check(b"-_8="), Err(0));
        assert_eq!(check(b"Zm9vYg"), Err(4));
        assert_eq!(check(b"eA"), Err(0));
        assert_eq!(check(b"Zm9v YQ=="), Err(4));
        for ok in [&b""[..], b"+/8=", b"Zm9vYg==", b"Zm9vYmE=", b"Zm9v", b"Zm9v\nYmFy"] {
            assert_eq!(check(ok), Ok(()), "{}", String::from_utf8_lossy(ok));
        }
        assert_eq!(check(b"Zm9vYg=x"), Err(6));
        assert_eq!(check(b"Zm9vYg==Zm9v"), Err(8));
        assert_eq!(check(b"Z==="), Err(1));
    }
}
