//! `credential_process`: prints credentials as the AWS config's `credential_process` expects.
//!
//! Each invocation is a new process, so credentials are cached between invocations in a 0600 file
//! keyed by tenant, role, session and STS endpoint; a file lock keeps concurrent invocations from
//! each calling STS. Cached credentials are reused while more than 15 minutes (or half their life,
//! for short-lived ones) remain: SDKs refresh 15 minutes ahead and must get fresher ones then.

use aws_credential_types::Credentials;
use entra_federation::token_file::write_atomically;
use entra_federation::{Clock, EntraCredentialsProvider};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// The `credential_process` output (version 1).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct ProcessCredentials {
    /// Always 1.
    pub version: u8,
    /// Access key id.
    pub access_key_id: String,
    /// Secret key.
    pub secret_access_key: String,
    /// Session token.
    pub session_token: String,
    /// ISO-8601 expiry.
    pub expiration: String,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CacheEntry {
    #[serde(flatten)]
    credentials: ProcessCredentials,
    obtained_at: String,
}

/// Why no credentials were printed.
#[derive(Debug, thiserror::Error)]
pub enum CredentialProcessError {
    /// The chain failed.
    #[error("{0}")]
    Chain(#[from] std::sync::Arc<entra_federation::Error>),
    /// The cache could not be used.
    #[error("credential cache {path}: {source}")]
    Cache {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// STS gave credentials without expiry or session token.
    #[error("the credentials lack an expiry or a session token")]
    Incomplete,
}

/// The default cache directory: `ENTRA_FEDERATION_CACHE_DIR`, `$XDG_CACHE_HOME/entra-federation`,
/// or `~/.cache/entra-federation`.
pub fn default_cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("ENTRA_FEDERATION_CACHE_DIR") {
        return d.into();
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(d).join("entra-federation");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    home.join(".cache").join("entra-federation")
}

/// Credentials for one invocation: from the cache when fresh enough, else from the chain (then cached).
pub async fn credentials(
    provider: &EntraCredentialsProvider,
    cache_dir: &Path,
    clock: &Clock,
) -> Result<ProcessCredentials, CredentialProcessError> {
    let cache_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CredentialProcessError::Cache { path, source }
    };
    create_private_dir(cache_dir).map_err(cache_err(cache_dir))?;
    let key = hex::encode(
        &aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            provider.session_key().as_bytes(),
        )
        .as_ref()[..12],
    );
    let cache = cache_dir.join(format!("credential-process-{key}.json"));
    let lock_path = cache_dir.join(format!("credential-process-{key}.lock"));
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(cache_err(&lock_path))?;
    lock.lock().map_err(cache_err(&lock_path))?;

    if let Some(cached) = read_fresh(&cache, clock.now()) {
        return Ok(cached);
    }
    let creds = provider.credentials().await?;
    let out = to_process(&creds)?;
    let entry = CacheEntry {
        credentials: out.clone(),
        obtained_at: crate::iso8601(clock.now()),
    };
    let text = serde_json::to_vec(&entry).expect("serializes");
    write_atomically(&cache, &text, 0o600).map_err(cache_err(&cache))?;
    Ok(out)
}

fn read_fresh(cache: &Path, now: SystemTime) -> Option<ProcessCredentials> {
    let entry: CacheEntry = serde_json::from_slice(&std::fs::read(cache).ok()?).ok()?;
    let expires = crate::parse_iso8601(&entry.credentials.expiration)?;
    let obtained = crate::parse_iso8601(&entry.obtained_at)?;
    let lifetime = expires.duration_since(obtained).ok()?;
    let keep = Duration::from_secs(15 * 60).min(lifetime / 2);
    (expires.duration_since(now).ok()? > keep).then_some(entry.credentials)
}

fn to_process(c: &Credentials) -> Result<ProcessCredentials, CredentialProcessError> {
    Ok(ProcessCredentials {
        version: 1,
        access_key_id: c.access_key_id().to_string(),
        secret_access_key: c.secret_access_key().to_string(),
        session_token: c
            .session_token()
            .ok_or(CredentialProcessError::Incomplete)?
            .to_string(),
        expiration: crate::iso8601(c.expiry().ok_or(CredentialProcessError::Incomplete)?),
    })
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}
