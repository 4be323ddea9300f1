//! What the local cloud knows: the tenant, its apps and federated credentials, the managed
//! identity, the AWS OIDC provider and roles. The default is the tutorial's end state; a JSON file
//! of the same shape replaces it, so every misconfiguration of the tutorial's troubleshooting table
//! can be written down and reproduced.

use crate::policy::PolicyDocument;
use serde::{Deserialize, Serialize};

/// The application id of Microsoft's first-party AzureADTokenExchange app: the `aud` of
/// managed-identity tokens requested for `api://AzureADTokenExchange`.
pub const TOKEN_EXCHANGE_APP_ID: &str = "fb60f99c-7a34-4190-8149-302f77469936";
/// The resource URI of that app.
pub const TOKEN_EXCHANGE_URI: &str = "api://AzureADTokenExchange";

/// Everything the emulated clouds hold.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Registry {
    /// Entra tenant id.
    pub tenant_id: String,
    /// A verified domain of the tenant (accepted in place of the id in URLs).
    pub tenant_domain: String,
    /// The managed identities; the one with `system_assigned` is the app's system identity.
    pub managed_identities: Vec<ManagedIdentity>,
    /// App registrations (with their service principals).
    pub apps: Vec<App>,
    /// Users who can sign in.
    #[serde(default)]
    pub users: Vec<User>,
    /// AKS OIDC issuers whose projected service-account tokens the local cloud can mint.
    #[serde(default)]
    pub aks_issuers: Vec<String>,
    /// The AWS account.
    pub aws_account_id: String,
    /// The AWS region the env file names.
    pub aws_region: String,
    /// IAM OIDC identity providers.
    pub oidc_providers: Vec<OidcProvider>,
    /// IAM roles.
    pub roles: Vec<Role>,
    /// Customer-managed IAM policies, by ARN (for `PolicyArns` session policies).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub managed_policies: Vec<ManagedPolicy>,
    /// Token lifetimes.
    #[serde(default)]
    pub lifetimes: Lifetimes,
}

/// A managed identity.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ManagedIdentity {
    /// Display name.
    pub name: String,
    /// Object (principal) id: the `sub` and `oid` of its tokens.
    pub object_id: String,
    /// Client id.
    pub client_id: String,
    /// ARM resource id.
    pub resource_id: String,
    /// Whether this is the system-assigned identity.
    pub system_assigned: bool,
    /// Whether it is attached to the app (an unattached identity is "not found" at the endpoint).
    #[serde(default = "yes")]
    pub attached: bool,
}

fn yes() -> bool {
    true
}

/// An app registration and its service principal.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct App {
    /// Display name.
    pub display_name: String,
    /// Application (client) id.
    pub app_id: String,
    /// The service principal's object id; `None` when no service principal exists.
    pub service_principal_object_id: Option<String>,
    /// `identifierUris`.
    #[serde(default)]
    pub identifier_uris: Vec<String>,
    /// `api.requestedAccessTokenVersion`: `None` or 1 issues v1 tokens, 2 issues v2.
    #[serde(default)]
    pub requested_access_token_version: Option<u8>,
    /// Federated identity credentials.
    #[serde(default)]
    pub federated_credentials: Vec<FederatedCredential>,
    /// App roles this app (as a resource) defines: value names.
    #[serde(default)]
    pub app_roles: Vec<String>,
    /// App roles granted to clients: (client app id, role value).
    #[serde(default)]
    pub app_role_assignments: Vec<AppRoleAssignment>,
    /// For an Agent Identity: its parent Agent Identity Blueprint's app id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_blueprint: Option<String>,
    /// Delegated scopes this app (as a resource) exposes, e.g. `access_as_user`.
    #[serde(default)]
    pub exposed_scopes: Vec<String>,
    /// Delegated permissions granted (admin consent) to clients: (client app id, scope).
    #[serde(default)]
    pub delegated_grants: Vec<DelegatedGrant>,
    /// Optional claims this app (as a resource) requests in its access tokens
    /// (`optionalClaims.accessToken[].name`), e.g. `idtyp`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub optional_claims: Vec<String>,
}

impl App {
    /// Whether this app, as a resource, requests the optional claim `name` in access tokens.
    pub fn requests_optional_claim(&self, name: &str) -> bool {
        self.optional_claims.iter().any(|c| c == name)
    }
}

/// A delegated permission a client may use on behalf of users (admin consent).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DelegatedGrant {
    /// The client's app id.
    pub client_app_id: String,
    /// The scope.
    pub scope: String,
}

/// A user who can sign in (the local developer).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// User principal name.
    pub upn: String,
    /// Display name.
    pub name: String,
    /// Object id.
    pub object_id: String,
    /// Password for the local developer sign-in (a local emulator only; never a real secret).
    pub password: String,
}

/// A federated identity credential on an app.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FederatedCredential {
    /// Name.
    pub name: String,
    /// Must equal the assertion's `iss`.
    pub issuer: String,
    /// Must equal the assertion's `sub`.
    pub subject: String,
    /// Must contain the assertion's `aud`.
    pub audiences: Vec<String>,
}

/// An app role granted to a client.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AppRoleAssignment {
    /// The client's app id.
    pub client_app_id: String,
    /// The role value.
    pub role: String,
}

/// A managed IAM policy.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ManagedPolicy {
    /// `arn:aws:iam::<account>:policy/<name>`.
    pub arn: String,
    /// Its default version's document.
    pub document: PolicyDocument,
}

/// An IAM OIDC identity provider.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OidcProvider {
    /// The URL; tokens whose `iss` equals it exactly are this provider's.
    pub url: String,
    /// The client-ID list (audiences).
    pub client_ids: Vec<String>,
    /// Thumbprints (recorded, not used: AWS checks the JWKS host against its trusted CAs).
    #[serde(default)]
    pub thumbprints: Vec<String>,
}

/// An IAM role.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Role {
    /// Role name.
    pub name: String,
    /// MaxSessionDuration, seconds (3600–43200).
    #[serde(default = "one_hour")]
    pub max_session_duration: u32,
    /// The trust (assume-role) policy.
    pub trust_policy: PolicyDocument,
    /// Inline permission policies.
    #[serde(default)]
    pub permission_policies: Vec<PolicyDocument>,
}

fn one_hour() -> u32 {
    3600
}

/// Token lifetimes, seconds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Lifetimes {
    /// Managed-identity tokens (Azure: about 24 h).
    pub managed_identity: u64,
    /// Shortest access token (Entra: random between 60 and 90 minutes).
    pub access_token_min: u64,
    /// Longest access token.
    pub access_token_max: u64,
    /// AKS projected service-account tokens (default 1 h).
    pub projected_token: u64,
    /// Test knob, not AWS behaviour: STS issues credentials for this many seconds whatever
    /// `DurationSeconds` asks, so clients' refresh paths can be exercised in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sts_credentials_override: Option<u64>,
}

impl Default for Lifetimes {
    fn default() -> Self {
        Self {
            managed_identity: 24 * 3600,
            access_token_min: 3600,
            access_token_max: 5400,
            projected_token: 3600,
            sts_credentials_override: None,
        }
    }
}

/// The ids of the tutorial's end state (stable, so env files stay valid across restarts).
pub mod ids {
    /// Tenant.
    pub const TENANT_ID: &str = "7d2f0e4c-8a1b-4c3d-9e5f-0a1b2c3d4e5f";
    /// The Container App's system-assigned identity (`MI_OBJECT_ID`).
    pub const MI_OBJECT_ID: &str = "140bf0a2-5c1d-4e6f-8a9b-0c1d2e3f4a5b";
    /// Its client id.
    pub const MI_CLIENT_ID: &str = "3c5e7a9b-1d2f-4a6b-8c0d-2e4f6a8b0c1d";
    /// Intermediary app (`STS_APP_ID`).
    pub const STS_APP_ID: &str = "faee0fc2-3b4c-4d5e-8f6a-7b8c9d0e1f2a";
    /// Its service principal (`STS_SP_OID`).
    pub const STS_SP_OID: &str = "7633d9c4-2a3b-4c5d-9e6f-1a2b3c4d5e6f";
    /// Agent Identity Blueprint (`BLUEPRINT_APP_ID`).
    pub const BLUEPRINT_APP_ID: &str = "f0f2df91-4e5f-4a6b-9c7d-8e9f0a1b2c3d";
    /// Blueprint service principal.
    pub const BLUEPRINT_SP_OID: &str = "2b4d6f8a-0c2e-4a6c-8e0a-2c4e6a8c0e2a";
    /// Agent Identity (`AGENT_CLIENT_ID`).
    pub const AGENT_CLIENT_ID: &str = "82323b11-6a7b-4c8d-9e0f-1a2b3c4d5e6f";
    /// Agent identity service principal.
    pub const AGENT_SP_OID: &str = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d";
    /// Client SPA (`CLIENT_SPA_APP_ID`).
    pub const CLIENT_SPA_APP_ID: &str = "5d6e7f8a-9b0c-4d1e-8f2a-3b4c5d6e7f8a";
    /// The downstream weather API app (`WEATHER_API_APP_ID`).
    pub const WEATHER_API_APP_ID: &str = "3e4f5a6b-7c8d-4e9f-8a0b-1c2d3e4f5a6b";
    /// Its service principal.
    pub const WEATHER_API_SP_OID: &str = "6b7c8d9e-0f1a-4b2c-9d3e-4f5a6b7c8d9e";
    /// Its identifier URI (`WEATHER_API_AUDIENCE`).
    pub const WEATHER_API_AUDIENCE: &str = "api://3e4f5a6b-7c8d-4e9f-8a0b-1c2d3e4f5a6b";
    /// The permission the weather API requires (app role and delegated scope).
    pub const WEATHER_PERMISSION: &str = "Weather.Read";
    /// The local developer user.
    pub const DEV_USER_UPN: &str = "dev@contoso.onmicrosoft.com";
    /// The developer user's object id.
    pub const DEV_USER_OID: &str = "0b1c2d3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e";
    /// AWS account.
    pub const AWS_ACCOUNT_ID: &str = "123456789012";
    /// Role name.
    pub const ROLE_NAME: &str = "BedrockInvokerFromAzure";
    /// Model id.
    pub const BEDROCK_MODEL_ID: &str = "us.anthropic.claude-3-haiku-20240307-v1:0";
}

impl Registry {
    /// The tutorial's end state (§5–§8): the Container App's system identity federated into the
    /// Blueprint (chain A) and into the intermediary app that issues v1 tokens (chain B); the IAM
    /// OIDC provider for the v1 issuer; the role trusting the intermediary app's service principal.
    pub fn tutorial_default() -> Self {
        use ids::*;
        let v2_issuer = format!("https://login.microsoftonline.com/{TENANT_ID}/v2.0");
        let mi_fic = |name: &str| FederatedCredential {
            name: name.into(),
            issuer: v2_issuer.clone(),
            subject: MI_OBJECT_ID.into(),
            audiences: vec![TOKEN_EXCHANGE_URI.into()],
        };
        let v1_issuer_host = format!("sts.windows.net/{TENANT_ID}/");
        let trust = serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Principal": { "Federated": format!("arn:aws:iam::{AWS_ACCOUNT_ID}:oidc-provider/{v1_issuer_host}") },
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": { "StringEquals": {
                    format!("{v1_issuer_host}:aud"): format!("api://{STS_APP_ID}"),
                    format!("{v1_issuer_host}:sub"): STS_SP_OID,
                }}
            }]
        });
        let bedrock = serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Action": "bedrock:InvokeModel",
                "Resource": [
                    "arn:aws:bedrock:*::foundation-model/anthropic.claude-3-haiku-20240307-v1:0",
                    format!("arn:aws:bedrock:*:{AWS_ACCOUNT_ID}:inference-profile/{BEDROCK_MODEL_ID}"),
                ]
            }]
        });
        Self {
            tenant_id: TENANT_ID.into(),
            tenant_domain: "contoso.onmicrosoft.com".into(),
            managed_identities: vec![ManagedIdentity {
                name: "agent-id-aws (system-assigned)".into(),
                object_id: MI_OBJECT_ID.into(),
                client_id: MI_CLIENT_ID.into(),
                resource_id: "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-agent-id-aws/providers/Microsoft.App/containerApps/agent-id-aws".into(),
                system_assigned: true,
                attached: true,
            }],
            apps: vec![
                App {
                    display_name: "AWS STS Bedrock Federation".into(),
                    app_id: STS_APP_ID.into(),
                    service_principal_object_id: Some(STS_SP_OID.into()),
                    identifier_uris: vec![format!("api://{STS_APP_ID}")],
                    requested_access_token_version: Some(1),
                    federated_credentials: vec![mi_fic("container-app-mi")],
                    ..Default::default()
                },
                App {
                    display_name: "AWS Bedrock Demo Blueprint".into(),
                    app_id: BLUEPRINT_APP_ID.into(),
                    service_principal_object_id: Some(BLUEPRINT_SP_OID.into()),
                    identifier_uris: vec![format!("api://{BLUEPRINT_APP_ID}")],
                    requested_access_token_version: Some(2),
                    federated_credentials: vec![mi_fic("container-app-mi")],
                    exposed_scopes: vec!["access_as_user".into()],
                    delegated_grants: vec![DelegatedGrant { client_app_id: CLIENT_SPA_APP_ID.into(), scope: "access_as_user".into() }],
                    ..Default::default()
                },
                App {
                    display_name: "AWS Bedrock Weather Agent".into(),
                    app_id: AGENT_CLIENT_ID.into(),
                    service_principal_object_id: Some(AGENT_SP_OID.into()),
                    agent_blueprint: Some(BLUEPRINT_APP_ID.into()),
                    ..Default::default()
                },
                App {
                    display_name: "Agent Demo Client SPA".into(),
                    app_id: CLIENT_SPA_APP_ID.into(),
                    service_principal_object_id: Some("4c5d6e7f-8a9b-4c0d-9e1f-2a3b4c5d6e7f".into()),
                    requested_access_token_version: Some(2),
                    ..Default::default()
                },
                App {
                    display_name: "Weather API".into(),
                    app_id: WEATHER_API_APP_ID.into(),
                    service_principal_object_id: Some(WEATHER_API_SP_OID.into()),
                    identifier_uris: vec![WEATHER_API_AUDIENCE.into()],
                    requested_access_token_version: Some(1),
                    app_roles: vec![WEATHER_PERMISSION.into()],
                    app_role_assignments: vec![AppRoleAssignment { client_app_id: AGENT_CLIENT_ID.into(), role: WEATHER_PERMISSION.into() }],
                    exposed_scopes: vec![WEATHER_PERMISSION.into()],
                    delegated_grants: vec![DelegatedGrant { client_app_id: AGENT_CLIENT_ID.into(), scope: WEATHER_PERMISSION.into() }],
                    ..Default::default()
                },
            ],
            users: vec![User {
                upn: DEV_USER_UPN.into(),
                name: "Local Developer".into(),
                object_id: DEV_USER_OID.into(),
                password: "local-dev-password".into(),
            }],
            aks_issuers: vec![format!(
                "https://eastus2.oic.prod-aks.azure.com/{TENANT_ID}/0b1c2d3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e/"
            )],
            aws_account_id: AWS_ACCOUNT_ID.into(),
            aws_region: "us-east-2".into(),
            oidc_providers: vec![OidcProvider {
                url: format!("https://sts.windows.net/{TENANT_ID}/"),
                client_ids: vec![format!("api://{STS_APP_ID}")],
                thumbprints: vec!["626d44e704d1ceabe3bf0d53397464ac8080142c".into()],
            }],
            roles: vec![Role {
                name: ROLE_NAME.into(),
                max_session_duration: 3600,
                trust_policy: serde_json::from_value(trust)
                    .expect("built-in trust policy is valid"),
                permission_policies: vec![
                    serde_json::from_value(bedrock).expect("built-in permission policy is valid"),
                ],
            }],
            managed_policies: vec![],
            lifetimes: Lifetimes::default(),
        }
    }

    /// Reads a registry from JSON, checking that it is consistent.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let r: Registry = serde_json::from_str(text).map_err(|e| format!("registry JSON: {e}"))?;
        r.validate()?;
        Ok(r)
    }

    /// Checks the cross-references a real directory would enforce, and that every policy is one
    /// this emulation evaluates.
    pub fn validate(&self) -> Result<(), String> {
        for role in &self.roles {
            role.trust_policy
                .validate()
                .map_err(|e| format!("role {}: trust policy: {e}", role.name))?;
            for p in &role.permission_policies {
                p.validate_permission()
                    .map_err(|e| format!("role {}: permission policy: {e}", role.name))?;
            }
        }
        for m in &self.managed_policies {
            m.document
                .validate_permission()
                .map_err(|e| format!("managed policy {}: {e}", m.arn))?;
        }
        if self.aws_account_id.len() != 12
            || !self.aws_account_id.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(format!(
                "aws_account_id '{}' must be 12 digits",
                self.aws_account_id
            ));
        }
        if self
            .managed_identities
            .iter()
            .filter(|m| m.system_assigned)
            .count()
            > 1
        {
            return Err("at most one managed identity can be system_assigned".into());
        }
        for app in &self.apps {
            if let Some(v) = app.requested_access_token_version
                && !(1..=2).contains(&v)
            {
                return Err(format!(
                    "app {}: requested_access_token_version must be 1, 2 or null",
                    app.app_id
                ));
            }
            if app.federated_credentials.len() > 20 {
                return Err(format!(
                    "app {}: at most 20 federated credentials",
                    app.app_id
                ));
            }
        }
        for role in &self.roles {
            if !(3600..=43200).contains(&role.max_session_duration) {
                return Err(format!(
                    "role {}: max_session_duration must be 3600..=43200",
                    role.name
                ));
            }
        }
        for p in &self.oidc_providers {
            if !p.url.starts_with("https://") {
                return Err(format!(
                    "OIDC provider {}: the URL must start with https://",
                    p.url
                ));
            }
            if !(1..=100).contains(&p.client_ids.len()) {
                return Err(format!("OIDC provider {}: 1 to 100 client ids", p.url));
            }
        }
        Ok(())
    }

    /// The app with this client id.
    pub fn app(&self, app_id: &str) -> Option<&App> {
        self.apps
            .iter()
            .find(|a| a.app_id.eq_ignore_ascii_case(app_id))
    }

    /// Mutable access to the app with this client id.
    pub fn app_mut(&mut self, app_id: &str) -> Option<&mut App> {
        self.apps
            .iter_mut()
            .find(|a| a.app_id.eq_ignore_ascii_case(app_id))
    }

    /// The app a resource identifier names: an identifier URI or the app id (optionally `api://<app id>`).
    pub fn resource_app(&self, resource: &str) -> Option<&App> {
        let r = resource.trim_end_matches('/');
        self.apps.iter().find(|a| {
            a.identifier_uris
                .iter()
                .any(|u| u.trim_end_matches('/').eq_ignore_ascii_case(r))
                || a.app_id.eq_ignore_ascii_case(r)
        })
    }

    /// The role with this ARN.
    pub fn role_by_arn(&self, arn: &str) -> Option<&Role> {
        let prefix = format!("arn:aws:iam::{}:role/", self.aws_account_id);
        let name = arn.strip_prefix(&prefix)?;
        let name = name.rsplit('/').next()?;
        self.roles.iter().find(|r| r.name == name)
    }

    /// Mutable access to a role by name.
    pub fn role_mut(&mut self, name: &str) -> Option<&mut Role> {
        self.roles.iter_mut().find(|r| r.name == name)
    }

    /// The provider ARN for an OIDC provider URL.
    pub fn provider_arn(&self, url: &str) -> String {
        format!(
            "arn:aws:iam::{}:oidc-provider/{}",
            self.aws_account_id,
            url.trim_start_matches("https://")
        )
    }

    /// The role ARN of a role name.
    pub fn role_arn(&self, name: &str) -> String {
        format!("arn:aws:iam::{}:role/{}", self.aws_account_id, name)
    }

    /// Whether `tenant` (id or domain, from a URL) is this tenant.
    pub fn is_tenant(&self, tenant: &str) -> bool {
        tenant.eq_ignore_ascii_case(&self.tenant_id)
            || tenant.eq_ignore_ascii_case(&self.tenant_domain)
    }

    /// The v1 issuer.
    pub fn v1_issuer(&self) -> String {
        format!("https://sts.windows.net/{}/", self.tenant_id)
    }

    /// The v2 issuer.
    pub fn v2_issuer(&self) -> String {
        format!("https://login.microsoftonline.com/{}/v2.0", self.tenant_id)
    }

    /// The system-assigned identity, if any.
    pub fn system_identity(&self) -> Option<&ManagedIdentity> {
        self.managed_identities.iter().find(|m| m.system_assigned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_round_trips_through_json_and_validates() {
        let r = Registry::tutorial_default();
        r.validate().unwrap();
        let text = serde_json::to_string_pretty(&r).unwrap();
        assert_eq!(Registry::from_json(&text).unwrap(), r);
    }

    #[test]
    fn lookups() {
        let r = Registry::tutorial_default();
        assert_eq!(
            r.resource_app(&format!("api://{}", ids::STS_APP_ID))
                .unwrap()
                .app_id,
            ids::STS_APP_ID
        );
        assert_eq!(
            r.resource_app(ids::STS_APP_ID).unwrap().app_id,
            ids::STS_APP_ID
        );
        assert!(
            r.role_by_arn(&format!(
                "arn:aws:iam::{}:role/{}",
                ids::AWS_ACCOUNT_ID,
                ids::ROLE_NAME
            ))
            .is_some()
        );
        assert!(
            r.role_by_arn("arn:aws:iam::999999999999:role/BedrockInvokerFromAzure")
                .is_none()
        );
        assert!(r.is_tenant("contoso.onmicrosoft.com"));
    }

    #[test]
    fn inconsistent_registries_are_refused() {
        let mut r = Registry::tutorial_default();
        r.oidc_providers[0].url = "sts.windows.net/x/".into();
        assert!(r.validate().unwrap_err().contains("https://"));
        let text = serde_json::to_string(&Registry::tutorial_default())
            .unwrap()
            .replacen("\"tenant_id\"", "\"tenant\"", 1);
        assert!(Registry::from_json(&text).is_err());
    }
}
