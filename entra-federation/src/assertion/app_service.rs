//! Container Apps and App Service: `GET {IDENTITY_ENDPOINT}?api-version=2019-08-01&resource=…`
//! with `X-IDENTITY-HEADER`.

use super::response::{RetryRules, get_with_retries, parse_token_response};
use super::{
    Assertion, AssertionError, AssertionSource, BoxFuture, HeaderValueSource, ManagedIdentity,
};
use crate::clock::Clock;
use crate::http::{HttpSetupError, identity_client};
use crate::retry::Backoff;
use std::time::Duration;
use url::Url;

const KIND: &str = "Container Apps / App Service identity endpoint";
const API_VERSION: &str = "2019-08-01";

/// The Container Apps / App Service managed-identity endpoint.
#[derive(Debug, Clone)]
pub struct AppServiceSource {
    endpoint: Url,
    header: HeaderValueSource,
    identity: ManagedIdentity,
    resource: String,
    http: reqwest::Client,
    clock: Clock,
}

impl AppServiceSource {
    /// A source for `endpoint` (the `IDENTITY_ENDPOINT` value) whose header value is read from
    /// `header` on every request: the system-assigned identity, for the token-exchange resource
    /// ([`super::TOKEN_EXCHANGE_RESOURCE`]). Its HTTP client never goes through a proxy (the
    /// identity header must not travel to one).
    ///
    /// ```
    /// use entra_federation::assertion::{AppServiceSource, HeaderValueSource, ManagedIdentity};
    /// let source = AppServiceSource::new(
    ///     "http://localhost:42356/msi/token".parse()?,
    ///     HeaderValueSource::Env("IDENTITY_HEADER".into()),
    /// )?
    /// .with_managed_identity(ManagedIdentity::ClientId("6a1f…".into()));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(endpoint: Url, header: HeaderValueSource) -> Result<Self, HttpSetupError> {
        let http = identity_client(&endpoint, None)?;
        Ok(Self::from_parts(
            endpoint,
            header,
            ManagedIdentity::SystemAssigned,
            super::TOKEN_EXCHANGE_RESOURCE.into(),
            http,
            Clock::system(),
        ))
    }

    super::identity_request_setters!();

    pub(crate) fn from_parts(
        endpoint: Url,
        header: HeaderValueSource,
        identity: ManagedIdentity,
        resource: String,
        http: reqwest::Client,
        clock: Clock,
    ) -> Self {
        Self {
            endpoint,
            header,
            identity,
            resource,
            http,
            clock,
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
                    q.append_pair("principal_id", id);
                }
                // App Service names it mi_res_id; IMDS names it msi_res_id.
                ManagedIdentity::ResourceId(id) => {
                    q.append_pair("mi_res_id", id);
                }
            }
        }
        let rules = RetryRules {
            backoff: Backoff::standard(),
            retry_not_found: false,
            gone_window: None,
        };
        let body = get_with_retries(
            KIND,
            || {
                // Read on every attempt: the platform rotates the header value.
                let header = self.header.read().unwrap_or_default();
                self.http
                    .get(url.clone())
                    .header("X-IDENTITY-HEADER", header)
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

pub(crate) fn hint(status: u16, _code: Option<&str>) -> &'static str {
    match status {
        400 => {
            "the requested identity is not assigned to this app (or several user-assigned identities are and none was selected): assign it, or select one with AZURE_CLIENT_ID / .managed_identity(...)"
        }
        401 | 403 => {
            "IDENTITY_HEADER does not match the platform's current value; read it from the environment on every request (it rotates)"
        }
        404 => "IDENTITY_ENDPOINT does not point at the managed-identity endpoint",
        500 => {
            "the identity endpoint failed; a wrong resource also shows up as 500: the resource must be api://AzureADTokenExchange"
        }
        _ => "retry later; if it persists, check the app's identity settings",
    }
}

impl AssertionSource for AppServiceSource {
    fn fetch(&self) -> BoxFuture<'_, Result<Assertion, AssertionError>> {
        Box::pin(self.fetch_inner())
    }

    fn kind(&self) -> &'static str {
        KIND
    }
}
