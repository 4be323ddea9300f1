//! The container-credentials endpoint: what SDKs read from `AWS_CONTAINER_CREDENTIALS_FULL_URI`,
//! authorised with the value of `AWS_CONTAINER_AUTHORIZATION_TOKEN` (or the file named by
//! `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`). One STS session then serves every process in the
//! container group; the provider refreshes in the background and serves the last good
//! credentials through an outage while they are valid.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use entra_federation::EntraCredentialsProvider;
use entra_federation::error::DisplayChain;
use std::path::PathBuf;
use std::sync::Arc;

/// Where the expected authorization token comes from.
#[derive(Clone)]
pub enum AuthToken {
    /// A fixed value.
    Value(String),
    /// A file, re-read on every request (so it can be rotated).
    File(PathBuf),
}

impl std::fmt::Debug for AuthToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Value(_) => f.write_str("AuthToken::Value(redacted)"),
            Self::File(p) => write!(f, "AuthToken::File({})", p.display()),
        }
    }
}

impl AuthToken {
    fn expected(&self) -> Option<String> {
        match self {
            Self::Value(v) => Some(v.clone()),
            Self::File(p) => std::fs::read_to_string(p)
                .ok()
                .map(|s| s.trim().to_string()),
        }
        .filter(|v| !v.is_empty())
    }
}

struct App {
    provider: EntraCredentialsProvider,
    auth: AuthToken,
}

/// The endpoint's router: any `GET` path answers with the credentials.
pub fn router(provider: EntraCredentialsProvider, auth: AuthToken) -> axum::Router {
    let app = Arc::new(App { provider, auth });
    let app = axum::Router::new().fallback(credentials).with_state(app);
    server_kit::harden(app, &server_kit::Limits::default(), limit_error)
        // Credentials (and refusals) must never be kept by anything in between.
        .layer(axum::middleware::map_response(|mut r: Response| async {
            r.headers_mut().insert(
                axum::http::header::CACHE_CONTROL,
                axum::http::HeaderValue::from_static("no-store"),
            );
            r
        }))
}

/// Errors from the server's limits (413, a timeout's 503, a panic's 500) in the endpoint's error shape.
fn limit_error(status: StatusCode, message: &str) -> Response {
    error(
        status,
        status.canonical_reason().unwrap_or("Error"),
        message,
    )
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(serde_json::json!({"Code": code, "Message": message})),
    )
        .into_response()
}

async fn credentials(
    State(app): State<Arc<App>>,
    method: axum::http::Method,
    headers: HeaderMap,
) -> Response {
    if method != axum::http::Method::GET {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "use GET",
        );
    }
    let Some(expected) = app.auth.expected() else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Misconfigured",
            "the authorization token file cannot be read",
        );
    };
    if !authorized(&headers, &expected) {
        tracing::warn!("refused a credentials request without the right authorization token");
        return error(
            StatusCode::UNAUTHORIZED,
            "AccessDenied",
            "the Authorization header does not carry the container authorization token",
        );
    }
    // The library's typed error: its message names the hop, the code and the fix (the SDK trait's
    // error would only say "an error occurred while loading credentials").
    match app.provider.credentials().await {
        Ok(c) => match credentials_body(&c) {
            Ok(body) => Json(body).into_response(),
            Err(why) => {
                tracing::error!(error = why, "no credentials to serve");
                error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "CredentialsUnavailable",
                    why,
                )
            }
        },
        Err(e) => {
            let text = DisplayChain(&*e).to_string();
            tracing::error!(error = %text, "no credentials to serve");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "CredentialsUnavailable",
                &text,
            )
        }
    }
}

/// Whether the request's `Authorization` header is exactly the expected token.
pub(crate) fn authorized(headers: &HeaderMap, expected: &str) -> bool {
    let presented = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    constant_time_eq(presented.as_bytes(), expected.as_bytes())
}

/// The answer SDKs read, or why these credentials cannot be served.
pub(crate) fn credentials_body(
    c: &aws_credential_types::Credentials,
) -> Result<serde_json::Value, &'static str> {
    let (Some(token), Some(expiry)) = (c.session_token(), c.expiry()) else {
        return Err("incomplete credentials");
    };
    // `AccountId` is read by aws-config's container provider (account-based endpoints).
    Ok(serde_json::json!({
        "AccessKeyId": c.access_key_id(),
        "SecretAccessKey": c.secret_access_key(),
        "Token": token,
        "Expiration": crate::iso8601(expiry),
        "AccountId": c.account_id().map(|a| a.as_str()),
    }))
}

/// Compares digests, so that neither the bytes nor the length of the token show in the timing.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let digest = |v: &[u8]| aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, v);
    aws_lc_rs::constant_time::verify_slices_are_equal(digest(a).as_ref(), digest(b).as_ref())
        .is_ok()
}
