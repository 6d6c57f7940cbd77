//! The etcd v3 gRPC API: services KV, Watch, Lease, Cluster and Maintenance, wire-compatible
//! with etcd 3.4 (`etcdctl` and etcd client libraries work unchanged), served from a member's
//! `MemberHandle`.
//!
//! Each service translates requests with `convert`, sends them through the member, and
//! answers with etcd's response types, headers and error statuses (`error`). No request
//! handler panics on input: malformed input is an error status.

use std::sync::Arc;

use cairn_core::{Header, Request, Response};
use cairn_io_tokio::MemberHandle;
use tonic::Status;

use crate::credentials::{self, ClientCommonName};
use crate::info::ServerInfo;
use cairn_core::auth::AuthInfo;

pub mod convert;
pub mod error;
pub mod watch;

pub(crate) mod auth;
pub(crate) mod cluster;
pub mod codec;
pub(crate) mod kv;
pub(crate) mod lease;
pub(crate) mod maintenance;

/// The code generated from `proto/etcd` (Cairn's own definition of etcd's wire format), with
/// serde impls in protobuf's JSON mapping for the v3 JSON gateway (`crate::gateway`).
pub mod pb {
    pub mod mvccpb {
        tonic::include_proto!("mvccpb");
        include!(concat!(env!("OUT_DIR"), "/mvccpb.serde.rs"));
    }
    pub mod etcdserverpb {
        tonic::include_proto!("etcdserverpb");
        include!(concat!(env!("OUT_DIR"), "/etcdserverpb.serde.rs"));
    }
}

use pb::etcdserverpb::auth_server::AuthServer;
use pb::etcdserverpb::cluster_server::ClusterServer;
use pb::etcdserverpb::kv_server::KvServer;
use pb::etcdserverpb::lease_server::LeaseServer;
use pb::etcdserverpb::maintenance_server::MaintenanceServer;
use pb::etcdserverpb::watch_server::WatchServer;

/// Room for gRPC framing and message overhead above `--max-request-bytes`, as etcd allows
/// (`grpcOverheadBytes` in etcd's embed config). A request between the two limits reaches the
/// core and fails with etcd's "etcdserver: request is too large"; beyond, tonic refuses it
/// with RESOURCE_EXHAUSTED before decoding.
pub const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;

/// All six services, ready to be served (for instance with `into_axum_router`).
pub fn routes(node: MemberHandle, info: Arc<ServerInfo>) -> tonic::service::Routes {
    let limit = info.max_request_bytes.saturating_add(GRPC_OVERHEAD_BYTES);
    let ctx = Ctx { node, info };
    tonic::service::Routes::new(
        KvServer::new(kv::KvService::new(ctx.clone())).max_decoding_message_size(limit),
    )
    .add_service(
        WatchServer::new(watch::WatchService::new(ctx.clone(), watch::PROGRESS_NOTIFY_INTERVAL))
            .max_decoding_message_size(limit),
    )
    .add_service(LeaseServer::new(lease::LeaseService::new(ctx.clone())).max_decoding_message_size(limit))
    .add_service(
        ClusterServer::new(cluster::ClusterService::new(ctx.clone())).max_decoding_message_size(limit),
    )
    .add_service(
        MaintenanceServer::new(maintenance::MaintenanceService::new(ctx.clone()))
            .max_decoding_message_size(limit),
    )
    .add_service(AuthServer::new(auth::AuthService::new(ctx)).max_decoding_message_size(limit))
}

/// The gRPC services as an axum router whose paths answer only gRPC calls: anything else sent
/// to `/etcdserverpb.KV/...` gets `not_found`, as etcd answers it.
pub fn grpc_router(node: MemberHandle, info: Arc<ServerInfo>) -> axum::Router {
    routes(node, info).into_axum_router().layer(axum::middleware::from_fn(
        |req: axum::extract::Request, next: axum::middleware::Next| async move {
            if is_grpc(&req) {
                let mut response = next.run(req).await;
                tonic_refusals_as_etcd_answers(response.headers_mut());
                response
            } else {
                not_found(req).await
            }
        },
    ))
}

/// A tonic refusal answered as etcd (grpc-go) answers it, since clients act on code and text:
/// a request over the size limit, tonic's OUT_OF_RANGE "Error, decoded message length too
/// large: found N bytes, the limit is: M bytes", becomes RESOURCE_EXHAUSTED "grpc: received
/// message larger than max (N vs. M)". Only unary calls' errors can be rewritten: their status
/// travels in the response headers; a response without `grpc-status` there (a success, a
/// stream) is left at once. (A txn nested too deep is refused by the decoder itself, with
/// etcd's answer: `codec`.)
fn tonic_refusals_as_etcd_answers(headers: &mut axum::http::HeaderMap) {
    const TOO_LARGE: &str = "Error, decoded message length too large: found ";
    let Some(status) = headers.get("grpc-status").map(|v| v.as_bytes().to_vec()) else { return };
    if status != b"11" {
        return;
    }
    let Some(message) = headers.get("grpc-message").and_then(|v| v.to_str().ok()) else { return };
    let message = message.replace("%20", " ").replace("%3A", ":").replace("%2C", ",");
    let Some(rest) = message.strip_prefix(TOO_LARGE) else { return };
    let numbers: Vec<&str> = rest.split(|c: char| !c.is_ascii_digit()).filter(|s| !s.is_empty()).collect();
    let [found, limit] = numbers[..] else { return };
    let text = format!("grpc: received message larger than max ({found} vs. {limit})");
    if let Ok(v) = axum::http::HeaderValue::from_str(&text) {
        headers.insert("grpc-status", axum::http::HeaderValue::from_static("8"));
        headers.insert("grpc-message", v);
    }
}

pub fn is_grpc<B>(req: &axum::http::Request<B>) -> bool {
    req.headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/grpc"))
}

/// What answers a path nothing else serves: a gRPC call (content type `application/grpc...`)
/// gets UNIMPLEMENTED naming the method, as grpc-go's server answers; anything else gets
/// etcd's plain 404 (Go's `http.NotFound`).
pub async fn not_found(req: axum::extract::Request) -> axum::response::Response {
    use axum::response::IntoResponse;
    if is_grpc(&req) {
        let path = req.uri().path();
        let status = Status::unimplemented(format!("unknown method {path} (Cairn serves etcd 3.4's v3 API)"));
        return status.into_http::<axum::body::Body>().into_response();
    }
    (
        axum::http::StatusCode::NOT_FOUND,
        [
            (axum::http::header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (axum::http::header::HeaderName::from_static("x-content-type-options"), "nosniff"),
        ],
        "404 page not found\n",
    )
        .into_response()
}

/// What every service needs: the member, and who it is.
#[derive(Clone)]
pub(crate) struct Ctx {
    pub(crate) node: MemberHandle,
    pub(crate) info: Arc<ServerInfo>,
}

impl Ctx {
    /// The response header for an answer with the core's `header`, or, for `None`, for an
    /// answer given now from the member's status.
    pub(crate) fn header(&self, header: Option<Header>) -> Option<pb::etcdserverpb::ResponseHeader> {
        Some(self.node.with_status(|st| convert::header(&self.info, st, header)))
    }

    /// Every member, as this member has applied the configuration.
    pub(crate) fn members(&self) -> Vec<crate::info::MemberInfo> {
        self.node.with_status(|st| crate::info::members(&self.info, st))
    }

    /// Sends a request through the member for `who` (see `who`); a failure becomes etcd's
    /// status for it.
    pub(crate) async fn request(&self, who: Option<AuthInfo>, request: Request) -> Result<Response, Status> {
        self.node.request_as(who, request).await.map_err(|e| error::status(&e))
    }

    /// Who sent `req`: its token (metadata `token`, as etcd's clients send it, or
    /// `authorization`, as the JSON gateway passes it on), else its client certificate's Common
    /// Name, else nobody (see `credentials`). A bad or expired token is refused here.
    pub(crate) fn who<T>(&self, req: &tonic::Request<T>) -> Result<Option<AuthInfo>, Status> {
        let md = req.metadata();
        let token = md.get("token").or_else(|| md.get("authorization")).and_then(|v| v.to_str().ok());
        let cn = req.extensions().get::<ClientCommonName>();
        self.node.with_status(|st| credentials::identify(&st.auth, token, cn)).map_err(|e| error::status(&e))
    }

    /// Refuses anyone but a user with the root role while authentication is on (maintenance
    /// served by the front end alone: defragment, hashes).
    pub(crate) fn require_root<T>(&self, req: &tonic::Request<T>) -> Result<(), Status> {
        let who = self.who(req)?;
        self.node.with_status(|st| match (st.auth.is_enabled(), who) {
            (false, _) => Ok(()),
            (true, None) => Err(error::status(&cairn_core::Error::UserEmpty)),
            (true, Some(who)) => {
                st.auth.check(&who, &[cairn_core::auth::Access::Admin]).map_err(|e| error::status(&e))
            }
        })
    }
}
