//! # llm-agent
//!
//! The tutorial's agent (port 3000), with the sample's HTTP contract and none of its defects:
//! `GET /` (page), `POST /api/chat`, `GET /api/status`, `GET /api/config`, `GET /health`,
//! `/healthz`, `/readyz`. Bedrock is called through `aws-sdk-bedrockruntime` with entra-federation's
//! provider in process (no token file); agent tokens come from the Agent ID sidecar; every identity
//! step is traced with claim summaries only; all state is per request.

mod config;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod model;
mod request;
mod spend;
mod tool;
pub mod trace;

pub use config::{AgentConfig, ConfigError, Settings};
pub use tool::extract_city;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use entra_federation::error::DisplayChain;
use entra_federation::validate::{KindPolicy, Policy, TokenValidator, ValidatorConfig};
use entra_federation::{EntraCredentialsProvider, SecretString};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tool::{Flow, WeatherTool};
use trace::{Outcome, Trace, token_card};

struct App {
    budget: spend::ChatBudget,
    config: AgentConfig,
    provider: EntraCredentialsProvider,
    bedrock: aws_sdk_bedrockruntime::Client,
    /// Kept for `bedrock_client_per_request`.
    bedrock_config: aws_sdk_bedrockruntime::Config,
    tool: WeatherTool,
    users: TokenValidator,
    status: tokio::sync::Mutex<Option<(Instant, Value)>>,
}

/// Builds the agent's router. `provider` supplies the AWS credentials for Bedrock.
pub fn router(
    config: AgentConfig,
    provider: EntraCredentialsProvider,
) -> Result<Router, ConfigError> {
    let mut bedrock = aws_sdk_bedrockruntime::Config::builder()
        .behavior_version(aws_sdk_bedrockruntime::config::BehaviorVersion::latest())
        .region(aws_sdk_bedrockruntime::config::Region::new(
            config.aws_region.clone(),
        ))
        .credentials_provider(provider.clone());
    if let Some(endpoint) = &config.bedrock_endpoint {
        bedrock = bedrock.endpoint_url(endpoint);
    }
    let sidecar = entra_federation::sidecar::SidecarClient::new(config.sidecar_url.clone())
        .map_err(|e| ConfigError::Invalid {
            name: "SIDECAR_URL",
            value: config.sidecar_url.to_string(),
            reason: e.to_string(),
        })?;
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(15))
        .build()
        .map_err(|e| ConfigError::Invalid {
            name: "http client",
            value: String::new(),
            reason: e.to_string(),
        })?;
    let tool = WeatherTool {
        sidecar,
        api: config.sidecar_api.clone(),
        agent: config.agent_app_id.clone(),
        weather_api: config.weather_api_url.clone(),
        http,
    };
    // User tokens for OBO: for the Blueprint, with access_as_user, from the sign-in app, this tenant.
    let mut vc = ValidatorConfig::new(
        &config.tenant_id,
        vec![
            config.blueprint_app_id.clone(),
            format!("api://{}", config.blueprint_app_id),
        ],
        Policy::new(
            config.client_spa_app_id.iter().cloned(),
            KindPolicy::Deny,
            KindPolicy::Require("access_as_user".into()),
        ),
    );
    vc.authority = config.authority.clone();
    vc.root_ca = config.root_ca.clone();
    let users = TokenValidator::new(vc)?;
    let bedrock_config = bedrock.build();
    let app = Arc::new(App {
        budget: spend::ChatBudget::new(config.chat_rate_per_minute, config.chat_max_concurrent),
        bedrock: aws_sdk_bedrockruntime::Client::from_conf(bedrock_config.clone()),
        bedrock_config,
        config,
        provider,
        tool,
        users,
        status: tokio::sync::Mutex::new(None),
    });
    Ok(harden(
        Router::new()
            .route("/", get(page))
            .route(
                "/static/app.js",
                get(|| async {
                    (
                        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
                        include_str!("../static/app.js"),
                    )
                }),
            )
            .route(
                "/static/app.css",
                get(|| async {
                    (
                        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
                        include_str!("../static/app.css"),
                    )
                }),
            )
            .route(
                "/api/chat",
                post(chat).route_layer(middleware::from_fn_with_state(app.clone(), chat_budget)),
            )
            .route("/api/status", get(status))
            .route("/api/config", get(config_info))
            .route("/health", get(health))
            .route("/healthz", get(|| async { "ok" }))
            .route("/readyz", get(ready))
            .layer(middleware::from_fn(security_headers))
            .with_state(app),
    ))
}

/// Charges one chat to the client's budget before any work, or refuses it: 429 with
/// `Retry-After`. (The slot in flight is taken by the handler once the body has arrived, so a
/// client that never sends its body holds no slot.)
async fn chat_budget(State(app): State<Arc<App>>, mut req: Request, next: Next) -> Response {
    let client = spend::Client::of(client_address(&app.config, &req));
    match app.budget.charge(client) {
        Ok(()) => {
            req.extensions_mut().insert(client);
            next.run(req).await
        }
        Err(spend::Refusal::RateLimited(wait)) => {
            let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
            tracing::warn!(client = ?client, retry_after_s = secs, "chat refused: over the client's budget");
            let mut r = failure(
                429,
                &format!("Too many chats from this client; retry in {secs} s"),
                None,
                None,
                vec![],
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            r
        }
        Err(spend::Refusal::Busy) => busy(),
    }
}

/// The client's address: the peer, or, behind a platform ingress that appends it
/// (`CHAT_TRUST_X_FORWARDED_FOR`), the last address of `X-Forwarded-For`.
fn client_address(config: &AgentConfig, req: &Request) -> Option<std::net::IpAddr> {
    if config.chat_trust_x_forwarded_for
        && let Some(ip) = req
            .headers()
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .last()
            .and_then(|last| last.trim().parse().ok())
    {
        return Some(ip);
    }
    req.extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip())
}

/// Too many chats in flight: 503 with `Retry-After`.
fn busy() -> Response {
    tracing::warn!("chat refused: too many chats in flight");
    let mut r = failure(
        503,
        "The agent is busy with other chats; retry in a few seconds",
        None,
        None,
        vec![],
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
    r
}

/// The agent's limits: a chat with tool use waits for Bedrock and the weather API, so a request
/// may take up to two minutes; a request body is a message and perhaps a user token.
pub fn limits() -> server_kit::Limits {
    server_kit::Limits {
        request_timeout: Duration::from_secs(120),
        ..server_kit::Limits::default()
    }
}

/// `router` with the agent's [`limits`], and limit errors and panics answered in the chat API's
/// JSON shape (a panic is a logged 500, not a dropped connection).
pub fn harden(router: Router) -> Router {
    server_kit::harden(router, &limits(), limit_error)
}

/// Errors from the server's limits (413, a timeout's 503, a panic's 500) in the chat API's JSON
/// shape.
fn limit_error(status: StatusCode, message: &str) -> Response {
    failure(status.as_u16(), message, None, None, vec![])
}

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

async fn security_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert("content-security-policy", HeaderValue::from_static(CSP));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    resp
}

async fn page() -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        include_str!("../static/index.html"),
    )
        .into_response()
}

fn short(id: &str) -> String {
    if id.len() > 8 {
        format!("{}...", &id[..8])
    } else {
        id.to_string()
    }
}

async fn health(State(app): State<Arc<App>>) -> Json<Value> {
    Json(
        json!({"status": "healthy", "service": "LLM Weather Agent (AWS Bedrock)", "agent_app_id": short(&app.config.agent_app_id)}),
    )
}

/// Real health: AWS credentials obtainable, the sidecar's /healthz, the weather API's /health;
/// cached for 10 s (the page polls it).
async fn current_status(app: &App) -> Value {
    let mut cached = app.status.lock().await;
    if let Some((at, v)) = cached.as_ref()
        && at.elapsed() < Duration::from_secs(10)
    {
        return v.clone();
    }
    // The library's typed error: its hop and code are public (the SDK trait's error would say
    // only "an error occurred while loading credentials"); the full text, which names endpoints
    // and ids, goes to the log only.
    let credentials = app.provider.credentials().await;
    if let Err(e) = &credentials {
        tracing::warn!(error = %DisplayChain(&**e), "status: no AWS credentials");
    }
    let sidecar = app.tool.sidecar.health().await;
    let mut weather_url = app.config.weather_api_url.clone();
    weather_url.set_path("/health");
    let weather = app
        .tool
        .http
        .get(weather_url)
        .send()
        .await
        .map(|r| r.status().is_success())
        .unwrap_or(false);
    let v = json!({
        "bedrock_available": credentials.is_ok(),
        "credentials_error": credentials.as_ref().err().map(|e| e.summary()),
        "sidecar_healthy": sidecar.is_ok(),
        "weather_api_healthy": weather,
        "aws_region": app.config.aws_region,
        "bedrock_model": app.config.bedrock_model,
        "sidecar_url": app.config.sidecar_url.as_str().trim_end_matches('/'),
        "agent_app_id": short(&app.config.agent_app_id),
    });
    *cached = Some((Instant::now(), v.clone()));
    v
}

async fn status(State(app): State<Arc<App>>) -> Json<Value> {
    Json(current_status(&app).await)
}

async fn ready(State(app): State<Arc<App>>) -> Response {
    let s = current_status(&app).await;
    let ok = s["bedrock_available"] == true
        && s["sidecar_healthy"] == true
        && s["weather_api_healthy"] == true;
    (
        if ok {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        Json(s),
    )
        .into_response()
}

async fn config_info(State(app): State<Arc<App>>) -> Json<Value> {
    let c = &app.config;
    Json(json!({
        "tenant_id": c.tenant_id,
        "blueprint_app_id": c.blueprint_app_id,
        "client_spa_app_id": c.client_spa_app_id,
        "agent_app_id": c.agent_app_id,
        "obo_scopes": [format!("api://{}/access_as_user", c.blueprint_app_id)],
        "authority": format!("{}/{}", c.authority.as_str().trim_end_matches('/'), c.tenant_id),
        // Configured, never taken from X-Forwarded-* headers.
        "redirect_uri": c.public_url,
    }))
}

fn failure(
    status: u16,
    error: &str,
    token_flow: Option<&str>,
    agent_type: Option<&str>,
    debug: Vec<trace::Entry>,
) -> Response {
    let body = json!({"success": false, "error": error, "response": error, "debug": debug, "token_flow": token_flow, "agent_type": agent_type});
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        Json(body),
    )
        .into_response()
}

async fn chat(
    State(app): State<Arc<App>>,
    client: Option<axum::Extension<spend::Client>>,
    body: Result<Json<request::ChatRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(req) = match body {
        Ok(b) => b,
        Err(e) => {
            return failure(
                e.status().as_u16(),
                &format!("invalid request body: {}", e.body_text()),
                None,
                None,
                vec![],
            );
        }
    };
    // The whole request is here: now it may take a slot in flight.
    let Ok(_in_flight) = app.budget.slot() else {
        if let Some(axum::Extension(client)) = client {
            app.budget.refund(client);
        }
        return busy();
    };
    let checked = match req.check() {
        Ok(c) => c,
        Err(r) => {
            return failure(
                r.status,
                &r.error,
                r.token_flow,
                r.agent_type.as_deref(),
                vec![],
            );
        }
    };
    let (message, mode) = (checked.message, checked.mode);
    let mut trace = Trace::default();
    let flow = match checked.user_token {
        None => Flow::Autonomous,
        Some(raw) => {
            // Validated here, before it is sent anywhere.
            if let Err(e) = app.users.validate(raw).await {
                // 401 for a token that is not for this agent, 403 for one the policy refuses, 503
                // when validation itself is unavailable (the token may well be good).
                let error = if e.status() == 503 {
                    format!("the user token cannot be validated now: {e}")
                } else {
                    format!("the user token was refused: {e}")
                };
                return failure(e.status(), &error, Some("obo"), Some(mode), vec![]);
            }
            trace.step(
                "OBO 0.A USER TOKEN (Tc)",
                "Validated user access token from sign-in",
                token_card("tc", "Tc — User Token (from sign-in)", raw),
                Outcome::Ok,
            );
            Flow::OnBehalfOf(SecretString::new(raw.to_string()))
        }
    };

    let outcome = if mode == "bedrock" {
        trace.step(
            "0.A START",
            format!("User query: {message}"),
            Value::Null,
            Outcome::Info,
        );
        trace.step(
            "0.B BEDROCK",
            format!(
                "Sending query to AWS Bedrock (model: {})",
                app.config.bedrock_model
            ),
            Value::Null,
            Outcome::Info,
        );
        trace.step(
            "0.C AGENT READY",
            format!(
                "Bedrock Converse with the get_weather tool ({})",
                app.config.bedrock_model
            ),
            Value::Null,
            Outcome::Info,
        );
        // The tutorial's design, kept only to be measured: a new client (and with it a new HTTP
        // client, connection pool and TLS connection) per chat.
        let per_request;
        let bedrock = if app.config.bedrock_client_per_request {
            per_request = aws_sdk_bedrockruntime::Client::from_conf(app.bedrock_config.clone());
            &per_request
        } else {
            &app.bedrock
        };
        match model::converse(
            bedrock,
            &app.config.bedrock_model,
            message,
            &app.tool,
            &flow,
            &mut trace,
        )
        .await
        {
            Ok(text) => {
                trace.step(
                    "5. COMPLETE",
                    "AWS Bedrock agent finished processing",
                    Value::Null,
                    Outcome::Ok,
                );
                Ok(text)
            }
            Err(e) => Err(e),
        }
    } else {
        let pretty = if matches!(flow, Flow::Autonomous) {
            "Autonomous"
        } else {
            "OBO"
        };
        trace.step(
            "0.A START",
            format!("Processing query (Direct + {pretty}): {message}"),
            Value::Null,
            Outcome::Info,
        );
        let city = extract_city(message);
        trace.step(
            "1.A DIRECT CALL",
            format!(
                "Calling weather function directly for: {city} (flow: {})",
                flow.name()
            ),
            Value::Null,
            Outcome::Info,
        );
        match app.tool.run(&city, &flow, &mut trace).await {
            Ok(w) => {
                trace.step(
                    "5. COMPLETE",
                    format!("Query processed (Direct + {pretty})"),
                    Value::Null,
                    Outcome::Ok,
                );
                Ok(format!(
                    "Here's what I found:\n\n{}\n\nSecurely retrieved using Agent Identity ({pretty})",
                    w.text
                ))
            }
            Err(e) => Err((e.status, e.message)),
        }
    };
    trace.step("DOCS", "_doc_links", Value::Null, Outcome::Info);
    let debug = trace.into_entries();
    match outcome {
        Ok(text) => Json(json!({"response": text, "debug": debug, "success": true, "agent_type": mode, "token_flow": flow.name()})).into_response(),
        Err((status, error)) => failure(status, &error, Some(flow.name()), Some(mode), debug),
    }
}
