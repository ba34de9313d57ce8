//! The ClientHello replay cache (§4.4.1 step 4, §9).

use std::collections::{HashSet, VecDeque};

/// How long a cached client random is kept: 2 days, as C's `MAX_CLIENT_RANDOM_CACHE_TIME`.
///
/// An entry inserted at `t` is dropped once `t <= now - REPLAY_ENTRY_LIFETIME_SECS`.
pub const REPLAY_ENTRY_LIFETIME_SECS: i64 = 2 * 86_400;

/// The default bound on cached entries: 2^18 = 262 144 (C keeps an unbounded list).
///
/// Each entry costs one 16-byte key in a hash set plus a 24-byte (key, time) slot in a
/// queue; with the tables' growth slack the worst case is about 20 MB. Because the cache is
/// filled *before* the HMAC check (as in C), anybody who knows a `-D` name can fill it;
/// evicting the oldest entry is safe for the timestamp rule ("newer than the oldest cached
/// entry + 3 s", see [`ReplayCheck::oldest_time`]): eviction only moves the oldest time
/// forward, which narrows that clause back to the plain 600-second window.
pub const DEFAULT_MAX_REPLAY_ENTRIES: usize = 1 << 18;

/// What [`super::validate_client_hello`] needs from a replay cache.
///
/// [`ReplayCache`] is the single-owner implementation; a runtime that shares one cache
/// between connections implements this for its lock guard (C keeps one per process).
pub trait ReplayCheck {
    /// Checks `key` (the first 16 bytes of `client_random`) and records it.
    ///
    /// Returns `false` if the key is already cached (a replay; nothing changes). Otherwise
    /// the key is inserted with time `now_unix`, expired entries are dropped, and `true`
    /// is returned.
    fn check_and_insert(&mut self, key: [u8; 16], now_unix: i64) -> bool;

    /// The insertion time of the oldest cached entry, if any.
    ///
    /// C accepts a timestamp newer than this + 3 s even outside the 600-second window: a
    /// hello created after the oldest entry was cached would still be in the cache if it
    /// had been seen before.
    fn oldest_time(&self) -> Option<i64>;
}

/// Client randoms seen recently, keyed on their first 16 bytes; oldest first eviction.
///
/// Insert and lookup are O(1) (a hash set plus a time-ordered queue). Entries live
/// [`REPLAY_ENTRY_LIFETIME_SECS`]; at most `max_entries` are kept.
#[derive(Debug, Clone)]
pub struct ReplayCache {
    /// The cached keys, for lookup.
    keys: HashSet<[u8; 16]>,
    /// The cached keys with their insertion time, in insertion order.
    by_time: VecDeque<([u8; 16], i64)>,
    /// The bound on `keys.len()`.
    max_entries: usize,
}

impl Default for ReplayCache {
    fn default() -> Self {
        Self::new()
    }
}

impl ReplayCache {
    /// An empty cache bounded by [`DEFAULT_MAX_REPLAY_ENTRIES`].
    pub fn new() -> Self {
        Self::with_max_entries(DEFAULT_MAX_REPLAY_ENTRIES)
    }

    /// An empty cache holding at most `max_entries` keys (at least 1).
    pub fn with_max_entries(max_entries: usize) -> Self {
        Self {
            keys: HashSet::new(),
            by_time: VecDeque::new(),
            max_entries: max_entries.max(1),
        }
    }

    /// How many keys are cached.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether `key` is cached.
    pub fn contains(&self, key: &[u8; 16]) -> bool {
        self.keys.contains(key)
    }

    /// Caches `key` at `now_unix` (no-op if present), evicting the oldest entry when full.
    pub fn insert(&mut self, key: [u8; 16], now_unix: i64) {
        if self.keys.contains(&key) {
            return;
        }
        while self.keys.len() >= self.max_entries {
            match self.by_time.pop_front() {
                Some((old, _)) => {
                    self.keys.remove(&old);
                }
                None => break,
            }
        }
        self.keys.insert(key);
        self.by_time.push_back((key, now_unix));
    }

    /// Drops the entries inserted at or before `now_unix - REPLAY_ENTRY_LIFETIME_SECS`.
    pub fn expire(&mut self, now_unix: i64) {
        let limit = now_unix.saturating_sub(REPLAY_ENTRY_LIFETIME_SECS);
        while let Some(&(key, t)) = self.by_time.front() {
            if t > limit {
                break;
            }
            self.by_time.pop_front();
            self.keys.remove(&key);
        }
    }
}

impl ReplayCheck for ReplayCache {
    fn check_and_insert(&mut self, key: [u8; 16], now_unix: i64) -> bool {
        if self.contains(&key) {
            return false;
        }
        self.insert(key, now_unix);
        self.expire(now_unix);
        true
    }

    fn oldest_time(&self) -> Option<i64> {
        self.by_time.front().map(|&(_, t)| t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u32) -> [u8; 16] {
        let mut k = [0u8; 16];
        k[..4].copy_from_slice(&i.to_le_bytes());
        k
    }

    #[test]
    fn rejects_a_key_seen_before() {
        let mut c = ReplayCache::new();
        assert!(c.check_and_insert(key(1), 100));
        assert!(!c.check_and_insert(key(1), 101));
        assert!(c.check_and_insert(key(2), 101));
        assert_eq!(c.len(), 2);
        assert_eq!(c.oldest_time(), Some(100));
    }

    #[test]
    fn entries_expire_after_two_days() {
        let mut c = ReplayCache::new();
        assert!(c.check_and_insert(key(1), 1000));
        // Still cached one second before the lifetime ends.
        assert!(c.check_and_insert(key(2), 1000 + REPLAY_ENTRY_LIFETIME_SECS - 1));
        assert!(c.contains(&key(1)));
        // Dropped exactly at the lifetime (C: `time > now - 2 days` keeps it).
        assert!(c.check_and_insert(key(3), 1000 + REPLAY_ENTRY_LIFETIME_SECS));
        assert!(!c.contains(&key(1)));
        assert!(c.check_and_insert(key(1), 1000 + REPLAY_ENTRY_LIFETIME_SECS));
        assert_eq!(c.oldest_time(), Some(1000 + REPLAY_ENTRY_LIFETIME_SECS - 1));
    }

    #[test]
    fn evicts_the_oldest_entry_when_full() {
        let mut c = ReplayCache::with_max_entries(3);
        for i in 0..5 {
            assert!(c.check_and_insert(key(i), 10 + i64::from(i)));
        }
        assert_eq!(c.len(), 3);
        assert!(!c.contains(&key(0)));
        assert!(!c.contains(&key(1)));
        assert!(c.contains(&key(4)));
        assert_eq!(c.oldest_time(), Some(12));
    }

    #[test]
    fn cache_is_send() {
        fn assert_send<T: Send>(_: &T) {}
        assert_send(&ReplayCache::new());
    }
}
