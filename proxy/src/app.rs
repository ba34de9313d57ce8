//! Start-up and the life of the process: parse → validate → bind → drop privileges →
//! serve until a signal, with C's messages and exit codes.
//!
//! Exit codes (as C): 2 for usage errors (printed with the usage text by the CLI parser),
//! 1 for fatal start-up errors (one clear line: bad config with `file:line`, missing or
//! short `--aes-pwd`, `--http-stats` without `-p`, a port that cannot be bound, a missing
//! `-u` user), 0 after SIGTERM/SIGINT.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::cli::{Options, PortSpec};
use crate::config::multi_conf::{parse_multi_conf, MultiConf};
use crate::config::secret::{ProxySecret, DEFAULT_PWD_FILE};
use crate::handover::{self, Inherited, Takeover};
use crate::logging::LogSink;
use crate::net::fronting::domains::Domains;
use crate::net::fronting::probe as domain_probe;
use crate::net::listener::{self, ListenSpec};
use crate::net::me_link;
use crate::net::replay_store::ReplayStore;
use crate::net::serve::{self, Gates};
use crate::net::shared::{Grace, Settings, Shared, PER_CONN_BUFFER_CAP};
use crate::net::stats_http;
use crate::protocol::obfuscated2::AcceptPolicy;
use crate::protocol::rpc::handshake::ProcessId;
use crate::protocol::session::{SessionRules, HELLO_TIMEOUT, IDLE_TIMEOUT, PRE_AUTH_TIMEOUT};
use crate::stats::{Info, Snapshot};
use crate::supervisor::{self, Master, WorkerBootstrap};

/// A fatal start-up error: the line to print and the exit code.
#[derive(Debug)]
pub struct Fatal {
    /// Exit code (1 for fatal errors, as C).
    pub code: i32,
    /// The message lines.
    pub lines: Vec<String>,
}

impl Fatal {
    fn one(line: impl Into<String>) -> Self {
        Self {
            code: 1,
            lines: vec![line.into()],
        }
    }
}

/// The config file as loaded: parse and the facts `/stats` reports.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    /// The parse.
    pub conf: Arc<MultiConf>,
    /// Size in bytes.
    pub size: usize,
    /// MD5, lower-case hex.
    pub md5: String,
    /// Unix time it was loaded.
    pub loaded_at: i64,
    /// The text (handed to workers).
    pub text: String,
}

/// Resolves a config host name to an IPv4 address (C uses `gethostbyname`).
fn resolve(host: &str) -> Option<IpAddr> {
    (host, 0)
        .to_socket_addrs()
        .ok()?
        .find(|a| a.is_ipv4())
        .map(|a| a.ip())
}

/// Parses config `text` named `name`; errors render as C prints them.
///
/// # Errors
/// The C error line followed by `config check failed! (code N)`.
pub fn load_config_text(text: &[u8], name: &str) -> Result<LoadedConfig, Fatal> {
    match parse_multi_conf(text, name, &resolve) {
        Ok(conf) => Ok(LoadedConfig {
            conf: Arc::new(conf),
            size: text.len(),
            md5: hex::encode(crate::protocol::crypto::md5(&[text])),
            loaded_at: crate::clock::unix_now(),
            text: String::from_utf8_lossy(text).into_owned(),
        }),
        Err(e) => Err(Fatal {
            code: 1,
            lines: vec![
                e.to_string(),
                format!("config check failed! (code {})", e.code()),
            ],
        }),
    }
}

/// Reads and parses the config file.
///
/// # Errors
/// As [`load_config_text`], or when the file cannot be read.
pub fn load_config_file(path: &str) -> Result<LoadedConfig, Fatal> {
    // One byte over the limit is enough for the parser's `too long` check (C's code -2).
    let limit = crate::config::multi_conf::MAX_CONFIG_SIZE as u64 + 1;
    let text = read_regular_limited(path, limit).map_err(|e| Fatal {
        code: 1,
        lines: vec![
            format!("cannot open config file {path}: {e}"),
            "config check failed! (code -1)".into(),
        ],
    })?;
    load_config_text(&text, path)
}

/// Loads the proxy-secret: an explicit `--aes-pwd` must load; the default `./secret`
/// may be absent (C then runs without one, and no middle-end handshake can succeed).
///
/// # Errors
/// C's `fatal: cannot load secret definition file` line.
pub fn load_secret(opts: &Options) -> Result<Option<ProxySecret>, Fatal> {
    let (path, explicit) = match &opts.aes_pwd_file {
        Some(p) => (p.as_str(), true),
        None => (DEFAULT_PWD_FILE, false),
    };
    let fatal = || {
        Fatal::one(format!(
            "fatal: cannot load secret definition file `{path}'"
        ))
    };
    match read_regular_limited(path, crate::config::secret::PWD_READ_LIMIT as u64) {
        Ok(bytes) => match ProxySecret::from_bytes(&bytes) {
            Ok(s) => Ok(Some(s)),
            Err(e) => {
                tracing::warn!("secret file {path} {e}");
                Err(fatal())
            }
        },
        Err(e) if !explicit => {
            tracing::warn!("no proxy-secret file (`{path}': {e}): middle-end handshakes will fail");
            Ok(None)
        }
        Err(e) => {
            tracing::warn!("secret file {path}: {e}");
            Err(fatal())
        }
    }
}

/// The ports `-p` offers for the stats listener, tried in order: the `-p` port, or the
/// ports of the `-p S:E` range that can exist (1..=65535). The range is walked, never
/// collected, as C's `try_open_port_range` walks it, so `-p 1:2147483647` costs
/// nothing; ports above 65535 (which C would truncate) are skipped.
fn stats_port_candidates(spec: PortSpec) -> std::ops::RangeInclusive<u16> {
    let (start, end) = match spec {
        PortSpec::Port(p) => (p, p),
        PortSpec::Range(s, e) => (s, e),
    };
    match (u16::try_from(start.max(1)), u16::try_from(end.min(65535))) {
        (Ok(s), Ok(e)) => s..=e,
        _ => empty_ports(),
    }
}

/// A port range with no port.
#[allow(clippy::reversed_empty_ranges)] // empty on purpose
fn empty_ports() -> std::ops::RangeInclusive<u16> {
    1..=0
}

/// Reads at most `limit` bytes of the regular file at `path` (C reads its config and
/// secret files with one bounded `read`). A FIFO, directory or device is refused
/// without reading from it (the open does not wait for a FIFO's writer), so a wrong path
/// can neither hang the start-up nor make it read without end.
///
/// # Errors
/// When the file cannot be opened or read, or is not a regular file.
pub fn read_regular_limited(path: &str, limit: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.file_type().is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let mut bytes = Vec::new();
    file.take(limit).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Everything the serving phase needs.
pub struct App {
    opts: Options,
    config: Mutex<LoadedConfig>,
    secret: Option<ProxySecret>,
    log: LogSink,
    start_time: i64,
    worker: Option<WorkerBootstrap>,
    /// Cancelled on SIGTERM/SIGINT (or when a worker's master is gone).
    shutdown: CancellationToken,
    /// Cancelled once the clients have drained: the middle-end links outlive the drain so
    /// that answers still in flight reach their clients.
    links: CancellationToken,
    /// Every task the process spawns besides its clients' (those are drained by
    /// [`serve::serve`]).
    tasks: TaskTracker,
}

impl App {
    /// Prepares the app from validated options (config parsed, secret loaded).
    ///
    /// # Errors
    /// Fatal start-up errors.
    pub fn prepare(opts: Options, log: LogSink) -> Result<Self, Fatal> {
        let worker = if std::env::var_os(supervisor::WORKER_ENV).is_some() {
            Some(
                WorkerBootstrap::read_from_stdin()
                    .map_err(|e| Fatal::one(format!("fatal: worker bootstrap unreadable: {e}")))?,
            )
        } else {
            None
        };
        if let Some(reason) = worker.as_ref().and_then(|_| planted_worker_failure()) {
            return Err(Fatal::one(format!("fatal: {reason}")));
        }
        opts.check_tls_secrets().map_err(cli_exit_to_fatal)?;
        let config = match &worker {
            Some(w) => load_config_text(w.config_text.as_bytes(), &opts.config_file)?,
            None => load_config_file(&opts.config_file)?,
        };
        let secret = match &worker {
            Some(w) => {
                let bytes = hex::decode(&w.proxy_secret_hex).unwrap_or_default();
                ProxySecret::from_bytes(&bytes).ok()
            }
            None => load_secret(&opts)?,
        };
        if worker.is_none() {
            opts.check_stats_port().map_err(cli_exit_to_fatal)?;
        }
        Ok(Self {
            opts,
            config: Mutex::new(config),
            secret,
            log,
            start_time: crate::clock::unix_now(),
            worker,
            shutdown: CancellationToken::new(),
            links: CancellationToken::new(),
            tasks: TaskTracker::new(),
        })
    }

    fn settings(&self, limit_connections: u64) -> Settings {
        let o = &self.opts;
        let stats_port = match o.port {
            Some(PortSpec::Port(p)) => p,
            Some(PortSpec::Range(s, _)) => s,
            None => -1,
        };
        Settings {
            session: Arc::new(SessionRules {
                secrets: o.secrets.clone(),
                accept_policy: AcceptPolicy {
                    padded_only: o.random_padding_only || !o.domains.is_empty(),
                },
                domains: o.domains.clone(),
                pre_auth_timeout: pre_auth_timeout(),
                hello_timeout: HELLO_TIMEOUT,
                idle_timeout: seconds_from_env("MTPROXY_IDLE_TIMEOUT", IDLE_TIMEOUT),
                flag_xor: planted_flag_xor(),
            }),
            proxy_tag: o.proxy_tag,
            window_clamp: o
                .effective_window_clamp()
                .and_then(|w| u32::try_from(w).ok())
                .filter(|w| *w > 0),
            max_connections_per_ip: o.max_connections_per_ip,
            max_client_connections: usize::try_from(
                i64::from(o.effective_max_special_connections().max(1))
                    .min(limit_connections as i64),
            )
            .unwrap_or(1)
            .max(1),
            per_conn_buffer_cap: PER_CONN_BUFFER_CAP,
            msg_buffers_size: usize::try_from(o.msg_buffers_size.max(1 << 20))
                .unwrap_or(usize::MAX),
            nat: o.nat_info.clone(),
            proxy_secret: self
                .secret
                .as_ref()
                .map(|s| s.as_bytes().to_vec())
                .unwrap_or_default(),
            process_id: ProcessId {
                ip: 0,
                port: stats_port as i16,
                pid: (std::process::id() & 0xffff) as u16,
                utime: self.start_time as i32,
            },
            bind_address: o.address.map(IpAddr::V4),
            grace: Grace::new(o.drain_timeout),
            planted_fd_leak: planted_switch("MTPROXY_TEST_LEAK_FD"),
            planted_handover_cut: planted_switch("MTPROXY_TEST_HANDOVER_CUT"),
        }
    }

    /// This process's counters with its facts, as `/stats` reports them.
    fn snapshot(&self, counters: &crate::stats::Counters) -> Snapshot {
        let mut snap = counters.snapshot(self.info());
        snap.log_write_failures = crate::logging::write_failures();
        snap
    }

    fn info(&self) -> Info {
        let cfg = lock(&self.config);
        let (rss, vsz, data) = crate::os::memory_usage();
        Info {
            pid: std::process::id(),
            start_time: self.start_time,
            current_time: crate::clock::unix_now(),
            config_filename: self.opts.config_file.clone(),
            config_loaded_at: cfg.loaded_at,
            config_size: cfg.size,
            config_md5: cfg.md5.clone(),
            config_auth_clusters: cfg.conf.auth_clusters(),
            aes_pwd_hash: self
                .secret
                .as_ref()
                .map_or_else(|| "none".into(), ProxySecret::md5_hex),
            workers: u32::try_from(self.opts.workers).unwrap_or(0),
            window_clamp: self
                .opts
                .effective_window_clamp()
                .and_then(|w| u32::try_from(w).ok())
                .unwrap_or(0),
            proxy_tag_set: self.opts.proxy_tag.is_some(),
            vmrss_bytes: rss,
            vmsize_bytes: vsz,
            vmdata_bytes: data,
            version: crate::config::cli::version_line(),
            stats_port: match self.opts.port {
                Some(PortSpec::Port(p) | PortSpec::Range(p, _)) => p,
                None => -1,
            },
            msg_buffers_size: u64::try_from(self.opts.msg_buffers_size).unwrap_or(0),
            open_fds: crate::os::open_fds(),
            max_fds: crate::os::max_fds(),
        }
    }

    /// Runs the process until SIGTERM/SIGINT; returns the exit code.
    pub async fn run(self: Arc<Self>) -> Result<i32, Fatal> {
        let o = &self.opts;
        for name in &o.ignored {
            tracing::debug!("option --{name} is accepted for compatibility and ignored");
        }
        if o.daemonize {
            tracing::warn!(
                "-d: this build does not daemonize; run it under systemd, docker or another supervisor"
            );
        }
        if o.tls_workers_warning().is_some() {
            // C warns here because its replay cache is per worker; ours is the master's.
            tracing::info!("-D with -M: the fake-TLS replay cache is shared by every worker");
        }
        let limit = crate::os::raise_fd_limit(u64::try_from(o.max_connections.max(1)).unwrap_or(1));
        tracing::info!(
            soft = limit.soft,
            hard = limit.hard,
            max_connections = limit.max_connections,
            "open file limit"
        );
        // Listening sockets: inherited by a worker; else taken over from a running proxy
        // (`--handover-socket`) or from systemd (`LISTEN_FDS`), and bound where not.
        let mut takeover = None;
        let mut inherited = Inherited::default();
        if self.worker.is_none() {
            if let Some(path) = &o.handover_socket {
                match handover::take_over(std::path::Path::new(path)) {
                    Ok(Some((t, inh))) => {
                        tracing::info!(
                            old_pid = t.old_pid,
                            "handover: took the listening sockets over from the running proxy"
                        );
                        if planted_switch("MTPROXY_TEST_HANDOVER_DIE") {
                            return Err(Fatal::one("fatal: planted failure after taking the sockets (MTPROXY_TEST_HANDOVER_DIE)"));
                        }
                        takeover = Some(t);
                        inherited = inh;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        return Err(Fatal::one(format!(
                            "fatal: handover from the proxy serving {path} failed: {e}"
                        )))
                    }
                }
            }
            if takeover.is_none() {
                let from_systemd = handover::systemd_listeners();
                if !from_systemd.is_empty() {
                    tracing::info!(
                        sockets = from_systemd.len(),
                        "listening sockets from systemd (LISTEN_FDS)"
                    );
                }
                let stats_ports = match (o.http_stats, o.port) {
                    (true, Some(spec)) => stats_port_candidates(spec),
                    _ => empty_ports(),
                };
                for (addr, fd) in from_systemd {
                    let port = addr.port();
                    if stats_ports.contains(&port) && !o.http_ports.contains(&port) {
                        inherited.stats = Some((addr, fd));
                    } else {
                        inherited.client.push((addr, fd));
                    }
                }
            }
        }
        let std_listeners = match &self.worker {
            Some(w) => w
                .listen_fds
                .iter()
                .map(|fd| crate::sys::adopt_inherited_fd(*fd).map(std::net::TcpListener::from))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| Fatal::one(format!("fatal: inherited listening socket: {e}")))?,
            None => self.bind_client_ports(&mut inherited)?,
        };
        let handover_listener = match (&self.worker, &o.handover_socket) {
            (None, Some(path)) => Some(match inherited.handover.take() {
                Some(fd) => std::os::unix::net::UnixListener::from(fd),
                None => handover::bind(std::path::Path::new(path)).map_err(|e| {
                    Fatal::one(format!("fatal: cannot create handover socket {path}: {e}"))
                })?,
            }),
            _ => None,
        };
        if self.worker.is_none() {
            crate::links::log_links(o);
        }
        let shutdown = self.shutdown.clone();
        let is_master = self.worker.is_none() && o.workers > 0;
        if is_master {
            return self
                .run_master(
                    std_listeners,
                    inherited,
                    takeover,
                    handover_listener,
                    shutdown,
                )
                .await;
        }
        let listen_addrs: Vec<SocketAddr> = std_listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect();
        let replay = match self.worker.as_ref().and_then(|w| w.replay_fd) {
            Some(fd) => {
                let sock = crate::sys::adopt_inherited_fd(fd)
                    .map_err(|e| Fatal::one(format!("fatal: replay-cache socket: {e}")))?;
                let sock = std::os::unix::net::UnixStream::from(sock);
                sock.set_nonblocking(true)
                    .and_then(|()| tokio::net::UnixStream::from_std(sock))
                    .map(|s| ReplayStore::remote(s, shutdown.clone()))
                    .map_err(|e| Fatal::one(format!("fatal: replay-cache socket: {e}")))?
            }
            None => ReplayStore::default(),
        };
        let fake_tls = (!o.domains.is_empty()).then(|| {
            Arc::new(Domains::new(
                &o.domains,
                listen_addrs,
                &mut rand::thread_rng(),
            ))
        });
        let shared = Shared::with_parts(
            self.settings(limit.max_connections),
            replay,
            fake_tls.clone(),
            self.tasks.clone(),
        );
        shared.counters.total_max_special_connections.store(
            shared.settings.max_client_connections as i64,
            std::sync::atomic::Ordering::Relaxed,
        );
        let stats_listener = if self.worker.is_none() {
            self.bind_stats(&mut inherited).await?
        } else {
            None
        };
        let offer = handover_listener
            .as_ref()
            .map(|h| offer_of(&std_listeners, stats_listener.as_ref(), h));
        self.drop_privileges(false)?;
        let conf = lock(&self.config).conf.clone();
        me_link::apply(&shared, conf, &self.links);
        let listeners = std_listeners
            .into_iter()
            .map(tokio::net::TcpListener::from_std)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Fatal::one(format!("fatal: listening socket: {e}")))?;
        let gates = match &self.worker {
            Some(w) if w.hold => Gates {
                shutdown: shutdown.clone(),
                go: CancellationToken::new(),
                retire: CancellationToken::new(),
            },
            Some(_) => Gates::open(shutdown.clone()),
            None => {
                let mut g = Gates::open(shutdown.clone());
                if takeover.is_some() {
                    g.go = CancellationToken::new();
                }
                g
            }
        };
        let accepting = until_shutdown_or_retired(&self.tasks, &shutdown, &gates.retire);
        if let Some(l) = stats_listener {
            let app = self.clone();
            let sh = shared.clone();
            let source: stats_http::StatsSource = Arc::new(move || {
                let snap = app.snapshot(&sh.counters);
                Box::pin(async move { snap })
            });
            let sh2 = shared.clone();
            shared.tasks.spawn(stats_http::serve(
                l,
                source,
                Arc::new(move || crate::stats::inc(&sh2.counters.http_queries)),
                accepting.clone(),
            ));
        }
        if let Some(w) = &self.worker {
            let control = crate::sys::adopt_inherited_fd(w.control_fd)
                .map_err(|e| Fatal::one(format!("fatal: control socket: {e}")))?;
            let app = self.clone();
            let sh = shared.clone();
            shared.tasks.spawn(supervisor::serve_control(
                std::os::unix::net::UnixStream::from(control),
                move || app.snapshot(&sh.counters),
                gates.clone(),
            ));
        }
        {
            let cfg = lock(&self.config);
            tracing::info!(
                "configuration file {} re-read successfully ({} bytes parsed), new configuration active",
                o.config_file,
                cfg.size
            );
        }
        if let Some(state) = fake_tls {
            // In the background: clients get the fallback profile until it finishes.
            shared
                .tasks
                .spawn(domain_probe::run(shared.clone(), state, shutdown.clone()));
        }
        shared.tasks.spawn(serve::trim_heap_when_settled(
            shared.clone(),
            shutdown.clone(),
        ));
        tracing::info!("main loop");
        let finished = CancellationToken::new();
        let serving = shared.tasks.spawn({
            let (sh, l, g, done) = (shared.clone(), listeners, gates.clone(), finished.clone());
            async move {
                let drained = serve::serve(sh, l, g).await;
                if drained.cut > 0 {
                    tracing::info!(
                        clients = drained.cut,
                        "grace over: remaining clients closed"
                    );
                }
                done.cancel();
            }
        });
        if let Some(t) = takeover {
            // Say ready once the middle ends can be reached: a client the old process no
            // longer accepts must not meet a new one whose links are still connecting
            // (its packets would be dropped). Bounded: an unreachable middle end leaves
            // the new process no worse off than the old.
            wait_for_middle_ends(&shared, self.opts.handover_timeout / 2).await;
            self.confirm_takeover(t, &shutdown).await?;
            gates.go.cancel();
        }
        if let (Some(l), Some(offer)) = (handover_listener, offer) {
            self.tasks.spawn(serve_handover(
                l,
                offer,
                self.opts.handover_timeout,
                gates.retire.clone(),
                shutdown.clone(),
            ));
        }
        let code = self
            .signal_loop(&shutdown, Some(&shared), None, &gates.retire, &finished)
            .await;
        // Bounded by the grace: `serve` cuts what is left when it is over.
        let _ = serving.await;
        shutdown.cancel();
        self.links.cancel();
        Ok(code)
    }

    /// The new side of a handover: says `ready`, waits for the old process's `ok`.
    async fn confirm_takeover(
        &self,
        t: Takeover,
        shutdown: &CancellationToken,
    ) -> Result<(), Fatal> {
        // Test-only (debug builds): a new binary that is this many seconds late.
        let stall = std::env::var("MTPROXY_TEST_HANDOVER_STALL")
            .ok()
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| cfg!(debug_assertions) && s.is_finite() && *s > 0.0);
        if let Some(secs) = stall {
            tracing::warn!(
                secs,
                "planted stall before saying ready (MTPROXY_TEST_HANDOVER_STALL)"
            );
            tokio::time::sleep(Duration::from_secs_f64(secs)).await;
        }
        let confirmed = tokio::task::spawn_blocking(move || t.confirm())
            .await
            .map_err(std::io::Error::other)
            .and_then(|r| r);
        match confirmed {
            Ok(old) => {
                tracing::info!(
                    old_pid = old,
                    "handover complete: serving; the old process stops accepting and drains"
                );
                Ok(())
            }
            Err(e) => {
                shutdown.cancel();
                Err(Fatal::one(format!("fatal: handover not confirmed: {e}")))
            }
        }
    }

    fn bind_client_ports(
        &self,
        inherited: &mut Inherited,
    ) -> Result<Vec<std::net::TcpListener>, Fatal> {
        let o = &self.opts;
        o.http_ports
            .iter()
            .map(|port| {
                let addr = ListenSpec::address_for(*port, o.address.map(IpAddr::V4), o.ipv6);
                if let Some(fd) = inherited.take_client(addr) {
                    let l = std::net::TcpListener::from(fd);
                    listener::adopt(&l).map_err(|e| {
                        Fatal::one(format!("fatal: inherited socket for port {port}: {e}"))
                    })?;
                    return Ok(l);
                }
                let spec = ListenSpec {
                    addr: ListenSpec::address_for(*port, o.address.map(IpAddr::V4), o.ipv6),
                    backlog: o.backlog,
                    reuse_port: false,
                    window_clamp: o
                        .effective_window_clamp()
                        .and_then(|w| u32::try_from(w).ok())
                        .filter(|w| *w > 0),
                };
                listener::bind(&spec).map_err(|e| {
                    Fatal::one(format!(
                        "fatal: cannot open server socket at port {port}: {e}"
                    ))
                })
            })
            .collect()
    }

    async fn bind_stats(
        &self,
        inherited: &mut Inherited,
    ) -> Result<Option<tokio::net::TcpListener>, Fatal> {
        let o = &self.opts;
        if !o.http_stats {
            return Ok(None);
        }
        let ports = match o.port {
            Some(spec) => stats_port_candidates(spec),
            None => return Err(Fatal::one("fatal: port isn't defined")),
        };
        let mut last = String::new();
        for port in ports.clone() {
            if let Some(fd) = inherited.take_stats(port) {
                let l = std::net::TcpListener::from(fd);
                let l = l
                    .set_nonblocking(true)
                    .and_then(|()| tokio::net::TcpListener::from_std(l))
                    .map_err(|e| Fatal::one(format!("fatal: inherited stats socket: {e}")))?;
                return Ok(Some(l));
            }
        }
        for port in ports {
            match tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await
            {
                Ok(l) => return Ok(Some(l)),
                Err(e) => last = e.to_string(),
            }
        }
        Err(Fatal::one(format!("fatal: cannot open stats port: {last}")))
    }

    /// Drops privileges (`-u`). The `-M` master with `-l` keeps the right to recreate
    /// the log file (see [`crate::os::drop_privileges`]).
    ///
    /// A single process (or a worker) keeps no capability: the log file it created is
    /// given to the `-u` user first, so SIGUSR1 can reopen it as that user.
    fn drop_privileges(&self, master: bool) -> Result<(), Fatal> {
        let keep = master && self.opts.log_file.is_some();
        if !master && self.opts.log_file.is_some() && nix::unistd::Uid::effective().is_root() {
            let name = self
                .opts
                .user
                .as_deref()
                .filter(|u| !u.is_empty())
                .unwrap_or(crate::os::DEFAULT_USER);
            if let Ok(Some(pw)) = nix::unistd::User::from_name(name) {
                if let Err(e) = self
                    .log
                    .give_created_file_to(pw.uid.as_raw(), pw.gid.as_raw())
                {
                    tracing::warn!(error = %e, "cannot give the log file to {name}: SIGUSR1 may fail to reopen it");
                }
            }
        }
        match crate::os::drop_privileges(self.opts.user.as_deref(), keep) {
            Ok(Some(user)) => {
                tracing::debug!(user, "dropped privileges");
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(line) => Err(Fatal {
                code: 1,
                lines: vec![
                    line,
                    format!(
                        "fatal: cannot change user to {}",
                        self.opts.user.as_deref().unwrap_or(crate::os::DEFAULT_USER)
                    ),
                ],
            }),
        }
    }

    async fn run_master(
        self: &Arc<Self>,
        listeners: Vec<std::net::TcpListener>,
        mut inherited: Inherited,
        takeover: Option<Takeover>,
        handover_listener: Option<std::os::unix::net::UnixListener>,
        shutdown: CancellationToken,
    ) -> Result<i32, Fatal> {
        let o = &self.opts;
        let master = Arc::new(
            Master::new(
                u32::try_from(o.workers).unwrap_or(1),
                &listeners,
                std::env::args_os().collect(),
                self.secret
                    .as_ref()
                    .map(ProxySecret::as_bytes)
                    .unwrap_or_default(),
                lock(&self.config).text.clone(),
                Grace::new(o.drain_timeout).total(),
                self.log.clone(),
            )
            .map_err(|e| Fatal::one(format!("fatal: cannot prepare workers: {e}")))?,
        );
        if takeover.is_some() {
            master.hold_until_released();
        }
        let stats_listener = self.bind_stats(&mut inherited).await?;
        let offer = handover_listener
            .as_ref()
            .map(|h| offer_of(&listeners, stats_listener.as_ref(), h));
        self.drop_privileges(true)?;
        let retire = CancellationToken::new();
        let accepting = until_shutdown_or_retired(&self.tasks, &shutdown, &retire);
        if let Some(l) = stats_listener {
            let app = self.clone();
            let m = master.clone();
            let queries = Arc::new(std::sync::atomic::AtomicI64::new(0));
            let q2 = queries.clone();
            let source: stats_http::StatsSource = Arc::new(move || {
                let app = app.clone();
                let m = m.clone();
                let q = q2.clone();
                Box::pin(async move {
                    let mut base = Snapshot {
                        info: app.info(),
                        ..Snapshot::default()
                    };
                    base.http_queries = q.load(std::sync::atomic::Ordering::Relaxed);
                    base.worker_restarts = m.restarts.load(std::sync::atomic::Ordering::Relaxed);
                    base.log_write_failures = crate::logging::write_failures();
                    m.sum_stats(base).await
                })
            });
            self.tasks.spawn(stats_http::serve(
                l,
                source,
                Arc::new(move || {
                    queries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }),
                accepting.clone(),
            ));
        }
        tracing::info!(workers = o.workers, "main loop (master)");
        let finished = CancellationToken::new();
        let mut supervising = self.tasks.spawn({
            let (m, stop, done) = (master.clone(), shutdown.clone(), finished.clone());
            async move {
                let gave_up = m.run(stop).await;
                done.cancel();
                gave_up
            }
        });
        if let Some(t) = takeover {
            // Every worker ready (they hold their accepting), then the old process's `ok`.
            tokio::select! {
                () = master.all_ready() => {}
                () = finished.cancelled() => {
                    let gave_up = (&mut supervising).await.ok().flatten();
                    return Err(Fatal::one(format!(
                        "fatal: handover abandoned: {}",
                        gave_up.unwrap_or_else(|| "the workers stopped".into())
                    )));
                }
            }
            if let Err(e) = self.confirm_takeover(t, &shutdown).await {
                let _ = supervising.await;
                return Err(e);
            }
            master.release().await;
        }
        if let (Some(l), Some(offer)) = (handover_listener, offer) {
            self.tasks.spawn(serve_handover(
                l,
                offer,
                self.opts.handover_timeout,
                retire.clone(),
                shutdown.clone(),
            ));
        }
        let code = self
            .signal_loop(&shutdown, None, Some(&master), &retire, &finished)
            .await;
        let gave_up = supervising.await.ok().flatten();
        drop(listeners);
        match gave_up {
            Some(reason) => Err(Fatal::one(format!("fatal: {reason}"))),
            None => Ok(code),
        }
    }

    /// Waits for signals: TERM/INT stop (exit 0), USR1 reopens the log, HUP reloads the
    /// config (C ignores SIGHUP; newer forks reload, as we do).
    ///
    /// After a handover (`retire`), it waits for `finished` (the clients drained, or the
    /// workers exited) and returns 0; SIGTERM then cuts the drain short.
    async fn signal_loop(
        &self,
        shutdown: &CancellationToken,
        shared: Option<&Arc<Shared>>,
        master: Option<&Arc<Master>>,
        retire: &CancellationToken,
        finished: &CancellationToken,
    ) -> i32 {
        let (Ok(mut term), Ok(mut int), Ok(mut usr1), Ok(mut hup)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::user_defined1()),
            signal(SignalKind::hangup()),
        ) else {
            tracing::error!("cannot install signal handlers");
            shutdown.cancelled().await;
            return 1;
        };
        let mut retired = false;
        loop {
            tokio::select! {
                // In this order: a handover is announced before "drained" when both are
                // ready at once (clients cut at the handover finish serving at once).
                biased;
                () = shutdown.cancelled() => {
                    // A worker whose master is gone.
                    return 0;
                }
                () = retire.cancelled(), if !retired => {
                    retired = true;
                    tracing::info!(
                        drain_timeout_ms = self.opts.drain_timeout.as_millis() as u64,
                        "handed over: no longer accepting; draining established clients"
                    );
                    if let Some(m) = master {
                        m.retire().await;
                        // Workers drain on their own; stop the stragglers after the deadline.
                        let grace = Grace::new(self.opts.drain_timeout);
                        let (stop, wait) = (shutdown.clone(), grace.total() + grace.cut);
                        self.tasks.spawn(async move {
                            tokio::time::sleep(wait).await;
                            stop.cancel();
                        });
                    }
                }
                () = finished.cancelled() => {
                    tracing::info!("drained; exiting");
                    return 0;
                }
                _ = term.recv() => {
                    tracing::info!("SIGTERM handled.");
                    break;
                }
                _ = int.recv() => {
                    tracing::info!("SIGINT handled.");
                    break;
                }
                _ = usr1.recv() => {
                    if let Err(e) = self.log.reopen() {
                        tracing::warn!(error = %e, "cannot reopen log file");
                    }
                    tracing::info!("log reopened (SIGUSR1)");
                    if let Some(m) = master {
                        m.forward(nix::sys::signal::Signal::SIGUSR1);
                    }
                }
                _ = hup.recv() => {
                    self.reload(shared, master);
                }
            }
        }
        // Cancelling stops the accept loops (and, in the master, stops and reaps the
        // workers through their supervisor tasks).
        shutdown.cancel();
        tracing::info!("Terminated by SIGTERM.");
        0
    }

    /// SIGHUP: re-reads the config; a bad file keeps the old one and says why.
    fn reload(&self, shared: Option<&Arc<Shared>>, master: Option<&Arc<Master>>) {
        tracing::info!("received SIGHUP: re-reading {}", self.opts.config_file);
        match load_config_file(&self.opts.config_file) {
            Ok(new) => {
                if let Some(sh) = shared {
                    me_link::apply(sh, new.conf.clone(), &self.links);
                    crate::stats::inc(&sh.counters.config_reloads);
                }
                if let Some(m) = master {
                    m.set_config_text(new.text.clone());
                    m.forward(nix::sys::signal::Signal::SIGHUP);
                }
                tracing::info!(
                    "configuration file {} re-read successfully ({} bytes parsed), new configuration active",
                    self.opts.config_file,
                    new.size
                );
                *lock(&self.config) = new;
            }
            Err(f) => {
                if let Some(sh) = shared {
                    crate::stats::inc(&sh.counters.config_reload_failures);
                }
                for l in &f.lines {
                    tracing::error!("{l}");
                }
                tracing::error!(
                    "error while re-reading config file {}, new configuration NOT applied",
                    self.opts.config_file
                );
            }
        }
    }
}

/// The pre-authentication timeout: [`PRE_AUTH_TIMEOUT`], or the whole seconds in
/// `MTPROXY_PRE_AUTH_TIMEOUT` (operators may lengthen it; tests shorten it).
fn pre_auth_timeout() -> Duration {
    std::env::var("MTPROXY_PRE_AUTH_TIMEOUT")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|s| *s > 0)
        .map_or(PRE_AUTH_TIMEOUT, Duration::from_secs)
}

/// Whole seconds from the environment variable `name` (operators may change the bound,
/// tests shorten it), else `default`.
fn seconds_from_env(name: &str, default: Duration) -> Duration {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|s| *s > 0)
        .map_or(default, Duration::from_secs)
}

/// Test-only divergence switch (see [`Settings::planted_flag_xor`]): debug builds read
/// `MTPROXY_TEST_PLANT_FLAGS` (hex); release builds never do.
fn planted_flag_xor() -> u32 {
    if !cfg!(debug_assertions) {
        return 0;
    }
    std::env::var("MTPROXY_TEST_PLANT_FLAGS")
        .ok()
        .and_then(|v| u32::from_str_radix(v.trim().trim_start_matches("0x"), 16).ok())
        .unwrap_or(0)
}

/// A token cancelled on shutdown, or when the sockets were handed over (`retire`): what
/// stops `/stats` answering, since after a handover the new process answers on that socket.
fn until_shutdown_or_retired(
    tasks: &TaskTracker,
    shutdown: &CancellationToken,
    retire: &CancellationToken,
) -> CancellationToken {
    let accepting = shutdown.child_token();
    let (retire, token) = (retire.clone(), accepting.clone());
    tasks.spawn(async move {
        tokio::select! {
            () = retire.cancelled() => token.cancel(),
            () = token.cancelled() => {}
        }
    });
    accepting
}

/// A debug-build-only test switch: whether the environment variable `name` is set.
fn planted_switch(name: &str) -> bool {
    cfg!(debug_assertions) && std::env::var_os(name).is_some()
}

/// What a running process offers a new one: its client listeners, `/stats` listener and
/// handover socket.
fn offer_of(
    clients: &[std::net::TcpListener],
    stats: Option<&tokio::net::TcpListener>,
    handover: &std::os::unix::net::UnixListener,
) -> handover::Offer {
    use std::os::fd::AsRawFd;
    handover::Offer {
        client: clients
            .iter()
            .filter_map(|l| Some((l.local_addr().ok()?, l.as_raw_fd())))
            .collect(),
        stats: stats.and_then(|l| Some((l.local_addr().ok()?, l.as_raw_fd()))),
        handover: handover.as_raw_fd(),
    }
}

/// Serves takeover requests on the handover socket, one at a time, until one succeeds
/// (then cancels `retire`) or the process stops. A failed takeover leaves us serving.
/// Waits (at most `bound`) until every middle-end target of the config has a ready link.
async fn wait_for_middle_ends(shared: &Shared, bound: Duration) {
    use std::sync::atomic::Ordering::Relaxed;
    let deadline = tokio::time::Instant::now() + bound;
    let c = &shared.counters;
    while c.total_ready_targets.load(Relaxed) < c.total_declared_targets.load(Relaxed) {
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(
                ready = c.total_ready_targets.load(Relaxed),
                declared = c.total_declared_targets.load(Relaxed),
                "handover: not every middle end is reachable yet; taking over anyway"
            );
            return;
        }
        // The pool has no readiness signal of its own: look again shortly.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn serve_handover(
    listener: std::os::unix::net::UnixListener,
    offer: handover::Offer,
    timeout: Duration,
    retire: CancellationToken,
    shutdown: CancellationToken,
) {
    let listener = match listener
        .set_nonblocking(true)
        .and_then(|()| tokio::net::UnixListener::from_std(listener))
    {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "handover socket unusable; upgrades are off");
            return;
        }
    };
    let offer = Arc::new(offer);
    loop {
        let stream = tokio::select! {
            () = shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "handover socket: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(stream) = stream
            .into_std()
            .and_then(|s| s.set_nonblocking(false).map(|()| s))
        else {
            continue;
        };
        let offer = offer.clone();
        let outcome =
            tokio::task::spawn_blocking(move || handover::serve_one(stream, &offer, timeout)).await;
        match outcome {
            Ok(handover::Outcome::HandedOver(pid)) => {
                tracing::info!(
                    new_pid = pid,
                    "handover: the new process is ready and serving"
                );
                // The new process has its own reference to the socket; ours goes.
                drop(listener);
                retire.cancel();
                return;
            }
            Ok(handover::Outcome::Aborted(why)) => {
                tracing::warn!("handover aborted, still serving: {why}");
            }
            Err(e) => tracing::warn!(error = %e, "handover aborted, still serving"),
        }
    }
}

/// Test-only start-up failure of `-M` workers: debug builds read
/// `MTPROXY_TEST_WORKER_FAIL` (the error a worker then dies with); release builds never do.
fn planted_worker_failure() -> Option<String> {
    if !cfg!(debug_assertions) {
        return None;
    }
    std::env::var("MTPROXY_TEST_WORKER_FAIL")
        .ok()
        .filter(|v| !v.is_empty())
}

fn cli_exit_to_fatal(e: crate::config::cli::CliExit) -> Fatal {
    use crate::config::cli::StderrLine;
    Fatal {
        code: e.code,
        lines: e
            .stderr
            .into_iter()
            .map(|l| match l {
                StderrLine::Raw(s) | StderrLine::Log(s) => s,
            })
            .collect(),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh empty directory for one test.
    fn scratch(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("mtproxy-app-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_huge_stats_port_range_is_walked_within_the_real_ports() {
        let all = stats_port_candidates(PortSpec::Range(1, i32::MAX));
        assert_eq!((*all.start(), *all.end()), (1, 65535));
        assert_eq!(all.count(), 65535);
        let r = stats_port_candidates(PortSpec::Range(8000, 8002));
        assert_eq!(r.collect::<Vec<_>>(), vec![8000, 8001, 8002]);
        let r = stats_port_candidates(PortSpec::Range(65000, 70000));
        assert_eq!((*r.start(), *r.end()), (65000, 65535));
        assert_eq!(stats_port_candidates(PortSpec::Port(8888)), 8888..=8888);
        // Ports that cannot exist give no candidate (the bind then fails clearly).
        assert_eq!(stats_port_candidates(PortSpec::Port(70000)).count(), 0);
        assert_eq!(
            stats_port_candidates(PortSpec::Range(70000, 80000)).count(),
            0
        );
    }

    #[test]
    fn a_huge_file_is_read_only_up_to_the_limit() {
        let d = scratch("huge");
        let p = d.join("big");
        // A sparse 64 GiB file: reading it whole would exhaust memory.
        let f = std::fs::File::create(&p).unwrap();
        f.set_len(64 << 30).unwrap();
        let got = read_regular_limited(p.to_str().unwrap(), 1000).unwrap();
        assert_eq!(got.len(), 1000);
        // The config file gets C's `too long` error (code -2), not an allocation.
        let e = load_config_file(p.to_str().unwrap()).unwrap_err();
        assert_eq!(e.code, 1);
        assert!(e.lines[0].contains("too long"), "{e:?}");
        assert_eq!(e.lines[1], "config check failed! (code -2)");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_fifo_or_directory_is_refused_without_waiting() {
        let d = scratch("fifo");
        let fifo = d.join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        for p in [fifo.to_str().unwrap(), d.to_str().unwrap()] {
            let e = read_regular_limited(p, 100).unwrap_err();
            assert_eq!(e.to_string(), "not a regular file");
            let e = load_config_file(p).unwrap_err();
            assert_eq!(e.code, 1);
            assert_eq!(
                e.lines,
                vec![
                    format!("cannot open config file {p}: not a regular file"),
                    "config check failed! (code -1)".to_string(),
                ]
            );
            let opts =
                crate::config::cli::parse_from(["mtproto-proxy", "--aes-pwd", p, "conf"]).unwrap();
            let e = load_secret(&opts).unwrap_err();
            assert_eq!(
                e.lines,
                vec![format!("fatal: cannot load secret definition file `{p}'")]
            );
        }
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn an_oversized_secret_file_is_refused_after_a_bounded_read() {
        let d = scratch("secret");
        let p = d.join("secret");
        std::fs::File::create(&p).unwrap().set_len(8 << 30).unwrap();
        let p = p.to_str().unwrap();
        let opts =
            crate::config::cli::parse_from(["mtproto-proxy", "--aes-pwd", p, "conf"]).unwrap();
        let e = load_secret(&opts).unwrap_err();
        assert_eq!(
            e.lines,
            vec![format!("fatal: cannot load secret definition file `{p}'")]
        );
        let _ = std::fs::remove_dir_all(&d);
    }
}
