//! The weather API with real agent tokens from the sidecar emulation and Open-Meteo emulated:
//! honest units, honest errors, and only agent identities with the right permission served.

use entra_federation::sidecar::SidecarClient;
use local_cloud::{Fault, LocalCloud, ids};
use serde_json::{Value, json};
use std::collections::HashMap;
use system_tests::*;
use weather_api::{ConfigError, WeatherConfig};

async fn weather_api(env: &HashMap<String, String>) -> String {
    let env = env.clone();
    let config = WeatherConfig::from_env_fn(move |k| env.get(k).cloned()).expect("config");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = weather_api::router(config).unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

async fn agent_bearer(cloud: &LocalCloud) -> String {
    // The sidecar's downstream API is never called here (only its token endpoints are).
    let (_unused, downstream) = dead_endpoint();
    let sidecar = SidecarClient::new(
        start_sidecar(cloud, true, &downstream)
            .await
            .parse()
            .unwrap(),
    )
    .unwrap();
    sidecar
        .autonomous_token("weather-api", ids::AGENT_CLIENT_ID)
        .await
        .unwrap()
        .authorization_header()
        .expose_secret()
        .to_string()
}

async fn get(url: &str, bearer: Option<&str>) -> (u16, Value, Option<String>) {
    let mut req = reqwest::Client::new().get(url);
    if let Some(b) = bearer {
        req = req.header("Authorization", b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let challenge = r
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string());
    (status, r.json().await.unwrap_or(Value::Null), challenge)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_gets_weather_with_the_units_it_asked_for() {
    let cloud = cloud().await;
    let api = weather_api(&env_of(&cloud)).await;
    let bearer = agent_bearer(&cloud).await;
    let (status, body, _) = get(&format!("{api}/weather?city=Dallas"), Some(&bearer)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (
            body["city"].as_str(),
            body["temperature_unit"].as_str(),
            body["wind_unit"].as_str(),
            body["humidity_unit"].as_str()
        ),
        (Some("Dallas"), Some("F"), Some("mph"), Some("%"))
    );
    assert_eq!(body["agent_app_id"], ids::AGENT_CLIENT_ID);
    assert_eq!(body["token_kind"], "app");
    assert_eq!(
        (&body["validated_by"], &body["data_source"]),
        (&json!("Agent Identity Token"), &json!("Open-Meteo API"))
    );
    assert!(body["temperature"].is_i64() && body["condition"].is_string());
    let (status, metric, _) = get(
        &format!("{api}/weather?city=Dallas&units=metric"),
        Some(&bearer),
    )
    .await;
    assert_eq!(status, 200, "{metric}");
    assert_eq!(
        (
            metric["temperature_unit"].as_str(),
            metric["wind_unit"].as_str()
        ),
        (Some("C"), Some("km/h"))
    );
    assert!(
        metric["temperature"].as_i64().unwrap() < body["temperature"].as_i64().unwrap(),
        "°C below °F for the same weather"
    );
    // A second request for the same city and units comes from the cache.
    let (status, again, _) = get(&format!("{api}/weather?city=dallas"), Some(&bearer)).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(
        (&again["city"], &again["temperature"], &again["condition"]),
        (&body["city"], &body["temperature"], &body["condition"])
    );
    assert_eq!(
        cloud.counter("open_meteo:forecast"),
        2,
        "one call per units, then cached"
    );

    let (status, f, _) = get(
        &format!("{api}/weather/forecast?city=Tokyo&days=3"),
        Some(&bearer),
    )
    .await;
    assert_eq!(status, 200, "{f}");
    assert_eq!(f["forecast"].as_array().unwrap().len(), 3);
    assert!(f["forecast"][0]["high"].as_i64() >= f["forecast"][0]["low"].as_i64());
    assert_eq!(f["forecast"][0]["day"], 1);
    assert_eq!(f["agent_app_id"], ids::AGENT_CLIENT_ID);
    let (health, body, _) = get(&format!("{api}/health"), None).await;
    assert_eq!(
        (health, body),
        (200, json!({"status": "healthy", "service": "Weather API"}))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_unknown_cities_and_upstream_failures_have_honest_statuses() {
    let cloud = cloud().await;
    let api = weather_api(&env_of(&cloud)).await;
    let bearer = agent_bearer(&cloud).await;
    let bad_city = json!({"error": "Invalid city", "message": "city must be 1-80 letters, spaces, '-', ''' or '.'"});
    for (query, status, expected) in [
        (
            "city=Atlantis".to_string(),
            404,
            json!({"error": "City not found", "message": "No city named 'Atlantis' is known to the geocoder"}),
        ),
        ("city=Dallas%3Cscript%3E".to_string(), 400, bad_city.clone()),
        (format!("city={}", "a".repeat(81)), 400, bad_city.clone()),
        (
            "city=Dallas&units=kelvin".to_string(),
            400,
            json!({"error": "Invalid units", "message": "units must be imperial or metric, not 'kelvin'"}),
        ),
    ] {
        let (s, body, _) = get(&format!("{api}/weather?{query}"), Some(&bearer)).await;
        assert_eq!((s, &body), (status, &expected), "{query}");
    }
    for days in ["0", "17", "abc"] {
        let (s, body, _) = get(
            &format!("{api}/weather/forecast?city=Paris&days={days}"),
            Some(&bearer),
        )
        .await;
        assert_eq!(
            (s, body),
            (
                400,
                json!({"error": "Invalid days", "message": "days must be a whole number from 1 to 16"})
            ),
            "days={days}"
        );
    }
    cloud.inject(Fault {
        target: "open_meteo:forecast".into(),
        status: 500,
        code: None,
        count: Some(1),
        retry_after: None,
        ..Default::default()
    });
    let (s, body, _) = get(&format!("{api}/weather?city=Paris"), Some(&bearer)).await;
    assert_eq!(
        (s, body),
        (
            502,
            json!({"error": "Bad answer from the weather service", "message": "Open-Meteo answered HTTP 500 Internal Server Error"})
        )
    );
    // A 4xx from Open-Meteo: its status, not its body (a public answer says what the caller can
    // act on; the body goes to the log).
    cloud.inject(Fault {
        target: "open_meteo:forecast".into(),
        status: 400,
        code: Some("internal-detail".into()),
        count: Some(1),
        retry_after: None,
        ..Default::default()
    });
    let (s, body, _) = get(&format!("{api}/weather?city=Paris"), Some(&bearer)).await;
    assert_eq!(
        (s, body),
        (
            502,
            json!({"error": "Bad answer from the weather service", "message": "Open-Meteo answered HTTP 400 Bad Request"})
        )
    );
    let (_dead, dead_url) = dead_endpoint();
    let mut env = env_of(&cloud);
    env.insert(
        "OPEN_METEO_GEOCODING_URL".into(),
        format!("{dead_url}/v1/search"),
    );
    let down = weather_api(&env).await;
    let (s, body, _) = get(&format!("{down}/weather?city=Paris"), Some(&bearer)).await;
    assert_eq!(
        (s, body["error"].as_str()),
        (503, Some("Weather service unavailable")),
        "{body}"
    );
    let message = body["message"].as_str().unwrap();
    assert!(
        message.starts_with("Open-Meteo unreachable: ") && !message.contains(&dead_url),
        "the reason, without the URL: {message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_refused_with_401_or_403() {
    let cloud = cloud().await;
    let api = weather_api(&env_of(&cloud)).await;
    let (s, body, challenge) = get(&format!("{api}/weather?city=Dallas"), None).await;
    assert_eq!(
        (s, body, challenge.as_deref()),
        (
            401,
            json!({"error": "Unauthorized", "message": "missing bearer token"}),
            Some("Bearer")
        )
    );
    let (s, body, challenge) = get(
        &format!("{api}/weather?city=Dallas"),
        Some("Bearer not.a.token"),
    )
    .await;
    assert_eq!((s, body["error"].as_str()), (401, Some("Unauthorized")));
    let message = body["message"].as_str().unwrap();
    assert!(message.starts_with("malformed token: "), "{message}");
    assert_eq!(
        challenge.as_deref(),
        Some(&*format!(
            "Bearer error=\"invalid_token\", error_description=\"{}\"",
            message.replace('"', "'")
        ))
    );
    // The Blueprint's own token (what a gated sidecar hands back) is valid but not an allowed agent.
    let (_unused, downstream) = dead_endpoint();
    let sidecar = start_sidecar(&cloud, false, &downstream).await;
    let blueprint: Value = reqwest::Client::new()
        .get(format!(
            "{sidecar}/AuthorizationHeaderUnauthenticated/weather-api?AgentIdentity={}",
            ids::AGENT_CLIENT_ID
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (s, body, challenge) = get(
        &format!("{api}/weather?city=Dallas"),
        blueprint["authorizationHeader"].as_str(),
    )
    .await;
    assert_eq!(
        (s, body, challenge),
        (
            403,
            json!({"error": "Forbidden", "message": format!("app {} is not an allowed agent identity", ids::BLUEPRINT_APP_ID)}),
            None
        ),
        "403 carries no challenge: the token is valid"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_acting_for_a_user_is_served_as_delegated() {
    let cloud = cloud().await;
    let api = weather_api(&env_of(&cloud)).await;
    let (_unused, downstream) = dead_endpoint();
    let sidecar = SidecarClient::new(
        start_sidecar(&cloud, false, &downstream)
            .await
            .parse()
            .unwrap(),
    )
    .unwrap();
    let user = dev_user_token(&cloud).await;
    let tu = sidecar
        .on_behalf_of_token("weather-api", ids::AGENT_CLIENT_ID, &user)
        .await
        .unwrap();
    let (s, body, _) = get(
        &format!("{api}/weather?city=London"),
        Some(tu.authorization_header().expose_secret()),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(
        (&body["token_kind"], &body["agent_app_id"], &body["city"]),
        (
            &json!("user"),
            &json!(ids::AGENT_CLIENT_ID),
            &json!("London")
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_503_while_token_validation_is_unavailable_and_recovers() {
    let cloud = cloud().await;
    let bearer = agent_bearer(&cloud).await;
    let unavailable = json!({"error": "Token validation unavailable", "message": "the tenant's signing keys are unavailable"});

    // The authority cannot be reached at all.
    let (_dead, dead_url) = dead_endpoint();
    let mut env = env_of(&cloud);
    env.insert("AZURE_AUTHORITY_HOST".into(), format!("{dead_url}/"));
    let cut_off = weather_api(&env).await;
    let (s, body, challenge) = get(&format!("{cut_off}/weather?city=Dallas"), Some(&bearer)).await;
    assert_eq!(
        (s, &body, challenge),
        (503, &unavailable, None),
        "a valid token is not called invalid when the keys cannot be fetched"
    );
    let (s, _, _) = get(&format!("{cut_off}/health"), None).await;
    assert_eq!(s, 200, "liveness does not depend on the authority");

    // The authority answers, but its metadata or its keys fail; each recovers once they are back.
    for target in ["entra_metadata", "entra_jwks"] {
        let api = weather_api(&env_of(&cloud)).await;
        let before = cloud.counter(target);
        cloud.inject(Fault {
            target: target.into(),
            status: 503,
            code: None,
            count: None,
            retry_after: None,
            ..Default::default()
        });
        let (s, body, challenge) = get(&format!("{api}/weather?city=Dallas"), Some(&bearer)).await;
        assert_eq!((s, &body, challenge), (503, &unavailable, None), "{target}");
        assert!(
            cloud.counter(target) > before,
            "{target}: a fetch was attempted"
        );
        cloud.clear_faults();
        // The failed fetch is backed off from (about a second): ask until it is over.
        let (s, body, _) = within("recovery after the key backoff", async {
            loop {
                let answer = get(&format!("{api}/weather?city=Dallas"), Some(&bearer)).await;
                if answer.0 != 503 {
                    return answer;
                }
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        })
        .await;
        assert_eq!(
            (s, body["city"].as_str()),
            (200, Some("Dallas")),
            "{target}: recovered once the keys could be fetched: {body}"
        );
    }
}

#[test]
fn refuses_to_start_without_what_validation_needs() {
    let full: HashMap<&str, &str> = [
        ("TENANT_ID", ids::TENANT_ID),
        ("WEATHER_API_AUDIENCE", ids::WEATHER_API_AUDIENCE),
        ("ALLOWED_AGENT_APP_IDS", ids::AGENT_CLIENT_ID),
        ("REQUIRED_APP_ROLE", "Weather.Read"),
    ]
    .into();
    let config = WeatherConfig::from_env_fn(|k| full.get(k).map(|v| v.to_string()))
        .expect("a complete configuration");
    assert_eq!(config.port, 8080);
    for (missing, named) in [
        ("TENANT_ID", "TENANT_ID"),
        ("WEATHER_API_AUDIENCE", "WEATHER_API_AUDIENCE"),
        ("ALLOWED_AGENT_APP_IDS", "ALLOWED_AGENT_APP_IDS"),
        ("REQUIRED_APP_ROLE", "REQUIRED_APP_ROLE or REQUIRED_SCOPE"),
    ] {
        let err = WeatherConfig::from_env_fn(|k| {
            (k != missing)
                .then(|| full.get(k).map(|v| v.to_string()))
                .flatten()
        })
        .unwrap_err();
        assert!(
            matches!(err, ConfigError::Missing { name, .. } if name == named),
            "{missing}: {err:?}"
        );
    }
    let err = WeatherConfig::from_env_fn(|k| {
        if k == "PORT" {
            Some("http".into())
        } else {
            full.get(k).map(|v| v.to_string())
        }
    })
    .unwrap_err();
    assert!(
        err.to_string() == "PORT='http' is invalid: invalid digit found in string",
        "{err:?}"
    );
}

/// A handler that panics answers 500 with `{error, message}`; the connection is not dropped.
#[tokio::test]
async fn a_panicking_handler_answers_500_json() {
    let app = weather_api::harden(panicking_router());
    let (status, body) = get_json_in_process(app, "/boom").await;
    assert_eq!(
        (status, body),
        (
            500,
            serde_json::json!({"error": "Internal Server Error", "message": "internal error: the request could not be completed"})
        )
    );
}

/// Issue 12 point 22: SIGTERM (a container stop, the binary as PID 1) stops the API at once,
/// exit status 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_stops_on_sigterm() {
    let cloud = cloud().await;
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_weather-api"));
    for var in AMBIENT_VARIABLES {
        cmd.env_remove(var);
    }
    cmd.envs(env_of(&cloud)).env("PORT", "0");
    let stopped = sigterm_once_ready(cmd, "weather-api listening").await;
    assert!(stopped.status.success(), "exit 0: {stopped:?}");
    assert!(
        stopped.took < std::time::Duration::from_secs(5),
        "{stopped:?}"
    );
    assert!(
        stopped.output.contains("weather-api stopped"),
        "{stopped:?}"
    );
}

/// Issue 12 point 23: a refusal tells the caller what was wrong with its token, not what the API
/// expects (the expected issuer names the tenant's authority): that goes to the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_issuer_is_not_told_the_expected_one() {
    use base64::Engine;
    let cloud = cloud().await;
    let api = weather_api(&env_of(&cloud)).await;
    let bearer = agent_bearer(&cloud).await;
    let token = bearer.strip_prefix("Bearer ").unwrap();
    let payload = token.split('.').nth(1).unwrap();
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut claims: Value = serde_json::from_slice(&engine.decode(payload).unwrap()).unwrap();
    let expected = claims["iss"].as_str().unwrap().to_string();
    claims["iss"] = json!("https://sts.windows.net/00000000-0000-0000-0000-000000000000/");
    let v1 = claims["ver"] == "1.0";
    let forged = cloud.state().tenant_keys.read().unwrap().sign(&claims, v1);
    let (s, body, challenge) = get(
        &format!("{api}/weather?city=Dallas"),
        Some(&format!("Bearer {forged}")),
    )
    .await;
    assert_eq!(s, 401, "{body}");
    let shown = format!("{body} {}", challenge.unwrap_or_default());
    assert!(
        shown.contains("issuer"),
        "says the issuer is refused: {shown}"
    );
    assert!(
        !shown.contains(&expected),
        "names no expected issuer: {shown}"
    );
}

/// `weather-api --help` names every variable the service reads (clap's `env`).
#[test]
fn help_names_every_variable() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_weather-api"))
        .arg("--help")
        .env_clear()
        .output()
        .expect("weather-api runs");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for name in [
        "TENANT_ID",
        "WEATHER_API_AUDIENCE",
        "WEATHER_API_APP_ID",
        "ALLOWED_AGENT_APP_IDS",
        "REQUIRED_APP_ROLE",
        "REQUIRED_SCOPE",
        "EXPECTED_BLUEPRINT_APP_ID",
        "AZURE_AUTHORITY_HOST",
        "WEATHER_API_VERIFIED_TOKEN_CACHE",
        "ENTRA_FEDERATION_CA_FILE",
        "OPEN_METEO_GEOCODING_URL",
        "OPEN_METEO_FORECAST_URL",
        "PORT",
    ] {
        assert!(
            help.contains(&format!("[env: {name}]")),
            "{name} missing from:\n{help}"
        );
    }
}

/// Faults of the weather source other than an HTTP status (a reset mid-answer, garbage, a
/// truncated body, a proxy's HTML page): each is a 502 or 503 JSON answer that names the
/// weather service, never a panic or a 500, and the next call, the fault gone, is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_weather_source_is_a_502_or_503_naming_it() {
    use local_cloud::FaultKind;
    let cloud = cloud().await;
    let api = weather_api(&env_of(&cloud)).await;
    let bearer = agent_bearer(&cloud).await;
    // A city per case: the API caches each city's weather for five minutes.
    let mut cities = [
        "Seattle", "Chicago", "Miami", "Denver", "Boston", "Austin", "Dallas", "Paris",
    ]
    .into_iter();
    for kind in [
        FaultKind::Reset,
        FaultKind::Garbage,
        FaultKind::Truncated,
        FaultKind::WrongContentType,
    ] {
        for target in ["open_meteo:search", "open_meteo:forecast"] {
            let city = cities.next().unwrap();
            cloud.inject(Fault {
                count: Some(1),
                ..Fault::of_kind(target, kind)
            });
            let (s, body, _) = get(&format!("{api}/weather?city={city}"), Some(&bearer)).await;
            // A reset is the network failing (503, as for an unreachable service); an answer
            // that is not Open-Meteo's is a bad answer (502).
            let expected = if kind == FaultKind::Reset { 503 } else { 502 };
            assert_eq!(s, expected, "{target} {kind:?}: {body}");
            assert!(
                body["error"]
                    .as_str()
                    .is_some_and(|e| e.to_lowercase().contains("weather service")),
                "{target} {kind:?}: {body}"
            );
            let (s, _, _) = get(&format!("{api}/weather?city={city}"), Some(&bearer)).await;
            assert_eq!(s, 200, "{target} {kind:?}: served once the fault is gone");
        }
    }
}
