//! Cryptographic primitives with exactly the C proxy's semantics, applied in place.
//!
//! * Obfuscation (§4.2): AES-256-CTR with a 128-bit big-endian counter, one continuous
//!   keystream per direction ([`AesCtr`]).
//! * Middle-end link (§5.2, §5.4): AES-256-CBC with *no padding scheme*; the IV chains
//!   across packets for the whole connection ([`CbcEncryptor`], [`CbcDecryptor`]).
//!   Callers pad each flush to 16 bytes with `04 00 00 00` words themselves.
//! * Hashes, HMAC-SHA256, CRC32 (IEEE) and CRC32C (Castagnoli).

use aes::Aes256;
use cipher::inout::InOutBuf;
use cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit, StreamCipher};
use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha1::Sha1;
use sha2::Sha256;

/// AES block size in bytes.
pub const AES_BLOCK: usize = 16;

/// One direction of an AES-256-CTR stream (OpenSSL `EVP_aes_256_ctr`).
pub struct AesCtr(ctr::Ctr128BE<Aes256>);

impl AesCtr {
    /// A stream keyed with a 32-byte key and a 16-byte initial counter block.
    pub fn new(key: &[u8; 32], iv: &[u8; 16]) -> Self {
        Self(ctr::Ctr128BE::<Aes256>::new(key.into(), iv.into()))
    }

    /// XORs the next `buf.len()` keystream bytes into `buf` (encrypts or decrypts).
    pub fn apply(&mut self, buf: &mut [u8]) {
        self.0.apply_keystream(buf);
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
}
