//! One task per client connection, driving its [`ClientSession`] (the protocol is all
//! there): socket readiness, the replay caches, the `-D` domains' profiles and relay, the
//! binding to one middle-end link, the answers from the client's [`Inbox`] and the
//! counters.
//!
//! Life of a client (§4 of the reference):
//! 1. The session reads the header (or runs the fake-TLS front door) within its deadline;
//!    its replay questions go to the instance-wide caches.
//! 2. Each packet it forwards goes as RPC_PROXY_REQ on the middle-end connection chosen
//!    for the first packet (the client stays pinned to it).
//! 3. Answers, quick acks and closes arrive from the middle-end task through the client's
//!    [`Inbox`], whose bytes are accounted per client and globally (see
//!    [`crate::net::me_link::deliver`]).
//! 4. On exit the middle end gets RPC_CLOSE_CONN unless it closed the client itself.
//!
//! While it waits, the task holds no read or write buffer and both cipher streams are
//! parked ([`ClientSession::park`]): an idle client costs its task, its inbox and a few
//! hundred bytes of state.
//!
//! [`Inbox`]: crate::net::inbox::Inbox

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::net::admission::{Admission, Ticket};
use crate::net::fronting::domains::Domains;
use crate::net::fronting::splice;
use crate::net::inbox::{ClientHandle, ToClient};
use crate::net::me_pool::{MeCmd, MeConn};
use crate::net::replay_store::CacheKind;
use crate::net::shared::{nat_ip, Shared};
use crate::net::sock::read_into;
use crate::protocol::fake_tls::{DomainProfile, HelloReject};
use crate::protocol::session::{
    ClientSession, CloseReason, FrontReason, ReplayKind, SessionEvent, SkipReason,
};
use crate::stats::{dec, inc, secret_label, Traffic};

/// The largest read of a busy client (reads start small and double while they fill the
/// buffer).
const READ_CHUNK: usize = 64 * 1024;
/// The first read: the 64-byte header and, usually, the first packet.
const FIRST_READ: usize = 2048;
/// Messages written per inbox wake-up at most (more wake the task again).
const ANSWER_BATCH: usize = 64;
/// Bytes queued for the client per inbox wake-up at most.
const ANSWER_BYTES: usize = 256 * 1024;
/// Incomplete input from one client that counts as large when the global budget is short
/// (a frame may announce up to 1 MiB).
const LARGE_INPUT: usize = 256 * 1024;
/// A client whose socket stays full this long without taking a byte is closed (C has no
/// such bound: a client that stops reading pins its buffers for ever). A slow reader
/// makes progress and is never cut; only a stalled one is.
pub const WRITE_STALL: Duration = Duration::from_secs(8);

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
    /// The queue of unauthenticated connections the `-C` cap evicts from.
    pub admission: Arc<Admission>,
}

/// Serves one accepted client until it closes, misbehaves or the proxy stops.
pub async fn serve(
    stream: TcpStream,
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
    let span = tracing::debug_span!("client", %peer);
    async {
        tracing::debug!(%local, "new client connection");
        let reason = ClientConn::new(stream, peer, local, &shared, cancel)
            .run()
            .await;
        tracing::debug!(?reason, "client connection closed");
    }
    .instrument(span)
    .await;
    dec(&c.total_special_connections);
    dec(&c.total_connections);
    dec(&c.total_allocated_inbound_connections);
}

/// The client's binding to one middle-end connection.
struct Binding {
    me: Arc<MeConn>,
    conn_id: i64,
}

/// What woke a waiting client task.
enum Wake {
    Hard,
    Drain,
    Evicted,
    Inbox,
    Deadline,
    Readable(std::io::Result<()>),
}

/// One client connection: its socket, its session and its binding.
struct ClientConn<'a> {
    stream: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    shared: &'a Arc<Shared>,
    cancel: ClientCancel,
    session: ClientSession,
    /// Our address as the client reached it (NAT-translated), for PROXY_REQ.
    proxy_addr: SocketAddr,
    dc: i16,
    binding: Option<Binding>,
    inbox: ClientHandle,
    /// Connections and traffic of this client's secret and of its dc, once identified.
    traffic: Option<[Arc<Traffic>; 2]>,
    /// The next read's size.
    chunk: usize,
    draining: bool,
    /// Our place among the unauthenticated connections (`None` once identified).
    ticket: Option<Ticket>,
    /// The session's deadline timer, kept across waits and reset in place (a relaying
    /// client's idle deadline moves with every packet).
    timer: Option<Pin<Box<Sleep>>>,
    /// Incomplete client input this connection holds, counted in the global budget.
    input_held: usize,
}

impl<'a> ClientConn<'a> {
    fn new(
        stream: TcpStream,
        peer: SocketAddr,
        local: SocketAddr,
        shared: &'a Arc<Shared>,
        cancel: ClientCancel,
    ) -> Self {
        let session = ClientSession::new(
            Arc::clone(&shared.settings.session),
            Instant::now().into_std(),
            local.port(),
            &mut rand::thread_rng(),
        );
        Self {
            stream,
            peer,
            local,
            shared,
            session,
            proxy_addr: SocketAddr::new(nat_ip(&shared.settings.nat, local.ip()), local.port()),
            dc: 0,
            binding: None,
            inbox: ClientHandle::default(),
            traffic: None,
            chunk: FIRST_READ,
            ticket: Some(cancel.admission.enter(&cancel.draining)),
            timer: None,
            input_held: 0,
            draining: false,
            cancel,
        }
    }

    async fn run(mut self) -> CloseReason {
        let reason = self.relay().await;
        self.finish();
        reason
    }

    /// Drives the session until it ends.
    async fn relay(&mut self) -> CloseReason {
        let peer = self.peer;
        if let Some(domains) = self.shared.fake_tls.as_ref() {
            if domains.loops.came_from_us(peer) {
                inc(&self.shared.counters.tls_fronting_loops);
                domains.loops.log_once(&format!(
                    "a connection from {peer} is our own relay to the fronting domain"
                ));
                return CloseReason::Rejected;
            }
        }
        loop {
            while let Some(event) = self.session.poll_event() {
                if let Some(reason) = self.act(event).await {
                    // What the session queued last (a pong, an answer) still goes out.
                    let _ = self.flush().await;
                    return reason;
                }
            }
            if let Err(reason) = self.flush().await {
                return reason;
            }
            if let Some(reason) = self.account_input() {
                return reason;
            }
            self.session.park();
            self.arm_timer();
            let reading = self.session.wants_input();
            let wake = tokio::select! {
                biased;
                () = self.cancel.hard.cancelled() => Wake::Hard,
                () = drain_or_evict(&self.cancel.draining, self.ticket.as_ref()), if !self.draining => {
                    if self.cancel.draining.is_cancelled() { Wake::Drain } else { Wake::Evicted }
                }
                () = self.inbox.notified() => Wake::Inbox,
                () = fire(self.timer.as_mut()), if self.timer.is_some() => Wake::Deadline,
                r = self.stream.readable(), if reading => Wake::Readable(r),
            };
            match wake {
                Wake::Hard => return CloseReason::Shutdown,
                Wake::Evicted => {
                    inc(&self.shared.counters.preauth_evictions);
                    return CloseReason::Evicted;
                }
                Wake::Drain => {
                    // Stop taking new packets; leave once what was forwarded is answered.
                    self.draining = true;
                    self.session.begin_shutdown();
                }
                Wake::Inbox => {
                    if let Some(reason) = self.take_answers().await {
                        return reason;
                    }
                }
                Wake::Deadline => self.session.handle_timeout(Instant::now().into_std()),
                Wake::Readable(Err(_)) => return CloseReason::IoError,
                Wake::Readable(Ok(())) => {
                    let buf = self.session.recv_buffer();
                    let before = buf.len();
                    if buf.capacity() - before < self.chunk / 2 {
                        buf.reserve(self.chunk);
                    }
                    let spare = buf.capacity() - before;
                    match read_into(&self.stream, buf) {
                        Ok(0) => return CloseReason::ClientClosed,
                        Ok(n) => {
                            // A full read: the client is busy, read more at once next time.
                            if n == spare {
                                self.chunk = (self.chunk * 2).min(READ_CHUNK);
                            }
                            self.session.touch(Instant::now().into_std());
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(_) => return CloseReason::IoError,
                    }
                }
            }
        }
    }

    /// Acts on one session event; `Some` ends the connection.
    async fn act(&mut self, event: SessionEvent) -> Option<CloseReason> {
        let c = &self.shared.counters;
        match event {
            SessionEvent::CheckReplay { kind, key } => {
                let (fresh, oldest) = Box::pin(self.check_replay(kind, key)).await;
                self.session
                    .replay_answer(fresh, oldest, crate::clock::unix_now());
            }
            SessionEvent::HelloAccepted { domain, .. } => {
                let domains = self.shared.fake_tls.as_deref();
                let profile = domains
                    .and_then(|d| d.profile(domain))
                    .unwrap_or_else(|| DomainProfile::fallback(&mut rand::thread_rng()));
                self.session
                    .send_server_hello(&profile, &mut rand::thread_rng());
                inc(&c.tls_handshakes);
                tracing::debug!(
                    domain = domains.map_or("", |d| d.domain_name(domain)),
                    "fake-TLS handshake"
                );
            }
            SessionEvent::Front {
                domain,
                buffered,
                reason,
            } => {
                self.count_front(&reason);
                let Some(domains) = self.shared.fake_tls.clone() else {
                    return Some(CloseReason::Rejected);
                };
                return Some(self.front(&domains, domain, &buffered).await);
            }
            SessionEvent::Skipping(why) => {
                if why == SkipReason::NoSecret {
                    inc(&c.bad_secret_connections);
                }
                tracing::debug!(?why, "obfuscated2 header not accepted: skip mode");
            }
            SessionEvent::Identified {
                transport,
                dc,
                secret_index,
                tls,
            } => {
                tracing::debug!(?transport, dc, tls, secret = %secret_label(secret_index), "client identified");
                inc(&c.total_encrypted_connections);
                let (by_secret, by_dc) = c.labelled.entries(secret_index, dc);
                for t in [&by_secret, &by_dc] {
                    inc(&t.connections);
                    inc(&t.connections_total);
                }
                self.traffic = Some([by_secret, by_dc]);
                self.dc = dc;
                if let Some(t) = self.ticket.take() {
                    self.cancel.admission.leave(&t);
                }
            }
            SessionEvent::Forward { payload, flags } => {
                return self.forward(payload, flags).await.err();
            }
            SessionEvent::Dropped(reason) => {
                inc(&c.mtproto_proxy_errors);
                tracing::debug!(%reason, "cannot forward mtproto packet");
            }
            SessionEvent::AnswerDropped { len } => {
                tracing::debug!(len, "answer cannot be framed for this transport, dropped");
            }
            SessionEvent::Close(reason) => {
                match reason {
                    CloseReason::PreAuthTimeout => inc(&c.handshake_timeouts),
                    CloseReason::IdleTimeout => inc(&c.client_idle_timeouts),
                    CloseReason::TransportError => inc(&c.transport_errors),
                    CloseReason::BadRecord | CloseReason::TlsHeaderNoSecret => {
                        inc(&c.tls_bad_client_records);
                    }
                    _ => {}
                }
                return Some(reason);
            }
        }
        None
    }

    /// Asks the instance-wide cache; a cache that cannot be asked counts as a replay.
    async fn check_replay(&self, kind: ReplayKind, key: [u8; 16]) -> (bool, Option<i64>) {
        let c = &self.shared.counters;
        let cache = match kind {
            ReplayKind::Header => CacheKind::Header,
            ReplayKind::Hello => CacheKind::Hello,
        };
        match self
            .shared
            .replay
            .check(cache, key, crate::clock::unix_now())
            .await
        {
            Ok(v) => {
                if v.full {
                    inc(match kind {
                        ReplayKind::Hello => &c.tls_replay_cache_full,
                        ReplayKind::Header => &c.obfs2_replay_cache_full,
                    });
                }
                if !v.fresh && kind == ReplayKind::Header {
                    inc(&c.obfs2_replayed_headers);
                }
                (v.fresh, v.oldest)
            }
            Err(_) => {
                inc(&c.replay_cache_errors);
                (false, None)
            }
        }
    }

    /// Bumps the counters of a fronted connection.
    fn count_front(&self, reason: &FrontReason) {
        let c = &self.shared.counters;
        match reason {
            FrontReason::NotTls => {
                inc(&c.tls_not_tls_connections);
                tracing::debug!("Expected TLS-transport");
            }
            FrontReason::HelloTimeout => {
                inc(&c.tls_hello_timeouts);
                tracing::debug!("no ClientHello in 10 s");
            }
            FrontReason::Port80 { known_sni: true } => inc(&c.tls_port80_connections),
            FrontReason::Port80 { known_sni: false } => {
                count_reject(self.shared, &HelloReject::UnknownSni { domain: 0 });
            }
            FrontReason::Rejected(r) => {
                count_reject(self.shared, r);
                tracing::debug!(reason = %r, "fake-TLS hello rejected, fronting");
            }
        }
    }

    async fn front(&mut self, domains: &Domains, domain: usize, buffered: &[u8]) -> CloseReason {
        // A fronted connection never authenticates: the drain or the cap may end it.
        let stop = self
            .ticket
            .as_ref()
            .map_or_else(|| self.cancel.draining.clone(), |t| t.token.clone());
        // Boxed: the relay's state lives only while fronting, not in every client's task.
        Box::pin(splice::front(
            &mut self.stream,
            self.local,
            &self.shared.counters,
            domains,
            domain,
            buffered,
            &stop,
        ))
        .await
    }

    /// Forwards one packet, binding the client to a middle-end connection first.
    async fn forward(&mut self, payload: bytes::BytesMut, flags: u32) -> Result<(), CloseReason> {
        let shared = self.shared;
        if self.binding.as_ref().is_some_and(|b| !b.me.is_alive()) {
            return Err(CloseReason::ClosedByMe);
        }
        if self.binding.is_none() {
            let Some(me) = shared.pool.pick(self.dc) else {
                inc(&shared.counters.dropped_queries);
                self.session.forward_failed();
                tracing::debug!(
                    dc = self.dc,
                    "no middle-end connection for dc, packet dropped"
                );
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
        let len = i64::try_from(payload.len()).unwrap_or(i64::MAX);
        let cmd = MeCmd::ProxyReq {
            conn_id: b.conn_id,
            flags,
            client_addr: self.peer,
            proxy_addr: self.proxy_addr,
            payload,
        };
        if b.me.send(cmd).await.is_err() {
            return Err(CloseReason::ClosedByMe);
        }
        inc(&shared.counters.tot_forwarded_queries);
        for t in self.traffic.iter().flatten() {
            t.bytes_from_clients.fetch_add(len, Relaxed);
        }
        Ok(())
    }

    /// Sets the timer to the session's deadline: created once, then reset in place only
    /// when it fired or the deadline came closer (firing early is harmless: the session
    /// checks the real deadline).
    fn arm_timer(&mut self) {
        match (
            self.session.poll_timeout().map(Instant::from_std),
            &mut self.timer,
        ) {
            (None, t) => *t = None,
            (Some(d), Some(t)) => {
                if t.is_elapsed() || t.deadline() > d {
                    t.as_mut().reset(d);
                }
            }
            (Some(d), t @ None) => *t = Some(Box::pin(tokio::time::sleep_until(d))),
        }
    }

    /// Counts the client's incomplete input in the global buffer budget; above ¾ of
    /// `--msg-buffers-size`, a client holding a large incomplete frame is closed (as a
    /// large answer queue is, see [`crate::net::me_link::deliver`]).
    fn account_input(&mut self) -> Option<CloseReason> {
        let held = self.session.buffered_input();
        let global = &self.shared.buffered;
        if held == self.input_held {
            return None;
        }
        if held > self.input_held {
            global.fetch_add(held - self.input_held, Relaxed);
        } else {
            global.fetch_sub(self.input_held - held, Relaxed);
        }
        self.input_held = held;
        let high = self.shared.settings.msg_buffers_size / 4 * 3;
        if held >= LARGE_INPUT && global.load(Relaxed) > high {
            inc(&self.shared.counters.connections_failed_input);
            return Some(CloseReason::InputBudget);
        }
        None
    }

    /// Takes queued messages from the inbox (up to a batch; more wake the task again).
    async fn take_answers(&mut self) -> Option<CloseReason> {
        self.session.touch(Instant::now().into_std());
        let mut budget = ANSWER_BATCH;
        while budget > 0 && self.session.pending_transmit() < ANSWER_BYTES {
            let msg = self.inbox.pop(&self.shared.buffered)?;
            budget -= 1;
            match msg {
                ToClient::Answer(data) => {
                    let len = i64::try_from(data.len()).unwrap_or(i64::MAX);
                    for t in self.traffic.iter().flatten() {
                        t.bytes_to_clients.fetch_add(len, Relaxed);
                    }
                    if let Some(SessionEvent::AnswerDropped { len }) =
                        self.session.handle_answer(&data)
                    {
                        tracing::debug!(len, "answer cannot be framed for this transport, dropped");
                    }
                }
                ToClient::QuickAck(confirm) => self.session.handle_quick_ack(confirm),
                ToClient::Close(reason) => {
                    if reason == CloseReason::ClosedByMe {
                        // The middle end already forgot this client: no CLOSE_CONN back.
                        if let Some(b) = self.binding.take() {
                            b.me.unregister(b.conn_id);
                            dec(&self.shared.counters.ext_connections);
                        }
                    }
                    let _ = self.flush().await;
                    return Some(reason);
                }
            }
        }
        // More may be queued: come back after this write.
        self.inbox.wake();
        None
    }

    /// Writes what the session has for the client, waiting only while the socket is full:
    /// at most [`WRITE_STALL`] without progress, and not past the drain's end.
    async fn flush(&mut self) -> Result<(), CloseReason> {
        let mut progress = None;
        loop {
            let buf = self.session.transmit();
            if buf.is_empty() {
                return Ok(());
            }
            match self.stream.try_write(buf) {
                Ok(0) => return Err(CloseReason::IoError),
                Ok(n) => {
                    self.session.advance_transmit(n);
                    progress = None;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    let since = *progress.get_or_insert_with(Instant::now);
                    // Boxed: only a client with a full socket needs the timer.
                    let stall = Box::pin(tokio::time::sleep_until(since + WRITE_STALL));
                    tokio::select! {
                        biased;
                        () = self.cancel.hard.cancelled() => return Err(CloseReason::Shutdown),
                        r = self.stream.writable() => {
                            if r.is_err() {
                                return Err(CloseReason::IoError);
                            }
                        }
                        () = stall => {
                            inc(&self.shared.counters.client_write_stalls);
                            return Err(CloseReason::WriteStall);
                        }
                    }
                }
                Err(_) => return Err(CloseReason::IoError),
            }
        }
    }

    /// Releases the client's share of everything: budget, labels, binding.
    fn finish(&mut self) {
        let shared = self.shared;
        if let Some(t) = self.ticket.take() {
            self.cancel.admission.leave(&t);
        }
        shared.buffered.fetch_sub(self.input_held, Relaxed);
        self.input_held = 0;
        self.inbox.close(&shared.buffered);
        if let Some(traffic) = self.traffic.take() {
            for t in &traffic {
                dec(&t.connections);
            }
            dec(&shared.counters.total_encrypted_connections);
        }
        if let Some(b) = self.binding.take() {
            if b.me.unregister(b.conn_id) {
                b.me.send_close_conn(b.conn_id);
            }
            dec(&shared.counters.ext_connections);
        }
    }
}

/// Resolves when the proxy drains or, before authentication, when `ticket` is evicted
/// (its token is a child of `draining`): one wait for both.
async fn drain_or_evict(draining: &CancellationToken, ticket: Option<&Ticket>) {
    match ticket {
        Some(t) => t.token.cancelled().await,
        None => draining.cancelled().await,
    }
}

/// Waits for the timer (for ever without one).
async fn fire(timer: Option<&mut Pin<Box<Sleep>>>) {
    match timer {
        Some(t) => t.as_mut().await,
        None => std::future::pending().await,
    }
}

/// Bumps the counters of one rejected hello.
fn count_reject(shared: &Shared, r: &HelloReject) {
    let c = &shared.counters;
    inc(&c.tls_rejected_hellos);
    inc(match r {
        HelloReject::Malformed { .. } => &c.tls_hello_malformed,
        HelloReject::UnknownSni { .. } => &c.tls_hello_unknown_sni,
        HelloReject::TooMuchData { .. } => &c.tls_hello_too_much_data,
        HelloReject::TooBig { .. } => &c.tls_hello_too_big,
        HelloReject::Replay { .. } => &c.tls_replayed_hellos,
        HelloReject::BadHmac { .. } => &c.tls_hello_bad_hmac,
        HelloReject::FutureTimestamp { .. } => &c.tls_hello_future_timestamp,
        HelloReject::StaleTimestamp { .. } => &c.tls_hello_stale_timestamp,
        HelloReject::BadCipherSuite { .. } => &c.tls_hello_bad_cipher_suite,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The task of every idle client holds this future: it must stay small (the rare
    /// large states — the fronting relay, a replay-cache query, timers — are boxed). In a
    /// debug build: 2 536 bytes before the session moved into the core, 2 496 after, 2 608
    /// with the admission ticket, the idle timer's handle and the input count; the bound
    /// is that. (RSS per idle client is measured by `cargo xtask bench`.)
    #[test]
    fn a_client_task_stays_small() {
        let shared = Shared::new(crate::net::shared::Settings::new(Arc::new(
            crate::protocol::session::SessionRules::new(vec![[1; 16]]),
        )));
        let cancel = ClientCancel {
            draining: CancellationToken::new(),
            hard: CancellationToken::new(),
            admission: Arc::default(),
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let size = rt.block_on(async {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = l.local_addr().unwrap();
            let c = TcpStream::connect(addr).await.unwrap();
            let fut = serve(c, addr, addr, shared.clone(), cancel);
            std::mem::size_of_val(&fut)
        });
        assert!(size <= 2608, "a client task's future is {size} bytes");
    }
}
