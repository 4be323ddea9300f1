//! Recorded real responses (`tests/recorded/`, each with its source URL) against both sides of
//! the wire: (a) the library, or the AWS SDK where the library does not make that call, reads each
//! one, replayed by a stand-in server, into the right typed error; (b) the local cloud, put in the
//! same situation, answers with the same status, the same error code, the same fields of the same
//! types and the same wording (numbers, GUIDs and URLs aside). A recording the local cloud cannot
//! match is a bug in the local cloud.

use entra_federation::Error;
use entra_federation::error::{EntraError, StsError, StsErrorCode};
use local_cloud::{LocalCloud, Registry, ids};
use serde_json::{Value, json};
use std::time::Duration;
use system_tests::*;

/// The provider's failure on a fresh local cloud with one variable of its environment replaced
/// (an endpoint pointed at the replay server).
async fn failure_with(key: &str, value: String, name: &str) -> std::sync::Arc<Error> {
    let cloud = cloud().await;
    let mut env = env_of(&cloud);
    env.insert(key.into(), value);
    builder_from_env(&env)
        .build()
        .unwrap()
        .credentials()
        .await
        .expect_err(name)
}

/// (a) for STS: the provider, with STS replaced by the recording, fails with the typed code.
#[tokio::test]
async fn the_library_reads_every_recorded_sts_error_into_its_typed_code() {
    for (name, r) in recordings("sts") {
        let url = replay(&r).await;
        let code = r["code"].as_str().unwrap();
        let status = r["status"].as_u64().unwrap() as u16;
        let message = r["message"].as_str().unwrap();
        if r["situation"] == "get-caller-identity-expired-session" {
            // The library never calls GetCallerIdentity: the AWS SDK for Rust reads this one.
            let creds = aws_credential_types::Credentials::new(
                "ASIAEXAMPLE",
                "secret",
                Some("session".into()),
                None,
                "t",
            );
            let conf = aws_sdk_sts::Config::builder()
                .behavior_version(aws_config::BehaviorVersion::latest())
                .region(aws_sdk_sts::config::Region::new("us-east-1"))
                .endpoint_url(&url)
                .credentials_provider(creds)
                .build();
            let err = aws_sdk_sts::Client::from_conf(conf)
                .get_caller_identity()
                .send()
                .await
                .unwrap_err();
            let meta = err
                .as_service_error()
                .map(aws_sdk_sts::error::ProvideErrorMetadata::meta);
            assert_eq!(
                (meta.and_then(|m| m.code()), meta.and_then(|m| m.message())),
                (Some(code), Some(message)),
                "{name}"
            );
            continue;
        }
        let err = failure_with("AWS_ENDPOINT_URL_STS", format!("{url}/"), &name).await;
        let Error::Sts(StsError::Service(e)) = &*err else {
            panic!("{name}: {err:?}")
        };
        assert_eq!(
            (e.status, &e.code, e.raw_code.as_str(), e.message.as_str()),
            (status, &StsErrorCode::from_wire(code), code, message),
            "{name}"
        );
        assert!(
            !matches!(e.code, StsErrorCode::Other(_)),
            "{name}: {code} is a code the library knows"
        );
    }
}

/// (a) for Entra: the provider, with Entra replaced by the recording, fails with its AADSTS code.
#[tokio::test]
async fn the_library_reads_every_recorded_entra_error_into_its_aadsts_code() {
    for (name, r) in recordings("entra") {
        let url = replay(&r).await;
        let err = failure_with("AZURE_AUTHORITY_HOST", url, &name).await;
        let Error::Entra(EntraError::Rejected(rej)) = &*err else {
            panic!("{name}: {err:?}")
        };
        assert_eq!(
            (rej.status, rej.error.as_str(), rej.codes.as_slice()),
            (
                r["status"].as_u64().unwrap() as u16,
                r["error"].as_str().unwrap(),
                &[r["code"].as_u64().unwrap() as u32][..]
            ),
            "{name}"
        );
        let recorded = r["message"].as_str().unwrap().trim_end_matches("...");
        assert!(
            rej.description.contains(recorded),
            "{name}: the description is kept: {}",
            rej.description
        );
        assert!(rej.fix().is_some(), "{name}: the library names a fix");
    }
}

// ---- (b): the local cloud in the same situations ----

fn now_secs() -> i64 {
    local_cloud::state::unix_seconds(std::time::SystemTime::now()) as i64
}

/// The local STS's AssumeRoleWithWebIdentity answer: status, code, message.
async fn assume(cloud: &LocalCloud, token: &str) -> (u16, String, String) {
    let r = reqwest::Client::new()
        .post(cloud.http_url())
        .form(&[
            ("Action", "AssumeRoleWithWebIdentity"),
            ("Version", "2011-06-15"),
            ("RoleArn", &env_of(cloud)["AWS_ROLE_ARN"]),
            ("RoleSessionName", "recorded"),
            ("WebIdentityToken", token),
        ])
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let body = r.text().await.unwrap();
    (
        status,
        xml_field(&body, "Code").to_string(),
        xml_field(&body, "Message").to_string(),
    )
}

/// The local STS's GetCallerIdentity answer to session credentials it issued two hours earlier.
async fn expired_session(_: &LocalCloud) -> (u16, String, String) {
    let clock = TokioTime::new();
    let cloud = cloud_with(Registry::tutorial_default(), clock.clone()).await;
    let issued = aws_credential_types::provider::ProvideCredentials::provide_credentials(
        &builder_from_env(&env_of(&cloud))
            .time_source(clock.clone())
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(2 * 3600)).await;
    tokio::time::resume();
    let err = sts_client(&cloud, issued)
        .get_caller_identity()
        .send()
        .await
        .unwrap_err();
    let status = err.raw_response().map(|r| r.status().as_u16()).unwrap();
    let meta = err
        .as_service_error()
        .map(aws_sdk_sts::error::ProvideErrorMetadata::meta)
        .unwrap();
    (
        status,
        meta.code().unwrap().to_string(),
        meta.message().unwrap().to_string(),
    )
}

/// The local STS in the situation a recording names.
async fn sts_situation(situation: &str) -> (u16, String, String) {
    let cloud = cloud().await;
    match situation {
        "web-identity-token-expired" => {
            let token =
                resigned_v1_token(&cloud, |c| c["exp"] = json!(now_secs() - 3 * 3600)).await;
            assume(&cloud, &token).await
        }
        "web-identity-token-too-old" => {
            let token = resigned_v1_token(&cloud, |c| {
                c["iat"] = json!(now_secs() - 441_398);
                c["nbf"] = c["iat"].clone();
                c["exp"] = json!(now_secs() + 3600);
            })
            .await;
            assume(&cloud, &token).await
        }
        "no-oidc-provider-for-issuer" => {
            let token = resigned_v1_token(&cloud, |_| {}).await;
            cloud.edit_registry(|r| r.oidc_providers.clear());
            assume(&cloud, &token).await
        }
        "get-caller-identity-expired-session" => expired_session(&cloud).await,
        other => panic!("no local reproduction of the STS situation {other:?}"),
    }
}

/// (b) for STS.
#[tokio::test]
async fn the_local_sts_answers_every_recorded_situation_as_aws_did() {
    for (name, r) in recordings("sts") {
        let (status, code, message) = sts_situation(r["situation"].as_str().unwrap()).await;
        assert_eq!(
            (status, code.as_str()),
            (
                r["status"].as_u64().unwrap() as u16,
                r["code"].as_str().unwrap()
            ),
            "{name}: {message}"
        );
        same_wording(r["message"].as_str().unwrap(), &message, &name);
    }
}

/// Client credentials for `client_id` with `assertion`, at the local Entra: status and body.
async fn exchange(cloud: &LocalCloud, client_id: &str, assertion: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!(
            "{}/{}/oauth2/v2.0/token",
            cloud.http_url(),
            ids::TENANT_ID
        ))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("scope", &format!("api://{client_id}/.default")),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", assertion),
        ])
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// The managed identity's assertion, re-signed by the tenant's key with `edit`.
fn mi_assertion_with(cloud: &LocalCloud, edit: impl FnOnce(&mut Value)) -> String {
    let mi = cloud.state().registry().managed_identities[0].clone();
    let (token, _) =
        local_cloud::identity::mint_mi_token(cloud.state(), &mi, "api://AzureADTokenExchange")
            .unwrap();
    let mut claims = unverified_claims(&token);
    edit(&mut claims);
    cloud
        .state()
        .tenant_keys
        .read()
        .unwrap()
        .sign(&claims, false)
}

/// The local Entra in the situation a recording names.
async fn entra_situation(situation: &str) -> (u16, Value) {
    let cloud = cloud().await;
    match situation {
        "client-assertion-expired" => {
            let assertion = mi_assertion_with(&cloud, |c| {
                c["nbf"] = json!(now_secs() - 7200);
                c["exp"] = json!(now_secs() - 3600);
            });
            exchange(&cloud, ids::STS_APP_ID, &assertion).await
        }
        "client-app-without-service-principal" => {
            cloud.edit_registry(|r| {
                r.app_mut(ids::STS_APP_ID)
                    .unwrap()
                    .service_principal_object_id = None
            });
            let assertion = mi_assertion_with(&cloud, |_| {});
            exchange(&cloud, ids::STS_APP_ID, &assertion).await
        }
        "external-issuer-key-not-published" => {
            let issuer = cloud.state().registry().aks_issuers[0].clone();
            let subject = "system:serviceaccount:agents:bedrock-agent";
            cloud.edit_registry(|r| {
                r.app_mut(ids::STS_APP_ID)
                    .unwrap()
                    .federated_credentials
                    .push(local_cloud::registry::FederatedCredential {
                        name: "aks".into(),
                        issuer,
                        subject: subject.into(),
                        audiences: vec!["api://AzureADTokenExchange".into()],
                    })
            });
            let published = local_cloud::identity::mint_projected_token(
                cloud.state(),
                "agents",
                "bedrock-agent",
            )
            .unwrap();
            // Signed by a key the cluster's OIDC document does not publish.
            let unpublished = local_cloud::keys::KeySet::generate()
                .unwrap()
                .sign(&unverified_claims(&published), false);
            exchange(&cloud, ids::STS_APP_ID, &unpublished).await
        }
        "federated-assertion-issuer-not-matched"
        | "federated-assertion-audience-not-matched"
        | "federated-assertion-subject-not-matched" => {
            // The answer quotes the value presented (the wording check sets quoted values aside).
            let (claim, value) = match situation {
                "federated-assertion-issuer-not-matched" => {
                    ("iss", "https://issuer.example.org/unknown/")
                }
                "federated-assertion-audience-not-matched" => ("aud", "my.audience"),
                _ => ("sub", "00000000-1111-2222-3333-444444444444"),
            };
            let assertion = mi_assertion_with(&cloud, |c| c[claim] = json!(value));
            let (status, body) = exchange(&cloud, ids::STS_APP_ID, &assertion).await;
            assert!(
                body["error_description"]
                    .as_str()
                    .is_some_and(|d| d.contains(&format!("'{value}'"))),
                "{situation}: {body}"
            );
            (status, body)
        }
        "resource-principal-not-found" => {
            let assertion = mi_assertion_with(&cloud, |_| {});
            token_request(
                &cloud,
                &[
                    ("grant_type", "client_credentials"),
                    ("client_id", ids::STS_APP_ID),
                    ("scope", "https://api.store.microsoft.com/.default"),
                    ("client_assertion_type", JWT_BEARER),
                    ("client_assertion", &assertion),
                ],
            )
            .await
        }
        "client-secret-invalid" => {
            token_request(
                &cloud,
                &[
                    ("grant_type", "client_credentials"),
                    ("client_id", ids::STS_APP_ID),
                    ("scope", &format!("api://{}/.default", ids::STS_APP_ID)),
                    ("client_secret", "the secret's id, not its value"),
                ],
            )
            .await
        }
        "consent-missing-on-behalf-of" => {
            // The agent identity's on-behalf-of for the weather API, its delegated grant removed.
            cloud.edit_registry(|r| {
                for app in &mut r.apps {
                    app.delegated_grants
                        .retain(|g| g.client_app_id != ids::AGENT_CLIENT_ID);
                }
            });
            let mi = mi_assertion_with(&cloud, |_| {});
            let (status, t1) = token_request(
                &cloud,
                &[
                    ("grant_type", "client_credentials"),
                    ("client_id", ids::BLUEPRINT_APP_ID),
                    ("scope", "api://AzureADTokenExchange/.default"),
                    ("client_assertion_type", JWT_BEARER),
                    ("client_assertion", &mi),
                    ("fmi_path", ids::AGENT_CLIENT_ID),
                ],
            )
            .await;
            assert_eq!(status, 200, "T1: {t1}");
            let user = dev_user_token(&cloud).await;
            token_request(
                &cloud,
                &[
                    ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                    ("client_id", ids::AGENT_CLIENT_ID),
                    ("scope", &format!("{}/.default", ids::WEATHER_API_AUDIENCE)),
                    ("client_assertion_type", JWT_BEARER),
                    ("client_assertion", t1["access_token"].as_str().unwrap()),
                    ("assertion", user.expose_secret()),
                    ("requested_token_use", "on_behalf_of"),
                ],
            )
            .await
        }
        other => panic!("no local reproduction of the Entra situation {other:?}"),
    }
}

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// A request to the local Entra's token endpoint: status and body.
async fn token_request(cloud: &LocalCloud, form: &[(&str, &str)]) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!(
            "{}/{}/oauth2/v2.0/token",
            cloud.http_url(),
            ids::TENANT_ID
        ))
        .form(form)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// (b) for Entra: status, `error`, the AADSTS code, the recorded fields with the same JSON types,
/// and the description's wording.
#[tokio::test]
async fn the_local_entra_answers_every_recorded_situation_as_entra_did() {
    for (name, r) in recordings("entra") {
        let (status, body) = entra_situation(r["situation"].as_str().unwrap()).await;
        assert_eq!(
            (status, &body["error"], &body["error_codes"][0]),
            (
                r["status"].as_u64().unwrap() as u16,
                &r["error"],
                &r["code"]
            ),
            "{name}: {body}"
        );
        let recorded_fields: Vec<(String, Option<&Value>)> = match (&r["body"], &r["fields"]) {
            (Value::Object(b), _) => b.iter().map(|(k, v)| (k.clone(), Some(v))).collect(),
            (_, Value::Array(f)) => f
                .iter()
                .map(|k| (k.as_str().unwrap().to_string(), None))
                .collect(),
            _ => vec![],
        };
        for (field, value) in recorded_fields {
            let ours = body
                .get(&field)
                .unwrap_or_else(|| panic!("{name}: no {field} in {body}"));
            if let Some(value) = value {
                assert_eq!(
                    std::mem::discriminant(ours),
                    std::mem::discriminant(value),
                    "{name}: {field} has the recorded JSON type"
                );
            }
        }
        let description = body["error_description"].as_str().unwrap();
        let message = description
            .split_once(": ")
            .map(|(_, m)| m)
            .unwrap_or(description);
        let message = message
            .split_once("\r\nTrace ID")
            .or_else(|| message.split_once(" Trace ID:"))
            .map(|(m, _)| m)
            .unwrap_or(message);
        same_wording(r["message"].as_str().unwrap(), message, &name);
    }
}

#[test]
fn wording_ignores_numbers_guids_key_ids_and_urls_only() {
    assert_eq!(
        wording("Token too old: 441398"),
        wording("Token too old: 12")
    );
    assert_eq!(
        wording("for https://a.example/x. Please"),
        "for <url>. Please"
    );
    assert_eq!(
        wording("application xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx is"),
        wording("application 0b1c2d3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e is")
    );
    assert_eq!(
        wording("identifier DFA184AB5E2B3F6529B8CFCE195305014236E297 used"),
        wording("identifier -VE0qgvgcPfbWR-ki568qLaJ5jw used")
    );
    assert_ne!(wording("Token too old: 1"), wording("Token too new: 1"));
    // Quoted values (an issuer, a subject, an app name), whole: with colons, dots or slashes.
    assert_eq!(
        wording("subject 'repository_owner_id:6:environment:x'. Check"),
        wording("subject 'system:serviceaccount:agents:bedrock-agent'. Check")
    );
    assert_eq!(
        wording("ID 'http://TestSpWithCert'. Send"),
        "ID '<value>'. Send"
    );
    assert_ne!(
        wording("subject 'a'. Check"),
        wording("subject 'a'. Please check")
    );
    // A word the reporter redacted matches any word; only that word.
    same_wording(
        "in the tenant named xxxx. This can",
        "in the tenant named contoso.onmicrosoft.com. This can",
        "redacted",
    );
    let other = std::panic::catch_unwind(|| {
        same_wording(
            "in the tenant named xxxx. This can",
            "in the tenant named contoso.onmicrosoft.com. That can",
            "redacted",
        )
    });
    assert!(other.is_err(), "only the redacted word is free");
}

// ---- Bedrock ----

/// (a) for Bedrock: the AWS SDK for Rust (what the agent calls Bedrock with) reads each recorded
/// refusal, replayed, as a `ValidationException` with the recorded message.
#[tokio::test]
async fn the_sdk_reads_every_recorded_bedrock_refusal() {
    for (name, r) in recordings("bedrock") {
        let url = replay(&r).await;
        let conf = aws_sdk_bedrockruntime::Config::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_sdk_bedrockruntime::config::Region::new("us-east-2"))
            .endpoint_url(&url)
            .credentials_provider(aws_credential_types::Credentials::new(
                "ASIAEXAMPLE",
                "secret",
                Some("session".into()),
                None,
                "t",
            ))
            .build();
        let client = aws_sdk_bedrockruntime::Client::from_conf(conf);
        let message = r["message"].as_str().unwrap();
        let (validation, text) = match r["operation"].as_str().unwrap() {
            "Converse" => {
                let e = client
                    .converse()
                    .model_id(ids::BEDROCK_MODEL_ID)
                    .messages(
                        aws_sdk_bedrockruntime::types::Message::builder()
                            .role(aws_sdk_bedrockruntime::types::ConversationRole::User)
                            .content(aws_sdk_bedrockruntime::types::ContentBlock::Text(
                                "hi".into(),
                            ))
                            .build()
                            .unwrap(),
                    )
                    .send()
                    .await
                    .unwrap_err()
                    .into_service_error();
                (
                    e.is_validation_exception(),
                    e.meta().message().map(str::to_string),
                )
            }
            _ => {
                let e = client
                    .invoke_model()
                    .model_id(ids::BEDROCK_MODEL_ID)
                    .content_type("application/json")
                    .body(aws_smithy_types::Blob::new(match &r["request"] {
                        Value::String(raw) => raw.clone(),
                        other => other.to_string(),
                    }))
                    .send()
                    .await
                    .unwrap_err()
                    .into_service_error();
                (
                    e.is_validation_exception(),
                    e.meta().message().map(str::to_string),
                )
            }
        };
        assert!(validation, "{name}: a ValidationException");
        assert_eq!(text.as_deref(), Some(message), "{name}");
    }
}

/// (b) for Bedrock: the local Bedrock, sent the recording's request signed as the SDK signs it,
/// refuses it with the recorded status, error type and wording.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_bedrock_refuses_every_recorded_request_as_bedrock_did() {
    let cloud = cloud().await;
    let credentials = session_credentials(&cloud).await;
    for (name, r) in recordings("bedrock") {
        let action = match r["operation"].as_str().unwrap() {
            "Converse" => "converse",
            _ => "invoke",
        };
        let (status, error_type, body) = signed_bedrock_post(
            &cloud,
            credentials.clone(),
            // A model id in a path is percent-encoded, as the SDK sends it.
            &format!(
                "/model/{}/{action}",
                r["model_id"]
                    .as_str()
                    .unwrap_or(ids::BEDROCK_MODEL_ID)
                    .replace(':', "%3A")
            ),
            &r["request"],
        )
        .await;
        assert_eq!(
            status,
            r["status"].as_u64().unwrap() as u16,
            "{name}: {body}"
        );
        assert!(
            error_type
                .as_deref()
                .is_some_and(|t| t.split(':').next() == r["code"].as_str()),
            "{name}: x-amzn-errortype {error_type:?}"
        );
        let ours = body["message"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: {body}"));
        let recorded = r["message"].as_str().unwrap();
        if r["message_suffix"] == true {
            assert!(
                wording(ours).ends_with(&wording(recorded)),
                "{name}: ours «{ours}» ends with the recorded «{recorded}»"
            );
        } else {
            same_wording(recorded, ours, &name);
        }
    }
}
