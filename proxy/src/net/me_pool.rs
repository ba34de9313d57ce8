//! The middle-end pool (§5.1): the config in force, its targets (distinct ip:port) with
//! their ready links, and the pick of a link for a client. The links' tasks are in
//! [`super::me_link`].
//!
//! A link's writer takes commands from a bounded queue, so a middle end that stops
//! reading makes its clients' [`MeConn::send`] wait, and those clients stop reading their
//! sockets: backpressure all the way back to the client's TCP window instead of C's
//! unbounded buffering (which ends in an assert and a dead proxy).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};

use bytes::BytesMut;
use rand::seq::SliceRandom;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::multi_conf::MultiConf;
use crate::net::inbox::ClientHandle;
use crate::protocol::rpc::RpcLink;

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
        }
    }

    /// Marks the link dead and unpins every client, returning their handles.
    pub fn shut(&self) -> Vec<ClientHandle> {
        self.alive.store(false, Relaxed);
        lock(&self.clients).drain().map(|(_, h)| h).collect()
    }

    /// Wakes the writer (the link queued something by itself: RPC_PONG answers).
    pub fn wake_writer(&self) {
        let _ = self.ctl.send(MeCmd::Flush);
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

    /// The handle of a pinned client.
    pub fn client(&self, conn_id: i64) -> Option<ClientHandle> {
        lock(&self.clients).get(&conn_id).cloned()
    }
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
