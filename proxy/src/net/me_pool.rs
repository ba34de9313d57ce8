//! The middle-end pool (§5.1): `min_connections` links per distinct ip:port target,
//! each connecting and handshaking within 3 s, reconnecting with C's backoff, carrying
//! the RPC traffic of the clients pinned to it.
//!
//! Every link runs as two tasks: a reader (socket → [`RpcLink::handle_input`] → events
//! routed to clients by `conn_id`) and a writer (client commands →
//! [`RpcLink::send_proxy_req`] → socket). Under load a writer encrypts together with the
//! other links of its target ([`RpcLink::seal_pending`]): AES-CBC encryption is
//! sequential within one link, so interleaving the links' chains is what lets one core
//! encrypt at more than AES latency speed. The writer's command queue is bounded, so a
//! middle end that stops reading makes its clients' `send` wait, and those clients stop
//! reading their sockets: backpressure all the way back to the client's TCP window
//! instead of C's unbounded buffering (which ends in an assert and a dead proxy).
//!
//! When a link is lost, every client pinned to it is closed (as C does).

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::BytesMut;
use rand::seq::SliceRandom;
use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::multi_conf::MultiConf;
use crate::net::client::{deliver, Outcome};
use crate::net::{nat_ip, Shared};
use crate::protocol::rpc::{LinkEvent, LinkParams, ProxyReqHeader, RpcLink, RpcMessage};
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

pub use crate::net::inbox::{ClientHandle, ToClient};

/// A command for a link's writer.
#[derive(Debug)]
pub enum MeCmd {
    /// Forward a client packet as RPC_PROXY_REQ.
    ProxyReq {
        /// The client's `ext_conn_id`.
        conn_id: i64,
        /// PROXY_REQ flags (the tag flag is added by the writer when `-P` is set).
        flags: u32,
        /// The client's address.
        client_addr: SocketAddr,
        /// Our address as the client reached it (NAT-translated).
        proxy_addr: SocketAddr,
        /// The client's MTProto packet.
        payload: BytesMut,
    },
    /// Tell the middle end a client is gone (RPC_CLOSE_CONN).
    CloseConn {
        /// The client's `ext_conn_id`.
        conn_id: i64,
    },
    /// Write out what the link queued by itself (RPC_PONG answers).
    Flush,
}

impl MeCmd {
    /// Payload bytes carried (0 for control commands).
    fn len(&self) -> usize {
        match self {
            MeCmd::ProxyReq { payload, .. } => payload.len(),
            MeCmd::CloseConn { .. } | MeCmd::Flush => 0,
        }
    }
}

/// One ready middle-end link.
#[derive(Debug)]
pub struct MeConn {
    target: SocketAddr,
    tx: mpsc::Sender<MeCmd>,
    ctl: mpsc::UnboundedSender<MeCmd>,
    clients: Mutex<HashMap<i64, ClientHandle>>,
    alive: AtomicBool,
}

impl MeConn {
    /// The target this link belongs to.
    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// Whether the link is still up.
    pub fn is_alive(&self) -> bool {
        self.alive.load(Relaxed)
    }

    /// Pins a client to this link.
    pub fn register(&self, conn_id: i64, handle: ClientHandle) {
        lock(&self.clients).insert(conn_id, handle);
    }

    /// Unpins a client; returns whether it was pinned.
    pub fn unregister(&self, conn_id: i64) -> bool {
        lock(&self.clients).remove(&conn_id).is_some()
    }

    /// Queues a command, waiting while the link's queue is full.
    ///
    /// # Errors
    /// When the link is gone.
    pub async fn send(&self, cmd: MeCmd) -> Result<(), ()> {
        if !self.is_alive() {
            return Err(());
        }
        self.tx.send(cmd).await.map_err(drop)
    }

    /// Queues RPC_CLOSE_CONN without waiting.
    pub fn send_close_conn(&self, conn_id: i64) {
        let _ = self.ctl.send(MeCmd::CloseConn { conn_id });
    }

    fn client(&self, conn_id: i64) -> Option<ClientHandle> {
        lock(&self.clients).get(&conn_id).cloned()
    }
}

/// One target (a distinct ip:port of the config) and its ready links.
#[derive(Debug)]
struct Target {
    addr: SocketAddr,
    ready: Mutex<Vec<Arc<MeConn>>>,
    /// The RPC state of every ready link, so a writer can encrypt the frames its sibling
    /// links queued together with its own ([`RpcLink::seal_pending`]).
    links: Mutex<Vec<Arc<Mutex<RpcLink>>>>,
    cancel: CancellationToken,
}

#[derive(Default)]
struct PoolState {
    conf: Option<Arc<MultiConf>>,
    targets: HashMap<SocketAddr, Arc<Target>>,
}

/// The pool: current config, targets and their ready links.
#[derive(Default)]
pub struct MePool {
    state: RwLock<PoolState>,
}

impl MePool {
    /// Picks a ready link for a client of `dc`: the dc's cluster (else the default
    /// cluster), a random target of it and a random ready link of that target, 5 tries
    /// as C. `None` drops the packet.
    pub fn pick(&self, dc: i16) -> Option<Arc<MeConn>> {
        let st = self.state.read().unwrap_or_else(|p| p.into_inner());
        let cluster = st.conf.as_ref()?.cluster_for_dc(dc)?;
        let mut rng = rand::thread_rng();
        for _ in 0..5 {
            let addr = cluster.targets.choose(&mut rng)?;
            let Some(t) = st.targets.get(addr) else {
                continue;
            };
            let ready = lock(&t.ready);
            if let Some(c) = ready.choose(&mut rng) {
                return Some(c.clone());
            }
        }
        None
    }

    /// The config in force.
    pub fn conf(&self) -> Option<Arc<MultiConf>> {
        self.state
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .conf
            .clone()
    }

    /// Applies `conf`: targets that stay keep their links (and their clients); new
    /// targets get `min_connections` links; removed targets are closed, with their
    /// clients. Used at start-up and on SIGHUP.
    pub fn apply(shared: &Arc<Shared>, conf: Arc<MultiConf>, shutdown: &CancellationToken) {
        let wanted: HashSet<SocketAddr> = conf.targets.iter().copied().collect();
        let per_target = usize::try_from(conf.min_connections.max(1)).unwrap_or(1);
        let mut st = shared.pool.state.write().unwrap_or_else(|p| p.into_inner());
        let removed: Vec<SocketAddr> = st
            .targets
            .keys()
            .filter(|a| !wanted.contains(a))
            .copied()
            .collect();
        for addr in removed {
            if let Some(t) = st.targets.remove(&addr) {
                tracing::info!(target_addr = %addr, "middle-end target removed from config");
                t.cancel.cancel();
            }
        }
        for addr in &conf.targets {
            if st.targets.contains_key(addr) {
                continue;
            }
            let t = Arc::new(Target {
                addr: *addr,
                ready: Mutex::new(Vec::new()),
                links: Mutex::new(Vec::new()),
                cancel: shutdown.child_token(),
            });
            for _ in 0..per_target {
                tokio::spawn(link_slot(shared.clone(), t.clone()));
            }
            st.targets.insert(*addr, t);
        }
        let c = &shared.counters;
        c.total_declared_targets
            .store(conf.total_declared_targets() as i64, Relaxed);
        c.total_allocated_targets
            .store(st.targets.len() as i64, Relaxed);
        st.conf = Some(conf);
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
async fn link_slot(shared: Arc<Shared>, target: Arc<Target>) {
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
            r = tokio::time::timeout(CONNECT_TIMEOUT, connect(&shared, target.addr)) => Some(r),
        };
        match attempt {
            None => {}
            Some(Ok(Ok((stream, link)))) => {
                backoff = None;
                serve_link(&shared, &target, stream, link).await;
            }
            Some(Ok(Err(e))) => {
                inc(&shared.counters.total_connect_failures);
                tracing::debug!(target_addr = %target.addr, error = %e, "middle-end connection failed");
            }
            Some(Err(_)) => {
                inc(&shared.counters.total_connect_failures);
                tracing::debug!(target_addr = %target.addr, "middle-end connect+handshake timed out (3 s)");
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
async fn serve_link(shared: &Arc<Shared>, target: &Arc<Target>, stream: TcpStream, link: RpcLink) {
    let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
    let (ctl, ctl_rx) = mpsc::unbounded_channel();
    let conn = Arc::new(MeConn {
        target: target.addr,
        tx,
        ctl,
        clients: Mutex::new(HashMap::new()),
        alive: AtomicBool::new(true),
    });
    let c = &shared.counters;
    inc(&c.total_encrypted_connections);
    inc(&c.ready_outbound_connections);
    {
        let mut ready = lock(&target.ready);
        ready.push(conn.clone());
        if ready.len() == 1 {
            inc(&c.total_ready_targets);
        }
    }
    tracing::info!(target_addr = %target.addr, "connected to RPC middle-end");
    let link = Arc::new(Mutex::new(link));
    lock(&target.links).push(link.clone());
    let (rd, wr) = stream.into_split();
    let stop = target.cancel.child_token();
    let writer = tokio::spawn(write_loop(
        shared.clone(),
        target.clone(),
        link.clone(),
        wr,
        rx,
        ctl_rx,
        stop.clone(),
    ));
    let reason = read_loop(shared, &conn, &link, rd, &stop).await;
    stop.cancel();
    let _ = writer.await;
    lock(&target.links).retain(|l| !Arc::ptr_eq(l, &link));
    conn.alive.store(false, Relaxed);
    {
        let mut ready = lock(&target.ready);
        ready.retain(|x| !Arc::ptr_eq(x, &conn));
        if ready.is_empty() {
            dec(&c.total_ready_targets);
        }
    }
    dec(&c.total_encrypted_connections);
    dec(&c.ready_outbound_connections);
    let clients: Vec<ClientHandle> = lock(&conn.clients).drain().map(|(_, h)| h).collect();
    tracing::info!(target_addr = %target.addr, reason, clients = clients.len(), "disconnected from RPC middle-end");
    for h in clients {
        let _ = h.push(ToClient::Close(Outcome::ClosedByMe));
    }
}

async fn read_loop(
    shared: &Arc<Shared>,
    conn: &Arc<MeConn>,
    link: &Mutex<RpcLink>,
    rd: tokio::net::tcp::OwnedReadHalf,
    stop: &CancellationToken,
) -> &'static str {
    let mut buf = BytesMut::with_capacity(ME_READ_CHUNK);
    let c = &shared.counters;
    loop {
        if buf.capacity() - buf.len() < ME_READ_CHUNK / 4 {
            buf.reserve(ME_READ_CHUNK);
        }
        tokio::select! {
            () = stop.cancelled() => return "closed",
            r = rd.readable() => if r.is_err() { return "read error" },
        }
        match crate::net::client::read_into(rd.as_ref(), &mut buf) {
            Ok(0) => return "middle end closed the connection",
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => return "read error",
        }
        let mut events = Vec::new();
        {
            let mut l = lock(link);
            if l.handle_input(&mut buf, crate::clock::unix_now()).is_err() {
                return "protocol error";
            }
            while let Some(ev) = l.poll_event() {
                events.push(ev);
            }
            if l.has_transmit() {
                // A PONG was queued by the link: wake the writer.
                let _ = conn.ctl.send(MeCmd::Flush);
            }
        }
        for ev in events {
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
                    if let Some(h) = lock(&conn.clients).remove(&conn_id) {
                        let _ = h.push(ToClient::Close(Outcome::ClosedByMe));
                    }
                }
                LinkEvent::Message(RpcMessage::Ping { .. } | RpcMessage::Pong { .. }) => {}
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
    }
}

async fn write_loop(
    shared: Arc<Shared>,
    target: Arc<Target>,
    link: Arc<Mutex<RpcLink>>,
    mut wr: tokio::net::tcp::OwnedWriteHalf,
    mut rx: mpsc::Receiver<MeCmd>,
    mut ctl_rx: mpsc::UnboundedReceiver<MeCmd>,
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
        let mut bytes = batch.first().map_or(0, MeCmd::len);
        while batch.len() < WRITE_BATCH && bytes < FLUSH_BYTES {
            match ctl_rx.try_recv().or_else(|_| rx.try_recv()) {
                Ok(cmd) => {
                    bytes += cmd.len();
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
                        l.send_proxy_req(&h, &payload)
                    }
                    MeCmd::Flush => Ok(()),
                    MeCmd::CloseConn { conn_id } => l.send(&RpcMessage::CloseConn { conn_id }),
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
        lock(&link).poll_transmit(&mut out);
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
        }
    }
}

/// How many sibling links of `own` have frames queued for encryption, and how many have
/// none (`None`: `own` has none left, a sibling already encrypted them).
fn pending_siblings(target: &Target, own: &Arc<Mutex<RpcLink>>) -> Option<(usize, usize)> {
    if lock(own).pending_len() == 0 {
        return None;
    }
    let siblings = lock(&target.links);
    let (mut pending, mut idle) = (0, 0);
    for l in siblings.iter().filter(|l| !Arc::ptr_eq(l, own)) {
        match l.try_lock() {
            Ok(g) if g.pending_len() > 0 => pending += 1,
            Ok(_) => idle += 1,
            Err(_) => {}
        }
    }
    Some((pending, idle))
}

/// Encrypts the queued frames of `own` together with those of every sibling link of
/// `target` that is not busy (locked) right now.
fn seal_target(target: &Target, own: &Arc<Mutex<RpcLink>>) {
    let siblings: Vec<Arc<Mutex<RpcLink>>> = lock(&target.links).clone();
    // Our own link first and blocking; the others only if free, so two writers sealing at
    // the same time never wait for each other.
    let mut guards = vec![lock(own)];
    for l in &siblings {
        if Arc::ptr_eq(l, own) {
            continue;
        }
        if let Ok(g) = l.try_lock() {
            if g.pending_len() > 0 {
                guards.push(g);
            }
        }
    }
    let mut links: Vec<&mut RpcLink> = guards.iter_mut().map(|g| &mut **g).collect();
    RpcLink::seal_pending(&mut links);
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
