//! The Diffie–Hellman parameters of `net/net-crypto-dh.c` (§5.6).
//!
//! The middle-end RPC handshake has a schema 3 ("AES + DH") in which each side sends a
//! 256-byte `g_a = 3^a mod p` after the `dh_params_select` word (the low 32 bits of the
//! parameters' SHA-1, [`RPC_DH_PARAMS_HASH`]). **The proxy never uses it**: the client side
//! of its ME link never sets `RPCF_REQ_DH` and `--force-dh` is dead code, so it always sends
//! schema 1 (plain AES) and stats show `tot_dh_rounds 0 0 0`. C still runs
//! `init_dh_params()` at start, which asserts the parameter hash; [`dh_params_hash`] is that
//! computation.
//!
//! Should a schema-3 nonce ever have to be answered (for example by a fake middle-end in
//! the harness), its `g_a` is validated as C's `is_good_rpc_dh_bin`
//! ([`is_good_dh_value`]: the first 8 bytes are not all zero and, read big-endian, are
//! strictly below the prime's first 8 bytes), then `g_ab = g_a^b mod p` is computed with a
//! fresh `b` ([`create_g_a`], [`shared_secret`]); `g_ab` then enters the AES key
//! derivation. The `dh_params_select` word must equal [`RPC_DH_PARAMS_HASH`].

use num_bigint::BigUint;
use rand::RngCore;

use crate::protocol::crypto::sha1;

/// The 2048-bit prime `p`, big-endian (C's `rpc_dh_prime_bin`).
pub const RPC_DH_PRIME: [u8; 256] = [
    0x89, 0x52, 0x13, 0x1b, 0x1e, 0x3a, 0x69, 0xba, 0x5f, 0x85, 0xcf, 0x8b, 0xd2, 0x66, 0xc1, 0x2b,
    0x13, 0x83, 0x16, 0x13, 0xbd, 0x2a, 0x4e, 0xf8, 0x35, 0xa4, 0xd5, 0x3f, 0x9d, 0xbb, 0x42, 0x48,
    0x2d, 0xbd, 0x46, 0x2b, 0x31, 0xd8, 0x6c, 0x81, 0x6c, 0x59, 0x77, 0x52, 0x0f, 0x11, 0x70, 0x73,
    0x9e, 0xd2, 0xdd, 0xd6, 0xd8, 0x1b, 0x9e, 0xb6, 0x5f, 0xaa, 0xac, 0x14, 0x87, 0x53, 0xc9, 0xe4,
    0xf0, 0x72, 0xdc, 0x11, 0xa4, 0x92, 0x73, 0x06, 0x83, 0xfa, 0x00, 0x67, 0x82, 0x6b, 0x18, 0xc5,
    0x1d, 0x7e, 0xcb, 0xa5, 0x2b, 0x82, 0x60, 0x75, 0xc0, 0xb9, 0x55, 0xe5, 0xac, 0xaf, 0xdd, 0x74,
    0xc3, 0x79, 0x5f, 0xd9, 0x52, 0x0b, 0x48, 0x0f, 0x3b, 0xe3, 0xba, 0x06, 0x65, 0x33, 0x8a, 0x49,
    0x8c, 0xa5, 0xda, 0xf1, 0x01, 0x76, 0x05, 0x09, 0xa3, 0x8c, 0x49, 0xe3, 0x00, 0x74, 0x64, 0x08,
    0x77, 0x4b, 0xb3, 0xed, 0x26, 0x18, 0x1a, 0x64, 0x55, 0x76, 0x6a, 0xe9, 0x49, 0x7b, 0xb9, 0xc3,
    0xa3, 0xad, 0x5c, 0xba, 0xf7, 0x6b, 0x73, 0x84, 0x5f, 0xbb, 0x96, 0xbb, 0x6d, 0x0f, 0x68, 0x4f,
    0x95, 0xd2, 0xd3, 0x9c, 0xcb, 0xb4, 0xa9, 0x04, 0xfa, 0xb1, 0xde, 0x43, 0x49, 0xce, 0x1c, 0x20,
    0x87, 0xb6, 0xc9, 0x51, 0xed, 0x99, 0xf9, 0x52, 0xe3, 0x4f, 0xd1, 0xa3, 0xfd, 0x14, 0x83, 0x35,
    0x75, 0x41, 0x47, 0x29, 0xa3, 0x8b, 0xe8, 0x68, 0xa4, 0xf9, 0xec, 0x62, 0x3a, 0x5d, 0x24, 0x62,
    0x1a, 0xba, 0x01, 0xb2, 0x55, 0xc7, 0xe8, 0x38, 0x5d, 0x16, 0xac, 0x93, 0xb0, 0x2d, 0x2a, 0x54,
    0x0a, 0x76, 0x42, 0x98, 0x2d, 0x22, 0xad, 0xa3, 0xcc, 0xde, 0x5c, 0x8d, 0x26, 0x6f, 0xaa, 0x25,
    0xdd, 0x2d, 0xe9, 0xf6, 0xd4, 0x91, 0x04, 0x16, 0x2f, 0x68, 0x5c, 0x45, 0xfe, 0x34, 0xdd, 0xab,
];

/// The generator `g = 3`.
pub const RPC_DH_GENERATOR: u32 = 3;

/// The expected value of [`dh_params_hash`] (C's `RPC_PARAM_HASH`).
pub const RPC_DH_PARAMS_HASH: u32 = 0x0062_0b93;

/// Errors of the DH computations.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DhError {
    /// The peer's value fails [`is_good_dh_value`].
    #[error("peer DH value out of range")]
    BadPeerValue,
    /// The result has 240 or fewer significant bytes (C asserts; astronomically unlikely).
    #[error("degenerate DH result")]
    DegenerateResult,
}

/// The DH parameters' hash: the little-endian u32 of the first 4 bytes of
/// `SHA1(LE_i32(3) ‖ fe 00 01 00 ‖ p[256])` — the TL serialization `g:int p:string`
/// (`fe 00 01 00` is the long-string prefix for 256 bytes). Equals [`RPC_DH_PARAMS_HASH`].
pub fn dh_params_hash() -> u32 {
    let g = RPC_DH_GENERATOR.to_le_bytes();
    let prefix = 0x0001_00feu32.to_le_bytes();
    let [a, b, c, d, ..] = sha1(&[&g, &prefix, &RPC_DH_PRIME]);
    u32::from_le_bytes([a, b, c, d])
}

/// C's `is_good_rpc_dh_bin`: the first 8 bytes are not all zero and are (big-endian)
/// strictly smaller than the prime's first 8 bytes.
pub fn is_good_dh_value(value: &[u8; 256]) -> bool {
    let head = &value[..8];
    head.iter().any(|&b| b != 0) && head < &RPC_DH_PRIME[..8]
}

/// `base^exp mod p` over big-endian byte strings, as 256 big-endian bytes.
pub fn mod_exp(base: &[u8], exp: &[u8]) -> [u8; 256] {
    let p = BigUint::from_bytes_be(&RPC_DH_PRIME);
    let r = BigUint::from_bytes_be(base).modpow(&BigUint::from_bytes_be(exp), &p);
    to_256(&r)
}

/// Left-pads a number below `p` to 256 big-endian bytes.
fn to_256(n: &BigUint) -> [u8; 256] {
    let bytes = n.to_bytes_be();
    let mut out = [0u8; 256];
    // n < p < 2^2048, so it has at most 256 bytes.
    let start = 256usize.saturating_sub(bytes.len());
    out[start..].copy_from_slice(&bytes[bytes.len().saturating_sub(256)..]);
    out
}

/// Significant bytes of a 256-byte big-endian value.
fn significant_len(v: &[u8; 256]) -> usize {
    256 - v.iter().take_while(|&&b| b == 0).count()
}

/// A fresh exponent `a` (256 random bytes) and `g_a = 3^a mod p`, retried until `g_a`
/// passes [`is_good_dh_value`] and has more than 240 significant bytes (C's `create_g_a`).
pub fn create_g_a(rng: &mut impl RngCore) -> ([u8; 256], [u8; 256]) {
    loop {
        let mut a = [0u8; 256];
        rng.fill_bytes(&mut a);
        let g_a = mod_exp(&RPC_DH_GENERATOR.to_be_bytes(), &a);
        if significant_len(&g_a) > 240 && is_good_dh_value(&g_a) {
            return (g_a, a);
        }
    }
}

/// `g_ab = g_b^a mod p` after checking the peer's `g_b` (C's `dh_inner_round` behind the
/// `is_good_rpc_dh_bin` check of rounds 2 and 3).
///
/// # Errors
/// [`DhError::BadPeerValue`] for a `g_b` out of range; [`DhError::DegenerateResult`]
/// where C would assert.
pub fn shared_secret(g_b: &[u8; 256], a: &[u8; 256]) -> Result<[u8; 256], DhError> {
    if !is_good_dh_value(g_b) {
        return Err(DhError::BadPeerValue);
    }
    let g_ab = mod_exp(g_b, a);
    if significant_len(&g_ab) <= 240 {
        return Err(DhError::DegenerateResult);
    }
    Ok(g_ab)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn params_hash_is_the_c_constant() {
        assert_eq!(dh_params_hash(), RPC_DH_PARAMS_HASH);
    }

    #[test]
    fn both_sides_agree() {
        let mut rng = StdRng::seed_from_u64(3);
        let (g_a, a) = create_g_a(&mut rng);
        let (g_b, b) = create_g_a(&mut rng);
        assert_eq!(shared_secret(&g_b, &a), shared_secret(&g_a, &b));
        assert!(shared_secret(&g_b, &a).is_ok());
    }

    #[test]
    fn range_check_matches_c() {
        let mut v = [0u8; 256];
        assert!(!is_good_dh_value(&v), "zero head");
        v[7] = 1;
        assert!(is_good_dh_value(&v));
        v[..8].copy_from_slice(&RPC_DH_PRIME[..8]);
        assert!(!is_good_dh_value(&v), "head equal to the prime's");
        v[7] -= 1;
        assert!(is_good_dh_value(&v));
        assert_eq!(
            shared_secret(&[0xff; 256], &[1; 256]),
            Err(DhError::BadPeerValue)
        );
    }
}
