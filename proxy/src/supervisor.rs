//! `-M N`: a master process supervising N worker processes that share the listening
//! sockets, as C's forked workers do — but a worker that dies is respawned with backoff
//! instead of taking the whole service down (C's master SIGTERMs everyone and exits 1).
//!
//! How it works:
//! 1. The master binds the `-H` sockets (as root, so ports below 1024 work with `-u`),
//!    clears their close-on-exec flag and starts each worker by re-executing its own
//!    binary with the same arguments and `MTPROXY_WORKER=1` in the environment.
//! 2. A [`WorkerBootstrap`] (JSON) goes to the worker's stdin: its index, the inherited
//!    descriptor numbers (listening sockets and one end of a control socket pair), the
//!    proxy-secret bytes and the config text. The worker therefore needs no access to
//!    root-only files, so a respawn after the master dropped privileges still works.
//! 3. The master never accepts clients; the workers accept from the shared sockets (one
//!    kernel queue, so nothing queued is lost when a worker dies). The master serves
//!    `/stats`, asking every worker for a [`Snapshot`] over its control socket and
//!    summing them, as C sums its workers through shared memory.
//! 4. The master owns the instance's replay caches (fake-TLS client randoms and
//!    obfuscated2 header nonces) and answers each worker on a second socket pair, so a
//!    replay to another worker is caught (C keeps one cache per worker process).
//! 5. Signals: SIGTERM/SIGINT, SIGUSR1 and SIGHUP are forwarded to the workers. A worker
//!    whose control socket reaches EOF (the master is gone) shuts down, as C's workers
//!    exit when their parent changes.
//! 6. Logging: a worker's stderr is a pipe to the master, which copies each line (the
//!    worker's pid in its prefix) into its own log — the `-l` file it opened before
//!    dropping privileges and reopens on SIGUSR1. Workers never open the file.
//! 7. Start-up: a worker says `ready` on its control socket once it can serve. One that
//!    exits before that is logged with its own last error line; when a worker fails
//!    [`START_FAILURES_FATAL`] times in a row and no worker was ever ready, the error is
//!    a configuration error and the master exits 1 with it (C's master would exit too,
//!    when its first worker dies). Once a worker has been ready, exits are respawned.

use std::io::{self, BufRead};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use crate::logging::LogSink;
use crate::stats::Snapshot;

/// The environment variable that marks a worker process.
pub const WORKER_ENV: &str = "MTPROXY_WORKER";

/// What the master tells a worker at start (one JSON document on its stdin).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerBootstrap {
    /// 0-based worker index.
    pub index: u32,
    /// Inherited listening socket descriptors, in `-H` order.
    pub listen_fds: Vec<RawFd>,
    /// Inherited control socket descriptor (stats requests; EOF = master gone).
    pub control_fd: RawFd,
    /// The proxy-secret file's bytes, hex (empty when none).
    pub proxy_secret_hex: String,
    /// The config file's text as the master validated it.
    pub config_text: String,
    /// Inherited replay-cache socket descriptor: the worker asks the master's
    /// instance-wide replay caches here (see [`crate::net::replay_store`]).
    #[serde(default)]
    pub replay_fd: Option<RawFd>,
    /// Do not accept before the master says `go` (the new master of a handover holds its
    /// first workers until the old process has confirmed).
    #[serde(default)]
    pub hold: bool,
}

impl WorkerBootstrap {
    /// Reads the bootstrap from stdin (the worker side).
    ///
    /// # Errors
    /// When stdin does not hold a bootstrap document.
    pub fn read_from_stdin() -> io::Result<Self> {
        let mut line = String::new();
        io::stdin().lock().read_line(&mut line)?;
        serde_json::from_str(&line).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}

/// Answers the master on the control socket until it closes; then cancels `shutdown`
/// (the master is gone). `stats` is answered with a snapshot; `go` opens `gates.go`;
/// `retire` (the master handed the sockets over) cancels `gates.retire`.
pub async fn serve_control(
    control: StdUnixStream,
    snapshot: impl Fn() -> Snapshot + Send + 'static,
    gates: crate::net::serve::Gates,
) {
    let shutdown = gates.shutdown.clone();
    // However this task ends (even by a panic), the worker must not outlive its master.
    let _master_gone = shutdown.clone().drop_guard();
    let _ = control.set_nonblocking(true);
    let Ok(stream) = UnixStream::from_std(control) else {
        shutdown.cancel();
        return;
    };
    let (rd, mut wr) = stream.into_split();
    // The master counts a worker as started once this line arrives (see `Master::supervise`).
    if wr.write_all(READY_LINE).await.is_err() {
        shutdown.cancel();
        return;
    }
    let mut lines = tokio::io::BufReader::new(rd).lines();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            line = lines.next_line() => match line {
                Ok(Some(cmd)) if cmd == "stats" || cmd.starts_with("stats ") => {
                    // `stats <id>` is answered `<id> <json>`, so the master can tell this
                    // answer from a late one to a query it gave up on.
                    let mut text = match cmd.strip_prefix("stats ") {
                        Some(id) => format!("{id} "),
                        None => String::new(),
                    };
                    text.push_str(&serde_json::to_string(&snapshot()).unwrap_or_default());
                    text.push('\n');
                    if wr.write_all(text.as_bytes()).await.is_err() {
                        break;
                    }
                }
                Ok(Some(cmd)) if cmd == "go" => gates.go.cancel(),
                Ok(Some(cmd)) if cmd == "retire" => gates.retire.cancel(),
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            },
        }
    }
    tracing::info!("master is gone (control socket closed), shutting down");
    shutdown.cancel();
}

/// Sends `stats <id>` on a worker's control socket and reads lines until the answer
/// carrying `id`; lines with another id (or none) are stale and dropped.
async fn ask_stats(
    control: &tokio::sync::Mutex<tokio::io::BufStream<UnixStream>>,
    id: u64,
) -> io::Result<Snapshot> {
    let mut c = control.lock().await;
    c.write_all(format!("stats {id}\n").as_bytes()).await?;
    c.flush().await?;
    let want = format!("{id} ");
    loop {
        let mut line = String::new();
        if c.read_line(&mut line).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if let Some(json) = line.strip_prefix(&want) {
            return serde_json::from_str::<Snapshot>(json)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e));
        }
    }
}

/// What a worker writes on its control socket once it is ready to serve.
const READY_LINE: &[u8] = b"ready\n";

/// One supervised worker slot, as seen by the stats and signal paths.
#[derive(Default)]
struct Slot {
    pid: Option<u32>,
    control: Option<Arc<tokio::sync::Mutex<tokio::io::BufStream<UnixStream>>>>,
}

/// The master: starts, watches and respawns workers, and sums their stats.
pub struct Master {
    slots: Vec<Mutex<Slot>>,
    listen_fds: Vec<RawFd>,
    args: Vec<std::ffi::OsString>,
    proxy_secret_hex: String,
    config_text: Mutex<String>,
    /// Incremented on every respawn (reported as `worker_restarts`).
    pub restarts: AtomicI64,
    /// How long workers get to drain on shutdown before SIGKILL.
    pub grace: Duration,
    /// The instance-wide replay caches, served to every worker.
    replay: Arc<Mutex<crate::net::replay_store::Caches>>,
    /// The master's log: every worker's output (its log lines) is copied here.
    log: LogSink,
    /// Whether any worker has reported ready since the master started.
    ever_ready: AtomicBool,
    /// Whether workers may accept (false while a handover's new master waits for `ok`).
    released: AtomicBool,
    /// Whether the sockets were handed over: workers drain and are not respawned.
    retiring: AtomicBool,
    /// Woken whenever a worker becomes ready.
    ready_changed: tokio::sync::Notify,
    /// The id of the next stats query (echoed by the worker, see [`ask_stats`]).
    stats_ids: std::sync::atomic::AtomicU64,
}

/// A freshly started worker: the process, its control socket (not yet ready), and the
/// task copying its output into the master's log (it ends with the worker's last lines).
struct Started {
    child: Child,
    control: tokio::io::BufStream<UnixStream>,
    output: tokio::task::JoinHandle<Vec<String>>,
}

/// Respawn backoff: 1 s doubling to 30 s; reset after a worker has run for a minute.
const BACKOFF_START: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
const STABLE_RUN: Duration = Duration::from_secs(60);
const STATS_TIMEOUT: Duration = Duration::from_secs(1);
/// A worker that exits this many times in a row before reporting ready, while no worker
/// of this master ever was ready, shows a configuration error: the master gives up.
pub const START_FAILURES_FATAL: u32 = 3;
/// Worker output lines kept to explain a failed start.
const LAST_LINES: usize = 8;
/// The longest worker output line copied in one piece.
const OUTPUT_LINE_MAX: u64 = 64 * 1024;

impl Master {
    /// A master for `workers` workers sharing `listeners`.
    ///
    /// # Errors
    /// When the listening sockets cannot be made inheritable.
    pub fn new(
        workers: u32,
        listeners: &[std::net::TcpListener],
        args: Vec<std::ffi::OsString>,
        proxy_secret: &[u8],
        config_text: String,
        grace: Duration,
        log: LogSink,
    ) -> io::Result<Self> {
        for l in listeners {
            crate::sys::make_inheritable(l)?;
        }
        Ok(Self {
            slots: (0..workers).map(|_| Mutex::new(Slot::default())).collect(),
            listen_fds: listeners.iter().map(AsRawFd::as_raw_fd).collect(),
            args,
            proxy_secret_hex: hex::encode(proxy_secret),
            config_text: Mutex::new(config_text),
            restarts: AtomicI64::new(0),
            grace,
            replay: Arc::default(),
            log,
            ever_ready: AtomicBool::new(false),
            released: AtomicBool::new(true),
            retiring: AtomicBool::new(false),
            ready_changed: tokio::sync::Notify::new(),
            stats_ids: std::sync::atomic::AtomicU64::new(1),
        })
    }

    /// Workers started from now on do not accept until [`Master::release`] (the new
    /// master of a handover, until the old process confirms).
    pub fn hold_until_released(&self) {
        self.released.store(false, Ordering::SeqCst);
    }

    /// Resolves once every worker slot has a ready worker.
    pub async fn all_ready(&self) {
        loop {
            let changed = self.ready_changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.slots.iter().all(|s| lock(s).control.is_some()) {
                return;
            }
            changed.await;
        }
    }

    /// Lets the workers accept (after a handover's `ok`).
    pub async fn release(&self) {
        self.released.store(true, Ordering::SeqCst);
        self.tell_all(b"go\n").await;
    }

    /// The sockets were handed over: the workers stop accepting and drain; none is
    /// respawned from now on.
    pub async fn retire(&self) {
        self.retiring.store(true, Ordering::SeqCst);
        self.tell_all(b"retire\n").await;
    }

    async fn tell_all(&self, line: &[u8]) {
        for slot in &self.slots {
            let control = lock(slot).control.clone();
            if let Some(c) = control {
                tell(&c, line).await;
            }
        }
    }

    /// Replaces the config text handed to workers spawned from now on (after a reload).
    pub fn set_config_text(&self, text: String) {
        *lock(&self.config_text) = text;
    }

    /// Sends `sig` to every live worker.
    pub fn forward(&self, sig: Signal) {
        for slot in &self.slots {
            if let Some(pid) = lock(slot).pid {
                let _ = kill(Pid::from_raw(pid as i32), sig);
            }
        }
    }

    /// The pids of the live workers, by index (`None` for a slot being respawned).
    pub fn worker_pids(&self) -> Vec<Option<u32>> {
        self.slots.iter().map(|s| lock(s).pid).collect()
    }

    /// Sums the workers' snapshots (workers that do not answer within a second are
    /// left out) into `base`.
    ///
    /// Each query carries a fresh id that the worker echoes, and answers with another id
    /// (late answers to queries that timed out, or the rest of a line cut by a timeout)
    /// are read and dropped: a slow worker is left out of one sum, never makes a later
    /// sum report an older snapshot.
    pub async fn sum_stats(&self, mut base: Snapshot) -> Snapshot {
        for slot in &self.slots {
            let control = lock(slot).control.clone();
            let Some(control) = control else { continue };
            let id = self.stats_ids.fetch_add(1, Ordering::Relaxed);
            let ask = ask_stats(&control, id);
            if let Ok(Ok(s)) = tokio::time::timeout(STATS_TIMEOUT, ask).await {
                base.add(&s);
                base.info.vmrss_bytes += s.info.vmrss_bytes;
                base.info.open_fds += s.info.open_fds;
            }
        }
        base
    }

    async fn spawn_worker(&self, index: usize) -> io::Result<Started> {
        let (master_end, worker_end) = StdUnixStream::pair()?;
        crate::sys::make_inheritable(&worker_end)?;
        let (replay_master, replay_worker) = StdUnixStream::pair()?;
        crate::sys::make_inheritable(&replay_worker)?;
        let boot = WorkerBootstrap {
            index: index as u32,
            listen_fds: self.listen_fds.clone(),
            // exec keeps descriptor numbers; only close-on-exec was cleared.
            control_fd: worker_end.as_raw_fd(),
            proxy_secret_hex: self.proxy_secret_hex.clone(),
            config_text: lock(&self.config_text).clone(),
            replay_fd: Some(replay_worker.as_raw_fd()),
            hold: !self.released.load(Ordering::SeqCst),
        };
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.args(self.args.iter().skip(1))
            .env(WORKER_ENV, "1")
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let spawned = cmd.spawn();
        drop(worker_end);
        drop(replay_worker);
        let mut child = spawned?;
        // The worker logs to its stderr (see `LogSink::to_master`); copy it into our log.
        let output = match child.stderr.take() {
            Some(err) => tokio::spawn(copy_output(err, self.log.clone())),
            None => tokio::spawn(async { Vec::new() }),
        };
        if let Some(mut stdin) = child.stdin.take() {
            let mut text = serde_json::to_string(&boot)?;
            text.push('\n');
            // A worker that dies before reading it is seen when it is reaped.
            let _ = stdin.write_all(text.as_bytes()).await;
        }
        master_end.set_nonblocking(true)?;
        replay_master.set_nonblocking(true)?;
        // Ends when the worker's end closes (the worker exited).
        tokio::spawn(crate::net::replay_store::serve_replay(
            UnixStream::from_std(replay_master)?,
            self.replay.clone(),
            CancellationToken::new(),
        ));
        let control = tokio::io::BufStream::new(UnixStream::from_std(master_end)?);
        lock(&self.slots[index]).pid = child.id();
        tracing::info!(
            worker = index,
            pid = child.id().unwrap_or(0),
            "worker started"
        );
        Ok(Started {
            child,
            control,
            output,
        })
    }

    /// Runs every worker slot until `shutdown`; then stops the workers (SIGTERM, then
    /// SIGKILL after the grace period).
    ///
    /// Returns the reason when the master gave up: the workers cannot start (one failed
    /// [`START_FAILURES_FATAL`] times in a row and none was ever ready). `shutdown` is
    /// cancelled then.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) -> Option<String> {
        let mut tasks = tokio::task::JoinSet::new();
        for index in 0..self.slots.len() {
            let me = self.clone();
            let stop = shutdown.clone();
            tasks.spawn(async move { me.supervise(index, stop).await });
        }
        let mut gave_up = None;
        while let Some(done) = tasks.join_next().await {
            if let Ok(Some(reason)) = done {
                shutdown.cancel();
                gave_up.get_or_insert(reason);
            }
        }
        gave_up
    }

    /// Starts, watches and respawns one worker slot. `Some(reason)` when it gives up.
    async fn supervise(&self, index: usize, shutdown: CancellationToken) -> Option<String> {
        let mut backoff = BACKOFF_START;
        let mut failed_starts = 0u32;
        loop {
            let started = tokio::time::Instant::now();
            let Started {
                mut child,
                mut control,
                output,
            } = match self.spawn_worker(index).await {
                Ok(w) => w,
                Err(e) => {
                    tracing::error!(worker = index, error = %e, "cannot start worker");
                    if sleep_or_stop(backoff, &shutdown).await {
                        return None;
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    continue;
                }
            };
            let ready = tokio::select! {
                r = wait_ready(&mut control) => r,
                () = shutdown.cancelled() => {
                    self.stop_child(index, &mut child).await;
                    return None;
                }
            };
            if ready {
                failed_starts = 0;
                self.ever_ready.store(true, Ordering::Relaxed);
                let control = Arc::new(tokio::sync::Mutex::new(control));
                lock(&self.slots[index]).control = Some(control.clone());
                tracing::info!(worker = index, "worker ready");
                self.ready_changed.notify_waiters();
                // Released while this one was starting on hold: it may accept now.
                if self.released.load(Ordering::SeqCst) {
                    tell(&control, b"go\n").await;
                }
            } else {
                drop(control);
            }
            let status = tokio::select! {
                s = child.wait() => s,
                () = shutdown.cancelled() => {
                    self.stop_child(index, &mut child).await;
                    return None;
                }
            };
            {
                let mut slot = lock(&self.slots[index]);
                slot.pid = None;
                slot.control = None;
            }
            // The copy ends at the worker's EOF; bounded in case a descendant holds it.
            let last = tokio::time::timeout(Duration::from_secs(2), output)
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default();
            if shutdown.is_cancelled() || self.retiring.load(Ordering::SeqCst) {
                return None;
            }
            let status = status.map_or_else(|e| e.to_string(), |s| s.to_string());
            let said = worker_error(&last);
            if ready {
                if started.elapsed() >= STABLE_RUN {
                    backoff = BACKOFF_START;
                }
                tracing::warn!(
                    worker = index,
                    status,
                    last_output = said,
                    respawn_in_ms = backoff.as_millis() as u64,
                    "worker exited unexpectedly; respawning"
                );
            } else {
                failed_starts += 1;
                tracing::error!(
                    worker = index,
                    status,
                    attempt = failed_starts,
                    "worker failed to start: {said}"
                );
                if failed_starts >= START_FAILURES_FATAL && !self.ever_ready.load(Ordering::Relaxed)
                {
                    return Some(format!(
                        "workers cannot start ({failed_starts} attempts in a row, {status}): {said}"
                    ));
                }
            }
            self.restarts.fetch_add(1, Ordering::Relaxed);
            if sleep_or_stop(backoff, &shutdown).await {
                return None;
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    async fn stop_child(&self, index: usize, child: &mut Child) {
        if let Some(pid) = child.id() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
        }
        if tokio::time::timeout(self.grace, child.wait())
            .await
            .is_err()
        {
            tracing::warn!(worker = index, "worker did not stop in time; killing it");
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
        let mut slot = lock(&self.slots[index]);
        slot.pid = None;
        slot.control = None;
    }
}

/// Writes one line to a worker's control socket (a worker that does not take it within
/// a second is left alone: it is busy dying, and its supervisor will see that).
async fn tell(control: &tokio::sync::Mutex<tokio::io::BufStream<UnixStream>>, line: &[u8]) {
    let _ = tokio::time::timeout(STATS_TIMEOUT, async {
        let mut c = control.lock().await;
        c.write_all(line).await?;
        c.flush().await
    })
    .await;
}

/// Waits for the worker's ready line; `false` when the socket closes first (the worker
/// exited during start-up).
async fn wait_ready(control: &mut tokio::io::BufStream<UnixStream>) -> bool {
    use tokio::io::AsyncReadExt;
    let mut line = Vec::new();
    let read = (&mut *control)
        .take(READY_LINE.len() as u64)
        .read_until(b'\n', &mut line)
        .await;
    read.is_ok() && line == READY_LINE
}

/// Copies a worker's output, line by line, into the master's log; returns its last
/// lines when the worker's end closes.
async fn copy_output(err: tokio::process::ChildStderr, log: LogSink) -> Vec<String> {
    use tokio::io::AsyncReadExt;
    let mut reader = tokio::io::BufReader::new(err);
    let mut last = std::collections::VecDeque::with_capacity(LAST_LINES);
    let mut line = Vec::new();
    loop {
        line.clear();
        match (&mut reader)
            .take(OUTPUT_LINE_MAX)
            .read_until(b'\n', &mut line)
            .await
        {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if !line.ends_with(b"\n") {
            line.push(b'\n');
        }
        log.write_line(&line);
        if last.len() == LAST_LINES {
            last.pop_front();
        }
        last.push_back(String::from_utf8_lossy(&line).trim_end().to_string());
    }
    last.into()
}

/// The worker's own words for why it stopped: its last error line (without the log
/// prefix), else its last line.
fn worker_error(last: &[String]) -> String {
    let error = last
        .iter()
        .rev()
        .find(|l| l.contains(" ERROR ") || l.contains("fatal") || l.contains("panicked"));
    let Some(line) = error.or(last.last()) else {
        return "(the worker said nothing)".to_string();
    };
    let text = line.split_once(" UTC] ").map_or(line.as_str(), |(_, t)| t);
    let text = text
        .strip_prefix("ERROR ")
        .or_else(|| text.strip_prefix("WARN "))
        .or_else(|| text.strip_prefix("INFO "))
        .unwrap_or(text);
    text.trim().to_string()
}

/// Sleeps for `d` unless `stop` fires first; returns whether it fired.
async fn sleep_or_stop(d: Duration, stop: &CancellationToken) -> bool {
    tokio::select! {
        () = tokio::time::sleep(d) => false,
        () = stop.cancelled() => true,
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A master with one worker slot whose control socket is `master_end`.
    fn master_with(master_end: UnixStream) -> Master {
        let m = Master::new(
            1,
            &[],
            Vec::new(),
            &[],
            String::new(),
            Duration::from_secs(1),
            LogSink::open(None).unwrap(),
        )
        .unwrap();
        lock(&m.slots[0]).control = Some(Arc::new(tokio::sync::Mutex::new(
            tokio::io::BufStream::new(master_end),
        )));
        m
    }

    fn snapshot_with(queries: i64) -> Snapshot {
        Snapshot {
            tot_forwarded_queries: queries,
            ..Snapshot::default()
        }
    }

    #[tokio::test]
    async fn a_late_stats_answer_is_dropped_not_returned_to_the_next_query() {
        let (master_end, worker_end) = UnixStream::pair().unwrap();
        let master = master_with(master_end);
        // The fake worker answers its first query after the master's timeout, then the
        // second at once; each answer reports how many queries it has seen.
        let worker = tokio::spawn(async move {
            let mut w = tokio::io::BufStream::new(worker_end);
            for n in 1..=2i64 {
                let mut cmd = String::new();
                w.read_line(&mut cmd).await.unwrap();
                let id = cmd.trim_end().strip_prefix("stats ").unwrap().to_string();
                if n == 1 {
                    tokio::time::sleep(STATS_TIMEOUT + Duration::from_millis(300)).await;
                }
                let json = serde_json::to_string(&snapshot_with(n)).unwrap();
                w.write_all(format!("{id} {json}\n").as_bytes())
                    .await
                    .unwrap();
                w.flush().await.unwrap();
            }
            w
        });
        // The first query times out: the worker is left out of the sum.
        let first = master.sum_stats(Snapshot::default()).await;
        assert_eq!(first.tot_forwarded_queries, 0);
        // Let the late answer arrive before the second query is sent.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let second = master.sum_stats(Snapshot::default()).await;
        assert_eq!(
            second.tot_forwarded_queries, 2,
            "the second query must get its own answer, not the late first one"
        );
        drop(worker.await.unwrap());
    }

    #[tokio::test]
    async fn a_worker_echoes_the_stats_query_id() {
        let (master_end, worker_end) = StdUnixStream::pair().unwrap();
        let gates = crate::net::serve::Gates::default();
        let shutdown = gates.shutdown.clone();
        let task = tokio::spawn(serve_control(worker_end, || snapshot_with(7), gates));
        let master = master_with(
            UnixStream::from_std({
                master_end.set_nonblocking(true).unwrap();
                master_end
            })
            .unwrap(),
        );
        // The worker's `ready` line is not an answer: it is skipped.
        let sum = master.sum_stats(snapshot_with(1)).await;
        assert_eq!(sum.tot_forwarded_queries, 8);
        shutdown.cancel();
        task.await.unwrap();
    }

    #[test]
    fn a_workers_error_is_its_last_error_line_without_the_prefix() {
        let last = vec![
            "[7][2026-12-03 10:00:00.000001 UTC] INFO config_filename = 'x'".to_string(),
            "[7][2026-12-03 10:00:00.000002 UTC] ERROR fatal: cannot open x: denied".to_string(),
            "[7][2026-12-03 10:00:00.000003 UTC] INFO exiting".to_string(),
        ];
        assert_eq!(worker_error(&last), "fatal: cannot open x: denied");
        // No error line: the last line; nothing: said so.
        assert_eq!(worker_error(&last[..1]), "config_filename = 'x'");
        assert_eq!(worker_error(&[]), "(the worker said nothing)");
        // A panic message has no log prefix and is kept whole.
        let panic = vec!["thread 'main' panicked at src/x.rs:1:1".to_string()];
        assert_eq!(worker_error(&panic), panic[0]);
    }
}
