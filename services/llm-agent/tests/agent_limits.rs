//! The agent's limits and refusals, each with its status and body: the 2,000-character message
//! limit, `/readyz` while a dependency is down, user tokens for on-behalf-of that are validly
//! signed but for the wrong audience, scope, client or tenant, and a model that never stops
//! asking for tools.
//!
//! The agent runs in process with the weather API and the sidecar emulation, on a local cloud.

use axum::body::Bytes;
use base64::Engine;
use llm_agent::AgentConfig;
use local_cloud::{Fault, LocalCloud, ids};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use system_tests::*;

/// Serves `app` on 127.0.0.1 as the binaries do (peer addresses known); returns its base URL.
async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let limits = server_kit::Limits::default();
        server_kit::serve(listener, app, &limits, std::future::pending()).await
    });
    url
}

/// The agent (with the weather API and the sidecar) on `cloud`; `overrides` replace settings.
async fn agent(cloud: &LocalCloud, overrides: &[(&str, &str)]) -> String {
    let mut env = env_of(cloud);
    let weather_env = env.clone();
    let weather = serve(
        weather_api::router(
            weather_api::WeatherConfig::from_env_fn(move |k| weather_env.get(k).cloned())
                .expect("weather-api config"),
        )
        .expect("weather-api router"),
    )
    .await;
    let sidecar = start_sidecar(cloud, true, &weather).await;
    env.insert("SIDECAR_URL".into(), sidecar);
    env.insert("WEATHER_API_URL".into(), weather);
    for (k, v) in overrides {
        env.insert(k.to_string(), v.to_string());
    }
    let provider = builder_from_env(&env).build().expect("provider");
    let config = AgentConfig::from_env_fn(move |k| env.get(k).cloned()).expect("agent config");
    serve(llm_agent::router(config, provider).expect("agent router")).await
}

async fn chat(agent: &str, body: Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{agent}/api/chat"))
        .json(&body)
        .send()
        .await
        .expect("the agent answers");
    (r.status().as_u16(), r.json().await.expect("a JSON reply"))
}

/// The body of a request refused before any work: no trace.
fn refusal(error: &str, token_flow: Option<&str>, agent_type: Option<&str>) -> Value {
    json!({"success": false, "error": error, "response": error, "debug": [], "token_flow": token_flow, "agent_type": agent_type})
}

fn steps(reply: &Value) -> Vec<String> {
    reply["debug"]
        .as_array()
        .expect("a trace")
        .iter()
        .map(|e| e["step"].as_str().expect("a step label").to_string())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The message limit

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_up_to_2000_characters_are_answered_and_longer_ones_refused() {
    let cloud = cloud().await;
    let agent = agent(&cloud, &[]).await;
    let tail = " weather in Dallas";
    let of_length = |filler: &str, n: usize| {
        let m = format!("{}{tail}", filler.repeat(n - tail.chars().count()));
        assert_eq!(m.chars().count(), n);
        m
    };
    // Exactly 2,000 characters: in ASCII, in two-byte characters (4,000+ bytes: characters are
    // counted, not bytes), and with surrounding blanks, which are trimmed before counting.
    for message in [
        of_length("a", 2000),
        of_length("é", 2000),
        format!("   {}\n", of_length("a", 2000)),
    ] {
        let (status, reply) = chat(&agent, json!({"message": message})).await;
        assert_eq!(
            status,
            200,
            "{} characters: {}",
            message.chars().count(),
            reply["error"]
        );
        assert_eq!(
            (
                reply["success"].as_bool(),
                reply["agent_type"].as_str(),
                reply["token_flow"].as_str()
            ),
            (Some(true), Some("direct"), Some("autonomous"))
        );
        assert!(
            reply["response"]
                .as_str()
                .unwrap()
                .contains("Weather for Dallas:"),
            "{}",
            reply["response"]
        );
    }
    let answered = cloud.counter("sidecar:AuthorizationHeaderUnauthenticated");
    assert_eq!(answered, 3);

    for message in [of_length("a", 2001), of_length("é", 2001)] {
        for mode in ["direct", "bedrock"] {
            let (status, reply) = chat(&agent, json!({"message": message, "llm_mode": mode})).await;
            assert_eq!(
                (status, reply),
                (
                    400,
                    refusal("The message is longer than 2000 characters", None, None)
                ),
                "{mode}"
            );
        }
    }
    assert_eq!(
        (
            cloud.counter("sidecar:AuthorizationHeaderUnauthenticated"),
            cloud.counter("bedrock:Converse")
        ),
        (answered, 0),
        "a refused message reaches neither the sidecar nor the model"
    );
}

// ---------------------------------------------------------------------------------------------
// /readyz

async fn get(url: &str) -> (u16, Value) {
    let r = reqwest::get(url).await.expect("the agent answers");
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_naming_the_dependency_that_is_down() {
    let (_dead, dead) = dead_endpoint();
    let readiness = |body: &Value| {
        (
            body["bedrock_available"].clone(),
            body["sidecar_healthy"].clone(),
            body["weather_api_healthy"].clone(),
        )
    };

    // Everything up: ready.
    let cloud = cloud().await;
    let up = agent(&cloud, &[]).await;
    let (status, body) = get(&format!("{up}/readyz")).await;
    assert_eq!(
        (status, readiness(&body), body["credentials_error"].clone()),
        (200, (json!(true), json!(true), json!(true)), Value::Null)
    );

    // The weather API is down.
    let no_weather = agent(&cloud, &[("WEATHER_API_URL", &dead)]).await;
    let (status, body) = get(&format!("{no_weather}/readyz")).await;
    assert_eq!(
        (status, readiness(&body)),
        (503, (json!(true), json!(true), json!(false))),
        "{body}"
    );
    // Liveness is not readiness.
    assert_eq!(
        get(&format!("{no_weather}/healthz")).await,
        (200, json!("ok"))
    );
    assert_eq!(get(&format!("{no_weather}/health")).await.0, 200);

    // The sidecar is down.
    let no_sidecar = agent(&cloud, &[("SIDECAR_URL", &dead)]).await;
    let (status, body) = get(&format!("{no_sidecar}/readyz")).await;
    assert_eq!(
        (status, readiness(&body)),
        (503, (json!(true), json!(false), json!(true))),
        "{body}"
    );

    // No AWS credentials: STS refuses the role.
    let refusing = system_tests::cloud().await;
    refusing.inject(Fault {
        target: "sts".into(),
        status: 403,
        code: Some("AccessDenied".into()),
        count: None,
        retry_after: None,
        ..Default::default()
    });
    let no_credentials = agent(&refusing, &[]).await;
    let (status, body) = get(&format!("{no_credentials}/readyz")).await;
    assert_eq!(
        (status, readiness(&body)),
        (503, (json!(false), json!(true), json!(true))),
        "{body}"
    );
    // The hop and the code, nothing an unauthenticated caller should not see.
    assert_eq!(
        body["credentials_error"],
        json!("sts: HTTP 403 AccessDenied"),
        "{body}"
    );
}

// ---------------------------------------------------------------------------------------------
// On-behalf-of: validly signed user tokens the agent must refuse

/// A user token from the local cloud's sign-in (password grant), for `scope`, by `client`.
async fn sign_in(cloud: &LocalCloud, client: &str, scope: &str) -> String {
    cloud
        .dev_user_token_for(client, &format!("{scope} openid profile"))
        .await
        .unwrap_or_else(|e| panic!("sign-in refused: {e}"))
}

fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

/// `claims` signed with the tenant's current signing key (the key Entra signs every tenant's
/// tokens with): a token whose signature verifies.
fn signed(cloud: &LocalCloud, claims: &Value) -> String {
    cloud
        .state()
        .tenant_keys
        .read()
        .unwrap()
        .sign(claims, false)
}

const OTHER_CLIENT: &str = "9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b";
const OTHER_TENANT: &str = "1f2e3d4c-5b6a-4978-8a6b-5c4d3e2f1a0b";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn obo_refuses_validly_signed_user_tokens_for_another_audience_scope_client_or_tenant() {
    let cloud = cloud().await;
    // What a real tenant can also hold: the sign-in app consented to the weather API's scope and
    // to a second Blueprint scope; a second client app consented to access_as_user.
    cloud.edit_registry(|r| {
        let weather = r.app_mut(ids::WEATHER_API_APP_ID).unwrap();
        weather
            .delegated_grants
            .push(local_cloud::registry::DelegatedGrant {
                client_app_id: ids::CLIENT_SPA_APP_ID.into(),
                scope: ids::WEATHER_PERMISSION.into(),
            });
        let blueprint = r.app_mut(ids::BLUEPRINT_APP_ID).unwrap();
        blueprint.exposed_scopes.push("Profile.Read".into());
        for (client, scope) in [
            (ids::CLIENT_SPA_APP_ID, "Profile.Read"),
            (OTHER_CLIENT, "access_as_user"),
        ] {
            blueprint
                .delegated_grants
                .push(local_cloud::registry::DelegatedGrant {
                    client_app_id: client.into(),
                    scope: scope.into(),
                });
        }
        r.apps.push(local_cloud::registry::App {
            display_name: "Another client".into(),
            app_id: OTHER_CLIENT.into(),
            service_principal_object_id: Some("2d3e4f5a-6b7c-4d8e-9f0a-1b2c3d4e5f6a".into()),
            requested_access_token_version: Some(2),
            ..Default::default()
        });
    });
    let agent = agent(&cloud, &[]).await;
    let blueprint_scope = format!("api://{}/access_as_user", ids::BLUEPRINT_APP_ID);
    let good = sign_in(&cloud, ids::CLIENT_SPA_APP_ID, &blueprint_scope).await;
    let good_claims = claims_of(&good);
    assert_eq!(
        (
            &good_claims["aud"],
            &good_claims["scp"],
            &good_claims["azp"]
        ),
        (
            &json!(ids::BLUEPRINT_APP_ID),
            &json!("access_as_user"),
            &json!(ids::CLIENT_SPA_APP_ID)
        ),
        "the control token"
    );

    let wrong_audience = sign_in(
        &cloud,
        ids::CLIENT_SPA_APP_ID,
        &format!("{}/{}", ids::WEATHER_API_AUDIENCE, ids::WEATHER_PERMISSION),
    )
    .await;
    let wrong_scope = sign_in(
        &cloud,
        ids::CLIENT_SPA_APP_ID,
        &format!("api://{}/Profile.Read", ids::BLUEPRINT_APP_ID),
    )
    .await;
    let wrong_client = sign_in(&cloud, OTHER_CLIENT, &blueprint_scope).await;
    // Another tenant's token, as Entra issues it (its own issuer and tid, the same signing keys).
    let mut other_tenant = good_claims.clone();
    other_tenant["tid"] = json!(OTHER_TENANT);
    other_tenant["iss"] = json!(format!(
        "https://login.microsoftonline.com/{OTHER_TENANT}/v2.0"
    ));
    let other_tenant = signed(&cloud, &other_tenant);
    // Our issuer but another tenant's tid: the tenant check on its own.
    let mut foreign_tid = good_claims.clone();
    foreign_tid["tid"] = json!(OTHER_TENANT);
    let foreign_tid = signed(&cloud, &foreign_tid);

    for (what, token, status, reason) in [
        (
            "audience",
            &wrong_audience,
            401,
            format!("audience {} is not accepted", ids::WEATHER_API_AUDIENCE),
        ),
        (
            "scope",
            &wrong_scope,
            403,
            "missing permission access_as_user".to_string(),
        ),
        (
            "client",
            &wrong_client,
            403,
            format!("app {OTHER_CLIENT} is not an allowed agent identity"),
        ),
        (
            "tenant (issuer)",
            &other_tenant,
            401,
            format!("issuer https://login.microsoftonline.com/{OTHER_TENANT}/v2.0 is not accepted"),
        ),
        (
            "tenant (tid)",
            &foreign_tid,
            401,
            format!("tenant {OTHER_TENANT} is not accepted"),
        ),
    ] {
        for mode in ["direct", "bedrock"] {
            let (s, reply) = chat(
                &agent,
                json!({"message": "Weather in Dallas?", "llm_mode": mode, "token_flow": "obo", "user_token": token}),
            )
            .await;
            assert_eq!(
                (s, &reply),
                (
                    status,
                    &refusal(
                        &format!("the user token was refused: {reason}"),
                        Some("obo"),
                        Some(mode)
                    )
                ),
                "wrong {what} ({mode})"
            );
        }
    }
    assert_eq!(
        (
            cloud.counter("sidecar:AuthorizationHeader"),
            cloud.counter("bedrock:Converse")
        ),
        (0, 0),
        "no refused user token went anywhere"
    );

    // The control: the same request with the right token is served on behalf of the user.
    let (s, reply) = chat(
        &agent,
        json!({"message": "Weather in Dallas?", "token_flow": "obo", "user_token": good}),
    )
    .await;
    assert_eq!(s, 200, "{}", reply["error"]);
    assert_eq!(steps(&reply)[0], "OBO 0.A USER TOKEN (Tc)");
    assert_eq!(cloud.counter("sidecar:AuthorizationHeader"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn obo_answers_503_not_401_while_user_tokens_cannot_be_validated() {
    let cloud = cloud().await;
    let agent = agent(&cloud, &[]).await;
    let user = dev_user_token(&cloud).await;
    let body = json!({"message": "Weather in Dallas?", "token_flow": "obo", "user_token": user.expose_secret()});
    cloud.inject(Fault {
        target: "entra_jwks".into(),
        status: 503,
        code: None,
        count: None,
        retry_after: None,
        ..Default::default()
    });
    let (s, reply) = chat(&agent, body.clone()).await;
    assert_eq!(
        (s, reply),
        (
            503,
            refusal(
                "the user token cannot be validated now: the tenant's signing keys are unavailable",
                Some("obo"),
                Some("direct")
            )
        ),
        "the user's token is not called invalid when the keys cannot be fetched"
    );
    assert!(cloud.counter("entra_jwks") > 0, "a key fetch was attempted");
    cloud.clear_faults();
    // The failed fetch is backed off from (about a second): ask until it is over.
    let (s, reply) = within("recovery after the key backoff", async {
        loop {
            let (s, reply) = chat(&agent, body.clone()).await;
            if s != 503 {
                return (s, reply);
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    })
    .await;
    assert_eq!(s, 200, "recovered: {}", reply["error"]);
}

// ---------------------------------------------------------------------------------------------
// The tool-round limit

/// A Bedrock Converse endpoint whose model asks for `get_weather` on every turn; records how many
/// messages each request carried.
async fn insistent_model() -> (String, Arc<Mutex<Vec<usize>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let app = axum::Router::new().fallback(move |body: Bytes| {
        let record = record.clone();
        async move {
            let req: Value = serde_json::from_slice(&body).unwrap_or_default();
            let n = {
                let mut seen = record.lock().unwrap();
                seen.push(req["messages"].as_array().map_or(0, Vec::len));
                seen.len()
            };
            axum::Json(json!({
                "output": {"message": {"role": "assistant", "content": [
                    {"text": "Let me check again."},
                    {"toolUse": {"toolUseId": format!("tooluse_{n}"), "name": "get_weather", "input": {"city": "Dallas"}}}
                ]}},
                "stopReason": "tool_use",
                "usage": {"inputTokens": 10, "outputTokens": 5, "totalTokens": 15},
                "metrics": {"latencyMs": 1}
            }))
        }
    });
    (serve(app).await, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_that_keeps_asking_for_tools_is_stopped_after_three_rounds() {
    let cloud = cloud().await;
    let (model, seen) = insistent_model().await;
    let agent = agent(&cloud, &[("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", &model)]).await;
    let (status, reply) = chat(
        &agent,
        json!({"message": "Weather in Dallas?", "llm_mode": "bedrock"}),
    )
    .await;
    assert_eq!(status, 502, "{reply}");
    let error = "the model did not answer within the tool-call limit";
    assert_eq!(
        (
            &reply["success"],
            &reply["error"],
            &reply["response"],
            &reply["token_flow"],
            &reply["agent_type"]
        ),
        (
            &json!(false),
            &json!(error),
            &json!(error),
            &json!("autonomous"),
            &json!("bedrock")
        )
    );
    // Three rounds of tools, each result sent back, then a fourth turn that still asks: stopped.
    assert_eq!(
        *seen.lock().unwrap(),
        [1, 3, 5, 7],
        "messages per model call"
    );
    let s = steps(&reply);
    let count = |label: &str| s.iter().filter(|x| *x == label).count();
    assert_eq!(
        (
            count("1.A MODEL TOOL REQUEST"),
            count("1.B TOOL CALL"),
            count("3.C API RESPONSE")
        ),
        (3, 3, 3),
        "{s:?}"
    );
    assert_eq!(count("5. COMPLETE"), 0, "{s:?}");
    let debug = reply["debug"].as_array().unwrap();
    let last_two: Vec<_> = debug[debug.len() - 2..]
        .iter()
        .map(|e| {
            (
                e["step"].clone(),
                e["message"].clone(),
                e["outcome"].clone(),
            )
        })
        .collect();
    assert_eq!(
        last_two,
        [
            (
                json!("ERROR"),
                json!("The model kept calling tools after 3 rounds"),
                json!("error")
            ),
            (json!("DOCS"), json!("_doc_links"), json!("info"))
        ]
    );
    assert_eq!(
        cloud.counter("bedrock:Converse"),
        0,
        "the insistent model was asked, not the local cloud's"
    );
}

/// A handler that panics answers 500 with the JSON failure body; the connection is not dropped.
#[tokio::test]
async fn a_panicking_handler_answers_500_json() {
    let app = llm_agent::harden(panicking_router());
    let (status, body) = get_json_in_process(app, "/boom").await;
    assert_eq!(status, 500);
    assert_eq!(body["success"], json!(false));
    assert_eq!(
        body["error"],
        json!("internal error: the request could not be completed")
    );
}

// ---------------------------------------------------------------------------------------------
// Issue 12 point 24: what one client, and all clients together, may spend

/// Each client has a budget of chats per minute; beyond it, 429 with `Retry-After`, and no work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_over_its_chat_budget_gets_429_with_retry_after() {
    let cloud = cloud().await;
    let agent = agent(&cloud, &[("CHAT_RATE_PER_MINUTE", "2")]).await;
    let body = json!({"message": "Weather in Dallas?", "llm_mode": "bedrock"});
    for _ in 0..2 {
        assert_eq!(chat(&agent, body.clone()).await.0, 200);
    }
    let converse = cloud.counter("bedrock:Converse");
    let r = reqwest::Client::new()
        .post(format!("{agent}/api/chat"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let retry_after: u64 = r
        .headers()
        .get("retry-after")
        .expect("Retry-After")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&retry_after), "{retry_after}");
    let reply: Value = r.json().await.unwrap();
    assert_eq!(reply["success"], json!(false));
    assert!(
        reply["error"].as_str().unwrap().contains("retry"),
        "{reply}"
    );
    assert_eq!(
        cloud.counter("bedrock:Converse"),
        converse,
        "no work was done"
    );
    // Other routes are not limited.
    assert_eq!(get(&format!("{agent}/healthz")).await.0, 200);
}

/// Beyond the cap on chats in flight, a chat is refused at once (503, `Retry-After`) rather
/// than queued behind slow ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chats_beyond_the_concurrency_cap_are_refused_at_once() {
    let cloud = cloud().await;
    let agent = agent(&cloud, &[("CHAT_MAX_CONCURRENT", "1")]).await;
    let hold = cloud.hold("bedrock:Converse");
    let first = tokio::spawn({
        let agent = agent.clone();
        async move {
            chat(
                &agent,
                json!({"message": "Weather in Dallas?", "llm_mode": "bedrock"}),
            )
            .await
        }
    });
    within("the first chat at Bedrock", hold.until_arrived(1)).await;
    let r = within(
        "an answer to the second chat",
        reqwest::Client::new()
            .post(format!("{agent}/api/chat"))
            .json(&json!({"message": "Weather in Paris?", "llm_mode": "bedrock"}))
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    hold.release();
    assert_eq!(first.await.unwrap().0, 200);
}

/// A chat slot is taken only once the request has arrived whole: a client that announces a body
/// and never sends it holds a connection (until the server's timeouts), never a chat slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_whose_body_never_arrives_holds_no_chat_slot() {
    use tokio::io::AsyncWriteExt;
    let cloud = cloud().await;
    let agent = agent(&cloud, &[("CHAT_MAX_CONCURRENT", "1")]).await;
    let mut stalled = tokio::net::TcpStream::connect(agent.trim_start_matches("http://"))
        .await
        .unwrap();
    stalled
        .write_all(b"POST /api/chat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
        .await
        .unwrap();
    // The stalled request has reached the handler's body read (the server answers other
    // requests meanwhile): a normal chat still gets the one slot.
    assert_eq!(get(&format!("{agent}/healthz")).await.0, 200);
    let (s, reply) = chat(&agent, json!({"message": "Weather in Dallas?"})).await;
    assert_eq!(s, 200, "{reply}");
    drop(stalled);
}

/// Behind an ingress that appends the client to `X-Forwarded-For`, budgets are per client when
/// told to trust it; otherwise the header (the client's to forge) is ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budgets_follow_x_forwarded_for_only_when_trusted() {
    let cloud = cloud().await;
    let send = |agent: String, xff: &'static str| async move {
        reqwest::Client::new()
            .post(format!("{agent}/api/chat"))
            .header("x-forwarded-for", xff)
            .json(&json!({"message": "Weather in Dallas?"}))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    let trusting = agent(
        &cloud,
        &[
            ("CHAT_RATE_PER_MINUTE", "1"),
            ("CHAT_TRUST_X_FORWARDED_FOR", "true"),
        ],
    )
    .await;
    assert_eq!(
        send(trusting.clone(), "203.0.113.9, 198.51.100.1").await,
        200
    );
    assert_eq!(
        send(trusting.clone(), "203.0.113.9, 198.51.100.2").await,
        200,
        "another client (the last address counts)"
    );
    assert_eq!(
        send(trusting.clone(), "198.51.100.1").await,
        429,
        "the first client again"
    );
    let plain = agent(&cloud, &[("CHAT_RATE_PER_MINUTE", "1")]).await;
    assert_eq!(send(plain.clone(), "198.51.100.1").await, 200);
    assert_eq!(
        send(plain.clone(), "198.51.100.2").await,
        429,
        "a forged header earns nothing"
    );
}

// ---------------------------------------------------------------------------------------------
// The Bedrock client: one for every chat, or (the tutorial's design, kept to be measured) a new one
// per chat

/// A TCP relay to `upstream` that counts the connections made through it.
async fn counting_relay(upstream: String) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = connections.clone();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let upstream = upstream.clone();
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    (url, connections)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bedrock_client_serves_every_chat_unless_a_client_per_request_is_asked_for() {
    let cloud = cloud().await;
    let cloud_addr = cloud.http_url().trim_start_matches("http://").to_string();
    for (setting, new_connections_per_chat) in [("false", 0), ("true", 1)] {
        let (bedrock, connections) = counting_relay(cloud_addr.clone()).await;
        let agent = agent(
            &cloud,
            &[
                ("BEDROCK_CLIENT_PER_REQUEST", setting),
                ("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", &bedrock),
            ],
        )
        .await;
        let body = json!({"message": "Weather in Dallas?", "llm_mode": "bedrock"});
        // The first chat opens what the agent keeps (credentials, connections).
        let (status, reply) = chat(&agent, body.clone()).await;
        assert_eq!(status, 200, "{reply}");
        let before = connections.load(std::sync::atomic::Ordering::SeqCst);
        for _ in 0..3 {
            let (status, reply) = chat(&agent, body.clone()).await;
            assert_eq!(status, 200, "{reply}");
        }
        assert_eq!(
            connections.load(std::sync::atomic::Ordering::SeqCst) - before,
            3 * new_connections_per_chat,
            "new connections to Bedrock with BEDROCK_CLIENT_PER_REQUEST={setting}"
        );
    }
}

#[test]
fn bedrock_client_per_request_must_be_true_or_false() {
    let cloud_env = [
        ("AGENT_APP_ID", "a"),
        ("BLUEPRINT_APP_ID", "b"),
        ("TENANT_ID", "t"),
        ("BEDROCK_CLIENT_PER_REQUEST", "sometimes"),
    ];
    let e = AgentConfig::from_env_fn(|k| {
        cloud_env
            .iter()
            .find(|(name, _)| *name == k)
            .map(|(_, v)| v.to_string())
    })
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "BEDROCK_CLIENT_PER_REQUEST='sometimes' is invalid: true or false"
    );
}

/// `llm-agent --help` names every variable the agent reads (clap's `env`).
#[test]
fn help_names_every_variable() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_llm-agent"))
        .arg("--help")
        .env_clear()
        .output()
        .expect("llm-agent runs");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for name in [
        "SIDECAR_URL",
        "WEATHER_API_URL",
        "SIDECAR_WEATHER_API_NAME",
        "AGENT_APP_ID",
        "BLUEPRINT_APP_ID",
        "TENANT_ID",
        "CLIENT_SPA_APP_ID",
        "AZURE_AUTHORITY_HOST",
        "ENTRA_FEDERATION_CA_FILE",
        "AWS_REGION",
        "BEDROCK_MODEL_ID",
        "AWS_ENDPOINT_URL_BEDROCK_RUNTIME",
        "PUBLIC_URL",
        "PORT",
        "CHAT_RATE_PER_MINUTE",
        "CHAT_MAX_CONCURRENT",
        "CHAT_TRUST_X_FORWARDED_FOR",
        "BEDROCK_CLIENT_PER_REQUEST",
    ] {
        assert!(
            help.contains(&format!("[env: {name}]")),
            "{name} missing from:\n{help}"
        );
    }
}
