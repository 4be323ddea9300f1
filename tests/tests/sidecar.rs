//! The Agent ID sidecar emulation, through the library's sidecar client: autonomous and
//! on-behalf-of agent tokens that the downstream validator accepts; the 1.1.0 gating named; a
//! Blueprint without its federated credential failing the way Entra fails.

use entra_federation::SecretString;
use entra_federation::sidecar::{OVERRIDE_SETTING, SidecarClient, SidecarError};
use entra_federation::validate::{KindPolicy, Policy, TokenKind, TokenValidator, ValidatorConfig};
use local_cloud::{LocalCloud, Registry, ids};
use system_tests::*;

async fn sidecar(
    cloud: &LocalCloud,
    allow_overrides: bool,
    downstream_base: &str,
) -> SidecarClient {
    SidecarClient::new(
        start_sidecar(cloud, allow_overrides, downstream_base)
            .await
            .parse()
            .unwrap(),
    )
    .unwrap()
}

fn weather_validator(cloud: &LocalCloud) -> TokenValidator {
    let mut c = ValidatorConfig::new(
        ids::TENANT_ID,
        vec![ids::WEATHER_API_AUDIENCE.into()],
        Policy::new(
            [ids::AGENT_CLIENT_ID],
            KindPolicy::Require(ids::WEATHER_PERMISSION.into()),
            KindPolicy::Require(ids::WEATHER_PERMISSION.into()),
        )
        .with_expected_blueprint(ids::BLUEPRINT_APP_ID),
    );
    c.authority = format!("{}/", cloud.http_url()).parse().unwrap();
    TokenValidator::new(c).unwrap()
}

/// A downstream base URL where nothing listens, for sidecars whose downstream API a test never
/// calls: the port is held by a socket bound and never listening (connections are refused), and
/// stays reserved while the returned socket lives.
fn dead_upstream() -> (String, tokio::net::TcpSocket) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(([127, 0, 0, 1], 0).into()).unwrap();
    let url = format!("http://{}", socket.local_addr().unwrap());
    (url, socket)
}

async fn user_token(cloud: &LocalCloud) -> SecretString {
    dev_user_token(cloud).await
}

fn bearer(t: &entra_federation::sidecar::AgentToken) -> String {
    t.authorization_header().expose_secret().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autonomous_agent_token_passes_the_downstream_validator() {
    let cloud = cloud().await;
    let (dead, _reserved) = dead_upstream();
    let sidecar = sidecar(&cloud, true, &dead).await;
    sidecar.health().await.unwrap();
    let token = sidecar
        .autonomous_token("weather-api", ids::AGENT_CLIENT_ID)
        .await
        .expect("agent token");
    assert_eq!(token.app_id(), Some(ids::AGENT_CLIENT_ID));
    assert_eq!(
        token.claims().aud.as_deref(),
        Some(ids::WEATHER_API_AUDIENCE),
        "minted for the weather API, never Graph"
    );
    let ok = weather_validator(&cloud)
        .validate_header(Some(&bearer(&token)))
        .await
        .expect("the weather API accepts it");
    assert_eq!(ok.kind, TokenKind::AppOnly);
    assert_eq!(
        ok.claims.xms_par_app_azp.as_deref(),
        Some(ids::BLUEPRINT_APP_ID)
    );
    assert_eq!(ok.claims.roles, vec![ids::WEATHER_PERMISSION.to_string()]);
    assert!(
        ok.claims
            .xms_act_fct
            .as_deref()
            .unwrap()
            .split(' ')
            .any(|f| f == "11")
    );
    // The Blueprint authenticated with the managed-identity assertion: identity endpoint, then T1, then TR.
    assert_eq!(cloud.counter("identity_endpoint"), 1);
    assert_eq!(cloud.counter("entra_token"), 2);
}

/// The autonomous agent token has the claim set of Microsoft's published sample
/// (`tests/recorded/entra/agent-autonomous-token.json`): the same claim names (plus `roles`, the
/// app role the weather API grants the agent), the same facet values, `oid` the agent identity's
/// service principal and `xms_par_app_azp` its Blueprint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autonomous_agent_token_has_the_published_claim_set() {
    let sample = recorded("entra/agent-autonomous-token.json");
    let sample = sample["claims"].as_object().unwrap();
    let cloud = cloud().await;
    let (dead, _reserved) = dead_upstream();
    let sidecar = sidecar(&cloud, true, &dead).await;
    let token = sidecar
        .autonomous_token("weather-api", ids::AGENT_CLIENT_ID)
        .await
        .expect("agent token");
    let header = bearer(&token);
    let ours = unverified_claims(header.trim_start_matches("Bearer "));
    let ours = ours.as_object().unwrap();
    let names = |m: &serde_json::Map<String, serde_json::Value>| {
        m.keys().cloned().collect::<std::collections::BTreeSet<_>>()
    };
    let mut expected = names(sample);
    expected.insert("roles".into());
    assert_eq!(names(ours), expected, "the published claim names");
    for (name, value) in sample {
        assert_eq!(
            std::mem::discriminant(&ours[name]),
            std::mem::discriminant(value),
            "{name} has the published type"
        );
    }
    for name in [
        "appidacr",
        "idtyp",
        "ver",
        "xms_act_fct",
        "xms_idrel",
        "xms_sub_fct",
        "xms_tnt_fct",
    ] {
        assert_eq!(ours[name], sample[name], "{name}");
    }
    let agent_sp = cloud
        .state()
        .registry()
        .app(ids::AGENT_CLIENT_ID)
        .and_then(|a| a.service_principal_object_id.clone())
        .unwrap();
    assert_eq!(ours["oid"], serde_json::json!(agent_sp));
    assert_eq!(ours["appid"], serde_json::json!(ids::AGENT_CLIENT_ID));
    assert_eq!(
        ours["xms_par_app_azp"],
        serde_json::json!(ids::BLUEPRINT_APP_ID)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_behalf_of_token_carries_the_user_and_the_delegated_scope() {
    let cloud = cloud().await;
    let (dead, _reserved) = dead_upstream();
    let sidecar = sidecar(&cloud, false, &dead).await;
    let user = user_token(&cloud).await;
    let token = sidecar
        .on_behalf_of_token("weather-api", ids::AGENT_CLIENT_ID, &user)
        .await
        .expect("OBO token");
    let ok = weather_validator(&cloud)
        .validate_header(Some(&bearer(&token)))
        .await
        .expect("accepted");
    assert_eq!(ok.kind, TokenKind::Delegated);
    assert_eq!(ok.claims.oid.as_deref(), Some(ids::DEV_USER_OID));
    assert_eq!(ok.claims.upn.as_deref(), Some(ids::DEV_USER_UPN));
    assert_eq!(ok.claims.scp.as_deref(), Some(ids::WEATHER_PERMISSION));

    let no_user = sidecar
        .on_behalf_of_token(
            "weather-api",
            ids::AGENT_CLIENT_ID,
            &SecretString::new("not-a-token".into()),
        )
        .await
        .unwrap_err();
    let SidecarError::UserTokenRejected { www_authenticate } = &no_user else {
        panic!("{no_user}")
    };
    // ASP.NET's JwtBearer describes only some failures; a malformed token gets none.
    assert_eq!(www_authenticate, "Bearer error=\"invalid_token\"");
    assert_eq!(
        cloud.counter("entra_token"),
        3,
        "sign-in, T1 and the OBO exchange; nothing for the refused token"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gated_agent_identity_is_a_named_error_not_the_blueprints_token() {
    let cloud = cloud().await;
    let (dead, _reserved) = dead_upstream();
    let sidecar = sidecar(&cloud, false, &dead).await;
    let err = sidecar
        .autonomous_token("weather-api", ids::AGENT_CLIENT_ID)
        .await
        .unwrap_err();
    let SidecarError::AgentIdentityIgnored { requested, got } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(
        (requested.as_str(), got.as_str()),
        (ids::AGENT_CLIENT_ID, ids::BLUEPRINT_APP_ID)
    );
    assert!(err.to_string().contains(OVERRIDE_SETTING), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blueprint_without_its_federated_credential_fails_as_entra_does() {
    let cloud = cloud().await;
    cloud.edit_registry(|r| {
        r.app_mut(ids::BLUEPRINT_APP_ID)
            .unwrap()
            .federated_credentials
            .clear()
    });
    let (dead, _reserved) = dead_upstream();
    let sidecar = sidecar(&cloud, true, &dead).await;
    let err = sidecar
        .autonomous_token("weather-api", ids::AGENT_CLIENT_ID)
        .await
        .unwrap_err();
    let SidecarError::Problem { status, detail, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(*status, 401, "MSAL service errors surface as 401");
    assert!(detail.starts_with("AADSTS700211"), "{detail}");
    assert!(
        err.to_string().contains("Blueprint's federated credential"),
        "{err}"
    );
    let unknown = sidecar
        .autonomous_token("nope", ids::AGENT_CLIENT_ID)
        .await
        .unwrap_err();
    assert!(
        matches!(&unknown, SidecarError::Problem { status: 400, detail, .. } if detail == "Not able to resolve 'nope'."),
        "{unknown}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downstream_api_keeps_the_token_inside_the_sidecar() {
    let cloud = cloud().await;
    // A downstream API that validates what the sidecar sends it.
    let validator = weather_validator(&cloud);
    let api = axum::Router::new().route(
        "/weather",
        axum::routing::get(move |headers: axum::http::HeaderMap| {
            let v = validator.clone();
            async move {
                let ok = v
                    .validate_header(headers.get("authorization").and_then(|h| h.to_str().ok()))
                    .await
                    .unwrap();
                axum::Json(serde_json::json!({"caller": ok.claims.upn}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, api).await });
    let sidecar = sidecar(&cloud, false, &base).await;
    let user = user_token(&cloud).await;
    let r = sidecar
        .downstream_api("weather-api", ids::AGENT_CLIENT_ID, &user, "/weather")
        .await
        .expect("downstream call");
    assert_eq!(r.status_code, 200);
    assert_eq!(
        r.content.as_deref(),
        Some(&*format!("{{\"caller\":\"{}\"}}", ids::DEV_USER_UPN))
    );
}

#[tokio::test]
async fn the_dead_upstream_refuses_connections() {
    let (dead, _reserved) = dead_upstream();
    let err = tokio::net::TcpStream::connect(dead.trim_start_matches("http://"))
        .await
        .expect_err("nothing listens on a bound, non-listening socket");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
}

/// The Entra SDK for Agent ID keeps the tokens it acquires in an in-memory cache (its FAQ: "Token
/// Caching: In-memory, distributed", MSAL underneath): a repeated request is answered without
/// Entra, an on-behalf-of token is kept per user, and a token is acquired again once it is within
/// MSAL's five minutes of expiry.
#[tokio::test(start_paused = true)]
async fn repeated_requests_are_answered_from_the_sidecars_token_cache() {
    let mut registry = Registry::tutorial_default();
    // Real Entra picks 60-90 minutes at random; one hour keeps the bounds below exact.
    registry.lifetimes.access_token_min = 3600;
    registry.lifetimes.access_token_max = 3600;
    let cloud = cloud_with(registry, TokioTime::new()).await;
    let (dead, _reserved) = dead_upstream();
    let sidecar = sidecar(&cloud, true, &dead).await;
    let user = user_token(&cloud).await;
    let other_user = user_token(&cloud).await;
    cloud.state().reset_counters();

    let first = sidecar
        .autonomous_token("weather-api", ids::AGENT_CLIENT_ID)
        .await
        .unwrap();
    let again = sidecar
        .autonomous_token("weather-api", ids::AGENT_CLIENT_ID)
        .await
        .unwrap();
    // Compared without printing them.
    assert!(
        bearer(&first) == bearer(&again),
        "the same token, from the cache"
    );
    assert_eq!(cloud.counter("identity_endpoint"), 1);
    assert_eq!(cloud.counter("entra_token"), 2, "T1 and TR, once");

    for u in [&user, &user] {
        sidecar
            .on_behalf_of_token("weather-api", ids::AGENT_CLIENT_ID, u)
            .await
            .unwrap();
    }
    assert_eq!(
        cloud.counter("entra_token"),
        3,
        "one OBO exchange for the user; T1 from the cache"
    );
    sidecar
        .on_behalf_of_token("weather-api", ids::AGENT_CLIENT_ID, &other_user)
        .await
        .unwrap();
    assert_eq!(
        cloud.counter("entra_token"),
        4,
        "another user: another exchange"
    );

    // Entra's tokens here last an hour: at 54 minutes they are still served from the cache; at
    // 56 they are within MSAL's five minutes of expiry.
    tokio::time::advance(std::time::Duration::from_secs(54 * 60)).await;
    let still = sidecar
        .autonomous_token("weather-api", ids::AGENT_CLIENT_ID)
        .await
        .unwrap();
    assert!(bearer(&first) == bearer(&still), "still the cached token");
    assert_eq!(cloud.counter("entra_token"), 4);
    tokio::time::advance(std::time::Duration::from_secs(2 * 60)).await;
    let later = sidecar
        .autonomous_token("weather-api", ids::AGENT_CLIENT_ID)
        .await
        .unwrap();
    assert!(
        bearer(&first) != bearer(&later),
        "a fresh token near expiry"
    );
    assert_eq!(
        cloud.counter("entra_token"),
        6,
        "T1 and TR again (T1 was as old as TR)"
    );
}

/// Sidecar 1.1.x sets `AllowWebApiToBeAuthorizedByACL`: a caller's token is checked as JwtBearer
/// checks it (key, issuer, Blueprint audience, lifetime) and nothing more. A token of another
/// client app, for another of the Blueprint's scopes, is accepted: which clients and scopes may
/// drive the agent is the agent's decision (llm-agent checks them), not the sidecar's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_tokens_are_authorised_by_acl_only_no_scope_or_client_check() {
    const OTHER_CLIENT: &str = "9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b";
    let cloud = cloud().await;
    cloud.edit_registry(|r| {
        let blueprint = r.app_mut(ids::BLUEPRINT_APP_ID).unwrap();
        blueprint.exposed_scopes.push("Profile.Read".into());
        blueprint
            .delegated_grants
            .push(local_cloud::registry::DelegatedGrant {
                client_app_id: OTHER_CLIENT.into(),
                scope: "Profile.Read".into(),
            });
        r.apps.push(local_cloud::registry::App {
            display_name: "Another client".into(),
            app_id: OTHER_CLIENT.into(),
            service_principal_object_id: Some("2d3e4f5a-6b7c-4d8e-9f0a-1b2c3d4e5f6a".into()),
            requested_access_token_version: Some(2),
            ..Default::default()
        });
    });
    let other = SecretString::new(
        cloud
            .dev_user_token_for(
                OTHER_CLIENT,
                &format!("api://{}/Profile.Read openid", ids::BLUEPRINT_APP_ID),
            )
            .await
            .expect("the other client signs in"),
    );
    let (dead, _reserved) = dead_upstream();
    let sidecar = sidecar(&cloud, true, &dead).await;
    let ok = sidecar
        .on_behalf_of_token("weather-api", ids::AGENT_CLIENT_ID, &other)
        .await;
    assert!(
        ok.is_ok(),
        "the sidecar authorises by ACL only: {:?}",
        ok.err()
    );
}

/// The sidecar's tokens are cached per (agent, resource) as MSAL caches them: while Entra fails,
/// what the cache holds is still served, and only what it does not hold fails (with Entra's
/// error as the sidecar's 401 problem). Once Entra recovers, the missing token is acquired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entra_fault_fails_only_the_tokens_the_cache_does_not_hold() {
    let cloud = cloud().await;
    let (dead, _reserved) = dead_upstream();
    let sidecar = sidecar(&cloud, true, &dead).await;
    let user = user_token(&cloud).await;
    let warm = sidecar
        .autonomous_token("weather-api", ids::AGENT_CLIENT_ID)
        .await
        .unwrap();
    cloud.state().inject(local_cloud::Fault {
        target: "entra_token".into(),
        status: 503,
        code: Some("temporarily_unavailable".into()),
        count: None,
        retry_after: None,
        ..Default::default()
    });
    let cached = sidecar
        .autonomous_token("weather-api", ids::AGENT_CLIENT_ID)
        .await
        .expect("the cached (agent, weather API) token is served while Entra fails");
    assert!(bearer(&warm) == bearer(&cached));
    let refused = sidecar
        .on_behalf_of_token("weather-api", ids::AGENT_CLIENT_ID, &user)
        .await
        .expect_err("an OBO token for a new user needs Entra");
    assert!(
        refused.to_string().contains("temporarily_unavailable")
            || refused.to_string().contains("AADSTS"),
        "Entra's error reaches the caller: {refused}"
    );
    cloud.state().clear_faults();
    sidecar
        .on_behalf_of_token("weather-api", ids::AGENT_CLIENT_ID, &user)
        .await
        .expect("acquired once Entra recovers");
}

/// `/DownstreamApi` as sidecar 1.1.x does it: the method from `optionsOverride.HttpMethod`, the
/// caller's body forwarded when it has a Content-Type, and the downstream's own content headers
/// returned (no invented ones); `content` is null when the downstream sends no Content-Length
/// (a chunked body), as HttpContent gives it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downstream_api_forwards_method_and_body_and_returns_the_downstreams_content_headers() {
    use axum::http::{HeaderMap, Method};
    let cloud = cloud().await;
    let api = axum::Router::new()
        .route(
            "/echo",
            axum::routing::any(
                |method: Method, headers: HeaderMap, body: String| async move {
                    let content_type = headers
                        .get("content-type")
                        .map(|v| v.to_str().unwrap().to_string());
                    (
                        [
                            ("content-language", "de-DE"),
                            ("x-not-a-content-header", "1"),
                        ],
                        axum::Json(serde_json::json!({
                            "method": method.as_str(),
                            "body": body,
                            "content_type": content_type,
                        })),
                    )
                },
            ),
        )
        .route(
            "/chunked",
            axum::routing::get(|| async {
                let chunks = futures::stream::iter([Ok::<_, std::io::Error>("part")]);
                axum::body::Body::from_stream(chunks)
            }),
        )
        .route(
            "/big",
            axum::routing::get(|| async { "x".repeat((1 << 20) + 1) }),
        )
        .route(
            "/just-fits",
            axum::routing::get(|| async { "x".repeat(1 << 20) }),
        )
        .route(
            // Control characters: six times longer once the sidecar writes them into its JSON.
            "/escaped",
            axum::routing::get(|| async { "\u{1}".repeat(300 * 1024) }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, api).await });
    let sidecar_url = start_sidecar(&cloud, false, &base).await;
    let user = user_token(&cloud).await;
    let call = |path: &str, method: Option<&str>, body: Option<&str>| {
        let mut url =
            reqwest::Url::parse(&format!("{sidecar_url}/DownstreamApi/weather-api")).unwrap();
        url.query_pairs_mut()
            .append_pair("AgentIdentity", ids::AGENT_CLIENT_ID)
            .append_pair("optionsOverride.RelativePath", path);
        if let Some(m) = method {
            url.query_pairs_mut()
                .append_pair("optionsOverride.HttpMethod", m);
        }
        let mut req = reqwest::Client::new()
            .post(url)
            .bearer_auth(user.expose_secret());
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        async move {
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.json::<serde_json::Value>().await.unwrap()
        }
    };
    let answer = call("/echo", Some("PUT"), Some(r#"{"city":"Dallas"}"#)).await;
    let echoed: serde_json::Value =
        serde_json::from_str(answer["content"].as_str().unwrap()).unwrap();
    assert_eq!(echoed["method"], "PUT");
    assert_eq!(echoed["body"], r#"{"city":"Dallas"}"#);
    assert_eq!(echoed["content_type"], "application/json");
    let headers = &answer["headers"];
    assert_eq!(headers["Content-Language"], serde_json::json!(["de-DE"]));
    assert_eq!(
        headers["Content-Type"],
        serde_json::json!(["application/json"])
    );
    assert!(headers.get("x-not-a-content-header").is_none(), "{headers}");
    // Without a Content-Type the body stays behind; the configured method (GET) applies.
    let bare = call("/echo", None, None).await;
    let echoed: serde_json::Value =
        serde_json::from_str(bare["content"].as_str().unwrap()).unwrap();
    assert_eq!(
        (echoed["method"].as_str(), echoed["body"].as_str()),
        (Some("GET"), Some(""))
    );
    // Only the methods of an API call: CONNECT and TRACE are refused.
    let mut url = reqwest::Url::parse(&format!("{sidecar_url}/DownstreamApi/weather-api")).unwrap();
    url.query_pairs_mut()
        .append_pair("AgentIdentity", ids::AGENT_CLIENT_ID)
        .append_pair("optionsOverride.RelativePath", "/echo")
        .append_pair("optionsOverride.HttpMethod", "TRACE");
    let refused = reqwest::Client::new()
        .post(url)
        .bearer_auth(user.expose_secret())
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    let chunked = call("/chunked", None, None).await;
    assert_eq!(chunked["statusCode"], 200);
    assert!(chunked["content"].is_null(), "{chunked}");
    assert!(
        chunked["headers"].get("Content-Length").is_none(),
        "{chunked}"
    );
    // At most 1 MiB of the downstream's answer is relayed; more is the sidecar's 500 problem.
    let fits = call("/just-fits", None, None).await;
    assert_eq!(fits["content"].as_str().map(str::len), Some(1 << 20));
    // What the sidecar relays, the library's client reads, however the JSON grew.
    let client = SidecarClient::new(sidecar_url.parse().unwrap()).unwrap();
    for (path, len) in [("/just-fits", 1 << 20), ("/escaped", 300 * 1024)] {
        let r = client
            .downstream_api("weather-api", ids::AGENT_CLIENT_ID, &user, path)
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(r.content.map(|c| c.len()), Some(len), "{path}");
    }
    let mut url = reqwest::Url::parse(&format!("{sidecar_url}/DownstreamApi/weather-api")).unwrap();
    url.query_pairs_mut()
        .append_pair("AgentIdentity", ids::AGENT_CLIENT_ID)
        .append_pair("optionsOverride.RelativePath", "/big");
    let big = reqwest::Client::new()
        .post(url)
        .bearer_auth(user.expose_secret())
        .send()
        .await
        .unwrap();
    assert_eq!(big.status(), 500);
    let problem: serde_json::Value = big.json().await.unwrap();
    assert!(
        problem["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("over 1 MiB"),
        "{problem}"
    );
}

/// Faults at the sidecar itself (an error status, a reset mid-answer, garbage, a truncated body,
/// a proxy's HTML page, a hang past the client's 30 s timeout): the client's error is typed and
/// names the sidecar, and the next call, the fault gone, gets the token.
#[tokio::test(start_paused = true)]
async fn faults_at_the_sidecar_are_typed_errors_naming_it() {
    use local_cloud::{Fault, FaultKind};
    let cloud = cloud().await;
    let (dead, _reserved) = dead_upstream();
    let sidecar = sidecar(&cloud, true, &dead).await;
    let route = "sidecar:AuthorizationHeaderUnauthenticated";
    for fault in [
        Fault::status(route, 500, None),
        Fault::of_kind(route, FaultKind::Reset),
        Fault::of_kind(route, FaultKind::Garbage),
        Fault::of_kind(route, FaultKind::Truncated),
        Fault::of_kind(route, FaultKind::WrongContentType),
        Fault::of_kind(route, FaultKind::Hang),
    ] {
        let what = format!("{:?} {}", fault.kind, fault.status);
        cloud.inject(Fault {
            count: Some(1),
            ..fault
        });
        let err = sidecar
            .autonomous_token("weather-api", ids::AGENT_CLIENT_ID)
            .await
            .expect_err(&what);
        assert!(err.to_string().contains("sidecar"), "{what}: {err}");
        sidecar
            .autonomous_token("weather-api", ids::AGENT_CLIENT_ID)
            .await
            .unwrap_or_else(|e| panic!("{what}: after the fault: {e}"));
    }
}
