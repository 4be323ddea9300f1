//! # local-stack
//!
//! The whole system on one machine, in one process, on the tutorial's ports: the local cloud, the
//! Agent ID sidecar emulation (`:5000`), the weather API (`:8080`), the agent (`:3000`), and the
//! token-refresher in file mode for agents in other languages. Each service is the same library
//! router its standalone binary serves.

use entra_federation::EntraCredentialsProviderBuilder;
use local_cloud::LocalCloud;
use local_cloud::ids;
use local_cloud::sidecar::SidecarConfig;
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
    /// The sidecar (tutorial: 5000).
    pub sidecar: SocketAddr,
    /// The weather API (tutorial: 8080).
    pub weather_api: SocketAddr,
    /// The agent (tutorial: 3000).
    pub agent: SocketAddr,
    /// Where the CA, the env file and the token file go.
    pub state_dir: PathBuf,
}

impl StackOptions {
    /// Every listener on 127.0.0.1 port 0 (tests).
    pub fn ephemeral(state_dir: PathBuf) -> Self {
        let any: SocketAddr = ([127, 0, 0, 1], 0).into();
        Self {
            cloud_http: any,
            cloud_https: any,
            sidecar: any,
            weather_api: any,
            agent: any,
            state_dir,
        }
    }
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
    /// A service could not be configured.
    #[error("{0}")]
    Service(String),
    /// A listener could not bind.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
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
    /// `http://127.0.0.1:PORT` of the sidecar.
    pub sidecar_url: String,
    /// `http://127.0.0.1:PORT` of the weather API.
    pub weather_url: String,
    /// `http://127.0.0.1:PORT` of the agent.
    pub agent_url: String,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Drop for Stack {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Stack {
    /// Stops gracefully: the servers stop accepting and finish the requests in flight (at most
    /// their drain time), the refresher stops between two writes.
    pub async fn stop(mut self) {
        self.stop.send_replace(true);
        for task in std::mem::take(&mut self.tasks) {
            let _ = task.await;
        }
    }

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

    /// A shell command that signs the local developer in and prints a user token for the OBO flow.
    pub fn dev_sign_in_command(&self) -> String {
        format!(
            "curl -s {}/{}/oauth2/v2.0/token -d grant_type=password -d client_id={} -d username={} -d password=local-dev-password -d 'scope=api://{}/access_as_user' | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"access_token\"])'",
            self.cloud.http_url(),
            ids::TENANT_ID,
            ids::CLIENT_SPA_APP_ID,
            ids::DEV_USER_UPN,
            ids::BLUEPRINT_APP_ID
        )
    }
}

async fn serve(
    addr: SocketAddr,
    app: axum::Router,
    limits: server_kit::Limits,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(String, tokio::task::JoinHandle<()>), StackError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| StackError::Bind { addr, source })?;
    let url = format!(
        "http://{}",
        listener
            .local_addr()
            .map_err(|source| StackError::Bind { addr, source })?
    );
    let task = tokio::spawn(async move {
        let stopped = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        let _ = server_kit::serve(listener, app, &limits, stopped).await;
    });
    Ok((url, task))
}

/// Starts everything and waits for the refresher's first token file.
pub async fn start(opts: StackOptions) -> Result<Stack, StackError> {
    let cloud = LocalCloud::builder()
        .http_listen(opts.cloud_http)
        .https_listen(opts.cloud_https)
        .state_dir(&opts.state_dir)
        .start()
        .await?;
    let env_file = opts.state_dir.join("local-cloud.env");
    cloud.write_env_file(&env_file)?;
    let mut env: HashMap<String, String> = cloud.env().into_iter().collect();
    let mut tasks = Vec::new();
    let (stop, stopping) = tokio::sync::watch::channel(false);

    // Weather API first: the sidecar's downstream entry and the agent point at it.
    let (weather_url, t) = {
        let weather_env = env.clone();
        let config = weather_api::WeatherConfig::from_env_fn(move |k| weather_env.get(k).cloned())
            .map_err(|e| StackError::Service(format!("weather-api: {e}")))?;
        serve(
            opts.weather_api,
            weather_api::router(config)
                .map_err(|e| StackError::Service(format!("weather-api: {e}")))?,
            server_kit::Limits::default(),
            stopping.clone(),
        )
        .await?
    };
    tasks.push(t);

    // The sidecar, as the tutorial configures it, with the override the agent needs since 1.1.0.
    let sidecar_config = SidecarConfig::tutorial(&cloud.http_url(), &weather_url, true);
    let (sidecar_url, t) = serve(
        opts.sidecar,
        local_cloud::sidecar::router(sidecar_config, cloud.state().clone())
            .map_err(StackError::Service)?,
        server_kit::Limits::default(),
        stopping.clone(),
    )
    .await?;
    tasks.push(t);

    // The agent, with the library's provider in process.
    env.insert("SIDECAR_URL".into(), sidecar_url.clone());
    env.insert("WEATHER_API_URL".into(), weather_url.clone());
    let lookup = env.clone();
    let provider =
        EntraCredentialsProviderBuilder::from_env_fn(move |k| lookup.get(k).cloned())?.build()?;
    let agent_env = env.clone();
    let agent_config = llm_agent::AgentConfig::from_env_fn(move |k| agent_env.get(k).cloned())
        .map_err(|e| StackError::Service(format!("llm-agent: {e}")))?;
    let (agent_url, t) = serve(
        opts.agent,
        llm_agent::router(agent_config, provider)
            .map_err(|e| StackError::Service(format!("llm-agent: {e}")))?,
        llm_agent::limits(),
        stopping.clone(),
    )
    .await?;
    tasks.push(t);

    // The token-refresher (file mode) for agents in other languages.
    let token_dir = opts.state_dir.join("azure-token");
    std::fs::create_dir_all(&token_dir).map_err(|source| StackError::Dir {
        path: token_dir.clone(),
        source,
    })?;
    let token_file = token_dir.join("token");
    let lookup = env.clone();
    let refresher_provider =
        EntraCredentialsProviderBuilder::from_env_fn(move |k| lookup.get(k).cloned())?.build()?;
    let refresher = Arc::new(Status::default());
    let file = FileMode {
        path: token_file.clone(),
        mode: 0o600,
        once: false,
        ready_file: None,
    };
    let status = refresher.clone();
    let mut refresher_stop = stopping.clone();
    tasks.push(tokio::spawn(async move {
        let clock = aws_smithy_async::time::SharedTimeSource::default();
        // Stops between two writes, never halfway through one (a write does not await).
        tokio::select! {
            r = file_mode::run(&refresher_provider, &file, &clock, &status) => {
                if let Err(e) = r {
                    tracing::error!(error = %e, "token-refresher stopped");
                }
            }
            _ = refresher_stop.wait_for(|s| *s) => {}
        }
    }));
    // The chain works end to end once the first token file is written; say why if it does not.
    if tokio::time::timeout(std::time::Duration::from_secs(60), refresher.first_write())
        .await
        .is_err()
    {
        return Err(StackError::Service(format!(
            "the token-refresher wrote no token within 60 s: {}",
            refresher
                .last_error()
                .unwrap_or_else(|| "no error reported".into())
        )));
    }
    Ok(Stack {
        cloud,
        env_file,
        token_file,
        refresher,
        sidecar_url,
        weather_url,
        agent_url,
        tasks,
        stop,
    })
}

/// Asks the agent `message` (Bedrock mode, autonomous flow) and returns its JSON reply and status.
pub async fn scripted_chat(
    stack: &Stack,
    message: &str,
) -> Result<(u16, serde_json::Value), String> {
    let resp = reqwest::Client::new()
        .post(format!("{}/api/chat", stack.agent_url))
        .json(&serde_json::json!({"message": message, "llm_mode": "bedrock", "token_flow": "autonomous"}))
        .timeout(std::time::Duration::from_secs(120))
        .send()
        .await
        .map_err(|e| format!("the agent did not answer: {e}"))?;
    let status = resp.status().as_u16();
    let body = resp
        .json()
        .await
        .map_err(|e| format!("the agent's answer is not JSON: {e}"))?;
    Ok((status, body))
}
