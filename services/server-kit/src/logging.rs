//! Logs for the binaries: human-readable lines, filtered by `RUST_LOG`.
//!
//! The filter is `tracing_subscriber`'s `Targets` (`warn`, `info,entra_federation=debug`, …):
//! the per-target levels people use, without the regex engine that `EnvFilter`'s span-field
//! directives need (about 14 s of CPU in every release build).

use std::str::FromStr;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The filter `RUST_LOG` asks for, or `default` when it is unset; a value that does not parse is
/// named with the reason, and `default` is used.
pub fn filter_from(rust_log: Option<&str>, default: &str) -> Result<Targets, String> {
    let default_filter = || Targets::from_str(default).unwrap_or_default();
    match rust_log.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(default_filter()),
        Some(v) => Targets::from_str(v).map_err(|e| {
            format!("RUST_LOG='{v}' is not a list of [target=]level directives ({e}); logging at '{default}'")
        }),
    }
}

/// Installs the global subscriber: lines on stdout (or stderr when `to_stderr`: a
/// `credential_process` answers on stdout), at the levels `RUST_LOG` names, else at `default`.
pub fn init_logging(default: &str, to_stderr: bool) {
    let rust_log = std::env::var("RUST_LOG").ok();
    let (filter, problem) = match filter_from(rust_log.as_deref(), default) {
        Ok(f) => (f, None),
        Err(why) => (Targets::from_str(default).unwrap_or_default(), Some(why)),
    };
    let layer = tracing_subscriber::fmt::layer();
    let registry = tracing_subscriber::registry().with(filter);
    if to_stderr {
        registry.with(layer.with_writer(std::io::stderr)).init();
    } else {
        registry.with(layer).init();
    }
    if let Some(why) = problem {
        tracing::warn!("{why}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    #[test]
    fn per_target_levels_and_the_default() {
        let f = filter_from(Some("warn,entra_federation=debug"), "info").unwrap();
        assert!(f.would_enable("entra_federation::provider", &Level::DEBUG));
        assert!(!f.would_enable("weather_api", &Level::INFO));
        let d = filter_from(None, "info").unwrap();
        assert!(d.would_enable("weather_api", &Level::INFO));
        assert!(!d.would_enable("weather_api", &Level::DEBUG));
        let blank = filter_from(Some("  "), "warn").unwrap();
        assert!(!blank.would_enable("weather_api", &Level::INFO));
    }

    #[test]
    fn a_value_that_does_not_parse_is_named() {
        let e = filter_from(Some("entra_federation=loud"), "info").unwrap_err();
        assert!(
            e.starts_with("RUST_LOG='entra_federation=loud' is not"),
            "{e}"
        );
    }
}
