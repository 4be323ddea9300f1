//! When cached values are refreshed.
//!
//! AWS credentials use the advisory windows of the cross-SDK "credential refresh behavior"
//! (lifetime ≤ 20 min → refresh 5 min ahead, < 90 min → 15 min, ≥ 90 min → 60 min). Entra tokens
//! and managed-identity assertions that live ≥ 2 h refresh at half-life (MSAL's rule), shorter ones
//! use the same windows. Inside the last [`MANDATORY_WINDOW`] callers wait for a refresh; before
//! that, refreshes run in the background and callers are served from cache.

use std::time::{Duration, SystemTime};

/// The last minute of a value's life: callers wait for a refresh instead of being served from cache.
pub const MANDATORY_WINDOW: Duration = Duration::from_secs(60);

/// How far ahead of expiry the advisory (background) refresh starts, for a value living
/// `lifetime`: 5 minutes for up to 20 minutes' life, 15 below 90 minutes, an hour beyond; half the
/// lifetime for a value too short-lived for its lead.
pub fn advisory_lead(lifetime: Duration) -> Duration {
    const MIN: u64 = 60;
    let lead = if lifetime <= Duration::from_secs(20 * MIN) {
        Duration::from_secs(5 * MIN)
    } else if lifetime < Duration::from_secs(90 * MIN) {
        Duration::from_secs(15 * MIN)
    } else {
        Duration::from_secs(60 * MIN)
    };
    // A value too short-lived for its lead (the refresh point would fall inside the mandatory
    // window, or before it was issued) refreshes at half-life instead.
    if lifetime <= lead + MANDATORY_WINDOW {
        lifetime / 2
    } else {
        lead
    }
}

/// Which refresh rule applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// AWS credentials: advisory windows by lifetime.
    Credentials,
    /// Entra tokens and assertions: half-life when living ≥ 2 h, else advisory windows.
    Token,
}

/// Where a cached value is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Serve it; nothing to do.
    Fresh,
    /// Serve it, and refresh in the background.
    Advisory,
    /// Within the last minute: refresh before serving (serve only if the refresh fails, or is slow,
    /// and it has a second left).
    Mandatory,
    /// Past expiry: never serve.
    Expired,
}

/// A value with its refresh point and expiry.
#[derive(Debug, Clone)]
pub struct Cached<T> {
    /// The value.
    pub value: T,
    /// When the advisory refresh starts.
    pub refresh_at: SystemTime,
    /// When it expires.
    pub expires_at: SystemTime,
}

impl<T> Cached<T> {
    /// Caches `value`, obtained at `now`, expiring at `expires_at`. The refresh point is jittered
    /// by up to a fifth of the lead so that a fleet of processes does not refresh in lockstep.
    #[cfg(test)]
    pub fn new(value: T, now: SystemTime, expires_at: SystemTime, rule: Rule) -> Self {
        Self::jittered(value, now, expires_at, rule, fastrand::f64())
    }

    /// As [`Cached::new`], with the jitter drawn by the caller: `fraction` in `[0, 1)` moves the
    /// refresh point up to a fifth of the lead earlier.
    pub fn jittered(
        value: T,
        now: SystemTime,
        expires_at: SystemTime,
        rule: Rule,
        fraction: f64,
    ) -> Self {
        let lifetime = expires_at.duration_since(now).unwrap_or(Duration::ZERO);
        let lead = match rule {
            Rule::Token if lifetime >= Duration::from_secs(2 * 3600) => lifetime / 2,
            _ => advisory_lead(lifetime),
        };
        let jitter = lead.mul_f64(0.2 * fraction.clamp(0.0, 1.0));
        let refresh_at = expires_at
            .checked_sub(lead + jitter)
            .unwrap_or(now)
            .max(now);
        Self {
            value,
            refresh_at,
            expires_at,
        }
    }

    /// The phase at `now`.
    pub fn phase(&self, now: SystemTime) -> Phase {
        if now >= self.expires_at {
            Phase::Expired
        } else if now + MANDATORY_WINDOW >= self.expires_at {
            Phase::Mandatory
        } else if now >= self.refresh_at {
            Phase::Advisory
        } else {
            Phase::Fresh
        }
    }

    /// Whether it may still be used as a fallback (valid beyond the next `margin`).
    pub fn valid_for(&self, now: SystemTime, margin: Duration) -> bool {
        now + margin < self.expires_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advisory_leads_follow_the_lifetime() {
        let min = |m: u64| Duration::from_secs(m * 60);
        assert_eq!(advisory_lead(min(15)), min(5));
        assert_eq!(advisory_lead(min(60)), min(15));
        assert_eq!(advisory_lead(min(120)), min(60));
    }

    const MIN: u64 = 60;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + secs)
    }

    #[test]
    fn tiers_match_the_refresh_behavior_spec() {
        let d = |m: u64| Duration::from_secs(m * MIN);
        assert_eq!(advisory_lead(d(20)), d(5));
        assert_eq!(advisory_lead(d(21)), d(15));
        assert_eq!(advisory_lead(d(89)), d(15));
        assert_eq!(advisory_lead(d(90)), d(60));
        assert_eq!(
            advisory_lead(d(6)),
            d(3),
            "short lifetimes refresh at half-life"
        );
    }

    #[test]
    fn one_hour_credentials_refresh_15_to_18_minutes_ahead() {
        for _ in 0..200 {
            let c = Cached::new((), at(0), at(3600), Rule::Credentials);
            let lead = at(3600).duration_since(c.refresh_at).unwrap();
            assert!(
                lead >= Duration::from_secs(15 * MIN) && lead <= Duration::from_secs(18 * MIN),
                "{lead:?}"
            );
        }
    }

    #[test]
    fn long_lived_tokens_refresh_at_half_life() {
        let c = Cached::new((), at(0), at(24 * 3600), Rule::Token);
        let lead = at(24 * 3600).duration_since(c.refresh_at).unwrap();
        assert!(
            lead >= Duration::from_secs(12 * 3600)
                && lead <= Duration::from_secs(12 * 3600 * 12 / 10)
        );
        // The same lifetime as credentials would use the 60-minute window.
        let c = Cached::new((), at(0), at(24 * 3600), Rule::Credentials);
        assert!(
            at(24 * 3600).duration_since(c.refresh_at).unwrap() <= Duration::from_secs(72 * MIN)
        );
    }

    #[test]
    fn phases_in_order() {
        let c = Cached {
            value: (),
            refresh_at: at(3000),
            expires_at: at(3600),
        };
        assert_eq!(c.phase(at(0)), Phase::Fresh);
        assert_eq!(c.phase(at(3000)), Phase::Advisory);
        assert_eq!(c.phase(at(3540)), Phase::Mandatory);
        assert_eq!(c.phase(at(3600)), Phase::Expired);
        assert!(c.valid_for(at(3500), Duration::from_secs(60)));
        assert!(!c.valid_for(at(3550), Duration::from_secs(60)));
    }
}
