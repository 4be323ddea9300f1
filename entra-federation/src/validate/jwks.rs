//! The tenant's signing keys: fetched through the v1 and v2 OpenID metadata, swapped in whole so
//! validations read them without a lock; refreshed every 12 h, and on an unknown `kid` at most once
//! per 5 minutes (single-flight); the last good keys stay when a refresh fails.

use crate::clock::Clock;
use arc_swap::ArcSwap;
use jsonwebtoken::DecodingKey;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use url::Url;

/// Token versions, each validated against its own metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// `ver` 1.0, issuer `https://sts.windows.net/{tid}/`.
    V1,
    /// `ver` 2.0, issuer `https://login.microsoftonline.com/{tid}/v2.0`.
    V2,
}

/// The keys of both versions at one moment.
#[derive(Default)]
#[non_exhaustive]
pub struct Keys {
    by_version: HashMap<Version, HashMap<String, SigningKey>>,
    /// The issuer each version's metadata names (a sovereign cloud's differs from the public one).
    issuers: HashMap<Version, String>,
    /// When they were fetched (`None`: never).
    pub fetched_at: Option<SystemTime>,
}

/// A published key, and the material it was built from (`n`, `e`): a refetch that publishes the
/// same material keeps the same `Arc`, so what it verified stays verified.
#[derive(Clone)]
pub(crate) struct SigningKey {
    key: Arc<DecodingKey>,
    material: (String, String),
}

impl Keys {
    /// The key `kid` for `version`.
    pub fn get(&self, version: Version, kid: &str) -> Option<Arc<DecodingKey>> {
        Some(self.by_version.get(&version)?.get(kid)?.key.clone())
    }

    /// Keys holding one `kid` for `version` (unit tests of the caches built on them).
    #[cfg(test)]
    pub(crate) fn for_test(
        version: Version,
        kid: &str,
        key: &Arc<DecodingKey>,
        issuer: Option<&str>,
    ) -> Self {
        let signing = SigningKey {
            key: key.clone(),
            material: ("n".into(), "e".into()),
        };
        Self {
            by_version: HashMap::from([(version, HashMap::from([(kid.to_string(), signing)]))]),
            issuers: issuer
                .map(|i| HashMap::from([(version, i.to_string())]))
                .unwrap_or_default(),
            fetched_at: None,
        }
    }

    /// `kid`'s key for `version` if it was built from exactly `material`.
    fn same(&self, version: Version, kid: &str, material: &(String, String)) -> Option<SigningKey> {
        self.by_version
            .get(&version)?
            .get(kid)
            .filter(|k| &k.material == material)
            .cloned()
    }

    /// The issuer `version`'s metadata names, if it names one.
    pub fn issuer(&self, version: Version) -> Option<&str> {
        self.issuers.get(&version).map(String::as_str)
    }
}

#[derive(Deserialize)]
struct Metadata {
    jwks_uri: String,
    issuer: Option<String>,
}

#[derive(Deserialize)]
struct JwkSet {
    keys: Vec<Jwk>,
}

#[derive(Deserialize)]
struct Jwk {
    kid: Option<String>,
    kty: Option<String>,
    n: Option<String>,
    e: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
}

/// The key cache.
#[non_exhaustive]
pub struct KeyCache {
    keys: ArcSwap<Keys>,
    /// Whether a periodic refresh task is under way (so requests spawn at most one).
    periodic: std::sync::atomic::AtomicBool,
    /// Single-flight gate; holds when the last unknown-kid refresh ran.
    refresh: tokio::sync::Mutex<Option<SystemTime>>,
    metadata: [(Version, Url); 2],
    tenant: String,
    http: reqwest::Client,
    clock: Clock,
    /// Periodic refresh (12 h).
    pub refresh_interval: Duration,
    /// Least time between two refreshes caused by unknown `kid`s (5 min).
    pub min_refresh_interval: Duration,
    /// The last failed fetch, until a fetch succeeds: no new fetch before its backoff ends.
    failure: std::sync::Mutex<Option<FetchFailure>>,
}

struct FetchFailure {
    error: String,
    consecutive: u32,
    retry_not_before: SystemTime,
}

/// The longest one fetch of the keys (both metadata documents and key sets) may take.
pub const FETCH_DEADLINE: Duration = Duration::from_secs(10);

/// Why keys could not be fetched (kept internal: validation reports "keys unavailable").
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct FetchError(String);

impl KeyCache {
    /// A cache for `tenant` at `authority`.
    pub(crate) fn new(
        authority: &Url,
        tenant: &str,
        http: reqwest::Client,
        clock: Clock,
    ) -> Result<Self, url::ParseError> {
        let base = if authority.as_str().ends_with('/') {
            authority.clone()
        } else {
            Url::parse(&format!("{authority}/"))?
        };
        Ok(Self {
            keys: ArcSwap::from_pointee(Keys::default()),
            periodic: std::sync::atomic::AtomicBool::new(false),
            refresh: tokio::sync::Mutex::new(None),
            metadata: [
                (
                    Version::V1,
                    base.join(&format!("{tenant}/.well-known/openid-configuration"))?,
                ),
                (
                    Version::V2,
                    base.join(&format!("{tenant}/v2.0/.well-known/openid-configuration"))?,
                ),
            ],
            tenant: tenant.to_ascii_lowercase(),
            http,
            clock,
            refresh_interval: Duration::from_secs(12 * 3600),
            min_refresh_interval: Duration::from_secs(300),
            failure: std::sync::Mutex::new(None),
        })
    }

    /// The current keys (lock-free).
    pub fn current(&self) -> Arc<Keys> {
        self.keys.load_full()
    }

    /// Whether the periodic refresh is due.
    pub fn stale(&self) -> bool {
        match self.keys.load().fetched_at {
            None => true,
            Some(at) => {
                self.clock.now().duration_since(at).unwrap_or_default() >= self.refresh_interval
            }
        }
    }

    /// Why the last fetch failed, while no fetch has succeeded since (for logs and health).
    pub fn last_error(&self) -> Option<String> {
        self.failure_slot().as_ref().map(|f| f.error.clone())
    }

    /// Whether a failed fetch is being backed off from: callers are answered at once from the
    /// keys at hand (none, before the first success), without a fetch.
    pub fn backing_off(&self) -> bool {
        self.failure_slot()
            .as_ref()
            .is_some_and(|f| self.clock.now() < f.retry_not_before)
    }

    fn failure_slot(&self) -> std::sync::MutexGuard<'_, Option<FetchFailure>> {
        self.failure.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Refreshes unless another caller just did (single-flight); `unknown_kid` refreshes are
    /// limited to one per `min_refresh_interval`. Failures keep the last good keys, and back off
    /// (1 s doubling to 1 min, jittered) before the next fetch.
    pub async fn refresh(&self, unknown_kid: bool) -> Arc<Keys> {
        if self.backing_off() {
            return self.current();
        }
        let before = self.keys.load().fetched_at;
        let failures_before = self.failure_slot().as_ref().map(|f| f.consecutive);
        let mut last = self.refresh.lock().await;
        if self.keys.load().fetched_at != before
            || self.failure_slot().as_ref().map(|f| f.consecutive) != failures_before
        {
            return self.current(); // another caller fetched while we waited
        }
        // Only refreshes caused by unknown kids are rate-limited (and recorded); the first load
        // and the periodic refresh are not.
        if unknown_kid {
            let now = self.clock.now();
            if last.is_some_and(|t| {
                now.duration_since(t).unwrap_or_default() < self.min_refresh_interval
            }) {
                return self.current();
            }
            *last = Some(now);
        }
        self.fetch_and_record().await;
        self.current()
    }

    async fn fetch_and_record(&self) {
        let fetched = if crate::http::outside_runtime().is_some() {
            // No timer to bound it with; the fetch itself says why it cannot run.
            self.fetch().await
        } else {
            self.clock
                .timeout(FETCH_DEADLINE, self.fetch())
                .await
                .unwrap_or_else(|_| {
                    Err(FetchError(format!(
                        "no answer within {} s",
                        FETCH_DEADLINE.as_secs()
                    )))
                })
        };
        match fetched {
            Ok(keys) => {
                self.keys.store(Arc::new(keys));
                *self.failure_slot() = None;
                tracing::info!("signing keys refreshed");
            }
            Err(e) => {
                let mut slot = self.failure_slot();
                let consecutive = slot.as_ref().map_or(1, |f| f.consecutive + 1);
                let backoff = crate::retry::Backoff {
                    initial: Duration::from_secs(1),
                    max: Duration::from_secs(60),
                    max_retries: u32::MAX,
                    jitter: 0.5,
                }
                .delay_with(consecutive, &crate::retry::Jitter::default());
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, have_keys = self.keys.load().fetched_at.is_some(), "signing keys could not be fetched; keeping the last good ones, if any");
                *slot = Some(FetchFailure {
                    error: e.to_string(),
                    consecutive,
                    retry_not_before: self.clock.now() + backoff,
                });
            }
        }
    }

    /// Claims the periodic refresh: true for exactly one caller until it finishes.
    pub fn claim_periodic(&self) -> bool {
        !self
            .periodic
            .swap(true, std::sync::atomic::Ordering::AcqRel)
    }

    /// The periodic refresh, for the caller that claimed it; failures keep the last good keys.
    pub async fn periodic_refresh(&self) {
        if let Ok(_gate) = self.refresh.try_lock()
            && self.stale()
            && !self.backing_off()
        {
            self.fetch_and_record().await;
        }
        self.periodic
            .store(false, std::sync::atomic::Ordering::Release);
    }

    async fn fetch(&self) -> Result<Keys, FetchError> {
        if let Some(reason) = crate::http::outside_runtime() {
            return Err(FetchError(reason.into()));
        }
        let mut by_version: HashMap<Version, HashMap<String, SigningKey>> = HashMap::new();
        let previous = self.keys.load_full();
        let mut issuers = HashMap::new();
        for (version, url) in &self.metadata {
            let get = |u: Url| async move {
                let r = self
                    .http
                    .get(u.clone())
                    .send()
                    .await
                    .map_err(|e| FetchError(format!("{u}: {}", e.without_url())))?;
                if !r.status().is_success() {
                    return Err(FetchError(format!("{u}: HTTP {}", r.status())));
                }
                crate::http::read_body(r, crate::http::MAX_RESPONSE_BODY)
                    .await
                    .map_err(|e| FetchError(format!("{u}: {e}")))
            };
            let (issuer, jwks_url) = metadata_of(&get(url.clone()).await?, &self.tenant, url)?;
            if let Some(issuer) = issuer {
                issuers.insert(*version, issuer);
            }
            let keys = signing_keys(&get(jwks_url).await?, &previous, *version)?;
            by_version.insert(*version, keys);
        }
        // An empty set is a failed refresh, never a replacement for good keys.
        if by_version.values().all(|keys| keys.is_empty()) {
            return Err(FetchError(
                "the authority published no usable signing key".into(),
            ));
        }
        Ok(Keys {
            by_version,
            issuers,
            fetched_at: Some(self.clock.now()),
        })
    }
}

/// What an OpenID metadata document fetched from `authority` names: the issuer tokens must carry
/// (an https issuer of `tenant`, when it names one) and the key set URL (on the authority's own
/// origin: metadata that points elsewhere could hand out someone else's keys).
pub(crate) fn metadata_of(
    body: &[u8],
    tenant: &str,
    authority: &Url,
) -> Result<(Option<String>, Url), FetchError> {
    let meta: Metadata =
        serde_json::from_slice(body).map_err(|e| FetchError(format!("metadata: {e}")))?;
    let issuer = match meta.issuer.filter(|i| !i.is_empty()) {
        Some(issuer) => {
            // Multi-tenant metadata writes a `{tenantid}` template; ours is per tenant.
            let issuer = issuer.replace("{tenantid}", tenant);
            // Only an https issuer of this tenant (when the tenant is a GUID; a domain's
            // metadata names the GUID) is accepted as what tokens must carry.
            let of_tenant = !crate::entra::looks_like_guid(tenant)
                || Url::parse(&issuer)
                    .ok()
                    .and_then(|u| {
                        u.path_segments()
                            .map(|mut s| s.any(|seg| seg.eq_ignore_ascii_case(tenant)))
                    })
                    .unwrap_or(false);
            if !issuer.starts_with("https://") || !of_tenant {
                return Err(FetchError(format!(
                    "the metadata's issuer {issuer} is not an https issuer of tenant {tenant}"
                )));
            }
            Some(issuer)
        }
        None => None,
    };
    let jwks_url = Url::parse(&meta.jwks_uri).map_err(|e| FetchError(format!("jwks_uri: {e}")))?;
    if jwks_url.origin() != authority.origin() {
        return Err(FetchError(format!(
            "jwks_uri {} is not on the authority's origin {}",
            crate::http::redacted_endpoint(&jwks_url),
            authority.origin().ascii_serialization()
        )));
    }
    Ok((issuer, jwks_url))
}

/// The usable signing keys of a key set document: RSA keys for signatures, by `kid`, the ones
/// `previous` already holds with the same material kept as they are.
pub(crate) fn signing_keys(
    body: &[u8],
    previous: &Keys,
    version: Version,
) -> Result<HashMap<String, SigningKey>, FetchError> {
    let set: JwkSet = serde_json::from_slice(body).map_err(|e| FetchError(format!("keys: {e}")))?;
    Ok(set
        .keys
        .into_iter()
        .filter(|k| k.kty.as_deref() == Some("RSA") && k.use_.as_deref().is_none_or(|u| u == "sig"))
        .filter_map(|k| {
            let kid = k.kid?;
            let material = (k.n?, k.e?);
            if let Some(same) = previous.same(version, &kid, &material) {
                return Some((kid, same));
            }
            let key = DecodingKey::from_rsa_components(&material.0, &material.1).ok()?;
            Some((
                kid,
                SigningKey {
                    key: Arc::new(key),
                    material,
                },
            ))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tenant must be a segment of the issuer's path, as in both of Entra's issuers; appearing
    /// anywhere in it (a query, another host's path) is not enough.
    #[test]
    fn the_metadata_issuer_names_the_tenant_as_a_path_segment() {
        let tenant = "72f988bf-86f1-41af-91ab-2d7cd011db47";
        let authority: Url =
            "https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/v2.0/.well-known/openid-configuration"
                .parse()
                .unwrap();
        let doc = |issuer: &str| {
            serde_json::json!({
                "issuer": issuer,
                "jwks_uri": "https://login.microsoftonline.com/common/discovery/v2.0/keys"
            })
            .to_string()
        };
        for good in [
            format!("https://login.microsoftonline.com/{tenant}/v2.0"),
            format!("https://sts.windows.net/{}/", tenant.to_uppercase()),
            "https://login.microsoftonline.com/{tenantid}/v2.0".to_string(),
        ] {
            assert!(
                metadata_of(doc(&good).as_bytes(), tenant, &authority).is_ok(),
                "{good}"
            );
        }
        for bad in [
            format!("https://evil.example/?x={tenant}"),
            format!("https://evil.example/{tenant}x/v2.0"),
            format!("https://evil.example/#/{tenant}"),
        ] {
            assert!(
                metadata_of(doc(&bad).as_bytes(), tenant, &authority).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn only_the_same_kid_with_the_same_material_and_version_is_the_same_key() {
        let key = Arc::new(DecodingKey::from_secret(b"k"));
        let keys = Keys::for_test(Version::V1, "k", &key, None);
        let material = |n: &str| (n.to_string(), "e".to_string());
        assert!(keys.same(Version::V1, "k", &material("n")).is_some());
        assert!(
            keys.same(Version::V1, "k", &material("n2")).is_none(),
            "new n"
        );
        assert!(
            keys.same(Version::V2, "k", &material("n")).is_none(),
            "other version"
        );
        assert!(
            keys.same(Version::V1, "j", &material("n")).is_none(),
            "other kid"
        );
    }
}
