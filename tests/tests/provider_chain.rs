//! The provider inside aws-config's `CredentialsProviderChain`, with another provider behind it:
//! no managed identity detected → `CredentialsNotLoaded` and the chain tries the next provider;
//! a configuration or trust problem → `InvalidConfiguration`, an upstream failure →
//! `ProviderError`, and the chain stops there (it must not hide a broken deployment behind
//! other credentials).

use aws_config::meta::credentials::CredentialsProviderChain;
use aws_credential_types::Credentials;
use aws_credential_types::provider::ProvideCredentials;
use aws_credential_types::provider::error::CredentialsError;
use local_cloud::{LocalCloud, ids};
use std::collections::HashMap;
use system_tests::*;

/// The provider behind ours: what a developer's machine would have (a profile, static keys).
fn static_keys() -> Credentials {
    Credentials::new("AKIASTATICFALLBACK00", "not-a-secret", None, None, "Static")
}

fn chain(env: &HashMap<String, String>) -> CredentialsProviderChain {
    let ours = builder_from_env(env).build().expect("provider builds");
    CredentialsProviderChain::first_try("EntraFederation", ours).or_else("Static", static_keys())
}

/// The local cloud's environment without a managed-identity source: what the provider sees on a
/// laptop or a CI runner (IMDS is then only a guess, probed once).
fn without_managed_identity(cloud: &LocalCloud, imds_host: &str) -> HashMap<String, String> {
    let mut env = env_of(cloud);
    for name in [
        "IDENTITY_ENDPOINT",
        "IDENTITY_HEADER",
        "AZURE_FEDERATED_TOKEN_FILE",
        "ENTRA_FEDERATION_ASSERTION_SOURCE",
    ] {
        env.remove(name);
    }
    env.insert("AZURE_POD_IDENTITY_AUTHORITY_HOST".into(), imds_host.into());
    env
}

fn kind(e: &CredentialsError) -> &'static str {
    match e {
        CredentialsError::CredentialsNotLoaded(_) => "not_loaded",
        CredentialsError::ProviderTimedOut(_) => "timed_out",
        CredentialsError::InvalidConfiguration(_) => "invalid_configuration",
        CredentialsError::ProviderError(_) => "provider_error",
        CredentialsError::Unhandled(_) => "unhandled",
        _ => "other",
    }
}

/// The library's own error, under the SDK's.
fn library_error(e: &CredentialsError) -> &entra_federation::Error {
    entra_federation::Error::find_in(e)
        .unwrap_or_else(|| panic!("no entra_federation::Error under {e:?}"))
}

/// Ours alone reports "not loaded"; in the chain, the next provider's keys are used.
async fn falls_through(env: &HashMap<String, String>) {
    let alone = builder_from_env(env).build().unwrap();
    let err = alone.provide_credentials().await.unwrap_err();
    assert_eq!(kind(&err), "not_loaded", "{err:?}");
    let creds = chain(env)
        .provide_credentials()
        .await
        .expect("the next provider");
    assert_eq!(creds.access_key_id(), "AKIASTATICFALLBACK00");
}

#[tokio::test]
async fn with_nothing_detected_and_imds_refusing_the_chain_tries_the_next_provider() {
    let cloud = cloud().await;
    let (_dead, dead) = dead_endpoint();
    let env = without_managed_identity(&cloud, &dead);
    let alone = builder_from_env(&env).build().unwrap();
    let err = alone.provide_credentials().await.unwrap_err();
    assert_eq!(kind(&err), "not_loaded", "{err:?}");
    assert!(
        library_error(&err)
            .to_string()
            .contains("no managed identity"),
        "{}",
        library_error(&err)
    );

    let creds = chain(&env)
        .provide_credentials()
        .await
        .expect("the next provider");
    assert_eq!(creds.access_key_id(), "AKIASTATICFALLBACK00");
    assert_eq!(cloud.counter("entra_token"), 0);
}

/// Off Azure, packets to 169.254.169.254 often go nowhere: the probe gives up after a second (as
/// azure-identity's does), not after IMDS's documented minutes of retries.
#[tokio::test(start_paused = true)]
async fn with_nothing_detected_and_imds_silent_the_probe_gives_up_quickly() {
    let cloud = cloud().await;
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let env = without_managed_identity(&cloud, &format!("http://{}", silent.local_addr().unwrap()));
    let started = tokio::time::Instant::now();
    let creds = chain(&env)
        .provide_credentials()
        .await
        .expect("the next provider");
    assert_eq!(creds.access_key_id(), "AKIASTATICFALLBACK00");
    let waited = started.elapsed();
    assert!(
        waited <= std::time::Duration::from_secs(2),
        "the probe took {waited:?} of (paused) tokio time"
    );
}

/// A VM without a managed identity answers 400 "Identity not found" for the system-assigned
/// identity: nothing to use either.
#[tokio::test]
async fn a_vm_without_an_identity_is_not_loaded_too() {
    let cloud = cloud().await;
    cloud.edit_registry(|r| r.managed_identities.retain(|m| !m.system_assigned));
    falls_through(&without_managed_identity(&cloud, &cloud.http_url())).await;
}

/// A user-assigned identity that was named (AZURE_CLIENT_ID) but is not on the VM is a
/// configuration error: the chain stops instead of using other credentials.
#[tokio::test]
async fn a_named_identity_that_is_not_assigned_stops_the_chain() {
    let cloud = cloud().await;
    let mut env = without_managed_identity(&cloud, &cloud.http_url());
    env.insert(
        "AZURE_CLIENT_ID".into(),
        "11111111-2222-3333-4444-555555555555".into(),
    );
    let err = chain(&env)
        .provide_credentials()
        .await
        .expect_err("the chain must not fall through");
    assert_eq!(kind(&err), "invalid_configuration", "{err:?}");
    assert!(
        matches!(
            library_error(&err),
            entra_federation::Error::Assertion(entra_federation::error::AssertionError::Rejected {
                status: 400,
                ..
            })
        ),
        "{err:?}"
    );
}

/// On another cloud, 169.254.169.254 is that cloud's metadata service: EC2 answers an IMDS path
/// with a 404 page, or 401 when IMDSv2 is enforced. Not Azure's IMDS: not loaded, at once.
#[tokio::test]
async fn another_clouds_metadata_service_is_not_loaded() {
    for (status, body) in [(404u16, "<html>Not Found</html>"), (401, "")] {
        let cloud = cloud().await;
        let app = axum::Router::new().fallback(move || async move {
            (axum::http::StatusCode::from_u16(status).unwrap(), body)
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        falls_through(&without_managed_identity(&cloud, &url)).await;
    }
}

/// Once IMDS is detected, it is the provider's source: its credentials win.
#[tokio::test]
async fn a_detected_imds_is_used_and_the_chain_stops_at_ours() {
    let cloud = cloud().await;
    let env = without_managed_identity(&cloud, &cloud.http_url());
    let creds = chain(&env)
        .provide_credentials()
        .await
        .expect("credentials");
    assert!(creds.access_key_id().starts_with("ASIA"), "{creds:?}");
    assert_eq!(cloud.counter("imds"), 2, "the probe, then the token");
}

/// With the Container Apps identity endpoint present (the local cloud's environment), our
/// credentials are the chain's, and a real SDK client signs with them.
#[tokio::test]
async fn a_detected_identity_endpoint_wins_and_the_sdk_signs_with_it() {
    let cloud = cloud().await;
    let chain = chain(&env_of(&cloud));
    let creds = chain.provide_credentials().await.expect("credentials");
    assert!(creds.access_key_id().starts_with("ASIA"));
    let who = sts_client(&cloud, chain)
        .get_caller_identity()
        .send()
        .await
        .expect("GetCallerIdentity");
    assert_eq!(who.account(), Some(ids::AWS_ACCOUNT_ID));
}

/// A trust problem (the federated credential's subject does not match) is a configuration error:
/// the chain reports it instead of quietly using the next provider's credentials.
#[tokio::test]
async fn a_trust_problem_stops_the_chain_as_invalid_configuration() {
    let cloud = cloud().await;
    cloud.edit_registry(|r| {
        r.app_mut(ids::STS_APP_ID).unwrap().federated_credentials[0].subject =
            "00000000-1111-2222-3333-444444444444".into();
    });
    let err = chain(&env_of(&cloud))
        .provide_credentials()
        .await
        .expect_err("the chain must not fall through");
    assert_eq!(kind(&err), "invalid_configuration", "{err:?}");
    assert!(
        library_error(&err).to_string().contains("AADSTS700213"),
        "{}",
        library_error(&err)
    );
}

/// A missing STS setting or a bad role is configuration as well; a refused STS is an upstream
/// failure: `ProviderError`, and the chain stops.
#[tokio::test(start_paused = true)]
async fn an_unreachable_sts_stops_the_chain_as_a_provider_error() {
    let cloud = cloud().await;
    let (_dead, dead) = dead_endpoint();
    let mut env = env_of(&cloud);
    env.insert("AWS_ENDPOINT_URL_STS".into(), dead);
    let err = chain(&env)
        .provide_credentials()
        .await
        .expect_err("the chain must not fall through");
    assert_eq!(kind(&err), "provider_error", "{err:?}");
    assert!(matches!(
        library_error(&err),
        entra_federation::Error::Sts(_)
    ));
}
