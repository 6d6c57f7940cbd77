//! Per-prefix quotas over HTTP+JSON on the client port (Cairn's own API; etcd has none), and the
//! client `cairn quota` uses:
//!
//! - `GET /cairn/v1/quotas`: every quota with the usage under it, as this member applied them.
//! - `PUT /cairn/v1/quotas` with `{"prefix": "/registry/events/", "bytes_max": 1000000,
//!   "keys_max": 5000}` (0 or absent: no bound on that measure): sets or replaces a quota,
//!   through the log; answers the quotas after it.
//! - `DELETE /cairn/v1/quotas` with `{"prefix": "..."}`: removes one; 404 if there is none.
//!
//! Answers are `{"quotas": [{"prefix", "bytes_max", "keys_max", "bytes", "keys"}]}`; errors
//! are `{"error": "..."}` with 400 (bad request), 404 (no such quota), 503 (no leader, timed
//! out). Unknown fields are refused.

use axum::body::Bytes as Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use cairn_core::prefix_quota::{Limits, QuotaStatus};
use cairn_core::{Error, Request, ResponseBody};
use cairn_io_tokio::NodeHandle;
use serde::{Deserialize, Serialize};

pub const PATH: &str = "/cairn/v1/quotas";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SetQuota {
    prefix: String,
    #[serde(default)]
    bytes_max: u64,
    #[serde(default)]
    keys_max: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RemoveQuota {
    prefix: String,
}

/// One quota as the API shows it.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Quota {
    pub prefix: String,
    pub bytes_max: u64,
    pub keys_max: u64,
    pub bytes: u64,
    pub keys: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Quotas {
    pub quotas: Vec<Quota>,
}

pub fn routes(node: NodeHandle) -> Router {
    Router::new().route(PATH, get(list).put(set).delete(remove)).with_state(node)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": message.into() }))).into_response()
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Response> {
    serde_json::from_slice(body).map_err(|e| error(StatusCode::BAD_REQUEST, format!("a quota request: {e}")))
}

async fn answer(node: &NodeHandle, request: Request) -> Response {
    match node.request(request).await {
        Ok(r) => match r.body {
            ResponseBody::PrefixQuotas(q) => {
                Json(Quotas { quotas: q.iter().map(shown).collect() }).into_response()
            }
            other => error(StatusCode::INTERNAL_SERVER_ERROR, format!("cairn: unexpected answer {other:?}")),
        },
        Err(e @ Error::QuotaNotFound) => error(StatusCode::NOT_FOUND, e.to_string()),
        Err(e @ Error::InvalidQuota(_)) => error(StatusCode::BAD_REQUEST, e.to_string()),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

fn shown(q: &QuotaStatus) -> Quota {
    Quota {
        prefix: String::from_utf8_lossy(&q.prefix).into_owned(),
        bytes_max: q.limits.bytes_max,
        keys_max: q.limits.keys_max,
        bytes: q.usage.bytes,
        keys: q.usage.keys,
    }
}

async fn list(State(node): State<NodeHandle>) -> Response {
    answer(&node, Request::PrefixQuotaList).await
}

async fn set(State(node): State<NodeHandle>, body: Body) -> Response {
    let q: SetQuota = match parse(&body) {
        Ok(q) => q,
        Err(r) => return r,
    };
    let limits = Limits { bytes_max: q.bytes_max, keys_max: q.keys_max };
    answer(&node, Request::PrefixQuotaSet { prefix: q.prefix.into(), limits }).await
}

async fn remove(State(node): State<NodeHandle>, body: Body) -> Response {
    let q: RemoveQuota = match parse(&body) {
        Ok(q) => q,
        Err(r) => return r,
    };
    answer(&node, Request::PrefixQuotaRemove { prefix: q.prefix.into() }).await
}
