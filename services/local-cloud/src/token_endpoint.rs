//! Microsoft Entra's token endpoint, `POST /{tenant}/oauth2/v2.0/token`: the grants by
//! `grant_type`, each handed to the module that issues it ([`crate::entra`] for client
//! credentials, [`crate::agent_id`] for the Agent ID grants and the developer's sign-in). It sits
//! above both, so neither depends on the other's dispatch.

use crate::agent_id;
use crate::entra::{
    AadError, EntraResult, JWT_BEARER_ASSERTION, Tls, aad_error, app_token_claims, issue,
    resource_of_scope, unknown_tenant, verify_federated_assertion,
};
use crate::identity::add_retry_after;
use crate::registry::TOKEN_EXCHANGE_URI;
use crate::state::CloudState;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Form, Json};
use std::collections::HashMap;
use std::sync::Arc;

/// `POST /{tenant}/oauth2/v2.0/token`.
pub async fn token(
    State(s): State<Arc<CloudState>>,
    Extension(Tls(tls)): Extension<Tls>,
    headers: HeaderMap,
    Path(tenant): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let fault = match s
        .door("entra_token", "application/json; charset=utf-8")
        .await
    {
        Ok(f) => f,
        Err(canned) => return canned,
    };
    if let Some(f) = fault {
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
        return unknown_tenant(&tenant).render(&s, tls, &headers);
    }
    match token_flow(&s, &form) {
        Ok(body) => Json(body).into_response(),
        Err(e) => e.render(&s, tls, &headers),
    }
}

fn required<'a>(form: &'a HashMap<String, String>, name: &str) -> Result<&'a str, AadError> {
    form.get(name)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            AadError::new(
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
        "password" => agent_id::password_grant(s, &s.registry(), form),
        "urn:ietf:params:oauth:grant-type:jwt-bearer" => on_behalf_of(s, form),
        other => Err(AadError::new(
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
        return Err(AadError::new(
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
        AadError::new(401, "invalid_client", 7000218, "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.".to_string())
    })?;
    let reg = s.registry();
    let agent = reg.app(client_id).filter(|a| a.agent_blueprint.is_some()).ok_or_else(|| {
        AadError::new(400, "unauthorized_client", 700016, format!("Application with identifier '{client_id}' was not found in the directory '{}'.", reg.tenant_domain))
    })?;
    let resource = resource_of_scope(scope)?;
    agent_id::agent_obo_token(s, &reg, agent, t1, assertion, &resource)
}

/// Client credentials with a federated client assertion.
fn client_credentials(s: &CloudState, form: &HashMap<String, String>) -> EntraResult {
    let client_id = required(form, "client_id")?;
    let scope = required(form, "scope")?;
    let reg = s.registry();
    // Registered but never given a service principal (`az ad app create` without `az ad sp create`).
    if reg
        .app(client_id)
        .is_some_and(|a| a.service_principal_object_id.is_none())
    {
        return Err(AadError::new(
            401,
            "invalid_client",
            7000229,
            format!(
                "The client application {client_id} is missing service principal in the tenant {}. See instructions here: https://go.microsoft.com/fwlink/?linkid=2225119",
                reg.tenant_id
            ),
        ));
    }
    let client = reg.app(client_id).filter(|a| a.service_principal_object_id.is_some()).ok_or_else(|| {
        AadError::new(400, "unauthorized_client", 700016, format!(
            "Application with identifier '{client_id}' was not found in the directory '{}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.",
            reg.tenant_domain))
    })?;
    if form.contains_key("client_secret") {
        return Err(AadError::new(
            401,
            "invalid_client",
            7000215,
            format!(
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{}'.",
                client.app_id
            ),
        ));
    }
    let assertion = form.get("client_assertion").filter(|v| !v.is_empty()).ok_or_else(|| {
        AadError::new(401, "invalid_client", 7000218, "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.".to_string())
    })?;
    if form.get("client_assertion_type").map(String::as_str) != Some(JWT_BEARER_ASSERTION) {
        return Err(AadError::new(400, "invalid_request", 70002, "The client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer.".into()));
    }
    let resource = resource_of_scope(scope)?;
    if client.agent_blueprint.is_some() {
        return agent_id::agent_app_token(s, &reg, client, assertion, &resource);
    }
    if resource.eq_ignore_ascii_case(TOKEN_EXCHANGE_URI) {
        let fmi_path = required(form, "fmi_path")?;
        return agent_id::blueprint_exchange_token(s, &reg, client, assertion, fmi_path);
    }
    verify_federated_assertion(s, &reg, client, assertion)?;
    let resource_app = reg.resource_app(&resource).filter(|a| a.service_principal_object_id.is_some()).ok_or_else(|| {
        AadError::new(400, "invalid_resource", 500011, format!(
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
