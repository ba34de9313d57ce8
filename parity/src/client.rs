//! The MTProto client simulator: obfuscated2 (§4.2, §4.3) and fake-TLS (§4.4) clients,
//! MTProto-shaped packets, and "bad clients" that provoke the proxy's error paths.
//!
//! Everything on the wire comes from the protocol core (client role):
//! [`ClientHandshake`] for the 64-byte header, [`encode_client_frame`] / [`ClientDecoder`]
//! for framing, [`build_client_hello`] / [`verify_server_hello`] and the record helpers for
//! fake TLS. The only bytes built by hand here are the deliberately invalid frame headers of
//! [`oversize_frame`] and [`short_padded_frame`], which the core's encoders refuse to make.
//!
//! ```no_run
//! # async fn demo(addr: std::net::SocketAddr) -> Result<(), parity::client::SimError> {
//! use parity::client::{ClientConfig, SimClient, encrypted_message};
//! use mtproxy::protocol::transport::Transport;
//! use rand::SeedableRng;
//! let cfg = ClientConfig::new(Transport::Intermediate).secret([0x11; 16]).dc(2).seed(7);
//! let mut c = SimClient::connect(addr, cfg).await?;
//! let mut rng = rand::rngs::StdRng::seed_from_u64(7);
//! let payload = encrypted_message(&mut rng, 64);
//! let ex = c.request(&payload, true).await?;
//! assert_eq!(ex.answer, payload);
//! # Ok(()) }
//! ```
//!
//! Quick acks: a FakeMe answers a request carrying the quick-ack flag with the confirm
//! [`crate::fake_me::quick_ack_confirm`] of the payload; [`SimClient::request`] returns the
//! confirm it received and [`expected_confirm`] predicts it.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use mtproxy::protocol::crypto::AesCtr;
use mtproxy::protocol::fake_tls::{
    build_client_hello, encode_app_data_records, verify_server_hello, ClientRecordDecoder,
    HelloShape, RecordError, ServerHelloInfo, VerifyError, CHANGE_CIPHER_SPEC,
};
use mtproxy::protocol::obfuscated2::ClientHandshake;
use mtproxy::protocol::packet::{REQ_DH_PARAMS, REQ_PQ_MULTI};
use mtproxy::protocol::transport::{
    encode_client_frame, ClientDecoder, EncodeError, ServerFrame, Transport, TransportError,
    MAX_CLIENT_FRAME,
};
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};

/// How the client disguises its connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// The plain obfuscated2 header (`dd`-prefixed secrets or none).
    Obfuscated2,
    /// Fake TLS (`ee` secrets): a ClientHello for `domain`, then the obfuscated2 stream in
    /// application-data records. Needs a secret and [`Transport::PaddedIntermediate`].
    FakeTls {
        /// The SNI (must be one of the proxy's `-D` names to be accepted).
        domain: String,
        /// The ClientHello layout.
        shape: HelloShape,
    },
}

/// What a [`SimClient`] connects with. Build with [`ClientConfig::new`] and the setters, or
/// as a struct literal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// The 16-byte `-S` secret; `None` is secretless mode.
    pub secret: Option<[u8; 16]>,
    /// The transport named by the header's tag.
    pub transport: Transport,
    /// The dc in the header (negative: media dc).
    pub dc: i16,
    /// Obfuscated2 or fake TLS.
    pub mode: Mode,
    /// Seeds the header randomness, the ClientHello and the frame padding.
    pub seed: u64,
    /// The bound on connecting, on the fake-TLS handshake and on each [`SimClient::recv`].
    pub timeout: Duration,
}

impl ClientConfig {
    /// Obfuscated2 on `transport`, no secret, dc 2, seed 0, a 5 s timeout.
    pub fn new(transport: Transport) -> Self {
        Self {
            secret: None,
            transport,
            dc: 2,
            mode: Mode::Obfuscated2,
            seed: 0,
            timeout: Duration::from_secs(5),
        }
    }

    /// Sets the secret.
    pub fn secret(mut self, secret: [u8; 16]) -> Self {
        self.secret = Some(secret);
        self
    }

    /// Sets the dc.
    pub fn dc(mut self, dc: i16) -> Self {
        self.dc = dc;
        self
    }

    /// Fake TLS with SNI `domain` (also sets the padded intermediate transport).
    pub fn fake_tls(mut self, domain: impl Into<String>, shape: HelloShape) -> Self {
        self.mode = Mode::FakeTls {
            domain: domain.into(),
            shape,
        };
        self.transport = Transport::PaddedIntermediate;
        self
    }

    /// Sets the seed.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Sets the timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The proxy closed the connection (EOF, reset or broken pipe).
    #[error("connection closed by the proxy")]
    Closed,
    /// Nothing (or not enough) arrived in time.
    #[error("timed out: {0}")]
    Timeout(&'static str),
    /// Any other socket error.
    #[error("io: {0}")]
    Io(#[from] io::Error),
    /// The proxy→client framing was invalid.
    #[error("proxy framing: {0}")]
    Transport(#[from] TransportError),
    /// The proxy→client TLS records were invalid.
    #[error("proxy TLS records: {0}")]
    Record(#[from] RecordError),
    /// The ServerHello was refused.
    #[error("ServerHello: {0}")]
    ServerHello(#[from] VerifyError),
    /// A packet could not be framed (misaligned for abridged/intermediate, too long).
    #[error("encode: {0}")]
    Encode(#[from] EncodeError),
    /// The configuration cannot work (e.g. fake TLS without a secret).
    #[error("config: {0}")]
    Config(String),
    /// Something arrived that the exchange did not expect.
    #[error("unexpected: {0}")]
    Unexpected(String),
}

impl SimError {
    /// Whether the proxy closed the connection.
    pub fn is_closed(&self) -> bool {
        matches!(self, SimError::Closed)
    }
}

/// Maps a reset/broken pipe to [`SimError::Closed`].
fn io_err(e: io::Error) -> SimError {
    if is_close(&e) {
        SimError::Closed
    } else {
        SimError::Io(e)
    }
}

fn is_close(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
    )
}

/// One thing received from the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// A packet (for padded intermediate: the proxy's 0..3 padding bytes removed).
    Packet(Bytes),
    /// A quick ack, with the confirm as the ME sent it (byte order already undone).
    QuickAck(u32),
}

/// One request/answer round trip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    /// The packet that came back.
    pub answer: Bytes,
    /// The quick ack received before it (only when one was requested).
    pub quick_ack: Option<u32>,
    /// From just before sending to the answer's arrival.
    pub latency: Duration,
}

/// The quick-ack confirm a FakeMe sends for `payload` (see
/// [`crate::fake_me::quick_ack_confirm`]).
pub fn expected_confirm(payload: &[u8]) -> u32 {
    crate::fake_me::quick_ack_confirm(payload)
}

/// A connected client.
pub struct SimClient {
    stream: TcpStream,
    transport: Transport,
    timeout: Duration,
    rng: StdRng,
    encrypt: AesCtr,
    decrypt: AesCtr,
    decoder: ClientDecoder,
    /// Proxy→client record decoder (fake TLS only).
    tls: Option<ClientRecordDecoder>,
    /// Wire bytes read but not yet decrypted (TLS: not yet de-recorded).
    raw: BytesMut,
    /// Decrypted proxy→client bytes not yet de-framed.
    plain: BytesMut,
    server_hello: Option<ServerHelloInfo>,
}

impl std::fmt::Debug for SimClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimClient")
            .field("local", &self.stream.local_addr().ok())
            .field("transport", &self.transport)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

/// A proxy→client record decoder for fake TLS.
///
/// The core's [`ClientRecordDecoder`] parses `17 03 03 <len> <data>` records after a dummy
/// ChangeCipherSpec and a first record of at least 64 bytes; the proxy→client stream after
/// the ServerHello is plain records of any size. Priming the decoder with a synthetic CCS
/// and a 64-byte record (whose output is discarded) makes it parse exactly that stream, so
/// the record format is not re-implemented here.
fn server_record_decoder() -> ClientRecordDecoder {
    let mut d = ClientRecordDecoder::new();
    let mut prime = BytesMut::from(&CHANGE_CIPHER_SPEC[..]);
    encode_app_data_records(&[0u8; 64], &mut prime);
    let _ = d.decode(&mut prime);
    d
}

impl SimClient {
    /// Connects and sends the obfuscated2 header (after the fake-TLS handshake in
    /// [`Mode::FakeTls`]). Nothing is read in obfuscated2 mode: the proxy never answers the
    /// header.
    ///
    /// # Errors
    /// Connect failure or timeout, a config that cannot work, the ServerHello refused or
    /// the connection closed during the fake-TLS handshake (e.g. spliced to a domain that
    /// closed).
    pub async fn connect(addr: SocketAddr, cfg: ClientConfig) -> Result<SimClient, SimError> {
        let deadline = Instant::now() + cfg.timeout;
        let mut stream = timeout_at(deadline, TcpStream::connect(addr))
            .await
            .map_err(|_| SimError::Timeout("connect"))??;
        let _ = stream.set_nodelay(true);
        let mut rng = StdRng::seed_from_u64(cfg.seed);
        let mut raw = BytesMut::new();
        let (tls, server_hello) = match &cfg.mode {
            Mode::Obfuscated2 => (None, None),
            Mode::FakeTls { domain, shape } => {
                let secret = cfg
                    .secret
                    .ok_or_else(|| SimError::Config("fake TLS needs a secret".into()))?;
                if cfg.transport != Transport::PaddedIntermediate {
                    return Err(SimError::Config(
                        "fake TLS carries padded intermediate only".into(),
                    ));
                }
                let (hello, random) = build_client_hello(
                    &secret,
                    domain,
                    mtproxy::clock::unix_now(),
                    &mut rng,
                    *shape,
                );
                stream.write_all(&hello).await.map_err(io_err)?;
                let info = loop {
                    if let Some(info) = verify_server_hello(&raw, &random, &secret)? {
                        break info;
                    }
                    let n = timeout_at(deadline, stream.read_buf(&mut raw))
                        .await
                        .map_err(|_| SimError::Timeout("ServerHello"))?
                        .map_err(io_err)?;
                    if n == 0 {
                        return Err(SimError::Closed);
                    }
                };
                let _ = raw.split_to(info.consumed);
                (Some(server_record_decoder()), Some(info))
            }
        };
        let hs = ClientHandshake::generate(&mut rng, cfg.secret.as_ref(), cfg.transport, cfg.dc);
        let mut first = BytesMut::new();
        if tls.is_some() {
            first.extend_from_slice(&CHANGE_CIPHER_SPEC);
            encode_app_data_records(&hs.header, &mut first);
        } else {
            first.extend_from_slice(&hs.header);
        }
        stream.write_all(&first).await.map_err(io_err)?;
        let mut client = SimClient {
            stream,
            transport: cfg.transport,
            timeout: cfg.timeout,
            rng,
            encrypt: hs.encrypt,
            decrypt: hs.decrypt,
            decoder: ClientDecoder::new(cfg.transport),
            tls,
            raw: BytesMut::new(),
            plain: BytesMut::new(),
            server_hello,
        };
        client.raw = raw;
        client.absorb()?;
        Ok(client)
    }

    /// Our local address (what the proxy reports as the client address).
    ///
    /// # Errors
    /// The socket error.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.stream.local_addr()
    }

    /// The transport in use.
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// What the ServerHello said (fake TLS only).
    pub fn server_hello(&self) -> Option<&ServerHelloInfo> {
        self.server_hello.as_ref()
    }

    /// Encrypts already-framed plaintext and sends it (wrapped in records for fake TLS).
    /// For deliberately broken frames; [`SimClient::send_packet`] frames for you.
    ///
    /// # Errors
    /// [`SimError::Closed`] or another socket error.
    pub async fn send_plain(&mut self, framed: &[u8]) -> Result<(), SimError> {
        let mut b = framed.to_vec();
        self.encrypt.apply(&mut b);
        if self.tls.is_some() {
            let mut w = BytesMut::with_capacity(b.len() + b.len() / 1400 * 5 + 5);
            encode_app_data_records(&b, &mut w);
            self.stream.write_all(&w).await.map_err(io_err)
        } else {
            self.stream.write_all(&b).await.map_err(io_err)
        }
    }

    /// Frames `payload` (padded intermediate: with 0..3 seeded random padding bytes),
    /// encrypts and sends it; `quick_ack` asks for a quick ack.
    ///
    /// # Errors
    /// [`SimError::Encode`] for a payload the transport cannot carry, or a socket error.
    pub async fn send_packet(&mut self, payload: &[u8], quick_ack: bool) -> Result<(), SimError> {
        let mut padding = [0u8; 3];
        let pad_len = if self.transport == Transport::PaddedIntermediate {
            self.rng.fill_bytes(&mut padding);
            self.rng.gen_range(0..=3)
        } else {
            0
        };
        let mut framed = BytesMut::with_capacity(payload.len() + 8);
        encode_client_frame(
            self.transport,
            payload,
            quick_ack,
            &padding[..pad_len],
            &mut framed,
        )?;
        self.send_plain(&framed).await
    }

    /// Decrypts whatever wire bytes are buffered into `plain`.
    fn absorb(&mut self) -> Result<(), SimError> {
        if let Some(dec) = self.tls.as_mut() {
            while let Some(mut p) = dec.decode(&mut self.raw)? {
                self.decrypt.apply(&mut p);
                self.plain.unsplit(p);
            }
        } else if !self.raw.is_empty() {
            let mut p = self.raw.split();
            self.decrypt.apply(&mut p);
            self.plain.unsplit(p);
        }
        Ok(())
    }

    /// The next packet or quick ack, waiting at most the configured timeout.
    ///
    /// # Errors
    /// As [`SimClient::recv_timeout`].
    pub async fn recv(&mut self) -> Result<Received, SimError> {
        self.recv_timeout(self.timeout).await
    }

    /// The next packet or quick ack, waiting at most `wait`.
    ///
    /// Padded intermediate's alternative quick ack (§4.3: a packet `ff ff ff ff <confirm>
    /// [4 random]` then a packet `00 00 00 00 [4 random]`) is reported as one
    /// [`Received::QuickAck`]; its zero packet is skipped.
    ///
    /// # Errors
    /// [`SimError::Timeout`], [`SimError::Closed`], or invalid framing from the proxy.
    pub async fn recv_timeout(&mut self, wait: Duration) -> Result<Received, SimError> {
        let deadline = Instant::now() + wait;
        loop {
            while let Some(frame) = self.decoder.decode(&mut self.plain)? {
                match frame {
                    ServerFrame::QuickAck(c) => return Ok(Received::QuickAck(c)),
                    ServerFrame::Packet(p) => {
                        if self.transport == Transport::PaddedIntermediate {
                            if let (Some([0xff, 0xff, 0xff, 0xff]), Some(c)) =
                                (p.get(..4), p.get(4..8))
                            {
                                return Ok(Received::QuickAck(u32::from_le_bytes([
                                    c[0], c[1], c[2], c[3],
                                ])));
                            }
                            if p.len() <= 8 && p.get(..4) == Some(&[0, 0, 0, 0]) {
                                continue;
                            }
                        }
                        return Ok(Received::Packet(p.freeze()));
                    }
                }
            }
            let n = timeout_at(deadline, self.stream.read_buf(&mut self.raw))
                .await
                .map_err(|_| SimError::Timeout("recv"))?
                .map_err(io_err)?;
            if n == 0 {
                return Err(SimError::Closed);
            }
            self.absorb()?;
        }
    }

    /// Sends one packet and waits for its echo; when `quick_ack`, the quick ack must come
    /// first.
    ///
    /// # Errors
    /// As [`SimClient::send_packet`] and [`SimClient::recv`];
    /// [`SimError::Unexpected`] when a quick ack is missing or unrequested.
    pub async fn request(&mut self, payload: &[u8], quick_ack: bool) -> Result<Exchange, SimError> {
        let start = Instant::now();
        self.send_packet(payload, quick_ack).await?;
        let mut ack = None;
        if quick_ack {
            match self.recv().await? {
                Received::QuickAck(c) => ack = Some(c),
                Received::Packet(p) => {
                    return Err(SimError::Unexpected(format!(
                        "a {}-byte packet arrived before the quick ack",
                        p.len()
                    )))
                }
            }
        }
        match self.recv().await? {
            Received::Packet(answer) => Ok(Exchange {
                answer,
                quick_ack: ack,
                latency: start.elapsed(),
            }),
            Received::QuickAck(c) => Err(SimError::Unexpected(format!(
                "quick ack {c:#010x} where the answer was expected"
            ))),
        }
    }

    /// Waits at most `wait` for the proxy's reaction, on the raw socket (bytes already
    /// buffered count as data).
    pub async fn observe(&mut self, wait: Duration) -> Reaction {
        if !self.raw.is_empty() || !self.plain.is_empty() {
            let mut b = self.raw.split();
            b.unsplit(self.plain.split());
            return Reaction::Data(b.freeze());
        }
        observe(&mut self.stream, wait).await
    }

    /// Waits at most `wait` for the proxy to close the connection, discarding data.
    /// Returns whether it closed.
    pub async fn closed_within(&mut self, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        loop {
            match timeout_at(deadline, self.stream.read_buf(&mut self.raw)).await {
                Err(_) => return false,
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => self.raw.clear(),
            }
        }
    }

    /// Half-closes our side and drops the connection.
    pub async fn close(mut self) {
        let _ = self.stream.shutdown().await;
    }
}

// ---------------------------------------------------------------------------------------
// Packet shapes (pure, seeded).

/// A plausible MTProto msg_id: a unix time between 2023 and 2026 in the high half, a
/// multiple of 4 below.
fn msg_id(rng: &mut impl Rng) -> u64 {
    let secs = 1_700_000_000u64 + rng.gen_range(0..100_000_000u64);
    (secs << 32) | u64::from(rng.gen::<u32>() & !3)
}

/// An unencrypted `req_pq_multi` (40 bytes): `auth_key_id` 0, msg_id, inner length 20,
/// `0xbe7e8ef1` and a 16-byte nonce.
pub fn unencrypted_req_pq_multi(rng: &mut impl Rng) -> Vec<u8> {
    let mut p = Vec::with_capacity(40);
    p.put_u64_le(0);
    p.put_u64_le(msg_id(rng));
    p.put_i32_le(20);
    p.put_u32_le(REQ_PQ_MULTI);
    let mut nonce = [0u8; 16];
    rng.fill_bytes(&mut nonce);
    p.put_slice(&nonce);
    p
}

/// An unencrypted `req_DH_params` (340 bytes, inner length 320): nonce, server_nonce, p and
/// q as 4-byte TL strings, a fingerprint and 256 bytes of encrypted_data.
pub fn unencrypted_req_dh_params(rng: &mut impl Rng) -> Vec<u8> {
    let mut inner = Vec::with_capacity(320);
    inner.put_u32_le(REQ_DH_PARAMS);
    let mut nonces = [0u8; 32];
    rng.fill_bytes(&mut nonces);
    inner.put_slice(&nonces);
    for _ in 0..2 {
        // TL string of 4 bytes: length byte, 4 bytes, 3 zero bytes of padding.
        inner.put_u8(4);
        inner.put_u32(rng.gen::<u32>() | 0x8000_0000);
        inner.put_slice(&[0, 0, 0]);
    }
    inner.put_u64_le(rng.gen());
    // TL string of 256 bytes: 0xfe, 3-byte length, the bytes.
    inner.put_slice(&[0xfe, 0x00, 0x01, 0x00]);
    let mut data = [0u8; 256];
    rng.fill_bytes(&mut data);
    inner.put_slice(&data);
    let mut p = Vec::with_capacity(20 + inner.len());
    p.put_u64_le(0);
    p.put_u64_le(msg_id(rng));
    p.put_i32_le(inner.len() as i32);
    p.put_slice(&inner);
    p
}

/// An encrypted MTProto message of `len` bytes (raised to at least 56 and rounded up to a
/// multiple of 4): a random nonzero `auth_key_id`, then random bytes.
pub fn encrypted_message(rng: &mut impl Rng, len: usize) -> Vec<u8> {
    let len = (len.max(56) + 3) & !3;
    let mut p = vec![0u8; len];
    rng.fill_bytes(&mut p);
    if p[..8] == [0; 8] {
        p[0] = 1;
    }
    p
}

/// A packet the proxy drops without closing: an unencrypted 40-byte packet whose function
/// (`0x12345678`) is not a key-exchange request.
pub fn invalid_unencrypted_packet(rng: &mut impl Rng) -> Vec<u8> {
    let mut p = unencrypted_req_pq_multi(rng);
    p[20..24].copy_from_slice(&0x1234_5678u32.to_le_bytes());
    p
}

// ---------------------------------------------------------------------------------------
// Bad clients.

/// What a bad client observed within its bounded wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reaction {
    /// Nothing arrived and the connection was still open at the deadline.
    Silence,
    /// EOF or reset.
    Closed,
    /// These bytes arrived first (raw wire bytes).
    Data(Bytes),
}

/// Waits at most `wait` for the first bytes, EOF or reset on `stream`.
pub async fn observe(stream: &mut TcpStream, wait: Duration) -> Reaction {
    let mut buf = vec![0u8; 16 * 1024];
    match tokio::time::timeout(wait, stream.read(&mut buf)).await {
        Err(_) => Reaction::Silence,
        Ok(Ok(0)) | Ok(Err(_)) => Reaction::Closed,
        Ok(Ok(n)) => Reaction::Data(Bytes::copy_from_slice(&buf[..n])),
    }
}

/// Connects (bounded by `wait`), sends `bytes`, observes for `wait`. A write that fails
/// because the proxy already closed counts as [`Reaction::Closed`].
async fn send_and_observe(
    addr: SocketAddr,
    bytes: &[u8],
    wait: Duration,
) -> Result<Reaction, SimError> {
    let mut s = tokio::time::timeout(wait, TcpStream::connect(addr))
        .await
        .map_err(|_| SimError::Timeout("connect"))??;
    if let Err(e) = s.write_all(bytes).await {
        return if is_close(&e) {
            Ok(Reaction::Closed)
        } else {
            Err(e.into())
        };
    }
    Ok(observe(&mut s, wait).await)
}

/// A client with a secret the proxy does not know (derived from `seed`): a valid-looking
/// header plus one framed packet. A C proxy with `-S` stays silent and keeps the connection
/// open ("global skip mode", §4.2); with `-D` it splices.
///
/// # Errors
/// Connect failure.
pub async fn wrong_secret(
    addr: SocketAddr,
    transport: Transport,
    seed: u64,
    wait: Duration,
) -> Result<Reaction, SimError> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut secret = [0u8; 16];
    rng.fill_bytes(&mut secret);
    let mut hs = ClientHandshake::generate(&mut rng, Some(&secret), transport, 2);
    let payload = encrypted_message(&mut rng, 64);
    let mut bytes = BytesMut::from(&hs.header[..]);
    let mut framed = BytesMut::new();
    encode_client_frame(transport, &payload, false, &[], &mut framed)?;
    hs.encrypt.apply(&mut framed);
    bytes.unsplit(framed);
    send_and_observe(addr, &bytes, wait).await
}

/// `len` (at least 64) seeded random bytes.
///
/// # Errors
/// Connect failure.
pub async fn garbage(
    addr: SocketAddr,
    len: usize,
    seed: u64,
    wait: Duration,
) -> Result<Reaction, SimError> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut bytes = vec![0u8; len.max(64)];
    rng.fill_bytes(&mut bytes);
    send_and_observe(addr, &bytes, wait).await
}

/// `GET / HTTP/1.1` with a Host header: fewer than 64 bytes, so a proxy without `-D` keeps
/// waiting for a header (silence); the HTTP transport is compiled out of C (§4).
///
/// # Errors
/// Connect failure.
pub async fn http_get(addr: SocketAddr, wait: Duration) -> Result<Reaction, SimError> {
    send_and_observe(addr, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", wait).await
}

/// A valid header (per `cfg`), then a frame header announcing `MAX_CLIENT_FRAME + 4`
/// (1 044 484) bytes and no payload. The proxy closes the connection (§4.3).
///
/// # Errors
/// As [`SimClient::connect`].
pub async fn oversize_frame(
    addr: SocketAddr,
    cfg: ClientConfig,
    wait: Duration,
) -> Result<Reaction, SimError> {
    let mut c = SimClient::connect(addr, cfg).await?;
    let len = MAX_CLIENT_FRAME + 4;
    // Built by hand: the core's encoder refuses frames above the limit (§4.3 layouts).
    let mut framed = Vec::with_capacity(4);
    match c.transport {
        Transport::Abridged => {
            let words = (len / 4) as u32;
            framed.put_u32_le((words << 8) | 0x7f);
        }
        Transport::Intermediate | Transport::PaddedIntermediate => framed.put_u32_le(len as u32),
    }
    // The first bytes of the announced body follow, as from a real client: the C build
    // judges a frame's length only once 12 bytes (intermediate) or 9 (abridged) are
    // buffered, so a bare length header would be held in silence there.
    framed.extend_from_slice(&[0u8; 16]);
    match c.send_plain(&framed).await {
        Err(SimError::Closed) => return Ok(Reaction::Closed),
        r => r?,
    }
    Ok(c.observe(wait).await)
}

/// A valid padded-intermediate header, then a frame of length `len` (clamped to 1..=3)
/// with `len` bytes of payload, followed in the same write by a complete valid frame (a
/// 56-byte encrypted message).
///
/// The valid frame matters twice: the C build parses a frame only once 12 bytes are
/// buffered (`min_len + 8`), so a bare 5..7-byte short frame is just held there and never
/// reaches the crashing assert; and a proxy that skipped the short frame instead of closing
/// would answer the valid one ([`Reaction::Data`]) rather than close.
///
/// **Send this to a C build only when testing its crash**: the C proxy asserts and the
/// whole process aborts (§4.3, §11.15). The port must close just this connection.
/// `cfg.transport` is forced to padded intermediate.
///
/// # Errors
/// As [`SimClient::connect`].
pub async fn short_padded_frame(
    addr: SocketAddr,
    mut cfg: ClientConfig,
    len: u8,
    wait: Duration,
) -> Result<Reaction, SimError> {
    cfg.transport = Transport::PaddedIntermediate;
    let len = len.clamp(1, 3);
    let mut c = SimClient::connect(addr, cfg).await?;
    // Built by hand: the core's encoder never produces an empty padded payload.
    let mut framed = Vec::with_capacity(7 + 60);
    framed.put_u32_le(u32::from(len));
    framed.extend(std::iter::repeat_n(0x5a, usize::from(len)));
    let valid = encrypted_message(&mut StdRng::seed_from_u64(u64::from(len)), 56);
    framed.put_u32_le(valid.len() as u32);
    framed.extend_from_slice(&valid);
    match c.send_plain(&framed).await {
        Err(SimError::Closed) => return Ok(Reaction::Closed),
        r => r?,
    }
    Ok(c.observe(wait).await)
}

/// Connects, sends [`invalid_unencrypted_packet`] (dropped by the proxy without closing,
/// §4.3), then requests a valid encrypted packet: the returned exchange's answer must be
/// that packet's echo ("invalid dropped without closing"). Returns the valid payload too.
///
/// # Errors
/// As [`SimClient::request`]; in particular a close after the invalid packet.
pub async fn invalid_packet_then_valid(
    addr: SocketAddr,
    cfg: ClientConfig,
) -> Result<(Vec<u8>, Exchange), SimError> {
    let mut rng = StdRng::seed_from_u64(cfg.seed ^ 0x001b_a11d);
    let mut c = SimClient::connect(addr, cfg).await?;
    c.send_packet(&invalid_unencrypted_packet(&mut rng), false)
        .await?;
    let valid = encrypted_message(&mut rng, 72);
    let ex = c.request(&valid, false).await?;
    Ok((valid, ex))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mtproxy::protocol::packet::{classify, DropReason, PacketVerdict};

    #[test]
    fn shapes_pass_the_core_rules() {
        for seed in 0..50 {
            let mut rng = StdRng::seed_from_u64(seed);
            let pq = unencrypted_req_pq_multi(&mut rng);
            assert_eq!(pq.len(), 40);
            assert_eq!(
                classify(&pq),
                PacketVerdict::Forward {
                    unencrypted: true,
                    auth_key_id: 0
                }
            );
            let dh = unencrypted_req_dh_params(&mut rng);
            assert_eq!(dh.len(), 340);
            assert!(matches!(
                classify(&dh),
                PacketVerdict::Forward {
                    unencrypted: true,
                    ..
                }
            ));
            for len in [0, 55, 56, 57, 100, 4096] {
                let m = encrypted_message(&mut rng, len);
                assert!(m.len() >= 56 && m.len() % 4 == 0 && m.len() >= len);
                assert!(matches!(
                    classify(&m),
                    PacketVerdict::Forward {
                        unencrypted: false,
                        auth_key_id
                    } if auth_key_id != 0
                ));
            }
            assert!(matches!(
                classify(&invalid_unencrypted_packet(&mut rng)),
                PacketVerdict::Drop(DropReason::UnknownUnencryptedOp {
                    function: 0x1234_5678
                })
            ));
        }
    }

    #[test]
    fn shapes_are_deterministic_per_seed() {
        let a = unencrypted_req_dh_params(&mut StdRng::seed_from_u64(9));
        let b = unencrypted_req_dh_params(&mut StdRng::seed_from_u64(9));
        let c = unencrypted_req_dh_params(&mut StdRng::seed_from_u64(10));
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn primed_record_decoder_reads_plain_records() {
        let mut d = server_record_decoder();
        let mut wire = BytesMut::new();
        encode_app_data_records(&[1, 2, 3, 4], &mut wire);
        encode_app_data_records(&[5; 2000], &mut wire);
        let out = d.decode(&mut wire).unwrap().unwrap();
        assert_eq!(out.len(), 2004);
        assert_eq!(&out[..5], &[1, 2, 3, 4, 5]);
        let mut alert = BytesMut::from(&[0x15u8, 3, 3, 0, 2, 2, 40][..]);
        assert!(d.decode(&mut alert).is_err());
    }

    #[test]
    fn config_builder() {
        let c = ClientConfig::new(Transport::Abridged)
            .secret([1; 16])
            .dc(-2)
            .seed(5)
            .fake_tls("example.com", HelloShape::Chrome);
        assert_eq!(c.transport, Transport::PaddedIntermediate);
        assert_eq!(c.dc, -2);
        assert!(matches!(c.mode, Mode::FakeTls { .. }));
    }
}
