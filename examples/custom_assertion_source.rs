//! A custom assertion source: the managed-identity assertion comes from somewhere the library
//! does not know (here a file another process rotates, such as a token a platform agent writes),
//! through the `AssertionSource` trait. The rest of the chain (Entra, STS, caching) is the
//! library's. Runs against a local cloud started in process.
//!
//! `cargo run -p examples --example custom_assertion_source`

#[path = "support/mod.rs"]
mod support;

use entra_federation::assertion::{Assertion, AssertionError, AssertionSource, BoxFuture};
use std::path::PathBuf;

/// Reads the assertion from a file on every fetch (the writer rotates it).
#[derive(Debug)]
struct RotatedFile(PathBuf);

impl AssertionSource for RotatedFile {
    fn fetch(&self) -> BoxFuture<'_, Result<Assertion, AssertionError>> {
        Box::pin(async move {
            let jwt = tokio::fs::read_to_string(&self.0)
                .await
                .map_err(|e| AssertionError::Custom(Box::new(e)))?;
            // The expiry comes from the JWT's `exp`.
            Assertion::from_jwt(jwt.trim().to_string())
        })
    }

    fn kind(&self) -> &'static str {
        "rotated file"
    }

    /// Cheap to read: fetch before every exchange instead of caching.
    fn cacheable(&self) -> bool {
        false
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let local = support::Local::start().await?;
    // The intermediary app trusts the issuer of the tokens in the file (an AKS cluster's OIDC
    // issuer here), for this subject: its federated credential, as `az ad app
    // federated-credential create` would add it.
    local.cloud.edit_registry(|registry| {
        let issuer = registry.aks_issuers[0].clone();
        if let Some(app) = registry.app_mut(local_cloud::ids::STS_APP_ID) {
            app.federated_credentials
                .push(local_cloud::registry::FederatedCredential {
                    name: "rotated-file".into(),
                    issuer,
                    subject: "system:serviceaccount:agents:weather-agent".into(),
                    audiences: vec!["api://AzureADTokenExchange".into()],
                });
        }
    });
    // The "other process" writes the token (a Kubernetes service-account token here).
    let file = local.cloud.state_dir().join("rotated-assertion");
    local
        .cloud
        .write_projected_token(&file, "agents", "weather-agent")?;

    let provider = local
        .builder()?
        .custom_assertion_source(std::sync::Arc::new(RotatedFile(file.clone())))
        .build()?;
    let credentials = provider.credentials().await?;
    println!(
        "credentials from the custom source: {} (expires {:?})",
        credentials.access_key_id(),
        credentials.expiry()
    );
    println!("upstream calls: {:?}", provider.stats());
    assert_eq!(provider.stats().assertion_fetches, 1);
    Ok(())
}
