//! Configuration the provider checks before any call: a forced assertion source (and each source
//! really used, shown by the local cloud's counters), the limits on session policies at their
//! boundaries, and the root CA file. Every refusal is a typed error naming the variable.

use entra_federation::error::HttpSetupError;
use entra_federation::{ConfigError, EntraCredentialsProviderBuilder};
use local_cloud::{LocalCloud, Registry, ids};
use std::collections::HashMap;
use system_tests::*;

/// The variables every provider needs, pointing nowhere in particular (nothing is called).
fn base_env() -> HashMap<String, String> {
    [
        ("TENANT_ID", ids::TENANT_ID),
        ("STS_APP_ID", ids::STS_APP_ID),
        (
            "AWS_ROLE_ARN",
            "arn:aws:iam::123456789012:role/BedrockInvokerFromAzure",
        ),
        ("AWS_REGION", "us-east-2"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn with(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    let mut env = base_env();
    for (k, v) in pairs {
        env.insert(k.to_string(), v.to_string());
    }
    env
}

fn from_env(env: &HashMap<String, String>) -> Result<EntraCredentialsProviderBuilder, ConfigError> {
    let env = env.clone();
    EntraCredentialsProviderBuilder::from_env_fn(move |k| env.get(k).cloned())
}

fn build(env: &HashMap<String, String>) -> Result<(), ConfigError> {
    from_env(env)?.build().map(|_| ())
}

// ---- forced assertion sources ----

/// A local cloud whose intermediary app also trusts an AKS service account, with that account's
/// projected token written to a file: all three sources are configured at once.
async fn cloud_with_every_source() -> (LocalCloud, HashMap<String, String>) {
    let mut registry = Registry::tutorial_default();
    let issuer = registry.aks_issuers[0].clone();
    registry
        .app_mut(ids::STS_APP_ID)
        .unwrap()
        .federated_credentials
        .push(local_cloud::registry::FederatedCredential {
            name: "aks".into(),
            issuer,
            subject: "system:serviceaccount:agents:bedrock-agent".into(),
            audiences: vec!["api://AzureADTokenExchange".into()],
        });
    let cloud = cloud_with(
        registry,
        aws_smithy_async::time::SharedTimeSource::default(),
    )
    .await;
    let file = cloud.state_dir().join("azure-identity-token");
    cloud
        .write_projected_token(&file, "agents", "bedrock-agent")
        .unwrap();
    let mut env = env_of(&cloud);
    env.insert(
        "AZURE_FEDERATED_TOKEN_FILE".into(),
        file.display().to_string(),
    );
    (cloud, env)
}

#[tokio::test]
async fn each_forced_assertion_source_is_the_one_called() {
    for (forced, kind, counter) in [
        ("token-file", "AKS federated token file", None),
        (
            "app-service",
            "Container Apps / App Service identity endpoint",
            Some("identity_endpoint"),
        ),
        ("imds", "IMDS", Some("imds")),
    ] {
        // Token file, identity endpoint and header, and IMDS are all configured.
        let (cloud, mut env) = cloud_with_every_source().await;
        env.insert("ENTRA_FEDERATION_ASSERTION_SOURCE".into(), forced.into());
        let provider = builder_from_env(&env).build().unwrap();
        assert!(
            format!("{provider:?}").contains(&format!("source: \"{kind}\"")),
            "{forced}: {provider:?}"
        );
        let token = provider
            .web_identity_token()
            .await
            .unwrap_or_else(|e| panic!("{forced}: {e}"));
        assert_eq!(
            token.claims().aud.as_deref(),
            Some(format!("api://{}", ids::STS_APP_ID).as_str())
        );
        for endpoint in ["identity_endpoint", "imds"] {
            let expected = u64::from(counter == Some(endpoint));
            assert_eq!(cloud.counter(endpoint), expected, "{forced}: {endpoint}");
        }
        assert_eq!(cloud.counter("entra_token"), 1, "{forced}");
    }
}

#[test]
fn a_forced_source_without_its_setting_names_the_missing_variable() {
    for (forced, unset, missing) in [
        (
            "token-file",
            "AZURE_FEDERATED_TOKEN_FILE",
            "AZURE_FEDERATED_TOKEN_FILE",
        ),
        ("app-service", "IDENTITY_ENDPOINT", "IDENTITY_ENDPOINT"),
        ("app-service", "IDENTITY_HEADER", "IDENTITY_HEADER"),
    ] {
        let mut env = with(&[
            ("ENTRA_FEDERATION_ASSERTION_SOURCE", forced),
            ("AZURE_FEDERATED_TOKEN_FILE", "/var/run/secrets/token"),
            ("IDENTITY_ENDPOINT", "http://127.0.0.1:1/msi/token"),
            ("IDENTITY_HEADER", "header"),
        ]);
        env.remove(unset);
        match from_env(&env) {
            Err(ConfigError::Missing { name, hint }) => {
                assert_eq!(name, missing, "{forced}");
                assert!(
                    hint.contains(&format!("ENTRA_FEDERATION_ASSERTION_SOURCE={forced}")),
                    "{hint}"
                );
            }
            other => panic!("{forced} without {unset}: {:?}", other.map(|_| ())),
        }
    }
}

#[test]
fn an_unknown_forced_source_is_a_typed_error_naming_the_variable() {
    for value in ["magic", "IMDS", "token_file", "aks"] {
        match from_env(&with(&[("ENTRA_FEDERATION_ASSERTION_SOURCE", value)])) {
            Err(e @ ConfigError::Invalid { .. }) => {
                let ConfigError::Invalid {
                    name,
                    value: got,
                    reason,
                } = &e
                else {
                    unreachable!()
                };
                assert_eq!(
                    (*name, got.as_str(), reason.as_str()),
                    (
                        "ENTRA_FEDERATION_ASSERTION_SOURCE",
                        value,
                        "must be token-file, app-service or imds"
                    )
                );
                assert!(
                    e.to_string()
                        .starts_with(&format!("ENTRA_FEDERATION_ASSERTION_SOURCE='{value}'")),
                    "{e}"
                );
            }
            other => panic!("{value}: {:?}", other.map(|_| ())),
        }
    }
}

// ---- session policy limits ----

/// A valid policy document of exactly `len` bytes (ASCII), padded inside its `Sid`.
fn policy_of_len(len: usize) -> String {
    let shell = |pad: &str| {
        format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Sid":"{pad}","Effect":"Allow","Action":"bedrock:InvokeModel","Resource":"*"}}]}}"#
        )
    };
    let pad = len - shell("").len();
    let p = shell(&"P".repeat(pad));
    assert_eq!(p.len(), len);
    p
}

fn arns(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("arn:aws:iam::123456789012:policy/session-{i}"))
        .collect()
}

fn invalid(result: Result<(), ConfigError>) -> (&'static str, String, String) {
    match result {
        Err(ConfigError::Invalid {
            name,
            value,
            reason,
        }) => (name, value, reason),
        other => panic!("expected ConfigError::Invalid, got {other:?}"),
    }
}

fn build_with_policies(
    policy: Option<String>,
    policy_arns: Vec<String>,
) -> Result<(), ConfigError> {
    let mut b = from_env(&base_env())?.policy_arns(policy_arns);
    if let Some(p) = policy {
        b = b.policy(p);
    }
    b.build().map(|_| ())
}

#[test]
fn an_inline_session_policy_is_1_to_2048_characters() {
    build_with_policies(Some(policy_of_len(2048)), vec![]).expect("2048 is the maximum");
    build_with_policies(Some("{".into()), vec![]).expect("1 is the minimum");
    assert_eq!(
        invalid(build_with_policies(Some(policy_of_len(2049)), vec![])),
        (
            "policy",
            "<2049 chars>".to_string(),
            "must be 1 to 2048 characters".to_string()
        ),
        "the error shows the length, never the policy"
    );
    assert_eq!(
        invalid(build_with_policies(Some(String::new()), vec![])),
        (
            "policy",
            "<0 chars>".to_string(),
            "must be 1 to 2048 characters".to_string()
        )
    );
}

/// AWS counts the policy's characters (U+0020 to U+00FF are allowed), not its UTF-8 bytes.
#[test]
fn the_inline_policy_limit_counts_characters_not_bytes() {
    let policy = policy_of_len(2048).replacen("PPPP", "éééé", 1);
    assert_eq!((policy.chars().count(), policy.len()), (2048, 2052));
    build_with_policies(Some(policy), vec![]).expect("2048 characters is the maximum");
    let policy = policy_of_len(2049).replacen("PPPP", "éééé", 1);
    assert_eq!(
        invalid(build_with_policies(Some(policy), vec![])),
        (
            "policy",
            "<2049 chars>".to_string(),
            "must be 1 to 2048 characters".to_string()
        )
    );
}

#[test]
fn at_most_ten_managed_session_policies() {
    build_with_policies(None, arns(0)).expect("none");
    build_with_policies(None, arns(10)).expect("10 is the maximum");
    assert_eq!(
        invalid(build_with_policies(None, arns(11))),
        ("policy_arns", "11".to_string(), "at most 10".to_string())
    );
}

#[tokio::test]
async fn policies_at_their_limits_reach_sts_and_are_accepted() {
    let cloud = cloud().await;
    // The ten managed policies exist in the account (STS refuses an ARN that does not).
    cloud.edit_registry(|r| {
        for arn in arns(10) {
            r.managed_policies
                .push(local_cloud::registry::ManagedPolicy {
                    arn,
                    document: serde_json::from_str(&policy_of_len(200)).unwrap(),
                });
        }
    });
    let provider = builder_from_env(&env_of(&cloud))
        // Two-byte characters: the limit is in characters on both sides of the wire.
        .policy(policy_of_len(2048).replacen("PPPP", "éééé", 1))
        .policy_arns(arns(10))
        .build()
        .unwrap();
    let creds = provider
        .credentials()
        .await
        .expect("STS takes a 2048-character policy and ten ARNs");
    assert!(creds.access_key_id().starts_with("ASIA"));
    assert_eq!(cloud.counter("sts:AssumeRoleWithWebIdentity"), 1);
}

// ---- the root CA file ----

fn ca_error(env: &HashMap<String, String>) -> (HttpSetupError, String) {
    match build(env) {
        Err(ConfigError::Http(e)) => {
            let text = e.to_string();
            (e, text)
        }
        other => panic!("expected ConfigError::Http, got {other:?}"),
    }
}

#[test]
fn an_unreadable_ca_file_names_the_variable() {
    let path = std::env::temp_dir().join(format!("no-such-ca-{}.pem", std::process::id()));
    let (e, text) = ca_error(&with(&[(
        "ENTRA_FEDERATION_CA_FILE",
        &path.display().to_string(),
    )]));
    let HttpSetupError::ReadCa { path: got, source } = &e else {
        panic!("{e:?}")
    };
    assert_eq!((got, source.kind()), (&path, std::io::ErrorKind::NotFound));
    assert!(
        text.starts_with(&format!("ENTRA_FEDERATION_CA_FILE='{}'", path.display())),
        "{text}"
    );
}

#[test]
fn a_ca_file_without_a_usable_certificate_names_the_variable() {
    let dir = std::env::temp_dir().join(format!("ca-checks-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, contents) in [
        ("empty.pem", ""),
        ("text.pem", "this is not a certificate\n"),
        (
            "bad-base64.pem",
            "-----BEGIN CERTIFICATE-----\n!!!not base64!!!\n-----END CERTIFICATE-----\n",
        ),
        (
            "not-a-certificate.pem",
            "-----BEGIN CERTIFICATE-----\nAAAAAAAA\n-----END CERTIFICATE-----\n",
        ),
        (
            "private-key-only.pem",
            "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n",
        ),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, contents).unwrap();
        let (e, text) = ca_error(&with(&[(
            "ENTRA_FEDERATION_CA_FILE",
            &path.display().to_string(),
        )]));
        assert!(
            matches!(&e, HttpSetupError::BadCa { path: got, .. } if *got == path),
            "{name}: {e:?}"
        );
        assert!(
            text.starts_with(&format!("ENTRA_FEDERATION_CA_FILE='{}'", path.display())),
            "{name}: {text}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_local_clouds_ca_file_is_trusted_for_its_https_entra() {
    // The positive case of the same setting: Entra is only reachable over https signed by this CA.
    let cloud = cloud().await;
    let env = env_of(&cloud);
    assert!(env["AZURE_AUTHORITY_HOST"].starts_with("https://"));
    builder_from_env(&env)
        .build()
        .unwrap()
        .web_identity_token()
        .await
        .expect("Entra over https with the CA file");
    let mut without = env.clone();
    without.remove("ENTRA_FEDERATION_CA_FILE");
    let err = builder_from_env(&without)
        .build()
        .unwrap()
        .web_identity_token()
        .await
        .unwrap_err();
    match &err {
        entra_federation::Error::Entra(entra_federation::error::EntraError::Transport {
            what,
            source: Some(cause),
            ..
        }) => {
            assert!(
                what.contains("certificate") && what.contains("ENTRA_FEDERATION_CA_FILE"),
                "without the CA the TLS handshake fails on the certificate: {what}"
            );
            let chain = entra_federation::error::DisplayChain(&**cause).to_string();
            assert!(
                chain.to_ascii_lowercase().contains("certificate"),
                "the TLS library's own error is kept as the cause: {chain}"
            );
        }
        other => panic!("expected a transport error at Entra: {other}"),
    }
    assert_eq!(
        cloud.counter("entra_token"),
        1,
        "only the trusted call got through"
    );
}

/// A tenant is a GUID or a domain name: anything else could redirect the token request when it is
/// joined into the token URL (`\\evil.example` and `http:evil.example` both leave the authority).
#[test]
fn a_tenant_that_is_neither_a_guid_nor_a_domain_is_refused() {
    for tenant in [
        r"\\evil.example",
        "http:evil.example",
        "evil.example:443",
        "..",
        "a..b",
        "-contoso.com",
        "contoso.com.",
        "",
        "7d2f0e4c-8a1b-4c3d-9e5f-0a1b2c3d4e5f%2F..",
    ] {
        let env = with(&[("TENANT_ID", tenant)]);
        match build(&env) {
            Err(ConfigError::Invalid { name, .. }) => assert_eq!(name, "TENANT_ID", "{tenant}"),
            Err(ConfigError::Missing { name, .. }) if tenant.is_empty() => {
                assert!(name.starts_with("TENANT_ID"), "{name}")
            }
            other => panic!("{tenant:?} accepted: {:?}", other.map(|_| ())),
        }
    }
    for tenant in [
        "7d2f0e4c-8a1b-4c3d-9e5f-0a1b2c3d4e5f",
        "7D2F0E4C-8A1B-4C3D-9E5F-0A1B2C3D4E5F",
        "contoso.onmicrosoft.com",
        "login-test.contoso.com",
    ] {
        build(&with(&[("TENANT_ID", tenant)])).unwrap_or_else(|e| panic!("{tenant}: {e}"));
    }
}
