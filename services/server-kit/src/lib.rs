//! What every HTTP server here shares, so that none of them can be held, flooded or crashed by a
//! client: a body size limit (413), a request timeout (408), a cap on requests in flight, a
//! header-read timeout, panics answered 500, and a graceful stop on SIGTERM or Ctrl-C.
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

/// A server's limits.
#[derive(Debug, Clone)]
pub struct Limits {
    /// The largest request body (default 64 KiB); larger is 413.
    pub body_bytes: usize,
    /// The longest a request may take (default 30 s); longer is 408.
    pub request_timeout: Duration,
    /// Requests handled at once (default 256); more wait for a slot.
    pub concurrency: usize,
    /// The longest a client may take to send its request headers (default 10 s); the
    /// connection is then closed.
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
            header_read_timeout: Duration::from_secs(10),
            drain: Duration::from_secs(10),
        }
    }
}

/// Builds a service's own error answer (its JSON shape) for `status` and a message.
pub type ErrorAnswer = fn(StatusCode, &str) -> Response;

/// The default error answer: `{"error": <reason phrase>, "message": …}`.
pub fn json_error(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({
        "error": status.canonical_reason().unwrap_or("Error"),
        "message": message,
    });
    (status, axum::Json(body)).into_response()
}

/// `router` with the limits, and panics answered 500 by `error` (logged, never a dropped
/// connection). A 413 or 408 from the limits is answered by `error` too.
pub fn harden(router: Router, limits: &Limits, error: ErrorAnswer) -> Router {
    let body_limit = limits.body_bytes;
    // Each `layer` wraps the ones before it: the error rewrite sees what the limits answer.
    router
        .layer(tower_http::limit::RequestBodyLimitLayer::new(
            limits.body_bytes,
        ))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            limits.request_timeout,
        ))
        .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
            limits.concurrency,
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

/// The limit layers answer 413 and 408 with plain text or nothing; the service answers JSON.
async fn answer_bare_errors(resp: Response, error: ErrorAnswer, body_limit: usize) -> Response {
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    match resp.status() {
        StatusCode::PAYLOAD_TOO_LARGE if !is_json => error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("the request body is larger than {body_limit} bytes"),
        ),
        StatusCode::REQUEST_TIMEOUT if !is_json => error(
            StatusCode::REQUEST_TIMEOUT,
            "the request took too long and was abandoned",
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
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
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
        let service = app
            .clone()
            .map_request(move |mut req: Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                req
            });
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(service))
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
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
