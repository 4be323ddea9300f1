//! The local Bedrock with real clients: aws-sdk-bedrockruntime with the library's provider, and
//! boto3's bedrock-runtime client; SigV4 with expired credentials and a role without
//! `bedrock:InvokeModel` refused with AWS's error shapes.

use aws_sdk_bedrockruntime::types::{
    ContentBlock, ConversationRole, Message, Tool, ToolConfiguration, ToolInputSchema,
    ToolResultBlock, ToolResultContentBlock, ToolSpecification,
};
use aws_smithy_types::Document;

use local_cloud::{LocalCloud, Registry, ids};
use std::time::Duration;
use system_tests::*;

fn bedrock(
    cloud: &LocalCloud,
    credentials: impl aws_credential_types::provider::ProvideCredentials + 'static,
) -> aws_sdk_bedrockruntime::Client {
    bedrock_in(cloud, "us-east-2", credentials)
}

fn bedrock_in(
    cloud: &LocalCloud,
    region: &'static str,
    credentials: impl aws_credential_types::provider::ProvideCredentials + 'static,
) -> aws_sdk_bedrockruntime::Client {
    let config = aws_sdk_bedrockruntime::Config::builder()
        .behavior_version(aws_sdk_bedrockruntime::config::BehaviorVersion::latest())
        .region(aws_sdk_bedrockruntime::config::Region::new(region))
        .endpoint_url(cloud.http_url())
        .credentials_provider(credentials)
        .build();
    aws_sdk_bedrockruntime::Client::from_conf(config)
}

/// The HTTP status and `x-amzn-errortype` of a refused converse.
async fn refusal(client: &aws_sdk_bedrockruntime::Client) -> Option<(u16, Option<String>)> {
    let err = client
        .converse()
        .model_id(ids::BEDROCK_MODEL_ID)
        .messages(user("hi"))
        .send()
        .await
        .unwrap_err();
    err.raw_response().map(|r| {
        (
            r.status().as_u16(),
            r.headers().get("x-amzn-errortype").map(str::to_string),
        )
    })
}

fn weather_tool() -> ToolConfiguration {
    let schema = Document::Object(
        [
            ("type".to_string(), Document::String("object".into())),
            (
                "properties".to_string(),
                Document::Object(
                    [(
                        "city".to_string(),
                        Document::Object(
                            [("type".to_string(), Document::String("string".into()))].into(),
                        ),
                    )]
                    .into(),
                ),
            ),
        ]
        .into(),
    );
    ToolConfiguration::builder()
        .tools(Tool::ToolSpec(
            ToolSpecification::builder()
                .name("get_weather")
                .description("Current weather")
                .input_schema(ToolInputSchema::Json(schema))
                .build()
                .unwrap(),
        ))
        .build()
        .unwrap()
}

fn user(text: &str) -> Message {
    Message::builder()
        .role(ConversationRole::User)
        .content(ContentBlock::Text(text.into()))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_sdk_converses_with_the_tool_round_trip() {
    let cloud = cloud().await;
    let client = bedrock(&cloud, provider_from_env(&cloud));
    let first = client
        .converse()
        .model_id(ids::BEDROCK_MODEL_ID)
        .messages(user("Weather in Dallas?"))
        .tool_config(weather_tool())
        .send()
        .await
        .expect("SigV4-signed converse");
    assert_eq!(first.stop_reason().as_str(), "tool_use");
    let msg = first.output().unwrap().as_message().unwrap().clone();
    let tool_use = msg
        .content()
        .iter()
        .find_map(|b| b.as_tool_use().ok())
        .expect("a toolUse block")
        .clone();
    assert_eq!(tool_use.name(), "get_weather");
    let result = Document::Object(
        [
            ("city".to_string(), Document::String("Dallas".into())),
            ("temperature".to_string(), Document::from(71u64)),
            ("temperature_unit".to_string(), Document::String("F".into())),
            (
                "condition".to_string(),
                Document::String("Clear Sky".into()),
            ),
        ]
        .into(),
    );
    let answer = client
        .converse()
        .model_id(ids::BEDROCK_MODEL_ID)
        .messages(user("Weather in Dallas?"))
        .messages(msg)
        .messages(
            Message::builder()
                .role(ConversationRole::User)
                .content(ContentBlock::ToolResult(
                    ToolResultBlock::builder()
                        .tool_use_id(tool_use.tool_use_id())
                        .content(ToolResultContentBlock::Json(result))
                        .build()
                        .unwrap(),
                ))
                .build()
                .unwrap(),
        )
        .tool_config(weather_tool())
        .send()
        .await
        .unwrap();
    let text = answer.output().unwrap().as_message().unwrap().content()[0]
        .as_text()
        .unwrap()
        .clone();
    assert!(text.contains("Dallas") && text.contains("71°F"), "{text}");
    let usage = answer.usage().unwrap();
    assert!(
        usage.input_tokens() > 0
            && usage.total_tokens() == usage.input_tokens() + usage.output_tokens()
    );
    assert_eq!(cloud.counter("bedrock:Converse"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_bedrock_runtime_converses_and_invokes() {
    let cloud = cloud().await;
    let token = provider_from_env(&cloud)
        .web_identity_token()
        .await
        .unwrap();
    let mut env = env_of(&cloud);
    env.insert(
        "WEB_IDENTITY_TOKEN".into(),
        token.token().expose_secret().to_string(),
    );
    let out = run_python("boto3_bedrock.py", &env).await;
    let r: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(r["first_stop"], "tool_use");
    assert_eq!(r["tool_input"]["city"], "Dallas");
    assert!(r["answer"].as_str().unwrap().contains("71°F"), "{r}");
    assert_eq!(r["invoke_stop"], "end_turn");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_without_invoke_model_is_access_denied() {
    let cloud = cloud().await;
    cloud.edit_registry(|r| {
        r.role_mut(ids::ROLE_NAME)
            .unwrap()
            .permission_policies
            .clear()
    });
    let err = bedrock(&cloud, provider_from_env(&cloud))
        .converse()
        .model_id(ids::BEDROCK_MODEL_ID)
        .messages(user("hi"))
        .send()
        .await
        .unwrap_err();
    let service = err.into_service_error();
    assert!(service.is_access_denied_exception(), "{service:?}");
    assert!(
        service
            .to_string()
            .contains("is not authorized to perform: bedrock:InvokeModel"),
        "{service}"
    );
}

#[tokio::test]
async fn expired_credentials_are_refused() {
    // The cloud's clock runs ahead of the SDK's: its one-hour credentials are expired when presented.
    let clock = TokioTime::new();
    let cloud = cloud_with(Registry::tutorial_default(), clock.clone()).await;
    let issued = builder_from_env(&env_of(&cloud))
        .time_source(clock.clone())
        .build()
        .unwrap()
        .credentials()
        .await
        .unwrap();
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(2 * 3600)).await;
    tokio::time::resume();
    let stale = aws_credential_types::Credentials::new(
        issued.access_key_id(),
        issued.secret_access_key(),
        issued.session_token().map(str::to_string),
        None,
        "test",
    );
    assert_eq!(
        refusal(&bedrock(&cloud, stale)).await,
        Some((403, Some("ExpiredTokenException".to_string())))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_keys_are_unrecognized_clients() {
    let cloud = cloud().await;
    let fake = aws_credential_types::Credentials::new(
        "ASIAUNKNOWNKEY000000",
        "secret",
        Some("token".into()),
        None,
        "test",
    );
    assert_eq!(
        refusal(&bedrock(&cloud, fake)).await,
        Some((403, Some("UnrecognizedClientException".to_string())))
    );
}

/// A session policy (the provider's `policy` and `policy_arns`) intersects with the role's
/// permissions for everything the session then calls: one that does not allow the model makes
/// Bedrock answer AccessDenied naming the session policy, one that does leaves the call working,
/// and a managed policy is looked up by its ARN.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_policies_intersect_with_the_roles_permissions() {
    let cloud = cloud().await;
    let only_s3 = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"*"}]}"#;
    let bedrock_ok = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"bedrock:*","Resource":"*"}]}"#;
    let managed_arn = format!("arn:aws:iam::{}:policy/OtherModelOnly", ids::AWS_ACCOUNT_ID);
    cloud.edit_registry(|r| {
        r.managed_policies.push(local_cloud::registry::ManagedPolicy {
            arn: managed_arn.clone(),
            document: serde_json::from_str(
                r#"{"Statement":{"Effect":"Allow","Action":"bedrock:InvokeModel","Resource":"arn:aws:bedrock:*::foundation-model/meta.*"}}"#,
            )
            .unwrap(),
        })
    });
    let converse = |provider: entra_federation::EntraCredentialsProvider| {
        let client = bedrock(&cloud, provider);
        async move {
            client
                .converse()
                .model_id(ids::BEDROCK_MODEL_ID)
                .messages(user("hi"))
                .send()
                .await
        }
    };
    let with = |b: entra_federation::EntraCredentialsProviderBuilder| b.build().unwrap();
    let env = env_of(&cloud);

    let denied = converse(with(builder_from_env(&env).policy(only_s3)))
        .await
        .unwrap_err()
        .into_service_error();
    assert!(denied.is_access_denied_exception(), "{denied:?}");
    assert!(
        denied
            .to_string()
            .contains("because no session policy allows the bedrock:InvokeModel action"),
        "{denied}"
    );
    converse(with(builder_from_env(&env).policy(bedrock_ok)))
        .await
        .expect("a session policy that allows the call leaves the role's permissions in force");
    let managed = converse(with(
        builder_from_env(&env).policy_arns([managed_arn.clone()]),
    ))
    .await
    .unwrap_err()
    .into_service_error();
    assert!(
        managed.is_access_denied_exception()
            && managed.to_string().contains("no session policy allows"),
        "{managed}"
    );
}

/// The SigV4 credential scope names the region the endpoint serves: a client configured for
/// another region is refused as AWS refuses it ("Credential should be scoped to a valid region").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_signed_for_another_region_is_refused() {
    let cloud = cloud().await;
    let err = bedrock_in(&cloud, "eu-west-1", provider_from_env(&cloud))
        .converse()
        .model_id(ids::BEDROCK_MODEL_ID)
        .messages(user("hi"))
        .send()
        .await
        .unwrap_err();
    let status = err.raw_response().map(|r| r.status().as_u16());
    let meta = err.into_service_error();
    let meta = aws_sdk_bedrockruntime::error::ProvideErrorMetadata::meta(&meta);
    assert_eq!(
        (status, meta.code(), meta.message()),
        (
            Some(403),
            Some("InvalidSignatureException"),
            Some("Credential should be scoped to a valid region. ")
        )
    );
}

/// Invoking a cross-region inference profile needs the foundation model allowed in every region
/// the profile may route to, as AWS documents; a policy naming only the caller's region is
/// refused, naming a destination region's model ARN.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inference_profile_needs_the_model_in_every_destination_region() {
    let cloud = cloud().await;
    cloud.edit_registry(|r| {
        let role = r.role_mut(ids::ROLE_NAME).unwrap();
        role.permission_policies =
            vec![serde_json::from_value(serde_json::json!({
            "Statement": [{
                "Effect": "Allow",
                "Action": "bedrock:InvokeModel",
                "Resource": [
                    "arn:aws:bedrock:us-east-2::foundation-model/anthropic.*",
                    format!("arn:aws:bedrock:*:{}:inference-profile/*", ids::AWS_ACCOUNT_ID),
                ]
            }]
        }))
        .unwrap()];
    });
    let err = bedrock(&cloud, provider_from_env(&cloud))
        .converse()
        .model_id(ids::BEDROCK_MODEL_ID)
        .messages(user("hi"))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_access_denied_exception(), "{err:?}");
    assert!(
        err.to_string().contains(
            "on resource: arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-haiku"
        ),
        "{err}"
    );
}

/// Faults at Bedrock, through the AWS SDK for Rust: throttling and 503 are retried by the SDK's
/// standard policy (three attempts) and then surface as their typed exceptions; a reset, garbage
/// or a proxy's HTML page is an error, not a panic; the fault gone, the call succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_at_bedrock_reach_the_sdk_as_its_errors() {
    use local_cloud::{Fault, FaultKind};
    let cloud = cloud().await;
    let client = bedrock(&cloud, provider_from_env(&cloud));
    let converse = || {
        client
            .converse()
            .model_id(ids::BEDROCK_MODEL_ID)
            .messages(user("hi"))
            .send()
    };
    let target = "bedrock:Converse";
    for (status, code) in [
        (429, "ThrottlingException"),
        (503, "ServiceUnavailableException"),
    ] {
        cloud.state().reset_counters();
        cloud.inject(Fault::status(target, status, Some(code)));
        let err = converse().await.unwrap_err().into_service_error();
        assert_eq!(
            aws_sdk_bedrockruntime::error::ProvideErrorMetadata::code(&err),
            Some(code)
        );
        assert_eq!(cloud.counter(target), 3, "{code}: the SDK's three attempts");
        cloud.clear_faults();
        converse()
            .await
            .unwrap_or_else(|e| panic!("{code}: after the fault: {e:?}"));
    }
    for kind in [
        FaultKind::Reset,
        FaultKind::Garbage,
        FaultKind::WrongContentType,
    ] {
        cloud.inject(Fault {
            count: Some(3),
            ..Fault::of_kind(target, kind)
        });
        assert!(converse().await.is_err(), "{kind:?}");
        cloud.clear_faults();
        converse()
            .await
            .unwrap_or_else(|e| panic!("{kind:?}: after the fault: {e:?}"));
    }
}

/// A permission policy's `Condition` on a global key is evaluated with the call's values
/// (`aws:RequestedRegion`, `aws:PrincipalArn`): a condition that holds allows, one that does not
/// is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditions_on_global_keys_are_evaluated() {
    let cloud = cloud().await;
    let policy = |region: &str| -> local_cloud::policy::PolicyDocument {
        serde_json::from_value(serde_json::json!({
            "Statement": [{
                "Effect": "Allow",
                "Action": "bedrock:InvokeModel",
                "Resource": "*",
                "Condition": {
                    "StringEquals": {"aws:RequestedRegion": region},
                    "StringLike": {"aws:PrincipalArn": format!("arn:aws:iam::{}:role/{}", ids::AWS_ACCOUNT_ID, ids::ROLE_NAME)}
                }
            }]
        }))
        .unwrap()
    };
    let converse = || async {
        bedrock(&cloud, provider_from_env(&cloud))
            .converse()
            .model_id(ids::BEDROCK_MODEL_ID)
            .messages(user("hi"))
            .send()
            .await
    };
    cloud.edit_registry(|r| {
        r.role_mut(ids::ROLE_NAME).unwrap().permission_policies = vec![policy("us-east-2")]
    });
    converse().await.expect("the conditions hold");
    cloud.edit_registry(|r| {
        r.role_mut(ids::ROLE_NAME).unwrap().permission_policies = vec![policy("eu-west-1")]
    });
    let err = converse().await.unwrap_err().into_service_error();
    assert!(err.is_access_denied_exception(), "{err:?}");
}

/// `inferenceConfig.maxTokens`: below 1 is Bedrock's validation error; an answer that fits is
/// whole (`end_turn`); one that does not is cut with `max_tokens`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_tokens_is_validated_and_cuts_only_what_does_not_fit() {
    let cloud = cloud().await;
    let creds = session_credentials(&cloud).await;
    let ask = |max: serde_json::Value| {
        let (cloud, creds) = (&cloud, creds.clone());
        async move {
            signed_bedrock_post(
                cloud,
                creds,
                &format!("/model/{}/converse", ids::BEDROCK_MODEL_ID),
                &serde_json::json!({
                    "messages": [{"role": "user", "content": [{"text": "Hello there"}]}],
                    "inferenceConfig": {"maxTokens": max}
                }),
            )
            .await
        }
    };
    for bad in [
        serde_json::json!(0),
        serde_json::json!(-3),
        serde_json::json!(2.5),
    ] {
        let (status, error_type, body) = ask(bad.clone()).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(error_type.unwrap().starts_with("ValidationException"));
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("at 'inferenceConfig.maxTokens' failed to satisfy constraint"),
            "{body}"
        );
    }
    let (status, _, whole) = ask(serde_json::json!(4096)).await;
    assert_eq!(
        (status, whole["stopReason"].as_str()),
        (200, Some("end_turn")),
        "{whole}"
    );
    let (status, _, cut) = ask(serde_json::json!(4)).await;
    assert_eq!(
        (status, cut["stopReason"].as_str()),
        (200, Some("max_tokens")),
        "{cut}"
    );
    assert_eq!(cut["usage"]["outputTokens"], 4, "{cut}");
    let text = |v: &serde_json::Value| {
        v["output"]["message"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(
        text(&cut).split_whitespace().count() < text(&whole).split_whitespace().count(),
        "{cut} {whole}"
    );
}
