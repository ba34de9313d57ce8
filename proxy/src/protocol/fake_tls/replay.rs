//! The ClientHello replay cache (§4.4.1 step 4, §9).

use std::collections::{HashSet, VecDeque};

/// How long a cached client random is kept: 2 days, as C's `MAX_CLIENT_RANDOM_CACHE_TIME`.
///
/// An entry inserted at `t` is dropped once `t <= now - REPLAY_ENTRY_LIFETIME_SECS`.
pub const REPLAY_ENTRY_LIFETIME_SECS: i64 = 2 * 86_400;

/// The default bound on cached entries: 2^18 = 262 144 (C keeps an unbounded list).
///
/// Each entry costs one 16-byte key in a hash set plus a 24-byte (key, time) slot in a
/// queue; with the tables' growth slack the worst case is about 20 MB.
pub const DEFAULT_MAX_REPLAY_ENTRIES: usize = 1 << 18;

/// The youngest fake-TLS entry that may be evicted to make room, in seconds: an entry cached
/// at `t` can only be dropped once `t <= now - HELLO_MIN_RETENTION_SECS` (603 = the 600 s
/// timestamp window + the 3 s of allowed clock skew).
///
/// Why this is safe: a hello is only ever accepted with a timestamp `ts <= t + 3` (checked
/// against the same clock), so once `t <= now - 603` its `ts <= now - 600` fails the
/// window, and since eviction takes the oldest entry first, `t` is at most the new oldest
/// entry time, so `ts > oldest + 3` (see [`ReplayCheck::oldest_time`]) fails too: a replay
/// of an evicted hello is rejected as stale. A younger entry is never evicted: when the
/// cache is full of them, the new key is refused ([`ReplayVerdict::Full`]).
pub const HELLO_MIN_RETENTION_SECS: i64 = 600 + 3;

/// What [`ReplayCache::check`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayVerdict {
    /// The key was not cached; it is now.
    Fresh,
    /// The key is cached: a replay. Nothing changed.
    Replay,
    /// The key was not cached, but the cache is full of entries younger than its minimum
    /// retention, so it was not inserted. The caller must treat the key as a replay: it
    /// could not be remembered, so accepting it would let a later replay of it pass.
    Full,
}

/// What [`super::validate_client_hello`] needs from a replay cache.
///
/// [`ReplayCache`] is the single-owner implementation; a runtime that shares one cache
/// between connections implements this for its lock guard (C keeps one per process).
pub trait ReplayCheck {
    /// Checks `key` (the first 16 bytes of `client_random`) and records it.
    ///
    /// Returns `true` if the key was not cached and now is. Returns `false` if it is
    /// already cached (a replay; nothing changes) or if it could not be recorded (a full
    /// cache; nothing changes): either way the hello must be rejected.
    fn check_and_insert(&mut self, key: [u8; 16], now_unix: i64) -> bool;

    /// The insertion time of the oldest cached entry, if any.
    ///
    /// C accepts a timestamp newer than this + 3 s even outside the 600-second window: a
    /// hello created after the oldest entry was cached would still be in the cache if it
    /// had been seen before. That holds because every accepted hello is cached, entries
    /// leave oldest first, and insertion times never go backwards (see
    /// [`ReplayCache::insert`]).
    fn oldest_time(&self) -> Option<i64>;
}

/// Client randoms (or obfuscated2 nonces) seen recently, keyed on 16 bytes.
///
/// Insert and lookup are O(1) (a hash set plus a time-ordered queue). Entries live
/// [`REPLAY_ENTRY_LIFETIME_SECS`]; at most `max_entries` are kept. When the cache is full,
/// the oldest entries older than `min_retention` seconds are evicted to make room; if the
/// oldest one is younger, nothing is evicted and the new key is refused
/// ([`ReplayVerdict::Full`]): the cache never forgets a key that could still be accepted.
#[derive(Debug, Clone)]
pub struct ReplayCache {
    /// The cached keys, for lookup.
    keys: HashSet<[u8; 16]>,
    /// The cached keys with their insertion time, in insertion order (times ascending).
    by_time: VecDeque<([u8; 16], i64)>,
    /// The bound on `keys.len()`.
    max_entries: usize,
    /// An entry younger than this many seconds is never evicted to make room.
    min_retention: i64,
    /// The latest insertion time ever used: insertion times are clamped to it, so that
    /// they never go backwards when the wall clock does.
    newest: i64,
}

impl Default for ReplayCache {
    fn default() -> Self {
        Self::new()
    }
}

impl ReplayCache {
    /// An empty fake-TLS cache: bounded by [`DEFAULT_MAX_REPLAY_ENTRIES`], entries kept at
    /// least [`HELLO_MIN_RETENTION_SECS`].
    pub fn new() -> Self {
        Self::with_max_entries(DEFAULT_MAX_REPLAY_ENTRIES)
    }

    /// An empty fake-TLS cache holding at most `max_entries` keys (at least 1), entries kept
    /// at least [`HELLO_MIN_RETENTION_SECS`].
    pub fn with_max_entries(max_entries: usize) -> Self {
        Self::with_retention(max_entries, HELLO_MIN_RETENTION_SECS)
    }

    /// An empty cache holding at most `max_entries` keys (at least 1) that never evicts an
    /// entry younger than `min_retention` seconds to make room (clamped to
    /// `0..=`[`REPLAY_ENTRY_LIFETIME_SECS`]; the lifetime itself means "never evict").
    pub fn with_retention(max_entries: usize, min_retention: i64) -> Self {
        Self {
            keys: HashSet::new(),
            by_time: VecDeque::new(),
            max_entries: max_entries.max(1),
            min_retention: min_retention.clamp(0, REPLAY_ENTRY_LIFETIME_SECS),
            newest: i64::MIN,
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

    /// Looks `key` up and inserts it if new (C's order: lookup, insert, then expire).
    pub fn check(&mut self, key: [u8; 16], now_unix: i64) -> ReplayVerdict {
        if self.contains(&key) {
            return ReplayVerdict::Replay;
        }
        if !self.insert(key, now_unix) {
            return ReplayVerdict::Full;
        }
        self.expire(now_unix);
        ReplayVerdict::Fresh
    }

    /// Caches `key` at `now_unix`; returns whether it is cached afterwards (`true` if it
    /// already was).
    ///
    /// The insertion time is `max(now_unix, latest insertion time)`, so the queue stays
    /// sorted and [`ReplayCheck::oldest_time`] stays a lower bound of every cached time
    /// even when the wall clock steps back. When the cache is full, expired entries are
    /// dropped, then the oldest entries inserted at or before `now_unix - min_retention`;
    /// if it is still full, `key` is not inserted and `false` is returned.
    pub fn insert(&mut self, key: [u8; 16], now_unix: i64) -> bool {
        if self.keys.contains(&key) {
            return true;
        }
        if self.keys.len() >= self.max_entries {
            self.expire(now_unix);
            let limit = now_unix.saturating_sub(self.min_retention);
            while self.keys.len() >= self.max_entries {
                match self.by_time.front() {
                    Some(&(old, t)) if t <= limit => {
                        self.by_time.pop_front();
                        self.keys.remove(&old);
                    }
                    _ => return false,
                }
            }
        }
        self.newest = self.newest.max(now_unix);
        self.keys.insert(key);
        self.by_time.push_back((key, self.newest));
        true
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
        self.check(key, now_unix) == ReplayVerdict::Fresh
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
        assert_eq!(c.check(key(1), 102), ReplayVerdict::Replay);
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
    fn a_full_cache_refuses_new_keys_instead_of_forgetting_young_ones() {
        let mut c = ReplayCache::with_max_entries(3);
        for i in 0..3 {
            assert_eq!(c.check(key(i), 10 + i64::from(i)), ReplayVerdict::Fresh);
        }
        // Entry 0 is 602 s old: a hello cached then may still carry an accepted timestamp.
        for i in 3..100 {
            assert_eq!(c.check(key(i), 10 + 602), ReplayVerdict::Full);
            assert!(!c.check_and_insert(key(i), 10 + 602));
        }
        assert_eq!(c.len(), 3);
        for i in 0..3 {
            assert!(c.contains(&key(i)));
            assert_eq!(c.check(key(i), 10 + 602), ReplayVerdict::Replay);
        }
        assert!(!c.contains(&key(3)));
        assert_eq!(c.oldest_time(), Some(10));
    }

    #[test]
    fn a_full_cache_evicts_only_entries_past_the_timestamp_window() {
        let mut c = ReplayCache::with_max_entries(3);
        for i in 0..3 {
            assert_eq!(c.check(key(i), 10 + i64::from(i)), ReplayVerdict::Fresh);
        }
        // At 10 + 603, entry 0 (inserted at 10) can no longer be accepted: evicted.
        let now = 10 + HELLO_MIN_RETENTION_SECS;
        assert_eq!(c.check(key(3), now), ReplayVerdict::Fresh);
        assert!(!c.contains(&key(0)));
        assert_eq!(c.oldest_time(), Some(11));
        // Entry 1 (inserted at 11) still could: the next key is refused.
        assert_eq!(c.check(key(4), now), ReplayVerdict::Full);
        assert_eq!(c.len(), 3);
        assert!(c.contains(&key(1)) && c.contains(&key(2)) && c.contains(&key(3)));
        // Later, each new key evicts one entry past the window, oldest first.
        assert_eq!(
            c.check(key(4), 12 + HELLO_MIN_RETENTION_SECS),
            ReplayVerdict::Fresh
        );
        assert_eq!(
            c.check(key(5), 12 + HELLO_MIN_RETENTION_SECS),
            ReplayVerdict::Fresh
        );
        assert!(!c.contains(&key(1)) && !c.contains(&key(2)));
        assert_eq!(c.oldest_time(), Some(now));
    }

    #[test]
    fn lifetime_retention_never_evicts_before_expiry() {
        let mut c = ReplayCache::with_retention(2, REPLAY_ENTRY_LIFETIME_SECS);
        assert!(c.check_and_insert(key(0), 100));
        assert!(c.check_and_insert(key(1), 200));
        assert_eq!(
            c.check(key(2), 100 + REPLAY_ENTRY_LIFETIME_SECS - 1),
            ReplayVerdict::Full
        );
        assert!(c.contains(&key(0)));
        // At the lifetime, entry 0 expires and the key fits.
        assert_eq!(
            c.check(key(2), 100 + REPLAY_ENTRY_LIFETIME_SECS),
            ReplayVerdict::Fresh
        );
        assert!(!c.contains(&key(0)));
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn insertion_times_never_go_backwards() {
        let mut c = ReplayCache::with_max_entries(2);
        assert!(c.check_and_insert(key(0), 1000));
        // The clock stepped back: the entry is stamped 1000, not 400.
        assert!(c.check_and_insert(key(1), 400));
        assert_eq!(c.oldest_time(), Some(1000));
        // Entry 0 makes room at 1000 + 603. The oldest time stays 1000 (400 would let a
        // replay of entry 0's hello, timestamped up to 1003, pass "newer than oldest + 3").
        let now = 1000 + HELLO_MIN_RETENTION_SECS;
        assert_eq!(c.check(key(2), now), ReplayVerdict::Fresh);
        assert!(c.contains(&key(1)) && !c.contains(&key(0)));
        assert_eq!(c.oldest_time(), Some(1000));
    }

    #[test]
    fn the_bound_holds_under_a_flood() {
        let mut c = ReplayCache::with_max_entries(1000);
        let mut full = 0;
        for i in 0..50_000u32 {
            // 100 keys a second for 500 s: never past the window, so nothing is evicted.
            let now = 1_000_000 + i64::from(i / 100);
            if c.check(key(i), now) == ReplayVerdict::Full {
                full += 1;
            }
            assert!(c.len() <= 1000);
        }
        assert_eq!(full, 49_000);
        for i in 0..1000 {
            assert!(c.contains(&key(i)));
        }
    }

    #[test]
    fn cache_is_send() {
        fn assert_send<T: Send>(_: &T) {}
        assert_send(&ReplayCache::new());
    }
}
