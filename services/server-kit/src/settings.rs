//! Settings declared with clap (`#[arg(long, env = "NAME")]`), read from environment variables:
//! from the process (with the command line, so `--help` lists every variable), or from any lookup
//! (a test's map, the in-process local stack). Either way clap parses and validates the values,
//! and an invalid one is reported by its variable's name.

use clap::error::{ContextKind, ContextValue, ErrorKind};
use std::collections::{HashMap, HashSet};
use std::ffi::OsString;

/// A setting clap refused, named by its environment variable.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// A value that does not parse or is out of range.
    #[error("{name}='{}' is invalid: {reason}", value.escape_debug())]
    Invalid {
        /// The environment variable, or the flag when the value came from the command line.
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

/// `T` from the process environment and the command line (a flag wins over its variable).
/// `--help` and `--version` print and exit, as clap does; the help names each variable but never
/// shows a value.
pub fn from_process<T: clap::Parser>() -> Result<T, SettingsError> {
    parse(std::env::args_os().skip(1).collect(), |k| {
        std::env::var(k).ok()
    })
}

/// `T` from the environment variables `get` returns, as if they were the process's (which are
/// not read at all). Values are trimmed; empty ones count as unset.
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
    parse(Vec::new(), get)
}

/// The variables (through `get`) as `--long=value` arguments, then `cli`; parsed by a command
/// that reads no environment of its own.
fn parse<T: clap::Parser>(
    cli: Vec<OsString>,
    get: impl Fn(&str) -> Option<String>,
) -> Result<T, SettingsError> {
    let declared = T::command();
    let mut args = vec![OsString::from(declared.get_name())];
    let mut variables = HashMap::new();
    for arg in declared.get_arguments() {
        let (Some(env), Some(long)) = (arg.get_env(), arg.get_long()) else {
            continue;
        };
        let env = env.to_string_lossy().into_owned();
        if let Some(value) = get(&env)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
        {
            // One argument: a value that looks like a flag stays a value.
            args.push(format!("--{long}={value}").into());
        }
        variables.insert(long.to_string(), env);
    }
    let on_command_line: HashSet<String> = cli
        .iter()
        .filter_map(|a| a.to_str()?.strip_prefix("--"))
        .map(|a| a.split('=').next().unwrap_or_default().to_string())
        .collect();
    args.extend(cli);
    let parser = declared
        .clone()
        .args_override_self(true)
        .mut_args(|a| a.env(None::<&'static str>));
    let matches = match parser.try_get_matches_from(&args) {
        Ok(m) => m,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            // The help with each argument's variable named, and no value shown.
            let help = declared.mut_args(|a| a.hide_env_values(true));
            match help.try_get_matches_from(&args) {
                Err(e) => e.exit(),
                Ok(_) => e.exit(),
            }
        }
        Err(e) => return Err(named(e, &variables, &on_command_line)),
    };
    T::from_arg_matches(&matches).map_err(|e| named(e, &variables, &on_command_line))
}

/// clap's error, with the flag replaced by its environment variable when the value came from
/// there.
fn named(
    e: clap::Error,
    variables: &HashMap<String, String>,
    on_command_line: &HashSet<String>,
) -> SettingsError {
    let text = |kind| match e.get(kind) {
        Some(ContextValue::String(s)) => Some(s.clone()),
        _ => None,
    };
    let (Some(flag), Some(value)) = (
        text(ContextKind::InvalidArg),
        text(ContextKind::InvalidValue),
    ) else {
        // Without the usage text: one line.
        let rendered = e.render().to_string();
        let first = rendered.lines().next().unwrap_or_default();
        return SettingsError::Other(first.trim_start_matches("error: ").to_string());
    };
    // "--port <PORT>" → "port".
    let long = flag
        .trim_start_matches('-')
        .split([' ', '='])
        .next()
        .unwrap_or_default()
        .to_string();
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
    let name = match variables.get(&long) {
        Some(variable) if !on_command_line.contains(&long) => variable.clone(),
        _ => format!("--{long}"),
    };
    SettingsError::Invalid {
        name,
        value,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, clap::Parser)]
    #[command(name = "t")]
    struct Settings {
        #[arg(long, env = "SERVER_KIT_TEST_TENANT")]
        tenant: Option<String>,
        #[arg(long, env = "SERVER_KIT_TEST_PORT", default_value_t = 8080)]
        port: u16,
        #[arg(long, env = "SERVER_KIT_TEST_IDS", value_delimiter = ',')]
        ids: Vec<String>,
    }

    fn lookup(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    /// A lookup is the whole environment: the process's own variables never fill it in.
    #[test]
    fn a_lookup_ignores_the_process_environment() {
        // SAFETY: no other test reads or writes these variables.
        unsafe { std::env::set_var("SERVER_KIT_TEST_TENANT", "from-the-shell") };
        let s: Settings = from_lookup(lookup(&[])).unwrap();
        unsafe { std::env::remove_var("SERVER_KIT_TEST_TENANT") };
        assert_eq!(s.tenant, None);
    }

    /// Empty values are unset and values are trimmed, as the services always read them: an
    /// envsubst'ed manifest leaves unset variables empty, an env file may end lines in CR.
    #[test]
    fn empty_is_unset_and_values_are_trimmed() {
        let s: Settings = from_lookup(lookup(&[
            ("SERVER_KIT_TEST_TENANT", ""),
            ("SERVER_KIT_TEST_PORT", " 9000\r"),
            ("SERVER_KIT_TEST_IDS", "a, b,,"),
        ]))
        .unwrap();
        assert_eq!(s.tenant, None);
        assert_eq!(s.port, 9000);
        // A list is split as clap splits it; each service cleans its items.
        assert_eq!(s.ids, ["a", " b", "", ""]);
    }

    /// A bad value is named by its variable, quoted so a newline cannot split the log line.
    #[test]
    fn a_bad_value_is_named_by_its_variable_and_escaped() {
        let e = from_lookup::<Settings>(lookup(&[("SERVER_KIT_TEST_PORT", "80\nx")])).unwrap_err();
        assert_eq!(
            e.to_string(),
            r"SERVER_KIT_TEST_PORT='80\nx' is invalid: invalid digit found in string"
        );
        // A value that looks like a flag is a value, not another option.
        let e =
            from_lookup::<Settings>(lookup(&[("SERVER_KIT_TEST_PORT", "--ids=z")])).unwrap_err();
        assert!(e.to_string().starts_with("SERVER_KIT_TEST_PORT="), "{e}");
    }

    /// On the command line, a flag wins over its variable, and a bad flag is named as the flag.
    #[test]
    fn the_command_line_wins_and_is_named_as_such() {
        let s: Settings = parse(
            vec!["--port=7000".into()],
            lookup(&[("SERVER_KIT_TEST_PORT", "9000")]),
        )
        .unwrap();
        assert_eq!(s.port, 7000);
        let e = parse::<Settings>(vec!["--port=x".into()], lookup(&[])).unwrap_err();
        assert!(e.to_string().starts_with("--port='x' is invalid"), "{e}");
    }
}
