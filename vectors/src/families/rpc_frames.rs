//! `rpc_frames`: the ME link's RPC framing (c-mtproxy.md §5.2).
//!
//! Kinds: `encode` (seq, payload, crc → wire, and decoded back), `decode` (a wire stream →
//! frames, leftover byte count, optional `expect_error` class: BadLength, TooShort,
//! CrcMismatch, SeqMismatch), `cbc_stream` (flushes of frames, padded to 16 with
//! `04 00 00 00` words, one AES-256-CBC chain encrypted by Python `cryptography`:
//! we rebuild and encrypt the same stream, then decrypt and decode it).

use std::path::Path;

use anyhow::{anyhow, bail, ensure};
use mtproxy::protocol::crypto::{CbcDecryptor, CbcEncryptor};
use mtproxy::protocol::rpc::frame::{
    encode_frame, pad_to_block, CrcMode, FrameDecoder, FrameError,
};
use mtproxy::protocol::rpc::BytesMut;
use serde_json::Value;

use crate::data::{hex_field, int, string};
use crate::replay::{replay_with, FamilyReport};

const NAME: &str = "rpc_frames";

/// Replays `data/rpc_frames.json` against [`FrameDecoder`] and [`encode_frame`].
///
/// # Errors
/// When the data file cannot be read.
pub fn replay(dir: &Path) -> anyhow::Result<FamilyReport> {
    replay_with(dir, NAME, check)
}

fn crc(v: &Value) -> anyhow::Result<CrcMode> {
    Ok(match string(v, "crc")? {
        "crc32" => CrcMode::Crc32,
        "crc32c" => CrcMode::Crc32c,
        other => bail!("unknown crc {other:?}"),
    })
}

fn seq(v: &Value, key: &str) -> anyhow::Result<i32> {
    Ok(i32::try_from(int(v, key)?)?)
}

fn class(e: &FrameError) -> &'static str {
    match e {
        FrameError::BadLength(_) => "BadLength",
        FrameError::TooShort(_) => "TooShort",
        FrameError::TooLong { .. } => "TooLong",
        FrameError::CrcMismatch { .. } => "CrcMismatch",
        FrameError::SeqMismatch { .. } => "SeqMismatch",
        FrameError::UnalignedPayload(_) => "UnalignedPayload",
    }
}

/// Decoded frames as (seq, payload).
type Frames = Vec<(i32, Vec<u8>)>;

/// Decodes `wire` fully; returns the frames and the decoder's outcome.
fn decode_all(mode: CrcMode, first_seq: i32, wire: &[u8]) -> (Frames, usize, Option<FrameError>) {
    let mut d = FrameDecoder::new(mode, first_seq, usize::MAX);
    let mut buf = BytesMut::from(wire);
    let mut frames = Vec::new();
    loop {
        match d.decode(&mut buf) {
            Ok(Some(f)) => frames.push((f.seq, f.payload.to_vec())),
            Ok(None) => return (frames, buf.len(), None),
            Err(e) => return (frames, buf.len(), Some(e)),
        }
    }
}

fn expected_frames(list: &Value) -> anyhow::Result<Frames> {
    list.as_array()
        .ok_or_else(|| anyhow!("frames is not a list"))?
        .iter()
        .map(|f| Ok((seq(f, "seq")?, hex_field(f, "payload")?)))
        .collect()
}

fn check(v: &Value) -> anyhow::Result<()> {
    let mode = crc(v)?;
    match string(v, "kind")? {
        "encode" => {
            let s = seq(v, "seq")?;
            let payload = hex_field(v, "payload")?;
            let mut out = BytesMut::new();
            encode_frame(s, &payload, mode, &mut out)?;
            ensure!(
                out[..] == hex_field(v, "wire")?[..],
                "wire {}",
                hex::encode(&out)
            );
            let (frames, left, err) = decode_all(mode, s, &out);
            ensure!(err.is_none() && left == 0, "does not decode back: {err:?}");
            ensure!(frames == vec![(s, payload)], "decoded back to {frames:?}");
        }
        "decode" => {
            let wire = hex_field(v, "wire")?;
            let (frames, left, err) = decode_all(mode, seq(v, "first_seq")?, &wire);
            ensure!(
                frames == expected_frames(&v["frames"])?,
                "frames {frames:?}"
            );
            match (v.get("expect_error").and_then(Value::as_str), err) {
                (None, None) => {
                    let want = usize::try_from(int(v, "remaining")?)?;
                    ensure!(left == want, "{left} bytes left, expected {want}");
                }
                (Some(want), Some(e)) => ensure!(class(&e) == want, "error {e}, expected {want}"),
                (want, got) => bail!("error {got:?}, expected {want:?}"),
            }
            // Byte by byte must give the same frames.
            let mut d = FrameDecoder::new(mode, seq(v, "first_seq")?, usize::MAX);
            let mut buf = BytesMut::new();
            let mut bytewise = Vec::new();
            'outer: for b in &wire {
                buf.extend_from_slice(&[*b]);
                loop {
                    match d.decode(&mut buf) {
                        Ok(Some(f)) => bytewise.push((f.seq, f.payload.to_vec())),
                        Ok(None) => break,
                        Err(_) => break 'outer,
                    }
                }
            }
            ensure!(
                bytewise == frames,
                "byte-by-byte decoding differs: {bytewise:?}"
            );
        }
        "cbc_stream" => {
            let key: [u8; 32] = hex_field(v, "key")?
                .try_into()
                .map_err(|_| anyhow!("key is not 32 bytes"))?;
            let iv: [u8; 16] = hex_field(v, "iv")?
                .try_into()
                .map_err(|_| anyhow!("iv is not 16 bytes"))?;
            let flushes = v["flushes"]
                .as_array()
                .ok_or_else(|| anyhow!("flushes is not a list"))?;
            let mut enc = CbcEncryptor::new(&key, &iv);
            let mut plain = BytesMut::new();
            let mut wire = BytesMut::new();
            let mut all = Vec::new();
            for fl in flushes {
                let mut chunk = BytesMut::new();
                for (s, p) in expected_frames(fl)? {
                    encode_frame(s, &p, mode, &mut chunk)?;
                    all.push((s, p));
                }
                pad_to_block(&mut chunk);
                plain.extend_from_slice(&chunk);
                enc.encrypt(&mut chunk)?;
                wire.extend_from_slice(&chunk);
            }
            ensure!(
                plain[..] == hex_field(v, "plaintext")?[..],
                "padded plaintext differs"
            );
            let ct = hex_field(v, "ciphertext")?;
            ensure!(wire[..] == ct[..], "ciphertext {}", hex::encode(&wire));
            // Decrypt in odd-sized reads (whole blocks only), then decode.
            let mut dec = CbcDecryptor::new(&key, &iv);
            let mut clear = BytesMut::new();
            for block in ct.chunks(48) {
                let mut b = block.to_vec();
                dec.decrypt(&mut b)?;
                clear.extend_from_slice(&b);
            }
            let (frames, left, err) = decode_all(mode, seq(v, "first_seq")?, &clear);
            ensure!(
                err.is_none() && left == 0,
                "stream does not decode: {err:?}, {left} left"
            );
            ensure!(frames == all, "frames {frames:?}");
        }
        other => bail!("unknown kind {other:?}"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::data_dir;

    #[test]
    fn every_rpc_frames_vector_passes() {
        let r = replay(&data_dir()).unwrap();
        assert!(r.count >= 10, "only {} vectors", r.count);
        assert!(r.failures.is_empty(), "{:#?}", r.failures);
    }
}
