//! Bedrock Converse with the `get_weather` tool, in a bounded loop: the model may call the tool at
//! most `MAX_TOOL_ROUNDS` times before it must answer.

use crate::tool::{Flow, WeatherTool};
use crate::trace::{Outcome, Trace};
use aws_sdk_bedrockruntime::types::{
    ContentBlock, ConversationRole, InferenceConfiguration, Message, StopReason,
    SystemContentBlock, Tool, ToolConfiguration, ToolInputSchema, ToolResultBlock,
    ToolResultContentBlock, ToolResultStatus, ToolSpecification,
};
use aws_smithy_types::Document;
use serde_json::{Value, json};

const MAX_TOOL_ROUNDS: usize = 3;
const SYSTEM: &str = "You are a weather assistant. You have a get_weather tool that returns live weather for a city. \
Call it once with the city name, then answer naturally from its result. Never answer weather questions from memory.";

/// The model's final answer, or why there is none (with the HTTP status to answer with).
pub type ModelResult = Result<String, (u16, String)>;

fn to_document(v: &Value) -> Document {
    match v {
        Value::Null => Document::Null,
        Value::Bool(b) => Document::Bool(*b),
        Value::Number(n) => n
            .as_u64()
            .map(Document::from)
            .or_else(|| n.as_i64().map(Document::from))
            .unwrap_or_else(|| Document::from(n.as_f64().unwrap_or_default())),
        Value::String(s) => Document::String(s.clone()),
        Value::Array(a) => Document::Array(a.iter().map(to_document).collect()),
        Value::Object(o) => {
            Document::Object(o.iter().map(|(k, v)| (k.clone(), to_document(v))).collect())
        }
    }
}

fn tool_config() -> ToolConfiguration {
    let schema = json!({"type": "object", "properties": {"city": {"type": "string", "description": "City name, e.g. Seattle"}}, "required": ["city"]});
    ToolConfiguration::builder()
        .tools(Tool::ToolSpec(
            ToolSpecification::builder()
                .name("get_weather")
                .description("Get real-time current weather for a city from the weather API (authorised with the agent's Entra Agent ID token).")
                .input_schema(ToolInputSchema::Json(to_document(&schema)))
                .build()
                .expect("tool spec is complete"),
        ))
        .build()
        .expect("tool config is complete")
}

/// Runs the conversation.
pub async fn converse(
    client: &aws_sdk_bedrockruntime::Client,
    model: &str,
    question: &str,
    tool: &WeatherTool,
    flow: &Flow,
    trace: &mut Trace,
) -> ModelResult {
    let mut messages = vec![
        Message::builder()
            .role(ConversationRole::User)
            .content(ContentBlock::Text(question.into()))
            .build()
            .expect("message"),
    ];
    for round in 0..=MAX_TOOL_ROUNDS {
        let resp = client
            .converse()
            .model_id(model)
            .system(SystemContentBlock::Text(SYSTEM.into()))
            .set_messages(Some(messages.clone()))
            .tool_config(tool_config())
            .inference_config(
                InferenceConfiguration::builder()
                    .max_tokens(1024)
                    .temperature(0.2)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| {
                // AWS's message (an AccessDenied names the account and the role) goes to the log;
                // the caller and the trace get the service's error code.
                let detail = aws_sdk_bedrockruntime::error::DisplayErrorContext(&e).to_string();
                tracing::error!(error = %detail, "Bedrock Converse failed");
                let code = aws_sdk_bedrockruntime::error::ProvideErrorMetadata::code(&e)
                    .unwrap_or(match &e {
                        aws_sdk_bedrockruntime::error::SdkError::TimeoutError(_) => "timed out",
                        aws_sdk_bedrockruntime::error::SdkError::DispatchFailure(_) => {
                            "unreachable"
                        }
                        _ => "no usable answer",
                    })
                    .to_string();
                trace.step(
                    "ERROR",
                    format!("AWS Bedrock agent failed: {code} (details in the agent's log)"),
                    Value::Null,
                    Outcome::Error,
                );
                (502, format!("Bedrock: {code} (details in the agent's log)"))
            })?;
        let usage = resp
            .usage()
            .map(|u| json!({"input_tokens": u.input_tokens(), "output_tokens": u.output_tokens()}))
            .unwrap_or(Value::Null);
        let message = resp
            .output()
            .and_then(|o| o.as_message().ok())
            .cloned()
            .ok_or_else(|| (502, "Bedrock returned no message".to_string()))?;
        let tool_uses: Vec<_> = message
            .content()
            .iter()
            .filter_map(|b| b.as_tool_use().ok().cloned())
            .collect();
        if *resp.stop_reason() != StopReason::ToolUse || tool_uses.is_empty() {
            let text: String = message
                .content()
                .iter()
                .filter_map(|b| b.as_text().ok().cloned())
                .collect::<Vec<_>>()
                .join("\n");
            trace.step(
                "4.B MODEL ANSWER",
                format!(
                    "The model answered (stop reason {})",
                    resp.stop_reason().as_str()
                ),
                json!({"usage": usage}),
                Outcome::Ok,
            );
            return Ok(text);
        }
        if round == MAX_TOOL_ROUNDS {
            trace.step(
                "ERROR",
                format!("The model kept calling tools after {MAX_TOOL_ROUNDS} rounds"),
                Value::Null,
                Outcome::Error,
            );
            return Err((
                502,
                "the model did not answer within the tool-call limit".into(),
            ));
        }
        trace.step(
            "1.A MODEL TOOL REQUEST",
            format!("The model asked for {} tool call(s)", tool_uses.len()),
            json!({"usage": usage}),
            Outcome::Info,
        );
        messages.push(message);
        let mut results = Vec::new();
        for use_ in tool_uses {
            let city = use_
                .input()
                .as_object()
                .and_then(|o| o.get("city"))
                .and_then(|c| c.as_string())
                .unwrap_or("Seattle")
                .to_string();
            let (status, content) = match tool.run(&city, flow, trace).await {
                Ok(w) => (ToolResultStatus::Success, to_document(&w.data)),
                Err(e) => (
                    ToolResultStatus::Error,
                    to_document(&json!({"error": "tool_failed", "message": e.message})),
                ),
            };
            results.push(ContentBlock::ToolResult(
                ToolResultBlock::builder()
                    .tool_use_id(use_.tool_use_id())
                    .status(status)
                    .content(ToolResultContentBlock::Json(content))
                    .build()
                    .expect("tool result"),
            ));
        }
        messages.push(
            Message::builder()
                .role(ConversationRole::User)
                .set_content(Some(results))
                .build()
                .expect("message"),
        );
    }
    Err((502, "unreachable".into()))
}
