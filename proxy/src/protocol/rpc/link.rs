//! The sans-IO middle-end link state machine, both roles (§5.3, §5.8).
//!
//! [`Role::Client`] is the proxy's side (C `net-tcp-rpc-client.c`), [`Role::Server`] the
//! fake ME of the parity harness (C `net-tcp-rpc-server.c`). Driving order:
//! 1. create the link ([`RpcLink::client`] queues our RPC_NONCE at once);
//! 2. feed received wire bytes with [`RpcLink::handle_input`] (it consumes what it can and
//!    leaves an incomplete frame or a partial CBC block in the buffer);
//! 3. drain [`RpcLink::poll_event`];
//! 4. write out [`RpcLink::poll_transmit`] (call it after every `handle_input`/`send`).
//!
//! Crypto: the nonces travel in plaintext. The receiver switches to AES-256-CBC right after
//! the peer's nonce; every byte after it is ciphertext, even in the same read. The sender
//! switches right after its own nonce. Each `poll_transmit` pads the plaintext to 16 bytes
//! with `04 00 00 00` words before encrypting (C `tcp_rpc_flush`), and the CBC chains
//! continue across calls.
//!
//! CRC: nonce and handshake frames carry CRC32. The client switches both directions to
//! CRC32C after accepting an ME handshake with `0x800`; the server after sending its
//! handshake with `0x800`.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};

use bytes::{Bytes, BytesMut};
use rand::RngCore;

use super::frame::{
    begin_frame, finish_frame, pad_to_block, CrcMode, Frame, FrameDecoder, FrameError, SEQ_NONCE,
};
use super::handshake::{
    check_peer_handshake, check_peer_nonce, Handshake, HandshakeError, HandshakeReject, Nonce,
    NonceReject, NonceSchema, ProcessId, RPCF_USE_CRC32C, RPC_HANDSHAKE, RPC_HANDSHAKE_ERROR,
    RPC_NONCE,
};
use super::keys::{link_keys, KeyAddrs, KeyError, KeyInputs};
use super::messages::{MessageError, ProxyReqHeader, RpcMessage};
use crate::protocol::crypto::{encrypt_chains, CbcDecryptor, CbcEncryptor};

/// The default frame size limit: C's per-connection buffer limit (32 MiB). C's ME client
/// itself has no limit (`max_packet_len` disabled); we bound memory anyway.
pub const DEFAULT_MAX_FRAME_LEN: usize = 32 << 20;

/// Which end of the link we are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The proxy, connecting to an ME.
    Client,
    /// A (fake) ME, accepting a proxy.
    Server,
}

/// The server role's handshake reply policy and the test knobs a fake ME needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerPolicy {
    /// Reply with flags `0x800` (CRC32C) when the client offered it, like a C ME.
    pub accept_crc32c: bool,
    /// Reply with exactly these flags instead (e.g. `0x801` to provoke −7, `0x800` to a
    /// client that did not offer it to provoke −8). Our CRC follows `flags & 0x800`.
    pub reply_flags: Option<u32>,
    /// Reply with this `peer_pid` instead of echoing the client's `sender_pid` (−4).
    pub reply_peer_pid: Option<ProcessId>,
    /// Check the client's `peer_pid` against our PID like a C server without
    /// `TCP_RPC_IGNORE_PID` (−4, answered with RPC_HANDSHAKE_ERROR).
    pub check_peer_pid: bool,
    /// Added to our nonce's `crypto_ts` (e.g. 31 to provoke −6).
    pub nonce_ts_offset: i64,
    /// Send this `key_select` in our nonce instead of the secret's (−3).
    pub nonce_key_select: Option<i32>,
    /// Send this schema in our nonce instead of AES (schema NONE provokes −3/−5, AES_DH −7).
    pub nonce_schema: Option<NonceSchema>,
}

impl Default for ServerPolicy {
    fn default() -> Self {
        Self {
            accept_crc32c: true,
            reply_flags: None,
            reply_peer_pid: None,
            check_peer_pid: false,
            nonce_ts_offset: 0,
            nonce_key_select: None,
            nonce_schema: None,
        }
    }
}

/// What a link needs to know.
#[derive(Debug, Clone)]
pub struct LinkParams {
    /// The whole proxy-secret (32..=256 bytes).
    pub secret: Vec<u8>,
    /// Our key select: normally the secret's first 4 bytes as LE i32.
    pub key_select: i32,
    /// Our address as the peer sees it (the caller applies `--nat-info`).
    pub local: SocketAddr,
    /// The peer's address (NAT-translated by the caller as C's `nat_translate_ip` would).
    pub peer: SocketAddr,
    /// Our PID, sent as `sender_pid` and matched against the peer's `peer_pid`.
    pub our_pid: ProcessId,
    /// Client: offer CRC32C (flags 0x800). Server: allow it (together with
    /// [`ServerPolicy::accept_crc32c`]).
    pub crc32c: bool,
    /// Frames longer than this are refused.
    pub max_frame_len: usize,
    /// Server role only.
    pub server: ServerPolicy,
}

impl LinkParams {
    /// Parameters with C's defaults: key select from the secret, CRC32C on, the default
    /// frame limit and the default server policy.
    pub fn new(secret: Vec<u8>, local: SocketAddr, peer: SocketAddr, our_pid: ProcessId) -> Self {
        Self {
            key_select: key_select_of(&secret),
            secret,
            local,
            peer,
            our_pid,
            crc32c: true,
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
            server: ServerPolicy::default(),
        }
    }
}

/// The key select of a proxy-secret: its first 4 bytes as a LE i32 (0 when shorter).
pub fn key_select_of(secret: &[u8]) -> i32 {
    match secret.get(..4) {
        Some(b) => i32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        None => 0,
    }
}

/// What the link reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEvent {
    /// The handshake completed; the link is ready for messages.
    HandshakeDone {
        /// Whether frames from seq 0 on use CRC32C.
        crc32c: bool,
        /// The peer's handshake flags.
        peer_flags: u32,
        /// The peer's `sender_pid` (ignored by the proxy, as in C's IGNORE_PID mode).
        peer_pid: ProcessId,
    },
    /// A message after the handshake. RPC_PING has already been answered with RPC_PONG by
    /// the link (as C's RPC layer does); do not answer it again.
    Message(RpcMessage),
    /// A known op with a bad size or layout after the handshake: C ignores these.
    Malformed {
        /// The op word (0 if absent).
        op: u32,
        /// The payload length.
        len: usize,
        /// Why it did not decode.
        error: MessageError,
    },
}

/// Why the link failed (the connection must be closed). Queued bytes (e.g. an
/// RPC_HANDSHAKE_ERROR) may still be flushed with [`RpcLink::poll_transmit`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// Framing: bad length, CRC or seq.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// Not the packet expected at this handshake step.
    #[error("unexpected op {op:08x} at seq {seq}")]
    UnexpectedPacket {
        /// The frame's seq.
        seq: i32,
        /// Its op word.
        op: u32,
    },
    /// The peer's nonce was refused.
    #[error(transparent)]
    Nonce(#[from] NonceReject),
    /// The peer's handshake was refused (an RPC_HANDSHAKE_ERROR was queued).
    #[error(transparent)]
    Handshake(#[from] HandshakeReject),
    /// The peer answered with RPC_HANDSHAKE_ERROR.
    #[error("peer sent RPC_HANDSHAKE_ERROR {code}")]
    PeerHandshakeError {
        /// Its error code.
        code: i32,
    },
    /// Keys could not be derived.
    #[error(transparent)]
    Keys(#[from] KeyError),
    /// Local and peer addresses are of different families.
    #[error("local {local} and peer {peer} are not of the same address family")]
    AddressFamilies {
        /// Local address.
        local: IpAddr,
        /// Peer address.
        peer: IpAddr,
    },
    /// `send` before the handshake completed.
    #[error("RPC link is not ready")]
    NotReady,
    /// The link already failed.
    #[error("RPC link has failed")]
    Closed,
}

impl LinkError {
    /// The C client's `fail_connection` code, where C has one (C's server uses −1 for
    /// framing errors).
    pub fn c_code(&self) -> Option<i32> {
        match self {
            LinkError::Frame(e) => Some(e.c_code()),
            LinkError::UnexpectedPacket { .. } | LinkError::PeerHandshakeError { .. } => Some(-2),
            LinkError::Nonce(e) => Some(e.c_code()),
            LinkError::Handshake(e) => Some(e.c_code()),
            LinkError::Keys(_) | LinkError::AddressFamilies { .. } => Some(-6),
            LinkError::NotReady | LinkError::Closed => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    AwaitNonce,
    AwaitHandshake,
    Ready,
    Failed,
}

/// One end of an ME link, without IO.
pub struct RpcLink {
    role: Role,
    params: LinkParams,
    state: State,
    decoder: FrameDecoder,
    out_seq: i32,
    out_crc: CrcMode,
    our_nonce: [u8; 16],
    our_ts: i32,
    enc: Option<CbcEncryptor>,
    dec: Option<CbcDecryptor>,
    /// Decrypted input not yet framed.
    plain: BytesMut,
    /// Wire bytes ready to go (plaintext nonce, or already encrypted).
    wire: BytesMut,
    /// Plaintext frames to pad and encrypt at the next `poll_transmit`.
    pending: BytesMut,
    events: VecDeque<LinkEvent>,
}

impl std::fmt::Debug for RpcLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcLink")
            .field("role", &self.role)
            .field("state", &self.state)
            .field("out_seq", &self.out_seq)
            .field("in_seq", &self.decoder.next_seq())
            .finish_non_exhaustive()
    }
}

impl RpcLink {
    /// The proxy's end with a random nonce; our RPC_NONCE is queued at once.
    pub fn client(params: LinkParams, now_unix: i64, rng: &mut impl RngCore) -> Self {
        let mut nonce = [0u8; 16];
        rng.fill_bytes(&mut nonce);
        Self::client_with_nonce(params, now_unix, nonce)
    }

    /// The proxy's end with a given nonce (deterministic tests).
    pub fn client_with_nonce(params: LinkParams, now_unix: i64, nonce: [u8; 16]) -> Self {
        let mut link = Self::new(Role::Client, params, nonce);
        link.our_ts = now_unix as i32;
        let n = Nonce {
            key_select: link.params.key_select,
            schema: NonceSchema::Aes,
            crypto_ts: link.our_ts,
            nonce,
        };
        link.queue_frame(&RpcMessage::Nonce(n));
        link
    }

    /// A (fake) ME's end for an accepted connection, with a random nonce.
    pub fn server(params: LinkParams, rng: &mut impl RngCore) -> Self {
        let mut nonce = [0u8; 16];
        rng.fill_bytes(&mut nonce);
        Self::server_with_nonce(params, nonce)
    }

    /// A (fake) ME's end with a given nonce (deterministic tests).
    pub fn server_with_nonce(params: LinkParams, nonce: [u8; 16]) -> Self {
        Self::new(Role::Server, params, nonce)
    }

    fn new(role: Role, params: LinkParams, our_nonce: [u8; 16]) -> Self {
        Self {
            role,
            decoder: FrameDecoder::new(CrcMode::Crc32, SEQ_NONCE, params.max_frame_len),
            params,
            state: State::AwaitNonce,
            out_seq: SEQ_NONCE,
            out_crc: CrcMode::Crc32,
            our_nonce,
            our_ts: 0,
            enc: None,
            dec: None,
            plain: BytesMut::new(),
            wire: BytesMut::new(),
            pending: BytesMut::new(),
            events: VecDeque::new(),
        }
    }

    /// Our role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Whether the handshake completed and the link has not failed.
    pub fn is_ready(&self) -> bool {
        self.state == State::Ready
    }

    /// Whether the link failed.
    pub fn is_failed(&self) -> bool {
        self.state == State::Failed
    }

    /// The CRC of frames after the handshake (meaningful once ready).
    pub fn crc_mode(&self) -> CrcMode {
        self.out_crc
    }

    /// Whether `poll_transmit` has bytes to write.
    pub fn has_transmit(&self) -> bool {
        !self.wire.is_empty() || !self.pending.is_empty()
    }

    /// Consumes received wire bytes from the front of `data`, decrypting once CBC started.
    /// Bytes of an incomplete frame (or of a partial CBC block) stay in `data`, or in the
    /// link's own buffer when already decrypted; feed them again with more bytes appended.
    ///
    /// # Errors
    /// [`LinkError`]; the link is failed afterwards (later calls return
    /// [`LinkError::Closed`]).
    pub fn handle_input(&mut self, data: &mut BytesMut, now_unix: i64) -> Result<(), LinkError> {
        if self.state == State::Failed {
            return Err(LinkError::Closed);
        }
        loop {
            let decoded = if let Some(dec) = self.dec.as_mut() {
                let n = data.len() & !15;
                if n > 0 {
                    let mut chunk = data.split_to(n);
                    // `n` is a multiple of 16, so this cannot fail.
                    let _ = dec.decrypt(&mut chunk);
                    self.plain.unsplit(chunk);
                }
                self.decoder.decode(&mut self.plain)
            } else {
                self.decoder.decode(data)
            };
            let result = match decoded {
                Ok(None) => return Ok(()),
                Ok(Some(frame)) => self.process(frame, now_unix),
                Err(e) => Err(LinkError::Frame(e)),
            };
            if let Err(e) = result {
                self.state = State::Failed;
                return Err(e);
            }
        }
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<LinkEvent> {
        self.events.pop_front()
    }

    /// Queues one message (after the handshake).
    ///
    /// # Errors
    /// [`LinkError::NotReady`] before the handshake, [`LinkError::Closed`] after a failure,
    /// [`LinkError::Frame`] for a payload that is not a whole number of words.
    pub fn send(&mut self, msg: &RpcMessage) -> Result<(), LinkError> {
        self.check_ready()?;
        let start = begin_frame(&mut self.pending, self.out_seq);
        msg.encode(&mut self.pending);
        finish_frame(&mut self.pending, start, self.out_crc)?;
        self.out_seq = self.out_seq.wrapping_add(1);
        Ok(())
    }

    /// Queues an RPC_PROXY_REQ built in place from `header` and the client's packet
    /// (`payload.len() % 4 == 0`), without an intermediate buffer.
    ///
    /// # Errors
    /// As [`RpcLink::send`].
    pub fn send_proxy_req(
        &mut self,
        header: &ProxyReqHeader,
        payload: &[u8],
    ) -> Result<(), LinkError> {
        self.check_ready()?;
        self.pending
            .reserve(12 + header.encoded_len() + payload.len());
        let start = begin_frame(&mut self.pending, self.out_seq);
        header.encode(&mut self.pending);
        self.pending.extend_from_slice(payload);
        finish_frame(&mut self.pending, start, self.out_crc)?;
        self.out_seq = self.out_seq.wrapping_add(1);
        Ok(())
    }

    /// Moves every queued wire byte to the end of `dst`: first bytes already final, then the
    /// pending frames, padded to 16 with `04 00 00 00` and CBC-encrypted once crypto runs.
    pub fn poll_transmit(&mut self, dst: &mut BytesMut) {
        if !self.wire.is_empty() {
            dst.unsplit(self.wire.split());
        }
        if self.pending.is_empty() {
            return;
        }
        if let Some(enc) = self.enc.as_mut() {
            pad_to_block(&mut self.pending);
            // Padded to a multiple of 16 just above, so this cannot fail.
            let _ = enc.encrypt(&mut self.pending);
        }
        dst.unsplit(self.pending.split());
    }

    /// Pads and encrypts the pending frames of several links at once, as each link's next
    /// [`RpcLink::poll_transmit`] would, and keeps the ciphertext queued for it: the next
    /// `poll_transmit` of each link returns exactly the bytes it would have returned
    /// without this call. The CBC chains of the links are encrypted interleaved
    /// ([`encrypt_chains`]), which is several times faster than one after the other.
    pub fn seal_pending(links: &mut [&mut RpcLink]) {
        let mut chains: Vec<(&mut CbcEncryptor, &mut [u8])> = Vec::with_capacity(links.len());
        for l in links.iter_mut() {
            let RpcLink { enc, pending, .. } = &mut **l;
            if let Some(enc) = enc.as_mut() {
                if !pending.is_empty() {
                    pad_to_block(pending);
                    chains.push((enc, &mut pending[..]));
                }
            }
        }
        // Every buffer was padded to a multiple of 16 just above, so this cannot fail.
        let _ = encrypt_chains(&mut chains);
        drop(chains);
        for l in links.iter_mut() {
            if !l.pending.is_empty() {
                let sealed = l.pending.split();
                l.wire.unsplit(sealed);
            }
        }
    }

    /// Bytes of plaintext frames queued and not yet encrypted.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    fn check_ready(&self) -> Result<(), LinkError> {
        match self.state {
            State::Ready => Ok(()),
            State::Failed => Err(LinkError::Closed),
            _ => Err(LinkError::NotReady),
        }
    }

    /// Queues a handshake-phase frame (always whole words, so no error).
    fn queue_frame(&mut self, msg: &RpcMessage) {
        let start = begin_frame(&mut self.pending, self.out_seq);
        msg.encode(&mut self.pending);
        let _ = finish_frame(&mut self.pending, start, self.out_crc);
        self.out_seq = self.out_seq.wrapping_add(1);
    }

    fn process(&mut self, frame: Frame, now_unix: i64) -> Result<(), LinkError> {
        let op = frame
            .payload
            .get(..4)
            .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        match self.state {
            State::AwaitNonce => {
                if op != RPC_NONCE {
                    return Err(LinkError::UnexpectedPacket { seq: frame.seq, op });
                }
                self.on_nonce(&frame.payload, now_unix)
            }
            State::AwaitHandshake => {
                if op == RPC_HANDSHAKE_ERROR {
                    if let Ok(e) = HandshakeError::decode(&frame.payload) {
                        return Err(LinkError::PeerHandshakeError { code: e.error_code });
                    }
                }
                if op != RPC_HANDSHAKE {
                    return Err(LinkError::UnexpectedPacket { seq: frame.seq, op });
                }
                self.on_handshake(&frame.payload)
            }
            State::Ready => {
                self.on_message(frame.payload.freeze(), op);
                Ok(())
            }
            State::Failed => Err(LinkError::Closed),
        }
    }

    fn on_nonce(&mut self, payload: &[u8], now_unix: i64) -> Result<(), LinkError> {
        let am_client = self.role == Role::Client;
        if !am_client {
            self.our_ts = now_unix as i32;
        }
        let peer = check_peer_nonce(payload, self.params.key_select, self.our_ts, am_client)?;
        let (local, remote) = (self.params.local, self.params.peer);
        let addrs = match (local.ip().to_canonical(), remote.ip().to_canonical()) {
            (IpAddr::V4(l), IpAddr::V4(r)) => {
                if am_client {
                    KeyAddrs::V4 {
                        server_ip: r,
                        client_ip: l,
                    }
                } else {
                    KeyAddrs::V4 {
                        server_ip: l,
                        client_ip: r,
                    }
                }
            }
            (IpAddr::V6(l), IpAddr::V6(r)) => {
                if am_client {
                    KeyAddrs::V6 {
                        server_ip: r,
                        client_ip: l,
                    }
                } else {
                    KeyAddrs::V6 {
                        server_ip: l,
                        client_ip: r,
                    }
                }
            }
            (l, r) => return Err(LinkError::AddressFamilies { local: l, peer: r }),
        };
        let inputs = if am_client {
            KeyInputs {
                nonce_server: peer.nonce,
                nonce_client: self.our_nonce,
                client_ts: self.our_ts,
                addrs,
                server_port: remote.port(),
                client_port: local.port(),
                secret: &self.params.secret,
            }
        } else {
            KeyInputs {
                nonce_server: self.our_nonce,
                nonce_client: peer.nonce,
                client_ts: peer.crypto_ts,
                addrs,
                server_port: local.port(),
                client_port: remote.port(),
                secret: &self.params.secret,
            }
        };
        let keys = link_keys(&inputs, am_client)?;
        if !am_client {
            let policy = &self.params.server;
            let reply = Nonce {
                key_select: policy.nonce_key_select.unwrap_or(self.params.key_select),
                schema: policy.nonce_schema.clone().unwrap_or(NonceSchema::Aes),
                crypto_ts: (now_unix.wrapping_add(policy.nonce_ts_offset)) as i32,
                nonce: self.our_nonce,
            };
            self.queue_frame(&RpcMessage::Nonce(reply));
        }
        // Everything queued so far (our nonce) goes out in plaintext; CBC starts now.
        let plain_out = self.pending.split();
        self.wire.unsplit(plain_out);
        self.enc = Some(CbcEncryptor::new(&keys.write_key, &keys.write_iv));
        self.dec = Some(CbcDecryptor::new(&keys.read_key, &keys.read_iv));
        self.state = State::AwaitHandshake;
        if am_client {
            let hs = Handshake {
                flags: if self.params.crc32c {
                    RPCF_USE_CRC32C
                } else {
                    0
                },
                sender_pid: self.params.our_pid,
                peer_pid: client_peer_pid(remote),
            };
            self.queue_frame(&RpcMessage::Handshake(hs));
        }
        Ok(())
    }

    fn on_handshake(&mut self, payload: &[u8]) -> Result<(), LinkError> {
        let am_client = self.role == Role::Client;
        let check_pid = am_client || self.params.server.check_peer_pid;
        let offer = self.params.crc32c && (am_client || self.params.server.accept_crc32c);
        let (hs, crc32c) = match check_peer_handshake(
            payload,
            &self.params.our_pid,
            check_pid,
            offer,
            am_client,
        ) {
            Ok(v) => v,
            Err(rej) => {
                let err = HandshakeError {
                    error_code: rej.c_code(),
                    sender_pid: self.params.our_pid,
                };
                self.queue_frame(&RpcMessage::HandshakeError(err));
                return Err(rej.into());
            }
        };
        let crc32c = if am_client {
            crc32c
        } else {
            let policy = &self.params.server;
            let flags = policy
                .reply_flags
                .unwrap_or(if crc32c { RPCF_USE_CRC32C } else { 0 });
            let reply = Handshake {
                flags,
                sender_pid: self.params.our_pid,
                peer_pid: policy.reply_peer_pid.unwrap_or(hs.sender_pid),
            };
            self.queue_frame(&RpcMessage::Handshake(reply));
            flags & RPCF_USE_CRC32C != 0
        };
        if crc32c {
            self.out_crc = CrcMode::Crc32c;
            self.decoder.set_crc(CrcMode::Crc32c);
        }
        self.state = State::Ready;
        self.events.push_back(LinkEvent::HandshakeDone {
            crc32c,
            peer_flags: hs.flags,
            peer_pid: hs.sender_pid,
        });
        Ok(())
    }

    fn on_message(&mut self, payload: Bytes, op: u32) {
        let len = payload.len();
        match RpcMessage::decode(payload) {
            Ok(msg) => {
                if let RpcMessage::Ping { ping_id } = msg {
                    self.queue_frame(&RpcMessage::Pong { ping_id });
                }
                self.events.push_back(LinkEvent::Message(msg));
            }
            Err(error) => self
                .events
                .push_back(LinkEvent::Malformed { op, len, error }),
        }
    }
}

/// The `peer_pid` the proxy sends: the ME's IPv4 (0 for 127.0.0.1 or IPv6) and port.
pub fn client_peer_pid(peer: SocketAddr) -> ProcessId {
    let ip = match peer.ip().to_canonical() {
        IpAddr::V4(v4) if v4.octets() != [127, 0, 0, 1] => u32::from(v4),
        _ => 0,
    };
    ProcessId {
        ip,
        port: peer.port() as i16,
        pid: 0,
        utime: 0,
    }
}

#[cfg(test)]
mod tests;
