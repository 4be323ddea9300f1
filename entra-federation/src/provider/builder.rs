//! [`EntraCredentialsProviderBuilder`]: configuration from the environment (the tutorial's names
//! and the standard Azure/AWS ones) or in code. Every missing or malformed value is an error that
//! names the variable.
//!
//! | variable | meaning |
//! |---|---|
//! | `TENANT_ID` / `AZURE_TENANT_ID` | Entra tenant (GUID or domain) |
//! | `STS_APP_ID` (or `AZURE_CLIENT_ID` with a federated token file) | intermediary app's client id |
//! | `STS_APP_URI` | its identifier URI, the token audience (default `api://<STS_APP_ID>`) |
//! | `ENTRA_FEDERATION_SCOPE` | scope (default `<STS_APP_URI>/.default`) |
//! | `AZURE_AUTHORITY_HOST` | authority (default `https://login.microsoftonline.com/`) |
//! | `AZURE_FEDERATED_TOKEN_FILE` | AKS workload-identity token file |
//! | `IDENTITY_ENDPOINT`, `IDENTITY_HEADER` | Container Apps / App Service identity endpoint |
//! | `AZURE_POD_IDENTITY_AUTHORITY_HOST` | IMDS base URL override (default `http://169.254.169.254`) |
//! | `AZURE_CLIENT_ID` | user-assigned managed identity to use (identity endpoint and IMDS) |
//! | `ENTRA_FEDERATION_ASSERTION_SOURCE` | force `token-file`, `app-service` or `imds` |
//! | `AWS_ROLE_ARN`, `AWS_REGION` / `AWS_DEFAULT_REGION` | role and region |
//! | `AWS_ROLE_SESSION_NAME` | stable session name (default `entra-federation`) |
//! | `AWS_ROLE_DURATION_SECONDS` | session length, 900–43200 |
//! | `AWS_ENDPOINT_URL_STS` / `AWS_ENDPOINT_URL` | STS endpoint override |
//! | `ENTRA_FEDERATION_CA_FILE` | extra root CA (PEM), e.g. the local cloud's |
//! | `ENTRA_FEDERATION_ALLOW_HTTP` | `1` allows plain http to non-loopback hosts |

use super::EntraCredentialsProvider;
use crate::assertion::{
    self, AppServiceSource, AssertionSource, HeaderValueSource, ImdsSource, ManagedIdentity,
    TokenFileSource,
};
use crate::clock::Clock;
use crate::entra::EntraClient;
use crate::http::{EndpointError, HttpSettings, HttpSetupError, checked_url, identity_client};
use crate::retry::Jitter;
use crate::sts::{self, AssumeRoleRequest, StsClient};
use aws_smithy_async::rt::sleep::{AsyncSleep, SharedAsyncSleep};
use aws_smithy_async::time::{SharedTimeSource, TimeSource};
use std::path::PathBuf;
use std::sync::Arc;
use url::Url;

/// The default authority host.
pub(crate) const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com/";
/// The default session name: stable, so CloudTrail shows one session per workload.
pub(crate) const DEFAULT_SESSION_NAME: &str = "entra-federation";

/// A configuration problem, naming the variable (or builder method) to fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A required value is missing.
    #[error("{name} is not set: {hint}")]
    Missing {
        /// Variable name(s).
        name: &'static str,
        /// What it should hold.
        hint: &'static str,
    },
    /// A value is malformed.
    #[error("{name}='{value}' is invalid: {reason}")]
    Invalid {
        /// Variable name.
        name: &'static str,
        /// The value.
        value: String,
        /// What is wrong.
        reason: String,
    },
    /// An endpoint is not acceptable.
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    /// The HTTP client could not be built.
    #[error(transparent)]
    Http(#[from] HttpSetupError),
}

/// Which assertion source to use.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum SourceChoice {
    /// AKS workload identity file.
    TokenFile(PathBuf),
    /// Container Apps / App Service endpoint and its header.
    AppService {
        /// `IDENTITY_ENDPOINT`.
        endpoint: String,
        /// Where `IDENTITY_HEADER` is read from (on every request).
        header: HeaderValueSource,
    },
    /// VM IMDS at this token URL.
    Imds(String),
    /// A caller-supplied source.
    Custom(Arc<dyn AssertionSource>),
}

/// The default attempt deadline with VM IMDS: its 70 s window for 410 answers, its other retries,
/// and the Entra and STS hops after it.
const IMDS_ATTEMPT_DEADLINE: std::time::Duration = std::time::Duration::from_secs(120);

/// Builds an [`EntraCredentialsProvider`].
///
/// ```no_run
/// use entra_federation::EntraCredentialsProvider;
/// # fn f() -> Result<(), entra_federation::error::ConfigError> {
/// let provider = EntraCredentialsProvider::builder()
///     .tenant_id("7d2f0e4c-8a1b-4c3d-9e5f-0a1b2c3d4e5f")
///     .app_id("faee0fc2-0000-0000-0000-000000000000")
///     .role_arn("arn:aws:iam::123456789012:role/BedrockInvokerFromAzure")
///     .region("us-east-2")
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
pub struct EntraCredentialsProviderBuilder {
    tenant_id: Option<String>,
    app_id: Option<String>,
    app_uri: Option<String>,
    scope: Option<String>,
    authority: Option<String>,
    role_arn: Option<String>,
    region: Option<String>,
    session_name: Option<String>,
    duration_seconds: Option<u32>,
    policy: Option<String>,
    policy_arns: Vec<String>,
    sts_endpoint: Option<String>,
    source: Option<SourceChoice>,
    /// IMDS was chosen only because nothing else was detected: it is probed first.
    imds_is_a_guess: bool,
    managed_identity: ManagedIdentity,
    resource: Option<String>,
    root_ca: Option<PathBuf>,
    allow_http: bool,
    time_source: Option<SharedTimeSource>,
    sleep_impl: Option<SharedAsyncSleep>,
    connect_timeout: Option<std::time::Duration>,
    request_timeout: Option<std::time::Duration>,
    jitter_seed: Option<u64>,
    attempt_timeout: Option<std::time::Duration>,
}

macro_rules! setter {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        pub fn $name(mut self, value: impl Into<String>) -> Self {
            self.$name = Some(value.into());
            self
        }
    };
}

impl EntraCredentialsProviderBuilder {
    setter!(/// Entra tenant id (or domain).
        tenant_id);
    setter!(/// The intermediary app's client id (`STS_APP_ID`).
        app_id);
    setter!(/// The intermediary app's identifier URI, the expected audience (default `api://<app id>`).
        app_uri);
    setter!(/// The scope requested (default `<app uri>/.default`).
        scope);
    setter!(/// The authority host (default `https://login.microsoftonline.com/`).
        authority);
    setter!(/// The role to assume.
        role_arn);
    setter!(/// The AWS region (selects the regional STS endpoint).
        region);
    setter!(/// A stable role session name.
        session_name);
    setter!(/// An STS endpoint instead of the regional one.
        sts_endpoint);
    setter!(/// An inline session policy.
        policy);
    setter!(/// The managed-identity resource (default `api://AzureADTokenExchange`, or the sovereign-cloud variant).
        resource);

    /// Session length in seconds (900–43200).
    pub fn duration_seconds(mut self, seconds: u32) -> Self {
        self.duration_seconds = Some(seconds);
        self
    }

    /// Managed session policy ARNs (at most 10).
    pub fn policy_arns(mut self, arns: impl IntoIterator<Item = String>) -> Self {
        self.policy_arns = arns.into_iter().collect();
        self
    }

    /// The assertion source, overriding detection.
    pub fn assertion_source(mut self, source: SourceChoice) -> Self {
        self.source = Some(source);
        self.imds_is_a_guess = false;
        self
    }

    /// A caller-supplied assertion source (see [`assertion::from_fn`]).
    pub fn custom_assertion_source(self, source: Arc<dyn AssertionSource>) -> Self {
        self.assertion_source(SourceChoice::Custom(source))
    }

    /// Which managed identity the identity endpoint or IMDS should use.
    pub fn managed_identity(mut self, id: ManagedIdentity) -> Self {
        self.managed_identity = id;
        self
    }

    /// An extra root CA (PEM file) to trust.
    pub fn root_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.root_ca = Some(path.into());
        self
    }

    /// Allows plain http to hosts other than loopback and IMDS.
    pub fn allow_insecure_http(mut self, allow: bool) -> Self {
        self.allow_http = allow;
        self
    }

    /// Where "now" comes from for every expiry decision (default: the system clock), as in
    /// aws-config's `ProviderConfig::with_time_source`: tests give an `aws-smithy-async` test
    /// time source (`ManualTimeSource`, `tick_advance_time_and_sleep`'s) to move expiries.
    pub fn time_source(mut self, time_source: impl TimeSource + 'static) -> Self {
        self.time_source = Some(SharedTimeSource::new(time_source));
        self
    }

    /// What the waits sleep on: retry backoffs, attempt deadlines, callers' waits, refresh timers
    /// (default: Tokio's timers), as in aws-config's `ProviderConfig::with_sleep_impl`. With
    /// `tick_advance_time_and_sleep`'s pair a test advances hours of retries and refreshes at
    /// once. A sleep that completes at once (`InstantSleep`) does not fit: every deadline would
    /// pass at once.
    pub fn sleep_impl(mut self, sleep_impl: impl AsyncSleep + 'static) -> Self {
        self.sleep_impl = Some(SharedAsyncSleep::new(sleep_impl));
        self
    }

    /// Seeds the jitter of the refresh points, of the Entra and STS retries and of the failure
    /// backoff, so that a test's run can be reproduced. For tests: leave it unset in production,
    /// where a fleet sharing one seed would refresh in lockstep, which the jitter exists to
    /// prevent. (The managed-identity sources' retry delays stay unseeded.)
    pub fn jitter_seed(mut self, seed: u64) -> Self {
        self.jitter_seed = Some(seed);
        self
    }

    /// The deadline of one refresh attempt: the identity endpoint, Entra and STS together, with
    /// their retries (default 60 s; 120 s with VM IMDS, whose 410 answers are retried for at
    /// least the 70 s Azure documents). It holds whatever the HTTP client's own timeouts are.
    pub fn attempt_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.attempt_timeout = Some(timeout);
        self
    }

    /// How long the Entra and STS clients wait for a connection (default 3 s).
    pub fn connect_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// How long one Entra or STS request may take, answer included (default 20 s). Each hop
    /// retries within the attempt's deadline ([`Self::attempt_timeout`]), which ends the attempt
    /// whatever this is.
    pub fn request_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.request_timeout = Some(timeout);
        self
    }

    /// Fills the builder from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        let mut b = Self::from_env_fn(|name| std::env::var(name).ok())?;
        // Re-read the process environment on every request: the platform rotates the header.
        if let Some(SourceChoice::AppService { header, .. }) = &mut b.source {
            *header = HeaderValueSource::Env("IDENTITY_HEADER".into());
        }
        Ok(b)
    }

    /// Fills the builder from `lookup` (a map in tests). Empty values count as unset.
    /// `IDENTITY_HEADER` is looked up again on every identity-endpoint request.
    pub fn from_env_fn(
        lookup: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
    ) -> Result<Self, ConfigError> {
        let lookup = Arc::new(lookup);
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let mut b = Self {
            tenant_id: get("TENANT_ID").or_else(|| get("AZURE_TENANT_ID")),
            app_id: get("STS_APP_ID"),
            app_uri: get("STS_APP_URI"),
            scope: get("ENTRA_FEDERATION_SCOPE"),
            authority: get("AZURE_AUTHORITY_HOST"),
            role_arn: get("AWS_ROLE_ARN"),
            region: get("AWS_REGION").or_else(|| get("AWS_DEFAULT_REGION")),
            session_name: get("AWS_ROLE_SESSION_NAME"),
            sts_endpoint: get("AWS_ENDPOINT_URL_STS").or_else(|| get("AWS_ENDPOINT_URL")),
            root_ca: get("ENTRA_FEDERATION_CA_FILE").map(PathBuf::from),
            ..Default::default()
        };
        if let Some(d) = get("AWS_ROLE_DURATION_SECONDS") {
            b.duration_seconds = Some(d.parse().map_err(|_| ConfigError::Invalid {
                name: "AWS_ROLE_DURATION_SECONDS",
                value: d.clone(),
                reason: "must be a whole number of seconds, 900 to 43200".into(),
            })?);
        }
        if let Some(v) = get("ENTRA_FEDERATION_ALLOW_HTTP") {
            b.allow_http = parse_bool("ENTRA_FEDERATION_ALLOW_HTTP", &v)?;
        }
        let token_file = get("AZURE_FEDERATED_TOKEN_FILE");
        let identity_endpoint = get("IDENTITY_ENDPOINT");
        let has_header = get("IDENTITY_HEADER").is_some();
        let imds = get("AZURE_POD_IDENTITY_AUTHORITY_HOST")
            .map(|host| {
                format!(
                    "{}/metadata/identity/oauth2/token",
                    host.trim_end_matches('/')
                )
            })
            .unwrap_or_else(|| assertion::IMDS_TOKEN_URL.to_string());
        let forced = get("ENTRA_FEDERATION_ASSERTION_SOURCE");
        let header_lookup = lookup.clone();
        let app_service = |endpoint: String| SourceChoice::AppService {
            endpoint,
            header: HeaderValueSource::Fn(Arc::new(move || {
                header_lookup("IDENTITY_HEADER").filter(|v| !v.is_empty())
            })),
        };
        b.source = Some(match forced.as_deref() {
            Some("token-file") => SourceChoice::TokenFile(PathBuf::from(token_file.ok_or(ConfigError::Missing {
                name: "AZURE_FEDERATED_TOKEN_FILE",
                hint: "ENTRA_FEDERATION_ASSERTION_SOURCE=token-file needs the path of the projected service-account token",
            })?)),
            Some("app-service") => {
                let endpoint = identity_endpoint.ok_or(ConfigError::Missing {
                    name: "IDENTITY_ENDPOINT",
                    hint: "ENTRA_FEDERATION_ASSERTION_SOURCE=app-service needs the platform's identity endpoint",
                })?;
                if !has_header {
                    return Err(ConfigError::Missing {
                        name: "IDENTITY_HEADER",
                        hint: "ENTRA_FEDERATION_ASSERTION_SOURCE=app-service needs the platform's identity header too",
                    });
                }
                app_service(endpoint)
            }
            Some("imds") => SourceChoice::Imds(imds),
            Some(other) => {
                return Err(ConfigError::Invalid {
                    name: "ENTRA_FEDERATION_ASSERTION_SOURCE",
                    value: other.into(),
                    reason: "must be token-file, app-service or imds".into(),
                });
            }
            None => match (token_file, identity_endpoint) {
                (Some(file), _) => SourceChoice::TokenFile(PathBuf::from(file)),
                (None, Some(endpoint)) if has_header => app_service(endpoint),
                (None, Some(_)) => {
                    return Err(ConfigError::Missing {
                        name: "IDENTITY_HEADER",
                        hint: "IDENTITY_ENDPOINT is set but IDENTITY_HEADER is not; both come from the platform (Container Apps / App Service)",
                    });
                }
                (None, None) => {
                    b.imds_is_a_guess = true;
                    SourceChoice::Imds(imds)
                }
            },
        });
        // On AKS, AZURE_CLIENT_ID names the app that holds the federated credential: the intermediary app.
        // Elsewhere it selects a user-assigned managed identity, as in azure-identity.
        if let Some(client_id) = get("AZURE_CLIENT_ID") {
            match b.source {
                Some(SourceChoice::TokenFile(_)) => {
                    b.app_id = b.app_id.or(Some(client_id));
                }
                _ => b.managed_identity = ManagedIdentity::ClientId(client_id),
            }
        }
        Ok(b)
    }

    /// Validates everything and builds the provider.
    pub fn build(self) -> Result<EntraCredentialsProvider, ConfigError> {
        let resolved = self.resolve()?;
        Ok(EntraCredentialsProvider::from_parts(resolved))
    }

    fn resolve(self) -> Result<Resolved, ConfigError> {
        let tenant = self.tenant_id.ok_or(ConfigError::Missing {
            name: "TENANT_ID (or AZURE_TENANT_ID)",
            hint: "the Entra tenant id, e.g. from az account show --query tenantId",
        })?;
        if !valid_tenant(&tenant)
            || tenant.eq_ignore_ascii_case("common")
            || tenant.eq_ignore_ascii_case("organizations")
        {
            return Err(ConfigError::Invalid {
                name: "TENANT_ID",
                value: tenant,
                reason: "must be the tenant GUID or a verified domain (not common/organizations)"
                    .into(),
            });
        }
        let app_id = self.app_id.ok_or(ConfigError::Missing {
            name: "STS_APP_ID",
            hint: "the client id of the intermediary Entra app that issues v1 tokens for AWS",
        })?;
        let app_uri = self.app_uri.unwrap_or_else(|| format!("api://{app_id}"));
        if !app_uri.contains("://") {
            return Err(ConfigError::Invalid {
                name: "STS_APP_URI",
                value: app_uri,
                reason: "must be an identifier URI such as api://<STS_APP_ID>".into(),
            });
        }
        let scope = self
            .scope
            .unwrap_or_else(|| format!("{}/.default", app_uri.trim_end_matches('/')));
        let authority_raw = self
            .authority
            .unwrap_or_else(|| DEFAULT_AUTHORITY.to_string());
        let authority = checked_url("AZURE_AUTHORITY_HOST", &authority_raw, self.allow_http)?;
        let role_arn = self.role_arn.ok_or(ConfigError::Missing {
            name: "AWS_ROLE_ARN",
            hint: "the IAM role to assume, arn:aws:iam::<account>:role/<name>",
        })?;
        if !valid_role_arn(&role_arn) {
            return Err(ConfigError::Invalid {
                name: "AWS_ROLE_ARN",
                value: role_arn,
                reason: "must look like arn:aws:iam::123456789012:role/Name".into(),
            });
        }
        let session_name = self
            .session_name
            .unwrap_or_else(|| DEFAULT_SESSION_NAME.to_string());
        if !sts::valid_session_name(&session_name) {
            return Err(ConfigError::Invalid {
                name: "AWS_ROLE_SESSION_NAME",
                value: session_name,
                reason: "must be 2-64 characters of letters, digits and _+=,.@-".into(),
            });
        }
        if let Some(d) = self.duration_seconds
            && !sts::DURATION_RANGE.contains(&d)
        {
            return Err(ConfigError::Invalid {
                name: "AWS_ROLE_DURATION_SECONDS",
                value: d.to_string(),
                reason: "must be 900 to 43200".into(),
            });
        }
        // AWS counts characters (U+0020 to U+00FF), not UTF-8 bytes.
        if let Some(p) = &self.policy
            && !(1..=2048).contains(&p.chars().count())
        {
            return Err(ConfigError::Invalid {
                name: "policy",
                value: format!("<{} chars>", p.chars().count()),
                reason: "must be 1 to 2048 characters".into(),
            });
        }
        if self.policy_arns.len() > 10 {
            return Err(ConfigError::Invalid {
                name: "policy_arns",
                value: self.policy_arns.len().to_string(),
                reason: "at most 10".into(),
            });
        }
        let sts_endpoint = match (self.sts_endpoint, &self.region) {
            (Some(e), _) => e,
            (None, Some(region)) => {
                if region.is_empty()
                    || !region
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                {
                    return Err(ConfigError::Invalid {
                        name: "AWS_REGION",
                        value: region.clone(),
                        reason: "must be a region name such as us-east-2".into(),
                    });
                }
                sts::regional_endpoint(region)
            }
            (None, None) => {
                return Err(ConfigError::Missing {
                    name: "AWS_REGION (or AWS_DEFAULT_REGION)",
                    hint: "the region whose STS endpoint to call, e.g. us-east-2 (or set AWS_ENDPOINT_URL_STS)",
                });
            }
        };
        let sts_endpoint = checked_url("AWS_ENDPOINT_URL_STS", &sts_endpoint, self.allow_http)?;
        let clock = Clock::new(self.time_source, self.sleep_impl);
        let http = HttpSettings {
            extra_root_ca: self.root_ca.clone(),
            connect_timeout: self.connect_timeout,
            request_timeout: self.request_timeout,
            ..Default::default()
        }
        .build()?;
        let identity_http = |url: &Url| identity_client(url, self.root_ca.clone());
        let resource = self
            .resource
            .unwrap_or_else(|| exchange_resource_for(&authority).to_string());
        let imds_is_a_guess = self.imds_is_a_guess || self.source.is_none();
        let mut default_deadline = crate::refreshing::DEFAULT_DEADLINE;
        let source: Arc<dyn AssertionSource> = match self
            .source
            .unwrap_or(SourceChoice::Imds(assertion::IMDS_TOKEN_URL.into()))
        {
            SourceChoice::Custom(s) => s,
            SourceChoice::TokenFile(path) => Arc::new(TokenFileSource::new(path)),
            SourceChoice::AppService { endpoint, header } => {
                let url = checked_url("IDENTITY_ENDPOINT", &endpoint, self.allow_http)?;
                let http = identity_http(&url)?;
                Arc::new(AppServiceSource::from_parts(
                    url,
                    header,
                    self.managed_identity.clone(),
                    resource.clone(),
                    http,
                    clock.clone(),
                ))
            }
            SourceChoice::Imds(endpoint) => {
                let url = checked_url(
                    "AZURE_POD_IDENTITY_AUTHORITY_HOST",
                    &endpoint,
                    self.allow_http,
                )?;
                let http = identity_http(&url)?;
                // IMDS asks for 410 to be retried for at least 70 s: an attempt must outlast it.
                default_deadline = IMDS_ATTEMPT_DEADLINE;
                let imds = ImdsSource::from_parts(
                    url,
                    self.managed_identity.clone(),
                    resource.clone(),
                    http,
                    clock.clone(),
                );
                Arc::new(if imds_is_a_guess {
                    imds.probing()
                } else {
                    imds
                })
            }
        };
        let entra = EntraClient::new(
            &authority,
            &tenant,
            app_id.clone(),
            scope,
            http.clone(),
            clock.clone(),
        )
        .map_err(|e| ConfigError::Invalid {
            name: "AZURE_AUTHORITY_HOST",
            value: authority_raw,
            reason: e.to_string(),
        })?;
        let jitter = self.jitter_seed.map(Jitter::seeded).unwrap_or_default();
        let entra = entra.with_jitter(jitter.clone());
        let sts = StsClient::new(sts_endpoint, http, clock.clone()).with_jitter(jitter.clone());
        let request = AssumeRoleRequest {
            role_arn,
            session_name,
            duration_seconds: self.duration_seconds,
            policy: self.policy,
            policy_arns: self.policy_arns,
        };
        Ok(Resolved {
            tenant,
            app_uri,
            source,
            entra,
            sts,
            request,
            clock,
            jitter,
            attempt_timeout: self.attempt_timeout.unwrap_or(default_deadline),
        })
    }
}

/// Everything the provider needs, validated.
#[derive(Debug)]
pub(crate) struct Resolved {
    pub tenant: String,
    pub app_uri: String,
    pub source: Arc<dyn AssertionSource>,
    pub entra: EntraClient,
    pub sts: StsClient,
    pub request: AssumeRoleRequest,
    pub clock: Clock,
    pub jitter: Jitter,
    pub attempt_timeout: std::time::Duration,
}

fn parse_bool(name: &'static str, v: &str) -> Result<bool, ConfigError> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" => Ok(true),
        "0" | "false" | "no" => Ok(false),
        _ => Err(ConfigError::Invalid {
            name,
            value: v.into(),
            reason: "must be 1/0, true/false or yes/no".into(),
        }),
    }
}

/// A tenant is a GUID or a domain name (letters, digits and hyphens in dot-separated labels,
/// none starting or ending with a hyphen): it is joined into URLs, so nothing else may pass.
pub(crate) fn valid_tenant(tenant: &str) -> bool {
    !tenant.is_empty()
        && tenant.len() <= 253
        && tenant.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

fn valid_role_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "iam"
        && parts[4].len() == 12
        && parts[4].bytes().all(|b| b.is_ascii_digit())
        && parts[5].starts_with("role/")
        && parts[5].len() > 5
}

/// The managed-identity resource for an authority: the token-exchange app differs per cloud.
fn exchange_resource_for(authority: &Url) -> &'static str {
    match authority.host_str().unwrap_or_default() {
        h if h.ends_with("microsoftonline.us") => "api://AzureADTokenExchangeUSGov",
        h if h.ends_with("chinacloudapi.cn") => "api://AzureADTokenExchangeChina",
        _ => assertion::TOKEN_EXCHANGE_RESOURCE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + Send + Sync + 'static {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    const BASE: &[(&str, &str)] = &[
        ("TENANT_ID", "7d2f0e4c-8a1b-4c3d-9e5f-0a1b2c3d4e5f"),
        ("STS_APP_ID", "faee0fc2-1111-2222-3333-444455556666"),
        (
            "AWS_ROLE_ARN",
            "arn:aws:iam::123456789012:role/BedrockInvokerFromAzure",
        ),
        ("AWS_REGION", "us-east-2"),
    ];

    fn with(extra: &[(&str, &str)]) -> Vec<(&'static str, String)> {
        BASE.iter()
            .map(|(k, v)| (*k, v.to_string()))
            .chain(extra.iter().map(|(k, v)| (leak(k), v.to_string())))
            .collect()
    }

    fn leak(s: &str) -> &'static str {
        Box::leak(s.to_string().into_boxed_str())
    }

    fn build(pairs: Vec<(&'static str, String)>) -> Result<Resolved, ConfigError> {
        let borrowed: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        EntraCredentialsProviderBuilder::from_env_fn(env(&borrowed))?.resolve()
    }

    #[test]
    fn tutorial_names_resolve_to_imds_and_regional_sts() {
        let r = build(with(&[])).unwrap();
        assert_eq!(r.app_uri, "api://faee0fc2-1111-2222-3333-444455556666");
        assert_eq!(
            r.sts.endpoint().as_str(),
            "https://sts.us-east-2.amazonaws.com/"
        );
        assert_eq!(r.source.kind(), "IMDS");
        assert_eq!(
            r.entra.token_url().as_str(),
            "https://login.microsoftonline.com/7d2f0e4c-8a1b-4c3d-9e5f-0a1b2c3d4e5f/oauth2/v2.0/token"
        );
        assert_eq!(r.request.session_name, DEFAULT_SESSION_NAME);
    }

    #[test]
    fn detection_order_token_file_then_identity_endpoint_then_imds() {
        let r = build(with(&[
            ("AZURE_FEDERATED_TOKEN_FILE", "/t"),
            ("IDENTITY_ENDPOINT", "http://127.0.0.1:1/msi/token"),
            ("IDENTITY_HEADER", "h"),
        ]))
        .unwrap();
        assert_eq!(r.source.kind(), "AKS federated token file");
        let r = build(with(&[
            ("IDENTITY_ENDPOINT", "http://127.0.0.1:1/msi/token"),
            ("IDENTITY_HEADER", "h"),
        ]))
        .unwrap();
        assert_eq!(
            r.source.kind(),
            "Container Apps / App Service identity endpoint"
        );
        let r = build(with(&[
            ("IDENTITY_ENDPOINT", "http://127.0.0.1:1/msi/token"),
            ("IDENTITY_HEADER", "h"),
            ("ENTRA_FEDERATION_ASSERTION_SOURCE", "imds"),
        ]))
        .unwrap();
        assert_eq!(r.source.kind(), "IMDS");
    }

    #[test]
    fn missing_values_name_the_variable() {
        for missing in ["TENANT_ID", "STS_APP_ID", "AWS_ROLE_ARN", "AWS_REGION"] {
            let pairs: Vec<_> = with(&[])
                .into_iter()
                .filter(|(k, _)| *k != missing)
                .collect();
            let err = build(pairs).unwrap_err().to_string();
            assert!(err.starts_with(missing), "{missing}: {err}");
        }
        let err = build(with(&[("IDENTITY_ENDPOINT", "http://127.0.0.1:1/")]))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("IDENTITY_HEADER"), "{err}");
    }

    #[test]
    fn malformed_values_name_the_variable() {
        for (k, v) in [
            ("AWS_ROLE_ARN", "BedrockInvokerFromAzure"),
            ("AWS_ROLE_SESSION_NAME", "has space"),
            ("AWS_ROLE_DURATION_SECONDS", "60"),
            ("AWS_ROLE_DURATION_SECONDS", "an hour"),
            ("AWS_REGION", "US East"),
            ("TENANT_ID", "common"),
            ("STS_APP_URI", "myapp"),
            ("ENTRA_FEDERATION_ALLOW_HTTP", "perhaps"),
            ("ENTRA_FEDERATION_ASSERTION_SOURCE", "magic"),
        ] {
            let err = build(with(&[(k, v)])).unwrap_err().to_string();
            assert!(err.contains(k), "{k}: {err}");
        }
    }

    #[test]
    fn plain_http_authority_refused_unless_allowed() {
        let err = build(with(&[(
            "AZURE_AUTHORITY_HOST",
            "http://login.example.com/",
        )]))
        .unwrap_err();
        assert!(
            matches!(
                err,
                ConfigError::Endpoint(EndpointError::InsecureHttp { .. })
            ),
            "{err}"
        );
        build(with(&[
            ("AZURE_AUTHORITY_HOST", "http://login.example.com/"),
            ("ENTRA_FEDERATION_ALLOW_HTTP", "1"),
        ]))
        .unwrap();
        build(with(&[("AZURE_AUTHORITY_HOST", "http://127.0.0.1:9/")])).unwrap();
    }

    #[test]
    fn sts_endpoint_override_and_aks_client_id() {
        let r = build(with(&[("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")])).unwrap();
        assert_eq!(r.sts.endpoint().as_str(), "http://127.0.0.1:4566/");
        let r = build(with(&[
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:4566"),
            ("AWS_ENDPOINT_URL_STS", "http://127.0.0.1:5000"),
        ]))
        .unwrap();
        assert_eq!(r.sts.endpoint().as_str(), "http://127.0.0.1:5000/");
        let pairs: Vec<_> = with(&[
            ("AZURE_FEDERATED_TOKEN_FILE", "/t"),
            ("AZURE_CLIENT_ID", "aks-app"),
        ])
        .into_iter()
        .filter(|(k, _)| *k != "STS_APP_ID")
        .collect();
        assert_eq!(build(pairs).unwrap().app_uri, "api://aks-app");
    }

    #[test]
    fn sovereign_authority_selects_the_exchange_resource() {
        assert_eq!(
            exchange_resource_for(&Url::parse("https://login.microsoftonline.us/").unwrap()),
            "api://AzureADTokenExchangeUSGov"
        );
        assert_eq!(
            exchange_resource_for(&Url::parse("https://login.chinacloudapi.cn/").unwrap()),
            "api://AzureADTokenExchangeChina"
        );
        assert_eq!(
            exchange_resource_for(&Url::parse(DEFAULT_AUTHORITY).unwrap()),
            "api://AzureADTokenExchange"
        );
    }
}
