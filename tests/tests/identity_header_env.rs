//! Container Apps and App Service rotate `IDENTITY_HEADER`. A provider configured by
//! `EntraCredentialsProviderBuilder::from_env` reads it from the process environment on every identity-endpoint request,
//! so the same provider follows a rotation. This binary holds this one test because it changes its
//! own process environment.

use entra_federation::assertion::AssertionError;
use entra_federation::{EntraCredentialsProviderBuilder, Error};
use local_cloud::Registry;
use std::time::Duration;
use system_tests::*;

/// Sets a variable of this process.
fn set(key: &str, value: &str) {
    // SAFETY: this test binary runs one test, on a current-thread runtime: no other thread reads
    // or writes the environment while it changes.
    unsafe { std::env::set_var(key, value) }
}

#[tokio::test(start_paused = true)]
async fn a_rotated_identity_header_is_read_from_the_process_environment() {
    let clock = TokioTime::new();
    let cloud = cloud_with(Registry::tutorial_default(), clock.clone()).await;
    for key in AMBIENT_VARIABLES {
        // SAFETY: as in `set`.
        unsafe { std::env::remove_var(key) }
    }
    let env = env_of(&cloud);
    for (key, value) in &env {
        set(key, value);
    }
    let provider = EntraCredentialsProviderBuilder::from_env()
        .expect("the process environment parses")
        .time_source(clock.clone())
        .build()
        .unwrap();
    provider.credentials().await.expect("the first header");
    assert_eq!(cloud.counter("identity_endpoint"), 1);

    // The platform rotates the header; the cloud accepts only the new value.
    let new_header = rotate_identity_header(&cloud).await;
    assert!(
        new_header != env["IDENTITY_HEADER"] && new_header == cloud.identity_header(),
        "the header rotated"
    );

    // 13 h on the assertion is due for refresh. The environment still holds the old value: it is
    // what the provider sends, and the endpoint refuses it.
    tokio::time::advance(Duration::from_secs(13 * 3600)).await;
    let err = provider.credentials().await.unwrap_err();
    let Error::Assertion(AssertionError::Rejected { status, hint, .. }) = &*err else {
        panic!("{err:?}")
    };
    // As Container Apps answers a header it does not take: 403 with an empty body.
    assert_eq!(*status, 403);
    assert!(
        hint.contains("read it from the environment on every request"),
        "{hint}"
    );
    assert_eq!(
        cloud.counter("identity_endpoint"),
        2,
        "a 403 is not retried"
    );

    // The platform updates the environment: the same provider reads the new value (once the
    // failure's backoff, at most a minute with no valid credentials, has passed).
    set("IDENTITY_HEADER", &new_header);
    tokio::time::advance(Duration::from_secs(61)).await;
    provider
        .credentials()
        .await
        .expect("the rotated header from the environment");
    assert_eq!(cloud.counter("identity_endpoint"), 3);
    assert_eq!(cloud.counter("entra_token"), 2);
}
