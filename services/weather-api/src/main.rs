//! `weather-api`: serves weather to Entra Agent ID callers on `PORT` (default 8080).

use std::process::ExitCode;
use weather_api::WeatherConfig;

#[tokio::main]
async fn main() -> ExitCode {
    server_kit::init_logging("info", false);
    // Before anything is announced: a stop right after start is a clean stop.
    let stop = server_kit::shutdown_signal();
    let config = match WeatherConfig::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("weather-api: {e}");
            return ExitCode::FAILURE;
        }
    };
    let addr = std::net::SocketAddr::from(([0, 0, 0, 0], config.port));
    let app = match weather_api::router(config) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("weather-api: {e}");
            return ExitCode::FAILURE;
        }
    };
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("weather-api: cannot listen on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(%addr, "weather-api listening");
    let limits = server_kit::Limits::default();
    if let Err(e) = server_kit::serve(listener, app, &limits, stop).await {
        eprintln!("weather-api: {e}");
        return ExitCode::FAILURE;
    }
    tracing::info!("weather-api stopped");
    ExitCode::SUCCESS
}
