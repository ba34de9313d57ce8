//! Fixtures shared by the scenarios: the [`Subject`] under test (the [`candidate`] binary,
//! and the C [`reference`] when `MTPROXY_C_BIN` is set), a [`Rig`] (FakeMes + one proxy process,
//! ready), `/stats` helpers and bounded waits.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use mtproxy::protocol::transport::Transport;
use parity::client::{ClientConfig, SimClient};
use parity::fake_me::FakeMe;
use parity::process::ProxyProcess;
use parity::subject::Subject;
use rand::RngCore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// The first client secret of every rig.
pub const SECRET: [u8; 16] = [0x5e; 16];
/// The proxy tag used by the `-P` variants.
pub const TAG: [u8; 16] = [
    0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32, 0x10, 0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32, 0x10,
];
/// How long a proxy may take to come up (process start + ME links), generous for a loaded
/// 2-core machine.
pub const READY_TIMEOUT: Duration = Duration::from_secs(25);
/// The bound on one client round trip.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);
/// Start attempts when a fixture port was taken before the proxy could bind it.
const PORT_RACE_ATTEMPTS: u32 = 4;
/// C opens this many links per target and process (§5.1).
pub const LINKS_PER_TARGET: usize = 4;

/// The candidate: this workspace's `mtproto-proxy`.
pub fn candidate() -> Subject {
    Subject::candidate(env!("CARGO_BIN_EXE_mtproto-proxy"))
}

/// The C reference, when `MTPROXY_C_BIN` names it.
pub fn reference() -> Option<Subject> {
    let bin = std::env::var_os("MTPROXY_C_BIN")?;
    if bin.is_empty() {
        return None;
    }
    Some(Subject::reference(bin))
}

/// Prints the one-line notice of no-reference mode.
#[allow(clippy::print_stderr)] // says plainly that only the candidate ran
pub fn no_reference(test: &str) {
    eprintln!("no reference: MTPROXY_C_BIN not set; {test} ran against the candidate only");
}

/// Prints a measurement (e.g. the SIGTERM drain time) for the person reading the log.
#[allow(clippy::print_stderr)] // measurements are reported, not asserted to the digit
pub fn note(msg: &str) {
    eprintln!("note: {msg}");
}

/// Runs `scenario` for the candidate and, when `MTPROXY_C_BIN` is set, for the reference
/// (concurrently); fails with every side's error.
pub async fn each_subject<F, Fut>(test: &str, scenario: F)
where
    F: Fn(Subject) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let reference = reference();
    if reference.is_none() {
        no_reference(test);
    }
    let (cand, refr) = tokio::join!(scenario(candidate()), async {
        match reference {
            Some(r) => Some(scenario(r).await),
            None => None,
        }
    });
    let mut errors = Vec::new();
    if let Err(e) = cand {
        errors.push(format!("candidate: {e:#}"));
    }
    if let Some(Err(e)) = refr {
        errors.push(format!("reference (C): {e:#}"));
    }
    assert!(errors.is_empty(), "{test} failed:\n{}", errors.join("\n\n"));
}

/// How to set up a [`Rig`].
#[derive(Debug, Clone)]
pub struct Setup {
    /// How many FakeMes to start.
    pub mes: usize,
    /// `proxy_for` lines as (dc, FakeMe index); `None`: dcs ±1..±5 all to FakeMe 0.
    pub routes: Option<Vec<(i16, usize)>>,
    /// `default` dc.
    pub default_dc: i16,
    /// `-S` secrets.
    pub secrets: Vec<[u8; 16]>,
    /// `-P` tag.
    pub tag: Option<[u8; 16]>,
    /// `-M`.
    pub workers: u32,
    /// Extra environment.
    pub env: Vec<(String, String)>,
    /// Extra arguments.
    pub extra_args: Vec<String>,
    /// Handshakes each FakeMe must see before the rig is ready.
    pub handshakes_per_me: usize,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            mes: 1,
            routes: None,
            default_dc: 2,
            secrets: vec![SECRET],
            tag: None,
            workers: 0,
            env: Vec::new(),
            extra_args: Vec::new(),
            handshakes_per_me: LINKS_PER_TARGET,
        }
    }
}

/// A proxy with its FakeMes, ready for clients.
pub struct Rig {
    /// What runs.
    pub subject: Subject,
    /// The fake middle ends (index 0 first).
    pub mes: Vec<FakeMe>,
    /// The proxy process.
    pub proxy: ProxyProcess,
    /// The `-S` secrets.
    pub secrets: Vec<[u8; 16]>,
}

/// `/stats` as key → value.
pub type Stats = BTreeMap<String, String>;

impl Rig {
    /// Starts the FakeMes and the proxy; resolves once every FakeMe saw its handshakes and
    /// the proxy reports every target ready.
    ///
    /// The fixture picks OS-chosen ports by binding port 0 and releasing it; another
    /// process's outgoing connection can take such a port before the proxy binds it. A
    /// start-up that died of "Address already in use" is therefore retried with new
    /// ports (a few times); any other failure is returned at once.
    pub async fn start(subject: &Subject, setup: Setup) -> anyhow::Result<Rig> {
        let mut attempt = 1;
        loop {
            match Self::try_start(subject, setup.clone()).await {
                Ok(rig) => return Ok(rig),
                Err((_, true)) if attempt < PORT_RACE_ATTEMPTS => attempt += 1,
                Err((e, _)) => return Err(e),
            }
        }
    }

    /// One start attempt; the flag says whether it lost a port race.
    async fn try_start(subject: &Subject, setup: Setup) -> Result<Rig, (anyhow::Error, bool)> {
        // With `-l FILE` the candidate logs there, not to the captured stderr.
        let log_file = setup
            .extra_args
            .iter()
            .position(|a| a == "-l")
            .and_then(|i| setup.extra_args.get(i + 1))
            .map(PathBuf::from);
        let mut proxy = None;
        let r = Self::try_start_inner(subject, setup, &mut proxy).await;
        r.map_err(|e| {
            const TAKEN: &str = "Address already in use";
            let raced = proxy.as_ref().is_some_and(|p: &ProxyProcess| {
                p.exit_info().is_some()
                    && (p.log_lines().iter().any(|l| l.line.contains(TAKEN))
                        || log_file.as_ref().is_some_and(|f| {
                            std::fs::read_to_string(f).is_ok_and(|t| t.contains(TAKEN))
                        }))
            });
            (e, raced)
        })
    }

    async fn try_start_inner(
        subject: &Subject,
        setup: Setup,
        slot: &mut Option<ProxyProcess>,
    ) -> anyhow::Result<Rig> {
        let mut proxy_secret = vec![0u8; 128];
        rand::thread_rng().fill_bytes(&mut proxy_secret);
        let mut mes = Vec::with_capacity(setup.mes);
        for _ in 0..setup.mes.max(1) {
            mes.push(
                FakeMe::builder()
                    .secret(proxy_secret.clone())
                    .spawn()
                    .await?,
            );
        }
        let routes: Vec<(i16, SocketAddr)> = match &setup.routes {
            Some(r) => r
                .iter()
                .map(|(dc, i)| {
                    mes.get(*i)
                        .map(|m| (*dc, m.addr()))
                        .ok_or_else(|| anyhow!("route to FakeMe {i} of {}", mes.len()))
                })
                .collect::<anyhow::Result<_>>()?,
            None => (1..=5)
                .flat_map(|dc| [(dc, mes[0].addr()), (-dc, mes[0].addr())])
                .collect(),
        };
        let mut targets: Vec<SocketAddr> = routes.iter().map(|(_, a)| *a).collect();
        targets.sort();
        targets.dedup();
        let mut b = ProxyProcess::builder(&subject.binary)
            .label(subject.name())
            .secrets(&setup.secrets)
            .maybe_proxy_tag(setup.tag)
            .me_targets(&routes)
            .default_dc(setup.default_dc)
            .workers(setup.workers)
            .proxy_secret(proxy_secret.clone())
            .extra_args(setup.extra_args.clone());
        for (k, v) in &setup.env {
            b = b.env(k, v);
        }
        let proxy = slot.insert(b.spawn().await?);
        proxy.wait_ready(READY_TIMEOUT).await?;
        // Every FakeMe whose address is routed must see its links come up.
        for m in mes.iter().filter(|m| targets.contains(&m.addr())) {
            m.wait_handshakes(setup.handshakes_per_me, READY_TIMEOUT)
                .await
                .with_context(|| proxy.log_tail(20))?;
        }
        let rig = Rig {
            subject: subject.clone(),
            mes,
            proxy: slot.take().context("proxy slot")?,
            secrets: setup.secrets,
        };
        let n = targets.len() as i64;
        rig.wait_stats("every target ready", READY_TIMEOUT, |s| {
            num(s, "total_ready_targets").is_ok_and(|v| v >= n)
        })
        .await?;
        Ok(rig)
    }

    /// FakeMe 0.
    pub fn me(&self) -> &FakeMe {
        &self.mes[0]
    }

    /// The client port.
    pub fn addr(&self) -> SocketAddr {
        self.proxy.client_addr()
    }

    /// A client config with secret 0 and the rig's timeouts.
    pub fn cfg(&self, transport: Transport, dc: i16, seed: u64) -> ClientConfig {
        ClientConfig::new(transport)
            .secret(self.secrets.first().copied().unwrap_or(SECRET))
            .dc(dc)
            .seed(seed)
            .timeout(CLIENT_TIMEOUT)
    }

    /// Connects a client with [`Rig::cfg`].
    pub async fn client(
        &self,
        transport: Transport,
        dc: i16,
        seed: u64,
    ) -> anyhow::Result<SimClient> {
        self.step(
            "client connect",
            SimClient::connect(self.addr(), self.cfg(transport, dc, seed)),
        )
        .await
    }

    /// Awaits `fut`; on error adds `what`, the side and the proxy's log tail.
    pub async fn step<T, E>(
        &self,
        what: &str,
        fut: impl Future<Output = Result<T, E>>,
    ) -> anyhow::Result<T>
    where
        E: Into<anyhow::Error>,
    {
        fut.await
            .map_err(Into::into)
            .with_context(|| self.ctx(what))
    }

    /// `what`, the side and the proxy's last log lines (for error messages).
    pub fn ctx(&self, what: &str) -> String {
        format!(
            "{what} ({} {}; exit {:?})\n--- proxy log tail ---\n{}",
            self.subject.name(),
            self.subject.binary.display(),
            self.proxy.exit_info().map(|e| e.class()),
            self.proxy.log_tail(25)
        )
    }

    /// `GET /stats`.
    pub async fn stats(&self) -> anyhow::Result<Stats> {
        self.step("GET /stats", self.proxy.stats()).await
    }

    /// Polls `/stats` with a bounded backoff until `pred` holds (for counters that have no
    /// event to wait on).
    pub async fn wait_stats(
        &self,
        what: &str,
        timeout: Duration,
        mut pred: impl FnMut(&Stats) -> bool,
    ) -> anyhow::Result<Stats> {
        let deadline = Instant::now() + timeout;
        let mut backoff = Duration::from_millis(10);
        loop {
            let s = self.proxy.stats().await;
            if let Ok(s) = &s {
                if pred(s) {
                    return Ok(s.clone());
                }
            }
            if Instant::now() + backoff > deadline {
                let last = match s {
                    Ok(s) => summarize(&s),
                    Err(e) => format!("{e:#}"),
                };
                bail!(
                    "{}",
                    self.ctx(&format!(
                        "/stats: {what} did not hold within {timeout:?}; last: {last}"
                    ))
                );
            }
            if self.proxy.exit_info().is_some() {
                bail!("{}", self.ctx(&format!("exited while waiting for {what}")));
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(250));
        }
    }

    /// Fails when the proxy has exited.
    pub fn alive(&self) -> anyhow::Result<()> {
        if self.proxy.exit_info().is_some() {
            bail!("{}", self.ctx("the proxy exited"));
        }
        Ok(())
    }
}

/// The counters that matter in error messages.
fn summarize(s: &Stats) -> String {
    [
        "total_ready_targets",
        "ready_outbound_connections",
        "tot_forwarded_queries",
        "tot_forwarded_responses",
        "dropped_queries",
        "dropped_responses",
        "workers",
        "worker_restarts",
        "config_md5",
    ]
    .iter()
    .filter_map(|k| s.get(*k).map(|v| format!("{k}={v}")))
    .collect::<Vec<_>>()
    .join(" ")
}

/// A `/stats` value as an integer.
pub fn num(s: &Stats, key: &str) -> anyhow::Result<i64> {
    let v = s.get(key).with_context(|| format!("/stats has no {key}"))?;
    v.trim()
        .parse::<i64>()
        .with_context(|| format!("/stats {key} = {v:?} is not an integer"))
}

/// MD5 of `bytes`, lower-case hex.
pub fn md5_hex(bytes: &[u8]) -> String {
    hex::encode(mtproxy::protocol::crypto::md5(&[bytes]))
}

/// One raw HTTP exchange with the stats port: `(status, head, body)`.
pub async fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String, String)> {
    let resp = tokio::time::timeout(Duration::from_secs(5), async {
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
            .await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        anyhow::Ok(buf)
    })
    .await
    .with_context(|| format!("GET {path} timed out"))??;
    let text = String::from_utf8_lossy(&resp).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .with_context(|| format!("GET {path}: no header end in {text:?}"))?;
    let status = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("GET {path}: bad status line in {head:?}"))?;
    Ok((status, head.to_string(), body.to_string()))
}

/// Pids of the children of `pid` (every thread's `children` list: the master may fork
/// from any of its threads).
pub fn children_of(pid: u32) -> Vec<u32> {
    parity::process::child_pids(pid)
}

/// Polls `probe` with a bounded backoff until it returns `Some`, for at most `timeout`
/// (for things with no event: a respawned pid, a file appearing).
pub async fn poll<T>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> Option<T>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + timeout;
    let mut backoff = Duration::from_millis(5);
    loop {
        if let Some(v) = probe() {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            bail!("{what} did not happen within {timeout:?}");
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_millis(200));
    }
}

/// A fresh temporary directory (mode 0777, so a proxy that dropped privileges to `nobody`
/// can create files in it), removed on drop.
pub struct Scratch(PathBuf);

impl Scratch {
    /// Creates it.
    pub fn new(tag: &str) -> anyhow::Result<Self> {
        use std::os::unix::fs::PermissionsExt;
        let mut r = [0u8; 6];
        rand::thread_rng().fill_bytes(&mut r);
        let dir = std::env::temp_dir().join(format!(
            "mtproxy-e2e-{tag}-{}-{}",
            std::process::id(),
            hex::encode(r)
        ));
        std::fs::create_dir_all(&dir)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))?;
        Ok(Self(dir))
    }

    /// `dir/name`.
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
