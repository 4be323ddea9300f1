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
    /// Entries per shard (the configured capacity spread over the shards, rounded up; 0: no
    /// cache).
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
    /// The issuer the authority's metadata named for `version` when the token was verified
    /// (`None`: the metadata named none, and the public cloud's was expected).
    pub metadata_issuer: Option<String>,
}

impl VerifiedCache {
    /// A cache of about `capacity` tokens (0: no cache): spread over at most 16 shards, each
    /// holding `capacity / shards` rounded up.
    pub fn new(capacity: usize) -> Self {
        let shards = capacity.clamp(1, SHARDS);
        Self {
            shard_capacity: capacity.div_ceil(shards),
            shards: (0..shards).map(|_| Mutex::default()).collect(),
            hits: AtomicU64::new(0),
        }
    }

    fn shard(&self, digest: &Digest) -> std::sync::MutexGuard<'_, HashMap<Digest, Entry>> {
        // The digest is uniform: its first byte spreads tokens evenly.
        self.shards[usize::from(digest[0]) % self.shards.len()]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// The verified claims of the token with `digest`, if it was verified by a key that is still
    /// among `keys`, under the issuer `keys`' metadata still names, and has not expired
    /// (`exp + skew` before `now`).
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
        let same_issuer = keys.issuer(entry.version) == entry.metadata_issuer.as_deref();
        if entry.claims.exp.saturating_add(skew) < now || !key_still_there || !same_issuer {
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
            metadata_issuer: Some("https://issuer/a".into()),
        }
    }

    /// Two tokens (by digest) that land in the same shard of a 16-shard cache.
    fn same_shard(n: usize) -> Vec<Digest> {
        let mut found = Vec::new();
        for i in 0.. {
            let d = digest(&format!("token {i}"));
            if d[0].is_multiple_of(16) {
                found.push(d);
                if found.len() == n {
                    return found;
                }
            }
        }
        unreachable!()
    }

    #[test]
    fn never_holds_more_than_its_capacity() {
        let key = Arc::new(DecodingKey::from_secret(b"k"));
        let cache = VerifiedCache::new(64);
        for i in 0..10_000u32 {
            cache.put(digest(&i.to_string()), entry(5000, &key), 1000, 0);
            assert!(cache.len() <= 64, "{} tokens held", cache.len());
        }
        let none = VerifiedCache::new(0);
        none.put(digest("t"), entry(5000, &key), 1000, 0);
        assert_eq!(none.len(), 0, "a capacity of 0 is no cache");
        let one = VerifiedCache::new(1);
        one.put(digest("a"), entry(5000, &key), 1000, 0);
        one.put(digest("b"), entry(5000, &key), 1000, 0);
        assert_eq!(one.len(), 1, "a capacity of 1 holds one token");
    }

    #[test]
    fn a_full_shard_drops_its_expired_tokens_before_live_ones() {
        let key = Arc::new(DecodingKey::from_secret(b"k"));
        let keys = Keys::for_test(Version::V2, "k", &key, Some("https://issuer/a"));
        let cache = VerifiedCache::new(32); // two per shard
        let [expired, live, new] = same_shard(3).try_into().unwrap();
        cache.put(expired, entry(500, &key), 1000, 0);
        cache.put(live, entry(5000, &key), 1000, 0);
        cache.put(new, entry(5000, &key), 1000, 0);
        assert!(
            cache.get(&live, 1000, 0, &keys).is_some(),
            "the live token stays"
        );
        assert!(cache.get(&new, 1000, 0, &keys).is_some());
    }

    #[test]
    fn a_token_put_again_replaces_itself_without_clearing_its_shard() {
        let key = Arc::new(DecodingKey::from_secret(b"k"));
        let keys = Keys::for_test(Version::V2, "k", &key, Some("https://issuer/a"));
        let cache = VerifiedCache::new(32); // two per shard
        let [a, b] = same_shard(2).try_into().unwrap();
        cache.put(a, entry(5000, &key), 1000, 0);
        cache.put(b, entry(5000, &key), 1000, 0);
        cache.put(b, entry(6000, &key), 1000, 0);
        assert!(
            cache.get(&a, 1000, 0, &keys).is_some(),
            "the shard was not cleared"
        );
    }

    #[test]
    fn a_hit_needs_the_same_key_and_the_same_metadata_issuer() {
        let key = Arc::new(DecodingKey::from_secret(b"k"));
        let cache = VerifiedCache::new(16);
        let d = digest("t");
        let same = Keys::for_test(Version::V2, "k", &key, Some("https://issuer/a"));
        cache.put(d, entry(5000, &key), 1000, 0);
        assert!(cache.get(&d, 1000, 0, &same).is_some());
        let other_issuer = Keys::for_test(Version::V2, "k", &key, Some("https://issuer/b"));
        assert!(
            cache.get(&d, 1000, 0, &other_issuer).is_none(),
            "the issuer changed"
        );
        cache.put(d, entry(5000, &key), 1000, 0);
        let equal_key = Arc::new(DecodingKey::from_secret(b"k"));
        let rebuilt = Keys::for_test(Version::V2, "k", &equal_key, Some("https://issuer/a"));
        assert!(
            cache.get(&d, 1000, 0, &rebuilt).is_none(),
            "another key object"
        );
    }
}
