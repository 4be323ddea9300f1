//! Entra Agent ID flows (protocols.md §5.8), on the local Entra's token endpoint:
//!
//! - **T1**: the Blueprint, authenticated by its managed-identity federated credential, asks for
//!   `api://AzureADTokenExchange/.default` with `fmi_path=<agent identity>`;
//! - **TR** (autonomous): the agent identity presents T1 as its client assertion (client credentials);
//! - **TU** (on-behalf-of): the agent identity presents T1 and the user's token (`jwt-bearer`,
//!   `requested_token_use=on_behalf_of`);
//! - the local developer's sign-in (the password grant) for the Blueprint's `access_as_user` scope.

use crate::entra::{AadError, EntraResult, app_token_claims, issue, verify_federated_assertion};
use crate::keys::VerifyError;
use crate::registry::{App, Registry, TOKEN_EXCHANGE_APP_ID};
use crate::state::CloudState;
use crate::state::unix_seconds;
use serde_json::{Value, json};
use std::collections::HashMap;

/// Agent ID facets (protocols.md §5.7): 11 = AgentIdentity.
/// `xms_act_fct` of an agent identity's tokens (11: AgentIdentity), as the published sample has it.
const AGENT_ACTOR_FACETS: &str = "3 9 11";
/// `xms_sub_fct` when the agent identity is also the subject (autonomous), as the sample has it.
const AGENT_SUBJECT_FACETS: &str = "9 3 11";

/// T1: the Blueprint's exchange token for one agent identity.
pub fn blueprint_exchange_token(
    s: &CloudState,
    reg: &Registry,
    blueprint: &App,
    assertion: &str,
    fmi_path: &str,
) -> EntraResult {
    verify_federated_assertion(s, reg, blueprint, assertion)?;
    let agent = reg.app(fmi_path).filter(|a| a.agent_blueprint.as_deref().is_some_and(|b| b.eq_ignore_ascii_case(&blueprint.app_id))).ok_or_else(|| {
        AadError::new(400, "unauthorized_client", 700016, format!("Agent identity '{fmi_path}' was not found under the agent identity blueprint '{}' in the directory '{}'.", blueprint.app_id, reg.tenant_domain))
    })?;
    let claims = json!({
        "aud": TOKEN_EXCHANGE_APP_ID,
        "iss": reg.v2_issuer(),
        "azp": blueprint.app_id,
        "azpacr": "2",
        "idtyp": "app",
        "oid": blueprint.service_principal_object_id,
        "sub": agent.app_id,
        "tid": reg.tenant_id,
        "ver": "2.0",
        "uti": crate::state::random_id(22),
    });
    Ok(issue(s, reg, claims, false))
}

/// Checks a T1 presented by an agent identity: ours, unexpired, for this agent, from its Blueprint.
fn verify_t1(s: &CloudState, reg: &Registry, agent: &App, t1: &str) -> Result<(), AadError> {
    let bad = |m: &str| AadError::new(401, "invalid_client", 700213, m.to_string());
    let claims = s
        .tenant_keys
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .verify(t1)
        .map_err(|e| match e {
            VerifyError::Malformed => AadError::new(
                400,
                "invalid_client",
                50027,
                "JWT token is invalid or malformed.".to_string(),
            ),
            _ => AadError::new(
                401,
                "invalid_client",
                700027,
                "Client assertion failed signature validation.".to_string(),
            ),
        })?;
    if claims["exp"].as_u64().unwrap_or(0) + 300 < unix_seconds(s.clock.now()) {
        return Err(AadError::new(
            400,
            "invalid_client",
            700024,
            "Client assertion is not within its valid time range.".into(),
        ));
    }
    if claims["iss"] != json!(reg.v2_issuer()) || claims["aud"] != json!(TOKEN_EXCHANGE_APP_ID) {
        return Err(bad(
            "The client assertion is not an agent identity exchange token (T1) of this tenant.",
        ));
    }
    if claims["sub"].as_str() != Some(agent.app_id.as_str())
        || claims["azp"].as_str().map(str::to_ascii_lowercase)
            != agent
                .agent_blueprint
                .as_ref()
                .map(|b| b.to_ascii_lowercase())
    {
        return Err(bad(&format!(
            "The client assertion was not issued to agent identity '{}' by its blueprint.",
            agent.app_id
        )));
    }
    Ok(())
}

/// The claims every agent identity's token carries, as Microsoft's published autonomous-agent
/// sample shows them (tests/recorded/entra/agent-autonomous-token.json): the actor facets (11 is
/// AgentIdentity), the tenant facets, the parent Blueprint, `xms_ftd`, and `idtyp` whatever the
/// resource requests.
fn agent_facets(agent: &App) -> Vec<(&'static str, Value)> {
    vec![
        ("xms_par_app_azp", json!(agent.agent_blueprint)),
        ("xms_act_fct", json!(AGENT_ACTOR_FACETS)),
        ("xms_tnt_fct", json!("3 9")),
        ("xms_ftd", json!(crate::state::random_id(43))),
        ("idtyp", json!("app")),
    ]
}

/// TR: the agent identity's own (app-only) token for a resource.
pub fn agent_app_token(
    s: &CloudState,
    reg: &Registry,
    agent: &App,
    t1: &str,
    resource_uri: &str,
) -> EntraResult {
    verify_t1(s, reg, agent, t1)?;
    let resource = resource_app(reg, resource_uri)?;
    let roles: Vec<&str> = resource
        .app_role_assignments
        .iter()
        .filter(|r| r.client_app_id.eq_ignore_ascii_case(&agent.app_id))
        .map(|r| r.role.as_str())
        .collect();
    let mut extra = agent_facets(agent);
    // The subject is the agent identity itself (a service principal: xms_idrel 7).
    extra.push(("xms_sub_fct", json!(AGENT_SUBJECT_FACETS)));
    extra.push(("xms_idrel", json!("7 10")));
    let claims = app_token_claims(s, reg, agent, resource, resource_uri, &roles, &extra);
    Ok(issue(
        s,
        reg,
        claims,
        resource.requested_access_token_version.unwrap_or(1) == 1,
    ))
}

/// TU: the agent identity acting for the user whose token (`aud` = the Blueprint) it presents.
pub fn agent_obo_token(
    s: &CloudState,
    reg: &Registry,
    agent: &App,
    t1: &str,
    user_token: &str,
    resource_uri: &str,
) -> EntraResult {
    verify_t1(s, reg, agent, t1)?;
    let user = verify_user_token(s, reg, agent, user_token)?;
    let resource = resource_app(reg, resource_uri)?;
    let granted: Vec<&str> = resource
        .delegated_grants
        .iter()
        .filter(|g| g.client_app_id.eq_ignore_ascii_case(&agent.app_id))
        .map(|g| g.scope.as_str())
        .collect();
    if granted.is_empty() {
        return Err(AadError::new(
            400,
            "invalid_grant",
            65001,
            format!(
                "The user or administrator has not consented to use the application with ID '{}'. Send an interactive authorization request for this user and resource.",
                agent.app_id
            ),
        ));
    }
    let v1 = resource.requested_access_token_version.unwrap_or(1) == 1;
    let mut claims = app_token_claims(
        s,
        reg,
        agent,
        resource,
        resource_uri,
        &[],
        &agent_facets(agent),
    );
    claims["idtyp"] = json!("user");
    claims["scp"] = json!(granted.join(" "));
    claims["oid"] = user["oid"].clone();
    claims["sub"] = user["oid"].clone();
    claims["name"] = user["name"].clone();
    claims["upn"] = user["upn"]
        .clone()
        .as_str()
        .map(|u| json!(u))
        .unwrap_or_else(|| user["preferred_username"].clone());
    claims["xms_sub_fct"] = json!("1");
    Ok(issue(s, reg, claims, v1))
}

fn verify_user_token(
    s: &CloudState,
    reg: &Registry,
    agent: &App,
    token: &str,
) -> Result<Value, AadError> {
    let invalid = |m: &str| {
        AadError::new(
            400,
            "invalid_grant",
            50013,
            format!("Assertion failed signature validation or is invalid: {m}"),
        )
    };
    let claims = s
        .tenant_keys
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .verify(token)
        .map_err(|e| match e {
            VerifyError::Malformed => invalid("malformed"),
            VerifyError::UnknownKey => invalid("unknown signing key"),
            _ => invalid("signature"),
        })?;
    if claims["exp"].as_u64().unwrap_or(0) < unix_seconds(s.clock.now()) {
        return Err(AadError::new(
            400,
            "invalid_grant",
            500133,
            "Assertion is not within its valid time range.".into(),
        ));
    }
    let blueprint = agent.agent_blueprint.clone().unwrap_or_default();
    let aud = claims["aud"].as_str().unwrap_or_default();
    if !(aud.eq_ignore_ascii_case(&blueprint)
        || aud.eq_ignore_ascii_case(&format!("api://{blueprint}")))
        || claims["tid"] != json!(reg.tenant_id)
    {
        return Err(invalid(
            "the user token's audience is not the agent's blueprint",
        ));
    }
    // OBO works for user principals only: a delegated token (it has `scp`), whatever its scopes;
    // Entra checks no particular scope on the incoming assertion, only its audience.
    if !claims["scp"].is_string() {
        return Err(invalid(
            "the assertion is an app-only token; on-behalf-of needs a user's token",
        ));
    }
    Ok(claims)
}

fn resource_app<'a>(reg: &'a Registry, resource_uri: &str) -> Result<&'a App, AadError> {
    reg.resource_app(resource_uri).filter(|a| a.service_principal_object_id.is_some()).ok_or_else(|| {
        AadError::new(400, "invalid_resource", 500011, format!("The resource principal named {resource_uri} was not found in the tenant named {}.", reg.tenant_domain))
    })
}

/// The local developer's sign-in: the password grant for delegated scopes (e.g. the Blueprint's
/// `api://<blueprint>/access_as_user`), as a public client (the Client SPA).
pub fn password_grant(
    s: &CloudState,
    reg: &Registry,
    form: &HashMap<String, String>,
) -> EntraResult {
    let get = |k: &str| form.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let (Some(client_id), Some(username), Some(password), Some(scope)) = (
        get("client_id"),
        get("username"),
        get("password"),
        get("scope"),
    ) else {
        return Err(AadError::new(400, "invalid_request", 900144, "The request body must contain the following parameters: 'client_id', 'username', 'password', 'scope'.".into()));
    };
    let client = reg.app(client_id).ok_or_else(|| {
        AadError::new(
            400,
            "unauthorized_client",
            700016,
            format!(
                "Application with identifier '{client_id}' was not found in the directory '{}'.",
                reg.tenant_domain
            ),
        )
    })?;
    let user = reg
        .users
        .iter()
        .find(|u| u.upn.eq_ignore_ascii_case(username) && u.password == password)
        .ok_or_else(|| {
            AadError::new(
                400,
                "invalid_grant",
                50126,
                "Error validating credentials due to invalid username or password.".to_string(),
            )
        })?;
    let requested: Vec<&str> = scope
        .split_whitespace()
        .filter(|s| !matches!(*s, "openid" | "profile" | "offline_access" | "email"))
        .collect();
    let [one] = requested[..] else {
        return Err(AadError::new(
            400,
            "invalid_scope",
            70011,
            format!(
                "The provided value for the input parameter 'scope' is not valid. Request scopes of exactly one resource: {scope}"
            ),
        ));
    };
    let (resource_uri, name) = one.rsplit_once('/').ok_or_else(|| {
        AadError::new(
            400,
            "invalid_scope",
            70011,
            format!("The scope '{one}' is not valid."),
        )
    })?;
    let resource = resource_app(reg, resource_uri)?;
    if !resource.exposed_scopes.iter().any(|s| s == name) {
        return Err(AadError::new(
            400,
            "invalid_scope",
            70011,
            format!("The scope '{one}' does not exist on the resource."),
        ));
    }
    if !resource
        .delegated_grants
        .iter()
        .any(|g| g.client_app_id.eq_ignore_ascii_case(&client.app_id) && g.scope == name)
    {
        return Err(AadError::new(
            400,
            "invalid_grant",
            65001,
            format!(
                "The user or administrator has not consented to use the application with ID '{}' named '{}'.",
                client.app_id, client.display_name
            ),
        ));
    }
    let v1 = resource.requested_access_token_version.unwrap_or(1) == 1;
    let mut claims = app_token_claims(s, reg, client, resource, resource_uri, &[], &[]);
    if resource.requests_optional_claim("idtyp") {
        claims["idtyp"] = json!("user");
    }
    claims["scp"] = json!(name);
    claims["oid"] = json!(user.object_id);
    claims["sub"] = json!(user.object_id);
    claims["name"] = json!(user.name);
    claims["preferred_username"] = json!(user.upn);
    if v1 {
        claims["upn"] = json!(user.upn);
    }
    Ok(issue(s, reg, claims, v1))
}
