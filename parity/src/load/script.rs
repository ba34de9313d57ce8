//! What bench clients send and check: the warm-up packet that tells the bench ME
//! which link carries a client, request payloads, and precomputed client connections.

use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{anyhow, bail, Context};
use bytes::BytesMut;
use mtproxy::protocol::crypto::AesCtr;
use mtproxy::protocol::obfuscated2::ClientHandshake;
use mtproxy::protocol::transport::{encode_client_frame, Transport};
use rand::rngs::StdRng;
use rand::Rng;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// First 8 bytes of a warm-up packet (also its non-zero `auth_key_id`).
pub(super) const WARMUP_MAGIC: [u8; 8] = *b"mtbench!";
/// Warm-up packet size (an encrypted-message-shaped packet: at least 56 bytes).
pub const WARMUP_LEN: usize = 64;
/// Smallest request the proxy forwards as an encrypted packet.
pub const MIN_REQUEST: usize = 56;
/// Writes of precomputed bytes are cut into pieces of at most this size.
pub(super) const WRITE_PIECE: usize = 256 * 1024;

/// Phase ids handed out so far (the warm-up packets name their phase).
static PHASES: AtomicU64 = AtomicU64::new(1);

/// A fresh phase id, unique to this process and phase (a client header seen before would be
/// a replay to the proxy).
pub(super) fn next_phase() -> u64 {
    PHASES.fetch_add(1, Ordering::Relaxed) ^ (u64::from(std::process::id()) << 32)
}

/// A warm-up packet naming `phase` and `client`.
pub fn warmup_packet(phase: u64, client: u32) -> [u8; WARMUP_LEN] {
    let mut p = [0u8; WARMUP_LEN];
    p[..8].copy_from_slice(&WARMUP_MAGIC);
    p[8..16].copy_from_slice(&phase.to_le_bytes());
    p[16..20].copy_from_slice(&client.to_le_bytes());
    p
}

/// An encrypted-message-shaped payload of `len` bytes (rounded up to 4, at least 56).
pub fn request_payload(rng: &mut impl Rng, len: usize) -> Vec<u8> {
    crate::client::encrypted_message(rng, len)
}

/// One intermediate frame of `payload`, appended to `dst` (plaintext).
fn frame_into(payload: &[u8], dst: &mut BytesMut) -> anyhow::Result<()> {
    encode_client_frame(Transport::Intermediate, payload, false, &[], dst)
        .map_err(|e| anyhow!("framing: {e}"))
}

/// A client's precomputed connection: header and first packet, then its request stream.
pub(super) struct Script {
    /// Header + framed first packet, encrypted.
    pub(super) opening: Vec<u8>,
    /// The first packet (its echo is checked).
    pub(super) first: Vec<u8>,
    /// Request frames after the opening, encrypted.
    pub(super) stream: Vec<u8>,
    /// The proxy→client keystream.
    pub(super) decrypt: AesCtr,
}

/// Precomputes a client connection: header and framed `first`, then `requests` frames of
/// `request`, all encrypted with a fresh handshake from `rng`.
pub(super) fn script(
    rng: &mut StdRng,
    secret: &[u8; 16],
    first: &[u8],
    request: &[u8],
    requests: usize,
) -> anyhow::Result<Script> {
    let mut hs = ClientHandshake::generate(rng, Some(secret), Transport::Intermediate, 2);
    let mut f = BytesMut::new();
    frame_into(first, &mut f)?;
    hs.encrypt.apply(&mut f);
    let mut opening = hs.header.to_vec();
    opening.extend_from_slice(&f);
    let mut stream = BytesMut::with_capacity(requests * (request.len() + 4));
    for _ in 0..requests {
        frame_into(request, &mut stream)?;
    }
    hs.encrypt.apply(&mut stream);
    Ok(Script {
        opening,
        first: first.to_vec(),
        stream: stream.to_vec(),
        decrypt: hs.decrypt,
    })
}

/// Reads one intermediate answer frame of exactly `expect.len()` payload bytes and checks
/// it against `expect`.
pub(super) async fn read_echo(
    s: &mut TcpStream,
    decrypt: &mut AesCtr,
    expect: &[u8],
) -> anyhow::Result<()> {
    let mut b = vec![0u8; 4 + expect.len()];
    s.read_exact(&mut b).await.context("reading the answer")?;
    decrypt.apply(&mut b);
    if b[..4] != (expect.len() as u32).to_le_bytes() || b[4..] != *expect {
        bail!("the answer is not the echo of the request");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_packets_name_phase_and_client() {
        let p = warmup_packet(7, 3);
        assert!(p.starts_with(&WARMUP_MAGIC));
        assert_eq!(p[8], 7);
        assert_eq!(p[16], 3);
    }
}
