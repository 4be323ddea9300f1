//! The managed-identity endpoints: Container Apps / App Service (`IDENTITY_ENDPOINT`, api-version
//! 2019-08-01) and the VM Instance Metadata Service (api-version 2018-02-01); and AKS projected
//! service-account tokens.

use crate::registry::{ManagedIdentity, Registry, TOKEN_EXCHANGE_APP_ID, TOKEN_EXCHANGE_URI};
use crate::state::unix_seconds;
use crate::state::{CloudState, guid};
use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;

/// Mints the managed identity's token for `resource`: v2 issuer, `aud` the resource's app id
/// (the AzureADTokenExchange GUID for `api://AzureADTokenExchange`), `sub` = `oid` = its object id.
pub fn mint_mi_token(
    state: &CloudState,
    mi: &ManagedIdentity,
    resource: &str,
) -> Option<(String, u64)> {
    let reg = state.registry();
    let aud = audience_for_resource(&reg, resource)?;
    // The issuing clock, skewed when a test says so (`CloudState::skew_clock`).
    let now = unix_seconds(state.issuing_now("managed_identity"));
    let exp = now + reg.lifetimes.managed_identity;
    let mut claims = json!({
        "aud": aud,
        "iss": reg.v2_issuer(),
        "iat": now, "nbf": now, "exp": exp,
        "aio": opaque(),
        "azp": mi.client_id,
        "azpacr": "2",
        "idp": reg.v1_issuer(),
        "oid": mi.object_id,
        "rh": opaque(),
        "sub": mi.object_id,
        "tid": reg.tenant_id,
        "uti": opaque(),
        "ver": "2.0",
    });
    // Microsoft's own resources (the token exchange here) get the managed identity's resource id
    // and `idtyp`; a token for a customer's app carries neither unless that app requests `idtyp`.
    if aud == TOKEN_EXCHANGE_APP_ID {
        claims["idtyp"] = json!("app");
        claims["xms_mirid"] = json!(mi.resource_id);
    } else if reg
        .resource_app(&aud)
        .is_some_and(|a| a.requests_optional_claim("idtyp"))
    {
        claims["idtyp"] = json!("app");
    }
    drop(reg);
    let token = state
        .tenant_keys
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .sign(&claims, false);
    Some((token, exp))
}

fn audience_for_resource(reg: &Registry, resource: &str) -> Option<String> {
    let r = resource.trim_end_matches("/.default").trim_end_matches('/');
    if r.eq_ignore_ascii_case(TOKEN_EXCHANGE_URI) || r.eq_ignore_ascii_case(TOKEN_EXCHANGE_APP_ID) {
        return Some(TOKEN_EXCHANGE_APP_ID.into());
    }
    reg.resource_app(r).map(|a| a.app_id.clone())
}

/// A projected service-account token of an AKS cluster, as kubelet writes it.
pub fn mint_projected_token(
    state: &CloudState,
    namespace: &str,
    service_account: &str,
) -> Result<String, String> {
    let reg = state.registry();
    let issuer = reg
        .aks_issuers
        .first()
        .ok_or("the registry has no aks_issuers")?
        .clone();
    let now = unix_seconds(state.clock.now());
    let claims = json!({
        "aud": [TOKEN_EXCHANGE_URI],
        "iss": issuer,
        "iat": now, "nbf": now, "exp": now + reg.lifetimes.projected_token,
        "sub": format!("system:serviceaccount:{namespace}:{service_account}"),
        "kubernetes.io": { "namespace": namespace, "serviceaccount": { "name": service_account, "uid": guid() } },
    });
    drop(reg);
    Ok(state
        .aks_keys
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .sign(&claims, false))
}

fn opaque() -> String {
    crate::state::random_id(24)
}

/// The identity the query selects: `params` maps each query parameter to the identity field it
/// names (`client_id`, `object_id`, `mi_res_id`).
fn selected(
    state: &CloudState,
    q: &HashMap<String, String>,
    params: &[(&str, &'static str)],
) -> Option<ManagedIdentity> {
    let by: Vec<(&str, &str)> = params
        .iter()
        .filter_map(|(param, field)| q.get(*param).map(|v| (*field, v.as_str())))
        .collect();
    select(&state.registry(), &by).ok().cloned()
}

/// IMDS without a selector: the system-assigned identity, else the one user-assigned identity;
/// with several user-assigned ones and no system-assigned, IMDS cannot pick (recorded in Go
/// SDK output: `{"error":"invalid_request","error_description":"Multiple user assigned
/// identities exist, please specify the clientId / resourceId of the identity in the token
/// request"}`).
fn imds_default(reg: &Registry) -> Result<ManagedIdentity, &'static str> {
    let attached: Vec<&ManagedIdentity> = reg
        .managed_identities
        .iter()
        .filter(|m| m.attached)
        .collect();
    if let Some(system) = attached.iter().find(|m| m.system_assigned) {
        return Ok((*system).clone());
    }
    match attached.as_slice() {
        [only] => Ok((*only).clone()),
        [] => Err("Identity not found"),
        _ => Err(
            "Multiple user assigned identities exist, please specify the clientId / resourceId of the identity in the token request",
        ),
    }
}

fn select<'a>(reg: &'a Registry, by: &[(&str, &str)]) -> Result<&'a ManagedIdentity, ()> {
    let attached = reg.managed_identities.iter().filter(|m| m.attached);
    let mut found = None;
    let mut selectors = 0;
    for (field, value) in by {
        selectors += 1;
        found = match *field {
            "client_id" => attached
                .clone()
                .find(|m| m.client_id.eq_ignore_ascii_case(value)),
            "object_id" => attached
                .clone()
                .find(|m| m.object_id.eq_ignore_ascii_case(value)),
            _ => attached
                .clone()
                .find(|m| m.resource_id.eq_ignore_ascii_case(value)),
        };
    }
    match selectors {
        0 => reg
            .managed_identities
            .iter()
            .find(|m| m.system_assigned && m.attached)
            .ok_or(()),
        1 => found.ok_or(()),
        _ => Err(()),
    }
}

/// `GET /msi/token`: the Container Apps / App Service endpoint.
pub async fn app_service(
    State(state): State<Arc<CloudState>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let error = |status: u16, message: &str| {
        let correlation = guid();
        let mut resp = (
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            Json(json!({"statusCode": status, "message": message, "correlationId": correlation})),
        )
            .into_response();
        resp.headers_mut().insert(
            "x-correlation-id",
            HeaderValue::from_str(&correlation).expect("guid"),
        );
        resp
    };
    let fault = match state
        .door("identity_endpoint", "application/json; charset=utf-8")
        .await
    {
        Ok(f) => f,
        Err(canned) => return canned,
    };
    if let Some(f) = fault {
        let mut r = error(f.status, "Injected failure.");
        add_retry_after(&mut r, f.retry_after);
        return r;
    }
    let expected = state
        .identity_header
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    if headers
        .get("x-identity-header")
        .and_then(|v| v.to_str().ok())
        != Some(expected.as_str())
    {
        // As recorded on Container Apps (AzureAD/microsoft-authentication-library-for-dotnet#5077):
        // 403 with an empty body.
        return StatusCode::FORBIDDEN.into_response();
    }
    if q.get("api-version").map(String::as_str) != Some("2019-08-01") {
        return error(
            400,
            "The api-version is missing or not supported; use 2019-08-01.",
        );
    }
    let Some(resource) = q.get("resource").filter(|r| !r.is_empty()) else {
        return error(400, "The resource parameter is required.");
    };
    // App Service names the resource-id selector mi_res_id; principal_id and object_id are aliases.
    let Some(mi) = selected(
        &state,
        &q,
        &[
            ("client_id", "client_id"),
            ("principal_id", "object_id"),
            ("object_id", "object_id"),
            ("mi_res_id", "mi_res_id"),
        ],
    ) else {
        return error(400, "Unable to load the proper Managed Identity.");
    };
    let Some((token, exp)) = mint_mi_token(&state, &mi, resource) else {
        // Empirically a wrong resource is a vague 500 on App Service (MSAL's comment).
        return error(
            500,
            "An unexpected error occured while fetching the AAD Token.",
        );
    };
    Json(json!({
        "access_token": token,
        "expires_on": exp.to_string(),
        "resource": resource,
        "token_type": "Bearer",
        "client_id": mi.client_id,
    }))
    .into_response()
}

/// `GET /metadata/identity/oauth2/token`: the VM Instance Metadata Service.
pub async fn imds(
    State(state): State<Arc<CloudState>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let error = |status: u16, code: &str, description: &str| {
        (
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            Json(json!({"error": code, "error_description": description})),
        )
            .into_response()
    };
    let fault = match state.door("imds", "application/json; charset=utf-8").await {
        Ok(f) => f,
        Err(canned) => return canned,
    };
    if let Some(f) = fault {
        let code = f.code.clone().unwrap_or_else(|| {
            if f.status >= 500 {
                "unknown".into()
            } else {
                "unavailable".into()
            }
        });
        let mut r = error(f.status, &code, "Injected failure.");
        add_retry_after(&mut r, f.retry_after);
        return r;
    }
    if headers.get("metadata").and_then(|v| v.to_str().ok()) != Some("true") {
        return error(
            400,
            "bad_request_102",
            "Required metadata header not specified",
        );
    }
    if !q.contains_key("api-version") {
        return error(
            400,
            "invalid_request",
            "Required query variable 'api-version' is missing",
        );
    }
    let Some(resource) = q.get("resource").filter(|r| !r.is_empty()) else {
        return error(
            400,
            "invalid_request",
            "Required query variable 'resource' is missing",
        );
    };
    // IMDS names the resource-id selector msi_res_id.
    let selectors = [
        ("client_id", "client_id"),
        ("object_id", "object_id"),
        ("msi_res_id", "mi_res_id"),
    ];
    let mi = if selectors.iter().any(|(p, _)| q.contains_key(*p)) {
        match selected(&state, &q, &selectors) {
            Some(mi) => mi,
            None => return error(400, "invalid_request", "Identity not found"),
        }
    } else {
        match imds_default(&state.registry()) {
            Ok(mi) => mi,
            Err(why) => return error(400, "invalid_request", why),
        }
    };
    let now = unix_seconds(state.clock.now());
    let Some((token, exp)) = mint_mi_token(&state, &mi, resource) else {
        return error(
            400,
            "invalid_resource",
            &format!(
                "AADSTS500011: The resource principal named {resource} was not found in the tenant."
            ),
        );
    };
    Json(json!({
        "access_token": token,
        "refresh_token": "",
        "expires_in": exp.saturating_sub(now).to_string(),
        "expires_on": exp.to_string(),
        "not_before": now.to_string(),
        "resource": resource,
        "token_type": "Bearer",
    }))
    .into_response()
}

pub(crate) fn add_retry_after(resp: &mut Response, retry_after: Option<u64>) {
    if let Some(secs) = retry_after {
        resp.headers_mut()
            .insert("retry-after", HeaderValue::from(secs));
    }
}
