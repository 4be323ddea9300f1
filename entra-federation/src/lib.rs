#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub mod assertion;
pub mod claims;
pub mod clock;
pub mod config;
pub mod entra;
pub mod error;
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
