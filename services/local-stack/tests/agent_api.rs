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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_not_silently_mapped() {
    let stack = stack("bad").await;
    for (body, status, needle) in [
        (r#"{"message":""}"#, 400, "No message provided"),
        (r#"{}"#, 400, "No message provided"),
        (r#"{"message":"hi","llm_mode":"gpt"}"#, 400, "llm_mode"),
        (r#"{"message":"hi","mode":"gpt"}"#, 400, "llm_mode"),
        (
            r#"{"message":"hi","token_flow":"magic"}"#,
            400,
            "token_flow",
        ),
        (
            r#"{"message":"hi","token_flow":"obo"}"#,
            400,
            "OBO flow requires a user token",
        ),
        (
            r#"{"message":"hi","token_flow":"obo","user_token":"not.a.token"}"#,
            401,
            "user token was refused",
        ),
        ("not json", 400, "invalid request body"),
    ] {
        let (s, reply) = post(&stack, body).await;
        assert_eq!(s, status, "{body}: {reply}");
        assert_eq!(reply["success"], false, "{body}");
        assert!(
            reply["error"].as_str().unwrap().contains(needle),
            "{body}: {reply}"
        );
    }
    // `mode` is an alias of `llm_mode`.
    let (s, reply) = post(
        &stack,
        r#"{"message":"Weather in Tokyo?","mode":"bedrock"}"#,
    )
    .await;
    assert_eq!((s, reply["agent_type"].as_str()), (200, Some("bedrock")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_return_success_false_with_the_right_status() {
    let stack = stack("failures").await;
    let (s, reply) = post(&stack, r#"{"message":"Weather in Atlantis?"}"#).await;
    assert_eq!(
        (s, reply["success"].as_bool()),
        (404, Some(false)),
        "{reply}"
    );
    assert!(
        reply["debug"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["step"] == "3. WEATHER ERROR" && e["outcome"] == "error")
    );
    stack.cloud.inject(local_cloud::Fault {
        target: "bedrock:Converse".into(),
        status: 503,
        code: None,
        count: Some(1),
        retry_after: None,
    });
    // The SDK retries a 503 once or twice; make every attempt fail.
    stack.cloud.inject(local_cloud::Fault {
        target: "bedrock:Converse".into(),
        status: 503,
        code: None,
        count: Some(5),
        retry_after: None,
    });
    let (s, reply) = post(
        &stack,
        r#"{"message":"Weather in Dallas?","llm_mode":"bedrock"}"#,
    )
    .await;
    assert_eq!(
        (s, reply["success"].as_bool()),
        (502, Some(false)),
        "{reply}"
    );
    assert!(
        reply["debug"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["step"] == "ERROR")
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
    for key in ["aws_region", "bedrock_model", "sidecar_url", "agent_app_id"] {
        assert!(status[key].is_string(), "{key}");
    }
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
    for path in ["/health", "/healthz", "/readyz"] {
        assert_eq!(
            http.get(format!("{}{path}", stack.agent_url))
                .send()
                .await
                .unwrap()
                .status(),
            200,
            "{path}"
        );
    }
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
