//! `local-stack`: the system on one machine.

use clap::Parser;
use local_stack::{StackOptions, start};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

/// Runs the local cloud and the services in one process until Ctrl-C.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// The local cloud's plain-http address.
    #[arg(long, default_value = "127.0.0.1:4000")]
    cloud_listen: SocketAddr,
    /// The local cloud's https address.
    #[arg(long, default_value = "127.0.0.1:4443")]
    cloud_https_listen: SocketAddr,
    /// Where the CA, env file and token file go (default: a new temporary directory).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Exit (0) once everything is up and the first token file is written.
    #[arg(long)]
    once: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .init();
    let args = Args::parse();
    let state_dir = args.state_dir.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("local-stack-{}", std::process::id()))
    });
    let stack = match start(StackOptions {
        cloud_http: args.cloud_listen,
        cloud_https: args.cloud_https_listen,
        state_dir,
    })
    .await
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("local-stack: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "local cloud: {} and {}",
        stack.cloud.http_url(),
        stack.cloud.https_url()
    );
    println!("environment file: {}", stack.env_file.display());
    println!(
        "token-refresher (file mode) keeps {} fresh",
        stack.token_file.display()
    );
    println!("a Python agent uses it with:");
    for (k, v) in stack.python_consumer_env() {
        println!("  export {k}='{v}'");
    }
    println!(
        "  python3 -c 'import boto3; print(boto3.client(\"sts\").get_caller_identity()[\"Arn\"])'"
    );
    if args.once {
        return ExitCode::SUCCESS;
    }
    println!("serving until Ctrl-C");
    let _ = tokio::signal::ctrl_c().await;
    ExitCode::SUCCESS
}
