//! Caching and refresh: single-flight under load, 48 simulated hours of renewals ahead of expiry,
//! an outage ridden out on the last good credentials, layered caches.

use aws_credential_types::provider::ProvideCredentials;
use entra_federation::{Clock, EntraCredentialsProvider};
use futures::FutureExt;
use local_cloud::{Fault, Registry};
use std::time::{Duration, SystemTime};
use system_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_cold_callers_cause_one_chain() {
    let cloud = cloud().await;
    let provider = provider_from_env(&cloud);
    let tasks: Vec<_> = (0..10_000)
        .map(|_| {
            let p = provider.clone();
            tokio::spawn(async move {
                p.provide_credentials()
                    .await
                    .map(|c| c.access_key_id().to_string())
            })
        })
        .collect();
    let mut keys = std::collections::HashSet::new();
    for t in tasks {
        keys.insert(t.await.unwrap().expect("every caller gets credentials"));
    }
    assert_eq!(keys.len(), 1, "all callers share one set of credentials");
    assert_eq!(cloud.counter("identity_endpoint"), 1);
    assert_eq!(cloud.counter("entra_token"), 1);
    assert_eq!(cloud.counter("sts:AssumeRoleWithWebIdentity"), 1);
}

async fn callers_of_a_failing_chain(cloud: &local_cloud::LocalCloud) {
    let provider = provider_from_env(cloud);
    let tasks: Vec<_> = (0..1_000)
        .map(|_| {
            let p = provider.clone();
            tokio::spawn(async move { p.provide_credentials().await })
        })
        .collect();
    for t in tasks {
        assert!(t.await.unwrap().is_err());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_of_a_terminal_failure_share_one_attempt() {
    let cloud = cloud().await;
    cloud.edit_registry(|r| {
        r.app_mut(local_cloud::ids::STS_APP_ID)
            .unwrap()
            .federated_credentials
            .clear()
    });
    callers_of_a_failing_chain(&cloud).await;
    assert_eq!(
        cloud.counter("entra_token"),
        1,
        "callers queued behind a failed attempt take its outcome"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_of_a_transient_failure_share_one_retrying_attempt() {
    let cloud = cloud().await;
    cloud.inject(Fault {
        target: "entra_token".into(),
        status: 503,
        code: None,
        count: None,
        retry_after: Some(0),
    });
    callers_of_a_failing_chain(&cloud).await;
    assert_eq!(
        cloud.counter("entra_token"),
        4,
        "one attempt: the first call and its three retries"
    );
}

fn simulation_provider(cloud: &local_cloud::LocalCloud, clock: &Clock) -> EntraCredentialsProvider {
    builder_from_env(&env_of(cloud))
        .clock(clock.clone())
        .build()
        .unwrap()
}

/// 48 simulated hours, a caller every simulated minute, a 10-minute STS + Entra outage at hour 24.
#[tokio::test(start_paused = true)]
async fn forty_eight_hours_renewed_ahead_never_expired_never_waiting_and_an_outage_ridden_out() {
    let clock = Clock::tokio_driven();
    let cloud = cloud_with(Registry::tutorial_default(), clock.clone()).await;
    let provider = simulation_provider(&cloud, &clock);
    provider.provide_credentials().await.expect("warm-up");

    let minute = Duration::from_secs(60);
    let mut distinct = std::collections::BTreeSet::new();
    let mut served_during_outage = std::collections::BTreeSet::new();
    // The outage starts at hour 24 when the next refresh is due (20 minutes before expiry) and
    // lasts 10 minutes: every refresh attempt in it fails.
    let mut outage: Option<std::ops::Range<u32>> = None;
    for m in 1..=(48 * 60) {
        let left = provider
            .cached_expiry()
            .unwrap()
            .duration_since(clock.now())
            .unwrap_or_default();
        if outage.is_none() && m >= 24 * 60 && left <= Duration::from_secs(20 * 60) {
            outage = Some(m..m + 10);
            for target in ["sts", "entra_token"] {
                cloud.inject(Fault {
                    target: target.into(),
                    status: 503,
                    code: None,
                    count: None,
                    retry_after: None,
                });
            }
        }
        if outage.as_ref().is_some_and(|o| o.end == m) {
            cloud.clear_faults();
        }
        tokio::time::sleep(minute).await;
        // A warm caller never waits: the future is ready on its first poll.
        let creds = provider
            .provide_credentials()
            .now_or_never()
            .unwrap_or_else(|| panic!("minute {m}: a caller had to wait on the network"))
            .unwrap_or_else(|e| panic!("minute {m}: {e}"));
        let expiry = creds.expiry().unwrap();
        let now = clock.now();
        assert!(
            expiry > now + minute,
            "minute {m}: credentials not renewed ahead of expiry ({:?} left)",
            expiry.duration_since(now)
        );
        if outage.as_ref().is_some_and(|o| o.contains(&m)) {
            served_during_outage.insert(creds.access_key_id().to_string());
        }
        distinct.insert(creds.access_key_id().to_string());
    }
    let stats = provider.stats();
    // One-hour credentials refreshed 15-18 minutes ahead: 48 h needs 63-70 sessions.
    assert!(
        (60..=75).contains(&distinct.len()),
        "{} sessions: {stats:?}",
        distinct.len()
    );
    assert!(outage.is_some());
    assert_eq!(
        served_during_outage.len(),
        1,
        "the outage was ridden out on one set of credentials"
    );
    assert!(
        stats.chain_failures >= 1,
        "the outage was noticed: {stats:?}"
    );
    // 24 h assertions at half-life: a handful of identity-endpoint calls, not one per STS call.
    assert!(
        cloud.counter("identity_endpoint") <= 6,
        "{}",
        cloud.counter("identity_endpoint")
    );
    // Entra tokens are cached by their own expiry: well under one exchange per STS session.
    assert!(
        stats.entra_exchanges * 3 < distinct.len() as u64 * 2,
        "{stats:?} for {} sessions",
        distinct.len()
    );
    println!(
        "48 h: {} sessions, {stats:?}, identity endpoint calls {}",
        distinct.len(),
        cloud.counter("identity_endpoint")
    );
}

#[tokio::test(start_paused = true)]
async fn an_outage_longer_than_the_credentials_never_hands_out_expired_ones() {
    let clock = Clock::tokio_driven();
    let cloud = cloud_with(Registry::tutorial_default(), clock.clone()).await;
    let provider = simulation_provider(&cloud, &clock);
    let first = provider.provide_credentials().await.unwrap();
    cloud.inject(Fault {
        target: "sts".into(),
        status: 503,
        code: None,
        count: None,
        retry_after: None,
    });
    let mut served_after_expiry = 0;
    let mut errors = 0;
    for _ in 0..120 {
        tokio::time::sleep(Duration::from_secs(60)).await;
        match provider.provide_credentials().await {
            Ok(c) => {
                assert!(
                    c.expiry().unwrap() > clock.now(),
                    "expired credentials handed out"
                );
                assert_eq!(c.access_key_id(), first.access_key_id());
                if clock.now() > first.expiry().unwrap() {
                    served_after_expiry += 1;
                }
            }
            Err(_) => errors += 1,
        }
    }
    assert_eq!(served_after_expiry, 0);
    assert!(errors > 0, "once they expired, callers got the error");
    assert!(
        provider.fallback_on_interrupt().is_none(),
        "fallback never returns expired credentials"
    );
    cloud.clear_faults();
    tokio::time::sleep(Duration::from_secs(120)).await;
    let fresh = provider
        .provide_credentials()
        .await
        .expect("recovered after the outage");
    assert_ne!(fresh.access_key_id(), first.access_key_id());
    assert_eq!(
        provider
            .fallback_on_interrupt()
            .map(|c| c.access_key_id().to_string()),
        Some(fresh.access_key_id().to_string())
    );
}

#[tokio::test(start_paused = true)]
async fn an_sts_retry_never_re_hits_entra_or_the_identity_endpoint() {
    let cloud = cloud().await;
    cloud.inject(Fault {
        target: "sts:AssumeRoleWithWebIdentity".into(),
        status: 400,
        code: Some("Throttling".into()),
        count: Some(2),
        retry_after: None,
    });
    let provider = provider_from_env(&cloud);
    provider
        .provide_credentials()
        .await
        .expect("succeeds after two throttled attempts");
    assert_eq!(cloud.counter("sts:AssumeRoleWithWebIdentity"), 3);
    assert_eq!(cloud.counter("entra_token"), 1);
    assert_eq!(cloud.counter("identity_endpoint"), 1);
}

#[tokio::test(start_paused = true)]
async fn terminal_sts_errors_are_not_retried() {
    let cloud = cloud().await;
    cloud.inject(Fault {
        target: "sts:AssumeRoleWithWebIdentity".into(),
        status: 400,
        code: Some("InvalidIdentityToken".into()),
        count: Some(1),
        retry_after: None,
    });
    let provider = provider_from_env(&cloud);
    provider.provide_credentials().await.expect_err("terminal");
    assert_eq!(cloud.counter("sts:AssumeRoleWithWebIdentity"), 1);
}

#[tokio::test(start_paused = true)]
async fn entra_throttling_and_5xx_are_retried_honouring_retry_after() {
    let cloud = cloud().await;
    cloud.inject(Fault {
        target: "entra_token".into(),
        status: 429,
        code: None,
        count: Some(1),
        retry_after: Some(7),
    });
    cloud.inject(Fault {
        target: "entra_token".into(),
        status: 503,
        code: None,
        count: Some(1),
        retry_after: None,
    });
    let provider = provider_from_env(&cloud);
    let started = tokio::time::Instant::now();
    provider
        .provide_credentials()
        .await
        .expect("succeeds on the third attempt");
    assert_eq!(cloud.counter("entra_token"), 3);
    assert!(
        started.elapsed() >= Duration::from_secs(7),
        "Retry-After honoured: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_new_sts_call_reuses_the_cached_assertion_and_token() {
    let cloud = cloud().await;
    let provider = provider_from_env(&cloud);
    let t1 = provider.web_identity_token().await.unwrap();
    let t2 = provider.web_identity_token().await.unwrap();
    assert_eq!(
        t1.token(),
        t2.token(),
        "the Entra token is cached by its own expiry"
    );
    provider.provide_credentials().await.unwrap();
    assert_eq!(
        (
            cloud.counter("identity_endpoint"),
            cloud.counter("entra_token")
        ),
        (1, 1)
    );
    assert!(t1.expires_at() > SystemTime::now() + Duration::from_secs(50 * 60));
}
