//! The refresher's life: what happens after a failed first load, when a caller gives up, when
//! an upstream hangs, when the local clock is wrong or jumps, and when the provider goes away.

use aws_credential_types::provider::ProvideCredentials;
use aws_smithy_async::time::TimeSource;
use entra_federation::EntraCredentialsProvider;
use futures::FutureExt;
use local_cloud::{Fault, LocalCloud, Registry};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use system_tests::*;

const STS: &str = "sts:AssumeRoleWithWebIdentity";

/// A wall clock `offset` ahead of `base` (a machine whose clock is wrong, or that jumps).
#[derive(Debug, Clone)]
struct Offset {
    base: TokioTime,
    offset: Arc<Mutex<Duration>>,
}

impl Offset {
    fn new(base: &TokioTime) -> Self {
        Self {
            base: base.clone(),
            offset: Arc::default(),
        }
    }

    fn jump(&self, by: Duration) {
        *self.offset.lock().unwrap() += by;
    }
}

impl TimeSource for Offset {
    fn now(&self) -> SystemTime {
        self.base.now() + *self.offset.lock().unwrap()
    }
}

/// Requests that may last two hours: only the provider's own deadline can end a held call.
const PATIENT: Duration = Duration::from_secs(2 * 3600);

fn provider(cloud: &LocalCloud, clock: impl TimeSource + 'static) -> EntraCredentialsProvider {
    builder_from_env(&env_of(cloud))
        .time_source(clock)
        .request_timeout(PATIENT)
        .jitter_seed(jitter_seed())
        .build()
        .unwrap()
}

/// Point 1: a failed first load must not leave the background refresher asleep for good.
#[tokio::test(start_paused = true)]
async fn after_a_failed_first_load_refreshes_still_happen_ahead_of_expiry() {
    let clock = TokioTime::new();
    let cloud = cloud_with(Registry::tutorial_default(), clock.clone()).await;
    cloud.inject(Fault {
        target: "identity_endpoint".into(),
        status: 404,
        code: None,
        count: None,
        retry_after: None,
        ..Default::default()
    });
    let provider = provider(&cloud, clock.clone());
    provider
        .provide_credentials()
        .await
        .expect_err("the identity endpoint is not ready");
    cloud.clear_faults();
    // Past the failure's backoff, a second load succeeds.
    tokio::time::sleep(Duration::from_secs(90)).await;
    let first = provider.provide_credentials().await.expect("second load");
    let expiry = first.expiry().unwrap();
    // Nobody calls until two minutes before expiry (as behind the SDK's identity cache).
    tokio::time::sleep(expiry.duration_since(clock.now()).unwrap() - Duration::from_secs(120))
        .await;
    assert_eq!(
        provider.stats().sts_calls,
        2,
        "the refresh ran in the background, ahead of expiry"
    );
    let served = provider
        .provide_credentials()
        .now_or_never()
        .expect("served from cache, without waiting")
        .unwrap();
    assert_ne!(served.access_key_id(), first.access_key_id());
}

/// Point 2: a caller that gives up (the SDK's load timeout) does not throw the refresh away: it
/// completes, and the next caller gets its outcome without a second chain.
#[tokio::test(start_paused = true)]
async fn a_refresh_outlives_the_caller_that_gave_up_on_it() {
    let clock = TokioTime::new();
    let cloud = cloud_with(Registry::tutorial_default(), clock.clone()).await;
    let hold = cloud.hold(STS);
    let provider = provider(&cloud, clock.clone());
    tokio::time::timeout(Duration::from_secs(5), provider.provide_credentials())
        .await
        .expect_err("the caller gives up while STS is held");
    assert_eq!(hold.arrived(), 1);
    hold.release();
    provider
        .provide_credentials()
        .await
        .expect("the next caller gets the refresh's outcome");
    assert_eq!(
        (cloud.counter(STS), provider.stats().sts_calls),
        (1, 1),
        "one chain, finished after its first caller left"
    );
}

/// Point 2: an attempt has an overall deadline even when the HTTP client would wait for hours.
#[tokio::test(start_paused = true)]
async fn an_attempt_ends_at_its_deadline_even_with_a_patient_http_client() {
    let clock = TokioTime::new();
    let cloud = cloud_with(Registry::tutorial_default(), clock.clone()).await;
    let _hold = cloud.hold(STS);
    let provider = provider(&cloud, clock.clone());
    let started = tokio::time::Instant::now();
    let error = provider.credentials().await.expect_err("STS never answers");
    let waited = started.elapsed();
    assert!(
        waited <= Duration::from_secs(121),
        "the attempt was abandoned at its deadline, not after {waited:?}"
    );
    assert!(
        matches!(
            &*error,
            entra_federation::Error::Deadline {
                waiting_on: Some("STS"),
                ..
            }
        ),
        "a typed deadline error naming the hop it waited on, got: {error}"
    );
    assert!(
        error.to_string().contains("while waiting on STS"),
        "{error}"
    );
    assert!(error.is_recoverable());
}

/// Point 2: in the last minute, a caller waits a few seconds at most for a stuck refresh and then
/// gets the credentials that are still valid.
#[tokio::test(start_paused = true)]
async fn in_the_last_minute_a_stuck_refresh_costs_a_caller_seconds_not_the_credentials() {
    let clock = TokioTime::new();
    let cloud = cloud_with(Registry::tutorial_default(), clock.clone()).await;
    let provider = provider(&cloud, clock.clone());
    let first = provider.provide_credentials().await.unwrap();
    let expiry = first.expiry().unwrap();
    let _hold = cloud.hold(STS);
    tokio::time::sleep(expiry.duration_since(clock.now()).unwrap() - Duration::from_secs(30)).await;
    let started = tokio::time::Instant::now();
    let served = provider
        .provide_credentials()
        .await
        .expect("the still-valid credentials");
    assert!(
        started.elapsed() <= Duration::from_secs(5),
        "waited {:?}",
        started.elapsed()
    );
    assert_eq!(served.access_key_id(), first.access_key_id());
}

/// Point 3: a local clock two hours ahead makes STS's one-hour credentials arrive expired. They
/// are a failure (one chain for many callers, then backoff), never handed out.
#[tokio::test(start_paused = true)]
async fn credentials_that_arrive_expired_are_a_failure_never_handed_out() {
    let cloud_clock = TokioTime::new();
    let cloud = cloud_with(Registry::tutorial_default(), cloud_clock.clone()).await;
    let skewed = Offset::new(&cloud_clock);
    skewed.jump(Duration::from_secs(2 * 3600));
    let provider = provider(&cloud, skewed);
    let callers: Vec<_> = (0..20)
        .map(|_| {
            let p = provider.clone();
            tokio::spawn(async move { p.credentials().await })
        })
        .collect();
    for caller in callers {
        let error = caller
            .await
            .unwrap()
            .expect_err("expired credentials are never returned");
        assert!(
            matches!(&*error, entra_federation::Error::Stale { .. }),
            "a typed clock-skew error, got: {error}"
        );
        let text = error.to_string();
        assert!(text.contains("clock"), "names the clock: {text}");
    }
    assert_eq!(cloud.counter(STS), 1, "one chain for all callers");
    provider.credentials().await.expect_err("still failing");
    assert_eq!(cloud.counter(STS), 1, "backing off after the failure");
}

/// Point 4: the background refresher ends with the last provider clone, not with the runtime.
#[tokio::test(start_paused = true)]
async fn the_background_refresher_ends_with_the_last_provider_clone() {
    let clock = TokioTime::new();
    let cloud = cloud_with(Registry::tutorial_default(), clock.clone()).await;
    let metrics = tokio::runtime::Handle::current().metrics();
    // Idle connections close in 90 s; settle the cloud's own tasks first.
    let settle = || tokio::time::sleep(Duration::from_secs(300));
    settle().await;
    let before = metrics.num_alive_tasks();
    let provider = provider(&cloud, clock.clone());
    let copy = provider.clone();
    provider.provide_credentials().await.unwrap();
    drop(provider);
    settle().await;
    assert!(
        metrics.num_alive_tasks() > before,
        "a clone lives: the refresher runs"
    );
    drop(copy);
    settle().await;
    assert_eq!(
        metrics.num_alive_tasks(),
        before,
        "no task left behind by the provider"
    );
}

/// Point 4: a runtime that ends before the refresher task ever ran must not leave the provider
/// believing a refresher is running: in the next runtime, refreshes happen in the background.
#[test]
fn a_refresher_dropped_before_its_first_poll_is_started_again() {
    let cloud_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let base = cloud_runtime.block_on(async { TokioTime::new() });
    let wall = Offset::new(&base);
    let clock = wall.clone();
    let cloud = cloud_runtime.block_on(cloud_with(Registry::tutorial_default(), clock.clone()));
    let provider = provider(&cloud, clock.clone());
    let first = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(provider.provide_credentials())
        .unwrap();
    // That runtime is gone. Into the advisory window (10 minutes left), in a new runtime.
    let left = first.expiry().unwrap().duration_since(clock.now()).unwrap();
    wall.jump(left - Duration::from_secs(600));
    let hold = cloud.hold(STS);
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let served = provider
                .provide_credentials()
                .now_or_never()
                .expect("served from cache")
                .unwrap();
            assert_eq!(served.access_key_id(), first.access_key_id());
            within("a background refresh", hold.until_arrived(1)).await;
        });
    hold.release();
}

/// Point 4: the refresher's sleep follows the wall clock: after a VM pause or a clock step, the
/// refresh happens within a minute, not after the rest of a sleep computed before it.
#[tokio::test(start_paused = true)]
async fn a_wall_clock_jump_is_noticed_within_a_minute() {
    let base = TokioTime::new();
    let wall = Offset::new(&base);
    let clock = wall.clone();
    let cloud = cloud_with(Registry::tutorial_default(), clock.clone()).await;
    let provider = provider(&cloud, clock.clone());
    let first = provider.provide_credentials().await.unwrap();
    // Let the refresher settle into its sleep until the refresh point.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let hold = cloud.hold(STS);
    // The machine slept: ten minutes of validity left, and nobody calls.
    let left = first.expiry().unwrap().duration_since(clock.now()).unwrap();
    wall.jump(left - Duration::from_secs(600));
    tokio::time::sleep(Duration::from_secs(61)).await;
    assert_eq!(hold.arrived(), 1, "the background refresh started");
    hold.release();
}

/// Review finding: the token-file path holds the chain's gate; it has the same deadline as a
/// credentials refresh, so a hung hop cannot hold the gate (and every refresh) for hours.
#[tokio::test(start_paused = true)]
async fn the_web_identity_token_has_the_same_deadline() {
    let clock = TokioTime::new();
    let cloud = cloud_with(Registry::tutorial_default(), clock.clone()).await;
    let _hold = cloud.hold("entra_token");
    let provider = provider(&cloud, clock.clone());
    let started = tokio::time::Instant::now();
    let error = provider
        .refresh_web_identity_token()
        .await
        .expect_err("Entra never answers");
    assert!(
        matches!(error, entra_federation::Error::Deadline { .. }),
        "{error}"
    );
    assert!(
        started.elapsed() <= Duration::from_secs(61),
        "{:?}",
        started.elapsed()
    );
}
