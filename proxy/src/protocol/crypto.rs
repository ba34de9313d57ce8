//! Cryptographic primitives with exactly the C proxy's semantics, applied in place.
//!
//! * Obfuscation (§4.2): AES-256-CTR with a 128-bit big-endian counter, one continuous
//!   keystream per direction ([`AesCtr`]).
//! * Middle-end link (§5.2, §5.4): AES-256-CBC with *no padding scheme*; the IV chains
//!   across packets for the whole connection ([`CbcEncryptor`], [`CbcDecryptor`]).
//!   Callers pad each flush to 16 bytes with `04 00 00 00` words themselves.
//!   [`encrypt_chains`] encrypts several independent chains interleaved (faster).
//! * Hashes, HMAC-SHA256, CRC32 (IEEE) and CRC32C (Castagnoli).

use aes::{Aes256, Aes256Enc};
use cipher::inout::InOutBuf;
use cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit, StreamCipher, StreamCipherSeek};
use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha1::Sha1;
use sha2::Sha256;

/// AES block size in bytes.
pub const AES_BLOCK: usize = 16;

/// One direction of an AES-256-CTR stream (OpenSSL `EVP_aes_256_ctr`).
///
/// The expanded key schedule (about 1 KB with the run-time AES-NI/software switch) lives
/// only while the stream is in use: [`AesCtr::park`] drops it and keeps the key, the
/// initial counter block and the position (64 bytes), and the next [`AesCtr::apply`]
/// expands the key again and seeks to the position. A proxy parks both streams of every
/// client that waits, so an idle client costs a few dozen bytes of cipher state.
pub struct AesCtr {
    key: [u8; 32],
    iv: [u8; 16],
    /// Keystream bytes consumed so far.
    pos: u64,
    live: Option<Box<ctr::Ctr128BE<Aes256Enc>>>,
}

impl AesCtr {
    /// A stream keyed with a 32-byte key and a 16-byte initial counter block (parked).
    pub fn new(key: &[u8; 32], iv: &[u8; 16]) -> Self {
        Self {
            key: *key,
            iv: *iv,
            pos: 0,
            live: None,
        }
    }

    /// XORs the next `buf.len()` keystream bytes into `buf` (encrypts or decrypts).
    pub fn apply(&mut self, buf: &mut [u8]) {
        if buf.is_empty() {
            return;
        }
        let (key, iv, pos) = (&self.key, &self.iv, self.pos);
        let c = self.live.get_or_insert_with(|| {
            let mut c = ctr::Ctr128BE::<Aes256Enc>::new(key.into(), iv.into());
            // A 128-bit counter never runs out within 2^64 bytes.
            let _ = c.try_seek(pos);
            Box::new(c)
        });
        c.apply_keystream(buf);
        self.pos += buf.len() as u64;
    }

    /// Drops the expanded key schedule until the next [`AesCtr::apply`].
    pub fn park(&mut self) {
        self.live = None;
    }

    /// Whether the key schedule is currently expanded.
    pub fn is_live(&self) -> bool {
        self.live.is_some()
    }

    /// Keystream bytes consumed so far.
    pub fn position(&self) -> u64 {
        self.pos
    }
}

impl std::fmt::Debug for AesCtr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AesCtr(..)")
    }
}

/// The error for a CBC call on a buffer that is not a whole number of blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("AES-CBC input of {0} bytes is not a multiple of 16")]
pub struct NotBlockAligned(pub usize);

/// The sending half of an AES-256-CBC chain (no padding; IV carried across calls).
pub struct CbcEncryptor(cbc::Encryptor<Aes256>);

impl CbcEncryptor {
    /// A chain keyed with a 32-byte key and a 16-byte IV.
    pub fn new(key: &[u8; 32], iv: &[u8; 16]) -> Self {
        Self(cbc::Encryptor::<Aes256>::new(key.into(), iv.into()))
    }

    /// Encrypts `buf` in place, continuing the chain.
    ///
    /// # Errors
    /// [`NotBlockAligned`] when `buf.len() % 16 != 0` (nothing is encrypted then).
    pub fn encrypt(&mut self, buf: &mut [u8]) -> Result<(), NotBlockAligned> {
        if !buf.len().is_multiple_of(AES_BLOCK) {
            return Err(NotBlockAligned(buf.len()));
        }
        let (blocks, _) = InOutBuf::from(buf).into_chunks();
        self.0.encrypt_blocks_inout_mut(blocks);
        Ok(())
    }
}

/// Encrypts several independent CBC chains at once, each `buf` in place with its own
/// [`CbcEncryptor`]; the result is exactly that of calling [`CbcEncryptor::encrypt`] on
/// each pair.
///
/// CBC encryption is sequential within a chain (each block needs the previous ciphertext),
/// so one chain runs at the latency of AES rather than its throughput. Interleaving the
/// blocks of independent chains (one ME link each) lets the CPU overlap them: about 2x
/// with two chains and 3x with four on AES-NI.
///
/// # Errors
/// [`NotBlockAligned`] when any buffer is not a whole number of blocks (nothing is
/// encrypted then).
pub fn encrypt_chains(
    chains: &mut [(&mut CbcEncryptor, &mut [u8])],
) -> Result<(), NotBlockAligned> {
    if let Some((_, b)) = chains
        .iter()
        .find(|(_, b)| !b.len().is_multiple_of(AES_BLOCK))
    {
        return Err(NotBlockAligned(b.len()));
    }
    if let [(enc, buf)] = chains {
        return enc.encrypt(buf);
    }
    let longest = chains.iter().map(|(_, b)| b.len()).max().unwrap_or(0);
    let mut at = 0;
    while at < longest {
        for (enc, buf) in chains.iter_mut() {
            if let Some(block) = buf.get_mut(at..at + AES_BLOCK) {
                enc.0
                    .encrypt_block_mut(cipher::generic_array::GenericArray::from_mut_slice(block));
            }
        }
        at += AES_BLOCK;
    }
    Ok(())
}

/// The receiving half of an AES-256-CBC chain (no padding; IV carried across calls).
pub struct CbcDecryptor(cbc::Decryptor<Aes256>);

impl CbcDecryptor {
    /// A chain keyed with a 32-byte key and a 16-byte IV.
    pub fn new(key: &[u8; 32], iv: &[u8; 16]) -> Self {
        Self(cbc::Decryptor::<Aes256>::new(key.into(), iv.into()))
    }

    /// Decrypts `buf` in place, continuing the chain.
    ///
    /// # Errors
    /// [`NotBlockAligned`] when `buf.len() % 16 != 0` (nothing is decrypted then).
    pub fn decrypt(&mut self, buf: &mut [u8]) -> Result<(), NotBlockAligned> {
        if !buf.len().is_multiple_of(AES_BLOCK) {
            return Err(NotBlockAligned(buf.len()));
        }
        let (blocks, _) = InOutBuf::from(buf).into_chunks();
        self.0.decrypt_blocks_inout_mut(blocks);
        Ok(())
    }
}

impl std::fmt::Debug for CbcEncryptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CbcEncryptor(..)")
    }
}

impl std::fmt::Debug for CbcDecryptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CbcDecryptor(..)")
    }
}

/// MD5 of the concatenation of `parts`.
pub fn md5(parts: &[&[u8]]) -> [u8; 16] {
    let mut h = Md5::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// SHA-1 of the concatenation of `parts`.
pub fn sha1(parts: &[&[u8]]) -> [u8; 20] {
    let mut h = Sha1::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// SHA-256 of the concatenation of `parts`.
pub fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// HMAC-SHA256 keyed with `key` over the concatenation of `parts`.
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

/// CRC32 (IEEE 802.3, zlib) of `data`.
pub fn crc32(data: &[u8]) -> u32 {
    crc32fast::hash(data)
}

/// CRC32C (Castagnoli) of `data`.
pub fn crc32c(data: &[u8]) -> u32 {
    crc32c::crc32c(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctr_matches_openssl_semantics_across_a_full_counter_wrap_and_long_buffers() {
        // All-ones IV: the 128-bit counter wraps to zero after the first block (OpenSSL
        // and the `ctr` crate's Ctr128BE agree on that).
        for iv in [[0xffu8; 16], [0u8; 16], *b"0123456789abcdef"] {
            let key = [0x17u8; 32];
            let mut want = vec![0xa5u8; 5000];
            ctr::Ctr128BE::<Aes256>::new((&key).into(), (&iv).into()).apply_keystream(&mut want);
            let mut got = vec![0xa5u8; 5000];
            let mut c = AesCtr::new(&key, &iv);
            // Odd pieces: a partial block, several whole batches, a 1-byte piece.
            for range in [0..7, 7..8, 8..700, 700..701, 701..4100, 4100..5000] {
                c.apply(&mut got[range]);
            }
            assert_eq!(want, got, "iv {iv:02x?}");
        }
    }

    #[test]
    fn cbc_chain_continues_across_calls() {
        // Encrypting 64 bytes at once equals encrypting them in two calls: the IV chains.
        let key = [7u8; 32];
        let iv = [9u8; 16];
        let mut whole = [0x5au8; 64];
        let mut split = whole;
        CbcEncryptor::new(&key, &iv).encrypt(&mut whole).unwrap();
        let mut e = CbcEncryptor::new(&key, &iv);
        e.encrypt(&mut split[..32]).unwrap();
        e.encrypt(&mut split[32..]).unwrap();
        assert_eq!(whole, split);
        let mut d = CbcDecryptor::new(&key, &iv);
        d.decrypt(&mut split[..16]).unwrap();
        d.decrypt(&mut split[16..]).unwrap();
        assert_eq!(split, [0x5au8; 64]);
        assert_eq!(e.encrypt(&mut [0u8; 15]), Err(NotBlockAligned(15)));
    }

    #[test]
    fn interleaved_chains_equal_separate_chains() {
        let lens = [0usize, 16, 48, 160, 1024];
        let key = |i: usize| [i as u8 + 1; 32];
        let iv = |i: usize| [i as u8 + 100; 16];
        let plain: Vec<Vec<u8>> = lens
            .iter()
            .enumerate()
            .map(|(i, n)| (0..*n).map(|j| (i * 7 + j) as u8).collect())
            .collect();
        let mut separate = plain.clone();
        for (i, b) in separate.iter_mut().enumerate() {
            let mut e = CbcEncryptor::new(&key(i), &iv(i));
            let mid = 16 * (b.len() / 32);
            e.encrypt(&mut b[..mid]).unwrap();
            e.encrypt(&mut b[mid..]).unwrap();
        }
        let mut encs: Vec<CbcEncryptor> = (0..lens.len())
            .map(|i| CbcEncryptor::new(&key(i), &iv(i)))
            .collect();
        let mut together = plain.clone();
        // Two rounds, so the chains continue across calls as with `encrypt`.
        for half in 0..2 {
            let mut chains: Vec<(&mut CbcEncryptor, &mut [u8])> = encs
                .iter_mut()
                .zip(together.iter_mut())
                .map(|(e, b)| {
                    let mid = 16 * (b.len() / 32);
                    let part = if half == 0 {
                        &mut b[..mid]
                    } else {
                        &mut b[mid..]
                    };
                    (e, part)
                })
                .collect();
            encrypt_chains(&mut chains).unwrap();
        }
        assert_eq!(separate, together);
        let mut e = CbcEncryptor::new(&key(0), &iv(0));
        let mut f = CbcEncryptor::new(&key(1), &iv(1));
        let (mut a, mut b) = ([0u8; 32], [0u8; 20]);
        assert_eq!(
            encrypt_chains(&mut [(&mut e, &mut a[..]), (&mut f, &mut b[..])]),
            Err(NotBlockAligned(20))
        );
        assert_eq!(a, [0u8; 32], "nothing is encrypted on error");
    }

    proptest::proptest! {
        /// Parking between any two calls leaves the keystream exactly as one continuous
        /// stream (counter carried across blocks and within a block).
        #[test]
        fn parked_ctr_resumes_where_it_stopped(
            cuts in proptest::collection::vec((0usize..70, proptest::bool::ANY), 0..12),
        ) {
            let key = [0x42u8; 32];
            let mut iv = [0xffu8; 16];
            iv[0] = 0x11; // the low 64 bits wrap within the first blocks
            let total: usize = cuts.iter().map(|(n, _)| n).sum();
            let mut whole = vec![0u8; total];
            let mut reference = ctr::Ctr128BE::<Aes256>::new((&key).into(), (&iv).into());
            reference.apply_keystream(&mut whole);
            let mut pieces = vec![0u8; total];
            let mut c = AesCtr::new(&key, &iv);
            let mut at = 0;
            for (n, park) in cuts {
                c.apply(&mut pieces[at..at + n]);
                at += n;
                if park {
                    c.park();
                    proptest::prop_assert!(!c.is_live());
                }
            }
            proptest::prop_assert_eq!(c.position(), total as u64);
            proptest::prop_assert_eq!(whole, pieces);
        }
    }
}
