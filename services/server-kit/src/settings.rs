//! Settings declared with clap (`#[arg(long, env = "NAME")]`), read from environment variables:
//! from the process (with the command line, so `--help` lists every variable), or from any lookup
//! (a test's map, the in-process local stack). Either way clap parses and validates the values,
//! and an invalid one is reported by its variable's name.

use clap::error::{ContextKind, ContextValue, ErrorKind};
use std::collections::HashMap;
use std::ffi::OsString;

/// A setting clap refused, named by its environment variable.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// A value that does not parse or is out of range.
    #[error("{name}='{value}' is invalid: {reason}")]
    Invalid {
        /// The environment variable (or the flag, when it has none).
        name: String,
        /// The value given.
        value: String,
        /// Why.
        reason: String,
    },
    /// Anything else clap reports (an unknown flag on the command line), in its words.
    #[error("{0}")]
    Other(String),
}

/// `T` from the process environment and the command line. `--help` and `--version` print and
/// exit, as clap does.
pub fn from_process<T: clap::Parser>() -> Result<T, SettingsError> {
    T::try_parse().map_err(|e| match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => e.exit(),
        _ => named::<T>(e),
    })
}

/// `T` from the environment variables `get` returns (empty values count as unset), parsed and
/// validated by clap as if they were the process's.
///
/// ```
/// #[derive(Debug, clap::Parser)]
/// struct Settings {
///     #[arg(long, env = "PORT", default_value_t = 8080)]
///     port: u16,
/// }
/// let s: Settings = server_kit::settings::from_lookup(|k| (k == "PORT").then(|| "9000".into())).unwrap();
/// assert_eq!(s.port, 9000);
/// let e = server_kit::settings::from_lookup::<Settings>(|k| (k == "PORT").then(|| "x".into()));
/// assert!(e.unwrap_err().to_string().starts_with("PORT='x' is invalid"));
/// ```
pub fn from_lookup<T: clap::Parser>(
    get: impl Fn(&str) -> Option<String>,
) -> Result<T, SettingsError> {
    let command = T::command();
    let mut args = vec![OsString::from(command.get_name())];
    for arg in command.get_arguments() {
        let (Some(env), Some(long)) = (arg.get_env(), arg.get_long()) else {
            continue;
        };
        if let Some(value) = get(&env.to_string_lossy()).filter(|v| !v.trim().is_empty()) {
            args.push(format!("--{long}={}", value.trim()).into());
        }
    }
    T::try_parse_from(args).map_err(named::<T>)
}

/// clap's error, with the flag replaced by its environment variable.
fn named<T: clap::Parser>(e: clap::Error) -> SettingsError {
    let text = |kind| match e.get(kind) {
        Some(ContextValue::String(s)) => Some(s.clone()),
        _ => None,
    };
    let (Some(flag), Some(value)) = (
        text(ContextKind::InvalidArg),
        text(ContextKind::InvalidValue),
    ) else {
        return SettingsError::Other(e.render().to_string().trim().to_string());
    };
    // "--port <PORT>" → "port" → its variable.
    let long = flag
        .trim_start_matches('-')
        .split([' ', '='])
        .next()
        .unwrap_or_default()
        .to_string();
    let variables: HashMap<String, String> = T::command()
        .get_arguments()
        .filter_map(|a| {
            Some((
                a.get_long()?.to_string(),
                a.get_env()?.to_string_lossy().into_owned(),
            ))
        })
        .collect();
    let reason = match e.kind() {
        ErrorKind::InvalidValue => match e.get(ContextKind::ValidValue) {
            Some(ContextValue::Strings(valid)) => format!("must be one of {}", valid.join(", ")),
            _ => "not an accepted value".into(),
        },
        _ => std::error::Error::source(&e).map_or_else(
            || "not an accepted value".to_string(),
            |cause| cause.to_string(),
        ),
    };
    SettingsError::Invalid {
        name: variables.get(&long).cloned().unwrap_or(flag),
        value,
        reason,
    }
}
