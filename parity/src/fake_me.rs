//! A fake middle-end (ME): the server side of the ME RPC link (§5, checklist §5.8), on
//! loopback, built on the protocol core's [`RpcLink::server`].
//!
//! ```no_run
//! # async fn demo(secret: Vec<u8>) -> anyhow::Result<()> {
//! use std::time::Duration;
//! use parity::fake_me::FakeMe;
//! let me = FakeMe::builder().secret(secret).crc32c(true).spawn().await?;
//! // ... start the proxy with a config pointing at me.addr() ...
//! me.wait_handshakes(4, Duration::from_secs(5)).await?;
//! let recs = me.wait_records(1, Duration::from_secs(5)).await?;
//! # let _ = recs; Ok(()) }
//! ```
//!
//! Behaviour per accepted connection (one "link", numbered from 0 in accept order):
//! 1. The RPC handshake runs in the server role with `local` = the accepted socket's local
//!    address (the listen address) and `peer` = the proxy's address as seen (§5.8 step 3).
//! 2. Every RPC_PROXY_REQ is recorded as a [`ProxyReqRecord`]. Unless echo is off
//!    ([`FakeMe::set_echo`]), the FakeMe answers on the same link: first RPC_SIMPLE_ACK
//!    with [`quick_ack_confirm`] of the payload when the request has
//!    [`flags::QUICKACK`], then RPC_PROXY_ANS (flags 0) whose data is the request payload
//!    (an echo). With an answer delay ([`FakeMe::set_answer_delay`]) both are sent together
//!    once the delay has passed; answers on one link keep their order.
//! 3. RPC_CLOSE_CONN and RPC_PONG are recorded; RPC_PING from the proxy (which C never
//!    sends) is answered by the link itself and recorded as an "other" message.
//!
//! Every wait takes a timeout; nothing sleeps to guess readiness. The listener and all links
//! shut down when the [`FakeMe`] is dropped.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use bytes::{Bytes, BytesMut};
use mtproxy::protocol::crypto::sha256;
use mtproxy::protocol::rpc::messages::flags;
use mtproxy::protocol::rpc::{
    LinkEvent, LinkParams, ProcessId, ProxyReqHeader, RpcLink, RpcMessage, ServerPolicy,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio_util::sync::{CancellationToken, DropGuard};

/// The confirm value the FakeMe puts in RPC_SIMPLE_ACK for a request `payload`:
/// the first 4 bytes of `SHA-256(payload)` read as a little-endian u32, with bit 31 set
/// (the ME's high bit is what lets a client tell a quick ack from a length, §4.3).
///
/// The client simulator uses the same function to predict the quick ack it must receive.
pub fn quick_ack_confirm(payload: &[u8]) -> u32 {
    let h = sha256(&[payload]);
    u32::from_le_bytes([h[0], h[1], h[2], h[3]]) | 0x8000_0000
}

/// One RPC_PROXY_REQ as the FakeMe received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyReqRecord {
    /// Which link (ME connection, numbered in accept order from 0) carried it.
    pub link: usize,
    /// PROXY_REQ flags (see [`flags`]).
    pub flags: u32,
    /// The proxy tag from the extra section (`-P`), if any.
    pub proxy_tag: Option<[u8; 16]>,
    /// The client's MTProto packet, verbatim.
    pub payload: Bytes,
    /// The proxy's `ext_conn_id` of the client.
    pub ext_conn_id: i64,
    /// The client address from the request (IPv4-mapped addresses are shown as IPv4).
    pub client: SocketAddr,
    /// The proxy address from the request (after `--nat-info`).
    pub proxy: SocketAddr,
    /// The decoded header, as received.
    pub header: ProxyReqHeader,
    /// When the request was decoded.
    pub received: Instant,
}

/// An RPC_CLOSE_CONN from the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseConnRecord {
    /// The link it arrived on.
    pub link: usize,
    /// The client's `ext_conn_id`.
    pub conn_id: i64,
    /// When it was decoded.
    pub received: Instant,
}

/// An RPC_PONG from the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PongRecord {
    /// The link it arrived on.
    pub link: usize,
    /// The ping id echoed.
    pub ping_id: i64,
    /// When it was decoded.
    pub received: Instant,
}

/// How a link ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkEnd {
    /// The link.
    pub link: usize,
    /// Whether its handshake had completed.
    pub was_ready: bool,
    /// Why it ended: `None` for EOF from the proxy, else a description (link error, IO
    /// error, closed by [`FakeMe::drop_all`]).
    pub reason: Option<String>,
}

/// Everything the FakeMe observes, in order, as a broadcast (see [`FakeMe::subscribe`]).
#[derive(Debug, Clone)]
pub enum MeEvent {
    /// A connection was accepted (it becomes link `link`).
    Accepted {
        /// The link number.
        link: usize,
        /// The proxy's address.
        peer: SocketAddr,
    },
    /// A connection was closed at once because refuse mode is on.
    Refused {
        /// The proxy's address.
        peer: SocketAddr,
    },
    /// A link completed the RPC handshake.
    Handshake {
        /// The link.
        link: usize,
        /// Whether CRC32C is used from seq 0 on.
        crc32c: bool,
        /// The proxy's handshake flags.
        peer_flags: u32,
        /// The proxy's `sender_pid`.
        peer_pid: ProcessId,
    },
    /// An RPC_PROXY_REQ.
    ProxyReq(ProxyReqRecord),
    /// An RPC_CLOSE_CONN.
    CloseConn(CloseConnRecord),
    /// An RPC_PONG.
    Pong(PongRecord),
    /// Any other message after the handshake, or a malformed one (`message` is `None`).
    Other {
        /// The link.
        link: usize,
        /// The op word.
        op: u32,
        /// The decoded message, if it decoded.
        message: Option<RpcMessage>,
    },
    /// A link ended.
    LinkEnded(LinkEnd),
}

/// What the FakeMe has seen so far (the argument of [`FakeMe::wait_for`] and the source of
/// every snapshot).
#[derive(Debug, Clone, Default)]
pub struct MeState {
    /// Connections accepted (refused ones included).
    pub accepted: usize,
    /// Connections closed at once by refuse mode.
    pub refused: usize,
    /// Handshakes completed, ever.
    pub handshakes: usize,
    /// Links whose handshake completed and which are still open.
    pub live_links: usize,
    /// Every RPC_PROXY_REQ, in arrival order.
    pub records: Vec<ProxyReqRecord>,
    /// Every RPC_CLOSE_CONN.
    pub close_conns: Vec<CloseConnRecord>,
    /// Every RPC_PONG.
    pub pongs: Vec<PongRecord>,
    /// Every other message `(link, op, message)`.
    pub others: Vec<(usize, u32, Option<RpcMessage>)>,
    /// Every link that ended.
    pub link_ends: Vec<LinkEnd>,
}

/// Builder of a [`FakeMe`]; see [`FakeMe::builder`].
#[derive(Debug, Clone)]
pub struct FakeMeBuilder {
    secret: Vec<u8>,
    crc32c: bool,
    policy: ServerPolicy,
    bind: SocketAddr,
    pid: Option<ProcessId>,
    echo: bool,
    answer_delay: Duration,
}

impl Default for FakeMeBuilder {
    fn default() -> Self {
        Self {
            secret: Vec::new(),
            crc32c: true,
            policy: ServerPolicy::default(),
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            pid: None,
            echo: true,
            answer_delay: Duration::ZERO,
        }
    }
}

impl FakeMeBuilder {
    /// The proxy-secret (the whole `--aes-pwd` file content, 32..=256 bytes). Required.
    pub fn secret(mut self, secret: impl Into<Vec<u8>>) -> Self {
        self.secret = secret.into();
        self
    }

    /// Allow CRC32C (flags 0x800) when the proxy offers it (default true, like a C ME).
    pub fn crc32c(mut self, on: bool) -> Self {
        self.crc32c = on;
        self
    }

    /// The server role's handshake knobs (reply flags, PID, nonce faults).
    pub fn policy(mut self, policy: ServerPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Where to listen (default `127.0.0.1:0`, an OS-chosen port).
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.bind = addr;
        self
    }

    /// The PID the FakeMe sends as `sender_pid` (default: 127.0.0.1, the listen port, the
    /// low 16 bits of our PID, the start time).
    pub fn pid(mut self, pid: ProcessId) -> Self {
        self.pid = Some(pid);
        self
    }

    /// Whether to answer requests (default true); see [`FakeMe::set_echo`].
    pub fn echo(mut self, on: bool) -> Self {
        self.echo = on;
        self
    }

    /// Delay before answering each request (default zero).
    pub fn answer_delay(mut self, delay: Duration) -> Self {
        self.answer_delay = delay;
        self
    }

    /// Binds the listener and starts accepting.
    ///
    /// # Errors
    /// A missing or unusable secret, or the bind failing.
    pub async fn spawn(self) -> anyhow::Result<FakeMe> {
        if !(32..=256).contains(&self.secret.len()) {
            bail!(
                "FakeMe needs a proxy-secret of 32..=256 bytes, got {}",
                self.secret.len()
            );
        }
        let listener = TcpListener::bind(self.bind)
            .await
            .with_context(|| format!("FakeMe bind {}", self.bind))?;
        let addr = listener.local_addr()?;
        let pid = self.pid.unwrap_or(ProcessId {
            ip: 0x7f00_0001,
            port: addr.port() as i16,
            pid: (std::process::id() & 0xffff) as u16,
            utime: mtproxy::clock::unix_now() as i32,
        });
        let cancel = CancellationToken::new();
        let (events, _) = broadcast::channel(4096);
        let (version, _) = watch::channel(0u64);
        let (reading, _) = watch::channel(true);
        let shared = Arc::new(Shared {
            state: Mutex::new(Inner::default()),
            version,
            events,
            refuse: AtomicBool::new(false),
            echo: AtomicBool::new(self.echo),
            answer_delay: Mutex::new(self.answer_delay),
            reading,
            cancel: cancel.clone(),
            secret: self.secret,
            crc32c: self.crc32c,
            policy: self.policy,
            pid,
        });
        tokio::spawn(accept_loop(listener, shared.clone()));
        Ok(FakeMe {
            addr,
            shared,
            _guard: cancel.drop_guard(),
        })
    }
}

/// The running fake ME. Dropping it closes the listener and every link.
pub struct FakeMe {
    addr: SocketAddr,
    shared: Arc<Shared>,
    _guard: DropGuard,
}

impl std::fmt::Debug for FakeMe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeMe")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

enum Command {
    Send(Vec<RpcMessage>, oneshot::Sender<Result<(), String>>),
    Close(oneshot::Sender<()>),
}

struct LinkHandle {
    tx: mpsc::UnboundedSender<Command>,
    ready: bool,
}

#[derive(Default)]
struct Inner {
    public: MeState,
    links: BTreeMap<usize, LinkHandle>,
    conn_link: HashMap<i64, usize>,
}

struct Shared {
    state: Mutex<Inner>,
    version: watch::Sender<u64>,
    events: broadcast::Sender<MeEvent>,
    refuse: AtomicBool,
    echo: AtomicBool,
    answer_delay: Mutex<Duration>,
    reading: watch::Sender<bool>,
    cancel: CancellationToken,
    secret: Vec<u8>,
    crc32c: bool,
    policy: ServerPolicy,
    pid: ProcessId,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies `f` to the state, then wakes waiters and broadcasts `event`.
    fn update(&self, event: Option<MeEvent>, f: impl FnOnce(&mut Inner)) {
        f(&mut self.lock());
        self.version.send_modify(|v| *v += 1);
        if let Some(e) = event {
            let _ = self.events.send(e);
        }
    }
}

fn canonical(ip: std::net::Ipv6Addr, port: u32) -> SocketAddr {
    SocketAddr::new(
        IpAddr::V6(ip).to_canonical(),
        u16::try_from(port).unwrap_or(u16::MAX),
    )
}

impl FakeMe {
    /// A builder with C's defaults (CRC32C allowed, default [`ServerPolicy`], echo on).
    pub fn builder() -> FakeMeBuilder {
        FakeMeBuilder::default()
    }

    /// The listen address (127.0.0.1 and an OS-chosen port by default).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The PID the FakeMe sends as `sender_pid`.
    pub fn pid(&self) -> ProcessId {
        self.shared.pid
    }

    /// A receiver of every later [`MeEvent`] (lagging receivers lose the oldest events;
    /// the state behind [`FakeMe::state`] is never lost).
    pub fn subscribe(&self) -> broadcast::Receiver<MeEvent> {
        self.shared.events.subscribe()
    }

    /// A snapshot of everything seen so far.
    pub fn state(&self) -> MeState {
        self.shared.lock().public.clone()
    }

    /// Connections accepted so far (refused ones included).
    pub fn connections(&self) -> usize {
        self.shared.lock().public.accepted
    }

    /// Links that completed the handshake and are still open.
    pub fn live_links(&self) -> usize {
        self.shared.lock().public.live_links
    }

    /// Handshakes completed so far.
    pub fn handshakes(&self) -> usize {
        self.shared.lock().public.handshakes
    }

    /// Every RPC_PROXY_REQ so far.
    pub fn records(&self) -> Vec<ProxyReqRecord> {
        self.shared.lock().public.records.clone()
    }

    /// Removes and returns the recorded RPC_PROXY_REQs (e.g. between phases).
    pub fn take_records(&self) -> Vec<ProxyReqRecord> {
        std::mem::take(&mut self.shared.lock().public.records)
    }

    /// Every RPC_CLOSE_CONN so far.
    pub fn close_conns(&self) -> Vec<CloseConnRecord> {
        self.shared.lock().public.close_conns.clone()
    }

    /// Every RPC_PONG so far.
    pub fn pongs(&self) -> Vec<PongRecord> {
        self.shared.lock().public.pongs.clone()
    }

    /// Every link that ended so far.
    pub fn link_ends(&self) -> Vec<LinkEnd> {
        self.shared.lock().public.link_ends.clone()
    }

    /// Waits until `pred` holds on the state, for at most `timeout`.
    ///
    /// # Errors
    /// The timeout, with `what` in the message.
    pub async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        mut pred: impl FnMut(&MeState) -> bool,
    ) -> anyhow::Result<()> {
        let mut rx = self.shared.version.subscribe();
        let wait = async {
            loop {
                rx.borrow_and_update();
                if pred(&self.shared.lock().public) {
                    return Ok(());
                }
                if rx.changed().await.is_err() {
                    return Err(anyhow!("FakeMe shut down while waiting for {what}"));
                }
            }
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(r) => r,
            Err(_) => {
                let s = self.state();
                Err(anyhow!(
                    "FakeMe: timed out after {timeout:?} waiting for {what} (accepted {}, handshakes {}, live {}, records {}, close_conns {}, pongs {})",
                    s.accepted,
                    s.handshakes,
                    s.live_links,
                    s.records.len(),
                    s.close_conns.len(),
                    s.pongs.len()
                ))
            }
        }
    }

    /// Resolves once `n` handshakes have completed in total (the readiness signal for a
    /// proxy under test: C opens 4 links per target and process).
    ///
    /// # Errors
    /// The timeout.
    pub async fn wait_handshakes(&self, n: usize, timeout: Duration) -> anyhow::Result<()> {
        self.wait_for(&format!("{n} handshakes"), timeout, |s| s.handshakes >= n)
            .await
    }

    /// Resolves once `n` links are live (handshake done, still open).
    ///
    /// # Errors
    /// The timeout.
    pub async fn wait_live_links(&self, n: usize, timeout: Duration) -> anyhow::Result<()> {
        self.wait_for(&format!("{n} live links"), timeout, |s| s.live_links >= n)
            .await
    }

    /// Waits for at least `n` recorded RPC_PROXY_REQs and returns all of them.
    ///
    /// # Errors
    /// The timeout.
    pub async fn wait_records(
        &self,
        n: usize,
        timeout: Duration,
    ) -> anyhow::Result<Vec<ProxyReqRecord>> {
        self.wait_for(&format!("{n} PROXY_REQs"), timeout, |s| {
            s.records.len() >= n
        })
        .await?;
        Ok(self.records())
    }

    /// Waits for at least `n` RPC_CLOSE_CONNs and returns all of them.
    ///
    /// # Errors
    /// The timeout.
    pub async fn wait_close_conns(
        &self,
        n: usize,
        timeout: Duration,
    ) -> anyhow::Result<Vec<CloseConnRecord>> {
        self.wait_for(&format!("{n} CLOSE_CONNs"), timeout, |s| {
            s.close_conns.len() >= n
        })
        .await?;
        Ok(self.close_conns())
    }

    /// Waits for at least `n` RPC_PONGs and returns all of them.
    ///
    /// # Errors
    /// The timeout.
    pub async fn wait_pongs(&self, n: usize, timeout: Duration) -> anyhow::Result<Vec<PongRecord>> {
        self.wait_for(&format!("{n} PONGs"), timeout, |s| s.pongs.len() >= n)
            .await?;
        Ok(self.pongs())
    }

    /// The ids of the links that completed the handshake and are open, ascending.
    pub fn ready_links(&self) -> Vec<usize> {
        self.shared
            .lock()
            .links
            .iter()
            .filter(|(_, h)| h.ready)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Sends `messages` on link `link` and waits until they are written to the socket.
    ///
    /// # Errors
    /// Unknown or closed link, a link not ready (handshake pending), or a write failure.
    pub async fn send_to_link(&self, link: usize, messages: Vec<RpcMessage>) -> anyhow::Result<()> {
        let tx = self
            .shared
            .lock()
            .links
            .get(&link)
            .map(|h| h.tx.clone())
            .ok_or_else(|| anyhow!("FakeMe: no open link {link}"))?;
        let (ack, done) = oneshot::channel();
        tx.send(Command::Send(messages, ack))
            .map_err(|_| anyhow!("FakeMe: link {link} is closing"))?;
        done.await
            .map_err(|_| anyhow!("FakeMe: link {link} closed before sending"))?
            .map_err(|e| anyhow!("FakeMe: link {link}: {e}"))
    }

    /// Sends `message` on the lowest-numbered ready link; returns that link.
    ///
    /// Use it for unsolicited RPC_PROXY_ANS / RPC_SIMPLE_ACK with an unknown conn id (the
    /// proxy answers those with RPC_CLOSE_CONN and counts `dropped_responses` /
    /// `dropped_simple_acks`), or for unknown ops.
    ///
    /// # Errors
    /// No ready link, or as [`FakeMe::send_to_link`].
    pub async fn send_to_any(&self, message: RpcMessage) -> anyhow::Result<usize> {
        let link = *self
            .ready_links()
            .first()
            .ok_or_else(|| anyhow!("FakeMe: no ready link"))?;
        self.send_to_link(link, vec![message]).await?;
        Ok(link)
    }

    /// An unsolicited RPC_PROXY_ANS for `conn_id` on the first ready link.
    ///
    /// # Errors
    /// As [`FakeMe::send_to_any`].
    pub async fn send_proxy_ans(&self, conn_id: i64, data: Bytes) -> anyhow::Result<usize> {
        self.send_to_any(RpcMessage::ProxyAns {
            flags: 0,
            conn_id,
            data,
        })
        .await
    }

    /// An unsolicited RPC_SIMPLE_ACK for `conn_id` on the first ready link.
    ///
    /// # Errors
    /// As [`FakeMe::send_to_any`].
    pub async fn send_simple_ack(&self, conn_id: i64, confirm: u32) -> anyhow::Result<usize> {
        self.send_to_any(RpcMessage::SimpleAck { conn_id, confirm })
            .await
    }

    /// Sends RPC_PING `ping_id` on every ready link; returns how many links were pinged.
    /// The proxy answers each with RPC_PONG (see [`FakeMe::wait_pongs`]).
    ///
    /// # Errors
    /// A link failing to send.
    pub async fn send_ping(&self, ping_id: i64) -> anyhow::Result<usize> {
        let links = self.ready_links();
        for &l in &links {
            self.send_to_link(l, vec![RpcMessage::Ping { ping_id }])
                .await?;
        }
        Ok(links.len())
    }

    /// Sends RPC_CLOSE_EXT for `conn_id` on the link that carried that client's last
    /// request; returns the link.
    ///
    /// # Errors
    /// No request with that conn id was seen, or its link is gone.
    pub async fn close_ext(&self, conn_id: i64) -> anyhow::Result<usize> {
        let link = *self
            .shared
            .lock()
            .conn_link
            .get(&conn_id)
            .ok_or_else(|| anyhow!("FakeMe: no request seen for conn id {conn_id:#x}"))?;
        self.send_to_link(link, vec![RpcMessage::CloseExt { conn_id }])
            .await?;
        Ok(link)
    }

    /// Closes every open link and waits until each is closed; returns how many.
    pub async fn drop_all(&self) -> usize {
        let txs: Vec<_> = self
            .shared
            .lock()
            .links
            .values()
            .map(|h| h.tx.clone())
            .collect();
        let mut n = 0;
        for tx in txs {
            let (ack, done) = oneshot::channel();
            if tx.send(Command::Close(ack)).is_ok() && done.await.is_ok() {
                n += 1;
            }
        }
        n
    }

    /// Refuse mode: new connections are accepted and closed at once (no RPC at all).
    pub fn set_refuse(&self, on: bool) {
        self.shared.refuse.store(on, Ordering::SeqCst);
    }

    /// Delay before each answer (SIMPLE_ACK + PROXY_ANS); affects requests received later.
    pub fn set_answer_delay(&self, delay: Duration) {
        *self
            .shared
            .answer_delay
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = delay;
    }

    /// Whether links read from their sockets (false: stop reading, so the proxy's writes
    /// back up — the backpressure test of §13). Takes effect on every link at once.
    pub fn set_reading(&self, on: bool) {
        self.shared.reading.send_replace(on);
    }

    /// Whether requests are answered (false: record only).
    pub fn set_echo(&self, on: bool) {
        self.shared.echo.store(on, Ordering::SeqCst);
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut next_link = 0usize;
    loop {
        let accepted = tokio::select! {
            _ = shared.cancel.cancelled() => return,
            a = listener.accept() => a,
        };
        let Ok((stream, peer)) = accepted else {
            continue;
        };
        if shared.refuse.load(Ordering::SeqCst) {
            drop(stream);
            shared.update(Some(MeEvent::Refused { peer }), |s| {
                s.public.accepted += 1;
                s.public.refused += 1;
            });
            continue;
        }
        let link = next_link;
        next_link += 1;
        let (tx, rx) = mpsc::unbounded_channel();
        shared.update(Some(MeEvent::Accepted { link, peer }), |s| {
            s.public.accepted += 1;
            s.links.insert(link, LinkHandle { tx, ready: false });
        });
        tokio::spawn(run_link(shared.clone(), link, stream, rx));
    }
}

/// The answer messages for one request, to be sent at `due`.
struct Delayed {
    due: tokio::time::Instant,
    messages: Vec<RpcMessage>,
}

async fn run_link(
    shared: Arc<Shared>,
    link_id: usize,
    stream: TcpStream,
    rx: mpsc::UnboundedReceiver<Command>,
) {
    let _ = stream.set_nodelay(true);
    let mut close_ack = None;
    let reason = match (stream.local_addr(), stream.peer_addr()) {
        (Ok(local), Ok(peer)) => {
            let mut params = LinkParams::new(shared.secret.clone(), local, peer, shared.pid);
            params.crc32c = shared.crc32c;
            params.server = shared.policy.clone();
            let link = RpcLink::server(params, &mut rand::thread_rng());
            drive_link(&shared, link_id, stream, link, rx, &mut close_ack).await
        }
        (Err(e), _) | (_, Err(e)) => Some(format!("socket address: {e}")),
    };
    let mut rec = LinkEnd {
        link: link_id,
        was_ready: false,
        reason,
    };
    shared.update(None, |s| {
        if let Some(h) = s.links.remove(&link_id) {
            rec.was_ready = h.ready;
            if h.ready {
                s.public.live_links = s.public.live_links.saturating_sub(1);
            }
        }
        s.public.link_ends.push(rec.clone());
    });
    let _ = shared.events.send(MeEvent::LinkEnded(rec));
    if let Some(ack) = close_ack {
        let _ = ack.send(());
    }
}

/// One write for the writer task, acknowledged once on the socket.
struct Outgoing {
    bytes: Bytes,
    ack: Option<oneshot::Sender<Result<(), String>>>,
}

/// Writes queued bytes in order, so the link task never blocks on a proxy that does not
/// read; half-closes once the queue is dropped.
async fn write_loop(
    mut wr: tokio::net::tcp::OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
) -> String {
    while let Some(o) = rx.recv().await {
        let r = wr.write_all(&o.bytes).await;
        if let Some(ack) = o.ack {
            let _ = ack.send(r.as_ref().map_err(|e| e.to_string()).copied());
        }
        if let Err(e) = r {
            return format!("write: {e}");
        }
    }
    let _ = wr.shutdown().await;
    "writer finished".into()
}

/// Runs one link until EOF, an error, a close command or shutdown; returns the end reason.
async fn drive_link(
    shared: &Shared,
    link_id: usize,
    stream: TcpStream,
    mut link: RpcLink,
    mut rx: mpsc::UnboundedReceiver<Command>,
    close_ack: &mut Option<oneshot::Sender<()>>,
) -> Option<String> {
    let (mut rd, wr) = stream.into_split();
    let (out_tx, out_rx) = mpsc::unbounded_channel::<Outgoing>();
    let mut writer = tokio::spawn(write_loop(wr, out_rx));
    let mut reading_rx = shared.reading.subscribe();
    let mut inbuf = BytesMut::with_capacity(64 * 1024);
    let mut out = BytesMut::new();
    let mut delayed: VecDeque<Delayed> = VecDeque::new();
    let far = || tokio::time::Instant::now() + Duration::from_secs(86_400);
    // (reason, flush queued bytes before closing)
    let (reason, flush) = loop {
        let reading = *reading_rx.borrow_and_update();
        let next_due = delayed.front().map_or_else(far, |d| d.due);
        let has_due = !delayed.is_empty();
        let mut ack = None;
        let mut failed = None;
        tokio::select! {
            _ = shared.cancel.cancelled() => break (Some("FakeMe shut down".into()), false),
            w = &mut writer => break (Some(w.unwrap_or_else(|e| e.to_string())), false),
            r = rd.read_buf(&mut inbuf), if reading => match r {
                Ok(0) => break (None, false),
                Ok(_) => {
                    if let Err(e) = link.handle_input(&mut inbuf, mtproxy::clock::unix_now()) {
                        // Flush what the link queued (an RPC_HANDSHAKE_ERROR), then close.
                        failed = Some(format!("link error: {e}"));
                    }
                    while let Some(ev) = link.poll_event() {
                        on_event(shared, link_id, ev, &mut link, &mut delayed);
                    }
                }
                Err(e) => break (Some(format!("read: {e}")), false),
            },
            cmd = rx.recv() => match cmd {
                None => break (Some("FakeMe dropped".into()), false),
                Some(Command::Close(a)) => {
                    *close_ack = Some(a);
                    break (Some("closed by drop_all".into()), false);
                }
                Some(Command::Send(msgs, a)) => {
                    match msgs.iter().try_for_each(|m| link.send(m)) {
                        Ok(()) => ack = Some(a),
                        Err(e) => { let _ = a.send(Err(e.to_string())); }
                    }
                }
            },
            _ = reading_rx.changed() => {}
            _ = tokio::time::sleep_until(next_due), if has_due => {
                let now = tokio::time::Instant::now();
                while let Some(d) = delayed.pop_front() {
                    if d.due > now {
                        delayed.push_front(d);
                        break;
                    }
                    for m in &d.messages {
                        let _ = link.send(m);
                    }
                }
            }
        }
        link.poll_transmit(&mut out);
        if !out.is_empty() || ack.is_some() {
            let bytes = out.split().freeze();
            let _ = out_tx.send(Outgoing { bytes, ack });
        }
        if let Some(f) = failed {
            break (Some(f), true);
        }
    };
    drop(out_tx);
    if flush {
        let _ = tokio::time::timeout(Duration::from_secs(1), &mut writer).await;
    }
    writer.abort();
    reason
}

fn on_event(
    shared: &Shared,
    link_id: usize,
    ev: LinkEvent,
    link: &mut RpcLink,
    delayed: &mut VecDeque<Delayed>,
) {
    match ev {
        LinkEvent::HandshakeDone {
            crc32c,
            peer_flags,
            peer_pid,
        } => shared.update(
            Some(MeEvent::Handshake {
                link: link_id,
                crc32c,
                peer_flags,
                peer_pid,
            }),
            |s| {
                s.public.handshakes += 1;
                if let Some(h) = s.links.get_mut(&link_id) {
                    if !h.ready {
                        h.ready = true;
                        s.public.live_links += 1;
                    }
                }
            },
        ),
        LinkEvent::Message(RpcMessage::ProxyReq(req)) => {
            let h = &req.header;
            let rec = ProxyReqRecord {
                link: link_id,
                flags: h.flags,
                proxy_tag: h.proxy_tag().copied(),
                payload: req.payload.clone(),
                ext_conn_id: h.ext_conn_id,
                client: canonical(h.client_ip, h.client_port),
                proxy: canonical(h.proxy_ip, h.proxy_port),
                header: h.clone(),
                received: Instant::now(),
            };
            let conn_id = h.ext_conn_id;
            shared.update(Some(MeEvent::ProxyReq(rec.clone())), |s| {
                s.conn_link.insert(conn_id, link_id);
                s.public.records.push(rec);
            });
            if !shared.echo.load(Ordering::SeqCst) {
                return;
            }
            let mut answer = Vec::with_capacity(2);
            if h.flags & flags::QUICKACK != 0 {
                answer.push(RpcMessage::SimpleAck {
                    conn_id,
                    confirm: quick_ack_confirm(&req.payload),
                });
            }
            answer.push(RpcMessage::ProxyAns {
                flags: 0,
                conn_id,
                data: req.payload,
            });
            let delay = *shared
                .answer_delay
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if delay.is_zero() && delayed.is_empty() {
                for m in &answer {
                    let _ = link.send(m);
                }
            } else {
                delayed.push_back(Delayed {
                    due: tokio::time::Instant::now() + delay,
                    messages: answer,
                });
            }
        }
        LinkEvent::Message(RpcMessage::CloseConn { conn_id }) => {
            let rec = CloseConnRecord {
                link: link_id,
                conn_id,
                received: Instant::now(),
            };
            shared.update(Some(MeEvent::CloseConn(rec)), |s| {
                s.public.close_conns.push(rec)
            });
        }
        LinkEvent::Message(RpcMessage::Pong { ping_id }) => {
            let rec = PongRecord {
                link: link_id,
                ping_id,
                received: Instant::now(),
            };
            shared.update(Some(MeEvent::Pong(rec)), |s| s.public.pongs.push(rec));
        }
        LinkEvent::Message(m) => {
            let op = m.op();
            shared.update(
                Some(MeEvent::Other {
                    link: link_id,
                    op,
                    message: Some(m.clone()),
                }),
                |s| s.public.others.push((link_id, op, Some(m))),
            );
        }
        LinkEvent::Malformed { op, .. } => shared.update(
            Some(MeEvent::Other {
                link: link_id,
                op,
                message: None,
            }),
            |s| s.public.others.push((link_id, op, None)),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confirm_has_the_high_bit_and_depends_on_the_payload() {
        let a = quick_ack_confirm(b"abcd");
        let b = quick_ack_confirm(b"abce");
        assert_ne!(a, b);
        assert_ne!(a & 0x8000_0000, 0);
        // SHA-256("") = e3b0c442...: LE u32 of e3 b0 c4 42 is 0x42c4b0e3, high bit set.
        assert_eq!(quick_ack_confirm(b""), 0xc2c4_b0e3);
    }

    #[tokio::test]
    async fn spawn_needs_a_secret() {
        assert!(FakeMe::builder().spawn().await.is_err());
        let me = FakeMe::builder()
            .secret(vec![7u8; 32])
            .spawn()
            .await
            .unwrap();
        assert_eq!(me.addr().ip(), IpAddr::from([127, 0, 0, 1]));
        assert_ne!(me.addr().port(), 0);
        assert_eq!(me.connections(), 0);
    }
}
