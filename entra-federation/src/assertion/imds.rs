//! Azure VM Instance Metadata Service: `GET http://169.254.169.254/metadata/identity/oauth2/token`,
//! api-version 2018-02-01, `Metadata: true`, with the documented retry table.

use super::response::{RetryRules, get_with_retries, parse_token_response};
use super::{Assertion, AssertionError, AssertionSource, BoxFuture, ManagedIdentity};
use crate::clock::Clock;
use crate::error::Cause;
use crate::http::{HttpSetupError, identity_client, read_body, redacted_endpoint};
use crate::retry::Backoff;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use url::Url;

const KIND: &str = "IMDS";
const API_VERSION: &str = "2018-02-01";
/// The IMDS token endpoint.
pub const IMDS_TOKEN_URL: &str = "http://169.254.169.254/metadata/identity/oauth2/token";

/// The VM Instance Metadata Service.
///
/// Retries as documented ("how-to-use-vm-token"): 404 and 429 and 5xx and timeouts with jittered
/// exponential backoff (2 s base, 60 s cap, 5 retries; `Retry-After` honoured), 410 for at least
/// 70 s; any other 4xx is a design-time error and is never retried.
#[derive(Debug, Clone)]
pub struct ImdsSource {
    endpoint: Url,
    identity: ManagedIdentity,
    resource: String,
    http: reqwest::Client,
    clock: Clock,
    backoff: Backoff,
    /// Set when IMDS is only the fallback guess (nothing else detected): until IMDS has answered
    /// once, one quick request decides whether there is an IMDS at all.
    probe: Option<Arc<AtomicBool>>,
}

/// How long the probe waits: azure-identity gives IMDS one second when it is only a guess.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// The probe's answer is a short JSON error; anything longer is not Azure's IMDS.
const PROBE_BODY_LIMIT: usize = 64 * 1024;

impl ImdsSource {
    /// A source for `endpoint` (normally [`IMDS_TOKEN_URL`]): the system-assigned identity, for
    /// the token-exchange resource ([`super::TOKEN_EXCHANGE_RESOURCE`]). Its HTTP client never
    /// goes through a proxy (IMDS refuses proxied calls).
    ///
    /// ```
    /// use entra_federation::assertion::{ImdsSource, IMDS_TOKEN_URL, ManagedIdentity};
    /// let source = ImdsSource::new(IMDS_TOKEN_URL.parse()?)?
    ///     .with_managed_identity(ManagedIdentity::ClientId("6a1f…".into()));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(endpoint: Url) -> Result<Self, HttpSetupError> {
        let http = identity_client(&endpoint, None)?;
        Ok(Self::from_parts(
            endpoint,
            ManagedIdentity::SystemAssigned,
            super::TOKEN_EXCHANGE_RESOURCE.into(),
            http,
            Clock::system(),
        ))
    }

    super::identity_request_setters!();

    pub(crate) fn from_parts(
        endpoint: Url,
        identity: ManagedIdentity,
        resource: String,
        http: reqwest::Client,
        clock: Clock,
    ) -> Self {
        Self {
            endpoint,
            identity,
            resource,
            http,
            clock,
            backoff: Backoff::imds(),
            probe: None,
        }
    }

    /// IMDS as the guess that remains when no other source is detected: until Azure's IMDS has
    /// answered once, one quick request (see [`ImdsSource::probe`]) decides whether it is there
    /// at all, and a machine with no managed identity is [`AssertionError::NotDetected`] too.
    /// That lets a provider chain go on to its next provider instead of spending IMDS's
    /// documented minutes of retries off Azure. Once IMDS has answered, the documented retries
    /// apply.
    pub(crate) fn probing(mut self) -> Self {
        self.probe = Some(Arc::default());
        self
    }

    async fn fetch_inner(&self) -> Result<Assertion, AssertionError> {
        let url = self.token_url();
        if let Some(answered) = &self.probe
            && !answered.load(Ordering::Acquire)
            && crate::http::outside_runtime().is_none()
        {
            self.probe(&url).await?;
            answered.store(true, Ordering::Release);
        }
        let rules = RetryRules {
            backoff: self.backoff,
            retry_not_found: true,
            gone_window: Some(Duration::from_secs(70)),
        };
        let body = get_with_retries(
            KIND,
            || self.request(&url).timeout(Duration::from_secs(10)),
            &self.endpoint,
            rules,
            &self.clock,
            hint,
        )
        .await
        .map_err(|e| self.no_identity_at_all(e))?;
        parse_token_response(KIND, &body, &self.clock)
    }

    /// Whether Azure's IMDS is there. Asked for a token without `Metadata: true`, it answers at
    /// once with a JSON error (`bad_request_102`) and mints nothing, so one second bounds the
    /// whole question (as azure-identity's JavaScript probe does). No answer, or an answer of
    /// another shape (another cloud's metadata service at the same address: EC2 answers 404 or
    /// 401 pages), means no Azure managed identity here.
    async fn probe(&self, url: &Url) -> Result<(), AssertionError> {
        let not_detected =
            |what: &'static str, source: Option<reqwest::Error>| AssertionError::NotDetected {
                endpoint: redacted_endpoint(&self.endpoint),
                what,
                source: source.map(|e| Cause::new(e.without_url())),
            };
        let resp = match self
            .http
            .get(url.clone())
            .timeout(PROBE_TIMEOUT)
            .send()
            .await
        {
            Ok(resp) => resp,
            Err(e) if e.is_timeout() => {
                return Err(not_detected("did not answer within 1 s", Some(e)));
            }
            Err(e) => return Err(not_detected("could not be reached", Some(e))),
        };
        let status = resp.status();
        let body = read_body(resp, PROBE_BODY_LIMIT).await.unwrap_or_default();
        let azure_error = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .is_some_and(|v| v.get("error").is_some_and(serde_json::Value::is_string));
        if status.is_success() || azure_error {
            Ok(())
        } else {
            Err(not_detected(
                "answered, but not as Azure's IMDS does (another cloud's metadata service?)",
                None,
            ))
        }
    }

    /// While IMDS is only a guess, a machine without a system-assigned identity ("Identity not
    /// found") has no managed identity to use either. An identity that was named (a client,
    /// object or resource id) and is not found stays a configuration error.
    fn no_identity_at_all(&self, e: AssertionError) -> AssertionError {
        match &e {
            AssertionError::Rejected {
                status: 400,
                message,
                ..
            } if self.probe.is_some()
                && self.identity == ManagedIdentity::SystemAssigned
                && message.contains("Identity not found") =>
            {
                AssertionError::NotDetected {
                    endpoint: redacted_endpoint(&self.endpoint),
                    what: "has no managed identity assigned to this machine",
                    source: Some(Cause::new(e)),
                }
            }
            _ => e,
        }
    }

    fn request(&self, url: &Url) -> reqwest::RequestBuilder {
        self.http.get(url.clone()).header("Metadata", "true")
    }

    fn token_url(&self) -> Url {
        let mut url = self.endpoint.clone();
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("api-version", API_VERSION);
            q.append_pair("resource", &self.resource);
            match &self.identity {
                ManagedIdentity::SystemAssigned => {}
                ManagedIdentity::ClientId(id) => {
                    q.append_pair("client_id", id);
                }
                ManagedIdentity::ObjectId(id) => {
                    q.append_pair("object_id", id);
                }
                ManagedIdentity::ResourceId(id) => {
                    q.append_pair("msi_res_id", id);
                }
            }
        }
        url
    }
}

pub(crate) fn hint(status: u16, code: Option<&str>) -> &'static str {
    match (status, code) {
        (400, Some("invalid_resource")) => {
            "the resource must be api://AzureADTokenExchange (or the USGov/China variant for sovereign clouds)"
        }
        (400, Some("bad_request_102")) => "send the header 'Metadata: true'",
        (400, _) => {
            "no managed identity (or not the requested one) is assigned to this VM: assign it, or fix AZURE_CLIENT_ID / .managed_identity(...)"
        }
        (401, _) => "IMDS refused the caller; do not call it through a proxy",
        (404 | 410, _) => "IMDS is updating; it kept failing beyond the documented retry window",
        (429, _) => {
            "IMDS throttled the calls; the provider caches assertions, so check for other callers"
        }
        _ => "IMDS or Entra is failing; retry later",
    }
}

impl AssertionSource for ImdsSource {
    fn fetch(&self) -> BoxFuture<'_, Result<Assertion, AssertionError>> {
        Box::pin(self.fetch_inner())
    }

    fn kind(&self) -> &'static str {
        KIND
    }
}
