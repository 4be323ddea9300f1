//! AKS workload identity: the service-account token kubelet projects into the pod.

use super::{Assertion, AssertionError, AssertionSource, BoxFuture};
use std::path::PathBuf;

const KIND: &str = "AKS federated token file";

/// Reads `AZURE_FEDERATED_TOKEN_FILE` on every exchange: kubelet rotates the file, and a token read
/// once expires (azure-sdk-for-rust #1739, `AADSTS700024`).
#[derive(Debug, Clone)]
pub struct TokenFileSource {
    path: PathBuf,
}

impl TokenFileSource {
    /// A source for the file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    async fn fetch_inner(&self) -> Result<Assertion, AssertionError> {
        let err =
            |what: &'static str, source: Option<crate::error::Cause>| AssertionError::TokenFile {
                path: self.path.display().to_string(),
                what,
                source,
            };
        // tokio::fs needs a runtime; outside one the (small) file is read on this thread.
        let raw = if crate::http::outside_runtime().is_some() {
            std::fs::read_to_string(&self.path)
        } else {
            tokio::fs::read_to_string(&self.path).await
        }
        .map_err(|e| err("it cannot be read", Some(crate::error::Cause::new(e))))?;
        let token = raw.trim().to_string();
        if token.is_empty() {
            return Err(err("the file is empty", None));
        }
        Assertion::from_jwt(token).map_err(|e| {
            err(
                "the file does not hold a JWT with an exp claim",
                Some(crate::error::Cause::new(e)),
            )
        })
    }
}

impl AssertionSource for TokenFileSource {
    fn fetch(&self) -> BoxFuture<'_, Result<Assertion, AssertionError>> {
        Box::pin(self.fetch_inner())
    }

    fn kind(&self) -> &'static str {
        KIND
    }

    fn cacheable(&self) -> bool {
        false
    }
}
