//! Open-Meteo: geocoding then forecast, with the units asked for, a short per-city cache, and
//! errors that say which side failed.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use url::Url;

/// Units of the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Units {
    /// °F and mph.
    Imperial,
    /// °C and km/h.
    Metric,
}

impl Units {
    fn params(self) -> [(&'static str, &'static str); 2] {
        match self {
            Units::Imperial => [
                ("temperature_unit", "fahrenheit"),
                ("wind_speed_unit", "mph"),
            ],
            Units::Metric => [("temperature_unit", "celsius"), ("wind_speed_unit", "kmh")],
        }
    }
    fn labels(self) -> (&'static str, &'static str) {
        match self {
            Units::Imperial => ("F", "mph"),
            Units::Metric => ("C", "km/h"),
        }
    }
}

/// What went wrong upstream.
#[derive(Debug)]
pub enum UpstreamError {
    /// The geocoder knows no such city.
    UnknownCity,
    /// Open-Meteo could not be reached (→ 503).
    Unreachable(String),
    /// Open-Meteo answered with an error or nonsense (→ 502).
    BadAnswer(String),
}

/// Current weather.
#[derive(Debug, Clone, Serialize)]
pub struct Current {
    /// City name as geocoded.
    pub city: String,
    /// Temperature, rounded.
    pub temperature: i64,
    /// `F` or `C`.
    pub temperature_unit: &'static str,
    /// WMO condition text.
    pub condition: &'static str,
    /// Relative humidity.
    pub humidity: i64,
    /// `%`.
    pub humidity_unit: &'static str,
    /// Wind speed, rounded.
    pub wind_speed: i64,
    /// `mph` or `km/h`.
    pub wind_unit: &'static str,
    /// Observation time (local).
    pub timestamp: String,
    /// Time zone.
    pub timezone: String,
}

/// A daily forecast.
#[derive(Debug, Clone, Serialize)]
pub struct Forecast {
    /// City name as geocoded.
    pub city: String,
    /// `F` or `C`.
    pub temperature_unit: &'static str,
    /// One entry a day.
    pub forecast: Vec<Day>,
}

/// One day.
#[derive(Debug, Clone, Serialize)]
pub struct Day {
    /// 1-based day number.
    pub day: usize,
    /// `YYYY-MM-DD`.
    pub date: String,
    /// High.
    pub high: i64,
    /// Low.
    pub low: i64,
    /// WMO condition text.
    pub condition: &'static str,
    /// Precipitation probability, %.
    pub precipitation_chance: i64,
}

#[derive(Deserialize)]
struct GeoResponse {
    results: Option<Vec<GeoResult>>,
}

#[derive(Deserialize, Clone)]
struct GeoResult {
    name: String,
    latitude: f64,
    longitude: f64,
}

/// The WMO weather-code texts Open-Meteo documents.
pub fn condition(code: i64) -> &'static str {
    match code {
        0 => "Clear Sky",
        1 => "Mainly Clear",
        2 => "Partly Cloudy",
        3 => "Overcast",
        45 => "Foggy",
        48 => "Depositing Rime Fog",
        51 => "Light Drizzle",
        53 => "Moderate Drizzle",
        55 => "Dense Drizzle",
        61 => "Slight Rain",
        63 => "Moderate Rain",
        65 => "Heavy Rain",
        71 => "Slight Snow",
        73 => "Moderate Snow",
        75 => "Heavy Snow",
        80 => "Slight Rain Showers",
        81 => "Moderate Rain Showers",
        82 => "Violent Rain Showers",
        95 => "Thunderstorm",
        96 => "Thunderstorm with Hail",
        99 => "Thunderstorm with Heavy Hail",
        _ => "Unknown",
    }
}

const CACHE_TTL: Duration = Duration::from_secs(300);

/// The Open-Meteo client.
pub struct OpenMeteo {
    http: reqwest::Client,
    geocoding: Url,
    forecast: Url,
    cache: Mutex<HashMap<(String, Units), (Instant, Current)>>,
}

impl OpenMeteo {
    /// A client for the two endpoints.
    pub fn new(geocoding: Url, forecast: Url) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            http,
            geocoding,
            forecast,
            cache: Mutex::new(HashMap::new()),
        })
    }

    async fn get_json<T: for<'de> Deserialize<'de>>(
        &self,
        url: Url,
        query: &[(&str, String)],
    ) -> Result<T, UpstreamError> {
        let resp = self.http.get(url).query(query).send().await.map_err(|e| {
            UpstreamError::Unreachable(format!("Open-Meteo unreachable: {}", e.without_url()))
        })?;
        let status = resp.status();
        if status.is_server_error() {
            return Err(UpstreamError::BadAnswer(format!(
                "Open-Meteo answered HTTP {status}"
            )));
        }
        let body = match server_kit::read_body(resp, server_kit::MAX_RESPONSE_BODY).await {
            Ok(body) => String::from_utf8_lossy(&body).into_owned(),
            Err(e @ server_kit::BodyError::Transport(_)) => {
                return Err(UpstreamError::Unreachable(format!(
                    "Open-Meteo: {}",
                    entra_federation::error::DisplayChain(&e)
                )));
            }
            // Too large, or whatever else a body can be refused for.
            Err(e) => {
                return Err(UpstreamError::BadAnswer(format!("Open-Meteo: {e}")));
            }
        };
        if !status.is_success() {
            // The body is for the log; the caller learns the status.
            tracing::warn!(%status, body = %body.chars().take(200).collect::<String>(), "Open-Meteo refused the request");
            return Err(UpstreamError::BadAnswer(format!(
                "Open-Meteo answered HTTP {status}"
            )));
        }
        serde_json::from_str(&body).map_err(|e| {
            tracing::warn!(error = %e, "Open-Meteo's answer is not the expected JSON");
            UpstreamError::BadAnswer("Open-Meteo's answer is not the expected JSON".into())
        })
    }

    async fn locate(&self, city: &str) -> Result<GeoResult, UpstreamError> {
        // `query` URL-encodes the name.
        let geo: GeoResponse = self
            .get_json(
                self.geocoding.clone(),
                &[
                    ("name", city.to_string()),
                    ("count", "1".into()),
                    ("format", "json".into()),
                ],
            )
            .await?;
        geo.results
            .and_then(|r| r.into_iter().next())
            .ok_or(UpstreamError::UnknownCity)
    }

    /// Current weather, cached per city and units for five minutes.
    pub async fn current(&self, city: &str, units: Units) -> Result<Current, UpstreamError> {
        let key = (city.to_lowercase(), units);
        if let Some((at, w)) = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            && at.elapsed() < CACHE_TTL
        {
            return Ok(w.clone());
        }
        let place = self.locate(city).await?;
        let mut q = vec![
            ("latitude", place.latitude.to_string()),
            ("longitude", place.longitude.to_string()),
            (
                "current",
                "temperature_2m,relative_humidity_2m,weather_code,wind_speed_10m".into(),
            ),
            ("timezone", "auto".into()),
        ];
        q.extend(units.params().iter().map(|(k, v)| (*k, v.to_string())));
        let data: serde_json::Value = self.get_json(self.forecast.clone(), &q).await?;
        let c = data.get("current").ok_or_else(|| {
            UpstreamError::BadAnswer("no current weather in Open-Meteo's answer".into())
        })?;
        let num = |k: &str| {
            c.get(k)
                .and_then(serde_json::Value::as_f64)
                .ok_or_else(|| UpstreamError::BadAnswer(format!("no {k} in Open-Meteo's answer")))
        };
        let (t_unit, w_unit) = units.labels();
        let w = Current {
            city: place.name,
            temperature: num("temperature_2m")?.round() as i64,
            temperature_unit: t_unit,
            condition: condition(num("weather_code")? as i64),
            humidity: num("relative_humidity_2m")?.round() as i64,
            humidity_unit: "%",
            wind_speed: num("wind_speed_10m")?.round() as i64,
            wind_unit: w_unit,
            timestamp: c
                .get("time")
                .and_then(|t| t.as_str())
                .unwrap_or_default()
                .to_string(),
            timezone: data
                .get("timezone")
                .and_then(|t| t.as_str())
                .unwrap_or("UTC")
                .to_string(),
        };
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, (Instant::now(), w.clone()));
        Ok(w)
    }

    /// A daily forecast of `days` days.
    pub async fn forecast(
        &self,
        city: &str,
        days: u8,
        units: Units,
    ) -> Result<Forecast, UpstreamError> {
        let place = self.locate(city).await?;
        let mut q = vec![
            ("latitude", place.latitude.to_string()),
            ("longitude", place.longitude.to_string()),
            (
                "daily",
                "weather_code,temperature_2m_max,temperature_2m_min,precipitation_probability_max"
                    .into(),
            ),
            ("forecast_days", days.to_string()),
            ("timezone", "auto".into()),
        ];
        q.extend(units.params().iter().map(|(k, v)| (*k, v.to_string())));
        let data: serde_json::Value = self.get_json(self.forecast.clone(), &q).await?;
        let daily = data.get("daily").ok_or_else(|| {
            UpstreamError::BadAnswer("no daily forecast in Open-Meteo's answer".into())
        })?;
        let col = |k: &str| {
            daily
                .get(k)
                .and_then(|v| v.as_array())
                .cloned()
                .ok_or_else(|| {
                    UpstreamError::BadAnswer(format!("no daily {k} in Open-Meteo's answer"))
                })
        };
        let (dates, highs, lows, codes, rain) = (
            col("time")?,
            col("temperature_2m_max")?,
            col("temperature_2m_min")?,
            col("weather_code")?,
            col("precipitation_probability_max")?,
        );
        let forecast = (0..dates.len().min(days as usize))
            .map(|i| Day {
                day: i + 1,
                date: dates[i].as_str().unwrap_or_default().to_string(),
                high: highs
                    .get(i)
                    .and_then(|v| v.as_f64())
                    .unwrap_or_default()
                    .round() as i64,
                low: lows
                    .get(i)
                    .and_then(|v| v.as_f64())
                    .unwrap_or_default()
                    .round() as i64,
                condition: condition(codes.get(i).and_then(|v| v.as_i64()).unwrap_or(-1)),
                precipitation_chance: rain.get(i).and_then(|v| v.as_i64()).unwrap_or_default(),
            })
            .collect();
        Ok(Forecast {
            city: place.name,
            temperature_unit: units.labels().0,
            forecast,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 12 point 8: a weather source that answers megabytes is refused after 1 MiB.
    #[tokio::test]
    async fn an_oversized_answer_is_refused_not_buffered() {
        let app = axum::Router::new().fallback(|| async {
            let chunks = (0..64).map(|_| Ok::<_, std::io::Error>(vec![b' '; 64 * 1024]));
            axum::body::Body::from_stream(futures::stream::iter(chunks))
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base: Url = format!("http://{}/", listener.local_addr().unwrap())
            .parse()
            .unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let client = OpenMeteo::new(base.join("geo").unwrap(), base.join("fc").unwrap()).unwrap();
        match client.current("Dallas", Units::Metric).await {
            Err(UpstreamError::BadAnswer(text)) => {
                assert!(text.contains("larger than 1048576 bytes"), "{text}")
            }
            Err(e) => panic!("{e:?}"),
            Ok(_) => panic!("an answer of 4 MiB of spaces parsed"),
        }
    }
}
