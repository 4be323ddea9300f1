//! A chat request as the page or a script sends it, checked before anything is sent anywhere.

use serde::Deserialize;

/// The body of `POST /api/chat` (the sample's fields; `mode` is the older name of `llm_mode`).
#[derive(Deserialize)]
pub(crate) struct ChatRequest {
    message: Option<String>,
    llm_mode: Option<String>,
    mode: Option<String>,
    token_flow: Option<String>,
    user_token: Option<String>,
}

/// What a well-formed request asks for.
#[derive(Debug, PartialEq)]
pub(crate) struct Checked<'a> {
    /// The question, trimmed, 1 to 2,000 characters.
    pub message: &'a str,
    /// `direct` or `bedrock`.
    pub mode: &'a str,
    /// The user's token for on-behalf-of, without its scheme (not yet validated); none for
    /// autonomous.
    pub user_token: Option<&'a str>,
}

/// Why a request is refused: the status, the message, and what the answer echoes of it.
#[derive(Debug, PartialEq)]
pub(crate) struct Refusal {
    pub status: u16,
    pub error: String,
    pub token_flow: Option<&'static str>,
    pub agent_type: Option<String>,
}

fn refuse(
    error: impl Into<String>,
    token_flow: Option<&'static str>,
    mode: Option<&str>,
) -> Refusal {
    Refusal {
        status: 400,
        error: error.into(),
        token_flow,
        agent_type: mode.map(str::to_string),
    }
}

/// The longest question taken, in characters.
pub(crate) const MAX_MESSAGE_CHARS: usize = 2000;

impl ChatRequest {
    /// The request's fields checked, or why it is refused.
    pub(crate) fn check(&self) -> Result<Checked<'_>, Refusal> {
        let message = self.message.as_deref().map(str::trim).unwrap_or_default();
        if message.is_empty() {
            return Err(refuse("No message provided", None, None));
        }
        if message.chars().count() > MAX_MESSAGE_CHARS {
            return Err(refuse(
                format!("The message is longer than {MAX_MESSAGE_CHARS} characters"),
                None,
                None,
            ));
        }
        let mode = self
            .llm_mode
            .as_deref()
            .or(self.mode.as_deref())
            .unwrap_or("direct");
        if !matches!(mode, "direct" | "bedrock") {
            return Err(refuse(
                format!("llm_mode must be 'direct' or 'bedrock', not '{mode}'"),
                None,
                None,
            ));
        }
        let user_token = match self.token_flow.as_deref().unwrap_or("autonomous") {
            "autonomous" => None,
            "obo" => {
                let token = self
                    .user_token
                    .as_deref()
                    .map(|t| {
                        // With or without its scheme, matched case-insensitively (RFC 7235).
                        let t = t.trim();
                        match t.split_once(' ') {
                            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("Bearer") => {
                                rest.trim()
                            }
                            _ => t,
                        }
                    })
                    .filter(|t| !t.is_empty());
                let Some(token) = token else {
                    return Err(refuse(
                        "OBO flow requires a user token. Please sign in first.",
                        Some("obo"),
                        Some(mode),
                    ));
                };
                Some(token)
            }
            other => {
                return Err(refuse(
                    format!("token_flow must be 'autonomous' or 'obo', not '{other}'"),
                    None,
                    Some(mode),
                ));
            }
        };
        Ok(Checked {
            message,
            mode,
            user_token,
        })
    }
}
