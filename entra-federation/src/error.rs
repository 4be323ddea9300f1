//! The error of one trip through the chain.

use crate::assertion::AssertionError;
use crate::entra::{EntraError, TokenShapeError};
use crate::sts::StsError;

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
        "the credential chain (managed identity, Entra, STS) did not finish within {seconds} s and was abandoned; the hop that hangs is in the log (raise Builder::attempt_timeout only if that hop is known to be slow)"
    )]
    Deadline {
        /// The deadline, in seconds.
        seconds: u64,
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

    /// The hop and the cloud's code, without endpoints, descriptions, paths or ids: what a public
    /// health endpoint may show. The full text (with the fix) belongs in the logs.
    ///
    /// ```
    /// use entra_federation::Error;
    /// use entra_federation::sts::StsError;
    /// let e = Error::Sts(StsError::Transport { endpoint: "https://sts.example/".into(), reason: "refused".into() });
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
            Self::Entra(EntraError::InvalidResponse(_)) => "entra: unusable response".into(),
            Self::TokenShape(_) => "entra: the token is not the v1 token STS needs".into(),
            Self::Sts(StsError::Service(e)) => format!("sts: HTTP {} {}", e.status, e.raw_code),
            Self::Sts(StsError::Transport { .. }) => "sts: unreachable".into(),
            Self::Sts(_) => "sts: unusable response".into(),
            Self::Deadline { seconds } => format!("chain: no answer within {seconds} s"),
            Self::Stale { .. } => "sts: credentials already expired by the local clock".into(),
            Self::Interrupted => "chain: interrupted".into(),
        }
    }
}
