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

/// Shards, each with its own lock: concurrent hits on a busy API do not queue on one mutex.
const SHARDS: usize = 16;

pub(crate) struct VerifiedCache {
    /// Entries per shard (the configured capacity spread over the shards; 0: no cache).
    shard_capacity: usize,
    shards: Box<[Mutex<HashMap<Digest, Entry>>]>,
    hits: AtomicU64,
}

/// What the verification established, and what it depended on.
pub(crate) struct Entry {
    pub claims: Arc<AgentClaims>,
    pub version: Version,
    pub kid: String,
    pub key: Arc<DecodingKey>,
}

impl VerifiedCache {
    /// A cache of at most `capacity` tokens (0: no cache).
    pub fn new(capacity: usize) -> Self {
        Self {
            shard_capacity: capacity.div_ceil(SHARDS),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hits: AtomicU64::new(0),
        }
    }

    fn shard(&self, digest: &Digest) -> std::sync::MutexGuard<'_, HashMap<Digest, Entry>> {
        // The digest is uniform: its first byte spreads tokens evenly.
        self.shards[usize::from(digest[0]) % SHARDS]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// The verified claims of the token with `digest`, if it was verified by a key that is still
    /// among `keys` and has not expired (`exp + skew` before `now`).
    pub fn get(
        &self,
        digest: &Digest,
        now: u64,
        skew: u64,
        keys: &Keys,
    ) -> Option<Arc<AgentClaims>> {
        if self.shard_capacity == 0 {
            return None;
        }
        let mut shard = self.shard(digest);
        let entry = shard.get(digest)?;
        let key_still_there = keys
            .get(entry.version, &entry.kid)
            .is_some_and(|k| Arc::ptr_eq(&k, &entry.key));
        if entry.claims.exp.saturating_add(skew) < now || !key_still_there {
            shard.remove(digest);
            return None;
        }
        let claims = entry.claims.clone();
        drop(shard);
        self.hits.fetch_add(1, Ordering::Relaxed);
        Some(claims)
    }

    /// Remembers a token that passed the signature and claim checks.
    pub fn put(&self, digest: Digest, entry: Entry, now: u64, skew: u64) {
        if self.shard_capacity == 0 {
            return;
        }
        let mut shard = self.shard(&digest);
        if shard.len() >= self.shard_capacity && !shard.contains_key(&digest) {
            shard.retain(|_, e| e.claims.exp.saturating_add(skew) >= now);
            if shard.len() >= self.shard_capacity {
                // Still full of live tokens: start the shard again rather than grow (each token
                // costs one verification to come back).
                shard.clear();
            }
        }
        shard.insert(digest, entry);
    }

    /// Tokens held.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }

    /// Validations answered from the cache.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(exp: u64, key: &Arc<DecodingKey>) -> Entry {
        let claims: AgentClaims = serde_json::from_value(serde_json::json!({
            "iss": "i", "aud": "a", "tid": "t", "ver": "2.0", "exp": exp
        }))
        .unwrap();
        Entry {
            claims: Arc::new(claims),
            version: Version::V2,
            kid: "k".into(),
            key: key.clone(),
        }
    }

    #[test]
    fn never_holds_more_than_its_capacity_and_drops_expired_tokens_first() {
        let key = Arc::new(DecodingKey::from_secret(b"k"));
        let cache = VerifiedCache::new(64);
        for i in 0..10_000u32 {
            let d = digest(&i.to_string());
            // Every other token has expired by `now` (1000, no skew).
            cache.put(d, entry(if i % 2 == 0 { 500 } else { 5000 }, &key), 1000, 0);
            assert!(cache.len() <= 64, "{} tokens held", cache.len());
        }
        assert!(cache.len() > 0);
        let none = VerifiedCache::new(0);
        none.put(digest("t"), entry(5000, &key), 1000, 0);
        assert_eq!(none.len(), 0, "a capacity of 0 is no cache");
    }

    #[test]
    fn a_token_put_again_replaces_itself_without_clearing_its_shard() {
        let key = Arc::new(DecodingKey::from_secret(b"k"));
        let cache = VerifiedCache::new(SHARDS); // one per shard
        let d = digest("same");
        cache.put(d, entry(5000, &key), 1000, 0);
        cache.put(d, entry(6000, &key), 1000, 0);
        assert_eq!(cache.len(), 1);
    }
}
