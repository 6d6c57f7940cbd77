//! etcd's CORS headers on the client port's HTTP API (v2 keys, the v3 JSON gateway, `/health`,
//! `/version`, and the 404 for anything else): every answer carries them, and a preflight
//! `OPTIONS` on any path is answered 200 with them and an empty body, as etcd 3.4 does with its
//! default `--cors` (`*`). gRPC calls are left alone (etcd serves them apart).

use axum::extract::Request;
use axum::http::header::{
    HeaderValue, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

const ALLOW_HEADERS: &str = "accept, content-type, authorization";
const ALLOW_METHODS: &str = "POST, GET, OPTIONS, PUT, DELETE";

/// Marks a response as one Go's HTTP server gives before any handler runs (a request it cannot
/// parse): etcd sends it without the CORS headers, and so does Cairn.
#[derive(Clone, Copy, Debug)]
pub struct BeforeHandlers;

/// The middleware: `router.layer(axum::middleware::from_fn(cors::layer))`.
pub async fn layer(req: Request, next: Next) -> Response {
    if crate::grpc::is_grpc(&req) {
        return next.run(req).await;
    }
    let mut response =
        if req.method() == Method::OPTIONS { StatusCode::OK.into_response() } else { next.run(req).await };
    if response.extensions().get::<BeforeHandlers>().is_some() {
        return response;
    }
    let headers = response.headers_mut();
    headers.insert(ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static(ALLOW_HEADERS));
    headers.insert(ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static(ALLOW_METHODS));
    headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    response
}
