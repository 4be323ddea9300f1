//! Configuration from the environment; the service refuses to start without what validation needs.

use entra_federation::validate::{KindPolicy, Policy, ValidatorConfig};
use url::Url;

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
    #[error("{name} is invalid: {reason}")]
    Invalid {
        /// The variable.
        name: &'static str,
        /// Why.
        reason: String,
    },
    /// A value clap refused (not a number, not a URL, …), named by its variable.
    #[error(transparent)]
    Settings(#[from] server_kit::settings::SettingsError),
}

/// The variables the service reads (`weather-api --help` lists them). Each may also be given as
/// the flag its line names.
#[derive(Debug, clap::Parser)]
#[command(
    name = "weather-api",
    version,
    about = "Serves weather to Entra Agent ID callers (tokens for WEATHER_API_AUDIENCE only)."
)]
pub struct Settings {
    /// The Entra tenant whose agent tokens are accepted.
    #[arg(long, env = "TENANT_ID")]
    tenant_id: Option<String>,
    /// The same, by azure-identity's name.
    #[arg(long, env = "AZURE_TENANT_ID", hide = true)]
    azure_tenant_id: Option<String>,
    /// This API's app id URI, `api://` and its app id: agent tokens must be minted for it.
    #[arg(long, env = "WEATHER_API_AUDIENCE")]
    audience: Option<String>,
    /// This API's client id, when the app id URI is a custom one (v2 tokens carry the client id).
    #[arg(long, env = "WEATHER_API_APP_ID")]
    app_id: Option<String>,
    /// The agent identities (client ids) allowed to call, comma-separated.
    #[arg(long, env = "ALLOWED_AGENT_APP_IDS", value_delimiter = ',')]
    allowed_agent_app_ids: Vec<String>,
    /// The app role app-only (autonomous) tokens must carry; without it they are refused.
    #[arg(long, env = "REQUIRED_APP_ROLE")]
    required_app_role: Option<String>,
    /// The scope delegated (on-behalf-of) tokens must carry; without it they are refused.
    #[arg(long, env = "REQUIRED_SCOPE")]
    required_scope: Option<String>,
    /// The Agent Identity Blueprint the callers must belong to (`xms_par_app_azp`).
    #[arg(long, env = "EXPECTED_BLUEPRINT_APP_ID")]
    expected_blueprint_app_id: Option<String>,
    /// The authority host (default: Entra's public cloud, `login.microsoftonline.com`).
    #[arg(long, env = "AZURE_AUTHORITY_HOST")]
    authority: Option<Url>,
    /// Verified tokens kept so a repeated token skips the signature check (0 turns it off).
    #[arg(long, env = "WEATHER_API_VERIFIED_TOKEN_CACHE")]
    verified_token_cache: Option<usize>,
    /// An extra root CA (PEM) for the authority.
    #[arg(long, env = "ENTRA_FEDERATION_CA_FILE")]
    ca_file: Option<std::path::PathBuf>,
    /// Open-Meteo's geocoding endpoint.
    #[arg(
        long,
        env = "OPEN_METEO_GEOCODING_URL",
        default_value = "https://geocoding-api.open-meteo.com/v1/search"
    )]
    geocoding_url: Url,
    /// Open-Meteo's forecast endpoint.
    #[arg(
        long,
        env = "OPEN_METEO_FORECAST_URL",
        default_value = "https://api.open-meteo.com/v1/forecast"
    )]
    forecast_url: Url,
    /// The port to listen on.
    #[arg(long, env = "PORT", default_value_t = 8080)]
    port: u16,
}

/// Everything the service needs.
#[derive(Debug, Clone)]
pub struct WeatherConfig {
    /// Token validation.
    pub validator: ValidatorConfig,
    /// Open-Meteo geocoding endpoint.
    pub geocoding_url: Url,
    /// Open-Meteo forecast endpoint.
    pub forecast_url: Url,
    /// Port (`PORT`, default 8080).
    pub port: u16,
}

impl WeatherConfig {
    /// From the process environment and the command line (`--help` lists the variables).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_settings(server_kit::settings::from_process()?)
    }

    /// From `get` (a map in tests).
    pub fn from_env_fn(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Self::from_settings(server_kit::settings::from_lookup(get)?)
    }

    /// From parsed settings: what clap cannot say (required together, one of two) is checked here.
    pub fn from_settings(s: Settings) -> Result<Self, ConfigError> {
        let tenant = s
            .tenant_id
            .or(s.azure_tenant_id)
            .ok_or(ConfigError::Missing {
                name: "TENANT_ID",
                hint: "the Entra tenant whose agent tokens are accepted",
            })?;
        let audience = s.audience.ok_or(ConfigError::Missing {
            name: "WEATHER_API_AUDIENCE",
            hint: "this API's app id URI (api://<weather api app id>); agent tokens must be minted for it",
        })?;
        let allowed: Vec<String> = s
            .allowed_agent_app_ids
            .into_iter()
            .map(|id| id.trim().to_string())
            .filter(|id| !id.is_empty())
            .collect();
        if allowed.is_empty() {
            return Err(ConfigError::Missing {
                name: "ALLOWED_AGENT_APP_IDS",
                hint: "comma-separated agent identity app ids allowed to call",
            });
        }
        if s.required_app_role.is_none() && s.required_scope.is_none() {
            return Err(ConfigError::Missing {
                name: "REQUIRED_APP_ROLE or REQUIRED_SCOPE",
                hint: "app-only tokens need REQUIRED_APP_ROLE, delegated tokens REQUIRED_SCOPE; a kind without one is refused",
            });
        }
        let mut policy = Policy::new(
            allowed,
            s.required_app_role
                .map_or(KindPolicy::Deny, KindPolicy::Require),
            s.required_scope
                .map_or(KindPolicy::Deny, KindPolicy::Require),
        );
        if let Some(blueprint) = s.expected_blueprint_app_id {
            policy = policy.with_expected_blueprint(blueprint);
        }
        // A v2 token carries the API's client id; `api://<client id>` implies it, a custom App ID
        // URI does not: then WEATHER_API_APP_ID names it.
        let audiences = std::iter::once(audience).chain(s.app_id).collect();
        let mut validator = ValidatorConfig::new(&tenant, audiences, policy);
        if let Some(authority) = s.authority {
            validator.authority = authority;
        }
        if let Some(n) = s.verified_token_cache {
            validator.verified_cache = n;
        }
        validator.root_ca = s.ca_file;
        Ok(Self {
            validator,
            geocoding_url: s.geocoding_url,
            forecast_url: s.forecast_url,
            port: s.port,
        })
    }
}
