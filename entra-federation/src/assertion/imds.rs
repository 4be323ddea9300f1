//! Azure VM Instance Metadata Service: `GET http://169.254.169.254/metadata/identity/oauth2/token`,
//! api-version 2018-02-01, `Metadata: true`, with the documented retry table.

use super::response::{RetryRules, get_with_retries, parse_token_response};
use super::{Assertion, AssertionError, AssertionSource, BoxFuture, ManagedIdentity};
use crate::clock::Clock;
use crate::retry::Backoff;
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
}

impl ImdsSource {
    /// A source for `endpoint` (normally [`IMDS_TOKEN_URL`]).
    /// Give it a client built with [`crate::http::HttpSettings::no_proxy`]: this hop must never
    /// go through a proxy (the builder does so).
    pub fn new(
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
        }
    }

    async fn fetch_inner(&self) -> Result<Assertion, AssertionError> {
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
        let rules = RetryRules {
            backoff: self.backoff,
            retry_not_found: true,
            gone_window: Some(Duration::from_secs(70)),
        };
        let body = get_with_retries(
            KIND,
            || {
                self.http
                    .get(url.clone())
                    .header("Metadata", "true")
                    .timeout(Duration::from_secs(10))
            },
            &self.endpoint,
            rules,
            &self.clock,
            hint,
        )
        .await?;
        parse_token_response(KIND, &body, &self.clock)
    }
}

fn hint(status: u16, code: Option<&str>) -> &'static str {
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
