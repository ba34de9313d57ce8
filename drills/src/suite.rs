//! The drills. Each states what a production proxy should do, measures it, and judges
//! the figures against its threshold. Counts and times are bounded at every scale, and
//! everything runs on loopback.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use mtproxy::protocol::fake_tls::HelloShape;
use mtproxy::protocol::transport::Transport;
use parity::client::{encrypted_message, expected_confirm, SimClient};
use parity::subject::Subject;
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::outcome::{Figure, Outcome, Verdict};
use crate::proc::{self, fds_down_to, rss_slope_per_min, settled_rss};
use crate::setup::Settings;
use crate::stand::{client, round_trip, served, Stand, StandOpts, LINKS};

/// A boxed drill future.
pub type DrillFuture = Pin<Box<dyn Future<Output = anyhow::Result<Outcome>> + Send>>;

/// One drill of the suite.
pub struct Drill {
    /// snake_case name (`--only` takes these).
    pub name: &'static str,
    /// What a production proxy should do.
    pub rule: &'static str,
    /// Runs it against one binary.
    pub run: fn(Subject, Settings) -> DrillFuture,
    /// Whether an error means "cannot run here" (SKIP) rather than FAIL.
    pub needs_root: bool,
}

/// Every drill, in run order.
pub const ALL: [Drill; 10] = [
    Drill {
        name: "fd_churn",
        rule: "connect, round trip, close, over and over: descriptors return to baseline and RSS to within 10 % once settled (baseline: after a first round of 64 at the same concurrency)",
        run: |t, s| Box::pin(fd_churn(t, s)),
        needs_root: false,
    },
    Drill {
        name: "idle_scale",
        rule: "thousands of idle authenticated clients are all held, each costs little memory, and a fresh client is served in under 50 ms",
        run: |t, s| Box::pin(idle_scale(t, s)),
        needs_root: false,
    },
    Drill {
        name: "soak",
        rule: "mixed traffic (abridged, intermediate, padded; fake TLS against a second, -D instance; quick acks; reconnecting clients) for the soak's length: no answer lost or corrupted, RSS (both instances) flat over the second half",
        run: |t, s| Box::pin(soak(t, s)),
        needs_root: false,
    },
    Drill {
        name: "me_stall",
        rule: "one middle end stops reading while its clients upload: RSS stays within the --msg-buffers-size budget, the proxy lives, other middle ends' clients are unaffected, service recovers",
        run: |t, s| Box::pin(me_stall(t, s)),
        needs_root: false,
    },
    Drill {
        name: "me_kill_refuse",
        rule: "killed middle-end links close their clients and come back within 10 s; a middle end that goes bad (drops its links, refuses new ones) while other links are up sees at most 10 connects per second",
        run: |t, s| Box::pin(me_kill_refuse(t, s)),
        needs_root: false,
    },
    Drill {
        name: "slowloris",
        rule: "silent connections and partial headers filling -c: a legitimate client is still served within 1 s",
        run: |t, s| Box::pin(slowloris(t, s)),
        needs_root: false,
    },
    Drill {
        name: "garbage_flood",
        rule: "connections of junk: descriptors return to baseline, RSS to within 10 %, and legitimate clients are served (baseline: after a flood a tenth the size)",
        run: |t, s| Box::pin(garbage_flood(t, s)),
        needs_root: false,
    },
    Drill {
        name: "burst",
        rule: "simultaneous connects: every client is served",
        run: |t, s| Box::pin(burst(t, s)),
        needs_root: false,
    },
    Drill {
        name: "stalled_reader",
        rule: "authenticated clients send requests and stop reading: memory stays bounded, each is closed within a bounded time, other clients are unaffected",
        run: |t, s| Box::pin(stalled_reader(t, s)),
        needs_root: false,
    },
    Drill {
        name: "fronting_half_open",
        rule: "-D: non-TLS connections relayed to the site, which then closes its side: the proxy releases both sockets within 10 s",
        run: |t, s| Box::pin(fronting_half_open(t, s)),
        needs_root: true,
    },
];

/// The drills' names, in run order.
pub fn names() -> Vec<&'static str> {
    ALL.iter().map(|d| d.name).collect()
}

/// Finds a drill by name.
pub fn find(name: &str) -> Option<&'static Drill> {
    ALL.iter().find(|d| d.name == name)
}

/// Runs `drill` against `subject`; an error becomes a FAIL (SKIP for a drill that needs
/// root when not root) carrying it. Sets the wall time.
pub async fn run(drill: &Drill, subject: Subject, settings: Settings) -> Outcome {
    let start = Instant::now();
    let mut out = if drill.needs_root && !nix::unistd::Uid::effective().is_root() {
        Outcome::new(
            Verdict::Skip,
            drill.rule.into(),
            "needs root (the stand-in site listens on port 443)".into(),
            Vec::new(),
        )
    } else {
        match (drill.run)(subject, settings).await {
            Ok(o) => o,
            Err(e) => Outcome::error(drill.rule, &e, false),
        }
    };
    out.elapsed_s = start.elapsed().as_secs_f64();
    out
}

/// Runs `n` jobs with at most `concurrency` at once; returns how many failed.
async fn many<F, Fut>(n: usize, concurrency: usize, job: F) -> usize
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let fut = job(i);
        tasks.spawn(async move {
            let r = fut.await;
            drop(permit);
            r
        });
    }
    let mut failed = 0;
    while let Some(r) = tasks.join_next().await {
        failed += usize::from(!matches!(r, Ok(Ok(()))));
    }
    failed
}

const MIB: f64 = 1024.0 * 1024.0;

fn mib(bytes: u64) -> f64 {
    (bytes as f64 / MIB * 100.0).round() / 100.0
}

fn verdict(fail: bool) -> Verdict {
    if fail {
        Verdict::Fail
    } else {
        Verdict::Pass
    }
}

/// Descriptors and RSS before a load and once settled after it: the judgement the
/// churn-like drills share. A leaked descriptor or an unserved client FAILs; RSS above
/// baseline × 1.10 WARNs (allocator high-water marks and bounded caches — the port's
/// obfuscated2 replay cache keeps an entry per header, at most 2^18 — move a small
/// process past a relative bound without a leak).
struct Settled {
    base_fds: u64,
    base_rss: u64,
    fds: u64,
    rss: u64,
}

impl Settled {
    /// Waits (bounded) for the descriptors to come back to `base_fds` and RSS to settle.
    async fn after(pid: u32, base_fds: u64, base_rss: u64, fd_wait: Duration) -> Self {
        let fds = fds_down_to(pid, base_fds, fd_wait).await;
        let rss = settled_rss(pid, Duration::from_secs(10)).await;
        Self {
            base_fds,
            base_rss,
            fds,
            rss,
        }
    }

    fn rss_bound(&self) -> u64 {
        self.base_rss + self.base_rss / 10
    }

    fn verdict(&self, served: bool) -> Verdict {
        if !served || self.fds > self.base_fds {
            Verdict::Fail
        } else if self.rss > self.rss_bound() {
            Verdict::Warn
        } else {
            Verdict::Pass
        }
    }

    fn threshold(&self, served: &str) -> String {
        format!(
            "descriptors ≤ baseline {} and {served} (else FAIL); RSS ≤ baseline × 1.10 = {:.2} MiB (else WARN)",
            self.base_fds,
            mib(self.rss_bound())
        )
    }

    fn describe(&self) -> String {
        format!(
            "descriptors {} → {}; RSS {:.2} → {:.2} MiB",
            self.base_fds,
            self.fds,
            mib(self.base_rss),
            mib(self.rss)
        )
    }

    fn figures(&self) -> [Figure; 2] {
        [
            Figure::new("rss_delta_mib", mib(self.rss) - mib(self.base_rss), "MiB"),
            Figure::new("fd_delta", self.fds as f64 - self.base_fds as f64, "count"),
        ]
    }
}

// ---------------------------------------------------------------------------------------

async fn fd_churn(t: Subject, s: Settings) -> anyhow::Result<Outcome> {
    let cycles = s.scale.pick(40, 2_000, 10_000);
    let st = Stand::start(&t, StandOpts::default()).await?;
    let (addr, pid) = (st.addr(), st.pid());
    // The baseline is the proxy after a first round of the same shape (64 cycles at the
    // same concurrency): what it keeps beyond that is what the churn leaks.
    let warm = many(64, 32, |i| async move {
        round_trip(addr, i as u64, Duration::from_secs(5))
            .await
            .map(drop)
    })
    .await;
    anyhow::ensure!(warm == 0, "{warm} warm-up round trips failed");
    let base_fds = proc::settled_fds(pid, Duration::from_secs(5)).await;
    let base_rss = settled_rss(pid, Duration::from_secs(5)).await;
    let failed = many(cycles, 32, |i| async move {
        round_trip(addr, 1_000 + i as u64, Duration::from_secs(10))
            .await
            .map(drop)
    })
    .await;
    st.forget_records();
    let after = Settled::after(pid, base_fds, base_rss, Duration::from_secs(10)).await;
    let mut figures = after.figures().to_vec();
    figures.push(Figure::new("cycles", cycles as f64, "count"));
    figures.push(Figure::new("failed_cycles", failed as f64, "count"));
    Ok(Outcome::new(
        after.verdict(failed == 0),
        after.threshold("every cycle served"),
        format!("{cycles} cycles, {failed} failed; {}", after.describe()),
        figures,
    ))
}

async fn idle_scale(t: Subject, s: Settings) -> anyhow::Result<Outcome> {
    let n = s.scale.pick(50, 2_000, 10_000);
    let st = Stand::start(
        &t,
        StandOpts {
            max_connections: n as u32 + 64,
            ..StandOpts::default()
        },
    )
    .await?;
    let (addr, pid) = (st.addr(), st.pid());
    let base_fds = proc::settled_fds(pid, Duration::from_secs(5)).await;
    let base_rss = settled_rss(pid, Duration::from_secs(5)).await;
    let held = Arc::new(std::sync::Mutex::new(Vec::with_capacity(n)));
    let failed = {
        let held = held.clone();
        many(n, 64, move |i| {
            let held = held.clone();
            async move {
                let t = [Transport::Intermediate, Transport::Abridged][i % 2];
                let (c, _) = served(
                    addr,
                    client(t, 2, 50_000 + i as u64, Duration::from_secs(10)),
                    64,
                )
                .await?;
                held.lock()
                    .map_err(|_| anyhow::anyhow!("poisoned"))?
                    .push(c);
                Ok(())
            }
        })
        .await
    };
    st.forget_records();
    let rss = settled_rss(pid, Duration::from_secs(10)).await;
    let fds = proc::fds(pid);
    let clients = held.lock().map(|h| h.len()).unwrap_or(0);
    let kept = clients.min(fds.saturating_sub(base_fds) as usize);
    let per_client = rss.saturating_sub(base_rss) as f64 / kept.max(1) as f64;
    let mut fresh = Vec::new();
    for i in 0..5u64 {
        fresh.push(round_trip(addr, 90_000 + i, Duration::from_secs(5)).await?);
    }
    fresh.sort();
    let fresh_ms = fresh[2].as_secs_f64() * 1e3;
    drop(held);
    let fail = kept < n || fresh_ms >= 50.0;
    Ok(Outcome::new(
        verdict(fail),
        format!("all {n} held; a fresh client served in < 50 ms (median of 5)"),
        format!(
            "{kept} of {n} held ({failed} failed to connect); {per_client:.0} bytes each; fresh client {fresh_ms:.1} ms"
        ),
        vec![
            Figure::new("bytes_per_client", per_client.round(), "bytes"),
            Figure::new("held", kept as f64, "count"),
            Figure::new("fresh_client_ms", (fresh_ms * 10.0).round() / 10.0, "ms"),
        ],
    ))
}

/// What the soak's clients saw.
#[derive(Default)]
struct SoakCounts {
    answers: AtomicU64,
    /// Of `answers`, those of fake-TLS clients.
    tls_answers: AtomicU64,
    lost: AtomicU64,
    corrupted: AtomicU64,
    sessions: AtomicU64,
}

/// One soak client loop: sessions of 1..20 requests, then a reconnect; obfuscated2 over
/// the three transports, or fake TLS for `tls_domain` (long and short ClientHellos).
async fn soak_loop(
    addr: SocketAddr,
    seed: u64,
    until: Instant,
    counts: Arc<SoakCounts>,
    tls_domain: Option<String>,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let transports = [
        Transport::Abridged,
        Transport::Intermediate,
        Transport::PaddedIntermediate,
    ];
    let mut session = 0u64;
    while Instant::now() < until {
        session += 1;
        counts.sessions.fetch_add(1, Ordering::Relaxed);
        let mut cfg = client(
            transports[(session % 3) as usize],
            [2i16, -2, 4][(session % 3) as usize],
            seed.wrapping_mul(1_000_003).wrapping_add(session),
            Duration::from_secs(10),
        );
        if let Some(domain) = &tls_domain {
            let shape = if session.is_multiple_of(2) {
                HelloShape::LongTdlib
            } else {
                HelloShape::Chrome
            };
            cfg = cfg.fake_tls(domain.clone(), shape);
        }
        let mut c = match SimClient::connect(addr, cfg).await {
            Ok(c) => c,
            Err(_) => {
                counts.lost.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        };
        for _ in 0..rng.gen_range(1..=20) {
            if Instant::now() >= until {
                break;
            }
            let len = [64, 256, 1024, 4096][rng.gen_range(0..4)];
            let p = encrypted_message(&mut rng, len);
            let qa = rng.gen_ratio(1, 4);
            match c.request(&p, qa).await {
                Ok(x)
                    if x.answer[..] == p[..]
                        && (!qa || x.quick_ack == Some(expected_confirm(&p))) =>
                {
                    counts.answers.fetch_add(1, Ordering::Relaxed);
                    if tls_domain.is_some() {
                        counts.tls_answers.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Ok(_) => {
                    counts.corrupted.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Err(_) => {
                    counts.lost.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
        }
        c.close().await;
    }
}

async fn soak(t: Subject, s: Settings) -> anyhow::Result<Outcome> {
    let loops = s.scale.pick(4, 16, 24);
    let st = Stand::start(&t, StandOpts::default()).await?;
    let addr = st.addr();
    // Fake TLS needs `-D`, whose instance serves nothing else: a second instance, with a
    // stand-in site on port 443 (root only; otherwise the soak says it ran without).
    let tls = if nix::unistd::Uid::effective().is_root() {
        // Block 251: away from the other drills' and the dual-run's sites.
        let ip = parity::site::loopback_ip(251);
        let site =
            parity::site::DomainServer::start(SocketAddr::from((ip, 443)), &ip.to_string(), true)
                .await?;
        let st = Stand::start(
            &t,
            StandOpts {
                extra_args: vec!["-D".into(), ip.to_string()],
                ..StandOpts::default()
            },
        )
        .await?;
        Some((site, st, ip.to_string()))
    } else {
        None
    };
    let pids: Vec<u32> = std::iter::once(st.pid())
        .chain(tls.as_ref().map(|(_, t, _)| t.pid()))
        .collect();
    let start = Instant::now();
    let until = start + s.soak;
    let counts = Arc::new(SoakCounts::default());
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..loops {
        tasks.spawn(soak_loop(
            addr,
            7_000 + i as u64,
            until,
            counts.clone(),
            None,
        ));
    }
    if let Some((_, tls_stand, domain)) = &tls {
        for i in 0..(loops / 4).max(1) {
            tasks.spawn(soak_loop(
                tls_stand.addr(),
                8_000 + i as u64,
                until,
                counts.clone(),
                Some(domain.clone()),
            ));
        }
    }
    let mut series = vec![proc::sample_all(&pids, start)];
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    while Instant::now() < until {
        tick.tick().await;
        series.push(proc::sample_all(&pids, start));
        st.forget_records();
        if let Some((_, t, _)) = &tls {
            t.forget_records();
        }
    }
    while tasks.join_next().await.is_some() {}
    series.push(proc::sample_all(&pids, start));
    let tls_answers = counts.tls_answers.load(Ordering::Relaxed);
    let secs = s.soak.as_secs_f64();
    let slope = rss_slope_per_min(&series, secs / 2.0);
    let lost = counts.lost.load(Ordering::Relaxed);
    let corrupted = counts.corrupted.load(Ordering::Relaxed);
    let answers = counts.answers.load(Ordering::Relaxed);
    // A slope is only meaningful over a minute or more.
    let judged = secs >= 60.0;
    let v = if lost + corrupted > 0 || (judged && slope > MIB) {
        Verdict::Fail
    } else if judged && slope > 128.0 * 1024.0 {
        Verdict::Warn
    } else {
        Verdict::Pass
    };
    let rss_end = series.last().map_or(0, |x| x.rss_bytes);
    let mut out = Outcome::new(
        v,
        format!(
            "no answer lost or corrupted; RSS slope over the second half ≤ 128 KiB/min (WARN above, FAIL above 1 MiB/min){}",
            if judged { "" } else { "; slope not judged under 60 s" }
        ),
        format!(
            "{:.0} s, {answers} answers ({tls_answers} fake TLS{}) in {} sessions, {lost} lost, {corrupted} corrupted; RSS slope {:.1} KiB/min, end {:.2} MiB",
            secs,
            if tls.is_some() { "" } else { ": not root, no -D instance" },
            counts.sessions.load(Ordering::Relaxed),
            slope / 1024.0,
            mib(rss_end)
        ),
        vec![
            Figure::new("rss_slope_kib_per_min", (slope / 1024.0 * 10.0).round() / 10.0, "KiB/min"),
            Figure::new("answers", answers as f64, "count"),
            Figure::new("tls_answers", tls_answers as f64, "count"),
            Figure::new("lost", lost as f64, "count"),
            Figure::new("corrupted", corrupted as f64, "count"),
            Figure::new("rss_end_mib", mib(rss_end), "MiB"),
        ],
    );
    out.series = series;
    Ok(out)
}

/// The `--msg-buffers-size` of the stall drill.
const STALL_BUDGET: u64 = 32 << 20;

async fn me_stall(t: Subject, s: Settings) -> anyhow::Result<Outcome> {
    let uploaders = s.scale.pick(4, 16, 32);
    let stall = s.scale.pick(
        Duration::from_secs(3),
        Duration::from_secs(15),
        Duration::from_secs(30),
    );
    let st = Stand::start(
        &t,
        StandOpts {
            mes: 2,
            extra_args: vec!["--msg-buffers-size".into(), STALL_BUDGET.to_string()],
            ..StandOpts::default()
        },
    )
    .await?;
    let (addr, pid) = (st.addr(), st.pid());
    // Both middle ends serve before the stall.
    for dc in [2i16, 4] {
        let (c, _) = served(
            addr,
            client(
                Transport::Intermediate,
                dc,
                290 + dc as u64,
                Duration::from_secs(5),
            ),
            64,
        )
        .await
        .with_context(|| format!("a dc {dc} client before the stall"))?;
        c.close().await;
    }
    let base_rss = settled_rss(pid, Duration::from_secs(5)).await;
    st.mes[0].set_reading(false);
    // Uploaders of the stalled middle end (dc 2): 128 KiB packets until a send blocks (the
    // proxy stopped reading them) or `volume` is sent; then they hold their connections.
    let volume = s.scale.pick(4usize, 16, 8) << 20;
    let (hold, _) = tokio::sync::watch::channel(false);
    let mut ups = tokio::task::JoinSet::new();
    let mut pushed_all = tokio::task::JoinSet::new();
    for i in 0..uploaders {
        let mut released = hold.subscribe();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<u64>();
        pushed_all.spawn(async move { done_rx.await.unwrap_or(0) });
        ups.spawn(async move {
            let mut rng = StdRng::seed_from_u64(300 + i as u64);
            let Ok(mut c) = SimClient::connect(
                addr,
                client(
                    Transport::Intermediate,
                    2,
                    300 + i as u64,
                    Duration::from_secs(5),
                ),
            )
            .await
            else {
                let _ = done_tx.send(0);
                return;
            };
            let mut sent = 0u64;
            while (sent as usize) < volume {
                let p = encrypted_message(&mut rng, 128 * 1024);
                match tokio::time::timeout(Duration::from_secs(1), c.send_packet(&p, false)).await {
                    Ok(Ok(())) => sent += p.len() as u64,
                    _ => break,
                }
            }
            let _ = done_tx.send(sent);
            let _ = released.wait_for(|r| *r).await;
        });
    }
    let mut uploaded = 0u64;
    while let Some(n) = pushed_all.join_next().await {
        uploaded += n.unwrap_or(0);
    }
    let until = Instant::now() + stall;
    // Clients of the other middle end (dc 4), and the RSS peak, meanwhile.
    let (mut other_ok, mut other_failed, mut worst) = (0u32, 0u32, Duration::ZERO);
    let mut peak = base_rss;
    let mut seed = 400u64;
    let mut last_error = String::new();
    while Instant::now() < until {
        seed += 1;
        let r = tokio::time::timeout(Duration::from_secs(2), async {
            let (c, d) = served(
                addr,
                client(Transport::Intermediate, 4, seed, Duration::from_secs(2)),
                64,
            )
            .await?;
            c.close().await;
            anyhow::Ok(d)
        })
        .await;
        match r {
            Ok(Ok(d)) => {
                other_ok += 1;
                worst = worst.max(d);
            }
            Ok(Err(e)) => {
                other_failed += 1;
                last_error = format!("{e:#}");
            }
            Err(_) => {
                other_failed += 1;
                last_error = "no answer within 2 s".into();
            }
        }
        peak = peak.max(parity::load::rss(pid).map_or(0, |r| r.rss));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    peak = peak.max(parity::load::rss(pid).map_or(0, |r| r.rss));
    let alive = st.proxy.exit_info().is_none();
    hold.send_replace(true);
    while ups.join_next().await.is_some() {}
    st.mes[0].set_reading(true);
    let resumed = Instant::now();
    let mut recovered = None;
    while alive && resumed.elapsed() < Duration::from_secs(15) {
        seed += 1;
        if round_trip(addr, seed, Duration::from_secs(2)).await.is_ok() {
            recovered = Some(resumed.elapsed());
            break;
        }
    }
    st.forget_records();
    let bound = base_rss + STALL_BUDGET + (16 << 20);
    let growth = peak.saturating_sub(base_rss);
    let fail = !alive
        || other_failed > 0
        || worst > Duration::from_secs(1)
        || recovered.is_none()
        || peak > bound;
    Ok(Outcome::new(
        verdict(fail),
        format!(
            "alive; RSS ≤ baseline + budget {} MiB + 16 MiB = {:.1} MiB; other middle end's clients all served in < 1 s; a client of the stalled one served within 15 s of its recovery",
            STALL_BUDGET >> 20,
            mib(bound)
        ),
        format!(
            "{uploaders} uploaders pushed {:.1} MiB, then {} s of stall: alive {alive}; RSS +{:.1} MiB (peak {:.1}); other clients {other_ok} served, {other_failed} failed{}, slowest {:.0} ms; recovery {}",
            mib(uploaded),
            stall.as_secs(),
            mib(growth),
            mib(peak),
            if last_error.is_empty() { String::new() } else { format!(" ({last_error})") },
            worst.as_secs_f64() * 1e3,
            recovered.map_or("none".to_string(), |d| format!("{:.0} ms", d.as_secs_f64() * 1e3))
        ),
        vec![
            Figure::new("rss_growth_mib", mib(growth), "MiB"),
            Figure::new("other_clients_failed", f64::from(other_failed), "count"),
            Figure::new("alive", f64::from(u8::from(alive)), "bool"),
            Figure::new(
                "recovery_ms",
                recovered.map_or(-1.0, |d| (d.as_secs_f64() * 1e3).round()),
                "ms",
            ),
        ],
    ))
}

async fn me_kill_refuse(t: Subject, s: Settings) -> anyhow::Result<Outcome> {
    let kills = s.scale.pick(2, 3, 5);
    let window = s.scale.pick(
        Duration::from_secs(2),
        Duration::from_secs(5),
        Duration::from_secs(10),
    );
    // Middle end B (dc 4) is up at first; it goes bad during the drill.
    let st = Stand::start(
        &t,
        StandOpts {
            mes: 2,
            ..StandOpts::default()
        },
    )
    .await?;
    let addr = st.addr();
    let (mut not_closed, mut slowest_back) = (0u32, Duration::ZERO);
    let mut back_failed = 0u32;
    for k in 0..kills {
        let (mut pinned, _) = served(
            addr,
            client(
                Transport::Intermediate,
                2,
                600 + k as u64,
                Duration::from_secs(5),
            ),
            64,
        )
        .await
        .context("a client before the kill")?;
        let handshakes = st.mes[0].handshakes();
        st.mes[0].drop_all().await;
        let killed = Instant::now();
        if !pinned.closed_within(Duration::from_secs(5)).await {
            not_closed += 1;
        }
        match st.mes[0]
            .wait_handshakes(handshakes + LINKS, Duration::from_secs(10))
            .await
        {
            Ok(()) => slowest_back = slowest_back.max(killed.elapsed()),
            Err(_) => back_failed += 1,
        }
    }
    // B goes bad while A's links stay up: its links are dropped and every new
    // connection is accepted and closed at once. Count the proxy's connects to it.
    st.mes[1].set_refuse(true);
    let before = st.mes[1].connections();
    st.mes[1].drop_all().await;
    let quiet = Instant::now();
    tokio::time::sleep(window).await;
    let elapsed = quiet.elapsed().as_secs_f64();
    let connects = st.mes[1].connections().saturating_sub(before);
    let rate = connects as f64 / elapsed;
    let served_after = round_trip(addr, 699, Duration::from_secs(5)).await.is_ok();
    st.forget_records();
    let fail = not_closed > 0 || back_failed > 0 || rate > 10.0 || !served_after;
    Ok(Outcome::new(
        verdict(fail),
        "every pinned client closed within 5 s of its links' death; links back within 10 s; ≤ 10 connects/s to a middle end that drops its links and refuses new ones while other links stay up".into(),
        format!(
            "{kills} kills: {not_closed} pinned clients left open, links back in ≤ {:.0} ms ({back_failed} not back); refusing middle end: {connects} connects in {elapsed:.1} s; served afterwards: {served_after}",
            slowest_back.as_secs_f64() * 1e3
        ),
        vec![
            Figure::new("refused_connects_per_s", (rate * 10.0).round() / 10.0, "per_s"),
            Figure::new("links_back_ms", (slowest_back.as_secs_f64() * 1e3).round(), "ms"),
            Figure::new("pinned_left_open", f64::from(not_closed), "count"),
        ],
    ))
}

async fn slowloris(t: Subject, s: Settings) -> anyhow::Result<Outcome> {
    let cap = s.scale.pick(40u32, 200, 1_000);
    let st = Stand::start(
        &t,
        StandOpts {
            max_connections: cap,
            ..StandOpts::default()
        },
    )
    .await?;
    let addr = st.addr();
    // Silent connections and partial headers: 1.5 × -c in all.
    let mut held = Vec::new();
    let mut rng = StdRng::seed_from_u64(5);
    for i in 0..(cap + cap / 2) {
        let Ok(Ok(mut sock)) =
            tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr)).await
        else {
            continue;
        };
        if i % 3 == 2 {
            let mut part = [0u8; 30];
            rng.fill_bytes(&mut part);
            let _ = sock.write_all(&part).await;
        }
        held.push(sock);
    }
    let opened = held.len();
    let start = Instant::now();
    let served_in = round_trip(addr, 77, Duration::from_secs(5)).await;
    let waited = start.elapsed();
    drop(held);
    let ok = served_in.is_ok() && waited < Duration::from_secs(1);
    Ok(Outcome::new(
        verdict(!ok),
        format!("-c {cap} filled by {} silent or partial connections: a legitimate client served within 1 s", cap + cap / 2),
        format!(
            "{opened} attacker connections open; legitimate client: {}",
            match &served_in {
                Ok(d) => format!("served in {:.0} ms", d.as_secs_f64() * 1e3),
                Err(e) => format!("not served within 5 s ({e})"),
            }
        ),
        vec![
            Figure::new("legit_wait_ms", (waited.as_secs_f64() * 1e3).round(), "ms"),
            Figure::new("attackers", opened as f64, "count"),
        ],
    ))
}

async fn garbage_flood(t: Subject, s: Settings) -> anyhow::Result<Outcome> {
    let n = s.scale.pick(100, 5_000, 20_000);
    let st = Stand::start(&t, StandOpts::default()).await?;
    let (addr, pid) = (st.addr(), st.pid());
    round_trip(addr, 1, Duration::from_secs(5)).await?;
    let junk = move |i: usize| async move {
        let mut rng = StdRng::seed_from_u64(i as u64);
        let mut junk = [0u8; 64];
        rng.fill_bytes(&mut junk);
        let mut sock =
            tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr)).await??;
        sock.write_all(&junk).await?;
        Ok(())
    };
    // The baseline is the proxy after a first flood a tenth the size, at the same
    // concurrency, once its connections are gone.
    let _ = many((n / 10).max(64), 64, junk).await;
    let base_fds = proc::settled_fds(pid, Duration::from_secs(5)).await;
    let base_rss = settled_rss(pid, Duration::from_secs(5)).await;
    let refused = many(n, 64, move |i| junk(100_000 + i)).await;
    let after = Settled::after(pid, base_fds, base_rss, Duration::from_secs(15)).await;
    let served = round_trip(addr, 2, Duration::from_secs(5)).await.is_ok();
    let mut figures = after.figures().to_vec();
    figures.push(Figure::new("junk_connections", n as f64, "count"));
    Ok(Outcome::new(
        after.verdict(served),
        after.threshold("a legitimate client served"),
        format!(
            "{n} junk connections ({refused} failed to connect); {}; legitimate client {}",
            after.describe(),
            if served { "served" } else { "not served" }
        ),
        figures,
    ))
}

async fn burst(t: Subject, s: Settings) -> anyhow::Result<Outcome> {
    let n = s.scale.pick(50, 1_000, 3_000);
    let st = Stand::start(
        &t,
        StandOpts {
            max_connections: n as u32 + 64,
            ..StandOpts::default()
        },
    )
    .await?;
    let addr = st.addr();
    let (go, _) = tokio::sync::watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let mut rx = go.subscribe();
        tasks.spawn(async move {
            let _ = rx.wait_for(|g| *g).await;
            round_trip(addr, 20_000 + i as u64, Duration::from_secs(20)).await
        });
    }
    let start = Instant::now();
    go.send_replace(true);
    let mut failed = 0usize;
    while let Some(r) = tasks.join_next().await {
        failed += usize::from(!matches!(r, Ok(Ok(_))));
    }
    let drain = start.elapsed();
    st.forget_records();
    Ok(Outcome::new(
        verdict(failed > 0),
        format!("all {n} simultaneous clients served (each within 20 s)"),
        format!(
            "{} of {n} served; drained in {:.0} ms",
            n - failed,
            drain.as_secs_f64() * 1e3
        ),
        vec![
            Figure::new("drain_ms", (drain.as_secs_f64() * 1e3).round(), "ms"),
            Figure::new("failed", failed as f64, "count"),
        ],
    ))
}

async fn stalled_reader(t: Subject, s: Settings) -> anyhow::Result<Outcome> {
    let k = s.scale.pick(4, 20, 40);
    let packets = s.scale.pick(24, 48, 64);
    let bound_time = s.scale.pick(
        Duration::from_secs(10),
        Duration::from_secs(60),
        Duration::from_secs(120),
    );
    let st = Stand::start(&t, StandOpts::default()).await?;
    let (addr, pid) = (st.addr(), st.pid());
    let base_fds = proc::settled_fds(pid, Duration::from_secs(5)).await;
    let base_rss = settled_rss(pid, Duration::from_secs(5)).await;
    // Each stalled client asks for `packets` × 512 KiB of answers and never reads them.
    // A stalled client that is not even served its first round trip (the earlier ones
    // already hold the proxy up) counts as a failed other client: that is the finding.
    let mut stalled = Vec::new();
    let mut setup_failed = 0u32;
    for i in 0..k {
        let Ok((mut c, _)) = served(
            addr,
            client(
                Transport::Intermediate,
                2,
                800 + i as u64,
                Duration::from_secs(5),
            ),
            64,
        )
        .await
        else {
            setup_failed += 1;
            continue;
        };
        let mut rng = StdRng::seed_from_u64(800 + i as u64);
        for _ in 0..packets {
            let p = encrypted_message(&mut rng, 512 * 1024);
            if !matches!(
                tokio::time::timeout(Duration::from_secs(1), c.send_packet(&p, false)).await,
                Ok(Ok(()))
            ) {
                break;
            }
        }
        stalled.push(c);
    }
    let start = Instant::now();
    let mut peak = base_rss;
    let (mut others_failed, mut worst) = (setup_failed, Duration::ZERO);
    let mut closed_at = None;
    let mut seed = 900u64;
    while start.elapsed() < bound_time {
        peak = peak.max(parity::load::rss(pid).map_or(0, |r| r.rss));
        seed += 1;
        match round_trip(addr, seed, Duration::from_secs(2)).await {
            Ok(d) => worst = worst.max(d),
            Err(_) => others_failed += 1,
        }
        // Closed: the stalled clients' sockets are gone from the proxy.
        if closed_at.is_none() && proc::fds(pid) <= base_fds {
            closed_at = Some(start.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let open = proc::fds(pid).saturating_sub(base_fds);
    drop(stalled);
    st.forget_records();
    let growth = peak.saturating_sub(base_rss);
    let mem_bound = 64u64 << 20;
    let fail = closed_at.is_none()
        || growth > mem_bound
        || others_failed > 0
        || worst > Duration::from_secs(1);
    Ok(Outcome::new(
        verdict(fail),
        format!(
            "stalled clients closed within {} s; RSS growth ≤ 64 MiB; other clients served in < 1 s",
            bound_time.as_secs()
        ),
        format!(
            "{k} clients × {packets} × 512 KiB unread: {}; RSS +{:.1} MiB; other clients {others_failed} failed, slowest {:.0} ms",
            match closed_at {
                Some(d) => format!("all closed after {:.1} s", d.as_secs_f64()),
                None => format!("{open} still open after {} s", bound_time.as_secs()),
            },
            mib(growth),
            worst.as_secs_f64() * 1e3
        ),
        vec![
            Figure::new("rss_growth_mib", mib(growth), "MiB"),
            Figure::new("still_open", open as f64, "count"),
            Figure::new(
                "closed_after_s",
                closed_at.map_or(-1.0, |d| (d.as_secs_f64() * 10.0).round() / 10.0),
                "s",
            ),
        ],
    ))
}

async fn fronting_half_open(t: Subject, s: Settings) -> anyhow::Result<Outcome> {
    let n = s.scale.pick(10, 100, 300);
    // Block 252: away from the dual-run's stand-in sites (253) and the tests'.
    let ip = parity::site::loopback_ip(252);
    let site =
        parity::site::DomainServer::start_closing(SocketAddr::from((ip, 443)), &ip.to_string())
            .await?;
    let st = Stand::start(
        &t,
        StandOpts {
            extra_args: vec!["-D".into(), ip.to_string()],
            ..StandOpts::default()
        },
    )
    .await?;
    let (addr, pid) = (st.addr(), st.pid());
    let base_fds = proc::settled_fds(pid, Duration::from_secs(5)).await;
    let mut held = Vec::new();
    for i in 0..n {
        let mut sock = TcpStream::connect(addr).await?;
        sock.write_all(format!("GET /{i} HTTP/1.1\r\nHost: {ip}\r\n\r\n").as_bytes())
            .await?;
        held.push(sock);
    }
    // The site saw them all (and closed its side of each).
    let relayed_now = || {
        site.conns()
            .iter()
            .filter(|c| c.bytes().starts_with(b"GET /"))
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while relayed_now() < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let relayed = relayed_now();
    let start = Instant::now();
    let fds = fds_down_to(pid, base_fds, Duration::from_secs(10)).await;
    let released = fds <= base_fds;
    let waited = start.elapsed();
    drop(held);
    Ok(Outcome::new(
        verdict(!released),
        format!("{n} relayed connections whose site closed: proxy descriptors back to {base_fds} within 10 s"),
        format!(
            "the site got {relayed} connections; proxy descriptors {} → {fds} after {:.1} s",
            base_fds,
            waited.as_secs_f64()
        ),
        vec![
            Figure::new("held_sockets", fds.saturating_sub(base_fds) as f64, "count"),
            Figure::new("relayed", relayed as f64, "count"),
        ],
    ))
}
