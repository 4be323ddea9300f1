//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`). Not an API: each function
//! feeds one parser of untrusted input (an upstream's answer, a token, the environment) and
//! renders whatever comes out, so that a panic anywhere on the way is found.
//!
//! Every function must return normally for every input.

use crate::clock::Clock;

/// The HTTP status a target's first two bytes pick (100-599), and the rest: the answer.
pub fn split_status(data: &[u8]) -> (u16, &[u8]) {
    match data {
        [a, b, rest @ ..] => (100 + u16::from_le_bytes([*a, *b]) % 500, rest),
        _ => (200, data),
    }
}

/// An STS `AssumeRoleWithWebIdentity` answer with HTTP `status`.
pub fn sts_response(status: u16, body: &str) {
    if (200..300).contains(&status) {
        if let Err(e) = crate::sts::parse_success(body) {
            let _ = e.to_string();
        }
    } else {
        let e = crate::sts::parse_error(status, body);
        let _ = (e.to_string(), e.fix());
    }
}

/// An Entra token endpoint answer with HTTP `status`.
pub fn entra_response(status: u16, body: &[u8]) {
    if status == 200 {
        match crate::entra::parse_success(body, &Clock::system()) {
            Ok(token) => {
                let _ = format!("{token:?} {}", token.claims());
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    } else {
        let e = crate::error::EntraError::Rejected(Box::new(crate::entra::rejection(status, body)));
        let _ = e.to_string();
    }
}

/// A managed-identity token answer (Container Apps / App Service endpoint and IMDS share it).
pub fn identity_response(body: &[u8]) {
    match crate::assertion::response::parse_token_response("fuzz", body, &Clock::system()) {
        Ok(a) => {
            let _ = format!("{a:?} {}", a.claims());
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

/// An error answer of a managed-identity endpoint with HTTP `status`, as the Container Apps /
/// App Service endpoint's and IMDS's clients read it.
pub fn identity_error(status: u16, body: &[u8]) {
    for (kind, hint) in [
        (
            "identity endpoint",
            crate::assertion::app_service::hint as fn(u16, Option<&str>) -> &'static str,
        ),
        ("IMDS", crate::assertion::imds::hint),
    ] {
        let e = crate::assertion::response::rejection(kind, status, body, None, &hint);
        let crate::error::AssertionError::Rejected { message, .. } = &e else {
            panic!("not a rejection: {e:?}")
        };
        // The upstream's words are capped and cannot forge a log line.
        assert!(message.chars().count() <= 501, "{} chars", message.len());
        assert!(!message.chars().any(char::is_control), "{message:?}");
        let _ = e.to_string();
    }
}

/// A `Retry-After` value: delta-seconds or an HTTP date, against a fixed now.
pub fn retry_after(value: &str) {
    let now = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_790_000_000);
    let parsed = crate::retry::parse_retry_after(value, now);
    if let Ok(n) = value.trim().parse::<u64>() {
        assert_eq!(parsed, Some(std::time::Duration::from_secs(n)), "{value:?}");
    }
    let mut headers = reqwest::header::HeaderMap::new();
    if let Ok(v) = reqwest::header::HeaderValue::from_str(value) {
        headers.insert(reqwest::header::RETRY_AFTER, v);
    }
    let cap = std::time::Duration::from_secs(60);
    let capped = crate::retry::retry_after(&headers, now, cap);
    if headers
        .get(reqwest::header::RETRY_AFTER)
        .is_some_and(|v| v.to_str().is_ok())
    {
        assert_eq!(capped, parsed.map(|d| d.min(cap)), "{value:?}");
    }
}

/// An OpenID metadata document, as the validator reads it.
#[cfg(feature = "validate")]
pub fn metadata(body: &[u8]) {
    crate::validate::jwks_fuzz::metadata(body);
}

/// An error answer of the Agent ID sidecar with HTTP `status` (an empty 403 or 401, a problem
/// document, anything else).
#[cfg(feature = "sidecar")]
pub fn sidecar_error(status: u16, body: &str) {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::WWW_AUTHENTICATE,
        reqwest::header::HeaderValue::from_static("Bearer error=\"invalid_token\""),
    );
    let e = crate::sidecar::SidecarClient::error(status, &headers, body);
    match (&e, status, body.is_empty()) {
        (crate::sidecar::SidecarError::NotLoopback, 403, true)
        | (crate::sidecar::SidecarError::UserTokenRejected { .. }, 401, true) => {}
        (_, 401 | 403, true) => panic!("an empty {status} is {e:?}"),
        (crate::sidecar::SidecarError::Problem { title, detail, .. }, _, _) => {
            for text in [title.as_deref().unwrap_or_default(), detail] {
                assert!(!text.chars().any(char::is_control), "{text:?}");
                assert!(text.chars().count() <= 501, "{} chars", text.len());
            }
        }
        (other, _, _) => panic!("an error answer read as {other:?}"),
    }
    let _ = e.to_string();
}

/// A JWT read without verification: the claim summary, an assertion from a token file, and the
/// v1 shape check the provider makes before STS.
pub fn jwt(token: &str) {
    if let Ok(claims) = crate::ClaimSummary::read_unverified(token) {
        let _ = claims.to_string();
        let _ = crate::entra::check_v1_shape(&claims, "contoso.onmicrosoft.com", "api://x")
            .map_err(|e| e.to_string());
    }
    if let Err(e) = crate::assertion::Assertion::from_jwt(token.to_string()) {
        let _ = e.to_string();
    }
}

/// A key set document, as the validator reads it.
#[cfg(feature = "validate")]
pub fn jwks(body: &[u8]) {
    let previous = crate::validate::jwks_fuzz::empty_keys();
    crate::validate::jwks_fuzz::signing_keys(body, &previous);
}

/// A token's claims after its signature verified: parsed and put to a typical policy.
#[cfg(feature = "validate")]
pub fn agent_claims(json: &[u8]) {
    crate::validate::claims_fuzz(json);
}

/// A token as a downstream API receives it, before any key is at hand (outside a Tokio
/// runtime, so the keys cannot be fetched: every check before them runs).
#[cfg(feature = "validate")]
pub fn validate(token: &str) {
    use std::future::Future;
    // One validator for the whole run: building one (its HTTP client) costs far more than a check.
    static VALIDATOR: std::sync::OnceLock<Option<crate::validate::TokenValidator>> =
        std::sync::OnceLock::new();
    let validator = VALIDATOR.get_or_init(|| {
        crate::validate::TokenValidator::new(crate::validate::ValidatorConfig::new(
            "72f988bf-86f1-41af-91ab-2d7cd011db47",
            vec!["api://weather".into()],
            crate::validate::Policy::new(
                ["00000000-0000-0000-0000-000000000001"],
                crate::validate::KindPolicy::Require("Weather.Read".into()),
                crate::validate::KindPolicy::Require("Weather.Read".into()),
            ),
        ))
        .ok()
    });
    let Some(validator) = validator else { return };
    let mut future = std::pin::pin!(validator.validate(token));
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    // Outside a runtime every step is ready at once; a pending poll is left at that.
    if let std::task::Poll::Ready(Err(e)) = future.as_mut().poll(&mut cx) {
        let _ = e.to_string();
    }
}

/// An answer of the Agent ID sidecar read as each route's answer: `/AuthorizationHeader*` (for a
/// fixed agent) and `/DownstreamApi`.
#[cfg(feature = "sidecar")]
pub fn sidecar_response(body: &str) {
    match crate::sidecar::downstream_response(body) {
        Ok(r) => {
            let _ = format!("{r:?}");
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    match crate::sidecar::agent_token(body, "00000000-0000-0000-0000-000000000001") {
        Ok(t) => {
            let _ = format!("{t:?}");
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

/// The environment the provider is configured from: `NAME=value` lines.
pub fn env(text: &str) {
    let vars: std::collections::HashMap<String, String> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        // The CA file is read from disk: the fuzzer's paths (/dev/zero, …) would test the
        // filesystem, not the parser.
        .filter(|(k, _)| k.trim() != "ENTRA_FEDERATION_CA_FILE")
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    match crate::EntraCredentialsProviderBuilder::from_env_fn(move |k| vars.get(k).cloned()) {
        Ok(b) => {
            if let Err(e) = b.build() {
                let _ = e.to_string();
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}
