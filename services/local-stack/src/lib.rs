//! # local-stack
//!
//! The system on one machine, in one process: the local cloud and the services running as library
//! routers and tasks. Today: the local cloud and the token-refresher in file mode, so an agent in
//! another language can use the chain through `AWS_WEB_IDENTITY_TOKEN_FILE`.

use entra_federation::{Builder, Clock};
use local_cloud::LocalCloud;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use token_refresher::file_mode::{self, FileMode, Status};

/// Where things listen and live.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// The local cloud's plain-http address.
    pub cloud_http: SocketAddr,
    /// The local cloud's https address.
    pub cloud_https: SocketAddr,
    /// Where the CA, the env file and the token file go.
    pub state_dir: PathBuf,
}

/// Why the stack did not start.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    /// The local cloud failed.
    #[error(transparent)]
    Cloud(#[from] local_cloud::StartError),
    /// The provider could not be configured.
    #[error(transparent)]
    Config(#[from] entra_federation::ConfigError),
    /// A directory could not be made.
    #[error("cannot create {path}: {source}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// A running stack. Stops when dropped.
pub struct Stack {
    /// The local cloud.
    pub cloud: LocalCloud,
    /// The shell-sourceable environment of the local cloud.
    pub env_file: PathBuf,
    /// The web-identity token file the refresher keeps fresh.
    pub token_file: PathBuf,
    /// The refresher's status.
    pub refresher: Arc<Status>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Stack {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Stack {
    /// The local cloud's variables.
    pub fn env(&self) -> HashMap<String, String> {
        self.cloud.env().into_iter().collect()
    }

    /// What a Python agent (or any AWS SDK) needs to use the refresher's file.
    pub fn python_consumer_env(&self) -> Vec<(String, String)> {
        let env = self.env();
        vec![
            (
                "AWS_WEB_IDENTITY_TOKEN_FILE".into(),
                self.token_file.display().to_string(),
            ),
            ("AWS_ROLE_ARN".into(), env["AWS_ROLE_ARN"].clone()),
            ("AWS_REGION".into(), env["AWS_REGION"].clone()),
            (
                "AWS_ENDPOINT_URL_STS".into(),
                env["AWS_ENDPOINT_URL_STS"].clone(),
            ),
        ]
    }
}

/// Starts the local cloud and the token-refresher (file mode), and waits for the first token file.
pub async fn start(opts: StackOptions) -> Result<Stack, StackError> {
    let cloud = LocalCloud::builder()
        .http_listen(opts.cloud_http)
        .https_listen(opts.cloud_https)
        .state_dir(&opts.state_dir)
        .start()
        .await?;
    let env_file = opts.state_dir.join("local-cloud.env");
    cloud.write_env_file(&env_file)?;
    let token_dir = opts.state_dir.join("azure-token");
    std::fs::create_dir_all(&token_dir).map_err(|source| StackError::Dir {
        path: token_dir.clone(),
        source,
    })?;
    let token_file = token_dir.join("token");

    let env: HashMap<String, String> = cloud.env().into_iter().collect();
    let provider = Builder::from_env_fn(move |k| env.get(k).cloned())?.build()?;
    let refresher = Arc::new(Status::default());
    let file = FileMode {
        path: token_file.clone(),
        mode: 0o600,
        once: false,
        ready_file: None,
    };
    let task = {
        let status = refresher.clone();
        tokio::spawn(async move {
            if let Err(e) = file_mode::run(&provider, &file, &Clock::system(), &status).await {
                tracing::error!(error = %e, "token-refresher stopped");
            }
        })
    };
    refresher.first_write().await;
    Ok(Stack {
        cloud,
        env_file,
        token_file,
        refresher,
        tasks: vec![task],
    })
}
