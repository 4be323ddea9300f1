//! Shared helpers of the system tests: a local cloud per test, a provider configured only from the
//! environment the local cloud writes, and the Python venv of third-party peers.

mod recordings;
pub use recordings::*;

use aws_smithy_async::time::TimeSource;
use entra_federation::{EntraCredentialsProvider, EntraCredentialsProviderBuilder};
use local_cloud::{LocalCloud, Registry};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Starts a local cloud with the tutorial's registry.
pub async fn cloud() -> LocalCloud {
    LocalCloud::builder()
        .start()
        .await
        .expect("local cloud starts")
}

/// A wall clock that advances with Tokio's clock: under `tokio::time::pause()` (or
/// `start_paused`), `advance` and auto-advance move the provider's and the local cloud's expiries
/// together. Clones share the start. Create it inside the runtime.
#[derive(Debug, Clone)]
pub struct TokioTime {
    start_wall: std::time::SystemTime,
    start: tokio::time::Instant,
}

impl TokioTime {
    /// Now, by the operating system's clock; from then on, by Tokio's.
    pub fn new() -> Self {
        Self {
            start_wall: std::time::SystemTime::now(),
            start: tokio::time::Instant::now(),
        }
    }

    /// The current time.
    pub fn now(&self) -> std::time::SystemTime {
        self.start_wall + self.start.elapsed()
    }
}

impl Default for TokioTime {
    fn default() -> Self {
        Self::new()
    }
}

impl TimeSource for TokioTime {
    fn now(&self) -> std::time::SystemTime {
        TokioTime::now(self)
    }
}

/// Starts a local cloud with `registry` and `clock`.
pub async fn cloud_with(registry: Registry, clock: impl TimeSource + 'static) -> LocalCloud {
    LocalCloud::builder()
        .registry(registry)
        .clock(clock)
        .start()
        .await
        .expect("local cloud starts")
}

/// The env file the local cloud writes, read back as a map (what `. FILE` would export).
pub fn env_of(cloud: &LocalCloud) -> HashMap<String, String> {
    let path = cloud.state_dir().join("env");
    cloud.write_env_file(&path).expect("env file written");
    let text = std::fs::read_to_string(&path).expect("env file readable");
    text.lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('\'').to_string()))
        .collect()
}

/// A provider builder filled from the local cloud's environment only.
pub fn builder_from_env(env: &HashMap<String, String>) -> EntraCredentialsProviderBuilder {
    let env = env.clone();
    EntraCredentialsProviderBuilder::from_env_fn(move |k| env.get(k).cloned())
        .expect("environment parses")
}

/// A provider configured only from the local cloud's environment.
pub fn provider_from_env(cloud: &LocalCloud) -> EntraCredentialsProvider {
    builder_from_env(&env_of(cloud))
        .build()
        .expect("provider builds")
}

/// An `aws-sdk-sts` client using `provider` (ours, or a chain around it), pointed at the local cloud.
pub fn sts_client(
    cloud: &LocalCloud,
    provider: impl aws_credential_types::provider::ProvideCredentials + 'static,
) -> aws_sdk_sts::Client {
    let config = aws_sdk_sts::Config::builder()
        .behavior_version(aws_sdk_sts::config::BehaviorVersion::latest())
        .region(aws_sdk_sts::config::Region::new("us-east-2"))
        .endpoint_url(cloud.http_url())
        .credentials_provider(provider)
        .build();
    aws_sdk_sts::Client::from_conf(config)
}

/// The session credentials the provider gets from the local cloud, without their expiry (for
/// requests signed by hand, which need no refresh).
pub async fn session_credentials(cloud: &LocalCloud) -> aws_credential_types::Credentials {
    let c = provider_from_env(cloud).credentials().await.unwrap();
    aws_credential_types::Credentials::new(
        c.access_key_id(),
        c.secret_access_key(),
        c.session_token().map(str::to_string),
        None,
        "test",
    )
}

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the workspace")
        .to_path_buf()
}

/// A recorded real response (or published sample) from `tests/recorded/`, with its `source`.
pub fn recorded(path: &str) -> serde_json::Value {
    let file = workspace_root().join("tests/recorded").join(path);
    let text = std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("recorded response {}: {e}", file.display()));
    let value: serde_json::Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("recorded response {}: {e}", file.display()));
    assert!(
        value["source"]
            .as_str()
            .is_some_and(|s| s.starts_with("https://")),
        "{} names its source URL",
        file.display()
    );
    value
}

/// The library's v1 token for the intermediary app, re-signed by the tenant's key after `edit`
/// changes its claims (an expired, old or otherwise altered token Entra could have issued).
pub async fn resigned_v1_token(
    cloud: &LocalCloud,
    edit: impl FnOnce(&mut serde_json::Value),
) -> String {
    let token = provider_from_env(cloud)
        .web_identity_token()
        .await
        .expect("a v1 token");
    let mut claims = unverified_claims(token.token().expose_secret());
    edit(&mut claims);
    cloud
        .state()
        .tenant_keys
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .sign(&claims, true)
}

/// A JWT's claims, not verified (for tests that compare claim sets).
pub fn unverified_claims(token: &str) -> serde_json::Value {
    jsonwebtoken::dangerous::insecure_decode_claims(token).expect("a JWT")
}

/// The Python interpreter of the venv holding the third-party peers (boto3, azure-identity, PyJWT,
/// moto), created from `tests/python/requirements.txt` on first use. Fails loudly when it cannot be
/// created: a missing peer must never turn into a skipped test.
pub fn python() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let root = workspace_root();
            let venv = root.join("target").join("py-peers");
            let requirements = root.join("tests/python/requirements.txt");
            let stamp = venv.join(".requirements");
            let wanted = std::fs::read_to_string(&requirements).expect("tests/python/requirements.txt");
            std::fs::create_dir_all(root.join("target")).expect("target dir");
            // Serialise venv creation across test processes.
            let lock = std::fs::File::create(root.join("target/py-peers.lock")).expect("lock file");
            lock.lock().expect("lock the venv");
            let python = venv.join("bin/python");
            if std::fs::read_to_string(&stamp).ok().as_deref() != Some(wanted.as_str()) || !python.exists() {
                let status = Command::new("python3").args(["-m", "venv", "--clear"]).arg(&venv).status().expect("python3 must be installed to run the system tests");
                assert!(status.success(), "python3 -m venv failed: install python3-venv");
                let status = Command::new(&python)
                    .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r"])
                    .arg(&requirements)
                    .status()
                    .expect("pip runs");
                assert!(status.success(), "pip install -r tests/python/requirements.txt failed: the Python peers are required");
                std::fs::write(&stamp, &wanted).expect("stamp");
            }
            lock.unlock().expect("unlock");
            python
        })
        .clone()
}

/// Runs `tests/python/<script>` with `env` added; returns stdout, panicking with stderr on failure.
/// Nothing ambient reaches it: no AWS credentials, profile or config files unless `env` sets them.
pub async fn run_python(script: &str, env: &HashMap<String, String>) -> String {
    let python = python();
    let script_path = workspace_root().join("tests/python").join(script);
    let mut cmd = tokio::process::Command::new(python);
    cmd.arg(&script_path).kill_on_drop(true);
    for var in AMBIENT_VARIABLES {
        cmd.env_remove(var);
    }
    cmd.env("AWS_CONFIG_FILE", "/nonexistent/aws-config").env(
        "AWS_SHARED_CREDENTIALS_FILE",
        "/nonexistent/aws-credentials",
    );
    // Bounded: a hung peer fails the test (and is killed) instead of hanging it.
    let out = tokio::time::timeout(std::time::Duration::from_secs(180), cmd.envs(env).output())
        .await
        .unwrap_or_else(|_| panic!("python {script} did not finish within 180 s"))
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "python {script} failed:\n--- stdout\n{stdout}\n--- stderr\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Starts the Agent ID sidecar emulation for `cloud` on 127.0.0.1:0, with downstream API
/// `weather-api` at `weather_base`; returns its base URL.
pub async fn start_sidecar(
    cloud: &LocalCloud,
    allow_overrides: bool,
    weather_base: &str,
) -> String {
    let config = local_cloud::sidecar::SidecarConfig::tutorial(
        &cloud.http_url(),
        weather_base,
        allow_overrides,
    );
    cloud
        .start_sidecar(config)
        .await
        .expect("the sidecar starts")
}

/// The local developer's token for the Blueprint's `access_as_user` scope (password grant).
pub async fn dev_user_token(cloud: &LocalCloud) -> entra_federation::SecretString {
    entra_federation::SecretString::new(
        cloud
            .dev_user_token()
            .await
            .expect("the developer signs in"),
    )
}

/// The browser peer: Debian's Chromium and the pinned `playwright-core` in `tests/browser`
/// (installed from its lock file on first use). Fails loudly when either is missing.
pub fn browser_peer() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        assert!(Path::new(&chromium).exists(), "{chromium} is missing: install Debian's chromium (apt-get install chromium), as .ci/run does");
        let dir = workspace_root().join("tests/browser");
        let lock = std::fs::File::create(workspace_root().join("target/browser-peer.lock")).expect("lock file");
        lock.lock().expect("lock");
        if !dir.join("node_modules/playwright-core").exists() {
            let status = Command::new("npm").args(["ci", "--no-audit", "--no-fund"]).current_dir(&dir).status().expect("npm must be installed to run the browser test");
            assert!(status.success(), "npm ci in tests/browser failed: playwright-core is required");
        }
        lock.unlock().expect("unlock");
        dir
    })
    .clone()
}

/// The seed for a test's jitter: `JITTER_SEED` if set, else a new one. It is printed, and the
/// test harness shows it when the test fails, so the failing run can be replayed with
/// `JITTER_SEED=<seed> cargo test …`.
pub fn jitter_seed() -> u64 {
    let seed = std::env::var("JITTER_SEED")
        .ok()
        .map(|s| s.parse().expect("JITTER_SEED must be an unsigned integer"))
        .unwrap_or_else(|| fastrand::u64(..));
    println!("jitter seed {seed} (replay with JITTER_SEED={seed})");
    seed
}

/// Callers of `provide_credentials`, each in a task of its own, counting those whose first poll
/// found no answer ready: proof that they were waiting on the upstream, not served from cache.
pub struct Callers {
    handles: Vec<
        tokio::task::JoinHandle<
            Result<
                aws_credential_types::Credentials,
                aws_credential_types::provider::error::CredentialsError,
            >,
        >,
    >,
    waiting: tokio::sync::watch::Receiver<usize>,
}

impl Callers {
    /// Spawns `n` callers of `provider`.
    pub fn spawn(provider: &EntraCredentialsProvider, n: usize) -> Self {
        use aws_credential_types::provider::ProvideCredentials;
        use std::future::Future;
        let (tx, waiting) = tokio::sync::watch::channel(0usize);
        let tx = std::sync::Arc::new(tx);
        let handles = (0..n)
            .map(|_| {
                let p = provider.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut call = std::pin::pin!(p.provide_credentials());
                    let mut first = true;
                    std::future::poll_fn(|cx| {
                        let poll = call.as_mut().poll(cx);
                        if std::mem::take(&mut first) && poll.is_pending() {
                            tx.send_modify(|w| *w += 1);
                        }
                        poll
                    })
                    .await
                })
            })
            .collect();
        Self { handles, waiting }
    }

    /// Waits until `n` callers are waiting (at most two minutes).
    pub async fn until_waiting(&mut self, n: usize) {
        let waiting = self.waiting.wait_for(|w| *w >= n);
        within("the callers to be waiting", waiting)
            .await
            .expect("callers' counter alive");
    }

    /// How many callers found no answer ready on their first poll.
    pub fn waiting(&self) -> usize {
        *self.waiting.borrow()
    }

    /// How many callers have finished.
    pub fn finished(&self) -> usize {
        self.handles.iter().filter(|h| h.is_finished()).count()
    }

    /// Every caller's outcome.
    pub async fn join(
        self,
    ) -> Vec<
        Result<
            aws_credential_types::Credentials,
            aws_credential_types::provider::error::CredentialsError,
        >,
    > {
        let mut out = Vec::with_capacity(self.handles.len());
        for h in self.handles {
            out.push(h.await.expect("caller task"));
        }
        out
    }
}

/// A loopback address where nothing listens, for as long as the returned socket lives: the port
/// is bound but never listening, so connections are refused and no other process can take it
/// (unlike a fixed "dead" port such as 9, or a port 0 bound and dropped).
pub fn dead_endpoint() -> (tokio::net::TcpSocket, String) {
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    socket
        .bind("127.0.0.1:0".parse().expect("address"))
        .expect("bind 127.0.0.1:0");
    let url = format!("http://{}", socket.local_addr().expect("bound address"));
    (socket, url)
}

/// `future`'s output, or a failure naming `what` after two minutes: for waits on a condition that
/// a regression could leave unmet (tests on a real clock).
pub async fn within<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(std::time::Duration::from_secs(120), future)
        .await
        .unwrap_or_else(|_| panic!("waited two minutes for {what}"))
}

/// What the library, the AWS SDKs and azure-identity read from the environment: removed from the
/// children the tests start (and, where a test uses the process environment, from it), so the
/// machine's own settings cannot change what is tested. Tests then set what they mean.
pub const AMBIENT_VARIABLES: &[&str] = &[
    "TENANT_ID",
    "AZURE_TENANT_ID",
    "STS_APP_ID",
    "STS_APP_URI",
    "ENTRA_FEDERATION_SCOPE",
    "AZURE_AUTHORITY_HOST",
    "AZURE_FEDERATED_TOKEN_FILE",
    "IDENTITY_ENDPOINT",
    "IDENTITY_HEADER",
    "MSI_ENDPOINT",
    "MSI_SECRET",
    "AZURE_POD_IDENTITY_AUTHORITY_HOST",
    "AZURE_CLIENT_ID",
    "ENTRA_FEDERATION_ASSERTION_SOURCE",
    "ENTRA_FEDERATION_CA_FILE",
    "ENTRA_FEDERATION_ALLOW_HTTP",
    "ENTRA_FEDERATION_CACHE_DIR",
    "TOKEN_FILE_MODE",
    "AWS_ROLE_ARN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ROLE_SESSION_NAME",
    "AWS_ROLE_DURATION_SECONDS",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_STS",
    "AWS_ENDPOINT_URL_BEDROCK_RUNTIME",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_BEARER_TOKEN_BEDROCK",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    "AWS_EC2_METADATA_DISABLED",
    "AWS_STS_REGIONAL_ENDPOINTS",
    "AWS_USE_FIPS_ENDPOINT",
    "AWS_USE_DUALSTACK_ENDPOINT",
];

/// `GET path` on `app` in process (no socket): the status and the JSON body.
pub async fn get_json_in_process(app: axum::Router, path: &str) -> (u16, serde_json::Value) {
    use tower::ServiceExt;
    let response = app
        .oneshot(
            axum::http::Request::get(path)
                .body(axum::body::Body::empty())
                .expect("request"),
        )
        .await
        .expect("an answer, not a dropped connection");
    let status = response.status().as_u16();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("body");
    (status, serde_json::from_slice(&body).expect("a JSON body"))
}

/// A router whose `GET /boom` panics the way a slicing bug does (a byte offset inside a
/// character): for the services' panic guards.
pub fn panicking_router() -> axum::Router {
    axum::Router::new().route(
        "/boom",
        axum::routing::get(|| async {
            let text = std::hint::black_box("İİİİ");
            text[..1].to_string()
        }),
    )
}

/// Rotates the local cloud's identity header over its control route, as the platform does;
/// returns the new value.
pub async fn rotate_identity_header(cloud: &LocalCloud) -> String {
    let rotated: serde_json::Value = reqwest::Client::new()
        .post(format!(
            "{}/_local/rotate-identity-header",
            cloud.http_url()
        ))
        .json(&serde_json::json!({}))
        .send()
        .await
        .expect("the control route answers")
        .json()
        .await
        .expect("a JSON answer");
    rotated["identity_header"]
        .as_str()
        .expect("the new header")
        .to_string()
}

/// What a process printed, and how it ended, after [`sigterm_once_ready`].
#[derive(Debug)]
pub struct Stopped {
    /// Its exit status.
    pub status: std::process::ExitStatus,
    /// From SIGTERM to exit.
    pub took: std::time::Duration,
    /// Its stdout and stderr, line by line, in arrival order.
    pub output: String,
}

/// Starts `cmd`, waits (at most two minutes) until a line of its stdout or stderr contains
/// `ready`, sends it SIGTERM (what a container stop sends PID 1) and waits (at most 30 s) for it
/// to exit.
pub async fn sigterm_once_ready(mut cmd: tokio::process::Command, ready: &str) -> Stopped {
    use tokio::io::AsyncBufReadExt;
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("the binary starts");
    let (lines, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let out = child.stdout.take().expect("piped stdout");
    let err = child.stderr.take().expect("piped stderr");
    for reader in [
        Box::new(out) as Box<dyn tokio::io::AsyncRead + Send + Unpin>,
        Box::new(err),
    ] {
        let lines = lines.clone();
        tokio::spawn(async move {
            let mut reader = tokio::io::BufReader::new(reader).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                let _ = lines.send(line);
            }
        });
    }
    drop(lines);
    let mut output = String::new();
    within(&format!("a line containing {ready:?}"), async {
        while let Some(line) = rx.recv().await {
            output.push_str(&line);
            output.push('\n');
            if line.contains(ready) {
                return;
            }
        }
        panic!("the process ended before saying {ready:?}:\n{output}");
    })
    .await;
    let pid = child.id().expect("still running") as libc::pid_t;
    let sent = tokio::time::Instant::now();
    // SAFETY: signalling our own child, which has not been reaped (we hold it).
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0, "SIGTERM sent");
    let status = tokio::time::timeout(std::time::Duration::from_secs(30), child.wait())
        .await
        .unwrap_or_else(|_| panic!("still running 30 s after SIGTERM:\n{output}"))
        .expect("exit status");
    let took = sent.elapsed();
    while let Some(line) = rx.recv().await {
        output.push_str(&line);
        output.push('\n');
    }
    Stopped {
        status,
        took,
        output,
    }
}

/// A request to the local Bedrock signed as the AWS SDK signs it (SigV4, service `bedrock`, the
/// cloud's region), for bodies the SDK's typed builders cannot express (a conversation Bedrock
/// must refuse); a JSON string is sent as its text. Returns the status, the `x-amzn-errortype` header and the JSON body.
pub async fn signed_bedrock_post(
    cloud: &LocalCloud,
    credentials: aws_credential_types::Credentials,
    path: &str,
    body: &serde_json::Value,
) -> (u16, Option<String>, serde_json::Value) {
    // A string is sent as it is (its keys in their order); anything else as its JSON.
    let body = match body {
        serde_json::Value::String(raw) => raw.clone().into_bytes(),
        other => serde_json::to_vec(other).unwrap(),
    };
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    let url = format!("{}{path}", cloud.http_url());
    let host = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let identity: aws_smithy_runtime_api::client::identity::Identity = credentials.into();
    let region = cloud.state().registry().aws_region.clone();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(&region)
        .name("bedrock")
        .time(std::time::SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let headers = [
        ("host", host.as_str()),
        ("content-type", "application/json"),
    ];
    let signable = SignableRequest::new(
        "POST",
        &url,
        headers.into_iter(),
        SignableBody::Bytes(&body),
    )
    .unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    let mut request = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/json")
        .body(body);
    for (name, value) in instructions.headers() {
        request = request.header(name, value);
    }
    let answer = request.send().await.unwrap();
    let status = answer.status().as_u16();
    let error_type = answer
        .headers()
        .get("x-amzn-errortype")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let json = answer.json().await.unwrap_or(serde_json::Value::Null);
    (status, error_type, json)
}
