//! Measuring one side: the phases of the pinned deployment (start-up, idle CPU, memory
//! per idle client, latency, bulk echo/upload/download, connection rate) and of the
//! unpinned ones (capacity probe, light and half load latency, echo, connection rate).

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use parity::load::{self, BenchMe, BenchProxy, IdleClients, LatencyResult, ProxySpec, Startup};

use super::host::slab;
use super::ratios::median;
use super::report::{DeploymentRun, DeploymentSide, IdleMemory, Plan, SideReport};

pub(super) async fn run_side(
    label: &str,
    binary: &Path,
    plan: &Plan,
    log_dir: &Path,
) -> anyhow::Result<SideReport> {
    let secret = load::fresh_secret();
    let proxy_secret = load::fresh_proxy_secret();
    let me = BenchMe::spawn(proxy_secret.clone()).await?;
    let spec = ProxySpec {
        binary: binary.to_path_buf(),
        cpus: Some(plan.proxy_cpus.clone()),
        secret,
        proxy_secret,
        me: me.addr(),
        max_connections: plan.max_connections,
        workers: 0,
        label: label.to_string(),
        log_dir: log_dir.to_path_buf(),
    };
    // Start-up: fresh processes, timed from spawn to the first client served.
    let mut trials = Vec::new();
    if plan.has("startup") {
        for t in 0..plan.startup_trials {
            let mut s = spec.clone();
            s.label = format!("{label}-startup{t}");
            let mut p = BenchProxy::spawn(&s)?;
            let r = load::first_accept(&mut p, secret, Duration::from_secs(10)).await;
            p.stop(Duration::from_secs(5)).await;
            trials.push(r?);
        }
        let med = |f: fn(&Startup) -> f64| median(trials.iter().map(f).collect());
        eprintln!(
            "[bench]   {label}: start-up over {} trials: listening after {:.1} ms, first client served after {:.1} ms (medians)",
            trials.len(),
            med(|s| s.listen_ms),
            med(|s| s.first_served_ms)
        );
    }
    let mut proxy = BenchProxy::spawn(&spec)?;
    let r = measure_side(label, &me, &mut proxy, secret, plan)
        .await
        .map(|mut s| {
            s.binary = binary.display().to_string();
            if !trials.is_empty() {
                s.startup = Startup {
                    listen_ms: median(trials.iter().map(|t| t.listen_ms).collect()),
                    first_served_ms: median(trials.iter().map(|t| t.first_served_ms).collect()),
                };
            }
            s.startup_trials = trials;
            s
        });
    let r = r.with_context(|| format!("{label} log tail:\n{}", proxy.log_tail(15)));
    proxy.stop(Duration::from_secs(5)).await;
    r
}

/// The phases of the plan against a running pinned proxy.
async fn measure_side(
    label: &str,
    me: &BenchMe,
    proxy: &mut BenchProxy,
    secret: [u8; 16],
    plan: &Plan,
) -> anyhow::Result<SideReport> {
    let step = |what: &str| eprintln!("[bench]   {label}: {what}");
    let ready = load::first_accept(proxy, secret, Duration::from_secs(10)).await?;
    if me.wait_handshakes(4, Duration::from_secs(5)).await.is_err() {
        step(&format!("only {} ME links came up", me.handshakes()));
    }
    let pid = proxy.pid();
    let addr = proxy.client_addr();
    step(&format!("pid {pid}, clients on {addr}"));
    let mut side = SideReport {
        label: label.to_string(),
        startup: ready,
        ..SideReport::default()
    };
    let idle_window = Duration::from_secs_f64(plan.idle_secs);
    tokio::time::sleep(Duration::from_millis(200)).await;
    side.rss_ready = load::rss(pid).unwrap_or_default().rss;
    if plan.has("idle") {
        side.idle_cpu_percent = load::idle_cpu(pid, idle_window).await;
        step(&format!(
            "idle CPU {:.3} % over {:.0} s",
            side.idle_cpu_percent, plan.idle_secs
        ));
    }
    if plan.has("memory") {
        let rss0 = load::rss(pid).unwrap_or_default();
        let slab0 = slab();
        let mut idle = IdleClients::default();
        for &n in &plan.idle_clients {
            let more = n.saturating_sub(idle.len());
            idle.open(addr, secret, more, 64).await?;
            let r = settled_rss(pid).await;
            let slab = slab();
            let m = IdleMemory {
                clients: n,
                rss: r.rss,
                rss_anon: r.anon,
                rss_per_client: (r.rss as f64 - rss0.rss as f64) / n.max(1) as f64,
                kernel_slab_per_connection_pair: (slab as f64 - slab0 as f64) / n.max(1) as f64,
                idle_cpu_percent: None,
            };
            step(&format!(
                "{n} idle clients: RSS {:.1} MiB, {:.0} B per client (kernel ~{:.0} B per connection pair)",
                r.rss as f64 / 1048576.0,
                m.rss_per_client,
                m.kernel_slab_per_connection_pair
            ));
            side.idle.push(m);
        }
        if plan.has("idle") {
            if let Some(last) = side.idle.last_mut() {
                let c = load::idle_cpu(pid, idle_window).await;
                step(&format!("idle CPU with {} clients: {c:.3} %", last.clients));
                last.idle_cpu_percent = Some(c);
            }
        }
        idle.close();
        // Closing thousands of clients keeps a proxy busy for a while (and the candidate
        // trims its heap once that settles): let it finish before timing round trips.
        settle_cpu(pid).await;
    }
    if plan.has("latency") {
        side.latency = load::latency(
            addr,
            pid,
            secret,
            plan.latency_clients,
            plan.latency_rate,
            plan.latency_size,
            Duration::from_secs_f64(plan.latency_secs),
        )
        .await?;
        step(&format!(
            "latency p50 {:.0} us, p99 {:.0} us ({} samples)",
            side.latency.p50_us, side.latency.p99_us, side.latency.samples
        ));
    }
    let timeout = Duration::from_secs(180);
    for (name, spec) in [
        ("echo", plan.echo),
        ("upload", plan.upload),
        ("download", plan.download),
    ] {
        if !plan.has(name) {
            continue;
        }
        let r = load::bulk(me, addr, pid, secret, spec, timeout).await?;
        step(&format!(
            "{name}: {:.0} MB/s (proxy CPU {:.0} %, load generator CPU {:.0} %, {:.0} MB per proxy CPU-s)",
            r.mb_per_s, r.cpu.proxy_percent, r.cpu.loadgen_percent, r.mb_per_proxy_cpu_s
        ));
        match name {
            "echo" => side.echo = r,
            "upload" => side.upload = r,
            _ => side.download = r,
        }
    }
    if plan.has("conn") {
        side.conn_rate = load::conn_rate(
            addr,
            pid,
            secret,
            plan.conn_concurrency,
            Duration::from_secs_f64(plan.conn_secs),
            // Enough precomputed connections for 25 000/s.
            (plan.conn_secs * 25_000.0) as usize,
        )
        .await?;
        step(&format!(
            "{:.0} connections/s (proxy CPU {:.0} %, load generator CPU {:.0} %)",
            side.conn_rate.per_s,
            side.conn_rate.cpu.proxy_percent,
            side.conn_rate.cpu.loadgen_percent
        ));
    }
    Ok(side)
}

/// The RSS of `pid` once it stops falling: a second after the clients opened, then every
/// half second until a sample is not 0.5 % below the one before (at most 5 s). Either
/// proxy may give memory back after a burst (the candidate trims its heap once activity
/// settles), and idle memory is what stays.
async fn settled_rss(pid: u32) -> load::Rss {
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut last = load::rss(pid).unwrap_or_default();
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = load::rss(pid).unwrap_or_default();
        let falling = (now.rss as f64) < last.rss as f64 * 0.995;
        last = now;
        if !falling {
            break;
        }
    }
    last
}

/// Waits until `pid` uses less than 10 % of a core over a quarter second (at most 5 s;
/// the C build idles at about 3 %).
async fn settle_cpu(pid: u32) {
    tokio::time::sleep(Duration::from_millis(500)).await;
    for _ in 0..20 {
        if load::idle_cpu(pid, Duration::from_millis(250)).await < 10.0 {
            return;
        }
    }
}

/// One unpinned deployment: the reference's small-packet capacity first (a probe that
/// sets the half load), then both sides in the run's order.
#[allow(clippy::too_many_arguments)]
pub(super) async fn run_deployment(
    name: &str,
    workers: u32,
    candidate: &Path,
    reference: &Path,
    cand_first: bool,
    candidate_only: bool,
    plan: &Plan,
    log_dir: &Path,
) -> anyhow::Result<DeploymentRun> {
    let probe_bin = if candidate_only { candidate } else { reference };
    let capacity = {
        let (me, proxy, secret) = start_unpinned(
            &format!("{name}-capacity"),
            probe_bin,
            workers,
            plan,
            log_dir,
        )
        .await?;
        let r = capacity_per_s(&me, &proxy, secret, plan).await;
        let r = r.with_context(|| format!("capacity log tail:\n{}", proxy.log_tail(15)));
        proxy.stop(Duration::from_secs(5)).await;
        r?
    };
    let half_rate = (capacity / 2.0).max(plan.latency_rate);
    eprintln!(
        "[bench]   {name}: reference capacity {capacity:.0} round trips/s (16 clients, 256 B); half load {half_rate:.0}/s"
    );
    let mut d = DeploymentRun {
        name: name.to_string(),
        workers,
        reference_capacity_per_s: capacity,
        half_rate,
        ..DeploymentRun::default()
    };
    let order: [(&str, &Path); 2] = if cand_first {
        [("candidate", candidate), ("reference", reference)]
    } else {
        [("reference", reference), ("candidate", candidate)]
    };
    for (label, bin) in order {
        if candidate_only && label == "reference" {
            continue;
        }
        let side = deployment_side(
            &format!("{label}-{name}"),
            bin,
            workers,
            half_rate,
            plan,
            log_dir,
        )
        .await?;
        if label == "candidate" {
            d.candidate = side;
        } else {
            d.reference = side;
        }
    }
    Ok(d)
}

/// A fresh bench ME and an unpinned proxy (`-M workers` when > 0), ready: every ME link up.
async fn start_unpinned(
    label: &str,
    binary: &Path,
    workers: u32,
    plan: &Plan,
    log_dir: &Path,
) -> anyhow::Result<(BenchMe, BenchProxy, [u8; 16])> {
    let secret = load::fresh_secret();
    let proxy_secret = load::fresh_proxy_secret();
    let me = BenchMe::spawn(proxy_secret.clone()).await?;
    let spec = ProxySpec {
        binary: binary.to_path_buf(),
        cpus: None,
        secret,
        proxy_secret,
        me: me.addr(),
        max_connections: plan.max_connections,
        workers,
        label: label.to_string(),
        log_dir: log_dir.to_path_buf(),
    };
    let mut proxy = BenchProxy::spawn(&spec)?;
    load::first_accept(&mut proxy, secret, Duration::from_secs(10)).await?;
    // 4 links per target, per process that connects to the ME.
    let links = 4 * workers.max(1) as usize;
    if me
        .wait_handshakes(links, Duration::from_secs(10))
        .await
        .is_err()
    {
        eprintln!(
            "[bench]   {label}: only {} of {links} ME links came up",
            me.handshakes()
        );
    }
    // Let the workers' start-up settle before anything is timed.
    settle_cpu(proxy.pid()).await;
    Ok((me, proxy, secret))
}

/// Closed-loop round trips per second: 16 clients, one 256-byte request outstanding each.
async fn capacity_per_s(
    me: &BenchMe,
    proxy: &BenchProxy,
    secret: [u8; 16],
    plan: &Plan,
) -> anyhow::Result<f64> {
    let spec = load::BulkSpec {
        clients: 16,
        requests: plan.capacity_requests,
        request_size: 256,
        answer_size: 256,
        window: 1,
    };
    let r = load::bulk(
        me,
        proxy.client_addr(),
        proxy.pid(),
        secret,
        spec,
        Duration::from_secs(120),
    )
    .await?;
    Ok(r.mb_per_s * 1e6 / 256.0)
}

/// One side of an unpinned deployment: a fresh bench ME and proxy, then every phase.
async fn deployment_side(
    label: &str,
    binary: &Path,
    workers: u32,
    half_rate: f64,
    plan: &Plan,
    log_dir: &Path,
) -> anyhow::Result<DeploymentSide> {
    let (me, proxy, secret) = start_unpinned(label, binary, workers, plan, log_dir).await?;
    let r = measure_deployment(label, &me, &proxy, secret, half_rate, plan).await;
    let r = match r {
        Ok(r) => Ok(r),
        Err(e) => {
            let stats = proxy.stats_line().await;
            Err(e.context(format!(
                "{label}: {stats}\nME: {} requests\nlog tail:\n{}",
                me.requests(),
                proxy.log_tail(15)
            )))
        }
    };
    proxy.stop(Duration::from_secs(5)).await;
    r
}

/// Light- and half-load latency, echo and connection rate against a running unpinned
/// proxy.
async fn measure_deployment(
    label: &str,
    me: &BenchMe,
    proxy: &BenchProxy,
    secret: [u8; 16],
    half_rate: f64,
    plan: &Plan,
) -> anyhow::Result<DeploymentSide> {
    let step = |what: &str| eprintln!("[bench]   {label}: {what}");
    let (addr, pid) = (proxy.client_addr(), proxy.pid());
    let secs = Duration::from_secs_f64(plan.latency_secs);
    let mut side = DeploymentSide::default();
    let show = |l: &LatencyResult| {
        format!(
            "p50 {:.0} us, p99 {:.0} us, p999 {:.0} us, max {:.0} us ({} samples, proxy CPU {:.0} %)",
            l.p50_us, l.p99_us, l.p999_us, l.max_us, l.samples, l.cpu.proxy_percent
        )
    };
    side.latency_light = load::latency(
        addr,
        pid,
        secret,
        plan.latency_clients,
        plan.latency_rate,
        plan.latency_size,
        secs,
    )
    .await?;
    step(&format!(
        "light load ({:.0}/s): {}",
        plan.latency_rate,
        show(&side.latency_light)
    ));
    side.latency_half = load::latency(
        addr,
        pid,
        secret,
        plan.half_clients,
        half_rate,
        plan.latency_size,
        secs,
    )
    .await?;
    step(&format!(
        "half load ({half_rate:.0}/s): {}",
        show(&side.latency_half)
    ));
    side.echo = load::bulk(me, addr, pid, secret, plan.echo, Duration::from_secs(180)).await?;
    step(&format!(
        "echo: {:.0} MB/s, {:.0} MB per proxy CPU-s (proxy CPU {:.0} %)",
        side.echo.mb_per_s, side.echo.mb_per_proxy_cpu_s, side.echo.cpu.proxy_percent
    ));
    side.conn_rate = load::conn_rate(
        addr,
        pid,
        secret,
        plan.conn_concurrency,
        Duration::from_secs_f64(plan.conn_secs),
        (plan.conn_secs * 25_000.0) as usize,
    )
    .await?;
    step(&format!(
        "{:.0} connections/s, {:.0} per proxy CPU-s (proxy CPU {:.0} %)",
        side.conn_rate.per_s, side.conn_rate.per_proxy_cpu_s, side.conn_rate.cpu.proxy_percent
    ));
    Ok(side)
}
