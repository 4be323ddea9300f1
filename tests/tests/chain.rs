//! The whole chain against the local cloud: identity endpoint → Entra (v1) → STS, then a real
//! AWS SDK client signing with the credentials.

use aws_credential_types::provider::ProvideCredentials;
use system_tests::*;

#[tokio::test]
async fn provider_from_local_env_feeds_the_aws_sdk() {
    let cloud = cloud().await;
    let provider = provider_from_env(&cloud);
    let asked_at = std::time::SystemTime::now();
    let creds = provider.provide_credentials().await.expect("credentials");
    let answered_at = std::time::SystemTime::now();
    assert!(creds.access_key_id().starts_with("ASIA"));
    assert_eq!(
        creds.account_id().map(|a| a.as_str()),
        Some(local_cloud::ids::AWS_ACCOUNT_ID)
    );
    // The role's default one-hour session, as STS stated it (whole seconds): one hour after a
    // moment between the request and the answer.
    let expiry = creds.expiry().expect("STS's Expiration");
    assert_eq!(provider.cached_expiry(), Some(expiry));
    let hour = std::time::Duration::from_secs(3600);
    let earliest = asked_at + hour - std::time::Duration::from_secs(1);
    assert!(
        (earliest..=answered_at + hour).contains(&expiry),
        "{expiry:?} not within {earliest:?}..={:?}",
        answered_at + hour
    );

    let sts = sts_client(&cloud, provider.clone());
    let who = sts
        .get_caller_identity()
        .send()
        .await
        .expect("GetCallerIdentity");
    assert_eq!(
        who.arn(),
        Some("arn:aws:sts::123456789012:assumed-role/BedrockInvokerFromAzure/entra-federation")
    );
    assert_eq!(who.account(), Some("123456789012"));
    assert_eq!(cloud.counter("identity_endpoint"), 1);
    assert_eq!(cloud.counter("entra_token"), 1);
    assert_eq!(cloud.counter("sts:AssumeRoleWithWebIdentity"), 1);
    assert_eq!(cloud.counter("sts:GetCallerIdentity"), 1);
}
