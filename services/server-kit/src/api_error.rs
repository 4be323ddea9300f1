//! The error answer of the services' JSON APIs: `{"error": …, "message": …}` with its status, and
//! for a 401 the `WWW-Authenticate` challenge. Handlers return `Result<_, ApiError>`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::borrow::Cow;

/// An error answer: the status, a short label (`error`), the detail (`message`), and for a 401
/// the challenge.
///
/// ```
/// use axum::http::StatusCode;
/// use axum::response::IntoResponse;
/// let answer = server_kit::ApiError::new(StatusCode::BAD_REQUEST, "Invalid city", "city must be letters")
///     .into_response();
/// assert_eq!(answer.status(), StatusCode::BAD_REQUEST);
/// ```
#[derive(Debug, Clone)]
pub struct ApiError {
    status: StatusCode,
    error: Cow<'static, str>,
    message: String,
    challenge: Option<String>,
}

impl ApiError {
    /// `status` with the label `error` and the detail `message`.
    pub fn new(
        status: StatusCode,
        error: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            error: error.into(),
            message: message.into(),
            challenge: None,
        }
    }

    /// `status` labelled with its reason phrase.
    pub fn status_only(status: StatusCode, message: impl Into<String>) -> Self {
        Self::new(
            status,
            status.canonical_reason().unwrap_or("Error"),
            message,
        )
    }

    /// Adds the `WWW-Authenticate` challenge (for a 401).
    pub fn with_challenge(mut self, challenge: impl Into<String>) -> Self {
        self.challenge = Some(challenge.into());
        self
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": self.error, "message": self.message});
        let mut answer = (self.status, axum::Json(body)).into_response();
        if let Some(challenge) = self.challenge {
            answer.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_str(&challenge).unwrap_or(HeaderValue::from_static("Bearer")),
            );
        }
        answer
    }
}
