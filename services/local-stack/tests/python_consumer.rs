//! The stack's token file, consumed by a Python agent exactly as the binary tells people to.

use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;
use system_tests::run_python;
use tokio::io::{AsyncBufReadExt, BufReader};

const EPHEMERAL: &[&str] = &[
    "--cloud-listen",
    "127.0.0.1:0",
    "--cloud-https-listen",
    "127.0.0.1:0",
    "--agent-listen",
    "127.0.0.1:0",
    "--sidecar-listen",
    "127.0.0.1:0",
    "--weather-listen",
    "127.0.0.1:0",
];

/// How long the binary may take to start (or to run `--once`): generous, but bounded.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The stack binary, killed when dropped: nothing outlives a failing test.
fn local_stack() -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_local-stack"));
    cmd.kill_on_drop(true).stdin(Stdio::null());
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_agent_uses_the_stacks_token_file() {
    let dir = std::env::temp_dir().join(format!("local-stack-test-{}", std::process::id()));
    let mut child = local_stack()
        .args(EPHEMERAL)
        .arg("--state-dir")
        .arg(&dir)
        .stdout(Stdio::piped())
        .spawn()
        .expect("local-stack starts");
    // Read what the binary prints, up to the instructions' last line.
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let printed = tokio::time::timeout(START_TIMEOUT, async {
        let mut printed = Vec::new();
        while let Some(line) = lines.next_line().await.expect("stdout readable") {
            if line.starts_with("open http") {
                return printed;
            }
            printed.push(line);
        }
        panic!("local-stack closed its stdout before 'open http…': {printed:?}");
    })
    .await
    .unwrap_or_else(|_| {
        panic!("local-stack printed no 'open http…' line within {START_TIMEOUT:?}")
    });
    let env: HashMap<String, String> = printed
        .iter()
        .filter_map(|l| l.trim().strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('\'').to_string()))
        .collect();
    assert!(
        printed.iter().any(|l| l.starts_with("[refresher] wrote ")),
        "{printed:?}"
    );
    let mut names: Vec<&str> = env.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "AWS_ENDPOINT_URL_STS",
            "AWS_REGION",
            "AWS_ROLE_ARN",
            "AWS_WEB_IDENTITY_TOKEN_FILE"
        ],
        "{printed:?}"
    );
    let out = run_python("boto3_caller.py", &env).await;
    let r: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(r["method"], "assume-role-with-web-identity");
    assert!(
        r["arns"][0]
            .as_str()
            .unwrap()
            .starts_with("arn:aws:sts::123456789012:assumed-role/BedrockInvokerFromAzure/")
    );
    child.kill().await.expect("the stack stops");

    let status = tokio::time::timeout(
        START_TIMEOUT,
        local_stack()
            .arg("--once")
            .args(EPHEMERAL)
            .stdout(Stdio::null())
            .status(),
    )
    .await
    .unwrap_or_else(|_| panic!("local-stack --once did not exit within {START_TIMEOUT:?}"))
    .expect("local-stack --once runs");
    assert!(
        status.success(),
        "--once exits 0 once the token file is written"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
