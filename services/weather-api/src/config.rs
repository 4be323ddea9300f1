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
    /// From the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_env_fn(|k| std::env::var(k).ok())
    }

    /// From `get` (a map in tests).
    pub fn from_env_fn(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |k: &str| {
            get(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let tenant =
            get("TENANT_ID")
                .or_else(|| get("AZURE_TENANT_ID"))
                .ok_or(ConfigError::Missing {
                    name: "TENANT_ID",
                    hint: "the Entra tenant whose agent tokens are accepted",
                })?;
        let audience = get("WEATHER_API_AUDIENCE").ok_or(ConfigError::Missing { name: "WEATHER_API_AUDIENCE", hint: "this API's app id URI (api://<weather api app id>); agent tokens must be minted for it" })?;
        let allowed: Vec<String> = get("ALLOWED_AGENT_APP_IDS")
            .ok_or(ConfigError::Missing {
                name: "ALLOWED_AGENT_APP_IDS",
                hint: "comma-separated agent identity app ids allowed to call",
            })?
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        let role = get("REQUIRED_APP_ROLE");
        let scope = get("REQUIRED_SCOPE");
        if role.is_none() && scope.is_none() {
            return Err(ConfigError::Missing {
                name: "REQUIRED_APP_ROLE or REQUIRED_SCOPE",
                hint: "app-only tokens need REQUIRED_APP_ROLE, delegated tokens REQUIRED_SCOPE; a kind without one is refused",
            });
        }
        let mut policy = Policy::new(
            allowed,
            role.map_or(KindPolicy::Deny, KindPolicy::Require),
            scope.map_or(KindPolicy::Deny, KindPolicy::Require),
        );
        if let Some(blueprint) = get("EXPECTED_BLUEPRINT_APP_ID") {
            policy = policy.with_expected_blueprint(blueprint);
        }
        // A v2 token carries the API's client id; `api://<client id>` implies it, a custom App ID
        // URI does not: then WEATHER_API_APP_ID names it.
        let audiences = std::iter::once(audience)
            .chain(get("WEATHER_API_APP_ID"))
            .collect();
        let mut validator = ValidatorConfig::new(&tenant, audiences, policy);
        if let Some(a) = get("AZURE_AUTHORITY_HOST") {
            validator.authority = Url::parse(&a).map_err(|e| ConfigError::Invalid {
                name: "AZURE_AUTHORITY_HOST",
                reason: e.to_string(),
            })?;
        }
        if let Some(n) = get("WEATHER_API_VERIFIED_TOKEN_CACHE") {
            validator.verified_cache = n.parse().map_err(|_| ConfigError::Invalid {
                name: "WEATHER_API_VERIFIED_TOKEN_CACHE",
                reason: "a whole number of tokens (0 turns the cache off)".into(),
            })?;
        }
        validator.root_ca = get("ENTRA_FEDERATION_CA_FILE").map(Into::into);
        let url = |name: &'static str, default: &str| {
            let v = get(name).unwrap_or_else(|| default.to_string());
            Url::parse(&v).map_err(|e| ConfigError::Invalid {
                name,
                reason: e.to_string(),
            })
        };
        let port = match get("PORT") {
            None => 8080,
            Some(p) => p.parse().map_err(|_| ConfigError::Invalid {
                name: "PORT",
                reason: format!("'{p}' is not a port number"),
            })?,
        };
        Ok(Self {
            validator,
            geocoding_url: url(
                "OPEN_METEO_GEOCODING_URL",
                "https://geocoding-api.open-meteo.com/v1/search",
            )?,
            forecast_url: url(
                "OPEN_METEO_FORECAST_URL",
                "https://api.open-meteo.com/v1/forecast",
            )?,
            port,
        })
    }
}
