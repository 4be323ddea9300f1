//! What every HTTP server here shares, so that none of them can be held, flooded or crashed by a
//! client: a body size limit (413), a request timeout (503), caps on requests in flight and on
//! open connections, a header-read timeout (also for silent and idle connections), panics
//! answered 500, and a graceful stop on SIGTERM or Ctrl-C.
//!
//! ```no_run
//! # async fn f() -> std::io::Result<()> {
//! use axum::{Router, routing::get};
//! let app = server_kit::harden(Router::new().route("/", get(|| async { "hi" })), &server_kit::Limits::default(), server_kit::json_error);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! server_kit::serve(listener, app, &server_kit::Limits::default(), server_kit::shutdown_signal()).await
//! # }
//! ```

use axum::Router;
use axum::extract::{ConnectInfo, Request};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use tower::ServiceExt;

mod api_error;
mod body;
mod logging;
pub mod settings;
pub use api_error::ApiError;
pub use body::{BodyError, MAX_RESPONSE_BODY, read_body};
pub use logging::{filter_from, init_logging};

/// A server's limits.
#[derive(Debug, Clone)]
pub struct Limits {
    /// The largest request body (default 64 KiB); larger is 413.
    pub body_bytes: usize,
    /// The longest a request may take, waiting for a slot included (default 30 s); longer is
    /// 503 (not 408: the server, not the client, was slow, and clients retry a 408 at once).
    pub request_timeout: Duration,
    /// Requests handled at once (default 256); more wait for a slot, within their timeout.
    pub concurrency: usize,
    /// Connections open at once (default 1024); more wait to be accepted, so that clients that
    /// hold connections cannot exhaust the process's file descriptors.
    pub connections: usize,
    /// The longest a client may take to send its request headers, from when it connects or its
    /// previous response was sent (default 10 s): a silent or idle connection is then closed.
    pub header_read_timeout: Duration,
    /// How long a stop waits for requests in flight (default 10 s).
    pub drain: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            body_bytes: 64 * 1024,
            request_timeout: Duration::from_secs(30),
            concurrency: 256,
            connections: 1024,
            header_read_timeout: Duration::from_secs(10),
            drain: Duration::from_secs(10),
        }
    }
}

/// Builds a service's own error answer (its JSON shape) for `status` and a message.
pub type ErrorAnswer = fn(StatusCode, &str) -> Response;

/// The default error answer: `{"error": <reason phrase>, "message": …}`.
pub fn json_error(status: StatusCode, message: &str) -> Response {
    ApiError::status_only(status, message).into_response()
}

/// `router` with the limits, and panics answered 500 by `error` (logged, never a dropped
/// connection). A 413 or a timeout's 503 from the limits is answered by `error` too.
pub fn harden(router: Router, limits: &Limits, error: ErrorAnswer) -> Router {
    let body_limit = limits.body_bytes;
    // Each `layer` wraps the ones before it: the error rewrite sees what the limits answer.
    router
        .layer(tower_http::limit::RequestBodyLimitLayer::new(
            limits.body_bytes,
        ))
        .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
            limits.concurrency,
        ))
        // Outside the limit: the wait for a slot counts against the request's time.
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            limits.request_timeout,
        ))
        .layer(axum::middleware::map_response(move |resp: Response| {
            answer_bare_errors(resp, error, body_limit)
        }))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            move |_panic: Box<dyn std::any::Any + Send + 'static>| {
                tracing::error!("a request handler panicked; answered 500");
                error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error: the request could not be completed",
                )
            },
        ))
}

/// The limit layers answer 413 and 503 with plain text or nothing; the service answers JSON.
async fn answer_bare_errors(resp: Response, error: ErrorAnswer, body_limit: usize) -> Response {
    let content_type = resp.headers().get(header::CONTENT_TYPE);
    let is_json = content_type.is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    // The timeout's 503 has no body and no type; a service's own 503 (an emulated STS answers
    // XML) is left as it is.
    let bare = content_type.is_none();
    match resp.status() {
        StatusCode::PAYLOAD_TOO_LARGE if !is_json => error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("the request body is larger than {body_limit} bytes"),
        ),
        StatusCode::SERVICE_UNAVAILABLE if bare => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the request took too long and was abandoned; retry later",
        ),
        _ => resp,
    }
}

/// Resolves on SIGTERM (a container stop) or Ctrl-C. The handlers are installed when this is
/// called, not when the future is first polled: call it before announcing readiness, so that a
/// stop that follows at once is not the default action (death by signal).
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        let wait = |s: std::io::Result<tokio::signal::unix::Signal>, name: &'static str| async move {
            match s {
                Ok(mut s) => {
                    s.recv().await;
                    name
                }
                Err(e) => {
                    tracing::warn!(error = %e, signal = name, "cannot listen for the signal");
                    std::future::pending().await
                }
            }
        };
        let name = tokio::select! {
            n = wait(term, "SIGTERM") => n,
            n = wait(int, "Ctrl-C") => n,
        };
        tracing::info!(signal = name, "stopping");
    }
}

/// Serves `app` on `listener` until `shutdown` resolves; then stops accepting, lets requests in
/// flight finish (at most `limits.drain`), and returns. Each request carries the peer address
/// as `ConnectInfo<SocketAddr>`; a client that does not send its headers within
/// `limits.header_read_timeout` is disconnected.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: &Limits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    // HTTP/1 only (every client here speaks it): no protocol sniffing, which would wait for
    // bytes without a timer, and the header-read timeout runs from the first moment.
    let mut builder = Builder::new(TokioExecutor::new()).http1_only();
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let open = std::sync::Arc::new(tokio::sync::Semaphore::new(limits.connections.max(1)));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = open.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            _ = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: pause instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        // Answers are small and written whole: Nagle's algorithm would only hold the last
        // segment back for the peer's delayed ACK (a 40 ms stall).
        let _ = stream.set_nodelay(true);
        let service = app
            .clone()
            .map_request(move |mut req: Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                req
            });
        let conn = builder
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    tracing::info!("no longer accepting; finishing the requests in flight");
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("all requests finished"),
        _ = tokio::time::sleep(limits.drain) => tracing::warn!(drain_s = limits.drain.as_secs(), "requests still in flight after the drain time; stopping anyway"),
    }
    Ok(())
}

/// The address as the peer saw it, for logs (`ConnectInfo` is set by [`serve`]).
pub fn peer_of(req: &Request) -> Option<SocketAddr> {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
}

#[cfg(test)]
mod tests;
