//! Microsoft Entra: per-tenant v1 and v2 OpenID metadata and keys, and the v2 token endpoint for
//! client credentials with a federated client assertion.

use crate::keys::VerifyError;
use crate::registry::{
    App, FederatedCredential, Registry, TOKEN_EXCHANGE_APP_ID, TOKEN_EXCHANGE_URI,
};
use crate::state::unix_seconds;
use crate::state::{CloudState, guid, iso8601};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{Value, json};
use std::sync::Arc;

/// RFC 7523's `client_assertion_type` for a JWT client assertion (a federated credential).
pub(crate) const JWT_BEARER_ASSERTION: &str =
    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Which listener a request came in on (links in metadata point back at it).
#[derive(Debug, Clone, Copy)]
pub struct Tls(pub bool);

/// Allowed clock skew for assertions, as Entra applies.
const SKEW_SECS: u64 = 300;

/// An Entra error response: `error`, `error_description` ("AADSTS…: … Trace ID … Correlation ID … Timestamp …"),
/// `error_codes`, `timestamp`, `trace_id`, `correlation_id`, `error_uri`.
pub fn aad_error(
    state: &CloudState,
    tls: bool,
    headers: &HeaderMap,
    status: u16,
    error: &str,
    code: u32,
    message: &str,
) -> Response {
    let trace = guid();
    let correlation = headers
        .get("client-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .unwrap_or_else(guid);
    let timestamp = iso8601(state.clock.now()).replace('T', " ");
    let body = json!({
        "error": error,
        "error_description": format!("AADSTS{code}: {message}\r\nTrace ID: {trace}\r\nCorrelation ID: {correlation}\r\nTimestamp: {timestamp}"),
        "error_codes": [code],
        "timestamp": timestamp,
        "trace_id": trace,
        "correlation_id": correlation,
        "error_uri": format!("{}/error?code={code}", state.base(tls)),
    });
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        Json(body),
    )
        .into_response()
}

/// AADSTS90002, for a tenant the registry does not know.
pub(crate) fn unknown_tenant(tenant: &str) -> AadError {
    AadError::new(
        400,
        "invalid_request",
        90002,
        format!(
            "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."
        ),
    )
}

/// The content type of Entra's documents.
const JSON: &str = "application/json; charset=utf-8";

/// `GET /{tenant}/.well-known/openid-configuration` (v1).
pub async fn metadata_v1(
    State(s): State<Arc<CloudState>>,
    Extension(Tls(tls)): Extension<Tls>,
    headers: HeaderMap,
    Path(tenant): Path<String>,
) -> Response {
    match s.door("entra_metadata", JSON).await {
        Ok(fault) => metadata(&s, tls, &headers, &tenant, false, fault),
        Err(canned) => canned,
    }
}

/// `GET /{tenant}/v2.0/.well-known/openid-configuration`.
pub async fn metadata_v2(
    State(s): State<Arc<CloudState>>,
    Extension(Tls(tls)): Extension<Tls>,
    headers: HeaderMap,
    Path(tenant): Path<String>,
) -> Response {
    match s.door("entra_metadata", JSON).await {
        Ok(fault) => metadata(&s, tls, &headers, &tenant, true, fault),
        Err(canned) => canned,
    }
}

/// The multi-tenant aliases whose key documents Entra serves (the keys are the same for every
/// tenant; v1 tenant metadata points its `jwks_uri` at `common`).
const MULTI_TENANT_ALIASES: [&str; 3] = ["common", "organizations", "consumers"];

/// Answers an injected `Status` fault and checks the tenant: the common prologue of the metadata
/// and keys documents (the handlers count the call and take the fault).
fn document_guard<'a>(
    s: &'a CloudState,
    tenant: &str,
    fault: Option<crate::state::Fault>,
    multi_tenant_alias_ok: bool,
) -> Result<std::sync::RwLockReadGuard<'a, Registry>, AadError> {
    if let Some(f) = fault {
        return Err(AadError::new(
            f.status,
            "temporarily_unavailable",
            90033,
            "Injected failure.".into(),
        ));
    }
    let reg = s.registry();
    let alias = multi_tenant_alias_ok
        && MULTI_TENANT_ALIASES
            .iter()
            .any(|a| a.eq_ignore_ascii_case(tenant));
    if !alias && !reg.is_tenant(tenant) {
        drop(reg);
        return Err(unknown_tenant(tenant));
    }
    Ok(reg)
}

fn metadata(
    s: &CloudState,
    tls: bool,
    headers: &HeaderMap,
    tenant: &str,
    v2: bool,
    fault: Option<crate::state::Fault>,
) -> Response {
    let reg = match document_guard(s, tenant, fault, false) {
        Ok(reg) => reg,
        Err(e) => return e.render(s, tls, headers),
    };
    let base = s.base(tls);
    let tid = &reg.tenant_id;
    let doc = if v2 {
        json!({
            "issuer": reg.v2_issuer(),
            "token_endpoint": format!("{base}/{tid}/oauth2/v2.0/token"),
            "authorization_endpoint": format!("{base}/{tid}/oauth2/v2.0/authorize"),
            "jwks_uri": format!("{base}/{tid}/discovery/v2.0/keys"),
            "device_authorization_endpoint": format!("{base}/{tid}/oauth2/v2.0/devicecode"),
            "end_session_endpoint": format!("{base}/{tid}/oauth2/v2.0/logout"),
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nbf", "tid", "oid", "ver"],
            "request_uri_parameter_supported": false,
            "tenant_region_scope": "NA",
            "cloud_instance_name": "microsoftonline.com",
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": "graph.microsoft.com",
        })
    } else {
        json!({
            "issuer": reg.v1_issuer(),
            "token_endpoint": format!("{base}/{tid}/oauth2/token"),
            "authorization_endpoint": format!("{base}/{tid}/oauth2/authorize"),
            // As Entra's v1 tenant metadata has it: the keys of `common`, not of the tenant.
            "jwks_uri": format!("{base}/common/discovery/keys"),
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "response_types_supported": ["code", "id_token", "code id_token", "token id_token", "token"],
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "microsoft_multi_refresh_token": true,
            "tenant_region_scope": "NA",
            "cloud_instance_name": "microsoftonline.com",
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": "graph.microsoft.com",
        })
    };
    Json(doc).into_response()
}

/// `GET /{tenant}/discovery/keys` (v1: no `issuer` on keys).
pub async fn jwks_v1(
    State(s): State<Arc<CloudState>>,
    Extension(Tls(tls)): Extension<Tls>,
    headers: HeaderMap,
    Path(tenant): Path<String>,
) -> Response {
    match s.door("entra_jwks", JSON).await {
        Ok(fault) => jwks(&s, tls, &headers, &tenant, false, fault),
        Err(canned) => canned,
    }
}

/// `GET /{tenant}/discovery/v2.0/keys`.
pub async fn jwks_v2(
    State(s): State<Arc<CloudState>>,
    Extension(Tls(tls)): Extension<Tls>,
    headers: HeaderMap,
    Path(tenant): Path<String>,
) -> Response {
    match s.door("entra_jwks", JSON).await {
        Ok(fault) => jwks(&s, tls, &headers, &tenant, true, fault),
        Err(canned) => canned,
    }
}

fn jwks(
    s: &CloudState,
    tls: bool,
    headers: &HeaderMap,
    tenant: &str,
    v2: bool,
    fault: Option<crate::state::Fault>,
) -> Response {
    let reg = match document_guard(s, tenant, fault, true) {
        Ok(reg) => reg,
        Err(e) => return e.render(s, tls, headers),
    };
    // On a multi-tenant alias the v2 keys name the templated issuer, as Entra's do.
    let issuer = v2.then(|| {
        if reg.is_tenant(tenant) {
            reg.v2_issuer()
        } else {
            "https://login.microsoftonline.com/{tenantid}/v2.0".to_string()
        }
    });
    drop(reg);
    Json(
        s.tenant_keys
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .jwks(issuer.as_deref()),
    )
    .into_response()
}

/// `GET /common/discovery/instance`: MSAL's instance discovery.
pub async fn instance_discovery(
    State(s): State<Arc<CloudState>>,
    Extension(Tls(tls)): Extension<Tls>,
) -> Response {
    let base = s.base(tls);
    let host = base.split("://").nth(1).unwrap_or_default().to_string();
    let tid = s.registry().tenant_id.clone();
    Json(json!({
        "tenant_discovery_endpoint": format!("{base}/{tid}/v2.0/.well-known/openid-configuration"),
        "api-version": "1.1",
        "metadata": [{"preferred_network": host, "preferred_cache": host, "aliases": [host]}],
    }))
    .into_response()
}

/// An Entra refusal, as the token endpoint answers it ([`aad_error`]): the HTTP status, the
/// OAuth `error`, the `AADSTS` code and its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AadError {
    /// HTTP status (400, 401, …).
    pub status: u16,
    /// The OAuth `error` (`invalid_request`, `invalid_client`, …).
    pub error: &'static str,
    /// The `AADSTS` number.
    pub code: u32,
    /// The message after `AADSTS<code>: `.
    pub message: String,
}

impl AadError {
    /// The token endpoint's answer ([`aad_error`]).
    pub fn render(&self, state: &CloudState, tls: bool, headers: &HeaderMap) -> Response {
        aad_error(
            state,
            tls,
            headers,
            self.status,
            self.error,
            self.code,
            &self.message,
        )
    }

    /// A refusal. Entra answers every `invalid_client` with 401, whatever the AADSTS code
    /// (RFC 6749 §5.2; recorded: AADSTS700024 as `401 Unauthorized` in
    /// Azure/azure-sdk-for-go#18176), so `status` is ignored for it.
    pub fn new(status: u16, error: &'static str, code: u32, message: String) -> Self {
        let status = if error == "invalid_client" {
            401
        } else {
            status
        };
        Self {
            status,
            error,
            code,
            message,
        }
    }
}

/// The outcome of an Entra flow: a token body, or an AADSTS refusal.
pub type EntraResult = Result<Value, AadError>;

/// Signs access-token claims and wraps them in the v2 endpoint's response.
pub fn issue(s: &CloudState, reg: &Registry, claims: Value, v1: bool) -> Value {
    let lifetime = access_token_lifetime(reg);
    let mut claims = claims;
    // The issuing clock, skewed when a test says so (`CloudState::skew_clock`).
    let now = unix_seconds(s.issuing_now("entra_token"));
    claims["iat"] = json!(now);
    claims["nbf"] = json!(now);
    claims["exp"] = json!(now + lifetime);
    let token = s
        .tenant_keys
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .sign(&claims, v1);
    json!({"token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime, "access_token": token})
}

fn access_token_lifetime(reg: &Registry) -> u64 {
    let (min, max) = (
        reg.lifetimes.access_token_min,
        reg.lifetimes
            .access_token_max
            .max(reg.lifetimes.access_token_min),
    );
    if min == max {
        min
    } else {
        fastrand::u64(min..=max)
    }
}

/// The claims of an app-only access token (protocols.md §2.5): v1 or v2 shape by the resource's
/// `requestedAccessTokenVersion`; `idtyp` only when the resource requests it as an optional claim
/// (the access-token claims reference lists it as optional); `extra` adds claims (Agent ID facets).
pub fn app_token_claims(
    _s: &CloudState,
    reg: &Registry,
    client: &App,
    resource: &App,
    resource_uri: &str,
    roles: &[&str],
    extra: &[(&str, Value)],
) -> Value {
    let v1 = resource.requested_access_token_version.unwrap_or(1) == 1;
    let sp = client
        .service_principal_object_id
        .clone()
        .unwrap_or_default();
    let mut c = json!({
        "aio": crate::state::random_id(40),
        "idp": reg.v1_issuer(),
        "oid": sp,
        "rh": crate::state::random_id(40),
        "sub": sp,
        "tid": reg.tenant_id,
        "uti": crate::state::random_id(22),
    });
    if v1 {
        c["aud"] = json!(resource_uri);
        c["iss"] = json!(reg.v1_issuer());
        c["appid"] = json!(client.app_id);
        c["appidacr"] = json!("2");
        c["ver"] = json!("1.0");
    } else {
        c["aud"] = json!(resource.app_id);
        c["iss"] = json!(reg.v2_issuer());
        c["azp"] = json!(client.app_id);
        c["azpacr"] = json!("2");
        c["ver"] = json!("2.0");
    }
    if !roles.is_empty() {
        c["roles"] = json!(roles);
    }
    if resource.requests_optional_claim("idtyp") {
        c["idtyp"] = json!("app");
    }
    for (k, v) in extra {
        c[*k] = v.clone();
    }
    c
}

/// The resource of a client-credentials scope (`<resource>/.default`, exactly one).
pub fn resource_of_scope(scope: &str) -> Result<String, AadError> {
    let scopes: Vec<&str> = scope.split_whitespace().collect();
    if scopes.len() > 1 {
        return Err(AadError::new(
            400,
            "invalid_scope",
            700022,
            format!(
                "The provided value for the input parameter scope is not valid because it contains more than one resource. Scope {scope} is not valid."
            ),
        ));
    }
    let Some(resource) = scope.strip_suffix("/.default") else {
        return Err(AadError::new(
            400,
            "invalid_scope",
            1002012,
            format!(
                "The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
            ),
        ));
    };
    Ok(resource.to_string())
}

/// Verifies a federated client assertion against the client app's federated credentials:
/// issuer (AADSTS700211), subject (700213), audience (700212), signature (700027), time (700024).
pub fn verify_federated_assertion(
    s: &CloudState,
    reg: &Registry,
    client: &App,
    assertion: &str,
) -> Result<Value, AadError> {
    let malformed = || {
        AadError::new(
            401,
            "invalid_client",
            50027,
            "JWT token is invalid or malformed.".to_string(),
        )
    };
    jsonwebtoken::decode_header(assertion).map_err(|_| malformed())?;
    let claims: Value =
        jsonwebtoken::dangerous::insecure_decode_claims(assertion).map_err(|_| malformed())?;
    let iss = claims["iss"].as_str().unwrap_or_default().to_string();
    let sub = claims["sub"].as_str().unwrap_or_default().to_string();
    let auds: Vec<String> = match &claims["aud"] {
        Value::String(a) => vec![a.clone()],
        Value::Array(v) => v
            .iter()
            .filter_map(|a| a.as_str().map(str::to_string))
            .collect(),
        _ => vec![],
    };
    let by_issuer: Vec<&FederatedCredential> = client
        .federated_credentials
        .iter()
        .filter(|f| f.issuer == iss)
        .collect();
    if by_issuer.is_empty() {
        return Err(AadError::new(
            401,
            "invalid_client",
            700211,
            format!(
                "No matching federated identity record found for presented assertion issuer '{iss}'. Please check your federated identity credential Subject, Audience and Issuer against the presented assertion. https://learn.microsoft.com/entra/workload-id/workload-identity-federation"
            ),
        ));
    }
    let by_subject: Vec<&&FederatedCredential> =
        by_issuer.iter().filter(|f| f.subject == sub).collect();
    if by_subject.is_empty() {
        // Worded as recorded in January 2026: "Check", where 700211 and 700212 say "Please check".
        return Err(AadError::new(
            401,
            "invalid_client",
            700213,
            format!(
                "No matching federated identity record found for presented assertion subject '{sub}'. Check your federated identity credential Subject, Audience and Issuer against the presented assertion. https://learn.microsoft.com/entra/workload-id/workload-identity-federation"
            ),
        ));
    }
    if !by_subject.iter().any(|f| {
        f.audiences
            .iter()
            .any(|fa| auds.iter().any(|a| audience_matches(fa, a)))
    }) {
        return Err(AadError::new(
            401,
            "invalid_client",
            700212,
            format!(
                "No matching federated identity record found for presented assertion audience '{}'. Please check your federated identity credential Subject, Audience and Issuer against the presented assertion. https://learn.microsoft.com/entra/workload-id/workload-identity-federation",
                auds.join(",")
            ),
        ));
    }
    // Signature: the issuer's keys (this tenant's, or an AKS cluster's).
    let external = !(iss == reg.v2_issuer() || iss == reg.v1_issuer());
    let keys = if !external {
        s.tenant_keys
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    } else if reg.aks_issuers.contains(&iss) {
        s.aks_keys.read().unwrap_or_else(|p| p.into_inner()).clone()
    } else {
        return Err(AadError::new(
            401,
            "invalid_client",
            700027,
            format!(
                "Client assertion failed signature validation. The keys of issuer '{iss}' could not be retrieved."
            ),
        ));
    };
    keys.verify(assertion).map_err(|e| match e {
        VerifyError::Algorithm => AadError::new(
            401,
            "invalid_client",
            700027,
            "Client assertion failed signature validation. Unsupported algorithm.".to_string(),
        ),
        // An external issuer (an AKS cluster) that does not publish the key: recorded as
        // AADSTS7000272 (Azure/azure-workload-identity#1232).
        VerifyError::UnknownKey if external => AadError::new(
            401,
            "invalid_client",
            7000272,
            format!(
                "The certificate with identifier {} used to sign the federated credential could not be found in the metadata of identity provider {iss}. Please validate that your Identity Provider's metadata exposes the key used to sign the incoming token.",
                jsonwebtoken::decode_header(assertion)
                    .ok()
                    .and_then(|h| h.kid)
                    .unwrap_or_default()
            ),
        ),
        VerifyError::UnknownKey => AadError::new(
            401,
            "invalid_client",
            700027,
            "Client assertion failed signature validation. The signing key was not found."
                .to_string(),
        ),
        _ => AadError::new(
            401,
            "invalid_client",
            700027,
            "Client assertion failed signature validation.".to_string(),
        ),
    })?;
    let now = unix_seconds(s.clock.now());
    let exp = claims["exp"].as_u64().unwrap_or(0);
    let nbf = claims["nbf"].as_u64().unwrap_or(0);
    if exp + SKEW_SECS < now || nbf > now + SKEW_SECS {
        return Err(AadError::new(
            401,
            "invalid_client",
            700024,
            format!(
                "Client assertion is not within its valid time range. Current time: {}, assertion valid from {}, expiry time of assertion {}. Review the documentation at https://learn.microsoft.com/entra/identity-platform/certificate-credentials .",
                iso8601(s.clock.now()),
                iso8601(crate::state::from_unix_seconds(nbf)),
                iso8601(crate::state::from_unix_seconds(exp))
            ),
        ));
    }
    Ok(claims)
}

/// A credential's audience names the assertion's `aud` directly, or as the identifier URI of the
/// app whose id it is (`api://AzureADTokenExchange` ↔ fb60f99c-…).
fn audience_matches(fic_audience: &str, token_aud: &str) -> bool {
    fic_audience == token_aud
        || (fic_audience.eq_ignore_ascii_case(TOKEN_EXCHANGE_URI)
            && token_aud.eq_ignore_ascii_case(TOKEN_EXCHANGE_APP_ID))
}
