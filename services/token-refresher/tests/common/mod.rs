//! What the token-refresher test binaries share: children that never outlive a failed test and
//! never hang it.

// Each test binary uses a part of this module.
#![allow(dead_code)]

use std::process::{Output, Stdio};
use std::time::Duration;

/// The refresher binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_token-refresher");

/// How long any one child may take: generous (a loaded 2-core machine), but a hang fails the test.
pub const CHILD_TIMEOUT: Duration = Duration::from_secs(60);

/// A `tokio::process::Command` for the refresher, killed when dropped (so a failing or timed-out
/// test leaves nothing running), with no stdin and none of the machine's Azure/AWS settings.
pub fn refresher() -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.kill_on_drop(true).stdin(Stdio::null());
    // Only what the test sets: not the machine's own Azure/AWS settings.
    for var in system_tests::AMBIENT_VARIABLES {
        cmd.env_remove(var);
    }
    cmd
}

/// Runs `cmd` to completion, capturing stdout and stderr; panics (and kills the child) when it
/// does not finish within [`CHILD_TIMEOUT`]. `what` names it in the panic message.
pub async fn output(mut cmd: tokio::process::Command, what: impl Into<String>) -> Output {
    let what = what.into();
    cmd.kill_on_drop(true)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    match tokio::time::timeout(CHILD_TIMEOUT, child.wait_with_output()).await {
        Ok(out) => out.unwrap_or_else(|e| panic!("{what}: cannot collect its output: {e}")),
        Err(_) => panic!("{what} did not finish within {CHILD_TIMEOUT:?} (killed)"),
    }
}
