//! Clients nobody here wrote, against the local cloud: azure-identity + PyJWT, boto3, and the
//! library's STS client against moto's independent STS implementation.

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use system_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_identity_managed_identity_token_verifies_with_pyjwt() {
    let cloud = cloud().await;
    let out = run_python("azure_mi_pyjwt.py", &env_of(&cloud)).await;
    let claims: serde_json::Value = serde_json::from_str(out.trim()).expect("claims JSON");
    let tid = local_cloud::ids::TENANT_ID;
    assert_eq!(
        claims["iss"],
        format!("https://login.microsoftonline.com/{tid}/v2.0")
    );
    assert_eq!(claims["aud"], local_cloud::registry::TOKEN_EXCHANGE_APP_ID);
    assert_eq!(claims["sub"], local_cloud::ids::MI_OBJECT_ID);
    assert_eq!(claims["oid"], local_cloud::ids::MI_OBJECT_ID);
    assert_eq!(claims["ver"], "2.0");
    assert_eq!(cloud.counter("identity_endpoint"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_exchanges_the_libraries_v1_token_and_signs_with_the_result() {
    let cloud = cloud().await;
    let provider = provider_from_env(&cloud);
    let token = provider.web_identity_token().await.expect("v1 token");
    let mut env = env_of(&cloud);
    env.insert(
        "WEB_IDENTITY_TOKEN".into(),
        token.token().expose_secret().to_string(),
    );
    let out = run_python("boto3_sts.py", &env).await;
    let r: serde_json::Value = serde_json::from_str(out.trim()).expect("JSON");
    assert_eq!(
        r["arn"],
        "arn:aws:sts::123456789012:assumed-role/BedrockInvokerFromAzure/boto3-peer"
    );
    assert_eq!(r["account"], "123456789012");
    assert_eq!(r["subject"], local_cloud::ids::STS_SP_OID);
    assert_eq!(
        r["audience"],
        format!("api://{}", local_cloud::ids::STS_APP_ID)
    );
    assert_eq!(
        r["provider"],
        format!(
            "arn:aws:iam::123456789012:oidc-provider/sts.windows.net/{}/",
            local_cloud::ids::TENANT_ID
        )
    );
    assert_eq!(r["bad_secret_code"], "SignatureDoesNotMatch");
    assert_eq!(cloud.counter("sts:GetCallerIdentity"), 2);
}

/// moto's server, killed (and reaped) when dropped: also when the test fails.
struct Moto(Child);

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Moto {
    /// Starts moto on a port the kernel picks (`-p 0`: nothing to race for) and returns it with
    /// its base URL, read from the line werkzeug logs once it listens (" * Running on
    /// http://127.0.0.1:PORT"). Gives up after `within`.
    async fn start(python: std::path::PathBuf, within: Duration) -> (Self, String) {
        let mut child = Command::new(python)
            .args(["-u", "-m", "moto.server", "-H", "127.0.0.1", "-p", "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("moto server starts");
        let stderr = child.stderr.take().expect("piped stderr");
        let moto = Moto(child);
        let (tx, rx) = tokio::sync::oneshot::channel();
        // Reads stderr to its end (so that moto never blocks on a full pipe), handing over the
        // URL line, or everything read if the process ends first.
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            let mut seen = String::new();
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(url) = line
                    .split_once("Running on ")
                    .map(|(_, url)| url.trim().to_string())
                {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(Ok(url));
                    }
                } else if tx.is_some() {
                    seen.push_str(&line);
                    seen.push('\n');
                }
            }
            if let Some(tx) = tx.take() {
                let _ = tx.send(Err(seen));
            }
        });
        let url = match tokio::time::timeout(within, rx).await {
            Ok(Ok(Ok(url))) => url,
            Ok(Ok(Err(output))) => panic!("moto exited before listening:\n{output}"),
            Ok(Err(_)) => panic!("moto's stderr reader ended without a word"),
            Err(_) => panic!("moto did not report its address within {within:?}"),
        };
        assert!(url.starts_with("http://127.0.0.1:"), "{url}");
        (moto, format!("{}/", url.trim_end_matches('/')))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_provider_parses_motos_independent_sts() {
    let cloud = cloud().await;
    let python = tokio::task::spawn_blocking(python).await.unwrap();
    let (_moto, url) = Moto::start(python, Duration::from_secs(60)).await;
    let mut env = env_of(&cloud);
    env.insert("AWS_ENDPOINT_URL_STS".into(), url);
    env.insert(
        "AWS_ROLE_ARN".into(),
        "arn:aws:iam::123456789012:role/moto-role".into(),
    );
    env.insert("AWS_ROLE_DURATION_SECONDS".into(), "900".into());
    let provider = builder_from_env(&env)
        .policy_arns(["arn:aws:iam::aws:policy/ReadOnlyAccess".to_string()])
        .build()
        .unwrap();
    let asked_at = std::time::SystemTime::now();
    let credentials = provider.credentials().await.expect("moto answers");
    let answered_at = std::time::SystemTime::now();
    let key = credentials.access_key_id();
    assert!(
        key.starts_with("ASIA") && key.len() >= 16,
        "a temporary access key id"
    );
    assert!(credentials.session_token().is_some_and(|t| !t.is_empty()));
    // The account comes from moto's AssumedRoleUser ARN.
    assert_eq!(
        credentials.account_id().map(|a| a.as_str()),
        Some("123456789012")
    );
    // DurationSeconds=900 was sent and honoured: the expiry is 900 s after a moment between the
    // request and the answer (moto writes whole seconds, hence one second either side).
    let expiry = credentials.expiry().expect("an expiry");
    let second = Duration::from_secs(1);
    let earliest = asked_at + Duration::from_secs(900) - second;
    let latest = answered_at + Duration::from_secs(900) + second;
    assert!(
        (earliest..=latest).contains(&expiry),
        "{expiry:?} not within {earliest:?}..={latest:?}"
    );
    assert_eq!(provider.cached_expiry(), Some(expiry));
}
