//! The whole system through the agent's chat API: direct and Bedrock modes, autonomous and
//! on-behalf-of flows, each answering with the weather and tracing 0.A START … 5. COMPLETE.

use local_stack::{Stack, StackOptions, start};
use serde_json::{Value, json};
use system_tests::dev_user_token;

async fn stack(name: &str) -> Stack {
    let dir = std::env::temp_dir().join(format!("local-stack-{name}-{}", std::process::id()));
    start(StackOptions::ephemeral(dir))
        .await
        .expect("the stack starts")
}

async fn chat(stack: &Stack, body: Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{}/api/chat", stack.agent_url))
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

fn steps(reply: &Value) -> Vec<String> {
    reply["debug"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["step"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mode_and_flow_answers_with_the_weather_and_a_full_trace() {
    let stack = stack("e2e").await;
    let user = dev_user_token(&stack.cloud).await;
    for mode in ["direct", "bedrock"] {
        for flow in ["autonomous", "obo"] {
            let mut body =
                json!({"message": "Weather in Dallas?", "llm_mode": mode, "token_flow": flow});
            if flow == "obo" {
                body["user_token"] = json!(user.expose_secret());
            }
            let (status, reply) = chat(&stack, body).await;
            assert_eq!(status, 200, "{mode}/{flow}: {reply}");
            assert_eq!(
                (
                    reply["success"].as_bool(),
                    reply["agent_type"].as_str(),
                    reply["token_flow"].as_str()
                ),
                (Some(true), Some(mode), Some(flow))
            );
            let answer = reply["response"].as_str().unwrap();
            assert!(
                answer.contains("Dallas") && answer.contains("°F"),
                "{mode}/{flow}: {answer}"
            );
            let s = steps(&reply);
            let start = s.iter().position(|x| x == "0.A START").expect("0.A START");
            let complete = s
                .iter()
                .position(|x| x == "5. COMPLETE")
                .expect("5. COMPLETE");
            assert!(start < complete, "{s:?}");
            let token_step = if flow == "obo" {
                "OBO 2.D TOKEN RECEIVED"
            } else {
                "2.C TOKEN RECEIVED"
            };
            for required in [token_step, "3.C API RESPONSE", "4. TOOL RESULT"] {
                assert!(
                    s.iter().any(|x| x == required),
                    "{mode}/{flow} lacks {required}: {s:?}"
                );
            }
            if flow == "obo" {
                assert_eq!(s[0], "OBO 0.A USER TOKEN (Tc)");
            }
            assert_eq!(s.last().map(String::as_str), Some("DOCS"));
            for e in reply["debug"].as_array().unwrap() {
                assert!(
                    e["timestamp"].as_str().unwrap().ends_with('Z')
                        && e["duration_ms"].is_u64()
                        && e["duration_us"].as_u64().map(|us| us / 1000)
                            == e["duration_ms"].as_u64()
                        && e["outcome"].is_string(),
                    "{e}"
                );
            }
            let text = reply.to_string();
            assert!(
                !text.contains("eyJ"),
                "{mode}/{flow}: a token (or a piece of one) reached the response"
            );
            assert!(!text.contains(user.expose_secret()));
        }
    }
    // Bedrock was signed with the library's credentials, in process.
    assert!(stack.cloud.counter("bedrock:Converse") >= 4);
    assert_eq!(
        stack.cloud.counter("sts:AssumeRoleWithWebIdentity"),
        1,
        "one cached STS session served every Bedrock call"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_obo_trace_shows_the_user_and_the_agent_acting_for_them() {
    let stack = stack("obo-claims").await;
    let user = dev_user_token(&stack.cloud).await;
    let (_, reply) = chat(&stack, json!({"message": "Weather in Paris?", "token_flow": "obo", "user_token": format!("Bearer {}", user.expose_secret())})).await;
    let debug = reply["debug"].as_array().unwrap();
    let card = |step: &str| {
        debug
            .iter()
            .find(|e| e["step"] == step)
            .map(|e| e["data"]["_jwt_token"]["claims"].clone())
            .unwrap()
    };
    let tc = card("OBO 0.A USER TOKEN (Tc)");
    assert_eq!(tc["preferred_username"], local_cloud::ids::DEV_USER_UPN);
    let tu = card("OBO 2.D TOKEN RECEIVED");
    assert_eq!(tu["idtyp"], "user");
    assert_eq!(tu["appid"], local_cloud::ids::AGENT_CLIENT_ID);
    assert_eq!(tu["xms_par_app_azp"], local_cloud::ids::BLUEPRINT_APP_ID);
    assert_eq!(tu["aud"], local_cloud::ids::WEATHER_API_AUDIENCE);
}
