//! The RPC messages of the middle-end link (§5.3, §5.5, §5.7; `mtproto-proxy.c`
//! `forward_mtproto_packet`, `process_client_packet`, `net-tcp-rpc-common.c`).
//!
//! [`RpcMessage`] covers every op both roles exchange; [`RpcMessage::decode`] and
//! [`RpcMessage::encode`] work on a frame payload (op word first). Sizes are checked as C
//! checks them: SIMPLE_ACK exactly 16, CLOSE_EXT/CLOSE_CONN/PING/PONG exactly 12,
//! PROXY_ANS at least 16. Unknown ops decode to [`RpcMessage::Unknown`].

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use bytes::{BufMut, Bytes};

use crate::protocol::codec::Reader;

use super::handshake::{
    Handshake, HandshakeError, HandshakeParseError, Nonce, RPC_HANDSHAKE, RPC_HANDSHAKE_ERROR,
    RPC_NONCE,
};

/// RPC_PROXY_REQ (proxy → ME).
pub const RPC_PROXY_REQ: u32 = 0x36ce_f1ee;
/// RPC_PROXY_ANS (ME → proxy).
pub const RPC_PROXY_ANS: u32 = 0x4403_da0d;
/// RPC_SIMPLE_ACK (ME → proxy).
pub const RPC_SIMPLE_ACK: u32 = 0x3bac_409b;
/// RPC_CLOSE_EXT (ME → proxy).
pub const RPC_CLOSE_EXT: u32 = 0x5eb6_34a2;
/// RPC_CLOSE_CONN (proxy → ME).
pub const RPC_CLOSE_CONN: u32 = 0x1fcf_425d;
/// RPC_PING.
pub const RPC_PING: u32 = 0x5730_a2df;
/// RPC_PONG.
pub const RPC_PONG: u32 = 0x8430_eaa7;
/// TL_PROXY_TAG, the constructor of the proxy tag in PROXY_REQ's extra.
pub const TL_PROXY_TAG: u32 = 0xdb1e_26ae;
/// TL_HTTP_QUERY_INFO (HTTP transport only; never produced by this port).
pub const TL_HTTP_QUERY_INFO: u32 = 0xd45a_b381;

/// PROXY_REQ flag bits (§5.7).
pub mod flags {
    /// auth_key_id == 0 (unencrypted MTProto message).
    pub const UNENCRYPTED: u32 = 0x2;
    /// HTTP query info in extra (HTTP transport, dead).
    pub const HTTP_QUERY_INFO: u32 = 0x4;
    /// Proxy tag in extra (`-P`).
    pub const PROXY_TAG: u32 = 0x8;
    /// Either extra flag: the `extra_size` word is present.
    pub const HAS_EXTRA: u32 = PROXY_TAG | HTTP_QUERY_INFO;
    /// Every TCP (ext/obfuscated) client.
    pub const EXT: u32 = 0x1000;
    /// EXTMODE1 (unreachable in C).
    pub const EXTMODE1: u32 = 0x10000;
    /// EXTMODE2: obfuscated2 connection.
    pub const EXTMODE2: u32 = 0x20000;
    /// PAD (never sent: masked out).
    pub const PAD: u32 = 0x0800_0000;
    /// DROPPED (effectively never sent).
    pub const DROPPED: u32 = 0x1000_0000;
    /// MEDIUM: intermediate or padded intermediate transport.
    pub const MEDIUM: u32 = 0x2000_0000;
    /// COMPACT: abridged transport.
    pub const COMPACT: u32 = 0x4000_0000;
    /// QUICKACK: this packet asked for a quick ack.
    pub const QUICKACK: u32 = 0x8000_0000;
}

/// Size of the fixed PROXY_REQ header up to (excluding) `extra_size`.
pub const PROXY_REQ_FIXED_LEN: usize = 56;
/// Size of the TL_PROXY_TAG extra: constructor, `0x10`, 16 tag bytes, 3 zero bytes.
pub const PROXY_TAG_EXTRA_LEN: usize = 24;

/// Converts a socket address into PROXY_REQ's 16-byte form (IPv4-mapped for IPv4).
pub fn wire_ip(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

/// The extra section of a PROXY_REQ (present iff `flags & 0xC`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyReqExtra {
    /// No extra bytes (`extra_size` 0 when the flags still ask for the section).
    None,
    /// `TL_PROXY_TAG` with the 16-byte tag as a TL short string (24 bytes).
    ProxyTag([u8; 16]),
    /// Any other extra content, verbatim.
    Raw(Bytes),
}

impl ProxyReqExtra {
    /// Encoded length of the extra bytes (without the `extra_size` word).
    pub fn len(&self) -> usize {
        match self {
            ProxyReqExtra::None => 0,
            ProxyReqExtra::ProxyTag(_) => PROXY_TAG_EXTRA_LEN,
            ProxyReqExtra::Raw(b) => b.len(),
        }
    }

    /// Whether there are no extra bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn encode(&self, dst: &mut impl BufMut) {
        match self {
            ProxyReqExtra::None => {}
            ProxyReqExtra::ProxyTag(tag) => {
                dst.put_u32_le(TL_PROXY_TAG);
                dst.put_u8(16);
                dst.put_slice(tag);
                dst.put_slice(&[0, 0, 0]);
            }
            ProxyReqExtra::Raw(b) => dst.put_slice(b),
        }
    }

    fn parse(b: Bytes) -> Self {
        if b.is_empty() {
            return ProxyReqExtra::None;
        }
        let tag = Reader::new(&b).complete(|r| {
            if r.u32_le()? != TL_PROXY_TAG || r.u8()? != 16 {
                return None;
            }
            let tag = r.take_array::<16>()?;
            (r.take_array::<3>()? == [0; 3]).then_some(tag)
        });
        match tag {
            Some(tag) => ProxyReqExtra::ProxyTag(tag),
            None => ProxyReqExtra::Raw(b),
        }
    }
}

/// Everything of a PROXY_REQ except the client's packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyReqHeader {
    /// Flags (see [`flags`]).
    pub flags: u32,
    /// The proxy's id of the client connection on this link.
    pub ext_conn_id: i64,
    /// The client's IP (IPv6, or IPv4-mapped).
    pub client_ip: Ipv6Addr,
    /// The client's port (an i32 on the wire).
    pub client_port: u32,
    /// The proxy's local IP (after `--nat-info`), IPv6 or IPv4-mapped.
    pub proxy_ip: Ipv6Addr,
    /// The proxy's local (`-H`) port.
    pub proxy_port: u32,
    /// The extra section, written iff `flags & 0xC != 0`.
    pub extra: ProxyReqExtra,
}

impl ProxyReqHeader {
    /// A header for a client at `client` talking to our `proxy` address (NAT-translated),
    /// with the proxy tag if given. `flags` gets [`flags::PROXY_TAG`] added when a tag is
    /// given, as C does.
    pub fn new(
        flags: u32,
        ext_conn_id: i64,
        client: SocketAddr,
        proxy: SocketAddr,
        proxy_tag: Option<[u8; 16]>,
    ) -> Self {
        let (flags, extra) = match proxy_tag {
            Some(tag) => (flags | flags::PROXY_TAG, ProxyReqExtra::ProxyTag(tag)),
            None => (flags, ProxyReqExtra::None),
        };
        Self {
            flags,
            ext_conn_id,
            client_ip: wire_ip(client.ip()),
            client_port: u32::from(client.port()),
            proxy_ip: wire_ip(proxy.ip()),
            proxy_port: u32::from(proxy.port()),
            extra,
        }
    }

    /// Encoded length of the header (fixed part plus the extra section if flagged).
    pub fn encoded_len(&self) -> usize {
        if self.flags & flags::HAS_EXTRA != 0 {
            PROXY_REQ_FIXED_LEN + 4 + self.extra.len()
        } else {
            PROXY_REQ_FIXED_LEN
        }
    }

    /// Appends the header (op included); the client's packet follows it verbatim.
    pub fn encode(&self, dst: &mut impl BufMut) {
        dst.put_u32_le(RPC_PROXY_REQ);
        dst.put_u32_le(self.flags);
        dst.put_i64_le(self.ext_conn_id);
        dst.put_slice(&self.client_ip.octets());
        dst.put_u32_le(self.client_port);
        dst.put_slice(&self.proxy_ip.octets());
        dst.put_u32_le(self.proxy_port);
        if self.flags & flags::HAS_EXTRA != 0 {
            dst.put_u32_le(self.extra.len() as u32);
            self.extra.encode(dst);
        }
    }

    /// The proxy tag, if the extra carries one.
    pub fn proxy_tag(&self) -> Option<&[u8; 16]> {
        match &self.extra {
            ProxyReqExtra::ProxyTag(t) => Some(t),
            _ => None,
        }
    }
}

/// A PROXY_REQ: header plus the client's MTProto packet verbatim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyReq {
    /// The header.
    pub header: ProxyReqHeader,
    /// The client's packet.
    pub payload: Bytes,
}

/// One RPC message (a frame payload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RpcMessage {
    /// RPC_NONCE (handshake, seq −2).
    Nonce(Nonce),
    /// RPC_HANDSHAKE (handshake, seq −1).
    Handshake(Handshake),
    /// RPC_HANDSHAKE_ERROR.
    HandshakeError(HandshakeError),
    /// RPC_PROXY_REQ.
    ProxyReq(ProxyReq),
    /// RPC_PROXY_ANS: data for the client `conn_id` (one transport packet).
    ProxyAns {
        /// Flags (0x8 flush, 0x10 small error: HTTP only).
        flags: u32,
        /// The proxy's `ext_conn_id`.
        conn_id: i64,
        /// The bytes for the client.
        data: Bytes,
    },
    /// RPC_SIMPLE_ACK: a quick ack for the client `conn_id`.
    SimpleAck {
        /// The proxy's `ext_conn_id`.
        conn_id: i64,
        /// The confirm value.
        confirm: u32,
    },
    /// RPC_CLOSE_EXT: the ME closes client `conn_id`.
    CloseExt {
        /// The proxy's `ext_conn_id`.
        conn_id: i64,
    },
    /// RPC_CLOSE_CONN: the proxy tells the ME client `conn_id` is gone.
    CloseConn {
        /// The proxy's `ext_conn_id`.
        conn_id: i64,
    },
    /// RPC_PING.
    Ping {
        /// Echoed in the PONG.
        ping_id: i64,
    },
    /// RPC_PONG.
    Pong {
        /// The ping's id.
        ping_id: i64,
    },
    /// Any other op (logged and ignored by the proxy).
    Unknown {
        /// The op word.
        op: u32,
        /// The bytes after the op.
        body: Bytes,
    },
}

/// A payload that does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// Shorter than the op word.
    #[error("RPC payload of {0} bytes has no op")]
    NoOp(usize),
    /// A known op with a size C does not accept (C ignores such messages).
    #[error("RPC op {op:08x} with bad size {len}")]
    BadSize {
        /// The op.
        op: u32,
        /// The payload length.
        len: usize,
    },
    /// PROXY_REQ `extra_size` runs past the payload or is negative.
    #[error("PROXY_REQ extra_size {extra_size} does not fit {len} bytes")]
    BadExtraSize {
        /// The announced size.
        extra_size: u32,
        /// The payload length.
        len: usize,
    },
    /// A nonce / handshake / handshake-error that does not parse.
    #[error(transparent)]
    Handshake(#[from] HandshakeParseError),
}

impl RpcMessage {
    /// The op word.
    pub fn op(&self) -> u32 {
        match self {
            RpcMessage::Nonce(_) => RPC_NONCE,
            RpcMessage::Handshake(_) => RPC_HANDSHAKE,
            RpcMessage::HandshakeError(_) => RPC_HANDSHAKE_ERROR,
            RpcMessage::ProxyReq(_) => RPC_PROXY_REQ,
            RpcMessage::ProxyAns { .. } => RPC_PROXY_ANS,
            RpcMessage::SimpleAck { .. } => RPC_SIMPLE_ACK,
            RpcMessage::CloseExt { .. } => RPC_CLOSE_EXT,
            RpcMessage::CloseConn { .. } => RPC_CLOSE_CONN,
            RpcMessage::Ping { .. } => RPC_PING,
            RpcMessage::Pong { .. } => RPC_PONG,
            RpcMessage::Unknown { op, .. } => *op,
        }
    }

    /// The payload length [`RpcMessage::encode`] writes.
    pub fn encoded_len(&self) -> usize {
        match self {
            RpcMessage::Nonce(n) => n.encoded_len(),
            RpcMessage::Handshake(_) => super::handshake::HANDSHAKE_LEN,
            RpcMessage::HandshakeError(_) => super::handshake::HANDSHAKE_ERROR_LEN,
            RpcMessage::ProxyReq(r) => r.header.encoded_len() + r.payload.len(),
            RpcMessage::ProxyAns { data, .. } => 16 + data.len(),
            RpcMessage::SimpleAck { .. } => 16,
            RpcMessage::CloseExt { .. }
            | RpcMessage::CloseConn { .. }
            | RpcMessage::Ping { .. }
            | RpcMessage::Pong { .. } => 12,
            RpcMessage::Unknown { body, .. } => 4 + body.len(),
        }
    }

    /// Appends the payload (op word first).
    pub fn encode(&self, dst: &mut impl BufMut) {
        match self {
            RpcMessage::Nonce(n) => n.encode(dst),
            RpcMessage::Handshake(h) => h.encode(dst),
            RpcMessage::HandshakeError(e) => e.encode(dst),
            RpcMessage::ProxyReq(r) => {
                r.header.encode(dst);
                dst.put_slice(&r.payload);
            }
            RpcMessage::ProxyAns {
                flags,
                conn_id,
                data,
            } => {
                dst.put_u32_le(RPC_PROXY_ANS);
                dst.put_u32_le(*flags);
                dst.put_i64_le(*conn_id);
                dst.put_slice(data);
            }
            RpcMessage::SimpleAck { conn_id, confirm } => {
                dst.put_u32_le(RPC_SIMPLE_ACK);
                dst.put_i64_le(*conn_id);
                dst.put_u32_le(*confirm);
            }
            RpcMessage::CloseExt { conn_id } => {
                dst.put_u32_le(RPC_CLOSE_EXT);
                dst.put_i64_le(*conn_id);
            }
            RpcMessage::CloseConn { conn_id } => {
                dst.put_u32_le(RPC_CLOSE_CONN);
                dst.put_i64_le(*conn_id);
            }
            RpcMessage::Ping { ping_id } => {
                dst.put_u32_le(RPC_PING);
                dst.put_i64_le(*ping_id);
            }
            RpcMessage::Pong { ping_id } => {
                dst.put_u32_le(RPC_PONG);
                dst.put_i64_le(*ping_id);
            }
            RpcMessage::Unknown { op, body } => {
                dst.put_u32_le(*op);
                dst.put_slice(body);
            }
        }
    }

    /// The payload as bytes.
    pub fn to_bytes(&self) -> Bytes {
        let mut b = bytes::BytesMut::with_capacity(self.encoded_len());
        self.encode(&mut b);
        b.freeze()
    }

    /// Decodes a frame payload. Data-carrying variants share `payload`'s memory.
    ///
    /// # Errors
    /// [`MessageError`] for a payload without op, a known op with a wrong size, or a
    /// malformed PROXY_REQ / nonce / handshake.
    pub fn decode(payload: Bytes) -> Result<Self, MessageError> {
        let len = payload.len();
        let mut r = Reader::new(&payload);
        let Some(op) = r.u32_le() else {
            return Err(MessageError::NoOp(len));
        };
        let bad = || MessageError::BadSize { op, len };
        Ok(match op {
            RPC_NONCE => RpcMessage::Nonce(Nonce::decode(&payload)?),
            RPC_HANDSHAKE => RpcMessage::Handshake(Handshake::decode(&payload)?),
            RPC_HANDSHAKE_ERROR => RpcMessage::HandshakeError(HandshakeError::decode(&payload)?),
            RPC_PROXY_ANS => {
                // At least 16 bytes: op, flags, conn_id, then any data.
                let flags = r.u32_le().ok_or_else(bad)?;
                let conn_id = r.i64_le().ok_or_else(bad)?;
                RpcMessage::ProxyAns {
                    flags,
                    conn_id,
                    data: payload.slice(r.used()..),
                }
            }
            // The fixed-size messages: exactly 16 or 12 bytes.
            RPC_SIMPLE_ACK => {
                let (conn_id, confirm) = r
                    .complete(|r| Some((r.i64_le()?, r.u32_le()?)))
                    .ok_or_else(bad)?;
                RpcMessage::SimpleAck { conn_id, confirm }
            }
            RPC_CLOSE_EXT => RpcMessage::CloseExt {
                conn_id: r.complete(Reader::i64_le).ok_or_else(bad)?,
            },
            RPC_CLOSE_CONN => RpcMessage::CloseConn {
                conn_id: r.complete(Reader::i64_le).ok_or_else(bad)?,
            },
            RPC_PING => RpcMessage::Ping {
                ping_id: r.complete(Reader::i64_le).ok_or_else(bad)?,
            },
            RPC_PONG => RpcMessage::Pong {
                ping_id: r.complete(Reader::i64_le).ok_or_else(bad)?,
            },
            RPC_PROXY_REQ => RpcMessage::ProxyReq(decode_proxy_req(&payload, r)?),
            _ => RpcMessage::Unknown {
                op,
                body: payload.slice(r.used()..),
            },
        })
    }
}

/// Decodes PROXY_REQ from `payload`, `r` being a reader over it just after the op.
fn decode_proxy_req(payload: &Bytes, mut r: Reader<'_>) -> Result<ProxyReq, MessageError> {
    let len = payload.len();
    // Any read of the 56-byte fixed part or of `extra_size` that does not fit.
    let short = || MessageError::BadSize {
        op: RPC_PROXY_REQ,
        len,
    };
    let flags = r.u32_le().ok_or_else(short)?;
    let ext_conn_id = r.i64_le().ok_or_else(short)?;
    let client_ip = Ipv6Addr::from(r.take_array::<16>().ok_or_else(short)?);
    let client_port = r.u32_le().ok_or_else(short)?;
    let proxy_ip = Ipv6Addr::from(r.take_array::<16>().ok_or_else(short)?);
    let proxy_port = r.u32_le().ok_or_else(short)?;
    let extra = if flags & flags::HAS_EXTRA != 0 {
        let extra_size = r.u32_le().ok_or_else(short)?;
        let start = r.used();
        if r.skip(extra_size as usize).is_none() {
            return Err(MessageError::BadExtraSize { extra_size, len });
        }
        ProxyReqExtra::parse(payload.slice(start..r.used()))
    } else {
        ProxyReqExtra::None
    };
    Ok(ProxyReq {
        header: ProxyReqHeader {
            flags,
            ext_conn_id,
            client_ip,
            client_port,
            proxy_ip,
            proxy_port,
            extra,
        },
        payload: payload.slice(r.used()..),
    })
}

#[cfg(test)]
mod tests {
    use super::super::handshake::{NonceSchema, ProcessId};
    use super::*;
    use proptest::prelude::*;

    /// §5.7, observed from the C build (intermediate client, quick ack, tag, req_pq_multi).
    const OBSERVED: &str = "eef1ce36 0a1002a0 0c00400000000000 \
        00000000000000000000ffff7f000001 7c8e0000 \
        00000000000000000000ffff7f000001 0b480000 \
        18000000 ae261edb 10 fedcba9876543210fedcba9876543210 000000 \
        000000000000000000b4daa5570e076b 14000000 f18e7ebe 17c9cb5ee023f21c7c703cf5cba7c7d2";

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s.split_whitespace().collect::<String>()).unwrap()
    }

    #[test]
    fn observed_proxy_req_decodes_and_reencodes_byte_exact() {
        let wire = unhex(OBSERVED);
        let m = RpcMessage::decode(Bytes::from(wire.clone())).unwrap();
        let RpcMessage::ProxyReq(req) = &m else {
            panic!("not a PROXY_REQ: {m:?}")
        };
        let h = &req.header;
        assert_eq!(h.flags, 0xa002_100a);
        assert_eq!(
            h.flags,
            flags::QUICKACK
                | flags::MEDIUM
                | flags::EXTMODE2
                | flags::EXT
                | flags::PROXY_TAG
                | flags::UNENCRYPTED
        );
        assert_eq!(h.ext_conn_id, 0x40000c);
        assert_eq!(h.client_ip, "::ffff:127.0.0.1".parse::<Ipv6Addr>().unwrap());
        assert_eq!((h.client_port, h.proxy_port), (36476, 18443));
        assert_eq!(
            h.proxy_tag(),
            Some(
                &unhex("fedcba9876543210fedcba9876543210")[..]
                    .try_into()
                    .unwrap()
            )
        );
        assert_eq!(req.payload.len(), 40);
        assert_eq!(m.to_bytes()[..], wire[..]);
        let built = ProxyReqHeader::new(
            0xa002_1002,
            0x40000c,
            "127.0.0.1:36476".parse().unwrap(),
            "127.0.0.1:18443".parse().unwrap(),
            Some(*h.proxy_tag().unwrap()),
        );
        assert_eq!(&built, h);
    }

    #[test]
    fn fixed_size_messages_reject_wrong_sizes() {
        for (op, good) in [
            (RPC_SIMPLE_ACK, 16),
            (RPC_CLOSE_EXT, 12),
            (RPC_CLOSE_CONN, 12),
            (RPC_PING, 12),
            (RPC_PONG, 12),
        ] {
            for len in [good - 4, good + 4] {
                let mut b = vec![0u8; len];
                b[..4].copy_from_slice(&op.to_le_bytes());
                assert_eq!(
                    RpcMessage::decode(Bytes::from(b)),
                    Err(MessageError::BadSize { op, len })
                );
            }
        }
        let mut ans = vec![0u8; 12];
        ans[..4].copy_from_slice(&RPC_PROXY_ANS.to_le_bytes());
        assert!(RpcMessage::decode(Bytes::from(ans)).is_err());
        assert_eq!(
            RpcMessage::decode(Bytes::from_static(&[1, 2])),
            Err(MessageError::NoOp(2))
        );
    }

    fn arb_bytes(max: usize) -> impl Strategy<Value = Bytes> {
        proptest::collection::vec(any::<u8>(), 0..max).prop_map(Bytes::from)
    }

    fn arb_pid() -> impl Strategy<Value = ProcessId> {
        (any::<u32>(), any::<i16>(), any::<u16>(), any::<i32>()).prop_map(
            |(ip, port, pid, utime)| ProcessId {
                ip,
                port,
                pid,
                utime,
            },
        )
    }

    fn arb_extra() -> impl Strategy<Value = ProxyReqExtra> {
        prop_oneof![
            Just(ProxyReqExtra::None),
            any::<[u8; 16]>().prop_map(ProxyReqExtra::ProxyTag),
            // A raw extra that cannot be mistaken for a proxy tag or for "none".
            arb_bytes(40).prop_map(|b| {
                let mut v = vec![0x11u8];
                v.extend_from_slice(&b);
                ProxyReqExtra::Raw(Bytes::from(v))
            }),
        ]
    }

    pub(crate) fn arb_message() -> impl Strategy<Value = RpcMessage> {
        let nonce = (
            any::<i32>(),
            any::<i32>(),
            any::<[u8; 16]>(),
            0u8..4,
            proptest::collection::vec(any::<i32>(), 0..9),
            any::<u32>(),
            any::<u8>(),
        )
            .prop_map(|(key_select, crypto_ts, nonce, s, extra, dh, g)| {
                let schema = match s {
                    0 => NonceSchema::None,
                    1 => NonceSchema::Aes,
                    2 => NonceSchema::AesExt {
                        extra_key_select: extra,
                    },
                    _ => NonceSchema::AesDh {
                        extra_key_select: extra,
                        dh_params_select: dh,
                        g_a: Box::new([g; 256]),
                    },
                };
                RpcMessage::Nonce(Nonce {
                    key_select,
                    schema,
                    crypto_ts,
                    nonce,
                })
            });
        let req = (
            any::<u32>(),
            any::<i64>(),
            any::<[u8; 16]>(),
            any::<u32>(),
            any::<[u8; 16]>(),
            any::<u32>(),
            arb_extra(),
            arb_bytes(64),
        )
            .prop_map(
                |(flags, ext_conn_id, c, client_port, p, proxy_port, extra, payload)| {
                    let flags = match extra {
                        ProxyReqExtra::None => flags,
                        _ => flags | flags::PROXY_TAG,
                    };
                    RpcMessage::ProxyReq(ProxyReq {
                        header: ProxyReqHeader {
                            flags,
                            ext_conn_id,
                            client_ip: Ipv6Addr::from(c),
                            client_port,
                            proxy_ip: Ipv6Addr::from(p),
                            proxy_port,
                            extra,
                        },
                        payload,
                    })
                },
            );
        prop_oneof![
            nonce,
            (any::<u32>(), arb_pid(), arb_pid()).prop_map(|(flags, sender_pid, peer_pid)| {
                RpcMessage::Handshake(Handshake {
                    flags,
                    sender_pid,
                    peer_pid,
                })
            }),
            (any::<i32>(), arb_pid()).prop_map(|(error_code, sender_pid)| {
                RpcMessage::HandshakeError(HandshakeError {
                    error_code,
                    sender_pid,
                })
            }),
            req,
            (any::<u32>(), any::<i64>(), arb_bytes(64)).prop_map(|(flags, conn_id, data)| {
                RpcMessage::ProxyAns {
                    flags,
                    conn_id,
                    data,
                }
            }),
            (any::<i64>(), any::<u32>())
                .prop_map(|(conn_id, confirm)| RpcMessage::SimpleAck { conn_id, confirm }),
            any::<i64>().prop_map(|conn_id| RpcMessage::CloseExt { conn_id }),
            any::<i64>().prop_map(|conn_id| RpcMessage::CloseConn { conn_id }),
            any::<i64>().prop_map(|ping_id| RpcMessage::Ping { ping_id }),
            any::<i64>().prop_map(|ping_id| RpcMessage::Pong { ping_id }),
            (any::<u32>(), arb_bytes(32))
                .prop_filter("known op", |(op, _)| !KNOWN_OPS.contains(op))
                .prop_map(|(op, body)| RpcMessage::Unknown { op, body }),
        ]
    }

    const KNOWN_OPS: [u32; 10] = [
        RPC_NONCE,
        RPC_HANDSHAKE,
        RPC_HANDSHAKE_ERROR,
        RPC_PROXY_REQ,
        RPC_PROXY_ANS,
        RPC_SIMPLE_ACK,
        RPC_CLOSE_EXT,
        RPC_CLOSE_CONN,
        RPC_PING,
        RPC_PONG,
    ];

    proptest! {
        #[test]
        fn every_message_round_trips(m in arb_message()) {
            let b = m.to_bytes();
            prop_assert_eq!(b.len(), m.encoded_len());
            prop_assert_eq!(RpcMessage::decode(b).unwrap(), m);
        }

        #[test]
        fn decoder_never_panics(data in proptest::collection::vec(any::<u8>(), 0..400), op in 0usize..11) {
            let mut d = data;
            if op < KNOWN_OPS.len() && d.len() >= 4 {
                d[..4].copy_from_slice(&KNOWN_OPS[op].to_le_bytes());
            }
            let _ = RpcMessage::decode(Bytes::from(d));
        }
    }

    #[test]
    fn proxy_req_extra_is_bounded_by_the_payload() {
        let header = ProxyReqHeader::new(
            flags::EXT,
            7,
            "127.0.0.1:1000".parse().unwrap(),
            "127.0.0.1:443".parse().unwrap(),
            Some([3; 16]),
        );
        let mut b = bytes::BytesMut::new();
        header.encode(&mut b);
        b.extend_from_slice(&[0xee; 8]);
        let wire = b.to_vec();
        assert_eq!(wire.len(), 92);
        let decoded = |w: &[u8]| RpcMessage::decode(Bytes::copy_from_slice(w));
        let Ok(RpcMessage::ProxyReq(req)) = decoded(&wire) else {
            panic!("the encoded request decodes");
        };
        assert_eq!((&req.header, &req.payload[..]), (&header, &[0xee; 8][..]));
        // extra_size running past the payload.
        let mut over = wire.clone();
        over[56..60].copy_from_slice(&33u32.to_le_bytes());
        assert_eq!(
            decoded(&over),
            Err(MessageError::BadExtraSize {
                extra_size: 33,
                len: 92
            })
        );
        // extra_size exactly to the end: a raw extra and an empty packet.
        over[56..60].copy_from_slice(&32u32.to_le_bytes());
        let Ok(RpcMessage::ProxyReq(req)) = decoded(&over) else {
            panic!("extra up to the end decodes");
        };
        assert_eq!(req.header.extra.len(), 32);
        assert!(req.payload.is_empty());
        // Flagged extra without its size word.
        assert_eq!(
            decoded(&wire[..56]),
            Err(MessageError::BadSize {
                op: RPC_PROXY_REQ,
                len: 56
            })
        );
        assert_eq!(
            decoded(&wire[..55]),
            Err(MessageError::BadSize {
                op: RPC_PROXY_REQ,
                len: 55
            })
        );
        // A tag-shaped extra with a non-zero pad byte stays raw.
        let mut raw = wire.clone();
        raw[60 + 23] = 1;
        let Ok(RpcMessage::ProxyReq(req)) = decoded(&raw) else {
            panic!("a raw extra decodes");
        };
        assert_eq!(
            req.header.extra,
            ProxyReqExtra::Raw(Bytes::copy_from_slice(&raw[60..84]))
        );
    }

    #[test]
    fn data_shares_the_payload_and_proxy_ans_may_be_empty() {
        let mut b = bytes::BytesMut::new();
        b.put_u32_le(RPC_PROXY_ANS);
        b.put_u32_le(8);
        b.put_i64_le(-5);
        let empty = b.clone().freeze();
        assert_eq!(
            RpcMessage::decode(empty),
            Ok(RpcMessage::ProxyAns {
                flags: 8,
                conn_id: -5,
                data: Bytes::new()
            })
        );
        b.extend_from_slice(b"data");
        let payload = b.freeze();
        let Ok(RpcMessage::ProxyAns { data, .. }) = RpcMessage::decode(payload.clone()) else {
            panic!("PROXY_ANS decodes");
        };
        assert_eq!(&data[..], b"data");
        assert_eq!(data.as_ptr(), payload[16..].as_ptr(), "no copy");
    }
}
