//! The agent's HTTP contract: validated requests, honest failures, real health, and a page under a
//! strict Content-Security-Policy that renders data as text.

use local_stack::{Stack, StackOptions, start};
use serde_json::{Value, json};

async fn stack(name: &str) -> Stack {
    let dir = std::env::temp_dir().join(format!("local-stack-api-{name}-{}", std::process::id()));
    start(StackOptions::ephemeral(dir))
        .await
        .expect("the stack starts")
}

async fn post(stack: &Stack, body: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{}/api/chat", stack.agent_url))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// The body of a request refused before any work: `error` (exactly, or as a prefix when it ends
/// with `…`), no trace.
fn assert_refused(
    reply: &Value,
    error: &str,
    token_flow: Option<&str>,
    agent_type: Option<&str>,
    context: &str,
) {
    let text = reply["error"].as_str().unwrap_or_default();
    match error.strip_suffix('…') {
        Some(prefix) => assert!(text.starts_with(prefix), "{context}: {reply}"),
        None => assert_eq!(text, error, "{context}"),
    }
    assert_eq!(
        reply,
        &json!({"success": false, "error": text, "response": text, "debug": [], "token_flow": token_flow, "agent_type": agent_type}),
        "{context}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_not_silently_mapped() {
    let stack = stack("bad").await;
    for (body, status, error, flow, agent_type) in [
        (r#"{"message":""}"#, 400, "No message provided", None, None),
        (r#"{}"#, 400, "No message provided", None, None),
        (
            r#"{"message":"hi","llm_mode":"gpt"}"#,
            400,
            "llm_mode must be 'direct' or 'bedrock', not 'gpt'",
            None,
            None,
        ),
        (
            r#"{"message":"hi","mode":"gpt"}"#,
            400,
            "llm_mode must be 'direct' or 'bedrock', not 'gpt'",
            None,
            None,
        ),
        (
            r#"{"message":"hi","token_flow":"magic"}"#,
            400,
            "token_flow must be 'autonomous' or 'obo', not 'magic'",
            None,
            Some("direct"),
        ),
        (
            r#"{"message":"hi","token_flow":"obo"}"#,
            400,
            "OBO flow requires a user token. Please sign in first.",
            Some("obo"),
            Some("direct"),
        ),
        (
            r#"{"message":"hi","token_flow":"obo","user_token":"not.a.token"}"#,
            401,
            "the user token was refused: malformed token: …",
            Some("obo"),
            Some("direct"),
        ),
        (
            "not json",
            400,
            "invalid request body: Failed to parse the request body as JSON…",
            None,
            None,
        ),
    ] {
        let (s, reply) = post(&stack, body).await;
        assert_eq!(s, status, "{body}: {reply}");
        assert_refused(&reply, error, flow, agent_type, body);
    }
    assert_eq!(
        stack
            .cloud
            .counter("sidecar:AuthorizationHeaderUnauthenticated")
            + stack.cloud.counter("sidecar:AuthorizationHeader"),
        0,
        "no refused request reached the sidecar"
    );
    // `mode` is an alias of `llm_mode`.
    let (s, reply) = post(
        &stack,
        r#"{"message":"Weather in Tokyo?","mode":"bedrock"}"#,
    )
    .await;
    assert_eq!(
        (s, reply["success"].as_bool(), reply["agent_type"].as_str()),
        (200, Some(true), Some("bedrock")),
        "{}",
        reply["error"]
    );
    assert!(stack.cloud.counter("bedrock:Converse") >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_return_success_false_with_the_right_status() {
    let stack = stack("failures").await;
    let (s, reply) = post(&stack, r#"{"message":"Weather in Atlantis?"}"#).await;
    assert_eq!(
        (
            s,
            &reply["success"],
            &reply["error"],
            &reply["token_flow"],
            &reply["agent_type"]
        ),
        (
            404,
            &json!(false),
            &json!("weather API: No city named 'Atlantis' is known to the geocoder"),
            &json!("autonomous"),
            &json!("direct")
        ),
        "{reply}"
    );
    let weather_error = reply["debug"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["step"] == "3. WEATHER ERROR")
        .expect("the trace shows the weather API's refusal");
    assert_eq!(
        (&weather_error["outcome"], &weather_error["message"]),
        (
            &json!("error"),
            &json!(
                "The weather API answered HTTP 404: No city named 'Atlantis' is known to the geocoder"
            )
        )
    );
    // Bedrock fails on every attempt (the SDK retries a 503).
    stack.cloud.inject(local_cloud::Fault {
        target: "bedrock:Converse".into(),
        status: 503,
        code: None,
        count: None,
        retry_after: None,
        ..Default::default()
    });
    let (s, reply) = post(
        &stack,
        r#"{"message":"Weather in Dallas?","llm_mode":"bedrock"}"#,
    )
    .await;
    stack.cloud.clear_faults();
    assert_eq!(
        (s, &reply["success"], &reply["agent_type"]),
        (502, &json!(false), &json!("bedrock")),
        "{reply}"
    );
    let error = reply["error"].as_str().unwrap();
    assert!(
        error.starts_with("Bedrock: ") && error.contains("ServiceUnavailableException"),
        "the error names the hop and the service's code: {error}"
    );
    // AWS's message (for AccessDenied it names the account and the role) is for the log only.
    assert!(!reply.to_string().contains("Injected failure."), "{reply}");
    let failed = reply["debug"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["step"] == "ERROR")
        .expect("an ERROR step");
    assert_eq!(failed["outcome"], "error");
    assert!(
        failed["message"]
            .as_str()
            .unwrap()
            .starts_with("AWS Bedrock agent failed: ServiceUnavailableException"),
        "{failed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_config_health_and_the_page() {
    let stack = stack("status").await;
    let http = reqwest::Client::new();
    let status: Value = http
        .get(format!("{}/api/status", stack.agent_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for key in [
        "bedrock_available",
        "sidecar_healthy",
        "weather_api_healthy",
    ] {
        assert_eq!(status[key], true, "{status}");
    }
    assert_eq!(
        (
            &status["credentials_error"],
            &status["aws_region"],
            &status["bedrock_model"],
            &status["sidecar_url"],
            &status["agent_app_id"]
        ),
        (
            &Value::Null,
            &json!("us-east-2"),
            &json!(local_cloud::ids::BEDROCK_MODEL_ID),
            &json!(stack.sidecar_url),
            &json!("82323b11...")
        )
    );
    let config: Value = http
        .get(format!("{}/api/config", stack.agent_url))
        .header("X-Forwarded-Host", "evil.example")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        config["obo_scopes"],
        json!([format!(
            "api://{}/access_as_user",
            local_cloud::ids::BLUEPRINT_APP_ID
        )])
    );
    assert!(
        !config["redirect_uri"].as_str().unwrap().contains("evil"),
        "not taken from forwarded headers"
    );
    let health: Value = http
        .get(format!("{}/health", stack.agent_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        health,
        json!({"status": "healthy", "service": "LLM Weather Agent (AWS Bedrock)", "agent_app_id": "82323b11..."})
    );
    let live = http
        .get(format!("{}/healthz", stack.agent_url))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
    assert_eq!(live.text().await.unwrap(), "ok");
    let ready = http
        .get(format!("{}/readyz", stack.agent_url))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready, status, "/readyz reports the (cached) status");
    let page = http
        .get(format!("{}/", stack.agent_url))
        .send()
        .await
        .unwrap();
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("script-src 'self'")
            && csp.contains("default-src 'none'")
            && !csp.contains("unsafe"),
        "{csp}"
    );
    let html = page.text().await.unwrap();
    assert!(html.contains("<script src=\"/static/app.js\""));
    assert!(
        !html.contains("<script>") && !html.contains("onclick="),
        "no inline script"
    );
    let js = http
        .get(format!("{}/static/app.js", stack.agent_url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !js.contains("innerHTML")
            && !js.contains("outerHTML")
            && !js.contains("insertAdjacentHTML"),
        "data is rendered as text"
    );
}
