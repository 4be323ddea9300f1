//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`). Not an API: each function
//! feeds one parser of what a user sends and checks what comes out.
//!
//! Every function must return normally for every input.

use crate::request::{ChatRequest, MAX_MESSAGE_CHARS};

/// A `POST /api/chat` body, read as the handler reads it (axum's JSON extractor), then checked;
/// for the direct mode, the city its question names.
pub fn chat_request(body: &[u8]) {
    let req = match axum::Json::<ChatRequest>::from_bytes(body) {
        Ok(axum::Json(req)) => req,
        Err(e) => {
            let _ = (e.status(), e.body_text());
            return;
        }
    };
    match req.check() {
        Ok(c) => {
            assert!(!c.message.is_empty() && c.message.chars().count() <= MAX_MESSAGE_CHARS);
            assert_eq!(c.message, c.message.trim(), "the message is trimmed");
            assert!(matches!(c.mode, "direct" | "bedrock"));
            if let Some(token) = c.user_token {
                assert!(!token.is_empty() && token == token.trim());
            }
            if c.mode == "direct" {
                city(c.message);
            }
        }
        Err(r) => {
            assert_eq!(r.status, 400);
            let _ = crate::failure(
                r.status,
                &r.error,
                r.token_flow,
                r.agent_type.as_deref(),
                vec![],
            );
        }
    }
}

/// The city a question names: never empty, trimmed, and only letters, spaces and hyphens (a
/// subset of what the weather API takes; its length limit is the API's to enforce).
pub fn city(message: &str) {
    let city = crate::extract_city(message);
    assert!(!city.is_empty(), "no city for {message:?}");
    assert_eq!(city, city.trim(), "untrimmed city {city:?}");
    assert!(
        city.chars()
            .all(|c| c.is_alphabetic() || c == ' ' || c == '-'),
        "city {city:?} from {message:?} has characters beyond letters, spaces and hyphens"
    );
}
