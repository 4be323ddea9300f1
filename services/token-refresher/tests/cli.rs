//! The command line: `--help` of each mode names the variables it reads; `--mode 0640` shares the
//! file with the group; bad modes and missing settings are refused with the name to fix.

mod common;

use common::{output, refresher};
use std::os::unix::fs::PermissionsExt;
use system_tests::*;

#[tokio::test]
async fn help_of_each_mode_explains_the_variables() {
    for (args, mode_specific) in [
        (vec!["--help"], "AWS_WEB_IDENTITY_TOKEN_FILE"),
        (vec!["credential-process", "--help"], "credential_process"),
        (
            vec!["serve", "--help"],
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
        ),
    ] {
        let mut cmd = refresher();
        cmd.args(&args);
        let out = output(cmd, format!("token-refresher {args:?}")).await;
        assert_eq!(out.status.code(), Some(0), "{args:?}");
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
        let mut cmd = refresher();
        cmd.args(&args).env_clear().envs(env);
        output(cmd, format!("token-refresher {args:?}"))
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
    .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o640
    );
    assert!(
        std::fs::read_to_string(&file).unwrap().starts_with("eyJ"),
        "a JWT was written"
    );

    // Each refusal: a usage error (clap: exit 2) or a configuration error (exit 1), on stderr,
    // naming what to fix; nothing on stdout.
    for (args, code, expected) in [
        (
            vec!["--once", "--mode", "0666", "--file", "/nonexistent/token"],
            2,
            "'0666': the token file mode must be 0600 or 0640",
        ),
        (
            vec!["--once"],
            1,
            "token-refresher: AWS_WEB_IDENTITY_TOKEN_FILE (or --file) is not set: the path of the token file to write\n",
        ),
        (
            vec!["serve", "--listen", "0.0.0.0:0"],
            1,
            "token-refresher: --listen 0.0.0.0:0: the credentials endpoint must listen on loopback (SDKs refuse plain http elsewhere)\n",
        ),
    ] {
        let out = run(args.iter().map(|a| a.to_string()).collect(), env.clone()).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
        if expected.ends_with('\n') {
            assert_eq!(stderr, expected, "{args:?}");
        } else {
            assert!(stderr.contains(expected), "{args:?}: {stderr}");
        }
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
