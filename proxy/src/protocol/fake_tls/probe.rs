//! The sans-IO half of the startup domain probe (§4.4.5): the request, the response check
//! and the aggregation over the parallel probes.

use rand::RngCore;
use x25519_dalek::{PublicKey, StaticSecret};

use super::server_hello::DomainProfile;
use super::wire::{put16, CHANGE_CIPHER_SPEC};
use crate::protocol::codec::Reader;

/// How many parallel probe connections C opens per domain (all must succeed).
pub const PROBE_CONNECTIONS: usize = 20;

/// The length of C's probe ClientHello, header included.
pub const PROBE_HELLO_LEN: usize = 517;

/// The `server_random` of a TLS 1.3 HelloRetryRequest (RFC 8446 §4.1.3).
const HELLO_RETRY_RANDOM: [u8; 32] = [
    0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
    0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
];

/// Why a probe response (or request) was not usable; C then falls back to
/// [`DomainProfile::fallback`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    /// The domain does not fit into a 517-byte hello (C asserts).
    #[error("domain name too long for the probe ClientHello")]
    DomainTooLong,
    /// The response breaks one of C's `check_response` rules (C's message).
    #[error("failed to parse upstream TLS response: {0}")]
    BadResponse(&'static str),
}

/// What one probe response says about the domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeFacts {
    /// supported_versions (0x2b) came before key_share.
    pub reversed_extension_order: bool,
    /// The length of the first application-data record.
    pub encrypted_size: u16,
    /// How many bytes of the input the response took (C reads exactly these).
    pub consumed: usize,
}

/// The GREASE values of one hello: `?A` bytes, with neighbours in pairs made distinct.
fn greases(rng: &mut (impl RngCore + ?Sized)) -> [u8; 7] {
    let mut g = [0u8; 7];
    rng.fill_bytes(&mut g);
    for b in &mut g {
        *b = (*b & 0xf0) | 0x0a;
    }
    for i in (1..7).step_by(2) {
        if g[i] == g[i - 1] {
            g[i] ^= 0x10;
        }
    }
    g
}

/// A Chrome-like ClientHello in C's probe layout (`create_request`).
///
/// `random` and `session_id` fill bytes 11..43 and 44..76; `key_share` is the key_share
/// extension's entries after the GREASE entry; `total` is the wanted length of the whole
/// record, reached with a padding extension (`00 15`). If the content does not leave room
/// for the padding extension's header, returns the smallest `total` that does.
pub(crate) fn chrome_like_hello(
    rng: &mut (impl RngCore + ?Sized),
    sni: &[u8],
    random: &[u8; 32],
    session_id: &[u8; 32],
    key_share: &[u8],
    total: usize,
) -> Result<Vec<u8>, usize> {
    let g = greases(rng);
    let mut h = Vec::with_capacity(total);
    h.extend_from_slice(&[0x16, 0x03, 0x01, 0, 0, 0x01, 0, 0, 0, 0x03, 0x03]);
    h.extend_from_slice(random);
    h.push(0x20);
    h.extend_from_slice(session_id);
    h.extend_from_slice(&[0x00, 0x22, g[0], g[0]]);
    h.extend_from_slice(&[
        0x13, 0x01, 0x13, 0x02, 0x13, 0x03, 0xc0, 0x2b, 0xc0, 0x2f, 0xc0, 0x2c, 0xc0, 0x30, 0xcc,
        0xa9, 0xcc, 0xa8, 0xc0, 0x13, 0xc0, 0x14, 0x00, 0x9c, 0x00, 0x9d, 0x00, 0x2f, 0x00, 0x35,
        0x00, 0x0a,
    ]);
    h.extend_from_slice(&[0x01, 0x00]);
    let ext_len_pos = h.len();
    h.extend_from_slice(&[0, 0]);
    h.extend_from_slice(&[g[2], g[2], 0x00, 0x00]);
    h.extend_from_slice(&[0x00, 0x00]);
    put16(&mut h, sni.len() + 5);
    put16(&mut h, sni.len() + 3);
    h.push(0x00);
    put16(&mut h, sni.len());
    h.extend_from_slice(sni);
    h.extend_from_slice(&[
        0x00, 0x17, 0x00, 0x00, 0xff, 0x01, 0x00, 0x01, 0x00, 0x00, 0x0a, 0x00, 0x0a, 0x00, 0x08,
        g[4], g[4],
    ]);
    h.extend_from_slice(&[
        0x00, 0x1d, 0x00, 0x17, 0x00, 0x18, 0x00, 0x0b, 0x00, 0x02, 0x01, 0x00, 0x00, 0x23, 0x00,
        0x00, 0x00, 0x10, 0x00, 0x0e, 0x00, 0x0c, 0x02, 0x68, 0x32, 0x08, 0x68, 0x74, 0x74, 0x70,
        0x2f, 0x31, 0x2e, 0x31, 0x00, 0x05, 0x00, 0x05, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0d,
        0x00, 0x14, 0x00, 0x12, 0x04, 0x03, 0x08, 0x04, 0x04, 0x01, 0x05, 0x03, 0x08, 0x05, 0x05,
        0x01, 0x08, 0x06, 0x06, 0x01, 0x02, 0x01, 0x00, 0x12, 0x00, 0x00,
    ]);
    h.extend_from_slice(&[0x00, 0x33]);
    put16(&mut h, key_share.len() + 7);
    put16(&mut h, key_share.len() + 5);
    h.extend_from_slice(&[g[4], g[4], 0x00, 0x01, 0x00]);
    h.extend_from_slice(key_share);
    h.extend_from_slice(&[
        0x00, 0x2d, 0x00, 0x02, 0x01, 0x01, 0x00, 0x2b, 0x00, 0x0b, 0x0a, g[6], g[6], 0x03, 0x04,
        0x03, 0x03, 0x03, 0x02, 0x03, 0x01, 0x00, 0x1b, 0x00, 0x03, 0x02, 0x00, 0x02, g[3], g[3],
        0x00, 0x01, 0x00, 0x00, 0x15,
    ]);
    let padding = total.checked_sub(h.len() + 2).ok_or(h.len() + 2)?;
    put16(&mut h, padding);
    h.resize(total, 0);

    let record_len = h.len() - 5;
    let handshake_len = record_len - 4;
    let ext_len = h.len() - ext_len_pos - 2;
    let sat16 = |v: usize| u16::try_from(v).unwrap_or(u16::MAX).to_be_bytes();
    h[3..5].copy_from_slice(&sat16(record_len));
    h[6..9].copy_from_slice(
        &u32::try_from(handshake_len)
            .unwrap_or(u32::MAX)
            .to_be_bytes()[1..],
    );
    h[ext_len_pos..ext_len_pos + 2].copy_from_slice(&sat16(ext_len));
    Ok(h)
}

/// The x25519 key_share entry `00 1d 00 20 <public key>` for a random scalar.
pub(crate) fn x25519_entry(rng: &mut impl RngCore) -> Vec<u8> {
    let mut scalar = [0u8; 32];
    rng.fill_bytes(&mut scalar);
    let public = PublicKey::from(&StaticSecret::from(scalar));
    let mut e = vec![0x00, 0x1d, 0x00, 0x20];
    e.extend_from_slice(public.as_bytes());
    e
}

/// The probe ClientHello C sends to a `-D` domain: 517 bytes, Chrome-like, random GREASE,
/// random client random and session id, a real x25519 key and ALPN h2/http1.1.
///
/// The session id to expect back is bytes 44..76 of the result.
///
/// # Errors
/// [`ProbeError::DomainTooLong`] when the name does not fit.
pub fn probe_client_hello(rng: &mut impl RngCore, domain: &str) -> Result<Vec<u8>, ProbeError> {
    let mut random = [0u8; 32];
    rng.fill_bytes(&mut random);
    let mut session_id = [0u8; 32];
    rng.fill_bytes(&mut session_id);
    let key_share = x25519_entry(rng);
    chrome_like_hello(
        rng,
        domain.as_bytes(),
        &random,
        &session_id,
        &key_share,
        PROBE_HELLO_LEN,
    )
    .map_err(|_| ProbeError::DomainTooLong)
}

/// Checks a domain's answer to [`probe_client_hello`] as C's `check_response` does.
///
/// `response` is the bytes read so far; `request_session_id` is the probe's bytes 44..76.
/// C reads the first record's header (it must be `16 03 03`), then that record plus 11
/// bytes (CCS and the next header, which must be `14 03 03 00 01 01 17 03 03`), then the
/// application data; bytes after that are ignored (see [`ProbeFacts::consumed`]).
///
/// # Errors
/// [`ProbeError::BadResponse`] with C's message. `Ok(None)` means more bytes are needed.
pub fn parse_probe_response(
    response: &[u8],
    request_session_id: &[u8; 32],
) -> Result<Option<ProbeFacts>, ProbeError> {
    use ProbeError::BadResponse as Bad;
    // A fixed-offset field of a ServerHello already known to be long enough.
    const TOO_SHORT: ProbeError = Bad("Too short");
    let mut input = Reader::new(response);
    let (Some(record_header), Some(hello_len)) = (input.take_array::<3>(), input.u16_be()) else {
        return Ok(None);
    };
    if record_header != [0x16, 0x03, 0x03] {
        return Err(Bad("Non-TLS response or TLS <= 1.1"));
    }
    let hello_len = usize::from(hello_len);
    let (Some(hello), Some(ccs), Some(app_header), Some(app_len)) = (
        input.take(hello_len),
        input.take_array::<6>(),
        input.take_array::<3>(),
        input.u16_be(),
    ) else {
        return Ok(None);
    };
    if ccs != CHANGE_CIPHER_SPEC || app_header != [0x17, 0x03, 0x03] {
        return Err(Bad("Expected dummy ChangeCipherSpec"));
    }
    if input.skip(usize::from(app_len)).is_none() {
        return Ok(None);
    }

    // The ServerHello handshake message (the record's body, `hello_len` bytes).
    if hello_len <= 39 {
        return Err(Bad("Receive too short ServerHello"));
    }
    let mut h = Reader::new(hello);
    // Type 2 and the high byte of its 24-bit length.
    if h.take_array::<2>().ok_or(TOO_SHORT)? != [0x02, 0x00] {
        return Err(Bad("Non-TLS response 2"));
    }
    h.skip(2).ok_or(TOO_SHORT)?;
    if h.take_array::<2>().ok_or(TOO_SHORT)? != [0x03, 0x03] {
        return Err(Bad("Non-TLS response 3"));
    }
    if h.take_array::<32>().ok_or(TOO_SHORT)? == HELLO_RETRY_RANDOM {
        return Err(Bad(
            "TLS 1.3 servers returning HelloRetryRequest are not supprted",
        ));
    }
    match h.u8().ok_or(TOO_SHORT)? {
        0 => return Err(Bad("TLS <= 1.2: empty session_id")),
        0x20 => {}
        _ => return Err(Bad("Non-TLS response 4")),
    }
    if hello_len <= 75 {
        return Err(Bad("Receive too short server hello 2"));
    }
    if h.take(32).ok_or(TOO_SHORT)? != request_session_id {
        return Err(Bad("TLS <= 1.2: expected mirrored session_id"));
    }
    // Cipher suite TLS_AES_128_GCM_SHA256, no compression.
    if h.take_array::<3>().ok_or(TOO_SHORT)? != [0x13, 0x01, 0x00] {
        return Err(Bad("TLS <= 1.2: expected x25519 as a chosen cipher"));
    }
    let ext_total = h.u16_be().ok_or(TOO_SHORT)?;
    if usize::from(ext_total) + 76 != hello_len {
        return Err(Bad("Receive wrong extensions length"));
    }
    // The extensions: the rest of the hello, exactly `ext_total` bytes.
    let mut exts = Reader::new(h.rest());
    let mut sum = 0usize;
    let mut reversed = false;
    while exts.left() > 4 {
        let id = exts.u16_be().ok_or(TOO_SHORT)?;
        if id != 0x33 && id != 0x2b {
            return Err(Bad("Receive unexpected extension"));
        }
        if exts.used() == 2 {
            reversed = id == 0x2b;
        }
        sum += usize::from(id);
        let len = usize::from(exts.u16_be().ok_or(TOO_SHORT)?);
        if len > exts.left() {
            return Err(Bad("Receive wrong extension length"));
        }
        if len != if id == 0x33 { 36 } else { 2 } {
            return Err(Bad("Unexpected extension length"));
        }
        exts.skip(len).ok_or(TOO_SHORT)?;
    }
    if sum != 0x33 + 0x2b {
        return Err(Bad("Receive duplicate extensions"));
    }
    if exts.any_left() {
        return Err(Bad("Receive wrong extensions list"));
    }
    if app_len == 0 {
        return Err(Bad("Receive empty encrypted application data"));
    }
    Ok(Some(ProbeFacts {
        reversed_extension_order: reversed,
        encrypted_size: app_len,
        consumed: input.used(),
    }))
}

/// Combines the probe results of one domain as C does; `None` for no results.
///
/// C needs all [`PROBE_CONNECTIONS`] to succeed (else it uses the fallback). The extension
/// order is the minimum (C warns when they differ). The size: all equal → that size, not
/// randomized; spread ≤ 3 → `max − 1`, randomized ±1; otherwise the mean rounded half up,
/// randomized ±1.
pub fn aggregate_probe_results(results: &[ProbeFacts]) -> Option<DomainProfile> {
    let min = results.iter().map(|f| f.encrypted_size).min()?;
    let max = results.iter().map(|f| f.encrypted_size).max()?;
    let reversed = results.iter().all(|f| f.reversed_extension_order);
    let (encrypted_size, randomize) = if min == max {
        (min, false)
    } else if max - min <= 3 {
        (max - 1, true)
    } else {
        let sum: u64 = results.iter().map(|f| u64::from(f.encrypted_size)).sum();
        let n = results.len() as u64;
        // (sum / n + 0.5) truncated, in integers: floor((2 * sum + n) / (2 * n)).
        let mean = (2 * sum + n) / (2 * n);
        (u16::try_from(mean).unwrap_or(u16::MAX), true)
    };
    Some(DomainProfile {
        reversed_extension_order: reversed,
        encrypted_size,
        randomize,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn probe_hello_is_517_bytes_with_the_c_prefix() {
        let mut rng = StdRng::seed_from_u64(1);
        let h = probe_client_hello(&mut rng, "example.com").unwrap();
        assert_eq!(h.len(), PROBE_HELLO_LEN);
        assert_eq!(&h[..11], &[0x16, 3, 1, 2, 0, 1, 0, 1, 0xfc, 3, 3]);
        let mut r = Reader::new(&h);
        r.skip(114).unwrap();
        assert_eq!(r.u16_be(), Some(401), "extensions length");
        let domains = vec!["example.com".to_string()];
        assert_eq!(
            crate::protocol::fake_tls::client_hello::sni_domain(&h, &domains),
            Some(0)
        );
        assert_eq!(
            probe_client_hello(&mut rng, &"x".repeat(300)),
            Err(ProbeError::DomainTooLong)
        );
    }

    fn facts(size: u16) -> ProbeFacts {
        ProbeFacts {
            reversed_extension_order: false,
            encrypted_size: size,
            consumed: 0,
        }
    }

    #[test]
    fn aggregation_matches_c() {
        let same = vec![facts(4000); 20];
        let p = aggregate_probe_results(&same).unwrap();
        assert_eq!((p.encrypted_size, p.randomize), (4000, false));
        let mut spread = vec![facts(4000); 19];
        spread.push(facts(4003));
        let p = aggregate_probe_results(&spread).unwrap();
        assert_eq!((p.encrypted_size, p.randomize), (4002, true));
        let mut wide = vec![facts(100); 10];
        wide.extend(vec![facts(111); 10]);
        let p = aggregate_probe_results(&wide).unwrap();
        assert_eq!(
            (p.encrypted_size, p.randomize),
            (106, true),
            "105.5 rounds up"
        );
        assert_eq!(aggregate_probe_results(&[]), None);
    }

    /// The proxy's own answer, which has the probed layout when the cipher suite is 0x01.
    fn server_response(reversed: bool, app_len: usize) -> Vec<u8> {
        let parts = crate::protocol::fake_tls::server_hello::ServerHelloParts {
            key_share_scalar: [5; 32],
            app_data: vec![0xaa; app_len],
        };
        crate::protocol::fake_tls::server_hello::build_server_hello_from_parts(
            &[1; 32], &[2; 32], 0x01, &[3; 16], reversed, &parts,
        )
    }

    /// Grows (or shrinks) the extension block by `delta` bytes at its end, fixing the
    /// record length and the extensions length.
    fn resize_extensions(r: &mut Vec<u8>, delta: i32) {
        let fix = |r: &mut Vec<u8>, at: usize| {
            let v = i32::from(u16::from_be_bytes([r[at], r[at + 1]])) + delta;
            r[at..at + 2].copy_from_slice(&u16::try_from(v).unwrap().to_be_bytes());
        };
        let n = delta.unsigned_abs() as usize;
        if delta >= 0 {
            r.splice(127..127, vec![0; n]);
        } else {
            r.drain(127 - n..127);
        }
        fix(r, 3);
        fix(r, 79);
    }

    #[test]
    fn probe_response_checks_follow_c() {
        let sid = [2u8; 32];
        for reversed in [false, true] {
            let r = server_response(reversed, 300);
            let facts = parse_probe_response(&r, &sid).unwrap().unwrap();
            assert_eq!(
                facts,
                ProbeFacts {
                    reversed_extension_order: reversed,
                    encrypted_size: 300,
                    consumed: r.len(),
                }
            );
            let mut more = r.clone();
            more.extend_from_slice(&[0x17, 3, 3]);
            assert_eq!(parse_probe_response(&more, &sid), Ok(Some(facts)));
            for cut in [0, 4, 5, 126, 137, r.len() - 1] {
                assert_eq!(parse_probe_response(&r[..cut], &sid), Ok(None), "{cut}");
            }
        }
        let bad = |r: &[u8]| match parse_probe_response(r, &sid) {
            Err(ProbeError::BadResponse(why)) => why,
            other => panic!("expected a rejection, got {other:?}"),
        };
        assert_eq!(
            bad(&server_response(false, 0)),
            "Receive empty encrypted application data"
        );
        let mut r = server_response(false, 1);
        r[43] = 0;
        assert_eq!(bad(&r), "TLS <= 1.2: empty session_id");
        let r = server_response(false, 1);
        assert_eq!(
            parse_probe_response(&r, &[0; 32]),
            Err(ProbeError::BadResponse(
                "TLS <= 1.2: expected mirrored session_id"
            ))
        );
        // Only key_share: supported_versions is missing.
        let mut r = server_response(false, 1);
        resize_extensions(&mut r, -6);
        assert_eq!(bad(&r), "Receive duplicate extensions");
        // Three stray bytes after both extensions.
        let mut r = server_response(false, 1);
        resize_extensions(&mut r, 3);
        assert_eq!(bad(&r), "Receive wrong extensions list");
        // key_share cut short: its length runs past the extensions.
        let mut r = server_response(true, 1);
        resize_extensions(&mut r, -2);
        assert_eq!(bad(&r), "Receive wrong extension length");
        // Extensions length disagreeing with the record length.
        let mut r = server_response(false, 1);
        r[80] += 1;
        assert_eq!(bad(&r), "Receive wrong extensions length");
    }
}
