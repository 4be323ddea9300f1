//! [`EntraCredentialsProvider`]: the whole chain behind `ProvideCredentials`.
//!
//! Three caches, each by its own expiry: the managed-identity assertion, the Entra v1 token and the
//! AWS credentials. One gate (a tokio mutex) makes every upstream chain single-flight; a generation
//! counter lets callers queued behind the gate take the outcome of the attempt they waited for
//! instead of starting another. A background task refreshes in the advisory window, so a warm
//! caller is served from a read lock with no allocation and no await.

use crate::assertion::{Assertion, AssertionSource};
use crate::clock::Clock;
use crate::config::{Builder, ConfigError, Resolved};
use crate::entra::{EntraClient, WebIdentityToken, check_v1_shape};
use crate::error::Error;
use crate::refresh::{Cached, MANDATORY_WINDOW, Phase, Rule};
use crate::retry::{Backoff, Jitter};
use crate::sts::{AssumeRoleRequest, AssumedRole, StsClient, StsErrorCode};
use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, error::CredentialsError, future};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, SystemTime};
use tokio::sync::Notify;

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
    inner: Arc<Inner>,
}

struct Inner {
    tenant: String,
    app_uri: String,
    source: Arc<dyn AssertionSource>,
    entra: EntraClient,
    sts: StsClient,
    request: AssumeRoleRequest,
    clock: Clock,
    jitter: Jitter,
    snapshot: RwLock<Snapshot>,
    gate: tokio::sync::Mutex<ChainState>,
    attempts: AtomicU64,
    wake: Arc<Notify>,
    background_running: AtomicBool,
    stats: Counters,
}

#[derive(Default)]
struct Snapshot {
    credentials: Option<Cached<Credentials>>,
    failure: Option<Failure>,
}

struct Failure {
    error: Arc<Error>,
    retry_not_before: SystemTime,
    consecutive: u32,
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
    chain_failures: AtomicU64,
}

/// How often each upstream was called by this provider.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
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
        f.debug_struct("EntraCredentialsProvider")
            .field("tenant", &self.inner.tenant)
            .field("audience", &self.inner.app_uri)
            .field("source", &self.inner.source.kind())
            .field("token_endpoint", &self.inner.entra.token_url().as_str())
            .field("sts_endpoint", &self.inner.sts.endpoint().as_str())
            .field("role_arn", &self.inner.request.role_arn)
            .finish()
    }
}

impl EntraCredentialsProvider {
    /// A builder; see [`Builder`].
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// Configured from the environment (see [`crate::config`] for the variables).
    pub fn from_env() -> Result<Self, ConfigError> {
        Builder::from_env()?.build()
    }

    pub(crate) fn from_parts(r: Resolved) -> Self {
        Self {
            inner: Arc::new(Inner {
                tenant: r.tenant,
                app_uri: r.app_uri,
                source: r.source,
                entra: r.entra,
                sts: r.sts,
                request: r.request,
                clock: r.clock,
                jitter: r.jitter,
                snapshot: RwLock::new(Snapshot::default()),
                gate: tokio::sync::Mutex::new(ChainState::default()),
                attempts: AtomicU64::new(0),
                wake: Arc::new(Notify::new()),
                background_running: AtomicBool::new(false),
                stats: Counters::default(),
            }),
        }
    }

    /// Credentials, with the library's typed error.
    pub async fn credentials(&self) -> Result<Credentials, Arc<Error>> {
        if let Some(ready) = self.inner.cached_outcome(self.inner.clock.now()) {
            return ready;
        }
        Inner::load(self.inner.clone()).await
    }

    /// The current v1 web-identity token (for a token file or another consumer), from the same cache.
    pub async fn web_identity_token(&self) -> Result<WebIdentityToken, Error> {
        let mut chain = self.inner.gate.lock().await;
        self.inner
            .web_identity_token_locked(&mut chain, Freshness::Cached)
            .await
    }

    /// A newly exchanged v1 web-identity token, whatever the cache holds: for a file another SDK
    /// reads, which must be rewritten well before the token expires. The new token also serves the
    /// in-process chain.
    pub async fn refresh_web_identity_token(&self) -> Result<WebIdentityToken, Error> {
        let mut chain = self.inner.gate.lock().await;
        self.inner
            .web_identity_token_locked(&mut chain, Freshness::New)
            .await
    }

    /// A stable key for what this provider assumes (tenant, audience, role, session name, STS
    /// endpoint), for caches kept outside the process.
    pub fn session_key(&self) -> String {
        let i = &self.inner;
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
        let s = &self.inner.stats;
        ProviderStats {
            assertion_fetches: s.assertion_fetches.load(Ordering::Relaxed),
            entra_exchanges: s.entra_exchanges.load(Ordering::Relaxed),
            sts_calls: s.sts_calls.load(Ordering::Relaxed),
            chain_failures: s.chain_failures.load(Ordering::Relaxed),
        }
    }

    /// When the cached credentials expire, if there are any.
    pub fn cached_expiry(&self) -> Option<SystemTime> {
        self.inner
            .read_snapshot()
            .credentials
            .as_ref()
            .map(|c| c.expires_at)
    }
}

impl ProvideCredentials for EntraCredentialsProvider {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        match self.inner.cached_outcome(self.inner.clock.now()) {
            Some(Ok(c)) => future::ProvideCredentials::ready(Ok(c)),
            Some(Err(e)) => future::ProvideCredentials::ready(Err(to_credentials_error(e))),
            None => future::ProvideCredentials::new(async move {
                Inner::load(self.inner.clone())
                    .await
                    .map_err(to_credentials_error)
            }),
        }
    }

    /// The last good credentials while they are still valid: what an interrupted load (the SDK's
    /// identity-cache timeout) should use.
    fn fallback_on_interrupt(&self) -> Option<Credentials> {
        let now = self.inner.clock.now();
        let snap = self.inner.read_snapshot();
        snap.credentials
            .as_ref()
            .filter(|c| now < c.expires_at)
            .map(|c| c.value.clone())
    }
}

/// The typed error, shared between the callers of one attempt.
#[derive(Debug)]
struct SharedError(Arc<Error>);

impl fmt::Display for SharedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for SharedError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

fn to_credentials_error(e: Arc<Error>) -> CredentialsError {
    CredentialsError::provider_error(SharedError(e))
}

impl Inner {
    fn read_snapshot(&self) -> std::sync::RwLockReadGuard<'_, Snapshot> {
        self.snapshot.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The answer that needs no upstream call, if there is one. Allocation-free on success.
    fn cached_outcome(&self, now: SystemTime) -> Option<Result<Credentials, Arc<Error>>> {
        let snap = self.read_snapshot();
        let in_backoff = snap
            .failure
            .as_ref()
            .is_some_and(|f| now < f.retry_not_before);
        match &snap.credentials {
            Some(c) => match c.phase(now) {
                Phase::Fresh => Some(Ok(c.value.clone())),
                Phase::Advisory => {
                    if !in_backoff {
                        self.wake.notify_one();
                    }
                    Some(Ok(c.value.clone()))
                }
                // Mandatory or expired: the caller waits for a refresh, unless one just failed and
                // we are backing off; then serve what is still valid, or the failure.
                Phase::Mandatory if in_backoff => Some(Ok(c.value.clone())),
                Phase::Expired if in_backoff => snap.failure.as_ref().map(|f| Err(f.error.clone())),
                _ => None,
            },
            None if in_backoff => snap.failure.as_ref().map(|f| Err(f.error.clone())),
            None => None,
        }
    }

    /// The slow path: wait for (or run) a refresh.
    async fn load(self: Arc<Self>) -> Result<Credentials, Arc<Error>> {
        let seen = self.attempts.load(Ordering::Acquire);
        if let Some(outcome) = self.cached_outcome(self.clock.now()) {
            return outcome;
        }
        let result = self.refresh(seen).await;
        self.ensure_background();
        result
    }

    /// Runs the chain unless an attempt finished while this caller waited for the gate.
    async fn refresh(&self, seen: u64) -> Result<Credentials, Arc<Error>> {
        let mut chain = self.gate.lock().await;
        let now = self.clock.now();
        if self.attempts.load(Ordering::Acquire) != seen {
            let snap = self.read_snapshot();
            match (&snap.credentials, &snap.failure) {
                (Some(c), _) if now + MANDATORY_WINDOW < c.expires_at => {
                    return Ok(c.value.clone());
                }
                (Some(c), Some(_)) if now < c.expires_at => return Ok(c.value.clone()),
                (_, Some(f)) => return Err(f.error.clone()),
                _ => {}
            }
        } else if let Some(c) = &self.read_snapshot().credentials
            && c.phase(now) == Phase::Fresh
        {
            return Ok(c.value.clone());
        }

        let result = self.run_chain(&mut chain).await;
        let now = self.clock.now();
        let outcome = {
            let mut snap = self.snapshot.write().unwrap_or_else(|p| p.into_inner());
            match result {
                Ok(assumed) => {
                    snap.credentials = Some(Cached::jittered(
                        assumed.credentials.clone(),
                        now,
                        assumed.expires_at,
                        Rule::Credentials,
                        self.jitter.fraction(),
                    ));
                    snap.failure = None;
                    Ok(assumed.credentials)
                }
                Err(error) => {
                    self.stats.chain_failures.fetch_add(1, Ordering::Relaxed);
                    let error = Arc::new(error);
                    let consecutive = snap.failure.as_ref().map_or(1, |f| f.consecutive + 1);
                    let valid_left = snap
                        .credentials
                        .as_ref()
                        .and_then(|c| c.expires_at.duration_since(now).ok());
                    let wait = failure_backoff(consecutive, valid_left, &self.jitter);
                    let serving = snap
                        .credentials
                        .as_ref()
                        .filter(|c| now < c.expires_at)
                        .map(|c| c.value.clone());
                    match (&serving, error.is_recoverable()) {
                        (Some(_), true) => {
                            tracing::warn!(error = %error, retry_in_ms = wait.as_millis() as u64, "credential refresh failed; serving the last good credentials until they expire")
                        }
                        (Some(_), false) => {
                            tracing::error!(error = %error, retry_in_ms = wait.as_millis() as u64, "credential refresh failed (not transient); serving the last good credentials until they expire")
                        }
                        (None, _) => {
                            tracing::error!(error = %error, retry_in_ms = wait.as_millis() as u64, "no credentials")
                        }
                    }
                    snap.failure = Some(Failure {
                        error: error.clone(),
                        retry_not_before: now + wait,
                        consecutive,
                    });
                    serving.ok_or(error)
                }
            }
        };
        self.attempts.fetch_add(1, Ordering::Release);
        drop(chain);
        outcome
    }

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
                    tracing::warn!(error = %e, "Entra token refresh failed; using the cached token while it is valid");
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
                    tracing::warn!(error = %e, "assertion refresh failed; using the cached assertion while it is valid");
                    Ok(a.value.clone())
                }
                _ => Err(e.into()),
            },
        }
    }

    /// Starts the background refresher if it is not running (first load, or its runtime ended).
    fn ensure_background(self: &Arc<Self>) {
        if self.background_running.swap(true, Ordering::AcqRel) {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                let weak = Arc::downgrade(self);
                let wake = self.wake.clone();
                handle.spawn(background(weak, wake));
            }
            Err(_) => self.background_running.store(false, Ordering::Release),
        }
    }

    /// When the background task should next look: the refresh point, or the end of a backoff.
    /// With no credentials there is nothing to keep fresh: callers drive the retries.
    fn next_wakeup(&self) -> Option<SystemTime> {
        let snap = self.read_snapshot();
        let refresh_at = snap.credentials.as_ref().map(|c| c.refresh_at)?;
        Some(
            snap.failure
                .as_ref()
                .map_or(refresh_at, |f| f.retry_not_before.max(refresh_at)),
        )
    }
}

/// The background refresher: sleeps until the advisory refresh point (or until a caller in the
/// advisory window wakes it), refreshes through the same gate, and ends with the provider.
async fn background(weak: Weak<Inner>, wake: Arc<Notify>) {
    struct Running(Weak<Inner>);
    impl Drop for Running {
        fn drop(&mut self) {
            if let Some(inner) = self.0.upgrade() {
                inner.background_running.store(false, Ordering::Release);
            }
        }
    }
    let _running = Running(weak.clone());
    loop {
        let Some((next, clock)) = weak.upgrade().map(|i| (i.next_wakeup(), i.clock.clone())) else {
            return;
        };
        match next {
            Some(at) => {
                tokio::select! {
                    _ = clock.sleep_until(at) => {}
                    _ = wake.notified() => {}
                }
            }
            None => wake.notified().await,
        }
        let Some(inner) = weak.upgrade() else { return };
        let now = inner.clock.now();
        let (due, in_backoff, seen) = {
            let snap = inner.read_snapshot();
            let due = snap
                .credentials
                .as_ref()
                .is_some_and(|c| c.phase(now) != Phase::Fresh);
            let in_backoff = snap
                .failure
                .as_ref()
                .is_some_and(|f| now < f.retry_not_before);
            (due, in_backoff, inner.attempts.load(Ordering::Acquire))
        };
        if due && !in_backoff {
            let _ = inner.refresh(seen).await;
        }
    }
}

/// How long to wait after `consecutive` failures: jittered exponential from 1 s, at most 5 min,
/// and never more than a quarter of what is left of the current credentials (so retries happen
/// before they expire); at most 1 min while there are no credentials at all.
fn failure_backoff(consecutive: u32, valid_left: Option<Duration>, jitter: &Jitter) -> Duration {
    let b = Backoff {
        initial: Duration::from_secs(1),
        max: Duration::from_secs(300),
        max_retries: u32::MAX,
        jitter: 0.5,
    };
    let d = b.delay_with(consecutive, jitter);
    match valid_left {
        Some(left) => d.min((left / 4).max(Duration::from_secs(1))),
        None => d.min(Duration::from_secs(60)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_stays_inside_the_remaining_validity() {
        for n in 1..20 {
            let j = Jitter::default();
            let d = failure_backoff(n, Some(Duration::from_secs(120)), &j);
            assert!(d <= Duration::from_secs(30), "{d:?}");
            assert!(failure_backoff(n, None, &j) <= Duration::from_secs(60));
        }
        assert!(
            failure_backoff(10, Some(Duration::from_secs(7200)), &Jitter::default())
                >= Duration::from_secs(150)
        );
    }
}
