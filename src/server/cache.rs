//! Bounded caches of authentication and authorization answers.
//!
//! Anyone who can reach the port chooses what we cache (any path, any token), so both the
//! memory and the work per entry must be bounded whatever they send:
//! - keys are SHA-256 digests of what identifies an answer (a token; a user and the request's
//!   attributes), 32 bytes however long the path or token;
//! - the map is `quick_cache`'s: a fixed capacity, O(1) eviction, and an S3-FIFO policy under
//!   which a flood of keys seen once is evicted before the entries that are asked for again
//!   (the HPA controller's), instead of pushing them out.

use std::time::{Duration, Instant};

use sha2::Digest as _;

/// A cache key: the SHA-256 of its parts.
pub type Key = [u8; 32];

/// Hashes `parts`, each length-prefixed so that no two different lists share a key.
pub fn key<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> Key {
    let mut hasher = sha2::Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    hasher.finalize().into()
}

/// Answers that expire, at most `capacity` of them.
pub struct TtlCache<V> {
    entries: quick_cache::sync::Cache<Key, (Instant, V)>,
}

impl<V: Clone> TtlCache<V> {
    /// An empty cache holding at most `capacity` answers.
    pub fn new(capacity: usize) -> Self {
        TtlCache {
            entries: quick_cache::sync::Cache::new(capacity.max(1)),
        }
    }

    /// The answer for `key` if it has not expired.
    pub fn get(&self, key: &Key) -> Option<V> {
        let (expires, value) = self.entries.get(key)?;
        if expires > Instant::now() {
            Some(value)
        } else {
            self.entries.remove(key);
            None
        }
    }

    /// Stores `value` for `ttl`; a zero TTL stores nothing.
    pub fn insert(&self, key: Key, value: V, ttl: Duration) {
        if !ttl.is_zero() {
            self.entries.insert(key, (Instant::now() + ttl, value));
        }
    }

    /// How many answers are held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no answer is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(s: &str) -> Key {
        key([s.as_bytes()])
    }

    #[test]
    fn keys_do_not_collide_across_part_boundaries() {
        assert_ne!(key([&b"ab"[..], b"c"]), key([&b"a"[..], b"bc"]));
        assert_eq!(key([&b"ab"[..], b"c"]), key([&b"ab"[..], b"c"]));
    }

    #[test]
    fn entries_expire_and_a_zero_ttl_stores_nothing() {
        let c = TtlCache::new(10);
        c.insert(k("a"), 1, Duration::from_secs(60));
        c.insert(k("b"), 2, Duration::from_millis(1));
        c.insert(k("z"), 9, Duration::ZERO);
        assert_eq!(c.get(&k("a")), Some(1));
        assert_eq!(c.get(&k("z")), None);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(c.get(&k("b")), None);
    }

    #[test]
    fn a_flood_of_one_off_keys_stays_bounded_and_keeps_the_entries_in_use() {
        let c = TtlCache::new(1000);
        let hot: Vec<Key> = (0..50).map(|i| k(&format!("hpa-{i}"))).collect();
        for h in &hot {
            c.insert(*h, "allowed", Duration::from_secs(60));
        }
        for round in 0..100 {
            // The HPA's answers are asked for again and again…
            for h in &hot {
                assert_eq!(c.get(h), Some("allowed"), "round {round}");
            }
            // …while an attacker sends paths nobody repeats.
            for i in 0..1000 {
                c.insert(
                    k(&format!("flood-{round}-{i}")),
                    "denied",
                    Duration::from_secs(60),
                );
            }
            assert!(c.len() <= 1000 + 1000 / 10, "{}", c.len());
        }
    }
}
