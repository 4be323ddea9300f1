//! # entra-federation
//!
//! AWS credentials for workloads on Azure with no stored secret: the Azure managed identity's
//! assertion is exchanged at Microsoft Entra for a **v1** token of an intermediary app, which AWS STS
//! `AssumeRoleWithWebIdentity` accepts. All in process, cached and refreshed ahead of expiry.
//!
//! ```text
//! managed identity ──assertion──▶ Entra (intermediary app, v1) ──JWT──▶ STS ──▶ AWS credentials
//! (IMDS / IDENTITY_ENDPOINT /        iss=https://sts.windows.net/{tid}/       AssumeRoleWithWebIdentity
//!  AKS token file)                   aud=api://<STS_APP_ID>
//! ```
//!
//! ```no_run
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! let provider = entra_federation::EntraCredentialsProvider::from_env()?;
//! let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
//!     .credentials_provider(provider)
//!     .load()
//!     .await;
//! # let _ = config; Ok(()) }
//! ```

//! ## Features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `validate` | on | `validate`: JWT validation for downstream APIs (JWKS, issuer, audience, policy) |
//! | `sidecar` | on | `sidecar`: the Entra Agent ID sidecar client (autonomous and on-behalf-of tokens) |
//!
//! With `default-features = false` the crate is the credential provider alone.

#![warn(missing_docs)]

pub mod assertion;
pub mod claims;
pub mod clock;
pub mod config;
pub mod entra;
mod error;
pub mod http;
mod provider;
pub mod refresh;
mod refreshing;
pub mod retry;
mod secret;
#[cfg(feature = "sidecar")]
pub mod sidecar;
pub mod sts;
pub mod token_file;
#[cfg(feature = "validate")]
pub mod validate;

pub use claims::ClaimSummary;
pub use clock::Clock;
pub use config::{Builder, ConfigError, SourceChoice};
pub use entra::WebIdentityToken;
pub use error::Error;
pub use provider::{EntraCredentialsProvider, ProviderStats};
pub use secret::SecretString;
