//! Time and sleep are injected as aws-sdk-rust injects them, so a user's test drives the
//! provider with the SDK's own test utilities: here `tick_advance_time_and_sleep`, under which
//! the retry backoffs are requested from the test's sleep and pass only when the test advances
//! time, with no real waiting and no Tokio pause.

use aws_smithy_async::rt::sleep::{AsyncSleep, Sleep};
use aws_smithy_async::test_util::tick_advance_sleep::{
    TickAdvanceSleep, tick_advance_time_and_sleep,
};
use aws_smithy_async::time::TimeSource;
use local_cloud::Fault;
use std::time::Duration;
use system_tests::*;

/// The SDK's tick-advance sleep, telling the test each sleep the provider asks for.
#[derive(Debug, Clone)]
struct Observed {
    inner: TickAdvanceSleep,
    requested: tokio::sync::mpsc::UnboundedSender<Duration>,
}

impl AsyncSleep for Observed {
    fn sleep(&self, duration: Duration) -> Sleep {
        let _ = self.requested.send(duration);
        self.inner.sleep(duration)
    }
}

#[tokio::test]
async fn sts_retries_sleep_on_the_injected_sleep_and_time_moves_only_when_the_test_says() {
    let (time, sleep) = tick_advance_time_and_sleep();
    let (requested, mut sleeps) = tokio::sync::mpsc::unbounded_channel();
    let cloud = local_cloud::LocalCloud::builder()
        .clock(time.clone())
        .start()
        .await
        .expect("local cloud starts");
    cloud.inject(Fault {
        target: "sts:AssumeRoleWithWebIdentity".into(),
        status: 400,
        code: Some("Throttling".into()),
        count: Some(2),
        retry_after: None,
        ..Default::default()
    });
    let provider = builder_from_env(&env_of(&cloud))
        .time_source(time.clone())
        .sleep_impl(Observed {
            inner: sleep,
            requested,
        })
        .jitter_seed(jitter_seed())
        .build()
        .unwrap();
    let started = time.now();
    let call = tokio::spawn({
        let provider = provider.clone();
        async move { provider.credentials().await }
    });
    // The provider asks for its deadlines (a minute and more) and, after each throttled STS call,
    // a backoff (at most 20 s). Only the backoffs are let pass.
    let mut backoffs = Vec::new();
    while backoffs.len() < 2 {
        let asked = within("the provider's next sleep", sleeps.recv())
            .await
            .expect("the provider is alive");
        if asked <= Duration::from_secs(20) {
            backoffs.push(asked);
            time.tick(asked).await;
        }
    }
    let credentials = within("the credentials", call)
        .await
        .unwrap()
        .expect("credentials after two throttled calls");
    assert!(credentials.access_key_id().starts_with("ASIA"));
    assert_eq!(cloud.counter("sts:AssumeRoleWithWebIdentity"), 3);
    // The standard backoff: 1 s then 2 s, less up to half at random.
    assert!(
        (Duration::from_millis(500)..=Duration::from_secs(1)).contains(&backoffs[0]),
        "{backoffs:?}"
    );
    assert!(
        (Duration::from_secs(1)..=Duration::from_secs(2)).contains(&backoffs[1]),
        "{backoffs:?}"
    );
    // The provider's time is the test's: exactly the two backoffs passed.
    assert_eq!(
        time.now().duration_since(started).unwrap(),
        backoffs[0] + backoffs[1]
    );
}
