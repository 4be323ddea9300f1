//! `local-stack`: the whole system on one machine. Asks the agent "Weather in Dallas?" (Bedrock,
//! autonomous), prints the answer and the identity trace, then serves until Ctrl-C (`--once`: exits,
//! 0 on success).

use clap::Parser;
use local_stack::{StackOptions, scripted_chat, start};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// Runs the local cloud and the agent stack in one process.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// The agent (chat API and page).
    #[arg(long, default_value = "127.0.0.1:3000")]
    agent_listen: SocketAddr,
    /// The Agent ID sidecar emulation.
    #[arg(long, default_value = "127.0.0.1:5000")]
    sidecar_listen: SocketAddr,
    /// The weather API.
    #[arg(long, default_value = "127.0.0.1:8080")]
    weather_listen: SocketAddr,
    /// The local cloud's plain-http address.
    #[arg(long, default_value = "127.0.0.1:4000")]
    cloud_listen: SocketAddr,
    /// The local cloud's https address.
    #[arg(long, default_value = "127.0.0.1:4443")]
    cloud_https_listen: SocketAddr,
    /// Where the CA, env file and token file go (default: a new temporary directory).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Exit after the scripted chat (0 on success).
    #[arg(long)]
    once: bool,
    /// The scripted question.
    #[arg(long, default_value = "Weather in Dallas?")]
    message: String,
}

#[tokio::main]
async fn main() -> ExitCode {
    server_kit::init_logging("warn", false);
    let args = Args::parse();
    // Before anything is announced: a stop right after start is a clean stop. (`--once` keeps
    // the default action: it has nothing to finish.)
    let stop = (!args.once).then(server_kit::shutdown_signal);
    let state_dir = args.state_dir.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("local-stack-{}", std::process::id()))
    });
    let opts = StackOptions {
        cloud_http: args.cloud_listen,
        cloud_https: args.cloud_https_listen,
        sidecar: args.sidecar_listen,
        weather_api: args.weather_listen,
        agent: args.agent_listen,
        state_dir,
    };
    let stack = match start(opts).await {
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
    println!(
        "sidecar: {}   weather-api: {}   agent: {}",
        stack.sidecar_url, stack.weather_url, stack.agent_url
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
    println!();
    println!("asking the agent: {}", args.message);
    let ok = match scripted_chat(&stack, &args.message).await {
        Ok((status, body)) => {
            for e in body["debug"].as_array().into_iter().flatten() {
                if e["message"] != "_doc_links" {
                    println!(
                        "  [{}] {:<26} {} (+{} ms)",
                        e["outcome"].as_str().unwrap_or("-"),
                        e["step"].as_str().unwrap_or("-"),
                        e["message"].as_str().unwrap_or_default(),
                        e["duration_ms"]
                    );
                }
            }
            println!(
                "answer (HTTP {status}): {}",
                body["response"].as_str().unwrap_or("-")
            );
            status == 200 && body["success"] == true
        }
        Err(e) => {
            eprintln!("local-stack: {e}");
            false
        }
    };
    if args.once {
        return if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    println!();
    println!(
        "open {} (Ctrl-C to stop). For the on-behalf-of flow, paste a user token from:",
        stack.agent_url
    );
    println!("  {}", stack.dev_sign_in_command());
    if let Some(stop) = stop {
        stop.await;
    }
    println!("stopping: finishing the requests in flight");
    stack.stop().await;
    ExitCode::SUCCESS
}
