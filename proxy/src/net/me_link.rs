//! One middle-end link's life (§5.1, §5.3): connect and handshake within 3 s, serve,
//! reconnect with C's backoff — `min_connections` such slots per target of the pool
//! ([`super::me_pool`]).
//!
//! A ready link runs as two tasks: a reader (socket → [`RpcLink::handle_input`] → events
//! routed to clients by `conn_id`) and a writer (client commands →
//! [`RpcLink::send_proxy_req`] → socket). Under load a writer encrypts together with the
//! other links of its target ([`RpcLink::seal_pending`]): AES-CBC encryption is
//! sequential within one link, so interleaving the links' chains is what lets one core
//! encrypt at more than AES latency speed.
//!
//! When a link is lost, every client pinned to it is closed (as C does).
//!
//! A middle end cannot make a link hold unbounded memory or work (C has no such bounds):
//! - the RPC_PONG answers to its pings that wait unsent (it pings and does not read) are
//!   bounded by [`PONG_BACKLOG`] bytes;
//! - the RPC_CLOSE_CONN commands it makes us queue (answers for unknown conn ids) by
//!   [`crate::net::me_pool::CTL_QUEUE_LIMIT`], and `Flush` wake-ups are coalesced;
//! - junk (malformed messages, unknown or misdirected ops) by [`JUNK_LIMIT`] in a burst.
//!
//! Nor can it make clients' packets pile up: what waits for a link's writer is bounded by
//! [`crate::net::me_pool::LINK_QUEUE_BYTES`] (clients beyond wait, unread).
//!
//! Before a bound is reached, the reader waits for the writer: once the unsent PONGs pass
//! [`PONG_GATE`] or the queued RPC_CLOSE_CONN [`CTL_GATE`], it stops reading the middle end
//! until the writer has brought them down to half of that. So a middle end that reads
//! is never cut because our writer fell behind (a busy machine: the reader's thread runs,
//! the writer's does not), and one that does not read is found out by the writer making no
//! progress for [`WRITER_STALL`], and closed. The bounds stay as a backstop (RPC_CLOSE_CONN
//! also comes from clients that close).
//!
//! Past a bound the link is closed as on any link loss (clients closed, reconnect with
//! backoff), with a log line and a counter per cause.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::multi_conf::MultiConf;
use crate::net::inbox::{Budget, ClientHandle, Refused, ToClient};
use crate::net::me_pool::{pending_siblings, seal_target, MeCmd, MeConn, TargetLinks};
use crate::net::shared::{nat_ip, Shared};
use crate::net::sock::read_into;
use crate::protocol::rpc::{LinkEvent, LinkParams, ProxyReqHeader, RpcLink, RpcMessage};
use crate::protocol::session::CloseReason;
use crate::stats::{dec, inc};

/// C's `CONNECT_TIMEOUT`: TCP connect plus RPC handshake.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Commands queued towards one link before senders wait (backpressure).
const COMMAND_QUEUE: usize = 256;
/// Commands a link writer takes from its queues per write at most.
const WRITE_BATCH: usize = 64;
/// Payload bytes a link writer takes per write at most: one write stays in the cache
/// between encryption and the copy into the socket.
const FLUSH_BYTES: usize = 64 * 1024;
/// Bytes a link reader asks the socket for at once (one link carries many clients).
const ME_READ_CHUNK: usize = 256 * 1024;
/// From this many queued bytes on, a writer encrypts together with its sibling links.
const SEAL_TOGETHER: usize = 8 * 1024;
/// How many scheduler rounds a writer with [`SEAL_TOGETHER`] bytes waits for its siblings
/// to queue theirs (each round is one pass over the other ready tasks).
const SEAL_WAIT_ROUNDS: usize = 3;
/// Above ¾ of the global budget, clients with at least this much queued are closed.
const LRU_MIN_QUEUE: usize = 256 * 1024;
/// Bytes of RPC_PONG frames a link may hold queued and unwritten: beyond, its middle end
/// pings without reading our answers, and the link is closed. 1 MiB is ~44 000 PONGs
/// behind, on top of what the socket buffers already hold: a middle end that reads never
/// gets there (the writer writes PONGs as they come); the bound only stops a peer from
/// growing our memory. The check runs after each read, so the count may pass the bound
/// by one read's worth (`ME_READ_CHUNK`) before the link closes.
pub const PONG_BACKLOG: usize = 1 << 20;
/// Unsent PONG bytes from which the reader waits for the writer (a quarter of
/// [`PONG_BACKLOG`]: two reads' worth of pings on top stay under it).
pub const PONG_GATE: usize = PONG_BACKLOG / 4;
/// Queued RPC_CLOSE_CONN from which the reader waits for the writer.
pub const CTL_GATE: usize = crate::net::me_pool::CTL_QUEUE_LIMIT / 2;
/// How long the writer may make no progress, while the reader waits for it, before the
/// middle end is taken for one that does not read and its link is closed.
pub const WRITER_STALL: Duration = Duration::from_secs(5);
/// The bytes one RPC_PONG frame queues: length, seq, op, `ping_id`, CRC.
const PONG_FRAME_LEN: usize = 4 + 4 + 4 + 8 + 4;
/// Junk messages (malformed, unknown or misdirected ops) in a burst that close a link: a
/// burst is junk with no valid message between, within [`JUNK_WINDOW`] of its first.
pub const JUNK_LIMIT: u32 = 1024;
/// How long a junk burst may take to count towards [`JUNK_LIMIT`]: a trickle of unknown
/// ops (a newer middle end's message we do not know) never closes a link.
pub const JUNK_WINDOW: Duration = Duration::from_secs(10);

/// Applies `conf` to the pool (start-up and SIGHUP): new targets get `min_connections`
/// link slots, removed ones are closed with their clients.
pub fn apply(shared: &Arc<Shared>, conf: Arc<MultiConf>, shutdown: &CancellationToken) {
    let per_target = usize::try_from(conf.min_connections.max(1)).unwrap_or(1);
    let declared = conf.total_declared_targets();
    let change = shared.pool.update(conf, shutdown);
    for t in change.added {
        for _ in 0..per_target {
            shared.tasks.spawn(link_slot(shared.clone(), t.clone()));
        }
    }
    let c = &shared.counters;
    c.total_declared_targets.store(declared as i64, Relaxed);
    c.total_allocated_targets
        .store(change.targets as i64, Relaxed);
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

/// C's reconnect delay: `1.0 + 0.1·rand` s, then ×1.5 (+0..0.2) while the target stays
/// down, capped at 20 s.
fn next_backoff(prev: Option<Duration>) -> Duration {
    let mut rng = rand::thread_rng();
    match prev {
        None => Duration::from_secs_f64(1.0 + 0.1 * rng.gen::<f64>()),
        Some(d) => {
            Duration::from_secs_f64((d.as_secs_f64() * 1.5 + 0.2 * rng.gen::<f64>()).min(20.0))
        }
    }
}

/// One connection slot of a target: connect, serve, reconnect — until the target is
/// removed or the proxy stops.
async fn link_slot(shared: Arc<Shared>, target: Arc<TargetLinks>) {
    let mut backoff = None;
    loop {
        if target.cancel.is_cancelled() {
            return;
        }
        inc(&shared.counters.outbound_connections_created);
        inc(&shared.counters.total_allocated_outbound_connections);
        inc(&shared.counters.total_connections);
        let attempt = tokio::select! {
            () = target.cancel.cancelled() => None,
            r = tokio::time::timeout(CONNECT_TIMEOUT, connect(&shared, target.addr())) => Some(r),
        };
        match attempt {
            None => {}
            Some(Ok(Ok((stream, link)))) => {
                backoff = None;
                serve_link(&shared, &target, stream, link).await;
            }
            Some(Ok(Err(e))) => {
                inc(&shared.counters.total_connect_failures);
                tracing::debug!(target_addr = %target.addr(), error = %e, "middle-end connection failed");
            }
            Some(Err(_)) => {
                inc(&shared.counters.total_connect_failures);
                tracing::debug!(target_addr = %target.addr(), "middle-end connect+handshake timed out (3 s)");
            }
        }
        dec(&shared.counters.total_allocated_outbound_connections);
        dec(&shared.counters.total_connections);
        let delay = next_backoff(backoff);
        backoff = Some(delay);
        tokio::select! {
            () = target.cancel.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
    }
}

async fn connect(shared: &Shared, addr: SocketAddr) -> std::io::Result<(TcpStream, RpcLink)> {
    let settings = &shared.settings;
    let sock = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    if let Some(ip) = settings.bind_address {
        if ip.is_ipv4() == addr.is_ipv4() {
            sock.bind(SocketAddr::new(ip, 0))?;
        }
    }
    let mut stream = sock.connect(addr).await?;
    stream.set_nodelay(true)?;
    let sref = socket2::SockRef::from(&stream);
    let ka = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(40))
        .with_interval(Duration::from_secs(40))
        .with_retries(5);
    let _ = sref.set_tcp_keepalive(&ka);
    let local = stream.local_addr()?;
    let local = SocketAddr::new(nat_ip(&settings.nat, local.ip()), local.port());
    let peer = SocketAddr::new(nat_ip(&settings.nat, addr.ip()), addr.port());
    let mut pid = settings.process_id;
    if let IpAddr::V4(v4) = local.ip() {
        if !v4.is_loopback() {
            pid.ip = u32::from(v4);
        }
    }
    let params = LinkParams::new(settings.proxy_secret.clone(), local, peer, pid);
    let mut link = RpcLink::client(params, crate::clock::unix_now(), &mut rand::thread_rng());
    let mut buf = BytesMut::with_capacity(4096);
    let mut out = BytesMut::new();
    // Round trips: each message of ours written (RPC_NONCE, then RPC_HANDSHAKE) → the first
    // bytes of the answer read.
    let mut nonce_sent: Option<std::time::Instant> = None;
    loop {
        link.poll_transmit(&mut out);
        if !out.is_empty() {
            stream.write_all(&out).await?;
            out.clear();
            nonce_sent.get_or_insert_with(std::time::Instant::now);
        }
        if link.is_ready() {
            return Ok((stream, link));
        }
        let n = stream.read_buf(&mut buf).await?;
        if let Some(sent) = nonce_sent.take() {
            if n > 0 {
                shared.counters.me_rtt.observe(sent.elapsed());
            }
        }
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "middle end closed during handshake",
            ));
        }
        if let Err(e) = link.handle_input(&mut buf, crate::clock::unix_now()) {
            link.poll_transmit(&mut out);
            let _ = stream.write_all(&out).await;
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("handshake: {e}"),
            ));
        }
    }
}

/// Serves one ready link until it fails or the target is removed.
async fn serve_link(
    shared: &Arc<Shared>,
    target: &Arc<TargetLinks>,
    stream: TcpStream,
    link: RpcLink,
) {
    let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
    let (ctl, ctl_rx) = mpsc::unbounded_channel();
    let conn = Arc::new(MeConn::new(target.addr(), tx, ctl));
    let c = &shared.counters;
    inc(&c.total_encrypted_connections);
    inc(&c.ready_outbound_connections);
    let link = Arc::new(Mutex::new(link));
    if target.add_ready(conn.clone(), link.clone()) {
        inc(&c.total_ready_targets);
    }
    tracing::info!(target_addr = %target.addr(), "connected to RPC middle-end");
    let (rd, wr) = stream.into_split();
    let stop = target.cancel.child_token();
    let writer = shared.tasks.spawn(write_loop(
        shared.clone(),
        target.clone(),
        conn.clone(),
        link.clone(),
        wr,
        (rx, ctl_rx),
        stop.clone(),
    ));
    let reason = read_loop(shared, &conn, &link, rd, &stop).await;
    let cause = match reason {
        Close::CtlBacklog => Some(&c.me_links_closed_ctl_backlog),
        Close::PongBacklog => Some(&c.me_links_closed_pong_backlog),
        Close::Junk => Some(&c.me_links_closed_junk),
        _ => None,
    };
    if let Some(counter) = cause {
        inc(counter);
        tracing::warn!(target_addr = %target.addr(), reason = reason.text(), "closing the middle-end link");
    }
    let reason = reason.text();
    stop.cancel();
    let _ = writer.await;
    if target.remove_ready(&conn, &link) {
        dec(&c.total_ready_targets);
    }
    let clients = conn.shut();
    dec(&c.total_encrypted_connections);
    dec(&c.ready_outbound_connections);
    tracing::info!(target_addr = %target.addr(), reason, clients = clients.len(), "disconnected from RPC middle-end");
    for h in clients {
        let _ = h.push(ToClient::Close(CloseReason::ClosedByMe));
    }
}

/// Why a link's reader stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Close {
    /// The target was removed, the proxy stops, or the writer failed.
    Stopped,
    /// The middle end closed the connection.
    Eof,
    /// A socket error.
    ReadError,
    /// The link failed (framing, CRC, seq).
    Protocol,
    /// [`crate::net::me_pool::CTL_QUEUE_LIMIT`] control messages queued and unwritten, or
    /// [`CTL_GATE`] and no write for [`WRITER_STALL`].
    CtlBacklog,
    /// More than [`PONG_BACKLOG`] bytes of RPC_PONG queued and unwritten, or
    /// [`PONG_GATE`] and no write for [`WRITER_STALL`].
    PongBacklog,
    /// [`JUNK_LIMIT`] junk messages in a burst.
    Junk,
}

impl Close {
    fn text(self) -> &'static str {
        match self {
            Close::Stopped => "closed",
            Close::Eof => "middle end closed the connection",
            Close::ReadError => "read error",
            Close::Protocol => "protocol error",
            Close::CtlBacklog => "the middle end does not read: control queue full",
            Close::PongBacklog => "the middle end pings and does not read: PONG backlog",
            Close::Junk => "the middle end floods malformed or unknown messages",
        }
    }
}

/// Counts junk messages in a burst ([`JUNK_LIMIT`] within [`JUNK_WINDOW`], no valid
/// message between).
#[derive(Debug, Default)]
struct JunkBurst {
    count: u32,
    since: Option<Instant>,
}

impl JunkBurst {
    /// A valid message ends the burst.
    fn valid(&mut self) {
        self.count = 0;
        self.since = None;
    }

    /// One more junk message; returns whether the burst reached [`JUNK_LIMIT`].
    fn junk(&mut self, now: Instant) -> bool {
        match self.since {
            Some(t) if now.duration_since(t) <= JUNK_WINDOW => self.count += 1,
            _ => {
                self.since = Some(now);
                self.count = 1;
            }
        }
        self.count >= JUNK_LIMIT
    }
}

async fn read_loop(
    shared: &Arc<Shared>,
    conn: &Arc<MeConn>,
    link: &Mutex<RpcLink>,
    rd: tokio::net::tcp::OwnedReadHalf,
    stop: &CancellationToken,
) -> Close {
    let mut buf = BytesMut::with_capacity(ME_READ_CHUNK);
    let c = &shared.counters;
    let mut junk = JunkBurst::default();
    loop {
        if buf.capacity() - buf.len() < ME_READ_CHUNK / 4 {
            buf.reserve(ME_READ_CHUNK);
        }
        tokio::select! {
            () = stop.cancelled() => return Close::Stopped,
            () = conn.broken() => return Close::CtlBacklog,
            r = rd.readable() => if r.is_err() { return Close::ReadError },
        }
        match read_into(rd.as_ref(), &mut buf) {
            Ok(0) => return Close::Eof,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => return Close::ReadError,
        }
        let mut events = Vec::new();
        let mut pings = 0;
        {
            let mut l = lock(link);
            if l.handle_input(&mut buf, crate::clock::unix_now()).is_err() {
                return Close::Protocol;
            }
            while let Some(ev) = l.poll_event() {
                if matches!(ev, LinkEvent::Message(RpcMessage::Ping { .. })) {
                    pings += 1;
                }
                events.push(ev);
            }
            // Counted under the link's lock, so the writer's count of what it takes with
            // the link's bytes covers exactly the PONGs in them.
            if pings > 0 && conn.queued_pongs(pings * PONG_FRAME_LEN) > PONG_BACKLOG {
                return Close::PongBacklog;
            }
            if l.has_transmit() {
                // A PONG was queued by the link: wake the writer.
                conn.wake_writer();
            }
        }
        let now = Instant::now();
        for ev in events {
            let valid = !matches!(
                ev,
                LinkEvent::Malformed { .. }
                    | LinkEvent::Message(
                        RpcMessage::Unknown { .. }
                            | RpcMessage::Nonce(_)
                            | RpcMessage::Handshake(_)
                            | RpcMessage::HandshakeError(_)
                            | RpcMessage::ProxyReq(_)
                            | RpcMessage::CloseConn { .. }
                    )
            );
            if valid {
                junk.valid();
            } else if junk.junk(now) {
                return Close::Junk;
            }
            match ev {
                LinkEvent::Message(RpcMessage::ProxyAns { conn_id, data, .. }) => {
                    match conn.client(conn_id) {
                        Some(h) => {
                            if deliver(shared, &h, data) {
                                inc(&c.tot_forwarded_responses);
                            } else {
                                conn.unregister(conn_id);
                            }
                        }
                        None => {
                            inc(&c.dropped_responses);
                            conn.send_close_conn(conn_id);
                            if conn.ctl_queued() >= CTL_GATE {
                                if let Some(close) = wait_for_writer(conn, stop).await {
                                    return close;
                                }
                            }
                        }
                    }
                }
                LinkEvent::Message(RpcMessage::SimpleAck { conn_id, confirm }) => {
                    match conn.client(conn_id) {
                        Some(h) if h.push(ToClient::QuickAck(confirm)) => {
                            inc(&c.tot_forwarded_simple_acks);
                        }
                        _ => {
                            inc(&c.dropped_simple_acks);
                            conn.send_close_conn(conn_id);
                        }
                    }
                }
                LinkEvent::Message(RpcMessage::CloseExt { conn_id }) => {
                    if let Some(h) = conn.take_client(conn_id) {
                        let _ = h.push(ToClient::Close(CloseReason::ClosedByMe));
                    }
                }
                LinkEvent::Message(RpcMessage::Ping { .. } | RpcMessage::Pong { .. }) => {}
                // Junk, counted above.
                LinkEvent::Message(other) => {
                    tracing::debug!(
                        op = format_args!("{:#010x}", other.op()),
                        "unknown RPC operation"
                    );
                }
                LinkEvent::Malformed { op, len, error } => {
                    tracing::debug!(op = format_args!("{op:#010x}"), len, %error, "malformed RPC message ignored");
                }
                LinkEvent::HandshakeDone { .. } => {}
            }
        }
        if conn.is_broken() {
            return Close::CtlBacklog;
        }
        if conn.unsent_pongs() >= PONG_GATE || conn.ctl_queued() >= CTL_GATE {
            if let Some(close) = wait_for_writer(conn, stop).await {
                return close;
            }
        }
        if pings > 0 || conn.ctl_queued() > 0 {
            // We queued work for the writer: let it run before reading on. Woken from this
            // task, it waits in this worker's next-task slot, which other workers do not
            // take, so a reader with input always ready would otherwise run up the bounds
            // against a middle end that reads.
            tokio::task::yield_now().await;
        }
    }
}

/// Waits (not reading) until the writer has brought the unsent PONGs and the queued
/// RPC_CLOSE_CONN down to half their gates. `Some` closes the link: the writer made no
/// progress for [`WRITER_STALL`] (the middle end does not read), or the link stops.
async fn wait_for_writer(conn: &MeConn, stop: &CancellationToken) -> Option<Close> {
    let caught_up = || conn.unsent_pongs() <= PONG_GATE / 2 && conn.ctl_queued() <= CTL_GATE / 2;
    let mut deadline = tokio::time::Instant::now() + WRITER_STALL;
    loop {
        let progress = conn.writer_progress();
        tokio::pin!(progress);
        progress.as_mut().enable();
        if caught_up() {
            return None;
        }
        tokio::select! {
            () = stop.cancelled() => return Some(Close::Stopped),
            () = conn.broken() => return Some(Close::CtlBacklog),
            () = progress => deadline = tokio::time::Instant::now() + WRITER_STALL,
            () = tokio::time::sleep_until(deadline) => {
                return Some(if conn.unsent_pongs() > PONG_GATE / 2 {
                    Close::PongBacklog
                } else {
                    Close::CtlBacklog
                });
            }
        }
    }
}

async fn write_loop(
    shared: Arc<Shared>,
    target: Arc<TargetLinks>,
    conn: Arc<MeConn>,
    link: Arc<Mutex<RpcLink>>,
    mut wr: tokio::net::tcp::OwnedWriteHalf,
    (mut rx, mut ctl_rx): (mpsc::Receiver<MeCmd>, mpsc::UnboundedReceiver<MeCmd>),
    stop: CancellationToken,
) {
    let tag = shared.settings.proxy_tag;
    let mut out = BytesMut::with_capacity(FLUSH_BYTES);
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    loop {
        batch.clear();
        tokio::select! {
            biased;
            () = stop.cancelled() => return,
            Some(cmd) = ctl_rx.recv() => batch.push(cmd),
            Some(cmd) = rx.recv() => batch.push(cmd),
            else => return,
        }
        let mut bytes = batch.first().map_or(0, MeCmd::payload_len);
        while batch.len() < WRITE_BATCH && bytes < FLUSH_BYTES {
            match ctl_rx.try_recv().or_else(|_| rx.try_recv()) {
                Ok(cmd) => {
                    bytes += cmd.payload_len();
                    batch.push(cmd);
                }
                Err(_) => break,
            }
        }
        let pending = {
            let mut l = lock(&link);
            for cmd in batch.drain(..) {
                let r = match cmd {
                    MeCmd::ProxyReq {
                        conn_id,
                        flags,
                        client_addr,
                        proxy_addr,
                        payload,
                    } => {
                        let h = ProxyReqHeader::new(flags, conn_id, client_addr, proxy_addr, tag);
                        let r = l.send_proxy_req(&h, &payload);
                        conn.took_payload(payload.len());
                        r
                    }
                    MeCmd::Flush => {
                        conn.took_flush();
                        Ok(())
                    }
                    MeCmd::CloseConn { conn_id } => {
                        conn.took_close_conn();
                        l.send(&RpcMessage::CloseConn { conn_id })
                    }
                };
                if r.is_err() {
                    stop.cancel();
                    return;
                }
            }
            l.pending_len()
        };
        if pending >= SEAL_TOGETHER {
            // Under load: let the sibling links' writers queue their frames too, then
            // encrypt every link's frames in one interleaved pass (CBC encryption is
            // sequential per link; several links run in parallel on one core). Wait a few
            // scheduler rounds at most while a sibling has nothing queued; stop early if
            // a sibling already encrypted ours (then it is not ours to seal).
            let mut st = pending_siblings(&target, &link);
            for _ in 0..SEAL_WAIT_ROUNDS {
                if st.is_none_or(|(_, idle)| idle == 0) {
                    break;
                }
                tokio::task::yield_now().await;
                st = pending_siblings(&target, &link);
            }
            if st.is_some() {
                seal_target(&target, &link);
            }
        }
        let pongs = {
            let mut l = lock(&link);
            l.poll_transmit(&mut out);
            conn.unsent_pongs()
        };
        if !out.is_empty() {
            let r = tokio::select! {
                () = stop.cancelled() => return,
                r = wr.write_all(&out) => r,
            };
            if r.is_err() {
                stop.cancel();
                return;
            }
            out.clear();
            conn.wrote_pongs(pongs);
        }
        conn.wrote();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_junk_burst_closes_at_the_limit_within_the_window_only() {
        let t0 = Instant::now();
        let mut b = JunkBurst::default();
        for _ in 0..JUNK_LIMIT - 1 {
            assert!(!b.junk(t0));
        }
        assert!(b.junk(t0 + JUNK_WINDOW));
        // A valid message ends the burst.
        b.valid();
        for _ in 0..JUNK_LIMIT - 1 {
            assert!(!b.junk(t0));
        }
        b.valid();
        assert!(!b.junk(t0));
        // A trickle: the burst restarts once its first junk is older than the window.
        let mut b = JunkBurst::default();
        let step = JUNK_WINDOW / 100;
        for i in 0..10 * JUNK_LIMIT {
            assert!(!b.junk(t0 + step * i), "closed at junk {i}");
        }
    }
}
