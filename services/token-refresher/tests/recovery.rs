//! The refresher's answers when something is wrong, and its way back: `serve`'s 405, 500 and 503;
//! file mode retrying a token file it cannot write; its health turning 503 once the token in the
//! file has expired; the rewrite at 40–50 % of each token's lifetime; `credential_process`
//! invocations racing for one cache.
//!
//! Tests that need time to pass run on tokio's paused clock, shared with the local cloud and the
//! provider through `TokioTime`: "an hour later" is an advance of the virtual clock, not
//! a wait.

mod common;

use common::{CHILD_TIMEOUT, output, refresher};

use local_cloud::{Fault, LocalCloud, Registry};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use system_tests::*;
use token_refresher::file_mode::{self, FileMode, Status};
use token_refresher::serve::{self, AuthToken};

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("refresher-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Serves `app` on 127.0.0.1 (in this runtime); returns its base URL.
async fn serve_app(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// Status and JSON body of a request.
async fn answer(req: reqwest::RequestBuilder) -> (u16, Value) {
    let r = req.send().await.expect("the endpoint answers");
    let status = r.status().as_u16();
    (status, r.json().await.expect("a JSON body"))
}

/// A local cloud and a provider sharing tokio's (paused) clock.
async fn paused_cloud(
    registry: Registry,
) -> (
    LocalCloud,
    entra_federation::EntraCredentialsProvider,
    TokioTime,
) {
    let clock = TokioTime::new();
    let cloud = cloud_with(registry, clock.clone()).await;
    let provider = builder_from_env(&env_of(&cloud))
        .time_source(clock.clone())
        .build()
        .unwrap();
    (cloud, provider, clock)
}

/// Advances the paused clock in `step`s until `done` holds; fails after `limit` of virtual time.
async fn advance_until(step: Duration, limit: Duration, what: &str, done: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {limit:?} of (virtual) time"
        );
        tokio::time::sleep(step).await;
    }
}

fn credentials_shape(body: &Value) {
    assert!(
        body["AccessKeyId"]
            .as_str()
            .is_some_and(|k| k.starts_with("ASIA")),
        "AccessKeyId: {:?}",
        body["AccessKeyId"].as_str().map(|k| &k[..4.min(k.len())])
    );
    assert!(
        body["SecretAccessKey"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
            && body["Token"].as_str().is_some_and(|s| !s.is_empty()),
        "a secret key and a session token"
    );
    assert!(
        body["Expiration"]
            .as_str()
            .and_then(token_refresher::parse_iso8601)
            .is_some(),
        "Expiration is ISO 8601: {}",
        body["Expiration"]
    );
}

// ---------------------------------------------------------------------------------------------
// serve: 405, 500, 503

/// `serve` for a provider on `cloud`, expecting the authorization value `container-auth-value`.
async fn serve_with_value_token(cloud: &LocalCloud) -> String {
    serve_app(serve::router(
        provider_from_env(cloud),
        AuthToken::Value("container-auth-value".into()),
    ))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_answers_405_to_any_method_but_get_without_touching_the_chain() {
    let cloud = cloud().await;
    let url = serve_with_value_token(&cloud).await;
    let http = reqwest::Client::new();
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        for auth in [Some("container-auth-value"), None] {
            let mut req = http.request(method.clone(), &url);
            if let Some(a) = auth {
                req = req.header("Authorization", a);
            }
            let (status, body) = answer(req).await;
            assert_eq!(
                (status, &body),
                (
                    405,
                    &json!({"Code": "MethodNotAllowed", "Message": "use GET"})
                ),
                "{method} (authorised: {})",
                auth.is_some()
            );
        }
    }
    assert_eq!(
        cloud.counter("sts:AssumeRoleWithWebIdentity"),
        0,
        "a refused method never starts the chain"
    );
    // The same request as GET is served: the 405 was about the method only.
    let (status, body) = answer(
        http.get(&url)
            .header("Authorization", "container-auth-value"),
    )
    .await;
    assert_eq!(status, 200);
    credentials_shape(&body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_answers_500_while_the_authorization_token_file_cannot_be_read() {
    let cloud = cloud().await;
    let dir = temp_dir("serve-500");
    let token_file = dir.join("auth-token");
    let url = serve_app(serve::router(
        provider_from_env(&cloud),
        AuthToken::File(token_file.clone()),
    ))
    .await;
    let http = reqwest::Client::new();
    let misconfigured =
        json!({"Code": "Misconfigured", "Message": "the authorization token file cannot be read"});

    // Missing, then present but blank: nothing to compare with, so no request can be authorised.
    let (status, body) = answer(http.get(&url).header("Authorization", "anything")).await;
    assert_eq!((status, &body), (500, &misconfigured), "missing file");
    std::fs::write(&token_file, " \n").unwrap();
    let (status, body) = answer(http.get(&url).header("Authorization", "")).await;
    assert_eq!(
        (status, &body),
        (500, &misconfigured),
        "blank file, blank header"
    );
    assert_eq!(cloud.counter("sts:AssumeRoleWithWebIdentity"), 0);

    // The file appears (the orchestrator wrote it): served, re-read on every request.
    std::fs::write(&token_file, "rotated-auth-value\n").unwrap();
    let (status, body) = answer(http.get(&url).header("Authorization", "rotated-auth-value")).await;
    assert_eq!(status, 200);
    credentials_shape(&body);
    let (status, body) = answer(http.get(&url).header("Authorization", "stale-auth-value")).await;
    assert_eq!(
        (status, &body),
        (
            401,
            &json!({"Code": "AccessDenied", "Message": "the Authorization header does not carry the container authorization token"})
        )
    );

    // And it disappears again: 500, not 401, since the fault is the server's.
    std::fs::remove_file(&token_file).unwrap();
    let (status, body) = answer(http.get(&url).header("Authorization", "rotated-auth-value")).await;
    assert_eq!((status, &body), (500, &misconfigured), "removed file");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(start_paused = true)]
async fn serve_answers_503_with_the_chains_error_and_recovers_after_the_outage() {
    let (cloud, provider, clock) = paused_cloud(Registry::tutorial_default()).await;
    // A refusal STS does not retry: the first request sees it at once.
    cloud.inject(Fault {
        target: "sts".into(),
        status: 403,
        code: Some("AccessDenied".into()),
        count: None,
        retry_after: None,
        ..Default::default()
    });
    let url = serve_app(serve::router(
        provider,
        AuthToken::Value("container-auth-value".into()),
    ))
    .await;
    let http = reqwest::Client::new();
    let get = || {
        http.get(&url)
            .header("Authorization", "container-auth-value")
    };

    let (status, body) = answer(get()).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["Code"], "CredentialsUnavailable");
    let message = body["Message"].as_str().expect("a message");
    assert!(
        message.starts_with(
            "STS AssumeRoleWithWebIdentity failed (HTTP 403 AccessDenied): Injected failure."
        ) && message.contains("Fix: the role's trust policy"),
        "the message names the hop, the status and the code, and the fix: {message}"
    );
    assert!(!message.contains("eyJ"), "no token in the message");
    assert_eq!(
        body.as_object().unwrap().len(),
        2,
        "Code and Message only: {body}"
    );
    let calls_in_outage = cloud.counter("sts:AssumeRoleWithWebIdentity");
    assert!(calls_in_outage >= 1);

    // The outage ends; after the provider's backoff the next request is served.
    cloud.clear_faults();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
    let body = loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (status, body) = answer(get()).await;
        if status == 200 {
            break body;
        }
        assert_eq!(
            (status, body["Code"].as_str()),
            (503, Some("CredentialsUnavailable"))
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "no credentials within 10 (virtual) minutes of the outage's end"
        );
    };
    credentials_shape(&body);
    let expires = token_refresher::parse_iso8601(body["Expiration"].as_str().unwrap()).unwrap();
    assert!(expires > clock.now() + Duration::from_secs(30 * 60));
    assert!(cloud.counter("sts:AssumeRoleWithWebIdentity") > calls_in_outage);
}

// ---------------------------------------------------------------------------------------------
// file mode: write failures, expiry, the rewrite point

fn opts(path: PathBuf) -> FileMode {
    FileMode {
        path,
        mode: 0o600,
        once: false,
        ready_file: None,
    }
}

/// Starts file mode and its health endpoint in this runtime; returns the task and the health URL.
async fn start_file_mode(
    provider: &entra_federation::EntraCredentialsProvider,
    opts: &FileMode,
    clock: &TokioTime,
    status: &Arc<Status>,
) -> (tokio::task::JoinHandle<()>, String) {
    let health = serve_app(file_mode::health_router(
        status.clone(),
        aws_smithy_async::time::SharedTimeSource::new(clock.clone()),
    ))
    .await;
    let task = {
        let (provider, opts, clock, status) = (
            provider.clone(),
            opts.clone(),
            clock.clone(),
            status.clone(),
        );
        tokio::spawn(async move {
            let r = file_mode::run(
                &provider,
                &opts,
                &aws_smithy_async::time::SharedTimeSource::new(clock.clone()),
                &status,
            )
            .await;
            panic!("file mode returned without --once: {r:?}");
        })
    };
    (task, format!("{health}healthz"))
}

fn is_jwt(text: &str) -> bool {
    text.starts_with("eyJ") && text.split('.').count() == 3
}

#[tokio::test(start_paused = true)]
async fn file_mode_retries_a_file_it_cannot_write_and_recovers_when_the_cause_is_removed() {
    let (cloud, provider, clock) = paused_cloud(Registry::tutorial_default()).await;
    let dir = temp_dir("unwritable");
    // A directory where the token file should be: the rename over it fails (for root too).
    let path = dir.join("token");
    std::fs::create_dir(&path).unwrap();
    let opts = opts(path.clone());
    let status = Arc::new(Status::default());
    let (task, health) = start_file_mode(&provider, &opts, &clock, &status).await;

    advance_until(
        Duration::from_millis(100),
        Duration::from_secs(10),
        "the first write attempt",
        || status.last_error().is_some(),
    )
    .await;
    let error = status.last_error().unwrap();
    assert_eq!(
        error,
        format!(
            "cannot write {}: Is a directory (os error 21)",
            path.display()
        )
    );
    // It keeps trying (each attempt exchanges a new token), with backoff: a few attempts in two
    // minutes, not hundreds.
    let first_attempts = cloud.counter("entra_token");
    tokio::time::sleep(Duration::from_secs(120)).await;
    let attempts = cloud.counter("entra_token") - first_attempts;
    assert!(
        (3..=20).contains(&attempts),
        "{attempts} write attempts in two minutes after the first"
    );
    assert!(!task.is_finished(), "a write failure never stops file mode");
    assert_eq!(status.writes(), 0);
    let entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(entries, ["token"], "no temporary file is left behind");
    let (code, body) = answer(reqwest::Client::new().get(&health)).await;
    assert_eq!(
        (code, body),
        (
            503,
            // What a probe may see: no path, no endpoint; the full error is in the log.
            json!({"ready": false, "writes": 0, "token_expires_at": null, "last_error": "cannot write the token file"})
        )
    );

    // The cause goes away: the next attempt (backoff at most 60 s, jittered) writes the file.
    std::fs::remove_dir(&path).unwrap();
    advance_until(
        Duration::from_secs(1),
        Duration::from_secs(100),
        "a write after the cause was removed",
        || status.writes() == 1,
    )
    .await;
    assert!(is_jwt(&std::fs::read_to_string(&path).unwrap()));
    assert_eq!(status.last_error(), None);
    let (code, body) = answer(reqwest::Client::new().get(&health)).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        (&body["ready"], &body["writes"], &body["last_error"]),
        (&json!(true), &json!(1), &Value::Null)
    );
    task.abort();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(start_paused = true)]
async fn health_turns_503_when_the_expiring_file_is_removed_and_200_after_recovery() {
    let mut registry = Registry::tutorial_default();
    registry.lifetimes.access_token_min = 3600;
    registry.lifetimes.access_token_max = 3600;
    let (cloud, provider, clock) = paused_cloud(registry).await;
    let dir = temp_dir("expiry");
    let opts = opts(dir.join("token"));
    let status = Arc::new(Status::default());
    let (task, health) = start_file_mode(&provider, &opts, &clock, &status).await;
    status.first_write().await;
    let http = reqwest::Client::new();
    let (code, body) = answer(http.get(&health)).await;
    assert_eq!(code, 200, "{body}");
    let expires_text = body["token_expires_at"].as_str().unwrap().to_string();
    let expires = token_refresher::parse_iso8601(&expires_text).unwrap();
    let written = std::fs::read_to_string(&opts.path).unwrap();

    // Entra goes down for good: every rewrite fails; the file keeps the last good token until
    // two minutes before it expires, then goes (a reader never finds an expired token).
    cloud.inject(Fault {
        target: "entra_token".into(),
        status: 503,
        code: None,
        count: None,
        retry_after: None,
        ..Default::default()
    });
    // Ready while the file is there, 503 from its removal on (the refresher checks before each
    // attempt, so the removal lands within one attempt of the cut-off: those 30 s are skipped).
    let cutoff = expires - Duration::from_secs(120);
    let mut last_ready = None;
    let mut first_unready = None;
    while first_unready.is_none() {
        tokio::time::sleep(Duration::from_secs(30)).await;
        let now = clock.now();
        assert!(
            now < expires + Duration::from_secs(600),
            "still no 503 ten minutes after expiry"
        );
        let (code, body) = answer(http.get(&health)).await;
        let near_cutoff =
            now + Duration::from_secs(2) > cutoff && now < cutoff + Duration::from_secs(30);
        if near_cutoff {
            continue;
        }
        if now < cutoff {
            assert_eq!(code, 200, "the token is still valid: {body}");
            last_ready = Some(now);
        } else {
            assert_eq!(
                code, 503,
                "the file was removed before its token expired: {body}"
            );
            let last_error = body["last_error"].as_str().unwrap_or_default();
            assert_eq!(
                last_error, "entra: HTTP 503 temporarily_unavailable AADSTS90033",
                "the reason is the failing refresh (the hop and the code)"
            );
            assert_eq!(
                (&body["ready"], &body["writes"], &body["token_expires_at"]),
                (&json!(false), &json!(1), &Value::Null)
            );
            first_unready = Some(now);
        }
    }
    assert!(
        last_ready.is_some_and(|t| cutoff.duration_since(t).unwrap() <= Duration::from_secs(32)),
        "200 was observed up to the cut-off"
    );
    assert_eq!(
        std::fs::read_to_string(&opts.path).map_err(|e| e.kind()),
        Err(std::io::ErrorKind::NotFound),
        "no expired token left in the file"
    );
    assert!(
        cloud.counter("entra_token") > 3,
        "refreshes were attempted during the outage"
    );

    // Entra is back: the next attempt (at most a minute away) writes a valid token; ready again.
    cloud.clear_faults();
    advance_until(
        Duration::from_secs(1),
        Duration::from_secs(100),
        "a rewrite after the outage",
        || status.writes() == 2,
    )
    .await;
    let (code, body) = answer(http.get(&health)).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        (&body["ready"], &body["writes"], &body["last_error"]),
        (&json!(true), &json!(2), &Value::Null)
    );
    assert_ne!(std::fs::read_to_string(&opts.path).unwrap(), written);
    task.abort();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(start_paused = true)]
async fn the_file_is_rewritten_at_40_to_50_percent_of_each_tokens_lifetime() {
    // Lifetimes between one and one and a half hours, as Entra's; each token's own lifetime is
    // read from the health endpoint.
    let registry = Registry::tutorial_default();
    let (_cloud, provider, clock) = paused_cloud(registry).await;
    let dir = temp_dir("rewrite-point");
    let opts = opts(dir.join("token"));
    let status = Arc::new(Status::default());
    let (task, health) = start_file_mode(&provider, &opts, &clock, &status).await;
    let http = reqwest::Client::new();

    status.first_write().await;
    // (write time, token expiry, file contents) of each write, to the step of the poll.
    let step = Duration::from_millis(250);
    let mut writes: Vec<(SystemTime, SystemTime, String)> = Vec::new();
    let record = |body: &Value| {
        token_refresher::parse_iso8601(body["token_expires_at"].as_str().unwrap()).unwrap()
    };
    let (_, body) = answer(http.get(&health)).await;
    writes.push((
        clock.now(),
        record(&body),
        std::fs::read_to_string(&opts.path).unwrap(),
    ));
    for n in 2..=6 {
        advance_until(
            step,
            Duration::from_secs(3 * 3600),
            "the next rewrite",
            || status.writes() >= n,
        )
        .await;
        assert_eq!(status.writes(), n, "one rewrite per step");
        let (_, body) = answer(http.get(&health)).await;
        writes.push((
            clock.now(),
            record(&body),
            std::fs::read_to_string(&opts.path).unwrap(),
        ));
    }
    for pair in writes.windows(2) {
        let ((at, expires, text), (next_at, _, next_text)) = (&pair[0], &pair[1]);
        // `token_expires_at` is whole seconds; the write is seen within one poll step.
        let lifetime = expires.duration_since(*at).unwrap().as_secs_f64();
        let gap = next_at.duration_since(*at).unwrap().as_secs_f64();
        let slack = 1.0 + step.as_secs_f64();
        assert!(
            (3600.0 - slack..=5400.0 + slack).contains(&lifetime),
            "lifetime {lifetime} s"
        );
        assert!(
            gap >= 0.40 * lifetime - slack && gap <= 0.50 * lifetime + slack,
            "rewritten after {gap:.1} s = {:.1} % of the token's {lifetime:.0} s",
            100.0 * gap / lifetime
        );
        assert_ne!(text, next_text, "each rewrite holds a new token");
        assert!(is_jwt(next_text));
    }
    task.abort();
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------------
// credential_process: concurrent invocations

/// Processes waiting for a `flock` on the file with inode `ino`, per `/proc/locks` (blocked
/// requests are the lines with `->`).
fn flock_waiters(ino: u64) -> usize {
    let locks = std::fs::read_to_string("/proc/locks").expect("/proc/locks is readable (Linux)");
    let suffix = format!(":{ino}");
    locks
        .lines()
        .filter(|l| {
            l.contains("->")
                && l.contains("FLOCK")
                && l.split_whitespace()
                    .any(|field| field.ends_with(&suffix) && field.matches(':').count() == 2)
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_concurrent_credential_process_invocations_share_one_sts_session() {
    use std::os::unix::fs::MetadataExt;
    let cloud = cloud().await;
    let env = env_of(&cloud);
    let dir = temp_dir("process-herd");
    let cache = dir.join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    // The lock file every invocation takes (the same name the binary derives): held here until
    // all eight are waiting on it, so they provably overlap.
    let key = hex::encode(
        &aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            builder_from_env(&env)
                .build()
                .unwrap()
                .session_key()
                .as_bytes(),
        )
        .as_ref()[..12],
    );
    let lock_path = cache.join(format!("credential-process-{key}.lock"));
    // As the binary makes it: private to this user (it refuses a lock file others can open).
    let lock = std::os::unix::fs::OpenOptionsExt::mode(
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true),
        0o600,
    )
    .open(&lock_path)
    .unwrap();
    lock.lock().unwrap();
    let ino = std::fs::metadata(&lock_path).unwrap().ino();

    let runs: Vec<_> = (0..8)
        .map(|i| {
            let mut cmd = refresher();
            cmd.args(["credential-process", "--cache-dir"])
                .arg(&cache)
                .env_clear()
                .envs(&env);
            tokio::spawn(output(cmd, format!("invocation {i}")))
        })
        .collect();
    let deadline = tokio::time::Instant::now() + CHILD_TIMEOUT;
    while flock_waiters(ino) < 8 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of 8 invocations reached the cache lock within {CHILD_TIMEOUT:?}",
            flock_waiters(ino)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        cloud.counter("sts:AssumeRoleWithWebIdentity"),
        0,
        "nobody passed the lock"
    );
    lock.unlock().unwrap();

    let mut keys = std::collections::BTreeSet::new();
    for run in runs {
        let out = run.await.expect("the invocation's task");
        assert!(
            out.status.success(),
            "exit {:?}: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        let creds: Value = serde_json::from_slice(&out.stdout).expect("credential_process JSON");
        assert_eq!(creds["Version"], 1);
        credentials_shape(&json!({
            "AccessKeyId": creds["AccessKeyId"],
            "SecretAccessKey": creds["SecretAccessKey"],
            "Token": creds["SessionToken"],
            "Expiration": creds["Expiration"],
        }));
        keys.insert(creds["AccessKeyId"].as_str().unwrap().to_string());
    }
    assert_eq!(keys.len(), 1, "all eight printed the same credentials");
    assert_eq!(
        (
            cloud.counter("sts:AssumeRoleWithWebIdentity"),
            cloud.counter("entra_token"),
            cloud.counter("identity_endpoint"),
        ),
        (1, 1, 1),
        "one invocation ran the chain; seven read its cache"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// What aws-config's container provider reads: `AccountId` beside the keys; and no answer, good
/// or bad, may be cached by anything in between (`Cache-Control: no-store`).
#[tokio::test]
async fn serve_answers_carry_the_account_id_and_are_never_cached() {
    let cloud = cloud().await;
    let url = serve_with_value_token(&cloud).await;
    let http = reqwest::Client::new();
    let ok = http
        .get(&url)
        .header("Authorization", "container-auth-value")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(
        ok.headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
    let body: Value = ok.json().await.unwrap();
    credentials_shape(&body);
    assert_eq!(body["AccountId"], json!(local_cloud::ids::AWS_ACCOUNT_ID));
    let refused = http.get(&url).send().await.unwrap();
    assert_eq!(refused.status(), 401);
    assert_eq!(
        refused
            .headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok()),
        Some("no-store"),
        "errors too"
    );
}
