//! The `get_weather` tool: an agent identity token from the sidecar (autonomous, or on behalf of
//! the user), then the weather API with it. Every step goes into the trace.

use crate::trace::{Outcome, Trace, token_card};
use entra_federation::SecretString;
use entra_federation::sidecar::{SidecarClient, SidecarError};
use serde_json::{Value, json};
use url::Url;

/// Which identity the agent acts as.
#[derive(Debug, Clone)]
pub enum Flow {
    /// The agent on its own (TR).
    Autonomous,
    /// The agent for the signed-in user (TU), whose token is here.
    OnBehalfOf(SecretString),
}

impl Flow {
    /// `autonomous` or `obo`.
    pub fn name(&self) -> &'static str {
        match self {
            Flow::Autonomous => "autonomous",
            Flow::OnBehalfOf(_) => "obo",
        }
    }
}

/// Why the tool failed, with the HTTP status the chat answers with.
#[derive(Debug, Clone)]
pub struct ToolError {
    /// Status for the chat response.
    pub status: u16,
    /// What went wrong.
    pub message: String,
}

/// The weather the tool found.
#[derive(Debug, Clone)]
pub struct Weather {
    /// The weather API's JSON.
    pub data: Value,
    /// The text the sample's tool returned.
    pub text: String,
}

/// What the tool needs.
#[derive(Clone)]
pub struct WeatherTool {
    /// The sidecar.
    pub sidecar: SidecarClient,
    /// The sidecar's downstream API entry.
    pub api: String,
    /// The agent identity.
    pub agent: String,
    /// The weather API base.
    pub weather_api: Url,
    /// HTTP client (pooled).
    pub http: reqwest::Client,
}

impl WeatherTool {
    /// Runs the tool for `city`.
    pub async fn run(
        &self,
        city: &str,
        flow: &Flow,
        trace: &mut Trace,
    ) -> Result<Weather, ToolError> {
        trace.step(
            "1.B TOOL CALL",
            format!(
                "Weather function called for city: {city} (flow: {})",
                flow.name()
            ),
            Value::Null,
            Outcome::Info,
        );
        let token = match flow {
            Flow::Autonomous => {
                trace.step(
                    "2.A TOKEN REQUEST",
                    format!("Requesting token for Agent: {}", self.agent),
                    Value::Null,
                    Outcome::Info,
                );
                trace.step(
                    "2.B SIDECAR CALL",
                    format!(
                        "Sidecar: GET /AuthorizationHeaderUnauthenticated/{}?AgentIdentity={}",
                        self.api, self.agent
                    ),
                    Value::Null,
                    Outcome::Info,
                );
                match self.sidecar.autonomous_token(&self.api, &self.agent).await {
                    Ok(t) => {
                        let card = token_card(
                            "tr",
                            "TR — Autonomous Agent Token (app-only)",
                            jwt_of(t.authorization_header()),
                        );
                        trace.step(
                            "2.C TOKEN RECEIVED",
                            "Got Agent Identity token (TR) from sidecar",
                            card,
                            Outcome::Ok,
                        );
                        t
                    }
                    Err(e) => {
                        trace.step(
                            "2. TOKEN ERROR",
                            format!("Failed to get token: {e}"),
                            Value::Null,
                            Outcome::Error,
                        );
                        return Err(sidecar_failure(e));
                    }
                }
            }
            Flow::OnBehalfOf(user) => {
                trace.step("OBO 2.A TOKEN REQUEST", format!("Requesting OBO token for Agent: {}", self.agent), json!({"endpoint": format!("/AuthorizationHeader/{}", self.api), "flow": "on-behalf-of"}), Outcome::Info);
                trace.step(
                    "OBO 2.B ENDPOINT",
                    format!(
                        "Authenticated sidecar call: GET /AuthorizationHeader/{}?AgentIdentity={}",
                        self.api, self.agent
                    ),
                    json!({"http_method": "GET", "header_contains": "the user's token (Tc)"}),
                    Outcome::Info,
                );
                trace.step("OBO 2.C USER TOKEN", "Sending Tc as Bearer → sidecar will use it for the OBO exchange", json!({"obo_grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "obo_client_assertion": "T1 (the Blueprint's exchange token for this agent)"}), Outcome::Info);
                match self
                    .sidecar
                    .on_behalf_of_token(&self.api, &self.agent, user)
                    .await
                {
                    Ok(t) => {
                        let card = token_card(
                            "tr",
                            "TR — Agent OBO Token (on behalf of the user)",
                            jwt_of(t.authorization_header()),
                        );
                        trace.step(
                            "OBO 2.D TOKEN RECEIVED",
                            "Got the agent's token on behalf of the user",
                            card,
                            Outcome::Ok,
                        );
                        t
                    }
                    Err(e) => {
                        trace.step(
                            "OBO 2. ERROR",
                            format!("Failed to get OBO token: {e}"),
                            Value::Null,
                            Outcome::Error,
                        );
                        return Err(sidecar_failure(e));
                    }
                }
            }
        };
        trace.step(
            "3.A API CALL",
            format!("Calling Weather API for: {city}"),
            Value::Null,
            Outcome::Info,
        );
        let mut url = self.weather_api.clone();
        url.set_path("/weather");
        url.query_pairs_mut().append_pair("city", city);
        trace.step("3.B API URL", format!("URL: {url}"), json!({"token_sent": if matches!(flow, Flow::Autonomous) { "TR (autonomous, app-only)" } else { "TR (on behalf of the user)" }}), Outcome::Info);
        let resp = self
            .http
            .get(url)
            .header(
                "Authorization",
                token.authorization_header().expose_secret(),
            )
            .send()
            .await;
        let resp = match resp {
            Ok(r) => r,
            Err(e) => {
                let reason = e.without_url().to_string();
                trace.step(
                    "3. WEATHER ERROR",
                    format!("API call failed: {reason}"),
                    Value::Null,
                    Outcome::Error,
                );
                return Err(ToolError {
                    status: 502,
                    message: format!("the weather API could not be reached: {reason}"),
                });
            }
        };
        let status = resp.status().as_u16();
        let data: Value = match server_kit::read_body(resp, server_kit::MAX_RESPONSE_BODY).await {
            Ok(body) => serde_json::from_slice(&body).unwrap_or(Value::Null),
            Err(e) => {
                trace.step(
                    "3. WEATHER ERROR",
                    format!("The weather API's answer was not read: {e}"),
                    Value::Null,
                    Outcome::Error,
                );
                return Err(ToolError {
                    status: 502,
                    message: "the weather API's answer could not be read".into(),
                });
            }
        };
        if status != 200 {
            let detail = data["message"].as_str().unwrap_or("no detail").to_string();
            trace.step(
                "3. WEATHER ERROR",
                format!("The weather API answered HTTP {status}: {detail}"),
                data.clone(),
                Outcome::Error,
            );
            let status = if status == 404 || status == 400 {
                status
            } else {
                502
            };
            return Err(ToolError {
                status,
                message: format!("weather API: {detail}"),
            });
        }
        trace.step(
            "3.C API RESPONSE",
            "Got weather data from API",
            data.clone(),
            Outcome::Ok,
        );
        let text = describe(&data, flow);
        trace.step(
            "4. TOOL RESULT",
            format!("Weather data retrieved ({})", flow.name()),
            json!({"result": text}),
            Outcome::Ok,
        );
        Ok(Weather { data, text })
    }
}

fn jwt_of(header: &SecretString) -> &str {
    header
        .expose_secret()
        .split_once(' ')
        .map(|(_, t)| t)
        .unwrap_or_default()
}

fn sidecar_failure(e: SidecarError) -> ToolError {
    ToolError {
        status: 502,
        message: format!("no agent identity token: {e}"),
    }
}

fn describe(d: &Value, flow: &Flow) -> String {
    let s = |k: &str| {
        d[k].as_str()
            .map(str::to_string)
            .unwrap_or_else(|| d[k].to_string())
    };
    format!(
        "Weather for {}:\nTemperature: {}°{}\nCondition: {}\nHumidity: {}%\nWind Speed: {} {}\nTimestamp: {} ({})\nData Source: {}\nAuthentication: Validated by {}\nAgent App ID: {}\nToken Flow: {}",
        s("city"),
        s("temperature"),
        s("temperature_unit"),
        s("condition"),
        s("humidity"),
        s("wind_speed"),
        s("wind_unit"),
        s("timestamp"),
        s("timezone"),
        s("data_source"),
        s("validated_by"),
        s("agent_app_id"),
        if matches!(flow, Flow::Autonomous) {
            "Autonomous"
        } else {
            "OBO"
        }
    )
}

/// The city of a question, as the sample's direct path finds it: after `in`, else after `for`, else
/// the last word unless it is a filler word; else Seattle.
pub fn extract_city(message: &str) -> String {
    let m = message
        .trim()
        .trim_end_matches('?')
        .trim_end_matches('.')
        .trim();
    for kw in [" in ", " for "] {
        if let Some(i) = rfind_ascii_case_insensitive(m, kw) {
            let city = m[i + kw.len()..].trim();
            if !city.is_empty()
                && city
                    .chars()
                    .all(|c| c.is_alphabetic() || c == ' ' || c == '-')
            {
                return city.to_string();
            }
        }
    }
    let last = m.split_whitespace().last().unwrap_or_default();
    const FILLER: &[&str] = &[
        "weather", "what", "is", "the", "how", "today", "now", "like",
    ];
    if !last.is_empty()
        && !FILLER.contains(&last.to_lowercase().as_str())
        && last.chars().all(char::is_alphabetic)
    {
        let mut c = last.chars();
        return c
            .next()
            .map(|first| {
                // Some upper cases add a combining mark ("ὐ" to "Υ̓"), which the weather API
                // refuses: such a letter stays as it is.
                let upper: String = first.to_uppercase().collect();
                let first = if upper.chars().all(char::is_alphabetic) {
                    upper
                } else {
                    first.to_string()
                };
                first + c.as_str()
            })
            .unwrap_or_default();
    }
    "Seattle".into()
}

/// The byte offset of the last match of the ASCII `needle` in `haystack`, ignoring ASCII case.
/// Searched in the original text: offsets from a lower-cased copy do not fit it, because
/// lower-casing changes byte lengths ("İ" is 2 bytes, its lower case 3).
fn rfind_ascii_case_insensitive(haystack: &str, needle: &str) -> Option<usize> {
    let (h, n) = (haystack.as_bytes(), needle.as_bytes());
    // An ASCII match starts on a character boundary: ASCII bytes never continue a character.
    (0..=h.len().checked_sub(n.len())?)
        .rev()
        .find(|&i| h[i..i + n.len()].eq_ignore_ascii_case(n))
}

#[cfg(test)]
mod tests {
    use super::extract_city;

    #[test]
    fn cities_as_the_sample_found_them() {
        for (q, city) in [
            ("weather in Dallas", "Dallas"),
            ("weather in New York", "New York"),
            ("weather for London", "London"),
            ("tell me about Tokyo", "Tokyo"),
            ("what is the weather", "Seattle"),
            ("weather in Paris?", "Paris"),
            ("Weather in Dallas?", "Dallas"),
        ] {
            assert_eq!(extract_city(q), city, "{q}");
        }
    }

    /// Lower-casing changes byte lengths ("İ" is 2 bytes, "i̇" 3): offsets found in the
    /// lower-cased text must never slice the original.
    #[test]
    fn text_whose_lower_case_is_longer_never_panics() {
        assert_eq!(extract_city("İİİİ in x"), "x");
        assert_eq!(extract_city("İSTANBUL weather IN Dallas"), "Dallas");
        assert_eq!(extract_city("weather İN İzmir"), "İzmir");
        assert_eq!(extract_city("ẞẞẞ for Köln?"), "Köln");
    }

    /// Found by the `city` fuzz target: "ὐ" upper-cases to "Υ" and a combining mark, which is
    /// not a letter, so the weather API refused the city. A first letter whose upper case is not
    /// all letters stays as it is.
    #[test]
    fn the_city_is_only_letters_even_when_upper_case_adds_a_mark() {
        assert_eq!(extract_city("ὐᙐ"), "ὐᙐ");
        assert_eq!(extract_city("weather ὐλος?"), "ὐλος");
        assert_eq!(extract_city("köln"), "Köln");
        assert_eq!(extract_city("ßamberg"), "SSamberg");
    }
}
