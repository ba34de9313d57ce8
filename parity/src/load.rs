//! The load generator of `cargo xtask bench`: a lean middle end, precomputed client
//! streams, and one function per measurement (bulk throughput, connection rate, latency,
//! idle clients, first accept), plus `/proc` readers for the proxy's CPU time and RSS.
//!
//! The generator must cost less per byte than the proxy it measures, or it becomes the
//! bottleneck (on loopback both share one machine). Per echoed byte the proxy does
//! CTR-decrypt, CBC-encrypt, CBC-decrypt and CTR-encrypt; so here:
//! * bulk clients send **precomputed** ciphertext (header, frames and CTR keystream are
//!   prepared before the clock starts) and only count the bytes that come back;
//! * the [`BenchMe`] (the FakeMe's RPC server role without the per-request recording)
//!   answers bulk requests from a **precomputed** CBC stream of RPC_PROXY_ANS frames,
//!   armed per link once it knows which clients (`conn_id`s) it carries, and released
//!   frame by frame as requests arrive (an answer is never sent before its request). Its
//!   remaining per-byte work is one CBC-decrypt and the CRC check.
//!
//! Bulk answers have the request's size but not its bytes (echoing bytes would need a
//! CBC-encrypt per byte here). Byte-exact echo is the dual-run's job; the latency,
//! connection-rate and idle-client phases do use byte-exact echo and check it.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use bytes::{Bytes, BytesMut};
use hdrhistogram::Histogram;
use mtproxy::protocol::crypto::AesCtr;
use mtproxy::protocol::obfuscated2::ClientHandshake;
use mtproxy::protocol::rpc::{LinkEvent, LinkParams, ProcessId, RpcLink, RpcMessage};
use mtproxy::protocol::transport::{encode_client_frame, Transport};
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, Notify, Semaphore};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::client::{ClientConfig, SimClient};
use crate::process::ProxyProcess;

/// First 8 bytes of a warm-up packet (also its non-zero `auth_key_id`).
const WARMUP_MAGIC: [u8; 8] = *b"mtbench!";
/// Warm-up packet size (an encrypted-message-shaped packet: at least 56 bytes).
pub const WARMUP_LEN: usize = 64;
/// Smallest request the proxy forwards as an encrypted packet.
pub const MIN_REQUEST: usize = 56;
/// Writes of precomputed bytes are cut into pieces of at most this size.
const WRITE_PIECE: usize = 256 * 1024;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------------------------
// /proc readers.

/// A process's CPU time (user + system, all threads, dead ones included) in seconds, from
/// `/proc/<pid>/stat` (clock ticks of 1/100 s, Linux's fixed `USER_HZ`).
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    cpu_times(pid).map(|t| t.total)
}

/// A process's CPU time from `/proc/<pid>/stat`: all of it and the system (kernel) part.
pub fn cpu_times(pid: u32) -> Option<CpuTimes> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat_times(&text)
}

/// CPU seconds of a process and its live children (a `-M` master and its workers).
pub fn cpu_times_tree(pid: u32) -> Option<CpuTimes> {
    let mut t = cpu_times(pid)?;
    for child in crate::process::child_pids(pid) {
        if let Some(c) = cpu_times(child) {
            t.total += c.total;
            t.system += c.system;
        }
    }
    Some(t)
}

/// CPU seconds of a process.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuTimes {
    /// `utime + stime`.
    pub total: f64,
    /// `stime`.
    pub system: f64,
}

/// `utime + stime` of a `/proc/<pid>/stat` line, in seconds.
pub fn parse_stat_cpu(stat: &str) -> Option<f64> {
    parse_stat_times(stat).map(|t| t.total)
}

/// `utime + stime` and `stime` of a `/proc/<pid>/stat` line, in seconds.
pub fn parse_stat_times(stat: &str) -> Option<CpuTimes> {
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3 of the man page, utime 14, stime 15 → indices 11, 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(CpuTimes {
        total: (utime + stime) as f64 / 100.0,
        system: stime as f64 / 100.0,
    })
}

/// Resident memory of a process, from `/proc/<pid>/status` (bytes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Rss {
    /// `VmRSS`.
    pub rss: u64,
    /// `RssAnon` (heap, stacks: what grows per client).
    pub anon: u64,
}

/// The RSS of `pid`.
pub fn rss(pid: u32) -> Option<Rss> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some(parse_status_rss(&text))
}

/// `VmRSS` and `RssAnon` of a `/proc/<pid>/status` text.
pub fn parse_status_rss(status: &str) -> Rss {
    let kb = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |k| k * 1024)
    };
    Rss {
        rss: kb("VmRSS:"),
        anon: kb("RssAnon:"),
    }
}

/// Unreclaimable kernel slab memory (`SUnreclaim` of `/proc/meminfo`, bytes): where
/// socket, inode, file and epoll structures live.
pub fn kernel_unreclaimable() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("SUnreclaim:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|k| k * 1024)
}

/// Pages of TCP socket buffers in use machine-wide (`TCP: ... mem N` of
/// `/proc/net/sockstat`), in bytes.
pub fn tcp_buffer_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/net/sockstat").ok()?;
    let line = text.lines().find(|l| l.starts_with("TCP:"))?;
    let mut it = line.split_whitespace();
    while let Some(w) = it.next() {
        if w == "mem" {
            return it.next()?.parse::<u64>().ok().map(|p| p * 4096);
        }
    }
    None
}

/// Raises this process's soft `RLIMIT_NOFILE` to its hard limit; returns `(soft, hard)`.
pub fn raise_nofile() -> (u64, u64) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap_or((1024, 1024));
    if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        return (hard, hard);
    }
    (soft, hard)
}

// ---------------------------------------------------------------------------------------
// The bench ME.

/// What the [`BenchMe`] does with an ordinary (non-warm-up) RPC_PROXY_REQ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum MeMode {
    /// Answer with RPC_PROXY_ANS carrying the request's bytes (encrypted on the spot).
    Echo = 0,
    /// Count the request and answer nothing.
    Sink = 1,
    /// Count the request and release the next precomputed answer owed to its client.
    Stream = 2,
}

/// One client seen through its warm-up packet: which link and `conn_id` carry it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    link: usize,
    conn_id: i64,
}

/// A link's command channel.
enum LinkCmd {
    /// Precompute `per_client` answers of `answer` for every client of `phase` on this
    /// link and start releasing them; acknowledged once the stream is ready.
    Arm {
        phase: u64,
        answer: Bytes,
        per_client: usize,
        ack: oneshot::Sender<usize>,
    },
}

struct MeShared {
    secret: Vec<u8>,
    pid: ProcessId,
    mode: AtomicU8,
    handshakes: AtomicUsize,
    changed: Notify,
    links: Mutex<HashMap<usize, mpsc::UnboundedSender<LinkCmd>>>,
    seen: Mutex<HashMap<(u64, u32), Seen>>,
    /// Sink mode: a request of this conn_id gives its client one more credit.
    credit: Mutex<HashMap<i64, Arc<Semaphore>>>,
    requests: AtomicU64,
    request_bytes: AtomicU64,
    failed: AtomicBool,
    cancel: CancellationToken,
}

impl MeShared {
    fn bump(&self) {
        self.changed.notify_waiters();
    }
}

/// A lean fake middle end for benchmarks: the RPC server role of the protocol core
/// ([`RpcLink::server`]), echo by default, with [`MeMode::Sink`] and armed precomputed
/// answer streams ([`BenchMe::arm`]) for bulk phases. Dropping it closes everything.
pub struct BenchMe {
    addr: SocketAddr,
    shared: Arc<MeShared>,
    _guard: DropGuard,
}

impl std::fmt::Debug for BenchMe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BenchMe")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl BenchMe {
    /// Listens on an OS-chosen loopback port with `secret` as the proxy-secret.
    ///
    /// # Errors
    /// A secret outside 32..=256 bytes, or the bind failing.
    pub async fn spawn(secret: Vec<u8>) -> anyhow::Result<BenchMe> {
        if !(32..=256).contains(&secret.len()) {
            bail!("the proxy-secret must have 32..=256 bytes");
        }
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let cancel = CancellationToken::new();
        let shared = Arc::new(MeShared {
            secret,
            pid: ProcessId {
                ip: 0x7f00_0001,
                port: addr.port() as i16,
                pid: (std::process::id() & 0xffff) as u16,
                utime: mtproxy::clock::unix_now() as i32,
            },
            mode: AtomicU8::new(MeMode::Echo as u8),
            handshakes: AtomicUsize::new(0),
            changed: Notify::new(),
            links: Mutex::new(HashMap::new()),
            seen: Mutex::new(HashMap::new()),
            credit: Mutex::new(HashMap::new()),
            requests: AtomicU64::new(0),
            request_bytes: AtomicU64::new(0),
            failed: AtomicBool::new(false),
            cancel: cancel.clone(),
        });
        tokio::spawn(me_accept(listener, shared.clone()));
        Ok(BenchMe {
            addr,
            shared,
            _guard: cancel.drop_guard(),
        })
    }

    /// The listen address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// RPC_PROXY_REQs received so far.
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::Relaxed)
    }

    /// RPC handshakes completed so far.
    pub fn handshakes(&self) -> usize {
        self.shared.handshakes.load(Ordering::SeqCst)
    }

    /// Waits until `n` handshakes completed.
    ///
    /// # Errors
    /// The timeout.
    pub async fn wait_handshakes(&self, n: usize, timeout: Duration) -> anyhow::Result<()> {
        self.wait_until(timeout, || self.handshakes() >= n)
            .await
            .with_context(|| format!("{n} ME handshakes (have {})", self.handshakes()))
    }

    async fn wait_until(
        &self,
        timeout: Duration,
        mut f: impl FnMut() -> bool,
    ) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let changed = self.shared.changed.notified();
            if f() {
                return Ok(());
            }
            if self.shared.failed.load(Ordering::SeqCst) {
                bail!("a bench ME link failed");
            }
            // Counters move without a notification on the hot path: re-check every 5 ms.
            let step = (tokio::time::Instant::now() + Duration::from_millis(5)).min(deadline);
            tokio::select! {
                () = changed => {}
                () = tokio::time::sleep_until(step) => {}
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("timed out after {timeout:?}");
            }
        }
    }

    /// Sets what ordinary requests get.
    pub fn set_mode(&self, mode: MeMode) {
        self.shared.mode.store(mode as u8, Ordering::SeqCst);
    }

    /// Counts of ordinary requests and their payload bytes since the last reset.
    pub fn received(&self) -> (u64, u64) {
        (
            self.shared.requests.load(Ordering::SeqCst),
            self.shared.request_bytes.load(Ordering::SeqCst),
        )
    }

    /// Resets [`BenchMe::received`].
    pub fn reset_received(&self) {
        self.shared.requests.store(0, Ordering::SeqCst);
        self.shared.request_bytes.store(0, Ordering::SeqCst);
    }

    /// Waits until at least `bytes` ordinary request payload bytes arrived.
    ///
    /// # Errors
    /// The timeout or a failed link.
    pub async fn wait_request_bytes(&self, bytes: u64, timeout: Duration) -> anyhow::Result<()> {
        self.wait_until(timeout, || self.received().1 >= bytes)
            .await
            .with_context(|| {
                format!(
                    "{bytes} request bytes at the ME (have {})",
                    self.received().1
                )
            })
    }

    /// Sink mode credit: every later request of client `i` of `phase` adds a permit to the
    /// `i`-th returned semaphore (each starting with `window` permits), so uploading
    /// clients keep at most `window` requests between them and the ME without any answer
    /// through the proxy.
    ///
    /// # Errors
    /// A client of `phase` whose warm-up the ME has not seen.
    pub fn arm_sink(
        &self,
        phase: u64,
        clients: usize,
        window: usize,
    ) -> anyhow::Result<Vec<Arc<Semaphore>>> {
        let seen = lock(&self.shared.seen);
        let mut credit = lock(&self.shared.credit);
        credit.clear();
        let mut out = Vec::with_capacity(clients);
        for i in 0..clients {
            let s = seen
                .get(&(phase, i as u32))
                .with_context(|| format!("no warm-up seen from client {i}"))?;
            let sem = Arc::new(Semaphore::new(window));
            credit.insert(s.conn_id, sem.clone());
            out.push(sem);
        }
        Ok(out)
    }

    /// Every link precomputes `per_client` RPC_PROXY_ANS frames carrying `answer` for each
    /// client of `phase` it carries (round robin), then releases one per later request of
    /// that client. Returns the number of clients armed.
    ///
    /// # Errors
    /// A link gone while arming.
    pub async fn arm(&self, phase: u64, answer: Bytes, per_client: usize) -> anyhow::Result<usize> {
        let links: Vec<_> = lock(&self.shared.links).values().cloned().collect();
        let mut acks = Vec::new();
        for l in links {
            let (ack, rx) = oneshot::channel();
            if l.send(LinkCmd::Arm {
                phase,
                answer: answer.clone(),
                per_client,
                ack,
            })
            .is_ok()
            {
                acks.push(rx);
            }
        }
        let mut armed = 0;
        for a in acks {
            armed += a.await.unwrap_or(0);
        }
        Ok(armed)
    }
}

async fn me_accept(listener: TcpListener, shared: Arc<MeShared>) {
    let mut next = 0usize;
    loop {
        let accepted = tokio::select! {
            () = shared.cancel.cancelled() => return,
            a = listener.accept() => a,
        };
        let Ok((stream, _)) = accepted else { continue };
        let id = next;
        next += 1;
        tokio::spawn(me_link(shared.clone(), id, stream));
    }
}

/// Bytes for the link's writer: ready bytes, or a precomputed stream released piecewise.
enum WriteCmd {
    Bytes(Bytes),
    Stream(Arc<Released>),
}

/// A precomputed answer stream and how much of it may be written.
struct Released {
    buf: Bytes,
    allowed: AtomicUsize,
    notify: Notify,
}

async fn me_writer(
    mut wr: tokio::net::tcp::OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<WriteCmd>,
) -> std::io::Result<()> {
    while let Some(cmd) = rx.recv().await {
        match cmd {
            WriteCmd::Bytes(b) => wr.write_all(&b).await?,
            WriteCmd::Stream(s) => {
                let mut sent = 0;
                while sent < s.buf.len() {
                    let notified = s.notify.notified();
                    let allowed = s.allowed.load(Ordering::Acquire);
                    if allowed > sent {
                        let end = allowed.min(sent + WRITE_PIECE);
                        wr.write_all(&s.buf[sent..end]).await?;
                        sent = end;
                    } else {
                        notified.await;
                    }
                }
            }
        }
    }
    Ok(())
}

/// The per-link state of an armed stream.
struct Armed {
    /// conn_id → index into `owed`.
    clients: HashMap<i64, usize>,
    owed: Vec<u32>,
    /// The client index (into `owed`) of each frame, in stream order.
    order: Vec<u32>,
    /// Where each frame (with its padding) ends in the stream.
    ends: Vec<usize>,
    next: usize,
    released: Arc<Released>,
}

async fn me_link(shared: Arc<MeShared>, id: usize, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let (Ok(local), Ok(peer)) = (stream.local_addr(), stream.peer_addr()) else {
        return;
    };
    let params = LinkParams::new(shared.secret.clone(), local, peer, shared.pid);
    let mut link = RpcLink::server(params, &mut rand::thread_rng());
    let (ctl_tx, mut ctl) = mpsc::unbounded_channel();
    lock(&shared.links).insert(id, ctl_tx);
    let (mut rd, wr) = stream.into_split();
    let (wtx, wrx) = mpsc::unbounded_channel();
    let mut writer = tokio::spawn(me_writer(wr, wrx));
    let mut buf = BytesMut::with_capacity(512 * 1024);
    let mut out = BytesMut::new();
    let mut armed: Option<Armed> = None;
    let failed = loop {
        tokio::select! {
            () = shared.cancel.cancelled() => break false,
            _ = &mut writer => break false,
            cmd = ctl.recv() => match cmd {
                None => break false,
                Some(LinkCmd::Arm { phase, answer, per_client, ack }) => {
                    let a = arm_link(&shared, id, &mut link, phase, &answer, per_client);
                    let n = a.as_ref().map_or(0, |a| a.owed.len());
                    if let Some(a) = &a {
                        let _ = wtx.send(WriteCmd::Stream(a.released.clone()));
                    }
                    armed = a;
                    let _ = ack.send(n);
                }
            },
            r = rd.read_buf(&mut buf) => match r {
                Ok(0) | Err(_) => break false,
                Ok(_) => {
                    if link.handle_input(&mut buf, mtproxy::clock::unix_now()).is_err() {
                        break true;
                    }
                    let mut released = false;
                    while let Some(ev) = link.poll_event() {
                        released |= on_me_event(&shared, id, ev, &mut link, armed.as_mut());
                    }
                    if released {
                        if let Some(a) = armed.as_mut() {
                            release(a);
                        }
                    }
                    link.poll_transmit(&mut out);
                    if !out.is_empty() {
                        let _ = wtx.send(WriteCmd::Bytes(out.split().freeze()));
                    }
                    if buf.capacity() - buf.len() < 64 * 1024 {
                        buf.reserve(512 * 1024);
                    }
                }
            },
        }
    };
    if failed {
        shared.failed.store(true, Ordering::SeqCst);
    }
    lock(&shared.links).remove(&id);
    writer.abort();
    shared.bump();
}

/// Handles one link event; returns whether an armed client got credit.
fn on_me_event(
    shared: &MeShared,
    link_id: usize,
    ev: LinkEvent,
    link: &mut RpcLink,
    armed: Option<&mut Armed>,
) -> bool {
    match ev {
        LinkEvent::HandshakeDone { .. } => {
            shared.handshakes.fetch_add(1, Ordering::SeqCst);
            shared.bump();
        }
        LinkEvent::Message(RpcMessage::ProxyReq(req)) => {
            let conn_id = req.header.ext_conn_id;
            let p = &req.payload;
            if p.len() == WARMUP_LEN && p.starts_with(&WARMUP_MAGIC) {
                let mut w = [0u8; 8];
                w.copy_from_slice(&p[8..16]);
                let phase = u64::from_le_bytes(w);
                let mut c = [0u8; 4];
                c.copy_from_slice(&p[16..20]);
                let client = u32::from_le_bytes(c);
                lock(&shared.seen).insert(
                    (phase, client),
                    Seen {
                        link: link_id,
                        conn_id,
                    },
                );
                let _ = link.send(&RpcMessage::ProxyAns {
                    flags: 0,
                    conn_id,
                    data: req.payload,
                });
                return false;
            }
            shared.requests.fetch_add(1, Ordering::Relaxed);
            shared
                .request_bytes
                .fetch_add(p.len() as u64, Ordering::Relaxed);
            match shared.mode.load(Ordering::Relaxed) {
                0 => {
                    let _ = link.send(&RpcMessage::ProxyAns {
                        flags: 0,
                        conn_id,
                        data: req.payload,
                    });
                }
                1 => {
                    if let Some(c) = lock(&shared.credit).get(&conn_id) {
                        c.add_permits(1);
                    }
                }
                2 => {
                    if let Some(a) = armed {
                        if let Some(&i) = a.clients.get(&conn_id) {
                            if let Some(o) = a.owed.get_mut(i) {
                                *o += 1;
                                return true;
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        _ => {}
    }
    false
}

/// Releases every next frame whose client is owed an answer.
fn release(a: &mut Armed) {
    let start = a.next;
    while let Some(&c) = a.order.get(a.next) {
        match a.owed.get_mut(c as usize) {
            Some(o) if *o > 0 => {
                *o -= 1;
                a.next += 1;
            }
            _ => break,
        }
    }
    if a.next > start {
        if let Some(&end) = a.ends.get(a.next - 1) {
            a.released.allowed.store(end, Ordering::Release);
            a.released.notify.notify_one();
        }
    }
}

/// Precomputes this link's answer stream for `phase` (None: no client of it here).
fn arm_link(
    shared: &MeShared,
    link_id: usize,
    link: &mut RpcLink,
    phase: u64,
    answer: &Bytes,
    per_client: usize,
) -> Option<Armed> {
    let mut mine: Vec<(u32, i64)> = lock(&shared.seen)
        .iter()
        .filter(|((p, _), s)| *p == phase && s.link == link_id)
        .map(|((_, c), s)| (*c, s.conn_id))
        .collect();
    if mine.is_empty() || per_client == 0 {
        return None;
    }
    mine.sort_unstable();
    let frames = mine.len() * per_client;
    // Frame: 12 bytes of framing, 16 of PROXY_ANS header, the data, ≤ 12 of padding.
    let mut buf = BytesMut::with_capacity(frames * (answer.len() + 40));
    let mut order = Vec::with_capacity(frames);
    let mut ends = Vec::with_capacity(frames);
    for _ in 0..per_client {
        for (i, (_, conn_id)) in mine.iter().enumerate() {
            let _ = link.send(&RpcMessage::ProxyAns {
                flags: 0,
                conn_id: *conn_id,
                data: answer.clone(),
            });
            link.poll_transmit(&mut buf);
            order.push(i as u32);
            ends.push(buf.len());
        }
    }
    Some(Armed {
        clients: mine
            .iter()
            .enumerate()
            .map(|(i, (_, id))| (*id, i))
            .collect(),
        owed: vec![0; mine.len()],
        order,
        ends,
        next: 0,
        released: Arc::new(Released {
            buf: buf.freeze(),
            allowed: AtomicUsize::new(0),
            notify: Notify::new(),
        }),
    })
}

// ---------------------------------------------------------------------------------------
// Proxies under test.

/// A proxy started for benchmarking, optionally pinned to CPUs with `taskset`, with the
/// same command line as the dual-run ([`crate::process::ProxyProcessBuilder::args`]).
#[derive(Debug)]
pub struct BenchProxy {
    child: tokio::process::Child,
    pid: u32,
    client_addr: SocketAddr,
    stats_addr: SocketAddr,
    started: Instant,
    dir: PathBuf,
    log: PathBuf,
}

/// How to start a [`BenchProxy`].
#[derive(Debug, Clone)]
pub struct ProxySpec {
    /// The binary.
    pub binary: PathBuf,
    /// `taskset -c` list (e.g. `"1"`), or none.
    pub cpus: Option<String>,
    /// The client secret (`-S`).
    pub secret: [u8; 16],
    /// The proxy-secret file's bytes (shared with the [`BenchMe`]).
    pub proxy_secret: Vec<u8>,
    /// The ME address every dc maps to.
    pub me: SocketAddr,
    /// `-c`.
    pub max_connections: u32,
    /// `-M` (0: none, a single process).
    pub workers: u32,
    /// Short name for files (`candidate`, `reference`).
    pub label: String,
    /// Where the proxy's output goes.
    pub log_dir: PathBuf,
}

impl BenchProxy {
    /// Writes the config files and starts the proxy (as `taskset -c CPUS binary ARGS`).
    ///
    /// # Errors
    /// Files or the spawn failing.
    pub fn spawn(spec: &ProxySpec) -> anyhow::Result<BenchProxy> {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!(
            "mtbench-{}-{}-{:x}",
            spec.label,
            std::process::id(),
            rand::thread_rng().gen::<u32>()
        ));
        std::fs::create_dir_all(&dir)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
        let targets: Vec<(i16, SocketAddr)> = (1..=5)
            .flat_map(|dc| [(dc, spec.me), (-dc, spec.me)])
            .collect();
        let builder = ProxyProcess::builder(&spec.binary)
            .secrets(&[spec.secret])
            .me_targets(&targets)
            .max_connections(spec.max_connections)
            .workers(spec.workers);
        let conf = dir.join("proxy-multi.conf");
        let secret = dir.join("proxy-secret");
        std::fs::write(&conf, builder.multi_conf())?;
        std::fs::write(&secret, &spec.proxy_secret)?;
        for f in [&conf, &secret] {
            std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o644))?;
        }
        let client_port = crate::process::free_port()?;
        let stats_port = crate::process::free_port()?;
        let args = builder.args(client_port, stats_port, &secret, &conf);
        std::fs::create_dir_all(&spec.log_dir)?;
        let log = spec.log_dir.join(format!("{}.log", spec.label));
        let out =
            std::fs::File::create(&log).with_context(|| format!("create {}", log.display()))?;
        let err = out.try_clone()?;
        let mut cmd = match &spec.cpus {
            Some(cpus) => {
                let mut c = tokio::process::Command::new("taskset");
                c.arg("-c").arg(cpus).arg(&spec.binary);
                c
            }
            None => tokio::process::Command::new(&spec.binary),
        };
        cmd.args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .kill_on_drop(true);
        let started = Instant::now();
        let child = cmd
            .spawn()
            .with_context(|| format!("spawn {}", spec.binary.display()))?;
        let pid = child.id().context("no pid")?;
        Ok(BenchProxy {
            child,
            pid,
            client_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, client_port)),
            stats_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, stats_port)),
            started,
            dir,
            log,
        })
    }

    /// The stats (`-p`, `--http-stats`) address.
    pub fn stats_addr(&self) -> SocketAddr {
        self.stats_addr
    }

    /// The `/stats` counters that tell where packets went, as one line (for error
    /// messages): forwarded and dropped queries and answers, closed clients.
    pub async fn stats_line(&self) -> String {
        match crate::process::fetch_stats(self.stats_addr, Duration::from_secs(2)).await {
            Ok(s) => [
                "tot_forwarded_queries",
                "dropped_queries",
                "tot_forwarded_responses",
                "dropped_responses",
                "connections_failed_lru",
                "connections_failed_flood",
                "ext_connections",
                "total_special_connections",
            ]
            .iter()
            .map(|k| format!("{k}={}", s.get(*k).map_or("?", String::as_str)))
            .collect::<Vec<_>>()
            .join(" "),
            Err(e) => format!("/stats: {e:#}"),
        }
    }

    /// The process id (taskset execs the proxy, so it is the proxy's).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The client address.
    pub fn client_addr(&self) -> SocketAddr {
        self.client_addr
    }

    /// When it was spawned.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Its output file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The last lines of its output.
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// SIGTERM, then SIGKILL after `grace`.
    pub async fn stop(mut self, grace: Duration) {
        if let Ok(pid) = i32::try_from(self.pid) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        if tokio::time::timeout(grace, self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

impl Drop for BenchProxy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

// ---------------------------------------------------------------------------------------
// Client helpers.

/// A warm-up packet naming `phase` and `client`.
pub fn warmup_packet(phase: u64, client: u32) -> [u8; WARMUP_LEN] {
    let mut p = [0u8; WARMUP_LEN];
    p[..8].copy_from_slice(&WARMUP_MAGIC);
    p[8..16].copy_from_slice(&phase.to_le_bytes());
    p[16..20].copy_from_slice(&client.to_le_bytes());
    p
}

/// An encrypted-message-shaped payload of `len` bytes (rounded up to 4, at least 56).
pub fn request_payload(rng: &mut impl Rng, len: usize) -> Vec<u8> {
    crate::client::encrypted_message(rng, len)
}

/// One intermediate frame of `payload`, appended to `dst` (plaintext).
fn frame_into(payload: &[u8], dst: &mut BytesMut) -> anyhow::Result<()> {
    encode_client_frame(Transport::Intermediate, payload, false, &[], dst)
        .map_err(|e| anyhow!("framing: {e}"))
}

/// A client's precomputed connection: header and first packet, then its request stream.
struct Script {
    /// Header + framed first packet, encrypted.
    opening: Vec<u8>,
    /// The first packet (its echo is checked).
    first: Vec<u8>,
    /// Request frames after the opening, encrypted.
    stream: Vec<u8>,
    /// The proxy→client keystream.
    decrypt: AesCtr,
}

fn script(
    rng: &mut StdRng,
    secret: &[u8; 16],
    first: &[u8],
    request: &[u8],
    requests: usize,
) -> anyhow::Result<Script> {
    let mut hs = ClientHandshake::generate(rng, Some(secret), Transport::Intermediate, 2);
    let mut f = BytesMut::new();
    frame_into(first, &mut f)?;
    hs.encrypt.apply(&mut f);
    let mut opening = hs.header.to_vec();
    opening.extend_from_slice(&f);
    let mut stream = BytesMut::with_capacity(requests * (request.len() + 4));
    for _ in 0..requests {
        frame_into(request, &mut stream)?;
    }
    hs.encrypt.apply(&mut stream);
    Ok(Script {
        opening,
        first: first.to_vec(),
        stream: stream.to_vec(),
        decrypt: hs.decrypt,
    })
}

/// Reads one intermediate answer frame of exactly `expect.len()` payload bytes and checks
/// it against `expect`.
async fn read_echo(s: &mut TcpStream, decrypt: &mut AesCtr, expect: &[u8]) -> anyhow::Result<()> {
    let mut b = vec![0u8; 4 + expect.len()];
    s.read_exact(&mut b).await.context("reading the answer")?;
    decrypt.apply(&mut b);
    if b[..4] != (expect.len() as u32).to_le_bytes() || b[4..] != *expect {
        bail!("the answer is not the echo of the request");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// First accept.

/// Start-up timing of a proxy.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Startup {
    /// Spawn → a TCP connect to the client port succeeds (the socket listens).
    pub listen_ms: f64,
    /// Spawn → a client's header and first packet got its echo back (accepted, served).
    pub first_served_ms: f64,
}

/// Polls the freshly spawned `proxy` every millisecond until a client is served.
///
/// # Errors
/// Not served within `timeout`, or the proxy exited.
pub async fn first_accept(
    proxy: &mut BenchProxy,
    secret: [u8; 16],
    timeout: Duration,
) -> anyhow::Result<Startup> {
    let started = proxy.started();
    let addr = proxy.client_addr();
    let mut rng = StdRng::seed_from_u64(0x5747);
    let mut listen = None;
    while started.elapsed() < timeout {
        if !proxy.running() {
            bail!("the proxy exited during start-up:\n{}", proxy.log_tail(20));
        }
        let attempt = async {
            let mut s = TcpStream::connect(addr).await?;
            let at = started.elapsed();
            listen.get_or_insert(at);
            let _ = s.set_nodelay(true);
            let first = request_payload(&mut rng, 64);
            let mut sc = script(&mut rng, &secret, &first, &[], 0)?;
            s.write_all(&sc.opening).await?;
            tokio::time::timeout(
                Duration::from_millis(25),
                read_echo(&mut s, &mut sc.decrypt, &first),
            )
            .await
            .map_err(|_| anyhow!("no answer yet"))??;
            anyhow::Ok(started.elapsed())
        };
        if let Ok(served) = attempt.await {
            let listen = listen.unwrap_or(served);
            return Ok(Startup {
                listen_ms: listen.as_secs_f64() * 1e3,
                first_served_ms: served.as_secs_f64() * 1e3,
            });
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    bail!(
        "no client served within {timeout:?}:\n{}",
        proxy.log_tail(20)
    )
}

// ---------------------------------------------------------------------------------------
// CPU accounting around a measured window.

/// CPU use of the proxy and of this load generator over a window.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CpuUse {
    /// The window (s).
    pub seconds: f64,
    /// Proxy CPU time / window, in % of one core.
    pub proxy_percent: f64,
    /// Load-generator (this process) CPU time / window, in % of one core.
    pub loadgen_percent: f64,
    /// Proxy CPU seconds in the window.
    pub proxy_cpu_s: f64,
    /// Share of the proxy's CPU time spent in the kernel (system time), in %.
    #[serde(default)]
    pub proxy_kernel_share_percent: f64,
}

/// A started CPU window.
#[derive(Debug, Clone, Copy)]
pub struct CpuWindow {
    at: Instant,
    proxy: CpuTimes,
    me: f64,
    pid: u32,
}

impl CpuWindow {
    /// Starts a window for `pid`.
    pub fn start(pid: u32) -> Self {
        Self {
            at: Instant::now(),
            proxy: cpu_times_tree(pid).unwrap_or_default(),
            me: cpu_seconds(std::process::id()).unwrap_or(0.0),
            pid,
        }
    }

    /// Ends it.
    pub fn finish(&self) -> CpuUse {
        let seconds = self.at.elapsed().as_secs_f64().max(1e-9);
        let now = cpu_times_tree(self.pid).unwrap_or(self.proxy);
        let proxy = now.total - self.proxy.total;
        let kernel = now.system - self.proxy.system;
        let me = cpu_seconds(std::process::id()).unwrap_or(self.me) - self.me;
        CpuUse {
            seconds,
            proxy_percent: proxy / seconds * 100.0,
            loadgen_percent: me / seconds * 100.0,
            proxy_cpu_s: proxy,
            proxy_kernel_share_percent: if proxy > 0.0 {
                kernel / proxy * 100.0
            } else {
                0.0
            },
        }
    }
}

/// Idle CPU of `pid` over `window`: CPU time / wall time in %.
pub async fn idle_cpu(pid: u32, window: Duration) -> f64 {
    let w = CpuWindow::start(pid);
    tokio::time::sleep(window).await;
    w.finish().proxy_percent
}

// ---------------------------------------------------------------------------------------
// Bulk throughput.

/// One bulk phase: `clients` clients each send `requests` requests of `request_size`
/// bytes with at most `window` unanswered; the ME answers each with `answer_size` bytes.
/// With `answer_size` 0 nothing is answered: the ME counts, and a request reaching the ME
/// gives its client the credit for one more (an unbounded upload would only measure how
/// much a proxy buffers — the C build aborts with "cannot allocate tcp receive buffer").
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BulkSpec {
    /// Concurrent clients.
    pub clients: usize,
    /// Requests per client.
    pub requests: usize,
    /// Request payload bytes (a multiple of 4, at least 56).
    pub request_size: usize,
    /// Answer payload bytes (a multiple of 4; 0 for none).
    pub answer_size: usize,
    /// Unanswered requests per client at most (ignored without answers).
    pub window: usize,
}

/// What a bulk phase measured.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BulkResult {
    /// Payload bytes counted (answers, or requests when there are none).
    pub bytes: u64,
    /// Payload MB (10^6 bytes) per second.
    pub mb_per_s: f64,
    /// Payload MB per CPU second of the proxy (a contention-proof efficiency figure).
    pub mb_per_proxy_cpu_s: f64,
    /// CPU use in the window.
    pub cpu: CpuUse,
}

static PHASES: AtomicU64 = AtomicU64::new(1);

/// Runs one bulk phase against `proxy` (whose ME is `me`).
///
/// # Errors
/// A client failing, the proxy not carrying the traffic within `timeout`.
pub async fn bulk(
    me: &BenchMe,
    addr: SocketAddr,
    pid: u32,
    secret: [u8; 16],
    spec: BulkSpec,
    timeout: Duration,
) -> anyhow::Result<BulkResult> {
    let phase = PHASES.fetch_add(1, Ordering::Relaxed) ^ (u64::from(std::process::id()) << 32);
    let mut rng = StdRng::seed_from_u64(phase);
    let request = request_payload(&mut rng, spec.request_size);
    let answer = Bytes::from(request_payload(&mut rng, spec.answer_size.max(4)));
    me.set_mode(MeMode::Echo);
    // Precompute, connect and warm up every client (its warm-up tells the ME its link).
    let mut clients = Vec::with_capacity(spec.clients);
    for i in 0..spec.clients {
        let warm = warmup_packet(phase, i as u32);
        let mut sc = script(&mut rng, &secret, &warm, &request, spec.requests)?;
        let mut s = TcpStream::connect(addr).await.context("connect")?;
        let _ = s.set_nodelay(true);
        s.write_all(&sc.opening).await?;
        tokio::time::timeout(timeout, read_echo(&mut s, &mut sc.decrypt, &warm))
            .await
            .map_err(|_| anyhow!("warm-up answer timed out"))??;
        clients.push((s, sc.stream));
    }
    let answered = spec.answer_size > 0;
    let window = spec.window.max(1);
    let credits = if answered {
        let armed = me.arm(phase, answer, spec.requests).await?;
        if armed != spec.clients {
            bail!("the ME armed {armed} of {} clients", spec.clients);
        }
        me.set_mode(MeMode::Stream);
        (0..spec.clients)
            .map(|_| Arc::new(Semaphore::new(window)))
            .collect()
    } else {
        let c = me.arm_sink(phase, spec.clients, window)?;
        me.set_mode(MeMode::Sink);
        c
    };
    me.reset_received();
    let answer_wire = 4 + spec.answer_size;
    let cpu = CpuWindow::start(pid);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for ((s, stream), credit) in clients.into_iter().zip(credits) {
        tasks.spawn(bulk_client(s, stream, spec, answered, answer_wire, credit));
    }
    let deadline = tokio::time::Instant::now() + timeout;
    // Connections stay open until the phase is over (the ME may still be counting).
    let mut open = Vec::with_capacity(spec.clients);
    while let Some(r) = tokio::time::timeout_at(deadline, tasks.join_next())
        .await
        .map_err(|_| anyhow!("bulk phase timed out after {timeout:?}"))?
    {
        open.push(r.context("bulk client task")??);
    }
    let bytes = if answered {
        (spec.clients * spec.requests * spec.answer_size) as u64
    } else {
        let total = (spec.clients * spec.requests * spec.request_size) as u64;
        me.wait_request_bytes(
            total,
            deadline.saturating_duration_since(tokio::time::Instant::now()),
        )
        .await?;
        total
    };
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu.finish();
    drop(open);
    me.set_mode(MeMode::Echo);
    Ok(BulkResult {
        bytes,
        mb_per_s: bytes as f64 / elapsed / 1e6,
        mb_per_proxy_cpu_s: if cpu.proxy_cpu_s > 0.0 {
            bytes as f64 / cpu.proxy_cpu_s / 1e6
        } else {
            0.0
        },
        cpu,
    })
}

async fn bulk_client(
    s: TcpStream,
    stream: Vec<u8>,
    spec: BulkSpec,
    answered: bool,
    answer_wire: usize,
    credit: Arc<Semaphore>,
) -> anyhow::Result<TcpStream> {
    let (mut rd, mut wr) = s.into_split();
    let frame = spec.request_size + 4;
    let total = spec.requests;
    let c2 = credit.clone();
    let writer = async move {
        let mut i = 0;
        while i < total {
            let p = c2.acquire().await.map_err(|_| anyhow!("credit closed"))?;
            p.forget();
            let mut k = 1;
            while i + k < total && k * frame < WRITE_PIECE {
                match c2.try_acquire() {
                    Ok(p) => {
                        p.forget();
                        k += 1;
                    }
                    Err(_) => break,
                }
            }
            wr.write_all(&stream[i * frame..(i + k) * frame]).await?;
            i += k;
        }
        anyhow::Ok(wr)
    };
    let reader = async move {
        if !answered {
            // The ME hands out the credit; nothing comes back through the proxy.
            return anyhow::Ok(rd);
        }
        let mut buf = vec![0u8; WRITE_PIECE];
        let mut got = 0usize;
        let mut answers = 0usize;
        let want = total * answer_wire;
        while got < want {
            let n = rd.read(&mut buf).await?;
            if n == 0 {
                bail!("the proxy closed the connection after {answers} answers");
            }
            got += n;
            let now = got / answer_wire;
            if now > answers {
                credit.add_permits(now - answers);
                answers = now;
            }
        }
        if got != want {
            bail!("{got} answer bytes, expected {want}");
        }
        anyhow::Ok(rd)
    };
    let (w, r) = tokio::join!(writer, reader);
    Ok(r?.reunite(w?)?)
}

// ---------------------------------------------------------------------------------------
// Connection rate.

/// What the connection-rate phase measured.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ConnRateResult {
    /// Connections completed (connect, header, one packet echoed, close).
    pub connections: u64,
    /// Connections that failed.
    pub failures: u64,
    /// Completed connections per second.
    pub per_s: f64,
    /// Completed connections per CPU second of the proxy.
    pub per_proxy_cpu_s: f64,
    /// CPU use in the window.
    pub cpu: CpuUse,
}

/// `concurrency` tasks open connections back to back for `duration` (at most `max`
/// connections, all precomputed): connect, send header and a 64-byte packet, read its
/// echo (every 8th checked byte for byte), close.
///
/// # Errors
/// More than 1 % of the connections failing.
pub async fn conn_rate(
    addr: SocketAddr,
    pid: u32,
    secret: [u8; 16],
    concurrency: usize,
    duration: Duration,
    max: usize,
) -> anyhow::Result<ConnRateResult> {
    let mut rng = StdRng::seed_from_u64(CONN_SEED);
    // Every 8th connection checks the echo byte for byte; the others check its length
    // (so the precomputed set stays small: no keystream state kept for them).
    let mut scripts = Vec::with_capacity(max);
    for i in 0..max {
        let first = request_payload(&mut rng, 64);
        let sc = script(&mut rng, &secret, &first, &[], 0)?;
        let check = (i % 8 == 0).then_some((sc.decrypt, sc.first));
        scripts.push(Mutex::new(Some((sc.opening, check))));
    }
    let scripts = Arc::new(scripts);
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let cpu = CpuWindow::start(pid);
    let started = Instant::now();
    let stop_at = started + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (scripts, next, done, failed) =
            (scripts.clone(), next.clone(), done.clone(), failed.clone());
        tasks.spawn(async move {
            while Instant::now() < stop_at {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(slot) = scripts.get(i) else { break };
                let Some((opening, check)) = lock(slot).take() else {
                    continue;
                };
                let one = async {
                    let mut s = TcpStream::connect(addr).await?;
                    let _ = s.set_nodelay(true);
                    s.write_all(&opening).await?;
                    match check {
                        Some((mut decrypt, first)) => read_echo(&mut s, &mut decrypt, &first).await,
                        None => {
                            let mut b = [0u8; 68];
                            s.read_exact(&mut b).await?;
                            anyhow::Ok(())
                        }
                    }
                };
                match tokio::time::timeout(Duration::from_secs(5), one).await {
                    Ok(Ok(())) => done.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu.finish();
    let connections = done.load(Ordering::Relaxed);
    let failures = failed.load(Ordering::Relaxed);
    if failures * 100 > connections.max(1) {
        bail!(
            "{failures} of {} connections failed",
            connections + failures
        );
    }
    Ok(ConnRateResult {
        connections,
        failures,
        per_s: connections as f64 / elapsed,
        per_proxy_cpu_s: if cpu.proxy_cpu_s > 0.0 {
            connections as f64 / cpu.proxy_cpu_s
        } else {
            0.0
        },
        cpu,
    })
}

/// Seed of the connection-rate scripts.
const CONN_SEED: u64 = u64::from_le_bytes(*b"connrate");

// ---------------------------------------------------------------------------------------
// Latency at light load.

/// Round-trip latency percentiles.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LatencyResult {
    /// Round trips measured.
    pub samples: u64,
    /// Requests per second offered (all clients).
    pub offered_per_s: f64,
    /// Median (µs).
    pub p50_us: f64,
    /// 90th percentile (µs).
    pub p90_us: f64,
    /// 99th percentile (µs).
    pub p99_us: f64,
    /// 99.9th percentile (µs).
    pub p999_us: f64,
    /// Maximum (µs).
    pub max_us: f64,
    /// CPU use in the window.
    pub cpu: CpuUse,
}

/// `clients` clients each send a `size`-byte packet at exponentially distributed
/// intervals (together `rate` per second) for `duration`, timing each echo.
///
/// # Errors
/// A client failing.
pub async fn latency(
    addr: SocketAddr,
    pid: u32,
    secret: [u8; 16],
    clients: usize,
    rate: f64,
    size: usize,
    duration: Duration,
) -> anyhow::Result<LatencyResult> {
    // Every call has its own seeds: a client header seen before is a replay, which the
    // candidate answers with silence (a second latency phase against the same proxy
    // would time out on its first client).
    let phase = PHASES.fetch_add(1, Ordering::Relaxed) ^ (u64::from(std::process::id()) << 32);
    let mut conns = Vec::with_capacity(clients);
    for i in 0..clients {
        let cfg = ClientConfig::new(Transport::Intermediate)
            .secret(secret)
            .dc(2)
            .seed(phase.wrapping_mul(0x1_0000).wrapping_add(0x1a7e + i as u64))
            .timeout(Duration::from_secs(5));
        let mut c = SimClient::connect(addr, cfg).await?;
        let warm = request_payload(&mut StdRng::seed_from_u64(i as u64), size);
        let ex = c.request(&warm, false).await?;
        if ex.answer != warm {
            bail!("latency warm-up: the answer is not the echo");
        }
        conns.push(c);
    }
    let per_client_gap = clients as f64 / rate.max(1.0);
    let cpu = CpuWindow::start(pid);
    let stop = Instant::now() + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for (i, mut c) in conns.into_iter().enumerate() {
        tasks.spawn(async move {
            let mut rng = StdRng::seed_from_u64(0x7a7e_0000 + i as u64);
            let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
            loop {
                // Exponential gaps: a Poisson arrival process per client.
                let u: f64 = rng.gen_range(1e-9..1.0);
                let gap = Duration::from_secs_f64(-u.ln() * per_client_gap);
                if Instant::now() + gap >= stop {
                    break;
                }
                tokio::time::sleep(gap).await;
                let payload = request_payload(&mut rng, size);
                let ex = c.request(&payload, false).await?;
                if ex.answer != payload {
                    bail!("the answer is not the echo");
                }
                h.record(ex.latency.as_micros().max(1) as u64)?;
            }
            c.close().await;
            anyhow::Ok(h)
        });
    }
    let mut all = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    while let Some(r) = tasks.join_next().await {
        all.add(r.context("latency client task")??)?;
    }
    let cpu = cpu.finish();
    let q = |x: f64| all.value_at_quantile(x) as f64;
    Ok(LatencyResult {
        samples: all.len(),
        offered_per_s: rate,
        p50_us: q(0.5),
        p90_us: q(0.9),
        p99_us: q(0.99),
        p999_us: q(0.999),
        max_us: all.max() as f64,
        cpu,
    })
}

// ---------------------------------------------------------------------------------------
// Idle clients.

/// Connected clients that did one round trip and now sit idle.
#[derive(Debug, Default)]
pub struct IdleClients {
    conns: Vec<TcpStream>,
}

impl IdleClients {
    /// How many are open.
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    /// Whether none is open.
    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// Opens `n` more (at most `concurrency` handshakes at a time): connect, header, a
    /// 64-byte packet, its echo checked.
    ///
    /// # Errors
    /// A connection failing.
    pub async fn open(
        &mut self,
        addr: SocketAddr,
        secret: [u8; 16],
        n: usize,
        concurrency: usize,
    ) -> anyhow::Result<()> {
        let base = self.conns.len() as u64;
        let sem = Arc::new(Semaphore::new(concurrency.max(1)));
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..n {
            let sem = sem.clone();
            tasks.spawn(async move {
                let _p = sem.acquire_owned().await?;
                let mut rng = StdRng::seed_from_u64(0x1d1e_0000_0000 + base + i as u64);
                let first = request_payload(&mut rng, 64);
                let mut sc = script(&mut rng, &secret, &first, &[], 0)?;
                let mut s = TcpStream::connect(addr).await?;
                s.write_all(&sc.opening).await?;
                tokio::time::timeout(
                    Duration::from_secs(10),
                    read_echo(&mut s, &mut sc.decrypt, &first),
                )
                .await
                .map_err(|_| anyhow!("idle client: no echo"))??;
                anyhow::Ok(s)
            });
        }
        while let Some(r) = tasks.join_next().await {
            self.conns.push(r.context("idle client task")??);
        }
        Ok(())
    }

    /// Closes them all.
    pub fn close(&mut self) {
        self.conns.clear();
    }
}

/// 16 random bytes for a client secret (`-S`).
pub fn fresh_secret() -> [u8; 16] {
    let mut s = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut s);
    s
}

/// 128 random proxy-secret bytes.
pub fn fresh_proxy_secret() -> Vec<u8> {
    let mut s = vec![0u8; 128];
    rand::thread_rng().fill_bytes(&mut s);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_cpu_skips_the_command_name() {
        let line = "42 (a b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 100 1000 10";
        assert_eq!(parse_stat_cpu(line), Some(3.0));
        assert_eq!(
            parse_stat_times(line),
            Some(CpuTimes {
                total: 3.0,
                system: 0.5
            })
        );
    }

    #[test]
    fn status_rss_in_bytes() {
        let s = "Name:\tx\nVmRSS:\t    2048 kB\nRssAnon:\t    1024 kB\n";
        assert_eq!(
            parse_status_rss(s),
            Rss {
                rss: 2 << 20,
                anon: 1 << 20
            }
        );
    }

    #[test]
    fn warmup_packets_name_phase_and_client() {
        let p = warmup_packet(7, 3);
        assert!(p.starts_with(&WARMUP_MAGIC));
        assert_eq!(p[8], 7);
        assert_eq!(p[16], 3);
    }
}
