//! # local-cloud
//!
//! Faithful local emulations of what entra-federation talks to, so the library and third-party
//! clients (boto3, azure-identity, the AWS SDK for Rust) run offline against the same wire formats,
//! validation and error codes as in Azure and AWS:
//!
//! | service | paths |
//! |---|---|
//! | Container Apps / App Service identity endpoint | `GET /msi/token` (api-version 2019-08-01, `X-IDENTITY-HEADER`) |
//! | VM IMDS | `GET /metadata/identity/oauth2/token` (api-version 2018-02-01, `Metadata: true`) |
//! | Entra | `/{tenant}/.well-known/openid-configuration`, `/{tenant}/v2.0/.well-known/openid-configuration`, `/{tenant}/discovery/keys`, `/{tenant}/discovery/v2.0/keys`, `POST /{tenant}/oauth2/v2.0/token` |
//! | AWS STS | `POST /` (`AssumeRoleWithWebIdentity`, `GetCallerIdentity`) |
//! | test hooks | `/_local/counters`, `/_local/faults`, `/_local/rotate-keys`, `/_local/rotate-identity-header`, `/_local/projected-token`, `/_local/registry` |
//!
//! Every path is served on a plain-http and an https listener (with a CA written to a file).
//!
//! ```no_run
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! let cloud = local_cloud::LocalCloud::builder().start().await?;
//! for (k, v) in cloud.env() {
//!     println!("{k}={v}");
//! }
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

pub mod agent_id;
pub mod bedrock;
pub mod control;
pub mod entra;
pub mod identity;
pub mod keys;
pub mod open_meteo;
pub mod policy;
pub mod registry;
pub mod sidecar;
pub mod sigv4;
pub mod state;
pub mod sts;
pub mod tls;
pub mod token_endpoint;

pub use registry::{Registry, ids};
pub use state::{CloudState, Fault, FaultKind, Hold};

use aws_smithy_async::time::{SharedTimeSource, TimeSource};
use axum::Router;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Why the local cloud did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener could not bind.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
    /// Key or certificate generation, or the registry, failed.
    #[error("{0}")]
    Setup(String),
    /// A file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// Configures a [`LocalCloud`].
#[derive(Debug, Default)]
pub struct LocalCloudBuilder {
    registry: Option<Registry>,
    clock: Option<SharedTimeSource>,
    http: Option<SocketAddr>,
    https: Option<SocketAddr>,
    state_dir: Option<PathBuf>,
}

impl LocalCloudBuilder {
    /// The directory and AWS account (default: [`Registry::tutorial_default`]).
    pub fn registry(mut self, registry: Registry) -> Self {
        self.registry = Some(registry);
        self
    }

    /// Where "now" comes from (default: the system clock). Tests give one that follows Tokio's
    /// paused clock, or an `aws-smithy-async` test time source, shared with the provider.
    pub fn clock(mut self, clock: impl TimeSource + 'static) -> Self {
        self.clock = Some(SharedTimeSource::new(clock));
        self
    }

    /// The plain-http address (default `127.0.0.1:0`).
    pub fn http_listen(mut self, addr: SocketAddr) -> Self {
        self.http = Some(addr);
        self
    }

    /// The https address (default `127.0.0.1:0`).
    pub fn https_listen(mut self, addr: SocketAddr) -> Self {
        self.https = Some(addr);
        self
    }

    /// Where the CA file (and env file, by default) go (default: a new temporary directory).
    pub fn state_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.state_dir = Some(dir.into());
        self
    }

    /// Binds, generates keys and certificates, and serves in the current tokio runtime.
    pub async fn start(self) -> Result<LocalCloud, StartError> {
        let registry = self.registry.unwrap_or_else(Registry::tutorial_default);
        registry.validate().map_err(StartError::Setup)?;
        let loopback: SocketAddr = ([127, 0, 0, 1], 0).into();
        let http_addr = self.http.unwrap_or(loopback);
        let https_addr = self.https.unwrap_or(loopback);
        let http_listener =
            TcpListener::bind(http_addr)
                .await
                .map_err(|source| StartError::Bind {
                    addr: http_addr,
                    source,
                })?;
        let https_listener =
            TcpListener::bind(https_addr)
                .await
                .map_err(|source| StartError::Bind {
                    addr: https_addr,
                    source,
                })?;
        let http_addr = http_listener
            .local_addr()
            .map_err(|source| StartError::Bind {
                addr: http_addr,
                source,
            })?;
        let https_addr = https_listener
            .local_addr()
            .map_err(|source| StartError::Bind {
                addr: https_addr,
                source,
            })?;

        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| StartError::Setup(e.to_string()))?;
        let state = Arc::new(
            CloudState::new(registry, self.clock.unwrap_or_default(), client)
                .map_err(StartError::Setup)?,
        );
        let _ = state.http_base.set(format!("http://{http_addr}"));
        let _ = state.https_base.set(format!("https://{https_addr}"));

        let tls = Arc::new(tls::Tls::generate().map_err(StartError::Setup)?);
        let state_dir = match self.state_dir {
            Some(d) => d,
            None => std::env::temp_dir().join(format!(
                "local-cloud-{}-{}",
                std::process::id(),
                state::random_id(8).to_lowercase()
            )),
        };
        std::fs::create_dir_all(&state_dir).map_err(|source| StartError::Write {
            path: state_dir.clone(),
            source,
        })?;
        let ca_file = state_dir.join("local-cloud-ca.pem");
        std::fs::write(&ca_file, &tls.ca_pem).map_err(|source| StartError::Write {
            path: ca_file.clone(),
            source,
        })?;

        let http_app = router(state.clone(), false);
        let https_app = router(state.clone(), true);
        let tasks = vec![
            tokio::spawn(async move {
                let _ =
                    server_kit::serve(http_listener, http_app, &limits(), std::future::pending())
                        .await;
            }),
            tokio::spawn(tls.serve(https_listener, https_app)),
        ];
        tracing::info!(http = %http_addr, https = %https_addr, ca = %ca_file.display(), "local cloud listening");
        Ok(LocalCloud {
            state,
            http_addr,
            https_addr,
            ca_file,
            state_dir,
            tasks,
        })
    }
}

/// The router of every emulated service (`tls` tells links which listener to point back to).
pub fn router(state: Arc<CloudState>, tls: bool) -> Router {
    let app = Router::new()
        .route("/msi/token", get(identity::app_service))
        .route("/metadata/identity/oauth2/token", get(identity::imds))
        .route("/common/discovery/instance", get(entra::instance_discovery))
        .route(
            "/{tenant}/.well-known/openid-configuration",
            get(entra::metadata_v1),
        )
        .route(
            "/{tenant}/v2.0/.well-known/openid-configuration",
            get(entra::metadata_v2),
        )
        .route("/{tenant}/discovery/keys", get(entra::jwks_v1))
        .route("/{tenant}/discovery/v2.0/keys", get(entra::jwks_v2))
        .route("/{tenant}/oauth2/v2.0/token", post(token_endpoint::token))
        .route("/", get(sts::handle).post(sts::handle))
        .route("/model/{model}/converse", post(bedrock::converse))
        .route("/model/{model}/invoke", post(bedrock::invoke))
        .route("/open-meteo/v1/search", get(open_meteo::search))
        .route("/open-meteo/v1/forecast", get(open_meteo::forecast))
        .nest("/_local", control::routes())
        .layer(axum::Extension(entra::Tls(tls)))
        .layer(middleware::from_fn(log_request))
        .with_state(state);
    server_kit::harden(app, &limits(), server_kit::json_error)
}

/// The local cloud's server limits. A request may wait up to three hours: the test hook `hold`
/// keeps a call waiting for as long as a test's simulated clock needs.
pub fn limits() -> server_kit::Limits {
    server_kit::Limits {
        body_bytes: 1 << 20,
        request_timeout: std::time::Duration::from_secs(3 * 3600),
        ..server_kit::Limits::default()
    }
}

/// One line per request: method, path (never the query, which can carry identity selectors) and status.
async fn log_request(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let started = tokio::time::Instant::now();
    let resp = next.run(req).await;
    tracing::debug!(%method, %path, status = resp.status().as_u16(), elapsed_ms = started.elapsed().as_millis() as u64, "local cloud request");
    resp
}

/// A running local cloud. Stops when dropped.
pub struct LocalCloud {
    state: Arc<CloudState>,
    http_addr: SocketAddr,
    https_addr: SocketAddr,
    ca_file: PathBuf,
    state_dir: PathBuf,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for LocalCloud {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl LocalCloud {
    /// A builder.
    pub fn builder() -> LocalCloudBuilder {
        LocalCloudBuilder::default()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn http_url(&self) -> String {
        format!("http://{}", self.http_addr)
    }

    /// `https://127.0.0.1:PORT`.
    pub fn https_url(&self) -> String {
        format!("https://{}", self.https_addr)
    }

    /// The CA certificate file (PEM) that signs the https listener.
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// The directory holding the CA file.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// The shared state (counters, faults, registry, keys).
    pub fn state(&self) -> &Arc<CloudState> {
        &self.state
    }

    /// Calls counted for `name` (`identity_endpoint`, `imds`, `entra_token`, `sts:AssumeRoleWithWebIdentity`, …).
    pub fn counter(&self, name: &str) -> u64 {
        self.state.counter(name)
    }

    /// Injects a fault.
    pub fn inject(&self, fault: Fault) {
        self.state.inject(fault);
    }

    /// Clears all faults and latencies, and releases every hold.
    pub fn clear_faults(&self) {
        self.state.clear_faults();
    }

    /// Holds calls to `name` (a counter name, or a prefix before `:`) until released; see
    /// [`CloudState::hold`].
    pub fn hold(&self, name: &str) -> std::sync::Arc<Hold> {
        self.state.hold(name)
    }

    /// Adds `delay` to every call to `name`; see [`CloudState::inject_latency`].
    pub fn inject_latency(&self, name: &str, delay: std::time::Duration) {
        self.state.inject_latency(name, delay);
    }

    /// Changes the registry in place (for misconfiguration tests).
    pub fn edit_registry(&self, edit: impl FnOnce(&mut Registry)) {
        edit(
            &mut self
                .state
                .registry
                .write()
                .unwrap_or_else(|p| p.into_inner()),
        );
    }

    /// The current `IDENTITY_HEADER` value.
    pub fn identity_header(&self) -> String {
        self.state
            .identity_header
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Starts the Agent ID sidecar emulation on `127.0.0.1:0` with `config` (see
    /// [`sidecar::SidecarConfig::tutorial`]); returns its `http://127.0.0.1:PORT`. It runs until the
    /// runtime ends.
    pub async fn start_sidecar(
        &self,
        config: sidecar::SidecarConfig,
    ) -> Result<String, StartError> {
        let app = sidecar::router(config, self.state.clone()).map_err(StartError::Setup)?;
        let addr = SocketAddr::from(([127, 0, 0, 1], 0));
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })?;
        let url = format!(
            "http://{}",
            listener
                .local_addr()
                .map_err(|source| StartError::Bind { addr, source })?
        );
        tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
        });
        Ok(url)
    }

    /// Signs the registry's developer user in (the resource-owner password grant the local
    /// Entra keeps for tests) and returns an access token for the Blueprint's `access_as_user`:
    /// what the browser's sign-in gives the agent, for on-behalf-of.
    pub async fn dev_user_token(&self) -> Result<String, StartError> {
        let scope = format!(
            "api://{}/access_as_user openid profile",
            ids::BLUEPRINT_APP_ID
        );
        self.dev_user_token_for(ids::CLIENT_SPA_APP_ID, &scope)
            .await
    }

    /// Signs the developer user in through `client_id` (a public client of the registry) for
    /// `scope` (space-separated, as on the wire) and returns the access token.
    pub async fn dev_user_token_for(
        &self,
        client_id: &str,
        scope: &str,
    ) -> Result<String, StartError> {
        let password = self
            .state
            .registry()
            .users
            .iter()
            .find(|u| u.upn == ids::DEV_USER_UPN)
            .map(|u| u.password.clone())
            .ok_or_else(|| StartError::Setup("the registry has no developer user".into()))?;
        let form = [
            ("grant_type", "password"),
            ("client_id", client_id),
            ("username", ids::DEV_USER_UPN),
            ("password", password.as_str()),
            ("scope", scope),
        ];
        let answer: serde_json::Value = self
            .state
            .http
            .post(format!(
                "{}/{}/oauth2/v2.0/token",
                self.http_url(),
                ids::TENANT_ID
            ))
            .form(&form)
            .send()
            .await
            .map_err(|e| StartError::Setup(format!("sign-in request: {e}")))?
            .json()
            .await
            .map_err(|e| StartError::Setup(format!("sign-in answer: {e}")))?;
        answer["access_token"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| StartError::Setup(format!("sign-in failed: {answer}")))
    }

    /// Writes an AKS projected service-account token for `namespace`/`service_account` to `path`.
    pub fn write_projected_token(
        &self,
        path: &Path,
        namespace: &str,
        service_account: &str,
    ) -> Result<(), StartError> {
        let token = identity::mint_projected_token(&self.state, namespace, service_account)
            .map_err(StartError::Setup)?;
        std::fs::write(path, token).map_err(|source| StartError::Write {
            path: path.to_path_buf(),
            source,
        })
    }

    /// The variables that point the library, boto3 and azure-identity at this cloud, as the
    /// Container Apps platform and the tutorial set them.
    pub fn env(&self) -> Vec<(String, String)> {
        let reg = self.state.registry();
        let http = self.http_url();
        let https = self.https_url();
        let ca = self.ca_file.display().to_string();
        let sts_app = reg
            .app(ids::STS_APP_ID)
            .map(|a| a.app_id.clone())
            .unwrap_or_else(|| ids::STS_APP_ID.into());
        let role = reg
            .roles
            .first()
            .map(|r| reg.role_arn(&r.name))
            .unwrap_or_default();
        let mi = reg
            .system_identity()
            .map(|m| m.object_id.clone())
            .unwrap_or_default();
        let sp = reg
            .app(&sts_app)
            .and_then(|a| a.service_principal_object_id.clone())
            .unwrap_or_default();
        let pairs: Vec<(&str, String)> = vec![
            ("LOCAL_CLOUD_URL", http.clone()),
            ("LOCAL_CLOUD_HTTPS_URL", https.clone()),
            ("IDENTITY_ENDPOINT", format!("{http}/msi/token")),
            ("IDENTITY_HEADER", self.identity_header()),
            ("AZURE_POD_IDENTITY_AUTHORITY_HOST", http.clone()),
            ("AZURE_AUTHORITY_HOST", format!("{https}/")),
            ("TENANT_ID", reg.tenant_id.clone()),
            ("AZURE_TENANT_ID", reg.tenant_id.clone()),
            ("MI_OBJECT_ID", mi),
            ("STS_APP_ID", sts_app.clone()),
            ("STS_APP_URI", format!("api://{sts_app}")),
            ("STS_SP_OID", sp),
            ("BLUEPRINT_APP_ID", ids::BLUEPRINT_APP_ID.into()),
            ("AGENT_CLIENT_ID", ids::AGENT_CLIENT_ID.into()),
            ("AWS_ACCOUNT_ID", reg.aws_account_id.clone()),
            ("AWS_ROLE_ARN", role),
            ("AWS_REGION", reg.aws_region.clone()),
            ("AWS_DEFAULT_REGION", reg.aws_region.clone()),
            ("AWS_ENDPOINT_URL_STS", format!("{http}/")),
            ("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", format!("{http}/")),
            ("BEDROCK_MODEL_ID", ids::BEDROCK_MODEL_ID.into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
            ("AGENT_APP_ID", ids::AGENT_CLIENT_ID.into()),
            ("CLIENT_SPA_APP_ID", ids::CLIENT_SPA_APP_ID.into()),
            ("WEATHER_API_AUDIENCE", ids::WEATHER_API_AUDIENCE.into()),
            ("ALLOWED_AGENT_APP_IDS", ids::AGENT_CLIENT_ID.into()),
            ("EXPECTED_BLUEPRINT_APP_ID", ids::BLUEPRINT_APP_ID.into()),
            ("REQUIRED_APP_ROLE", ids::WEATHER_PERMISSION.into()),
            ("REQUIRED_SCOPE", ids::WEATHER_PERMISSION.into()),
            (
                "OPEN_METEO_GEOCODING_URL",
                format!("{http}/open-meteo/v1/search"),
            ),
            (
                "OPEN_METEO_FORECAST_URL",
                format!("{http}/open-meteo/v1/forecast"),
            ),
            ("ENTRA_FEDERATION_CA_FILE", ca.clone()),
            ("REQUESTS_CA_BUNDLE", ca.clone()),
            ("AWS_CA_BUNDLE", ca),
        ];
        pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    }

    /// Writes [`LocalCloud::env`] as a shell-sourceable file (`export K='v'`), mode 0600.
    pub fn write_env_file(&self, path: &Path) -> Result<(), StartError> {
        let mut text = String::from(
            "# Written by local-cloud: source it (. FILE) to point entra-federation, boto3 and azure-identity at it.\n",
        );
        for (k, v) in self.env() {
            text.push_str(&format!("export {k}='{}'\n", v.replace('\'', "'\\''")));
        }
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let tmp = path.with_extension("tmp");
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        };
        write().map_err(|source| StartError::Write {
            path: path.to_path_buf(),
            source,
        })
    }
}
