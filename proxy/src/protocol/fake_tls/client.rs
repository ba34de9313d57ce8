//! The client role (for the parity harness): a fake-TLS ClientHello and the ServerHello check,
//! as TDLib does them.

use rand::RngCore;

use super::probe::{chrome_like_hello, x25519_entry};
use super::wire::{CHANGE_CIPHER_SPEC, RANDOM_LEN, RANDOM_OFFSET};
use crate::protocol::codec::Reader;
use crate::protocol::crypto::hmac_sha256;

/// The shape of the ClientHello to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HelloShape {
    /// C's Chrome-like probe layout: a 517-byte record (`L = 512`).
    Chrome,
    /// Like TDLib 1.8.69: an X25519MLKEM768 (0x11ec, 1216-byte) key share ahead of the
    /// x25519 one, padded to `L = 1752` (`16 03 01 06 d8`).
    LongTdlib,
}

impl HelloShape {
    /// The record length, header included, this shape is padded to.
    pub fn record_len(self) -> usize {
        match self {
            Self::Chrome => 517,
            Self::LongTdlib => 5 + 1752,
        }
    }
}

/// Builds a fake-TLS ClientHello for `secret`, claiming `sni`, at time `now_unix`.
///
/// The hello is built with a zero `client_random`; then `random = HMAC-SHA256(secret,
/// record)` with its last 4 bytes XORed with the little-endian `now_unix` (as i32). Returns
/// the record and the random. If the SNI is too long for the shape's length, the padding
/// extension is dropped and the hello is longer (names under 65000 bytes stay well-formed).
pub fn build_client_hello(
    secret: &[u8; 16],
    sni: &str,
    now_unix: i64,
    rng: &mut impl RngCore,
    shape: HelloShape,
) -> (Vec<u8>, [u8; 32]) {
    let mut session_id = [0u8; 32];
    rng.fill_bytes(&mut session_id);
    let mut key_share = Vec::new();
    if shape == HelloShape::LongTdlib {
        key_share.extend_from_slice(&[0x11, 0xec, 0x04, 0xc0]);
        let mut mlkem = vec![0u8; 1216];
        rng.fill_bytes(&mut mlkem);
        key_share.extend_from_slice(&mlkem);
    }
    key_share.extend_from_slice(&x25519_entry(rng));
    let zero = [0u8; 32];
    let build = |rng: &mut dyn RngCore, total| {
        chrome_like_hello(rng, sni.as_bytes(), &zero, &session_id, &key_share, total)
    };
    let mut hello = match build(rng, shape.record_len()) {
        Ok(h) => h,
        // Too long for the shape: the smallest length where the padding header fits.
        Err(min_total) => build(rng, min_total).unwrap_or_default(),
    };
    let mut random = hmac_sha256(secret, &[&hello]);
    // C reads the timestamp as a 32-bit int; keep the low 32 bits of the time.
    let ts = (now_unix as i32).to_le_bytes();
    for (r, t) in random[28..].iter_mut().zip(ts) {
        *r ^= t;
    }
    hello[RANDOM_OFFSET..RANDOM_OFFSET + RANDOM_LEN].copy_from_slice(&random);
    (hello, random)
}

/// What the client learned from a valid ServerHello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerHelloInfo {
    /// Bytes of the input taken by ServerHello + ChangeCipherSpec + application data;
    /// application-data records follow.
    pub consumed: usize,
    /// The session id echoed by the server (bytes 44..76).
    pub session_id: [u8; 32],
    /// The chosen cipher suite (bytes 76..78).
    pub cipher_suite: [u8; 2],
    /// The length of the fake application data.
    pub app_data_len: usize,
}

/// Why a ServerHello was refused by the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The first record is not a TLS 1.2-framed ServerHello long enough to hold the fields.
    #[error("not a ServerHello record")]
    NotServerHello,
    /// The ServerHello is not followed by `14 03 03 00 01 01`.
    #[error("no ChangeCipherSpec after the ServerHello")]
    BadChangeCipherSpec,
    /// The ChangeCipherSpec is not followed by an application-data record header.
    #[error("no application data after the ChangeCipherSpec")]
    BadAppData,
    /// `server_random` is not the HMAC of the client random and the response.
    #[error("server random does not match the secret")]
    BadHmac,
}

/// Checks the proxy's response to [`build_client_hello`] as TDLib does.
///
/// The response is `16 03 03 <L> <ServerHello>`, `14 03 03 00 01 01`, `17 03 03 <n> <n
/// bytes>`, and `server_random` (bytes 11..43) must equal `HMAC-SHA256(secret, client_random
/// ‖ those bytes with server_random zeroed)`.
///
/// # Errors
/// A [`VerifyError`]; `Ok(None)` means more bytes are needed.
pub fn verify_server_hello(
    response: &[u8],
    client_random: &[u8; 32],
    secret: &[u8; 16],
) -> Result<Option<ServerHelloInfo>, VerifyError> {
    let mut input = Reader::new(response);
    let (Some(record_header), Some(hello_len)) = (input.take_array::<3>(), input.u16_be()) else {
        return Ok(None);
    };
    if record_header != [0x16, 0x03, 0x03] {
        return Err(VerifyError::NotServerHello);
    }
    let hello_len = usize::from(hello_len);
    // Type, length, version, random, session id length, session id, cipher suite.
    if hello_len < 4 + 2 + 32 + 1 + 32 + 2 {
        return Err(VerifyError::NotServerHello);
    }
    // The handshake type, which must be ServerHello (2), is checked as soon as it is there.
    let hello_type = input.clone().u8();
    let (Some(()), Some(ccs), Some(app_header), Some(app_data_len)) = (
        input.skip(hello_len),
        input.take_array::<6>(),
        input.take_array::<3>(),
        input.u16_be(),
    ) else {
        if hello_type.is_some_and(|t| t != 0x02) {
            return Err(VerifyError::NotServerHello);
        }
        return Ok(None);
    };
    if hello_type != Some(0x02) {
        return Err(VerifyError::NotServerHello);
    }
    if ccs != CHANGE_CIPHER_SPEC {
        return Err(VerifyError::BadChangeCipherSpec);
    }
    if app_header != [0x17, 0x03, 0x03] {
        return Err(VerifyError::BadAppData);
    }
    let app_data_len = usize::from(app_data_len);
    if input.skip(app_data_len).is_none() {
        return Ok(None);
    }
    // The whole response: header, ServerHello, ChangeCipherSpec, application data.
    let mut r = Reader::new(input.consumed());
    let (Some(before_random), Some(server_random)) = (r.take(RANDOM_OFFSET), r.take(RANDOM_LEN))
    else {
        return Err(VerifyError::NotServerHello);
    };
    let after_random = r.rest();
    let zeros = [0u8; RANDOM_LEN];
    let expected = hmac_sha256(
        secret,
        &[client_random, before_random, &zeros, after_random],
    );
    if expected[..] != *server_random {
        return Err(VerifyError::BadHmac);
    }
    // After the random: session id length, session id, cipher suite.
    let mut fields = Reader::new(after_random);
    let (Some(_), Some(session_id), Some(cipher_suite)) = (
        fields.u8(),
        fields.take_array::<32>(),
        fields.take_array::<2>(),
    ) else {
        return Err(VerifyError::NotServerHello);
    };
    Ok(Some(ServerHelloInfo {
        consumed: input.used(),
        session_id,
        cipher_suite,
        app_data_len,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::fake_tls::server_hello::{
        build_server_hello_from_parts, ServerHelloParts,
    };

    fn response(app_len: usize) -> Vec<u8> {
        let parts = ServerHelloParts {
            key_share_scalar: [5; 32],
            app_data: vec![0xaa; app_len],
        };
        build_server_hello_from_parts(&[1; 32], &[2; 32], 0x03, &[3; 16], false, &parts)
    }

    #[test]
    fn server_hello_is_verified_whole_and_reports_its_fields() {
        let r = response(40);
        let info = verify_server_hello(&r, &[1; 32], &[3; 16])
            .unwrap()
            .unwrap();
        assert_eq!(
            info,
            ServerHelloInfo {
                consumed: r.len(),
                session_id: [2; 32],
                cipher_suite: [0x13, 0x03],
                app_data_len: 40,
            }
        );
        let mut more = r.clone();
        more.extend_from_slice(&[0x17, 3, 3, 0, 1, 0]);
        assert_eq!(
            verify_server_hello(&more, &[1; 32], &[3; 16]),
            Ok(Some(info))
        );
        for cut in [0, 4, 5, 6, 137, r.len() - 1] {
            assert_eq!(
                verify_server_hello(&r[..cut], &[1; 32], &[3; 16]),
                Ok(None),
                "{cut}"
            );
        }
        assert_eq!(
            verify_server_hello(&r, &[0; 32], &[3; 16]),
            Err(VerifyError::BadHmac)
        );
    }

    #[test]
    fn a_wrong_handshake_type_is_refused_before_the_record_is_complete() {
        let mut r = response(40);
        r[5] = 0x01;
        for cut in [6, 100, r.len()] {
            assert_eq!(
                verify_server_hello(&r[..cut], &[1; 32], &[3; 16]),
                Err(VerifyError::NotServerHello),
                "{cut}"
            );
        }
        let mut r = response(40);
        r[4] = 72;
        assert_eq!(
            verify_server_hello(&r[..5], &[1; 32], &[3; 16]),
            Err(VerifyError::NotServerHello),
            "a ServerHello too short for its fields"
        );
        let mut r = response(40);
        r[127] = 0x15;
        assert_eq!(
            verify_server_hello(&r, &[1; 32], &[3; 16]),
            Err(VerifyError::BadChangeCipherSpec)
        );
        let mut r = response(40);
        r[133] = 0x16;
        assert_eq!(
            verify_server_hello(&r, &[1; 32], &[3; 16]),
            Err(VerifyError::BadAppData)
        );
    }
}
