//! The proxy's answer to an accepted ClientHello (§4.4.2).

use rand::{Rng, RngCore};
use x25519_dalek::{PublicKey, StaticSecret};

use super::client_hello::AcceptedHello;
use super::wire::{put16, CHANGE_CIPHER_SPEC, RANDOM_LEN, RANDOM_OFFSET};
use crate::protocol::crypto::hmac_sha256;

/// How the proxy imitates one `-D` domain's ServerHello (learned by the startup probe).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DomainProfile {
    /// Whether the domain sends supported_versions before key_share.
    pub reversed_extension_order: bool,
    /// The length of the fake encrypted application data.
    pub encrypted_size: u16,
    /// Whether each connection randomizes the size by −1/0/+1 (probabilities ¼, ½, ¼).
    pub randomize: bool,
}

impl DomainProfile {
    /// The settings C uses when probing a domain failed: normal extension order and a
    /// size drawn uniformly from `2500..=3619` (C: `2500 + rand() % 1120`), randomized ±1.
    pub fn fallback(rng: &mut impl RngCore) -> Self {
        Self {
            reversed_extension_order: false,
            encrypted_size: rng.gen_range(2500..3620),
            randomize: true,
        }
    }

    /// The fake application-data size for one connection.
    ///
    /// With `randomize`, C draws `r = rand()` and adds `((r >> 1) & 1) − (r & 1)`.
    pub fn draw_encrypted_size(&self, rng: &mut impl RngCore) -> u16 {
        if !self.randomize {
            return self.encrypted_size;
        }
        let r = rng.next_u32();
        let plus = u16::from((r >> 1) & 1 == 1);
        let minus = u16::from(r & 1 == 1);
        self.encrypted_size
            .saturating_add(plus)
            .saturating_sub(minus)
    }
}

/// The random inputs of one ServerHello, explicit so tests and vectors can fix them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerHelloParts {
    /// The x25519 scalar whose public key goes into key_share (clamped as X25519 does).
    pub key_share_scalar: [u8; 32],
    /// The fake encrypted application data; its length is the record length (at most
    /// 65535 bytes are used).
    pub app_data: Vec<u8>,
}

/// Builds the ServerHello + ChangeCipherSpec + fake application data answering `accepted`.
///
/// Draws the size from `profile`, a random x25519 scalar (C builds a random curve point
/// directly; both give a valid public key), and random application data.
pub fn build_server_hello(
    accepted: &AcceptedHello,
    secret: &[u8; 16],
    profile: &DomainProfile,
    rng: &mut impl RngCore,
) -> Vec<u8> {
    let size = profile.draw_encrypted_size(rng);
    let mut key_share_scalar = [0u8; 32];
    rng.fill_bytes(&mut key_share_scalar);
    let mut app_data = vec![0u8; usize::from(size)];
    rng.fill_bytes(&mut app_data);
    build_server_hello_from_parts(
        &accepted.client_random,
        &accepted.session_id,
        accepted.cipher_suite,
        secret,
        profile.reversed_extension_order,
        &ServerHelloParts {
            key_share_scalar,
            app_data,
        },
    )
}

/// Builds the response byte for byte from explicit inputs (the deterministic core of
/// [`build_server_hello`]).
///
/// Layout (§4.4.2): `16 03 03 00 7a | 02 00 00 76 03 03 | server_random[32] | 20
/// session_id[32] | 13 <cs> 00 | 00 2e | key_share(40) and supported_versions(6), swapped
/// if `reversed` | 14 03 03 00 01 01 | 17 03 03 <len> <app_data>`, with
/// `server_random = HMAC-SHA256(secret, client_random ‖ response with server_random zeroed)`.
pub fn build_server_hello_from_parts(
    client_random: &[u8; 32],
    session_id: &[u8; 32],
    cipher_suite: u8,
    secret: &[u8; 16],
    reversed: bool,
    parts: &ServerHelloParts,
) -> Vec<u8> {
    let app_data = &parts.app_data[..parts.app_data.len().min(usize::from(u16::MAX))];
    let mut out = Vec::with_capacity(138 + app_data.len());
    out.extend_from_slice(&[
        0x16, 0x03, 0x03, 0x00, 0x7a, 0x02, 0x00, 0x00, 0x76, 0x03, 0x03,
    ]);
    out.extend_from_slice(&[0u8; RANDOM_LEN]);
    out.push(0x20);
    out.extend_from_slice(session_id);
    out.extend_from_slice(&[0x13, cipher_suite, 0x00, 0x00, 0x2e]);

    let public = PublicKey::from(&StaticSecret::from(parts.key_share_scalar));
    let mut key_share = vec![0x00, 0x33, 0x00, 0x24, 0x00, 0x1d, 0x00, 0x20];
    key_share.extend_from_slice(public.as_bytes());
    let versions = [0x00, 0x2b, 0x00, 0x02, 0x03, 0x04];
    if reversed {
        out.extend_from_slice(&versions);
        out.extend_from_slice(&key_share);
    } else {
        out.extend_from_slice(&key_share);
        out.extend_from_slice(&versions);
    }

    out.extend_from_slice(&CHANGE_CIPHER_SPEC);
    out.extend_from_slice(&[0x17, 0x03, 0x03]);
    put16(&mut out, app_data.len());
    out.extend_from_slice(app_data);

    let server_random = hmac_sha256(secret, &[client_random, &out]);
    out[RANDOM_OFFSET..RANDOM_OFFSET + RANDOM_LEN].copy_from_slice(&server_random);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn response_has_the_c_layout() {
        let parts = ServerHelloParts {
            key_share_scalar: [5; 32],
            app_data: vec![0xaa; 300],
        };
        let r = build_server_hello_from_parts(&[1; 32], &[2; 32], 0x02, &[3; 16], false, &parts);
        assert_eq!(r.len(), 127 + 6 + 5 + 300);
        assert_eq!(r[43], 0x20);
        assert_eq!(&r[44..76], &[2; 32]);
        assert_eq!(&r[76..81], &[0x13, 0x02, 0x00, 0x00, 0x2e]);
        assert_eq!(&r[81..85], &[0x00, 0x33, 0x00, 0x24]);
        assert_eq!(&r[121..127], &[0x00, 0x2b, 0x00, 0x02, 0x03, 0x04]);
        assert_eq!(&r[127..138], &[0x14, 3, 3, 0, 1, 1, 0x17, 3, 3, 0x01, 0x2c]);
        let rev = build_server_hello_from_parts(&[1; 32], &[2; 32], 0x02, &[3; 16], true, &parts);
        assert_eq!(&rev[81..87], &[0x00, 0x2b, 0x00, 0x02, 0x03, 0x04]);
        assert_eq!(&rev[87..91], &[0x00, 0x33, 0x00, 0x24]);
        assert_eq!(&rev[95..127], &r[89..121], "same key share, moved");
    }

    #[test]
    fn fallback_and_randomized_sizes_stay_in_range() {
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..200 {
            let p = DomainProfile::fallback(&mut rng);
            assert!((2500..3620).contains(&p.encrypted_size));
            assert!(p.randomize && !p.reversed_extension_order);
            let s = p.draw_encrypted_size(&mut rng);
            assert!(s + 1 >= p.encrypted_size && s <= p.encrypted_size + 1);
        }
        let fixed = DomainProfile {
            reversed_extension_order: true,
            encrypted_size: 23,
            randomize: false,
        };
        assert_eq!(fixed.draw_encrypted_size(&mut rng), 23);
    }
}
