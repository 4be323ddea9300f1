//! Recorded real responses (`tests/recorded/<service>/`, each with its source URL): reading them,
//! replaying them from a stand-in server, and comparing wording with what varies set aside.

use crate::{recorded, workspace_root};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use serde_json::{Value, json};

/// Every recording under `tests/recorded/<dir>/` that describes an error answer (a `situation`
/// and a status of 400 or more).
pub fn recordings(dir: &str) -> Vec<(String, Value)> {
    situations(dir, |status| status >= 400)
}

/// Every recording under `tests/recorded/<dir>/` of a successful answer (a `situation` and a 2xx
/// status).
pub fn successes(dir: &str) -> Vec<(String, Value)> {
    situations(dir, |status| (200..300).contains(&status))
}

fn situations(dir: &str, status: impl Fn(u64) -> bool) -> Vec<(String, Value)> {
    let folder = workspace_root().join("tests/recorded").join(dir);
    let mut out: Vec<(String, Value)> = std::fs::read_dir(&folder)
        .unwrap_or_else(|e| panic!("{}: {e}", folder.display()))
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".json"))
        .map(|name| {
            let v = recorded(&format!("{dir}/{name}"));
            (name, v)
        })
        .filter(|(_, v)| v["situation"].is_string() && v["status"].as_u64().is_some_and(&status))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(!out.is_empty(), "no recordings in {}", folder.display());
    out
}

/// A message with what varies between occurrences replaced: numbers, GUIDs (redacted ones too),
/// key ids, URLs, quoted values ('…'), and words a reporter redacted ("xxxx", any word on the
/// other side). Punctuation after a word stays.
pub fn wording(message: &str) -> String {
    unquoted(message)
        .split_whitespace()
        .map(|word| {
            let core = word.trim_end_matches(['.', ',', ';', ':', '\'']);
            let tail = &word[core.len()..];
            let is_guid = core.len() == 36
                && core.char_indices().all(|(i, c)| {
                    if [8, 13, 18, 23].contains(&i) {
                        c == '-'
                    } else {
                        c.is_ascii_hexdigit() || c == 'x'
                    }
                });
            let kind = if core.len() >= 3 && core.chars().all(|c| c == 'x' || c == 'X') {
                "<redacted>"
            } else if core.starts_with("http://") || core.starts_with("https://") {
                "<url>"
            } else if is_guid {
                "<guid>"
            } else if !core.is_empty() && core.chars().all(|c| c.is_ascii_digit()) {
                "<n>"
            } else if core.len() >= 20
                && core.chars().any(|c| c.is_ascii_digit())
                && core
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                // A key id: a hex thumbprint in one issuer's keys, base64url in another's.
                "<key id>"
            } else {
                return word.to_string();
            };
            format!("{kind}{tail}")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `text` with each quoted value ('…', within one sentence) replaced by `'<value>'`.
fn unquoted(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    // An opening quote starts a word; its closing one ends a word.
    while let Some(open) = rest
        .char_indices()
        .find(|&(i, c)| c == '\'' && (i == 0 || rest[..i].ends_with(' ')))
        .map(|(i, _)| i)
    {
        let after = &rest[open + 1..];
        let close = after.char_indices().find(|&(i, c)| {
            c == '\''
                && after[i + 1..]
                    .chars()
                    .next()
                    .is_none_or(|n| [' ', '.', ',', ':', ';', ')'].contains(&n))
        });
        let Some((close, _)) = close else { break };
        out.push_str(&rest[..open]);
        out.push_str("'<value>'");
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    out
}

/// The recorded wording matches ours: equal, or a prefix of ours where the paste was cut ("...").
/// A word the reporter redacted matches any word of ours.
pub fn same_wording(recorded: &str, ours: &str, what: &str) {
    let (recorded, cut) = match recorded.strip_suffix("...") {
        Some(r) => (r, true),
        None => (recorded, false),
    };
    let (r, o) = (wording(recorded), wording(ours));
    // Redacted words take the place of ours before the comparison.
    let o = if r.contains("<redacted>") {
        let (rw, ow): (Vec<&str>, Vec<&str>) = (r.split(' ').collect(), o.split(' ').collect());
        ow.iter()
            .enumerate()
            .map(|(i, w)| match rw.get(i) {
                Some(x) if x.starts_with("<redacted>") => *x,
                _ => *w,
            })
            .collect::<Vec<_>>()
            .join(" ")
    } else {
        o
    };
    if cut {
        assert!(o.starts_with(&r), "{what}: recorded «{r}…», ours «{o}»");
    } else {
        assert_eq!(r, o, "{what}: the wording");
    }
}

pub fn xml_field<'a>(body: &'a str, name: &str) -> &'a str {
    body.split_once(&format!("<{name}>"))
        .and_then(|(_, rest)| rest.split_once(&format!("</{name}>")))
        .map(|(v, _)| v)
        .unwrap_or_else(|| panic!("no <{name}> in {body}"))
}

/// The body to replay: the recorded one, or STS's or Entra's documented error shape around the
/// recorded code and message where only those were pasted.
pub fn wire_body(r: &Value) -> (String, &'static str) {
    match (&r["body"], r["service"].as_str()) {
        (Value::Null, Some("identity" | "imds")) => (
            json!({"error": r["error"], "error_description": r["message"]}).to_string(),
            "application/json; charset=utf-8",
        ),
        (Value::String(text), Some("identity" | "imds")) => (text.clone(), "text/plain"),
        (Value::String(xml), _) => (xml.clone(), "text/xml"),
        (Value::Object(_), _) => (r["body"].to_string(), "application/json; charset=utf-8"),
        (_, Some("bedrock")) => (
            json!({"message": r["message"]}).to_string(),
            "application/json",
        ),
        (_, Some("sts")) => (
            format!(
                "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n  <Error>\n    <Type>Sender</Type>\n    <Code>{}</Code>\n    <Message>{}</Message>\n  </Error>\n  <RequestId>4c3d2b1a-0000-4000-8000-000000000001</RequestId>\n</ErrorResponse>\n",
                r["code"].as_str().unwrap(),
                r["message"].as_str().unwrap()
            ),
            "text/xml",
        ),
        _ => {
            let code = r["code"].as_u64().unwrap();
            (
                json!({
                    "error": r["error"],
                    "error_description": format!(
                        "AADSTS{code}: {}\r\nTrace ID: 1d2c3b4a-0000-4000-8000-000000000001\r\nCorrelation ID: 1d2c3b4a-0000-4000-8000-000000000002\r\nTimestamp: 2026-01-01 00:00:00Z",
                        r["message"].as_str().unwrap()
                    ),
                    "error_codes": [code],
                    "timestamp": "2026-01-01 00:00:00Z",
                    "trace_id": "1d2c3b4a-0000-4000-8000-000000000001",
                    "correlation_id": "1d2c3b4a-0000-4000-8000-000000000002",
                    "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
                })
                .to_string(),
                "application/json; charset=utf-8",
            )
        }
    }
}

/// A server that answers every request with the recording.
pub async fn replay(r: &Value) -> String {
    let (body, content_type) = wire_body(r);
    replay_answer(r, body, content_type).await
}

/// A server that answers every request with the recording's status (and, for Bedrock errors,
/// its error type header) and `body`.
pub async fn replay_answer(r: &Value, body: String, content_type: &'static str) -> String {
    let status = StatusCode::from_u16(r["status"].as_u64().unwrap() as u16).unwrap();
    // Bedrock names the error in a header (its body is only {"message"}).
    let error_type = (r["service"] == "bedrock" && r["code"].is_string()).then(|| {
        HeaderValue::from_str(&format!(
            "{}:http://internal.amazon.com/coral/com.amazon.bedrock/",
            r["code"].as_str().unwrap()
        ))
        .unwrap()
    });
    let app = axum::Router::new().fallback(move || {
        let (body, error_type) = (body.clone(), error_type.clone());
        async move {
            let mut resp = (status, body).into_response();
            resp.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            if let Some(t) = error_type {
                resp.headers_mut().insert("x-amzn-errortype", t);
            }
            resp
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// The JSON fields of `recorded` missing from `ours` or of another JSON type there, by path
/// (`usage.inputTokens`); arrays are compared by their first element.
pub fn json_shape_differences(recorded: &Value, ours: &Value) -> Vec<String> {
    fn walk(path: &str, r: &Value, o: &Value, out: &mut Vec<String>) {
        if std::mem::discriminant(r) != std::mem::discriminant(o) {
            out.push(format!("{path}: recorded {r}, ours {o}"));
            return;
        }
        match (r, o) {
            (Value::Object(rm), Value::Object(om)) => {
                for (k, rv) in rm {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    match om.get(k) {
                        Some(ov) => walk(&p, rv, ov, out),
                        None => out.push(format!("{p}: missing")),
                    }
                }
            }
            (Value::Array(ra), Value::Array(oa)) => match (ra.first(), oa.first()) {
                (Some(rv), Some(ov)) => walk(&format!("{path}[0]"), rv, ov, out),
                (Some(_), None) => out.push(format!("{path}: empty")),
                _ => {}
            },
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk("", recorded, ours, &mut out);
    out
}

/// The element paths of an XML document (`AssumeRoleWithWebIdentityResult/Credentials/Expiration`),
/// sorted, without the root.
pub fn xml_paths(xml: &str) -> Vec<String> {
    let mut reader = quick_xml::Reader::from_str(xml);
    let (mut stack, mut out) = (Vec::<String>::new(), Vec::new());
    loop {
        match reader.read_event().expect("well-formed XML") {
            quick_xml::events::Event::Start(e) => {
                stack.push(e.local_name().as_ref().to_owned());
                if stack.len() > 1 {
                    out.push(stack[1..].join("/"));
                }
            }
            quick_xml::events::Event::End(_) => {
                stack.pop();
            }
            quick_xml::events::Event::Eof => break,
            _ => {}
        }
    }
    out.sort();
    out
}
