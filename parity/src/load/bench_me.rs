//! The bench ME: a lean fake middle end (the FakeMe's RPC server role without the
//! per-request recording) that echoes, counts, or releases precomputed answer streams.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::{Bytes, BytesMut};
use mtproxy::protocol::rpc::{LinkEvent, LinkParams, ProcessId, RpcLink, RpcMessage};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, Notify, Semaphore};
use tokio_util::sync::{CancellationToken, DropGuard};

use super::script::{WARMUP_LEN, WARMUP_MAGIC, WRITE_PIECE};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

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
