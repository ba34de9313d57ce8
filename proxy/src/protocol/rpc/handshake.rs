//! RPC_NONCE, RPC_HANDSHAKE and RPC_HANDSHAKE_ERROR (§5.3, §5.5; `net-tcp-rpc-common.h`,
//! the nonce/handshake processing of `net-tcp-rpc-client.c` and `net-tcp-rpc-server.c`,
//! `common/pid.h`).
//!
//! Schema handling, as C does it:
//! * schema 0 (NONE) parses (32 bytes) but both roles refuse it: `key_select != 0` is −3,
//!   otherwise −5 (unencrypted links are never allowed here);
//! * schema 1 (AES) is what both roles send;
//! * schema 2 (AES_EXT) parses `extra_keys_count ≤ 8` extra key selects; our key may be
//!   the main one or any extra one;
//! * schema 3 (AES_DH) parses the extra keys, `dh_params_select` and `g_a[256]`. The
//!   client role refuses it with −7 (C's client never requests DH, so `REQ_DH` is never
//!   set); the server role ignores the DH part and answers with schema 1, exactly like a C
//!   server without `RPCF_REQ_DH`.

use bytes::{BufMut, BytesMut};

use crate::protocol::codec::Reader;

/// RPC_NONCE.
pub const RPC_NONCE: u32 = 0x7acb_87aa;
/// RPC_HANDSHAKE.
pub const RPC_HANDSHAKE: u32 = 0x7682_eef5;
/// RPC_HANDSHAKE_ERROR.
pub const RPC_HANDSHAKE_ERROR: u32 = 0x6a27_beda;
/// `crypto_schema` NONE.
pub const RPC_CRYPTO_NONE: i32 = 0;
/// `crypto_schema` AES (what we send).
pub const RPC_CRYPTO_AES: i32 = 1;
/// `crypto_schema` AES with extra key selects.
pub const RPC_CRYPTO_AES_EXT: i32 = 2;
/// `crypto_schema` AES with extra keys and DH.
pub const RPC_CRYPTO_AES_DH: i32 = 3;
/// At most this many extra key selects (`RPC_MAX_EXTRA_KEYS`).
pub const RPC_MAX_EXTRA_KEYS: usize = 8;
/// Handshake flag: use CRC32C from seq 0 on.
pub const RPCF_USE_CRC32C: u32 = 0x800;
/// The DH params hash C checks (`dh_params_select`).
pub const DH_PARAMS_SELECT: u32 = 0x0062_0b93;
/// Payload size of a schema 0/1 nonce.
pub const NONCE_LEN: usize = 32;
/// Largest nonce payload (schema 3 with 8 extra keys).
pub const NONCE_MAX_LEN: usize = 32 + 4 + 4 * RPC_MAX_EXTRA_KEYS + 4 + 256;
/// Payload size of RPC_HANDSHAKE.
pub const HANDSHAKE_LEN: usize = 32;
/// Payload size of RPC_HANDSHAKE_ERROR.
pub const HANDSHAKE_ERROR_LEN: usize = 20;
/// Clock skew allowed between the two nonces' timestamps, seconds.
pub const NONCE_MAX_SKEW: i64 = 30;

/// `struct process_id` of `common/pid.h`: 12 bytes, little-endian.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ProcessId {
    /// IPv4 as a host-order u32 (0 when unknown or loopback).
    pub ip: u32,
    /// A port (the proxy puts its `-p` stats port here, −1 when none).
    pub port: i16,
    /// `getpid() & 0xffff`.
    pub pid: u16,
    /// Start time, unix seconds.
    pub utime: i32,
}

impl ProcessId {
    /// Wire size.
    pub const LEN: usize = 12;

    /// The 12 wire bytes.
    pub fn to_bytes(&self) -> [u8; 12] {
        let mut b = [0u8; 12];
        b[0..4].copy_from_slice(&self.ip.to_le_bytes());
        b[4..6].copy_from_slice(&self.port.to_le_bytes());
        b[6..8].copy_from_slice(&self.pid.to_le_bytes());
        b[8..12].copy_from_slice(&self.utime.to_le_bytes());
        b
    }

    /// Parses 12 wire bytes (`None` when `b` is shorter; bytes after the 12 are ignored).
    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        Self::read(&mut Reader::new(b))
    }

    /// Reads the 12 wire bytes from `r` (`None`, nothing consumed, when fewer are left).
    pub fn read(r: &mut Reader<'_>) -> Option<Self> {
        let mut pid = r.sub(Self::LEN)?;
        Some(Self {
            ip: pid.u32_le()?,
            port: pid.i16_le()?,
            pid: pid.u16_le()?,
            utime: pid.i32_le()?,
        })
    }

    /// C `matches_pid(self, pattern)`: every non-zero field of `pattern` equals ours.
    pub fn matches(&self, pattern: &ProcessId) -> bool {
        (pattern.ip == 0 || pattern.ip == self.ip)
            && (pattern.port == 0 || pattern.port == self.port)
            && (pattern.pid == 0 || pattern.pid == self.pid)
            && (pattern.utime == 0 || pattern.utime == self.utime)
    }
}

/// The schema-specific tail of a nonce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NonceSchema {
    /// 0: no encryption (always refused here).
    None,
    /// 1: AES with the main key.
    Aes,
    /// 2: AES, with up to 8 extra acceptable key selects.
    AesExt {
        /// The extra key selects.
        extra_key_select: Vec<i32>,
    },
    /// 3: AES with DH (parsed, never negotiated on this link).
    AesDh {
        /// The extra key selects.
        extra_key_select: Vec<i32>,
        /// The DH params hash.
        dh_params_select: u32,
        /// The peer's DH value.
        g_a: Box<[u8; 256]>,
    },
}

impl NonceSchema {
    /// The `crypto_schema` number.
    pub fn number(&self) -> i32 {
        match self {
            NonceSchema::None => RPC_CRYPTO_NONE,
            NonceSchema::Aes => RPC_CRYPTO_AES,
            NonceSchema::AesExt { .. } => RPC_CRYPTO_AES_EXT,
            NonceSchema::AesDh { .. } => RPC_CRYPTO_AES_DH,
        }
    }

    /// The extra key selects (empty for schemas 0/1).
    pub fn extra_keys(&self) -> &[i32] {
        match self {
            NonceSchema::AesExt { extra_key_select }
            | NonceSchema::AesDh {
                extra_key_select, ..
            } => extra_key_select,
            _ => &[],
        }
    }
}

/// An RPC_NONCE payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nonce {
    /// First 4 bytes of the proxy-secret, as a LE i32.
    pub key_select: i32,
    /// Schema and its tail.
    pub schema: NonceSchema,
    /// The sender's unix time.
    pub crypto_ts: i32,
    /// 16 random bytes.
    pub nonce: [u8; 16],
}

/// Why a nonce / handshake / handshake-error payload does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeParseError {
    /// Wrong op word.
    #[error("expected op {expected:08x}, got {got:08x}")]
    WrongOp {
        /// The op that was expected.
        expected: u32,
        /// The op found.
        got: u32,
    },
    /// Wrong payload size for this packet / schema.
    #[error("bad size {len} for op {op:08x}")]
    BadSize {
        /// The op.
        op: u32,
        /// The payload length.
        len: usize,
    },
    /// A `crypto_schema` other than 0..=3.
    #[error("unknown crypto schema {0}")]
    UnknownSchema(i32),
    /// `extra_keys_count` outside 0..=8.
    #[error("bad extra_keys_count {0}")]
    BadExtraKeys(i32),
}

/// Reads the op word of a `len`-byte payload, which must be `expected`. A payload shorter
/// than the op word has a bad size.
fn read_op(r: &mut Reader<'_>, expected: u32, len: usize) -> Result<(), HandshakeParseError> {
    match r.u32_le() {
        None => Err(HandshakeParseError::BadSize { op: expected, len }),
        Some(got) if got != expected => Err(HandshakeParseError::WrongOp { expected, got }),
        Some(_) => Ok(()),
    }
}

impl Nonce {
    /// Encoded payload length.
    pub fn encoded_len(&self) -> usize {
        match &self.schema {
            NonceSchema::None | NonceSchema::Aes => NONCE_LEN,
            NonceSchema::AesExt { extra_key_select } => 36 + 4 * extra_key_select.len(),
            NonceSchema::AesDh {
                extra_key_select, ..
            } => 36 + 4 * extra_key_select.len() + 4 + 256,
        }
    }

    /// Appends the payload. At most 8 extra keys are written.
    pub fn encode(&self, dst: &mut impl BufMut) {
        dst.put_u32_le(RPC_NONCE);
        dst.put_i32_le(self.key_select);
        dst.put_i32_le(self.schema.number());
        dst.put_i32_le(self.crypto_ts);
        dst.put_slice(&self.nonce);
        let extra = self.schema.extra_keys();
        let extra = extra
            .get(..RPC_MAX_EXTRA_KEYS.min(extra.len()))
            .unwrap_or_default();
        match &self.schema {
            NonceSchema::None | NonceSchema::Aes => {}
            NonceSchema::AesExt { .. } => {
                dst.put_i32_le(extra.len() as i32);
                extra.iter().for_each(|k| dst.put_i32_le(*k));
            }
            NonceSchema::AesDh {
                dh_params_select,
                g_a,
                ..
            } => {
                dst.put_i32_le(extra.len() as i32);
                extra.iter().for_each(|k| dst.put_i32_le(*k));
                dst.put_u32_le(*dh_params_select);
                dst.put_slice(&g_a[..]);
            }
        }
    }

    /// Parses a nonce payload with C's size rules (any failure is C code −3).
    ///
    /// # Errors
    /// [`HandshakeParseError`].
    pub fn decode(b: &[u8]) -> Result<Self, HandshakeParseError> {
        let len = b.len();
        let mut r = Reader::new(b);
        read_op(&mut r, RPC_NONCE, len)?;
        let bad = || HandshakeParseError::BadSize { op: RPC_NONCE, len };
        if !(NONCE_LEN..=NONCE_MAX_LEN).contains(&len) {
            return Err(bad());
        }
        let key_select = r.i32_le().ok_or_else(bad)?;
        let schema_no = r.i32_le().ok_or_else(bad)?;
        let crypto_ts = r.i32_le().ok_or_else(bad)?;
        let nonce = r.take_array::<16>().ok_or_else(bad)?;
        // `extra_keys_count` and the keys, followed by exactly `tail` more bytes.
        let extra = |r: &mut Reader<'_>, tail: usize| -> Result<Vec<i32>, HandshakeParseError> {
            if r.left() < 4 + tail {
                return Err(bad());
            }
            let count = r.i32_le().ok_or_else(bad)?;
            if !(0..=RPC_MAX_EXTRA_KEYS as i32).contains(&count) {
                return Err(HandshakeParseError::BadExtraKeys(count));
            }
            let count = count as usize;
            if r.left() != 4 * count + tail {
                return Err(bad());
            }
            (0..count).map(|_| r.i32_le().ok_or_else(bad)).collect()
        };
        let schema = match schema_no {
            RPC_CRYPTO_NONE | RPC_CRYPTO_AES => {
                if r.any_left() {
                    return Err(bad());
                }
                if schema_no == RPC_CRYPTO_NONE {
                    NonceSchema::None
                } else {
                    NonceSchema::Aes
                }
            }
            RPC_CRYPTO_AES_EXT => NonceSchema::AesExt {
                extra_key_select: extra(&mut r, 0)?,
            },
            RPC_CRYPTO_AES_DH => NonceSchema::AesDh {
                extra_key_select: extra(&mut r, 4 + 256)?,
                dh_params_select: r.u32_le().ok_or_else(bad)?,
                g_a: Box::new(r.take_array::<256>().ok_or_else(bad)?),
            },
            other => return Err(HandshakeParseError::UnknownSchema(other)),
        };
        Ok(Nonce {
            key_select,
            schema,
            crypto_ts,
            nonce,
        })
    }
}

/// An RPC_HANDSHAKE payload (32 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handshake {
    /// Flags; only [`RPCF_USE_CRC32C`] is meaningful, `flags & 0xff` must be 0.
    pub flags: u32,
    /// The sender's PID.
    pub sender_pid: ProcessId,
    /// Who the sender thinks it talks to.
    pub peer_pid: ProcessId,
}

impl Handshake {
    /// Appends the 32-byte payload.
    pub fn encode(&self, dst: &mut impl BufMut) {
        dst.put_u32_le(RPC_HANDSHAKE);
        dst.put_u32_le(self.flags);
        dst.put_slice(&self.sender_pid.to_bytes());
        dst.put_slice(&self.peer_pid.to_bytes());
    }

    /// Parses exactly 32 bytes.
    ///
    /// # Errors
    /// [`HandshakeParseError`] for another op or size.
    pub fn decode(b: &[u8]) -> Result<Self, HandshakeParseError> {
        let mut r = Reader::new(b);
        read_op(&mut r, RPC_HANDSHAKE, b.len())?;
        r.complete(|r| {
            Some(Self {
                flags: r.u32_le()?,
                sender_pid: ProcessId::read(r)?,
                peer_pid: ProcessId::read(r)?,
            })
        })
        .ok_or(HandshakeParseError::BadSize {
            op: RPC_HANDSHAKE,
            len: b.len(),
        })
    }
}

/// An RPC_HANDSHAKE_ERROR payload (20 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandshakeError {
    /// The C error code (−3, −4, −7, −8 …).
    pub error_code: i32,
    /// The sender's PID.
    pub sender_pid: ProcessId,
}

impl HandshakeError {
    /// Appends the 20-byte payload.
    pub fn encode(&self, dst: &mut impl BufMut) {
        dst.put_u32_le(RPC_HANDSHAKE_ERROR);
        dst.put_i32_le(self.error_code);
        dst.put_slice(&self.sender_pid.to_bytes());
    }

    /// Parses exactly 20 bytes.
    ///
    /// # Errors
    /// [`HandshakeParseError`] for another op or size.
    pub fn decode(b: &[u8]) -> Result<Self, HandshakeParseError> {
        let mut r = Reader::new(b);
        read_op(&mut r, RPC_HANDSHAKE_ERROR, b.len())?;
        r.complete(|r| {
            Some(Self {
                error_code: r.i32_le()?,
                sender_pid: ProcessId::read(r)?,
            })
        })
        .ok_or(HandshakeParseError::BadSize {
            op: RPC_HANDSHAKE_ERROR,
            len: b.len(),
        })
    }
}

/// Why a peer's nonce is refused, with C's codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NonceReject {
    /// Unparseable (size, schema, extra key count): −3.
    #[error("malformed nonce: {0}")]
    Malformed(HandshakeParseError),
    /// Key select does not name our secret: −3.
    #[error("key_select {theirs:08x} does not match ours {ours:08x}")]
    KeySelect {
        /// Ours.
        ours: i32,
        /// Theirs.
        theirs: i32,
    },
    /// Schema NONE (unencrypted) is never allowed: −5.
    #[error("unencrypted RPC link refused")]
    Unencrypted,
    /// Timestamps differ by more than 30 s: −6.
    #[error("nonce timestamp {peer_ts} vs ours {own_ts}: more than 30 s apart")]
    ClockSkew {
        /// The peer's `crypto_ts`.
        peer_ts: i32,
        /// Ours.
        own_ts: i32,
    },
    /// Schema AES_DH offered to a client that never requests DH: −7.
    #[error("DH nonce refused: this link never requests DH")]
    DhNotRequested,
}

impl NonceReject {
    /// The C `fail_connection` code.
    pub fn c_code(&self) -> i32 {
        match self {
            NonceReject::Malformed(_) | NonceReject::KeySelect { .. } => -3,
            NonceReject::Unencrypted => -5,
            NonceReject::ClockSkew { .. } => -6,
            NonceReject::DhNotRequested => -7,
        }
    }
}

/// Parses and validates a peer's nonce payload as C does, in C's order.
///
/// `am_client` selects the client rules (schema 3 refused with −7) or the server rules
/// (schema 3's DH part ignored). `own_ts` is the time compared against: the client's own
/// nonce time, or the server's current time.
///
/// # Errors
/// [`NonceReject`].
pub fn check_peer_nonce(
    payload: &[u8],
    our_key_select: i32,
    own_ts: i32,
    am_client: bool,
) -> Result<Nonce, NonceReject> {
    let nonce = Nonce::decode(payload).map_err(NonceReject::Malformed)?;
    match &nonce.schema {
        NonceSchema::None => {
            if nonce.key_select != 0 {
                return Err(NonceReject::KeySelect {
                    ours: our_key_select,
                    theirs: nonce.key_select,
                });
            }
            return Err(NonceReject::Unencrypted);
        }
        NonceSchema::AesDh { .. } if am_client => return Err(NonceReject::DhNotRequested),
        _ => {}
    }
    let selected = our_key_select != 0
        && (nonce.key_select == our_key_select
            || nonce.schema.extra_keys().contains(&our_key_select));
    if !selected {
        return Err(NonceReject::KeySelect {
            ours: our_key_select,
            theirs: nonce.key_select,
        });
    }
    if (i64::from(nonce.crypto_ts) - i64::from(own_ts)).abs() > NONCE_MAX_SKEW {
        return Err(NonceReject::ClockSkew {
            peer_ts: nonce.crypto_ts,
            own_ts,
        });
    }
    Ok(nonce)
}

/// Why a peer's handshake is refused; each is answered with RPC_HANDSHAKE_ERROR carrying
/// [`HandshakeReject::c_code`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeReject {
    /// Payload is not 32 bytes: −3.
    #[error("handshake of {0} bytes, expected 32")]
    BadSize(usize),
    /// Its `peer_pid` does not match our PID: −4.
    #[error("handshake peer_pid {peer_pid:?} does not match our pid {ours:?}")]
    PeerPid {
        /// What the peer sent as `peer_pid`.
        peer_pid: ProcessId,
        /// Our PID.
        ours: ProcessId,
    },
    /// `flags & 0xff != 0`: −7.
    #[error("handshake flags {0:#x} have low bits set")]
    Flags(u32),
    /// CRC32C requested but we did not offer it (client only): −8.
    #[error("peer wants CRC32C, which we did not offer")]
    Crc32cNotOffered,
}

impl HandshakeReject {
    /// The C code, also sent in RPC_HANDSHAKE_ERROR.
    pub fn c_code(&self) -> i32 {
        match self {
            HandshakeReject::BadSize(_) => -3,
            HandshakeReject::PeerPid { .. } => -4,
            HandshakeReject::Flags(_) => -7,
            HandshakeReject::Crc32cNotOffered => -8,
        }
    }
}

/// Validates a peer's RPC_HANDSHAKE (op already checked) in C's order: size (−3),
/// `peer_pid` against `our_pid` when `check_pid` (−4), low flag bits (−7), then, for the
/// client, CRC32C only if offered (−8). Returns the handshake and whether CRC32C is on.
///
/// The server turns CRC32C on only when the client asked and `offer_crc32c` allows it.
///
/// # Errors
/// [`HandshakeReject`].
pub fn check_peer_handshake(
    payload: &[u8],
    our_pid: &ProcessId,
    check_pid: bool,
    offer_crc32c: bool,
    am_client: bool,
) -> Result<(Handshake, bool), HandshakeReject> {
    let hs = Handshake::decode(payload).map_err(|_| HandshakeReject::BadSize(payload.len()))?;
    if check_pid && !our_pid.matches(&hs.peer_pid) {
        return Err(HandshakeReject::PeerPid {
            peer_pid: hs.peer_pid,
            ours: *our_pid,
        });
    }
    if hs.flags & 0xff != 0 {
        return Err(HandshakeReject::Flags(hs.flags));
    }
    let wants = hs.flags & RPCF_USE_CRC32C != 0;
    if am_client && wants && !offer_crc32c {
        return Err(HandshakeReject::Crc32cNotOffered);
    }
    Ok((hs, wants && offer_crc32c))
}

/// Appends a nonce payload to a `BytesMut` (convenience for tests and the link).
pub fn encode_nonce(n: &Nonce) -> BytesMut {
    let mut b = BytesMut::with_capacity(n.encoded_len());
    n.encode(&mut b);
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nonce(schema: NonceSchema) -> Nonce {
        Nonce {
            key_select: 0x1234,
            schema,
            crypto_ts: 1000,
            nonce: [9; 16],
        }
    }

    #[test]
    fn nonce_schemas_round_trip_with_exact_sizes() {
        for (schema, len) in [
            (NonceSchema::None, 32),
            (NonceSchema::Aes, 32),
            (
                NonceSchema::AesExt {
                    extra_key_select: vec![1, 2, 3],
                },
                48,
            ),
            (
                NonceSchema::AesDh {
                    extra_key_select: vec![],
                    dh_params_select: DH_PARAMS_SELECT,
                    g_a: Box::new([5; 256]),
                },
                296,
            ),
        ] {
            let n = nonce(schema);
            let b = encode_nonce(&n);
            assert_eq!(b.len(), len);
            assert_eq!(n.encoded_len(), len);
            assert_eq!(Nonce::decode(&b).unwrap(), n);
            assert!(Nonce::decode(&b[..len - 4]).is_err());
        }
    }

    #[test]
    fn client_nonce_checks_follow_c_codes() {
        let enc = |n: &Nonce| encode_nonce(n);
        let ok = nonce(NonceSchema::Aes);
        assert!(check_peer_nonce(&enc(&ok), 0x1234, 1010, true).is_ok());
        assert_eq!(
            check_peer_nonce(&enc(&ok), 0x1234, 1031, true)
                .unwrap_err()
                .c_code(),
            -6
        );
        assert_eq!(
            check_peer_nonce(&enc(&ok), 0x9999, 1000, true)
                .unwrap_err()
                .c_code(),
            -3
        );
        assert_eq!(
            check_peer_nonce(&enc(&ok), 0, 1000, true)
                .unwrap_err()
                .c_code(),
            -3
        );
        let mut none = nonce(NonceSchema::None);
        assert_eq!(
            check_peer_nonce(&enc(&none), 0x1234, 1000, true)
                .unwrap_err()
                .c_code(),
            -3
        );
        none.key_select = 0;
        assert_eq!(
            check_peer_nonce(&enc(&none), 0x1234, 1000, true).unwrap_err(),
            NonceReject::Unencrypted
        );
        let mut ext = nonce(NonceSchema::AesExt {
            extra_key_select: vec![7, 0x1234],
        });
        ext.key_select = 5;
        assert!(check_peer_nonce(&enc(&ext), 0x1234, 1000, true).is_ok());
        let dh = nonce(NonceSchema::AesDh {
            extra_key_select: vec![],
            dh_params_select: DH_PARAMS_SELECT,
            g_a: Box::new([1; 256]),
        });
        assert_eq!(
            check_peer_nonce(&enc(&dh), 0x1234, 1000, true)
                .unwrap_err()
                .c_code(),
            -7
        );
        assert!(check_peer_nonce(&enc(&dh), 0x1234, 1000, false).is_ok());
        let mut bad = enc(&ok);
        bad[8] = 9;
        assert_eq!(
            check_peer_nonce(&bad, 0x1234, 1000, true)
                .unwrap_err()
                .c_code(),
            -3
        );
    }

    #[test]
    fn handshake_checks_follow_c_codes() {
        let ours = ProcessId {
            ip: 0,
            port: 8888,
            pid: 77,
            utime: 5,
        };
        let hs = |flags: u32, peer: ProcessId| {
            let mut b = BytesMut::new();
            Handshake {
                flags,
                sender_pid: ProcessId::default(),
                peer_pid: peer,
            }
            .encode(&mut b);
            b
        };
        assert!(
            check_peer_handshake(&hs(0x800, ours), &ours, true, true, true)
                .unwrap()
                .1
        );
        assert!(
            !check_peer_handshake(&hs(0, ProcessId::default()), &ours, true, true, true)
                .unwrap()
                .1
        );
        let other = ProcessId { pid: 78, ..ours };
        assert_eq!(
            check_peer_handshake(&hs(0, other), &ours, true, true, true)
                .unwrap_err()
                .c_code(),
            -4
        );
        assert!(check_peer_handshake(&hs(0, other), &ours, false, true, true).is_ok());
        assert_eq!(
            check_peer_handshake(&hs(0x801, ours), &ours, true, true, true)
                .unwrap_err()
                .c_code(),
            -7
        );
        assert_eq!(
            check_peer_handshake(&hs(0x800, ours), &ours, true, false, true)
                .unwrap_err()
                .c_code(),
            -8
        );
        assert!(
            !check_peer_handshake(&hs(0x800, ours), &ours, true, false, false)
                .unwrap()
                .1
        );
        assert_eq!(
            check_peer_handshake(&hs(0, ours)[..28], &ours, true, true, true)
                .unwrap_err()
                .c_code(),
            -3
        );
    }

    #[test]
    fn pid_is_twelve_bytes_and_matches_like_c() {
        let p = ProcessId {
            ip: 0x7f00_0001,
            port: -1,
            pid: 0xbeef,
            utime: 0x6b07_0e56,
        };
        let b = p.to_bytes();
        assert_eq!(
            b,
            [1, 0, 0, 0x7f, 0xff, 0xff, 0xef, 0xbe, 0x56, 0x0e, 0x07, 0x6b]
        );
        assert_eq!(ProcessId::from_bytes(&b), Some(p));
        assert!(p.matches(&ProcessId::default()));
        assert!(p.matches(&ProcessId {
            port: -1,
            ..Default::default()
        }));
        assert!(!p.matches(&ProcessId {
            port: 5,
            ..Default::default()
        }));
    }

    #[test]
    fn decoders_report_op_before_size_and_reject_trailing_bytes() {
        use HandshakeParseError::{BadSize, WrongOp};
        // Shorter than the op word: a size error, whatever the bytes.
        assert_eq!(
            Nonce::decode(&[0xaa, 0x87]),
            Err(BadSize {
                op: RPC_NONCE,
                len: 2
            })
        );
        assert_eq!(
            Handshake::decode(&[]),
            Err(BadSize {
                op: RPC_HANDSHAKE,
                len: 0
            })
        );
        // A wrong op is reported before a wrong size.
        assert_eq!(
            HandshakeError::decode(&RPC_NONCE.to_le_bytes()),
            Err(WrongOp {
                expected: RPC_HANDSHAKE_ERROR,
                got: RPC_NONCE
            })
        );
        let mut hs = BytesMut::new();
        Handshake {
            flags: 0,
            sender_pid: ProcessId::default(),
            peer_pid: ProcessId::default(),
        }
        .encode(&mut hs);
        hs.put_u32_le(0);
        assert_eq!(
            Handshake::decode(&hs),
            Err(BadSize {
                op: RPC_HANDSHAKE,
                len: 36
            })
        );
        let mut err = BytesMut::new();
        HandshakeError {
            error_code: -4,
            sender_pid: ProcessId::default(),
        }
        .encode(&mut err);
        assert_eq!(HandshakeError::decode(&err).unwrap().error_code, -4);
        assert!(HandshakeError::decode(&err[..19]).is_err());
    }

    #[test]
    fn extra_key_count_is_checked_after_the_minimum_size() {
        let ext = nonce(NonceSchema::AesExt {
            extra_key_select: vec![],
        });
        // Schema 3 with a bad count, too short for the DH tail: the size is reported.
        let mut b = encode_nonce(&ext).to_vec();
        b[8..12].copy_from_slice(&RPC_CRYPTO_AES_DH.to_le_bytes());
        b[32..36].copy_from_slice(&9i32.to_le_bytes());
        assert_eq!(
            Nonce::decode(&b),
            Err(HandshakeParseError::BadSize {
                op: RPC_NONCE,
                len: 36
            })
        );
        // Long enough for the tail: the count is reported.
        b.resize(296, 0);
        assert_eq!(Nonce::decode(&b), Err(HandshakeParseError::BadExtraKeys(9)));
        b[32..36].copy_from_slice(&(-1i32).to_le_bytes());
        assert_eq!(
            Nonce::decode(&b),
            Err(HandshakeParseError::BadExtraKeys(-1))
        );
        // Schema 2 announcing two keys but carrying one.
        let mut b = encode_nonce(&ext).to_vec();
        b[32..36].copy_from_slice(&2i32.to_le_bytes());
        b.extend_from_slice(&7i32.to_le_bytes());
        assert_eq!(
            Nonce::decode(&b),
            Err(HandshakeParseError::BadSize {
                op: RPC_NONCE,
                len: 40
            })
        );
        // Schemas 0 and 1 are exactly 32 bytes.
        let mut b = encode_nonce(&nonce(NonceSchema::Aes)).to_vec();
        b.extend_from_slice(&[0; 4]);
        assert_eq!(
            Nonce::decode(&b),
            Err(HandshakeParseError::BadSize {
                op: RPC_NONCE,
                len: 36
            })
        );
    }

    #[test]
    fn pid_reads_twelve_bytes_or_nothing() {
        let b: Vec<u8> = (1..=13).collect();
        let mut r = Reader::new(&b[..11]);
        assert_eq!(ProcessId::read(&mut r), None);
        assert_eq!(r.used(), 0, "a short pid consumes nothing");
        let mut r = Reader::new(&b);
        let p = ProcessId::read(&mut r).unwrap();
        assert_eq!(r.rest(), &[13]);
        assert_eq!(
            ProcessId::from_bytes(&b),
            Some(p),
            "trailing bytes are ignored"
        );
        assert_eq!(p.to_bytes()[..], b[..12]);
    }
}
