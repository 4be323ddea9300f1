//! A cache of one value that keeps itself fresh: the engine behind
//! [`crate::EntraCredentialsProvider`], generic over what it caches.
//!
//! - **Single flight, owned by no caller.** One attempt at a time runs in a task of its own;
//!   every caller waiting for it receives its outcome. A caller that gives up (the AWS SDK's
//!   load timeout, a client that disconnected) leaves the attempt running, so its work, its
//!   failure and its backoff are never thrown away.
//! - **A deadline per attempt**, whatever the HTTP client's own timeouts.
//! - **Refresh ahead.** A background task starts the refresh at the value's refresh point. It
//!   sleeps in short steps and reads the wall clock each time, so a paused VM or a clock step is
//!   noticed within [`MAX_SLEEP`]; it ends when the cache is dropped.
//! - **The last minute.** A caller waits at most [`MANDATORY_WAIT`] for a refresh, then gets the
//!   value that is still valid. No value is handed out with less than [`MIN_LEFT_WHEN_SERVED`]
//!   left, by any path: a caller that finds less waits for the refresh (within its deadline) and
//!   gets its outcome.
//! - **Failures back off** (jittered, exponential, bounded by what is left of the current value).
//!   An answer that is already inside its last minute on arrival (this machine's clock ahead of
//!   the issuer's) is a failure too, logged with both clocks.

use crate::clock::{Clock, unix_seconds};
use crate::error::Error;
use crate::refresh::{Cached, MANDATORY_WINDOW, Phase, Rule};
use crate::retry::{Backoff, Jitter};
use arc_swap::ArcSwap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime};
use tokio::sync::watch;

/// How long a caller inside a value's last minute waits for its refresh before it is given the
/// value that is still valid.
pub const MANDATORY_WAIT: Duration = Duration::from_secs(3);

/// What a served value still has left, at least, whichever way the caller is answered (from the
/// cache, by a failed attempt, after a wait, or as the SDK's fallback): never a value about to
/// expire, or past its expiry.
pub const MIN_LEFT_WHEN_SERVED: Duration = Duration::from_secs(1);

/// What a caller's bounded wait leaves beyond [`MIN_LEFT_WHEN_SERVED`], for a timer that fires late.
const TIMER_SLACK: Duration = Duration::from_millis(50);

/// The longest the background task sleeps before it reads the wall clock again.
pub const MAX_SLEEP: Duration = Duration::from_secs(30);

/// The default deadline of one attempt.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(60);

/// A newly resolved value.
#[derive(Debug, Clone)]
pub(crate) struct Resolved<V> {
    pub value: V,
    pub expires_at: SystemTime,
    /// The issuer's clock when it answered (an HTTP `Date`), for the clock-skew log.
    pub issuer_now: Option<SystemTime>,
}

/// What the cache holds and how to get a new one.
pub(crate) trait Resolve: Send + Sync + 'static {
    type Value: Clone + Send + Sync + 'static;

    fn resolve(&self) -> impl Future<Output = Result<Resolved<Self::Value>, Error>> + Send;
}

/// How the cache behaves.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub clock: Clock,
    pub jitter: Jitter,
    pub rule: Rule,
    pub deadline: Duration,
    /// What the value is, for logs ("AWS credentials").
    pub what: &'static str,
}

type Outcome<V> = Result<V, Arc<Error>>;
type Pending<V> = watch::Receiver<Option<Outcome<V>>>;

struct Inflight<V> {
    attempt: u64,
    started: SystemTime,
    pending: Pending<V>,
}

/// The cache. Dropping it ends its background task (an attempt in flight finishes first, within
/// its deadline).
pub(crate) struct RefreshingCache<R: Resolve> {
    core: Arc<Core<R>>,
}

struct Core<R: Resolve> {
    resolver: R,
    settings: Settings,
    /// Read without a lock (the cached path: eight threads calling at once do not fight over a
    /// lock word; the credentials' reference count is the one shared write left); replaced whole
    /// by `record`, under `writer`.
    snapshot: ArcSwap<Snapshot<R::Value>>,
    writer: Mutex<()>,
    /// The attempt in flight: its number, when it started, and where its outcome will appear.
    inflight: Mutex<Option<Inflight<R::Value>>>,
    /// How many attempts have been recorded; the background task listens to it.
    recorded: watch::Sender<u64>,
    background: Mutex<Option<tokio::task::JoinHandle<()>>>,
    failures: AtomicU64,
}

#[derive(Clone)]
struct Snapshot<V> {
    value: Option<Cached<V>>,
    failure: Option<Failure>,
}

#[derive(Clone)]
struct Failure {
    error: Arc<Error>,
    retry_not_before: SystemTime,
    consecutive: u32,
}

impl<R: Resolve> RefreshingCache<R> {
    /// The deadline of one attempt.
    pub fn deadline(&self) -> Duration {
        self.core.settings.deadline
    }

    pub fn new(resolver: R, settings: Settings) -> Self {
        Self {
            core: Arc::new(Core {
                resolver,
                settings,
                snapshot: ArcSwap::from_pointee(Snapshot {
                    value: None,
                    failure: None,
                }),
                writer: Mutex::new(()),
                inflight: Mutex::new(None),
                recorded: watch::Sender::new(0),
                background: Mutex::new(None),
                failures: AtomicU64::new(0),
            }),
        }
    }

    pub fn resolver(&self) -> &R {
        &self.core.resolver
    }

    /// The answer that needs no waiting, if there is one: allocation-free when the value is
    /// fresh. In the refresh window it also starts the refresh.
    pub fn cached(&self) -> Option<Outcome<R::Value>> {
        let core = &self.core;
        let snap = core.read();
        // The common case, cheaply: far from the refresh point, a clock that lags by a few
        // milliseconds cannot change the answer (Fresh ends minutes before the expiry).
        if let Some(c) = &snap.value {
            let coarse = core.settings.clock.now_coarse();
            if coarse < c.refresh_at && coarse + MANDATORY_WINDOW < c.expires_at {
                return Some(Ok(c.value.clone()));
            }
        }
        let now = core.settings.clock.now();
        let in_backoff = snap.in_backoff(now);
        match &snap.value {
            Some(c) => match c.phase(now) {
                Phase::Fresh => Some(Ok(c.value.clone())),
                Phase::Advisory => {
                    let value = c.value.clone();
                    drop(snap);
                    if !in_backoff {
                        core.start(Trigger::Refresh);
                    }
                    core.ensure_background();
                    Some(Ok(value))
                }
                // The last minute: wait for a refresh, unless one just failed (then serve, while
                // the value has at least a second left).
                Phase::Mandatory if in_backoff && now + MIN_LEFT_WHEN_SERVED < c.expires_at => {
                    Some(Ok(c.value.clone()))
                }
                Phase::Mandatory | Phase::Expired if in_backoff => {
                    snap.failure.as_ref().map(|f| Err(f.error.clone()))
                }
                _ => None,
            },
            None if in_backoff => snap.failure.as_ref().map(|f| Err(f.error.clone())),
            None => None,
        }
    }

    /// The value, waiting for a refresh when there is nothing to serve.
    pub async fn get(&self) -> Outcome<R::Value> {
        let core = &self.core;
        let seen = *core.recorded.borrow();
        if let Some(outcome) = self.cached() {
            return outcome;
        }
        let pending = match core.start(Trigger::Caller { seen }) {
            Started::Settled(outcome) => return outcome,
            Started::Pending(pending) => pending,
            // (Only a refresh trigger gets this; a caller's look found nothing to serve.)
            Started::Nothing => {
                return self
                    .cached()
                    .unwrap_or_else(|| Err(Arc::new(Error::Interrupted)));
            }
            // No Tokio runtime to run the attempt on: run it here (its hops then say why not).
            Started::NoRuntime => return core.attempt_inline().await,
        };
        core.ensure_background();
        let now = core.settings.clock.now();
        // A value that would be gone by the end of the wait is not one to fall back on: waiting
        // for as long as it has left would hand it out expired.
        let still_valid = core
            .read()
            .value
            .as_ref()
            .filter(|c| now + MIN_LEFT_WHEN_SERVED < c.expires_at)
            .map(|c| (c.value.clone(), c.expires_at));
        let Some((value, expires_at)) = still_valid else {
            return core.outcome_within_deadline(pending).await;
        };
        let left = expires_at.duration_since(now).unwrap_or_default();
        // (less a little, so that a timer firing a few milliseconds late still finds a second)
        let bound = MANDATORY_WAIT.min(left.saturating_sub(MIN_LEFT_WHEN_SERVED + TIMER_SLACK));
        match core
            .settings
            .clock
            .timeout(bound, outcome_of(pending.clone()))
            .await
        {
            Ok(outcome) => outcome,
            Err(_) => {
                // Read the clock again: the wall clock may have jumped (a suspended VM, an NTP
                // step) while the timer ran.
                let now = core.settings.clock.now();
                if now + MIN_LEFT_WHEN_SERVED <= expires_at {
                    tracing::warn!(
                        what = core.settings.what,
                        waited_ms = bound.as_millis() as u64,
                        valid_for_s = expires_at.duration_since(now).unwrap_or_default().as_secs(),
                        "the refresh is still running; serving the value that is still valid"
                    );
                    Ok(value)
                } else {
                    core.outcome_within_deadline(pending).await
                }
            }
        }
    }

    /// The value while it has at least [`MIN_LEFT_WHEN_SERVED`] left, whatever the refresh state.
    pub fn valid(&self) -> Option<R::Value> {
        let now = self.core.settings.clock.now();
        self.core
            .read()
            .value
            .as_ref()
            .filter(|c| now + MIN_LEFT_WHEN_SERVED < c.expires_at)
            .map(|c| c.value.clone())
    }

    /// When the cached value expires.
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.core.read().value.as_ref().map(|c| c.expires_at)
    }

    /// Attempts that failed.
    pub fn failures(&self) -> u64 {
        self.core.failures.load(Ordering::Relaxed)
    }
}

impl<R: Resolve> Drop for RefreshingCache<R> {
    fn drop(&mut self) {
        if let Some(task) = lock(&self.core.background).take() {
            task.abort();
        }
    }
}

/// Who asks for an attempt.
enum Trigger {
    /// A caller with nothing to serve; `seen` is the number of recorded attempts when it first
    /// looked (an attempt recorded since then answers it).
    Caller { seen: u64 },
    /// The refresh point (a caller in the advisory window, or the background task): nothing
    /// starts if the value has become fresh meanwhile.
    Refresh,
}

enum Started<V> {
    /// A refresh was asked for, and the value is fresh: nothing to do.
    Nothing,
    Pending(Pending<V>),
    Settled(Outcome<V>),
    NoRuntime,
}

async fn outcome_of<V: Clone>(mut pending: Pending<V>) -> Outcome<V> {
    match pending.wait_for(Option::is_some).await {
        Ok(outcome) => outcome.clone().unwrap_or(Err(Arc::new(Error::Interrupted))),
        Err(_) => Err(Arc::new(Error::Interrupted)),
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<V> Snapshot<V> {
    fn in_backoff(&self, now: SystemTime) -> bool {
        self.failure
            .as_ref()
            .is_some_and(|f| now < f.retry_not_before)
    }
}

/// Clears the in-flight slot when its attempt ends in any way: finished, panicked, or dropped
/// with its runtime (even before its first poll, since the attempt's future owns it). A panic is
/// recorded as a failure, so that it is backed off from like any other.
struct ClearInflight<R: Resolve> {
    core: Arc<Core<R>>,
    attempt: u64,
}

impl<R: Resolve> Drop for ClearInflight<R> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            tracing::error!(what = self.core.settings.what, "the refresh panicked");
            let _ = self.core.record(Err(Error::Interrupted));
        }
        let mut slot = lock(&self.core.inflight);
        if slot.as_ref().is_some_and(|s| s.attempt == self.attempt) {
            *slot = None;
        }
    }
}

impl<R: Resolve> Core<R> {
    fn read(&self) -> arc_swap::Guard<Arc<Snapshot<R::Value>>> {
        self.snapshot.load()
    }

    /// How old an attempt in flight may be before it is presumed dead: its deadline, plus a
    /// tenth of it (at least a second). Only an attempt whose runtime is no longer driven gets
    /// that old; a new one replaces it.
    fn stale_after(&self) -> Duration {
        let d = self.settings.deadline;
        d + (d / 10).max(Duration::from_secs(1))
    }

    /// The attempt's outcome, waiting at most until it is presumed dead: an attempt whose runtime
    /// is no longer driven never answers.
    async fn outcome_within_deadline(&self, pending: Pending<R::Value>) -> Outcome<R::Value> {
        self.settings
            .clock
            .timeout(self.stale_after(), outcome_of(pending))
            .await
            .unwrap_or_else(|_| {
                Err(Arc::new(Error::Deadline {
                    seconds: self.settings.deadline.as_secs(),
                    waiting_on: None,
                }))
            })
    }

    /// Joins the attempt in flight or starts one.
    fn start(self: &Arc<Self>, trigger: Trigger) -> Started<R::Value> {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Started::NoRuntime;
        };
        let now = self.settings.clock.now();
        let mut slot = lock(&self.inflight);
        match &*slot {
            Some(s) if now.duration_since(s.started).unwrap_or_default() < self.stale_after() => {
                return Started::Pending(s.pending.clone());
            }
            Some(s) => tracing::warn!(
                what = self.settings.what,
                attempt = s.attempt,
                "the refresh in flight is past its deadline (its runtime is no longer driven); starting another"
            ),
            None => {}
        }
        let recorded = *self.recorded.borrow();
        match trigger {
            Trigger::Caller { seen } if seen != recorded => {
                if let Some(outcome) = self.settled(now) {
                    return Started::Settled(outcome);
                }
            }
            // A refresh recorded between the caller's look and now: nothing to do.
            Trigger::Refresh
                if self
                    .read()
                    .value
                    .as_ref()
                    .is_some_and(|c| c.phase(now) == Phase::Fresh) =>
            {
                return Started::Nothing;
            }
            _ => {}
        }
        let attempt = slot.as_ref().map_or(recorded, |s| s.attempt.max(recorded)) + 1;
        let (done, pending) = watch::channel(None);
        *slot = Some(Inflight {
            attempt,
            started: now,
            pending: pending.clone(),
        });
        drop(slot);
        let clear = ClearInflight {
            core: self.clone(),
            attempt,
        };
        runtime.spawn(async move {
            let core = clear.core.clone();
            let outcome = core.attempt().await;
            // Free the slot before announcing, so a caller woken by the outcome that finds the
            // value stale can start the next attempt.
            drop(clear);
            done.send_replace(Some(outcome));
        });
        Started::Pending(pending)
    }

    /// What an attempt recorded since the caller looked, if it settles the caller's question.
    fn settled(&self, now: SystemTime) -> Option<Outcome<R::Value>> {
        let snap = self.read();
        match (&snap.value, &snap.failure) {
            (Some(c), _) if now + MANDATORY_WINDOW < c.expires_at => Some(Ok(c.value.clone())),
            (Some(c), Some(_)) if now + MIN_LEFT_WHEN_SERVED < c.expires_at => {
                Some(Ok(c.value.clone()))
            }
            (_, Some(f)) => Some(Err(f.error.clone())),
            _ => None,
        }
    }

    async fn attempt(&self) -> Outcome<R::Value> {
        let deadline = self.settings.deadline;
        let ends = self.settings.clock.now() + deadline;
        let waiting_on = crate::retry::WaitingOn::default();
        let result = self
            .settings
            .clock
            .timeout(
                deadline,
                crate::retry::within_attempt(ends, waiting_on.clone(), self.resolver.resolve()),
            )
            .await
            .unwrap_or_else(|_| {
                Err(Error::Deadline {
                    seconds: deadline.as_secs(),
                    waiting_on: crate::retry::waited_on(&waiting_on),
                })
            });
        self.record(result)
    }

    /// Without a runtime nothing can be spawned or timed: the caller runs the attempt.
    async fn attempt_inline(&self) -> Outcome<R::Value> {
        let result = self.resolver.resolve().await;
        self.record(result)
    }

    fn record(&self, result: Result<Resolved<R::Value>, Error>) -> Outcome<R::Value> {
        let s = &self.settings;
        let now = s.clock.now();
        let writing = lock(&self.writer);
        let mut snap = Snapshot::clone(&self.snapshot.load());
        let error = match result {
            Ok(new) if now + MANDATORY_WINDOW < new.expires_at => {
                snap.value = Some(Cached::jittered(
                    new.value.clone(),
                    now,
                    new.expires_at,
                    s.rule,
                    s.jitter.fraction(),
                ));
                snap.failure = None;
                self.snapshot.store(Arc::new(snap));
                drop(writing);
                self.recorded.send_modify(|n| *n += 1);
                return Ok(new.value);
            }
            Ok(stale) => {
                let expires_at = unix_seconds(stale.expires_at);
                let local_now = unix_seconds(now);
                tracing::error!(
                    what = s.what,
                    expires_at,
                    local_now,
                    issuer_now = stale.issuer_now.map(unix_seconds),
                    "the new value is already inside its last minute by this machine's clock: the clock is ahead of the issuer's"
                );
                // Usable until it expires if nothing better is cached; never past its expiry.
                if now < stale.expires_at
                    && snap
                        .value
                        .as_ref()
                        .is_none_or(|c| c.expires_at < stale.expires_at)
                {
                    snap.value = Some(Cached {
                        value: stale.value,
                        refresh_at: now,
                        expires_at: stale.expires_at,
                    });
                }
                Error::Stale {
                    expires_at,
                    local_now,
                    ahead_by_at_least: (local_now + MANDATORY_WINDOW.as_secs())
                        .saturating_sub(expires_at),
                }
            }
            Err(error) => error,
        };
        self.failures.fetch_add(1, Ordering::Relaxed);
        let error = Arc::new(error);
        let consecutive = snap.failure.as_ref().map_or(1, |f| f.consecutive + 1);
        let serving = snap
            .value
            .as_ref()
            .filter(|c| now < c.expires_at)
            .map(|c| (c.value.clone(), c.expires_at));
        let valid_left = serving
            .as_ref()
            .and_then(|(_, at)| at.duration_since(now).ok());
        let wait = failure_backoff(consecutive, valid_left, &s.jitter);
        let retry_in_ms = wait.as_millis() as u64;
        // The failed attempt's callers get the last good value only while it has a second left:
        // a caller that joined in the value's last second would otherwise get it about to expire.
        let served = serving.filter(|(_, expires_at)| now + MIN_LEFT_WHEN_SERVED < *expires_at);
        let served_left = served
            .as_ref()
            .and_then(|(_, at)| at.duration_since(now).ok());
        match (&served_left, error.is_recoverable()) {
            // Expected off Azure, where a provider chain goes on to its next provider.
            (None, _) if error.is_not_detected() => {
                tracing::info!(what = s.what, error = %crate::error::DisplayChain(&*error), retry_in_ms, "no managed identity detected")
            }
            (Some(left), true) => {
                tracing::warn!(what = s.what, error = %crate::error::DisplayChain(&*error), retry_in_ms, valid_for_s = left.as_secs(), "refresh failed; serving the last good value until it expires")
            }
            (Some(left), false) => {
                tracing::error!(what = s.what, error = %crate::error::DisplayChain(&*error), retry_in_ms, valid_for_s = left.as_secs(), "refresh failed (not transient); serving the last good value until it expires")
            }
            (None, _) => {
                tracing::error!(what = s.what, error = %crate::error::DisplayChain(&*error), retry_in_ms, "refresh failed; nothing valid to serve")
            }
        }
        snap.failure = Some(Failure {
            error: error.clone(),
            retry_not_before: now + wait,
            consecutive,
        });
        self.snapshot.store(Arc::new(snap));
        drop(writing);
        self.recorded.send_modify(|n| *n += 1);
        served.map(|(v, _)| v).ok_or(error)
    }

    /// Starts the background task unless it is running (first use, or its runtime ended).
    fn ensure_background(self: &Arc<Self>) {
        let mut task = lock(&self.background);
        if task.as_ref().is_some_and(|t| !t.is_finished()) {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            *task =
                Some(runtime.spawn(background(Arc::downgrade(self), self.recorded.subscribe())));
        }
    }

    /// Whether the background task should refresh now, and when to look next.
    fn schedule(&self, now: SystemTime) -> (bool, Option<SystemTime>) {
        let snap = self.read();
        let Some(value) = &snap.value else {
            // Nothing to keep fresh: callers drive the first load and its retries.
            return (false, None);
        };
        let due = value.phase(now) != Phase::Fresh && !snap.in_backoff(now);
        let next = snap.failure.as_ref().map_or(value.refresh_at, |f| {
            f.retry_not_before.max(value.refresh_at)
        });
        (due, Some(next))
    }
}

/// Refreshes at the refresh point; wakes whenever an attempt is recorded (a first success, a
/// failure's backoff) and at least every [`MAX_SLEEP`] to re-read the wall clock.
async fn background<R: Resolve>(core: Weak<Core<R>>, mut recorded: watch::Receiver<u64>) {
    loop {
        let Some(strong) = core.upgrade() else { return };
        let now = strong.settings.clock.now();
        let (due, next) = strong.schedule(now);
        let sleep = if due {
            strong.start(Trigger::Refresh);
            MAX_SLEEP
        } else {
            next.and_then(|at| at.duration_since(now).ok())
                .unwrap_or(MAX_SLEEP)
                .clamp(Duration::from_millis(100), MAX_SLEEP)
        };
        let timer = strong.settings.clock.sleep(sleep);
        drop(strong);
        tokio::select! {
            _ = timer => {}
            changed = recorded.changed() => if changed.is_err() { return },
        }
        // An injected sleep may complete without ever waiting: never hold the runtime's thread.
        tokio::task::yield_now().await;
    }
}

/// How long to wait after `consecutive` failures: jittered exponential from 1 s, at most 5 min,
/// and never more than a quarter of what is left of the current value (so retries happen
/// before it expires); at most 1 min while there is nothing valid.
fn failure_backoff(consecutive: u32, valid_left: Option<Duration>, jitter: &Jitter) -> Duration {
    let b = Backoff {
        initial: Duration::from_secs(1),
        max: Duration::from_secs(300),
        max_retries: u32::MAX,
        jitter: 0.5,
    };
    let d = b.delay_with(consecutive, jitter);
    match valid_left {
        Some(left) => d.min((left / 4).max(Duration::from_secs(1))),
        None => d.min(Duration::from_secs(60)),
    }
}

#[cfg(test)]
mod tests;
