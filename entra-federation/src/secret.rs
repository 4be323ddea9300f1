//! A string that never shows itself in `Debug`, `Display` or logs.

use std::fmt;
use zeroize::Zeroizing;

/// A token, assertion or key. Its `Debug` prints only its length; read it with
/// [`SecretString::expose_secret`] at the single place it is sent on the wire.
///
/// ```
/// use entra_federation::SecretString;
/// let s = SecretString::new("eyJhbGciOi...".to_string());
/// assert_eq!(format!("{s:?}"), "SecretString(redacted, 13 chars)");
/// assert_eq!(s.expose_secret(), "eyJhbGciOi...");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(Zeroizing<String>);

impl SecretString {
    /// Wraps a secret value.
    pub fn new(value: String) -> Self {
        Self(Zeroizing::new(value))
    }

    /// The secret itself: call this only where it leaves the process (an HTTP body, a file).
    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    /// Length in characters (bytes for the ASCII tokens this holds), safe to log.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the secret is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretString(redacted, {} chars)", self.0.len())
    }
}

impl From<String> for SecretString {
    fn from(value: String) -> Self {
        Self::new(value)
    }
}
