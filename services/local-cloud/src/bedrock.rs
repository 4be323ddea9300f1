//! AWS Bedrock runtime (restJson1): `POST /model/{modelId}/converse` and `/invoke` (Anthropic
//! Messages body). Requests are SigV4-verified (signing name `bedrock`, path double-encoded)
//! against credentials the local STS issued; the role must allow `bedrock:InvokeModel` on the
//! model (and on the inference profile for `us.`-style ids), as IAM evaluates it. The model is
//! deterministic: asked about the weather somewhere it calls `get_weather`, and it answers from
//! the tool's result.

use crate::policy::{Decision, Request, decide};
use crate::sigv4::{self, AuthError};
use crate::state::CloudState;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;

/// An AWS JSON-protocol error, as Bedrock answers it: the status, the `x-amzn-errortype`
/// (`AccessDeniedException`, `ValidationException`, …) and `{"message"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BedrockError {
    /// HTTP status.
    pub status: u16,
    /// The error type.
    pub kind: String,
    /// The message.
    pub message: String,
}

impl IntoResponse for BedrockError {
    fn into_response(self) -> Response {
        let mut r = (
            StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST),
            axum::Json(json!({"message": self.message})),
        )
            .into_response();
        r.headers_mut().insert(
            "x-amzn-errortype",
            HeaderValue::from_str(&self.kind).unwrap_or(HeaderValue::from_static("UnknownError")),
        );
        r.headers_mut().insert(
            "x-amzn-requestid",
            HeaderValue::from_str(&crate::state::guid()).expect("guid"),
        );
        r
    }
}

fn error(status: u16, kind: &str, message: &str) -> BedrockError {
    BedrockError {
        status,
        kind: kind.into(),
        message: message.into(),
    }
}

const PROFILE_PREFIXES: &[&str] = &["us.", "eu.", "apac.", "global."];

/// The regions a geography's cross-region inference profile may route to. They vary by model;
/// these are Claude 3 Haiku's (the default model), and the emulation applies them to every model
/// of the geography (docs/local-cloud.md).
fn destination_regions(prefix: &str, caller_region: &str) -> Vec<String> {
    let regions: &[&str] = match prefix {
        "us." => &["us-east-1", "us-east-2", "us-west-2"],
        "eu." => &["eu-central-1", "eu-west-1", "eu-west-3"],
        "apac." => &[
            "ap-northeast-1",
            "ap-northeast-2",
            "ap-south-1",
            "ap-southeast-1",
            "ap-southeast-2",
        ],
        // Global profiles route anywhere: their model ARN has no region.
        _ => &[""],
    };
    let mut out: Vec<String> = regions.iter().map(|r| r.to_string()).collect();
    if !regions.contains(&"") && !out.iter().any(|r| r == caller_region) {
        out.push(caller_region.to_string());
        out.sort();
    }
    out
}

/// The ARNs `bedrock:InvokeModel` is evaluated on for a model id: for an inference profile, the
/// profile in the caller's region and the foundation model in every region it may route to
/// (AWS's documented requirement for cross-region inference).
fn resources(model: &str, region: &str, account: &str) -> Vec<String> {
    let profile = PROFILE_PREFIXES
        .iter()
        .find_map(|p| model.strip_prefix(p).map(|base| (*p, base)));
    match profile {
        Some((prefix, base)) => std::iter::once(format!(
            "arn:aws:bedrock:{region}:{account}:inference-profile/{model}"
        ))
        .chain(
            destination_regions(prefix, region)
                .into_iter()
                .map(|r| format!("arn:aws:bedrock:{r}::foundation-model/{base}")),
        )
        .collect(),
        None if model.starts_with("arn:") => vec![model.to_string()],
        None => vec![format!(
            "arn:aws:bedrock:{region}::foundation-model/{model}"
        )],
    }
}

fn known_model(model: &str) -> bool {
    let base = PROFILE_PREFIXES
        .iter()
        .find_map(|p| model.strip_prefix(p))
        .unwrap_or(model);
    base.starts_with("anthropic.claude")
}

/// Verifies the caller and its permission; returns the error response otherwise.
fn authorize(
    s: &CloudState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    model: &str,
) -> Result<(), BedrockError> {
    let caller = sigv4::verify(s, method, uri, headers, body, "bedrock").map_err(|e| match e {
        AuthError::Missing => error(
            403,
            "MissingAuthenticationTokenException",
            "Missing Authentication Token",
        ),
        AuthError::Incomplete(m) => error(403, "IncompleteSignatureException", &m),
        AuthError::UnknownKey => error(
            403,
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        ),
        AuthError::Expired => error(
            403,
            "ExpiredTokenException",
            "The security token included in the request is expired",
        ),
        AuthError::Signature(m) => error(403, "InvalidSignatureException", &m),
    })?;
    // The credential scope must name the region this endpoint serves.
    if caller.region != s.registry().aws_region {
        return Err(error(
            403,
            "InvalidSignatureException",
            "Credential should be scoped to a valid region. ",
        ));
    }
    if !known_model(model) {
        return Err(error(
            400,
            "ValidationException",
            "The provided model identifier is invalid.",
        ));
    }
    let reg = s.registry();
    let c = &caller.credentials;
    let role = reg
        .roles
        .iter()
        .find(|r| r.name == c.role_name)
        .ok_or_else(|| error(403, "AccessDeniedException", "The role no longer exists."))?;
    let docs: Vec<&crate::policy::PolicyDocument> = role.permission_policies.iter().collect();
    // The global condition keys a policy on this call can test (lower-cased, as policy.rs
    // compares them).
    let role_arn = format!("arn:aws:iam::{}:role/{}", reg.aws_account_id, c.role_name);
    let context: HashMap<String, String> = [
        ("aws:requestedregion", caller.region.clone()),
        ("aws:principalarn", role_arn),
        ("aws:principalaccount", reg.aws_account_id.clone()),
        ("aws:principaltype", "AssumedRole".to_string()),
        ("aws:userid", c.assumed_role_id.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    for arn in resources(model, &caller.region, &reg.aws_account_id) {
        let req = Request {
            action: "bedrock:InvokeModel",
            resource: Some(&arn),
            federated: None,
            context: &context,
        };
        // Effective permissions: the role's policies and, when the session has any, its session
        // policies must both allow; an explicit deny in either wins (IAM's evaluation logic).
        let session: Vec<&crate::policy::PolicyDocument> = c.session_policies.iter().collect();
        let identity = decide(&docs, &req);
        let session_decision = (!session.is_empty()).then(|| decide(&session, &req));
        let why = match (identity, session_decision) {
            (Decision::ExplicitDeny, _) => {
                Some("with an explicit deny in an identity-based policy")
            }
            (_, Some(Decision::ExplicitDeny)) => Some("with an explicit deny in a session policy"),
            (Decision::ImplicitDeny, _) => {
                Some("because no identity-based policy allows the bedrock:InvokeModel action")
            }
            (_, Some(Decision::ImplicitDeny)) => {
                Some("because no session policy allows the bedrock:InvokeModel action")
            }
            _ => None,
        };
        if let Some(why) = why {
            let who = format!(
                "arn:aws:sts::{}:assumed-role/{}/{}",
                reg.aws_account_id, c.role_name, c.session_name
            );
            return Err(error(
                403,
                "AccessDeniedException",
                &format!(
                    "User: {who} is not authorized to perform: bedrock:InvokeModel on resource: {arn} {why}"
                ),
            ));
        }
    }
    Ok(())
}

/// The city a user's question asks the weather of, if any ("Weather in Dallas?").
pub fn weather_city(text: &str) -> Option<String> {
    let lower = text.to_lowercase();
    if !lower.contains("weather") && !lower.contains("forecast") && !lower.contains("temperature") {
        return None;
    }
    // Offsets from `lower` do not fit `text` (lower-casing changes byte lengths): search the
    // original, ignoring ASCII case (the keywords are ASCII, so a match is on a char boundary).
    let find = |k: &str| {
        let (t, k) = (text.as_bytes(), k.as_bytes());
        (0..=t.len().checked_sub(k.len())?).find(|&i| t[i..i + k.len()].eq_ignore_ascii_case(k))
    };
    let start = [" in ", " for ", " at "]
        .iter()
        .filter_map(|k| find(k).map(|i| i + k.len()))
        .min()?;
    let city: String = text[start..]
        .chars()
        .take_while(|c| c.is_alphabetic() || *c == ' ' || *c == '-' || *c == '\'')
        .collect();
    let city = city
        .trim()
        .trim_end_matches(" today")
        .trim_end_matches(" now")
        .trim();
    (!city.is_empty()).then(|| city.to_string())
}

/// A rough token count (words × 4/3), deterministic.
fn tokens(text: &str) -> u64 {
    (text.split_whitespace().count() as u64 * 4)
        .div_ceil(3)
        .max(1)
}

/// What the model does next.
enum Turn {
    CallTool { city: String },
    Answer(String),
}

fn decide_turn(last_user_text: Option<&str>, tool_result: Option<&Value>, has_tool: bool) -> Turn {
    if let Some(result) = tool_result {
        return Turn::Answer(describe_weather(result));
    }
    match last_user_text.and_then(weather_city) {
        Some(city) if has_tool => Turn::CallTool { city },
        Some(city) => Turn::Answer(format!("I cannot look up live weather for {city} without a weather tool.")),
        None => Turn::Answer("I am a weather assistant: ask me about the weather in a city, for example \"Weather in Dallas?\"".into()),
    }
}

fn describe_weather(result: &Value) -> String {
    if let Some(text) = result.get("text").and_then(Value::as_str) {
        return format!("Here is what the weather tool returned: {text}");
    }
    let data = result.get("json").unwrap_or(result);
    if let Some(err) = data.get("error").and_then(Value::as_str) {
        return format!(
            "I could not get the weather: {}",
            data.get("message").and_then(Value::as_str).unwrap_or(err)
        );
    }
    let city = data["city"].as_str().unwrap_or("that city");
    let temp = &data["temperature"];
    let unit = data["temperature_unit"].as_str().unwrap_or("");
    let cond = data["condition"]
        .as_str()
        .unwrap_or("unknown conditions")
        .to_lowercase();
    let wind = &data["wind_speed"];
    let wind_unit = data["wind_unit"].as_str().unwrap_or("");
    let humidity = &data["humidity"];
    format!(
        "The weather in {city} is {cond}, {temp}°{unit}, with humidity at {humidity}% and wind at {wind} {wind_unit}."
    )
}

/// Converse's checks of a conversation, in the order this emulation applies them, each worded as
/// recorded from real Bedrock (tests/recorded/bedrock/): a user turn first, tool blocks only with
/// a `toolConfig`, no blank text, alternating roles, no empty error `toolResult`, no content after
/// a `toolUse` in an assistant turn (Anthropic's check, passed through), and every `toolUse`
/// answered by a `toolResult` in the next user turn.
fn validate_conversation(req: &Value) -> Result<(), BedrockError> {
    let invalid = |m: String| error(400, "ValidationException", &m);
    let empty = Vec::new();
    let messages = req["messages"].as_array().unwrap_or(&empty);
    if messages.first().is_none_or(|m| m["role"] != "user") {
        return Err(invalid(
            "A conversation must start with a user message. Try again with a conversation that starts with a user message.".into(),
        ));
    }
    let blocks = |m: &Value| m["content"].as_array().cloned().unwrap_or_default();
    let uses_tools = messages.iter().any(|m| {
        blocks(m)
            .iter()
            .any(|b| b.get("toolUse").is_some() || b.get("toolResult").is_some())
    });
    if uses_tools && req.get("toolConfig").is_none_or(Value::is_null) {
        return Err(invalid(
            "The toolConfig field must be defined when using toolUse and toolResult content blocks.".into(),
        ));
    }
    for (i, m) in messages.iter().enumerate() {
        for (j, b) in blocks(m).iter().enumerate() {
            if b["text"].as_str().is_some_and(|t| t.trim().is_empty()) {
                return Err(invalid(format!(
                    "The text field in the ContentBlock object at messages.{i}.content.{j} is blank. Add text to the text field, and try again."
                )));
            }
        }
    }
    if messages.windows(2).any(|w| w[0]["role"] == w[1]["role"]) {
        return Err(invalid(
            "A conversation must alternate between user and assistant roles. Make sure the conversation alternates between user and assistant roles and try again.".into(),
        ));
    }
    for (i, m) in messages.iter().enumerate() {
        for (j, b) in blocks(m).iter().enumerate() {
            let Some(result) = b.get("toolResult") else {
                continue;
            };
            let no_content = result["content"].as_array().is_none_or(Vec::is_empty);
            if result["status"] == "error" && no_content {
                return Err(invalid(format!(
                    "The content field at messages.{i}.content.{j}.toolResult cannot be empty when status value is error."
                )));
            }
        }
    }
    let tool_use_ids = |m: &Value| -> Vec<String> {
        blocks(m)
            .iter()
            .filter_map(|b| b["toolUse"]["toolUseId"].as_str().map(str::to_string))
            .collect()
    };
    for (i, m) in messages.iter().enumerate() {
        if m["role"] != "assistant" {
            continue;
        }
        let ids = tool_use_ids(m);
        if ids.is_empty() {
            continue;
        }
        let content = blocks(m);
        let after_last_use = content
            .iter()
            .rposition(|b| b.get("toolUse").is_some())
            .map(|p| p + 1 < content.len())
            .unwrap_or(false);
        let answered: Vec<String> = messages
            .get(i + 1)
            .map(|next| {
                blocks(next)
                    .iter()
                    .filter_map(|b| b["toolResult"]["toolUseId"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        if after_last_use {
            return Err(invalid(format!(
                "The model returned the following errors: messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately after: {}. Each `tool_use` block must have a corresponding `tool_result` block in the next message.",
                ids.join(", ")
            )));
        }
        let missing: Vec<&String> = ids.iter().filter(|id| !answered.contains(id)).collect();
        if !missing.is_empty() && i + 1 < messages.len() {
            return Err(invalid(format!(
                "Expected toolResult blocks at messages.{}.content for the following Ids: {}",
                i + 1,
                missing
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    Ok(())
}

/// Counts the call and answers an injected fault: a canned answer (`Ok(Some)`), or Bedrock's
/// error for a status fault.
async fn door(s: &CloudState, name: &str) -> Result<Option<Response>, BedrockError> {
    match s.door(name, "application/json").await {
        Ok(None) => Ok(None),
        Ok(Some(f)) => Err(error(
            f.status,
            f.code.as_deref().unwrap_or("ServiceUnavailableException"),
            "Injected failure.",
        )),
        Err(canned) => Ok(Some(canned)),
    }
}

/// `POST /model/{modelId}/converse`.
pub async fn converse(
    State(s): State<Arc<CloudState>>,
    Path(model): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, BedrockError> {
    if let Some(canned) = door(&s, "bedrock:Converse").await? {
        return Ok(canned);
    }
    authorize(&s, &method, &uri, &headers, &body, &model)?;
    let started = tokio::time::Instant::now();
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return Err(error(
            400,
            "ValidationException",
            "Malformed input request, please reformat your input and try again.",
        ));
    };
    validate_conversation(&req)?;
    let max_tokens = &req["inferenceConfig"]["maxTokens"];
    if !max_tokens.is_null() && max_tokens.as_u64().is_none_or(|n| n < 1) {
        return Err(error(
            400,
            "ValidationException",
            &format!(
                "1 validation error detected: Value '{max_tokens}' at 'inferenceConfig.maxTokens' failed to satisfy constraint: Member must have value greater than or equal to 1"
            ),
        ));
    }
    let messages = req["messages"].as_array().cloned().unwrap_or_default();
    let last = messages.last().expect("validated: non-empty");
    let blocks = last["content"].as_array().cloned().unwrap_or_default();
    let last_text = blocks.iter().find_map(|b| b["text"].as_str());
    let tool_result = blocks
        .iter()
        .find_map(|b| b.get("toolResult"))
        .and_then(|r| r["content"].as_array())
        .and_then(|c| c.first().cloned());
    let has_tool = req["toolConfig"]["tools"]
        .as_array()
        .is_some_and(|t| t.iter().any(|t| t["toolSpec"]["name"] == "get_weather"));
    let input_tokens = tokens(&req.to_string());
    let (content, stop, out_text) = match decide_turn(last_text, tool_result.as_ref(), has_tool) {
        Turn::CallTool { city } => {
            let id = format!("tooluse_{}", crate::state::random_id(22));
            (
                json!([{"text": format!("Let me check the weather in {city}.")}, {"toolUse": {"toolUseId": id, "name": "get_weather", "input": {"city": city}}}]),
                "tool_use",
                city,
            )
        }
        Turn::Answer(text) => (json!([{"text": text}]), "end_turn", text),
    };
    let mut output_tokens = tokens(&out_text) + 5;
    let (mut content, mut stop) = (content, stop);
    // `inferenceConfig.maxTokens`: an answer longer than it is cut where the budget ends, with
    // stopReason max_tokens and still 200, as recorded (pydantic-ai's Bedrock cassettes).
    if let Some(max) = req["inferenceConfig"]["maxTokens"].as_u64()
        && output_tokens > max
    {
        let first_text = content[0]["text"].as_str().unwrap_or_default();
        let words = usize::try_from((max * 3 / 4).max(1)).unwrap_or(usize::MAX);
        let all: Vec<&str> = first_text.split_whitespace().collect();
        // Cut only when words are left out; a tool call that does not fit is not made.
        if all.len() > words || content.as_array().is_some_and(|c| c.len() > 1) {
            content = json!([{"text": all[..all.len().min(words)].join(" ")}]);
            stop = "max_tokens";
            output_tokens = max;
        }
    }
    Ok(axum::Json(json!({
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": stop,
        "usage": {"inputTokens": input_tokens, "outputTokens": output_tokens, "totalTokens": input_tokens + output_tokens},
        "metrics": {"latencyMs": started.elapsed().as_millis() as u64},
    }))
    .into_response())
}

/// The top-level keys Bedrock takes in an Anthropic Messages body.
const ANTHROPIC_KEYS: &[&str] = &[
    "anthropic_version",
    "anthropic_beta",
    "max_tokens",
    "messages",
    "system",
    "stop_sequences",
    "temperature",
    "top_p",
    "top_k",
    "tools",
    "tool_choice",
    "thinking",
];

/// The version string Bedrock's Anthropic models take.
const ANTHROPIC_VERSION: &str = "bedrock-2023-05-31";

/// InvokeModel's schema check of an Anthropic Messages body, worded as recorded (Claude 3 era):
/// every violation as `#: …`, joined without a separator, after the schema-alternative line that
/// appears when the body has `messages`; then the version's own check.
fn validate_anthropic_body(req: &Value, raw: &[u8]) -> Result<(), BedrockError> {
    let Some(body) = req.as_object() else {
        let found = json_type(req);
        return Err(error(
            400,
            "ValidationException",
            &format!(
                "Malformed input request: #: expected type: JSONObject, found: {found}, please reformat your input and try again."
            ),
        ));
    };
    let mut violations = String::new();
    for key in ["anthropic_version", "max_tokens", "messages"] {
        if !body.contains_key(key) {
            violations.push_str(&format!("#: required key [{key}] not found"));
        }
    }
    // The schema's types, in its wording (everit's, which Bedrock's messages come from).
    match body.get("max_tokens") {
        Some(Value::Number(n)) if n.as_u64().is_some_and(|n| n >= 1) => {}
        Some(Value::Number(n)) if n.as_u64().is_some() || n.as_i64().is_some() => {
            violations.push_str(&format!("#/max_tokens: {n} is not greater or equal to 1"));
        }
        Some(other) => violations.push_str(&format!(
            "#/max_tokens: expected type: Integer, found: {}",
            json_type(other)
        )),
        None => {}
    }
    if let Some(messages) = body.get("messages")
        && !messages.is_array()
    {
        violations.push_str(&format!(
            "#/messages: expected type: JSONArray, found: {}",
            json_type(messages)
        ));
    }
    // In the order the body has them, as Bedrock lists them.
    for key in top_level_keys_in_order(raw) {
        if !ANTHROPIC_KEYS.contains(&key.as_str()) {
            violations.push_str(&format!("#: extraneous key [{key}] is not permitted"));
        }
    }
    if !violations.is_empty() {
        let alternative = if body.contains_key("messages") {
            "#: subject must not be valid against schema {\"required\":[\"messages\"]}"
        } else {
            ""
        };
        return Err(error(
            400,
            "ValidationException",
            &format!(
                "Malformed input request: {alternative}{violations}, please reformat your input and try again."
            ),
        ));
    }
    let version = req["anthropic_version"].as_str().unwrap_or_default();
    if version != ANTHROPIC_VERSION {
        let shown = req["anthropic_version"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| req["anthropic_version"].to_string());
        return Err(error(
            400,
            "ValidationException",
            &format!("Invalid API version: {shown}"),
        ));
    }
    Ok(())
}

/// A JSON value's type as the schema validator behind Bedrock's messages names it.
fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Array(_) => "JSONArray",
        Value::Object(_) => "JSONObject",
        Value::String(_) => "String",
        Value::Number(n) if n.is_u64() || n.is_i64() => "Integer",
        Value::Number(_) => "BigDecimal",
        Value::Bool(_) => "Boolean",
        Value::Null => "Null",
    }
}

/// The keys of a JSON object in the order they appear (`serde_json::Map` sorts them).
fn top_level_keys_in_order(raw: &[u8]) -> Vec<String> {
    struct Keys;
    impl<'de> serde::de::Visitor<'de> for Keys {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            let mut keys = Vec::new();
            while let Some((key, _)) = map.next_entry::<String, serde::de::IgnoredAny>()? {
                keys.push(key);
            }
            Ok(keys)
        }
    }
    serde::Deserializer::deserialize_map(&mut serde_json::Deserializer::from_slice(raw), Keys)
        .unwrap_or_default()
}

/// `POST /model/{modelId}/invoke` with an Anthropic Messages body.
pub async fn invoke(
    State(s): State<Arc<CloudState>>,
    Path(model): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, BedrockError> {
    if let Some(canned) = door(&s, "bedrock:InvokeModel").await? {
        return Ok(canned);
    }
    authorize(&s, &method, &uri, &headers, &body, &model)?;
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return Err(error(
            400,
            "ValidationException",
            "Malformed input request, please reformat your input and try again.",
        ));
    };
    validate_anthropic_body(&req, &body)?;
    let messages = req["messages"].as_array().cloned().unwrap_or_default();
    let last = messages.last().cloned().unwrap_or_default();
    let (last_text, tool_result) = match &last["content"] {
        Value::String(t) => (Some(t.clone()), None),
        Value::Array(blocks) => (
            blocks.iter().find_map(|b| {
                (b["type"] == "text")
                    .then(|| b["text"].as_str().map(str::to_string))
                    .flatten()
            }),
            blocks
                .iter()
                .find(|b| b["type"] == "tool_result")
                .map(|b| match &b["content"] {
                    Value::String(t) => serde_json::from_str(t).unwrap_or(json!({"text": t})),
                    other => other
                        .as_array()
                        .and_then(|a| a.first())
                        .and_then(|c| c["text"].as_str())
                        .and_then(|t| serde_json::from_str(t).ok())
                        .unwrap_or(other.clone()),
                }),
        ),
        _ => (None, None),
    };
    let has_tool = req["tools"]
        .as_array()
        .is_some_and(|t| t.iter().any(|t| t["name"] == "get_weather"));
    let input_tokens = tokens(&req.to_string());
    let (content, stop, out_text) = match decide_turn(
        last_text.as_deref(),
        tool_result.as_ref(),
        has_tool,
    ) {
        Turn::CallTool { city } => (
            json!([{"type": "tool_use", "id": format!("toolu_{}", crate::state::random_id(22)), "name": "get_weather", "input": {"city": city}}]),
            "tool_use",
            city,
        ),
        Turn::Answer(text) => (json!([{"type": "text", "text": text}]), "end_turn", text),
    };
    Ok(axum::Json(json!({
        "id": format!("msg_bdrk_{}", crate::state::random_id(24)),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop,
        "stop_sequence": null,
        "usage": {"input_tokens": input_tokens, "output_tokens": tokens(&out_text) + 5},
    }))
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tool result may be text (Bedrock takes `text`, `json`, …): the answer quotes it rather
    /// than reading weather fields that are not there.
    #[test]
    fn a_text_tool_result_is_quoted_not_read_as_weather() {
        let answer = describe_weather(&serde_json::json!({"text": "London: 12 C, cloudy"}));
        assert!(answer.contains("London: 12 C, cloudy"), "{answer}");
        assert!(!answer.contains("null"), "{answer}");
        let json = describe_weather(
            &serde_json::json!({"json": {"city": "Paris", "temperature": 20, "temperature_unit": "C", "condition": "Sunny", "humidity": 40, "wind_speed": 5, "wind_unit": "km/h"}}),
        );
        assert!(
            json.starts_with("The weather in Paris is sunny, 20°C"),
            "{json}"
        );
    }

    /// Lower-casing changes byte lengths ("İ" is 2 bytes, "i̇" 3): offsets found in the
    /// lower-cased text must never slice the original.
    #[test]
    fn text_whose_lower_case_is_longer_never_panics() {
        assert_eq!(weather_city("İİİİ weather in x").as_deref(), Some("x"));
        assert_eq!(
            weather_city("İSTANBUL WEATHER IN Dallas").as_deref(),
            Some("Dallas")
        );
        assert_eq!(weather_city("İİ weather").as_deref(), None);
    }

    #[test]
    fn finds_the_city_of_a_weather_question() {
        assert_eq!(
            weather_city("Weather in Dallas?").as_deref(),
            Some("Dallas")
        );
        assert_eq!(
            weather_city("What's the weather like in New York today?").as_deref(),
            Some("New York")
        );
        assert_eq!(
            weather_city("forecast for San Francisco").as_deref(),
            Some("San Francisco")
        );
        assert_eq!(weather_city("Tell me a joke"), None);
    }

    #[test]
    fn anthropic_bodies_are_checked_for_types_as_well_as_keys() {
        let check = |body: &str| {
            validate_anthropic_body(&serde_json::from_str(body).unwrap(), body.as_bytes())
                .err()
                .map(|e| e.message)
        };
        let ok = r#"{"anthropic_version":"bedrock-2023-05-31","max_tokens":10,"messages":[]}"#;
        assert_eq!(check(ok), None);
        for (body, says) in [
            (
                r#"{"anthropic_version":"bedrock-2023-05-31","max_tokens":"ten","messages":[]}"#,
                "#/max_tokens: expected type: Integer, found: String",
            ),
            (
                r#"{"anthropic_version":"bedrock-2023-05-31","max_tokens":null,"messages":[]}"#,
                "#/max_tokens: expected type: Integer, found: Null",
            ),
            (
                r#"{"anthropic_version":"bedrock-2023-05-31","max_tokens":0,"messages":[]}"#,
                "#/max_tokens: 0 is not greater or equal to 1",
            ),
            (
                r#"{"anthropic_version":"bedrock-2023-05-31","max_tokens":-5,"messages":[]}"#,
                "#/max_tokens: -5 is not greater or equal to 1",
            ),
            (
                r#"{"anthropic_version":"bedrock-2023-05-31","max_tokens":5,"messages":{}}"#,
                "#/messages: expected type: JSONArray, found: JSONObject",
            ),
            ("[1]", "found: JSONArray"),
            ("\"x\"", "found: String"),
        ] {
            let got = check(body).unwrap_or_else(|| panic!("{body} accepted"));
            assert!(got.contains(says), "{body}: {got}");
        }
    }

    #[test]
    fn inference_profiles_need_the_profile_and_the_model_in_every_destination_region() {
        assert_eq!(
            resources("us.anthropic.claude-3-haiku-20240307-v1:0", "us-east-2", "123456789012"),
            vec![
                "arn:aws:bedrock:us-east-2:123456789012:inference-profile/us.anthropic.claude-3-haiku-20240307-v1:0".to_string(),
                "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-haiku-20240307-v1:0".to_string(),
                "arn:aws:bedrock:us-east-2::foundation-model/anthropic.claude-3-haiku-20240307-v1:0".to_string(),
                "arn:aws:bedrock:us-west-2::foundation-model/anthropic.claude-3-haiku-20240307-v1:0".to_string(),
            ]
        );
        assert_eq!(
            resources("anthropic.claude-3-haiku-20240307-v1:0", "eu-west-1", "123456789012"),
            vec!["arn:aws:bedrock:eu-west-1::foundation-model/anthropic.claude-3-haiku-20240307-v1:0".to_string()],
            "a base model id is invoked in the caller's region only"
        );
    }
}
