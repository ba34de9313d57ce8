//! Client framing after the obfuscated2 header (§4.3): abridged, intermediate and padded
//! intermediate, in both directions, plus the quick-ack encodings.
//!
//! Everything here works on *already decrypted* bytes; the AES-CTR layer is the caller's.
//!
//! * Server role (the proxy): [`ServerDecoder`] splits client→proxy bytes into
//!   [`ClientFrame`]s; [`encode_server_frame`], [`encode_quick_ack`] and
//!   [`encode_padded_quick_ack_alt`] produce proxy→client bytes.
//! * Client role (the parity harness's simulator): [`encode_client_frame`] produces
//!   client→proxy frames and [`ClientDecoder`] splits proxy→client bytes into
//!   [`ServerFrame`]s.
//!
//! Decoders are incremental: "need more bytes" is `Ok(None)` and nothing is consumed
//! until a whole frame is buffered, so any split of the input yields the same frames.

use crate::protocol::codec::Reader;
use bytes::{Buf, BufMut};

/// The buffer type the decoders and encoders work on (re-exported for callers without a
/// direct `bytes` dependency).
pub use bytes::BytesMut;

/// The largest client→proxy frame the C proxy accepts (`MAX_POST_SIZE` = 262144·4 − 4096).
pub const MAX_CLIENT_FRAME: usize = 262_144 * 4 - 4096;

/// Proxy→client frame lengths must stay below this (`assert (!(len & 0xfc000000))` in C).
pub const MAX_SERVER_FRAME: usize = 0x0400_0000;

/// The abridged length byte (after the quick-ack bit) that announces a 3-byte length.
const ABRIDGED_LONG: u8 = 0x7f;

/// The largest payload an abridged frame carries with a 1-byte length (0x7e words).
const ABRIDGED_SHORT_MAX: usize = 0x7e * 4;

/// The most a decoder pre-allocates for an incomplete frame (a hostile length costs no more).
const RESERVE_CAP: usize = 1 << 20;

/// Bit 31 of an intermediate length: quick-ack request (client→proxy) or quick ack (proxy→client).
const QUICK_ACK_BIT: u32 = 0x8000_0000;

/// Bit 30 of an intermediate length, which the C proxy requires to be 0.
const RESERVED_BIT: u32 = 0x4000_0000;

/// The client transport chosen by the obfuscated2 protocol tag (bytes 56..60 of the header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// Tag `0xefefefef`: 1- or 4-byte length in 4-byte words.
    Abridged,
    /// Tag `0xeeeeeeee`: 4-byte LE byte length, payload a multiple of 4.
    Intermediate,
    /// Tag `0xdddddddd`: like intermediate, with 0..3 random padding bytes counted in the length.
    PaddedIntermediate,
}

impl Transport {
    /// The abridged tag.
    pub const ABRIDGED_TAG: u32 = 0xefef_efef;
    /// The intermediate tag.
    pub const INTERMEDIATE_TAG: u32 = 0xeeee_eeee;
    /// The padded intermediate tag.
    pub const PADDED_INTERMEDIATE_TAG: u32 = 0xdddd_dddd;

    /// The transport named by a decrypted protocol tag (u32 LE at header offset 56).
    pub fn from_tag(tag: u32) -> Option<Self> {
        match tag {
            Self::ABRIDGED_TAG => Some(Self::Abridged),
            Self::INTERMEDIATE_TAG => Some(Self::Intermediate),
            Self::PADDED_INTERMEDIATE_TAG => Some(Self::PaddedIntermediate),
            _ => None,
        }
    }

    /// The protocol tag of this transport.
    pub fn tag(self) -> u32 {
        match self {
            Self::Abridged => Self::ABRIDGED_TAG,
            Self::Intermediate => Self::INTERMEDIATE_TAG,
            Self::PaddedIntermediate => Self::PADDED_INTERMEDIATE_TAG,
        }
    }
}

/// Why a frame header could not be accepted. Every variant closes the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// A frame announcing 0 payload bytes (C: "bad packet length").
    #[error("frame length is zero")]
    ZeroLength,
    /// An abridged 0x7f header whose 3-byte word count is below 0x7f (C: "overlong encoding").
    #[error("abridged length of {words} words in overlong encoding")]
    OverlongEncoding {
        /// The 3-byte word count that should have used the 1-byte form.
        words: u32,
    },
    /// An intermediate length with bit 30 set (C: "bad packet length").
    #[error("frame length {raw:#010x} has bit 30 set")]
    ReservedBit {
        /// The length word with the quick-ack bit already stripped.
        raw: u32,
    },
    /// An intermediate length that is not a multiple of 4 (C: "bad packet length").
    #[error("frame length {len} is not a multiple of 4")]
    NotAligned {
        /// The announced length.
        len: usize,
    },
    /// A padded intermediate frame of 1..3 bytes: its payload would be empty.
    /// The C build aborts the whole process here (§11.15); we close this connection only.
    #[error("padded frame of {len} bytes has an empty payload")]
    ShortPaddedFrame {
        /// The announced length (1..=3).
        len: usize,
    },
    /// A frame longer than allowed ([`MAX_CLIENT_FRAME`] towards the proxy,
    /// [`MAX_SERVER_FRAME`] towards the client).
    #[error("frame length {len} exceeds the limit")]
    TooLong {
        /// The announced length.
        len: usize,
    },
}

/// Why a frame could not be encoded (never caused by client input; guards internal callers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// Abridged and intermediate payloads must be a multiple of 4 bytes.
    #[error("payload of {len} bytes is not a multiple of 4")]
    NotAligned {
        /// The payload length.
        len: usize,
    },
    /// Padding must be 0..=3 bytes (padded intermediate only).
    #[error("padding of {len} bytes (0..=3 allowed)")]
    BadPadding {
        /// The padding length.
        len: usize,
    },
    /// The frame is too long for the transport's length field.
    #[error("frame of {len} bytes is too long")]
    TooLong {
        /// The frame length.
        len: usize,
    },
}

/// One client→proxy frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFrame {
    /// The payload (for padded intermediate: the first `len & !3` bytes, padding dropped).
    pub payload: BytesMut,
    /// The client asked for a quick ack (abridged byte0 bit 7, intermediate length bit 31).
    pub quick_ack: bool,
}

/// One proxy→client unit as the client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerFrame {
    /// An ordinary framed packet (for padded intermediate: padding stripped).
    Packet(BytesMut),
    /// A quick ack: the 4-byte confirm value, high bit set, as the ME sent it.
    QuickAck(u32),
}

/// A parsed frame header: header size, announced length, quick-ack flag.
struct Header {
    header_len: usize,
    len: usize,
    quick_ack: bool,
}

fn peek_u32_le(buf: &[u8]) -> Option<u32> {
    Reader::new(buf).u32_le()
}

/// Parses a client→proxy frame header; `Ok(None)` when the header is incomplete.
fn client_header(transport: Transport, buf: &[u8]) -> Result<Option<Header>, TransportError> {
    let header = match transport {
        Transport::Abridged => {
            let Some(&b0) = buf.first() else {
                return Ok(None);
            };
            let quick_ack = b0 & 0x80 != 0;
            let short = b0 & 0x7f;
            if short == ABRIDGED_LONG {
                let Some(word) = peek_u32_le(buf) else {
                    return Ok(None);
                };
                let words = word >> 8;
                if words < u32::from(ABRIDGED_LONG) {
                    return Err(TransportError::OverlongEncoding { words });
                }
                Header {
                    header_len: 4,
                    len: words as usize * 4,
                    quick_ack,
                }
            } else {
                Header {
                    header_len: 1,
                    len: usize::from(short) * 4,
                    quick_ack,
                }
            }
        }
        Transport::Intermediate | Transport::PaddedIntermediate => {
            let Some(word) = peek_u32_le(buf) else {
                return Ok(None);
            };
            let quick_ack = word & QUICK_ACK_BIT != 0;
            let raw = word & !QUICK_ACK_BIT;
            if raw & RESERVED_BIT != 0 {
                return Err(TransportError::ReservedBit { raw });
            }
            Header {
                header_len: 4,
                len: raw as usize,
                quick_ack,
            }
        }
    };
    let len = header.len;
    if len == 0 {
        return Err(TransportError::ZeroLength);
    }
    match transport {
        Transport::PaddedIntermediate if len < 4 => {
            return Err(TransportError::ShortPaddedFrame { len });
        }
        Transport::Intermediate if len % 4 != 0 => {
            return Err(TransportError::NotAligned { len });
        }
        _ => {}
    }
    if len > MAX_CLIENT_FRAME {
        return Err(TransportError::TooLong { len });
    }
    Ok(Some(header))
}

/// Splits already-decrypted client→proxy bytes into frames (the proxy's side).
///
/// Divergence from C (unobservable): the C parser waits until at least 9 (abridged) or 12
/// (intermediate) bytes are buffered before looking at a frame, so a complete tiny frame
/// at the end of the input waits for more bytes there; here it is returned at once. Such
/// frames (payload < 8 bytes) are always dropped by [`crate::protocol::packet::classify`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerDecoder {
    transport: Transport,
}

impl ServerDecoder {
    /// A decoder for the transport negotiated by the obfuscated2 header.
    pub fn new(transport: Transport) -> Self {
        Self { transport }
    }

    /// The transport this decoder parses.
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// Takes exactly one frame from the front of `buf`.
    ///
    /// `Ok(None)` (nothing consumed) while the frame is incomplete. The payload is split
    /// off `buf` without copying.
    ///
    /// # Errors
    /// A [`TransportError`] as soon as the frame header is known to be invalid; the
    /// connection must be closed (nothing is consumed).
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<ClientFrame>, TransportError> {
        let Some(h) = client_header(self.transport, buf)? else {
            return Ok(None);
        };
        let total = h.header_len + h.len;
        if buf.len() < total {
            buf.reserve((total - buf.len()).min(RESERVE_CAP));
            return Ok(None);
        }
        buf.advance(h.header_len);
        let mut payload = buf.split_to(h.len);
        if self.transport == Transport::PaddedIntermediate {
            payload.truncate(h.len & !3);
        }
        Ok(Some(ClientFrame {
            payload,
            quick_ack: h.quick_ack,
        }))
    }
}

fn check_payload(
    transport: Transport,
    payload: &[u8],
    padding: &[u8],
) -> Result<usize, EncodeError> {
    let len = match transport {
        Transport::Abridged | Transport::Intermediate => {
            if payload.len() & 3 != 0 {
                return Err(EncodeError::NotAligned { len: payload.len() });
            }
            payload.len()
        }
        Transport::PaddedIntermediate => {
            if padding.len() > 3 {
                return Err(EncodeError::BadPadding { len: padding.len() });
            }
            payload.len() + padding.len()
        }
    };
    Ok(len)
}

fn put_header(transport: Transport, len: usize, quick_ack: bool, dst: &mut BytesMut) {
    // `len < MAX_SERVER_FRAME` (2^26) is checked by every caller, so the casts are exact.
    match transport {
        Transport::Abridged => {
            let ack = if quick_ack { 0x80 } else { 0 };
            if len <= ABRIDGED_SHORT_MAX {
                dst.put_u8(ack | (len / 4) as u8);
            } else {
                dst.put_u32_le((((len / 4) as u32) << 8) | u32::from(ack | ABRIDGED_LONG));
            }
        }
        Transport::Intermediate | Transport::PaddedIntermediate => {
            let ack = if quick_ack { QUICK_ACK_BIT } else { 0 };
            dst.put_u32_le(len as u32 | ack);
        }
    }
}

/// Appends one proxy→client frame carrying `payload`.
///
/// `padding` (0..=3 random bytes) is appended after the payload and counted in the
/// length for padded intermediate only; the other transports ignore it. Abridged uses a
/// 1-byte length up to 0x7e words, else `0x7f` and a 3-byte word count.
///
/// # Errors
/// [`EncodeError`] for a misaligned payload (abridged, intermediate), padding longer
/// than 3 bytes, or a frame of [`MAX_SERVER_FRAME`] bytes or more; `dst` is untouched.
pub fn encode_server_frame(
    transport: Transport,
    payload: &[u8],
    padding: &[u8],
    dst: &mut BytesMut,
) -> Result<(), EncodeError> {
    let len = check_payload(transport, payload, padding)?;
    if len >= MAX_SERVER_FRAME {
        return Err(EncodeError::TooLong { len });
    }
    dst.reserve(4 + len);
    put_header(transport, len, false, dst);
    dst.put_slice(payload);
    if transport == Transport::PaddedIntermediate {
        dst.put_slice(padding);
    }
    Ok(())
}

/// Appends a quick ack in its plain form: 4 raw bytes with no length prefix.
///
/// Intermediate and padded intermediate send `confirm` as u32 LE; abridged sends it
/// byte-swapped (big-endian on the wire). `confirm` is passed through unchanged (its
/// high bit, set by the ME, is what lets the client tell it from a length).
pub fn encode_quick_ack(transport: Transport, confirm: u32, dst: &mut BytesMut) {
    match transport {
        Transport::Abridged => dst.put_u32(confirm),
        Transport::Intermediate | Transport::PaddedIntermediate => dst.put_u32_le(confirm),
    }
}

/// Appends the alternative padded-intermediate quick ack (chosen by C about half the
/// time): two ordinary padded frames, `[ff ff ff ff][confirm LE][pad1]` and
/// `[00 00 00 00][pad2]`.
///
/// `pad1` and `pad2` are each everything random that follows in its frame: the C proxy's
/// optional 4-byte random word plus the 0..3 frame padding bytes, so 0..=7 bytes each.
///
/// # Errors
/// [`EncodeError::BadPadding`] when `pad1` or `pad2` is longer than 7 bytes; `dst` is untouched.
pub fn encode_padded_quick_ack_alt(
    confirm: u32,
    pad1: &[u8],
    pad2: &[u8],
    dst: &mut BytesMut,
) -> Result<(), EncodeError> {
    for pad in [pad1, pad2] {
        if pad.len() > 7 {
            return Err(EncodeError::BadPadding { len: pad.len() });
        }
    }
    dst.reserve(4 + 8 + pad1.len() + 4 + 4 + pad2.len());
    dst.put_u32_le((8 + pad1.len()) as u32);
    dst.put_u32_le(u32::MAX);
    dst.put_u32_le(confirm);
    dst.put_slice(pad1);
    dst.put_u32_le((4 + pad2.len()) as u32);
    dst.put_u32_le(0);
    dst.put_slice(pad2);
    Ok(())
}

/// Appends one client→proxy frame (the client simulator's side).
///
/// `quick_ack` sets abridged byte0 bit 7 or intermediate length bit 31. `padding`
/// (0..=3 bytes) is used by padded intermediate only.
///
/// # Errors
/// [`EncodeError`] for a misaligned payload (abridged, intermediate), padding longer
/// than 3 bytes, or a frame longer than [`MAX_CLIENT_FRAME`]; `dst` is untouched.
pub fn encode_client_frame(
    transport: Transport,
    payload: &[u8],
    quick_ack: bool,
    padding: &[u8],
    dst: &mut BytesMut,
) -> Result<(), EncodeError> {
    let len = check_payload(transport, payload, padding)?;
    if len > MAX_CLIENT_FRAME {
        return Err(EncodeError::TooLong { len });
    }
    dst.reserve(4 + len);
    put_header(transport, len, quick_ack, dst);
    dst.put_slice(payload);
    if transport == Transport::PaddedIntermediate {
        dst.put_slice(padding);
    }
    Ok(())
}

/// Splits already-decrypted proxy→client bytes into packets and quick acks (the client
/// simulator's side).
///
/// A quick ack is recognised by its high bit: for intermediate and padded the first u32
/// LE has bit 31 set; for abridged the first byte has bit 7 set (4 bytes big-endian).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientDecoder {
    transport: Transport,
}

impl ClientDecoder {
    /// A decoder for the transport the client announced.
    pub fn new(transport: Transport) -> Self {
        Self { transport }
    }

    /// The transport this decoder parses.
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// Takes exactly one packet or quick ack from the front of `buf`.
    ///
    /// `Ok(None)` (nothing consumed) while it is incomplete.
    ///
    /// # Errors
    /// [`TransportError`] for lengths the C proxy never sends: intermediate bit 30 set or
    /// not a multiple of 4, or [`MAX_SERVER_FRAME`] bytes or more.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<ServerFrame>, TransportError> {
        let (header_len, len) = match self.transport {
            Transport::Abridged => {
                let Some(&b0) = buf.first() else {
                    return Ok(None);
                };
                if b0 & 0x80 != 0 || b0 == ABRIDGED_LONG {
                    let Some(word) = peek_u32_le(buf) else {
                        return Ok(None);
                    };
                    if b0 & 0x80 != 0 {
                        buf.advance(4);
                        return Ok(Some(ServerFrame::QuickAck(word.swap_bytes())));
                    }
                    (4, (word >> 8) as usize * 4)
                } else {
                    (1, usize::from(b0) * 4)
                }
            }
            Transport::Intermediate | Transport::PaddedIntermediate => {
                let Some(word) = peek_u32_le(buf) else {
                    return Ok(None);
                };
                if word & QUICK_ACK_BIT != 0 {
                    buf.advance(4);
                    return Ok(Some(ServerFrame::QuickAck(word)));
                }
                if word & RESERVED_BIT != 0 {
                    return Err(TransportError::ReservedBit { raw: word });
                }
                let len = word as usize;
                if self.transport == Transport::Intermediate && len & 3 != 0 {
                    return Err(TransportError::NotAligned { len });
                }
                (4, len)
            }
        };
        if len >= MAX_SERVER_FRAME {
            return Err(TransportError::TooLong { len });
        }
        let total = header_len + len;
        if buf.len() < total {
            buf.reserve((total - buf.len()).min(RESERVE_CAP));
            return Ok(None);
        }
        buf.advance(header_len);
        let mut payload = buf.split_to(len);
        if self.transport == Transport::PaddedIntermediate {
            payload.truncate(len & !3);
        }
        Ok(Some(ServerFrame::Packet(payload)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ALL: [Transport; 3] = [
        Transport::Abridged,
        Transport::Intermediate,
        Transport::PaddedIntermediate,
    ];

    fn decode_all_server(t: Transport, bytes: &[u8]) -> (Vec<ClientFrame>, Option<TransportError>) {
        let mut d = ServerDecoder::new(t);
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        loop {
            match d.decode(&mut buf) {
                Ok(Some(f)) => out.push(f),
                Ok(None) => return (out, None),
                Err(e) => return (out, Some(e)),
            }
        }
    }

    /// Feeds `bytes` in chunks cut at `cuts`, decoding after each chunk.
    fn decode_split_server(
        t: Transport,
        bytes: &[u8],
        cuts: &[usize],
    ) -> (Vec<ClientFrame>, Option<TransportError>) {
        let mut d = ServerDecoder::new(t);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
        points.push(bytes.len());
        points.sort_unstable();
        let mut at = 0;
        for p in points {
            buf.extend_from_slice(&bytes[at..p]);
            at = p;
            loop {
                match d.decode(&mut buf) {
                    Ok(Some(f)) => out.push(f),
                    Ok(None) => break,
                    Err(e) => return (out, Some(e)),
                }
            }
        }
        (out, None)
    }

    fn decode_all_client(
        t: Transport,
        bytes: &[u8],
        cuts: &[usize],
    ) -> (Vec<ServerFrame>, Option<TransportError>) {
        let mut d = ClientDecoder::new(t);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
        points.push(bytes.len());
        points.sort_unstable();
        let mut at = 0;
        for p in points {
            buf.extend_from_slice(&bytes[at..p]);
            at = p;
            loop {
                match d.decode(&mut buf) {
                    Ok(Some(f)) => out.push(f),
                    Ok(None) => break,
                    Err(e) => return (out, Some(e)),
                }
            }
        }
        (out, None)
    }

    #[test]
    fn tags_round_trip() {
        for t in ALL {
            assert_eq!(Transport::from_tag(t.tag()), Some(t));
        }
        assert_eq!(Transport::from_tag(0xefef_efee), None);
    }

    #[test]
    fn quick_ack_examples_from_the_c_build() {
        let mut d = BytesMut::new();
        encode_quick_ack(Transport::Intermediate, 0x8102_0304, &mut d);
        assert_eq!(&d[..], [0x04, 0x03, 0x02, 0x81]);
        d.clear();
        encode_quick_ack(Transport::Abridged, 0x8102_0304, &mut d);
        assert_eq!(&d[..], [0x81, 0x02, 0x03, 0x04]);
    }

    #[test]
    fn abridged_long_and_overlong() {
        let (f, e) = decode_all_server(Transport::Abridged, &[0x7f, 0x7e, 0, 0]);
        assert!(f.is_empty());
        assert_eq!(e, Some(TransportError::OverlongEncoding { words: 0x7e }));
        let mut bytes = vec![0xff, 0x7f, 0, 0];
        bytes.resize(4 + 0x7f * 4, 7);
        let (f, e) = decode_all_server(Transport::Abridged, &bytes);
        assert_eq!(e, None);
        assert_eq!(f.len(), 1);
        assert!(f[0].quick_ack);
        assert_eq!(f[0].payload.len(), 0x7f * 4);
    }

    #[test]
    fn padded_short_frame_is_an_error_not_an_abort() {
        for len in 1u8..=3 {
            let (_, e) = decode_all_server(Transport::PaddedIntermediate, &[len, 0, 0, 0, 1, 2, 3]);
            assert_eq!(
                e,
                Some(TransportError::ShortPaddedFrame {
                    len: usize::from(len)
                })
            );
        }
    }

    #[test]
    fn server_frame_limit_is_inclusive() {
        let ok = (MAX_CLIENT_FRAME as u32).to_le_bytes();
        assert_eq!(
            decode_all_server(Transport::Intermediate, &ok),
            (vec![], None)
        );
        let bad = (MAX_CLIENT_FRAME as u32 + 4).to_le_bytes();
        assert_eq!(
            decode_all_server(Transport::Intermediate, &bad).1,
            Some(TransportError::TooLong {
                len: MAX_CLIENT_FRAME + 4
            })
        );
    }

    #[test]
    fn alt_quick_ack_is_two_padded_packets() {
        let mut d = BytesMut::new();
        encode_padded_quick_ack_alt(0x8000_0001, &[1, 2, 3, 4, 5], &[], &mut d).unwrap();
        let (f, e) = decode_all_client(Transport::PaddedIntermediate, &d, &[]);
        assert_eq!(e, None);
        assert_eq!(
            f,
            vec![
                ServerFrame::Packet(BytesMut::from(
                    &[0xff, 0xff, 0xff, 0xff, 1, 0, 0, 0x80, 1, 2, 3, 4][..]
                )),
                ServerFrame::Packet(BytesMut::from(&[0, 0, 0, 0][..])),
            ]
        );
    }

    fn transport() -> impl Strategy<Value = Transport> {
        prop_oneof![
            Just(Transport::Abridged),
            Just(Transport::Intermediate),
            Just(Transport::PaddedIntermediate)
        ]
    }

    /// Payload sizes (in words) spanning the abridged 1-byte/3-byte boundary.
    fn frames() -> impl Strategy<Value = Vec<(usize, bool, usize, u8)>> {
        proptest::collection::vec((1usize..300, any::<bool>(), 0usize..4, any::<u8>()), 0..6)
    }

    fn build(words: usize, fill: u8) -> Vec<u8> {
        (0..words * 4).map(|i| fill.wrapping_add(i as u8)).collect()
    }

    proptest! {
        #[test]
        fn decoders_never_panic(t in transport(), bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = decode_all_server(t, &bytes);
            let _ = decode_all_client(t, &bytes, &[]);
        }

        #[test]
        fn client_encode_server_decode(t in transport(), frames in frames(), cuts in proptest::collection::vec(any::<usize>(), 0..8)) {
            let mut wire = BytesMut::new();
            let mut expect = Vec::new();
            for (words, ack, pad, fill) in &frames {
                let payload = build(*words, *fill);
                let padding = vec![0xa5; *pad];
                encode_client_frame(t, &payload, *ack, &padding, &mut wire).unwrap();
                expect.push(ClientFrame { payload: BytesMut::from(&payload[..]), quick_ack: *ack });
            }
            let whole = decode_all_server(t, &wire);
            prop_assert_eq!(&whole, &(expect, None));
            prop_assert_eq!(decode_split_server(t, &wire, &cuts), whole);
        }

        #[test]
        fn server_encode_client_decode(t in transport(), frames in frames(), cuts in proptest::collection::vec(any::<usize>(), 0..8)) {
            let mut wire = BytesMut::new();
            let mut expect = Vec::new();
            for (words, ack, pad, fill) in &frames {
                let payload = build(*words, *fill);
                if *ack {
                    let confirm = 0x8000_0000 | u32::from_le_bytes([payload[0], payload[1], payload[2], payload[3]]);
                    encode_quick_ack(t, confirm, &mut wire);
                    expect.push(ServerFrame::QuickAck(confirm));
                } else {
                    let padding = vec![0x5a; *pad];
                    encode_server_frame(t, &payload, &padding, &mut wire).unwrap();
                    expect.push(ServerFrame::Packet(BytesMut::from(&payload[..])));
                }
            }
            let whole = decode_all_client(t, &wire, &[]);
            prop_assert_eq!(&whole, &(expect, None));
            prop_assert_eq!(decode_all_client(t, &wire, &cuts), whole);
        }

        #[test]
        fn server_decoder_split_invariance(t in transport(), bytes in proptest::collection::vec(any::<u8>(), 0..600), cuts in proptest::collection::vec(any::<usize>(), 0..8)) {
            prop_assert_eq!(decode_split_server(t, &bytes, &cuts), decode_all_server(t, &bytes));
        }

        #[test]
        fn client_decoder_split_invariance(t in transport(), bytes in proptest::collection::vec(any::<u8>(), 0..600), cuts in proptest::collection::vec(any::<usize>(), 0..8)) {
            prop_assert_eq!(decode_all_client(t, &bytes, &cuts), decode_all_client(t, &bytes, &[]));
        }
    }
}
