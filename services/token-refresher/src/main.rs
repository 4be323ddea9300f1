//! `token-refresher`: file mode (default), `credential-process`, or `serve`.

use aws_smithy_async::time::SharedTimeSource;
use clap::{Args, Parser, Subcommand};
use entra_federation::EntraCredentialsProvider;
use entra_federation::error::DisplayChain;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use token_refresher::{ENV_HELP, credential_process, file_mode, serve};

/// Hands entra-federation's credentials to processes that are not Rust.
///
/// Without a subcommand: file mode. Writes the v1 web-identity token to AWS_WEB_IDENTITY_TOKEN_FILE
/// (atomically, 0600), rewrites it at no more than half its lifetime, keeps the last good file
/// through failures. Point any AWS SDK at it with AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN.
#[derive(Parser, Debug)]
#[command(name = "token-refresher", version, after_help = ENV_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    file: FileArgs,
}

#[derive(Args, Debug)]
struct FileArgs {
    /// The token file to write.
    #[arg(long = "file", env = "AWS_WEB_IDENTITY_TOKEN_FILE")]
    path: Option<PathBuf>,
    /// Permission bits of the file: 0600, or 0640 to share it with the group.
    #[arg(long, env = "TOKEN_FILE_MODE", default_value = "0600", value_parser = parse_mode)]
    mode: u32,
    /// Write once and exit (0 on success).
    #[arg(long)]
    once: bool,
    /// Create this file after the first successful write (for orchestrators that wait on a file).
    #[arg(long, env = "TOKEN_REFRESHER_READY_FILE")]
    ready_file: Option<PathBuf>,
    /// Serve GET /healthz and /readyz here (200 once a valid token is written, else 503): a
    /// port (bound on 127.0.0.1) or ADDRESS:PORT (e.g. 0.0.0.0:8081 for a platform probe).
    #[arg(long, env = "TOKEN_REFRESHER_HEALTH_LISTEN", value_parser = listen_address)]
    health_listen: Option<SocketAddr>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print credential_process JSON (Version 1) for an AWS config profile:
    /// `credential_process = token-refresher credential-process`. Credentials are cached between
    /// invocations in a 0600 file, so a loop of AWS CLI commands does not call STS every time.
    #[command(after_help = ENV_HELP)]
    CredentialProcess {
        /// Cache directory (default $ENTRA_FEDERATION_CACHE_DIR, $XDG_CACHE_HOME/entra-federation or ~/.cache/entra-federation).
        #[arg(long)]
        cache_dir: Option<PathBuf>,
    },
    /// Serve the container-credentials protocol on loopback. Use it with
    /// AWS_CONTAINER_CREDENTIALS_FULL_URI=http://127.0.0.1:PORT/ and the authorization token from
    /// AWS_CONTAINER_AUTHORIZATION_TOKEN or AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE (generated, and
    /// printed, when neither is set).
    #[command(after_help = ENV_HELP)]
    Serve {
        /// Loopback address to listen on.
        #[arg(long)]
        listen: SocketAddr,
        /// Where to write a generated authorization token (0600) when none is configured.
        #[arg(long)]
        auth_token_file: Option<PathBuf>,
    },
}

fn parse_mode(s: &str) -> Result<u32, String> {
    match s {
        "0600" | "600" => Ok(0o600),
        "0640" | "640" => Ok(0o640),
        other => Err(format!(
            "'{other}': the token file mode must be 0600 or 0640"
        )),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // credential_process output goes to stdout; keep logs on stderr and quiet unless asked.
    let default = if matches!(cli.command, Some(Command::CredentialProcess { .. })) {
        "warn"
    } else {
        "info"
    };
    server_kit::init_logging(default, true);
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("token-refresher: {}", DisplayChain(&*e));
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    let provider = EntraCredentialsProvider::from_env()?;
    let clock = SharedTimeSource::default();
    match cli.command {
        None => {
            // Before anything is announced: a stop right after start is a clean stop.
            let stop = server_kit::shutdown_signal();
            let path = cli.file.path.ok_or("AWS_WEB_IDENTITY_TOKEN_FILE (or --file) is not set: the path of the token file to write")?;
            let opts = file_mode::FileMode {
                path,
                mode: cli.file.mode,
                once: cli.file.once,
                ready_file: cli.file.ready_file,
            };
            let status = Arc::new(file_mode::Status::default());
            if let Some(addr) = cli.file.health_listen {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
                eprintln!("health: http://{}/healthz", listener.local_addr()?);
                let app = file_mode::health_router(status.clone(), clock.clone());
                tokio::spawn(async move {
                    let limits = server_kit::Limits::default();
                    server_kit::serve(listener, app, &limits, std::future::pending()).await
                });
            }
            // A write does not await, so a stop never leaves half a write (or its temp file).
            tokio::select! {
                r = file_mode::run(&provider, &opts, &clock, &status) => Ok(r?),
                _ = stop => Ok(()),
            }
        }
        Some(Command::CredentialProcess { cache_dir }) => {
            let dir = cache_dir.or_else(credential_process::default_cache_dir);
            let creds = credential_process::credentials(&provider, dir.as_deref(), &clock).await?;
            println!("{}", serde_json::to_string(&creds)?);
            Ok(())
        }
        Some(Command::Serve {
            listen,
            auth_token_file,
        }) => {
            let stop = server_kit::shutdown_signal();
            if !listen.ip().is_loopback() {
                return Err(format!("--listen {listen}: the credentials endpoint must listen on loopback (SDKs refuse plain http elsewhere)").into());
            }
            let auth = auth_token(auth_token_file)?;
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
            println!(
                "AWS_CONTAINER_CREDENTIALS_FULL_URI=http://{}/",
                listener.local_addr()?
            );
            // Warm up so the background refresher runs before the first request.
            if let Err(e) = provider.credentials().await {
                tracing::error!(error = %e, "no credentials yet; serving errors until the chain works");
            }
            let generated = match &auth {
                serve::AuthToken::File(path) if generated_auth_file(path) => Some(path.clone()),
                _ => None,
            };
            let limits = server_kit::Limits::default();
            let served =
                server_kit::serve(listener, serve::router(provider, auth), &limits, stop).await;
            // The token file this process generated is of no use to anyone once it stops.
            if let Some(path) = generated
                && let Err(e) = std::fs::remove_file(&path)
            {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove the generated authorization token file");
            }
            Ok(served?)
        }
    }
}

/// A listen address: a bare port means loopback; anything else must be ADDRESS:PORT.
fn listen_address(value: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = value.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    value
        .parse()
        .map_err(|_| format!("'{value}' is neither a port nor ADDRESS:PORT"))
}

/// Whether `path` is the authorization token file this process generated (not one the
/// environment named).
fn generated_auth_file(path: &std::path::Path) -> bool {
    std::env::var_os("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")
        .filter(|p| !p.is_empty())
        .is_none_or(|named| std::path::Path::new(&named) != path)
}

/// The token SDKs will present: from the same variables they read, else generated into a file.
fn auth_token(file: Option<PathBuf>) -> Result<serve::AuthToken, Box<dyn std::error::Error>> {
    if let Some(path) =
        std::env::var_os("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE").filter(|p| !p.is_empty())
    {
        println!(
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE={}",
            PathBuf::from(&path).display()
        );
        return Ok(serve::AuthToken::File(path.into()));
    }
    if let Ok(value) = std::env::var("AWS_CONTAINER_AUTHORIZATION_TOKEN")
        && !value.is_empty()
    {
        println!("AWS_CONTAINER_AUTHORIZATION_TOKEN is used as the authorization token");
        return Ok(serve::AuthToken::Value(value));
    }
    let path = file.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("token-refresher-auth-{}", std::process::id()))
    });
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| "no system randomness")?;
    token_refresher::token_file::write_atomically(&path, hex::encode(bytes).as_bytes(), 0o600)?;
    println!("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE={}", path.display());
    Ok(serve::AuthToken::File(path))
}
