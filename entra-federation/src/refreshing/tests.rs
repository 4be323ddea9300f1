//! The cache on its own, with a fake resolver under tokio's paused clock.

use super::*;
use crate::sts::StsError;
use std::sync::atomic::AtomicBool;

/// Answers its call number and the expiry it gave, valid for `lifetime`; fails or hangs when told to.
struct Fake {
    clock: Clock,
    calls: AtomicU64,
    lifetime: Mutex<Duration>,
    fail: AtomicBool,
    /// How long a call takes before it answers.
    delay: Mutex<Duration>,
    /// While false, calls wait.
    open: watch::Sender<bool>,
}

/// The call number and the expiry of a value.
type Value = (u64, SystemTime);

impl Resolve for Arc<Fake> {
    type Value = Value;

    async fn resolve(&self) -> Result<Resolved<Value>, Error> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let _ = self.open.subscribe().wait_for(|open| *open).await;
        let delay = *self.delay.lock().unwrap();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if self.fail.load(Ordering::SeqCst) {
            return Err(Error::Sts(StsError::Transport {
                endpoint: "https://sts.example/".into(),
                what: "connection failed",
                source: None,
            }));
        }
        let expires_at = self.clock.now() + *self.lifetime.lock().unwrap();
        Ok(Resolved {
            value: (n, expires_at),
            expires_at,
            issuer_now: None,
        })
    }
}

fn fake_with(clock: Clock) -> (Arc<Fake>, RefreshingCache<Arc<Fake>>) {
    fake_with_deadline(clock, DEFAULT_DEADLINE)
}

fn fake_with_deadline(clock: Clock, deadline: Duration) -> (Arc<Fake>, RefreshingCache<Arc<Fake>>) {
    let fake = Arc::new(Fake {
        clock: clock.clone(),
        calls: AtomicU64::new(0),
        lifetime: Mutex::new(Duration::from_secs(3600)),
        fail: AtomicBool::new(false),
        delay: Mutex::default(),
        open: watch::Sender::new(true),
    });
    let cache = RefreshingCache::new(
        fake.clone(),
        Settings {
            clock,
            jitter: Jitter::seeded(1),
            rule: Rule::Credentials,
            deadline,
            what: "test value",
        },
    );
    (fake, cache)
}

fn fake() -> (Arc<Fake>, RefreshingCache<Arc<Fake>>) {
    fake_with(Clock::tokio_driven())
}

fn calls(fake: &Fake) -> u64 {
    fake.calls.load(Ordering::SeqCst)
}

#[tokio::test(start_paused = true)]
async fn many_callers_share_one_attempt() {
    let (fake, cache) = fake();
    let cache = Arc::new(cache);
    fake.open.send_replace(false);
    let callers: Vec<_> = (0..100)
        .map(|_| {
            let c = cache.clone();
            tokio::spawn(async move { c.get().await })
        })
        .collect();
    tokio::task::yield_now().await;
    fake.open.send_replace(true);
    for c in callers {
        assert_eq!(c.await.unwrap().unwrap().0, 1);
    }
    assert_eq!(calls(&fake), 1);
}

#[tokio::test(start_paused = true)]
async fn a_caller_that_gives_up_leaves_the_attempt_running() {
    let (fake, cache) = fake();
    fake.open.send_replace(false);
    tokio::time::timeout(Duration::from_secs(1), cache.get())
        .await
        .expect_err("gave up");
    fake.open.send_replace(true);
    assert_eq!(cache.get().await.unwrap().0, 1);
    assert_eq!(calls(&fake), 1);
}

#[tokio::test(start_paused = true)]
async fn an_attempt_is_abandoned_at_its_deadline() {
    let (fake, cache) = fake();
    fake.open.send_replace(false);
    let started = tokio::time::Instant::now();
    let e = cache.get().await.unwrap_err();
    assert!(matches!(*e, Error::Deadline { seconds: 60, .. }), "{e}");
    assert_eq!(started.elapsed(), DEFAULT_DEADLINE);
    assert_eq!(cache.failures(), 1);
}

#[tokio::test(start_paused = true)]
async fn after_a_failed_first_load_the_refresh_still_runs_ahead() {
    let (fake, cache) = fake();
    fake.fail.store(true, Ordering::SeqCst);
    cache.get().await.unwrap_err();
    fake.fail.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(61)).await;
    assert_eq!(cache.get().await.unwrap().0, 2);
    tokio::time::sleep(Duration::from_secs(3600 - 120)).await;
    assert_eq!(calls(&fake), 3, "refreshed in the background");
    assert_eq!(cache.cached().unwrap().unwrap().0, 3);
}

#[tokio::test(start_paused = true)]
async fn an_answer_already_in_its_last_minute_is_a_failure_and_never_served_expired() {
    let (expired, cache) = fake();
    *expired.lifetime.lock().unwrap() = Duration::ZERO;
    let e = cache.get().await.unwrap_err();
    assert!(matches!(*e, Error::Stale { .. }), "{e}");
    assert!(cache.valid().is_none());

    let (fake, cache) = fake();
    *fake.lifetime.lock().unwrap() = Duration::from_secs(30);
    // Thirty seconds of validity: served, but counted as a failure, and backed off from.
    assert_eq!(cache.get().await.unwrap().0, 1);
    assert_eq!(cache.failures(), 1);
    for _ in 0..10 {
        assert_eq!(cache.get().await.unwrap().0, 1);
    }
    assert_eq!(calls(&fake), 1);
    tokio::time::sleep(Duration::from_secs(31)).await;
    for _ in 0..10 {
        match cache.get().await {
            Ok((n, expires_at)) => assert!(
                fake.clock.now() < expires_at,
                "value {n} served after its expiry"
            ),
            Err(e) => assert!(matches!(*e, Error::Stale { .. }), "{e}"),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn in_the_last_minute_a_stuck_refresh_costs_seconds_then_serves_the_valid_value() {
    let (fake, cache) = fake();
    assert_eq!(cache.get().await.unwrap().0, 1);
    fake.open.send_replace(false);
    tokio::time::sleep(Duration::from_secs(3600 - 30)).await;
    let started = tokio::time::Instant::now();
    assert_eq!(cache.get().await.unwrap().0, 1);
    assert!(
        started.elapsed() <= MANDATORY_WAIT,
        "{:?}",
        started.elapsed()
    );
    tokio::time::sleep(Duration::from_secs(30)).await;
    // Expired, the refresh still stuck: a caller waits for it (up to the deadline) and gets its
    // failure, never the expired value.
    assert!(cache.cached().is_none_or(|o| o.is_err()));
    let e = cache.get().await.unwrap_err();
    assert!(matches!(*e, Error::Deadline { .. }), "{e}");
}

/// Found by the fault matrix (`JITTER_SEED=13712436211522312246`): a caller in the last second
/// of a value whose refresh keeps failing was handed that value by the failed attempt, with
/// milliseconds left. Whichever way a caller is answered, what it gets has a second left; and a
/// caller with more than that left is still served (the check takes nothing useful away).
#[tokio::test(start_paused = true)]
async fn a_failing_refresh_never_hands_out_a_value_in_its_last_second() {
    for (offset_ms, delay_ms) in (0..4000)
        .step_by(50)
        .flat_map(|o| [0, 300, 700, 1500].map(|d| (o, d)))
    {
        let (fake, cache) = fake();
        let (_, expires_at) = cache.get().await.unwrap();
        fake.fail.store(true, Ordering::SeqCst);
        *fake.delay.lock().unwrap() = Duration::from_millis(delay_ms);
        let until = expires_at
            .checked_sub(Duration::from_millis(offset_ms))
            .unwrap()
            .duration_since(fake.clock.now())
            .unwrap();
        tokio::time::sleep(until).await;
        for call in 0..3 {
            let outcome = cache.get().await;
            let now = fake.clock.now();
            if call == 0 && offset_ms >= 1100 {
                assert!(
                    outcome.is_ok(),
                    "{offset_ms} ms before expiry, refreshes failing after {delay_ms} ms: {outcome:?}"
                );
            }
            let served = outcome.ok().into_iter().chain(cache.valid());
            for (n, expires_at) in served {
                assert!(
                    now + MIN_LEFT_WHEN_SERVED <= expires_at,
                    "{offset_ms} ms before expiry, refreshes failing after {delay_ms} ms: value {n} served with {:?} left",
                    expires_at.duration_since(now)
                );
            }
        }
    }
}

/// The wall clock can jump while a caller waits for a refresh in a value's last minute (a
/// suspended VM, an NTP step): when the wait ends, the value is served only if it still has a
/// second left by the clock read then.
#[tokio::test(start_paused = true)]
async fn a_wall_clock_jump_during_a_last_minute_wait_does_not_serve_an_expired_value() {
    let wall = Jumpy(Clock::tokio_driven(), Arc::default());
    // The advisory refresh, due a quarter of an hour before expiry, hangs for an hour: in the
    // last minute a caller joins it and waits.
    let (fake, cache) = fake_with_deadline(
        Clock::from_time_source(wall.clone()),
        Duration::from_secs(3600),
    );
    let (_, expires_at) = cache.get().await.unwrap();
    fake.open.send_replace(false);
    tokio::time::sleep(Duration::from_secs(3600 - 30)).await;
    let cache = Arc::new(cache);
    let caller = tokio::spawn({
        let cache = cache.clone();
        async move { cache.get().await }
    });
    // A second into the caller's wait (of three), the wall clock jumps past the value's expiry.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!caller.is_finished(), "the caller waits for the refresh");
    *wall.1.lock().unwrap() = Duration::from_secs(40);
    match caller.await.unwrap() {
        Ok((n, e)) => panic!(
            "value {n} served {:?} after its expiry",
            wall_now(&wall).duration_since(e).unwrap_or_default()
        ),
        Err(e) => assert!(matches!(*e, Error::Deadline { .. }), "{e}"),
    }
    assert!(wall_now(&wall) > expires_at);
}

fn wall_now(wall: &Jumpy) -> SystemTime {
    aws_smithy_async::time::TimeSource::now(wall)
}

/// An attempt spawned on a runtime that is no longer driven (a sync wrapper's runtime between
/// calls) never finishes: callers elsewhere do not wait for it forever, a new attempt replaces it.
#[test]
fn an_attempt_stuck_on_an_undriven_runtime_is_replaced() {
    let (fake, cache) = fake_with_deadline(Clock::system(), Duration::from_millis(300));
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    };
    fake.open.send_replace(false);
    let idle = runtime();
    idle.block_on(async {
        let _ = tokio::time::timeout(Duration::from_millis(50), cache.get()).await;
    });
    // `idle` lives on, undriven: its attempt sits there.
    fake.open.send_replace(true);
    let value = runtime()
        .block_on(async { tokio::time::timeout(Duration::from_secs(20), cache.get()).await })
        .expect("not stuck behind the undriven attempt")
        .or_else(|_| {
            // The first caller here may get the bounded wait's deadline error; the next one the
            // replacing attempt's value.
            runtime().block_on(cache.get())
        })
        .expect("a value");
    assert_eq!(value.0, 2, "a second attempt ran");
    drop(idle);
}

/// A panicking refresh is recorded as a failure and backed off from, not retried by every call.
#[tokio::test(start_paused = true)]
async fn a_panicking_refresh_is_backed_off_from() {
    struct Panics(AtomicU64);
    impl Resolve for Arc<Panics> {
        type Value = u64;
        async fn resolve(&self) -> Result<Resolved<u64>, Error> {
            self.0.fetch_add(1, Ordering::SeqCst);
            panic!("a bug in the resolver")
        }
    }
    let resolver = Arc::new(Panics(AtomicU64::new(0)));
    let cache = RefreshingCache::new(
        resolver.clone(),
        Settings {
            clock: Clock::tokio_driven(),
            jitter: Jitter::seeded(1),
            rule: Rule::Credentials,
            deadline: DEFAULT_DEADLINE,
            what: "test value",
        },
    );
    for _ in 0..10 {
        assert!(cache.get().await.is_err());
    }
    assert_eq!(
        resolver.0.load(Ordering::SeqCst),
        1,
        "backed off after the panic"
    );
    assert_eq!(cache.failures(), 1);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_cache_ends_its_background_task() {
    let (_fake, cache) = fake();
    cache.get().await.unwrap();
    tokio::task::yield_now().await;
    let metrics = tokio::runtime::Handle::current().metrics();
    assert_eq!(metrics.num_alive_tasks(), 1, "the background task");
    drop(cache);
    tokio::task::yield_now().await;
    assert_eq!(metrics.num_alive_tasks(), 0);
}

/// A wall clock that can jump ahead of tokio's.
#[derive(Debug, Clone)]
struct Jumpy(Clock, Arc<Mutex<Duration>>);

impl aws_smithy_async::time::TimeSource for Jumpy {
    fn now(&self) -> SystemTime {
        self.0.now() + *self.1.lock().unwrap()
    }
}

#[tokio::test(start_paused = true)]
async fn a_wall_clock_jump_is_noticed_within_max_sleep() {
    let wall = Jumpy(Clock::tokio_driven(), Arc::default());
    let (fake, cache) = fake_with(Clock::from_time_source(wall.clone()));
    cache.get().await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    *wall.1.lock().unwrap() = Duration::from_secs(3000);
    tokio::time::sleep(MAX_SLEEP).await;
    assert_eq!(calls(&fake), 2);
}

#[test]
fn backoff_stays_inside_the_remaining_validity() {
    for n in 1..20 {
        let j = Jitter::default();
        let d = failure_backoff(n, Some(Duration::from_secs(120)), &j);
        assert!(d <= Duration::from_secs(30), "{d:?}");
        assert!(failure_backoff(n, None, &j) <= Duration::from_secs(60));
    }
    assert!(
        failure_backoff(10, Some(Duration::from_secs(7200)), &Jitter::default())
            >= Duration::from_secs(150)
    );
}
