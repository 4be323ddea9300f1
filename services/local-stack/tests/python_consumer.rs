//! The stack's token file, consumed by a Python agent exactly as the binary tells people to.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use system_tests::run_python;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_agent_uses_the_stacks_token_file() {
    let dir = std::env::temp_dir().join(format!("local-stack-test-{}", std::process::id()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_local-stack"))
        .args(EPHEMERAL)
        .arg("--state-dir")
        .arg(&dir)
        .stdout(Stdio::piped())
        .spawn()
        .expect("local-stack starts");
    // Read what the binary prints, up to the instructions' last line.
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let printed: Vec<String> = tokio::task::block_in_place(|| {
        stdout
            .lines()
            .map_while(Result::ok)
            .take_while(|l| !l.starts_with("open http"))
            .collect()
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
    assert_eq!(env.len(), 4, "{printed:?}");
    let out = run_python("boto3_caller.py", &env).await;
    let r: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(r["method"], "assume-role-with-web-identity");
    assert!(
        r["arns"][0]
            .as_str()
            .unwrap()
            .starts_with("arn:aws:sts::123456789012:assumed-role/BedrockInvokerFromAzure/")
    );
    let _ = child.kill();
    let _ = child.wait();

    let status = Command::new(env!("CARGO_BIN_EXE_local-stack"))
        .arg("--once")
        .args(EPHEMERAL)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(
        status.success(),
        "--once exits 0 once the token file is written"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
