//! # token-refresher
//!
//! entra-federation for processes that are not Rust: Python, Node, Java or Go agents in the same
//! container group get the chain's credentials in one of three ways.
//!
//! - [`file_mode`]: the v1 web-identity token in `AWS_WEB_IDENTITY_TOKEN_FILE`, rewritten atomically
//!   at no more than half its lifetime (every AWS SDK reads it with `AWS_ROLE_ARN`);
//! - [`credential_process`]: the `credential_process` JSON for an AWS config profile, cached
//!   between invocations;
//! - [`serve`]: the container-credentials endpoint SDKs read from `AWS_CONTAINER_CREDENTIALS_FULL_URI`.

pub mod credential_process;
pub mod file_mode;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod serve;
pub mod token_file;

use std::time::SystemTime;

/// `YYYY-MM-DDTHH:MM:SSZ`, the form AWS SDKs parse for `Expiration`.
pub fn iso8601(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    aws_smithy_types::DateTime::from_secs(secs)
        .fmt(aws_smithy_types::date_time::Format::DateTime)
        .unwrap_or_default()
}

/// Parses what [`iso8601`] writes.
pub fn parse_iso8601(s: &str) -> Option<SystemTime> {
    let dt = aws_smithy_types::DateTime::from_str(s, aws_smithy_types::date_time::Format::DateTime)
        .ok()?;
    SystemTime::try_from(dt).ok()
}

/// The variables every mode reads (entra-federation's `from_env`), for `--help`.
pub const ENV_HELP: &str = "\
Configuration (entra-federation's from_env):
  TENANT_ID / AZURE_TENANT_ID          Entra tenant
  STS_APP_ID, STS_APP_URI              intermediary app (v1 tokens) and its identifier URI
  AZURE_AUTHORITY_HOST                 authority (default https://login.microsoftonline.com/)
  IDENTITY_ENDPOINT, IDENTITY_HEADER   Container Apps / App Service identity endpoint
  AZURE_FEDERATED_TOKEN_FILE           AKS workload identity token (else IMDS)
  AZURE_CLIENT_ID                      user-assigned managed identity (or the app on AKS)
  AWS_ROLE_ARN, AWS_REGION             role to assume and its region
  AWS_ROLE_SESSION_NAME                stable session name (default entra-federation)
  AWS_ENDPOINT_URL_STS                 STS endpoint override
  ENTRA_FEDERATION_CA_FILE             extra root CA (PEM)";
