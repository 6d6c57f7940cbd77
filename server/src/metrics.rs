//! GET /metrics: the member's metrics in Prometheus's text format, with etcd's names (see
//! `cairn_io_tokio::metrics` for the member's own), plus what the client port sees: gRPC calls
//! started and handled by service, method, type and status code (go-grpc-prometheus's
//! `grpc_server_started_total` and `grpc_server_handled_total`, as etcd exports them), and the
//! size of the member's data on disk.
//!
//! Every method of etcd's v3 services is listed from the start with a count of 0, as etcd does,
//! so a dashboard's rates exist before the first call. Calls to methods outside that list are
//! not counted: a client choosing method names must not choose how many series a member keeps.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use cairn_io_tokio::MemberHandle;
use http_body::{Body as HttpBody, Frame, SizeHint};
use prometheus::{IntCounterVec, IntGauge, Opts};

use crate::info::ServerInfo;

/// etcd 3.4's v3 services and their methods, with go-grpc-prometheus's type for each.
const METHODS: &[(&str, &[&str])] = &[
    ("etcdserverpb.KV", &["Range", "Put", "DeleteRange", "Txn", "Compact"]),
    ("etcdserverpb.Watch", &["Watch"]),
    (
        "etcdserverpb.Lease",
        &["LeaseGrant", "LeaseRevoke", "LeaseKeepAlive", "LeaseTimeToLive", "LeaseLeases"],
    ),
    ("etcdserverpb.Cluster", &["MemberAdd", "MemberRemove", "MemberUpdate", "MemberList", "MemberPromote"]),
    (
        "etcdserverpb.Maintenance",
        &["Alarm", "Status", "Defragment", "Hash", "HashKV", "Snapshot", "MoveLeader"],
    ),
    (
        "etcdserverpb.Auth",
        &[
            "AuthEnable",
            "AuthDisable",
            "Authenticate",
            "UserAdd",
            "UserGet",
            "UserList",
            "UserDelete",
            "UserChangePassword",
            "UserGrantRole",
            "UserRevokeRole",
            "RoleAdd",
            "RoleGet",
            "RoleList",
            "RoleDelete",
            "RoleGrantPermission",
            "RoleRevokePermission",
        ],
    ),
];

/// gRPC's status codes by number, under the names go-grpc-prometheus gives them.
const CODES: [&str; 17] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];

fn grpc_type(method: &str) -> &'static str {
    match method {
        "Watch" | "LeaseKeepAlive" => "bidi_stream",
        "Snapshot" => "server_stream",
        _ => "unary",
    }
}

/// The known service and method a gRPC request path names (`/service/method`), if any.
fn known_method(path: &str) -> Option<(&'static str, &'static str)> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    let (s, methods) = METHODS.iter().find(|(s, _)| *s == service)?;
    let m = methods.iter().find(|m| **m == method)?;
    Some((s, m))
}

/// What the client port adds to the member's registry.
pub struct ServerMetrics {
    node: MemberHandle,
    info: Arc<ServerInfo>,
    started: IntCounterVec,
    handled: IntCounterVec,
    db_size: IntGauge,
    db_size_in_use: IntGauge,
}

impl ServerMetrics {
    /// Registers the client port's metrics in `node`'s registry (once per member).
    pub fn new(node: MemberHandle, info: Arc<ServerInfo>) -> Result<Arc<ServerMetrics>, prometheus::Error> {
        let registry = node.metrics().registry().clone();
        let started = IntCounterVec::new(
            Opts::new("grpc_server_started_total", "Total number of RPCs started on the server."),
            &["grpc_type", "grpc_service", "grpc_method"],
        )?;
        let handled = IntCounterVec::new(
            Opts::new(
                "grpc_server_handled_total",
                "Total number of RPCs completed on the server, regardless of success or failure.",
            ),
            &["grpc_type", "grpc_service", "grpc_method", "grpc_code"],
        )?;
        for (service, methods) in METHODS {
            for method in *methods {
                let t = grpc_type(method);
                started.with_label_values(&[t, service, method]);
                for code in CODES {
                    handled.with_label_values(&[t, service, method, code]);
                }
            }
        }
        let db_size = IntGauge::new(
            "etcd_mvcc_db_total_size_in_bytes",
            "Total size of the underlying database physically allocated in bytes.",
        )?;
        let db_size_in_use = IntGauge::new(
            "etcd_mvcc_db_total_size_in_use_in_bytes",
            "Total size of the underlying database logically in use in bytes.",
        )?;
        registry.register(Box::new(started.clone()))?;
        registry.register(Box::new(handled.clone()))?;
        registry.register(Box::new(db_size.clone()))?;
        registry.register(Box::new(db_size_in_use.clone()))?;
        Ok(Arc::new(ServerMetrics { node, info, started, handled, db_size, db_size_in_use }))
    }

    async fn render(&self) -> String {
        let bytes = match self.info.data_dir.clone() {
            Some(dir) => {
                tokio::task::spawn_blocking(move || crate::info::disk_bytes(&dir)).await.unwrap_or(0)
            }
            None => 0,
        } as i64;
        // In use: what the store holds as its space quota counts it (see Maintenance.Status).
        self.db_size.set(bytes);
        self.db_size_in_use.set(self.node.with_status(|s| s.store_bytes) as i64);
        self.node.metrics().render()
    }
}

/// GET /metrics.
pub fn routes(metrics: Arc<ServerMetrics>) -> Router {
    Router::new().route("/metrics", get(serve_metrics)).with_state(metrics)
}

async fn serve_metrics(State(metrics): State<Arc<ServerMetrics>>) -> Response {
    let text = metrics.render().await;
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text)
        .into_response()
}

/// Counts the gRPC calls that pass (a middleware over the client port's router).
pub async fn count_grpc(State(metrics): State<Arc<ServerMetrics>>, req: Request, next: Next) -> Response {
    let is_grpc = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/grpc"));
    let Some((service, method)) = is_grpc.then(|| known_method(req.uri().path())).flatten() else {
        return next.run(req).await;
    };
    let t = grpc_type(method);
    metrics.started.with_label_values(&[t, service, method]).inc();
    let response = next.run(req).await;
    let handled = metrics.handled.clone();
    let record = move |code: &str| handled.with_label_values(&[t, service, method, code]).inc();
    // A trailers-only answer (an error before any message) carries its status in the headers.
    if let Some(code) = status_code(response.headers()) {
        record(code);
        return response;
    }
    let (parts, body) = response.into_parts();
    let body = CountedBody { inner: body, record: Some(Box::new(record)) };
    Response::from_parts(parts, Body::new(body))
}

/// go-grpc-prometheus's name for the `grpc-status` in `headers`, if there is one.
fn status_code(headers: &HeaderMap) -> Option<&'static str> {
    let n: usize = headers.get("grpc-status")?.to_str().ok()?.parse().ok()?;
    Some(CODES.get(n).copied().unwrap_or("Unknown"))
}

type Record = Box<dyn FnOnce(&str) + Send>;

/// A response body that records its call's status when the trailers pass, or `Canceled` if it
/// is dropped before them (the client went away).
struct CountedBody {
    inner: Body,
    record: Option<Record>,
}

impl HttpBody for CountedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref() {
                    let code = status_code(trailers).unwrap_or("Unknown");
                    if let Some(record) = self.record.take() {
                        record(code);
                    }
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(record) = self.record.take() {
                    record("Internal");
                }
            }
            Poll::Ready(None) => {
                if let Some(record) = self.record.take() {
                    record("Unknown");
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for CountedBody {
    fn drop(&mut self) {
        if let Some(record) = self.record.take() {
            record("Canceled");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_paths_and_status_codes() {
        assert_eq!(known_method("/etcdserverpb.KV/Range"), Some(("etcdserverpb.KV", "Range")));
        assert_eq!(known_method("/etcdserverpb.KV/Nope"), None);
        assert_eq!(known_method("/x.Y/Range"), None);
        assert_eq!(known_method("etcdserverpb.KV/Range"), None);
        assert_eq!(grpc_type("Watch"), "bidi_stream");
        assert_eq!(grpc_type("Snapshot"), "server_stream");
        let mut h = HeaderMap::new();
        h.insert("grpc-status", axum::http::HeaderValue::from_static("5"));
        assert_eq!(status_code(&h), Some("NotFound"));
        h.insert("grpc-status", axum::http::HeaderValue::from_static("99"));
        assert_eq!(status_code(&h), Some("Unknown"));
    }
}
