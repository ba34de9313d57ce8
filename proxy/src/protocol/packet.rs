//! Packet acceptance before forwarding a client frame to the middle end (§4.3,
//! `forward_mtproto_packet` and the `RPC_PING` quirk of the shared RPC-server code).
//!
//! [`classify`] looks at one decoded client payload (padding already dropped) and says
//! whether to forward it, drop it silently (the client is *not* closed), or treat it as an
//! `RPC_PING`.

use crate::protocol::codec::Reader;

/// `RPC_PING`: a client payload starting with it is never forwarded.
pub const RPC_PING: u32 = 0x5730_a2df;
/// `RPC_PONG`: the first word of the reply to a 12-byte `RPC_PING`.
pub const RPC_PONG: u32 = 0x8430_eaa7;
/// `req_pq`.
pub const REQ_PQ: u32 = 0x6046_9778;
/// `req_pq_multi`.
pub const REQ_PQ_MULTI: u32 = 0xbe7e_8ef1;
/// `req_DH_params`.
pub const REQ_DH_PARAMS: u32 = 0xd712_e4be;
/// `set_client_DH_params`.
pub const SET_CLIENT_DH_PARAMS: u32 = 0xf504_5f1f;

/// The smallest packet looked at: `auth_key_id`, 8 more bytes, inner length, function (7 words).
pub const MIN_PACKET: usize = 28;
/// The smallest encrypted packet: the MTProto encrypted-message header (`auth_key_id`,
/// `msg_key`, salt, session id, msg id, seq no, length).
pub const MIN_ENCRYPTED_PACKET: usize = 56;

/// The forwarding flag the C proxy adds to an unencrypted (auth key 0) packet.
pub const FLAG_UNENCRYPTED: u32 = 0x2;

/// Why a client packet is dropped (silently, logged at `-v` as "cannot forward mtproto packet").
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DropReason {
    /// Fewer than [`MIN_PACKET`] bytes.
    #[error("packet of {len} bytes is shorter than 28")]
    TooShort {
        /// The payload length.
        len: usize,
    },
    /// Length not a multiple of 4 (possible only with padded intermediate).
    #[error("packet of {len} bytes is not a multiple of 4")]
    NotAligned {
        /// The payload length.
        len: usize,
    },
    /// A nonzero `auth_key_id` on fewer than [`MIN_ENCRYPTED_PACKET`] bytes.
    #[error("encrypted packet of {len} bytes is shorter than 56")]
    ShortEncrypted {
        /// The payload length.
        len: usize,
    },
    /// `auth_key_id == 0` and the inner length at offset 16 is not in `20..=len-20`.
    #[error("inner length {inner_len} does not fit a {len}-byte packet")]
    BadInnerLength {
        /// The i32 at offset 16.
        inner_len: i32,
        /// The payload length.
        len: usize,
    },
    /// `auth_key_id == 0` and the function at offset 20 is not one of the four
    /// key-exchange requests.
    #[error("unencrypted packet with function {function:#010x}")]
    UnknownUnencryptedOp {
        /// The u32 at offset 20.
        function: u32,
    },
}

/// What to do with one client payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketVerdict {
    /// Forward to the middle end.
    Forward {
        /// `auth_key_id == 0`: a key-exchange request, forwarded with [`FLAG_UNENCRYPTED`].
        unencrypted: bool,
        /// The first 8 bytes (LE), remembered per connection by the C proxy.
        auth_key_id: u64,
    },
    /// Drop silently; the connection stays open.
    Drop(DropReason),
    /// The first word is [`RPC_PING`]: never forwarded. `reply` is the payload to frame
    /// back (`RPC_PONG` then the same 8-byte ping id) when the packet is exactly 12
    /// bytes, else `None` (ignored).
    RpcPing {
        /// The `RPC_PONG` payload to send, if any.
        reply: Option<[u8; 12]>,
    },
}

fn u32_at(p: &[u8], at: usize) -> Option<u32> {
    Reader::new(p.get(at..)?).u32_le()
}

/// Classifies one decoded client payload.
///
/// Order, as in C: the `RPC_PING` check runs first (on every frame, whatever its length),
/// then `forward_mtproto_packet`'s rules.
pub fn classify(payload: &[u8]) -> PacketVerdict {
    let len = payload.len();
    if u32_at(payload, 0) == Some(RPC_PING) {
        let reply = <[u8; 12]>::try_from(payload).ok().map(|mut p| {
            p[..4].copy_from_slice(&RPC_PONG.to_le_bytes());
            p
        });
        return PacketVerdict::RpcPing { reply };
    }
    if len < MIN_PACKET {
        return PacketVerdict::Drop(DropReason::TooShort { len });
    }
    if len & 3 != 0 {
        return PacketVerdict::Drop(DropReason::NotAligned { len });
    }
    let auth_key_id = Reader::new(payload).u64_le().unwrap_or(0);
    if auth_key_id != 0 {
        if len < MIN_ENCRYPTED_PACKET {
            return PacketVerdict::Drop(DropReason::ShortEncrypted { len });
        }
        return PacketVerdict::Forward {
            unencrypted: false,
            auth_key_id,
        };
    }
    // len >= 28, so both words exist.
    let inner_len = u32_at(payload, 16).unwrap_or(0) as i32;
    let fits = i64::from(inner_len) >= 20 && i64::from(inner_len) + 20 <= len as i64;
    if !fits {
        return PacketVerdict::Drop(DropReason::BadInnerLength { inner_len, len });
    }
    let function = u32_at(payload, 20).unwrap_or(0);
    if ![REQ_PQ, REQ_PQ_MULTI, REQ_DH_PARAMS, SET_CLIENT_DH_PARAMS].contains(&function) {
        return PacketVerdict::Drop(DropReason::UnknownUnencryptedOp { function });
    }
    PacketVerdict::Forward {
        unencrypted: true,
        auth_key_id: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn unenc(len: usize, inner: i32, function: u32) -> Vec<u8> {
        let mut p = vec![0u8; len];
        p[16..20].copy_from_slice(&inner.to_le_bytes());
        p[20..24].copy_from_slice(&function.to_le_bytes());
        p
    }

    #[test]
    fn ping_pong() {
        let mut p = RPC_PING.to_le_bytes().to_vec();
        p.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        let mut want = [0xa7, 0xea, 0x30, 0x84, 1, 2, 3, 4, 5, 6, 7, 8];
        assert_eq!(classify(&p), PacketVerdict::RpcPing { reply: Some(want) });
        p.extend_from_slice(&[0; 4]);
        assert_eq!(classify(&p), PacketVerdict::RpcPing { reply: None });
        want[0] = 0;
        assert_eq!(
            classify(&want),
            PacketVerdict::Drop(DropReason::TooShort { len: 12 })
        );
    }

    #[test]
    fn unencrypted_rules() {
        assert_eq!(
            classify(&unenc(40, 20, REQ_PQ_MULTI)),
            PacketVerdict::Forward {
                unencrypted: true,
                auth_key_id: 0
            }
        );
        assert_eq!(
            classify(&unenc(40, 21, REQ_PQ)),
            PacketVerdict::Drop(DropReason::BadInnerLength {
                inner_len: 21,
                len: 40
            })
        );
        assert_eq!(
            classify(&unenc(40, i32::MAX, REQ_PQ)),
            PacketVerdict::Drop(DropReason::BadInnerLength {
                inner_len: i32::MAX,
                len: 40
            })
        );
        assert_eq!(
            classify(&unenc(40, 20, 0x1234_5678)),
            PacketVerdict::Drop(DropReason::UnknownUnencryptedOp {
                function: 0x1234_5678
            })
        );
    }

    #[test]
    fn encrypted_rules() {
        let mut p = vec![0u8; 52];
        p[0] = 1;
        assert_eq!(
            classify(&p),
            PacketVerdict::Drop(DropReason::ShortEncrypted { len: 52 })
        );
        p.extend_from_slice(&[0; 4]);
        assert_eq!(
            classify(&p),
            PacketVerdict::Forward {
                unencrypted: false,
                auth_key_id: 1
            }
        );
    }

    proptest! {
        #[test]
        fn classify_never_panics(p in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = classify(&p);
        }
    }
}
