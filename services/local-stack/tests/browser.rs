//! The page in a real browser (Debian's Chromium, driven by playwright-core): a question in Bedrock
//! mode gets its answer and trace rendered; markup in a message stays text; the CSP is not violated.

use local_stack::{StackOptions, start};
use std::process::Stdio;
use std::time::Duration;
use system_tests::{browser_peer, dev_user_token, workspace_root};

/// How long the browser run (Chromium start, two chats, a screenshot) may take on a loaded machine.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(180);

/// The step labels the page rendered.
fn steps(list: &serde_json::Value) -> Vec<&str> {
    list.as_array()
        .expect("a list of steps")
        .iter()
        .map(|s| s.as_str().expect("a step label"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_works_in_chromium_and_renders_data_as_text() {
    let dir = std::env::temp_dir().join(format!("local-stack-browser-{}", std::process::id()));
    let stack = start(StackOptions::ephemeral(dir))
        .await
        .expect("the stack starts");
    let browser = tokio::task::spawn_blocking(browser_peer).await.unwrap();
    let screenshot = workspace_root().join("target/agent-page.png");
    let url = stack.agent_url.clone();
    let user = dev_user_token(&stack.cloud)
        .await
        .expose_secret()
        .to_string();
    // Killed when dropped: a failing or timed-out test leaves no browser behind.
    let run = tokio::process::Command::new("node")
        .arg(browser.join("page.mjs"))
        .env("AGENT_URL", url)
        .env("USER_TOKEN", user)
        .env("SCREENSHOT", &screenshot)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(BROWSER_TIMEOUT, run)
        .await
        .unwrap_or_else(|_| panic!("the browser run did not finish within {BROWSER_TIMEOUT:?}"))
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the browser run failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_str(stdout.trim().lines().last().unwrap()).unwrap();
    assert!(
        r["answer"]
            .as_str()
            .unwrap()
            .contains("The weather in Dallas"),
        "{r}"
    );
    let trace = steps(&r["trace"]);
    assert!(
        trace.contains(&"0.A START")
            && trace.contains(&"5. COMPLETE")
            && trace.contains(&"2.C TOKEN RECEIVED"),
        "{trace:?}"
    );
    assert_eq!(
        r["injected_elements"], 0,
        "markup in a message became an element"
    );
    assert_eq!(r["pwned"], false);
    assert!(
        r["user_bubble"].as_str().unwrap().contains("<img src=x"),
        "{r}"
    );
    assert_eq!(
        r["violations"],
        serde_json::json!([]),
        "CSP violations or page errors"
    );
    assert!(r["status"].as_str().unwrap().contains("Sidecar"));
    // The on-behalf-of flow through the page, with the developer's sign-in token.
    assert!(
        r["obo_answer"]
            .as_str()
            .unwrap()
            .contains("Weather for London"),
        "{r}"
    );
    let obo = steps(&r["obo_trace"]);
    assert!(
        obo.contains(&"OBO 0.A USER TOKEN (Tc)")
            && obo.contains(&"OBO 2.D TOKEN RECEIVED")
            && obo.contains(&"5. COMPLETE"),
        "{obo:?}"
    );
}
