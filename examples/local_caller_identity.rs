//! Starts the local cloud in process, builds the provider from the environment it describes, and
//! asks STS "who am I?" through `aws-config` and `aws-sdk-sts`, as an app on Azure would.
//!
//! `cargo run -p examples --example local_caller_identity`

#[path = "support/mod.rs"]
mod support;

use entra_federation::EntraCredentialsProvider;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // 1. The local cloud: identity endpoint, Entra, STS on 127.0.0.1.
    let local = support::Local::start().await?;
    println!(
        "local cloud at {} / {}",
        local.cloud.http_url(),
        local.cloud.https_url()
    );

    // 2. The provider, configured only from those variables (on Azure: EntraCredentialsProvider::from_env()).
    let provider: EntraCredentialsProvider = local.provider()?;
    println!("provider: {provider:?}");

    // 3. Any AWS SDK client, with the provider as its credentials.
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .credentials_provider(provider.clone())
        .region(aws_config::Region::new(local.var("AWS_REGION")))
        // Local cloud only: on AWS the SDK finds STS's regional endpoint itself.
        .endpoint_url(local.var("AWS_ENDPOINT_URL_STS"))
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
