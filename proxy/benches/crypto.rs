//! Cipher throughput on the proxy's hot path, each beside the raw cipher it wraps.
//!
//! * `ctr` — obfuscated2's AES-256-CTR ([`AesCtr`]) vs the `ctr` crate directly;
//! * `cbc_encrypt` / `cbc_decrypt` — the ME link's chained AES-256-CBC
//!   ([`CbcEncryptor`], [`CbcDecryptor`]) vs the `cbc` crate directly;
//! * `aes_blocks` — raw AES-256 on independent blocks (the parallel ceiling of the backend);
//! * `crc32c` — the ME frame checksum.
//!
//! Sizes: 16 B, 256 B, 1 KiB and 16 KiB. Run with `cargo bench -p mtproxy --bench crypto`.
#![allow(missing_docs)]

use aes::Aes256;
use cipher::inout::InOutBuf;
use cipher::{BlockDecryptMut, BlockEncrypt, BlockEncryptMut, KeyInit, KeyIvInit, StreamCipher};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use mtproxy::protocol::crypto::{crc32c, AesCtr, CbcDecryptor, CbcEncryptor};
use std::hint::black_box;

const SIZES: [usize; 4] = [16, 256, 1024, 16 * 1024];
const KEY: [u8; 32] = [0x42; 32];
const IV: [u8; 16] = [0x24; 16];

fn ctr(c: &mut Criterion) {
    let mut g = c.benchmark_group("ctr");
    for n in SIZES {
        g.throughput(Throughput::Bytes(n as u64));
        let mut buf = vec![0x5au8; n];
        let mut ours = AesCtr::new(&KEY, &IV);
        g.bench_with_input(BenchmarkId::new("obfuscated2", n), &n, |b, _| {
            b.iter(|| ours.apply(black_box(&mut buf)))
        });
        let mut raw = ctr::Ctr128BE::<Aes256>::new(&KEY.into(), &IV.into());
        g.bench_with_input(BenchmarkId::new("raw", n), &n, |b, _| {
            b.iter(|| raw.apply_keystream(black_box(&mut buf)))
        });
    }
    g.finish();
}

fn cbc_encrypt(c: &mut Criterion) {
    let mut g = c.benchmark_group("cbc_encrypt");
    for n in SIZES {
        g.throughput(Throughput::Bytes(n as u64));
        let mut buf = vec![0x5au8; n];
        let mut ours = CbcEncryptor::new(&KEY, &IV);
        g.bench_with_input(BenchmarkId::new("link", n), &n, |b, _| {
            b.iter(|| ours.encrypt(black_box(&mut buf)))
        });
        let mut raw = cbc::Encryptor::<Aes256>::new(&KEY.into(), &IV.into());
        g.bench_with_input(BenchmarkId::new("raw", n), &n, |b, _| {
            b.iter(|| {
                let (blocks, _) = InOutBuf::from(black_box(&mut buf[..])).into_chunks();
                raw.encrypt_blocks_inout_mut(blocks);
            })
        });
    }
    g.finish();
}

fn cbc_decrypt(c: &mut Criterion) {
    let mut g = c.benchmark_group("cbc_decrypt");
    for n in SIZES {
        g.throughput(Throughput::Bytes(n as u64));
        let mut buf = vec![0x5au8; n];
        let mut ours = CbcDecryptor::new(&KEY, &IV);
        g.bench_with_input(BenchmarkId::new("link", n), &n, |b, _| {
            b.iter(|| ours.decrypt(black_box(&mut buf)))
        });
        let mut raw = cbc::Decryptor::<Aes256>::new(&KEY.into(), &IV.into());
        g.bench_with_input(BenchmarkId::new("raw", n), &n, |b, _| {
            b.iter(|| {
                let (blocks, _) = InOutBuf::from(black_box(&mut buf[..])).into_chunks();
                raw.decrypt_blocks_inout_mut(blocks);
            })
        });
    }
    g.finish();
}

fn aes_blocks(c: &mut Criterion) {
    let mut g = c.benchmark_group("aes_blocks");
    let aes = Aes256::new(&KEY.into());
    for n in SIZES {
        g.throughput(Throughput::Bytes(n as u64));
        let mut buf = vec![0x5au8; n];
        g.bench_with_input(BenchmarkId::new("raw_encrypt", n), &n, |b, _| {
            b.iter(|| {
                let (blocks, _) = InOutBuf::from(black_box(&mut buf[..])).into_chunks();
                aes.encrypt_blocks_inout(blocks);
            })
        });
    }
    g.finish();
}

fn crc(c: &mut Criterion) {
    let mut g = c.benchmark_group("crc32c");
    for n in SIZES {
        g.throughput(Throughput::Bytes(n as u64));
        let buf = vec![0x5au8; n];
        g.bench_with_input(BenchmarkId::new("frame", n), &n, |b, _| {
            b.iter(|| crc32c(black_box(&buf)))
        });
    }
    g.finish();
}

fn cbc_chains(c: &mut Criterion) {
    let mut g = c.benchmark_group("cbc_encrypt_chains");
    for chains in [1usize, 2, 4, 8] {
        let n = 16 * 1024;
        g.throughput(Throughput::Bytes((n * chains) as u64));
        let mut bufs = vec![vec![0x5au8; n]; chains];
        let mut encs: Vec<_> = (0..chains)
            .map(|_| cbc::Encryptor::<Aes256>::new(&KEY.into(), &IV.into()))
            .collect();
        g.bench_with_input(BenchmarkId::new("interleaved", chains), &chains, |b, _| {
            b.iter(|| {
                for i in 0..n / 16 {
                    for (e, buf) in encs.iter_mut().zip(bufs.iter_mut()) {
                        let blk = cipher::generic_array::GenericArray::from_mut_slice(
                            &mut buf[i * 16..i * 16 + 16],
                        );
                        e.encrypt_block_mut(blk);
                    }
                }
            })
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    cbc_chains,
    ctr,
    cbc_encrypt,
    cbc_decrypt,
    aes_blocks,
    crc
);
criterion_main!(benches);
