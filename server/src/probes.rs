//! `/livez` and `/readyz`, as etcd 3.5.11+ and 3.6 serve them (Kubernetes' health-check
//! conventions): each runs named checks; 200 with `ok` when all pass, 503 listing them when one
//! fails; `?verbose` lists them either way, `?exclude=<name>` skips one (repeatable).
//!
//! - livez: `serializable_read` (the member answers a read from its own state: it is not stuck).
//! - readyz: `data_corruption` (no CORRUPT alarm is up),
//!   `serializable_read`, `linearizable_read` (a read through the leader's ReadIndex: the member
//!   is in a cluster with a quorum, and caught up).

use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use cairn_core::kv::RangeRequest;
use cairn_core::Request;
use cairn_io_tokio::MemberHandle;

/// How long a probe's read may take before the check fails.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// The probe routes, served from `node`.
pub fn routes(node: MemberHandle) -> Router {
    Router::new().route("/livez", get(livez)).route("/readyz", get(readyz)).with_state(node)
}

fn no_corruption_alarm(node: &MemberHandle) -> Result<(), String> {
    let corrupt =
        node.with_status(|s| s.alarms.iter().any(|a| a.kind == cairn_core::alarm::AlarmKind::Corrupt));
    if corrupt {
        Err("a CORRUPT alarm is up".into())
    } else {
        Ok(())
    }
}

async fn livez(State(node): State<MemberHandle>, Query(q): Query<Vec<(String, String)>>) -> Response {
    let checks = [("serializable_read", read(&node, true).await)];
    answer("livez", &checks, &q)
}

async fn readyz(State(node): State<MemberHandle>, Query(q): Query<Vec<(String, String)>>) -> Response {
    let checks = [
        ("data_corruption", no_corruption_alarm(&node)),
        ("serializable_read", read(&node, true).await),
        ("linearizable_read", read(&node, false).await),
    ];
    answer("readyz", &checks, &q)
}

/// A range of one key that need not exist, from local state or through ReadIndex.
async fn read(node: &MemberHandle, serializable: bool) -> Result<(), String> {
    let request =
        Request::Range(RangeRequest { key: "health".into(), serializable, limit: 1, ..Default::default() });
    // As the member itself: with auth on, a probe has no credentials, and must still go
    // through ReadIndex to prove a quorum.
    match tokio::time::timeout(CHECK_TIMEOUT, node.request_as_member(request)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {CHECK_TIMEOUT:?}")),
    }
}

fn answer(probe: &str, checks: &[(&str, Result<(), String>)], query: &[(String, String)]) -> Response {
    let verbose = query.iter().any(|(k, _)| k == "verbose");
    let excluded = |name: &str| query.iter().any(|(k, v)| k == "exclude" && v == name);
    let mut lines = String::new();
    let mut failed = false;
    for (name, result) in checks {
        if excluded(name) {
            lines += &format!("[+]{name} excluded: ok\n");
            continue;
        }
        match result {
            Ok(()) => lines += &format!("[+]{name} ok\n"),
            Err(why) => {
                failed = true;
                lines += &format!("[-]{name} failed: {why}\n");
            }
        }
    }
    let ct = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];
    if failed {
        return (StatusCode::SERVICE_UNAVAILABLE, ct, format!("{lines}{probe} check failed\n"))
            .into_response();
    }
    if verbose {
        return (StatusCode::OK, ct, format!("{lines}{probe} check passed\n")).into_response();
    }
    (StatusCode::OK, ct, "ok".to_string()).into_response()
}
