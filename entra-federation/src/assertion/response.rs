//! The token response shared by the managed-identity endpoints, and the retry loop around them.

use super::{Assertion, AssertionError};
use crate::clock::{Clock, expiry_at, expiry_in};
use crate::http::redacted_endpoint;
use crate::retry::{Backoff, Failure, Jitter, RetryPolicy, retry_after, with_retries};
use serde::Deserialize;
use std::time::Duration;

/// `expires_on` / `expires_in` arrive as JSON strings on App Service and IMDS, as numbers elsewhere
/// (Azure ML, some SDK fixtures): accept both.
#[derive(Deserialize)]
#[serde(untagged)]
enum NumberOrString {
    Number(u64),
    Text(String),
}

impl NumberOrString {
    fn as_u64(&self) -> Option<u64> {
        match self {
            Self::Number(n) => Some(*n),
            Self::Text(s) => s.trim().parse().ok(),
        }
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: Option<String>,
    expires_on: Option<NumberOrString>,
    expires_in: Option<NumberOrString>,
}

/// Parses a 200 body into an assertion. Expiry: `expires_on`, else now + `expires_in`, else the `exp` claim.
pub(crate) fn parse_token_response(
    source_kind: &'static str,
    body: &[u8],
    clock: &Clock,
) -> Result<Assertion, AssertionError> {
    let invalid = |detail: String| AssertionError::InvalidResponse {
        source_kind,
        detail,
        source: None,
    };
    let parsed: TokenResponse =
        serde_json::from_slice(body).map_err(|e| AssertionError::InvalidResponse {
            source_kind,
            detail: "not a JSON token response".into(),
            source: Some(crate::error::Cause::json(&e)),
        })?;
    let token = parsed
        .access_token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| invalid("no access_token in the response".into()))?;
    let expires_at = if let Some(on) = &parsed.expires_on {
        let secs = on.as_u64().ok_or_else(|| {
            invalid("expires_on is neither epoch seconds nor a number string".into())
        })?;
        expiry_at(clock.now(), secs)
    } else if let Some(within) = &parsed.expires_in {
        let secs = within
            .as_u64()
            .ok_or_else(|| invalid("expires_in is neither seconds nor a number string".into()))?;
        expiry_in(clock.now(), secs)
    } else {
        let a = Assertion::from_jwt(token)
            .map_err(|_| invalid("no expires_on, expires_in or exp claim".into()))?;
        return Ok(a);
    };
    Ok(Assertion::new(token, expires_at))
}

/// Retry rules of one endpoint.
#[derive(Debug, Clone, Copy)]
pub(super) struct RetryRules {
    pub backoff: Backoff,
    /// IMDS answers 404 while it is updating.
    pub retry_not_found: bool,
    /// IMDS answers 410 while updating; the documentation says it is back "within 70 seconds".
    pub gone_window: Option<Duration>,
}

/// The error body of either endpoint: IMDS uses `error`/`error_description`, App Service `statusCode`/`message`.
#[derive(Deserialize, Default)]
struct ErrorBody {
    error: Option<String>,
    error_description: Option<String>,
    message: Option<String>,
    #[serde(rename = "correlationId")]
    correlation_id: Option<String>,
}

/// GETs a token with the endpoint's retry rules; returns the body of the 2xx answer.
pub(super) async fn get_with_retries(
    source_kind: &'static str,
    request: impl Fn() -> reqwest::RequestBuilder,
    endpoint: &url::Url,
    rules: RetryRules,
    clock: &Clock,
    hint_for: impl Fn(u16, Option<&str>) -> &'static str,
) -> Result<Vec<u8>, AssertionError> {
    if let Some(reason) = crate::http::outside_runtime() {
        return Err(AssertionError::Transport {
            source_kind,
            endpoint: redacted_endpoint(endpoint),
            what: reason,
            source: None,
        });
    }
    let policy = RetryPolicy {
        hop: source_kind,
        backoff: rules.backoff,
        jitter: Jitter::default(),
        window: rules.gone_window,
    };
    with_retries(&policy, clock, || async {
        let resp = match request().send().await {
            Err(e) => {
                let (what, source) = crate::http::transport_failure(e);
                let err = AssertionError::Transport {
                    source_kind,
                    endpoint: redacted_endpoint(endpoint),
                    what,
                    source: Some(source),
                };
                return Err(Failure::new(err, true));
            }
            Ok(resp) => resp,
        };
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = crate::http::read_body(resp, crate::http::MAX_RESPONSE_BODY)
            .await
            .map_err(|e| {
                let err = match e {
                    crate::http::BodyError::Transport(cause) => AssertionError::Transport {
                        source_kind,
                        endpoint: redacted_endpoint(endpoint),
                        what: "the connection broke while the response was read",
                        source: Some(cause),
                    },
                    too_large => AssertionError::InvalidResponse {
                        source_kind,
                        detail: too_large.to_string(),
                        source: None,
                    },
                };
                Failure::new(err, false)
            })?;
        if (200..300).contains(&status) {
            return Ok(body);
        }
        let correlation_header = headers
            .get("x-correlation-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let err = rejection(source_kind, status, &body, correlation_header, &hint_for);
        let gone = status == 410 && rules.gone_window.is_some();
        Err(Failure {
            error: err,
            transient: status >= 500
                || status == 429
                || (status == 404 && rules.retry_not_found)
                || gone,
            retry_after: retry_after(&headers, clock.now(), Duration::from_secs(60)),
            keeps_trying: gone,
        })
    })
    .await
}

/// An error answer of a managed-identity endpoint: IMDS's OAuth shape (`error`,
/// `error_description`), App Service's (`statusCode`, `message`, `correlationId`), or any other
/// body (its first 300 characters).
pub(crate) fn rejection(
    source_kind: &'static str,
    status: u16,
    body: &[u8],
    correlation_header: Option<String>,
    hint_for: &impl Fn(u16, Option<&str>) -> &'static str,
) -> AssertionError {
    let parsed: ErrorBody = serde_json::from_slice(body).unwrap_or_default();
    let message = match parsed.error_description.or(parsed.message) {
        Some(m) => crate::http::upstream_text(&m, 500),
        None => crate::http::upstream_text(&String::from_utf8_lossy(body), 300),
    };
    let hint = hint_for(status, parsed.error.as_deref());
    AssertionError::Rejected {
        source_kind,
        status,
        code: parsed.error,
        message,
        correlation_id: parsed.correlation_id.or(correlation_header),
        hint,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Absurd expiries from the network are clamped, never an arithmetic panic.
    #[test]
    fn absurd_expiries_are_clamped_not_a_panic() {
        let clock = Clock::system();
        let now = clock.now();
        let max = now + crate::clock::MAX_LIFETIME + Duration::from_secs(5);
        for body in [
            format!(r#"{{"access_token":"x","expires_in":{}}}"#, u64::MAX),
            format!(r#"{{"access_token":"x","expires_in":"{}"}}"#, u64::MAX),
            r#"{"access_token":"x","expires_on":10000000000000000000}"#.to_string(),
            format!(r#"{{"access_token":"x","expires_on":"{}"}}"#, u64::MAX),
        ] {
            let a = parse_token_response("t", body.as_bytes(), &clock).expect(&body);
            assert!(
                a.expires_at() <= max,
                "{body}: clamped to the longest lifetime"
            );
        }
        // The same for a JWT's own exp (a caller-supplied or AKS token file assertion).
        let b64 = |v: serde_json::Value| {
            use base64::Engine;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        let jwt = format!(
            "{}.{}.sig",
            b64(serde_json::json!({"alg": "RS256"})),
            b64(serde_json::json!({"exp": 10_000_000_000_000_000_000u64}))
        );
        let a = crate::assertion::Assertion::from_jwt(jwt).expect("a readable JWT");
        assert!(
            a.expires_at()
                <= std::time::SystemTime::now()
                    + crate::clock::MAX_LIFETIME
                    + Duration::from_secs(5)
        );
    }

    #[test]
    fn accepts_string_and_number_expiries() {
        let clock = Clock::system();
        let a = parse_token_response(
            "t",
            br#"{"access_token":"x","expires_on":"1586984735"}"#,
            &clock,
        )
        .unwrap();
        assert_eq!(crate::clock::unix_seconds(a.expires_at()), 1586984735);
        let a = parse_token_response(
            "t",
            br#"{"access_token":"x","expires_on":1586984735}"#,
            &clock,
        )
        .unwrap();
        assert_eq!(crate::clock::unix_seconds(a.expires_at()), 1586984735);
        let now = clock.unix_seconds();
        let a = parse_token_response("t", br#"{"access_token":"x","expires_in":"3599"}"#, &clock)
            .unwrap();
        let got = crate::clock::unix_seconds(a.expires_at());
        assert!((now + 3598..=now + 3601).contains(&got));
        let a = parse_token_response("t", br#"{"access_token":"x","expires_in":3599}"#, &clock)
            .unwrap();
        assert!(crate::clock::unix_seconds(a.expires_at()) >= now + 3598);
    }

    /// An error answer's text goes into errors and logs: it is capped, and its control
    /// characters (a forged log line) are spaces.
    #[test]
    fn an_error_answers_text_is_capped_and_has_no_control_characters() {
        let long = format!("line one\nforged: line two\r{}", "x".repeat(1 << 20));
        for body in [
            serde_json::json!({"error": "invalid_request", "error_description": long}).to_string(),
            serde_json::json!({"statusCode": 400, "message": long}).to_string(),
            long.clone(),
        ] {
            let e = rejection("IMDS", 400, body.as_bytes(), None, &|_, _| "hint");
            let AssertionError::Rejected { message, .. } = &e else {
                panic!("{e:?}")
            };
            assert!(message.chars().count() <= 501, "{}", message.len());
            assert!(!message.contains(['\n', '\r']), "{message}");
            assert!(
                message.starts_with("line one forged: line two"),
                "{message}"
            );
        }
    }

    #[test]
    fn rejects_unusable_bodies_with_a_reason() {
        let clock = Clock::system();
        for (body, needle) in [
            (&b"<html>"[..], "not a JSON token response"),
            (br#"{"expires_in":"5"}"#, "no access_token"),
            (br#"{"access_token":"x","expires_on":"soon"}"#, "expires_on"),
            (br#"{"access_token":"x"}"#, "no expires_on"),
        ] {
            let err = parse_token_response("IMDS", body, &clock)
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{err}");
            assert!(err.starts_with("IMDS"), "{err}");
        }
    }
}
