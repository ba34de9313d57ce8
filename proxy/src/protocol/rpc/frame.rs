//! The RPC frame codec of the middle-end link (§5.2, `net-tcp-rpc-client.c`
//! `tcp_rpcc_parse_execute`, `net-tcp-rpc-common.c` `tcp_rpc_conn_send*`).
//!
//! A frame is `[total_len i32][seq i32][payload][crc u32]`, all little-endian:
//! * `total_len = 12 + payload_len`, a multiple of 4 and at least 16;
//! * the single word `04 00 00 00` (`total_len == 4`) is padding: skipped, no seq consumed;
//! * `seq` is `-2` for RPC_NONCE, `-1` for RPC_HANDSHAKE, then `0, 1, 2, …`, counted
//!   independently per direction and checked strictly;
//! * the CRC is CRC32 (IEEE) or, after a handshake with `RPCF_USE_CRC32C`, CRC32C, over
//!   every byte before it.
//!
//! The decoder works on plaintext; CBC is the link's business ([`super::link`]).

use bytes::{Buf, BufMut, BytesMut};

use crate::protocol::codec::Reader;
use crate::protocol::crypto;

/// The `total_len` of a padding word (`04 00 00 00`).
pub const PADDING_WORD_LEN: i32 = 4;
/// The padding word as bytes.
pub const PADDING_WORD: [u8; 4] = [4, 0, 0, 0];
/// The smallest non-padding frame: len, seq, one op word, crc.
pub const MIN_FRAME_LEN: i32 = 16;
/// Frame overhead around the payload: len, seq, crc.
pub const FRAME_OVERHEAD: usize = 12;
/// The seq of RPC_NONCE.
pub const SEQ_NONCE: i32 = -2;
/// The seq of RPC_HANDSHAKE.
pub const SEQ_HANDSHAKE: i32 = -1;

/// Which checksum closes a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrcMode {
    /// CRC32 (IEEE 802.3, zlib); always used for the nonce and handshake frames.
    Crc32,
    /// CRC32C (Castagnoli); from seq 0 on when the handshake negotiated `RPCF_USE_CRC32C`.
    Crc32c,
}

impl CrcMode {
    /// The checksum of `data` in this mode.
    pub fn checksum(self, data: &[u8]) -> u32 {
        match self {
            CrcMode::Crc32 => crypto::crc32(data),
            CrcMode::Crc32c => crypto::crc32c(data),
        }
    }
}

/// A frame rejected by the decoder or the encoder. Any decode error closes the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// `total_len` is ≤ 0 or not a multiple of 4 (C client code −1).
    #[error("bad RPC frame length {0}")]
    BadLength(i32),
    /// `total_len` is 8 or 12 (C client code −2).
    #[error("RPC frame length {0} is below 16")]
    TooShort(i32),
    /// `total_len` exceeds the configured limit (a guard C's ME client does not have).
    #[error("RPC frame length {len} exceeds the limit {max}")]
    TooLong {
        /// The announced length.
        len: i32,
        /// The configured limit.
        max: usize,
    },
    /// The trailing checksum does not match (C client code −3).
    #[error("RPC frame crc mismatch: computed {computed:08x}, frame says {received:08x}")]
    CrcMismatch {
        /// The checksum computed over the frame.
        computed: u32,
        /// The checksum carried by the frame.
        received: u32,
    },
    /// The seq is not the expected one (C client code −4).
    #[error("RPC frame seq {got}, expected {expected}")]
    SeqMismatch {
        /// The seq carried by the frame.
        got: i32,
        /// The seq this direction expected.
        expected: i32,
    },
    /// An outgoing payload whose length is not a multiple of 4 (C asserts).
    #[error("RPC payload of {0} bytes is not a multiple of 4")]
    UnalignedPayload(usize),
}

impl FrameError {
    /// The C client's `fail_connection` code for this error (the C server uses −1 for all).
    pub fn c_code(&self) -> i32 {
        match self {
            FrameError::BadLength(_) | FrameError::TooLong { .. } => -1,
            FrameError::TooShort(_) => -2,
            FrameError::CrcMismatch { .. } => -3,
            FrameError::SeqMismatch { .. } => -4,
            FrameError::UnalignedPayload(_) => -1,
        }
    }
}

/// One decoded frame: its seq and its payload (starting with the op word).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The frame's seq (already checked against the expected one).
    pub seq: i32,
    /// The payload, `total_len − 12` bytes.
    pub payload: BytesMut,
}

/// An incremental decoder for one direction of the link.
///
/// [`FrameDecoder::decode`] consumes at most one frame (plus any padding words before it)
/// from the front of a buffer; it returns `Ok(None)` when more bytes are needed, leaving
/// the incomplete frame in the buffer.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    crc: CrcMode,
    next_seq: i32,
    max_len: usize,
}

impl FrameDecoder {
    /// A decoder expecting `first_seq` next (−2 on a fresh link), checking `crc`, and
    /// refusing frames longer than `max_len` bytes (`usize::MAX` for no limit, like C).
    pub fn new(crc: CrcMode, first_seq: i32, max_len: usize) -> Self {
        Self {
            crc,
            next_seq: first_seq,
            max_len,
        }
    }

    /// Switches the checksum for the following frames.
    pub fn set_crc(&mut self, crc: CrcMode) {
        self.crc = crc;
    }

    /// The checksum currently checked.
    pub fn crc(&self) -> CrcMode {
        self.crc
    }

    /// The seq the next frame must carry.
    pub fn next_seq(&self) -> i32 {
        self.next_seq
    }

    /// Decodes the next frame from the front of `buf`.
    ///
    /// Padding words are consumed and skipped. On `Ok(Some(frame))` exactly the frame's
    /// bytes were consumed; on `Ok(None)` only padding words (if any) were.
    ///
    /// # Errors
    /// A [`FrameError`] for a bad length, a checksum mismatch or an unexpected seq; the
    /// decoder must not be used afterwards.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        loop {
            let mut r = Reader::new(buf);
            let Some(len) = r.i32_le() else {
                return Ok(None);
            };
            if len <= 0 || len % 4 != 0 {
                return Err(FrameError::BadLength(len));
            }
            if len == PADDING_WORD_LEN {
                buf.advance(4);
                continue;
            }
            if len < MIN_FRAME_LEN {
                return Err(FrameError::TooShort(len));
            }
            // `len` is positive here, so the conversion is lossless.
            let ulen = len.unsigned_abs() as usize;
            if ulen > self.max_len {
                return Err(FrameError::TooLong {
                    len,
                    max: self.max_len,
                });
            }
            // Seq, payload and crc follow the length; all of them are there exactly when
            // `ulen` bytes are buffered (`ulen >= 16`).
            let (Some(seq), Some(())) = (r.i32_le(), r.skip(ulen - FRAME_OVERHEAD)) else {
                return Ok(None);
            };
            let checked = r.consumed();
            let Some(received) = r.u32_le() else {
                return Ok(None);
            };
            let computed = self.crc.checksum(checked);
            if computed != received {
                return Err(FrameError::CrcMismatch { computed, received });
            }
            if seq != self.next_seq {
                return Err(FrameError::SeqMismatch {
                    got: seq,
                    expected: self.next_seq,
                });
            }
            self.next_seq = self.next_seq.wrapping_add(1);
            let mut frame = buf.split_to(ulen);
            frame.advance(8);
            frame.truncate(ulen - FRAME_OVERHEAD);
            return Ok(Some(Frame {
                seq,
                payload: frame,
            }));
        }
    }
}

/// Appends one frame `[len][seq][payload][crc]` to `dst`.
///
/// # Errors
/// [`FrameError::UnalignedPayload`] when `payload.len() % 4 != 0` (nothing is written),
/// [`FrameError::TooLong`] when the frame would not fit an i32 length.
pub fn encode_frame(
    seq: i32,
    payload: &[u8],
    crc: CrcMode,
    dst: &mut BytesMut,
) -> Result<(), FrameError> {
    check_payload_len(payload.len())?;
    let start = begin_frame(dst, seq);
    dst.extend_from_slice(payload);
    finish_frame(dst, start, crc)
}

fn check_payload_len(n: usize) -> Result<(), FrameError> {
    if n & 3 != 0 {
        return Err(FrameError::UnalignedPayload(n));
    }
    if n > i32::MAX as usize - FRAME_OVERHEAD {
        return Err(FrameError::TooLong {
            len: i32::MAX,
            max: i32::MAX as usize,
        });
    }
    Ok(())
}

/// Starts a frame in place: writes a placeholder length and `seq`, returns the frame start.
/// Write the payload after it, then call [`finish_frame`].
pub fn begin_frame(dst: &mut BytesMut, seq: i32) -> usize {
    let start = dst.len();
    dst.put_i32_le(0);
    dst.put_i32_le(seq);
    start
}

/// Completes a frame begun at `start`: patches the length and appends the checksum.
///
/// # Errors
/// As [`encode_frame`]; on error the partial frame is removed from `dst`.
pub fn finish_frame(dst: &mut BytesMut, start: usize, crc: CrcMode) -> Result<(), FrameError> {
    let payload_len = dst.len().saturating_sub(start).saturating_sub(8);
    if let Err(e) = check_payload_len(payload_len) {
        dst.truncate(start);
        return Err(e);
    }
    let total = (payload_len + FRAME_OVERHEAD) as i32;
    if let Some(len_slot) = dst.get_mut(start..start + 4) {
        len_slot.copy_from_slice(&total.to_le_bytes());
    }
    let sum = crc.checksum(dst.get(start..).unwrap_or_default());
    dst.put_u32_le(sum);
    Ok(())
}

/// Appends `04 00 00 00` words until `dst.len()` is a multiple of 16 (every CBC flush).
pub fn pad_to_block(dst: &mut BytesMut) {
    while dst.len() & 15 != 0 {
        // Frames are whole words, so the gap is 4, 8 or 12 bytes.
        let gap = 16 - dst.len() % 16;
        if gap >= 4 {
            dst.extend_from_slice(&PADDING_WORD);
        } else {
            // Unreachable with word-aligned content; keep total anyway.
            dst.extend_from_slice(&PADDING_WORD[..gap]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frame(seq: i32, payload: &[u8], crc: CrcMode) -> BytesMut {
        let mut b = BytesMut::new();
        encode_frame(seq, payload, crc, &mut b).unwrap();
        b
    }

    #[test]
    fn decodes_frames_with_padding_between() {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&PADDING_WORD);
        buf.extend_from_slice(&frame(-2, &[1, 2, 3, 4], CrcMode::Crc32));
        buf.extend_from_slice(&PADDING_WORD);
        buf.extend_from_slice(&PADDING_WORD);
        buf.extend_from_slice(&frame(-1, &[5, 6, 7, 8, 9, 10, 11, 12], CrcMode::Crc32));
        let mut d = FrameDecoder::new(CrcMode::Crc32, -2, usize::MAX);
        let f = d.decode(&mut buf).unwrap().unwrap();
        assert_eq!((f.seq, &f.payload[..]), (-2, &[1u8, 2, 3, 4][..]));
        let f = d.decode(&mut buf).unwrap().unwrap();
        assert_eq!(f.seq, -1);
        assert_eq!(f.payload.len(), 8);
        assert_eq!(d.decode(&mut buf).unwrap(), None);
        assert!(buf.is_empty());
        assert_eq!(d.next_seq(), 0);
    }

    #[test]
    fn rejects_bad_lengths_crc_and_seq() {
        let mut d = FrameDecoder::new(CrcMode::Crc32, 0, usize::MAX);
        let mut b = BytesMut::from(&[6u8, 0, 0, 0][..]);
        assert_eq!(d.decode(&mut b), Err(FrameError::BadLength(6)));
        let mut b = BytesMut::from(&[12u8, 0, 0, 0][..]);
        assert_eq!(d.decode(&mut b), Err(FrameError::TooShort(12)));
        let mut b = BytesMut::from(&[0u8, 0, 0, 0x80][..]);
        assert_eq!(d.decode(&mut b), Err(FrameError::BadLength(i32::MIN)));
        let mut b = frame(0, &[0; 4], CrcMode::Crc32c);
        assert!(matches!(
            d.decode(&mut b),
            Err(FrameError::CrcMismatch { .. })
        ));
        let mut b = frame(1, &[0; 4], CrcMode::Crc32);
        assert_eq!(
            d.decode(&mut b),
            Err(FrameError::SeqMismatch {
                got: 1,
                expected: 0
            })
        );
        let mut d = FrameDecoder::new(CrcMode::Crc32, 0, 32);
        let mut b = frame(0, &[0; 24], CrcMode::Crc32);
        assert!(matches!(d.decode(&mut b), Err(FrameError::TooLong { .. })));
        assert_eq!(
            encode_frame(0, &[0; 3], CrcMode::Crc32, &mut BytesMut::new()),
            Err(FrameError::UnalignedPayload(3))
        );
    }

    #[test]
    fn pads_to_sixteen_with_padding_words() {
        let mut b = frame(0, &[0; 32], CrcMode::Crc32);
        assert_eq!(b.len(), 44);
        pad_to_block(&mut b);
        assert_eq!(b.len(), 48);
        assert_eq!(&b[44..], &PADDING_WORD);
    }

    proptest! {
        #[test]
        fn decoder_never_panics(data in proptest::collection::vec(any::<u8>(), 0..300), seq in -3i32..3) {
            let mut d = FrameDecoder::new(CrcMode::Crc32, seq, 1 << 20);
            let mut b = BytesMut::from(&data[..]);
            while let Ok(Some(_)) = d.decode(&mut b) {}
        }

        #[test]
        fn decoder_is_split_invariant(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u32>(), 1..20), 1..6),
            pads in proptest::collection::vec(0usize..3, 6),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
            c32c in any::<bool>(),
        ) {
            let crc = if c32c { CrcMode::Crc32c } else { CrcMode::Crc32 };
            let mut wire = BytesMut::new();
            for (i, p) in payloads.iter().enumerate() {
                for _ in 0..pads[i] { wire.extend_from_slice(&PADDING_WORD); }
                let bytes: Vec<u8> = p.iter().flat_map(|w| w.to_le_bytes()).collect();
                encode_frame(i as i32, &bytes, crc, &mut wire).unwrap();
            }
            let mut points: Vec<usize> = cuts.iter().map(|c| c.index(wire.len() + 1)).collect();
            points.push(wire.len());
            points.sort_unstable();
            let mut d = FrameDecoder::new(crc, 0, usize::MAX);
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            let mut prev = 0;
            for p in points {
                buf.extend_from_slice(&wire[prev..p]);
                prev = p;
                while let Some(f) = d.decode(&mut buf).unwrap() {
                    got.push(f.payload.to_vec());
                }
            }
            let want: Vec<Vec<u8>> = payloads.iter().map(|p| p.iter().flat_map(|w| w.to_le_bytes()).collect()).collect();
            prop_assert_eq!(got, want);
            prop_assert!(buf.is_empty());
        }
    }

    #[test]
    fn waits_for_every_byte_of_the_frame_and_consumes_nothing_meanwhile() {
        let whole = frame(0, &[1, 2, 3, 4], CrcMode::Crc32);
        let mut d = FrameDecoder::new(CrcMode::Crc32, 0, usize::MAX);
        for cut in [0, 3, 4, 8, 12, whole.len() - 1] {
            let mut b = BytesMut::from(&whole[..cut]);
            assert_eq!(d.decode(&mut b), Ok(None), "{cut} bytes");
            assert_eq!(b.len(), cut, "nothing consumed at {cut} bytes");
        }
        assert_eq!(d.next_seq(), 0);
        let mut b = whole.clone();
        b.extend_from_slice(&PADDING_WORD);
        let f = d.decode(&mut b).unwrap().unwrap();
        assert_eq!((f.seq, &f.payload[..]), (0, &[1u8, 2, 3, 4][..]));
        assert_eq!(&b[..], &PADDING_WORD, "only the frame was consumed");
        // A corrupted crc byte is a mismatch carrying both values.
        let mut bad = frame(1, &[9; 8], CrcMode::Crc32);
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        let Err(FrameError::CrcMismatch { computed, received }) = d.decode(&mut bad) else {
            panic!("expected a crc mismatch");
        };
        assert_eq!(computed ^ received, 0xff00_0000);
    }
}
