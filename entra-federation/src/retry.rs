//! The one retry loop every hop uses (the managed-identity endpoints, Entra, STS), with jittered
//! exponential backoff and `Retry-After`, sleeping on the injected clock.

use crate::clock::Clock;
use crate::error::DisplayChain;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// Where jitter's random fractions come from: each thread's generator (the default), or one
/// generator from a seed, so that a test's refresh points and retry delays are reproducible
/// (see [`crate::EntraCredentialsProviderBuilder::jitter_seed`]).
#[derive(Clone, Default)]
pub struct Jitter(Option<Arc<Mutex<fastrand::Rng>>>);

impl Jitter {
    /// A generator seeded with `seed`.
    pub fn seeded(seed: u64) -> Self {
        Self(Some(Arc::new(Mutex::new(fastrand::Rng::with_seed(seed)))))
    }

    /// A random fraction in `[0, 1)`.
    pub fn fraction(&self) -> f64 {
        match &self.0 {
            None => fastrand::f64(),
            Some(rng) => rng.lock().unwrap_or_else(|p| p.into_inner()).f64(),
        }
    }
}

impl fmt::Debug for Jitter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Jitter(seeded)"
        } else {
            "Jitter(thread)"
        })
    }
}

/// Exponential backoff: attempt `n` (1-based retry number) waits
/// `min(initial * 2^(n-1), max)` scaled by a random factor in `[1 - jitter, 1]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// Delay before the first retry.
    pub initial: Duration,
    /// Upper bound for one delay.
    pub max: Duration,
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// Fraction of the delay that is randomised away (0 = none, 1 = full jitter).
    pub jitter: f64,
}

impl Backoff {
    /// STS and Entra: 3 retries, 1 s → 20 s, half jitter (the AWS SDK's standard envelope).
    pub const fn standard() -> Self {
        Self {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(20),
            max_retries: 3,
            jitter: 0.5,
        }
    }

    /// Azure VM IMDS: 5 retries, 2 s base up to 60 s (the documented ExponentialBackoff).
    pub const fn imds() -> Self {
        Self {
            initial: Duration::from_secs(2),
            max: Duration::from_secs(60),
            max_retries: 5,
            jitter: 0.5,
        }
    }

    /// The delay before retry number `retry` (1-based).
    #[cfg(test)]
    pub fn delay(&self, retry: u32) -> Duration {
        self.delay_with(retry, &Jitter::default())
    }

    /// The delay before retry number `retry` (1-based), jittered from `jitter`.
    pub fn delay_with(&self, retry: u32, jitter: &Jitter) -> Duration {
        let exp = 2f64.powi(retry.saturating_sub(1).min(30) as i32);
        let base = (self.initial.as_secs_f64() * exp).min(self.max.as_secs_f64());
        let factor = 1.0 - self.jitter.clamp(0.0, 1.0) * jitter.fraction();
        Duration::from_secs_f64(base * factor)
    }
}

/// One failed call, as the hop judged it.
pub(crate) struct Failure<E> {
    /// The error returned if no retry follows.
    pub error: E,
    /// Whether the service documents this failure as transient.
    pub transient: bool,
    /// The service's `Retry-After`, if any.
    pub retry_after: Option<Duration>,
    /// Retried beyond the retry count while the hop's window lasts (IMDS's 410 "updating").
    pub keeps_trying: bool,
}

impl<E> Failure<E> {
    /// A failure that is retried (if `transient`) as the backoff says.
    pub(crate) fn new(error: E, transient: bool) -> Self {
        Self {
            error,
            transient,
            retry_after: None,
            keeps_trying: false,
        }
    }
}

/// How one hop retries.
#[derive(Debug, Clone)]
pub(crate) struct RetryPolicy {
    /// The hop, for the logs ("Entra", "STS", "IMDS", …).
    pub hop: &'static str,
    /// Delays and the number of retries.
    pub backoff: Backoff,
    /// Where the delays' random fractions come from.
    pub jitter: Jitter,
    /// How long a failure marked `keeps_trying` is retried, counted from the first call.
    pub window: Option<Duration>,
}

/// The hop an attempt is waiting on, shared with whoever abandons the attempt at its deadline.
pub(crate) type WaitingOn = std::sync::Arc<std::sync::Mutex<Option<&'static str>>>;

/// The attempt a call belongs to.
#[derive(Clone)]
struct Attempt {
    /// When it is abandoned (the provider's attempt deadline).
    ends: SystemTime,
    /// The hop whose call (or retry) it is waiting on.
    waiting_on: WaitingOn,
}

tokio::task_local! {
    static ATTEMPT: Attempt;
}

/// Runs `work` as one attempt that is abandoned at `ends`: its hops' retries then stop short of
/// that time and return their own error, so that the caller learns which hop failed and how,
/// rather than only that time ran out. `waiting_on` names the hop in progress, for the error of
/// an attempt abandoned all the same (a hop that hangs in its last call).
pub(crate) async fn within_attempt<F: Future>(
    ends: SystemTime,
    waiting_on: WaitingOn,
    work: F,
) -> F::Output {
    ATTEMPT.scope(Attempt { ends, waiting_on }, work).await
}

/// The hop `waiting_on` names.
pub(crate) fn waited_on(waiting_on: &WaitingOn) -> Option<&'static str> {
    *waiting_on.lock().unwrap_or_else(|p| p.into_inner())
}

/// What a retry needs after its delay, at least, to be worth starting before the attempt ends:
/// an identity-endpoint request's timeout.
const RETRY_ROOM: Duration = Duration::from_secs(10);

/// Calls `call` until it succeeds, fails for good, or the retries are spent. Each delay is the
/// larger of the backoff and `Retry-After` (`Retry-After: 0`, or a past date, must not turn the
/// retries into a burst), slept on `clock`. Inside [`within_attempt`], a retry that would start
/// too late to finish before the attempt ends is not made: the last failure is returned.
pub(crate) async fn with_retries<T, E, F, Fut>(
    policy: &RetryPolicy,
    clock: &Clock,
    mut call: F,
) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Failure<E>>>,
    E: std::error::Error + 'static,
{
    let started = clock.now();
    let mut retry: u32 = 0;
    let waiting = |hop: Option<&'static str>| {
        let _ = ATTEMPT.try_with(|a| *a.waiting_on.lock().unwrap_or_else(|p| p.into_inner()) = hop);
    };
    waiting(Some(policy.hop));
    loop {
        let failure = match call().await {
            Ok(value) => {
                waiting(None);
                return Ok(value);
            }
            Err(failure) => failure,
        };
        retry += 1;
        let within_window = failure.keeps_trying
            && policy
                .window
                .is_some_and(|w| clock.now().duration_since(started).unwrap_or_default() < w);
        if !failure.transient || (retry > policy.backoff.max_retries && !within_window) {
            tracing::warn!(hop = policy.hop, attempts = retry, error = %DisplayChain(&failure.error), "call failed");
            return Err(failure.error);
        }
        let backoff = policy.backoff.delay_with(retry, &policy.jitter);
        let delay = failure
            .retry_after
            .map_or(backoff, |after| after.max(backoff));
        if let Ok(ends) = ATTEMPT.try_with(|a| a.ends)
            && clock.now() + delay + RETRY_ROOM > ends
        {
            tracing::warn!(hop = policy.hop, attempts = retry, error = %DisplayChain(&failure.error), "call failed; no time left in this attempt for another try");
            return Err(failure.error);
        }
        tracing::warn!(hop = policy.hop, retry, delay_ms = delay.as_millis() as u64, error = %DisplayChain(&failure.error), "call failed; retrying");
        clock.sleep(delay).await;
    }
}

/// Parses a `Retry-After` header value: delta-seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when =
        aws_smithy_types::DateTime::from_str(value, aws_smithy_types::date_time::Format::HttpDate)
            .ok()?;
    let when = SystemTime::try_from(when).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

/// `Retry-After` from a response, capped at `cap`.
pub fn retry_after(
    headers: &reqwest::header::HeaderMap,
    now: SystemTime,
    cap: Duration,
) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, now))
        .map(|d| d.min(cap))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_reproduces_the_fractions() {
        let (a, b) = (Jitter::seeded(7), Jitter::seeded(7));
        assert_eq!(a.fraction(), b.fraction());
        assert!((0.0..1.0).contains(&Jitter::default().fraction()));
    }

    #[test]
    fn delays_grow_exponentially_within_jitter_and_cap() {
        let b = Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(5),
            max_retries: 9,
            jitter: 0.5,
        };
        for _ in 0..100 {
            let d1 = b.delay(1).as_secs_f64();
            assert!((0.5..=1.0).contains(&d1), "{d1}");
            let d3 = b.delay(3).as_secs_f64();
            assert!((2.0..=4.0).contains(&d3), "{d3}");
            let d9 = b.delay(9).as_secs_f64();
            assert!((2.5..=5.0).contains(&d9), "{d9}");
        }
    }

    #[test]
    fn no_jitter_is_deterministic() {
        let b = Backoff {
            jitter: 0.0,
            ..Backoff::imds()
        };
        assert_eq!(b.delay(1), Duration::from_secs(2));
        assert_eq!(b.delay(2), Duration::from_secs(4));
        assert_eq!(b.delay(6), Duration::from_secs(60));
    }

    #[test]
    fn retry_after_seconds_and_http_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        // 2001-09-09T01:46:40Z is 1_000_000_000; ten seconds later:
        assert_eq!(
            parse_retry_after("Sun, 09 Sep 2001 01:46:50 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
