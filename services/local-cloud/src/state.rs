//! The state every emulated service shares, and the test hooks: call counters and injected faults.

use crate::keys::KeySet;
use crate::registry::Registry;
use aws_smithy_async::time::SharedTimeSource;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::SystemTime;

/// Credentials STS issued.
#[derive(Debug, Clone)]
pub struct IssuedCredentials {
    /// Secret key.
    pub secret_access_key: String,
    /// Session token.
    pub session_token: String,
    /// Expiry.
    pub expires_at: SystemTime,
    /// Role name.
    pub role_name: String,
    /// Session name.
    pub session_name: String,
    /// `AROA…:session`.
    pub assumed_role_id: String,
    /// The session policies (`Policy`, then each `PolicyArns` document): when any is given, a
    /// call is allowed only if the role's permissions and these both allow it.
    pub session_policies: Vec<crate::policy::PolicyDocument>,
}

/// How an injected fault answers.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// `status` with the service's own error body (and `Retry-After` when set).
    #[default]
    Status,
    /// The head and part of the body, then the connection is dropped (a reset mid-answer).
    Reset,
    /// 200 with the service's content type and a body that is not its format.
    Garbage,
    /// 200 with the service's content type and its body cut short.
    Truncated,
    /// 200 with an HTML page, as a proxy or captive portal answers.
    WrongContentType,
    /// No answer until the faults are cleared (a day at most): the client's timeout must end it.
    Hang,
}

/// A fault to inject: the next `count` calls (all, when `None`) to `target` fail with `status`
/// (or as `kind` says), each call with probability `fraction` (every call when `None`).
///
/// Targets are counter names (`identity_endpoint`, `imds`, `entra_token`, `entra_metadata`,
/// `entra_jwks`, `sts:AssumeRoleWithWebIdentity`, `sts:GetCallerIdentity`, `bedrock:Converse`,
/// `bedrock:InvokeModel`, `sidecar:AuthorizationHeaderUnauthenticated`, `sidecar:AuthorizationHeader`,
/// `sidecar:DownstreamApi`, `open_meteo:search`, `open_meteo:forecast`) or a prefix before `:`
/// (`sts` matches every STS action).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Fault {
    /// Which endpoint.
    pub target: String,
    /// HTTP status to answer.
    pub status: u16,
    /// Service error code (e.g. `Throttling`, `IDPCommunicationError`, `temporarily_unavailable`).
    #[serde(default)]
    pub code: Option<String>,
    /// How many calls fail; `None` until cleared.
    #[serde(default)]
    pub count: Option<u32>,
    /// A `Retry-After` header, seconds.
    #[serde(default)]
    pub retry_after: Option<u64>,
    /// How it answers (default: `status` with the service's error body).
    #[serde(default)]
    pub kind: FaultKind,
    /// The share of calls it hits (0 to 1), drawn from the cloud's seeded generator.
    #[serde(default)]
    pub fraction: Option<f64>,
}

impl Default for Fault {
    /// A 500 for every call to no target until cleared: a base for struct updates.
    fn default() -> Self {
        Self::status("", 500, None)
    }
}

impl Fault {
    /// `status` (with the service's error body and `code`) for every call until cleared.
    pub fn status(target: &str, status: u16, code: Option<&str>) -> Self {
        Self {
            target: target.into(),
            status,
            code: code.map(str::to_string),
            count: None,
            retry_after: None,
            kind: FaultKind::Status,
            fraction: None,
        }
    }

    /// A fault of `kind` for every call until cleared.
    pub fn of_kind(target: &str, kind: FaultKind) -> Self {
        Self {
            kind,
            ..Self::status(target, 200, None)
        }
    }

    /// The answer for the kinds that do not depend on the service (all but `Status`);
    /// `content_type` is the service's own. `None` for `Status`: the service writes its error.
    pub async fn canned(
        &self,
        content_type: &'static str,
        cleared: Option<tokio::sync::watch::Receiver<u64>>,
    ) -> Option<axum::response::Response> {
        use axum::response::IntoResponse;
        let html = "text/html; charset=utf-8";
        let with_type = |ct: &'static str, body: &'static str| {
            (
                axum::http::StatusCode::OK,
                [(axum::http::header::CONTENT_TYPE, ct)],
                body,
            )
                .into_response()
        };
        match self.kind {
            FaultKind::Status => None,
            FaultKind::Garbage => Some(with_type(
                content_type,
                "\u{1}\u{2}garbage \u{fffd}\u{fffd} not the format",
            )),
            FaultKind::Truncated => Some(with_type(
                content_type,
                if content_type.contains("xml") {
                    "<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><AssumeRoleWithWebIdentityResult><Credentials><AccessKeyId>ASIA"
                } else {
                    "{\"token_type\":\"Bearer\",\"expires_in\":3599,\"access_token\":\"eyJ0eXAiOiJKV1Qi"
                },
            )),
            FaultKind::WrongContentType => Some(with_type(
                html,
                "<html><head><title>Sign in to the network</title></head><body>Proxy authentication required</body></html>",
            )),
            FaultKind::Reset => {
                let parts: Vec<Result<&'static str, std::io::Error>> = vec![
                    Ok("{\"access_token\":\"eyJ0eXAi"),
                    Err(std::io::Error::new(
                        std::io::ErrorKind::ConnectionReset,
                        "injected connection reset",
                    )),
                ];
                let body = axum::body::Body::from_stream(futures::stream::iter(parts));
                let mut r = (axum::http::StatusCode::OK, body).into_response();
                r.headers_mut().insert(
                    axum::http::header::CONTENT_TYPE,
                    axum::http::HeaderValue::from_static(content_type),
                );
                r.headers_mut().insert(
                    axum::http::header::CONTENT_LENGTH,
                    axum::http::HeaderValue::from_static("4096"),
                );
                Some(r)
            }
            FaultKind::Hang => {
                // Ends when the faults are cleared (the caller passes the clearing signal), or
                // after a day.
                if let Some(mut cleared) = cleared {
                    let _ = tokio::time::timeout(
                        std::time::Duration::from_secs(24 * 3600),
                        cleared.changed(),
                    )
                    .await;
                } else {
                    tokio::time::sleep(std::time::Duration::from_secs(24 * 3600)).await;
                }
                Some(axum::http::StatusCode::GATEWAY_TIMEOUT.into_response())
            }
        }
    }
}

/// Shared state.
pub struct CloudState {
    /// The directory and the AWS account.
    pub registry: RwLock<Registry>,
    /// The tenant's token-signing keys (v1 and v2 share them, as in Entra).
    pub tenant_keys: RwLock<KeySet>,
    /// Keys of the AKS OIDC issuer(s).
    pub aks_keys: RwLock<KeySet>,
    /// The current `IDENTITY_HEADER` value.
    pub identity_header: RwLock<String>,
    /// The clock (tokio-driven in tests).
    pub clock: SharedTimeSource,
    /// Credentials STS issued, by access key id.
    pub credentials: Mutex<HashMap<String, IssuedCredentials>>,
    /// JWKS documents STS fetched, by issuer.
    pub sts_jwks_cache: Mutex<HashMap<String, serde_json::Value>>,
    /// `uti` of every web-identity token STS accepted.
    pub seen_tokens: Mutex<std::collections::HashSet<String>>,
    /// Client for STS's fetches of issuer keys.
    pub http: reqwest::Client,
    /// `http://127.0.0.1:PORT`.
    pub http_base: OnceLock<String>,
    /// `https://127.0.0.1:PORT` (or localhost).
    pub https_base: OnceLock<String>,
    counters: Mutex<BTreeMap<String, u64>>,
    faults: Mutex<Vec<Fault>>,
    /// Seconds the issuing clock of a service is off (`entra_token`, `managed_identity` for both
    /// identity endpoints, `sts`): its tokens' times move by that much. Cleared with the faults.
    skews: Mutex<HashMap<String, i64>>,
    /// Draws `Fault::fraction`; seeded so that a run can be repeated.
    rng: Mutex<fastrand::Rng>,
    /// Bumped by [`CloudState::clear_faults`]: ends the hangs it injected.
    cleared: tokio::sync::watch::Sender<u64>,
    latencies: Mutex<HashMap<String, std::time::Duration>>,
    holds: Mutex<Vec<Arc<Hold>>>,
}

/// Calls to an endpoint held at its door until [`Hold::release`]: lets a test prove that callers
/// were all waiting while one upstream call was in flight. Created by [`CloudState::hold`].
#[derive(Debug)]
pub struct Hold {
    target: String,
    arrived: tokio::sync::watch::Sender<u64>,
    released: tokio::sync::watch::Sender<bool>,
}

impl Hold {
    /// How many calls have arrived at the held endpoint (counted as they start to wait).
    pub fn arrived(&self) -> u64 {
        *self.arrived.borrow()
    }

    /// Waits until at least `n` calls have arrived.
    pub async fn until_arrived(&self, n: u64) {
        let mut rx = self.arrived.subscribe();
        // The sender lives as long as `self`, so this cannot fail.
        let _ = rx.wait_for(|a| *a >= n).await;
    }

    /// Lets every held call (and every later one) through.
    pub fn release(&self) {
        self.released.send_replace(true);
    }

    async fn enter(&self) {
        self.arrived.send_modify(|a| *a += 1);
        let mut rx = self.released.subscribe();
        let _ = rx.wait_for(|r| *r).await;
    }
}

/// Whether a fault, latency or hold for `target` applies to a call to `name`: the same name, or
/// a prefix before `:` (`sts` matches `sts:GetCallerIdentity`).
fn applies(target: &str, name: &str) -> bool {
    target == name
        || name
            .strip_prefix(target)
            .is_some_and(|rest| rest.starts_with(':'))
}

impl CloudState {
    /// New state.
    pub fn new(
        registry: Registry,
        clock: SharedTimeSource,
        http: reqwest::Client,
    ) -> Result<Self, String> {
        Ok(Self {
            registry: RwLock::new(registry),
            tenant_keys: RwLock::new(KeySet::generate()?),
            aks_keys: RwLock::new(KeySet::generate()?),
            identity_header: RwLock::new(random_id(32)),
            clock,
            credentials: Mutex::new(HashMap::new()),
            sts_jwks_cache: Mutex::new(HashMap::new()),
            seen_tokens: Mutex::new(std::collections::HashSet::new()),
            http,
            http_base: OnceLock::new(),
            https_base: OnceLock::new(),
            counters: Mutex::new(BTreeMap::new()),
            faults: Mutex::new(Vec::new()),
            skews: Mutex::new(HashMap::new()),
            rng: Mutex::new(fastrand::Rng::new()),
            cleared: tokio::sync::watch::Sender::new(0),
            latencies: Mutex::new(HashMap::new()),
            holds: Mutex::new(Vec::new()),
        })
    }

    /// A read view of the registry.
    pub fn registry(&self) -> std::sync::RwLockReadGuard<'_, Registry> {
        self.registry.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts a call to `name`.
    pub fn count(&self, name: &str) {
        *lock(&self.counters).entry(name.to_string()).or_default() += 1;
    }

    /// All counters.
    pub fn counters(&self) -> BTreeMap<String, u64> {
        lock(&self.counters).clone()
    }

    /// One counter.
    pub fn counter(&self, name: &str) -> u64 {
        lock(&self.counters).get(name).copied().unwrap_or(0)
    }

    /// Resets the counters.
    pub fn reset_counters(&self) {
        lock(&self.counters).clear();
    }

    /// Adds a fault. A `count` of 0 hits nothing and is not kept; a `fraction` is clamped to
    /// 0..=1.
    pub fn inject(&self, mut fault: Fault) {
        if fault.count == Some(0) {
            return;
        }
        fault.fraction = fault
            .fraction
            .map(|f| if f.is_nan() { 0.0 } else { f.clamp(0.0, 1.0) });
        lock(&self.faults).push(fault);
    }

    /// Rotates the tenant's signing keys (a new current key; the previous one stays published)
    /// and returns the new key id.
    pub fn rotate_tenant_keys(&self) -> Result<String, String> {
        let mut keys = self.tenant_keys.write().unwrap_or_else(|p| p.into_inner());
        keys.rotate()?;
        Ok(keys.current().kid.clone())
    }

    /// Seeds the generator that decides which calls a `fraction` fault hits.
    pub fn seed_faults(&self, seed: u64) {
        *lock(&self.rng) = fastrand::Rng::with_seed(seed);
    }

    /// Makes `service` (`entra_token`, `managed_identity` or `sts`) issue tokens as if
    /// its clock were `secs` off: negative values issue tokens already expired, positive ones
    /// tokens not valid yet. Until [`Self::clear_faults`].
    pub fn skew_clock(&self, service: &str, secs: i64) {
        lock(&self.skews).insert(service.to_string(), secs);
    }

    /// The issuing time of `service`: the cloud's clock moved by its skew.
    pub fn issuing_now(&self, service: &str) -> SystemTime {
        let now = self.clock.now();
        match lock(&self.skews).get(service).copied().unwrap_or(0) {
            s if s >= 0 => now
                .checked_add(std::time::Duration::from_secs(s as u64))
                .unwrap_or(now),
            s => now
                .checked_sub(std::time::Duration::from_secs(s.unsigned_abs()))
                .unwrap_or(SystemTime::UNIX_EPOCH),
        }
    }

    /// Removes all faults, skews and latencies, and releases every hold.
    pub fn clear_faults(&self) {
        lock(&self.faults).clear();
        lock(&self.skews).clear();
        self.cleared.send_modify(|n| *n += 1);
        lock(&self.latencies).clear();
        for hold in lock(&self.holds).drain(..) {
            hold.release();
        }
    }

    /// Makes calls to `name` (a counter name, or a prefix before `:`) take `delay` longer, on the
    /// cloud's tokio clock. Every endpoint with a counter honours it.
    pub fn inject_latency(&self, name: &str, delay: std::time::Duration) {
        lock(&self.latencies).insert(name.to_string(), delay);
    }

    /// Holds calls to `name` (a counter name, or a prefix before `:`) until the returned handle is
    /// released or the faults are cleared. Every endpoint with a counter honours it before
    /// answering; the hold counts the calls that arrive ([`Hold::arrived`]).
    pub fn hold(&self, name: &str) -> Arc<Hold> {
        let hold = Arc::new(Hold {
            target: name.to_string(),
            arrived: tokio::sync::watch::Sender::new(0),
            released: tokio::sync::watch::Sender::new(false),
        });
        lock(&self.holds).push(hold.clone());
        hold
    }

    /// The door of every endpoint: waits out the latency injected for `name` and any hold on it.
    pub async fn latency(&self, name: &str) {
        let delay = lock(&self.latencies)
            .iter()
            .find(|(target, _)| applies(target, name))
            .map(|(_, d)| *d);
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
        // A released hold lets everything through: skip it, so a later hold on the same target
        // (or an overlapping one) is the one that applies.
        let hold = lock(&self.holds)
            .iter()
            .find(|h| applies(&h.target, name) && !*h.released.borrow())
            .cloned();
        if let Some(h) = hold {
            h.enter().await;
        }
    }

    /// Every endpoint's door: counts the call to `name`, waits out injected latency and holds,
    /// then [`Self::fault_for`].
    pub async fn door(
        &self,
        name: &str,
        content_type: &'static str,
    ) -> Result<Option<Fault>, axum::response::Response> {
        self.count(name);
        self.latency(name).await;
        self.fault_for(name, content_type).await
    }

    /// The fault for a call to `name`, answered here when its kind does not depend on the
    /// service (`Err` with the answer to send); a `Status` fault is returned for the service to
    /// write its own error body.
    pub async fn fault_for(
        &self,
        name: &str,
        content_type: &'static str,
    ) -> Result<Option<Fault>, axum::response::Response> {
        let Some(fault) = self.take_fault(name) else {
            return Ok(None);
        };
        match fault
            .canned(content_type, Some(self.cleared.subscribe()))
            .await
        {
            Some(answer) => Err(answer),
            None => Ok(Some(fault)),
        }
    }

    /// The fault that applies to a call to `name`, consuming one of its count.
    pub fn take_fault(&self, name: &str) -> Option<Fault> {
        let mut faults = lock(&self.faults);
        let i = faults.iter().position(|f| applies(&f.target, name))?;
        if let Some(fraction) = faults[i].fraction
            && lock(&self.rng).f64() >= fraction
        {
            return None;
        }
        let fault = faults[i].clone();
        if let Some(n) = &mut faults[i].count {
            *n -= 1;
            if *n == 0 {
                faults.remove(i);
            }
        }
        Some(fault)
    }

    /// The base URL for links in documents: the listener the request came in on.
    pub fn base(&self, tls: bool) -> String {
        let b = if tls {
            self.https_base.get()
        } else {
            self.http_base.get()
        };
        b.cloned().unwrap_or_default()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A random id of `len` characters from `[A-Z0-9]`.
pub fn random_id(len: usize) -> String {
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let bytes = crate::keys::random_bytes::<64>();
    (0..len)
        .map(|i| CHARS[bytes[i % 64] as usize % CHARS.len()] as char)
        .collect()
}

/// A random GUID string.
pub fn guid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Seconds since the Unix epoch (0 before it).
pub fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The time `secs` after the Unix epoch, saturating at the year 9999 (a token's absurd `exp`
/// must not overflow).
pub fn from_unix_seconds(secs: u64) -> SystemTime {
    const YEAR_9999: u64 = 253_402_300_799;
    SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs.min(YEAR_9999))
}

/// `YYYY-MM-DDTHH:MM:SSZ`, whole seconds, as STS and Entra write times.
pub fn iso8601(t: SystemTime) -> String {
    let secs = unix_seconds(t) as i64;
    aws_smithy_types::DateTime::from_secs(secs)
        .fmt(aws_smithy_types::date_time::Format::DateTime)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_apply_by_name_or_prefix_and_run_out() {
        let s = CloudState::new(
            Registry::tutorial_default(),
            SharedTimeSource::default(),
            reqwest::Client::new(),
        )
        .unwrap();
        s.inject(Fault {
            target: "sts".into(),
            status: 503,
            code: None,
            count: Some(2),
            retry_after: None,
            ..Default::default()
        });
        assert!(s.take_fault("imds").is_none());
        assert!(s.take_fault("sts:AssumeRoleWithWebIdentity").is_some());
        assert!(s.take_fault("sts:GetCallerIdentity").is_some());
        assert!(s.take_fault("sts:GetCallerIdentity").is_none());
        assert!(s.take_fault("stsx").is_none());
    }

    fn state() -> CloudState {
        CloudState::new(
            Registry::tutorial_default(),
            SharedTimeSource::default(),
            reqwest::Client::new(),
        )
        .unwrap()
    }

    #[test]
    fn a_fault_for_no_calls_is_not_kept_and_fractions_are_clamped() {
        let s = state();
        s.inject(Fault {
            count: Some(0),
            ..Fault::status("sts", 503, None)
        });
        assert!(s.take_fault("sts").is_none(), "count 0 hits nothing");
        // Above 1 hits every call; below 0 none; NaN none (unclamped, `draw >= NaN` is false for
        // every draw, so it would hit every call). Each on its own state: only the first fault
        // for a target applies.
        for (fraction, hits) in [(7.5, true), (-2.0, false), (f64::NAN, false)] {
            let s = state();
            s.inject(Fault {
                fraction: Some(fraction),
                count: Some(50),
                ..Fault::status("entra", 503, None)
            });
            assert!(
                (0..50).all(|_| s.take_fault("entra").is_some() == hits),
                "fraction {fraction}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_hang_ends_when_the_faults_are_cleared() {
        let s = Arc::new(state());
        s.inject(Fault::of_kind("sts", FaultKind::Hang));
        let hung = {
            let s = s.clone();
            tokio::spawn(async move { s.door("sts", "text/xml").await })
        };
        // Far short of the day a hang lasts: still hanging.
        tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
        assert!(!hung.is_finished());
        s.clear_faults();
        let answer = tokio::time::timeout(std::time::Duration::from_secs(1), hung)
            .await
            .expect("the hang ends when the faults are cleared")
            .unwrap();
        assert_eq!(answer.unwrap_err().status(), 504);
    }

    #[test]
    fn iso_dates() {
        assert_eq!(
            iso8601(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1629147173)),
            "2021-08-16T20:52:53Z"
        );
        // Sub-second parts are dropped, never mangled (the Expiration bug the benchmark found).
        for nanos in [1, 311_000, 999_999_999] {
            let t = SystemTime::UNIX_EPOCH + std::time::Duration::new(1629147173, nanos);
            assert_eq!(iso8601(t), "2021-08-16T20:52:53Z");
        }
    }
}
