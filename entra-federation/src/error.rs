//! The error of one trip through the chain.

use crate::assertion::AssertionError;
use crate::entra::{EntraError, TokenShapeError};
use crate::sts::StsError;

/// Why the chain produced no credentials. Each variant carries the cloud's own code.
#[derive(Debug, thiserror::Error)]
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
}

impl Error {
    /// Whether a later attempt may succeed without a configuration change.
    pub fn is_recoverable(&self) -> bool {
        match self {
            Self::Assertion(e) => e.is_recoverable(),
            Self::Entra(e) => e.is_recoverable(),
            Self::TokenShape(_) => false,
            Self::Sts(e) => e.is_recoverable(),
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
        }
    }
}
