//! The fault matrix: faults injected through the local cloud into every hop of the provider's
//! chain (the Container Apps identity endpoint, VM IMDS, Entra's token endpoint, STS), each
//! ridden through on a paused clock. For every fault:
//!
//! 1. while the last good credentials are valid, callers keep getting them without waiting on the
//!    network (no time passes in the call);
//! 2. no caller ever gets credentials that have expired;
//! 3. once they have expired, the error is typed, names the hop, and carries the cloud's code;
//! 4. after the fault clears, credentials come within one backoff;
//! 5. 1,000 concurrent callers of a fresh provider against the failing hop make only the calls
//!    one attempt's retries allow.
//!
//! `docs/reliability.md` lists the same cases; `the_reliability_page_lists_every_case` keeps
//! the two in step.

use aws_credential_types::Credentials;
use entra_federation::{EntraCredentialsProvider, Error, SourceChoice};
use futures::FutureExt;
use local_cloud::{Fault, FaultKind, LocalCloud, Registry};
use std::time::{Duration, SystemTime};
use system_tests::*;
use tokio::time::Instant;

/// Which hop a fault is in: the counter the local cloud keeps for it, and what the library's
/// error for it is.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Hop {
    IdentityEndpoint,
    Imds,
    Entra,
    Sts,
}

impl Hop {
    fn counter(self) -> &'static str {
        match self {
            Self::IdentityEndpoint => "identity_endpoint",
            Self::Imds => "imds",
            Self::Entra => "entra_token",
            Self::Sts => "sts:AssumeRoleWithWebIdentity",
        }
    }

    /// The error's variant is this hop's.
    fn owns(self, e: &Error) -> bool {
        matches!(
            (self, e),
            (Self::IdentityEndpoint | Self::Imds, Error::Assertion(_))
                | (Self::Entra, Error::Entra(_) | Error::TokenShape(_))
                | (Self::Sts, Error::Sts(_) | Error::Stale { .. })
        )
    }
}

/// How long recovery may take once a fault clears: one failure backoff of the provider while
/// nothing valid is cached (at most a minute, as its refresh policy says).
const ONE_BACKOFF: Duration = Duration::from_secs(60);

/// One fault and what its error must say.
struct Case {
    name: &'static str,
    hop: Hop,
    fault: Injection,
    /// Words the error's text must contain (the cloud's code, or what went wrong).
    says: &'static [&'static str],
}

enum Injection {
    Fault(Fault),
    /// The hop's issuing clock is this many seconds off (negative: tokens already expired).
    Skew(&'static str, i64),
    /// Keys rotated at Entra while its key documents are unreachable (STS cannot verify).
    RotatedKeysJwksDown,
}

fn status(hop: Hop, status: u16, code: Option<&str>, retry_after: Option<u64>) -> Injection {
    Injection::Fault(Fault {
        retry_after,
        ..Fault::status(hop.counter(), status, code)
    })
}

fn kind(hop: Hop, kind: FaultKind) -> Injection {
    Injection::Fault(Fault::of_kind(hop.counter(), kind))
}

fn cases() -> Vec<Case> {
    use FaultKind::*;
    use Hop::*;
    let c = |name, hop, fault, says| Case {
        name,
        hop,
        fault,
        says,
    };
    vec![
        c(
            "identity endpoint 500",
            IdentityEndpoint,
            status(IdentityEndpoint, 500, None, None),
            &["500"],
        ),
        c(
            "identity endpoint 503 with Retry-After",
            IdentityEndpoint,
            status(IdentityEndpoint, 503, None, Some(5)),
            &["503"],
        ),
        c(
            "identity endpoint 429 without Retry-After",
            IdentityEndpoint,
            status(IdentityEndpoint, 429, None, None),
            &["429"],
        ),
        c(
            "identity endpoint connection reset",
            IdentityEndpoint,
            kind(IdentityEndpoint, Reset),
            &["identity endpoint"],
        ),
        c(
            "identity endpoint garbage body",
            IdentityEndpoint,
            kind(IdentityEndpoint, Garbage),
            &["identity endpoint"],
        ),
        c(
            "identity endpoint truncated body",
            IdentityEndpoint,
            kind(IdentityEndpoint, Truncated),
            &["identity endpoint"],
        ),
        c(
            "identity endpoint HTML page",
            IdentityEndpoint,
            kind(IdentityEndpoint, WrongContentType),
            &["identity endpoint"],
        ),
        c(
            "identity endpoint hangs",
            IdentityEndpoint,
            kind(IdentityEndpoint, Hang),
            &["identity endpoint", "timed out"],
        ),
        c(
            "managed-identity tokens already expired",
            Entra,
            Injection::Skew("managed_identity", -(25 * 3600)),
            &["AADSTS700024"],
        ),
        c("IMDS 410", Imds, status(Imds, 410, None, None), &["410"]),
        c(
            "IMDS 429 with Retry-After",
            Imds,
            status(Imds, 429, None, Some(3)),
            &["429"],
        ),
        // Five retries a minute apart outlast the attempt: its error must still be IMDS's own.
        c(
            "IMDS 429 with a one-minute Retry-After",
            Imds,
            status(Imds, 429, None, Some(60)),
            &["429"],
        ),
        c("IMDS 500", Imds, status(Imds, 500, None, None), &["500"]),
        c(
            "Entra 429 with Retry-After",
            Entra,
            status(Entra, 429, Some("temporarily_unavailable"), Some(4)),
            &["temporarily_unavailable", "429"],
        ),
        c(
            "Entra 500",
            Entra,
            status(Entra, 500, Some("server_error"), None),
            &["server_error", "500"],
        ),
        c(
            "Entra 503 without Retry-After",
            Entra,
            status(Entra, 503, Some("temporarily_unavailable"), None),
            &["503"],
        ),
        c(
            "Entra connection reset",
            Entra,
            kind(Entra, Reset),
            &["Entra"],
        ),
        c(
            "Entra garbage body",
            Entra,
            kind(Entra, Garbage),
            &["Entra"],
        ),
        c(
            "Entra truncated body",
            Entra,
            kind(Entra, Truncated),
            &["Entra"],
        ),
        c(
            "Entra HTML page",
            Entra,
            kind(Entra, WrongContentType),
            &["Entra"],
        ),
        c(
            "Entra hangs",
            Entra,
            kind(Entra, Hang),
            &["Entra", "timed out"],
        ),
        c(
            "Entra tokens already expired",
            Sts,
            Injection::Skew("entra_token", -(3 * 3600)),
            &["ExpiredTokenException"],
        ),
        c(
            "STS Throttling",
            Sts,
            status(Sts, 400, Some("Throttling"), None),
            &["Throttling"],
        ),
        c(
            "STS 503",
            Sts,
            status(Sts, 503, Some("ServiceUnavailable"), None),
            &["ServiceUnavailable"],
        ),
        c(
            "STS 500 InternalFailure",
            Sts,
            status(Sts, 500, Some("InternalFailure"), None),
            &["InternalFailure"],
        ),
        c("STS connection reset", Sts, kind(Sts, Reset), &["STS"]),
        c("STS garbage body", Sts, kind(Sts, Garbage), &["STS"]),
        c("STS truncated body", Sts, kind(Sts, Truncated), &["STS"]),
        c("STS HTML page", Sts, kind(Sts, WrongContentType), &["STS"]),
        c("STS hangs", Sts, kind(Sts, Hang), &["STS", "timed out"]),
        c(
            "STS credentials already expired",
            Sts,
            Injection::Skew("sts", -(2 * 3600)),
            &["clock"],
        ),
        c(
            "Entra keys rotated, key documents unreachable",
            Sts,
            Injection::RotatedKeysJwksDown,
            &["IDPCommunicationError"],
        ),
    ]
}

fn inject(cloud: &LocalCloud, injection: &Injection) {
    match injection {
        Injection::Fault(f) => cloud.inject(f.clone()),
        Injection::Skew(service, secs) => cloud.state().skew_clock(service, *secs),
        Injection::RotatedKeysJwksDown => {
            cloud.state().rotate_tenant_keys().expect("keys rotate");
            cloud.inject(Fault::status("entra_jwks", 503, None));
        }
    }
}

/// Entra's and STS's tokens last exactly an hour here, so the schedule below is exact; the
/// managed-identity assertion lasts half an hour (Azure's last a day), so that every refresh
/// needs a new one and a fault at the identity endpoint bites.
fn registry() -> Registry {
    let mut r = Registry::tutorial_default();
    r.lifetimes.access_token_min = 3600;
    r.lifetimes.access_token_max = 3600;
    r.lifetimes.managed_identity = 1800;
    r
}

fn provider_for(cloud: &LocalCloud, clock: &TokioTime, hop: Hop) -> EntraCredentialsProvider {
    let mut b = builder_from_env(&env_of(cloud))
        .time_source(clock.clone())
        .request_timeout(Duration::from_secs(10))
        .jitter_seed(jitter_seed());
    if hop == Hop::Imds {
        b = b.assertion_source(SourceChoice::Imds(format!(
            "{}/metadata/identity/oauth2/token",
            cloud.http_url()
        )));
    }
    b.build().unwrap()
}

fn expiry(c: &Credentials) -> SystemTime {
    c.expiry().expect("STS credentials expire")
}

/// Points 1 to 4 for one case. The fault stays until the provider's caches (credentials, Entra
/// token, assertion) have run out, a caller every simulated minute; then it clears. The clock
/// moves by sleeping on Tokio's paused clock, so the provider's background refresh runs as it
/// would.
async fn ride_through(case: &Case) {
    let name = case.name;
    let clock = TokioTime::new();
    let cloud = cloud_with(registry(), clock.clone()).await;
    let provider = provider_for(&cloud, &clock, case.hop);
    let mut last = provider.credentials().await.expect("no fault yet");
    inject(&cloud, &case.fault);

    let minute = Duration::from_secs(60);
    let mut failure = None;
    for m in 1..=4 * 60 {
        tokio::time::sleep(minute).await;
        let now = clock.now();
        let left = expiry(&last).duration_since(now).unwrap_or_default();
        let outcome = if left > minute {
            // 1. While the last good credentials are valid beyond their last minute, a caller is
            //    served at once: the call is ready on its first poll.
            provider
                .credentials()
                .now_or_never()
                .unwrap_or_else(|| panic!("{name}, minute {m}: a caller waited on the network"))
        } else {
            provider.credentials().await
        };
        match outcome {
            // 2. Never expired credentials: a second left at least when served.
            Ok(c) => {
                assert!(
                    expiry(&c) >= clock.now() + Duration::from_secs(1),
                    "{name}, minute {m}: credentials with less than a second left ({:?})",
                    expiry(&c).duration_since(clock.now())
                );
                last = c;
            }
            Err(e) => {
                // 3. Only once the last good ones are in their last minute or gone, and typed,
                //    naming the hop and the cloud's code.
                assert!(
                    left <= minute,
                    "{name}, minute {m}: failed with {left:?} left: {e}"
                );
                failure = Some(e);
                break;
            }
        }
    }
    let e = failure.unwrap_or_else(|| panic!("{name}: four hours passed without a failure"));
    let e: &Error = &e;
    assert!(case.hop.owns(e), "{name}: {e:?}");
    let text = e.to_string();
    for word in case.says {
        assert!(text.contains(word), "{name}: «{word}» not in «{text}»");
    }
    assert!(provider.stats().chain_failures >= 1, "{name}");

    // 4. Recovery within one backoff once the fault clears: a caller every second gets the
    //    failure until the backoff ends, then fresh credentials.
    cloud.state().clear_faults();
    let cleared = Instant::now();
    let fresh = loop {
        match provider.credentials().await {
            Ok(c) => break c,
            Err(e) if cleared.elapsed() <= ONE_BACKOFF => {
                assert!(case.hop.owns(&e), "{name}: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => panic!("{name}: not recovered a backoff after clearing: {e}"),
        }
    };
    assert!(
        expiry(&fresh) > clock.now() + Duration::from_secs(3000),
        "{name}: fresh credentials"
    );
    assert!(
        cleared.elapsed() <= ONE_BACKOFF + Duration::from_secs(1),
        "{name}: recovered after {:?}",
        cleared.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn every_fault_is_ridden_through() {
    let cases = cases();
    assert!(cases.len() >= 25, "at least 25 distinct faults");
    for case in &cases {
        ride_through(case).await;
    }
}

/// Point 5: one attempt at a time, whoever asks; its retries are all the failing hop sees.
#[tokio::test(start_paused = true)]
async fn a_thousand_callers_make_only_the_calls_one_attempt_allows() {
    for case in cases()
        .iter()
        .filter(|c| matches!(c.fault, Injection::Fault(ref f) if f.kind == FaultKind::Status))
    {
        let clock = TokioTime::new();
        let cloud = cloud_with(registry(), clock.clone()).await;
        inject(&cloud, &case.fault);
        let provider = provider_for(&cloud, &clock, case.hop);
        let callers: Vec<_> = (0..1000)
            .map(|_| {
                let p = provider.clone();
                tokio::spawn(async move { p.credentials().await.is_err() })
            })
            .collect();
        for c in callers {
            assert!(
                c.await.unwrap(),
                "{}: every caller gets the attempt's error",
                case.name
            );
        }
        // One attempt: the first call and the retries of its policy (IMDS: up to 8 in its 70 s
        // window for 410; the others at most 1 + 3 retries, doubled when Entra's answer makes the
        // provider fetch a fresh assertion once).
        let calls = cloud.counter(case.hop.counter());
        assert!((1..=8).contains(&calls), "{}: {calls} calls", case.name);
    }
}

/// Added latency is not a failure: callers keep being served from the cache at once while the
/// refresh waits, and the refresh lands.
#[tokio::test(start_paused = true)]
async fn added_latency_delays_only_the_background_refresh() {
    for hop in [Hop::IdentityEndpoint, Hop::Entra, Hop::Sts] {
        let clock = TokioTime::new();
        let cloud = cloud_with(registry(), clock.clone()).await;
        let provider = provider_for(&cloud, &clock, hop);
        let good = provider.credentials().await.unwrap();
        cloud
            .state()
            .inject_latency(hop.counter(), Duration::from_secs(8));
        // The refresh starts 15-18 minutes ahead and takes 8 s longer: it has landed 10 minutes
        // ahead, and every caller on the way was served at once.
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_secs(60)).await;
            provider
                .credentials()
                .now_or_never()
                .unwrap_or_else(|| panic!("{hop:?}: a caller waited on the slow refresh"))
                .unwrap();
        }
        let later = provider.credentials().await.unwrap();
        assert_ne!(
            later.access_key_id(),
            good.access_key_id(),
            "{hop:?}: the slow refresh landed"
        );
    }
}

/// A fault that hits a share of the calls, or only the next N: the refresh gets through on a
/// retry and callers never see an error.
#[tokio::test(start_paused = true)]
async fn faults_on_some_calls_are_absorbed_by_retries() {
    for fault in [
        Fault {
            count: Some(2),
            ..Fault::status("sts", 503, Some("ServiceUnavailable"))
        },
        Fault {
            fraction: Some(0.5),
            ..Fault::status("entra_token", 500, Some("server_error"))
        },
    ] {
        let clock = TokioTime::new();
        let cloud = cloud_with(registry(), clock.clone()).await;
        cloud.state().seed_faults(7);
        cloud.inject(fault.clone());
        let provider = provider_for(&cloud, &clock, Hop::Entra);
        for _ in 0..6 {
            let c = provider
                .credentials()
                .await
                .unwrap_or_else(|e| panic!("{fault:?}: {e}"));
            assert!(expiry(&c) > clock.now());
            tokio::time::sleep(Duration::from_secs(3000)).await;
        }
    }
}

/// The fault table of `docs/reliability.md`, as the cases above define it.
fn reliability_table() -> String {
    let mut t = String::from(
        "| fault | hop | the error, once the last good credentials are gone, says |\n|---|---|---|\n",
    );
    for c in cases() {
        let hop = match c.hop {
            Hop::IdentityEndpoint => "identity endpoint",
            Hop::Imds => "IMDS",
            Hop::Entra => "Entra",
            Hop::Sts => "STS",
        };
        let says = c
            .says
            .iter()
            .map(|w| format!("`{w}`"))
            .collect::<Vec<_>>()
            .join(", ");
        t.push_str(&format!("| {} | {hop} | {says} |\n", c.name));
    }
    t
}

/// `docs/reliability.md` carries the table the cases generate, between its markers, so the page
/// cannot drift from the tests. On a mismatch the expected table is printed.
#[test]
fn the_reliability_page_lists_every_case() {
    let page = std::fs::read_to_string(workspace_root().join("docs/reliability.md")).unwrap();
    let (begin, end) = ("<!-- fault-table:begin -->\n", "<!-- fault-table:end -->");
    let table = page
        .split_once(begin)
        .and_then(|(_, rest)| rest.split_once(end))
        .map(|(t, _)| t)
        .expect("docs/reliability.md has the fault-table markers");
    let expected = reliability_table();
    assert!(
        table == expected,
        "docs/reliability.md's fault table differs from the tests; it should be:\n{expected}"
    );
}

/// The hostile-input part of docs/reliability.md names tests as `path` `name` and fuzz targets as
/// fuzz `name`: every named test exists in its file, every named target is in fuzz/Cargo.toml,
/// and every target there is on the page.
#[test]
fn the_reliability_page_names_only_tests_that_exist() {
    let root = workspace_root();
    let page = std::fs::read_to_string(root.join("docs/reliability.md")).unwrap();
    let mut named = 0;
    // "`path.rs` `name`" pairs; a row may list several, separated by commas.
    for (i, _) in page.match_indices(".rs` `") {
        let path_start = page[..i].rfind('`').unwrap() + 1;
        let path = &page[path_start..i + 3];
        let rest = &page[i + 6..];
        let name = &rest[..rest.find('`').unwrap()];
        let source = std::fs::read_to_string(root.join(path))
            .unwrap_or_else(|e| panic!("docs/reliability.md names {path}: {e}"));
        // A test: the function is the first after a test attribute.
        let is_test = source.split("#[").any(|item| {
            (item.starts_with("test]") || item.starts_with("tokio::test"))
                && item
                    .split_once("fn ")
                    .is_some_and(|(_, rest)| rest.starts_with(&format!("{name}(")))
        });
        assert!(
            is_test,
            "docs/reliability.md names {name} in {path}, which has no such test"
        );
        named += 1;
    }
    assert!(
        named >= 20,
        "only {named} tests named: is the format still `path` `name`?"
    );
    let manifest = std::fs::read_to_string(root.join("fuzz/Cargo.toml")).unwrap();
    let targets: Vec<&str> = manifest
        .lines()
        .filter_map(|l| l.strip_prefix("name = \""))
        .map(|l| l.trim_end_matches('"'))
        .filter(|n| *n != "entra-federation-fuzz")
        .collect();
    assert!(targets.len() >= 13, "{targets:?}");
    for t in &targets {
        assert!(
            page.contains(&format!("fuzz `{t}`")),
            "docs/reliability.md does not list the fuzz target {t}"
        );
    }
    for (i, _) in page.match_indices("fuzz `") {
        let rest = &page[i + 6..];
        let name = &rest[..rest.find('`').unwrap()];
        assert!(
            targets.contains(&name),
            "docs/reliability.md names the fuzz target {name}, which fuzz/Cargo.toml lacks"
        );
    }
}

/// One simulated week, a caller every minute, on a paused clock: the upstream calls (identity
/// endpoint, Entra, STS) it takes, and whether any caller went without valid credentials or had
/// to wait. With `failing`, each upstream call fails with 503 at that rate (seeded).
async fn a_week(failing: Option<f64>) -> (u64, u64) {
    let clock = TokioTime::new();
    let mut registry = Registry::tutorial_default();
    registry.lifetimes.access_token_min = 75 * 60;
    registry.lifetimes.access_token_max = 75 * 60;
    let cloud = cloud_with(registry, clock.clone()).await;
    // One seed for both generators, so that JITTER_SEED replays a run exactly.
    let seed = jitter_seed();
    cloud.state().seed_faults(seed);
    if let Some(rate) = failing {
        for target in ["identity_endpoint", "entra_token", "sts"] {
            cloud.inject(Fault {
                fraction: Some(rate),
                ..Fault::status(target, 503, Some("ServiceUnavailable"))
            });
        }
    }
    let provider = builder_from_env(&env_of(&cloud))
        .time_source(clock.clone())
        .jitter_seed(seed)
        .build()
        .unwrap();
    // The first load may meet a failure too: it is retried like any other.
    let mut gaps = 0u64;
    provider.credentials().await.expect("the first load");
    for _ in 0..7 * 24 * 60 {
        tokio::time::sleep(Duration::from_secs(60)).await;
        match provider.credentials().now_or_never() {
            Some(Ok(c)) if expiry(&c) > clock.now() + Duration::from_secs(60) => {}
            _ => gaps += 1,
        }
    }
    let calls = [
        "identity_endpoint",
        "entra_token",
        "sts:AssumeRoleWithWebIdentity",
    ]
    .iter()
    .map(|c| cloud.counter(c))
    .sum();
    (calls, gaps)
}

/// A week with 5 % of upstream calls failing at random: no minute without valid credentials
/// (more than a minute left, served at once), and upstream calls within 10 % of the failure-free
/// week's.
#[tokio::test(start_paused = true)]
async fn a_simulated_week_with_five_percent_of_upstream_calls_failing() {
    let (baseline, gaps) = a_week(None).await;
    assert_eq!(gaps, 0, "the failure-free week");
    let (calls, gaps) = a_week(Some(0.05)).await;
    println!("a week: {baseline} upstream calls without failures, {calls} with 5 % failing");
    assert_eq!(gaps, 0, "minutes without valid credentials at once");
    assert!(
        calls as f64 <= baseline as f64 * 1.10,
        "{calls} upstream calls against {baseline} without failures"
    );
}
