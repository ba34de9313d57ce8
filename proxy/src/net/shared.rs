//! What every task of one process shares: the settings derived from the command line, the
//! counters, the middle-end pool, the buffer budget, the replay caches and the `-D`
//! domains.

use std::net::IpAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use crate::config::secret::NatInfo;
use crate::net::fronting::domains::Domains;
use crate::net::me_pool::MePool;
use crate::net::replay_store::ReplayStore;
use crate::protocol::rpc::handshake::ProcessId;
use crate::protocol::session::SessionRules;
use crate::stats::{Counters, IdSource};
use tokio_util::task::TaskTracker;

/// Runtime settings derived once from the command line.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The client sessions' rules: secrets, `-D` domains, deadlines.
    pub session: Arc<SessionRules>,
    /// `-P` proxy tag.
    pub proxy_tag: Option<[u8; 16]>,
    /// `-W` (effective) window clamp for client sockets.
    pub window_clamp: Option<u32>,
    /// `-C` (effective): accepted client connections at most, per process.
    pub max_client_connections: usize,
    /// `--max-connections-per-ip`: client connections one address may hold (0: no limit).
    pub max_connections_per_ip: usize,
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
    /// How long a stopping process waits for its clients.
    pub grace: Grace,
    /// Test-only regression: keep a duplicate of every accepted socket's descriptor for
    /// the listener's life (a descriptor leak per connection), so the drills can prove
    /// they catch one. Set from `MTPROXY_TEST_LEAK_FD` in debug builds only.
    pub planted_fd_leak: bool,
    /// Test-only planted regression (debug builds, `MTPROXY_TEST_HANDOVER_CUT`): on a
    /// handover, close every client at once instead of relaying until they leave.
    pub planted_handover_cut: bool,
}

/// C's `MAX_CONNECTION_BUFFER_SPACE`.
pub const PER_CONN_BUFFER_CAP: usize = 32 << 20;
/// How long SIGTERM waits for clients before closing the rest (`--drain-timeout`).
pub const DRAIN_GRACE: Duration = Duration::from_secs(5);

/// Every deadline of a stopping process, derived from the one setting
/// (`--drain-timeout`): [`Grace::total`] bounds the whole stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grace {
    /// SIGTERM: clients finish what is in flight; handover: clients leave by themselves.
    pub drain: Duration,
    /// Then (handover): clients are asked to finish what is in flight.
    pub close: Duration,
    /// Then whatever is left is cut, and the tasks get this long to go.
    pub cut: Duration,
}

impl Grace {
    /// The grace of a `--drain-timeout` of `drain`.
    pub fn new(drain: Duration) -> Self {
        Self {
            drain,
            close: Duration::from_secs(2),
            cut: Duration::from_secs(1),
        }
    }

    /// The longest a stop can take, from the signal to the last client gone.
    pub fn total(&self) -> Duration {
        self.drain + self.close + self.cut
    }
}

impl Settings {
    /// Settings for `session` with C's defaults and no middle-end secret: for tests and
    /// tools that drive the shell in-process.
    pub fn new(session: Arc<SessionRules>) -> Self {
        Self {
            session,
            proxy_tag: None,
            window_clamp: None,
            max_client_connections: 1024,
            max_connections_per_ip: 0,
            per_conn_buffer_cap: PER_CONN_BUFFER_CAP,
            msg_buffers_size: 256 << 20,
            nat: NatInfo::default(),
            proxy_secret: Vec::new(),
            process_id: ProcessId::default(),
            bind_address: None,
            grace: Grace::new(DRAIN_GRACE),
            planted_fd_leak: false,
            planted_handover_cut: false,
        }
    }
}

/// State shared by every task of one process.
pub struct Shared {
    /// Immutable settings.
    pub settings: Settings,
    /// Counters under the C names.
    pub counters: Counters,
    /// The middle-end pool.
    pub pool: MePool,
    /// Bytes queued towards clients, all clients together.
    pub buffered: AtomicUsize,
    /// Source of `ext_conn_id`s, unique among live clients.
    pub conn_ids: IdSource,
    /// The instance-wide replay caches (local, or the `-M` master's).
    pub replay: ReplayStore,
    /// `-D`: the fake-TLS domains and fronting state; `None` without `-D`.
    pub fake_tls: Option<Arc<Domains>>,
    /// Every background task of the process (middle-end links, probes, listeners); the
    /// client tasks have their own tracker in [`crate::net::serve`], which drains them.
    pub tasks: TaskTracker,
}

impl Shared {
    /// Shared state for `settings` with an empty pool, a local replay cache and no `-D`.
    pub fn new(settings: Settings) -> Arc<Self> {
        Self::with_parts(settings, ReplayStore::default(), None, TaskTracker::new())
    }

    /// Shared state with the given replay store, `-D` state and the process's task
    /// tracker.
    pub fn with_parts(
        settings: Settings,
        replay: ReplayStore,
        fake_tls: Option<Arc<Domains>>,
        tasks: TaskTracker,
    ) -> Arc<Self> {
        Arc::new(Self {
            settings,
            counters: Counters::default(),
            pool: MePool::default(),
            buffered: AtomicUsize::new(0),
            // C's first id is (1 << 22) + fd; ours count up from 1 << 22.
            conn_ids: IdSource::starting_at(1 << 22),
            replay,
            fake_tls,
            tasks,
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
