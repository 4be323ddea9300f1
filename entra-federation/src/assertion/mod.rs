//! Managed-identity assertions: the token Entra accepts as a federated client credential.
//!
//! Sources, and the order [`crate::EntraCredentialsProviderBuilder::from_env`] picks them in:
//! 1. `AZURE_FEDERATED_TOKEN_FILE`: AKS workload identity ([`TokenFileSource`], re-read on every exchange);
//! 2. `IDENTITY_ENDPOINT` + `IDENTITY_HEADER`: Container Apps / App Service ([`AppServiceSource`]);
//! 3. otherwise the Azure VM Instance Metadata Service ([`ImdsSource`]).
//!
//! A caller-supplied source ([`from_fn`] or any [`AssertionSource`]) set in code always wins.

/// The setters both endpoint sources share (their fields `identity`, `resource`, `clock`).
macro_rules! identity_request_setters {
    () => {
        /// Which managed identity to ask for (default: the system-assigned one).
        pub fn with_managed_identity(mut self, identity: ManagedIdentity) -> Self {
            self.identity = identity;
            self
        }

        /// The resource to ask for (default [`super::TOKEN_EXCHANGE_RESOURCE`]).
        pub fn with_resource(mut self, resource: impl Into<String>) -> Self {
            self.resource = resource.into();
            self
        }

        /// Where "now" comes from when an answer gives a lifetime instead of an expiry
        /// (default: the system clock).
        pub fn with_time_source(
            mut self,
            time_source: impl aws_smithy_async::time::TimeSource + 'static,
        ) -> Self {
            self.clock = self
                .clock
                .with_time_source(aws_smithy_async::time::SharedTimeSource::new(time_source));
            self
        }

        /// What the retries sleep on (default: Tokio's timers).
        pub fn with_sleep_impl(
            mut self,
            sleep_impl: impl aws_smithy_async::rt::sleep::AsyncSleep + 'static,
        ) -> Self {
            self.clock = self
                .clock
                .with_sleep(aws_smithy_async::rt::sleep::SharedAsyncSleep::new(
                    sleep_impl,
                ));
            self
        }
    };
}
use identity_request_setters;

pub(crate) mod app_service;
pub(crate) mod imds;
pub(crate) mod response;
mod token_file;

pub use app_service::AppServiceSource;
pub use imds::{IMDS_TOKEN_URL, ImdsSource};
pub use token_file::TokenFileSource;

use crate::claims::ClaimSummary;
use crate::error::Cause;
use crate::secret::SecretString;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::SystemTime;

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The resource (audience) managed-identity assertions are requested for in the public cloud.
pub const TOKEN_EXCHANGE_RESOURCE: &str = "api://AzureADTokenExchange";

/// An assertion and when it stops being accepted.
#[derive(Clone)]
pub struct Assertion {
    token: SecretString,
    expires_at: SystemTime,
    claims: ClaimSummary,
}

impl Assertion {
    /// Wraps a JWT; its expiry comes from the `exp` claim.
    pub fn from_jwt(token: String) -> Result<Self, AssertionError> {
        let claims =
            ClaimSummary::read_unverified(&token).map_err(|e| AssertionError::InvalidResponse {
                source_kind: "caller-supplied",
                detail: "the assertion is not a readable JWT".into(),
                source: Some(crate::error::Cause::new(e)),
            })?;
        let exp = claims.exp.ok_or_else(|| AssertionError::InvalidResponse {
            source_kind: "caller-supplied",
            detail: "the assertion has no exp claim".into(),
            source: None,
        })?;
        Ok(Self::new(
            token,
            crate::clock::expiry_at(std::time::SystemTime::now(), exp),
        ))
    }

    /// Wraps a token with a known expiry.
    pub fn new(token: String, expires_at: SystemTime) -> Self {
        let claims = ClaimSummary::read_unverified(&token).unwrap_or_default();
        Self {
            token: SecretString::new(token),
            expires_at,
            claims,
        }
    }

    /// The token, for the one place it is sent.
    pub fn token(&self) -> &SecretString {
        &self.token
    }

    /// When it expires.
    pub fn expires_at(&self) -> SystemTime {
        self.expires_at
    }

    /// Its claims, for logs.
    pub fn claims(&self) -> &ClaimSummary {
        &self.claims
    }
}

impl fmt::Debug for Assertion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Assertion")
            .field("token", &self.token)
            .field("expires_at", &self.expires_at)
            .field("claims", &self.claims)
            .finish()
    }
}

/// Where assertions come from.
pub trait AssertionSource: Send + Sync + fmt::Debug {
    /// Fetches a fresh assertion.
    fn fetch(&self) -> BoxFuture<'_, Result<Assertion, AssertionError>>;

    /// A short name for logs and errors ("IMDS", "Container Apps / App Service", …).
    fn kind(&self) -> &'static str;

    /// Whether the provider may reuse an assertion until it nears expiry (true) or must fetch
    /// before every exchange (false: files that kubelet rotates are cheap to re-read).
    fn cacheable(&self) -> bool {
        true
    }
}

/// Which managed identity to ask for. Only one selector may be given; none means system-assigned.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ManagedIdentity {
    /// The system-assigned identity.
    #[default]
    SystemAssigned,
    /// A user-assigned identity by client id.
    ClientId(String),
    /// A user-assigned identity by object (principal) id.
    ObjectId(String),
    /// A user-assigned identity by ARM resource id.
    ResourceId(String),
}

/// Why no assertion could be obtained.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AssertionError {
    /// The endpoint could not be reached (after the documented retries).
    #[error("{source_kind}: cannot reach {endpoint}: {what}")]
    Transport {
        /// The source.
        source_kind: &'static str,
        /// The endpoint without query.
        endpoint: String,
        /// What failed, in a few words (timed out, connection failed, …).
        what: &'static str,
        /// The HTTP client's error, when there is one.
        #[source]
        source: Option<Cause>,
    },
    /// No managed identity was detected: no identity endpoint, no token file, and IMDS (the guess
    /// that remains) did not answer its probe or has no identity for this machine. A provider
    /// chain tries its next provider.
    #[error(
        "no managed identity found: IDENTITY_ENDPOINT and AZURE_FEDERATED_TOKEN_FILE are not set and IMDS at {endpoint} {what}. Fix: run where a managed identity is assigned (Container Apps, App Service, an Azure VM, AKS with workload identity), or name the source with ENTRA_FEDERATION_ASSERTION_SOURCE"
    )]
    NotDetected {
        /// The IMDS endpoint probed, without query.
        endpoint: String,
        /// What IMDS did.
        what: &'static str,
        /// What IMDS answered or the transport error, when there is one.
        #[source]
        source: Option<Cause>,
    },
    /// The endpoint answered with an error.
    #[error("{source_kind} returned HTTP {status}{}: {message}{}. Fix: {hint}",
        code.as_deref().map(|c| format!(" {c}")).unwrap_or_default(),
        correlation_id.as_deref().map(|c| format!(" (correlation id {c})")).unwrap_or_default())]
    Rejected {
        /// The source.
        source_kind: &'static str,
        /// HTTP status.
        status: u16,
        /// The `error` field, when the body has one.
        code: Option<String>,
        /// The service's message.
        message: String,
        /// Correlation id, when given.
        correlation_id: Option<String>,
        /// What to do about it.
        hint: &'static str,
    },
    /// A 200 whose body is not a token response.
    #[error("{source_kind} returned an unusable token response: {detail}")]
    InvalidResponse {
        /// The source.
        source_kind: &'static str,
        /// What is wrong with it.
        detail: String,
        /// The parser's error, when there is one.
        #[source]
        source: Option<Cause>,
    },
    /// The federated token file could not be read.
    #[error(
        "cannot use the federated token file {path}: {what}. Fix: check AZURE_FEDERATED_TOKEN_FILE and that the projected service-account token volume is mounted"
    )]
    TokenFile {
        /// The file.
        path: String,
        /// What is wrong with it.
        what: &'static str,
        /// The I/O error, when there is one.
        #[source]
        source: Option<Cause>,
    },
    /// A caller-supplied source failed.
    #[error("the caller-supplied assertion source failed: {0}")]
    Custom(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl AssertionError {
    /// Whether trying again later may succeed.
    pub fn is_recoverable(&self) -> bool {
        match self {
            Self::Transport { .. }
            | Self::NotDetected { .. }
            | Self::TokenFile { .. }
            | Self::Custom(_) => true,
            Self::Rejected { status, .. } => {
                *status >= 500 || matches!(status, 404 | 408 | 410 | 429)
            }
            Self::InvalidResponse { .. } => false,
        }
    }
}

/// A source backed by an async closure, for assertions obtained some other way.
///
/// ```
/// use entra_federation::assertion::{self, Assertion, AssertionSource};
/// use std::time::{Duration, SystemTime};
/// let source = assertion::from_fn(|| async {
///     Ok(Assertion::new("eyJ...".to_string(), SystemTime::now() + Duration::from_secs(600)))
/// });
/// assert_eq!(source.kind(), "caller-supplied");
/// ```
pub fn from_fn<F, Fut>(f: F) -> Arc<dyn AssertionSource>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Assertion, Box<dyn std::error::Error + Send + Sync>>>
        + Send
        + 'static,
{
    Arc::new(FnSource(f))
}

struct FnSource<F>(F);

impl<F> fmt::Debug for FnSource<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FnSource")
    }
}

impl<F, Fut> AssertionSource for FnSource<F>
where
    F: Fn() -> Fut + Send + Sync,
    Fut: Future<Output = Result<Assertion, Box<dyn std::error::Error + Send + Sync>>>
        + Send
        + 'static,
{
    fn fetch(&self) -> BoxFuture<'_, Result<Assertion, AssertionError>> {
        let fut = (self.0)();
        Box::pin(async move { fut.await.map_err(AssertionError::Custom) })
    }

    fn kind(&self) -> &'static str {
        "caller-supplied"
    }
}

/// Where the `IDENTITY_HEADER` value comes from. The platform rotates it, so it is read on every request.
#[derive(Clone)]
#[non_exhaustive]
pub enum HeaderValueSource {
    /// An environment variable, re-read on every request.
    Env(String),
    /// A function (tests, or platforms that keep it elsewhere).
    Fn(Arc<dyn Fn() -> Option<String> + Send + Sync>),
}

impl HeaderValueSource {
    fn read(&self) -> Option<String> {
        match self {
            Self::Env(name) => std::env::var(name).ok().filter(|v| !v.is_empty()),
            Self::Fn(f) => f(),
        }
    }
}

impl fmt::Debug for HeaderValueSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Env(name) => write!(f, "Env({name})"),
            Self::Fn(_) => f.write_str("Fn"),
        }
    }
}
