//! Microsoft Entra: per-tenant v1 and v2 OpenID metadata and keys, and the v2 token endpoint for
//! client credentials with a federated client assertion.

use crate::identity::add_retry_after;
use crate::keys::VerifyError;
use crate::registry::{
    App, FederatedCredential, Registry, TOKEN_EXCHANGE_APP_ID, TOKEN_EXCHANGE_URI,
};
use crate::state::unix_seconds;
use crate::state::{CloudState, guid, iso8601};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Form, Json};
use serde_json::{Value, json};
use std::collections::HashMap;
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

fn unknown_tenant(state: &CloudState, tls: bool, headers: &HeaderMap, tenant: &str) -> Response {
    aad_error(
        state,
        tls,
        headers,
        400,
        "invalid_request",
        90002,
        &format!(
            "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."
        ),
    )
}

/// `GET /{tenant}/.well-known/openid-configuration` (v1).
pub async fn metadata_v1(
    State(s): State<Arc<CloudState>>,
    Extension(Tls(tls)): Extension<Tls>,
    headers: HeaderMap,
    Path(tenant): Path<String>,
) -> Response {
    s.latency("entra_metadata").await;
    metadata(&s, tls, &headers, &tenant, false)
}

/// `GET /{tenant}/v2.0/.well-known/openid-configuration`.
pub async fn metadata_v2(
    State(s): State<Arc<CloudState>>,
    Extension(Tls(tls)): Extension<Tls>,
    headers: HeaderMap,
    Path(tenant): Path<String>,
) -> Response {
    s.latency("entra_metadata").await;
    metadata(&s, tls, &headers, &tenant, true)
}

/// Counts the call, applies an injected fault, and checks the tenant: the common prologue of the
/// metadata and keys documents.
fn document_guard<'a>(
    s: &'a CloudState,
    tls: bool,
    headers: &HeaderMap,
    tenant: &str,
    counter: &str,
) -> Result<std::sync::RwLockReadGuard<'a, Registry>, Box<Response>> {
    s.count(counter);
    if let Some(f) = s.take_fault(counter) {
        return Err(Box::new(aad_error(
            s,
            tls,
            headers,
            f.status,
            "temporarily_unavailable",
            90033,
            "Injected failure.",
        )));
    }
    let reg = s.registry();
    if !reg.is_tenant(tenant) {
        drop(reg);
        return Err(Box::new(unknown_tenant(s, tls, headers, tenant)));
    }
    Ok(reg)
}

fn metadata(s: &CloudState, tls: bool, headers: &HeaderMap, tenant: &str, v2: bool) -> Response {
    let reg = match document_guard(s, tls, headers, tenant, "entra_metadata") {
        Ok(reg) => reg,
        Err(resp) => return *resp,
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
            "jwks_uri": format!("{base}/{tid}/discovery/keys"),
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
    s.latency("entra_jwks").await;
    jwks(&s, tls, &headers, &tenant, false)
}

/// `GET /{tenant}/discovery/v2.0/keys`.
pub async fn jwks_v2(
    State(s): State<Arc<CloudState>>,
    Extension(Tls(tls)): Extension<Tls>,
    headers: HeaderMap,
    Path(tenant): Path<String>,
) -> Response {
    s.latency("entra_jwks").await;
    jwks(&s, tls, &headers, &tenant, true)
}

fn jwks(s: &CloudState, tls: bool, headers: &HeaderMap, tenant: &str, v2: bool) -> Response {
    let reg = match document_guard(s, tls, headers, tenant, "entra_jwks") {
        Ok(reg) => reg,
        Err(resp) => return *resp,
    };
    let issuer = v2.then(|| reg.v2_issuer());
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

/// The outcome of an Entra flow: a token body, or an AADSTS error (status, error, code, message).
pub type EntraResult = Result<Value, (u16, &'static str, u32, String)>;

/// `POST /{tenant}/oauth2/v2.0/token`.
pub async fn token(
    State(s): State<Arc<CloudState>>,
    Extension(Tls(tls)): Extension<Tls>,
    headers: HeaderMap,
    Path(tenant): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    s.count("entra_token");
    s.latency("entra_token").await;
    if let Some(f) = s.take_fault("entra_token") {
        let (error, code) = match f.status {
            429 => ("temporarily_unavailable", 50196),
            s if s >= 500 => ("temporarily_unavailable", 90033),
            _ => ("invalid_request", 90024),
        };
        let error = f.code.as_deref().unwrap_or(error).to_string();
        let mut r = aad_error(
            &s,
            tls,
            &headers,
            f.status,
            &error,
            code,
            "Injected failure. Please try again.",
        );
        add_retry_after(&mut r, f.retry_after);
        return r;
    }
    if !s.registry().is_tenant(&tenant) {
        return unknown_tenant(&s, tls, &headers, &tenant);
    }
    match token_flow(&s, &form) {
        Ok(body) => Json(body).into_response(),
        Err((status, error, code, message)) => {
            aad_error(&s, tls, &headers, status, error, code, &message)
        }
    }
}

fn required<'a>(
    form: &'a HashMap<String, String>,
    name: &str,
) -> Result<&'a str, (u16, &'static str, u32, String)> {
    form.get(name)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            (
                400,
                "invalid_request",
                900144,
                format!("The request body must contain the following parameter: '{name}'."),
            )
        })
}

/// Dispatches on `grant_type`.
pub fn token_flow(s: &CloudState, form: &HashMap<String, String>) -> EntraResult {
    let grant = required(form, "grant_type")?;
    match grant {
        "client_credentials" => client_credentials(s, form),
        "password" => crate::agent_id::password_grant(s, &s.registry(), form),
        "urn:ietf:params:oauth:grant-type:jwt-bearer" => on_behalf_of(s, form),
        other => Err((
            400,
            "unsupported_grant_type",
            70003,
            format!("The app requested an unsupported grant type '{other}'."),
        )),
    }
}

/// On-behalf-of (`jwt-bearer`, `requested_token_use=on_behalf_of`) by an agent identity with its T1.
fn on_behalf_of(s: &CloudState, form: &HashMap<String, String>) -> EntraResult {
    if form.get("requested_token_use").map(String::as_str) != Some("on_behalf_of") {
        return Err((
            400,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'requested_token_use'.".into(),
        ));
    }
    let client_id = required(form, "client_id")?;
    let scope = required(form, "scope")?;
    let assertion = required(form, "assertion")?;
    let t1 = form.get("client_assertion").filter(|v| !v.is_empty()).ok_or_else(|| {
        (401, "invalid_client", 7000218, "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.".to_string())
    })?;
    let reg = s.registry();
    let agent = reg.app(client_id).filter(|a| a.agent_blueprint.is_some()).ok_or_else(|| {
        (400, "unauthorized_client", 700016, format!("Application with identifier '{client_id}' was not found in the directory '{}'.", reg.tenant_domain))
    })?;
    let resource = resource_of_scope(scope)?;
    crate::agent_id::agent_obo_token(s, &reg, agent, t1, assertion, &resource)
}

/// Client credentials with a federated client assertion.
fn client_credentials(s: &CloudState, form: &HashMap<String, String>) -> EntraResult {
    let client_id = required(form, "client_id")?;
    let scope = required(form, "scope")?;
    let reg = s.registry();
    let client = reg.app(client_id).filter(|a| a.service_principal_object_id.is_some()).ok_or_else(|| {
        (400, "unauthorized_client", 700016, format!(
            "Application with identifier '{client_id}' was not found in the directory '{}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.",
            reg.tenant_domain))
    })?;
    if form.contains_key("client_secret") {
        return Err((401, "invalid_client", 7000215, "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.".into()));
    }
    let assertion = form.get("client_assertion").filter(|v| !v.is_empty()).ok_or_else(|| {
        (401, "invalid_client", 7000218, "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.".to_string())
    })?;
    if form.get("client_assertion_type").map(String::as_str)
        != Some(crate::entra::JWT_BEARER_ASSERTION)
    {
        return Err((400, "invalid_request", 70002, "The client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer.".into()));
    }
    let resource = resource_of_scope(scope)?;
    if client.agent_blueprint.is_some() {
        return crate::agent_id::agent_app_token(s, &reg, client, assertion, &resource);
    }
    if resource.eq_ignore_ascii_case(TOKEN_EXCHANGE_URI) {
        let fmi_path = required(form, "fmi_path")?;
        return crate::agent_id::blueprint_exchange_token(s, &reg, client, assertion, fmi_path);
    }
    verify_federated_assertion(s, &reg, client, assertion)?;
    let resource_app = reg.resource_app(&resource).filter(|a| a.service_principal_object_id.is_some()).ok_or_else(|| {
        (400, "invalid_resource", 500011, format!(
            "The resource principal named {resource} was not found in the tenant named {}. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your authentication request to the wrong tenant.",
            reg.tenant_domain))
    })?;
    let roles: Vec<&str> = resource_app
        .app_role_assignments
        .iter()
        .filter(|r| r.client_app_id.eq_ignore_ascii_case(&client.app_id))
        .map(|r| r.role.as_str())
        .collect();
    let claims = app_token_claims(s, &reg, client, resource_app, &resource, &roles, &[]);
    let v1 = resource_app.requested_access_token_version.unwrap_or(1) == 1;
    Ok(issue(s, &reg, claims, v1))
}

/// Signs access-token claims and wraps them in the v2 endpoint's response.
pub fn issue(s: &CloudState, reg: &Registry, claims: Value, v1: bool) -> Value {
    let lifetime = access_token_lifetime(reg);
    let mut claims = claims;
    let now = unix_seconds(s.clock.now());
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
/// `requestedAccessTokenVersion`; `extra` adds claims (Agent ID facets).
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
        "idtyp": "app",
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
    for (k, v) in extra {
        c[*k] = v.clone();
    }
    c
}

/// The resource of a client-credentials scope (`<resource>/.default`, exactly one).
pub fn resource_of_scope(scope: &str) -> Result<String, (u16, &'static str, u32, String)> {
    let scopes: Vec<&str> = scope.split_whitespace().collect();
    if scopes.len() > 1 {
        return Err((
            400,
            "invalid_scope",
            700022,
            format!(
                "The provided value for the input parameter scope is not valid because it contains more than one resource. Scope {scope} is not valid."
            ),
        ));
    }
    let Some(resource) = scope.strip_suffix("/.default") else {
        return Err((
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
) -> Result<Value, (u16, &'static str, u32, String)> {
    let malformed = || {
        (
            400,
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
        return Err((
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
        return Err((
            401,
            "invalid_client",
            700213,
            format!(
                "No matching federated identity record found for presented assertion subject '{sub}'. Please check your federated identity credential Subject, Audience and Issuer against the presented assertion. https://learn.microsoft.com/entra/workload-id/workload-identity-federation"
            ),
        ));
    }
    if !by_subject.iter().any(|f| {
        f.audiences
            .iter()
            .any(|fa| auds.iter().any(|a| audience_matches(fa, a)))
    }) {
        return Err((
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
    let keys = if iss == reg.v2_issuer() || iss == reg.v1_issuer() {
        s.tenant_keys
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    } else if reg.aks_issuers.contains(&iss) {
        s.aks_keys.read().unwrap_or_else(|p| p.into_inner()).clone()
    } else {
        return Err((
            401,
            "invalid_client",
            700027,
            format!(
                "Client assertion failed signature validation. The keys of issuer '{iss}' could not be retrieved."
            ),
        ));
    };
    keys.verify(assertion).map_err(|e| match e {
        VerifyError::Algorithm => (
            401,
            "invalid_client",
            700027,
            "Client assertion failed signature validation. Unsupported algorithm.".to_string(),
        ),
        VerifyError::UnknownKey => (
            401,
            "invalid_client",
            700027,
            "Client assertion failed signature validation. The signing key was not found."
                .to_string(),
        ),
        _ => (
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
        return Err((
            400,
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
