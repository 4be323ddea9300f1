//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`). Not an API: each function
//! feeds one parser of untrusted input and checks what SDKs will make of the answer.
//!
//! Every function must return normally for every input.

use crate::credential_process::{CacheEntry, FALLBACK_MINIMUM, to_process};
use aws_credential_types::Credentials;
use axum::http::{HeaderMap, HeaderValue};
use std::time::{Duration, SystemTime};

/// Seconds since 1970 from a target's first eight bytes (up to the end of 9999, the last year
/// STS's timestamp format can carry), and the rest.
fn split_time(data: &[u8]) -> (SystemTime, &[u8]) {
    const SPAN: u64 = 253_402_300_800;
    let (head, rest) = data.split_at(data.len().min(8));
    let mut secs = [0u8; 8];
    secs[..head.len()].copy_from_slice(head);
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::from_le_bytes(secs) % SPAN);
    (t, rest)
}

/// What a `credential_process` invocation prints, checked as SDKs read it: version 1, an
/// expiration they parse, still in the future.
fn check_printed(c: &crate::credential_process::ProcessCredentials, now: SystemTime) {
    assert_eq!(c.version, 1, "printed credentials must be version 1");
    let expires = crate::parse_iso8601(&c.expiration)
        .unwrap_or_else(|| panic!("printed Expiration {:?} does not parse", c.expiration));
    assert!(expires > now, "printed credentials are already expired");
    // Debug must not depend on the secrets at all.
    let mut other = c.clone();
    other.secret_access_key = "other secret".into();
    other.session_token = "other token".into();
    assert_eq!(
        format!("{c:?}"),
        format!("{other:?}"),
        "Debug shows a secret"
    );
}

/// The `credential_process` cache file (the first eight bytes pick the time of the invocation):
/// whatever is in it, what gets printed is what SDKs accept.
pub fn credential_process_cache(data: &[u8]) {
    let (now, text) = split_time(data);
    let Some(entry) = CacheEntry::parse(text) else {
        return;
    };
    if let Some(c) = entry.clone().fresh(now) {
        check_printed(&c, now);
    }
    if let Some(c) = entry.valid_for(now, FALLBACK_MINIMUM) {
        check_printed(&c, now);
    }
}

/// The container-credentials endpoint: the request's `Authorization` header against the expected
/// token, and the answer for credentials with any expiry, read back as SDKs read it.
///
/// Layout: eight bytes of expiry, then `presented \0 expected \0 key \0 secret \0 token`.
pub fn container_credentials(data: &[u8]) {
    let (expiry, rest) = split_time(data);
    let mut parts = rest.split(|b| *b == 0);
    let mut next = || parts.next().unwrap_or_default();
    let (presented, expected) = (next(), next());
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let (key, secret, token) = (text(next()), text(next()), text(next()));

    let expected = text(expected);
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_bytes(presented) {
        headers.insert("authorization", v);
    }
    let presented_str = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert_eq!(
        crate::serve::authorized(&headers, &expected),
        presented_str == expected,
        "authorization differs from equality"
    );

    let creds = Credentials::new(&key, &secret, Some(token.clone()), Some(expiry), "fuzz");
    let whole_seconds = expiry
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    match crate::serve::credentials_body(&creds) {
        Ok(body) => {
            let body: serde_json::Value =
                serde_json::from_slice(&serde_json::to_vec(&body).expect("JSON")).expect("JSON");
            assert_eq!(body["AccessKeyId"], key.as_str());
            assert_eq!(body["SecretAccessKey"], secret.as_str());
            assert_eq!(body["Token"], token.as_str());
            let served = body["Expiration"].as_str().and_then(crate::parse_iso8601);
            assert_eq!(
                served.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok()),
                Some(Duration::from_secs(whole_seconds)),
                "Expiration {} does not read back as the credentials' expiry",
                body["Expiration"]
            );
        }
        Err(why) => {
            let _ = why.to_string();
        }
    }
    if let Ok(printed) = to_process(&creds) {
        let t = crate::parse_iso8601(&printed.expiration);
        assert_eq!(
            t.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok()),
            Some(Duration::from_secs(whole_seconds)),
            "credential_process Expiration {:?} does not read back",
            printed.expiration
        );
    }
}
