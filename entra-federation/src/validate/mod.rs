//! Validating Entra (Agent ID) access tokens in a downstream API.
//!
//! RS256 only, the key chosen by `kid` from the metadata of the token's own version; `exp`, `iss`,
//! `aud` and `tid` required; the issuer exactly `https://sts.windows.net/{tid}/` for `ver` 1.0 or
//! `https://login.microsoftonline.com/{tid}/v2.0` for 2.0; audience in the configured set; `nbf` and
//! `exp` with a clock skew (5 min by default); then the [`Policy`]. No token is ever accepted whose
//! signature did not verify, whatever its header says (the tutorial's sample skipped the check when
//! the header carried `nonce`).
//!
//! ```no_run
//! # async fn f(token: &str) -> Result<(), Box<dyn std::error::Error>> {
//! use entra_federation::validate::{KindPolicy, Policy, TokenValidator, ValidatorConfig};
//! let validator = TokenValidator::new(ValidatorConfig::new(
//!     "7d2f0e4c-8a1b-4c3d-9e5f-0a1b2c3d4e5f",
//!     vec!["api://weather-api".into()],
//!     Policy::new(
//!         ["82323b11-6a7b-4c8d-9e0f-1a2b3c4d5e6f"],
//!         KindPolicy::Require("Weather.Read".into()),
//!         KindPolicy::Require("Weather.Read".into()),
//!     ),
//! ))?;
//! let caller = validator.validate(token).await?;
//! println!("called by {:?} ({:?})", caller.claims.app_id(), caller.kind);
//! # Ok(()) }
//! ```

mod jwks;
mod policy;
mod verified;

pub use jwks::{KeyCache, Version};
pub use policy::{KindPolicy, Policy};

use crate::clock::Clock;
use aws_smithy_async::rt::sleep::{SharedAsyncSleep, TokioSleep};
use aws_smithy_async::time::SharedTimeSource;
use jsonwebtoken::Algorithm;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;
use url::Url;

/// Validator settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ValidatorConfig {
    /// The tenant (GUID) whose tokens are accepted.
    pub tenant_id: String,
    /// Authority host (default `https://login.microsoftonline.com/`).
    pub authority: Url,
    /// Accepted audiences (the API's app id and/or identifier URI).
    pub audiences: Vec<String>,
    /// Authorisation.
    pub policy: Policy,
    /// Clock skew allowed on `exp` and `nbf` (default 5 min, as .NET).
    pub skew: Duration,
    /// Extra root CA (PEM) for the metadata endpoint.
    pub root_ca: Option<std::path::PathBuf>,
    /// How often the keys are refreshed (default 12 h, as Microsoft.IdentityModel).
    pub refresh_interval: Duration,
    /// How many verified tokens are kept so that a repeated token skips the signature check
    /// (default 4096; 0 turns the cache off). An entry ends with its token's `exp` or with the
    /// key that verified it; the policy is applied on every use.
    pub verified_cache: usize,
    /// Where "now" comes from for `exp`, `nbf` and the keys' refresh (default: the system clock).
    pub time_source: SharedTimeSource,
    /// What the key fetch's deadline sleeps on (default: Tokio's timers).
    pub sleep_impl: SharedAsyncSleep,
}

impl ValidatorConfig {
    /// Settings with the defaults.
    pub fn new(tenant_id: &str, audiences: Vec<String>, policy: Policy) -> Self {
        Self {
            tenant_id: tenant_id.to_string(),
            authority: Url::parse(crate::provider::DEFAULT_AUTHORITY).expect("valid URL"),
            audiences,
            policy,
            skew: Duration::from_secs(300),
            root_ca: None,
            refresh_interval: Duration::from_secs(12 * 3600),
            verified_cache: 4096,
            time_source: SharedTimeSource::default(),
            sleep_impl: SharedAsyncSleep::new(TokioSleep::new()),
        }
    }
}

/// The kind of caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenKind {
    /// `idtyp=app` (or, without `idtyp`, no `scp`): the agent acting on its own (autonomous).
    AppOnly,
    /// `idtyp=user` (or, without `idtyp`, an `scp`): the agent acting for a user (on-behalf-of).
    Delegated,
}

/// The claims a downstream API uses.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[non_exhaustive]
pub struct AgentClaims {
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// Tenant.
    pub tid: String,
    /// `1.0` or `2.0`.
    pub ver: String,
    /// Expiry.
    pub exp: u64,
    /// Not before.
    pub nbf: Option<u64>,
    /// Client app (v1).
    pub appid: Option<String>,
    /// Client app (v2).
    pub azp: Option<String>,
    /// `app` or `user`.
    pub idtyp: Option<String>,
    /// App roles (app-only).
    #[serde(default)]
    pub roles: Vec<String>,
    /// Scopes (delegated), space-separated.
    pub scp: Option<String>,
    /// Caller object id (agent SP, or the user).
    pub oid: Option<String>,
    /// Subject.
    pub sub: Option<String>,
    /// Parent (Blueprint) app id.
    pub xms_par_app_azp: Option<String>,
    /// Actor facets.
    pub xms_act_fct: Option<String>,
    /// Subject facets.
    pub xms_sub_fct: Option<String>,
    /// User principal name (delegated).
    pub upn: Option<String>,
    /// Display name (delegated).
    pub name: Option<String>,
}

impl AgentClaims {
    /// The calling app: `appid` (v1) or `azp` (v2).
    pub fn app_id(&self) -> Option<&str> {
        self.appid.as_deref().or(self.azp.as_deref())
    }
}

/// A token that passed validation and the policy.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ValidatedToken {
    /// Its claims.
    pub claims: AgentClaims,
    /// App-only or delegated.
    pub kind: TokenKind,
}

/// Why a token was refused. [`ValidationError::status`] is 401 for a missing or invalid token and
/// 403 for a valid token the policy does not allow.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ValidationError {
    /// No `Authorization: Bearer` token.
    #[error("missing bearer token")]
    Missing,
    /// Not a JWT.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// An algorithm other than RS256 (including `none` and HS256).
    #[error("algorithm {0} is not accepted (RS256 only)")]
    Algorithm(String),
    /// No `kid` in the header.
    #[error("the token names no signing key (kid)")]
    NoKeyId,
    /// The `kid` is not among the tenant's keys, even after a refresh.
    #[error("unknown signing key {0}")]
    UnknownKey(String),
    /// The keys could not be fetched and none are cached.
    #[error("the tenant's signing keys are unavailable")]
    KeysUnavailable,
    /// The signature does not verify.
    #[error("invalid signature")]
    Signature,
    /// A required claim is missing.
    #[error("missing required claim {0}")]
    MissingClaim(&'static str),
    /// `exp` passed (beyond the skew).
    #[error("token expired")]
    Expired,
    /// `nbf` in the future (beyond the skew).
    #[error("token not yet valid")]
    NotYetValid,
    /// `ver` is neither 1.0 nor 2.0.
    #[error("unsupported token version {0}")]
    Version(String),
    /// The issuer is not the tenant's issuer for the token's version.
    /// (The expected issuer is for the logs, not the message: it names the tenant's authority.)
    #[error("issuer {iss} is not accepted")]
    Issuer {
        /// Found.
        iss: String,
        /// Expected.
        expected: String,
    },
    /// `tid` is another tenant.
    #[error("tenant {0} is not accepted")]
    Tenant(String),
    /// The audience is not this API.
    #[error("audience {0} is not accepted")]
    Audience(String),
    /// The calling app is not an allowed agent identity.
    #[error("app {0} is not an allowed agent identity")]
    AppNotAllowed(String),
    /// The parent Blueprint is not the expected one.
    #[error("parent blueprint {0} is not the expected one")]
    Blueprint(String),
    /// The kind of token is not authorised.
    #[error("{0} tokens are not accepted here")]
    KindNotAllowed(&'static str),
    /// The required app role or scope is missing.
    #[error("missing permission {0}")]
    Permission(String),
}

impl ValidationError {
    /// 401 for missing/invalid tokens, 403 for valid tokens the policy refuses, 503 when keys are unavailable.
    pub fn status(&self) -> u16 {
        match self {
            Self::AppNotAllowed(_)
            | Self::Blueprint(_)
            | Self::KindNotAllowed(_)
            | Self::Permission(_) => 403,
            Self::KeysUnavailable => 503,
            _ => 401,
        }
    }

    /// A `WWW-Authenticate` value for 401 responses (RFC 6750).
    pub fn www_authenticate(&self) -> String {
        match self {
            Self::Missing => "Bearer".to_string(),
            // An RFC 7230 quoted-string: `\` and `"` are escaped.
            other => format!(
                "Bearer error=\"invalid_token\", error_description=\"{}\"",
                other.to_string().replace('\\', "\\\\").replace('"', "\\\"")
            ),
        }
    }
}

/// Validates tokens; cheap to clone and share.
#[derive(Clone)]
pub struct TokenValidator {
    inner: Arc<Inner>,
}

struct Inner {
    config: ValidatorConfig,
    keys: KeyCache,
    v1_issuer: String,
    v2_issuer: String,
    /// The configured audiences in both forms: `api://<client id>` and `<client id>`.
    audiences: Vec<String>,
    verified: verified::VerifiedCache,
}

impl TokenValidator {
    /// A validator (keys are fetched on first use).
    pub fn new(config: ValidatorConfig) -> Result<Self, crate::ConfigError> {
        // Keys come from the authority: https, loopback excepted (the local cloud).
        crate::http::checked_url("AZURE_AUTHORITY_HOST", config.authority.as_str(), false)?;
        // The tenant is joined into the metadata URLs.
        if !crate::provider::valid_tenant(&config.tenant_id) {
            return Err(crate::ConfigError::Invalid {
                name: "TENANT_ID",
                value: config.tenant_id,
                reason: "must be the tenant GUID or a verified domain".into(),
            });
        }
        let http = crate::http::HttpSettings {
            extra_root_ca: config.root_ca.clone(),
            ..Default::default()
        }
        .build()?;
        let keys = KeyCache::new(
            &config.authority,
            &config.tenant_id,
            http,
            Clock::new(
                Some(config.time_source.clone()),
                Some(config.sleep_impl.clone()),
            ),
        )
        .map_err(|e| crate::ConfigError::Invalid {
            name: "AZURE_AUTHORITY_HOST",
            value: config.authority.to_string(),
            reason: e.to_string(),
        })?;
        let mut keys = keys;
        keys.refresh_interval = config.refresh_interval;
        // Entra writes the tenant GUID in lower case; the issuer is compared exactly.
        let tenant = config.tenant_id.to_ascii_lowercase();
        let v1_issuer = format!("https://sts.windows.net/{tenant}/");
        let v2_issuer = format!("https://login.microsoftonline.com/{tenant}/v2.0");
        let audiences = both_audience_forms(&config.audiences);
        let verified = verified::VerifiedCache::new(config.verified_cache);
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                keys,
                v1_issuer,
                v2_issuer,
                audiences,
                verified,
            }),
        })
    }

    /// The key cache (for tests and metrics).
    pub fn keys(&self) -> &KeyCache {
        &self.inner.keys
    }

    /// Validations answered from the verified-token cache (for tests and metrics).
    pub fn verified_cache_hits(&self) -> u64 {
        self.inner.verified.hits()
    }

    /// Validates an `Authorization` header value (`Bearer <token>`).
    pub async fn validate_header(
        &self,
        header: Option<&str>,
    ) -> Result<ValidatedToken, ValidationError> {
        // RFC 7235: the scheme is case-insensitive.
        let token = header
            .and_then(|h| h.trim_start().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("Bearer"))
            .map(|(_, token)| token.trim())
            .filter(|t| !t.is_empty())
            .ok_or(ValidationError::Missing)?;
        self.validate(token).await
    }

    /// Validates a token and applies the policy.
    pub async fn validate(&self, token: &str) -> Result<ValidatedToken, ValidationError> {
        let inner = &*self.inner;
        if token.split('.').count() != 3 {
            return Err(ValidationError::Malformed(
                "not a JWT (three dot-separated parts)".into(),
            ));
        }
        // A token verified before (by a key still in use, not expired): only the policy again.
        let digest = verified::digest(token);
        let now = crate::clock::unix_seconds(inner.config.time_source.now());
        let skew = inner.config.skew.as_secs();
        if let Some(claims) = inner
            .verified
            .get(&digest, now, skew, &inner.keys.current())
        {
            return authorize(&inner.config.policy, Arc::unwrap_or_clone(claims));
        }
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| ValidationError::Malformed(e.to_string()))?;
        if header.alg != Algorithm::RS256 {
            return Err(ValidationError::Algorithm(format!("{:?}", header.alg)));
        }
        let kid = header.kid.clone().ok_or(ValidationError::NoKeyId)?;
        // Parsed once: before verification only the version (which picks the keys) is used;
        // the signature check below then covers the whole payload.
        let unverified: serde_json::Value = jsonwebtoken::dangerous::insecure_decode_claims(token)
            .map_err(|e| ValidationError::Malformed(e.to_string()))?;
        let version = match unverified.get("ver").and_then(|v| v.as_str()) {
            Some("1.0") => Version::V1,
            Some("2.0") => Version::V2,
            Some(other) => return Err(ValidationError::Version(other.to_string())),
            None => return Err(ValidationError::MissingClaim("ver")),
        };
        let mut keys = inner.keys.current();
        if keys.fetched_at.is_none() {
            // First use: nothing to validate with yet.
            keys = inner.keys.refresh(false).await;
        } else if inner.keys.stale()
            && crate::http::outside_runtime().is_none()
            && inner.keys.claim_periodic()
        {
            // The periodic refresh runs beside the requests, which keep the current keys (outside
            // a Tokio runtime there is nothing to run it on: the current keys serve).
            let me = self.clone();
            tokio::spawn(async move { me.inner.keys.periodic_refresh().await });
        }
        let (key, keys) = match keys.get(version, &kid) {
            Some(k) => (k, keys),
            None => {
                let refreshed = inner.keys.refresh(true).await;
                if refreshed.fetched_at.is_none() {
                    return Err(ValidationError::KeysUnavailable);
                }
                let key = refreshed
                    .get(version, &kid)
                    .ok_or_else(|| ValidationError::UnknownKey(kid.clone()))?;
                (key, refreshed)
            }
        };
        // The issuer the authority's metadata names (sovereign clouds differ), else the public
        // cloud's.
        let expected_iss = keys.issuer(version).unwrap_or(match version {
            Version::V1 => &inner.v1_issuer,
            Version::V2 => &inner.v2_issuer,
        });
        // The signature over `header.payload`, checked once; the payload parsed above is then
        // the verified one (no second decode and parse).
        let (message, signature) = token
            .rsplit_once('.')
            .ok_or_else(|| ValidationError::Malformed("not a JWT".into()))?;
        match jsonwebtoken::crypto::verify(signature, message.as_bytes(), &key, Algorithm::RS256) {
            Ok(true) => {}
            Ok(false) => return Err(ValidationError::Signature),
            Err(e) => return Err(ValidationError::Malformed(format!("{:?}", e.kind()))),
        }
        for required in ["exp", "iss", "aud", "tid", "ver"] {
            if unverified.get(required).is_none() {
                return Err(ValidationError::MissingClaim(match required {
                    "exp" => "exp",
                    "iss" => "iss",
                    "aud" => "aud",
                    "tid" => "tid",
                    _ => "ver",
                }));
            }
        }
        let claims: AgentClaims = serde_json::from_value(unverified)
            .map_err(|e| ValidationError::Malformed(format!("claims: {e}")))?;
        if claims.exp.saturating_add(skew) < now {
            return Err(ValidationError::Expired);
        }
        if claims.nbf.is_some_and(|nbf| nbf > now + skew) {
            return Err(ValidationError::NotYetValid);
        }
        if claims.iss != expected_iss {
            return Err(ValidationError::Issuer {
                iss: claims.iss,
                expected: expected_iss.to_string(),
            });
        }
        if !claims.tid.eq_ignore_ascii_case(&inner.config.tenant_id) {
            return Err(ValidationError::Tenant(claims.tid));
        }
        if !inner.audiences.contains(&claims.aud) {
            return Err(ValidationError::Audience(claims.aud));
        }
        // Only tokens the policy admits are kept: any app of the tenant can get tokens for this
        // audience, and refused ones must not take the places of the agents'.
        let entry = verified::Entry {
            claims: Arc::new(claims.clone()),
            version,
            kid,
            key,
            metadata_issuer: keys.issuer(version).map(str::to_string),
        };
        let validated = authorize(&inner.config.policy, claims)?;
        inner.verified.put(digest, entry, now, skew);
        Ok(validated)
    }
}

/// Each configured audience, plus its other form: a v2 token carries the API's client id, a v1
/// token its App ID URI, and `api://<client id>` is the default App ID URI (as
/// Microsoft.Identity.Web accepts both). A custom App ID URI has no derivable client id: configure
/// both.
fn both_audience_forms(configured: &[String]) -> Vec<String> {
    let mut all: Vec<String> = Vec::new();
    for a in configured {
        let other = match a.strip_prefix("api://") {
            Some(id) if crate::entra::looks_like_guid(id) => Some(id.to_string()),
            _ if crate::entra::looks_like_guid(a) => Some(format!("api://{a}")),
            _ => None,
        };
        for form in std::iter::once(a.clone()).chain(other) {
            if !all.contains(&form) {
                all.push(form);
            }
        }
    }
    all
}

pub(crate) fn authorize(
    policy: &Policy,
    claims: AgentClaims,
) -> Result<ValidatedToken, ValidationError> {
    let app = claims
        .app_id()
        .ok_or(ValidationError::MissingClaim("appid/azp"))?
        .to_string();
    if !policy
        .allowed_app_ids
        .iter()
        .any(|a| a.eq_ignore_ascii_case(&app))
    {
        return Err(ValidationError::AppNotAllowed(app));
    }
    if let Some(blueprint) = &policy.expected_blueprint {
        let parent = claims.xms_par_app_azp.clone().unwrap_or_default();
        if !parent.eq_ignore_ascii_case(blueprint) {
            return Err(ValidationError::Blueprint(if parent.is_empty() {
                "(none)".into()
            } else {
                parent
            }));
        }
    }
    // `idtyp` is emitted only where the API requests it as an optional claim; without it, the
    // token is classified as Microsoft.Identity.Web does: `scp` → delegated, else app-only.
    let (kind, rule) = match (claims.idtyp.as_deref(), &claims.scp) {
        (Some("app"), _) => (TokenKind::AppOnly, &policy.app_only),
        (Some("user"), _) => (TokenKind::Delegated, &policy.delegated),
        (None, Some(_)) => (TokenKind::Delegated, &policy.delegated),
        (None, None) => (TokenKind::AppOnly, &policy.app_only),
        (Some(_), _) => return Err(ValidationError::MissingClaim("idtyp")),
    };
    let label = if kind == TokenKind::AppOnly {
        "app-only"
    } else {
        "delegated (user)"
    };
    match rule {
        KindPolicy::Deny => return Err(ValidationError::KindNotAllowed(label)),
        KindPolicy::Require(permission) => {
            let has = match kind {
                TokenKind::AppOnly => claims.roles.iter().any(|r| r == permission),
                TokenKind::Delegated => claims
                    .scp
                    .as_deref()
                    .unwrap_or_default()
                    .split(' ')
                    .any(|s| s == permission),
            };
            if !has {
                return Err(ValidationError::Permission(permission.clone()));
            }
        }
    }
    Ok(ValidatedToken { claims, kind })
}

/// The fuzz targets' way into the key parser (feature `fuzzing`).
#[cfg(feature = "fuzzing")]
pub(crate) mod jwks_fuzz {
    use super::jwks::{Keys, Version};

    pub(crate) fn empty_keys() -> Keys {
        Keys::default()
    }

    pub(crate) fn signing_keys(body: &[u8], previous: &Keys) {
        for version in [Version::V1, Version::V2] {
            let _ = super::jwks::signing_keys(body, previous, version).map_err(|e| e.to_string());
        }
    }

    /// An OpenID metadata document from the public cloud's authority, for a GUID tenant and a
    /// domain one: what it names must be an https issuer and a key set URL on that origin.
    pub(crate) fn metadata(body: &[u8]) {
        let authority = url::Url::parse(
            "https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/v2.0/.well-known/openid-configuration",
        )
        .expect("a URL");
        for tenant in [
            "72f988bf-86f1-41af-91ab-2d7cd011db47",
            "contoso.onmicrosoft.com",
        ] {
            match super::jwks::metadata_of(body, tenant, &authority) {
                Ok((issuer, jwks)) => {
                    assert_eq!(jwks.origin(), authority.origin());
                    let Some(issuer) = issuer else { continue };
                    assert!(issuer.starts_with("https://"), "{issuer}");
                    if !tenant.contains('.') {
                        let parsed = url::Url::parse(&issuer).expect("an accepted issuer is a URL");
                        assert!(
                            parsed
                                .path_segments()
                                .is_some_and(|mut s| s.any(|seg| seg.eq_ignore_ascii_case(tenant))),
                            "{issuer} names the tenant as a path segment"
                        );
                    }
                }
                Err(e) => {
                    let _ = e.to_string();
                }
            }
        }
    }
}

/// The claims of a verified token, parsed and put to a typical policy (feature `fuzzing`).
#[cfg(feature = "fuzzing")]
pub(crate) fn claims_fuzz(json: &[u8]) {
    let Ok(claims) = serde_json::from_slice::<AgentClaims>(json) else {
        return;
    };
    let policy = Policy::new(
        ["00000000-0000-0000-0000-000000000001"],
        KindPolicy::Require("Weather.Read".into()),
        KindPolicy::Require("Weather.Read".into()),
    )
    .with_expected_blueprint("00000000-0000-0000-0000-000000000002");
    match authorize(&policy, claims) {
        Ok(v) => {
            let _ = format!("{v:?}");
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}
