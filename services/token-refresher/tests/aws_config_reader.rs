//! aws-config's own web-identity support (the default credential chain, configured only by the
//! environment, as a Rust app would use it) reading the file the refresher wrote.
//!
//! This binary holds one test and runs it on a current-thread runtime, so setting process
//! environment variables cannot race another thread.

mod common;

use common::{output, refresher};
use system_tests::*;

#[test]
fn the_default_chain_reads_the_refreshers_file() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let cloud = cloud().await;
        let dir = std::env::temp_dir().join(format!("refresher-awsconfig-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("token");
        let mut env = env_of(&cloud);
        env.insert(
            "AWS_WEB_IDENTITY_TOKEN_FILE".into(),
            file.display().to_string(),
        );
        // Killed if it hangs or the test fails: nothing outlives the test.
        let mut cmd = refresher();
        cmd.arg("--once").envs(&env);
        let out = output(cmd, "token-refresher --once").await;
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );

        for k in AMBIENT_VARIABLES {
            // SAFETY: single test in this binary on a current-thread runtime: no other thread
            // reads or writes the environment while this runs.
            unsafe { std::env::remove_var(k) };
        }
        for (k, v) in [
            ("AWS_WEB_IDENTITY_TOKEN_FILE", file.display().to_string()),
            ("AWS_ROLE_ARN", env["AWS_ROLE_ARN"].clone()),
            ("AWS_ROLE_SESSION_NAME", "aws-config-reader".to_string()),
            ("AWS_ENDPOINT_URL_STS", env["AWS_ENDPOINT_URL_STS"].clone()),
            ("AWS_REGION", "us-east-2".to_string()),
            // Not the machine's own ~/.aws: a profile there would take precedence or fail the chain.
            (
                "AWS_CONFIG_FILE",
                dir.join("no-config").display().to_string(),
            ),
            (
                "AWS_SHARED_CREDENTIALS_FILE",
                dir.join("no-credentials").display().to_string(),
            ),
            ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
        ] {
            // SAFETY: single test in this binary on a current-thread runtime: no other thread reads
            // or writes the environment while this runs.
            unsafe { std::env::set_var(k, v) };
        }

        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .load()
            .await;
        let who = aws_sdk_sts::Client::new(&config)
            .get_caller_identity()
            .send()
            .await
            .expect("aws-config's web identity provider works");
        assert_eq!(
            who.arn(),
            Some(
                "arn:aws:sts::123456789012:assumed-role/BedrockInvokerFromAzure/aws-config-reader"
            )
        );
        let _ = std::fs::remove_dir_all(&dir);
    });
}
