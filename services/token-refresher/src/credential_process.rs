//! `credential_process`: prints credentials as the AWS config's `credential_process` expects.
//!
//! Each invocation is a new process, so credentials are cached between invocations in a 0600 file
//! keyed by tenant, role, session and STS endpoint, in a private directory of this user; a file
//! lock keeps concurrent invocations from each calling STS. Cached credentials are reused while
//! more than 15 minutes (or half their life, for short-lived ones) remain: SDKs refresh 15 minutes
//! ahead and must get fresher ones then. The cache is an optimisation: when it cannot be used, it
//! is skipped with a warning.

use crate::token_file::write_atomically;
use aws_credential_types::Credentials;
use aws_smithy_async::time::SharedTimeSource;
use entra_federation::EntraCredentialsProvider;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// The `credential_process` output (version 1). Its `Debug` shows the key id and expiry only.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
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

impl std::fmt::Debug for ProcessCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessCredentials")
            .field("version", &self.version)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"** redacted **")
            .field("session_token", &"** redacted **")
            .field("expiration", &self.expiration)
            .finish()
    }
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct CacheEntry {
    #[serde(flatten)]
    credentials: ProcessCredentials,
    obtained_at: String,
}

impl CacheEntry {
    /// A cache file's entry; anything else (another tool's file, a torn write, another version,
    /// which SDKs would refuse) is no entry.
    pub(crate) fn parse(text: &[u8]) -> Option<Self> {
        let entry: Self = serde_json::from_slice(text).ok()?;
        (entry.credentials.version == 1).then_some(entry)
    }

    /// The cached credentials while more than 15 minutes (or half their life, for short-lived
    /// ones) remain: SDKs refresh 15 minutes ahead and must get fresher ones then.
    pub(crate) fn fresh(self, now: SystemTime) -> Option<ProcessCredentials> {
        let expires = crate::parse_iso8601(&self.credentials.expiration)?;
        let obtained = crate::parse_iso8601(&self.obtained_at)?;
        let lifetime = expires.duration_since(obtained).ok()?;
        let keep = Duration::from_secs(15 * 60).min(lifetime / 2);
        (expires.duration_since(now).ok()? > keep).then_some(self.credentials)
    }

    /// The cached credentials if more than `margin` of validity remains.
    pub(crate) fn valid_for(self, now: SystemTime, margin: Duration) -> Option<ProcessCredentials> {
        let expires = crate::parse_iso8601(&self.credentials.expiration)?;
        (expires.duration_since(now).ok()? > margin).then_some(self.credentials)
    }
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
/// or `~/.cache/entra-federation`; none without a home (never the shared temp directory).
pub fn default_cache_dir() -> Option<PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(d) = var("ENTRA_FEDERATION_CACHE_DIR") {
        return Some(d.into());
    }
    if let Some(d) = var("XDG_CACHE_HOME") {
        return Some(PathBuf::from(d).join("entra-federation"));
    }
    var("HOME").map(|h| PathBuf::from(h).join(".cache").join("entra-federation"))
}

/// How long an invocation waits for another one holding the cache lock before going on without
/// the cache.
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(10);

/// The least validity cached credentials must have to be printed when the chain fails: boto3
/// refuses credentials inside its 10-minute mandatory refresh window; one more minute of margin.
pub const FALLBACK_MINIMUM: Duration = Duration::from_secs(11 * 60);

/// Credentials for one invocation: from the cache when fresh enough, else from the chain (then
/// cached). The cache is an optimisation: when it cannot be used it is skipped with a warning.
/// When the chain fails, cached credentials with more than [`FALLBACK_MINIMUM`] left are printed.
pub async fn credentials(
    provider: &EntraCredentialsProvider,
    cache_dir: Option<&Path>,
    clock: &SharedTimeSource,
) -> Result<ProcessCredentials, CredentialProcessError> {
    let key = hex::encode(
        &aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            provider.session_key().as_bytes(),
        )
        .as_ref()[..12],
    );
    let cache = match cache_dir {
        None => {
            tracing::warn!(
                "no credential cache: no ENTRA_FEDERATION_CACHE_DIR, XDG_CACHE_HOME or HOME; every invocation calls the chain"
            );
            None
        }
        Some(dir) => match Cache::open(dir, &key).await {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(error = %e, "the credential cache is not used");
                None
            }
        },
    };
    if let Some(c) = &cache
        && let Some(hit) = c.read_fresh(clock.now())
    {
        return Ok(hit);
    }
    match provider.credentials().await {
        Ok(creds) => {
            let out = to_process(&creds)?;
            if let Some(c) = &cache
                && let Err(e) = c.write(&out, clock.now())
            {
                tracing::warn!(error = %e, "the credentials could not be cached");
            }
            Ok(out)
        }
        Err(e) => match cache
            .as_ref()
            .and_then(|c| c.read_valid_for(clock.now(), FALLBACK_MINIMUM))
        {
            Some(cached) => {
                tracing::warn!(error = %e, expiration = %cached.expiration, "the chain failed; printing the cached credentials, still valid beyond the SDKs' refresh window");
                Ok(cached)
            }
            None => Err(e.into()),
        },
    }
}

/// The cache directory, its entry and the lock, held while this value lives. Without the lock
/// (another invocation held it past [`LOCK_TIMEOUT`]) the entry is read, never written.
struct Cache {
    entry: PathBuf,
    lock: Option<std::fs::File>,
}

impl Cache {
    /// Opens (creating) the private cache directory and takes the lock, waiting at most
    /// [`LOCK_TIMEOUT`].
    async fn open(dir: &Path, key: &str) -> Result<Self, CredentialProcessError> {
        private_dir(dir).map_err(cache_err(dir))?;
        let lock_path = dir.join(format!("credential-process-{key}.lock"));
        let lock = open_private(&lock_path, true).map_err(cache_err(&lock_path))?;
        // A blocking lock on a thread of its own, so that a holder that never lets go costs this
        // invocation LOCK_TIMEOUT, not forever (the thread dies with the process).
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let locked = lock.lock().map(|()| lock);
            let _ = tx.send(locked);
        });
        let entry = dir.join(format!("credential-process-{key}.json"));
        let lock = match tokio::time::timeout(LOCK_TIMEOUT, rx).await {
            Ok(Ok(Ok(lock))) => Some(lock),
            Ok(Ok(Err(e))) => return Err(cache_err(&lock_path)(e)),
            Ok(Err(_)) => {
                return Err(cache_err(&lock_path)(std::io::Error::other(
                    "the lock thread ended",
                )));
            }
            Err(_) => {
                tracing::warn!(lock = %lock_path.display(), waited_s = LOCK_TIMEOUT.as_secs(), "another invocation holds the credential cache lock; reading the cache without it (nothing is written)");
                None
            }
        };
        Ok(Self { entry, lock })
    }

    fn read(&self) -> Option<CacheEntry> {
        use std::io::Read;
        let file = open_private(&self.entry, false).ok()?;
        let mut text = Vec::new();
        file.take(64 * 1024).read_to_end(&mut text).ok()?;
        CacheEntry::parse(&text)
    }

    fn read_fresh(&self, now: SystemTime) -> Option<ProcessCredentials> {
        self.read()?.fresh(now)
    }

    fn read_valid_for(&self, now: SystemTime, margin: Duration) -> Option<ProcessCredentials> {
        self.read()?.valid_for(now, margin)
    }

    fn write(
        &self,
        creds: &ProcessCredentials,
        now: SystemTime,
    ) -> Result<(), CredentialProcessError> {
        if self.lock.is_none() {
            return Ok(());
        }
        let entry = CacheEntry {
            credentials: creds.clone(),
            obtained_at: crate::iso8601(now),
        };
        let text = serde_json::to_vec(&entry)
            .map_err(|e| cache_err(&self.entry)(std::io::Error::other(e)))?;
        // A new file renamed over the entry: a symlink planted there is replaced, not followed.
        write_atomically(&self.entry, &text, 0o600).map_err(cache_err(&self.entry))
    }
}

fn cache_err(path: &Path) -> impl FnOnce(std::io::Error) -> CredentialProcessError {
    let path = path.to_path_buf();
    move |source| CredentialProcessError::Cache { path, source }
}

/// Creates `dir` (0700) or checks it: a real directory (not a symlink) of this user; group and
/// other access is removed (it is this user's).
fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let meta = std::fs::symlink_metadata(dir)?;
    if !meta.is_dir() {
        return Err(std::io::Error::other("not a directory (a symlink?)"));
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        return Err(std::io::Error::other(format!(
            "owned by uid {}, not by this user (uid {me})",
            meta.uid()
        )));
    }
    if meta.mode() & 0o077 != 0 {
        tracing::warn!(dir = %dir.display(), mode = format!("{:o}", meta.mode() & 0o777), "the credential cache directory was open to others; made private (0700)");
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Opens `path` without following a symlink, and checks it is a regular file of this user that
/// no one else can read or write.
fn open_private(path: &Path, create: bool) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(create)
        .create(create)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    let meta = file.metadata()?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if !meta.is_file() || meta.uid() != me || meta.mode() & 0o077 != 0 {
        return Err(std::io::Error::other(
            "not a private regular file of this user",
        ));
    }
    Ok(file)
}

pub(crate) fn to_process(c: &Credentials) -> Result<ProcessCredentials, CredentialProcessError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `credential_process_cache` fuzz target: a cache file of another version (a
    /// future release's, or a damaged one) was printed as it was, and SDKs refuse a `Version`
    /// other than 1.
    #[test]
    fn a_cache_entry_of_another_version_is_no_entry() {
        let entry = |version: u32| {
            format!(
                r#"{{"Version":{version},"AccessKeyId":"ASIAEXAMPLE","SecretAccessKey":"s","SessionToken":"t","Expiration":"2030-01-01T01:00:00Z","ObtainedAt":"2030-01-01T00:00:00Z"}}"#
            )
        };
        let now = crate::parse_iso8601("2030-01-01T00:00:00Z").unwrap();
        let good = CacheEntry::parse(entry(1).as_bytes()).expect("a version 1 entry");
        assert!(good.fresh(now).is_some());
        for version in [0, 2, 255] {
            assert!(
                CacheEntry::parse(entry(version).as_bytes()).is_none(),
                "version {version}"
            );
        }
    }

    #[test]
    fn debug_shows_no_secret() {
        let c = ProcessCredentials {
            version: 1,
            access_key_id: "ASIAEXAMPLE".into(),
            secret_access_key: "secret-key-value".into(),
            session_token: "session-token-value".into(),
            expiration: "2030-01-01T00:00:00Z".into(),
        };
        let text = format!("{c:?}");
        assert!(text.contains("ASIAEXAMPLE"));
        assert!(!text.contains("secret-key-value") && !text.contains("session-token-value"));
    }
}
