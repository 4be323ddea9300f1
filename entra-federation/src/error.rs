//! The errors: [`Error`] for one trip through the chain (managed identity → Entra → STS), the
//! error of each hop it wraps, [`ConfigError`] for the builder, and [`Cause`], the original error
//! under any of them.
//!
//! Each error's `Display` is one line that says what failed and how to fix it, with the cloud's
//! own code (`AADSTS…`, the STS error code); the error underneath (the HTTP client's, an I/O or
//! a parser error) is its `source()`. [`DisplayChain`] prints both.

pub use crate::assertion::AssertionError;
pub use crate::claims::ClaimsError;
pub use crate::entra::{EntraError, EntraRejection, TokenShapeError};
pub use crate::http::{EndpointError, HttpSetupError, NO_RUNTIME};
pub use crate::provider::ConfigError;
#[cfg(feature = "sidecar")]
pub use crate::sidecar::SidecarError;
pub use crate::sts::{StsError, StsErrorCode, StsServiceError};
#[cfg(feature = "validate")]
pub use crate::validate::ValidationError;

use std::fmt;
use std::sync::Arc;

/// The original error under one of ours (the HTTP client's, an I/O error, a parser's): what
/// that error's `source()` returns, so it can be downcast (`is::<std::io::Error>()`). Shared, so
/// that errors stay cheap to clone.
#[derive(Clone)]
pub struct Cause(Arc<dyn std::error::Error + Send + Sync>);

impl Cause {
    pub(crate) fn new(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self(Arc::new(error))
    }

    /// A JSON parser's error without the input it may quote (`invalid type: string "eyJ…"` would
    /// put a token into the logs): what kind of error, and where.
    pub(crate) fn json(error: &serde_json::Error) -> Self {
        use serde_json::error::Category;
        Self::new(JsonError {
            what: match error.classify() {
                Category::Io => "a read error",
                Category::Syntax => "not JSON",
                Category::Data => "JSON of another shape",
                Category::Eof => "truncated JSON",
            },
            line: error.line(),
            column: error.column(),
        })
    }
}

/// [`Cause::json`]'s error.
#[derive(Debug, thiserror::Error)]
#[error("{what} (line {line}, column {column})")]
struct JsonError {
    what: &'static str,
    line: usize,
    column: usize,
}

/// Derefs to the original error (and deliberately does not implement `Error` itself, so that
/// `source()` hands out the original, not a wrapper).
impl std::ops::Deref for Cause {
    type Target = dyn std::error::Error + Send + Sync + 'static;

    fn deref(&self) -> &Self::Target {
        &*self.0
    }
}

impl fmt::Debug for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&*self.0, f)
    }
}

/// An error and its causes on one line, `error: cause: cause`: how the library and the services
/// log errors, since each error's own `Display` leaves its cause to `source()`.
///
/// ```
/// use entra_federation::error::DisplayChain;
/// #[derive(Debug, thiserror::Error)]
/// #[error("cannot read the token file")]
/// struct Outer(#[source] std::io::Error);
/// let e = Outer(std::io::Error::other("permission denied"));
/// assert_eq!(e.to_string(), "cannot read the token file");
/// assert_eq!(DisplayChain(&e).to_string(), "cannot read the token file: permission denied");
/// ```
pub struct DisplayChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl fmt::Display for DisplayChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(c) = cause {
            write!(f, ": {c}")?;
            cause = c.source();
        }
        Ok(())
    }
}

/// Why the chain produced no credentials. Each variant carries the cloud's own code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No managed-identity assertion.
    #[error(transparent)]
    Assertion(#[from] AssertionError),
    /// Entra refused the exchange (AADSTS codes inside).
    #[error(transparent)]
    Entra(#[from] EntraError),
    /// Entra's token is not the v1 token STS accepts.
    #[error(transparent)]
    TokenShape(#[from] TokenShapeError),
    /// STS refused (STS error code inside).
    #[error(transparent)]
    Sts(#[from] StsError),
    /// The whole chain (identity endpoint, Entra and STS, with their retries) took longer than
    /// the attempt's deadline and was abandoned.
    #[error(
        "the credential chain (managed identity, Entra, STS) did not finish within {seconds} s and was abandoned{} (raise EntraCredentialsProviderBuilder::attempt_timeout only if a hop is known to be slow)",
        waiting_on.map_or_else(String::new, |hop| format!(" while waiting on {hop}"))
    )]
    Deadline {
        /// The deadline, in seconds.
        seconds: u64,
        /// The hop the chain was waiting on when it was abandoned ("identity endpoint", "IMDS",
        /// "Entra", "STS"), when one had started.
        waiting_on: Option<&'static str>,
    },
    /// STS answered with credentials that this machine's clock already considers expired (or
    /// about to): the local clock is ahead of AWS's.
    #[error(
        "STS issued credentials expiring at {expires_at} (Unix seconds), but this machine's clock reads {local_now}: the clock is ahead of AWS's by at least {ahead_by_at_least} s; fix the clock (NTP, or the host's time sync)"
    )]
    Stale {
        /// The credentials' expiry, Unix seconds.
        expires_at: u64,
        /// This machine's clock when they arrived, Unix seconds.
        local_now: u64,
        /// The smallest skew that explains it, seconds.
        ahead_by_at_least: u64,
    },
    /// The refresh task ended before it finished (its runtime shut down, or it panicked).
    #[error(
        "the credential refresh was interrupted before it finished (its Tokio runtime shut down); the next call starts a new one"
    )]
    Interrupted,
}

impl Error {
    /// Whether a later attempt may succeed without a configuration change.
    pub fn is_recoverable(&self) -> bool {
        match self {
            Self::Assertion(e) => e.is_recoverable(),
            Self::Entra(e) => e.is_recoverable(),
            Self::TokenShape(_) => false,
            Self::Sts(e) => e.is_recoverable(),
            Self::Deadline { .. } | Self::Stale { .. } | Self::Interrupted => true,
        }
    }

    /// The library's error inside `error` or its sources: what the SDK's `CredentialsError`
    /// carries when the provider failed (`provide_credentials`, or an SDK client's call).
    ///
    /// ```no_run
    /// # async fn f(provider: entra_federation::EntraCredentialsProvider) {
    /// use aws_credential_types::provider::ProvideCredentials;
    /// if let Err(e) = provider.provide_credentials().await {
    ///     if let Some(entra_federation::Error::Sts(sts)) = entra_federation::Error::find_in(&e) {
    ///         eprintln!("STS said: {sts}");
    ///     }
    /// }
    /// # }
    /// ```
    pub fn find_in<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a Error> {
        let mut cause = Some(error);
        while let Some(e) = cause {
            if let Some(shared) = e.downcast_ref::<crate::provider::SharedError>() {
                return Some(&shared.0);
            }
            if let Some(ours) = e.downcast_ref::<Error>() {
                return Some(ours);
            }
            cause = e.source();
        }
        None
    }

    /// Whether no managed identity was detected at all (see [`AssertionError::NotDetected`]):
    /// what lets a provider chain go on to its next provider.
    pub(crate) fn is_not_detected(&self) -> bool {
        matches!(self, Self::Assertion(AssertionError::NotDetected { .. }))
    }

    /// The hop and the cloud's code, without endpoints, descriptions, paths or ids: what a public
    /// health endpoint may show. The full text (with the fix) belongs in the logs.
    ///
    /// ```
    /// use entra_federation::Error;
    /// use entra_federation::error::StsError;
    /// let e = Error::Sts(StsError::Transport { endpoint: "https://sts.example/".into(), what: "timed out", source: None });
    /// assert_eq!(e.summary(), "sts: unreachable");
    /// ```
    pub fn summary(&self) -> String {
        match self {
            Self::Assertion(AssertionError::Transport { source_kind, .. }) => {
                format!("managed identity ({source_kind}): unreachable")
            }
            Self::Assertion(AssertionError::Rejected {
                source_kind,
                status,
                code,
                ..
            }) => format!(
                "managed identity ({source_kind}): HTTP {status}{}",
                code.as_deref().map(|c| format!(" {c}")).unwrap_or_default()
            ),
            Self::Assertion(AssertionError::TokenFile { .. }) => {
                "managed identity (token file): unreadable".into()
            }
            Self::Assertion(AssertionError::NotDetected { .. }) => {
                "managed identity: none detected".into()
            }
            Self::Assertion(_) => "managed identity: unusable response".into(),
            Self::Entra(EntraError::Rejected(r)) => format!(
                "entra: HTTP {} {}{}",
                r.status,
                r.error,
                r.codes
                    .iter()
                    .map(|c| format!(" AADSTS{c}"))
                    .collect::<String>()
            ),
            Self::Entra(EntraError::Transport { .. }) => "entra: unreachable".into(),
            Self::Entra(EntraError::InvalidResponse { .. }) => "entra: unusable response".into(),
            Self::TokenShape(_) => "entra: the token is not the v1 token STS needs".into(),
            Self::Sts(StsError::Service(e)) => format!("sts: HTTP {} {}", e.status, e.raw_code),
            Self::Sts(StsError::Transport { .. }) => "sts: unreachable".into(),
            Self::Sts(_) => "sts: unusable response".into(),
            Self::Deadline {
                seconds,
                waiting_on,
            } => match waiting_on {
                Some(hop) => format!("chain: no answer within {seconds} s ({hop})"),
                None => format!("chain: no answer within {seconds} s"),
            },
            Self::Stale { .. } => "sts: credentials already expired by the local clock".into(),
            Self::Interrupted => "chain: interrupted".into(),
        }
    }
}
