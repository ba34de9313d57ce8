//! The proxies under test: started with the dual-run's command line, optionally pinned to
//! CPUs, with fresh secrets.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::{Rng, RngCore};

use crate::process::ProxyProcess;

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
    /// The proxy-secret file's bytes (shared with the [`super::bench_me::BenchMe`]).
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
