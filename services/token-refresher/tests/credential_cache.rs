//! Issue 12 points 11 and 12: `credential-process`'s cache is an optimisation that must be
//! trustworthy. Unusable, it is skipped with a warning (credentials are still printed); it never
//! falls back to the shared temp directory, never follows a symlink, never uses a directory others
//! can read, never waits forever for its lock; when the chain fails, cached credentials that the
//! SDKs still accept (more than boto3's 10-minute window left) are printed instead of an error.

mod common;

use common::{output, refresher};
use local_cloud::{Fault, LocalCloud};
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use system_tests::*;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("refresher-cache-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn run(cloud: &LocalCloud, cache: Option<&Path>, extra_env: &[(&str, &str)]) -> Output {
    let mut cmd = refresher();
    cmd.arg("credential-process");
    if let Some(dir) = cache {
        cmd.arg("--cache-dir").arg(dir);
    }
    cmd.env_clear().envs(env_of(cloud));
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    output(cmd, "credential-process").await
}

fn printed(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "exit 0: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("credential_process JSON on stdout")
}

fn cache_file(dir: &Path) -> PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "json"))
        .expect("a cache file")
}

fn iso(t: std::time::SystemTime) -> String {
    aws_smithy_types::DateTime::from(t)
        .fmt(aws_smithy_types::date_time::Format::DateTime)
        .unwrap()
}

/// Rewrites the cache entry so that its credentials have `left` of validity.
fn age_cache(file: &Path, left: std::time::Duration) {
    let mut entry: Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
    let now = std::time::SystemTime::now();
    entry["Expiration"] = Value::String(iso(now + left));
    entry["ObtainedAt"] = Value::String(iso(now - std::time::Duration::from_secs(3600) + left));
    std::fs::write(file, serde_json::to_vec(&entry).unwrap()).unwrap();
}

fn break_the_chain(cloud: &LocalCloud) {
    cloud.inject(Fault {
        target: "sts".into(),
        status: 503,
        code: Some("ServiceUnavailable".into()),
        count: None,
        retry_after: None,
        ..Default::default()
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_cache_directory_is_skipped_with_a_warning() {
    let cloud = cloud().await;
    let dir = temp_dir("unusable");
    let file = dir.join("a-file");
    std::fs::write(&file, "not a directory").unwrap();
    let out = run(&cloud, Some(&file.join("cache")), &[]).await;
    let creds = printed(&out);
    assert!(creds["AccessKeyId"].is_string());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cache"),
        "a warning names the cache: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_home_there_is_no_cache_and_nothing_in_the_temp_directory() {
    let cloud = cloud().await;
    let tmp = temp_dir("no-home");
    let out = run(&cloud, None, &[("TMPDIR", tmp.to_str().unwrap())]).await;
    printed(&out);
    let left: Vec<_> = walk(&tmp);
    assert!(left.is_empty(), "nothing written under TMPDIR: {left:?}");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut all = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            all.extend(walk(&p));
        }
        all.push(p);
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_directory_others_can_read_is_made_private() {
    let cloud = cloud().await;
    let dir = temp_dir("open-dir").join("cache");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    printed(&run(&cloud, Some(&dir), &[]).await);
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "{mode:o}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symlinked_cache_file_is_never_followed() {
    let cloud = cloud().await;
    let dir = temp_dir("symlink");
    let cache = dir.join("cache");
    printed(&run(&cloud, Some(&cache), &[]).await);
    let file = cache_file(&cache);
    // Someone replaces the entry with a link to credentials of their choosing.
    let planted = dir.join("planted.json");
    let mut entry: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    entry["AccessKeyId"] = Value::String("ASIAPLANTEDPLANTED00".into());
    std::fs::write(&planted, serde_json::to_vec(&entry).unwrap()).unwrap();
    std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::remove_file(&file).unwrap();
    std::os::unix::fs::symlink(&planted, &file).unwrap();
    let creds = printed(&run(&cloud, Some(&cache), &[]).await);
    assert_ne!(creds["AccessKeyId"], "ASIAPLANTEDPLANTED00");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_chain_prints_cached_credentials_the_sdks_still_accept() {
    let cloud = cloud().await;
    let cache = temp_dir("fallback").join("cache");
    let first = printed(&run(&cloud, Some(&cache), &[]).await);
    let file = cache_file(&cache);
    break_the_chain(&cloud);

    // Twelve minutes left: due for a refresh (under 15), but beyond boto3's 10-minute window.
    age_cache(&file, std::time::Duration::from_secs(12 * 60));
    let out = run(&cloud, Some(&cache), &[]).await;
    let fallback = printed(&out);
    assert_eq!(fallback["AccessKeyId"], first["AccessKeyId"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cached"), "says so: {stderr}");

    // Eight minutes left: boto3 would refuse them, so the chain's error it is.
    age_cache(&file, std::time::Duration::from_secs(8 * 60));
    let out = run(&cloud, Some(&cache), &[]).await;
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_lock_held_elsewhere_is_waited_for_a_bounded_time() {
    let cloud = cloud().await;
    let cache = temp_dir("held-lock").join("cache");
    printed(&run(&cloud, Some(&cache), &[]).await);
    let lock_path = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "lock"))
        .expect("a lock file");
    let held = std::fs::OpenOptions::new()
        .write(true)
        .open(&lock_path)
        .unwrap();
    held.lock().unwrap();
    let started = std::time::Instant::now();
    let out = run(&cloud, Some(&cache), &[]).await;
    printed(&out);
    let waited = started.elapsed();
    assert!(
        (std::time::Duration::from_secs(10)..std::time::Duration::from_secs(30)).contains(&waited),
        "waited for the lock, a bounded time: {waited:?}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("lock"), "says why: {stderr}");
    drop(held);
}

/// While another invocation holds the lock (it may be stuck on a failing chain), the cache is
/// still read: a failing chain then prints the cached credentials the SDKs still accept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_lock_does_not_cost_the_fallback_to_cached_credentials() {
    let cloud = cloud().await;
    let cache = temp_dir("held-lock-fallback").join("cache");
    let first = printed(&run(&cloud, Some(&cache), &[]).await);
    let file = cache_file(&cache);
    let held = std::fs::OpenOptions::new()
        .write(true)
        .open(file.with_extension("lock"))
        .unwrap();
    held.lock().unwrap();
    break_the_chain(&cloud);
    age_cache(&file, std::time::Duration::from_secs(12 * 60));
    let fallback = printed(&run(&cloud, Some(&cache), &[]).await);
    assert_eq!(fallback["AccessKeyId"], first["AccessKeyId"]);
    drop(held);
}
