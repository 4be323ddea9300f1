#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub mod assertion;
mod claims;
mod clock;
mod entra;
pub mod error;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod http;
mod provider;
mod refresh;
mod refreshing;
mod retry;
mod secret;
#[cfg(feature = "sidecar")]
pub mod sidecar;
mod sts;
#[cfg(feature = "validate")]
pub mod validate;

pub use claims::ClaimSummary;
pub use entra::WebIdentityToken;
pub use error::{ConfigError, Error};
pub use provider::{
    EntraCredentialsProvider, EntraCredentialsProviderBuilder, ProviderStats, SourceChoice,
};
pub use secret::SecretString;
