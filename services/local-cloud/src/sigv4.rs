//! AWS Signature Version 4 verification, as AWS services do it: rebuild the canonical request
//! from what arrived (the path as sent, encoded once more for non-S3 services), derive the signing
//! key from the secret of the credentials STS issued, and compare.

use crate::state::{CloudState, IssuedCredentials};
use aws_lc_rs::digest;
use axum::http::{HeaderMap, Method, Uri};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use std::time::{Duration, SystemTime};

/// Characters SigV4 leaves unencoded: `A-Z a-z 0-9 - _ . ~`.
const SIGV4: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');
/// How far the request time may be from the server's.
const MAX_SKEW: Duration = Duration::from_secs(15 * 60);

/// Why a signed request was refused, in AWS's own codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// No `Authorization` header: `MissingAuthenticationToken` (403).
    Missing,
    /// Malformed header: `IncompleteSignature` (400).
    Incomplete(String),
    /// Unknown key id or wrong session token: `InvalidClientTokenId` / `UnrecognizedClientException` (403).
    UnknownKey,
    /// Expired credentials: `ExpiredToken` (STS) / `ExpiredTokenException` (Bedrock), both 403.
    Expired,
    /// Signature mismatch or clock skew: `SignatureDoesNotMatch` / `InvalidSignatureException` (403).
    Signature(String),
}

/// The verified caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Access key id.
    pub access_key_id: String,
    /// What STS issued for it.
    pub credentials: IssuedCredentials,
    /// Region of the credential scope.
    pub region: String,
}

/// Verifies a SigV4-signed request for `service`.
pub fn verify(
    state: &CloudState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    service: &str,
) -> Result<Caller, AuthError> {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .ok_or(AuthError::Missing)?;
    let rest = auth.strip_prefix("AWS4-HMAC-SHA256 ").ok_or_else(|| {
        AuthError::Incomplete("Authorization header requires the AWS4-HMAC-SHA256 algorithm".into())
    })?;
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("Credential=") {
            credential = Some(v);
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed_headers = Some(v);
        } else if let Some(v) = part.strip_prefix("Signature=") {
            signature = Some(v);
        }
    }
    let (Some(credential), Some(signed_headers), Some(signature)) =
        (credential, signed_headers, signature)
    else {
        return Err(AuthError::Incomplete("Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' parameters".into()));
    };
    let scope: Vec<&str> = credential.split('/').collect();
    let [access_key_id, date, region, scope_service, terminator] = scope[..] else {
        return Err(AuthError::Incomplete(format!(
            "Credential '{credential}' must be AKID/date/region/service/aws4_request"
        )));
    };
    if terminator != "aws4_request" {
        return Err(AuthError::Incomplete(
            "Credential scope must end in aws4_request".into(),
        ));
    }
    let issued = state
        .credentials
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(access_key_id)
        .cloned()
        .ok_or(AuthError::UnknownKey)?;
    let token = headers
        .get("x-amz-security-token")
        .and_then(|v| v.to_str().ok());
    if token != Some(issued.session_token.as_str()) {
        return Err(AuthError::UnknownKey);
    }
    let now = state.clock.now();
    if now >= issued.expires_at {
        return Err(AuthError::Expired);
    }
    if scope_service != service {
        return Err(AuthError::Signature(format!(
            "Credential should be scoped to correct service: '{service}'."
        )));
    }
    let amz_date = headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| AuthError::Incomplete("missing X-Amz-Date".into()))?;
    let request_time = parse_amz_date(amz_date).ok_or_else(|| {
        AuthError::Incomplete(format!("X-Amz-Date '{amz_date}' is not yyyyMMddTHHmmssZ"))
    })?;
    if !amz_date.starts_with(date) {
        return Err(AuthError::Signature("Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP".into()));
    }
    let skew = now
        .duration_since(request_time)
        .unwrap_or_else(|e| e.duration());
    if skew > MAX_SKEW {
        return Err(AuthError::Signature(format!(
            "Signature expired: {amz_date} is now earlier or later than the allowed 15 minutes of the server time."
        )));
    }
    let canonical = canonical_request(method, uri, headers, signed_headers, body)?;
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{date}/{region}/{service}/aws4_request\n{}",
        hex::encode(digest::digest(&digest::SHA256, canonical.as_bytes()))
    );
    let key = aws_sigv4::sign::v4::generate_signing_key(
        &issued.secret_access_key,
        request_time,
        region,
        service,
    );
    let expected = aws_sigv4::sign::v4::calculate_signature(key, string_to_sign.as_bytes());
    if !constant_time_eq(expected.as_bytes(), signature.as_bytes()) {
        return Err(AuthError::Signature(
            "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.".into(),
        ));
    }
    Ok(Caller {
        access_key_id: access_key_id.to_string(),
        credentials: issued,
        region: region.to_string(),
    })
}

fn canonical_request(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    signed_headers: &str,
    body: &[u8],
) -> Result<String, AuthError> {
    // The path as sent is already encoded once; non-S3 services encode each segment again.
    let path = uri.path();
    let canonical_uri = if path.is_empty() {
        "/".to_string()
    } else {
        path.split('/')
            .map(|seg| utf8_percent_encode(seg, SIGV4).to_string())
            .collect::<Vec<_>>()
            .join("/")
    };
    let mut query: Vec<(String, String)> = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let dec = |s: &str| {
                percent_decode_str(&s.replace('+', "%20"))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (
                utf8_percent_encode(&dec(k), SIGV4).to_string(),
                utf8_percent_encode(&dec(v), SIGV4).to_string(),
            )
        })
        .collect();
    query.sort();
    let canonical_query = query
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let mut canonical_headers = String::new();
    for name in signed_headers.split(';') {
        let values: Vec<String> = headers
            .get_all(name)
            .iter()
            .map(|v| {
                String::from_utf8_lossy(v.as_bytes())
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        if values.is_empty() && name != "host" {
            return Err(AuthError::Signature(format!(
                "signed header '{name}' is not in the request"
            )));
        }
        canonical_headers.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    let payload_hash = hex::encode(digest::digest(&digest::SHA256, body));
    Ok(format!(
        "{method}\n{canonical_uri}\n{canonical_query}\n{canonical_headers}\n{signed_headers}\n{payload_hash}"
    ))
}

fn parse_amz_date(s: &str) -> Option<SystemTime> {
    if s.len() != 16 || &s[8..9] != "T" || !s.ends_with('Z') {
        return None;
    }
    let iso = format!(
        "{}-{}-{}T{}:{}:{}Z",
        &s[0..4],
        &s[4..6],
        &s[6..8],
        &s[9..11],
        &s[11..13],
        &s[13..15]
    );
    let dt =
        aws_smithy_types::DateTime::from_str(&iso, aws_smithy_types::date_time::Format::DateTime)
            .ok()?;
    SystemTime::try_from(dt).ok()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amz_dates() {
        let t = parse_amz_date("20150830T123600Z").unwrap();
        assert_eq!(crate::state::unix_seconds(t), 1440938160);
        assert!(parse_amz_date("2015-08-30").is_none());
    }

    /// The AWS SigV4 test suite's "get-vanilla" case, using aws-sigv4's key derivation.
    #[test]
    fn matches_the_aws_test_suite_vanilla_case() {
        let mut headers = HeaderMap::new();
        headers.insert("host", "example.amazonaws.com".parse().unwrap());
        headers.insert("x-amz-date", "20150830T123600Z".parse().unwrap());
        let uri: Uri = "/".parse().unwrap();
        let creq = canonical_request(&Method::GET, &uri, &headers, "host;x-amz-date", b"").unwrap();
        assert_eq!(
            creq,
            "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let sts = format!(
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n{}",
            hex::encode(digest::digest(&digest::SHA256, creq.as_bytes()))
        );
        let key = aws_sigv4::sign::v4::generate_signing_key(
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            parse_amz_date("20150830T123600Z").unwrap(),
            "us-east-1",
            "service",
        );
        assert_eq!(
            aws_sigv4::sign::v4::calculate_signature(key, sts.as_bytes()),
            "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
    }

    #[test]
    fn paths_are_encoded_twice_and_queries_sorted() {
        let uri: Uri = "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse?b=2&a=1"
            .parse()
            .unwrap();
        let creq = canonical_request(&Method::POST, &uri, &HeaderMap::new(), "host", b"").unwrap();
        let mut lines = creq.lines();
        assert_eq!(
            lines.nth(1),
            Some("/model/anthropic.claude-3-haiku-20240307-v1%253A0/converse")
        );
        assert_eq!(lines.next(), Some("a=1&b=2"));
    }
}
