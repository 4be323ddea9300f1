//! The weather API with real agent tokens from the sidecar emulation and Open-Meteo emulated:
//! honest units, honest errors, and only agent identities with the right permission served.

use entra_federation::sidecar::SidecarClient;
use local_cloud::{Fault, LocalCloud, ids};
use serde_json::Value;
use std::collections::HashMap;
use system_tests::*;
use weather_api::WeatherConfig;

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
    let sidecar = SidecarClient::new(
        start_sidecar(cloud, true, "http://127.0.0.1:9")
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
    assert!(body["temperature"].is_i64() && body["condition"].is_string());
    let (_, metric, _) = get(
        &format!("{api}/weather?city=Dallas&units=metric"),
        Some(&bearer),
    )
    .await;
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
    get(&format!("{api}/weather?city=dallas"), Some(&bearer)).await;
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
    assert_eq!(status, 200);
    assert_eq!(f["forecast"].as_array().unwrap().len(), 3);
    assert!(f["forecast"][0]["high"].as_i64() >= f["forecast"][0]["low"].as_i64());
    assert_eq!(f["forecast"][0]["day"], 1);
    let (health, _, _) = get(&format!("{api}/health"), None).await;
    assert_eq!(health, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_unknown_cities_and_upstream_failures_have_honest_statuses() {
    let cloud = cloud().await;
    let api = weather_api(&env_of(&cloud)).await;
    let bearer = agent_bearer(&cloud).await;
    for (query, status) in [
        ("city=Atlantis", 404),
        ("city=Dallas%3Cscript%3E", 400),
        (&*format!("city={}", "a".repeat(81)), 400),
        ("city=Dallas&units=kelvin", 400),
    ] {
        let (s, body, _) = get(&format!("{api}/weather?{query}"), Some(&bearer)).await;
        assert_eq!(s, status, "{query}: {body}");
        assert!(
            body["error"].is_string() && body["message"].is_string(),
            "{body}"
        );
    }
    for days in ["0", "17", "abc"] {
        let (s, _, _) = get(
            &format!("{api}/weather/forecast?city=Paris&days={days}"),
            Some(&bearer),
        )
        .await;
        assert_eq!(s, 400, "days={days}");
    }
    cloud.inject(Fault {
        target: "open_meteo:forecast".into(),
        status: 500,
        code: None,
        count: Some(1),
        retry_after: None,
    });
    let (s, body, _) = get(&format!("{api}/weather?city=Paris"), Some(&bearer)).await;
    assert_eq!(s, 502, "{body}");
    let mut env = env_of(&cloud);
    env.insert(
        "OPEN_METEO_GEOCODING_URL".into(),
        "http://127.0.0.1:9/v1/search".into(),
    );
    let down = weather_api(&env).await;
    let (s, body, _) = get(&format!("{down}/weather?city=Paris"), Some(&bearer)).await;
    assert_eq!(s, 503, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_refused_with_401_or_403() {
    let cloud = cloud().await;
    let api = weather_api(&env_of(&cloud)).await;
    let (s, body, challenge) = get(&format!("{api}/weather?city=Dallas"), None).await;
    assert_eq!((s, challenge.as_deref()), (401, Some("Bearer")), "{body}");
    let (s, _, challenge) = get(
        &format!("{api}/weather?city=Dallas"),
        Some("Bearer not.a.token"),
    )
    .await;
    assert_eq!(s, 401);
    assert!(
        challenge
            .unwrap()
            .starts_with("Bearer error=\"invalid_token\"")
    );
    // The Blueprint's own token (what a gated sidecar hands back) is valid but not an allowed agent.
    let sidecar = start_sidecar(&cloud, false, "http://127.0.0.1:9").await;
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
    let (s, body, _) = get(
        &format!("{api}/weather?city=Dallas"),
        blueprint["authorizationHeader"].as_str(),
    )
    .await;
    assert_eq!(s, 403, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("not an allowed agent identity"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_acting_for_a_user_is_served_as_delegated() {
    let cloud = cloud().await;
    let api = weather_api(&env_of(&cloud)).await;
    let sidecar = SidecarClient::new(
        start_sidecar(&cloud, false, "http://127.0.0.1:9")
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
    assert_eq!(body["token_kind"], "user");
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
    assert!(WeatherConfig::from_env_fn(|k| full.get(k).map(|v| v.to_string())).is_ok());
    for missing in [
        "TENANT_ID",
        "WEATHER_API_AUDIENCE",
        "ALLOWED_AGENT_APP_IDS",
        "REQUIRED_APP_ROLE",
    ] {
        let err = WeatherConfig::from_env_fn(|k| {
            (k != missing)
                .then(|| full.get(k).map(|v| v.to_string()))
                .flatten()
        })
        .unwrap_err()
        .to_string();
        assert!(err.starts_with(missing), "{missing}: {err}");
    }
    let err = WeatherConfig::from_env_fn(|k| {
        if k == "PORT" {
            Some("http".into())
        } else {
            full.get(k).map(|v| v.to_string())
        }
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("PORT"), "{err}");
}
