//! The local STS applies AWS's rules: `exp` plus five minutes of skew, the role's maximum session
//! duration, and SigV4 callers with unknown or expired keys refused with AWS's codes.

use aws_credential_types::Credentials;
use aws_credential_types::provider::ProvideCredentials;

use local_cloud::{LocalCloud, Registry, ids};
use std::time::Duration;
use system_tests::*;

async fn assume(cloud: &LocalCloud, token: &str, duration: Option<&str>) -> (u16, String) {
    assume_with(cloud, token, duration, &[]).await
}

async fn assume_with(
    cloud: &LocalCloud,
    token: &str,
    duration: Option<&str>,
    extra: &[(&str, &str)],
) -> (u16, String) {
    let mut form = vec![
        ("Action", "AssumeRoleWithWebIdentity"),
        ("Version", "2011-06-15"),
        (
            "RoleArn",
            "arn:aws:iam::123456789012:role/BedrockInvokerFromAzure",
        ),
        ("RoleSessionName", "rules"),
        ("WebIdentityToken", token),
    ];
    if let Some(d) = duration {
        form.push(("DurationSeconds", d));
    }
    form.extend_from_slice(extra);
    let r = reqwest::Client::new()
        .post(cloud.http_url())
        .form(&form)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// The seconds from now to the `<Expiration>` of an `AssumeRoleWithWebIdentityResponse`.
/// STS's `Expiration`, in Unix seconds.
fn expiration_of(body: &str) -> i64 {
    let expiration = body
        .split_once("<Expiration>")
        .and_then(|(_, rest)| rest.split_once("</Expiration>"))
        .map(|(e, _)| e)
        .unwrap_or_else(|| panic!("no Expiration in {body}"));
    let at = aws_smithy_types::DateTime::from_str(
        expiration,
        aws_smithy_types::date_time::Format::DateTime,
    )
    .unwrap();
    at.secs()
}

/// Unix seconds now.
fn now_secs() -> i64 {
    local_cloud::state::unix_seconds(std::time::SystemTime::now()) as i64
}

/// The library's v1 token, re-signed by the tenant's key with `exp` moved.
async fn v1_token_expiring(cloud: &LocalCloud, exp_from_now: i64) -> String {
    resigned_v1_token(cloud, |c| {
        c["exp"] = serde_json::json!(now_secs() + exp_from_now)
    })
    .await
}

#[tokio::test]
async fn expiry_allows_five_minutes_of_skew() {
    let cloud = cloud().await;
    let (status, body) = assume(&cloud, &v1_token_expiring(&cloud, -240).await, None).await;
    assert_eq!(
        status, 200,
        "expired 4 minutes ago is within IAM's allowance: {body}"
    );
    assert!(
        body.contains("<AccessKeyId>ASIA")
            && body.contains("assumed-role/BedrockInvokerFromAzure/rules</Arn>"),
        "{body}"
    );
    let (status, body) = assume(&cloud, &v1_token_expiring(&cloud, -360).await, None).await;
    assert_eq!(status, 400);
    // STS names both times, as recorded (tests/recorded/sts/expired-token-exception.json).
    let message = body
        .split_once("<Message>")
        .and_then(|(_, rest)| rest.split_once("</Message>"))
        .map(|(m, _)| m)
        .unwrap_or_default();
    let (now, exp) = message
        .strip_prefix("Token expired: current date/time ")
        .and_then(|rest| rest.split_once(" must be before the expiration date/time "))
        .unwrap_or_else(|| panic!("{body}"));
    let (now, exp): (i64, i64) = (now.parse().unwrap(), exp.parse().unwrap());
    assert!(
        body.contains("<Code>ExpiredTokenException</Code>"),
        "{body}"
    );
    assert!(
        (now - exp - 360).abs() <= 2 && (now - now_secs()).abs() <= 2,
        "{body}"
    );
}

/// STS also refuses a token issued too long ago, whatever its `exp` says, with
/// `ExpiredTokenException` "Token too old: <age in seconds>" (recorded:
/// tests/recorded/sts/token-too-old.json, a token 441,398 s old). AWS does not publish the limit;
/// the local cloud refuses tokens issued more than a day ago.
#[tokio::test]
async fn a_token_issued_too_long_ago_is_too_old() {
    let cloud = cloud().await;
    let old = resigned_v1_token(&cloud, |c| {
        c["iat"] = serde_json::json!(now_secs() - 441_398);
        c["nbf"] = c["iat"].clone();
        c["exp"] = serde_json::json!(now_secs() + 3600);
    })
    .await;
    let (status, body) = assume(&cloud, &old, None).await;
    assert_eq!(status, 400, "{body}");
    let age: i64 = body
        .split_once("<Message>Token too old: ")
        .and_then(|(_, rest)| rest.split_once("</Message>"))
        .map(|(a, _)| a.parse().unwrap())
        .unwrap_or_else(|| panic!("{body}"));
    assert!((age - 441_398).abs() <= 2, "{body}");
    assert!(
        body.contains("<Code>ExpiredTokenException</Code>"),
        "{body}"
    );
}

#[tokio::test]
async fn duration_is_bounded_by_the_roles_maximum() {
    let cloud = cloud().await;
    let token = provider_from_env(&cloud)
        .web_identity_token()
        .await
        .unwrap();
    let token = token.token().expose_secret();
    let (status, body) = assume(&cloud, token, Some("7200")).await;
    assert_eq!(status, 400);
    assert!(
        body.contains("<Code>ValidationError</Code>")
            && body.contains("exceeds the MaxSessionDuration"),
        "{body}"
    );
    // Bracketed by the test's clock before and after the call (STS writes whole seconds), so the
    // check does not depend on how long the call took.
    let before = now_secs();
    let (status, body) = assume(&cloud, token, Some("900")).await;
    let after = now_secs();
    assert_eq!(status, 200, "{body}");
    let expiration = expiration_of(&body);
    assert!(
        (before + 900..=after + 900).contains(&expiration),
        "900 s asked: expiration {expiration} outside [{}, {}]",
        before + 900,
        after + 900
    );
    let (status, body) = assume(&cloud, token, Some("600")).await;
    assert_eq!(status, 400);
    assert!(
        body.contains("<Code>ValidationError</Code>")
            && body.contains("'600' at 'durationSeconds' failed to satisfy constraint"),
        "{body}"
    );
}

fn sdk_with(cloud: &LocalCloud, creds: Credentials) -> aws_sdk_sts::Client {
    let config = aws_sdk_sts::Config::builder()
        .behavior_version(aws_sdk_sts::config::BehaviorVersion::latest())
        .region(aws_sdk_sts::config::Region::new("us-east-2"))
        .endpoint_url(cloud.http_url())
        .credentials_provider(creds)
        .build();
    aws_sdk_sts::Client::from_conf(config)
}

#[tokio::test]
async fn unknown_keys_are_invalid_client_token_id() {
    let cloud = cloud().await;
    let sts = sdk_with(
        &cloud,
        Credentials::new(
            "ASIAUNKNOWNKEY000000",
            "secret",
            Some("token".into()),
            None,
            "test",
        ),
    );
    let err = sts.get_caller_identity().send().await.unwrap_err();
    let code = err
        .as_service_error()
        .and_then(|e| aws_sdk_sts::error::ProvideErrorMetadata::code(e))
        .map(str::to_string);
    assert_eq!(code.as_deref(), Some("InvalidClientTokenId"), "{err:?}");
}

#[tokio::test]
async fn expired_session_credentials_are_expired_token() {
    // The cloud's clock runs two hours ahead of the SDK's: the one-hour credentials it issued are
    // expired by the time the SDK (signing with the real clock) presents them.
    let clock = TokioTime::new();
    let cloud = cloud_with(Registry::tutorial_default(), clock.clone()).await;
    let issued = builder_from_env(&env_of(&cloud))
        .time_source(clock.clone())
        .build()
        .unwrap()
        .provide_credentials()
        .await
        .unwrap();
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(2 * 3600)).await;
    tokio::time::resume();
    let stale = Credentials::new(
        issued.access_key_id(),
        issued.secret_access_key(),
        issued.session_token().map(str::to_string),
        None,
        "test",
    );
    let err = sdk_with(&cloud, stale)
        .get_caller_identity()
        .send()
        .await
        .unwrap_err();
    let code = err
        .as_service_error()
        .and_then(|e| aws_sdk_sts::error::ProvideErrorMetadata::code(e))
        .map(str::to_string);
    assert_eq!(code.as_deref(), Some("ExpiredToken"), "{err:?}");
    // Recorded as `StatusCode: 403 … api error ExpiredToken` (pulumi/pulumi-aws#3866).
    let status = err.raw_response().map(|r| r.status().as_u16());
    assert_eq!(status, Some(403), "{err:?}");
}

/// `PackedPolicySize` (the percentage of the allowed size the session policies take) is in the
/// answer when session policies were passed, and only then; a malformed one, or a policy ARN the
/// account does not have, is `MalformedPolicyDocument`.
#[tokio::test]
async fn session_policies_report_their_packed_size() {
    let cloud = cloud().await;
    let token = resigned_v1_token(&cloud, |_| {}).await;
    let (status, plain) = assume(&cloud, &token, None).await;
    assert_eq!(status, 200, "{plain}");
    assert!(!plain.contains("PackedPolicySize"), "{plain}");
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"bedrock:InvokeModel","Resource":"*"}]}"#;
    let (status, body) = assume_with(&cloud, &token, None, &[("Policy", policy)]).await;
    assert_eq!(status, 200, "{body}");
    let size: u64 = body
        .split_once("<PackedPolicySize>")
        .and_then(|(_, rest)| rest.split_once("</PackedPolicySize>"))
        .map(|(n, _)| n.parse().unwrap())
        .unwrap_or_else(|| panic!("{body}"));
    assert!((1..=100).contains(&size), "{body}");
    for (name, value) in [
        (
            "Policy",
            r#"{"Statement":[{"Effect":"Allow","Action":"*","Resource":"*","Bogus":1}]}"#,
        ),
        (
            "PolicyArns.member.1.arn",
            "arn:aws:iam::123456789012:policy/NotThere",
        ),
    ] {
        let (status, body) = assume_with(&cloud, &token, None, &[(name, value)]).await;
        assert_eq!(status, 400, "{body}");
        assert!(
            body.contains("<Code>MalformedPolicyDocument</Code>"),
            "{name}: {body}"
        );
    }
}

/// The packed size counts the inline policy and the managed policies' ARNs together, as AWS
/// documents ("the session policies and session tags combined"): two that each fit can together
/// be too large, refused with AWS's wording, which gives the percentage.
#[tokio::test]
async fn the_packed_size_counts_inline_policy_and_arns_together() {
    let cloud = cloud().await;
    let token = resigned_v1_token(&cloud, |_| {}).await;
    // Six ARNs of about 540 characters each (IAM allows a 512-character path) ...
    let arns: Vec<String> = (0..6)
        .map(|i| {
            format!(
                "arn:aws:iam::{}:policy/{}/Bedrock{i}",
                ids::AWS_ACCOUNT_ID,
                "team/".repeat(100).trim_end_matches('/')
            )
        })
        .collect();
    cloud.edit_registry(|r| {
        for arn in &arns {
            r.managed_policies
                .push(local_cloud::registry::ManagedPolicy {
                    arn: arn.clone(),
                    document: serde_json::from_str(
                        r#"{"Statement":{"Effect":"Allow","Action":"bedrock:*","Resource":"*"}}"#,
                    )
                    .unwrap(),
                })
        }
    });
    let names: Vec<String> = (1..=arns.len())
        .map(|i| format!("PolicyArns.member.{i}.arn"))
        .collect();
    let arn_params: Vec<(&str, &str)> = names
        .iter()
        .zip(&arns)
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    // ... and an inline policy of about 1,600: each alone is within the limit.
    let actions: Vec<String> = (0..72)
        .map(|i| format!("\"bedrock:Action{i:04}\""))
        .collect();
    let policy = format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":[{}],"Resource":"*"}}]}}"#,
        actions.join(",")
    );
    let arn_chars: usize = arns.iter().map(String::len).sum();
    assert!((1500..2048).contains(&policy.len()) && (3000..4096).contains(&arn_chars));
    assert!(policy.len() + arn_chars > 4096);
    let alone = |body: &str| {
        body.split_once("<PackedPolicySize>")
            .and_then(|(_, rest)| rest.split_once("</PackedPolicySize>"))
            .map(|(n, _)| n.parse::<u64>().unwrap())
            .unwrap_or_else(|| panic!("{body}"))
    };
    let (status, body) = assume_with(&cloud, &token, None, &[("Policy", &policy)]).await;
    assert_eq!(status, 200, "{body}");
    let inline_only = alone(&body);
    let (status, body) = assume_with(&cloud, &token, None, &arn_params).await;
    assert_eq!(status, 200, "{body}");
    let arn_only = alone(&body);
    assert!(inline_only + arn_only > 100, "{inline_only} + {arn_only}");
    let mut both = arn_params.clone();
    both.push(("Policy", &policy));
    let (status, body) = assume_with(&cloud, &token, None, &both).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("<Code>PackedPolicyTooLarge</Code>"), "{body}");
    let percent = body
        .split_once("Packed policy consumes ")
        .and_then(|(_, rest)| rest.split_once("% of allotted space, please use smaller policy."))
        .map(|(n, _)| n.parse::<u64>().unwrap())
        .unwrap_or_else(|| panic!("AWS's wording with the percentage: {body}"));
    assert!(percent > 100, "{body}");
    // Past its own 2,048-character limit, the inline policy is a validation error, not a size.
    let too_long = format!("{policy}{}", " ".repeat(2049 - policy.chars().count()));
    let (status, body) = assume_with(&cloud, &token, None, &[("Policy", &too_long)]).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("<Code>ValidationError</Code>"), "{body}");
    assert!(
        body.contains("at 'policy' failed to satisfy constraint: Member must have length less than or equal to 2048"),
        "{body}"
    );
}

/// GetCallerIdentity signed for a region this endpoint does not serve (neither its own nor
/// us-east-1, the global endpoint's) is refused as STS refuses it.
#[tokio::test]
async fn get_caller_identity_signed_for_another_region_is_refused() {
    let cloud = cloud().await;
    let config = aws_sdk_sts::Config::builder()
        .behavior_version(aws_sdk_sts::config::BehaviorVersion::latest())
        .region(aws_sdk_sts::config::Region::new("eu-west-1"))
        .endpoint_url(cloud.http_url())
        .credentials_provider(provider_from_env(&cloud))
        .build();
    let err = aws_sdk_sts::Client::from_conf(config)
        .get_caller_identity()
        .send()
        .await
        .unwrap_err();
    let status = err.raw_response().map(|r| r.status().as_u16());
    let service = err.into_service_error();
    let meta = aws_sdk_sts::error::ProvideErrorMetadata::meta(&service);
    assert_eq!(
        (status, meta.code(), meta.message()),
        (
            Some(403),
            Some("SignatureDoesNotMatch"),
            Some("Credential should be scoped to a valid region. ")
        )
    );
}
