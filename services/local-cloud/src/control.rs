//! Test hooks under `/_local/`: call counters, fault injection, key and header rotation,
//! projected tokens, and the registry in force.

use crate::identity::mint_projected_token;
use crate::state::{CloudState, Fault};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use std::sync::Arc;

/// The `/_local` routes, for callers on this machine only (see `same_machine_only`).
pub fn routes() -> Router<Arc<CloudState>> {
    Router::new()
        .route("/counters", get(counters).delete(reset_counters))
        .route("/faults", post(add_fault).delete(clear_faults))
        .route("/rotate-keys", post(rotate_keys))
        .route("/rotate-identity-header", post(rotate_identity_header))
        .route("/projected-token", post(projected_token))
        .route("/registry", get(registry))
        .layer(axum::middleware::from_fn(same_machine_only))
}

/// Keeps web pages in the developer's browser away from the control routes: the `Host` must be
/// a loopback name (a rebound DNS name is refused), and a POST must carry JSON, which a simple
/// cross-site request cannot send (other methods need a CORS preflight, which is never granted).
async fn same_machine_only(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let host = request
        .headers()
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    if !loopback_host(host) {
        return (
            StatusCode::FORBIDDEN,
            Json(serde_json::json!({"error": "forbidden", "message": "the control routes answer loopback hosts only"})),
        )
            .into_response();
    }
    let json = request
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if request.method() == axum::http::Method::POST && !json {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Json(serde_json::json!({"error": "unsupported_media_type", "message": "state changes take Content-Type: application/json"})),
        )
            .into_response();
    }
    next.run(request).await
}

/// `127.0.0.1`, `localhost` or `[::1]` (any 127/8 address), with or without a port.
fn loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

async fn counters(State(s): State<Arc<CloudState>>) -> Response {
    Json(s.counters()).into_response()
}

async fn reset_counters(State(s): State<Arc<CloudState>>) -> StatusCode {
    s.reset_counters();
    StatusCode::NO_CONTENT
}

async fn add_fault(State(s): State<Arc<CloudState>>, Json(f): Json<Fault>) -> StatusCode {
    s.inject(f);
    StatusCode::NO_CONTENT
}

async fn clear_faults(State(s): State<Arc<CloudState>>) -> StatusCode {
    s.clear_faults();
    StatusCode::NO_CONTENT
}

async fn rotate_keys(State(s): State<Arc<CloudState>>) -> Response {
    match s.rotate_tenant_keys() {
        Ok(kid) => Json(serde_json::json!({ "kid": kid })).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
    }
}

async fn rotate_identity_header(State(s): State<Arc<CloudState>>) -> Response {
    let new = crate::state::random_id(32);
    *s.identity_header.write().unwrap_or_else(|p| p.into_inner()) = new.clone();
    Json(serde_json::json!({"identity_header": new})).into_response()
}

#[derive(Deserialize)]
struct ProjectedRequest {
    #[serde(default = "default_ns")]
    namespace: String,
    #[serde(default = "default_sa")]
    service_account: String,
}

fn default_ns() -> String {
    "default".into()
}

fn default_sa() -> String {
    "workload-identity-sa".into()
}

async fn projected_token(
    State(s): State<Arc<CloudState>>,
    Json(r): Json<ProjectedRequest>,
) -> Response {
    match mint_projected_token(&s, &r.namespace, &r.service_account) {
        Ok(token) => Json(serde_json::json!({"token": token})).into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, e).into_response(),
    }
}

async fn registry(State(s): State<Arc<CloudState>>) -> Response {
    Json(s.registry().clone()).into_response()
}
