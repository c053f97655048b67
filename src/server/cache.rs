//! A small TTL cache for authentication and authorization decisions.
//!
//! Written here rather than taken from a crate (moka) because the need is tiny: a bounded map
//! of short-lived decisions, read far more often than written, with no eviction policy beyond
//! expiry. Adding moka would cost build time for none of its features.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A map whose entries expire; at most `capacity` entries are kept.
pub struct TtlCache<K, V> {
    entries: Mutex<HashMap<K, (Instant, V)>>,
    capacity: usize,
}

impl<K: Eq + Hash + Clone, V: Clone> TtlCache<K, V> {
    /// An empty cache.
    pub fn new(capacity: usize) -> Self {
        TtlCache {
            entries: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    /// The value for `key` if it has not expired.
    pub fn get(&self, key: &K) -> Option<V> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(key)
            .filter(|(expires, _)| *expires > Instant::now())
            .map(|(_, v)| v.clone())
    }

    /// Stores `value` for `ttl`; a zero TTL stores nothing.
    pub fn insert(&self, key: K, value: V, ttl: Duration) {
        if ttl.is_zero() {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= self.capacity {
            let now = Instant::now();
            entries.retain(|_, (expires, _)| *expires > now);
            if entries.len() >= self.capacity {
                // Full of live entries: keep them (the hot ones among them) and skip this one.
                return;
            }
        }
        entries.insert(key, (Instant::now() + ttl, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_and_capacity_is_bounded() {
        let c = TtlCache::new(2);
        c.insert("a", 1, Duration::from_secs(60));
        c.insert("b", 2, Duration::from_millis(1));
        c.insert("z", 9, Duration::ZERO);
        assert_eq!(c.get(&"a"), Some(1));
        assert_eq!(c.get(&"z"), None);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(c.get(&"b"), None);
        c.insert("c", 3, Duration::from_secs(60));
        c.insert("d", 4, Duration::from_secs(60));
        assert!(c.entries.lock().unwrap().len() <= 2);
    }
}
