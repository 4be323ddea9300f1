//! Issue 12 point 22: SIGTERM (a container stop, the binary as PID 1) stops the refresher at
//! once and cleanly, in both long-running modes, leaving no temp or generated files behind.

mod common;

use common::refresher;
use std::time::Duration;
use system_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_stops_on_sigterm_and_removes_its_generated_token_file() {
    let cloud = cloud().await;
    let mut cmd = refresher();
    cmd.envs(env_of(&cloud))
        .args(["serve", "--listen", "127.0.0.1:0"]);
    let stopped = sigterm_once_ready(cmd, "AWS_CONTAINER_CREDENTIALS_FULL_URI=").await;
    assert!(stopped.status.success(), "exit 0: {stopped:?}");
    assert!(stopped.took < Duration::from_secs(5), "{stopped:?}");
    let auth_file = stopped
        .output
        .lines()
        .find_map(|l| l.strip_prefix("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE="))
        .expect("the generated token file is announced");
    assert!(
        !std::path::Path::new(auth_file).exists(),
        "{auth_file} removed on exit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_mode_stops_on_sigterm_without_leaving_temp_files() {
    let cloud = cloud().await;
    let dir = cloud.state_dir().join("refresher-sigterm");
    std::fs::create_dir_all(&dir).unwrap();
    let token = dir.join("token");
    let mut cmd = refresher();
    cmd.envs(env_of(&cloud))
        .arg("--file")
        .arg(&token)
        .args(["--health-listen", "127.0.0.1:0"]);
    let stopped = sigterm_once_ready(cmd, "health: http://").await;
    assert!(stopped.status.success(), "exit 0: {stopped:?}");
    assert!(stopped.took < Duration::from_secs(5), "{stopped:?}");
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "token")
        .collect();
    assert!(leftovers.is_empty(), "left behind: {leftovers:?}");
}

/// Issue 12 point 23: `--health-listen PORT` binds loopback; another interface only when named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bare_health_port_binds_loopback() {
    let cloud = cloud().await;
    let dir = cloud.state_dir().join("refresher-health-port");
    std::fs::create_dir_all(&dir).unwrap();
    let mut cmd = refresher();
    cmd.envs(env_of(&cloud))
        .arg("--file")
        .arg(dir.join("token"))
        .args(["--health-listen", "0"]);
    let stopped = sigterm_once_ready(cmd, "health: http://").await;
    assert!(
        stopped.output.contains("health: http://127.0.0.1:"),
        "{stopped:?}"
    );
    assert!(stopped.status.success(), "{stopped:?}");
}
