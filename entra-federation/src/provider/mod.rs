//! [`EntraCredentialsProvider`] and its builder: the public facade over the chain (managed-identity assertion →
//! Entra v1 token → STS) and the [`crate::refreshing`] cache that keeps its credentials fresh.
//!
//! The chain keeps its own caches of the assertion and the Entra token, behind one gate (a tokio
//! mutex) that also serves the token-file consumers of [`EntraCredentialsProvider::web_identity_token`].

mod builder;

pub use builder::{ConfigError, EntraCredentialsProviderBuilder, SourceChoice};
#[cfg(feature = "validate")]
pub(crate) use builder::{DEFAULT_AUTHORITY, valid_tenant};

use crate::assertion::{Assertion, AssertionSource};
use crate::clock::Clock;
use crate::entra::{EntraClient, WebIdentityToken, check_v1_shape};
use crate::error::Error;
use crate::refresh::{Cached, MANDATORY_WINDOW, Phase, Rule};
use crate::refreshing::{self, RefreshingCache, Resolve};
use crate::retry::Jitter;
use crate::sts::{AssumeRoleRequest, AssumedRole, StsClient, StsErrorCode};
use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, error::CredentialsError, future};
use builder::Resolved;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

/// Credentials from Azure managed identity through Entra and STS, cached and refreshed in process.
///
/// Build it once and share it (it is cheap to clone): every clone shares one cache and one
/// upstream session.
///
/// ```no_run
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// use entra_federation::EntraCredentialsProvider;
/// let provider = EntraCredentialsProvider::from_env()?;
/// let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
///     .credentials_provider(provider)
///     .load()
///     .await;
/// # let _ = config; Ok(()) }
/// ```
#[derive(Clone)]
pub struct EntraCredentialsProvider {
    inner: Arc<RefreshingCache<Chain>>,
}

/// The upstream chain: what the cache calls to resolve new credentials.
struct Chain {
    tenant: String,
    app_uri: String,
    source: Arc<dyn AssertionSource>,
    entra: EntraClient,
    sts: StsClient,
    request: AssumeRoleRequest,
    clock: Clock,
    jitter: Jitter,
    gate: tokio::sync::Mutex<ChainState>,
    stats: Counters,
}

/// Whether a cached Entra token may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Freshness {
    /// The cached token while it is fresh (falling back to it while valid if a refresh fails).
    Cached,
    /// A newly exchanged token.
    New,
}

#[derive(Default)]
struct ChainState {
    assertion: Option<Cached<Assertion>>,
    web_token: Option<Cached<WebIdentityToken>>,
}

#[derive(Default)]
struct Counters {
    assertion_fetches: AtomicU64,
    entra_exchanges: AtomicU64,
    sts_calls: AtomicU64,
}

/// How often each upstream was called by this provider.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProviderStats {
    /// Managed-identity assertions fetched.
    pub assertion_fetches: u64,
    /// Entra exchanges (each may include retries).
    pub entra_exchanges: u64,
    /// STS `AssumeRoleWithWebIdentity` calls (each may include retries).
    pub sts_calls: u64,
    /// Refresh attempts that failed.
    pub chain_failures: u64,
}

impl fmt::Debug for EntraCredentialsProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let chain = self.chain();
        f.debug_struct("EntraCredentialsProvider")
            .field("tenant", &chain.tenant)
            .field("audience", &chain.app_uri)
            .field("source", &chain.source.kind())
            .field("token_endpoint", &chain.entra.token_url().as_str())
            .field("sts_endpoint", &chain.sts.endpoint().as_str())
            .field("role_arn", &chain.request.role_arn)
            .finish()
    }
}

impl EntraCredentialsProvider {
    /// A builder; see [`EntraCredentialsProviderBuilder`].
    pub fn builder() -> EntraCredentialsProviderBuilder {
        EntraCredentialsProviderBuilder::default()
    }

    /// Configured from the environment (see [`EntraCredentialsProviderBuilder`] for the
    /// variables).
    pub fn from_env() -> Result<Self, ConfigError> {
        EntraCredentialsProviderBuilder::from_env()?.build()
    }

    pub(crate) fn from_parts(r: Resolved) -> Self {
        let settings = refreshing::Settings {
            clock: r.clock.clone(),
            jitter: r.jitter.clone(),
            rule: Rule::Credentials,
            deadline: r.attempt_timeout,
            what: "AWS credentials",
        };
        let chain = Chain {
            tenant: r.tenant,
            app_uri: r.app_uri,
            source: r.source,
            entra: r.entra,
            sts: r.sts,
            request: r.request,
            clock: r.clock,
            jitter: r.jitter,
            gate: tokio::sync::Mutex::new(ChainState::default()),
            stats: Counters::default(),
        };
        Self {
            inner: Arc::new(RefreshingCache::new(chain, settings)),
        }
    }

    fn chain(&self) -> &Chain {
        self.inner.resolver()
    }

    /// Credentials, with the library's typed error.
    pub async fn credentials(&self) -> Result<Credentials, Arc<Error>> {
        self.inner.get().await
    }

    /// The current v1 web-identity token (for a token file or another consumer), from the same
    /// cache. Bounded by the same deadline as a credentials refresh.
    pub async fn web_identity_token(&self) -> Result<WebIdentityToken, Error> {
        self.token_within_deadline(Freshness::Cached).await
    }

    /// A newly exchanged v1 web-identity token, whatever the cache holds: for a file another SDK
    /// reads, which must be rewritten well before the token expires. The new token also serves the
    /// in-process chain. Bounded by the same deadline as a credentials refresh.
    pub async fn refresh_web_identity_token(&self) -> Result<WebIdentityToken, Error> {
        self.token_within_deadline(Freshness::New).await
    }

    async fn token_within_deadline(&self, freshness: Freshness) -> Result<WebIdentityToken, Error> {
        let chain = self.chain();
        let work = async {
            let mut state = chain.gate.lock().await;
            chain.web_identity_token_locked(&mut state, freshness).await
        };
        if crate::http::outside_runtime().is_some() {
            // No timer without a runtime; the hops themselves say why they cannot run.
            return work.await;
        }
        let deadline = self.inner.deadline();
        let ends = chain.clock.now() + deadline;
        let waiting_on = crate::retry::WaitingOn::default();
        chain
            .clock
            .timeout(
                deadline,
                crate::retry::within_attempt(ends, waiting_on.clone(), work),
            )
            .await
            .unwrap_or_else(|_| {
                Err(Error::Deadline {
                    seconds: deadline.as_secs(),
                    waiting_on: crate::retry::waited_on(&waiting_on),
                })
            })
    }

    /// A stable key for what this provider assumes (tenant, audience, role, session name, STS
    /// endpoint), for caches kept outside the process.
    pub fn session_key(&self) -> String {
        let i = self.chain();
        format!(
            "{}\n{}\n{}\n{}\n{}",
            i.tenant,
            i.app_uri,
            i.request.role_arn,
            i.request.session_name,
            i.sts.endpoint()
        )
    }

    /// How often each upstream was called.
    pub fn stats(&self) -> ProviderStats {
        let s = &self.chain().stats;
        ProviderStats {
            assertion_fetches: s.assertion_fetches.load(Ordering::Relaxed),
            entra_exchanges: s.entra_exchanges.load(Ordering::Relaxed),
            sts_calls: s.sts_calls.load(Ordering::Relaxed),
            chain_failures: self.inner.failures(),
        }
    }

    /// When the cached credentials expire, if there are any.
    pub fn cached_expiry(&self) -> Option<SystemTime> {
        self.inner.expires_at()
    }

    /// The deadline of one refresh attempt (see
    /// [`EntraCredentialsProviderBuilder::attempt_timeout`]): the longest a call for new
    /// credentials or a new token can take.
    pub fn attempt_timeout(&self) -> std::time::Duration {
        self.inner.deadline()
    }
}

impl ProvideCredentials for EntraCredentialsProvider {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        match self.inner.cached() {
            Some(Ok(c)) => future::ProvideCredentials::ready(Ok(c)),
            Some(Err(e)) => future::ProvideCredentials::ready(Err(to_credentials_error(e))),
            None => future::ProvideCredentials::new(async move {
                self.inner.get().await.map_err(to_credentials_error)
            }),
        }
    }

    /// The last good credentials while they have at least a second left: what an interrupted load
    /// (the SDK's identity-cache timeout) should use.
    fn fallback_on_interrupt(&self) -> Option<Credentials> {
        self.inner.valid()
    }
}

/// The typed error, shared between the callers of one attempt, as the SDK's error's source. Its
/// own line is short and its `source()` is the library's [`Error`], so an error report shows each
/// line once and `downcast_ref::<Error>()` down the chain (or [`Error::find_in`]) finds it.
#[derive(Debug)]
pub(crate) struct SharedError(pub(crate) Arc<Error>);

impl fmt::Display for SharedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the Entra credential chain failed")
    }
}

impl std::error::Error for SharedError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

/// The SDK's error kinds, so that the provider can sit in a `CredentialsProviderChain`: no
/// managed identity detected lets the chain try its next provider; a configuration or trust
/// problem, and an upstream failure, stop it (other credentials must not hide a broken
/// deployment).
fn to_credentials_error(e: Arc<Error>) -> CredentialsError {
    match &*e {
        err if err.is_not_detected() => CredentialsError::not_loaded(SharedError(e)),
        err if !err.is_recoverable() => CredentialsError::invalid_configuration(SharedError(e)),
        _ => CredentialsError::provider_error(SharedError(e)),
    }
}

impl Resolve for Chain {
    type Value = Credentials;

    async fn resolve(&self) -> Result<refreshing::Resolved<Credentials>, Error> {
        let mut state = self.gate.lock().await;
        let assumed = self.run_chain(&mut state).await?;
        Ok(refreshing::Resolved {
            value: assumed.credentials,
            expires_at: assumed.expires_at,
            issuer_now: assumed.server_date,
        })
    }
}

impl Chain {
    async fn run_chain(&self, chain: &mut ChainState) -> Result<AssumedRole, Error> {
        let token = self
            .web_identity_token_locked(chain, Freshness::Cached)
            .await?;
        self.stats.sts_calls.fetch_add(1, Ordering::Relaxed);
        match self
            .sts
            .assume_role_with_web_identity(&self.request, &token)
            .await
        {
            Err(e) if e.code() == Some(&StsErrorCode::ExpiredToken) => {
                // The token expired on its way (clock skew): get a new one, once.
                let token = self
                    .web_identity_token_locked(chain, Freshness::New)
                    .await?;
                self.stats.sts_calls.fetch_add(1, Ordering::Relaxed);
                Ok(self
                    .sts
                    .assume_role_with_web_identity(&self.request, &token)
                    .await?)
            }
            other => Ok(other?),
        }
    }

    async fn web_identity_token_locked(
        &self,
        chain: &mut ChainState,
        freshness: Freshness,
    ) -> Result<WebIdentityToken, Error> {
        let now = self.clock.now();
        if freshness == Freshness::Cached
            && let Some(t) = &chain.web_token
            && t.phase(now) == Phase::Fresh
        {
            return Ok(t.value.clone());
        }
        match self.exchange(chain).await {
            Ok(t) => {
                let now = self.clock.now();
                chain.web_token = Some(Cached::jittered(
                    t.clone(),
                    now,
                    t.expires_at(),
                    Rule::Token,
                    self.jitter.fraction(),
                ));
                Ok(t)
            }
            // A caller asking for a new token gets the failure; the cached one stays for the chain.
            Err(e) => match &chain.web_token {
                Some(t)
                    if freshness == Freshness::Cached
                        && e.is_recoverable()
                        && t.valid_for(self.clock.now(), MANDATORY_WINDOW) =>
                {
                    tracing::warn!(error = %crate::error::DisplayChain(&e), "Entra token refresh failed; using the cached token while it is valid");
                    Ok(t.value.clone())
                }
                _ => Err(e),
            },
        }
    }

    async fn exchange(&self, chain: &mut ChainState) -> Result<WebIdentityToken, Error> {
        let assertion = self.assertion_locked(chain, false).await?;
        self.stats.entra_exchanges.fetch_add(1, Ordering::Relaxed);
        let token = match self.entra.exchange(&assertion).await {
            Err(e) if e.wants_fresh_assertion() => {
                let assertion = self.assertion_locked(chain, true).await?;
                self.stats.entra_exchanges.fetch_add(1, Ordering::Relaxed);
                self.entra.exchange(&assertion).await?
            }
            other => other?,
        };
        check_v1_shape(token.claims(), &self.tenant, &self.app_uri)?;
        Ok(token)
    }

    #[tracing::instrument(name = "managed_identity_assertion", skip_all, fields(source = self.source.kind()))]
    async fn assertion_locked(
        &self,
        chain: &mut ChainState,
        force: bool,
    ) -> Result<Assertion, Error> {
        let now = self.clock.now();
        if !force
            && self.source.cacheable()
            && let Some(a) = &chain.assertion
            && a.phase(now) == Phase::Fresh
        {
            return Ok(a.value.clone());
        }
        let started = tokio::time::Instant::now();
        self.stats.assertion_fetches.fetch_add(1, Ordering::Relaxed);
        match self.source.fetch().await {
            Ok(a) => {
                tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, claims = %a.claims(), "managed-identity assertion obtained");
                if self.source.cacheable() {
                    chain.assertion = Some(Cached::jittered(
                        a.clone(),
                        self.clock.now(),
                        a.expires_at(),
                        Rule::Token,
                        self.jitter.fraction(),
                    ));
                }
                Ok(a)
            }
            Err(e) => match &chain.assertion {
                Some(a)
                    if !force
                        && e.is_recoverable()
                        && a.valid_for(self.clock.now(), MANDATORY_WINDOW) =>
                {
                    tracing::warn!(error = %crate::error::DisplayChain(&e), "assertion refresh failed; using the cached assertion while it is valid");
                    Ok(a.value.clone())
                }
                _ => Err(e.into()),
            },
        }
    }
}
