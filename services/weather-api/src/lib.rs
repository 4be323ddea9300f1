//! # weather-api
//!
//! The tutorial's downstream API, hardened: it accepts only Entra Agent ID tokens minted for its own
//! audience (signature, issuer, tenant, audience, time, agent identity, Blueprint, app-only vs
//! delegated permission) and serves real weather from Open-Meteo with honest units and errors.
//!
//! | route | |
//! |---|---|
//! | `GET /weather?city=&units=` | current weather (`units` = `imperial` (default) or `metric`) |
//! | `GET /weather/forecast?city=&days=&units=` | a daily forecast, 1–16 days (default 5) |
//! | `GET /health` | liveness |
//!
//! Errors are `{error, message}`: 400 bad input, 401 missing/invalid token (with
//! `WWW-Authenticate`), 403 not allowed, 404 unknown city, 502 bad upstream answer, 503 upstream
//! unreachable.

mod config;
mod open_meteo;

pub use config::{ConfigError, Settings, WeatherConfig};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use entra_federation::validate::{TokenValidator, ValidatedToken, ValidationError};
use open_meteo::{OpenMeteo, Units, UpstreamError};
use serde::Deserialize;
use serde_json::{Value, json};
use server_kit::ApiError;
use std::sync::Arc;

struct App {
    validator: TokenValidator,
    weather: OpenMeteo,
}

/// Builds the router from validated configuration.
pub fn router(config: WeatherConfig) -> Result<Router, ConfigError> {
    let validator = TokenValidator::new(config.validator).map_err(|e| ConfigError::Invalid {
        name: "validator",
        reason: e.to_string(),
    })?;
    let weather = OpenMeteo::new(config.geocoding_url, config.forecast_url).map_err(|e| {
        ConfigError::Invalid {
            name: "http client",
            reason: e,
        }
    })?;
    let app = Arc::new(App { validator, weather });
    Ok(harden(
        Router::new()
            .route(
                "/health",
                get(|| async { Json(json!({"status": "healthy", "service": "Weather API"})) }),
            )
            .route("/weather", get(current))
            .route("/weather/forecast", get(forecast))
            .with_state(app),
    ))
}

/// `router` with the default limits, and limit errors and panics answered as `{error, message}`
/// (a panic is a logged 500, not a dropped connection).
pub fn harden(router: Router) -> Router {
    server_kit::harden(router, &server_kit::Limits::default(), limit_error)
}

/// Errors from the server's limits (413, a timeout's 503, a panic's 500) as `{error, message}`.
fn limit_error(status: StatusCode, message: &str) -> Response {
    ApiError::status_only(status, message).into_response()
}

fn token_error(e: &ValidationError) -> ApiError {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::UNAUTHORIZED);
    let label = match e.status() {
        403 => "Forbidden",
        503 => "Token validation unavailable",
        _ => "Unauthorized",
    };
    let answer = ApiError::new(status, label, e.to_string());
    if status == StatusCode::UNAUTHORIZED {
        return answer.with_challenge(e.www_authenticate());
    }
    answer
}

fn upstream_error(e: UpstreamError, city: &str) -> ApiError {
    match e {
        UpstreamError::UnknownCity => ApiError::new(
            StatusCode::NOT_FOUND,
            "City not found",
            format!("No city named '{city}' is known to the geocoder"),
        ),
        UpstreamError::Unreachable(m) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Weather service unavailable",
            m,
        ),
        UpstreamError::BadAnswer(m) => ApiError::new(
            StatusCode::BAD_GATEWAY,
            "Bad answer from the weather service",
            m,
        ),
    }
}

async fn authorize(app: &App, headers: &HeaderMap) -> Result<ValidatedToken, ApiError> {
    let header = headers.get("authorization").and_then(|v| v.to_str().ok());
    app.validator.validate_header(header).await.map_err(|e| {
        match &e {
            // The expected issuer is not in the answer: it is logged.
            ValidationError::Issuer { iss, expected } => {
                tracing::warn!(%iss, %expected, "token refused: issuer not accepted")
            }
            other => tracing::warn!(reason = %other, "token refused"),
        }
        token_error(&e)
    })
}

/// A city name: 1–80 characters of letters (any script), spaces, `-`, `'`, `.`.
fn valid_city(city: &str) -> Result<String, ApiError> {
    let c = city.trim();
    let ok = (1..=80).contains(&c.chars().count())
        && c.chars()
            .all(|ch| ch.is_alphabetic() || matches!(ch, ' ' | '-' | '\'' | '.'));
    if ok {
        Ok(c.to_string())
    } else {
        Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "Invalid city",
            "city must be 1-80 letters, spaces, '-', ''' or '.'",
        ))
    }
}

fn units(u: Option<&str>) -> Result<Units, ApiError> {
    match u.unwrap_or("imperial") {
        "imperial" => Ok(Units::Imperial),
        "metric" => Ok(Units::Metric),
        other => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "Invalid units",
            format!("units must be imperial or metric, not '{other}'"),
        )),
    }
}

/// The prologue both routes share: the caller's token, then the city and units.
async fn prologue(
    app: &App,
    headers: &HeaderMap,
    city: Option<&str>,
    units_param: Option<&str>,
) -> Result<(ValidatedToken, String, Units), ApiError> {
    let caller = authorize(app, headers).await?;
    let city = valid_city(city.unwrap_or("Seattle"))?;
    Ok((caller, city, units(units_param)?))
}

#[derive(Deserialize)]
struct CurrentQuery {
    city: Option<String>,
    units: Option<String>,
}

async fn current(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(q): Query<CurrentQuery>,
) -> Result<Json<Value>, ApiError> {
    let (caller, city, units) =
        prologue(&app, &headers, q.city.as_deref(), q.units.as_deref()).await?;
    match app.weather.current(&city, units).await {
        Ok(w) => {
            tracing::info!(city = %w.city, agent = caller.claims.app_id().unwrap_or("-"), kind = ?caller.kind, "weather served");
            let mut body = serde_json::to_value(&w).expect("serializes");
            body["validated_by"] = json!("Agent Identity Token");
            body["agent_app_id"] = json!(caller.claims.app_id());
            body["is_agent_identity"] = json!(caller.claims.xms_par_app_azp.is_some());
            body["token_kind"] = json!(if caller.kind
                == entra_federation::validate::TokenKind::AppOnly
            {
                "app"
            } else {
                "user"
            });
            body["data_source"] = json!("Open-Meteo API");
            Ok(Json(body))
        }
        Err(e) => Err(upstream_error(e, &city)),
    }
}

#[derive(Deserialize)]
struct ForecastQuery {
    city: Option<String>,
    days: Option<String>,
    units: Option<String>,
}

async fn forecast(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(q): Query<ForecastQuery>,
) -> Result<Json<Value>, ApiError> {
    let (caller, city, units) =
        prologue(&app, &headers, q.city.as_deref(), q.units.as_deref()).await?;
    let days = match q.days.as_deref().map(str::parse::<u8>) {
        None => 5,
        Some(Ok(d)) if (1..=16).contains(&d) => d,
        _ => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "Invalid days",
                "days must be a whole number from 1 to 16",
            ));
        }
    };
    match app.weather.forecast(&city, days, units).await {
        Ok(f) => {
            let mut body = serde_json::to_value(&f).expect("serializes");
            body["validated_by"] = json!("Agent Identity Token");
            body["agent_app_id"] = json!(caller.claims.app_id());
            body["data_source"] = json!("Open-Meteo API");
            Ok(Json(body))
        }
        Err(e) => Err(upstream_error(e, &city)),
    }
}
