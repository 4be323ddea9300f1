//! Tokens whose signature and claims were verified, kept so that the same token (an agent reuses
//! one for up to an hour) is not verified again, as Envoy's JWT filter does. Keyed by a SHA-256
//! digest of the whole token; bounded; an entry never outlives the token's `exp` nor the key that
//! verified it (a key rotated out or removed evicts it). The authorisation policy is applied on
//! every hit by the caller, so a cached token is only spared the signature and the parse.

use super::AgentClaims;
use super::jwks::{Keys, Version};
use jsonwebtoken::DecodingKey;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A token's identity in the cache.
pub(crate) type Digest = [u8; 32];

/// The digest of `token`.
pub(crate) fn digest(token: &str) -> Digest {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

pub(crate) struct VerifiedCache {
    capacity: usize,
    entries: Mutex<HashMap<Digest, Entry>>,
    hits: AtomicU64,
}

/// What the verification established, and what it depended on.
pub(crate) struct Entry {
    pub claims: AgentClaims,
    pub version: Version,
    pub kid: String,
    pub key: Arc<DecodingKey>,
}

impl VerifiedCache {
    /// A cache of at most `capacity` tokens (0: no cache).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            entries: Mutex::new(HashMap::new()),
            hits: AtomicU64::new(0),
        }
    }

    /// The verified claims of the token with `digest`, if it was verified by a key that is still
    /// among `keys` and has not expired (`exp + skew` before `now`).
    pub fn get(&self, digest: &Digest, now: u64, skew: u64, keys: &Keys) -> Option<AgentClaims> {
        if self.capacity == 0 {
            return None;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let entry = entries.get(digest)?;
        let key_still_there = keys
            .get(entry.version, &entry.kid)
            .is_some_and(|k| Arc::ptr_eq(&k, &entry.key));
        if entry.claims.exp.saturating_add(skew) < now || !key_still_there {
            entries.remove(digest);
            return None;
        }
        self.hits.fetch_add(1, Ordering::Relaxed);
        Some(entry.claims.clone())
    }

    /// Remembers a token that passed the signature and claim checks.
    pub fn put(&self, digest: Digest, entry: Entry, now: u64, skew: u64) {
        if self.capacity == 0 {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= self.capacity {
            entries.retain(|_, e| e.claims.exp.saturating_add(skew) >= now);
            if entries.len() >= self.capacity {
                // Still full of live tokens: start again rather than grow (each costs one
                // verification to come back).
                entries.clear();
            }
        }
        entries.insert(digest, entry);
    }

    /// Validations answered from the cache.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }
}
