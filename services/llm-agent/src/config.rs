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
    /// A value clap refused (not a number, not a URL, …), named by its variable.
    #[error(transparent)]
    Settings(#[from] server_kit::settings::SettingsError),
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

/// The variables the agent reads (`llm-agent --help` lists them). Each may also be given as the
/// flag its line names.
#[derive(Debug, clap::Parser)]
#[command(
    name = "llm-agent",
    version,
    about = "The agent: chat API and page, Bedrock with tool use, the weather API through the Agent ID sidecar."
)]
pub struct Settings {
    /// The Agent ID sidecar.
    #[arg(long, env = "SIDECAR_URL", default_value = "http://localhost:5000")]
    sidecar_url: Url,
    /// The weather API (for its health in /api/status).
    #[arg(long, env = "WEATHER_API_URL", default_value = "http://localhost:8080")]
    weather_api_url: Url,
    /// The sidecar's downstream API entry for the weather API.
    #[arg(long, env = "SIDECAR_WEATHER_API_NAME", default_value = "weather-api")]
    sidecar_weather_api_name: String,
    /// The agent identity's client id (AgentIdentity at the sidecar).
    #[arg(long, env = "AGENT_APP_ID")]
    agent_app_id: Option<String>,
    /// The Agent Identity Blueprint's app id (the audience of user tokens for on-behalf-of).
    #[arg(long, env = "BLUEPRINT_APP_ID")]
    blueprint_app_id: Option<String>,
    /// The Entra tenant.
    #[arg(long, env = "TENANT_ID")]
    tenant_id: Option<String>,
    /// The same, by azure-identity's name.
    #[arg(long, env = "AZURE_TENANT_ID", hide = true)]
    azure_tenant_id: Option<String>,
    /// The app users sign in with (allowed to present user tokens).
    #[arg(long, env = "CLIENT_SPA_APP_ID")]
    client_spa_app_id: Option<String>,
    /// The authority host.
    #[arg(long, env = "AZURE_AUTHORITY_HOST", default_value = DEFAULT_AUTHORITY)]
    authority: Url,
    /// An extra root CA (PEM) for the authority.
    #[arg(long, env = "ENTRA_FEDERATION_CA_FILE")]
    ca_file: Option<std::path::PathBuf>,
    /// The AWS region of Bedrock.
    #[arg(long, env = "AWS_REGION")]
    aws_region: Option<String>,
    /// The same, by the older name.
    #[arg(long, env = "AWS_DEFAULT_REGION", hide = true)]
    aws_default_region: Option<String>,
    /// The Bedrock model (or inference profile) id.
    #[arg(
        long,
        env = "BEDROCK_MODEL_ID",
        default_value = "us.anthropic.claude-3-haiku-20240307-v1:0"
    )]
    bedrock_model_id: String,
    /// A Bedrock runtime endpoint instead of the regional one.
    #[arg(long, env = "AWS_ENDPOINT_URL_BEDROCK_RUNTIME")]
    bedrock_endpoint: Option<String>,
    /// An endpoint for every AWS service (used for Bedrock when the line above is unset).
    #[arg(long, env = "AWS_ENDPOINT_URL", hide = true)]
    aws_endpoint: Option<String>,
    /// Where users reach the page (the sign-in redirect URI).
    #[arg(long, env = "PUBLIC_URL", default_value = "http://localhost:3000")]
    public_url: String,
    /// The port to listen on.
    #[arg(long, env = "PORT", default_value_t = 3000)]
    port: u16,
    /// Chats each client may start per minute.
    #[arg(long, env = "CHAT_RATE_PER_MINUTE", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    chat_rate_per_minute: u32,
    /// Chats in flight at once, all clients together.
    #[arg(long, env = "CHAT_MAX_CONCURRENT", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..))]
    chat_max_concurrent: u32,
    /// Budget chats by the last X-Forwarded-For address (behind an ingress that appends it).
    #[arg(long, env = "CHAT_TRUST_X_FORWARDED_FOR", default_value_t = false, action = clap::ArgAction::Set, value_parser = true_or_false)]
    chat_trust_x_forwarded_for: bool,
    /// Build a Bedrock client per chat, as the tutorial's agent does (for measuring only).
    #[arg(long, env = "BEDROCK_CLIENT_PER_REQUEST", default_value_t = false, action = clap::ArgAction::Set, value_parser = true_or_false)]
    bedrock_client_per_request: bool,
}

/// A switch: `true`/`false`, `1`/`0`, `yes`/`no`.
fn true_or_false(value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" => Ok(true),
        "0" | "false" | "no" => Ok(false),
        _ => Err("true or false".into()),
    }
}

impl AgentConfig {
    /// From the process environment and the command line (`--help` lists the variables).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_settings(server_kit::settings::from_process()?)
    }

    /// From `get` (a map in tests, or the in-process local stack).
    pub fn from_env_fn(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Self::from_settings(server_kit::settings::from_lookup(get)?)
    }

    /// From parsed settings: the required values are checked here, with what they hold.
    pub fn from_settings(s: Settings) -> Result<Self, ConfigError> {
        Ok(Self {
            sidecar_url: s.sidecar_url,
            weather_api_url: s.weather_api_url,
            sidecar_api: s.sidecar_weather_api_name,
            agent_app_id: s.agent_app_id.ok_or(ConfigError::Missing {
                name: "AGENT_APP_ID",
                hint: "the agent identity's client id (AgentIdentity at the sidecar)",
            })?,
            blueprint_app_id: s.blueprint_app_id.ok_or(ConfigError::Missing {
                name: "BLUEPRINT_APP_ID",
                hint: "the Agent Identity Blueprint's app id (the audience of user tokens for OBO)",
            })?,
            tenant_id: s
                .tenant_id
                .or(s.azure_tenant_id)
                .ok_or(ConfigError::Missing {
                    name: "TENANT_ID",
                    hint: "the Entra tenant",
                })?,
            client_spa_app_id: s.client_spa_app_id,
            authority: s.authority,
            root_ca: s.ca_file,
            aws_region: s
                .aws_region
                .or(s.aws_default_region)
                .unwrap_or_else(|| "us-east-2".into()),
            bedrock_model: s.bedrock_model_id,
            bedrock_endpoint: s.bedrock_endpoint.or(s.aws_endpoint),
            public_url: s.public_url,
            port: s.port,
            chat_rate_per_minute: s.chat_rate_per_minute,
            chat_max_concurrent: s.chat_max_concurrent as usize,
            chat_trust_x_forwarded_for: s.chat_trust_x_forwarded_for,
            bedrock_client_per_request: s.bedrock_client_per_request,
        })
    }
}
