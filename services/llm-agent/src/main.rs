//! `llm-agent`: the chat API and page on `PORT` (default 3000).

use entra_federation::EntraCredentialsProvider;
use llm_agent::AgentConfig;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    server_kit::init_logging("info", false);
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("llm-agent: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    // Before anything is announced: a stop right after start is a clean stop.
    let stop = server_kit::shutdown_signal();
    let config = AgentConfig::from_env()?;
    let provider = EntraCredentialsProvider::from_env()?;
    let addr = std::net::SocketAddr::from(([0, 0, 0, 0], config.port));
    let app = llm_agent::router(config, provider)?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    tracing::info!(%addr, "llm-agent listening");
    server_kit::serve(listener, app, &llm_agent::limits(), stop).await?;
    tracing::info!("llm-agent stopped");
    Ok(())
}
