//! Issue 12 points 20 and 21, across every server of the stack (the agent, the weather API, the
//! sidecar emulation, the local cloud on http and https): an oversized body is a 413 JSON answer
//! without being read, and a client that never finishes its headers is disconnected.

use local_stack::{Stack, StackOptions, start};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn stack(name: &str) -> Stack {
    let dir = std::env::temp_dir().join(format!(
        "local-stack-surfaces-{name}-{}",
        std::process::id()
    ));
    start(StackOptions::ephemeral(dir))
        .await
        .expect("the stack starts")
}

fn servers(stack: &Stack) -> Vec<(&'static str, String)> {
    vec![
        ("agent", stack.agent_url.clone()),
        ("weather-api", stack.weather_url.clone()),
        ("sidecar", stack.sidecar_url.clone()),
        ("local cloud (http)", stack.cloud.http_url()),
        ("local cloud (https)", stack.cloud.https_url()),
    ]
}

/// A request announcing an 8 MiB body, of which nothing is sent: the answer must come without
/// the body being read. (The local cloud's https listener serves the same hardened router.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_server_answers_an_oversized_body_with_413_json() {
    let stack = stack("413").await;
    for (name, url) in servers(&stack)
        .into_iter()
        .filter(|(_, url)| url.starts_with("http://"))
    {
        let addr = url.trim_start_matches("http://");
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        tcp.write_all(
            b"POST /api/chat HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 8388608\r\n\r\n",
        )
        .await
        .unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(30), tcp.read_to_end(&mut answer))
            .await
            .unwrap_or_else(|_| panic!("{name}: no answer without the body"))
            .unwrap();
        let answer = String::from_utf8_lossy(&answer);
        let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
        assert!(head.starts_with("HTTP/1.1 413"), "{name}: {answer}");
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: application/json"),
            "{name}: {answer}"
        );
        assert!(
            body.contains("larger than"),
            "{name}: says what is wrong: {answer}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_server_disconnects_a_client_that_never_finishes_its_headers() {
    let stack = stack("slow-headers").await;
    let checks = servers(&stack).into_iter().map(|(name, url)| async move {
        let addr = url.split("://").nth(1).unwrap().to_string();
        let mut tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
        // Half a request line, then nothing (for https, half a TLS hello is just as stuck).
        tcp.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            .await
            .unwrap();
        let mut rest = Vec::new();
        let closed =
            tokio::time::timeout(Duration::from_secs(60), tcp.read_to_end(&mut rest)).await;
        assert!(closed.is_ok(), "{name}: still connected after a minute");
    });
    futures::future::join_all(checks).await;
}

/// Issue 12 point 22: SIGTERM stops the whole stack at once, exit status 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stack_stops_on_sigterm() {
    let dir = std::env::temp_dir().join(format!("local-stack-sigterm-{}", std::process::id()));
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_local-stack"));
    for var in system_tests::AMBIENT_VARIABLES {
        cmd.env_remove(var);
    }
    for (flag, value) in [
        ("--cloud-listen", "127.0.0.1:0"),
        ("--cloud-https-listen", "127.0.0.1:0"),
        ("--agent-listen", "127.0.0.1:0"),
        ("--sidecar-listen", "127.0.0.1:0"),
        ("--weather-listen", "127.0.0.1:0"),
    ] {
        cmd.args([flag, value]);
    }
    cmd.arg("--state-dir").arg(&dir);
    let stopped = system_tests::sigterm_once_ready(cmd, "Ctrl-C to stop").await;
    assert!(stopped.status.success(), "exit 0: {stopped:?}");
    assert!(stopped.took < Duration::from_secs(5), "{stopped:?}");
}
