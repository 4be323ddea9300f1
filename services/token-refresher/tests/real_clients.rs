//! The token-refresher binary with clients nobody here wrote: boto3 (token file, credential_process
//! profile, container-credentials endpoint) and aws-config's own WebIdentityTokenCredentialsProvider.

use local_cloud::{LocalCloud, Registry};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use system_tests::*;

mod common;
use common::{output, refresher};

const BIN: &str = env!("CARGO_BIN_EXE_token-refresher");

/// A running refresher whose stdout lines arrive on a channel; killed on drop.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Running {
    fn start(args: &[&str], env: &HashMap<String, String>) -> Self {
        let mut command = Command::new(BIN);
        for var in AMBIENT_VARIABLES {
            command.env_remove(var);
        }
        let mut child = command
            .args(args)
            .envs(env)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("token-refresher starts");
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, lines }
    }

    /// Waits (on a blocking-capable thread) for one line starting with each prefix, in any order.
    async fn lines_starting(&self, prefixes: &[&str]) -> Vec<String> {
        let lines = &self.lines;
        tokio::task::block_in_place(|| {
            let mut found: Vec<Option<String>> = vec![None; prefixes.len()];
            while found.iter().any(Option::is_none) {
                let line = lines
                    .recv_timeout(std::time::Duration::from_secs(60))
                    .unwrap_or_else(|_| panic!("not all of {prefixes:?} within 60 s"));
                if let Some(i) = prefixes.iter().position(|p| line.starts_with(p)) {
                    found[i] = Some(line);
                }
            }
            found.into_iter().map(Option::unwrap).collect()
        })
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("refresher-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// What boto3 needs for the web-identity provider: the file, the role, the STS endpoint. Nothing else.
fn web_identity_env(cloud_env: &HashMap<String, String>, file: &Path) -> HashMap<String, String> {
    let mut env = HashMap::new();
    env.insert(
        "AWS_WEB_IDENTITY_TOKEN_FILE".into(),
        file.display().to_string(),
    );
    for k in ["AWS_ROLE_ARN", "AWS_ENDPOINT_URL_STS", "AWS_REGION"] {
        env.insert(k.into(), cloud_env[k].clone());
    }
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_writes_the_file_that_boto3_uses() {
    let cloud = cloud().await;
    let dir = temp_dir("once");
    let file = dir.join("token");
    let mut env = env_of(&cloud);
    env.insert(
        "AWS_WEB_IDENTITY_TOKEN_FILE".into(),
        file.display().to_string(),
    );
    let mut cmd = refresher();
    cmd.arg("--once").envs(&env);
    let out = output(cmd, "token-refresher --once").await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("[refresher] wrote "))
        .expect("the tutorial's log line");
    let token = std::fs::read_to_string(&file).unwrap();
    assert!(
        line.starts_with(&format!(
            "[refresher] wrote {} ({} chars) iss=https://sts.windows.net/",
            file.display(),
            token.len()
        )),
        "{line}"
    );
    for claim in ["aud=api://", "sub=", "oid=", "exp="] {
        assert!(line.contains(claim), "{line}");
    }
    assert!(
        !stdout.contains(&token),
        "the token itself is never printed"
    );
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let out = run_python("boto3_caller.py", &web_identity_env(&env, &file)).await;
    let r: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(r["method"], "assume-role-with-web-identity");
    assert!(
        r["arns"][0]
            .as_str()
            .unwrap()
            .starts_with("arn:aws:sts::123456789012:assumed-role/BedrockInvokerFromAzure/"),
        "{r}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_keeps_working_across_refreshes_of_the_file() {
    // Entra tokens live 8 s (rewritten every 3-4 s); STS credentials live 4 s, so boto3 refreshes
    // them on every call and re-reads the file each time. boto3 calls once, then once after each
    // of the next three rewrites it sees: no wall-clock pacing to outrun.
    let mut registry = Registry::tutorial_default();
    registry.lifetimes.access_token_min = 8;
    registry.lifetimes.access_token_max = 8;
    registry.lifetimes.sts_credentials_override = Some(4);
    let cloud: LocalCloud = cloud_with(
        registry,
        aws_smithy_async::time::SharedTimeSource::default(),
    )
    .await;
    let dir = temp_dir("refreshes");
    let file = dir.join("token");
    let mut env = env_of(&cloud);
    env.insert(
        "AWS_WEB_IDENTITY_TOKEN_FILE".into(),
        file.display().to_string(),
    );
    let refresher = Running::start(&["--health-listen", "127.0.0.1:0"], &env);
    refresher.lines_starting(&["[refresher] wrote"]).await;

    let mut py = web_identity_env(&env, &file);
    py.insert("WATCH_FILE".into(), file.display().to_string());
    py.insert("REWRITES".into(), "3".into());
    let out = run_python("boto3_caller.py", &py).await;
    let r: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert!(
        r["arns"].as_array().unwrap().len() >= 4,
        "every call succeeded: {r}"
    );
    let distinct = cloud.counter("sts:distinct_web_identity_tokens");
    // Four calls were made on four distinct file contents (the file held the same token before
    // and after each), and boto3's 4-second credentials are always inside its refresh window: it
    // re-read the file for each, so STS saw at least four distinct tokens.
    assert!(
        distinct >= 4,
        "boto3 presented {distinct} distinct tokens: it re-read the rewritten file"
    );
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credential_process_profile_and_ten_invocations_one_sts_call() {
    let cloud = cloud().await;
    let dir = temp_dir("process");
    let cache = dir.join("cache");
    let config = dir.join("aws-config");
    std::fs::write(
        &config,
        format!(
            "[profile entra]\ncredential_process = {BIN} credential-process --cache-dir {}\n",
            cache.display()
        ),
    )
    .unwrap();
    let mut env = env_of(&cloud);
    let mut py = env.clone();
    py.insert("AWS_CONFIG_FILE".into(), config.display().to_string());
    py.insert("PROFILE".into(), "entra".into());
    let out = run_python("boto3_caller.py", &py).await;
    let r: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(r["method"], "custom-process");
    assert!(
        r["arns"][0]
            .as_str()
            .unwrap()
            .ends_with("assumed-role/BedrockInvokerFromAzure/entra-federation"),
        "{r}"
    );

    for i in 0..10 {
        let mut cmd = refresher();
        cmd.args(["credential-process", "--cache-dir"])
            .arg(&cache)
            .envs(&env);
        let out = output(cmd, format!("credential-process invocation {i}")).await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let creds: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("credential_process JSON");
        assert_eq!(creds["Version"], 1);
        for field in [
            "AccessKeyId",
            "SecretAccessKey",
            "SessionToken",
            "Expiration",
        ] {
            assert!(
                creds[field].as_str().is_some_and(|v| !v.is_empty()),
                "{field}"
            );
        }
    }
    assert_eq!(
        cloud.counter("sts:AssumeRoleWithWebIdentity"),
        1,
        "boto3 and ten invocations shared one STS session"
    );
    for entry in std::fs::read_dir(&cache).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name().to_string_lossy().ends_with(".json") {
            assert_eq!(
                entry.metadata().unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
    }

    // Errors go to stderr with a non-zero exit, naming what to fix.
    env.remove("AWS_ROLE_ARN");
    let mut cmd = refresher();
    cmd.args(["credential-process", "--cache-dir"])
        .arg(&cache)
        .env_clear()
        .envs(&env);
    let out = output(cmd, "credential-process without AWS_ROLE_ARN").await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(out.stdout.is_empty());
    assert!(
        stderr.starts_with("token-refresher: AWS_ROLE_ARN is not set: "),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_feeds_boto3_and_refuses_requests_without_the_token() {
    let cloud = cloud().await;
    let dir = temp_dir("serve");
    let env = env_of(&cloud);
    let server = Running::start(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--auth-token-file",
            dir.join("auth").to_str().unwrap(),
        ],
        &env,
    );
    let announced = server
        .lines_starting(&[
            "AWS_CONTAINER_CREDENTIALS_FULL_URI=",
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE=",
        ])
        .await;
    let uri = announced[0].split_once('=').unwrap().1.to_string();
    let token_file = announced[1].split_once('=').unwrap().1.to_string();
    assert_eq!(
        std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let mut py = HashMap::new();
    py.insert(
        "AWS_CONTAINER_CREDENTIALS_FULL_URI".to_string(),
        uri.clone(),
    );
    py.insert(
        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE".to_string(),
        token_file.clone(),
    );
    py.insert(
        "AWS_ENDPOINT_URL_STS".to_string(),
        env["AWS_ENDPOINT_URL_STS"].clone(),
    );
    py.insert("AWS_REGION".to_string(), "us-east-2".to_string());
    py.insert("CALLS".to_string(), "3".to_string());
    let out = run_python("boto3_caller.py", &py).await;
    let r: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(r["method"], "container-role");
    assert_eq!(r["arns"].as_array().unwrap().len(), 3);

    let http = reqwest::Client::new();
    let denied = serde_json::json!({"Code": "AccessDenied", "Message": "the Authorization header does not carry the container authorization token"});
    for auth in [None, Some("wrong")] {
        let mut req = http.get(&uri);
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 401, "{auth:?}");
        assert_eq!(
            r.json::<serde_json::Value>().await.unwrap(),
            denied,
            "{auth:?}"
        );
    }
    let ok = http
        .get(&uri)
        .header(
            "Authorization",
            std::fs::read_to_string(&token_file).unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let ok: serde_json::Value = ok.json().await.unwrap();
    assert!(
        ok["AccessKeyId"].as_str().unwrap().starts_with("ASIA")
            && ok["Token"].is_string()
            && ok["Expiration"].is_string()
    );
    assert_eq!(
        cloud.counter("sts:AssumeRoleWithWebIdentity"),
        1,
        "one STS session served every request"
    );
}
