//! Process fixture: spawn a proxy binary (reference or candidate) with a generated
//! `proxy-multi.conf` and proxy-secret, wait until it is ready, read `/stats`, signal it and
//! time its shutdown.
//!
//! ```no_run
//! # async fn f() -> anyhow::Result<()> {
//! use parity::process::{ProxyProcess, Signal};
//! let p = ProxyProcess::builder("/usr/local/bin/mtproto-proxy")
//!     .secrets(&[[0x11; 16]])
//!     .proxy_tag([0x22; 16])
//!     .me_targets(&[(2, "127.0.0.1:18888".parse()?)])
//!     .spawn()
//!     .await?;
//! p.wait_ready(std::time::Duration::from_secs(10)).await?;
//! let stats = p.stats().await?;
//! let out = p.stop(Signal::SIGTERM).await?;
//! # Ok(()) }
//! ```

use anyhow::{bail, Context};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdListener};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::Command;
use tokio::sync::watch;
use tokio::time::Instant;

pub use nix::sys::signal::Signal;

/// A future that resolves when the ME side is up (e.g. the FakeMe saw N handshakes).
pub type ReadyHook = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

/// Default grace between the stop signal and SIGKILL.
pub const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(10);

/// One captured output line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// Time since spawn.
    pub at: Duration,
    /// `stdout` or `stderr`.
    pub stream: &'static str,
    /// The line, without the newline.
    pub line: String,
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitInfo {
    /// Exit code, if it exited normally.
    pub code: Option<i32>,
    /// Signal number, if a signal ended it.
    pub signal: Option<i32>,
    /// Time since spawn.
    pub at: Duration,
}

impl ExitInfo {
    fn from_status(st: ExitStatus, at: Duration, docker: bool) -> Self {
        let (mut code, mut signal) = (st.code(), st.signal());
        // `docker run` reports a signal death of the container as 128 + n.
        if docker {
            if let Some(c) = code.filter(|c| *c > 128 && *c < 128 + 65) {
                code = None;
                signal = Some(c - 128);
            }
        }
        ExitInfo { code, signal, at }
    }

    /// `exit:N` or `signal:SIGNAME`.
    pub fn class(&self) -> String {
        match (self.code, self.signal) {
            (Some(c), _) => format!("exit:{c}"),
            (None, Some(s)) => match Signal::try_from(s) {
                Ok(sig) => format!("signal:{}", sig.as_str()),
                Err(_) => format!("signal:{s}"),
            },
            (None, None) => "unknown".into(),
        }
    }
}

/// Result of [`ProxyProcess::stop`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopOutcome {
    /// Exit code, if it exited normally.
    pub exit_code: Option<i32>,
    /// Signal that ended it, if any.
    pub signal: Option<i32>,
    /// Stop signal sent → exit observed.
    pub elapsed: Duration,
    /// Whether SIGKILL was needed after the grace period.
    pub killed: bool,
    /// Whether it had already exited before the stop signal.
    pub already_exited: bool,
}

impl StopOutcome {
    /// `exit:N` or `signal:SIGNAME`.
    pub fn class(&self) -> String {
        ExitInfo {
            code: self.exit_code,
            signal: self.signal,
            at: Duration::ZERO,
        }
        .class()
    }
}

/// How to launch the binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Launcher {
    /// Run the binary directly.
    Local,
    /// Run in a linux/amd64 container with host networking; `binary` is the path inside the
    /// image (used as `--entrypoint`).
    Docker {
        /// Image name.
        image: String,
        /// Platform, e.g. `linux/amd64`.
        platform: String,
    },
}

/// Builder for [`ProxyProcess`].
#[derive(Debug, Clone)]
#[must_use]
pub struct ProxyProcessBuilder {
    binary: PathBuf,
    secrets: Vec<[u8; 16]>,
    proxy_tag: Option<[u8; 16]>,
    workers: Option<u32>,
    http_stats: bool,
    extra_args: Vec<String>,
    me_targets: Vec<(i16, SocketAddr)>,
    default_dc: i16,
    user: Option<String>,
    max_connections: u32,
    client_port: Option<u16>,
    stats_port: Option<u16>,
    proxy_secret: Option<Vec<u8>>,
    log_file: Option<PathBuf>,
    launcher: Launcher,
    label: String,
    env: Vec<(String, String)>,
}

static INSTANCE: AtomicU64 = AtomicU64::new(0);

/// How often [`ProxyProcessBuilder::spawn`] starts a process again on fresh ports after it
/// lost a port it was given to another socket.
pub const PORT_RETRIES: u32 = 4;

/// How long [`ProxyProcessBuilder::spawn`] watches a start for a lost port race: until both
/// ports listen, the process exits, or this much time passed.
const PORT_SETTLE: Duration = Duration::from_secs(10);

impl ProxyProcessBuilder {
    /// Client secrets (`-S`, hex).
    pub fn secrets(mut self, secrets: &[[u8; 16]]) -> Self {
        self.secrets = secrets.to_vec();
        self
    }
    /// Proxy tag (`-P`).
    pub fn proxy_tag(mut self, tag: [u8; 16]) -> Self {
        self.proxy_tag = Some(tag);
        self
    }
    /// Optional proxy tag.
    pub fn maybe_proxy_tag(mut self, tag: Option<[u8; 16]>) -> Self {
        self.proxy_tag = tag;
        self
    }
    /// Workers (`-M n`); 0 or unset passes no `-M`.
    pub fn workers(mut self, n: u32) -> Self {
        self.workers = (n > 0).then_some(n);
        self
    }
    /// Whether to pass `--http-stats` (default true).
    pub fn http_stats(mut self, on: bool) -> Self {
        self.http_stats = on;
        self
    }
    /// Extra arguments, appended after the standard ones.
    pub fn extra_args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Self {
        self.extra_args.extend(args.into_iter().map(Into::into));
        self
    }
    /// ME targets: one `proxy_for <dc> <addr>;` line each, grouped per dc.
    pub fn me_targets(mut self, targets: &[(i16, SocketAddr)]) -> Self {
        self.me_targets = targets.to_vec();
        self
    }
    /// The `default <dc>;` line (default 2).
    pub fn default_dc(mut self, dc: i16) -> Self {
        self.default_dc = dc;
        self
    }
    /// `-u` user (default `nobody`; `None` passes no `-u`).
    pub fn user(mut self, user: Option<&str>) -> Self {
        self.user = user.map(str::to_string);
        self
    }
    /// `-c` (default 4096, below the usual hard fd limit).
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = n;
        self
    }
    /// Use this client port instead of an OS-chosen one.
    pub fn client_port(mut self, port: u16) -> Self {
        self.client_port = Some(port);
        self
    }
    /// Use this stats port instead of an OS-chosen one.
    pub fn stats_port(mut self, port: u16) -> Self {
        self.stats_port = Some(port);
        self
    }
    /// Use these proxy-secret bytes instead of 128 random ones.
    pub fn proxy_secret(mut self, bytes: Vec<u8>) -> Self {
        self.proxy_secret = Some(bytes);
        self
    }
    /// Also append captured output lines to this file.
    pub fn log_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.log_file = Some(path.into());
        self
    }
    /// How to launch.
    pub fn launcher(mut self, launcher: Launcher) -> Self {
        self.launcher = launcher;
        self
    }
    /// Set an environment variable for the process.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }
    /// Label used in error messages and log files (e.g. `reference`).
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    /// The `proxy-multi.conf` text for the configured targets.
    pub fn multi_conf(&self) -> String {
        let mut dcs: Vec<i16> = Vec::new();
        for (dc, _) in &self.me_targets {
            if !dcs.contains(dc) {
                dcs.push(*dc);
            }
        }
        let mut s = String::from("# generated by parity::process\n");
        s.push_str(&format!("default {};\n", self.default_dc));
        for dc in dcs {
            for (_, addr) in self.me_targets.iter().filter(|(d, _)| *d == dc) {
                s.push_str(&format!("proxy_for {dc} {addr};\n"));
            }
        }
        s
    }

    /// The argument list (without the program) for the given ports and files.
    pub fn args(
        &self,
        client_port: u16,
        stats_port: u16,
        secret: &Path,
        conf: &Path,
    ) -> Vec<String> {
        let mut a = Vec::new();
        if let Some(u) = &self.user {
            a.extend(["-u".to_string(), u.clone()]);
        }
        a.extend(["-c".into(), self.max_connections.to_string()]);
        a.extend(["-p".into(), stats_port.to_string()]);
        if self.http_stats {
            a.push("--http-stats".into());
        }
        a.extend(["-H".into(), client_port.to_string()]);
        a.extend(["--address".into(), "127.0.0.1".into()]);
        for s in &self.secrets {
            a.extend(["-S".into(), hex::encode(s)]);
        }
        if let Some(t) = &self.proxy_tag {
            a.extend(["-P".into(), hex::encode(t)]);
        }
        a.extend(["--aes-pwd".into(), secret.display().to_string()]);
        a.push(conf.display().to_string());
        if let Some(n) = self.workers {
            a.extend(["-M".into(), n.to_string()]);
        }
        a.extend(self.extra_args.iter().cloned());
        a
    }

    /// Write the files, pick ports, start the process.
    ///
    /// A port the OS chose (bind 0, read, release) can be taken by someone else before the
    /// proxy binds it: an outgoing connection of a concurrent test gets its local port from
    /// the same range. So where this builder chose a port, it watches the start until the
    /// ports listen or the process exits, and if the process died of "Address already in
    /// use", starts it again on fresh ports (at most [`PORT_RETRIES`] times). Ports the caller
    /// gave are its own business: that process is returned as it started.
    pub async fn spawn(self) -> anyhow::Result<ProxyProcess> {
        let chosen = self.client_port.is_none() || self.stats_port.is_none();
        let mut attempt = 0;
        loop {
            let mut p = self.clone().spawn_once().await?;
            if !chosen || attempt == PORT_RETRIES {
                return Ok(p);
            }
            if !p.lost_port_race(PORT_SETTLE).await {
                return Ok(p);
            }
            tracing::debug!(
                label = %self.label,
                attempt,
                "a chosen port was taken before the proxy bound it; starting it on fresh ports"
            );
            attempt += 1;
        }
    }

    async fn spawn_once(self) -> anyhow::Result<ProxyProcess> {
        let n = INSTANCE.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "parity-{}-{}-{n}-{nanos:08x}",
            self.label,
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        let temp = TempDir(dir.clone());
        set_mode(&dir, 0o755)?;
        let secret_path = dir.join("proxy-secret");
        let secret = match &self.proxy_secret {
            Some(b) => b.clone(),
            None => {
                let mut b = vec![0u8; 128];
                rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut b);
                b
            }
        };
        std::fs::write(&secret_path, &secret)?;
        set_mode(&secret_path, 0o644)?;
        let conf_path = dir.join("proxy-multi.conf");
        std::fs::write(&conf_path, self.multi_conf())?;
        set_mode(&conf_path, 0o644)?;

        let client_port = match self.client_port {
            Some(p) => p,
            None => free_port()?,
        };
        let stats_port = match self.stats_port {
            Some(p) => p,
            None => free_port()?,
        };
        let args = self.args(client_port, stats_port, &secret_path, &conf_path);
        let mut cmd = match &self.launcher {
            Launcher::Local => {
                let mut c = Command::new(&self.binary);
                c.args(&args);
                c
            }
            Launcher::Docker { image, platform } => {
                let mut c = Command::new("docker");
                c.args(["run", "--rm", "--network", "host", "--platform", platform]);
                c.arg("--name").arg(container_name(&self.label, n));
                c.arg("-v")
                    .arg(format!("{}:{}:ro", dir.display(), dir.display()));
                // `-l FILE` and `--handover-socket PATH` name host paths: their folders are
                // mounted at the same place.
                let folders: std::collections::BTreeSet<PathBuf> = args
                    .windows(2)
                    .filter(|w| w[0] == "-l" || w[0] == "--handover-socket")
                    .filter_map(|w| Path::new(&w[1]).parent().map(Path::to_path_buf))
                    .filter(|f| f.is_absolute())
                    .collect();
                for folder in folders {
                    c.arg("-v")
                        .arg(format!("{}:{}", folder.display(), folder.display()));
                }
                c.arg("--entrypoint").arg(&self.binary);
                // The environment goes to the container, not to the docker CLI.
                for (k, v) in &self.env {
                    c.arg("-e").arg(format!("{k}={v}"));
                }
                c.arg(image).args(&args);
                c
            }
        };
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let started = Instant::now();
        let mut child = cmd
            .spawn()
            .with_context(|| format!("spawn {}", self.binary.display()))?;
        let pid = child.id().context("child has no pid")?;
        let log: Arc<Mutex<Vec<LogLine>>> = Arc::default();
        let log_file = match &self.log_file {
            Some(p) => Some(Arc::new(Mutex::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)?,
            ))),
            None => None,
        };
        let mut readers = Vec::new();
        if let Some(out) = child.stdout.take() {
            readers.push(tokio::spawn(capture(
                out,
                "stdout",
                started,
                log.clone(),
                log_file.clone(),
            )));
        }
        if let Some(err) = child.stderr.take() {
            readers.push(tokio::spawn(capture(
                err,
                "stderr",
                started,
                log.clone(),
                log_file.clone(),
            )));
        }
        let (tx, rx) = watch::channel(None);
        let docker = matches!(self.launcher, Launcher::Docker { .. });
        tokio::spawn(async move {
            let info = match child.wait().await {
                Ok(st) => ExitInfo::from_status(st, started.elapsed(), docker),
                Err(_) => ExitInfo {
                    code: None,
                    signal: None,
                    at: started.elapsed(),
                },
            };
            let _ = tx.send(Some(info));
        });
        Ok(ProxyProcess {
            binary: self.binary.clone(),
            label: self.label.clone(),
            http_stats: self.http_stats,
            args,
            pid,
            started,
            ready_after: Mutex::new(None),
            client_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, client_port)),
            stats_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, stats_port)),
            conf_path,
            secret_path,
            log,
            exit: rx,
            _readers: readers,
            container: docker.then(|| container_name(&self.label, n)),
            _temp: temp,
        })
    }
}

/// A running proxy. Dropping it SIGKILLs the process (if still running) and removes its
/// temporary directory.
#[derive(Debug)]
pub struct ProxyProcess {
    binary: PathBuf,
    label: String,
    http_stats: bool,
    args: Vec<String>,
    pid: u32,
    started: Instant,
    ready_after: Mutex<Option<Duration>>,
    client_addr: SocketAddr,
    stats_addr: SocketAddr,
    conf_path: PathBuf,
    secret_path: PathBuf,
    log: Arc<Mutex<Vec<LogLine>>>,
    exit: watch::Receiver<Option<ExitInfo>>,
    _readers: Vec<tokio::task::JoinHandle<()>>,
    /// The container's name under the docker launcher.
    container: Option<String>,
    _temp: TempDir,
}

impl ProxyProcess {
    /// Start building a process for `binary`.
    pub fn builder(binary: impl Into<PathBuf>) -> ProxyProcessBuilder {
        ProxyProcessBuilder {
            binary: binary.into(),
            secrets: Vec::new(),
            proxy_tag: None,
            workers: None,
            http_stats: true,
            extra_args: Vec::new(),
            me_targets: Vec::new(),
            default_dc: 2,
            user: Some("nobody".into()),
            max_connections: 4096,
            client_port: None,
            stats_port: None,
            proxy_secret: None,
            log_file: None,
            launcher: Launcher::Local,
            label: "proxy".into(),
            env: Vec::new(),
        }
    }

    /// Process id (of `docker run` under the docker launcher).
    pub fn pid(&self) -> u32 {
        self.pid
    }
    /// Client (`-H`) address.
    pub fn client_addr(&self) -> SocketAddr {
        self.client_addr
    }
    /// Stats (`-p`) address.
    pub fn stats_addr(&self) -> SocketAddr {
        self.stats_addr
    }
    /// The arguments it was started with.
    pub fn args(&self) -> &[String] {
        &self.args
    }
    /// The binary path.
    pub fn binary(&self) -> &Path {
        &self.binary
    }
    /// Generated `proxy-multi.conf`.
    pub fn conf_path(&self) -> &Path {
        &self.conf_path
    }
    /// Generated proxy-secret file.
    pub fn secret_path(&self) -> &Path {
        &self.secret_path
    }
    /// Spawn → ready, once [`wait_ready`](Self::wait_ready) succeeded.
    pub fn startup_time(&self) -> Option<Duration> {
        self.ready_after.lock().ok().and_then(|g| *g)
    }
    /// Captured output so far.
    pub fn log_lines(&self) -> Vec<LogLine> {
        self.log.lock().map(|g| g.clone()).unwrap_or_default()
    }
    /// The last `n` output lines as text (for error messages).
    pub fn log_tail(&self, n: usize) -> String {
        let lines = self.log_lines();
        let start = lines.len().saturating_sub(n);
        lines[start..]
            .iter()
            .map(|l| format!("[{:>9.3}s {}] {}", l.at.as_secs_f64(), l.stream, l.line))
            .collect::<Vec<_>>()
            .join("\n")
    }
    /// How it exited, if it has.
    pub fn exit_info(&self) -> Option<ExitInfo> {
        *self.exit.borrow()
    }

    /// Watch the start (at most `bound`): true when the process exited because a port it was
    /// given was in use; false once both ports listen, it exited for another reason, or the
    /// bound passed. Listening is read from the kernel's socket table (`/proc/thread-self/net`,
    /// the caller's network namespace), so nothing connects to the proxy and no counter moves.
    async fn lost_port_race(&mut self, bound: Duration) -> bool {
        let deadline = Instant::now() + bound;
        let mut exit = self.exit.clone();
        let mut backoff = Duration::from_millis(2);
        let ports = [self.client_addr.port(), self.stats_addr.port()];
        loop {
            if self.exit_info().is_some() {
                // Its output ends with the pipes; read all of it before judging.
                for r in &mut self._readers {
                    let _ = tokio::time::timeout(Duration::from_secs(2), r).await;
                }
                self._readers.clear();
                return self
                    .log_lines()
                    .iter()
                    .any(|l| l.line.contains("Address already in use"));
            }
            if ports.iter().all(|p| listening(*p)) || Instant::now() >= deadline {
                return false;
            }
            let wait = backoff.min(deadline.saturating_duration_since(Instant::now()));
            let _ = tokio::time::timeout(wait, exit.changed()).await;
            backoff = (backoff * 2).min(Duration::from_millis(50));
        }
    }

    /// Wait until the client port accepts a TCP connection and (with `--http-stats`) the
    /// stats page answers, poll-connecting with a short bounded backoff, bounded by `timeout`.
    /// Fails at once if the process exits.
    pub async fn wait_ready(&self, timeout: Duration) -> anyhow::Result<Duration> {
        self.wait_ready_with(timeout, None).await
    }

    /// Like [`wait_ready`](Self::wait_ready), then also wait for `hook` (e.g. the FakeMe's
    /// "N ME handshakes done") within the same deadline. Returns spawn → ready.
    pub async fn wait_ready_with(
        &self,
        timeout: Duration,
        hook: Option<ReadyHook>,
    ) -> anyhow::Result<Duration> {
        let deadline = Instant::now() + timeout;
        let mut exit = self.exit.clone();
        let mut backoff = Duration::from_millis(2);
        loop {
            if let Some(e) = self.exit_info() {
                bail!(
                    "{} exited ({}) before it was ready\n{}",
                    self.label,
                    e.class(),
                    self.log_tail(20)
                );
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!(
                    "{} not ready within {timeout:?}: {} does not accept\n{}",
                    self.label,
                    self.client_addr,
                    self.log_tail(20)
                );
            }
            // A listening socket accepts before the event loop runs (C binds -H early), so
            // with --http-stats the stats page answering is part of readiness.
            let probe = async {
                TcpStream::connect(self.client_addr).await?;
                if self.http_stats {
                    fetch_stats(self.stats_addr, Duration::from_millis(500)).await?;
                }
                anyhow::Ok(())
            };
            match tokio::time::timeout(left.min(Duration::from_millis(1000)), probe).await {
                Ok(Ok(())) => break,
                _ => {
                    // Wake early if the process exits; otherwise retry after a short backoff.
                    let wait = backoff.min(deadline.saturating_duration_since(Instant::now()));
                    let _ = tokio::time::timeout(wait, exit.changed()).await;
                    backoff = (backoff * 2).min(Duration::from_millis(50));
                }
            }
        }
        if let Some(hook) = hook {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, hook).await {
                Ok(r) => r.with_context(|| format!("{} readiness hook", self.label))?,
                Err(_) => bail!(
                    "{}: ME side not ready within {timeout:?}\n{}",
                    self.label,
                    self.log_tail(20)
                ),
            }
        }
        let after = self.started.elapsed();
        if let Ok(mut g) = self.ready_after.lock() {
            *g = Some(after);
        }
        Ok(after)
    }

    /// `GET /stats` on the stats port, parsed into key → value (section markers skipped).
    pub async fn stats(&self) -> anyhow::Result<BTreeMap<String, String>> {
        fetch_stats(self.stats_addr, Duration::from_secs(5)).await
    }

    /// Send a signal.
    pub fn signal(&self, sig: Signal) -> anyhow::Result<()> {
        if self.exit_info().is_some() {
            bail!("{} already exited", self.label);
        }
        let pid = i32::try_from(self.pid).context("pid out of range")?;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig)
            .with_context(|| format!("kill -{} {}", sig.as_str(), self.pid))
    }

    /// Send `sig`, wait up to [`DEFAULT_STOP_GRACE`] for the exit, then SIGKILL.
    pub async fn stop(&self, sig: Signal) -> anyhow::Result<StopOutcome> {
        self.stop_with_grace(sig, DEFAULT_STOP_GRACE).await
    }

    /// Send `sig`, wait up to `grace` for the exit, then SIGKILL; time it.
    pub async fn stop_with_grace(
        &self,
        sig: Signal,
        grace: Duration,
    ) -> anyhow::Result<StopOutcome> {
        if let Some(e) = self.exit_info() {
            return Ok(StopOutcome {
                exit_code: e.code,
                signal: e.signal,
                elapsed: Duration::ZERO,
                killed: false,
                already_exited: true,
            });
        }
        let sent = Instant::now();
        let sent_since_spawn = self.started.elapsed();
        self.signal(sig)?;
        let mut killed = false;
        let info = match self.wait_exit(grace).await {
            Some(i) => i,
            None => {
                killed = true;
                let _ = self.signal(Signal::SIGKILL);
                self.wait_exit(Duration::from_secs(10))
                    .await
                    .with_context(|| format!("{} survived SIGKILL", self.label))?
            }
        };
        let elapsed = info
            .at
            .checked_sub(sent_since_spawn)
            .unwrap_or_else(|| sent.elapsed());
        Ok(StopOutcome {
            exit_code: info.code,
            signal: info.signal,
            elapsed,
            killed,
            already_exited: false,
        })
    }

    /// Wait for the process to exit, up to `timeout`.
    pub async fn wait_exit(&self, timeout: Duration) -> Option<ExitInfo> {
        let mut rx = self.exit.clone();
        let r = tokio::time::timeout(timeout, rx.wait_for(|e| e.is_some())).await;
        match r {
            Ok(Ok(v)) => *v,
            _ => self.exit_info(),
        }
    }
}

/// The name of instance `n`'s container.
fn container_name(label: &str, n: u64) -> String {
    format!("parity-{label}-{}-{n}", std::process::id())
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        if self.exit_info().is_none() {
            // Killing the docker CLI leaves its container running: remove the container.
            if let Some(name) = &self.container {
                let _ = std::process::Command::new("docker")
                    .args(["rm", "-f", name])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn();
            }
            if let Ok(pid) = i32::try_from(self.pid) {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }
}

/// The pids of `pid`'s child processes (every thread's `/proc/<pid>/task/*/children`
/// list: a process may fork from any of its threads; empty when it is gone).
pub fn child_pids(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in tasks.flatten() {
        if let Ok(text) = std::fs::read_to_string(t.path().join("children")) {
            out.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// Version of a binary: the first `mtproxy-…` token line of `--help` (C prints it on the
/// second usage line), else the first line of `--version`.
pub async fn probe_version(binary: &Path) -> Option<String> {
    async fn run(binary: &Path, arg: &str) -> Option<String> {
        let out = tokio::time::timeout(
            Duration::from_secs(5),
            Command::new(binary)
                .arg(arg)
                .stdin(Stdio::null())
                .kill_on_drop(true)
                .output(),
        )
        .await
        .ok()?
        .ok()?;
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push('\n');
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        Some(text)
    }
    if let Some(text) = run(binary, "--help").await {
        if let Some(l) = text
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with("mtproxy-"))
        {
            return Some(l.to_string());
        }
        if let Some(l) = text
            .lines()
            .find_map(|l| l.find("mtproxy-").map(|i| l[i..].trim().to_string()))
        {
            return Some(l);
        }
    }
    let text = run(binary, "--version").await?;
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(str::to_string)
}

/// SHA-256 of a file, hex.
pub async fn sha256_file(path: &Path) -> anyhow::Result<String> {
    let bytes = tokio::fs::read(path)
        .await
        .with_context(|| format!("read {}", path.display()))?;
    Ok(hex::encode(Sha256::digest(&bytes)))
}

/// `GET /stats` from `addr`, parsed.
pub async fn fetch_stats(
    addr: SocketAddr,
    timeout: Duration,
) -> anyhow::Result<BTreeMap<String, String>> {
    let body = tokio::time::timeout(timeout, async {
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(b"GET /stats HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        anyhow::Ok(buf)
    })
    .await
    .with_context(|| format!("GET /stats from {addr} timed out"))??;
    parse_stats_response(&body)
}

/// Parse an HTTP response carrying `key\tvalue` lines.
pub fn parse_stats_response(resp: &[u8]) -> anyhow::Result<BTreeMap<String, String>> {
    let text = String::from_utf8_lossy(resp);
    let (head, body) = text.split_once("\r\n\r\n").context("no HTTP header end")?;
    let status = head.lines().next().unwrap_or("");
    if status.split_whitespace().nth(1) != Some("200") {
        bail!("stats: {status}");
    }
    Ok(body
        .lines()
        .filter(|l| !l.starts_with(">>>") && !l.starts_with("<<<"))
        .filter_map(|l| {
            let (k, v) = l.split_once('\t')?;
            Some((k.trim().to_string(), v.trim().to_string()))
        })
        .collect())
}

/// An OS-chosen free loopback port (bind 127.0.0.1:0, read it, release it). A port this
/// process handed out in the last few hundred calls is not handed out again, so two fixtures
/// of one test binary never share one.
pub fn free_port() -> anyhow::Result<u16> {
    static RECENT: Mutex<std::collections::VecDeque<u16>> =
        Mutex::new(std::collections::VecDeque::new());
    const REMEMBER: usize = 512;
    for _ in 0..64 {
        let l = StdListener::bind((Ipv4Addr::LOCALHOST, 0)).context("bind 127.0.0.1:0")?;
        let port = l.local_addr()?.port();
        let mut recent = RECENT.lock().unwrap_or_else(|e| e.into_inner());
        if recent.contains(&port) {
            continue;
        }
        if recent.len() == REMEMBER {
            recent.pop_front();
        }
        recent.push_back(port);
        return Ok(port);
    }
    bail!("bind 127.0.0.1:0 kept returning ports handed out moments ago")
}

/// Whether a TCP socket listens on `port` (any address) in the calling thread's network
/// namespace, read from `/proc/thread-self/net/tcp{,6}`.
fn listening(port: u16) -> bool {
    const LISTEN: &str = "0A";
    ["tcp", "tcp6"].iter().any(|f| {
        std::fs::read_to_string(format!("/proc/thread-self/net/{f}"))
            .map(|t| {
                t.lines().skip(1).any(|l| {
                    let mut cols = l.split_whitespace();
                    let local = cols.nth(1).unwrap_or("");
                    let state = cols.nth(1).unwrap_or("");
                    state == LISTEN
                        && local
                            .rsplit_once(':')
                            .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
                            == Some(port)
                })
            })
            .unwrap_or(false)
    })
}

async fn capture<R: tokio::io::AsyncRead + Unpin>(
    r: R,
    stream: &'static str,
    started: Instant,
    log: Arc<Mutex<Vec<LogLine>>>,
    file: Option<Arc<Mutex<std::fs::File>>>,
) {
    let mut lines = BufReader::new(r).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let at = started.elapsed();
        if let Some(f) = &file {
            if let Ok(mut f) = f.lock() {
                use std::io::Write;
                let _ = writeln!(f, "[{:>9.3}s {stream}] {line}", at.as_secs_f64());
            }
        }
        if let Ok(mut g) = log.lock() {
            g.push(LogLine { at, stream, line });
        }
    }
}

fn set_mode(p: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", p.display()))
}

#[derive(Debug)]
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_reads_the_kernel_socket_table() {
        let l = StdListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = l.local_addr().unwrap().port();
        assert!(listening(port));
        drop(l);
        assert!(!listening(port));
    }

    #[test]
    fn free_port_does_not_hand_out_a_port_twice() {
        let ports: Vec<u16> = (0..200).map(|_| free_port().unwrap()).collect();
        let unique: std::collections::BTreeSet<_> = ports.iter().collect();
        assert_eq!(unique.len(), ports.len());
    }

    /// A stand-in binary loses its port race twice ("Address already in use"), then starts:
    /// spawn starts it again on fresh ports each time and returns the third start.
    #[tokio::test]
    async fn a_start_that_lost_its_port_is_started_again_on_fresh_ports() {
        let dir = std::env::temp_dir().join(format!("parity-port-race-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let _t = TempDir(dir.clone());
        let script = dir.join("stand-in");
        std::fs::write(
            &script,
            "#!/bin/sh\nn=$(cat \"$RUNS\" 2>/dev/null || echo 0)\necho $((n+1)) > \"$RUNS\"\n\
             echo \"$*\" >> \"$RUNS.args\"\n\
             if [ \"$n\" -lt 2 ]; then echo 'fatal: cannot open stats port: Address already in use (os error 98)' >&2; exit 1; fi\n\
             echo started; exit 3\n",
        )
        .unwrap();
        set_mode(&script, 0o755).unwrap();
        let runs = dir.join("runs");
        let p = ProxyProcess::builder(&script)
            .env("RUNS", runs.display().to_string())
            .spawn()
            .await
            .unwrap();
        let mut exit = p.exit.clone();
        let _ = exit.wait_for(Option::is_some).await;
        assert_eq!(p.exit_info().and_then(|e| e.code), Some(3));
        assert_eq!(std::fs::read_to_string(&runs).unwrap().trim(), "3");
        // Every start had its own ports.
        let args = std::fs::read_to_string(dir.join("runs.args")).unwrap();
        let ports: std::collections::BTreeSet<&str> = args
            .lines()
            .filter_map(|l| l.split(" -p ").nth(1)?.split(' ').next())
            .collect();
        assert_eq!(ports.len(), 3, "{args}");

        // With ports the caller chose, the first start is returned as it is.
        std::fs::remove_file(&runs).unwrap();
        let p = ProxyProcess::builder(&script)
            .env("RUNS", runs.display().to_string())
            .client_port(free_port().unwrap())
            .stats_port(free_port().unwrap())
            .spawn()
            .await
            .unwrap();
        let mut exit = p.exit.clone();
        let _ = exit.wait_for(Option::is_some).await;
        assert_eq!(p.exit_info().and_then(|e| e.code), Some(1));
    }

    #[test]
    fn multi_conf_groups_targets_per_dc() {
        let a: SocketAddr = "127.0.0.1:1000".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:2000".parse().unwrap();
        let bld = ProxyProcess::builder("x").me_targets(&[(1, a), (2, b), (1, b), (-1, a)]);
        assert_eq!(
            bld.multi_conf(),
            "# generated by parity::process\ndefault 2;\nproxy_for 1 127.0.0.1:1000;\nproxy_for 1 127.0.0.1:2000;\nproxy_for 2 127.0.0.1:2000;\nproxy_for -1 127.0.0.1:1000;\n"
        );
    }

    #[test]
    fn args_follow_the_reference_command_line() {
        let bld = ProxyProcess::builder("x")
            .secrets(&[[0x01; 16], [0x02; 16]])
            .proxy_tag([0xfe; 16])
            .workers(2)
            .extra_args(["-v"]);
        let a = bld.args(
            18443,
            18080,
            Path::new("/t/proxy-secret"),
            Path::new("/t/proxy-multi.conf"),
        );
        let s = a.join(" ");
        assert_eq!(
            s,
            format!(
                "-u nobody -c 4096 -p 18080 --http-stats -H 18443 --address 127.0.0.1 -S {} -S {} -P {} --aes-pwd /t/proxy-secret /t/proxy-multi.conf -M 2 -v",
                "01".repeat(16),
                "02".repeat(16),
                "fe".repeat(16)
            )
        );
    }

    #[test]
    fn parses_stats_and_rejects_errors() {
        let resp = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\npid\t42\n>>>>>>connections>>>>>>\tstart\nversion\tmtproxy-0.01 compiled\n";
        let m = parse_stats_response(resp).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m["pid"], "42");
        assert!(parse_stats_response(b"HTTP/1.1 404 Not Found\r\n\r\nx").is_err());
    }

    #[test]
    fn exit_classes() {
        let e = ExitInfo {
            code: None,
            signal: Some(6),
            at: Duration::ZERO,
        };
        assert_eq!(e.class(), "signal:SIGABRT");
        let d = ExitInfo::from_status(ExitStatus::from_raw(137 << 8), Duration::ZERO, true);
        assert_eq!(d.class(), "signal:SIGKILL");
        let l = ExitInfo::from_status(ExitStatus::from_raw(2 << 8), Duration::ZERO, false);
        assert_eq!(l.class(), "exit:2");
    }
}
