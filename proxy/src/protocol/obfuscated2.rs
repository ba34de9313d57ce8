//! The obfuscated2 64-byte client header (§4.2), both roles.
//!
//! Layout (wire bytes 0..56 are sent in clear, 56..64 encrypted):
//! `random[8] ‖ key seed[32] ‖ iv seed[16] ‖ tag[4] ‖ dc i16 LE ‖ random[2]`.
//!
//! With `rev` the byte reversal of `hdr[8..56]`, and `secret` a 16-byte `-S` secret:
//! * client→proxy stream: key `SHA256(hdr[8..40] ‖ secret)`, iv `hdr[40..56]`;
//! * proxy→client stream: key `SHA256(rev[0..32] ‖ secret)`, iv `rev[32..48]`;
//! * secretless mode (no `-S`): the raw seeds are the keys, no SHA256.
//!
//! Both streams are AES-256-CTR. The client encrypts the whole header with its stream and
//! sends bytes 56..64 of the result, so client data continues at keystream offset 64; the
//! proxy→client stream starts at offset 0.
//!
//! * Server role: [`parse_header`] tries each secret in order.
//! * Client role (the parity harness's simulator): [`ClientHandshake`].

use crate::protocol::codec::Reader;
use rand::RngCore;

use super::crypto::{sha256, AesCtr};
pub use super::transport::Transport;

/// The header length.
pub const HEADER_LEN: usize = 64;

/// Offset of the protocol tag (u32 LE, valid after decryption).
const TAG_AT: usize = 56;

/// Offset of the dc id (i16 LE, valid after decryption).
const DC_AT: usize = 60;

/// Which decrypted tags the proxy accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AcceptPolicy {
    /// Accept only `0xdddddddd` (padded intermediate): `-R` (§12.2), and `-D`, where the
    /// caller splices every other client to the default domain.
    ///
    /// With `padded_only` a secret whose decrypted tag is abridged/intermediate counts as
    /// not matching and the next secret is tried (C's `-R`). C's `-D` splices at the first
    /// such secret instead; the outcome differs only if a later secret also decrypts the
    /// same header to `0xdddddddd` (probability about 2^-32).
    pub padded_only: bool,
}

impl AcceptPolicy {
    fn accepts(self, transport: Transport) -> bool {
        !self.padded_only || transport == Transport::PaddedIntermediate
    }
}

/// An accepted header, from the proxy's side.
#[derive(Debug)]
pub struct ServerHandshake {
    /// The transport named by the decrypted tag.
    pub transport: Transport,
    /// The target dc (negative: media dc).
    pub dc: i16,
    /// Index of the matching secret in the slice given; `None` in secretless mode.
    pub secret_index: Option<usize>,
    /// The client→proxy stream, already advanced past the 64 header bytes.
    pub decrypt: AesCtr,
    /// The proxy→client stream, at offset 0.
    pub encrypt: AesCtr,
}

/// The two stream keys derived from a header (plain bytes 8..56) and an optional secret.
struct Keys {
    /// client→proxy
    up_key: [u8; 32],
    up_iv: [u8; 16],
    /// proxy→client
    down_key: [u8; 32],
    down_iv: [u8; 16],
}

fn derive_keys(hdr: &[u8; HEADER_LEN], secret: Option<&[u8; 16]>) -> Keys {
    let mut up_seed = [0u8; 32];
    up_seed.copy_from_slice(&hdr[8..40]);
    let mut up_iv = [0u8; 16];
    up_iv.copy_from_slice(&hdr[40..56]);
    let mut rev = [0u8; 48];
    rev.copy_from_slice(&hdr[8..56]);
    rev.reverse();
    let mut down_seed = [0u8; 32];
    down_seed.copy_from_slice(&rev[..32]);
    let mut down_iv = [0u8; 16];
    down_iv.copy_from_slice(&rev[32..]);
    let (up_key, down_key) = match secret {
        Some(s) => (sha256(&[&up_seed, s]), sha256(&[&down_seed, s])),
        None => (up_seed, down_seed),
    };
    Keys {
        up_key,
        up_iv,
        down_key,
        down_iv,
    }
}

/// Tries `hdr` (the 64 wire bytes) against each secret in order, as the proxy does.
///
/// An empty `secrets` slice is secretless mode (raw seeds as keys). The first secret whose
/// decrypted tag names a transport that `policy` accepts wins. `None` means no secret
/// matched: the caller applies the silent "global skip mode" (or splices under `-D`).
pub fn parse_header(
    hdr: &[u8; HEADER_LEN],
    secrets: &[[u8; 16]],
    policy: AcceptPolicy,
) -> Option<ServerHandshake> {
    let attempt = |secret: Option<&[u8; 16]>| {
        let keys = derive_keys(hdr, secret);
        let mut decrypt = AesCtr::new(&keys.up_key, &keys.up_iv);
        let mut plain = *hdr;
        decrypt.apply(&mut plain);
        let mut fields = Reader::new(plain.get(TAG_AT..)?);
        let tag = fields.u32_le()?;
        let transport = Transport::from_tag(tag).filter(|t| policy.accepts(*t))?;
        let dc = fields.i16_le()?;
        let encrypt = AesCtr::new(&keys.down_key, &keys.down_iv);
        Some((transport, dc, decrypt, encrypt))
    };
    if secrets.is_empty() {
        let (transport, dc, decrypt, encrypt) = attempt(None)?;
        return Some(ServerHandshake {
            transport,
            dc,
            secret_index: None,
            decrypt,
            encrypt,
        });
    }
    secrets.iter().enumerate().find_map(|(i, s)| {
        attempt(Some(s)).map(|(transport, dc, decrypt, encrypt)| ServerHandshake {
            transport,
            dc,
            secret_index: Some(i),
            decrypt,
            encrypt,
        })
    })
}

/// Why 64 random bytes cannot start a client header (the rules real clients obey so the
/// header is not mistaken for another protocol).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeaderRuleViolation {
    /// `hdr[0] == 0xef` (would read as plain abridged).
    #[error("first byte is 0xef")]
    AbridgedFirstByte,
    /// The first u32 is `HEAD`, `POST`, `GET `, `OPTI`, `0xdddddddd`, `0xeeeeeeee` or
    /// `16 03 01 02` (HTTP, plain intermediate, TLS).
    #[error("first four bytes {0:02x?} are reserved")]
    ReservedFirstWord([u8; 4]),
    /// `hdr[4..8]` is all zero.
    #[error("bytes 4..8 are zero")]
    ZeroSecondWord,
}

/// First words a client header must not start with.
const RESERVED_FIRST_WORDS: [[u8; 4]; 7] = [
    *b"HEAD",
    *b"POST",
    *b"GET ",
    *b"OPTI",
    [0xdd; 4],
    [0xee; 4],
    [0x16, 0x03, 0x01, 0x02],
];

/// Checks the forbidden-first-bytes rules on a would-be header.
///
/// # Errors
/// The first rule broken.
pub fn check_client_random(random: &[u8; HEADER_LEN]) -> Result<(), HeaderRuleViolation> {
    if random[0] == 0xef {
        return Err(HeaderRuleViolation::AbridgedFirstByte);
    }
    let first = [random[0], random[1], random[2], random[3]];
    if RESERVED_FIRST_WORDS.contains(&first) {
        return Err(HeaderRuleViolation::ReservedFirstWord(first));
    }
    if random[4..8] == [0, 0, 0, 0] {
        return Err(HeaderRuleViolation::ZeroSecondWord);
    }
    Ok(())
}

/// A client's side of the header: the wire bytes and both streams.
#[derive(Debug)]
pub struct ClientHandshake {
    /// The 64 bytes to send (0..56 in clear, 56..64 encrypted).
    pub header: [u8; HEADER_LEN],
    /// The client→proxy stream, advanced past the 64 header bytes.
    pub encrypt: AesCtr,
    /// The proxy→client stream, at offset 0.
    pub decrypt: AesCtr,
}

impl ClientHandshake {
    /// Builds a header from fresh random bytes, redrawing until the rules hold.
    ///
    /// `secret` `None` is secretless mode.
    pub fn generate(
        rng: &mut impl RngCore,
        secret: Option<&[u8; 16]>,
        transport: Transport,
        dc: i16,
    ) -> Self {
        loop {
            let mut random = [0u8; HEADER_LEN];
            rng.fill_bytes(&mut random);
            if let Ok(hs) = Self::from_random(random, secret, transport, dc) {
                return hs;
            }
        }
    }

    /// Builds a header deterministically: bytes 0..56 and 62..64 come from `random64`,
    /// bytes 56..62 (tag, dc) are overwritten before encryption.
    ///
    /// # Errors
    /// [`HeaderRuleViolation`] when `random64` breaks a forbidden-first-bytes rule.
    pub fn from_random(
        random64: [u8; HEADER_LEN],
        secret: Option<&[u8; 16]>,
        transport: Transport,
        dc: i16,
    ) -> Result<Self, HeaderRuleViolation> {
        check_client_random(&random64)?;
        let mut plain = random64;
        plain[TAG_AT..TAG_AT + 4].copy_from_slice(&transport.tag().to_le_bytes());
        plain[DC_AT..DC_AT + 2].copy_from_slice(&dc.to_le_bytes());
        let keys = derive_keys(&plain, secret);
        let mut encrypt = AesCtr::new(&keys.up_key, &keys.up_iv);
        let mut enc = plain;
        encrypt.apply(&mut enc);
        let mut header = plain;
        header[TAG_AT..].copy_from_slice(&enc[TAG_AT..]);
        let decrypt = AesCtr::new(&keys.down_key, &keys.down_iv);
        Ok(Self {
            header,
            encrypt,
            decrypt,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;

    const S1: [u8; 16] = [1; 16];
    const S2: [u8; 16] = [2; 16];
    const S3: [u8; 16] = [3; 16];

    fn client(secret: Option<&[u8; 16]>, t: Transport, dc: i16, seed: u64) -> ClientHandshake {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        ClientHandshake::generate(&mut rng, secret, t, dc)
    }

    #[test]
    fn streams_pair_up_both_ways() {
        let mut c = client(Some(&S2), Transport::Intermediate, -3, 7);
        let mut s = parse_header(&c.header, &[S1, S2, S3], AcceptPolicy::default()).unwrap();
        assert_eq!(
            (s.transport, s.dc, s.secret_index),
            (Transport::Intermediate, -3, Some(1))
        );
        let mut up = *b"client to proxy!";
        c.encrypt.apply(&mut up);
        s.decrypt.apply(&mut up);
        assert_eq!(&up, b"client to proxy!");
        let mut down = *b"proxy to client!";
        s.encrypt.apply(&mut down);
        c.decrypt.apply(&mut down);
        assert_eq!(&down, b"proxy to client!");
    }

    #[test]
    fn wrong_secret_and_secretless_mismatch() {
        let c = client(Some(&S1), Transport::Abridged, 2, 1);
        assert!(parse_header(&c.header, &[S2, S3], AcceptPolicy::default()).is_none());
        assert!(parse_header(&c.header, &[], AcceptPolicy::default()).is_none());
        let c = client(None, Transport::Abridged, 2, 1);
        let s = parse_header(&c.header, &[], AcceptPolicy::default()).unwrap();
        assert_eq!(s.secret_index, None);
    }

    #[test]
    fn padded_only_policy() {
        let strict = AcceptPolicy { padded_only: true };
        for t in [Transport::Abridged, Transport::Intermediate] {
            let c = client(Some(&S1), t, 1, 3);
            assert!(parse_header(&c.header, &[S1], strict).is_none());
        }
        let c = client(Some(&S1), Transport::PaddedIntermediate, 1, 3);
        assert!(parse_header(&c.header, &[S1], strict).is_some());
    }

    #[test]
    fn rules_reject_bad_random() {
        let mut r = [0x11u8; 64];
        r[0] = 0xef;
        assert_eq!(
            ClientHandshake::from_random(r, None, Transport::Abridged, 1).unwrap_err(),
            HeaderRuleViolation::AbridgedFirstByte
        );
        r[..4].copy_from_slice(b"POST");
        assert!(matches!(
            ClientHandshake::from_random(r, None, Transport::Abridged, 1),
            Err(HeaderRuleViolation::ReservedFirstWord(_))
        ));
        r[..8].copy_from_slice(&[1, 2, 3, 4, 0, 0, 0, 0]);
        assert_eq!(
            ClientHandshake::from_random(r, None, Transport::Abridged, 1).unwrap_err(),
            HeaderRuleViolation::ZeroSecondWord
        );
    }

    proptest! {
        #[test]
        fn parse_header_never_panics(hdr in proptest::array::uniform32(any::<u8>()), tail in proptest::array::uniform32(any::<u8>()), n in 0usize..4, padded_only: bool) {
            let mut full = [0u8; 64];
            full[..32].copy_from_slice(&hdr);
            full[32..].copy_from_slice(&tail);
            let secrets = [S1, S2, S3];
            let _ = parse_header(&full, &secrets[..n], AcceptPolicy { padded_only });
        }

        #[test]
        fn generated_headers_are_accepted(seed: u64, dc: i16, t in 0usize..3, which in 0usize..3) {
            let t = [Transport::Abridged, Transport::Intermediate, Transport::PaddedIntermediate][t];
            let secrets = [S1, S2, S3];
            let c = client(Some(&secrets[which]), t, dc, seed);
            prop_assert!(check_client_random(&c.header).is_ok());
            let s = parse_header(&c.header, &secrets, AcceptPolicy::default()).unwrap();
            // A header can match an earlier secret only with probability ~3·2^-32.
            prop_assert_eq!((s.transport, s.dc, s.secret_index), (t, dc, Some(which)));
        }
    }
}
