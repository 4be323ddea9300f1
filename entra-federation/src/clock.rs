//! Time and sleep, injected as aws-sdk-rust does it: an `aws-smithy-async` time source for "now"
//! and an `AsyncSleep` for every wait (retry backoffs, deadlines, refresh timers), so that a
//! user's tests control both with the SDK's own test utilities (`ManualTimeSource`,
//! `tick_advance_time_and_sleep`, …). The defaults are the system clock and Tokio's timers.

use aws_smithy_async::future::timeout::{TimedOutError, Timeout};
use aws_smithy_async::rt::sleep::{AsyncSleep, SharedAsyncSleep, Sleep, TokioSleep};
use aws_smithy_async::time::SharedTimeSource;
#[cfg(test)]
use aws_smithy_async::time::TimeSource;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// "Now" and sleeping, for every expiry decision and every wait in the library.
#[derive(Clone, Debug)]
pub(crate) struct Clock(Arc<Inner>);

#[derive(Debug, Clone)]
struct Inner {
    time: Time,
    sleep: SharedAsyncSleep,
}

#[derive(Debug, Clone)]
enum Time {
    /// The operating system's clock, read directly (the cached path's coarse read needs it).
    System,
    /// A caller's time source.
    Source(SharedTimeSource),
}

impl Clock {
    /// The operating system's clock and Tokio's timers (production).
    pub(crate) fn system() -> Self {
        Self::new(None, None)
    }

    /// The given time source and sleep, each defaulting to the system's.
    pub(crate) fn new(time: Option<SharedTimeSource>, sleep: Option<SharedAsyncSleep>) -> Self {
        Self(Arc::new(Inner {
            time: time.map_or(Time::System, Time::Source),
            sleep: sleep.unwrap_or_else(|| SharedAsyncSleep::new(TokioSleep::new())),
        }))
    }

    /// This clock with "now" from `time`.
    pub(crate) fn with_time_source(&self, time: SharedTimeSource) -> Self {
        Self(Arc::new(Inner {
            time: Time::Source(time),
            sleep: self.0.sleep.clone(),
        }))
    }

    /// This clock sleeping on `sleep`.
    pub(crate) fn with_sleep(&self, sleep: SharedAsyncSleep) -> Self {
        Self(Arc::new(Inner {
            time: self.0.time.clone(),
            sleep,
        }))
    }

    /// A wall clock that advances with Tokio's clock (`tokio::time::pause` and `advance`), for
    /// the crate's unit tests. Must be created inside a Tokio runtime.
    #[cfg(test)]
    pub(crate) fn tokio_driven() -> Self {
        Self::from_time_source(TokioDriven {
            start_wall: SystemTime::now(),
            start_instant: tokio::time::Instant::now(),
        })
    }

    /// "Now" from `source`, sleeping on Tokio's timers.
    #[cfg(test)]
    pub(crate) fn from_time_source(source: impl TimeSource + 'static) -> Self {
        Self::new(Some(SharedTimeSource::new(source)), None)
    }

    /// The current time.
    pub(crate) fn now(&self) -> SystemTime {
        match &self.0.time {
            Time::System => SystemTime::now(),
            Time::Source(source) => source.now(),
        }
    }

    /// The current time, read cheaply where the system allows, lagging behind [`Clock::now`] by
    /// at most a scheduler tick (a few milliseconds): for decisions that a few milliseconds cannot
    /// change, such as "is the cached value still far from its refresh point". On Linux it reads
    /// `CLOCK_REALTIME_COARSE` (about 5 ns instead of about 25 ns for the precise clock).
    pub(crate) fn now_coarse(&self) -> SystemTime {
        match &self.0.time {
            #[cfg(target_os = "linux")]
            Time::System => coarse_system_time().unwrap_or_else(SystemTime::now),
            _ => self.now(),
        }
    }

    /// Seconds since the Unix epoch.
    #[cfg(test)]
    pub(crate) fn unix_seconds(&self) -> u64 {
        unix_seconds(self.now())
    }

    /// Sleeps for `duration` on the injected sleep.
    pub(crate) fn sleep(&self, duration: Duration) -> Sleep {
        self.0.sleep.sleep(duration)
    }

    /// `future`, unless `duration` passes first on the injected sleep.
    pub(crate) async fn timeout<F: Future>(
        &self,
        duration: Duration,
        future: F,
    ) -> Result<F::Output, TimedOutError> {
        Timeout::new(future, self.sleep(duration)).await
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::system()
    }
}

/// `start_wall + (tokio::Instant::now() - start_instant)`.
#[cfg(test)]
#[derive(Debug)]
struct TokioDriven {
    start_wall: SystemTime,
    start_instant: tokio::time::Instant,
}

#[cfg(test)]
impl TimeSource for TokioDriven {
    fn now(&self) -> SystemTime {
        self.start_wall + self.start_instant.elapsed()
    }
}

#[cfg(target_os = "linux")]
fn coarse_system_time() -> Option<SystemTime> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the call has no other preconditions.
    if unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut ts) } != 0 {
        return None;
    }
    let secs = u64::try_from(ts.tv_sec).ok()?;
    let nanos = u32::try_from(ts.tv_nsec).ok()?;
    SystemTime::UNIX_EPOCH.checked_add(Duration::new(secs, nanos))
}

/// The longest lifetime the library believes of a token: Entra access tokens live at most about
/// 28 hours (continuous access evaluation), managed-identity tokens about 24. A longer or absurd
/// claim (`expires_in` of 2^64-1, an `exp` in the year 300 billion) is clamped to it, so expiry
/// arithmetic never overflows and such a token is refreshed within two days.
pub const MAX_LIFETIME: Duration = Duration::from_secs(48 * 3600);

/// Seconds since the Unix epoch (0 for times before it).
pub fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The `SystemTime` for a Unix timestamp in seconds (saturating: never an overflow panic).
pub fn from_unix_seconds(secs: u64) -> SystemTime {
    // Year 9999: beyond it `SystemTime` may not be representable.
    const MAX_UNIX_SECONDS: u64 = 253_402_300_799;
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs.min(MAX_UNIX_SECONDS))
}

/// The expiry of a token that lives `secs` from `now`, at most [`MAX_LIFETIME`].
pub fn expiry_in(now: SystemTime, secs: u64) -> SystemTime {
    now + Duration::from_secs(secs).min(MAX_LIFETIME)
}

/// The expiry of a token whose `exp` (or `expires_on`) is `secs`, at most [`MAX_LIFETIME`]
/// after `now`.
pub fn expiry_at(now: SystemTime, secs: u64) -> SystemTime {
    from_unix_seconds(secs).min(now + MAX_LIFETIME)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The coarse clock only lags (by a tick; the bound here allows for preemption between the
    /// two reads on a loaded machine).
    #[test]
    fn the_coarse_clock_lags_by_at_most_a_tick() {
        let clock = Clock::system();
        for _ in 0..1000 {
            let coarse = clock.now_coarse();
            let precise = clock.now();
            let lag = precise.duration_since(coarse).unwrap_or_default();
            assert!(lag < Duration::from_secs(1), "{lag:?}");
        }
    }
}
