//! `local-cloud`: the emulated identity endpoints, Entra and STS, until stopped.

use clap::Parser;
use local_cloud::{LocalCloud, Registry};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Local emulations of the Azure identity endpoints, Microsoft Entra and AWS STS.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Args {
    /// Plain-http address (identity endpoint, IMDS, Entra, STS).
    #[arg(long, default_value = "127.0.0.1:4000")]
    listen: SocketAddr,
    /// https address (the same services; MSAL/azure-identity authorities must be https).
    #[arg(long, default_value = "127.0.0.1:4443")]
    https_listen: SocketAddr,
    /// Write a shell-sourceable file of the variables that point clients here.
    #[arg(long)]
    env_file: Option<PathBuf>,
    /// A registry JSON file (tenant, apps, federated credentials, OIDC providers, roles); default: the tutorial's end state.
    #[arg(long)]
    registry: Option<PathBuf>,
    /// Where to write the CA certificate (default: a new temporary directory).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Print the built-in registry as JSON and exit (a starting point for --registry).
    #[arg(long)]
    print_default_registry: bool,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    server_kit::init_logging("info", false);
    let args = Args::parse();
    if args.print_default_registry {
        println!(
            "{}",
            serde_json::to_string_pretty(&Registry::tutorial_default())
                .expect("registry serializes")
        );
        return std::process::ExitCode::SUCCESS;
    }
    match run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("local-cloud: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    // Before anything is announced: a stop right after start is a clean stop.
    let stop = server_kit::shutdown_signal();
    let mut builder = LocalCloud::builder()
        .http_listen(args.listen)
        .https_listen(args.https_listen);
    if let Some(path) = &args.registry {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        builder = builder
            .registry(Registry::from_json(&text).map_err(|e| format!("{}: {e}", path.display()))?);
    }
    if let Some(dir) = args.state_dir {
        builder = builder.state_dir(dir);
    }
    let cloud = builder.start().await?;
    println!(
        "local cloud: {} and {} (CA {})",
        cloud.http_url(),
        cloud.https_url(),
        cloud.ca_file().display()
    );
    if let Some(path) = &args.env_file {
        cloud.write_env_file(path)?;
        println!(
            "environment written to {}: . {}",
            path.display(),
            path.display()
        );
    }
    stop.await;
    println!("stopping");
    Ok(())
}
