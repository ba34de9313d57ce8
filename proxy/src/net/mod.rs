//! The tokio shell around the protocol core: one task per connection.
//!
//! * [`listener`] — client listening sockets with C's socket options.
//! * [`client`] — one task per client: header, framing, forwarding, answers.
//! * [`me_pool`] — middle-end connections per target, reconnecting with backoff.
//! * [`inbox`] — the queue from a middle-end link to one client task.
//! * [`stats_http`] — the `-p` stats listener.
//! * [`fake_tls`], [`splice`], [`domain_probe`] — `-D`: the fake-TLS front door, fronting
//!   to the real domain, and the domain probe.
//! * [`replay_store`] — the instance-wide replay caches (fake-TLS randoms, obfuscated2
//!   header nonces).
//!
//! [`run`] drives one process's share of the service: accept loops on the given
//! listeners (with the `-C` cap as backpressure), the middle-end pool, and a bounded
//! drain when `shutdown` fires.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::secret::NatInfo;
use crate::protocol::obfuscated2::AcceptPolicy;
use crate::protocol::rpc::handshake::ProcessId;
use crate::stats::{inc, Counters, IdSource};

pub mod client;
pub mod domain_probe;
pub mod fake_tls;
pub mod inbox;
pub mod listener;
pub mod me_pool;
pub mod replay_store;
pub mod splice;
pub mod stats_http;

/// Runtime settings derived once from the command line.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `-S` secrets, tried in order (empty: secretless mode).
    pub secrets: Vec<[u8; 16]>,
    /// `-P` proxy tag.
    pub proxy_tag: Option<[u8; 16]>,
    /// Which obfuscated2 tags are accepted (`-R`, `-D`: padded only).
    pub accept_policy: AcceptPolicy,
    /// `-W` (effective) window clamp for client sockets.
    pub window_clamp: Option<u32>,
    /// `-C` (effective): accepted client connections at most, per process.
    pub max_client_connections: usize,
    /// How long a client may take to present a valid obfuscated2 header; also how long a
    /// wrong-secret connection is held in C's silent skip mode before it is closed.
    /// C has no such limit (sockets pile up forever); we use [`PRE_AUTH_TIMEOUT`].
    pub pre_auth_timeout: Duration,
    /// Bytes queued towards one client before it is closed (C: 32 MiB).
    pub per_conn_buffer_cap: usize,
    /// `--msg-buffers-size`: the global budget of queued bytes.
    pub msg_buffers_size: usize,
    /// `--nat-info` rules.
    pub nat: NatInfo,
    /// The proxy-secret file's bytes (ME key derivation).
    pub proxy_secret: Vec<u8>,
    /// Our process id as sent in the ME handshake.
    pub process_id: ProcessId,
    /// `--address`: bind outbound ME sockets to it.
    pub bind_address: Option<IpAddr>,
    /// How long a graceful shutdown waits for connections to finish.
    pub drain_grace: Duration,
    /// Test-only: bits XORed into every PROXY_REQ's flags, so the parity harness can
    /// prove it catches a divergence. Set from `MTPROXY_TEST_PLANT_FLAGS` in debug builds
    /// only; always 0 in release builds.
    pub planted_flag_xor: u32,
    /// Test-only regression: keep a duplicate of every accepted socket's descriptor for
    /// the listener's life (a descriptor leak per connection), so the drills can prove
    /// they catch one. Set from `MTPROXY_TEST_LEAK_FD` in debug builds only.
    pub planted_fd_leak: bool,
    /// Test-only planted regression (debug builds, `MTPROXY_TEST_HANDOVER_CUT`): on a
    /// handover, close every client at once instead of relaying until they leave.
    pub planted_handover_cut: bool,
}

/// C holds a pre-authentication connection forever; we close it after this long.
pub const PRE_AUTH_TIMEOUT: Duration = Duration::from_secs(30);
/// C's `MAX_CONNECTION_BUFFER_SPACE`.
pub const PER_CONN_BUFFER_CAP: usize = 32 << 20;
/// How long SIGTERM waits for clients before closing the rest.
pub const DRAIN_GRACE: Duration = Duration::from_secs(5);

/// State shared by every task of one process.
pub struct Shared {
    /// Immutable settings.
    pub settings: Settings,
    /// Counters under the C names.
    pub counters: Counters,
    /// The middle-end pool.
    pub pool: me_pool::MePool,
    /// Bytes queued towards clients, all clients together.
    pub buffered: AtomicUsize,
    /// Source of `ext_conn_id`s, unique among live clients.
    pub conn_ids: IdSource,
    /// The instance-wide replay caches (local, or the `-M` master's).
    pub replay: replay_store::ReplayStore,
    /// `-D`: the fake-TLS domains and fronting state; `None` without `-D`.
    pub fake_tls: Option<Arc<fake_tls::FakeTlsState>>,
}

impl Shared {
    /// Shared state for `settings` with an empty pool, a local replay cache and no `-D`.
    pub fn new(settings: Settings) -> Arc<Self> {
        Self::with_parts(settings, replay_store::ReplayStore::default(), None)
    }

    /// Shared state with the given replay store and `-D` state.
    pub fn with_parts(
        settings: Settings,
        replay: replay_store::ReplayStore,
        fake_tls: Option<Arc<fake_tls::FakeTlsState>>,
    ) -> Arc<Self> {
        Arc::new(Self {
            settings,
            counters: Counters::default(),
            pool: me_pool::MePool::default(),
            buffered: AtomicUsize::new(0),
            // C's first id is (1 << 22) + fd; ours count up from 1 << 22.
            conn_ids: IdSource::starting_at(1 << 22),
            replay,
            fake_tls,
        })
    }
}

/// Translates `ip` through the `--nat-info` rules (IPv4 only, as C).
pub fn nat_ip(nat: &NatInfo, ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(nat.translate(v4)),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(nat.translate(v4)),
            None => IpAddr::V6(v6),
        },
    }
}

/// How often [`trim_heap_when_settled`] looks at the activity counters.
pub const TRIM_CHECK: Duration = Duration::from_secs(1);

/// Gives freed heap pages back to the kernel once a burst of activity (connections
/// opened or closed, packets forwarded) has settled: one check per [`TRIM_CHECK`], one
/// `malloc_trim` per burst, nothing while idle or while traffic keeps flowing.
pub async fn trim_heap_when_settled(shared: Arc<Shared>, shutdown: CancellationToken) {
    use std::sync::atomic::Ordering::Relaxed;
    let activity = || {
        let c = &shared.counters;
        (
            c.inbound_connections_accepted.load(Relaxed),
            c.total_connections.load(Relaxed),
            c.tot_forwarded_queries.load(Relaxed),
            c.tot_forwarded_responses.load(Relaxed),
        )
    };
    let mut last = activity();
    let mut dirty = false;
    let mut tick = tokio::time::interval(TRIM_CHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = activity();
        if now != last {
            last = now;
            dirty = true;
        } else if dirty {
            dirty = false;
            let released = crate::sys::trim_heap();
            tracing::trace!(released, "heap trimmed after activity settled");
        }
    }
}

/// When a process may accept clients, and how it stops.
#[derive(Debug, Clone, Default)]
pub struct Gates {
    /// SIGTERM/SIGINT (or a worker's master is gone): stop accepting, let clients finish
    /// what is in flight for at most the drain grace, close the rest.
    pub shutdown: CancellationToken,
    /// Accepting starts once this is cancelled: at once, except in the new process of a
    /// handover, which waits for the old one's confirmation (see [`crate::handover`]).
    pub go: CancellationToken,
    /// The sockets were handed over: stop accepting, keep relaying for established
    /// clients until they leave or the drain grace passes, then close them gracefully.
    pub retire: CancellationToken,
}

impl Gates {
    /// Gates that let accepting start at once and stop on `shutdown`.
    pub fn open(shutdown: CancellationToken) -> Self {
        let go = CancellationToken::new();
        go.cancel();
        Self {
            shutdown,
            go,
            retire: CancellationToken::new(),
        }
    }
}

/// After a handover's relay window: how long clients get to finish what is in flight.
pub const HANDOVER_CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Accepts clients on every listener (once `gates.go` opens) until shutdown or a
/// handover, then drains (see [`Gates`]).
pub async fn serve_clients(shared: Arc<Shared>, listeners: Vec<TcpListener>, gates: Gates) {
    let tracker = TaskTracker::new();
    let permits = Arc::new(Semaphore::new(shared.settings.max_client_connections));
    let stop_accepting = CancellationToken::new();
    let draining = CancellationToken::new();
    let conn_cancel = CancellationToken::new();
    shared
        .counters
        .listening_connections
        .store(listeners.len() as i64, std::sync::atomic::Ordering::Relaxed);
    for l in listeners {
        tracker.spawn(accept_loop(
            shared.clone(),
            l,
            permits.clone(),
            tracker.clone(),
            gates.go.clone(),
            stop_accepting.clone(),
            client::ClientCancel {
                draining: draining.clone(),
                hard: conn_cancel.clone(),
            },
        ));
    }
    let handed_over = tokio::select! {
        () = gates.shutdown.cancelled() => false,
        () = gates.retire.cancelled() => true,
    };
    stop_accepting.cancel();
    tracker.close();
    if handed_over {
        if shared.settings.planted_handover_cut {
            conn_cancel.cancel();
        }
        // The new process accepts now; ours leave when they are done (or at the deadline).
        tokio::select! {
            () = tracker.wait() => {}
            () = tokio::time::sleep(shared.settings.drain_grace) => {}
            () = gates.shutdown.cancelled() => {}
        }
        draining.cancel();
        if tokio::time::timeout(HANDOVER_CLOSE_GRACE, tracker.wait())
            .await
            .is_err()
        {
            conn_cancel.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(1), tracker.wait()).await;
        }
        conn_cancel.cancel();
        return;
    }
    draining.cancel();
    // Let clients finish what is in flight, then close the rest.
    if tokio::time::timeout(shared.settings.drain_grace, tracker.wait())
        .await
        .is_err()
    {
        conn_cancel.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(1), tracker.wait()).await;
    }
    conn_cancel.cancel();
}

async fn accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    permits: Arc<Semaphore>,
    tracker: TaskTracker,
    go: CancellationToken,
    stop: CancellationToken,
    cancel: client::ClientCancel,
) {
    tokio::select! {
        () = go.cancelled() => {}
        () = stop.cancelled() => return,
    }
    let mut backoff = Duration::from_millis(5);
    let mut tuning = listener::AcceptTuning::default();
    let mut leaked: Vec<std::os::fd::OwnedFd> = Vec::new();
    let bound = listener
        .local_addr()
        .ok()
        .filter(|a| !a.ip().is_unspecified());
    loop {
        // -C as backpressure: stop accepting at the cap, resume below it.
        let permit = tokio::select! {
            () = stop.cancelled() => return,
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let (stream, peer) = tokio::select! {
            () = stop.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => { backoff = Duration::from_millis(5); x }
                Err(e) => {
                    // EMFILE and friends: back off, never exit.
                    tracing::warn!(error = %e, "accept failed");
                    inc(&shared.counters.accept_connection_limit_failed);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            },
        };
        // A listener bound to one address tells every connection's local address without
        // a getsockname per connection.
        let local = match bound {
            Some(a) => a,
            None => stream
                .local_addr()
                .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0))),
        };
        tuning.apply(&stream, shared.settings.window_clamp);
        if shared.settings.planted_fd_leak {
            use std::os::fd::AsFd;
            if let Ok(fd) = stream.as_fd().try_clone_to_owned() {
                leaked.push(fd);
            }
        }
        let shared2 = shared.clone();
        let cancel = cancel.clone();
        tracker.spawn(async move {
            client::serve(stream, peer, local, shared2, cancel).await;
            drop(permit);
        });
    }
}
