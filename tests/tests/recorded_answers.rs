//! Recorded successful answers of STS and Bedrock (`tests/recorded/{sts,bedrock}/`, those with a
//! 2xx status), against both sides of the wire: (a) the library, or the AWS SDK for Rust where the
//! library does not make the call, reads each one replayed by a stand-in server; (b) the local
//! cloud's answer in the same situation has the recorded fields, with the same types.

use aws_credential_types::provider::ProvideCredentials;
use aws_sdk_bedrockruntime::types::{ContentBlock, StopReason};
use local_cloud::{LocalCloud, ids};
use serde_json::{Value, json};
use system_tests::*;

/// An AWS SDK config for `url`, with fixed credentials.
fn sdk_config(url: &str) -> aws_config::SdkConfig {
    aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(url)
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(
                aws_credential_types::Credentials::new(
                    "ASIAEXAMPLE",
                    "secret",
                    Some("session".into()),
                    None,
                    "t",
                ),
            ),
        )
        .build()
}

// ---- STS ----

/// (a) for STS: the AWS SDK reads every recorded answer into its typed output; the provider reads
/// every AssumeRoleWithWebIdentity answer into credentials (its `Expiration` moved to an hour from
/// now, since the recorded ones are long past).
#[tokio::test]
async fn the_sdk_and_the_library_read_every_recorded_sts_answer() {
    let all = successes("sts");
    assert!(all.len() >= 3, "{all:?}");
    for (name, r) in all {
        let xml = r["body"].as_str().unwrap();
        let sts = aws_sdk_sts::Client::new(&sdk_config(&replay(&r).await));
        if r["operation"] == "GetCallerIdentity" {
            let out = sts.get_caller_identity().send().await.unwrap();
            assert_eq!(out.account(), Some(xml_field(xml, "Account")), "{name}");
            assert_eq!(out.arn(), Some(xml_field(xml, "Arn")), "{name}");
            assert_eq!(out.user_id(), Some(xml_field(xml, "UserId")), "{name}");
            continue;
        }
        let out = sts
            .assume_role_with_web_identity()
            .role_arn("arn:aws:iam::123456789012:role/r")
            .role_session_name("s")
            .web_identity_token("t")
            .send()
            .await
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        let c = out.credentials().unwrap();
        assert_eq!(c.access_key_id(), xml_field(xml, "AccessKeyId"), "{name}");
        assert_eq!(
            c.expiration()
                .fmt(aws_smithy_types::date_time::Format::DateTime)
                .unwrap(),
            xml_field(xml, "Expiration"),
            "{name}"
        );
        assert_eq!(
            out.assumed_role_user().map(|u| u.arn()),
            Some(xml_field(xml, "Arn")),
            "{name}"
        );

        let later = aws_smithy_types::DateTime::from(
            std::time::SystemTime::now() + std::time::Duration::from_secs(3600),
        )
        .fmt(aws_smithy_types::date_time::Format::DateTime)
        .unwrap();
        let moved = xml.replace(xml_field(xml, "Expiration"), &later);
        let url = replay_answer(&r, moved, "text/xml").await;
        let cloud = cloud().await;
        let mut env = env_of(&cloud);
        env.insert("AWS_ENDPOINT_URL_STS".into(), format!("{url}/"));
        let creds = builder_from_env(&env)
            .build()
            .unwrap()
            .provide_credentials()
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            creds.access_key_id(),
            xml_field(xml, "AccessKeyId"),
            "{name}"
        );
        assert_eq!(
            creds.secret_access_key(),
            xml_field(xml, "SecretAccessKey"),
            "{name}"
        );
        assert_eq!(
            creds.session_token(),
            Some(xml_field(xml, "SessionToken")),
            "{name}"
        );
    }
}

/// The local STS's AssumeRoleWithWebIdentity answer for the library's v1 token: the XML text.
async fn local_assume(cloud: &LocalCloud) -> String {
    let token = resigned_v1_token(cloud, |_| {}).await;
    let role = env_of(cloud)["AWS_ROLE_ARN"].clone();
    let r = reqwest::Client::new()
        .post(cloud.http_url())
        .form(&[
            ("Action", "AssumeRoleWithWebIdentity"),
            ("Version", "2011-06-15"),
            ("RoleArn", role.as_str()),
            ("RoleSessionName", "recorded-shape"),
            ("WebIdentityToken", token.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap()
}

/// (b) for STS: the local AssumeRoleWithWebIdentity answer has exactly the recorded elements
/// (`SourceIdentity` only when the token carries a source identity, which Entra's do not), each
/// value in the recorded form; GetCallerIdentity's has the recorded fields, as the SDK reads them.
#[tokio::test]
async fn the_local_sts_answers_with_the_recorded_elements() {
    let cloud = cloud().await;
    let ours = local_assume(&cloud).await;
    for (name, r) in successes("sts") {
        let xml = r["body"].as_str().unwrap();
        if r["operation"] == "GetCallerIdentity" {
            let out = sts_client(&cloud, provider_from_env(&cloud))
                .get_caller_identity()
                .send()
                .await
                .unwrap();
            let (recorded_arn, ours_arn) = (xml_field(xml, "Arn"), out.arn().unwrap());
            assert_eq!(
                recorded_arn
                    .split('/')
                    .next()
                    .map(|p| p.replace(char::is_numeric, "")),
                ours_arn
                    .split('/')
                    .next()
                    .map(|p| p.replace(char::is_numeric, "")),
                "{name}: an assumed-role ARN"
            );
            assert_eq!(out.account(), Some(ids::AWS_ACCOUNT_ID), "{name}");
            // The role's id and the session name, as "ARO123EXAMPLE123:my-role-session-name".
            let user_id = out.user_id().unwrap();
            assert!(
                user_id.starts_with("ARO")
                    && user_id.split_once(':').is_some_and(|(_, s)| !s.is_empty()),
                "{name}: {user_id}, recorded {}",
                xml_field(xml, "UserId")
            );
            continue;
        }
        let recorded: Vec<String> = xml_paths(xml)
            .into_iter()
            .filter(|p| !p.ends_with("/SourceIdentity"))
            .collect();
        assert_eq!(xml_paths(&ours), recorded, "{name}: the elements\n{ours}");
        // Values in the recorded form.
        let id = xml_field(&ours, "AssumedRoleId");
        assert!(
            id.starts_with("AROA") && id.ends_with(":recorded-shape"),
            "{name}: {id}"
        );
        assert!(
            xml_field(&ours, "AccessKeyId").starts_with("ASIA"),
            "{name}"
        );
        let expiration = xml_field(&ours, "Expiration");
        assert!(
            aws_smithy_types::DateTime::from_str(
                expiration,
                aws_smithy_types::date_time::Format::DateTime
            )
            .is_ok()
                && expiration.ends_with('Z')
                && !expiration.contains('.'),
            "{name}: {expiration}"
        );
        if xml_field(xml, "Provider").starts_with("arn:aws:iam::") {
            // A real OIDC answer names the IAM OIDC provider by its ARN.
            assert!(
                xml_field(&ours, "Provider").starts_with(&format!(
                    "arn:aws:iam::{}:oidc-provider/",
                    ids::AWS_ACCOUNT_ID
                )),
                "{name}: {}",
                xml_field(&ours, "Provider")
            );
        }
    }
}

// ---- Bedrock ----

/// (a) for Bedrock: the AWS SDK for Rust (what the agent calls Bedrock with) reads every recorded
/// Converse answer: its blocks, stop reason and token counts.
#[tokio::test]
async fn the_sdk_reads_every_recorded_converse_answer() {
    let all = successes("bedrock");
    assert!(all.len() >= 5, "{all:?}");
    for (name, r) in all {
        let body = &r["body"];
        let url = replay_answer(&r, body.to_string(), "application/json").await;
        let client = aws_sdk_bedrockruntime::Client::new(&sdk_config(&url));
        let out = client
            .converse()
            .model_id(ids::BEDROCK_MODEL_ID)
            .messages(
                aws_sdk_bedrockruntime::types::Message::builder()
                    .role(aws_sdk_bedrockruntime::types::ConversationRole::User)
                    .content(ContentBlock::Text("hi".into()))
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        let message = out.output().unwrap().as_message().unwrap();
        let recorded_blocks = body["output"]["message"]["content"].as_array().unwrap();
        assert_eq!(message.content().len(), recorded_blocks.len(), "{name}");
        for (ours, recorded) in message.content().iter().zip(recorded_blocks) {
            match ours {
                ContentBlock::Text(t) => assert_eq!(Some(t.as_str()), recorded["text"].as_str()),
                ContentBlock::ToolUse(t) => {
                    assert_eq!(t.name(), recorded["toolUse"]["name"].as_str().unwrap());
                    assert_eq!(
                        t.tool_use_id(),
                        recorded["toolUse"]["toolUseId"].as_str().unwrap()
                    );
                }
                ContentBlock::ReasoningContent(_) => {
                    assert!(recorded.get("reasoningContent").is_some())
                }
                other => panic!("{name}: unexpected block {other:?}"),
            }
        }
        assert_eq!(
            out.stop_reason(),
            &StopReason::from(body["stopReason"].as_str().unwrap()),
            "{name}"
        );
        let usage = out.usage().unwrap();
        assert_eq!(
            (
                usage.input_tokens(),
                usage.output_tokens(),
                usage.total_tokens()
            ),
            (
                body["usage"]["inputTokens"].as_i64().unwrap() as i32,
                body["usage"]["outputTokens"].as_i64().unwrap() as i32,
                body["usage"]["totalTokens"].as_i64().unwrap() as i32,
            ),
            "{name}"
        );
    }
}

/// The weather tool as the agent declares it.
fn weather_tool() -> Value {
    json!({"tools": [{"toolSpec": {
        "name": "get_weather",
        "description": "Get the current weather for a city",
        "inputSchema": {"json": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
    }}]})
}

fn user(text: &str) -> Value {
    json!({"role": "user", "content": [{"text": text}]})
}

/// The request that puts the local Bedrock in a recording's situation.
fn request_for(situation: &str) -> Value {
    match situation {
        "converse-end-turn" => json!({"messages": [user("What is the capital of France?")]}),
        "converse-max-tokens" => json!({
            "messages": [user("What is the capital of France? Answer in a long sentence.")],
            "inferenceConfig": {"maxTokens": 5}
        }),
        "converse-tool-use-claude" | "converse-tool-use-nova" => json!({
            "messages": [user("What is the weather in London?")],
            "toolConfig": weather_tool()
        }),
        "converse-end-turn-after-tool-result" => json!({
            "messages": [
                user("What is the weather in London?"),
                {"role": "assistant", "content": [
                    {"text": "Let me check the weather in London."},
                    {"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather", "input": {"city": "London"}}}
                ]},
                {"role": "user", "content": [
                    {"toolResult": {"toolUseId": "tooluse_1", "content": [{"json": {"city": "London", "temperature": 12, "temperature_unit": "C", "condition": "Cloudy", "humidity": 80, "wind_speed": 10, "wind_unit": "km/h"}}], "status": "success"}}
                ]}
            ],
            "toolConfig": weather_tool()
        }),
        other => panic!("no local reproduction of the Bedrock situation {other:?}"),
    }
}

/// The members a recorded answer has only with features this project does not use: prompt
/// caching (the cache counters), server-side tools (`serverToolUsage`), extended thinking
/// (`reasoningContent` blocks), and the newer `type` member of `toolUse`.
fn without_optional_members(recorded: &Value) -> Value {
    let mut core = recorded.clone();
    if let Some(usage) = core["usage"].as_object_mut() {
        usage.retain(|k, _| !k.starts_with("cache") && k != "serverToolUsage");
    }
    if let Some(content) = core["output"]["message"]["content"].as_array_mut() {
        content.retain(|b| b.get("reasoningContent").is_none());
        for block in content.iter_mut() {
            if let Some(t) = block.get_mut("toolUse").and_then(Value::as_object_mut) {
                t.remove("type");
            }
        }
    }
    core
}

/// (b) for Bedrock: the local Converse answer in each recorded situation has the recorded
/// members with the same types, the same kinds of blocks in the same order, and the recorded
/// stop reason; it has no member that no recording has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_bedrock_answers_with_the_recorded_members() {
    let cloud = cloud().await;
    let credentials = session_credentials(&cloud).await;
    let all = successes("bedrock");
    let known_usage: Vec<String> = all
        .iter()
        .flat_map(|(_, r)| r["body"]["usage"].as_object().unwrap().keys().cloned())
        .collect();
    for (name, r) in all {
        let (status, _, ours) = signed_bedrock_post(
            &cloud,
            credentials.clone(),
            &format!("/model/{}/converse", ids::BEDROCK_MODEL_ID),
            &request_for(r["situation"].as_str().unwrap()),
        )
        .await;
        assert_eq!(status, 200, "{name}: {ours}");
        let recorded = without_optional_members(&r["body"]);
        let differences = json_shape_differences(&recorded, &ours);
        assert!(
            differences.is_empty(),
            "{name}: {differences:?} in {ours}, recorded {recorded}"
        );
        assert_eq!(ours["stopReason"], recorded["stopReason"], "{name}: {ours}");
        let kinds = |v: &Value| -> Vec<String> {
            v["output"]["message"]["content"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| b.as_object().unwrap().keys().next().unwrap().clone())
                .collect()
        };
        assert_eq!(kinds(&ours), kinds(&recorded), "{name}: the blocks");
        for block in ours["output"]["message"]["content"].as_array().unwrap() {
            if let Some(t) = block.get("toolUse") {
                let recorded_tool = recorded["output"]["message"]["content"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find_map(|b| b.get("toolUse"))
                    .unwrap();
                // `input` is the tool's own arguments: only its being an object is shared.
                let mut recorded_tool = recorded_tool.clone();
                recorded_tool["input"] = json!({});
                let differences = json_shape_differences(&recorded_tool, t);
                assert!(differences.is_empty(), "{name}: {differences:?}");
            }
        }
        for key in ours["usage"].as_object().unwrap().keys() {
            assert!(
                known_usage.contains(key),
                "{name}: usage.{key} is in no recording"
            );
        }
        let top: Vec<&String> = ours.as_object().unwrap().keys().collect();
        for key in top {
            assert!(
                r["body"].get(key).is_some(),
                "{name}: {key} is in no recording"
            );
        }
    }
}
