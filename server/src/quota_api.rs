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
//! out). Unknown fields are refused. With auth on, the root role is needed: a token from
//! Authenticate in the `Authorization` header, or a client certificate naming root; 401
//! without valid credentials, 403 without the role.

use axum::body::Bytes as Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use cairn_core::auth::AuthInfo;
use cairn_core::prefix_quota::{Limits, QuotaStatus};
use cairn_core::{Error, Request, ResponseBody};
use cairn_io_tokio::MemberHandle;
use serde::{Deserialize, Serialize};

use crate::credentials::{self, HttpCredentials};

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

pub fn routes(node: MemberHandle) -> Router {
    Router::new().route(PATH, get(list).put(set).delete(remove)).with_state(node)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": message.into() }))).into_response()
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Response> {
    serde_json::from_slice(body).map_err(|e| error(StatusCode::BAD_REQUEST, format!("a quota request: {e}")))
}

/// Who asks: a token in the `Authorization` header (from Authenticate, as the v3 gateway takes
/// it), else the client certificate's name (see `credentials`).
fn who(node: &MemberHandle, creds: &HttpCredentials) -> Result<Option<AuthInfo>, Response> {
    node.with_status(|st| credentials::identify(&st.auth, creds.token.as_deref(), creds.common_name.as_ref()))
        .map_err(|e| refused(&e))
}

/// An auth refusal: 401 without (valid, current) credentials, 403 without the root role.
fn refused(e: &Error) -> Response {
    match e {
        Error::PermissionDenied => error(StatusCode::FORBIDDEN, e.to_string()),
        _ => error(StatusCode::UNAUTHORIZED, e.to_string()),
    }
}

async fn answer(node: &MemberHandle, who: Result<Option<AuthInfo>, Response>, request: Request) -> Response {
    let who = match who {
        Ok(who) => who,
        Err(r) => return r,
    };
    match node.request_as(who, request).await {
        Ok(r) => match r.body {
            ResponseBody::PrefixQuotas(q) => {
                Json(Quotas { quotas: q.iter().map(shown).collect() }).into_response()
            }
            other => error(StatusCode::INTERNAL_SERVER_ERROR, format!("cairn: unexpected answer {other:?}")),
        },
        Err(e @ Error::QuotaNotFound) => error(StatusCode::NOT_FOUND, e.to_string()),
        Err(e @ Error::InvalidQuota(_)) => error(StatusCode::BAD_REQUEST, e.to_string()),
        Err(
            e @ (Error::PermissionDenied
            | Error::UserEmpty
            | Error::AuthOldRevision
            | Error::InvalidAuthToken),
        ) => refused(&e),
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

async fn list(State(node): State<MemberHandle>, creds: HttpCredentials) -> Response {
    let who = who(&node, &creds);
    answer(&node, who, Request::PrefixQuotaList).await
}

async fn set(State(node): State<MemberHandle>, creds: HttpCredentials, body: Body) -> Response {
    let who = who(&node, &creds);
    let q: SetQuota = match parse(&body) {
        Ok(q) => q,
        Err(r) => return r,
    };
    let limits = Limits { bytes_max: q.bytes_max, keys_max: q.keys_max };
    answer(&node, who, Request::PrefixQuotaSet { prefix: q.prefix.into(), limits }).await
}

async fn remove(State(node): State<MemberHandle>, creds: HttpCredentials, body: Body) -> Response {
    let who = who(&node, &creds);
    let q: RemoveQuota = match parse(&body) {
        Ok(q) => q,
        Err(r) => return r,
    };
    answer(&node, who, Request::PrefixQuotaRemove { prefix: q.prefix.into() }).await
}
