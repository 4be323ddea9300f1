//! The binary: `local-cloud --listen ADDR --env-file FILE` writes a sourceable environment file and
//! serves until stopped.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn writes_a_sourceable_env_file_and_serves() {
    let dir = std::env::temp_dir().join(format!("local-cloud-bin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let env_file = dir.join("cloud.env");
    let mut child = Child(
        Command::new(env!("CARGO_BIN_EXE_local-cloud"))
            .args([
                "--listen",
                "127.0.0.1:0",
                "--https-listen",
                "127.0.0.1:0",
                "--env-file",
            ])
            .arg(&env_file)
            .arg("--state-dir")
            .arg(&dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("local-cloud starts"),
    );
    // The binary prints the env file's path once it is written: wait for that line, at most a
    // minute (a reader thread, so a silent child cannot hang the test).
    let stdout = BufReader::new(child.0.stdout.take().unwrap());
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = lines
            .recv_timeout(left)
            .expect("the binary announces its env file within 60 s");
        if line.starts_with("environment written to") {
            break;
        }
    }
    assert_eq!(
        std::fs::metadata(&env_file).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // A shell can source it, and what it exports reaches the running cloud.
    let script = format!(
        ". '{}' && for v in IDENTITY_ENDPOINT IDENTITY_HEADER AZURE_AUTHORITY_HOST TENANT_ID STS_APP_ID STS_APP_URI AWS_ROLE_ARN AWS_REGION AWS_DEFAULT_REGION AWS_ENDPOINT_URL_STS ENTRA_FEDERATION_CA_FILE; do eval \"test -n \\\"\\${{$v}}\\\"\" || {{ echo missing $v; exit 1; }}; done && echo $LOCAL_CLOUD_URL",
        env_file.display()
    );
    let out = Command::new("bash").args(["-c", &script]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let base = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let counters: serde_json::Value = rt.block_on(async {
        reqwest::get(format!(
            "{base}/{}/v2.0/.well-known/openid-configuration",
            local_cloud::ids::TENANT_ID
        ))
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
        reqwest::get(format!("{base}/_local/counters"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    assert_eq!(counters["entra_metadata"], 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn prints_the_default_registry_and_refuses_a_bad_one() {
    let out = Command::new(env!("CARGO_BIN_EXE_local-cloud"))
        .arg("--print-default-registry")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        local_cloud::Registry::from_json(&text).unwrap(),
        local_cloud::Registry::tutorial_default()
    );
    let bad = std::env::temp_dir().join(format!("bad-registry-{}.json", std::process::id()));
    std::fs::write(
        &bad,
        text.replace(
            "\"aws_account_id\": \"123456789012\"",
            "\"aws_account_id\": \"12\"",
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_local-cloud"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--https-listen",
            "127.0.0.1:0",
            "--registry",
        ])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("aws_account_id '12' must be 12 digits"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_file(&bad);
}

/// Issue 12 point 22: SIGTERM (a container stop) stops the local cloud at once, exit status 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stops_on_sigterm() {
    use tokio::io::AsyncBufReadExt;
    let dir = std::env::temp_dir().join(format!("local-cloud-sigterm-{}", std::process::id()));
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_local-cloud"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--https-listen",
            "127.0.0.1:0",
            "--env-file",
        ])
        .arg(dir.join("cloud.env"))
        .arg("--state-dir")
        .arg(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("local-cloud starts");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains("environment written") {
                return;
            }
        }
        panic!("ended before writing its env file");
    };
    tokio::time::timeout(std::time::Duration::from_secs(120), ready)
        .await
        .expect("ready within two minutes");
    let pid = child.id().unwrap() as libc::pid_t;
    // SAFETY: signalling our own child, which we have not reaped.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = tokio::time::timeout(std::time::Duration::from_secs(5), child.wait())
        .await
        .expect("stopped within 5 s of SIGTERM")
        .unwrap();
    assert!(status.success(), "{status:?}");
}
