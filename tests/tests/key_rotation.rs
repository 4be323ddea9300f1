//! The local cloud's key rotation seen through the library: STS caches the issuer's keys and
//! refetches them for a token signed with a key it has not seen (here, not in the local cloud's
//! own tests: the local cloud does not depend on the library).

use serde_json::Value;
use system_tests::*;

#[tokio::test]
async fn key_rotation_publishes_the_new_key_and_sts_refetches_on_an_unknown_kid() {
    let c = cloud().await;
    let env: std::collections::HashMap<String, String> = c.env().into_iter().collect();
    let provider = |env: std::collections::HashMap<String, String>| {
        entra_federation::EntraCredentialsProviderBuilder::from_env_fn(move |k| env.get(k).cloned())
            .unwrap()
            .build()
            .unwrap()
    };
    provider(env.clone())
        .credentials()
        .await
        .expect("STS fetches and caches the keys");
    let fetched = c.counter("entra_jwks");
    assert_eq!(fetched, 1);
    provider(env.clone())
        .credentials()
        .await
        .expect("cached keys verify a token of the same key");
    assert_eq!(c.counter("entra_jwks"), 1, "STS caches the issuer's keys");

    let http = reqwest::Client::new();
    let rotated: Value = http
        .post(format!("{}/_local/rotate-keys", c.http_url()))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let keys: Value = http
        .get(format!(
            "{}/{}/discovery/v2.0/keys",
            c.http_url(),
            local_cloud::ids::TENANT_ID
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(keys["keys"][0]["kid"], rotated["kid"]);
    assert_eq!(
        keys["keys"].as_array().unwrap().len(),
        2,
        "the previous key stays published"
    );
    let token = provider(env.clone()).web_identity_token().await.unwrap();
    let header = jsonwebtoken::decode_header(token.token().expose_secret()).unwrap();
    assert_eq!(
        header.kid.as_ref(),
        rotated["kid"].as_str().map(str::to_string).as_ref(),
        "new tokens are signed with the new key"
    );
    provider(env)
        .credentials()
        .await
        .expect("STS re-fetches the keys for the unknown kid");
    assert_eq!(c.counter("entra_jwks"), 3);
}
