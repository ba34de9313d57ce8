//! The per-packet work of the proxy beside its cipher cost, at 16 B, 256 B, 1 KiB and 16 KiB:
//!
//! * `transport_decode` — [`ServerDecoder`] splitting one client frame (no crypto);
//! * `client_in` — what a client task does per received packet: CTR-decrypt in place,
//!   decode, [`classify`] (compare with `ctr/obfuscated2` in the `crypto` bench);
//! * `client_out` — per answer: frame ([`encode_server_frame`]) and CTR-encrypt;
//! * `proxy_req` — the ME link writer per packet: [`RpcLink::send_proxy_req`] then
//!   `poll_transmit` (frame, CRC32C, pad, CBC-encrypt); `proxy_req_plain` is the same frame
//!   without CBC, so the difference is the cipher;
//! * `proxy_ans` — the ME link reader per answer: `handle_input` (CBC-decrypt, CRC32C,
//!   decode) and `poll_event`.
//!
//! Run with `cargo bench -p mtproxy --bench codec`.
#![allow(missing_docs)]

use std::net::SocketAddr;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use mtproxy::protocol::crypto::AesCtr;
use mtproxy::protocol::packet::classify;
use mtproxy::protocol::rpc::frame::{begin_frame, finish_frame};
use mtproxy::protocol::rpc::messages::flags;
use mtproxy::protocol::rpc::{
    CrcMode, LinkEvent, LinkParams, ProcessId, ProxyReqHeader, RpcLink, RpcMessage,
};
use mtproxy::protocol::transport::{
    encode_client_frame, encode_server_frame, ServerDecoder, Transport,
};
use std::hint::black_box;

const SIZES: [usize; 4] = [16, 256, 1024, 16 * 1024];
const NOW: i64 = 1_700_000_000;

/// An encrypted-message-shaped payload of `n` bytes (non-zero auth_key_id when n >= 8).
fn payload(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31) | 1).collect()
}

fn framed(t: Transport, n: usize) -> BytesMut {
    let mut f = BytesMut::new();
    encode_client_frame(t, &payload(n), false, &[], &mut f).expect("aligned payload");
    f
}

fn transport_decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("transport_decode");
    for n in SIZES {
        g.throughput(Throughput::Bytes(n as u64));
        for (name, t) in [
            ("abridged", Transport::Abridged),
            ("intermediate", Transport::Intermediate),
            ("padded", Transport::PaddedIntermediate),
        ] {
            let frame = framed(t, n);
            let mut dec = ServerDecoder::new(t);
            g.bench_with_input(BenchmarkId::new(name, n), &n, |b, _| {
                b.iter_batched_ref(
                    || frame.clone(),
                    |buf| black_box(dec.decode(buf)),
                    BatchSize::SmallInput,
                )
            });
        }
    }
    g.finish();
}

fn client_in(c: &mut Criterion) {
    let mut g = c.benchmark_group("client_in");
    for n in SIZES {
        g.throughput(Throughput::Bytes(n as u64));
        let frame = framed(Transport::Intermediate, n);
        // The client's and the proxy's streams, kept in lockstep: setup encrypts what the
        // measured routine decrypts next.
        let mut client = AesCtr::new(&[7; 32], &[9; 16]);
        let mut proxy = AesCtr::new(&[7; 32], &[9; 16]);
        let mut dec = ServerDecoder::new(Transport::Intermediate);
        g.bench_with_input(BenchmarkId::new("intermediate", n), &n, |b, _| {
            b.iter_batched_ref(
                || {
                    let mut w = frame.clone();
                    client.apply(&mut w);
                    w
                },
                |buf| {
                    proxy.apply(buf);
                    if let Ok(Some(f)) = dec.decode(buf) {
                        black_box(classify(&f.payload));
                    }
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

fn client_out(c: &mut Criterion) {
    let mut g = c.benchmark_group("client_out");
    for n in SIZES {
        g.throughput(Throughput::Bytes(n as u64));
        let data = payload(n);
        let mut enc = AesCtr::new(&[7; 32], &[9; 16]);
        let mut out = BytesMut::with_capacity(64 * 1024);
        g.bench_with_input(BenchmarkId::new("intermediate", n), &n, |b, _| {
            b.iter(|| {
                out.clear();
                let _ = encode_server_frame(Transport::Intermediate, &data, &[], &mut out);
                enc.apply(&mut out);
                black_box(&out);
            })
        });
    }
    g.finish();
}

fn pid(port: i16) -> ProcessId {
    ProcessId {
        ip: 0,
        port,
        pid: 1,
        utime: 5,
    }
}

/// A proxy-side link and an ME-side link, handshaken in memory.
fn link_pair() -> (RpcLink, RpcLink) {
    let secret: Vec<u8> = (0u8..128).map(|i| i.wrapping_mul(37)).collect();
    let proxy: SocketAddr = "127.0.0.1:40001".parse().expect("addr");
    let me: SocketAddr = "127.0.0.1:18888".parse().expect("addr");
    let mut cl = RpcLink::client_with_nonce(
        LinkParams::new(secret.clone(), proxy, me, pid(1)),
        NOW,
        [1; 16],
    );
    let mut sv = RpcLink::server_with_nonce(LinkParams::new(secret, me, proxy, pid(2)), [2; 16]);
    for _ in 0..4 {
        let mut w = BytesMut::new();
        cl.poll_transmit(&mut w);
        sv.handle_input(&mut w, NOW).expect("server input");
        let mut w = BytesMut::new();
        sv.poll_transmit(&mut w);
        cl.handle_input(&mut w, NOW).expect("client input");
    }
    assert!(cl.is_ready() && sv.is_ready(), "in-memory handshake");
    while cl.poll_event().is_some() {}
    while sv.poll_event().is_some() {}
    (cl, sv)
}

fn header() -> ProxyReqHeader {
    ProxyReqHeader::new(
        flags::EXT | flags::EXTMODE2 | flags::MEDIUM,
        0x40_0001,
        "127.0.0.1:50000".parse().expect("addr"),
        "127.0.0.1:443".parse().expect("addr"),
        Some([0xab; 16]),
    )
}

fn proxy_req(c: &mut Criterion) {
    let mut g = c.benchmark_group("proxy_req");
    for n in SIZES {
        g.throughput(Throughput::Bytes(n as u64));
        let data = payload(n);
        let h = header();
        let (mut link, _me) = link_pair();
        let mut out = BytesMut::with_capacity(64 * 1024);
        g.bench_with_input(BenchmarkId::new("link", n), &n, |b, _| {
            b.iter(|| {
                out.clear();
                let _ = link.send_proxy_req(&h, &data);
                link.poll_transmit(&mut out);
                black_box(&out);
            })
        });
        g.bench_with_input(BenchmarkId::new("plain_frame", n), &n, |b, _| {
            b.iter(|| {
                out.clear();
                let start = begin_frame(&mut out, 7);
                h.encode(&mut out);
                out.extend_from_slice(&data);
                let _ = finish_frame(&mut out, start, CrcMode::Crc32c);
                black_box(&out);
            })
        });
    }
    g.finish();
}

fn proxy_ans(c: &mut Criterion) {
    let mut g = c.benchmark_group("proxy_ans");
    for n in SIZES {
        g.throughput(Throughput::Bytes(n as u64));
        let data = bytes::Bytes::from(payload(n));
        let (mut link, mut me) = link_pair();
        g.bench_with_input(BenchmarkId::new("link", n), &n, |b, _| {
            b.iter_batched_ref(
                || {
                    let _ = me.send(&RpcMessage::ProxyAns {
                        flags: 0,
                        conn_id: 0x40_0001,
                        data: data.clone(),
                    });
                    let mut w = BytesMut::new();
                    me.poll_transmit(&mut w);
                    w
                },
                |wire| {
                    let _ = link.handle_input(wire, NOW);
                    while let Some(ev) = link.poll_event() {
                        if let LinkEvent::Message(m) = ev {
                            black_box(m);
                        }
                    }
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    transport_decode,
    client_in,
    client_out,
    proxy_req,
    proxy_ans
);
criterion_main!(benches);
