//! Jittered exponential backoff and `Retry-After` parsing, shared by every hop.

use std::fmt;
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
