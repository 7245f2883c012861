//! The verified-token cache: bounded, keyed by the SHA-256 of the token, holding verified claims
//! until `exp`, so a repeated token skips decoding and the signature check.
//!
//! An entry never outlives its signing key: a hit is only served while the `kid` is still in
//! the realm's key set, and a key-set swap purges entries whose `kid` left it.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use super::claims::Claims;

const SHARDS: usize = 16;

/// One verified token.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The realm it was verified for.
    pub realm: Arc<str>,
    /// The key that signed it.
    pub kid: Arc<str>,
    /// Its expiry (Unix seconds).
    pub exp: i64,
    /// Its claims.
    pub claims: Arc<Claims>,
}

/// A cache key: the SHA-256 of the token text.
pub type Digest = [u8; 32];

/// A sharded, bounded map from token digest to verified claims.
#[derive(Debug)]
pub struct TokenCache {
    shards: Vec<Mutex<HashMap<Digest, Entry>>>,
    per_shard: usize,
}

/// SHA-256 of the token text.
pub fn digest(token: &str) -> Digest {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

// === impl TokenCache ===

impl TokenCache {
    /// A cache holding at most about `capacity` entries (0 disables it).
    pub fn new(capacity: usize) -> Self {
        TokenCache {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard: capacity.div_ceil(SHARDS),
        }
    }

    fn shard(&self, d: &Digest) -> &Mutex<HashMap<Digest, Entry>> {
        &self.shards[usize::from(d[0]) % SHARDS]
    }

    /// The entry for `d` if present and not expired at `now` (with `leeway`).
    pub fn get(&self, d: &Digest, now: i64, leeway: i64) -> Option<Entry> {
        let mut shard = self.shard(d).lock();
        match shard.get(d) {
            Some(e) if !super::checks::expired(e.exp, now, leeway) => Some(e.clone()),
            Some(_) => {
                shard.remove(d);
                None
            }
            None => None,
        }
    }

    /// Stores an entry, evicting expired ones (then arbitrary ones) when the shard is full.
    pub fn insert(&self, d: Digest, entry: Entry, now: i64) {
        if self.per_shard == 0 {
            return;
        }
        let mut shard = self.shard(&d).lock();
        if shard.len() >= self.per_shard && !shard.contains_key(&d) {
            shard.retain(|_, e| e.exp >= now);
            if shard.len() >= self.per_shard {
                let victim = shard.keys().next().copied();
                if let Some(v) = victim {
                    shard.remove(&v);
                }
            }
        }
        shard.insert(d, entry);
    }

    /// Removes a realm's entries whose key is no longer held.
    pub fn retain_keys(&self, realm: &str, still_held: impl Fn(&str) -> bool) {
        for shard in &self.shards {
            shard.lock().retain(|_, e| &*e.realm != realm || still_held(&e.kid));
        }
    }

    /// Removes one entry.
    pub fn remove(&self, d: &Digest) {
        self.shard(d).lock().remove(d);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(c: &TokenCache) -> usize {
        c.shards.iter().map(|s| s.lock().len()).sum()
    }

    fn entry(kid: &str, exp: i64) -> Entry {
        Entry {
            realm: "demo".into(),
            kid: kid.into(),
            exp,
            claims: Arc::new(Claims::default()),
        }
    }

    #[test]
    fn expiry_and_bounds() {
        let c = TokenCache::new(32);
        let d = digest("t1");
        c.insert(d, entry("k1", 100), 0);
        assert!(c.get(&d, 90, 0).is_some());
        assert!(c.get(&d, 101, 0).is_none());
        assert_eq!(entries(&c), 0);
        for i in 0..1000 {
            c.insert(digest(&format!("t{i}")), entry("k1", 100), 0);
        }
        assert!(entries(&c) <= 32, "{}", entries(&c));
    }

    #[test]
    fn purge_by_kid() {
        let c = TokenCache::new(100);
        c.insert(digest("a"), entry("old", 100), 0);
        c.insert(digest("b"), entry("new", 100), 0);
        c.retain_keys("demo", |k| k == "new");
        assert!(c.get(&digest("a"), 0, 0).is_none());
        assert!(c.get(&digest("b"), 0, 0).is_some());
    }

    #[test]
    fn zero_capacity_disables() {
        let c = TokenCache::new(0);
        c.insert(digest("a"), entry("k", 100), 0);
        assert_eq!(entries(&c), 0);
    }
}
