//! The client role (for the parity harness): a fake-TLS ClientHello and the ServerHello check,
//! as TDLib does them.

use rand::RngCore;

use super::probe::{chrome_like_hello, x25519_entry};
use super::{be16, CHANGE_CIPHER_SPEC, RANDOM_LEN, RANDOM_OFFSET};
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
    let Some(header) = response.get(..5) else {
        return Ok(None);
    };
    if header[..3] != [0x16, 0x03, 0x03] {
        return Err(VerifyError::NotServerHello);
    }
    let hello_len = usize::from(header[3]) << 8 | usize::from(header[4]);
    // Type, length, version, random, session id length, session id, cipher suite.
    if hello_len < 4 + 2 + 32 + 1 + 32 + 2 {
        return Err(VerifyError::NotServerHello);
    }
    let ccs = 5 + hello_len;
    let Some(tail) = response.get(ccs..ccs + 11) else {
        if response.len() > 5 && response[5] != 0x02 {
            return Err(VerifyError::NotServerHello);
        }
        return Ok(None);
    };
    if response[5] != 0x02 {
        return Err(VerifyError::NotServerHello);
    }
    if tail[..6] != CHANGE_CIPHER_SPEC {
        return Err(VerifyError::BadChangeCipherSpec);
    }
    if tail[6..9] != [0x17, 0x03, 0x03] {
        return Err(VerifyError::BadAppData);
    }
    let app_data_len = be16(tail, 9).unwrap_or(0);
    let total = ccs + 11 + app_data_len;
    let Some(r) = response.get(..total) else {
        return Ok(None);
    };
    let zeros = [0u8; RANDOM_LEN];
    let expected = hmac_sha256(
        secret,
        &[
            client_random,
            &r[..RANDOM_OFFSET],
            &zeros,
            &r[RANDOM_OFFSET + RANDOM_LEN..],
        ],
    );
    if expected[..] != r[RANDOM_OFFSET..RANDOM_OFFSET + RANDOM_LEN] {
        return Err(VerifyError::BadHmac);
    }
    let mut session_id = [0u8; 32];
    session_id.copy_from_slice(&r[44..76]);
    Ok(Some(ServerHelloInfo {
        consumed: total,
        session_id,
        cipher_suite: [r[76], r[77]],
        app_data_len,
    }))
}
