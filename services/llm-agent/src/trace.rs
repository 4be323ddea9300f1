//! The identity trace of one request: the sample's step labels, each with a timestamp, the time
//! since the previous step, and an outcome. Tokens appear only as allowlisted claim summaries.

use serde::Serialize;
use serde_json::{Map, Value, json};
use std::time::{Instant, SystemTime};

/// Claims a trace may show (never the token, never a piece of it).
pub const CLAIM_ALLOWLIST: &[&str] = &[
    "aud",
    "iss",
    "sub",
    "oid",
    "tid",
    "ver",
    "idtyp",
    "appid",
    "azp",
    "name",
    "upn",
    "preferred_username",
    "scp",
    "roles",
    "xms_act_fct",
    "xms_sub_fct",
    "xms_par_app_azp",
    "iat",
    "nbf",
    "exp",
];

/// How a step ended.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Informational.
    Info,
    /// A step that succeeded.
    Ok,
    /// A step that failed.
    Error,
}

/// One entry.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// The sample's label (`0.A START`, `2.C TOKEN RECEIVED`, …).
    pub step: String,
    /// What happened.
    pub message: String,
    /// Details (claim summaries, URLs, the weather JSON).
    pub data: Value,
    /// RFC 3339 time.
    pub timestamp: String,
    /// Milliseconds since the previous entry.
    pub duration_ms: u64,
    /// The same in microseconds (loopback hops take well under a millisecond; `scripts/bench`
    /// sums these to show where a chat's time goes).
    pub duration_us: u64,
    /// Outcome.
    pub outcome: Outcome,
}

/// The trace of one request.
#[derive(Debug)]
pub struct Trace {
    entries: Vec<Entry>,
    last: Instant,
}

impl Default for Trace {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
            last: Instant::now(),
        }
    }
}

impl Trace {
    /// Records a step.
    pub fn step(&mut self, step: &str, message: impl Into<String>, data: Value, outcome: Outcome) {
        let now = Instant::now();
        let elapsed = now.duration_since(self.last);
        let duration_ms = elapsed.as_millis() as u64;
        let duration_us = elapsed.as_micros() as u64;
        self.last = now;
        let message = message.into();
        tracing::info!(step, duration_ms, outcome = ?outcome, "{message}");
        self.entries.push(Entry {
            step: step.into(),
            message,
            data,
            timestamp: rfc3339(SystemTime::now()),
            duration_ms,
            duration_us,
            outcome,
        });
    }

    /// The entries.
    pub fn into_entries(self) -> Vec<Entry> {
        self.entries
    }
}

fn rfc3339(t: SystemTime) -> String {
    aws_smithy_types::DateTime::from(t)
        .fmt(aws_smithy_types::date_time::Format::DateTime)
        .unwrap_or_default()
}

/// A token card for the page: the allowlisted claims of `jwt` (read without verification; display only).
pub fn token_card(kind: &str, title: &str, jwt: &str) -> Value {
    let claims = jwt
        .split('.')
        .nth(1)
        .and_then(base64_url_decode)
        .and_then(|b| serde_json::from_slice::<Map<String, Value>>(&b).ok())
        .unwrap_or_default();
    let shown: Map<String, Value> = claims
        .into_iter()
        .filter(|(k, _)| CLAIM_ALLOWLIST.contains(&k.as_str()))
        .collect();
    json!({"_jwt_token": {"type": kind, "title": title, "claims": shown}})
}

fn base64_url_decode(s: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cards_show_only_allowlisted_claims() {
        // {"alg":"none"}.{"aud":"a","secret":"x","roles":["r"]}
        let jwt = "eyJhbGciOiJub25lIn0.eyJhdWQiOiJhIiwic2VjcmV0IjoieCIsInJvbGVzIjpbInIiXX0.sig";
        let card = token_card("tr", "TR", jwt);
        let claims = &card["_jwt_token"]["claims"];
        assert_eq!(claims["aud"], "a");
        assert_eq!(claims["roles"], json!(["r"]));
        assert!(claims.get("secret").is_none());
        assert!(!card.to_string().contains("eyJ"));
    }

    #[test]
    fn steps_have_time_and_outcome() {
        let mut t = Trace::default();
        t.step("0.A START", "go", Value::Null, Outcome::Info);
        t.step("5. COMPLETE", "done", Value::Null, Outcome::Ok);
        let e = t.into_entries();
        assert_eq!(e.len(), 2);
        assert!(e[0].timestamp.ends_with('Z'));
        assert_eq!(e[1].outcome, Outcome::Ok);
        assert!(e[1].duration_us / 1000 == e[1].duration_ms, "{e:?}");
    }
}
