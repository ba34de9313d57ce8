//! ClientHello validation: the order of the checks, the HMAC before the cache, the cache's bounds.

use super::*;
use crate::protocol::fake_tls::{
    build_client_hello, HelloShape, ReplayCache, HELLO_MIN_RETENTION_SECS,
};
use rand::rngs::StdRng;
use rand::SeedableRng;

const NOW: i64 = 1_750_000_000;
const SECRET: [u8; 16] = [7; 16];

fn domains() -> Vec<String> {
    vec!["default.example".to_string(), "www.google.com".to_string()]
}

fn hello(secret: &[u8; 16], ts: i64, rng: &mut StdRng) -> Vec<u8> {
    build_client_hello(secret, "www.google.com", ts, rng, HelloShape::Chrome).0
}

fn validate(
    record: &[u8],
    now: i64,
    cache: &mut ReplayCache,
) -> Result<AcceptedHello, HelloReject> {
    validate_client_hello(record, 0, &domains(), &[SECRET], now, cache)
}

#[test]
fn a_bad_hmac_flood_does_not_displace_a_recorded_random() {
    let mut rng = StdRng::seed_from_u64(1);
    let mut cache = ReplayCache::with_max_entries(16);
    let captured = hello(&SECRET, NOW, &mut rng);
    assert!(validate(&captured, NOW, &mut cache).is_ok());
    // Far more hellos than the cache holds, valid SNI, no secret, for 20 minutes.
    for i in 0..2_000 {
        let now = NOW + i / 2;
        let junk = hello(&[0xee; 16], now, &mut rng);
        assert_eq!(
            validate(&junk, now, &mut cache),
            Err(HelloReject::BadHmac { domain: 1 })
        );
    }
    assert_eq!(cache.len(), 1);
    assert!(cache.contains(captured[11..27].try_into().unwrap()));
    // Replayed within the window, the captured hello is still caught.
    assert_eq!(
        validate(&captured, NOW + 500, &mut cache),
        Err(HelloReject::Replay { domain: 1 })
    );
}

#[test]
fn the_hmac_is_checked_before_the_cache() {
    let mut rng = StdRng::seed_from_u64(2);
    let mut cache = ReplayCache::new();
    let bad = hello(&[0xee; 16], NOW, &mut rng);
    let key: [u8; 16] = bad[11..27].try_into().unwrap();
    assert!(cache.insert(key, NOW - 5));
    // C: Replay (cache first). Here: BadHmac, and the cache is not touched.
    assert_eq!(
        validate(&bad, NOW, &mut cache),
        Err(HelloReject::BadHmac { domain: 1 })
    );
    assert_eq!(cache.len(), 1);
    let start = authenticate_client_hello(
        &hello(&SECRET, NOW, &mut rng),
        0,
        &domains(),
        &[[1; 16], SECRET],
    )
    .unwrap();
    assert_eq!(
        start.auth.map(|a| (a.secret_index, a.timestamp as i64)),
        Some((1, NOW))
    );
    assert_eq!(
        authenticate_client_hello(&bad, 0, &domains(), &[SECRET]),
        Err(HelloReject::BadHmac { domain: 1 })
    );
}

#[test]
fn c_order_start_still_checks_the_hmac_in_finish() {
    let mut rng = StdRng::seed_from_u64(3);
    let good = hello(&SECRET, NOW, &mut rng);
    let start = start_client_hello(&good, 0, &domains()).unwrap();
    assert_eq!(start.auth, None);
    let fresh = ReplayAnswer {
        fresh: true,
        oldest: Some(NOW),
    };
    let a = finish_client_hello(&good, start, fresh, &[SECRET], NOW).unwrap();
    assert_eq!((a.secret_index, i64::from(a.timestamp)), (0, NOW));
    assert_eq!(
        finish_client_hello(&good, start, fresh, &[[1; 16]], NOW),
        Err(HelloReject::BadHmac { domain: 1 })
    );
}

#[test]
fn a_full_cache_rejects_valid_hellos_and_never_lets_a_replay_through() {
    let mut rng = StdRng::seed_from_u64(4);
    let mut cache = ReplayCache::with_max_entries(2);
    let h1 = hello(&SECRET, NOW, &mut rng);
    let h2 = hello(&SECRET, NOW, &mut rng);
    let h3 = hello(&SECRET, NOW, &mut rng);
    assert!(validate(&h1, NOW, &mut cache).is_ok());
    assert!(validate(&h2, NOW, &mut cache).is_ok());
    // Full of entries that could still be replayed: the new hello is refused, as a replay.
    assert_eq!(
        validate(&h3, NOW + 1, &mut cache),
        Err(HelloReject::Replay { domain: 1 })
    );
    assert_eq!(cache.len(), 2);
    for h in [&h1, &h2] {
        assert_eq!(
            validate(h, NOW + 599, &mut cache),
            Err(HelloReject::Replay { domain: 1 })
        );
    }
    // Once the window has passed for h1 and h2, a new hello takes h1's slot...
    let later = NOW + HELLO_MIN_RETENTION_SECS;
    let h4 = hello(&SECRET, later, &mut rng);
    assert!(validate(&h4, later, &mut cache).is_ok());
    // ...and replays of everything seen before are still rejected: the evicted h1 (and
    // h3, never cached) by the timestamp rule, whatever the oldest entry is now.
    for (h, now) in [
        (&h1, later),
        (&h3, later),
        (&h2, later + 1),
        (&h4, later + 2),
    ] {
        let r = validate(h, now, &mut cache);
        assert!(
            matches!(
                r,
                Err(HelloReject::Replay { .. } | HelloReject::StaleTimestamp { .. })
            ),
            "{r:?}"
        );
    }
}
