//! The wall clock the library reads: the system clock, or one driven by tokio's clock so that
//! tests using `tokio::time::pause` move token expiries, STS expirations and refresh timers together.

use aws_smithy_async::time::{SharedTimeSource, TimeSource};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Source of "now" for expiry decisions.
///
/// ```
/// use entra_federation::Clock;
/// let clock = Clock::system();
/// assert!(clock.now() > std::time::SystemTime::UNIX_EPOCH);
/// ```
#[derive(Clone, Debug)]
pub struct Clock(Arc<ClockKind>);

#[derive(Debug)]
enum ClockKind {
    System,
    /// `start_wall + (tokio::Instant::now() - start_instant)`.
    Tokio {
        start_wall: SystemTime,
        start_instant: tokio::time::Instant,
    },
    /// An AWS SDK time source (e.g. `aws_smithy_async::test_util::ManualTimeSource`).
    Source(SharedTimeSource),
}

impl Clock {
    /// The operating system's clock (production).
    pub fn system() -> Self {
        Self(Arc::new(ClockKind::System))
    }

    /// A wall clock that advances with tokio's clock: with `tokio::time::pause()` and
    /// `advance`, every expiry in the library (and in a local cloud given the same clock) moves too.
    /// Must be created inside a tokio runtime.
    pub fn tokio_driven() -> Self {
        Self(Arc::new(ClockKind::Tokio {
            start_wall: SystemTime::now(),
            start_instant: tokio::time::Instant::now(),
        }))
    }

    /// "Now" read from an AWS SDK time source, for tests on a multi-threaded runtime, where
    /// tokio's clock cannot be paused. Sleeps still run on tokio's timers.
    ///
    /// ```
    /// use aws_smithy_async::time::StaticTimeSource;
    /// use entra_federation::Clock;
    /// use std::time::{Duration, SystemTime};
    /// let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    /// let clock = Clock::from_time_source(StaticTimeSource::new(at));
    /// assert_eq!(clock.now(), at);
    /// ```
    pub fn from_time_source(source: impl TimeSource + 'static) -> Self {
        Self(Arc::new(ClockKind::Source(SharedTimeSource::new(source))))
    }

    /// The current time.
    pub fn now(&self) -> SystemTime {
        match &*self.0 {
            ClockKind::System => SystemTime::now(),
            ClockKind::Source(source) => source.now(),
            ClockKind::Tokio {
                start_wall,
                start_instant,
            } => *start_wall + start_instant.elapsed(),
        }
    }

    /// The current time, read cheaply where the system allows, lagging behind [`Clock::now`] by
    /// at most a scheduler tick (a few milliseconds): for decisions that a few milliseconds cannot
    /// change, such as "is the cached value still far from its refresh point". On Linux it reads
    /// `CLOCK_REALTIME_COARSE` (about 5 ns instead of about 25 ns for the precise clock).
    pub fn now_coarse(&self) -> SystemTime {
        match &*self.0 {
            #[cfg(target_os = "linux")]
            ClockKind::System => coarse_system_time().unwrap_or_else(SystemTime::now),
            _ => self.now(),
        }
    }

    /// Seconds since the Unix epoch.
    pub fn unix_seconds(&self) -> u64 {
        unix_seconds(self.now())
    }

    /// Sleeps until `deadline` on this clock (tokio timers, so pausable). It sleeps at most 30 s
    /// at a time and reads the clock again: tokio's timers run on the monotonic clock, which
    /// stands still while a VM is paused and ignores clock steps, so one long sleep computed
    /// from the wall clock would wake late.
    pub async fn sleep_until(&self, deadline: SystemTime) {
        const STEP: Duration = Duration::from_secs(30);
        while let Ok(wait) = deadline.duration_since(self.now()) {
            if wait.is_zero() {
                break;
            }
            tokio::time::sleep(wait.min(STEP)).await;
        }
    }

    /// The same clock as an AWS SDK time source, for clients that must agree with it.
    pub fn time_source(&self) -> SharedTimeSource {
        SharedTimeSource::new(self.clone())
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::system()
    }
}

impl TimeSource for Clock {
    fn now(&self) -> SystemTime {
        Clock::now(self)
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
    use std::sync::Mutex;

    /// A wall clock `offset` ahead of tokio's.
    #[derive(Debug, Clone)]
    struct Stepped(Clock, Arc<Mutex<Duration>>);

    impl TimeSource for Stepped {
        fn now(&self) -> SystemTime {
            self.0.now() + *self.1.lock().unwrap()
        }
    }

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

    /// Issue 12 point 4 (file mode's waits): a clock step (or a paused VM) during a long sleep is
    /// noticed within 30 s of tokio's time, not after the rest of the sleep computed before it.
    #[tokio::test(start_paused = true)]
    async fn a_long_sleep_follows_a_wall_clock_step() {
        let wall = Stepped(Clock::tokio_driven(), Arc::default());
        let clock = Clock::from_time_source(wall.clone());
        let deadline = clock.now() + Duration::from_secs(3600);
        let started = tokio::time::Instant::now();
        let sleeper = tokio::spawn({
            let clock = clock.clone();
            async move { clock.sleep_until(deadline).await }
        });
        tokio::time::sleep(Duration::from_secs(60)).await;
        *wall.1.lock().unwrap() = Duration::from_secs(3600);
        sleeper.await.unwrap();
        assert!(
            started.elapsed() <= Duration::from_secs(90),
            "woke {:?} after it started",
            started.elapsed()
        );
    }
}
