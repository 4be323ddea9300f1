//! The Entra exchange: a managed-identity assertion in, a **v1** access token of the intermediary
//! app out (`POST {authority}/{tenant}/oauth2/v2.0/token`, client credentials with a federated
//! client assertion).

use crate::assertion::Assertion;
use crate::claims::ClaimSummary;
use crate::clock::{Clock, expiry_at, expiry_in};
use crate::error::Cause;
use crate::http::redacted_endpoint;
use crate::retry::{Backoff, Failure, Jitter, RetryPolicy, retry_after, with_retries};
use crate::secret::SecretString;
use serde::Deserialize;
use std::fmt;
use std::time::{Duration, SystemTime};
use url::Url;

/// `client_assertion_type` for a JWT client assertion.
pub const JWT_BEARER_ASSERTION: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The exchanged token: what AWS STS takes as `WebIdentityToken`.
#[derive(Clone)]
pub struct WebIdentityToken {
    token: SecretString,
    expires_at: SystemTime,
    issued_at: SystemTime,
    claims: ClaimSummary,
}

impl WebIdentityToken {
    /// A token with no claims that never expires, for unit tests of the hops after Entra.
    #[cfg(test)]
    pub(crate) fn for_tests(jwt: &str) -> Self {
        Self {
            token: SecretString::new(jwt.into()),
            expires_at: SystemTime::now() + Duration::from_secs(3600),
            issued_at: SystemTime::now(),
            claims: ClaimSummary::default(),
        }
    }

    /// The JWT, for the one place it is sent (STS, or a file for another SDK).
    pub fn token(&self) -> &SecretString {
        &self.token
    }

    /// When it expires.
    pub fn expires_at(&self) -> SystemTime {
        self.expires_at
    }

    /// When this process received it.
    pub fn issued_at(&self) -> SystemTime {
        self.issued_at
    }

    /// Its claims, for logs (`iss`, `aud`, `sub`, `oid`, `exp`).
    pub fn claims(&self) -> &ClaimSummary {
        &self.claims
    }
}

impl fmt::Debug for WebIdentityToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebIdentityToken")
            .field("token", &self.token)
            .field("expires_at", &self.expires_at)
            .field("claims", &self.claims)
            .finish()
    }
}

/// An error Entra returned, with its own codes and a fix.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EntraRejection {
    /// HTTP status.
    pub status: u16,
    /// OAuth `error` (`invalid_client`, `invalid_request`, …).
    pub error: String,
    /// The AADSTS codes (`error_codes`).
    pub codes: Vec<u32>,
    /// First line of `error_description` (it names issuer/subject/audience, never a token).
    pub description: String,
    /// `trace_id`, for a support case.
    pub trace_id: Option<String>,
    /// `correlation_id`, for a support case.
    pub correlation_id: Option<String>,
}

impl EntraRejection {
    /// Whether any of `codes` is among the AADSTS codes.
    pub fn has_code(&self, codes: &[u32]) -> bool {
        self.codes.iter().any(|c| codes.contains(c))
    }

    /// A one-line fix for the codes this flow meets.
    pub fn fix(&self) -> Option<&'static str> {
        self.codes.iter().find_map(|c| fix_for(*c)).or(match self.status {
            429 => Some("Entra is throttling: the provider caches tokens; look for other callers of this app"),
            s if s >= 500 => Some("Entra is failing; the provider retries with backoff"),
            _ => None,
        })
    }
}

/// The fix for an AADSTS code this flow meets (protocols.md §2.3).
pub fn fix_for(code: u32) -> Option<&'static str> {
    Some(match code {
        70021 | 700211 | 700212 | 700213 => {
            "the intermediary app's federated credential does not match the assertion: its issuer must be https://login.microsoftonline.com/<tenant>/v2.0, its subject the managed identity's object (principal) id, its audience api://AzureADTokenExchange (az ad app federated-credential list --id $STS_APP_ID)"
        }
        7000272 => {
            "the assertion's issuer does not publish the key that signed it: the federated credential's issuer must be the cluster's OIDC issuer (az aks show --query oidcIssuerProfile.issuerUrl), serving the current service-account keys"
        }
        7000229 => {
            "the app is registered but has no service principal in the tenant: create it (az ad sp create --id $STS_APP_ID)"
        }
        700016 => {
            "no app with this client id in the tenant: check STS_APP_ID / AZURE_CLIENT_ID and TENANT_ID"
        }
        700024 | 500133 => {
            "the assertion is outside its valid time: fetch a fresh one (re-read the token file) and check the clock"
        }
        50013 | 50027 => {
            "the assertion is invalid (expired, malformed, or from the wrong issuer): request it for resource api://AzureADTokenExchange"
        }
        700027 => {
            "the assertion's signature did not verify: it must come straight from the managed-identity endpoint"
        }
        7000218 => {
            "the request carried no client_assertion: the managed-identity assertion was empty"
        }
        7000215 => {
            "a client secret was sent; this flow uses the managed-identity assertion, not a secret"
        }
        500011 => {
            "the resource is not in the tenant: the intermediary app needs identifierUris=[\"api://<its app id>\"] and a service principal (az ad sp create --id $STS_APP_ID); the scope must be api://<STS_APP_ID>/.default"
        }
        65001 => {
            "consent is missing: the calling app (for on-behalf-of, the agent identity) needs the delegated permission on the resource granted by an admin"
        }
        90002 => {
            "the tenant was not found: check TENANT_ID / AZURE_TENANT_ID and AZURE_AUTHORITY_HOST (sovereign clouds)"
        }
        700022 | 70011 | 1002012 => {
            "the scope must be a single resource ending in /.default, e.g. api://<STS_APP_ID>/.default"
        }
        700229 => "only app-only tokens can be federated credentials for an Entra issuer",
        50196 => "too many identical requests: cache tokens (one provider per process)",
        90024 | 50033 | 90006 | 90033 | 90055 => {
            "Entra is temporarily unavailable or throttling; the provider retries with backoff"
        }
        _ => return None,
    })
}

/// Why the exchange failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum EntraError {
    /// Entra could not be reached.
    #[error("cannot reach Entra at {endpoint}: {what}")]
    Transport {
        /// The token endpoint.
        endpoint: String,
        /// What failed, in a few words.
        what: &'static str,
        /// The HTTP client's error, when there is one.
        #[source]
        source: Option<Cause>,
    },
    /// Entra answered with an OAuth error.
    #[error("Entra rejected the token request (HTTP {} {}{}): {}{}{}",
        .0.status, .0.error,
        if .0.codes.is_empty() { String::new() } else { format!(", {}", .0.codes.iter().map(|c| format!("AADSTS{c}")).collect::<Vec<_>>().join(", ")) },
        .0.description,
        .0.fix().map(|f| format!(". Fix: {f}")).unwrap_or_default(),
        match (&.0.trace_id, &.0.correlation_id) {
            (Some(t), Some(c)) => format!(" [trace_id={t} correlation_id={c}]"),
            _ => String::new(),
        })]
    Rejected(Box<EntraRejection>),
    /// A 200 whose body is not a token response.
    #[error("Entra returned an unusable token response: {detail}")]
    InvalidResponse {
        /// What is wrong with it.
        detail: String,
        /// The parser's error, when there is one.
        #[source]
        source: Option<Cause>,
    },
}

impl EntraError {
    /// Whether trying again later may succeed.
    pub fn is_recoverable(&self) -> bool {
        match self {
            Self::Transport { .. } => true,
            Self::Rejected(r) => {
                r.status >= 500
                    || r.status == 429
                    || r.error == "temporarily_unavailable"
                    || r.has_code(&[90024, 50033, 90006, 90033, 90055, 50196])
            }
            Self::InvalidResponse { .. } => false,
        }
    }

    /// Whether a fresh assertion may fix it (the assertion expired on the way).
    pub fn wants_fresh_assertion(&self) -> bool {
        matches!(self, Self::Rejected(r) if r.has_code(&[700024, 500133, 50013]))
    }
}

/// The token is not the shape AWS STS accepts: caught before STS.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenShapeError {
    /// Not a JWT.
    #[error("Entra's token is not a readable JWT ({0})")]
    Unreadable(String),
    /// A v2 (or otherwise wrong-issuer) token.
    #[error(
        "Entra issued a token with iss={iss} (ver={ver}), not the v1 issuer {expected}: AWS STS would reject it. Fix: set requestedAccessTokenVersion=1 on the intermediary app (PATCH /applications(appId='<STS_APP_ID>') {{\"api\":{{\"requestedAccessTokenVersion\":1}}}}) and keep identifierUris=[\"api://<STS_APP_ID>\"]"
    )]
    NotV1 {
        /// The token's issuer.
        iss: String,
        /// The token's `ver`.
        ver: String,
        /// The v1 issuer expected.
        expected: String,
    },
    /// The audience is not the intermediary app's URI.
    #[error(
        "Entra issued a token for aud={aud}, expected {expected}: the IAM OIDC provider's client-ID list and the role trust policy pin {expected}. Fix: request scope <STS_APP_URI>/.default with STS_APP_URI={expected}, or set STS_APP_URI to the audience the AWS side expects"
    )]
    WrongAudience {
        /// The token's audience.
        aud: String,
        /// The audience expected.
        expected: String,
    },
}

/// Checks that `claims` describe a v1 token of tenant `tenant` for `expected_aud`.
pub fn check_v1_shape(
    claims: &ClaimSummary,
    tenant: &str,
    expected_aud: &str,
) -> Result<(), TokenShapeError> {
    // The tenant may be configured as a domain name; the v1 issuer always carries the GUID (`tid`).
    let tid = if looks_like_guid(tenant) {
        tenant
    } else {
        claims.tid.as_deref().unwrap_or(tenant)
    };
    let expected_iss = format!("https://sts.windows.net/{tid}/");
    let iss = claims.iss.clone().unwrap_or_default();
    if !iss.eq_ignore_ascii_case(&expected_iss) {
        return Err(TokenShapeError::NotV1 {
            iss,
            ver: claims.ver.clone().unwrap_or_else(|| "-".into()),
            expected: expected_iss,
        });
    }
    let aud = claims.aud.clone().unwrap_or_default();
    if aud != expected_aud {
        return Err(TokenShapeError::WrongAudience {
            aud,
            expected: expected_aud.to_string(),
        });
    }
    Ok(())
}

pub(crate) fn looks_like_guid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Seconds {
    Number(u64),
    Text(String),
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: Option<String>,
    expires_in: Option<Seconds>,
}

#[derive(Deserialize, Default)]
struct ErrorResponse {
    error: Option<String>,
    error_description: Option<String>,
    #[serde(default)]
    error_codes: Vec<u32>,
    trace_id: Option<String>,
    correlation_id: Option<String>,
}

/// Calls the Entra token endpoint.
#[derive(Debug, Clone)]
pub struct EntraClient {
    token_url: Url,
    client_id: String,
    scope: String,
    http: reqwest::Client,
    clock: Clock,
    retry: RetryPolicy,
}

impl EntraClient {
    /// A client for `{authority}/{tenant}/oauth2/v2.0/token`.
    pub fn new(
        authority: &Url,
        tenant: &str,
        client_id: String,
        scope: String,
        http: reqwest::Client,
        clock: Clock,
    ) -> Result<Self, url::ParseError> {
        let base = if authority.as_str().ends_with('/') {
            authority.clone()
        } else {
            Url::parse(&format!("{authority}/"))?
        };
        let token_url = base.join(&format!("{tenant}/oauth2/v2.0/token"))?;
        Ok(Self {
            token_url,
            client_id,
            scope,
            http,
            clock,
            retry: RetryPolicy {
                hop: "Entra",
                backoff: Backoff::standard(),
                jitter: Jitter::default(),
                window: None,
            },
        })
    }

    /// Draws retry jitter from `jitter` (seeded in tests).
    pub fn with_jitter(mut self, jitter: Jitter) -> Self {
        self.retry.jitter = jitter;
        self
    }

    /// The token endpoint.
    pub fn token_url(&self) -> &Url {
        &self.token_url
    }

    /// Exchanges `assertion`, retrying 429/5xx/transport failures with jittered backoff (honouring `Retry-After`).
    #[tracing::instrument(name = "entra_exchange", skip_all, fields(client_id = %self.client_id, scope = %self.scope))]
    pub async fn exchange(&self, assertion: &Assertion) -> Result<WebIdentityToken, EntraError> {
        if let Some(reason) = crate::http::outside_runtime() {
            return Err(EntraError::Transport {
                endpoint: redacted_endpoint(&self.token_url),
                what: reason,
                source: None,
            });
        }
        let started = tokio::time::Instant::now();
        let token = with_retries(&self.retry, &self.clock, || async move {
            self.exchange_once(assertion)
                .await
                .map_err(|(error, retry_after)| Failure {
                    transient: error.is_recoverable(),
                    retry_after,
                    keeps_trying: false,
                    error,
                })
        })
        .await?;
        tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, claims = %token.claims, "Entra issued a token");
        Ok(token)
    }

    async fn exchange_once(
        &self,
        assertion: &Assertion,
    ) -> Result<WebIdentityToken, (EntraError, Option<Duration>)> {
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", self.client_id.as_str()),
            ("scope", self.scope.as_str()),
            ("client_assertion_type", JWT_BEARER_ASSERTION),
            ("client_assertion", assertion.token().expose_secret()),
        ];
        let transport = |(what, source): (&'static str, Cause)| {
            (
                EntraError::Transport {
                    endpoint: redacted_endpoint(&self.token_url),
                    what,
                    source: Some(source),
                },
                None,
            )
        };
        let resp = self
            .http
            .post(self.token_url.clone())
            .form(&form)
            .send()
            .await
            .map_err(|e| transport(crate::http::transport_failure(e)))?;
        let status = resp.status().as_u16();
        let retry_after = retry_after(resp.headers(), self.clock.now(), Duration::from_secs(60));
        let body = match crate::http::read_body(resp, crate::http::MAX_RESPONSE_BODY).await {
            Ok(body) => body,
            Err(e @ crate::http::BodyError::TooLarge { .. }) => {
                return Err((invalid(e.to_string()), None));
            }
            Err(crate::http::BodyError::Transport(source)) => {
                return Err(transport((
                    "the connection broke while the response was read",
                    source,
                )));
            }
        };
        if status == 200 {
            return parse_success(&body, &self.clock).map_err(|e| (e, None));
        }
        Err((
            EntraError::Rejected(Box::new(rejection(status, &body))),
            retry_after,
        ))
    }
}

/// Entra's error answer, read as far as it is an OAuth error body.
pub(crate) fn rejection(status: u16, body: &[u8]) -> EntraRejection {
    let parsed: ErrorResponse = serde_json::from_slice(body).unwrap_or_default();
    let description = parsed
        .error_description
        .as_deref()
        .map(|d| d.lines().next().unwrap_or_default().trim().to_string())
        .unwrap_or_else(|| format!("no OAuth error body (HTTP {status})"));
    EntraRejection {
        status,
        error: parsed.error.unwrap_or_else(|| "http_error".into()),
        codes: parsed.error_codes,
        description,
        trace_id: parsed.trace_id,
        correlation_id: parsed.correlation_id,
    }
}

/// An unusable answer with nothing underneath (no parser error to keep).
fn invalid(detail: impl Into<String>) -> EntraError {
    EntraError::InvalidResponse {
        detail: detail.into(),
        source: None,
    }
}

pub(crate) fn parse_success(body: &[u8], clock: &Clock) -> Result<WebIdentityToken, EntraError> {
    let parsed: TokenResponse =
        serde_json::from_slice(body).map_err(|e| EntraError::InvalidResponse {
            detail: "not a JSON token response".into(),
            source: Some(Cause::json(&e)),
        })?;
    let token = parsed
        .access_token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| invalid("no access_token"))?;
    let claims = ClaimSummary::read_unverified(&token).unwrap_or_default();
    let now = clock.now();
    let expires_at = match (&parsed.expires_in, claims.exp) {
        (Some(Seconds::Number(n)), _) => expiry_in(now, *n),
        (Some(Seconds::Text(t)), _) if t.trim().parse::<u64>().is_ok() => {
            expiry_in(now, t.trim().parse().unwrap_or_default())
        }
        (_, Some(exp)) => expiry_at(now, exp),
        _ => {
            return Err(invalid("no expires_in and no exp claim"));
        }
    };
    // `exp` is on Entra's clock and only a fallback: with this machine's clock ahead, the
    // token would look expired on arrival although STS accepts it for `expires_in`. But the
    // token's own lifetime (`exp - iat`, both on Entra's clock, so skew cancels out) bounds a
    // wrong or oversized `expires_in`.
    let expires_at = match (claims.iat, claims.exp) {
        (Some(iat), Some(exp)) if exp > iat => expires_at.min(expiry_in(now, exp - iat)),
        _ => expires_at,
    };
    Ok(WebIdentityToken {
        token: SecretString::new(token),
        expires_at,
        issued_at: now,
        claims,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(iss: &str, aud: &str) -> ClaimSummary {
        ClaimSummary {
            iss: Some(iss.into()),
            aud: Some(aud.into()),
            ver: Some("2.0".into()),
            tid: Some("t".into()),
            ..Default::default()
        }
    }

    const TID: &str = "7d2f0e4c-8a1b-4c3d-9e5f-0a1b2c3d4e5f";

    #[test]
    fn v1_token_for_the_app_passes() {
        let c = claims(&format!("https://sts.windows.net/{TID}/"), "api://app");
        assert_eq!(check_v1_shape(&c, TID, "api://app"), Ok(()));
    }

    #[test]
    fn v2_token_names_the_fix() {
        let c = claims(
            &format!("https://login.microsoftonline.com/{TID}/v2.0"),
            "app",
        );
        let err = check_v1_shape(&c, TID, "api://app").unwrap_err();
        assert!(matches!(err, TokenShapeError::NotV1 { .. }));
        assert!(
            err.to_string()
                .contains("set requestedAccessTokenVersion=1 on the intermediary app"),
            "{err}"
        );
    }

    #[test]
    fn wrong_audience_is_named() {
        let c = claims(&format!("https://sts.windows.net/{TID}/"), "api://other");
        let err = check_v1_shape(&c, TID, "api://app").unwrap_err();
        assert_eq!(
            err,
            TokenShapeError::WrongAudience {
                aud: "api://other".into(),
                expected: "api://app".into()
            }
        );
    }

    #[test]
    fn domain_tenant_uses_tid() {
        let mut c = claims(&format!("https://sts.windows.net/{TID}/"), "api://app");
        c.tid = Some(TID.into());
        assert_eq!(
            check_v1_shape(&c, "contoso.onmicrosoft.com", "api://app"),
            Ok(())
        );
    }

    #[test]
    fn rejection_display_carries_codes_ids_and_fix() {
        let r = EntraRejection {
            status: 401,
            error: "invalid_client".into(),
            codes: vec![700213],
            description: "AADSTS700213: No matching federated identity record found for presented assertion subject 'x'.".into(),
            trace_id: Some("t1".into()),
            correlation_id: Some("c1".into()),
        };
        let s = EntraError::Rejected(Box::new(r)).to_string();
        assert!(s.contains("HTTP 401 invalid_client, AADSTS700213"), "{s}");
        assert!(
            s.contains("Fix: the intermediary app's federated credential"),
            "{s}"
        );
        assert!(s.contains("trace_id=t1 correlation_id=c1"), "{s}");
    }

    #[test]
    fn every_listed_code_has_a_fix() {
        for code in [
            70021, 700211, 700212, 700213, 700016, 700024, 50013, 500011, 90002, 700022, 7000218,
        ] {
            assert!(fix_for(code).is_some(), "{code}");
        }
    }

    #[test]
    fn recoverability() {
        let r = |status, codes: Vec<u32>| {
            EntraError::Rejected(Box::new(EntraRejection {
                status,
                error: "e".into(),
                codes,
                description: String::new(),
                trace_id: None,
                correlation_id: None,
            }))
        };
        assert!(r(429, vec![]).is_recoverable());
        assert!(r(503, vec![]).is_recoverable());
        assert!(!r(401, vec![700213]).is_recoverable());
        assert!(r(400, vec![700024]).wants_fresh_assertion());
    }
}

/// The token response's parsing: `expires_in` as a number or a string, the fallback to the token's
/// `exp`, the clamp to `exp`, and unusable bodies as typed errors.
#[cfg(test)]
mod token_response_tests {
    use super::*;
    use crate::clock::from_unix_seconds;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    /// An unsigned JWT carrying `claims` (the library reads claims without verifying them).
    fn jwt(claims: serde_json::Value) -> String {
        let b64 = |v: serde_json::Value| URL_SAFE_NO_PAD.encode(v.to_string());
        format!(
            "{}.{}.sig",
            b64(serde_json::json!({"alg": "RS256", "typ": "JWT"})),
            b64(claims)
        )
    }

    fn body(access_token: Option<&str>, expires_in: Option<serde_json::Value>) -> Vec<u8> {
        let mut b = serde_json::json!({"token_type": "Bearer"});
        if let Some(t) = access_token {
            b["access_token"] = t.into();
        }
        if let Some(e) = expires_in {
            b["expires_in"] = e;
        }
        b.to_string().into_bytes()
    }

    /// A frozen clock (tokio's paused clock drives it) and its now in whole Unix seconds.
    fn frozen() -> (Clock, SystemTime, u64) {
        let clock = Clock::tokio_driven();
        let now = clock.now();
        (clock, now, crate::clock::unix_seconds(now))
    }

    fn invalid_response(result: Result<WebIdentityToken, EntraError>) -> String {
        match result {
            Err(EntraError::InvalidResponse { detail, .. }) => detail,
            Err(other) => panic!("expected InvalidResponse, got {other}"),
            Ok(t) => panic!("expected InvalidResponse, got a token ({:?})", t.claims()),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn expires_in_as_a_number_or_a_string_counts_from_now() {
        let (clock, now, secs) = frozen();
        let token = jwt(serde_json::json!({"exp": secs + 7200}));
        for expires_in in [
            serde_json::json!(3599),
            serde_json::json!("3599"),
            serde_json::json!(" 3599 "),
        ] {
            let t = parse_success(&body(Some(&token), Some(expires_in.clone())), &clock)
                .unwrap_or_else(|e| panic!("{expires_in}: {e}"));
            assert_eq!(
                t.expires_at(),
                now + Duration::from_secs(3599),
                "{expires_in}"
            );
            assert_eq!(t.issued_at(), now);
            assert_eq!(t.claims().exp, Some(secs + 7200));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_usable_expires_in_the_tokens_exp_is_used() {
        let (clock, _, secs) = frozen();
        let token = jwt(serde_json::json!({"exp": secs + 1234}));
        for expires_in in [None, Some(serde_json::json!("soon"))] {
            let t = parse_success(&body(Some(&token), expires_in.clone()), &clock)
                .unwrap_or_else(|e| panic!("{expires_in:?}: {e}"));
            assert_eq!(
                t.expires_at(),
                from_unix_seconds(secs + 1234),
                "{expires_in:?}"
            );
        }
    }

    /// `expires_in` counts from this machine's clock; `exp` is on Entra's. With the local clock
    /// two hours ahead, `exp` is already past locally, yet the token is good for its `expires_in`.
    #[tokio::test(start_paused = true)]
    async fn expires_in_wins_over_an_exp_on_a_skewed_clock() {
        let (clock, now, secs) = frozen();
        let token = jwt(serde_json::json!({"exp": secs + 3600 - 2 * 3600}));
        for expires_in in [serde_json::json!(3600), serde_json::json!("3600")] {
            let t = parse_success(&body(Some(&token), Some(expires_in.clone())), &clock).unwrap();
            assert_eq!(
                t.expires_at(),
                now + Duration::from_secs(3600),
                "{expires_in}"
            );
        }
    }

    /// An `expires_in` longer than the token's own lifetime (`exp - iat`) is cut to it.
    #[tokio::test(start_paused = true)]
    async fn expires_in_is_bounded_by_the_tokens_own_lifetime() {
        let (clock, now, secs) = frozen();
        // Issued two hours "ago" on a skewed clock, living one hour: exp is in the local past.
        let token = jwt(serde_json::json!({"iat": secs - 7200, "exp": secs - 3600}));
        let t = parse_success(&body(Some(&token), Some(serde_json::json!(7200))), &clock).unwrap();
        assert_eq!(t.expires_at(), now + Duration::from_secs(3600));
        let t = parse_success(&body(Some(&token), Some(serde_json::json!(600))), &clock).unwrap();
        assert_eq!(t.expires_at(), now + Duration::from_secs(600));
    }

    /// Absurd lifetimes from the network are clamped, never an arithmetic panic.
    #[tokio::test(start_paused = true)]
    async fn absurd_lifetimes_are_clamped_not_a_panic() {
        let (clock, now, _) = frozen();
        let max = now + crate::clock::MAX_LIFETIME;
        let far = jwt(serde_json::json!({"exp": 10_000_000_000_000_000_000u64}));
        for expires_in in [
            Some(serde_json::json!(u64::MAX)),
            Some(serde_json::json!(u64::MAX.to_string())),
            None,
        ] {
            let t = parse_success(&body(Some(&far), expires_in.clone()), &clock)
                .unwrap_or_else(|e| panic!("{expires_in:?}: {e}"));
            assert_eq!(t.expires_at(), max, "{expires_in:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn unusable_token_responses_are_typed_errors() {
        let (clock, _, secs) = frozen();
        let token = jwt(serde_json::json!({"exp": secs + 600}));
        assert_eq!(
            invalid_response(parse_success(&body(None, Some(3599.into())), &clock)),
            "no access_token"
        );
        assert_eq!(
            invalid_response(parse_success(&body(Some(""), Some(3599.into())), &clock)),
            "no access_token"
        );
        // Neither a lifetime nor a readable exp: nothing says when it expires.
        assert_eq!(
            invalid_response(parse_success(&body(Some("opaque"), None), &clock)),
            "no expires_in and no exp claim"
        );
        let no_exp = jwt(serde_json::json!({"iss": "https://sts.windows.net/t/"}));
        assert_eq!(
            invalid_response(parse_success(
                &body(Some(&no_exp), Some("soon".into())),
                &clock
            )),
            "no expires_in and no exp claim"
        );
        for garbage in [&b"<html>"[..], b"", b"[]", br#"{"access_token": 7}"#] {
            let reason = invalid_response(parse_success(garbage, &clock));
            assert!(reason.starts_with("not a JSON token response"), "{reason}");
        }
        // A negative lifetime is not a lifetime.
        let reason = invalid_response(parse_success(
            &body(Some(&token), Some((-5).into())),
            &clock,
        ));
        assert!(reason.starts_with("not a JSON token response"), "{reason}");
    }

    /// The parser's error is the cause (`source()`), not text flattened into the message; it
    /// never quotes the body (a bare JSON string could be a token).
    #[test]
    fn the_json_error_is_the_source_and_quotes_nothing() {
        let clock = Clock::system();
        let err = parse_success(b"<html>", &clock).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Entra returned an unusable token response: not a JSON token response"
        );
        let cause = std::error::Error::source(&err).expect("a source");
        assert_eq!(cause.to_string(), "not JSON (line 1, column 1)");
        let err = parse_success(br#""eyJ0eXAiOiJKV1Qi.secret.sig""#, &clock).unwrap_err();
        let chain = crate::error::DisplayChain(&err).to_string();
        assert!(!chain.contains("eyJ"), "{chain}");
        assert!(
            chain.ends_with("JSON of another shape (line 1, column 29)"),
            "{chain}"
        );
    }
}
