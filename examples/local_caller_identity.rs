//! Starts the local cloud in process, builds the provider from the environment it describes, and
//! asks STS "who am I?" through `aws-config` and `aws-sdk-sts`, as an app on Azure would.
//!
//! `cargo run -p examples --example local_caller_identity`

use entra_federation::{EntraCredentialsProvider, EntraCredentialsProviderBuilder};
use local_cloud::LocalCloud;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();

    // 1. The local cloud: identity endpoint, Entra, STS on 127.0.0.1.
    let cloud = LocalCloud::builder().start().await?;
    let env: std::collections::HashMap<String, String> = cloud.env().into_iter().collect();
    println!(
        "local cloud at {} / {}",
        cloud.http_url(),
        cloud.https_url()
    );

    // 2. The provider, configured only from those variables (on Azure: EntraCredentialsProvider::from_env()).
    let provider: EntraCredentialsProvider =
        EntraCredentialsProviderBuilder::from_env_fn(move |k| env.get(k).cloned())?.build()?;
    println!("provider: {provider:?}");

    // 3. Any AWS SDK client, with the provider as its credentials.
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .credentials_provider(provider.clone())
        .region(aws_config::Region::new("us-east-2"))
        .endpoint_url(cloud.http_url())
        .load()
        .await;
    let sts = aws_sdk_sts::Client::new(&config);
    let me = sts.get_caller_identity().send().await?;
    println!("caller identity: {}", me.arn().unwrap_or("-"));
    println!("account:         {}", me.account().unwrap_or("-"));

    let token = provider.web_identity_token().await?;
    println!("v1 web-identity token claims: {}", token.claims());
    println!("upstream calls: {:?}", provider.stats());
    Ok(())
}
