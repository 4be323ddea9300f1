//! Clients nobody here wrote, against the local cloud: azure-identity + PyJWT, boto3, and the
//! library's STS client against moto's independent STS implementation.

use entra_federation::sts::{AssumeRoleRequest, StsClient};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
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

struct Moto(Child);

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn library_sts_client_parses_motos_independent_sts() {
    let cloud = cloud().await;
    let token = provider_from_env(&cloud)
        .web_identity_token()
        .await
        .expect("v1 token");
    let python = tokio::task::spawn_blocking(python).await.unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _moto = Moto(
        Command::new(python)
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto server starts"),
    );
    let url = format!("http://127.0.0.1:{port}/");
    let http = reqwest::Client::new();
    // Readiness poll of a child process (not ordering between our own tasks): up to 20 s.
    let mut up = false;
    for _ in 0..400 {
        if http.get(format!("{url}moto-api/")).send().await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(up, "moto server did not come up on {url}");
    let sts = StsClient::new(url.parse().unwrap(), http);
    let request = AssumeRoleRequest {
        role_arn: "arn:aws:iam::123456789012:role/moto-role".into(),
        session_name: "entra-federation".into(),
        duration_seconds: Some(900),
        policy: None,
        policy_arns: vec!["arn:aws:iam::aws:policy/ReadOnlyAccess".into()],
    };
    let assumed = sts
        .assume_role_with_web_identity(&request, &token)
        .await
        .expect("moto answers");
    assert!(!assumed.credentials.access_key_id().is_empty());
    assert!(
        assumed
            .credentials
            .session_token()
            .is_some_and(|t| !t.is_empty())
    );
    assert!(
        assumed
            .assumed_role_arn
            .as_deref()
            .is_some_and(|a| a.ends_with(":assumed-role/moto-role/entra-federation")),
        "{:?}",
        assumed.assumed_role_arn
    );
    assert_eq!(
        assumed.credentials.account_id().map(|a| a.as_str()),
        Some("123456789012")
    );
    assert!(assumed.expires_at > std::time::SystemTime::now());
}
