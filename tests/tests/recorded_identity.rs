//! Recorded answers of Azure's managed-identity endpoints (`tests/recorded/identity/`: Container
//! Apps and App Service; `tests/recorded/imds/`: the VM Instance Metadata Service), against both
//! sides of the wire: (a) the provider, with the endpoint replaced by a server replaying the
//! recording, gets credentials from a token answer and a typed error naming the endpoint from an
//! error answer; (b) the local cloud, put in the same situation, answers with the same status, the
//! same fields of the same JSON types, and the same wording.

use local_cloud::{LocalCloud, Registry};
use serde_json::{Value, json};
use std::collections::HashMap;
use system_tests::*;

/// The recordings of both endpoints, successes and errors.
fn all() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for dir in ["identity", "imds"] {
        out.extend(recordings(dir));
        out.extend(successes(dir));
    }
    assert!(out.len() >= 8, "{out:?}");
    out
}

/// The environment that makes the provider use the recording's endpoint, served at `url`.
fn env_for(cloud: &LocalCloud, r: &Value, url: &str) -> HashMap<String, String> {
    let mut env = env_of(cloud);
    if r["service"] == "imds" {
        env.remove("IDENTITY_ENDPOINT");
        env.remove("IDENTITY_HEADER");
        env.insert("AZURE_POD_IDENTITY_AUTHORITY_HOST".into(), url.into());
    } else {
        env.insert("IDENTITY_ENDPOINT".into(), format!("{url}/msi/token"));
    }
    env
}

/// A recorded token answer with its token replaced by one the local Entra accepts (the recorded
/// ones are cut or redacted), and its times moved to that token's, each field keeping its JSON
/// type.
fn with_usable_token(cloud: &LocalCloud, recorded: &Value) -> Value {
    let mi = cloud.state().registry().managed_identities[0].clone();
    let (token, exp) =
        local_cloud::identity::mint_mi_token(cloud.state(), &mi, "api://AzureADTokenExchange")
            .unwrap();
    let now = exp - 3600;
    let mut body = recorded.clone();
    body["access_token"] = json!(token);
    for (field, value) in [
        ("expires_on", exp),
        ("expires_in", exp - now),
        ("not_before", now),
    ] {
        match body.get(field) {
            Some(Value::String(_)) => body[field] = json!(value.to_string()),
            Some(Value::Number(_)) => body[field] = json!(value),
            _ => {}
        }
    }
    body
}

/// (a): a token answer gives credentials; an error answer is the endpoint's typed error, with
/// the recorded message or status in its text.
#[tokio::test]
async fn the_library_reads_every_recorded_managed_identity_answer() {
    for (name, r) in all() {
        let cloud = cloud().await;
        let status = r["status"].as_u64().unwrap();
        let url = if status == 200 {
            let body = with_usable_token(&cloud, &r["body"]);
            replay_answer(&r, body.to_string(), "application/json; charset=utf-8").await
        } else {
            replay(&r).await
        };
        let result = builder_from_env(&env_for(&cloud, &r, &url))
            .build()
            .unwrap()
            .credentials()
            .await;
        if status == 200 {
            let creds = result.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(creds.session_token().is_some(), "{name}");
            continue;
        }
        let err = result.expect_err(&name);
        let entra_federation::Error::Assertion(e) = &*err else {
            panic!("{name}: not the managed-identity hop's error: {err:?}")
        };
        // The whole chain: the endpoint's own words may be the cause of a clearer error.
        let text = entra_federation::error::DisplayChain(e).to_string();
        let expected = r["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| status.to_string());
        assert!(text.contains(&expected), "{name}: {text}");
        let hop = if r["service"] == "imds" {
            "IMDS"
        } else {
            "identity endpoint"
        };
        assert!(
            text.to_lowercase().contains(&hop.to_lowercase()),
            "{name}: names {hop}: {text}"
        );
    }
}

/// The local cloud's answer in a recording's situation: status and body text.
async fn local_situation(situation: &str) -> (u16, String) {
    let mut registry = Registry::tutorial_default();
    if situation == "imds-multiple-user-assigned-identities" {
        // Two user-assigned identities and no system-assigned one.
        registry.managed_identities[0].system_assigned = false;
        let mut second = registry.managed_identities[0].clone();
        second.client_id = "6f7a8b9c-0d1e-4f2a-9b3c-4d5e6f7a8b9c".into();
        second.object_id = "5e6f7a8b-9c0d-4e1f-8a2b-3c4d5e6f7a8b".into();
        second.resource_id.push_str("-second");
        registry.managed_identities.push(second);
    }
    if situation == "imds-identity-not-found" {
        // A VM with no managed identity attached.
        for mi in &mut registry.managed_identities {
            mi.attached = false;
        }
    }
    let cloud = cloud_with(
        registry,
        aws_smithy_async::time::SharedTimeSource::default(),
    )
    .await;
    // The recordings asked for Key Vault or ARM tokens; the shape of the answer does not depend on
    // the resource, and the local cloud issues tokens for the token-exchange audience.
    let resource = "api://AzureADTokenExchange";
    let client = reqwest::Client::new();
    let identity = client
        .get(format!("{}/msi/token", cloud.http_url()))
        .query(&[("api-version", "2019-08-01"), ("resource", resource)]);
    let imds = client
        .get(format!(
            "{}/metadata/identity/oauth2/token",
            cloud.http_url()
        ))
        .query(&[("api-version", "2018-02-01"), ("resource", resource)]);
    let request = match situation {
        "identity-endpoint-token-success" => {
            identity.header("X-IDENTITY-HEADER", cloud.identity_header())
        }
        "identity-endpoint-header-missing" => identity.header("Metadata", "true"),
        "identity-endpoint-identity-not-resolved" => identity
            .header("X-IDENTITY-HEADER", cloud.identity_header())
            .query(&[("client_id", "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0")]),
        "imds-token-success"
        | "imds-identity-not-found"
        | "imds-multiple-user-assigned-identities" => imds.header("Metadata", "true"),
        "imds-metadata-header-missing" => imds,
        other => panic!("no local reproduction of the managed-identity situation {other:?}"),
    };
    let resp = request.send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// (b): the local endpoints in each recorded situation.
#[tokio::test]
async fn the_local_identity_endpoints_answer_every_recorded_situation_as_azure_did() {
    for (name, r) in all() {
        let (status, body) = local_situation(r["situation"].as_str().unwrap()).await;
        assert_eq!(
            status,
            r["status"].as_u64().unwrap() as u16,
            "{name}: {body}"
        );
        match &r["body"] {
            Value::String(recorded) => assert_eq!(&body, recorded, "{name}: the body"),
            Value::Object(_) => {
                let ours: Value = serde_json::from_str(&body)
                    .unwrap_or_else(|e| panic!("{name}: not JSON ({e}): {body}"));
                let differences = json_shape_differences(&r["body"], &ours);
                assert!(differences.is_empty(), "{name}: {differences:?} in {ours}");
                if let Some(m) = r["message"].as_str() {
                    let text = ours["message"]
                        .as_str()
                        .or(ours["error_description"].as_str())
                        .unwrap_or_default();
                    same_wording(m, text, &name);
                }
            }
            _ => {
                // Only the error and its description were documented.
                let ours: Value = serde_json::from_str(&body)
                    .unwrap_or_else(|e| panic!("{name}: not JSON ({e}): {body}"));
                assert_eq!(ours["error"], r["error"], "{name}");
                same_wording(
                    r["message"].as_str().unwrap(),
                    ours["error_description"].as_str().unwrap_or_default(),
                    &name,
                );
            }
        }
    }
}
