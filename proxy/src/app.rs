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

use crate::config::cli::{Options, PortSpec};
use crate::config::multi_conf::{parse_multi_conf, MultiConf};
use crate::config::secret::{ProxySecret, DEFAULT_PWD_FILE};
use crate::logging::LogSink;
use crate::net::fake_tls::FakeTlsState;
use crate::net::listener::{self, ListenSpec};
use crate::net::me_pool::MePool;
use crate::net::replay_store::ReplayStore;
use crate::net::{self, domain_probe, stats_http, Settings, Shared};
use crate::protocol::obfuscated2::AcceptPolicy;
use crate::protocol::rpc::handshake::ProcessId;
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
            loaded_at: unix_now(),
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
    let text = std::fs::read(path).map_err(|e| Fatal {
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
    match std::fs::read(path) {
        Ok(bytes) => match ProxySecret::from_bytes(&bytes) {
            Ok(s) => Ok(Some(s)),
            Err(e) => {
                tracing::warn!("secret file {path} {e}");
                Err(fatal())
            }
        },
        Err(_) if !explicit => {
            tracing::warn!("no proxy-secret file (`{path}'): middle-end handshakes will fail");
            Ok(None)
        }
        Err(_) => Err(fatal()),
    }
}

/// Unix time now.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
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
            start_time: unix_now(),
            worker,
            shutdown: CancellationToken::new(),
            links: CancellationToken::new(),
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
            secrets: o.secrets.clone(),
            proxy_tag: o.proxy_tag,
            accept_policy: AcceptPolicy {
                padded_only: o.random_padding_only || !o.domains.is_empty(),
            },
            window_clamp: o
                .effective_window_clamp()
                .and_then(|w| u32::try_from(w).ok())
                .filter(|w| *w > 0),
            max_client_connections: usize::try_from(
                i64::from(o.effective_max_special_connections().max(1))
                    .min(limit_connections as i64),
            )
            .unwrap_or(1)
            .max(1),
            pre_auth_timeout: pre_auth_timeout(),
            per_conn_buffer_cap: net::PER_CONN_BUFFER_CAP,
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
            drain_grace: net::DRAIN_GRACE,
            planted_flag_xor: planted_flag_xor(),
            planted_fd_leak: cfg!(debug_assertions)
                && std::env::var_os("MTPROXY_TEST_LEAK_FD").is_some(),
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
            current_time: unix_now(),
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
        // Listening sockets: inherited by a worker, bound by everyone else.
        let std_listeners = match &self.worker {
            Some(w) => w
                .listen_fds
                .iter()
                .map(|fd| crate::sys::adopt_inherited_fd(*fd).map(std::net::TcpListener::from))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| Fatal::one(format!("fatal: inherited listening socket: {e}")))?,
            None => self.bind_client_ports()?,
        };
        let shutdown = self.shutdown.clone();
        let is_master = self.worker.is_none() && o.workers > 0;
        if is_master {
            return self.run_master(std_listeners, shutdown).await;
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
            Arc::new(FakeTlsState::new(
                &o.domains,
                listen_addrs,
                &mut rand::thread_rng(),
            ))
        });
        let shared = Shared::with_parts(
            self.settings(limit.max_connections),
            replay,
            fake_tls.clone(),
        );
        shared.counters.total_max_special_connections.store(
            shared.settings.max_client_connections as i64,
            std::sync::atomic::Ordering::Relaxed,
        );
        let stats_listener = if self.worker.is_none() {
            self.bind_stats().await?
        } else {
            None
        };
        self.drop_privileges(false)?;
        let conf = lock(&self.config).conf.clone();
        MePool::apply(&shared, conf, &self.links);
        let listeners = std_listeners
            .into_iter()
            .map(tokio::net::TcpListener::from_std)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Fatal::one(format!("fatal: listening socket: {e}")))?;
        if let Some(l) = stats_listener {
            let app = self.clone();
            let sh = shared.clone();
            let source: stats_http::StatsSource = Arc::new(move || {
                let snap = app.snapshot(&sh.counters);
                Box::pin(async move { snap })
            });
            let sh2 = shared.clone();
            tokio::spawn(stats_http::serve(
                l,
                source,
                Arc::new(move || crate::stats::inc(&sh2.counters.http_queries)),
                shutdown.clone(),
            ));
        }
        if let Some(w) = &self.worker {
            let control = crate::sys::adopt_inherited_fd(w.control_fd)
                .map_err(|e| Fatal::one(format!("fatal: control socket: {e}")))?;
            let app = self.clone();
            let sh = shared.clone();
            tokio::spawn(supervisor::serve_control(
                std::os::unix::net::UnixStream::from(control),
                move || app.snapshot(&sh.counters),
                shutdown.clone(),
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
            tokio::spawn(domain_probe::run(shared.clone(), state, shutdown.clone()));
        }
        tokio::spawn(net::trim_heap_when_settled(
            shared.clone(),
            shutdown.clone(),
        ));
        tracing::info!("main loop");
        let serving = tokio::spawn(net::serve_clients(
            shared.clone(),
            listeners,
            shutdown.clone(),
        ));
        let code = self.signal_loop(&shutdown, Some(&shared), None).await;
        let _ = tokio::time::timeout(
            shared.settings.drain_grace + Duration::from_secs(2),
            serving,
        )
        .await;
        self.links.cancel();
        Ok(code)
    }

    fn bind_client_ports(&self) -> Result<Vec<std::net::TcpListener>, Fatal> {
        let o = &self.opts;
        o.http_ports
            .iter()
            .map(|port| {
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

    async fn bind_stats(&self) -> Result<Option<tokio::net::TcpListener>, Fatal> {
        let o = &self.opts;
        if !o.http_stats {
            return Ok(None);
        }
        let ports: Vec<i32> = match o.port {
            Some(PortSpec::Port(p)) => vec![p],
            Some(PortSpec::Range(s, e)) => (s..=e).collect(),
            None => return Err(Fatal::one("fatal: port isn't defined")),
        };
        let mut last = String::new();
        for p in ports {
            let Ok(port) = u16::try_from(p) else { continue };
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
    fn drop_privileges(&self, master: bool) -> Result<(), Fatal> {
        let keep = master && self.opts.log_file.is_some();
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
                net::DRAIN_GRACE + Duration::from_secs(2),
                self.log.clone(),
            )
            .map_err(|e| Fatal::one(format!("fatal: cannot prepare workers: {e}")))?,
        );
        let stats_listener = self.bind_stats().await?;
        self.drop_privileges(true)?;
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
            tokio::spawn(stats_http::serve(
                l,
                source,
                Arc::new(move || {
                    queries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }),
                shutdown.clone(),
            ));
        }
        tracing::info!(workers = o.workers, "main loop (master)");
        let supervising = tokio::spawn(master.clone().run(shutdown.clone()));
        let code = self.signal_loop(&shutdown, None, Some(&master)).await;
        let gave_up = supervising.await.ok().flatten();
        drop(listeners);
        match gave_up {
            Some(reason) => Err(Fatal::one(format!("fatal: {reason}"))),
            None => Ok(code),
        }
    }

    /// Waits for signals: TERM/INT stop (exit 0), USR1 reopens the log, HUP reloads the
    /// config (C ignores SIGHUP; newer forks reload, as we do).
    async fn signal_loop(
        &self,
        shutdown: &CancellationToken,
        shared: Option<&Arc<Shared>>,
        master: Option<&Arc<Master>>,
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
        loop {
            tokio::select! {
                () = shutdown.cancelled() => {
                    // A worker whose master is gone.
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
                    MePool::apply(sh, new.conf.clone(), &self.links);
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

/// The pre-authentication timeout: [`net::PRE_AUTH_TIMEOUT`], or the whole seconds in
/// `MTPROXY_PRE_AUTH_TIMEOUT` (operators may lengthen it; tests shorten it).
fn pre_auth_timeout() -> Duration {
    std::env::var("MTPROXY_PRE_AUTH_TIMEOUT")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|s| *s > 0)
        .map_or(net::PRE_AUTH_TIMEOUT, Duration::from_secs)
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
