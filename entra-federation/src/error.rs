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
}
