//! The file never shows a partial or empty state; an outage leaves the last good file and the last
//! good credentials in place, and both recover.

use local_cloud::{Fault, Registry};
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use system_tests::*;
use token_refresher::file_mode::{self, FileMode, Status};
use token_refresher::token_file::write_atomically;

#[test]
fn a_polling_reader_never_sees_a_partial_or_empty_file() {
    let dir = std::env::temp_dir().join(format!("refresher-crash-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("token");
    // Two token-sized contents of different lengths: a torn write would show a mix or a prefix.
    let a = format!("eyJ{}", "a".repeat(1400));
    let b = format!("eyJ{}", "b".repeat(1900));
    write_atomically(&path, a.as_bytes(), 0o600).unwrap();
    // The reader counts the changes it sees; the writer keeps rewriting (alternately, at least
    // 5,000 times) until the reader has seen 1,000 changes, so reads and renames interleave
    // however the two threads are scheduled.
    const CHANGES: u64 = 1_000;
    let done = Arc::new(AtomicBool::new(false));
    let changes_seen = Arc::new(AtomicU64::new(0));
    let reader = {
        let (path, a, b, done, changes_seen) = (
            path.clone(),
            a.clone(),
            b.clone(),
            done.clone(),
            changes_seen.clone(),
        );
        std::thread::spawn(move || {
            let mut last = a.clone();
            while !done.load(Ordering::Acquire) {
                let text = std::fs::read_to_string(&path).expect("the file always exists");
                assert!(
                    text == a || text == b,
                    "a partial file: {} bytes",
                    text.len()
                );
                if text != last {
                    changes_seen.fetch_add(1, Ordering::Release);
                    last = text;
                }
            }
        })
    };
    let mut writes = 0u64;
    while writes < 5_000 || changes_seen.load(Ordering::Acquire) < CHANGES {
        assert!(
            !reader.is_finished(),
            "the reader stopped: it saw a partial file"
        );
        write_atomically(
            &path,
            if writes.is_multiple_of(2) {
                b.as_bytes()
            } else {
                a.as_bytes()
            },
            0o600,
        )
        .unwrap();
        writes += 1;
    }
    done.store(true, Ordering::Release);
    reader.join().expect("the reader saw only whole files");
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        1,
        "no temporary files left"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A refresher in file mode (with a ready file) against a local cloud on Tokio's paused clock,
/// after its first write.
struct Running {
    cloud: local_cloud::LocalCloud,
    clock: TokioTime,
    dir: std::path::PathBuf,
    opts: FileMode,
    status: Arc<Status>,
    task: tokio::task::JoinHandle<Result<(), file_mode::FileModeError>>,
}

async fn running_refresher(label: &str) -> Running {
    let clock = TokioTime::new();
    let cloud = cloud_with(Registry::tutorial_default(), clock.clone()).await;
    let provider = builder_from_env(&env_of(&cloud))
        .time_source(clock.clone())
        .build()
        .unwrap();
    let dir = std::env::temp_dir().join(format!("refresher-{label}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let opts = FileMode {
        path: dir.join("token"),
        mode: 0o600,
        once: false,
        ready_file: Some(dir.join("ready")),
    };
    let status = Arc::new(Status::default());
    let task = {
        let (provider, opts, clock, status) = (
            provider.clone(),
            opts.clone(),
            clock.clone(),
            status.clone(),
        );
        tokio::spawn(async move {
            file_mode::run(
                &provider,
                &opts,
                &aws_smithy_async::time::SharedTimeSource::new(clock.clone()),
                &status,
            )
            .await
        })
    };
    status.first_write().await;
    Running {
        cloud,
        clock,
        dir,
        opts,
        status,
        task,
    }
}

#[tokio::test(start_paused = true)]
async fn an_outage_keeps_the_last_good_file_and_it_recovers() {
    let Running {
        cloud,
        clock: _,
        dir,
        opts,
        status,
        task,
    } = running_refresher("outage").await;
    assert!(dir.join("ready").exists(), "readiness is visible as a file");
    let good = std::fs::read_to_string(&opts.path).unwrap();

    cloud.inject(Fault {
        target: "entra_token".into(),
        status: 503,
        code: None,
        count: None,
        retry_after: None,
        ..Default::default()
    });
    // Past the half-life point the refresher tries, fails, and keeps the file.
    tokio::time::sleep(Duration::from_secs(50 * 60)).await;
    assert!(
        status.last_error().is_some_and(|e| e.starts_with(
            "Entra rejected the token request (HTTP 503 temporarily_unavailable, AADSTS90033)"
        )),
        "{:?}",
        status.last_error()
    );
    assert_eq!(
        std::fs::read_to_string(&opts.path).unwrap(),
        good,
        "the last good token stays in place"
    );
    assert!(
        !task.is_finished(),
        "the refresher never exits on a transient failure"
    );

    cloud.clear_faults();
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert!(status.last_error().is_none());
    assert_ne!(
        std::fs::read_to_string(&opts.path).unwrap(),
        good,
        "recovered: a new token was written"
    );
    task.abort();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(start_paused = true)]
async fn the_endpoint_serves_the_last_good_credentials_through_an_sts_outage() {
    let clock = TokioTime::new();
    let cloud = cloud_with(Registry::tutorial_default(), clock.clone()).await;
    let provider = builder_from_env(&env_of(&cloud))
        .time_source(clock.clone())
        .build()
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let app = token_refresher::serve::router(
        provider,
        token_refresher::serve::AuthToken::Value("secret-token-value".into()),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    let http = reqwest::Client::new();
    let get = || {
        http.get(&url)
            .header("Authorization", "secret-token-value")
            .send()
    };
    let first = get().await.unwrap();
    assert_eq!(first.status(), 200);
    let first: serde_json::Value = first.json().await.unwrap();

    cloud.inject(Fault {
        target: "sts".into(),
        status: 503,
        code: None,
        count: None,
        retry_after: None,
        ..Default::default()
    });
    // The advisory refresh starts 15-18 minutes before the one-hour expiry; from minute 45 to 55
    // every refresh fails while the credentials (valid to minute 60) are still served.
    tokio::time::sleep(Duration::from_secs(44 * 60)).await;
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_secs(60)).await;
        let r = get().await.unwrap();
        assert_eq!(r.status(), 200);
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["AccessKeyId"], first["AccessKeyId"]);
    }
    assert!(
        cloud.counter("sts:AssumeRoleWithWebIdentity") > 1,
        "refreshes were attempted during the outage"
    );
    cloud.clear_faults();
    tokio::time::sleep(Duration::from_secs(120)).await;
    let after: serde_json::Value = get().await.unwrap().json().await.unwrap();
    assert_ne!(
        after["AccessKeyId"], first["AccessKeyId"],
        "recovered: new credentials"
    );
}

#[tokio::test]
async fn health_is_503_until_a_valid_token_is_written_then_200() {
    let clock = aws_smithy_async::time::SharedTimeSource::default();
    let cloud = cloud().await;
    let provider = builder_from_env(&env_of(&cloud)).build().unwrap();
    let status = Arc::new(Status::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/healthz", listener.local_addr().unwrap());
    let app = file_mode::health_router(status.clone(), clock.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let before = reqwest::get(&url).await.unwrap();
    assert_eq!(before.status(), 503);
    assert_eq!(
        before.json::<serde_json::Value>().await.unwrap(),
        serde_json::json!({"ready": false, "writes": 0, "token_expires_at": null, "last_error": null})
    );
    let dir = std::env::temp_dir().join(format!("refresher-health-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let opts = FileMode {
        path: dir.join("token"),
        mode: 0o600,
        once: true,
        ready_file: None,
    };
    file_mode::run(
        &provider,
        &opts,
        &aws_smithy_async::time::SharedTimeSource::new(clock.clone()),
        &status,
    )
    .await
    .unwrap();
    let after = reqwest::get(&url).await.unwrap();
    assert_eq!(after.status(), 200);
    let body: serde_json::Value = after.json().await.unwrap();
    assert_eq!(
        (
            body["ready"].as_bool(),
            body["writes"].as_u64(),
            &body["last_error"]
        ),
        (Some(true), Some(1), &serde_json::Value::Null)
    );
    assert!(
        body["token_expires_at"]
            .as_str()
            .and_then(token_refresher::parse_iso8601)
            .is_some_and(|e| e > std::time::SystemTime::now()),
        "{body}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// An outage that outlasts the token: once the token in the file has expired, the file goes
/// (and the ready file with it), so that a reader fails with "no such file" instead of handing
/// STS an expired token; a reader never finds an expired token. The outage over, the file is
/// written again.
#[tokio::test(start_paused = true)]
async fn an_outage_past_the_tokens_expiry_leaves_no_expired_token_file() {
    let Running {
        cloud,
        clock,
        dir,
        opts,
        status: _,
        task,
    } = running_refresher("expiry").await;
    cloud.inject(Fault::status("entra_token", 503, None));
    // A reader every minute for three hours: the file holds an unexpired token or is absent.
    let mut absent = 0;
    for _ in 0..180 {
        tokio::time::sleep(Duration::from_secs(60)).await;
        match std::fs::read_to_string(&opts.path) {
            Ok(token) => {
                let exp = unverified_claims(&token)["exp"].as_u64().unwrap();
                let now = clock
                    .now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs();
                assert!(exp > now, "an expired token in the file");
            }
            Err(e) => {
                assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
                assert!(!dir.join("ready").exists(), "not ready without a token");
                absent += 1;
            }
        }
    }
    assert!(absent > 0, "the outage outlasted the token");
    cloud.clear_faults();
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert!(opts.path.exists(), "written again once Entra answers");
    task.abort();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A restart during an outage (an emptyDir outlives the container): a token file left behind
/// whose token is expired is removed with its ready file at start, before any refresh succeeds;
/// one with an hour left stays in place.
#[tokio::test(start_paused = true)]
async fn a_restart_during_an_outage_removes_an_expired_file_left_behind() {
    for (label, exp_from_now, kept) in [("stale", -600i64, false), ("fresh", 3600, true)] {
        let clock = TokioTime::new();
        let cloud = cloud_with(Registry::tutorial_default(), clock.clone()).await;
        cloud.inject(Fault::status("entra_token", 503, None));
        let provider = builder_from_env(&env_of(&cloud))
            .time_source(clock.clone())
            .build()
            .unwrap();
        let dir =
            std::env::temp_dir().join(format!("refresher-restart-{label}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let now = clock
            .now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let b64 = |v: serde_json::Value| {
            use base64::Engine;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        let left_behind = format!(
            "{}.{}.c2ln",
            b64(serde_json::json!({"alg": "RS256", "typ": "JWT"})),
            b64(
                serde_json::json!({"exp": now + exp_from_now, "iss": "https://sts.windows.net/t/"})
            )
        );
        let opts = FileMode {
            path: dir.join("token"),
            mode: 0o600,
            once: false,
            ready_file: Some(dir.join("ready")),
        };
        std::fs::write(&opts.path, &left_behind).unwrap();
        std::fs::write(dir.join("ready"), "ready\n").unwrap();
        let status = Arc::new(Status::default());
        let task = {
            let (opts, status, clock) = (opts.clone(), status.clone(), clock.clone());
            tokio::spawn(async move {
                file_mode::run(
                    &provider,
                    &opts,
                    &aws_smithy_async::time::SharedTimeSource::new(clock),
                    &status,
                )
                .await
            })
        };
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(opts.path.exists(), kept, "{label}: the token file");
        assert_eq!(dir.join("ready").exists(), kept, "{label}: the ready file");
        task.abort();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
