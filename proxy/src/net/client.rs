//! One task per client connection: obfuscated2 header, transport framing, packet rules,
//! forwarding to the pinned middle-end connection, and answers back.
//!
//! Life of a client (§4 of the reference):
//! 1. Read the 64-byte obfuscated2 header within the pre-authentication deadline.
//! 2. Try every secret. No match: the C "global skip mode" — input is read and discarded,
//!    nothing is sent — but only until the pre-authentication deadline, then the socket
//!    is closed (C keeps it forever; see [`crate::net::Settings::pre_auth_timeout`]).
//! 3. Decrypt in place, decode frames, apply the acceptance rules, forward each accepted
//!    packet as RPC_PROXY_REQ on the middle-end connection chosen for the first packet
//!    (the client stays pinned to it).
//! 4. Answers, quick acks and closes arrive from the middle-end task through the client's
//!    [`crate::net::inbox::Inbox`], whose bytes are accounted per client and globally; a client over
//!    the per-connection cap is closed (`connections_failed_flood`), and above ¾ of the
//!    global budget clients with large queues are closed (`connections_failed_lru`).
//! 5. On exit the middle end gets RPC_CLOSE_CONN unless it closed the client itself.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use rand::{Rng, RngCore};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::net::fake_tls::TlsStart;
use crate::net::inbox::{Budget, ClientHandle, Refused, ToClient};
use crate::net::me_pool::{MeCmd, MeConn};
use crate::net::replay_store::CacheKind;
use crate::net::Shared;
use crate::protocol::crypto::AesCtr;
use crate::protocol::fake_tls::{encode_app_data_records, ClientRecordDecoder};
use crate::protocol::obfuscated2::{self, HEADER_LEN};
use crate::protocol::packet::{self, PacketVerdict};
use crate::protocol::rpc::messages::flags as req_flags;
use crate::protocol::transport::{self, ServerDecoder, Transport};
use crate::stats::{dec, inc, secret_label, Traffic};

/// The largest read of a busy client (reads start small and double while they fill the
/// buffer).
const READ_CHUNK: usize = 64 * 1024;
/// The first read: the 64-byte header and, usually, the first packet.
const FIRST_READ: usize = 2048;

/// Reads what the socket holds into `buf` (which must have spare capacity), returning 0
/// at end of stream and `WouldBlock` when nothing is there.
///
/// A read that leaves part of the spare capacity unused drained the socket: its readiness
/// is cleared right away, saving the `EAGAIN` read that would otherwise follow (a newer
/// readiness event is never lost: tokio only clears the event it saw).
pub fn read_into(stream: &TcpStream, buf: &mut BytesMut) -> std::io::Result<usize> {
    let mut n = 0;
    let r = stream.try_io(tokio::io::Interest::READABLE, || {
        let spare = buf.capacity() - buf.len();
        n = stream.try_read_buf(buf)?;
        if n > 0 && n < spare {
            Err(std::io::ErrorKind::WouldBlock.into())
        } else {
            Ok(())
        }
    });
    match r {
        Err(e) if n == 0 || e.kind() != std::io::ErrorKind::WouldBlock => Err(e),
        _ => Ok(n),
    }
}

/// Cancellation of one client task.
///
/// `draining` fires when the proxy stops (SIGTERM): a client still before its header is
/// closed at once, a relaying client as soon as every packet it forwarded has been
/// answered. `hard` fires when the drain grace is over: everything closes.
#[derive(Debug, Clone)]
pub struct ClientCancel {
    /// The proxy is shutting down.
    pub draining: CancellationToken,
    /// The drain grace is over.
    pub hard: CancellationToken,
}

/// Serves one accepted client until it closes, misbehaves or the proxy stops.
pub async fn serve(
    mut stream: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    shared: Arc<Shared>,
    cancel: ClientCancel,
) {
    let c = &shared.counters;
    inc(&c.total_special_connections);
    inc(&c.total_connections);
    inc(&c.total_allocated_inbound_connections);
    inc(&c.inbound_connections_accepted);
    tracing::debug!(%peer, %local, "new client connection");
    let outcome = run(&mut stream, peer, local, &shared, &cancel).await;
    tracing::debug!(%peer, ?outcome, "client connection closed");
    dec(&c.total_special_connections);
    dec(&c.total_connections);
    dec(&c.total_allocated_inbound_connections);
}

/// Why a client connection ended (for logs and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The client closed its side.
    ClientClosed,
    /// The pre-authentication deadline passed (no header, or a header with no secret).
    PreAuthTimeout,
    /// A transport framing error (oversize, short padded frame, overlong encoding…).
    TransportError,
    /// The middle end closed the client (CLOSE_EXT) or its connection was lost.
    ClosedByMe,
    /// The per-connection or global buffer budget was exceeded.
    BufferLimit,
    /// The proxy is shutting down.
    Shutdown,
    /// A socket error.
    IoError,
    /// `-D`: relayed to a fronting domain until either side closed.
    Fronted,
    /// Closed by the fake-TLS or replay rules without a relay (fronting impossible or a
    /// bad client after a valid ClientHello, a replayed obfuscated2 header inside TLS).
    Rejected,
}

async fn run(
    stream: &mut TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    shared: &Arc<Shared>,
    cancel: &ClientCancel,
) -> Outcome {
    if let Some(state) = shared.fake_tls.clone() {
        // Boxed: the front door's state lives only during the handshake, not in every
        // relaying client's task.
        return match Box::pin(crate::net::fake_tls::accept(
            stream,
            peer,
            local,
            shared,
            &state,
            &cancel.draining,
        ))
        .await
        {
            TlsStart::Done(outcome) => outcome,
            TlsStart::Session(s) => {
                let s = *s;
                inc(&shared.counters.total_encrypted_connections);
                let framing = Some(TlsFraming {
                    decoder: s.decoder,
                    raw: s.raw,
                });
                let outcome = relay(
                    stream,
                    peer,
                    local,
                    shared,
                    cancel,
                    s.handshake,
                    framing,
                    s.payload,
                )
                .await;
                dec(&shared.counters.total_encrypted_connections);
                outcome
            }
        };
    }
    let settings = &shared.settings;
    let deadline = tokio::time::Instant::now() + settings.pre_auth_timeout;
    // The header and whatever the client sent with it (usually its first packet) come in
    // one read; the rest goes to the relay.
    let mut first = BytesMut::with_capacity(FIRST_READ);
    let read_header = async {
        while first.len() < HEADER_LEN {
            stream.readable().await?;
            match read_into(stream, &mut first) {
                Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        Ok::<_, std::io::Error>(())
    };
    tokio::select! {
        () = cancel.draining.cancelled() => return Outcome::Shutdown,
        () = tokio::time::sleep_until(deadline) => {
            inc(&shared.counters.handshake_timeouts);
            return Outcome::PreAuthTimeout;
        }
        r = read_header => if r.is_err() { return Outcome::ClientClosed },
    }
    let mut hdr = [0u8; HEADER_LEN];
    hdr.copy_from_slice(&first[..HEADER_LEN]);
    first.advance(HEADER_LEN);
    let Some(hs) = obfuscated2::parse_header(&hdr, &settings.secrets, settings.accept_policy)
    else {
        inc(&shared.counters.bad_secret_connections);
        tracing::debug!(%peer, "obfuscated2 header matches no secret: skip mode");
        return skip_mode(stream, deadline, shared, &cancel.draining).await;
    };
    if !Box::pin(header_is_fresh(shared, &hdr)).await {
        tracing::debug!(%peer, "obfuscated2 header replayed: skip mode");
        return skip_mode(stream, deadline, shared, &cancel.draining).await;
    }
    inc(&shared.counters.total_encrypted_connections);
    let outcome = relay(stream, peer, local, shared, cancel, hs, None, first).await;
    dec(&shared.counters.total_encrypted_connections);
    outcome
}

/// Checks an obfuscated2 header's nonce (`hdr[8..24]`) against the instance-wide header
/// replay cache and records it; `false` for a replay (or when the cache cannot be asked),
/// with the counter bumped.
pub async fn header_is_fresh(shared: &Shared, hdr: &[u8; HEADER_LEN]) -> bool {
    let mut key = [0u8; 16];
    key.copy_from_slice(&hdr[8..24]);
    match shared
        .replay
        .check(CacheKind::Header, key, crate::clock::unix_now())
        .await
    {
        Ok(v) if v.fresh => true,
        Ok(_) => {
            inc(&shared.counters.obfs2_replayed_headers);
            false
        }
        Err(_) => {
            inc(&shared.counters.replay_cache_errors);
            false
        }
    }
}

/// The fake-TLS record layer of a relayed session.
struct TlsFraming {
    decoder: ClientRecordDecoder,
    /// Wire bytes not yet de-recorded.
    raw: BytesMut,
}

/// C's "global skip mode": discard everything, answer nothing, until the deadline.
async fn skip_mode(
    stream: &mut TcpStream,
    deadline: tokio::time::Instant,
    shared: &Shared,
    cancel: &CancellationToken,
) -> Outcome {
    let mut sink = vec![0u8; 4096];
    loop {
        tokio::select! {
            () = cancel.cancelled() => return Outcome::Shutdown,
            () = tokio::time::sleep_until(deadline) => {
                inc(&shared.counters.handshake_timeouts);
                return Outcome::PreAuthTimeout;
            }
            r = stream.read(&mut sink) => match r {
                Ok(0) | Err(_) => return Outcome::ClientClosed,
                Ok(_) => {}
            },
        }
    }
}

/// The client's binding to one middle-end connection.
struct Binding {
    me: Arc<MeConn>,
    conn_id: i64,
}

/// Per-connection state of an identified client.
struct Session<'a> {
    shared: &'a Arc<Shared>,
    peer: SocketAddr,
    proxy_addr: SocketAddr,
    transport: Transport,
    dc: i16,
    encrypt: AesCtr,
    binding: Option<Binding>,
    inbox: ClientHandle,
    /// Framed and encrypted bytes not yet written (no allocation while idle).
    out: BytesMut,
    /// Packets forwarded and not yet answered (a shutdown waits for them, bounded by
    /// the drain grace; an MTProto request may legitimately get no answer).
    in_flight: usize,
    /// Fake TLS: wrap what is written in application-data records.
    tls: bool,
    /// Connections and traffic of this client's secret and of its dc.
    traffic: [Arc<Traffic>; 2],
}

/// What woke a waiting client task.
enum Wake {
    Hard,
    Drain,
    Inbox,
    Readable(std::io::Result<()>),
}

/// Relays an identified client until it ends.
///
/// The task waits on a small future (socket readiness, its inbox, the two cancellation
/// tokens) and does its work without further awaiting unless a socket or a middle-end
/// queue is full. While it waits it holds no read or write buffer and both cipher
/// streams are parked ([`AesCtr::park`]): an idle client costs its task, its inbox and a
/// few hundred bytes of state.
#[allow(clippy::too_many_arguments)]
async fn relay(
    stream: &mut TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    shared: &Arc<Shared>,
    cancel: &ClientCancel,
    hs: obfuscated2::ServerHandshake,
    mut framing: Option<TlsFraming>,
    initial: BytesMut,
) -> Outcome {
    let obfuscated2::ServerHandshake {
        transport,
        dc,
        secret_index,
        mut decrypt,
        encrypt,
    } = hs;
    tracing::debug!(%peer, ?transport, dc, secret = %secret_label(secret_index), "client identified");
    let stream: &TcpStream = stream;
    let (by_secret, by_dc) = shared.counters.labelled.entries(secret_index, dc);
    for t in [&by_secret, &by_dc] {
        inc(&t.connections);
        inc(&t.connections_total);
    }
    let mut s = Session {
        shared,
        peer,
        proxy_addr: SocketAddr::new(
            crate::net::nat_ip(&shared.settings.nat, local.ip()),
            local.port(),
        ),
        transport,
        dc,
        encrypt,
        binding: None,
        inbox: ClientHandle::default(),
        out: BytesMut::new(),
        in_flight: 0,
        tls: framing.is_some(),
        traffic: [by_secret, by_dc],
    };
    let mut decoder = ServerDecoder::new(transport);
    // Bytes that arrived with the header (fake TLS: de-recorded payload, and raw records).
    let mut rbuf = initial;
    let mut chunk = FIRST_READ;
    let mut draining = false;
    decrypt.apply(&mut rbuf);
    let mut pending = !rbuf.is_empty() || framing.as_ref().is_some_and(|f| !f.raw.is_empty());
    let outcome = loop {
        if draining && s.in_flight == 0 {
            break Outcome::Shutdown;
        }
        if pending {
            pending = false;
            if let Some(f) = framing.as_mut() {
                if let Err(o) = derecord(f, &mut decrypt, &mut rbuf, shared) {
                    break o;
                }
            }
            if let Err(o) = s.forward_frames(&mut decoder, &mut rbuf).await {
                break o;
            }
            if s.flush(stream).await.is_err() {
                break Outcome::IoError;
            }
        }
        // Give back what a waiting client does not need.
        release_if_empty(&mut rbuf);
        if let Some(f) = framing.as_mut() {
            release_if_empty(&mut f.raw);
        }
        decrypt.park();
        s.encrypt.park();
        let wake = tokio::select! {
            biased;
            () = cancel.hard.cancelled() => Wake::Hard,
            () = cancel.draining.cancelled(), if !draining => Wake::Drain,
            () = s.inbox.notified() => Wake::Inbox,
            r = stream.readable(), if !draining => Wake::Readable(r),
        };
        match wake {
            Wake::Hard => break Outcome::Shutdown,
            // Stop taking new packets; leave once what was forwarded is answered.
            Wake::Drain => draining = true,
            Wake::Inbox => match s.write_answers(stream).await {
                Ok(None) => {}
                Ok(Some(o)) => break o,
                Err(_) => break Outcome::IoError,
            },
            Wake::Readable(Err(_)) => break Outcome::IoError,
            Wake::Readable(Ok(())) => {
                let buf = match framing.as_mut() {
                    Some(f) => &mut f.raw,
                    None => &mut rbuf,
                };
                let before = buf.len();
                if buf.capacity() - before < chunk / 2 {
                    buf.reserve(chunk);
                }
                let spare = buf.capacity() - before;
                match read_into(stream, buf) {
                    Ok(0) => break Outcome::ClientClosed,
                    // A full read: the client is busy, read more at once next time.
                    Ok(n) if n == spare => chunk = (chunk * 2).min(READ_CHUNK),
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                    Err(_) => break Outcome::IoError,
                }
                match framing.as_mut() {
                    Some(f) => {
                        if let Err(o) = derecord(f, &mut decrypt, &mut rbuf, shared) {
                            break o;
                        }
                    }
                    None => {
                        if let Some(tail) = rbuf.get_mut(before..) {
                            decrypt.apply(tail);
                        }
                    }
                }
                if let Err(o) = s.forward_frames(&mut decoder, &mut rbuf).await {
                    break o;
                }
                if s.flush(stream).await.is_err() {
                    break Outcome::IoError;
                }
            }
        }
    };
    s.inbox.close(&shared.buffered);
    for t in &s.traffic {
        dec(&t.connections);
    }
    if let Some(b) = s.binding.take() {
        if b.me.unregister(b.conn_id) {
            b.me.send_close_conn(b.conn_id);
        }
        dec(&shared.counters.ext_connections);
    }
    outcome
}

/// Drops `buf`'s allocation when it holds no bytes (an idle client keeps none).
fn release_if_empty(buf: &mut BytesMut) {
    if buf.is_empty() && buf.capacity() > 0 {
        *buf = BytesMut::new();
    }
}

/// Writes all of `buf`, waiting for the socket only when it is full.
async fn write_all(stream: &TcpStream, mut buf: &[u8]) -> std::io::Result<()> {
    while !buf.is_empty() {
        match stream.try_write(buf) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = buf.get(n..).unwrap_or_default(),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => stream.writable().await?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Moves the complete records' payload from `f.raw` to `rbuf`, decrypted.
fn derecord(
    f: &mut TlsFraming,
    decrypt: &mut AesCtr,
    rbuf: &mut BytesMut,
    shared: &Shared,
) -> Result<(), Outcome> {
    loop {
        match f.decoder.decode(&mut f.raw) {
            Ok(Some(mut p)) => {
                decrypt.apply(&mut p);
                rbuf.extend_from_slice(&p);
            }
            Ok(None) => return Ok(()),
            Err(e) => {
                inc(&shared.counters.tls_bad_client_records);
                tracing::debug!(error = %e, "bad fake-TLS record, closing");
                return Err(Outcome::TransportError);
            }
        }
    }
}

impl Session<'_> {
    /// Decodes and forwards every complete frame in `rbuf` (already decrypted).
    async fn forward_frames(
        &mut self,
        decoder: &mut ServerDecoder,
        rbuf: &mut BytesMut,
    ) -> Result<(), Outcome> {
        loop {
            let frame = match decoder.decode(rbuf) {
                Ok(Some(f)) => f,
                Ok(None) => return Ok(()),
                Err(e) => {
                    inc(&self.shared.counters.transport_errors);
                    tracing::debug!(peer = %self.peer, error = %e, "client framing error, closing");
                    return Err(Outcome::TransportError);
                }
            };
            match packet::classify(&frame.payload) {
                PacketVerdict::Forward { unencrypted, .. } => {
                    self.forward(frame.payload, unencrypted, frame.quick_ack)
                        .await?;
                }
                PacketVerdict::RpcPing { reply } => {
                    if let Some(pong) = reply {
                        self.frame_out(&pong);
                    }
                }
                PacketVerdict::Drop(reason) => {
                    inc(&self.shared.counters.mtproto_proxy_errors);
                    tracing::debug!(peer = %self.peer, %reason, "cannot forward mtproto packet");
                }
            }
        }
    }

    /// Forwards one accepted packet, binding the client to a middle-end connection first.
    async fn forward(
        &mut self,
        payload: BytesMut,
        unencrypted: bool,
        quick_ack: bool,
    ) -> Result<(), Outcome> {
        let shared = self.shared;
        if self.binding.as_ref().is_some_and(|b| !b.me.is_alive()) {
            return Err(Outcome::ClosedByMe);
        }
        if self.binding.is_none() {
            let Some(me) = shared.pool.pick(self.dc) else {
                inc(&shared.counters.dropped_queries);
                tracing::debug!(peer = %self.peer, dc = self.dc, "no middle-end connection for dc, packet dropped");
                return Ok(());
            };
            let conn_id = shared.conn_ids.next() as i64;
            me.register(conn_id, self.inbox.clone());
            inc(&shared.counters.ext_connections);
            inc(&shared.counters.ext_connections_created);
            self.binding = Some(Binding { me, conn_id });
        }
        let Some(b) = self.binding.as_ref() else {
            return Ok(());
        };
        let mut flags = req_flags::EXT | req_flags::EXTMODE2;
        flags |= if self.transport == Transport::Abridged {
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
        flags ^= shared.settings.planted_flag_xor;
        let len = i64::try_from(payload.len()).unwrap_or(i64::MAX);
        let cmd = MeCmd::ProxyReq {
            conn_id: b.conn_id,
            flags,
            client_addr: self.peer,
            proxy_addr: self.proxy_addr,
            payload,
        };
        if b.me.send(cmd).await.is_err() {
            return Err(Outcome::ClosedByMe);
        }
        inc(&shared.counters.tot_forwarded_queries);
        for t in &self.traffic {
            t.bytes_from_clients.fetch_add(len, Relaxed);
        }
        self.in_flight += 1;
        Ok(())
    }

    /// Frames, encrypts and queues one packet for the client in `self.out`.
    fn frame_out(&mut self, payload: &[u8]) {
        let start = self.out.len();
        let mut pad = [0u8; 3];
        let pad_len = if self.transport == Transport::PaddedIntermediate {
            let n = rand::thread_rng().gen_range(0..=3);
            rand::thread_rng().fill_bytes(&mut pad[..n]);
            n
        } else {
            0
        };
        if transport::encode_server_frame(self.transport, payload, &pad[..pad_len], &mut self.out)
            .is_err()
        {
            tracing::debug!(peer = %self.peer, len = payload.len(), "answer cannot be framed for this transport, dropped");
            return;
        }
        if let Some(tail) = self.out.get_mut(start..) {
            self.encrypt.apply(tail);
        }
    }

    /// Writes every queued message (up to a batch; more wake the task again).
    async fn write_answers(&mut self, stream: &TcpStream) -> std::io::Result<Option<Outcome>> {
        let mut budget = 64usize;
        while budget > 0 && self.out.len() < 256 * 1024 {
            let Some(msg) = self.inbox.pop(&self.shared.buffered) else {
                break;
            };
            budget -= 1;
            match msg {
                ToClient::Answer(data) => {
                    self.in_flight = self.in_flight.saturating_sub(1);
                    let len = i64::try_from(data.len()).unwrap_or(i64::MAX);
                    for t in &self.traffic {
                        t.bytes_to_clients.fetch_add(len, Relaxed);
                    }
                    self.frame_out(&data);
                }
                ToClient::QuickAck(confirm) => {
                    let start = self.out.len();
                    transport::encode_quick_ack(self.transport, confirm, &mut self.out);
                    if let Some(tail) = self.out.get_mut(start..) {
                        self.encrypt.apply(tail);
                    }
                }
                ToClient::Close(outcome) => {
                    self.flush(stream).await?;
                    if outcome == Outcome::ClosedByMe {
                        // The middle end already forgot this client: no CLOSE_CONN back.
                        if let Some(b) = self.binding.take() {
                            b.me.unregister(b.conn_id);
                            dec(&self.shared.counters.ext_connections);
                        }
                    }
                    return Ok(Some(outcome));
                }
            }
        }
        if budget == 0 || self.out.len() >= 256 * 1024 {
            // More may be queued: come back after this write.
            self.inbox.wake();
        }
        self.flush(stream).await?;
        Ok(None)
    }

    /// Writes and clears `self.out` (fake TLS: in application-data records of at most
    /// 1425 payload bytes), then gives its memory back.
    async fn flush(&mut self, stream: &TcpStream) -> std::io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        if self.tls {
            let mut w = BytesMut::with_capacity(self.out.len() + (self.out.len() / 1425 + 1) * 5);
            encode_app_data_records(&self.out, &mut w);
            write_all(stream, &w).await?;
        } else {
            write_all(stream, &self.out).await?;
        }
        self.out = BytesMut::new();
        Ok(())
    }
}

/// Delivers an answer to a client handle, enforcing the buffer budgets.
///
/// Returns `false` when the answer was not queued: the client is gone, or it was closed
/// for exceeding a budget (the counters are bumped here).
pub fn deliver(shared: &Shared, handle: &ClientHandle, data: Bytes) -> bool {
    let budget = Budget {
        global: &shared.buffered,
        per_conn: shared.settings.per_conn_buffer_cap,
        global_high: shared.settings.msg_buffers_size / 4 * 3,
        large_queue: LRU_MIN_QUEUE,
    };
    match handle.offer(data, budget) {
        Ok(()) => true,
        Err(Refused::Gone) => false,
        Err(Refused::ConnCap) => {
            inc(&shared.counters.connections_failed_flood);
            false
        }
        Err(Refused::GlobalBudget) => {
            inc(&shared.counters.connections_failed_lru);
            false
        }
    }
}

/// Above ¾ of the global budget, clients with at least this much queued are closed.
const LRU_MIN_QUEUE: usize = 256 * 1024;
