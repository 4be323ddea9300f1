//! Configuration from the environment (the tutorial's names).

use url::Url;

/// Entra's public-cloud authority host, as azure-identity defaults it.
const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com/";

/// A missing or malformed setting, named.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Missing.
    #[error("{name} is not set: {hint}")]
    Missing {
        /// The variable.
        name: &'static str,
        /// What it holds.
        hint: &'static str,
    },
    /// Malformed.
    #[error("{name}='{value}' is invalid: {reason}")]
    Invalid {
        /// The variable.
        name: &'static str,
        /// The value.
        value: String,
        /// Why.
        reason: String,
    },
    /// The credentials provider.
    #[error(transparent)]
    Provider(#[from] entra_federation::ConfigError),
}

/// The agent's settings.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// `SIDECAR_URL` (default `http://localhost:5000`).
    pub sidecar_url: Url,
    /// `WEATHER_API_URL` (default `http://localhost:8080`).
    pub weather_api_url: Url,
    /// `SIDECAR_WEATHER_API_NAME`: the sidecar's downstream API entry (default `weather-api`).
    pub sidecar_api: String,
    /// `AGENT_APP_ID`: the agent identity.
    pub agent_app_id: String,
    /// `BLUEPRINT_APP_ID`: the user token's audience for OBO.
    pub blueprint_app_id: String,
    /// `TENANT_ID`.
    pub tenant_id: String,
    /// `CLIENT_SPA_APP_ID`: the app users sign in with (allowed to present user tokens).
    pub client_spa_app_id: Option<String>,
    /// `AZURE_AUTHORITY_HOST`.
    pub authority: Url,
    /// `ENTRA_FEDERATION_CA_FILE`.
    pub root_ca: Option<std::path::PathBuf>,
    /// `AWS_REGION` (default `us-east-2`).
    pub aws_region: String,
    /// `BEDROCK_MODEL_ID`.
    pub bedrock_model: String,
    /// `AWS_ENDPOINT_URL_BEDROCK_RUNTIME` / `AWS_ENDPOINT_URL`.
    pub bedrock_endpoint: Option<String>,
    /// `PUBLIC_URL`: where users reach the page (the MSAL redirect URI; default `http://localhost:3000`).
    pub public_url: String,
    /// `PORT` (default 3000).
    pub port: u16,
    /// `CHAT_RATE_PER_MINUTE`: chats each client may start per minute (default 20).
    pub chat_rate_per_minute: u32,
    /// `CHAT_MAX_CONCURRENT`: chats in flight at once, all clients together (default 8).
    pub chat_max_concurrent: usize,
    /// `CHAT_TRUST_X_FORWARDED_FOR`: behind an ingress that appends the client's address to
    /// `X-Forwarded-For` (Container Apps, App Service), budget by that address instead of the
    /// ingress's (default false: the header is the client's to forge).
    pub chat_trust_x_forwarded_for: bool,
    /// `BEDROCK_CLIENT_PER_REQUEST`: build a new Bedrock client for every chat, as the tutorial's
    /// agent does (default false). For measuring that design only: each chat then pays a client
    /// build and a new TLS connection to Bedrock (`scripts/bench` compares the two).
    pub bedrock_client_per_request: bool,
}

impl AgentConfig {
    /// From `get` (the process environment, or a map in tests).
    pub fn from_env_fn(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |k: &str| {
            get(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let url = |name: &'static str, default: &str| {
            let v = get(name).unwrap_or_else(|| default.to_string());
            Url::parse(&v).map_err(|e| ConfigError::Invalid {
                name,
                value: v,
                reason: e.to_string(),
            })
        };
        let required = |name: &'static str, hint: &'static str| {
            get(name).ok_or(ConfigError::Missing { name, hint })
        };
        let port = match get("PORT") {
            None => 3000,
            Some(p) => p.parse().map_err(|_| ConfigError::Invalid {
                name: "PORT",
                value: p,
                reason: "not a port number".into(),
            })?,
        };
        let positive = |name: &'static str, default: u32| match get(name) {
            None => Ok(default),
            Some(v) => match v.parse::<u32>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(ConfigError::Invalid {
                    name,
                    value: v,
                    reason: "a whole number of at least 1".into(),
                }),
            },
        };
        let chat_rate_per_minute = positive("CHAT_RATE_PER_MINUTE", 20)?;
        let chat_max_concurrent = positive("CHAT_MAX_CONCURRENT", 8)? as usize;
        let flag = |name: &'static str| match get(name).as_deref() {
            None | Some("0" | "false" | "no") => Ok(false),
            Some("1" | "true" | "yes") => Ok(true),
            Some(other) => Err(ConfigError::Invalid {
                name,
                value: other.to_string(),
                reason: "true or false".into(),
            }),
        };
        let chat_trust_x_forwarded_for = flag("CHAT_TRUST_X_FORWARDED_FOR")?;
        let bedrock_client_per_request = flag("BEDROCK_CLIENT_PER_REQUEST")?;
        Ok(Self {
            sidecar_url: url("SIDECAR_URL", "http://localhost:5000")?,
            weather_api_url: url("WEATHER_API_URL", "http://localhost:8080")?,
            sidecar_api: get("SIDECAR_WEATHER_API_NAME").unwrap_or_else(|| "weather-api".into()),
            agent_app_id: required(
                "AGENT_APP_ID",
                "the agent identity's client id (AgentIdentity at the sidecar)",
            )?,
            blueprint_app_id: required(
                "BLUEPRINT_APP_ID",
                "the Agent Identity Blueprint's app id (the audience of user tokens for OBO)",
            )?,
            tenant_id: get("TENANT_ID").or_else(|| get("AZURE_TENANT_ID")).ok_or(
                ConfigError::Missing {
                    name: "TENANT_ID",
                    hint: "the Entra tenant",
                },
            )?,
            client_spa_app_id: get("CLIENT_SPA_APP_ID"),
            authority: url("AZURE_AUTHORITY_HOST", DEFAULT_AUTHORITY)?,
            root_ca: get("ENTRA_FEDERATION_CA_FILE").map(Into::into),
            aws_region: get("AWS_REGION")
                .or_else(|| get("AWS_DEFAULT_REGION"))
                .unwrap_or_else(|| "us-east-2".into()),
            bedrock_model: get("BEDROCK_MODEL_ID")
                .unwrap_or_else(|| "us.anthropic.claude-3-haiku-20240307-v1:0".into()),
            bedrock_endpoint: get("AWS_ENDPOINT_URL_BEDROCK_RUNTIME")
                .or_else(|| get("AWS_ENDPOINT_URL")),
            public_url: get("PUBLIC_URL").unwrap_or_else(|| "http://localhost:3000".into()),
            port,
            chat_rate_per_minute,
            chat_max_concurrent,
            chat_trust_x_forwarded_for,
            bedrock_client_per_request,
        })
    }
}
