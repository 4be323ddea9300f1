//! Open-Meteo, deterministic: geocoding (`GET /open-meteo/v1/search?name=&count=`) for a fixed set
//! of cities, and the forecast (`GET /open-meteo/v1/forecast?latitude=&longitude=&current=…&daily=…`)
//! with values derived from the coordinates and the day, in the units asked for.

use crate::state::CloudState;
use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;

/// (name, latitude, longitude, timezone, country)
const CITIES: &[(&str, f64, f64, &str, &str)] = &[
    (
        "Seattle",
        47.60621,
        -122.33207,
        "America/Los_Angeles",
        "United States",
    ),
    (
        "New York",
        40.71427,
        -74.00597,
        "America/New_York",
        "United States",
    ),
    (
        "Los Angeles",
        34.05223,
        -118.24368,
        "America/Los_Angeles",
        "United States",
    ),
    (
        "Chicago",
        41.85003,
        -87.65005,
        "America/Chicago",
        "United States",
    ),
    (
        "Miami",
        25.77427,
        -80.19366,
        "America/New_York",
        "United States",
    ),
    (
        "Denver",
        39.73915,
        -104.9847,
        "America/Denver",
        "United States",
    ),
    (
        "San Francisco",
        37.77493,
        -122.41942,
        "America/Los_Angeles",
        "United States",
    ),
    (
        "Boston",
        42.35843,
        -71.05977,
        "America/New_York",
        "United States",
    ),
    (
        "Austin",
        30.26715,
        -97.74306,
        "America/Chicago",
        "United States",
    ),
    (
        "Dallas",
        32.78306,
        -96.80667,
        "America/Chicago",
        "United States",
    ),
    (
        "Houston",
        29.76328,
        -95.36327,
        "America/Chicago",
        "United States",
    ),
    (
        "Phoenix",
        33.44838,
        -112.07404,
        "America/Phoenix",
        "United States",
    ),
    (
        "Atlanta",
        33.749,
        -84.38798,
        "America/New_York",
        "United States",
    ),
    (
        "London",
        51.50853,
        -0.12574,
        "Europe/London",
        "United Kingdom",
    ),
    ("Paris", 48.85341, 2.3488, "Europe/Paris", "France"),
    ("Berlin", 52.52437, 13.41053, "Europe/Berlin", "Germany"),
    ("Tokyo", 35.6895, 139.69171, "Asia/Tokyo", "Japan"),
    (
        "Sydney",
        -33.86785,
        151.20732,
        "Australia/Sydney",
        "Australia",
    ),
    ("Toronto", 43.70011, -79.4163, "America/Toronto", "Canada"),
    ("Mumbai", 19.07283, 72.88261, "Asia/Kolkata", "India"),
    (
        "Dubai",
        25.07725,
        55.30927,
        "Asia/Dubai",
        "United Arab Emirates",
    ),
    (
        "Singapore",
        1.28967,
        103.85007,
        "Asia/Singapore",
        "Singapore",
    ),
    (
        "São Paulo",
        -23.5475,
        -46.63611,
        "America/Sao_Paulo",
        "Brazil",
    ),
];

/// `GET /open-meteo/v1/search`.
pub async fn search(
    State(s): State<Arc<CloudState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let fault = match s
        .door("open_meteo:search", "application/json; charset=utf-8")
        .await
    {
        Ok(f) => f,
        Err(canned) => return canned,
    };
    if let Some(f) = fault {
        return (
            StatusCode::from_u16(f.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
            Json(json!({"error": true, "reason": "Injected failure."})),
        )
            .into_response();
    }
    let Some(name) = q
        .get("name")
        .map(|n| n.trim().to_lowercase())
        .filter(|n| n.len() >= 2)
    else {
        return Json(json!({"generationtime_ms": 0.1})).into_response();
    };
    let results: Vec<Value> = CITIES
        .iter()
        .enumerate()
        .filter(|(_, c)| c.0.to_lowercase().starts_with(&name))
        .map(|(i, c)| json!({"id": 5_800_000 + i, "name": c.0, "latitude": c.1, "longitude": c.2, "timezone": c.3, "country": c.4, "elevation": 50.0}))
        .take(q.get("count").and_then(|c| c.parse().ok()).unwrap_or(10))
        .collect();
    // Like Open-Meteo: no `results` key at all when nothing matched.
    if results.is_empty() {
        Json(json!({"generationtime_ms": 0.2})).into_response()
    } else {
        Json(json!({"results": results, "generationtime_ms": 0.3})).into_response()
    }
}

/// `timezone=auto` resolves to the zone of the coordinates (here: the nearest known city's), as
/// Open-Meteo does; no parameter means GMT; a named zone is echoed.
fn timezone(asked: Option<&str>, lat: f64, lon: f64) -> String {
    match asked {
        None => "GMT".into(),
        Some("auto") => CITIES
            .iter()
            .min_by(|a, b| {
                ((a.1 - lat).powi(2) + (a.2 - lon).powi(2))
                    .total_cmp(&((b.1 - lat).powi(2) + (b.2 - lon).powi(2)))
            })
            .map(|c| c.3.to_string())
            .unwrap_or_else(|| "GMT".into()),
        Some(zone) => zone.to_string(),
    }
}

fn bad(reason: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"error": true, "reason": reason})),
    )
        .into_response()
}

/// `GET /open-meteo/v1/forecast`.
pub async fn forecast(
    State(s): State<Arc<CloudState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let fault = match s
        .door("open_meteo:forecast", "application/json; charset=utf-8")
        .await
    {
        Ok(f) => f,
        Err(canned) => return canned,
    };
    if let Some(f) = fault {
        return (
            StatusCode::from_u16(f.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
            Json(json!({"error": true, "reason": "Injected failure."})),
        )
            .into_response();
    }
    let (Some(lat), Some(lon)) = (
        q.get("latitude").and_then(|v| v.parse::<f64>().ok()),
        q.get("longitude").and_then(|v| v.parse::<f64>().ok()),
    ) else {
        return bad("Parameter 'latitude' and 'longitude' must be numbers");
    };
    if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) {
        return bad("Latitude must be in range of -90 to 90°. Given: out of range.");
    }
    let fahrenheit = match q.get("temperature_unit").map(String::as_str) {
        None | Some("celsius") => false,
        Some("fahrenheit") => true,
        Some(other) => {
            return bad(&format!(
                "Cannot initialize TemperatureUnit from invalid String value {other}"
            ));
        }
    };
    let (wind_factor, wind_unit) = match q.get("wind_speed_unit").map(String::as_str) {
        None | Some("kmh") => (1.0, "km/h"),
        Some("mph") => (0.621371, "mp/h"),
        Some("ms") => (1.0 / 3.6, "m/s"),
        Some("kn") => (0.539957, "kn"),
        Some(other) => {
            return bad(&format!(
                "Cannot initialize WindSpeedUnit from invalid String value {other}"
            ));
        }
    };
    let days: usize = q
        .get("forecast_days")
        .and_then(|d| d.parse().ok())
        .unwrap_or(7);
    if !(1..=16).contains(&days) {
        return bad("Forecast days is invalid. Allowed range 0 to 16.");
    }
    let day = crate::state::unix_seconds(s.clock.now()) / 86_400;
    let seed = (lat * 1000.0).abs() as u64 + (lon * 1000.0).abs() as u64;
    let temp_c = |d: u64| 25.0 - lat.abs() * 0.35 + ((seed + d * 7) % 11) as f64 - 5.0;
    let unit_t = |c: f64| if fahrenheit { c * 9.0 / 5.0 + 32.0 } else { c };
    let round1 = |v: f64| (v * 10.0).round() / 10.0;
    let codes = [0, 1, 2, 3, 45, 61, 63, 80, 95, 71];
    let code = |d: u64| codes[((seed + d * 3) % codes.len() as u64) as usize];
    let t_unit = if fahrenheit { "°F" } else { "°C" };
    let date = |d: u64| {
        let dt = aws_smithy_types::DateTime::from_secs((d * 86_400) as i64);
        dt.fmt(aws_smithy_types::date_time::Format::DateTime)
            .unwrap_or_default()[..10]
            .to_string()
    };
    let daily_days: Vec<u64> = (0..days as u64).map(|i| day + i).collect();
    Json(json!({
        "latitude": lat, "longitude": lon, "generationtime_ms": 0.05, "utc_offset_seconds": 0,
        "timezone": timezone(q.get("timezone").map(String::as_str), lat, lon), "elevation": 50.0,
        "current_units": {"time": "iso8601", "interval": "seconds", "temperature_2m": t_unit, "relative_humidity_2m": "%", "weather_code": "wmo code", "wind_speed_10m": wind_unit},
        "current": {
            "time": format!("{}T12:00", date(day)), "interval": 900,
            "temperature_2m": round1(unit_t(temp_c(day))),
            "relative_humidity_2m": 35 + (seed % 50),
            "weather_code": code(day),
            "wind_speed_10m": round1((8 + seed % 20) as f64 * wind_factor),
        },
        "daily_units": {"time": "iso8601", "temperature_2m_max": t_unit, "temperature_2m_min": t_unit, "weather_code": "wmo code", "precipitation_probability_max": "%"},
        "daily": {
            "time": daily_days.iter().map(|d| date(*d)).collect::<Vec<_>>(),
            "temperature_2m_max": daily_days.iter().map(|d| round1(unit_t(temp_c(*d) + 4.0))).collect::<Vec<_>>(),
            "temperature_2m_min": daily_days.iter().map(|d| round1(unit_t(temp_c(*d) - 5.0))).collect::<Vec<_>>(),
            "weather_code": daily_days.iter().map(|d| code(*d)).collect::<Vec<_>>(),
            "precipitation_probability_max": daily_days.iter().map(|d| (seed + d * 13) % 100).collect::<Vec<_>>(),
        },
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::timezone;

    #[test]
    fn auto_timezone_resolves_to_the_place() {
        assert_eq!(timezone(Some("auto"), 51.5, -0.12), "Europe/London");
        assert_eq!(timezone(Some("auto"), 32.78, -96.8), "America/Chicago");
        assert_eq!(timezone(None, 0.0, 0.0), "GMT");
        assert_eq!(timezone(Some("Asia/Tokyo"), 0.0, 0.0), "Asia/Tokyo");
    }
}
