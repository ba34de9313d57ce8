//! Round trips between the two roles and proptest properties over arbitrary input.

use bytes::BytesMut;
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;

use super::*;

const NOW: i64 = 1_750_000_000;

fn domains() -> Vec<String> {
    vec!["default.example".to_string(), "www.google.com".to_string()]
}

fn accept(
    hello: &[u8],
    secrets: &[[u8; 16]],
    now: i64,
    cache: &mut ReplayCache,
) -> Result<AcceptedHello, HelloReject> {
    validate_client_hello(hello, 0, &domains(), secrets, now, cache)
}

#[test]
fn built_hellos_are_accepted_in_both_shapes() {
    let mut rng = StdRng::seed_from_u64(11);
    let secrets = [[1u8; 16], [2u8; 16]];
    for shape in [HelloShape::Chrome, HelloShape::LongTdlib] {
        let (hello, random) =
            build_client_hello(&secrets[1], "www.google.com", NOW, &mut rng, shape);
        assert_eq!(hello.len(), shape.record_len());
        let mut cache = ReplayCache::new();
        let a = accept(&hello, &secrets, NOW, &mut cache).unwrap();
        assert_eq!(a.secret_index, 1);
        assert_eq!(a.domain, 1);
        assert_eq!(a.client_random, random);
        assert_eq!(a.timestamp as i64, NOW);
        assert_eq!(a.cipher_suite, 0x01);
        // The same hello again is a replay.
        assert_eq!(
            accept(&hello, &secrets, NOW, &mut cache),
            Err(HelloReject::Replay { domain: 1 })
        );
    }
}

#[test]
fn long_tdlib_hello_has_the_tdlib_header() {
    let mut rng = StdRng::seed_from_u64(12);
    let (hello, _) = build_client_hello(&[9; 16], "a.b", NOW, &mut rng, HelloShape::LongTdlib);
    assert_eq!(&hello[..5], &[0x16, 0x03, 0x01, 0x06, 0xd8]);
    assert_eq!(
        classify_first_bytes(&hello),
        Classification::FakeTls { record_len: 1757 }
    );
}

#[test]
fn timestamp_window_and_oldest_cached_clause() {
    let mut rng = StdRng::seed_from_u64(13);
    let secret = [[7u8; 16]];
    let check = |ts: i64, cache: &mut ReplayCache, rng: &mut StdRng| {
        let (h, _) = build_client_hello(&secret[0], "www.google.com", ts, rng, HelloShape::Chrome);
        accept(&h, &secret, NOW, cache)
            .map(|_| ())
            .map_err(|e| e.class())
    };
    let fresh = || {
        // A cache whose oldest entry is the hello itself (time NOW), as C's after one insert.
        ReplayCache::new()
    };
    assert_eq!(check(NOW - 590, &mut fresh(), &mut rng), Ok(()));
    assert_eq!(check(NOW + 2, &mut fresh(), &mut rng), Ok(()));
    assert_eq!(check(NOW + 3, &mut fresh(), &mut rng), Ok(()));
    assert_eq!(
        check(NOW + 4, &mut fresh(), &mut rng),
        Err("FutureTimestamp")
    );
    assert_eq!(
        check(NOW + 10, &mut fresh(), &mut rng),
        Err("FutureTimestamp")
    );
    assert_eq!(check(NOW - 599, &mut fresh(), &mut rng), Ok(()));
    assert_eq!(
        check(NOW - 600, &mut fresh(), &mut rng),
        Err("StaleTimestamp")
    );
    assert_eq!(
        check(NOW - 610, &mut fresh(), &mut rng),
        Err("StaleTimestamp")
    );
    // An entry cached a day ago widens the window to "newer than it + 3".
    let mut old = ReplayCache::new();
    old.insert([0xee; 16], NOW - 86_400);
    assert_eq!(check(NOW - 3_600, &mut old, &mut rng), Ok(()));
    assert_eq!(
        check(NOW - 86_400 + 3, &mut old, &mut rng),
        Err("StaleTimestamp")
    );
    assert_eq!(check(NOW - 86_400 + 4, &mut old, &mut rng), Ok(()));
}

#[test]
fn server_hello_round_trip() {
    let mut rng = StdRng::seed_from_u64(14);
    let secret = [5u8; 16];
    let (hello, random) =
        build_client_hello(&secret, "www.google.com", NOW, &mut rng, HelloShape::Chrome);
    let a = accept(&hello, &[secret], NOW, &mut ReplayCache::new()).unwrap();
    for randomize in [false, true] {
        let profile = DomainProfile {
            reversed_extension_order: randomize,
            encrypted_size: 2000,
            randomize,
        };
        let mut response = build_server_hello(&a, &secret, &profile, &mut rng);
        let len = response.len();
        response.extend_from_slice(&[0x17, 3, 3, 0, 0]);
        let info = verify_server_hello(&response, &random, &secret)
            .unwrap()
            .unwrap();
        assert_eq!(info.consumed, len);
        assert_eq!(&info.session_id[..], &hello[44..76]);
        assert_eq!(info.cipher_suite, [0x13, 0x01]);
        assert_eq!(
            verify_server_hello(&response[..len - 1], &random, &secret),
            Ok(None)
        );
        assert_eq!(
            verify_server_hello(&response, &random, &[6u8; 16]),
            Err(VerifyError::BadHmac)
        );
    }
}

fn decode_all(chunks: &[&[u8]]) -> Result<Vec<u8>, RecordError> {
    let mut d = ClientRecordDecoder::new();
    let mut src = BytesMut::new();
    let mut out = Vec::new();
    for c in chunks {
        src.extend_from_slice(c);
        while let Some(p) = d.decode(&mut src)? {
            out.extend_from_slice(&p);
        }
    }
    Ok(out)
}

proptest! {
    #[test]
    fn classify_and_validate_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1200), extra in 0usize..3, now in any::<i64>()) {
        let _ = classify_first_bytes(&bytes);
        let mut cache = ReplayCache::with_max_entries(4);
        let _ = validate_client_hello(&bytes, extra, &domains(), &[[1; 16]], now / 4, &mut cache);
        let _ = sni_domain(&bytes, &domains());
    }

    #[test]
    fn validate_never_panics_on_well_framed_records(body in proptest::collection::vec(any::<u8>(), 0..900), sni_at in 0usize..900) {
        // A valid header with an arbitrary body, with the SNI bytes dropped somewhere in it.
        let mut body = body;
        let sni = b"\x00\x00\x00\x13\x00\x11\x00\x00\x0ewww.google.com";
        let at = sni_at.min(body.len());
        body.splice(at..at, sni.iter().copied());
        let mut rec = vec![0x16, 0x03, 0x01];
        rec.extend_from_slice(&(body.len() as u16).to_be_bytes());
        rec.extend_from_slice(&body);
        let _ = validate_client_hello(&rec, 0, &domains(), &[[1; 16]], NOW, &mut ReplayCache::new());
    }

    #[test]
    fn record_decoder_and_probe_parser_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600), sid in any::<[u8; 32]>()) {
        let _ = decode_all(&[&bytes]);
        let mut after_ccs = CHANGE_CIPHER_SPEC.to_vec();
        after_ccs.extend_from_slice(&bytes);
        let _ = decode_all(&[&after_ccs]);
        let _ = parse_probe_response(&bytes, &sid);
        let mut framed = vec![0x16, 0x03, 0x03];
        framed.extend_from_slice(&bytes);
        let _ = parse_probe_response(&framed, &sid);
        let _ = verify_server_hello(&framed, &sid, &[0; 16]);
    }

    #[test]
    fn records_round_trip_under_any_split(first in proptest::collection::vec(any::<u8>(), 64..200), rest in proptest::collection::vec(any::<u8>(), 0..5000), cuts in proptest::collection::vec(any::<usize>(), 0..8)) {
        let mut stream = CHANGE_CIPHER_SPEC.to_vec();
        encode_app_data_records(&first, &mut stream);
        let first_len = stream.len();
        encode_app_data_records(&rest, &mut stream);
        prop_assert!(stream.len() - first_len <= rest.len() + 5 * rest.len().div_ceil(MAX_SERVER_RECORD_PAYLOAD));
        let mut expected = first.clone();
        expected.extend_from_slice(&rest);
        // The 1425-cut only splits `first` if it is longer, which it is not.
        prop_assert_eq!(decode_all(&[&stream]).unwrap(), expected.clone());
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
        points.sort_unstable();
        let mut chunks = Vec::new();
        let mut prev = 0;
        for p in points {
            chunks.push(&stream[prev..p]);
            prev = p;
        }
        chunks.push(&stream[prev..]);
        prop_assert_eq!(decode_all(&chunks).unwrap(), expected);
    }

    #[test]
    fn client_hello_round_trips(seed in any::<u64>(), secret in any::<[u8; 16]>(), skew in -599i64..=3, long in any::<bool>(), sni_pick in 0usize..2) {
        let mut rng = StdRng::seed_from_u64(seed);
        let shape = if long { HelloShape::LongTdlib } else { HelloShape::Chrome };
        let d = domains();
        let (hello, random) = build_client_hello(&secret, &d[sni_pick], NOW + skew, &mut rng, shape);
        let a = validate_client_hello(&hello, 0, &d, &[[0; 16], secret], NOW, &mut ReplayCache::new());
        // A zero secret could match by accident only with negligible probability.
        let a = a.unwrap();
        prop_assert_eq!(a.secret_index, 1);
        prop_assert_eq!(a.domain, sni_pick);
        prop_assert_eq!(a.client_random, random);
        let profile = DomainProfile { reversed_extension_order: long, encrypted_size: 1000 + (seed % 3000) as u16, randomize: seed % 2 == 0 };
        let response = build_server_hello(&a, &secret, &profile, &mut rng);
        let info = verify_server_hello(&response, &random, &secret).unwrap().unwrap();
        prop_assert_eq!(info.consumed, response.len());
    }
}
