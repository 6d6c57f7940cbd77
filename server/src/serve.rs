//! The client port's HTTP server: HTTP/1.1 and HTTP/2 on one listener (gRPC, the v3 JSON
//! gateway, the v2 keys API), hyper's connection machinery with Cairn's HTTP/2 windows.
//!
//! Why not `axum::serve`: it offers no HTTP/2 settings, and hyper's defaults (a 1 MiB window
//! for each stream and for the connection) let a client that multiplexes watches (thousands of
//! small creates sent without waiting for replies, as etcd's clients do) fill a stream's window
//! with frames so small that h2's guard against framing floods, sized from the connection
//! window, closes the whole connection (GOAWAY `too_many_data_frames`). A stream window of
//! `STREAM_WINDOW_BYTES` (grpc-go's default, which etcd runs with) against a connection window
//! of `CONNECTION_WINDOW_BYTES` keeps what one stream can have in flight well inside that
//! guard, and bounds what a client can make the member buffer per connection.

use std::future::Future;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;

use std::sync::Arc;

use crate::authority::{ClientListener, FixAuthority};
use crate::credentials::ClientCommonName;

/// Bytes a client may send on one HTTP/2 stream ahead of the member reading them.
pub const STREAM_WINDOW_BYTES: u32 = 64 * 1024;
/// Bytes a client may send on one connection, all streams together, ahead of the member.
pub const CONNECTION_WINDOW_BYTES: u32 = 4 * 1024 * 1024;
/// An HTTP/1 client must send a request's whole header within this long, or the connection is
/// closed: a slowloris client cannot hold a connection by trickling a header.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// HTTP/2 connections are pinged after this long without traffic, and closed when a ping goes
/// unanswered for `KEEPALIVE_TIMEOUT`: a peer that vanished does not keep its connection open.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(60);
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// The least time between two log lines about client connections that ended in an error.
pub const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Client connections that ended in an error: counted, logged at most once per interval with the
/// count since the last line and the latest error.
struct ErrorLog {
    what: &'static str,
    state: std::sync::Mutex<(Option<std::time::Instant>, u64)>,
}

impl ErrorLog {
    fn new(what: &'static str) -> ErrorLog {
        ErrorLog { what, state: Default::default() }
    }

    fn note(&self, error: &str) {
        let Ok(mut st) = self.state.lock() else { return };
        st.1 += 1;
        let now = std::time::Instant::now();
        if st.0.is_some_and(|last| now.duration_since(last) < ERROR_LOG_INTERVAL) {
            return;
        }
        let count = std::mem::take(&mut st.1);
        st.0 = Some(now);
        drop(st);
        tracing::warn!(connections = count, latest = error, "{} (logged at most once per 10 s)", self.what);
    }
}

/// How long connections get to finish after shutdown begins.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How long a client has to complete its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// TLS on a client listener.
#[derive(Clone)]
pub struct ClientTls {
    pub acceptor: tokio_rustls::TlsAcceptor,
    /// A verified client certificate's Common Name is the user of the connection's requests
    /// that carry no token (`--client-cert-auth`, as etcd has it).
    pub common_name_is_user: bool,
}

/// Serves `router` on every connection `listener` accepts (over TLS with `tls`) until
/// `shutdown` completes, then lets open connections finish (at most `SHUTDOWN_GRACE`).
pub async fn serve(
    mut listener: ClientListener,
    router: axum::Router,
    tls: Option<ClientTls>,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
    builder
        .http2()
        .timer(TokioTimer::new())
        .initial_stream_window_size(STREAM_WINDOW_BYTES)
        .initial_connection_window_size(CONNECTION_WINDOW_BYTES)
        .keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let errors = Arc::new(ErrorLog::new("client connections ended in an error"));
    let refused = Arc::new(ErrorLog::new("TLS handshakes failed; connections closed"));
    tokio::pin!(shutdown);
    loop {
        let (tcp, addr, slot) = tokio::select! {
            accepted = listener.accept_counted() => accepted,
            _ = &mut shutdown => break,
        };
        let (builder, watcher, errors) = (builder.clone(), graceful.watcher(), errors.clone());
        match &tls {
            None => {
                let service = with_identity(router.clone(), None);
                tokio::spawn(run(builder, FixAuthority::with_slot(tcp, slot), service, watcher, errors));
            }
            Some(ClientTls { acceptor, common_name_is_user }) => {
                let (acceptor, refused, router) = (acceptor.clone(), refused.clone(), router.clone());
                let common_name_is_user = *common_name_is_user;
                tokio::spawn(async move {
                    // The handshake runs in the connection's own task: a slow client holds up
                    // only itself.
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            // Verified by the handshake (with --client-cert-auth): the user, for
                            // requests without a token (see `credentials`).
                            let cn = common_name_is_user
                                .then(|| stream.get_ref().1.peer_certificates())
                                .flatten()
                                .and_then(|certs| certs.first())
                                .and_then(|cert| crate::credentials::common_name(cert))
                                .map(ClientCommonName);
                            let service = with_identity(router, cn);
                            run(builder, FixAuthority::with_slot(stream, slot), service, watcher, errors)
                                .await
                        }
                        Ok(Err(e)) => refused.note(&format!("{addr}: {e}")),
                        Err(_) => {
                            refused.note(&format!("{addr}: no TLS handshake within {HANDSHAKE_TIMEOUT:?}"))
                        }
                    }
                });
            }
        }
    }
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await;
}

type Request = axum::http::Request<hyper::body::Incoming>;

/// The router, with each request carrying the connection's client certificate name.
fn with_identity(
    router: axum::Router,
    cn: Option<ClientCommonName>,
) -> TowerToHyperService<
    impl tower::Service<
            Request,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + 'static,
> {
    use tower::ServiceExt;
    TowerToHyperService::new(router.map_request(move |mut req: Request| {
        if let Some(cn) = &cn {
            req.extensions_mut().insert(cn.clone());
        }
        req
    }))
}

/// One client connection, to its end.
async fn run<I, S>(
    builder: Builder<TokioExecutor>,
    io: I,
    service: TowerToHyperService<S>,
    watcher: hyper_util::server::graceful::Watcher,
    errors: Arc<ErrorLog>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: tower::Service<Request, Response = axum::response::Response, Error = std::convert::Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service).into_owned();
    // A connection ending in an error is mostly the client's business (it went away, or sent
    // what HTTP forbids: a reset flood, a malformed frame); hyper has answered what can be
    // answered. Outsiders can cause these as fast as they connect, so they are counted and
    // logged at most once per `ERROR_LOG_INTERVAL`.
    if let Err(e) = watcher.watch(connection).await {
        errors.note(&e.to_string());
    }
}
