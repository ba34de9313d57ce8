//! The client session: everything the proxy decides about one client connection, sans-IO
//! (§4, §4.4, §12.1) — the obfuscated2 header, the `-D` fake-TLS front door, transport
//! framing, the packet rules, PROXY_REQ flags, answers and quick acks back, the records
//! of at most 1 425 bytes, and the pre-authentication deadlines.
//!
//! It sits beside [`crate::protocol::rpc::RpcLink`] and is driven the same way:
//! 1. the caller appends what the socket gave to [`ClientSession::recv_buffer`];
//! 2. drains [`ClientSession::poll_event`] — [`SessionEvent::CheckReplay`] is answered
//!    with [`ClientSession::replay_answer`], [`SessionEvent::HelloAccepted`] with
//!    [`ClientSession::send_server_hello`], [`SessionEvent::Forward`] goes to the middle
//!    end, [`SessionEvent::Front`] hands the connection to the fronting relay,
//!    [`SessionEvent::Close`] ends it;
//! 3. feeds the middle end's answers with [`ClientSession::handle_answer`] /
//!    [`ClientSession::handle_quick_ack`];
//! 4. writes [`ClientSession::transmit`] out and reports what went with
//!    [`ClientSession::advance_transmit`];
//! 5. wakes at [`ClientSession::poll_timeout`] and calls
//!    [`ClientSession::handle_timeout`].
//!
//! The replay caches live outside (they are instance-wide, possibly in another process):
//! the session asks, the caller answers. Time is a parameter (`Instant` for deadlines,
//! unix seconds for the hello's timestamp).
//!
//! While it waits, a session can give back every buffer and the ciphers' key schedules
//! ([`ClientSession::park`]): an idle client costs a few hundred bytes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use rand::rngs::SmallRng;
use rand::{Rng, RngCore, SeedableRng};

use crate::protocol::crypto::AesCtr;
use crate::protocol::fake_tls::{
    authenticate_client_hello, build_server_hello, classify_first_bytes, encode_app_data_records,
    finish_client_hello, sni_domain, AcceptedHello, Classification, ClientRecordDecoder,
    DomainProfile, HelloReject, HelloStart, RecordError, ReplayAnswer, DEFAULT_DOMAIN,
    MAX_CLIENT_HELLO_LEN, MAX_SERVER_RECORD_PAYLOAD,
};
use crate::protocol::obfuscated2::{self, AcceptPolicy, ServerHandshake, HEADER_LEN};
use crate::protocol::packet::{self, DropReason, PacketVerdict};
use crate::protocol::rpc::messages::flags as req_flags;
use crate::protocol::transport::{self, ServerDecoder, Transport};

/// C holds a pre-authentication connection forever; we close it after this long (also how
/// long a wrong-secret connection is kept in C's silent skip mode).
pub const PRE_AUTH_TIMEOUT: Duration = Duration::from_secs(30);

/// `-D`: C's pre-handshake timer. A connection still undecided this long after accept is
/// fronted to the default domain; a fake-TLS client that has not brought its obfuscated2
/// header by then is closed.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// An identified client with no bytes either way for this long is closed. C has no such
/// bound (only the system's TCP keepalive, two hours): a client holding a valid secret
/// could keep `-C` slots for ever with silent connections. Real clients ping far more
/// often than this.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(600);

/// `-D`: C decides on the transport once this many bytes are buffered.
const DECISION_BYTES: usize = 9;

/// What every session of one process shares: the secrets and the front door's rules.
#[derive(Debug, Clone)]
pub struct SessionRules {
    /// `-S` secrets, tried in order (empty: secretless mode).
    pub secrets: Vec<[u8; 16]>,
    /// Which obfuscated2 tags are accepted (`-R`, `-D`: padded only).
    pub accept_policy: AcceptPolicy,
    /// `-D` names, the default first; empty: no fake-TLS front door.
    pub domains: Vec<String>,
    /// The plain obfuscated2 header deadline (see [`PRE_AUTH_TIMEOUT`]).
    pub pre_auth_timeout: Duration,
    /// The `-D` front door's deadline (see [`HELLO_TIMEOUT`]).
    pub hello_timeout: Duration,
    /// An identified client silent both ways this long is closed (see [`IDLE_TIMEOUT`]).
    pub idle_timeout: Duration,
    /// Test-only: bits XORed into every PROXY_REQ's flags, so the parity harness can prove
    /// it catches a divergence (0 in production).
    pub flag_xor: u32,
}

impl SessionRules {
    /// Rules for these secrets with C's defaults: no `-D`, every transport.
    pub fn new(secrets: Vec<[u8; 16]>) -> Self {
        Self {
            secrets,
            accept_policy: AcceptPolicy::default(),
            domains: Vec::new(),
            pre_auth_timeout: PRE_AUTH_TIMEOUT,
            hello_timeout: HELLO_TIMEOUT,
            idle_timeout: IDLE_TIMEOUT,
            flag_xor: 0,
        }
    }

    /// Whether connections start with the fake-TLS front door.
    pub fn fake_tls(&self) -> bool {
        !self.domains.is_empty()
    }
}

/// Which instance-wide replay cache a [`SessionEvent::CheckReplay`] asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayKind {
    /// The obfuscated2 header's nonce (header bytes 8..24).
    Header,
    /// The fake-TLS hello's `client_random[0..16]`.
    Hello,
}

/// Why a connection is fronted to a `-D` domain's real site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrontReason {
    /// The first bytes are not a fake-TLS ClientHello (C: "Expected TLS-transport").
    NotTls,
    /// No decision within [`SessionRules::hello_timeout`].
    HelloTimeout,
    /// The client came in on local port 80: fronted to its SNI's domain on :80.
    Port80 {
        /// Whether the SNI named a `-D` domain (else the default one).
        known_sni: bool,
    },
    /// The ClientHello was rejected.
    Rejected(HelloReject),
}

/// Why a session entered C's silent skip mode (input discarded until the deadline).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// The obfuscated2 header matches no secret.
    NoSecret,
    /// The header's nonce was seen before (or the cache could not be asked).
    Replayed,
}

/// Why a client connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client closed its side.
    ClientClosed,
    /// The pre-authentication deadline passed (no header, a header with no secret, or a
    /// fake-TLS client without its obfuscated2 header in time).
    PreAuthTimeout,
    /// A transport framing error (oversize, short padded frame, overlong encoding…).
    TransportError,
    /// A fake-TLS client broke the record rules.
    BadRecord,
    /// A fake-TLS client's obfuscated2 header matches no secret (or is not `dd`).
    TlsHeaderNoSecret,
    /// The middle end closed the client (CLOSE_EXT) or its connection was lost.
    ClosedByMe,
    /// The per-connection or global buffer budget was exceeded.
    BufferLimit,
    /// The proxy is shutting down.
    Shutdown,
    /// A socket error.
    IoError,
    /// Closed before authenticating, to admit a new connection at the connection cap.
    Evicted,
    /// An identified client was silent both ways for the idle timeout.
    IdleTimeout,
    /// The client held more incomplete input than the incoming budget allows.
    InputBudget,
    /// The client read nothing of what was queued for it for too long (its socket stayed
    /// full).
    WriteStall,
    /// `-D`: relayed to a fronting domain until either side closed.
    Fronted,
    /// Closed by the fake-TLS or replay rules without a relay (fronting impossible, a
    /// replayed obfuscated2 header inside TLS).
    Rejected,
}

/// What the caller must do next.
#[derive(Debug, PartialEq, Eq)]
pub enum SessionEvent {
    /// Check `key` against the instance-wide `kind` cache (recording it) and answer with
    /// [`ClientSession::replay_answer`]; nothing else happens until then.
    CheckReplay {
        /// Which cache.
        kind: ReplayKind,
        /// The key.
        key: [u8; 16],
    },
    /// `-D`: the ClientHello is valid. Answer with [`ClientSession::send_server_hello`]
    /// and the profile of `domain`.
    HelloAccepted {
        /// The SNI's index in the `-D` list.
        domain: usize,
        /// The matching secret's index.
        secret_index: usize,
    },
    /// `-D`: relay the connection byte for byte to `domain`'s site (`:80` when the client
    /// came in on port 80, else `:443`), `buffered` first. The session is over.
    Front {
        /// Index into the `-D` list.
        domain: usize,
        /// Every byte read from the client so far.
        buffered: BytesMut,
        /// Why.
        reason: FrontReason,
    },
    /// The session entered C's silent skip mode.
    Skipping(SkipReason),
    /// The client is identified: packets follow.
    Identified {
        /// Its transport.
        transport: Transport,
        /// The dc it asked for (negative: media).
        dc: i16,
        /// The matching secret (`None` in secretless mode).
        secret_index: Option<usize>,
        /// Whether it came through the fake-TLS front door.
        tls: bool,
    },
    /// Forward one packet to the middle end as RPC_PROXY_REQ with these flags.
    Forward {
        /// The MTProto packet.
        payload: BytesMut,
        /// The PROXY_REQ flags.
        flags: u32,
    },
    /// A packet was dropped by the packet rules (the connection stays open).
    Dropped(DropReason),
    /// A packet that cannot be framed towards the client was dropped.
    AnswerDropped {
        /// Its length.
        len: usize,
    },
    /// The session is over.
    Close(CloseReason),
}

/// Where a session is.
#[derive(Debug)]
enum Stage {
    /// Plain obfuscated2: waiting for the 64-byte header.
    Header,
    /// `-D`: waiting for the first bytes, then the whole ClientHello record.
    Hello { record_len: Option<usize> },
    /// `-D`: waiting for the hello replay cache's answer.
    HelloReplay {
        start: HelloStart,
        record_len: usize,
    },
    /// `-D`: waiting for the domain's profile to build the ServerHello.
    HelloProfile {
        accepted: Box<AcceptedHello>,
        record_len: usize,
    },
    /// `-D`: ServerHello sent; the client's CCS and records bring the obfuscated2 header.
    TlsHeader { records: ClientRecordDecoder },
    /// Waiting for the header replay cache's answer.
    HeaderReplay {
        handshake: Box<ServerHandshake>,
        records: Option<ClientRecordDecoder>,
    },
    /// C's silent skip mode: discard everything until the deadline.
    Skip,
    /// Identified: packets both ways.
    Relay(Relay),
    /// Over.
    Closed,
}

/// An identified client's protocol state.
#[derive(Debug)]
struct Relay {
    transport: Transport,
    decoder: ServerDecoder,
    decrypt: AesCtr,
    encrypt: AesCtr,
    /// Fake TLS: the client record decoder.
    records: Option<ClientRecordDecoder>,
}

/// One client connection's protocol, server side (see the module docs).
#[derive(Debug)]
pub struct ClientSession {
    rules: Arc<SessionRules>,
    stage: Stage,
    /// The pre-authentication deadline (none once relaying).
    deadline: Option<Instant>,
    /// When the caller last saw traffic either way (the idle deadline's base).
    last_active: Instant,
    /// Wire bytes from the client (plain relay: `rx[..clear]` is already decrypted).
    rx: BytesMut,
    clear: usize,
    /// Fake TLS: de-recorded client bytes (decrypted once relaying).
    plain: BytesMut,
    /// Framed and encrypted bytes for the client, not yet in records.
    tx: BytesMut,
    /// Bytes ready for the socket.
    wire: BytesMut,
    /// An event produced by a call, returned by the next [`ClientSession::poll_event`].
    pending: Option<SessionEvent>,
    /// Packets forwarded and not yet answered.
    in_flight: usize,
    /// The proxy is stopping: no new packets; close once everything is answered.
    draining: bool,
    /// The local port the client came in on (`-D`: port 80 is fronted on :80).
    local_port: u16,
    /// Padding lengths and bytes.
    rng: SmallRng,
}

impl ClientSession {
    /// A session for a connection accepted at `now` on local port `local_port`.
    pub fn new(
        rules: Arc<SessionRules>,
        now: Instant,
        local_port: u16,
        rng: &mut impl RngCore,
    ) -> Self {
        let (stage, timeout) = if rules.fake_tls() {
            (Stage::Hello { record_len: None }, rules.hello_timeout)
        } else {
            (Stage::Header, rules.pre_auth_timeout)
        };
        Self {
            rules,
            stage,
            deadline: now.checked_add(timeout),
            last_active: now,
            rx: BytesMut::new(),
            clear: 0,
            plain: BytesMut::new(),
            tx: BytesMut::new(),
            wire: BytesMut::new(),
            pending: None,
            in_flight: 0,
            draining: false,
            local_port,
            rng: SmallRng::from_rng(rng).unwrap_or_else(|_| SmallRng::seed_from_u64(0)),
        }
    }

    /// The buffer to append the client's bytes to (the caller reserves what it reads).
    pub fn recv_buffer(&mut self) -> &mut BytesMut {
        &mut self.rx
    }

    /// Appends `data` as if read from the client.
    pub fn feed(&mut self, data: &[u8]) {
        self.rx.extend_from_slice(data);
    }

    /// Whether the caller should read from the client (not while draining, not once over).
    pub fn wants_input(&self) -> bool {
        !self.draining && !matches!(self.stage, Stage::Closed)
    }

    /// Whether the client is identified and relaying.
    pub fn is_relaying(&self) -> bool {
        matches!(self.stage, Stage::Relay(_))
    }

    /// Packets forwarded and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// The proxy is stopping: a client before its header is closed at once, a relaying
    /// one once every forwarded packet is answered (see [`ClientSession::poll_event`]).
    pub fn begin_shutdown(&mut self) {
        self.draining = true;
    }

    /// The caller saw traffic (either way) at `now`: the idle deadline moves.
    pub fn touch(&mut self, now: Instant) {
        self.last_active = now;
    }

    /// Client bytes held until their frame is complete (the input side's memory).
    pub fn buffered_input(&self) -> usize {
        self.rx.len() + self.plain.len()
    }

    /// The deadline the caller must wake at, if any: before authentication the header's,
    /// then the idle one.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.stage {
            Stage::Closed => None,
            Stage::Relay(_) => self.last_active.checked_add(self.rules.idle_timeout),
            _ => self.deadline,
        }
    }

    /// Acts on a passed deadline: an undecided `-D` connection is fronted to the default
    /// domain, anything else before its header is closed.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.pending.is_some() || self.poll_timeout().is_none_or(|d| now < d) {
            return;
        }
        let event = match self.stage {
            Stage::Hello { .. } | Stage::HelloReplay { .. } | Stage::HelloProfile { .. } => {
                self.front(DEFAULT_DOMAIN, FrontReason::HelloTimeout)
            }
            Stage::Relay(_) => self.close(CloseReason::IdleTimeout),
            _ => self.close(CloseReason::PreAuthTimeout),
        };
        self.pending = Some(event);
    }

    /// The next thing to do; `None` when the session waits for input, an answer or a
    /// deadline.
    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        if let Some(e) = self.pending.take() {
            return Some(e);
        }
        if matches!(self.stage, Stage::Relay(_)) {
            return self.poll_relay();
        }
        let rules = Arc::clone(&self.rules);
        if self.draining && !matches!(self.stage, Stage::Relay(_) | Stage::Closed | Stage::Skip) {
            return Some(self.close(CloseReason::Shutdown));
        }
        match &mut self.stage {
            Stage::Closed => None,
            Stage::Skip => {
                self.rx.clear();
                if self.draining {
                    return Some(self.close(CloseReason::Shutdown));
                }
                None
            }
            Stage::Header => {
                let hdr = take_header(&mut self.rx)?;
                match obfuscated2::parse_header(&hdr, &rules.secrets, rules.accept_policy) {
                    None => {
                        self.stage = Stage::Skip;
                        self.rx.clear();
                        Some(SessionEvent::Skipping(SkipReason::NoSecret))
                    }
                    Some(hs) => {
                        self.stage = Stage::HeaderReplay {
                            handshake: Box::new(hs),
                            records: None,
                        };
                        Some(header_replay_check(&hdr))
                    }
                }
            }
            Stage::Hello { record_len } => {
                if record_len.is_none() && self.rx.len() >= DECISION_BYTES {
                    match classify_first_bytes(&self.rx) {
                        Classification::FakeTls { record_len: n } => *record_len = Some(n),
                        Classification::NotTls | Classification::NeedMore => {
                            return Some(self.front(DEFAULT_DOMAIN, FrontReason::NotTls));
                        }
                    }
                }
                let n = record_len.filter(|&n| self.rx.len() >= n)?;
                if self.local_port == 80 {
                    let seen = &self.rx[..self.rx.len().min(MAX_CLIENT_HELLO_LEN)];
                    let sni = sni_domain(seen, &rules.domains);
                    let reason = FrontReason::Port80 {
                        known_sni: sni.is_some(),
                    };
                    return Some(self.front(sni.unwrap_or(DEFAULT_DOMAIN), reason));
                }
                let extra = self.rx.len() - n;
                match authenticate_client_hello(
                    &self.rx[..n],
                    extra,
                    &rules.domains,
                    &rules.secrets,
                ) {
                    Err(r) => Some(self.front(r.splice_domain(), FrontReason::Rejected(r))),
                    Ok(start) => {
                        self.stage = Stage::HelloReplay {
                            start,
                            record_len: n,
                        };
                        Some(SessionEvent::CheckReplay {
                            kind: ReplayKind::Hello,
                            key: start.key,
                        })
                    }
                }
            }
            Stage::TlsHeader { records } => {
                if derecord(records, &mut self.rx, &mut self.plain, None).is_err() {
                    return Some(self.close(CloseReason::BadRecord));
                }
                let hdr = take_header(&mut self.plain)?;
                let records = std::mem::take(records);
                match obfuscated2::parse_header(&hdr, &rules.secrets, rules.accept_policy) {
                    None => Some(self.close(CloseReason::TlsHeaderNoSecret)),
                    Some(hs) => {
                        self.stage = Stage::HeaderReplay {
                            handshake: Box::new(hs),
                            records: Some(records),
                        };
                        Some(header_replay_check(&hdr))
                    }
                }
            }
            Stage::HelloReplay { .. } | Stage::HelloProfile { .. } | Stage::HeaderReplay { .. } => {
                None
            }
            Stage::Relay(_) => self.poll_relay(),
        }
    }

    /// The relay's next event: the next complete frame's verdict.
    fn poll_relay(&mut self) -> Option<SessionEvent> {
        if self.draining {
            return (self.in_flight == 0).then(|| self.close(CloseReason::Shutdown));
        }
        let flag_xor = self.rules.flag_xor;
        loop {
            let Stage::Relay(r) = &mut self.stage else {
                return None;
            };
            let decoded = match r.records.as_mut() {
                Some(records) => {
                    if derecord(records, &mut self.rx, &mut self.plain, Some(&mut r.decrypt))
                        .is_err()
                    {
                        return Some(self.close(CloseReason::BadRecord));
                    }
                    r.decoder.decode(&mut self.plain)
                }
                None => {
                    if let Some(tail) = self.rx.get_mut(self.clear..) {
                        r.decrypt.apply(tail);
                    }
                    // Everything in `rx` is decrypted now; decoding only takes from the front.
                    let d = r.decoder.decode(&mut self.rx);
                    self.clear = self.rx.len();
                    d
                }
            };
            let frame = match decoded {
                Ok(Some(f)) => f,
                Ok(None) => return None,
                Err(_) => return Some(self.close(CloseReason::TransportError)),
            };
            match packet::classify(&frame.payload) {
                PacketVerdict::Forward { unencrypted, .. } => {
                    self.in_flight += 1;
                    let flags = proxy_req_flags(r.transport, unencrypted, frame.quick_ack);
                    return Some(SessionEvent::Forward {
                        payload: frame.payload,
                        flags: flags ^ flag_xor,
                    });
                }
                PacketVerdict::RpcPing { reply } => {
                    if let Some(pong) = reply {
                        if let Some(e) = self.frame_out(&pong) {
                            return Some(e);
                        }
                    }
                }
                PacketVerdict::Drop(reason) => return Some(SessionEvent::Dropped(reason)),
            }
        }
    }

    /// The caller's answer to [`SessionEvent::CheckReplay`]: `fresh` when the key was not
    /// cached (a cache that could not be asked counts as not fresh), `oldest` the cache's
    /// oldest entry time, `now_unix` the wall clock.
    pub fn replay_answer(&mut self, fresh: bool, oldest: Option<i64>, now_unix: i64) {
        let stage = std::mem::replace(&mut self.stage, Stage::Closed);
        let event = match stage {
            Stage::HelloReplay { start, record_len } => {
                let answer = ReplayAnswer { fresh, oldest };
                let record = &self.rx[..record_len.min(self.rx.len())];
                match finish_client_hello(record, start, answer, &self.rules.secrets, now_unix) {
                    Err(r) => self.front(r.splice_domain(), FrontReason::Rejected(r)),
                    Ok(accepted) => {
                        let event = SessionEvent::HelloAccepted {
                            domain: accepted.domain,
                            secret_index: accepted.secret_index,
                        };
                        self.stage = Stage::HelloProfile {
                            accepted: Box::new(accepted),
                            record_len,
                        };
                        event
                    }
                }
            }
            Stage::HeaderReplay { handshake, records } => match (fresh, records) {
                (true, records) => self.identified(*handshake, records),
                (false, Some(_)) => self.close(CloseReason::Rejected),
                (false, None) => {
                    self.stage = Stage::Skip;
                    self.rx.clear();
                    SkipReason::Replayed.into()
                }
            },
            other => {
                self.stage = other;
                return;
            }
        };
        self.pending = Some(event);
    }

    /// The caller's answer to [`SessionEvent::HelloAccepted`]: queues the ServerHello
    /// imitating `profile` and waits for the client's obfuscated2 header.
    pub fn send_server_hello(&mut self, profile: &DomainProfile, rng: &mut impl RngCore) {
        let stage = std::mem::replace(&mut self.stage, Stage::Closed);
        let Stage::HelloProfile {
            accepted,
            record_len,
        } = stage
        else {
            self.stage = stage;
            return;
        };
        let Some(secret) = self.rules.secrets.get(accepted.secret_index) else {
            self.pending = Some(self.close(CloseReason::Rejected));
            return;
        };
        let reply = build_server_hello(&accepted, secret, profile, rng);
        self.wire.extend_from_slice(&reply);
        self.rx.advance(record_len.min(self.rx.len()));
        self.stage = Stage::TlsHeader {
            records: ClientRecordDecoder::new(),
        };
    }

    /// A middle-end answer for the client: framed (padded), encrypted and queued.
    pub fn handle_answer(&mut self, data: &[u8]) -> Option<SessionEvent> {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.frame_out(data)
    }

    /// A middle-end quick ack for the client: encoded, encrypted and queued.
    ///
    /// Padded intermediate, as C's `push_rpc_confirmation`: half the time the plain
    /// 4 bytes, else two padded frames `[ff ff ff ff][confirm][0|4 random bytes]` and
    /// `[00 00 00 00][0|4 random bytes]`, each with its 0..3 bytes of frame padding.
    pub fn handle_quick_ack(&mut self, confirm: u32) {
        let Stage::Relay(r) = &mut self.stage else {
            return;
        };
        let start = self.tx.len();
        if r.transport == Transport::PaddedIntermediate && self.rng.gen::<bool>() {
            let mut pads = [0u8; 14];
            self.rng.fill_bytes(&mut pads);
            let mut len = || 4 * usize::from(self.rng.gen::<bool>()) + self.rng.gen_range(0..=3);
            let (n1, n2) = (len(), len());
            let alt = transport::encode_padded_quick_ack_alt(
                confirm,
                &pads[..n1],
                &pads[7..7 + n2],
                &mut self.tx,
            );
            if alt.is_err() {
                transport::encode_quick_ack(r.transport, confirm, &mut self.tx);
            }
        } else {
            transport::encode_quick_ack(r.transport, confirm, &mut self.tx);
        }
        if let Some(tail) = self.tx.get_mut(start..) {
            r.encrypt.apply(tail);
        }
    }

    /// A [`SessionEvent::Forward`] the caller could not deliver (no middle end): it will
    /// get no answer.
    pub fn forward_failed(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    /// The bytes to write to the client now (fake TLS: in application-data records of at
    /// most [`MAX_SERVER_RECORD_PAYLOAD`] bytes; what was queued since the last call shares
    /// records, as C cuts whatever is queued).
    pub fn transmit(&mut self) -> &[u8] {
        if !self.tx.is_empty() {
            let tls = matches!(&self.stage, Stage::Relay(r) if r.records.is_some());
            if tls {
                let n = self.tx.len();
                self.wire
                    .reserve(n + n.div_ceil(MAX_SERVER_RECORD_PAYLOAD) * 5);
                encode_app_data_records(&self.tx, &mut self.wire);
                self.tx.clear();
            } else if self.wire.is_empty() {
                std::mem::swap(&mut self.tx, &mut self.wire);
            } else {
                self.wire.extend_from_slice(&self.tx);
                self.tx.clear();
            }
        }
        &self.wire
    }

    /// `n` bytes of [`ClientSession::transmit`] were written.
    pub fn advance_transmit(&mut self, n: usize) {
        self.wire.advance(n.min(self.wire.len()));
    }

    /// Bytes queued for the client (written or not yet).
    pub fn pending_transmit(&self) -> usize {
        self.tx.len() + self.wire.len()
    }

    /// Gives back what a waiting session does not need: empty buffers and both ciphers'
    /// key schedules.
    pub fn park(&mut self) {
        for b in [&mut self.rx, &mut self.plain, &mut self.tx, &mut self.wire] {
            if b.is_empty() && b.capacity() > 0 {
                *b = BytesMut::new();
            }
        }
        if self.rx.is_empty() {
            self.clear = 0;
        }
        if let Stage::Relay(r) = &mut self.stage {
            r.decrypt.park();
            r.encrypt.park();
        }
    }

    /// Frames, pads, encrypts and queues one packet for the client.
    fn frame_out(&mut self, payload: &[u8]) -> Option<SessionEvent> {
        let Stage::Relay(r) = &mut self.stage else {
            return None;
        };
        let mut pad = [0u8; 3];
        let pad_len = if r.transport == Transport::PaddedIntermediate {
            let n = self.rng.gen_range(0..=3);
            self.rng.fill_bytes(&mut pad[..n]);
            n
        } else {
            0
        };
        let start = self.tx.len();
        if transport::encode_server_frame(r.transport, payload, &pad[..pad_len], &mut self.tx)
            .is_err()
        {
            return Some(SessionEvent::AnswerDropped { len: payload.len() });
        }
        if let Some(tail) = self.tx.get_mut(start..) {
            r.encrypt.apply(tail);
        }
        None
    }

    /// Enters the relay with an accepted header.
    fn identified(
        &mut self,
        hs: ServerHandshake,
        records: Option<ClientRecordDecoder>,
    ) -> SessionEvent {
        let ServerHandshake {
            transport,
            dc,
            secret_index,
            mut decrypt,
            encrypt,
        } = hs;
        let tls = records.is_some();
        if tls {
            // What came after the header in the records is still encrypted.
            decrypt.apply(&mut self.plain);
        }
        self.clear = 0;
        self.deadline = None;
        self.stage = Stage::Relay(Relay {
            transport,
            decoder: ServerDecoder::new(transport),
            decrypt,
            encrypt,
            records,
        });
        SessionEvent::Identified {
            transport,
            dc,
            secret_index,
            tls,
        }
    }

    /// Ends the session with a relay to `domain`, handing over every byte read.
    fn front(&mut self, domain: usize, reason: FrontReason) -> SessionEvent {
        self.stage = Stage::Closed;
        SessionEvent::Front {
            domain,
            buffered: self.rx.split(),
            reason,
        }
    }

    fn close(&mut self, reason: CloseReason) -> SessionEvent {
        self.stage = Stage::Closed;
        SessionEvent::Close(reason)
    }
}

impl From<SkipReason> for SessionEvent {
    fn from(r: SkipReason) -> Self {
        SessionEvent::Skipping(r)
    }
}

/// The PROXY_REQ flags of a client packet (§5.5): every obfuscated2 client is EXT and
/// EXTMODE2, abridged COMPACT, (padded) intermediate MEDIUM, plus UNENCRYPTED for
/// `auth_key_id == 0` and QUICKACK when the client asked for one.
pub fn proxy_req_flags(transport: Transport, unencrypted: bool, quick_ack: bool) -> u32 {
    let mut flags = req_flags::EXT | req_flags::EXTMODE2;
    flags |= if transport == Transport::Abridged {
        req_flags::COMPACT
    } else {
        req_flags::MEDIUM
    };
    if unencrypted {
        flags |= req_flags::UNENCRYPTED;
    }
    if quick_ack {
        flags |= req_flags::QUICKACK;
    }
    flags
}

/// Takes the 64-byte header off the front of `buf`, once it is there.
fn take_header(buf: &mut BytesMut) -> Option<[u8; HEADER_LEN]> {
    let hdr: [u8; HEADER_LEN] = buf.get(..HEADER_LEN)?.try_into().ok()?;
    buf.advance(HEADER_LEN);
    Some(hdr)
}

/// The header replay cache's question: the nonce, header bytes 8..24.
fn header_replay_check(hdr: &[u8; HEADER_LEN]) -> SessionEvent {
    let mut key = [0u8; 16];
    key.copy_from_slice(&hdr[8..24]);
    SessionEvent::CheckReplay {
        kind: ReplayKind::Header,
        key,
    }
}

/// Moves the complete records' payload from `raw` to `out`, decrypted when a cipher is
/// given.
fn derecord(
    records: &mut ClientRecordDecoder,
    raw: &mut BytesMut,
    out: &mut BytesMut,
    mut decrypt: Option<&mut AesCtr>,
) -> Result<(), RecordError> {
    while let Some(mut p) = records.decode(raw)? {
        if let Some(d) = decrypt.as_deref_mut() {
            d.apply(&mut p);
        }
        if out.is_empty() {
            *out = p;
        } else {
            out.extend_from_slice(&p);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
