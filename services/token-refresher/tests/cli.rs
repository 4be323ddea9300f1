//! The command line: `--help` of each mode names the variables it reads; `--mode 0640` shares the
//! file with the group; bad modes and missing settings are refused with the name to fix.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use system_tests::*;

const BIN: &str = env!("CARGO_BIN_EXE_token-refresher");

#[test]
fn help_of_each_mode_explains_the_variables() {
    for (args, mode_specific) in [
        (vec!["--help"], "AWS_WEB_IDENTITY_TOKEN_FILE"),
        (vec!["credential-process", "--help"], "credential_process"),
        (
            vec!["serve", "--help"],
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
        ),
    ] {
        let out = Command::new(BIN).args(&args).output().unwrap();
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        for var in [
            "TENANT_ID",
            "STS_APP_ID",
            "AWS_ROLE_ARN",
            "IDENTITY_ENDPOINT",
            mode_specific,
        ] {
            assert!(
                text.contains(var),
                "{args:?} --help does not mention {var}:\n{text}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_readable_mode_and_refusals() {
    let cloud = cloud().await;
    let dir = std::env::temp_dir().join(format!("refresher-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("token");
    let env = env_of(&cloud);
    let run = |args: Vec<String>, env: std::collections::HashMap<String, String>| {
        tokio::task::spawn_blocking(move || {
            Command::new(BIN)
                .args(args)
                .env_clear()
                .envs(env)
                .output()
                .unwrap()
        })
    };
    let out = run(
        vec![
            "--once".into(),
            "--mode".into(),
            "0640".into(),
            "--file".into(),
            file.display().to_string(),
        ],
        env.clone(),
    )
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o640
    );

    let out = run(
        vec![
            "--once".into(),
            "--mode".into(),
            "0666".into(),
            "--file".into(),
            file.display().to_string(),
        ],
        env.clone(),
    )
    .await
    .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("0600 or 0640"));

    let out = run(vec!["--once".into()], env.clone()).await.unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("AWS_WEB_IDENTITY_TOKEN_FILE"));

    let out = run(
        vec!["serve".into(), "--listen".into(), "0.0.0.0:0".into()],
        env,
    )
    .await
    .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("loopback"));
    let _ = std::fs::remove_dir_all(&dir);
}
