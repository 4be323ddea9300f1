//! What every example shares: a local cloud started in process, and the environment an app on
//! Azure would have (the platform's identity endpoint, the tutorial's variables), read from it.
// Each example uses part of it.
#![allow(dead_code)]

use entra_federation::{EntraCredentialsProvider, EntraCredentialsProviderBuilder};
use local_cloud::LocalCloud;
use std::collections::HashMap;

/// A local cloud and the variables it describes.
pub struct Local {
    /// The cloud: identity endpoint, Entra, STS, Bedrock, on 127.0.0.1.
    pub cloud: LocalCloud,
    /// What `env` would show in the container.
    pub env: HashMap<String, String>,
}

impl Local {
    /// Starts the local cloud, with logs at `info` (`RUST_LOG`-style levels are not parsed here).
    pub async fn start() -> Result<Self, Box<dyn std::error::Error>> {
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .try_init();
        let cloud = LocalCloud::builder().start().await?;
        let env = cloud.env().into_iter().collect();
        Ok(Self { cloud, env })
    }

    /// A variable, as `std::env::var` would give it on Azure.
    pub fn var(&self, name: &str) -> String {
        self.env.get(name).cloned().unwrap_or_default()
    }

    /// The provider from those variables: on Azure, `EntraCredentialsProvider::from_env()`.
    pub fn provider(&self) -> Result<EntraCredentialsProvider, entra_federation::ConfigError> {
        self.builder()?.build()
    }

    /// The builder from those variables: on Azure, `EntraCredentialsProviderBuilder::from_env()`.
    pub fn builder(
        &self,
    ) -> Result<EntraCredentialsProviderBuilder, entra_federation::ConfigError> {
        let env = self.env.clone();
        EntraCredentialsProviderBuilder::from_env_fn(move |name| env.get(name).cloned())
    }
}
