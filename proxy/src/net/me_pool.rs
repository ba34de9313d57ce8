//! The middle-end pool (§5.1): the config in force, its targets (distinct ip:port) with
//! their ready links, and the pick of a link for a client. The links' tasks are in
//! [`super::me_link`].
//!
//! A link's writer takes commands from a queue bounded in count ([`MeConn::send`]'s
//! channel) and in payload bytes ([`LINK_QUEUE_BYTES`]), so a middle end that stops
//! reading makes its clients' [`MeConn::send`] wait, and those clients stop reading their
//! sockets: backpressure all the way back to the client's TCP window instead of C's
//! unbounded buffering (which ends in an assert and a dead proxy). The byte bound is what
//! holds memory: a count alone let 256 queued 128 KiB packets per link, 128 MiB for the
//! four links of one stalled target.
//!
//! Control messages (RPC_CLOSE_CONN) must not wait, so they go through a second channel
//! that does not block its senders; it is bounded by count instead: a link that has
//! [`CTL_QUEUE_LIMIT`] of them queued and unwritten is declared broken and closed (its
//! middle end makes us queue control messages it does not read — e.g. it keeps answering
//! for connections we already closed — and a link that does not read cannot carry its
//! clients anyway). `Flush` wake-ups are coalesced: at most one is queued at a time.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::AcqRel, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};

use bytes::BytesMut;
use rand::seq::SliceRandom;
use tokio::sync::{mpsc, Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::config::multi_conf::MultiConf;
use crate::net::inbox::ClientHandle;
use crate::protocol::rpc::RpcLink;

/// RPC_CLOSE_CONN commands one link may have queued and not yet taken by its writer: one
/// more declares the link broken ([`MeConn::is_broken`]). A writer takes them as fast as
/// the middle end reads, so they pile up only behind a middle end that does not read; the
/// bound is far above the burst of a mass client disconnect on one link, and holds the
/// queue to about 2 MiB of commands.
pub const CTL_QUEUE_LIMIT: usize = 16 * 1024;

/// Payload bytes of RPC_PROXY_REQ one link may have queued and not yet encrypted; a
/// client whose packet does not fit waits ([`MeConn::send`]). A packet larger than the
/// bound takes all of it. A writer takes 64 KiB per write, so 1 MiB keeps a link busy
/// at full speed while a middle end that does not read holds at most this much (plus
/// the one write in flight) per link.
pub const LINK_QUEUE_BYTES: usize = 1 << 20;

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
    pub fn payload_len(&self) -> usize {
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
    /// RPC_CLOSE_CONN commands sent on `ctl` and not yet taken by the writer.
    ctl_queued: AtomicUsize,
    /// A `Flush` is on `ctl` and not yet taken by the writer (coalesces wake-ups).
    flush_queued: AtomicBool,
    /// Bytes of RPC_PONG frames the link queued and the writer has not yet written.
    unsent_pongs: AtomicUsize,
    /// Room for PROXY_REQ payload in the data queue, in bytes ([`LINK_QUEUE_BYTES`]):
    /// taken by [`MeConn::send`], given back by the writer ([`MeConn::took_payload`]),
    /// closed when the link is shut (waiting senders fail).
    queue_room: Semaphore,
    /// Cancelled when the control queue overflows: the link must be closed.
    broken: CancellationToken,
    /// Notified by the writer after each write: what a reader waiting for the writer to
    /// catch up waits on ([`MeConn::writer_progress`]).
    progress: Notify,
}

impl MeConn {
    /// A live link to `target` whose writer takes commands from `tx` (data, bounded) and
    /// `ctl` (control).
    pub fn new(
        target: SocketAddr,
        tx: mpsc::Sender<MeCmd>,
        ctl: mpsc::UnboundedSender<MeCmd>,
    ) -> Self {
        Self {
            target,
            tx,
            ctl,
            clients: Mutex::new(HashMap::new()),
            alive: AtomicBool::new(true),
            ctl_queued: AtomicUsize::new(0),
            flush_queued: AtomicBool::new(false),
            unsent_pongs: AtomicUsize::new(0),
            queue_room: Semaphore::new(LINK_QUEUE_BYTES),
            broken: CancellationToken::new(),
            progress: Notify::new(),
        }
    }

    /// Marks the link dead and unpins every client, returning their handles.
    pub fn shut(&self) -> Vec<ClientHandle> {
        self.alive.store(false, Relaxed);
        self.queue_room.close();
        lock(&self.clients).drain().map(|(_, h)| h).collect()
    }

    /// Wakes the writer (the link queued something by itself: RPC_PONG answers). At most
    /// one `Flush` is queued at a time: it stays queued until the writer takes it
    /// ([`MeConn::took_flush`]), and the writer writes out everything the link queued.
    pub fn wake_writer(&self) {
        if !self.flush_queued.swap(true, AcqRel) {
            let _ = self.ctl.send(MeCmd::Flush);
        }
    }

    /// The writer took the queued `Flush` (call it before taking the link's bytes).
    pub fn took_flush(&self) {
        self.flush_queued.store(false, Relaxed);
    }

    /// The writer took one RPC_CLOSE_CONN from the control queue.
    pub fn took_close_conn(&self) {
        let _ = self
            .ctl_queued
            .fetch_update(AcqRel, Relaxed, |n| Some(n.saturating_sub(1)));
    }

    /// RPC_CLOSE_CONN commands queued and not yet taken by the writer.
    pub fn ctl_queued(&self) -> usize {
        self.ctl_queued.load(Relaxed)
    }

    /// Whether the control queue overflowed ([`CTL_QUEUE_LIMIT`]): the link must close.
    pub fn is_broken(&self) -> bool {
        self.broken.is_cancelled()
    }

    /// Resolves when the control queue overflows.
    pub async fn broken(&self) {
        self.broken.cancelled().await;
    }

    /// Counts `bytes` of RPC_PONG the link just queued; returns the unsent total.
    pub fn queued_pongs(&self, bytes: usize) -> usize {
        self.unsent_pongs.fetch_add(bytes, AcqRel) + bytes
    }

    /// Bytes of RPC_PONG queued and not yet written.
    pub fn unsent_pongs(&self) -> usize {
        self.unsent_pongs.load(Relaxed)
    }

    /// The writer wrote `bytes` of RPC_PONG (the [`MeConn::unsent_pongs`] it read when it
    /// took the link's bytes).
    pub fn wrote_pongs(&self, bytes: usize) {
        let _ = self
            .unsent_pongs
            .fetch_update(AcqRel, Relaxed, |n| Some(n.saturating_sub(bytes)));
    }

    /// The writer wrote something (wakes a reader waiting for it).
    pub fn wrote(&self) {
        self.progress.notify_waiters();
    }

    /// Resolves at the writer's next write ([`MeConn::wrote`]); create it before checking
    /// the state it is to change, and `enable` it.
    pub fn writer_progress(&self) -> tokio::sync::futures::Notified<'_> {
        self.progress.notified()
    }

    /// Unpins a client and returns its handle, if it was pinned.
    pub fn take_client(&self, conn_id: i64) -> Option<ClientHandle> {
        lock(&self.clients).remove(&conn_id)
    }

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

    /// Queues a command, waiting while the link's queue is full: in count, or in payload
    /// bytes ([`LINK_QUEUE_BYTES`]).
    ///
    /// # Errors
    /// When the link is gone (also while waiting).
    pub async fn send(&self, cmd: MeCmd) -> Result<(), ()> {
        if !self.is_alive() {
            return Err(());
        }
        let room = queue_share(cmd.payload_len());
        // No waiting (the usual case): no state of the waiting path in the client task's
        // future, which stays small; the waiting path is boxed.
        match self.queue_room.try_acquire_many(room) {
            Ok(taken) => {
                taken.forget();
                match self.tx.try_send(cmd) {
                    Ok(()) => Ok(()),
                    Err(mpsc::error::TrySendError::Full(cmd)) => {
                        self.queue_room.add_permits(room as usize);
                        Box::pin(self.send_waiting(cmd, room)).await
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => {
                        self.queue_room.add_permits(room as usize);
                        Err(())
                    }
                }
            }
            Err(tokio::sync::TryAcquireError::NoPermits) => {
                Box::pin(self.send_waiting(cmd, room)).await
            }
            Err(tokio::sync::TryAcquireError::Closed) => Err(()),
        }
    }

    /// [`MeConn::send`] when the queue is full: waits for `room` bytes, then for a slot.
    async fn send_waiting(&self, cmd: MeCmd, room: u32) -> Result<(), ()> {
        self.queue_room
            .acquire_many(room)
            .await
            .map_err(drop)?
            .forget();
        if self.tx.send(cmd).await.is_err() {
            self.queue_room.add_permits(room as usize);
            return Err(());
        }
        Ok(())
    }

    /// The writer took a command carrying `payload_len` bytes off the data queue (it is
    /// encrypted into the link's output now): its room is free again.
    pub fn took_payload(&self, payload_len: usize) {
        let room = queue_share(payload_len);
        if room > 0 && !self.queue_room.is_closed() {
            self.queue_room.add_permits(room as usize);
        }
    }

    /// Payload bytes of room free in the data queue.
    pub fn queue_room(&self) -> usize {
        self.queue_room.available_permits()
    }

    /// Queues RPC_CLOSE_CONN without waiting. Beyond [`CTL_QUEUE_LIMIT`] queued and
    /// unwritten, nothing is queued and the link is marked broken ([`MeConn::broken`]):
    /// its reader closes it.
    pub fn send_close_conn(&self, conn_id: i64) {
        if self.is_broken() {
            return;
        }
        if self.ctl_queued.fetch_add(1, AcqRel) >= CTL_QUEUE_LIMIT {
            self.ctl_queued.fetch_sub(1, AcqRel);
            self.broken.cancel();
            return;
        }
        if self.ctl.send(MeCmd::CloseConn { conn_id }).is_err() {
            self.ctl_queued.fetch_sub(1, AcqRel);
        }
    }

    /// The handle of a pinned client.
    pub fn client(&self, conn_id: i64) -> Option<ClientHandle> {
        lock(&self.clients).get(&conn_id).cloned()
    }
}

/// The room in the data queue a payload of `len` bytes takes: all of it, or all of the
/// queue for a payload larger than the queue.
fn queue_share(len: usize) -> u32 {
    len.min(LINK_QUEUE_BYTES) as u32
}

/// One target (a distinct ip:port of the config) and its ready links.
#[derive(Debug)]
pub struct TargetLinks {
    addr: SocketAddr,
    ready: Mutex<Vec<Arc<MeConn>>>,
    /// The RPC state of every ready link, so a writer can encrypt the frames its sibling
    /// links queued together with its own ([`RpcLink::seal_pending`]).
    links: Mutex<Vec<Arc<Mutex<RpcLink>>>>,
    /// Cancelled when the target leaves the config or the proxy stops.
    pub cancel: CancellationToken,
}

impl TargetLinks {
    /// The target's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Adds a ready link; returns whether it is the target's first.
    pub fn add_ready(&self, conn: Arc<MeConn>, link: Arc<Mutex<RpcLink>>) -> bool {
        lock(&self.links).push(link);
        let mut ready = lock(&self.ready);
        ready.push(conn);
        ready.len() == 1
    }

    /// Removes a link; returns whether the target has none left.
    pub fn remove_ready(&self, conn: &Arc<MeConn>, link: &Arc<Mutex<RpcLink>>) -> bool {
        lock(&self.links).retain(|l| !Arc::ptr_eq(l, link));
        let mut ready = lock(&self.ready);
        ready.retain(|x| !Arc::ptr_eq(x, conn));
        ready.is_empty()
    }
}

#[derive(Default)]
struct PoolState {
    conf: Option<Arc<MultiConf>>,
    targets: HashMap<SocketAddr, Arc<TargetLinks>>,
}

/// What [`MePool::update`] changed.
#[derive(Debug, Default)]
pub struct PoolChange {
    /// Targets new in the config: each needs its links started.
    pub added: Vec<Arc<TargetLinks>>,
    /// Targets in the config now.
    pub targets: usize,
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

    /// Makes `conf` the config in force: targets that stay keep their links (and their
    /// clients); removed targets are cancelled, with their clients; new targets are
    /// returned for the caller to start their links (children of `shutdown`).
    pub fn update(&self, conf: Arc<MultiConf>, shutdown: &CancellationToken) -> PoolChange {
        let wanted: HashSet<SocketAddr> = conf.targets.iter().copied().collect();
        let mut st = self.state.write().unwrap_or_else(|p| p.into_inner());
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
        let mut added = Vec::new();
        for addr in &conf.targets {
            if st.targets.contains_key(addr) {
                continue;
            }
            let t = Arc::new(TargetLinks {
                addr: *addr,
                ready: Mutex::new(Vec::new()),
                links: Mutex::new(Vec::new()),
                cancel: shutdown.child_token(),
            });
            added.push(t.clone());
            st.targets.insert(*addr, t);
        }
        let targets = st.targets.len();
        st.conf = Some(conf);
        PoolChange { added, targets }
    }
}

/// How many sibling links of `own` have frames queued for encryption, and how many have
/// none (`None`: `own` has none left, a sibling already encrypted them).
pub fn pending_siblings(target: &TargetLinks, own: &Arc<Mutex<RpcLink>>) -> Option<(usize, usize)> {
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
pub fn seal_target(target: &TargetLinks, own: &Arc<Mutex<RpcLink>>) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn req(len: usize) -> MeCmd {
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        MeCmd::ProxyReq {
            conn_id: 1,
            flags: 0,
            client_addr: a,
            proxy_addr: a,
            payload: BytesMut::from(&vec![7u8; len][..]),
        }
    }

    /// Lets spawned tasks run until none is ready (current-thread runtime).
    async fn settle() {
        for _ in 0..16 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn senders_wait_for_payload_room_and_fail_when_the_link_shuts() {
        let (tx, mut rx) = mpsc::channel(256);
        let (ctl, _ctl_rx) = mpsc::unbounded_channel();
        let conn = Arc::new(MeConn::new("127.0.0.1:9".parse().unwrap(), tx, ctl));
        // A packet larger than the queue takes all of it, and goes.
        conn.send(req(LINK_QUEUE_BYTES + 10)).await.unwrap();
        assert_eq!(conn.queue_room(), 0);
        // The next one waits, however small, though the count bound is far away.
        let c = conn.clone();
        let second = tokio::spawn(async move { c.send(req(100)).await });
        settle().await;
        assert!(!second.is_finished(), "queued past the byte bound");
        // The writer takes the first: room for the second.
        let first = rx.recv().await.unwrap();
        conn.took_payload(first.payload_len());
        second.await.unwrap().unwrap();
        assert_eq!(conn.queue_room(), LINK_QUEUE_BYTES - 100);
        // Fill the room again; a waiting sender fails when the link shuts.
        conn.send(req(LINK_QUEUE_BYTES - 100)).await.unwrap();
        let c = conn.clone();
        let third = tokio::spawn(async move { c.send(req(1)).await });
        settle().await;
        assert!(!third.is_finished());
        assert!(conn.shut().is_empty());
        assert_eq!(third.await.unwrap(), Err(()));
        // Control commands carry no payload and never wait for room.
        assert_eq!(MeCmd::CloseConn { conn_id: 1 }.payload_len(), 0);
    }
}
