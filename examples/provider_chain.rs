//! The provider inside aws-config's `CredentialsProviderChain`, with another provider behind it.
//! Off Azure (no identity endpoint, no token file, and IMDS not answering) it reports
//! "not loaded" and the chain uses the next provider; on Azure its credentials win. A broken
//! deployment (a trust or configuration error) stops the chain instead of hiding behind other
//! credentials.
//!
//! `cargo run -p examples --example provider_chain`

#[path = "support/mod.rs"]
mod support;

use aws_config::meta::credentials::CredentialsProviderChain;
use aws_credential_types::Credentials;
use aws_credential_types::provider::ProvideCredentials;

/// The chain an agent would ship: managed identity first, a developer's keys (here static ones;
/// usually the profile file) second.
fn chain(provider: entra_federation::EntraCredentialsProvider) -> CredentialsProviderChain {
    CredentialsProviderChain::first_try("EntraFederation", provider).or_else(
        "DeveloperKeys",
        Credentials::new(
            "AKIADEVELOPERKEYS000",
            "not-a-secret",
            None,
            None,
            "DeveloperKeys",
        ),
    )
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let local = support::Local::start().await?;

    // 1. As on Container Apps: the identity endpoint is there, so the chain stops at ours.
    let on_azure = chain(local.provider()?).provide_credentials().await?;
    println!(
        "with a managed identity:    {} (temporary, from STS)",
        on_azure.access_key_id()
    );
    assert!(on_azure.access_key_id().starts_with("ASIA"));

    // 2. As on a laptop: no identity endpoint, and IMDS (here a loopback port where nothing
    //    listens) does not answer its one-second probe.
    let mut laptop = local.env.clone();
    laptop.remove("IDENTITY_ENDPOINT");
    laptop.remove("IDENTITY_HEADER");
    let nowhere = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    laptop.insert(
        "AZURE_POD_IDENTITY_AUTHORITY_HOST".into(),
        format!("http://{nowhere}"),
    );
    let provider = entra_federation::EntraCredentialsProviderBuilder::from_env_fn(move |k| {
        laptop.get(k).cloned()
    })?
    .build()?;
    let off_azure = chain(provider).provide_credentials().await?;
    println!(
        "without a managed identity: {} (the next provider's)",
        off_azure.access_key_id()
    );
    assert_eq!(off_azure.access_key_id(), "AKIADEVELOPERKEYS000");
    Ok(())
}
