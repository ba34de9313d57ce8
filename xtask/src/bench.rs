//! `cargo xtask bench`: the candidate (this port) against the reference (a C build) on
//! loopback in one run — throughput, connection rate, latency, idle memory and CPU,
//! start-up — with candidate/reference ratios, written to `artifacts/bench/bench-report.json`,
//! `bench-report.md` (a Markdown summary fit for a CI job summary) and `bench.svg` (see
//! `artifacts/bench/SCHEMA.md`).
//!
//! Each proxy runs pinned to one core (`taskset -c`, default the last CPU) with the same
//! command line as the dual-run and no `-M`: C runs single-process, the candidate's
//! runtime gets one worker thread (`available_parallelism` follows the affinity mask). The
//! load generator (this process: the bench ME and every client, see `parity::load`) is
//! pinned to the other CPUs. Each side gets a fresh ME and a fresh proxy; the sides run
//! one after the other, in alternating order over `--runs`.
//!
//! The crypto floor comes from `openssl speed` (CPU time, one core, the proxy's core):
//! per echoed byte a proxy does CTR-decrypt, CBC-encrypt, CBC-decrypt and CTR-encrypt.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context};
use parity::load::{
    self, BenchMe, BenchProxy, BulkResult, BulkSpec, ConnRateResult, IdleClients, LatencyResult,
    ProxySpec, Startup,
};
use serde::{Deserialize, Serialize};

/// Report format version.
pub const SCHEMA: &str = "mtproxy-bench/1";
/// File name of the Markdown summary ([`Report::to_markdown`]).
pub const REPORT_MD: &str = "bench-report.md";

/// Arguments of `cargo xtask bench`.
#[derive(Debug, clap::Args)]
pub struct Bench {
    /// The reference binary (a C MTProxy build); default: $MTPROXY_C_BIN, else the
    /// candidate against itself ("self" mode, ratios ≈ 1).
    #[arg(long, value_name = "PATH")]
    reference: Option<PathBuf>,
    /// The candidate binary; default: build `mtproto-proxy` in release mode and use it.
    #[arg(long, value_name = "PATH")]
    candidate: Option<PathBuf>,
    /// Full runs (both sides each); the order alternates, the report gives the spread.
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// The CPU the proxies are pinned to (default: the last one).
    #[arg(long)]
    proxy_cpu: Option<usize>,
    /// Payload MiB per bulk phase and side.
    #[arg(long, default_value_t = 512)]
    bulk_mib: usize,
    /// Idle-client counts for the memory figures (ascending).
    #[arg(long, value_delimiter = ',', default_values_t = [1000usize, 10_000])]
    idle_clients: Vec<usize>,
    /// Idle CPU window (seconds).
    #[arg(long, default_value_t = 10)]
    idle_secs: u64,
    /// Phases to run (default all): startup, idle, memory, latency, echo, upload,
    /// download, conn. Skipped phases report zeros.
    #[arg(long, value_delimiter = ',', default_values_t = PHASES.map(String::from))]
    phases: Vec<String>,
    /// Measure the candidate only (profiling; no ratios worth reading).
    #[arg(long)]
    candidate_only: bool,
    /// Start-up trials per side (fresh process each; the median is reported).
    #[arg(long, default_value_t = 5)]
    startup_trials: usize,
    /// Deployments to measure: `pinned` (each proxy on one core, one runtime thread: the
    /// phases above), `default` (no taskset, the default runtime: what operators run) and
    /// `workers2` (`-M 2` on both sides, no taskset).
    #[arg(long, value_delimiter = ',', default_values_t = DEPLOYMENTS.map(String::from))]
    deployments: Vec<String>,
    /// Small and short phases (a smoke test of the harness; figures are not meaningful).
    #[arg(long)]
    quick: bool,
    /// Where the report goes.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

/// Every deployment, in the order they run.
pub const DEPLOYMENTS: [&str; 3] = ["pinned", "default", "workers2"];

/// Every phase, in the order they run.
pub const PHASES: [&str; 8] = [
    "startup", "idle", "memory", "latency", "echo", "upload", "download", "conn",
];

/// The phase sizes of one run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    /// The phases run.
    pub phases: Vec<String>,
    /// Start-up trials per side.
    pub startup_trials: usize,
    /// CPU list the proxies are pinned to.
    pub proxy_cpus: String,
    /// CPU list of the load generator.
    pub loadgen_cpus: String,
    /// Idle CPU window (s).
    pub idle_secs: f64,
    /// Idle-client counts.
    pub idle_clients: Vec<usize>,
    /// Bulk echo: 16 KiB requests, 16 KiB answers.
    pub echo: BulkSpec,
    /// Upload only: 16 KiB requests, no answers (credit from the ME).
    pub upload: BulkSpec,
    /// Download only: 64-byte requests, 16 KiB answers.
    pub download: BulkSpec,
    /// Latency: clients, offered requests/s, packet bytes, seconds.
    pub latency_clients: usize,
    /// Offered requests per second (all latency clients together).
    pub latency_rate: f64,
    /// Packet size of the latency phase.
    pub latency_size: usize,
    /// Duration of the latency phase (s).
    pub latency_secs: f64,
    /// Concurrent connectors of the connection-rate phase.
    pub conn_concurrency: usize,
    /// Duration of the connection-rate phase (s).
    pub conn_secs: f64,
    /// `-c` given to both proxies.
    pub max_connections: u32,
    /// Deployments measured (see [`DEPLOYMENTS`]).
    #[serde(default)]
    pub deployments: Vec<String>,
    /// Clients of the half-load latency phase (unpinned deployments).
    #[serde(default)]
    pub half_clients: usize,
    /// Requests per client of the capacity probe that sets the half load.
    #[serde(default)]
    pub capacity_requests: usize,
}

impl Plan {
    /// Whether `phase` runs.
    pub fn has(&self, phase: &str) -> bool {
        self.phases.iter().any(|p| p == phase)
    }

    /// Whether `deployment` is measured.
    pub fn deploys(&self, deployment: &str) -> bool {
        self.deployments.iter().any(|d| d == deployment)
    }

    fn new(b: &Bench, proxy_cpus: String, loadgen_cpus: String) -> Self {
        let q = b.quick;
        let mib = if q { 16 } else { b.bulk_mib.max(1) };
        // 16 clients over the proxies' 4 ME links: every link carries traffic.
        let clients = 16;
        let per_client = |size: usize| (mib << 20) / clients / size;
        Plan {
            phases: b.phases.clone(),
            startup_trials: b.startup_trials.max(1),
            proxy_cpus,
            loadgen_cpus,
            idle_secs: if q { 1.0 } else { b.idle_secs as f64 },
            idle_clients: if q {
                vec![100, 300]
            } else {
                b.idle_clients.clone()
            },
            echo: BulkSpec {
                clients,
                requests: per_client(16384).max(1),
                request_size: 16384,
                answer_size: 16384,
                window: 4,
            },
            upload: BulkSpec {
                clients,
                requests: per_client(16384).max(1),
                request_size: 16384,
                answer_size: 0,
                window: 4,
            },
            download: BulkSpec {
                clients,
                requests: per_client(16384).max(1),
                request_size: 64,
                answer_size: 16384,
                window: 8,
            },
            latency_clients: 16,
            latency_rate: 800.0,
            latency_size: 256,
            // p99 of ~8 000 round trips: shorter windows let one hiccup of the machine
            // decide the percentile.
            latency_secs: if q { 1.0 } else { 10.0 },
            conn_concurrency: 128,
            conn_secs: if q { 1.0 } else { 3.0 },
            max_connections: 16_384,
            deployments: b.deployments.clone(),
            half_clients: 64,
            capacity_requests: if q { 200 } else { 2000 },
        }
    }
}

/// Resident memory with `clients` idle clients connected.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct IdleMemory {
    /// Idle clients connected.
    pub clients: usize,
    /// Proxy `VmRSS` (bytes).
    pub rss: u64,
    /// Proxy `RssAnon` (bytes).
    pub rss_anon: u64,
    /// (`VmRSS` − `VmRSS` before any client) / clients.
    pub rss_per_client: f64,
    /// Machine-wide kernel slab growth / clients: both sockets of a client connection
    /// (the client's and the proxy's end) plus their files and epoll entries. Noisy when
    /// other work runs.
    pub kernel_slab_per_connection_pair: f64,
    /// Proxy CPU over the idle window with these clients connected (% of a core); only
    /// for the largest count.
    pub idle_cpu_percent: Option<f64>,
}

/// Everything measured for one proxy.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SideReport {
    /// `candidate` or `reference`.
    pub label: String,
    /// Binary path.
    pub binary: String,
    /// Start-up timing: the median over the trials.
    pub startup: Startup,
    /// Every start-up trial.
    pub startup_trials: Vec<Startup>,
    /// Proxy `VmRSS` once ready, before any client (bytes).
    pub rss_ready: u64,
    /// Idle CPU with no client (% of a core).
    pub idle_cpu_percent: f64,
    /// Memory per idle client at each count.
    pub idle: Vec<IdleMemory>,
    /// Latency at light load.
    pub latency: LatencyResult,
    /// Bulk echo.
    pub echo: BulkResult,
    /// Upload only.
    pub upload: BulkResult,
    /// Download only.
    pub download: BulkResult,
    /// New connections per second.
    pub conn_rate: ConnRateResult,
    /// Bulk echo MB/s as a fraction of the crypto floor.
    pub echo_floor_fraction: f64,
}

/// The crypto floor on the proxy's core.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Floor {
    /// AES-256-CTR, MB/s (16 KiB blocks, CPU time).
    pub ctr_mb_s: f64,
    /// AES-256-CBC encrypt, MB/s.
    pub cbc_encrypt_mb_s: f64,
    /// AES-256-CBC decrypt, MB/s.
    pub cbc_decrypt_mb_s: f64,
    /// `1 / (2/ctr + 1/cbc_enc + 1/cbc_dec)`: echo MB/s if a core did nothing but crypto.
    pub echo_mb_s: f64,
}

impl Floor {
    /// The echo floor of the three cipher speeds.
    pub fn echo_of(ctr: f64, cbc_enc: f64, cbc_dec: f64) -> f64 {
        if ctr <= 0.0 || cbc_enc <= 0.0 || cbc_dec <= 0.0 {
            return 0.0;
        }
        1.0 / (2.0 / ctr + 1.0 / cbc_enc + 1.0 / cbc_dec)
    }
}

/// What one side measured in an unpinned deployment (`default`, `workers2`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DeploymentSide {
    /// Round trips at light load (the pinned phase's clients and rate).
    pub latency_light: LatencyResult,
    /// Round trips at about half load (see [`DeploymentRun::half_rate`]).
    pub latency_half: LatencyResult,
    /// Bulk echo.
    pub echo: BulkResult,
    /// New connections per second.
    pub conn_rate: ConnRateResult,
}

/// One unpinned deployment in one run: both sides.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DeploymentRun {
    /// `default` or `workers2`.
    pub name: String,
    /// `-M` of both sides (0: none).
    pub workers: u32,
    /// Closed-loop round trips per second the reference reached in this deployment (16
    /// clients, one 256-byte request outstanding each): its capacity for small packets.
    pub reference_capacity_per_s: f64,
    /// The half-load rate offered to both sides: half that capacity.
    pub half_rate: f64,
    /// This port.
    pub candidate: DeploymentSide,
    /// The C build (or the candidate again in self mode).
    pub reference: DeploymentSide,
}

/// One run: both sides and their ratios.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunReport {
    /// 0-based run index.
    pub index: usize,
    /// Which side ran first.
    pub first: String,
    /// Load average (1 min) at the start and end of the run: other work on the machine.
    pub loadavg: (f64, f64),
    /// CPU time the hypervisor took from this machine during the run (`steal` of
    /// `/proc/stat`), in % of all CPUs: above a few % the latency figures of the run
    /// measure the host, not the proxies.
    #[serde(default)]
    pub steal_percent: f64,
    /// This port.
    pub candidate: SideReport,
    /// The C build (or the candidate again in self mode).
    pub reference: SideReport,
    /// The unpinned deployments.
    #[serde(default)]
    pub deployments: Vec<DeploymentRun>,
    /// candidate / reference per metric (see [`ratios`] and [`deployment_ratios`]).
    pub ratios: Vec<Ratio>,
}

/// One candidate/reference ratio.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Ratio {
    /// Metric name.
    pub metric: String,
    /// Candidate value.
    pub candidate: f64,
    /// Reference value.
    pub reference: f64,
    /// candidate / reference (0 when the reference is 0).
    pub ratio: f64,
    /// Whether a higher value is better.
    pub higher_is_better: bool,
}

/// The ratios of one run.
pub fn ratios(c: &SideReport, r: &SideReport) -> Vec<Ratio> {
    let mut v = Vec::new();
    let mut push = |metric: &str, a: f64, b: f64, hib: bool| {
        v.push(Ratio {
            metric: metric.to_string(),
            candidate: a,
            reference: b,
            ratio: if b != 0.0 { a / b } else { 0.0 },
            higher_is_better: hib,
        });
    };
    push_throughput(&mut push, (&c.echo, &c.conn_rate), (&r.echo, &r.conn_rate));
    push("upload_mb_s", c.upload.mb_per_s, r.upload.mb_per_s, true);
    push(
        "download_mb_s",
        c.download.mb_per_s,
        r.download.mb_per_s,
        true,
    );
    push("latency_p50_us", c.latency.p50_us, r.latency.p50_us, false);
    push("latency_p99_us", c.latency.p99_us, r.latency.p99_us, false);
    for (a, b) in c.idle.iter().zip(&r.idle) {
        push(
            &format!("rss_per_idle_client_{}", a.clients),
            a.rss_per_client,
            b.rss_per_client,
            false,
        );
    }
    push(
        "idle_cpu_percent",
        c.idle_cpu_percent,
        r.idle_cpu_percent,
        false,
    );
    push(
        "first_served_ms",
        c.startup.first_served_ms,
        r.startup.first_served_ms,
        false,
    );
    push(
        "rss_ready_bytes",
        c.rss_ready as f64,
        r.rss_ready as f64,
        false,
    );
    v
}

/// The ratios of the unpinned deployments, named `<deployment>/<metric>`.
pub fn deployment_ratios(deployments: &[DeploymentRun]) -> Vec<Ratio> {
    let mut v = Vec::new();
    for d in deployments {
        let (c, r) = (&d.candidate, &d.reference);
        let mut push = |metric: &str, a: f64, b: f64, hib: bool| {
            v.push(Ratio {
                metric: format!("{}/{metric}", d.name),
                candidate: a,
                reference: b,
                ratio: if b != 0.0 { a / b } else { 0.0 },
                higher_is_better: hib,
            });
        };
        for (load, lc, lr) in [
            ("light", &c.latency_light, &r.latency_light),
            ("half", &c.latency_half, &r.latency_half),
        ] {
            push(
                &format!("latency_{load}_p50_us"),
                lc.p50_us,
                lr.p50_us,
                false,
            );
            push(
                &format!("latency_{load}_p99_us"),
                lc.p99_us,
                lr.p99_us,
                false,
            );
            push(
                &format!("latency_{load}_p999_us"),
                lc.p999_us,
                lr.p999_us,
                false,
            );
            push(
                &format!("latency_{load}_max_us"),
                lc.max_us,
                lr.max_us,
                false,
            );
        }
        push_throughput(&mut push, (&c.echo, &c.conn_rate), (&r.echo, &r.conn_rate));
    }
    v
}

/// Echo throughput and connection rate, absolute and per proxy CPU-second: the ratios every
/// deployment has.
fn push_throughput(
    push: &mut impl FnMut(&str, f64, f64, bool),
    (ce, cc): (&BulkResult, &ConnRateResult),
    (re, rc): (&BulkResult, &ConnRateResult),
) {
    push("echo_mb_s", ce.mb_per_s, re.mb_per_s, true);
    push(
        "echo_mb_per_proxy_cpu_s",
        ce.mb_per_proxy_cpu_s,
        re.mb_per_proxy_cpu_s,
        true,
    );
    push("conn_per_s", cc.per_s, rc.per_s, true);
    push(
        "conn_per_proxy_cpu_s",
        cc.per_proxy_cpu_s,
        rc.per_proxy_cpu_s,
        true,
    );
}

/// The spread of one ratio over the runs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Spread {
    /// Metric name.
    pub metric: String,
    /// Median ratio.
    pub median: f64,
    /// Smallest ratio.
    pub min: f64,
    /// Largest ratio.
    pub max: f64,
    /// Median candidate value.
    pub candidate_median: f64,
    /// Median reference value.
    pub reference_median: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Median, min and max of each ratio over `runs`.
pub fn spreads(runs: &[RunReport]) -> Vec<Spread> {
    let Some(first) = runs.first() else {
        return Vec::new();
    };
    first
        .ratios
        .iter()
        .map(|r0| {
            let all: Vec<&Ratio> = runs
                .iter()
                .filter_map(|r| r.ratios.iter().find(|x| x.metric == r0.metric))
                .collect();
            let ratio: Vec<f64> = all.iter().map(|x| x.ratio).collect();
            Spread {
                metric: r0.metric.clone(),
                median: median(ratio.clone()),
                min: ratio.iter().copied().fold(f64::INFINITY, f64::min),
                max: ratio.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                candidate_median: median(all.iter().map(|x| x.candidate).collect()),
                reference_median: median(all.iter().map(|x| x.reference).collect()),
            }
        })
        .collect()
}

/// One target of issue #6 and whether the medians meet it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Target {
    /// What is required.
    pub target: String,
    /// The measured value (median over runs).
    pub value: f64,
    /// The bound.
    pub bound: f64,
    /// Whether it holds.
    pub met: bool,
    /// By how much it is missed, as a fraction of the bound (0 when met).
    pub missed_by: f64,
    /// For a miss: why, from what the run measured (empty when met or unknown).
    #[serde(default)]
    pub why: String,
}

fn target(name: &str, value: f64, bound: f64, at_least: bool) -> Target {
    let met = if at_least {
        value >= bound
    } else {
        value <= bound
    };
    let missed_by = if met || bound == 0.0 {
        0.0
    } else {
        ((value - bound) / bound).abs()
    };
    Target {
        target: name.to_string(),
        value,
        bound,
        met,
        missed_by,
        why: String::new(),
    }
}

/// What the runs measured that explains a miss.
#[derive(Debug, Clone, Copy, Default)]
pub struct MissContext {
    /// Highest load-generator CPU (% of its core) in any connection-rate phase.
    pub conn_loadgen_percent: f64,
    /// Candidate connections per proxy CPU-second / reference's (median).
    pub conn_per_cpu_ratio: f64,
    /// The candidate proxy's kernel share of its CPU in the echo phase (median, %).
    pub echo_kernel_share_percent: f64,
    /// Candidate echo MB per proxy CPU-second / the floor (median).
    pub echo_per_cpu_floor_fraction: f64,
}

impl MissContext {
    /// Collects the context from the runs.
    pub fn of(runs: &[RunReport], floor: &Floor) -> Self {
        let conn_loadgen_percent = runs
            .iter()
            .flat_map(|r| [&r.candidate, &r.reference])
            .map(|s| s.conn_rate.cpu.loadgen_percent)
            .fold(0.0, f64::max);
        let conn_per_cpu_ratio = median(
            runs.iter()
                .filter(|r| r.reference.conn_rate.per_proxy_cpu_s > 0.0)
                .map(|r| {
                    r.candidate.conn_rate.per_proxy_cpu_s / r.reference.conn_rate.per_proxy_cpu_s
                })
                .collect(),
        );
        let echo_kernel_share_percent = median(
            runs.iter()
                .map(|r| r.candidate.echo.cpu.proxy_kernel_share_percent)
                .collect(),
        );
        let echo_per_cpu_floor_fraction = if floor.echo_mb_s > 0.0 {
            median(
                runs.iter()
                    .map(|r| r.candidate.echo.mb_per_proxy_cpu_s / floor.echo_mb_s)
                    .collect(),
            )
        } else {
            0.0
        };
        Self {
            conn_loadgen_percent,
            conn_per_cpu_ratio,
            echo_kernel_share_percent,
            echo_per_cpu_floor_fraction,
        }
    }
}

/// Fills in [`Target::why`] for the misses the context explains.
pub fn explain(targets: &mut [Target], cx: &MissContext) {
    for t in targets.iter_mut().filter(|t| !t.met) {
        if t.target.starts_with("new connections/s") && cx.conn_loadgen_percent >= 90.0 {
            t.why = format!(
                "the load generator was saturated ({:.0} % of its core): on this machine it \
                 cannot open connections as fast as the candidate accepts them; per proxy \
                 CPU-second the candidate does {:.2}x C",
                cx.conn_loadgen_percent, cx.conn_per_cpu_ratio
            );
        } else if t.target.contains("crypto floor") && cx.echo_kernel_share_percent > 0.0 {
            t.why = format!(
                "the floor counts only the four cipher passes; the proxy also spends {:.0} % of \
                 its CPU in the kernel (four loopback TCP copies and the TCP/netfilter work of \
                 every byte, on its own core); per proxy CPU-second it moves {:.2} of the floor, \
                 per CPU-second outside the kernel {:.2}",
                cx.echo_kernel_share_percent,
                cx.echo_per_cpu_floor_fraction,
                cx.echo_per_cpu_floor_fraction / (1.0 - cx.echo_kernel_share_percent / 100.0)
            );
        }
    }
}

/// User-space and kernel CPU per unit of work (per MB echoed, per connection), medians over
/// the runs, for one side of one unpinned deployment.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuSplit {
    /// User-space CPU seconds per unit.
    pub user: f64,
    /// Kernel CPU seconds per unit.
    pub kernel: f64,
}

fn split(cpu: &load::CpuUse, units: f64) -> Option<CpuSplit> {
    if units <= 0.0 || cpu.proxy_cpu_s <= 0.0 {
        return None;
    }
    let kernel = cpu.proxy_cpu_s * cpu.proxy_kernel_share_percent / 100.0;
    Some(CpuSplit {
        user: (cpu.proxy_cpu_s - kernel) / units,
        kernel: kernel / units,
    })
}

fn median_split(v: &[CpuSplit]) -> CpuSplit {
    CpuSplit {
        user: median(v.iter().map(|x| x.user).collect()),
        kernel: median(v.iter().map(|x| x.kernel).collect()),
    }
}

/// Fills in [`Target::why`] for missed per-CPU-second targets of the unpinned deployments:
/// where each side's CPU goes per unit of work, and the ratio the kernel's part allows at
/// most (the same socket work for both sides; with no user-space CPU at all the candidate
/// would reach C's total / the candidate's kernel time).
pub fn explain_deployments(targets: &mut [Target], runs: &[RunReport]) {
    for t in targets.iter_mut().filter(|t| !t.met) {
        if let Some(why) = latency_why(&t.target, runs) {
            t.why = why;
            continue;
        }
        let Some(d) = DEPLOYMENTS
            .iter()
            .find(|d| t.target.ends_with(&format!("({d})")))
        else {
            continue;
        };
        let echo = t.target.starts_with("echo per proxy CPU-second");
        let conn = t.target.starts_with("connections per proxy CPU-second");
        if !echo && !conn {
            continue;
        }
        let (mut cand, mut refr) = (Vec::new(), Vec::new());
        for dr in runs
            .iter()
            .flat_map(|r| &r.deployments)
            .filter(|x| x.name == *d)
        {
            for (side, out) in [(&dr.candidate, &mut cand), (&dr.reference, &mut refr)] {
                let s = if echo {
                    split(&side.echo.cpu, side.echo.bytes as f64 / 1e6)
                } else {
                    split(&side.conn_rate.cpu, side.conn_rate.connections as f64)
                };
                out.extend(s);
            }
        }
        if cand.is_empty() || refr.is_empty() {
            continue;
        }
        let (c, r) = (median_split(&cand), median_split(&refr));
        let (unit, scale, per) = if echo {
            ("MB echoed", 1e3, "ms")
        } else {
            ("connection", 1e6, "us")
        };
        let cap = if c.kernel > 0.0 {
            (r.user + r.kernel) / c.kernel
        } else {
            0.0
        };
        t.why = format!(
            "per {unit} the candidate spends {:.2} {per} in user space and {:.2} {per} in the \
             kernel, C {:.2} and {:.2} {per}: the candidate's user-space work is {:.1}x lower, \
             but the kernel part (socket I/O of the same bytes) is {:.2}x C's, which caps the \
             ratio at {:.2}x even with no user-space work at all",
            c.user * scale,
            c.kernel * scale,
            r.user * scale,
            r.kernel * scale,
            if c.user > 0.0 { r.user / c.user } else { 0.0 },
            if r.kernel > 0.0 {
                c.kernel / r.kernel
            } else {
                0.0
            },
            cap
        );
    }
}

/// For a missed p99 target: each run's p99 on both sides beside the host's CPU steal in
/// that run, and how many runs the candidate won.
fn latency_why(target: &str, runs: &[RunReport]) -> Option<String> {
    let rest = target.strip_prefix("p99 latency <= C")?;
    // `None`: the pinned deployment; else (deployment, half load).
    let which: Option<(String, bool)> = if rest.is_empty() {
        None
    } else {
        let inner = rest.trim().trim_start_matches('(').trim_end_matches(')');
        let (d, load) = inner.split_once(", ")?;
        Some((d.to_string(), load.starts_with("half")))
    };
    let pick = |r: &RunReport| -> Option<(f64, f64)> {
        let Some((d, half)) = &which else {
            return Some((r.candidate.latency.p99_us, r.reference.latency.p99_us));
        };
        let x = r.deployments.iter().find(|x| &x.name == d)?;
        Some(if *half {
            (
                x.candidate.latency_half.p99_us,
                x.reference.latency_half.p99_us,
            )
        } else {
            (
                x.candidate.latency_light.p99_us,
                x.reference.latency_light.p99_us,
            )
        })
    };
    let rows: Vec<(f64, f64, f64)> = runs
        .iter()
        .filter_map(|r| pick(r).map(|(c, x)| (c, x, r.steal_percent)))
        .collect();
    if rows.is_empty() {
        return None;
    }
    let won = rows.iter().filter(|(c, r, _)| c <= r).count();
    Some(format!(
        "per run, candidate/C p99 in us (host CPU steal): {}; the candidate had the lower p99 \
         in {won} of {} runs",
        rows.iter()
            .map(|(c, r, st)| format!("{c:.0}/{r:.0} ({st:.1} %)"))
            .collect::<Vec<_>>()
            .join(", "),
        rows.len()
    ))
}

/// The targets, judged on the medians.
pub fn targets(spreads: &[Spread], floor_fraction: f64) -> Vec<Target> {
    let get = |m: &str| spreads.iter().find(|s| s.metric == m);
    let mut t = Vec::new();
    if let Some(s) = get("echo_mb_s") {
        t.push(target("echo throughput >= 1.3x C", s.median, 1.3, true));
    }
    if get("echo_mb_s").is_some() {
        t.push(target(
            "echo throughput >= 60% of the crypto floor",
            floor_fraction,
            0.6,
            true,
        ));
    }
    if let Some(s) = get("conn_per_s") {
        t.push(target("new connections/s >= 1.5x C", s.median, 1.5, true));
    }
    for s in spreads
        .iter()
        .filter(|s| s.metric.starts_with("rss_per_idle_client_"))
    {
        let n = s.metric.trim_start_matches("rss_per_idle_client_");
        t.push(target(
            &format!("RSS per idle client ({n}) <= 0.5x C"),
            s.median,
            0.5,
            false,
        ));
        t.push(target(
            &format!("RSS per idle client ({n}) <= 4 KiB"),
            s.candidate_median,
            4096.0,
            false,
        ));
    }
    if let Some(s) = get("latency_p99_us") {
        t.push(target("p99 latency <= C", s.median, 1.0, false));
    }
    for d in DEPLOYMENTS.iter().filter(|d| **d != "pinned") {
        for load in ["light", "half"] {
            if let Some(s) = get(&format!("{d}/latency_{load}_p99_us")) {
                t.push(target(
                    &format!("p99 latency <= C ({d}, {load} load)"),
                    s.median,
                    1.0,
                    false,
                ));
            }
        }
        if let Some(s) = get(&format!("{d}/conn_per_proxy_cpu_s")) {
            t.push(target(
                &format!("connections per proxy CPU-second >= 1.5x C ({d})"),
                s.median,
                1.5,
                true,
            ));
        }
        if let Some(s) = get(&format!("{d}/echo_mb_per_proxy_cpu_s")) {
            t.push(target(
                &format!("echo per proxy CPU-second >= 1.5x C ({d})"),
                s.median,
                1.5,
                true,
            ));
        }
    }
    if let Some(s) = get("idle_cpu_percent") {
        t.push(target(
            "idle CPU ~ 0 (<= 0.1 %)",
            s.candidate_median,
            0.1,
            false,
        ));
    }
    if let Some(s) = get("first_served_ms") {
        t.push(target(
            "first accept <= 50 ms",
            s.candidate_median,
            50.0,
            false,
        ));
    }
    t
}

/// The machine the figures come from.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Machine {
    /// CPU model.
    pub cpu: String,
    /// Online CPUs.
    pub cpus: usize,
    /// Kernel release.
    pub kernel: String,
    /// RAM (bytes).
    pub memory: u64,
    /// Whether the CPU has AES-NI / VAES (from `/proc/cpuinfo`).
    pub aes_ni: bool,
    /// VAES.
    pub vaes: bool,
    /// `RLIMIT_NOFILE` (soft, hard) of the load generator after raising.
    pub nofile: (u64, u64),
    /// `openssl version`.
    pub openssl: String,
}

/// The whole report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// [`SCHEMA`].
    pub schema: String,
    /// When it was made (UTC).
    pub generated: String,
    /// Whether the reference is the candidate itself.
    pub self_mode: bool,
    /// The machine.
    pub machine: Machine,
    /// The crypto floor.
    pub floor: Floor,
    /// Phase sizes.
    pub plan: Plan,
    /// Every run.
    pub runs: Vec<RunReport>,
    /// Ratio spreads over the runs.
    pub spreads: Vec<Spread>,
    /// The targets, judged on the medians.
    pub targets: Vec<Target>,
}

impl Bench {
    /// Runs the benchmark and writes the report.
    ///
    /// # Errors
    /// Build, spawn or measurement failures.
    pub fn run(self) -> anyhow::Result<()> {
        let root = crate::project_root();
        if cfg!(debug_assertions) && std::env::var_os(CHILD_ENV).is_none() {
            return reexec_release(&root);
        }
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        let proxy_cpu = self.proxy_cpu.unwrap_or(cpus.saturating_sub(1));
        if proxy_cpu >= cpus {
            bail!("--proxy-cpu {proxy_cpu}: this machine has {cpus} CPUs");
        }
        let others: Vec<String> = (0..cpus)
            .filter(|c| *c != proxy_cpu || cpus == 1)
            .map(|c| c.to_string())
            .collect();
        let loadgen_cpus = others.join(",");
        let all_cpus = format!("0-{}", cpus.saturating_sub(1));
        let candidate = match &self.candidate {
            Some(c) => c.clone(),
            None => crate::dualrun::build_candidate(&root)?,
        };
        let reference = self
            .reference
            .clone()
            .or_else(|| std::env::var_os("MTPROXY_C_BIN").map(PathBuf::from));
        let self_mode = reference.is_none();
        let reference = reference.unwrap_or_else(|| candidate.clone());
        for b in [&candidate, &reference] {
            if !b.is_file() {
                bail!("{} is not a file", b.display());
            }
        }
        // Pin this process (and the runtime threads created below) away from the proxy.
        pin_self(&loadgen_cpus)?;
        let nofile = load::raise_nofile();
        let out = self
            .out
            .clone()
            .unwrap_or_else(|| root.join("artifacts").join("bench"));
        std::fs::create_dir_all(&out)?;
        let plan = Plan::new(&self, proxy_cpu.to_string(), loadgen_cpus.clone());
        eprintln!(
            "[bench] candidate {}\n[bench] reference {}{}\n[bench] proxies on CPU {}, load generator on CPU {}; RLIMIT_NOFILE {}/{}",
            candidate.display(),
            reference.display(),
            if self_mode { " (self mode: no C build given)" } else { "" },
            plan.proxy_cpus,
            plan.loadgen_cpus,
            nofile.0,
            nofile.1
        );
        let mut machine = machine();
        machine.nofile = nofile;
        eprintln!("[bench] crypto floor: openssl speed on CPU {proxy_cpu}");
        let floor = crypto_floor(proxy_cpu);
        eprintln!(
            "[bench]   CTR {:.0} MB/s, CBC enc {:.0} MB/s, CBC dec {:.0} MB/s -> echo floor {:.0} MB/s",
            floor.ctr_mb_s, floor.cbc_encrypt_mb_s, floor.cbc_decrypt_mb_s, floor.echo_mb_s
        );
        let workers = std::thread::available_parallelism().map_or(1, usize::from);
        // One load-generator CPU (the 2-core case) gets the current-thread scheduler, as
        // the proxy does on one thread.
        let rt = mtproxy::os::runtime(workers).context("starting tokio")?;
        let mut runs = Vec::new();
        for i in 0..self.runs.max(1) {
            let cand_first = i % 2 == 0;
            let load0 = loadavg();
            let steal0 = cpu_steal();
            let log_dir = out.join("logs").join(format!("run{i}"));
            let mut sides = Vec::new();
            let order: [(&str, &Path); 2] = if cand_first {
                [("candidate", &candidate), ("reference", &reference)]
            } else {
                [("reference", &reference), ("candidate", &candidate)]
            };
            for (label, bin) in order {
                if !plan.deploys("pinned") || (self.candidate_only && label == "reference") {
                    sides.push(SideReport {
                        label: label.into(),
                        ..SideReport::default()
                    });
                    continue;
                }
                eprintln!("[bench] run {}/{}: {label}", i + 1, self.runs.max(1));
                let mut side = rt
                    .block_on(run_side(label, bin, &plan, &log_dir))
                    .with_context(|| format!("run {i}, {label}"))?;
                side.echo_floor_fraction = if floor.echo_mb_s > 0.0 {
                    side.echo.mb_per_s / floor.echo_mb_s
                } else {
                    0.0
                };
                sides.push(side);
            }
            let (c, r) = if cand_first {
                (sides.remove(0), sides.remove(0))
            } else {
                let r = sides.remove(0);
                (sides.remove(0), r)
            };
            let mut deployments = Vec::new();
            for (name, workers) in [("default", 0u32), ("workers2", 2)] {
                if !plan.deploys(name) {
                    continue;
                }
                // Nothing pinned: the load generator shares every CPU with the proxy, as
                // other work does on an operator's machine.
                pin_self(&all_cpus)?;
                eprintln!(
                    "[bench] run {}/{}: deployment {name} (no taskset{})",
                    i + 1,
                    self.runs.max(1),
                    if workers > 0 {
                        ", -M 2 on both sides"
                    } else {
                        ", default runtime"
                    }
                );
                let d = rt
                    .block_on(run_deployment(
                        name,
                        workers,
                        &candidate,
                        &reference,
                        cand_first,
                        self.candidate_only,
                        &plan,
                        &log_dir,
                    ))
                    .with_context(|| format!("run {i}, deployment {name}"))?;
                deployments.push(d);
                pin_self(&loadgen_cpus)?;
            }
            let mut ratios = if plan.deploys("pinned") {
                ratios(&c, &r)
            } else {
                Vec::new()
            };
            ratios.extend(deployment_ratios(&deployments));
            runs.push(RunReport {
                index: i,
                first: if cand_first { "candidate" } else { "reference" }.into(),
                loadavg: (load0, loadavg()),
                steal_percent: steal0.percent_until(cpu_steal()),
                candidate: c,
                reference: r,
                deployments,
                ratios,
            });
        }
        let spreads = spreads(&runs);
        let fractions: Vec<f64> = runs
            .iter()
            .map(|r| r.candidate.echo_floor_fraction)
            .collect();
        let mut targets = targets(&spreads, median(fractions));
        explain(&mut targets, &MissContext::of(&runs, &floor));
        explain_deployments(&mut targets, &runs);
        let report = Report {
            schema: SCHEMA.into(),
            generated: mtproxy::clock::rfc3339(SystemTime::now()),
            self_mode,
            machine,
            floor,
            plan,
            runs,
            spreads,
            targets,
        };
        let json = out.join("bench-report.json");
        std::fs::write(&json, serde_json::to_string_pretty(&report)?)?;
        std::fs::write(out.join(REPORT_MD), report.to_markdown())?;
        let svg = out.join("bench.svg");
        std::fs::write(&svg, render_svg(&report))?;
        println!("{}", summary(&report));
        println!(
            "report: {} and {}\npicture: {}",
            json.display(),
            out.join(REPORT_MD).display(),
            svg.display()
        );
        Ok(())
    }
}

impl Report {
    /// The targets missed.
    pub fn missed(&self) -> Vec<&Target> {
        self.targets.iter().filter(|t| !t.met).collect()
    }

    /// The Markdown summary (`bench-report.md`, fit for a CI job summary): how many of the
    /// issue's targets were met up front, the binaries, the mode and the machine, every
    /// ratio (median and spread over the runs), every target, and each miss with its
    /// reason.
    pub fn to_markdown(&self) -> String {
        use parity::report::{md_cell, md_code};
        use std::fmt::Write as _;
        let mut s = String::new();
        let missed = self.missed();
        let headline = if self.targets.is_empty() {
            "no target judged".to_string()
        } else if missed.is_empty() {
            format!(
                "all {} met",
                parity::report::plural(self.targets.len(), "target")
            )
        } else {
            format!(
                "{} of {} targets met, {} missed",
                self.targets.len() - missed.len(),
                self.targets.len(),
                missed.len()
            )
        };
        let _ = writeln!(
            s,
            "# Bench: {headline}{}\n",
            if self.self_mode {
                " — no reference"
            } else {
                ""
            }
        );
        if self.self_mode {
            s.push_str(
                "> **No reference mode (self mode).** No C build was given (`--reference PATH` \
                 or `MTPROXY_C_BIN`): the candidate was measured against itself, so every ratio \
                 is about 1 and the targets relative to C say nothing.\n\n",
            );
        }
        let first = self.runs.first();
        let binary = |side: Option<&SideReport>| {
            side.filter(|b| !b.binary.is_empty())
                .map_or_else(|| "not measured".to_string(), |b| md_code(&b.binary))
        };
        let _ = writeln!(
            s,
            "- **Candidate:** {}",
            binary(first.map(|r| &r.candidate))
        );
        let _ = writeln!(
            s,
            "- **Reference (C):** {}",
            if self.self_mode {
                "none — the candidate against itself".to_string()
            } else {
                binary(first.map(|r| &r.reference))
            }
        );
        let m = &self.machine;
        let _ = writeln!(
            s,
            "- **Machine:** {} — {} CPUs, {} GiB, Linux {}, AES-NI {}, {}",
            md_cell(&m.cpu),
            m.cpus,
            m.memory >> 30,
            md_cell(&m.kernel),
            if m.aes_ni { "yes" } else { "no" },
            md_cell(&m.openssl)
        );
        let _ = writeln!(
            s,
            "- **Runs:** {} (alternating order; medians below), proxies on CPU {}, load generator on CPU {}",
            parity::report::plural(self.runs.len(), "run"),
            self.plan.proxy_cpus,
            self.plan.loadgen_cpus
        );
        let _ = writeln!(
            s,
            "- **Crypto floor:** {:.0} MB/s of echo (CTR {:.0}, CBC encrypt {:.0}, CBC decrypt {:.0} MB/s on the proxies' core)",
            self.floor.echo_mb_s,
            self.floor.ctr_mb_s,
            self.floor.cbc_encrypt_mb_s,
            self.floor.cbc_decrypt_mb_s
        );
        let _ = writeln!(
            s,
            "- **Phases:** {}",
            self.plan
                .phases
                .iter()
                .map(|p| md_code(p))
                .collect::<Vec<_>>()
                .join(", ")
        );
        if !self.plan.deployments.is_empty() {
            let _ = writeln!(
                s,
                "- **Deployments:** {} (`pinned`: each proxy on one core, one runtime thread; \
                 `default`: no taskset, the default runtime; `workers2`: `-M 2` on both sides, \
                 no taskset; in the unpinned ones the load generator shares every CPU; \
                 `<deployment>/latency_half_*` is at half the reference's closed-loop capacity)",
                self.plan
                    .deployments
                    .iter()
                    .map(|d| md_code(d))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        if !self.runs.is_empty() {
            let _ = writeln!(
                s,
                "- **Host CPU steal per run:** {} (time the hypervisor took; above a few % a run's latency figures measure the host)",
                self.runs
                    .iter()
                    .map(|r| format!("{:.1} %", r.steal_percent))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        let _ = writeln!(s, "- **Generated:** {}", self.generated);

        if !missed.is_empty() {
            s.push_str("\n## Missed targets\n\n");
            for t in &missed {
                let why = if t.why.is_empty() {
                    String::new()
                } else {
                    format!(": {}", md_cell(&t.why))
                };
                let _ = writeln!(
                    s,
                    "- **{}** — {} (bound {}), missed by {:.0} %{why}",
                    md_cell(&t.target),
                    fmt_value(t.value),
                    fmt_value(t.bound),
                    t.missed_by * 100.0
                );
            }
        }

        s.push_str("\n## Targets\n\n| Target | Value | Bound | Result |\n|---|---:|---:|---|\n");
        for t in &self.targets {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} |",
                md_cell(&t.target),
                fmt_value(t.value),
                fmt_value(t.bound),
                if t.met { "met" } else { "**MISSED**" }
            );
        }

        s.push_str(
            "\n## Candidate / reference\n\n| Metric | Candidate | Reference | Ratio | Spread | Better when |\n\
             |---|---:|---:|---:|---|---|\n",
        );
        for sp in &self.spreads {
            let higher = first
                .and_then(|r| r.ratios.iter().find(|x| x.metric == sp.metric))
                .is_none_or(|x| x.higher_is_better);
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.3} | {:.3}–{:.3} | {} |",
                md_code(&sp.metric),
                fmt_value(sp.candidate_median),
                fmt_value(sp.reference_median),
                sp.median,
                sp.min,
                sp.max,
                if higher { "higher" } else { "lower" }
            );
        }
        s
    }
}

/// A figure for the Markdown: whole numbers as they are, others with up to 3 decimals.
fn fmt_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else {
        let t = format!("{v:.3}");
        t.trim_end_matches('0').trim_end_matches('.').to_string()
    }
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

/// Set in the optimised copy of xtask that [`reexec_release`] starts.
const CHILD_ENV: &str = "MTPROXY_BENCH_RELEASE_CHILD";

/// `cargo xtask` is a debug build; an unoptimised load generator would measure itself.
/// Builds xtask in release mode and runs `bench` there with the same arguments.
fn reexec_release(root: &Path) -> anyhow::Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("[bench] building the load generator: cargo build --release -p xtask");
    let status = std::process::Command::new(cargo)
        .current_dir(root)
        .args(["build", "--release", "-p", "xtask"])
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("building xtask in release mode failed ({status})");
    }
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let status = std::process::Command::new(target.join("release").join("xtask"))
        .args(std::env::args_os().skip(1))
        .env(CHILD_ENV, "1")
        .status()
        .context("running the release xtask")?;
    if !status.success() {
        bail!("bench failed ({status})");
    }
    Ok(())
}

async fn run_side(
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

/// Sets the CPU affinity of every thread of this process (`taskset -a -p -c CPUS`).
fn pin_self(cpus: &str) -> anyhow::Result<()> {
    let status = std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &std::process::id().to_string()])
        .stdout(std::process::Stdio::null())
        .status()
        .context("running taskset (util-linux) to place the load generator")?;
    if !status.success() {
        bail!("taskset -a -p -c {cpus} failed: {status}");
    }
    Ok(())
}

/// One unpinned deployment: the reference's small-packet capacity first (a probe that
/// sets the half load), then both sides in the run's order.
#[allow(clippy::too_many_arguments)]
async fn run_deployment(
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

/// Total kernel slab (`Slab:` of `/proc/meminfo`, bytes).
fn slab() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("Slab:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |k| k * 1024)
}

/// `(steal, total)` jiffies of all CPUs, from the `cpu` line of `/proc/stat`.
#[derive(Debug, Clone, Copy, Default)]
struct Steal(u64, u64);

impl Steal {
    fn percent_until(self, later: Steal) -> f64 {
        let total = later.1.saturating_sub(self.1);
        if total == 0 {
            return 0.0;
        }
        later.0.saturating_sub(self.0) as f64 / total as f64 * 100.0
    }
}

fn cpu_steal() -> Steal {
    std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|t| {
            let v: Vec<u64> = t
                .lines()
                .next()?
                .split_whitespace()
                .skip(1)
                .filter_map(|x| x.parse().ok())
                .collect();
            Some(Steal(v.get(7).copied().unwrap_or(0), v.iter().sum()))
        })
        .unwrap_or_default()
}

fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_string())
        .unwrap_or_default();
    let flags: Vec<&str> = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("flags"))
        .map(|v| v.split_whitespace().collect())
        .unwrap_or_default();
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |k| k * 1024);
    let openssl = std::process::Command::new("openssl")
        .arg("version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    Machine {
        cpu,
        cpus: cpuinfo
            .lines()
            .filter(|l| l.starts_with("processor"))
            .count(),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_string(),
        memory,
        aes_ni: flags.contains(&"aes"),
        vaes: flags.contains(&"vaes"),
        nofile: (0, 0),
        openssl,
    }
}

/// `openssl speed` (CPU time, 16 KiB blocks, 1 s) on `cpu`; MB/s, 0 when unavailable.
fn openssl_speed(cpu: usize, decrypt: bool, cipher: &str) -> f64 {
    let mut cmd = std::process::Command::new("taskset");
    cmd.args([
        "-c",
        &cpu.to_string(),
        "openssl",
        "speed",
        "-seconds",
        "1",
        "-bytes",
        "16384",
    ]);
    if decrypt {
        cmd.arg("-decrypt");
    }
    cmd.args(["-evp", cipher]);
    let Ok(out) = cmd.stderr(std::process::Stdio::null()).output() else {
        return 0.0;
    };
    parse_openssl_speed(&String::from_utf8_lossy(&out.stdout))
}

/// The MB/s of the last result line of `openssl speed` (`AES-256-CTR  1234.56k`, in
/// 1000s of bytes per second).
pub fn parse_openssl_speed(text: &str) -> f64 {
    text.lines()
        .rev()
        .find_map(|l| {
            let last = l.split_whitespace().last()?;
            let k: f64 = last.strip_suffix('k')?.parse().ok()?;
            Some(k / 1000.0)
        })
        .unwrap_or(0.0)
}

fn crypto_floor(cpu: usize) -> Floor {
    let ctr = openssl_speed(cpu, false, "aes-256-ctr");
    let enc = openssl_speed(cpu, false, "aes-256-cbc");
    let dec = openssl_speed(cpu, true, "aes-256-cbc");
    Floor {
        ctr_mb_s: ctr,
        cbc_encrypt_mb_s: enc,
        cbc_decrypt_mb_s: dec,
        echo_mb_s: Floor::echo_of(ctr, enc, dec),
    }
}

/// The text summary: one line per ratio (median and spread), then the targets.
pub fn summary(r: &Report) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "bench: {} run(s) on {} ({} CPUs){}; echo floor {:.0} MB/s\n",
        r.runs.len(),
        r.machine.cpu,
        r.machine.cpus,
        if r.self_mode { ", SELF MODE" } else { "" },
        r.floor.echo_mb_s
    ));
    s.push_str(&format!(
        "{:<28} {:>12} {:>12} {:>8} {:>17}\n",
        "metric", "candidate", "reference", "ratio", "spread"
    ));
    for x in &r.spreads {
        s.push_str(&format!(
            "{:<28} {:>12.2} {:>12.2} {:>8.3} {:>8.3}..{:<8.3}\n",
            x.metric, x.candidate_median, x.reference_median, x.median, x.min, x.max
        ));
    }
    for t in &r.targets {
        s.push_str(&format!(
            "[{}] {}: {:.3} (bound {}){}\n",
            if t.met { "met " } else { "MISS" },
            t.target,
            t.value,
            t.bound,
            if t.met {
                String::new()
            } else if t.why.is_empty() {
                format!(", missed by {:.0} %", t.missed_by * 100.0)
            } else {
                format!(", missed by {:.0} %: {}", t.missed_by * 100.0, t.why)
            }
        ));
    }
    s
}

/// One bar of [`render_svg`]: the "times better" median, whisker ends and label.
///
/// For lower-is-better metrics the value is reference / candidate; where ours is 0 and
/// C's is not (idle CPU) that is infinitely better: the bar is full length and the label
/// gives both values instead.
fn bar(sp: &Spread, higher_is_better: bool, max_x: f64) -> (f64, f64, f64, String) {
    let ours_zero = !higher_is_better && sp.candidate_median == 0.0 && sp.reference_median > 0.0;
    let better = |v: f64| {
        if higher_is_better {
            v
        } else if v > 0.0 {
            1.0 / v
        } else if ours_zero {
            f64::INFINITY
        } else {
            0.0
        }
    };
    let m = better(sp.median).min(max_x);
    let a = better(sp.min).min(max_x);
    let b = better(sp.max).min(max_x);
    let label = if ours_zero {
        format!("ours 0, C {:.2}", sp.reference_median)
    } else {
        format!("{m:.2}x")
    };
    (m, a.min(b), a.max(b), label)
}

/// A horizontal bar chart of the candidate/reference ratios ("better" normalised so that
/// a longer bar is always better: for lower-is-better metrics the bar is reference /
/// candidate), with the spread as a whisker and a line at 1.
pub fn render_svg(r: &Report) -> String {
    let rows: Vec<(&Spread, bool)> = r
        .spreads
        .iter()
        .map(|s| {
            let hib = r
                .runs
                .first()
                .and_then(|run| run.ratios.iter().find(|x| x.metric == s.metric))
                .is_none_or(|x| x.higher_is_better);
            (s, hib)
        })
        .collect();
    let (w, row_h, left, top) = (900.0, 26.0, 230.0, 50.0);
    let h = top + row_h * rows.len() as f64 + 40.0;
    let max_x = 4.0;
    let scale = (w - left - 40.0) / max_x;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"10\" y=\"20\" font-size=\"15\">mtproxy-rs vs C: how many times better (median of {} run(s); whisker = spread)</text>\n\
         <text x=\"10\" y=\"38\" fill=\"#555\">{} - {} CPUs - echo floor {:.0} MB/s{}</text>\n",
        r.runs.len(),
        xml_escape(&r.machine.cpu),
        r.machine.cpus,
        r.floor.echo_mb_s,
        if r.self_mode { " - SELF MODE" } else { "" }
    );
    let x1 = left + scale;
    for (i, (sp, hib)) in rows.iter().enumerate() {
        let y = top + row_h * i as f64;
        let (m, lo, hi, label) = bar(sp, *hib, max_x);
        let color = if m >= 1.0 { "#2e7d32" } else { "#c62828" };
        s.push_str(&format!(
            "<text x=\"{:.0}\" y=\"{:.0}\" text-anchor=\"end\">{}</text>\n\
             <rect x=\"{left}\" y=\"{:.0}\" width=\"{:.1}\" height=\"{:.0}\" fill=\"{color}\" opacity=\"0.8\"/>\n\
             <line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{:.0}\" y2=\"{:.0}\" stroke=\"black\"/>\n\
             <text x=\"{:.1}\" y=\"{:.0}\">{}</text>\n",
            left - 8.0,
            y + 16.0,
            xml_escape(&sp.metric),
            y + 4.0,
            m * scale,
            row_h - 8.0,
            left + lo * scale,
            left + hi * scale,
            y + row_h / 2.0,
            y + row_h / 2.0,
            left + m * scale + 6.0,
            y + 16.0,
            xml_escape(&label)
        ));
    }
    s.push_str(&format!(
        "<line x1=\"{x1:.1}\" x2=\"{x1:.1}\" y1=\"{:.0}\" y2=\"{:.0}\" stroke=\"#333\" stroke-dasharray=\"4 3\"/>\n\
         <text x=\"{x1:.1}\" y=\"{:.0}\" text-anchor=\"middle\">1x (parity with C)</text>\n</svg>\n",
        top - 4.0,
        h - 30.0,
        h - 12.0
    ));
    s
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side(echo: f64, conn: f64, p99: f64, rss: f64) -> SideReport {
        let mut s = SideReport::default();
        s.echo.mb_per_s = echo;
        s.conn_rate.per_s = conn;
        s.latency.p99_us = p99;
        s.idle.push(IdleMemory {
            clients: 1000,
            rss_per_client: rss,
            ..IdleMemory::default()
        });
        s
    }

    fn run(c: SideReport, r: SideReport) -> RunReport {
        let ratios = ratios(&c, &r);
        RunReport {
            index: 0,
            first: "candidate".into(),
            loadavg: (0.0, 0.0),
            steal_percent: 0.0,
            candidate: c,
            reference: r,
            deployments: Vec::new(),
            ratios,
        }
    }

    fn deployment_side(p99: f64, echo_per_cpu: f64, conn_per_cpu: f64) -> DeploymentSide {
        let mut d = DeploymentSide::default();
        d.latency_light.p99_us = p99;
        d.latency_half.p99_us = p99 * 2.0;
        d.echo.mb_per_proxy_cpu_s = echo_per_cpu;
        d.conn_rate.per_proxy_cpu_s = conn_per_cpu;
        d
    }

    /// The unpinned deployments get their own ratios, named by deployment, and their own
    /// targets: p99 at both loads, and per-CPU-second efficiency.
    #[test]
    fn deployments_have_their_own_ratios_and_targets() {
        let d = DeploymentRun {
            name: "default".into(),
            candidate: deployment_side(300.0, 160.0, 9000.0),
            reference: deployment_side(200.0, 100.0, 5000.0),
            ..DeploymentRun::default()
        };
        let ratios = deployment_ratios(&[d]);
        let r = |m: &str| ratios.iter().find(|x| x.metric == m).unwrap().ratio;
        assert!((r("default/latency_light_p99_us") - 1.5).abs() < 1e-9);
        assert!((r("default/latency_half_p99_us") - 1.5).abs() < 1e-9);
        assert!((r("default/conn_per_proxy_cpu_s") - 1.8).abs() < 1e-9);
        let mut run0 = run(SideReport::default(), SideReport::default());
        run0.ratios = ratios;
        let t = targets(&spreads(&[run0]), 0.0);
        let met = |name: &str| t.iter().find(|x| x.target == name).map(|x| x.met);
        assert_eq!(met("p99 latency <= C (default, light load)"), Some(false));
        assert_eq!(met("p99 latency <= C (default, half load)"), Some(false));
        assert_eq!(
            met("connections per proxy CPU-second >= 1.5x C (default)"),
            Some(true)
        );
        assert_eq!(
            met("echo per proxy CPU-second >= 1.5x C (default)"),
            Some(true)
        );
        assert_eq!(met("p99 latency <= C (workers2, light load)"), None);
    }

    /// A missed p99 target lists each run's figures beside the host's steal.
    #[test]
    fn a_latency_miss_lists_the_runs_and_the_steal() {
        let d = DeploymentRun {
            name: "workers2".into(),
            candidate: deployment_side(1500.0, 1.0, 1.0),
            reference: deployment_side(1000.0, 1.0, 1.0),
            ..DeploymentRun::default()
        };
        let mut r = run(SideReport::default(), SideReport::default());
        r.steal_percent = 7.5;
        r.ratios = deployment_ratios(std::slice::from_ref(&d));
        r.deployments = vec![d];
        let mut t = targets(&spreads(std::slice::from_ref(&r)), 0.0);
        explain_deployments(&mut t, &[r]);
        let miss = t
            .iter()
            .find(|x| x.target == "p99 latency <= C (workers2, light load)")
            .unwrap();
        assert_eq!(
            miss.why,
            "per run, candidate/C p99 in us (host CPU steal): 1500/1000 (7.5 %); the candidate had the lower p99 in 0 of 1 runs"
        );
        let half = t
            .iter()
            .find(|x| x.target == "p99 latency <= C (workers2, half load)")
            .unwrap();
        assert!(half
            .why
            .starts_with("per run, candidate/C p99 in us (host CPU steal): 3000/2000"));
    }

    /// A missed per-CPU target says where each side's CPU went and what the kernel allows.
    #[test]
    fn a_per_cpu_miss_is_explained_by_the_cpu_split() {
        let side = |user: f64, kernel: f64| {
            let mut d = DeploymentSide::default();
            d.echo.bytes = 100_000_000;
            d.echo.cpu.proxy_cpu_s = user + kernel;
            d.echo.cpu.proxy_kernel_share_percent = kernel / (user + kernel) * 100.0;
            d.echo.mb_per_proxy_cpu_s = 100.0 / (user + kernel);
            d
        };
        let d = DeploymentRun {
            name: "default".into(),
            candidate: side(0.1, 0.3),
            reference: side(0.25, 0.3),
            ..DeploymentRun::default()
        };
        let mut r = run(SideReport::default(), SideReport::default());
        r.ratios = deployment_ratios(std::slice::from_ref(&d));
        r.deployments = vec![d];
        let mut t = targets(&spreads(std::slice::from_ref(&r)), 0.0);
        explain_deployments(&mut t, &[r]);
        let miss = t
            .iter()
            .find(|x| x.target == "echo per proxy CPU-second >= 1.5x C (default)")
            .unwrap();
        assert!(!miss.met);
        assert!(
            miss.why
                .contains("1.00 ms in user space and 3.00 ms in the kernel")
                && miss.why.contains("2.5x lower")
                && miss.why.contains("caps the ratio at 1.83x"),
            "{}",
            miss.why
        );
    }

    #[test]
    fn ratios_spreads_and_targets() {
        let runs = vec![
            run(
                side(600.0, 3000.0, 90.0, 2000.0),
                side(400.0, 1000.0, 100.0, 8000.0),
            ),
            run(
                side(500.0, 3000.0, 120.0, 2000.0),
                side(500.0, 1000.0, 100.0, 8000.0),
            ),
        ];
        let sp = spreads(&runs);
        let echo = sp.iter().find(|s| s.metric == "echo_mb_s").unwrap();
        assert_eq!((echo.min, echo.max, echo.median), (1.0, 1.5, 1.25));
        let t = targets(&sp, 0.7);
        let get = |name: &str| t.iter().find(|x| x.target.starts_with(name)).unwrap();
        assert!(!get("echo throughput >= 1.3x").met);
        assert!((get("echo throughput >= 1.3x").missed_by - 0.05 / 1.3).abs() < 1e-9);
        assert!(get("echo throughput >= 60%").met);
        assert!(get("new connections/s").met);
        assert!(get("RSS per idle client (1000) <= 0.5x").met);
        assert!(get("RSS per idle client (1000) <= 4 KiB").met);
        // p99 ratios 0.9 and 1.2: median 1.05 misses "<= C".
        assert!(!get("p99 latency").met);
    }

    #[test]
    fn a_saturated_load_generator_explains_a_connection_rate_miss() {
        let mut c = side(300.0, 1200.0, 90.0, 2000.0);
        let mut r = side(200.0, 1000.0, 100.0, 8000.0);
        c.conn_rate.cpu.loadgen_percent = 97.0;
        c.conn_rate.per_proxy_cpu_s = 1500.0;
        r.conn_rate.per_proxy_cpu_s = 1000.0;
        c.echo.cpu.proxy_kernel_share_percent = 40.0;
        c.echo.mb_per_proxy_cpu_s = 320.0;
        let runs = vec![run(c, r)];
        let floor = Floor {
            echo_mb_s: 640.0,
            ..Floor::default()
        };
        let mut t = targets(&spreads(&runs), 0.45);
        explain(&mut t, &MissContext::of(&runs, &floor));
        let get = |name: &str| t.iter().find(|x| x.target.starts_with(name)).unwrap();
        let conn = get("new connections/s");
        assert!(!conn.met);
        assert!(conn.why.contains("saturated (97 %"), "{}", conn.why);
        assert!(conn.why.contains("1.50x C"), "{}", conn.why);
        let floor_t = get("echo throughput >= 60%");
        assert!(floor_t.why.contains("40 %") && floor_t.why.contains("0.50 of the floor"));
        assert!(
            floor_t.why.contains("outside the kernel 0.83"),
            "{}",
            floor_t.why
        );
        // What is met carries no excuse.
        assert!(get("RSS per idle client (1000) <= 0.5x").why.is_empty());
        // Without saturation a miss stays unexplained.
        let mut quiet = MissContext::of(&runs, &floor);
        quiet.conn_loadgen_percent = 50.0;
        let mut t2 = targets(&spreads(&runs), 0.45);
        explain(&mut t2, &quiet);
        assert!(t2
            .iter()
            .find(|x| x.target.starts_with("new connections/s"))
            .unwrap()
            .why
            .is_empty());
    }

    #[test]
    fn a_zero_of_ours_against_a_nonzero_c_is_a_full_bar_labelled_with_both() {
        let sp = Spread {
            metric: "idle_cpu_percent".into(),
            candidate_median: 0.0,
            reference_median: 3.8,
            median: 0.0,
            min: 0.0,
            max: 0.0,
        };
        let (m, lo, hi, label) = bar(&sp, false, 4.0);
        assert_eq!((m, lo, hi), (4.0, 4.0, 4.0));
        assert_eq!(label, "ours 0, C 3.80");
        // Both zero (self mode): no claim either way.
        let both = Spread {
            reference_median: 0.0,
            ..sp.clone()
        };
        assert_eq!(bar(&both, false, 4.0).3, "0.00x");
        // Ordinary lower-is-better: reference / candidate.
        let p99 = Spread {
            metric: "latency_p99_us".into(),
            candidate_median: 500.0,
            reference_median: 1000.0,
            median: 0.5,
            min: 0.4,
            max: 1.0,
        };
        let (m, lo, hi, label) = bar(&p99, false, 4.0);
        assert_eq!((m, lo, hi, label.as_str()), (2.0, 1.0, 2.5, "2.00x"));
    }

    /// A report built by hand: fixed values only, so the Markdown is a stable snapshot.
    fn fixed_report() -> Report {
        let mut c = side(300.0, 1200.0, 90.0, 2000.0);
        let mut r = side(200.0, 1000.0, 100.0, 8000.0);
        c.label = "candidate".into();
        c.binary = "target/release/mtproto-proxy".into();
        r.label = "reference".into();
        r.binary = "c/objs/bin/mtproto-proxy".into();
        c.conn_rate.cpu.loadgen_percent = 97.0;
        c.conn_rate.per_proxy_cpu_s = 1500.0;
        r.conn_rate.per_proxy_cpu_s = 1000.0;
        let runs = vec![run(c, r)];
        let floor = Floor {
            ctr_mb_s: 6877.0,
            cbc_encrypt_mb_s: 865.0,
            cbc_decrypt_mb_s: 6746.0,
            echo_mb_s: 627.0,
        };
        let spreads = spreads(&runs);
        let mut targets = targets(&spreads, 0.478);
        explain(&mut targets, &MissContext::of(&runs, &floor));
        let spec = BulkSpec {
            clients: 16,
            requests: 64,
            request_size: 16384,
            answer_size: 16384,
            window: 4,
        };
        Report {
            schema: SCHEMA.into(),
            generated: "2026-01-02T03:04:05Z".into(),
            self_mode: false,
            machine: Machine {
                cpu: "AMD EPYC".into(),
                cpus: 2,
                kernel: "6.1.0".into(),
                memory: 24 << 30,
                aes_ni: true,
                vaes: false,
                nofile: (20_000, 20_000),
                openssl: "OpenSSL 3.0.17".into(),
            },
            floor,
            plan: Plan {
                phases: vec![
                    "echo".into(),
                    "conn".into(),
                    "memory".into(),
                    "latency".into(),
                ],
                startup_trials: 5,
                proxy_cpus: "1".into(),
                loadgen_cpus: "0".into(),
                idle_secs: 10.0,
                idle_clients: vec![1000],
                echo: spec,
                upload: spec,
                download: spec,
                latency_clients: 16,
                latency_rate: 800.0,
                latency_size: 256,
                latency_secs: 10.0,
                conn_concurrency: 128,
                conn_secs: 3.0,
                max_connections: 16_384,
                deployments: vec!["pinned".into()],
                half_clients: 64,
                capacity_requests: 2000,
            },
            runs,
            spreads,
            targets,
        }
    }

    #[test]
    fn markdown_names_the_missed_targets_with_their_reason() {
        let report = fixed_report();
        let md = report.to_markdown();
        assert!(md.starts_with("# Bench: "), "{md}");
        assert!(md.contains("load generator was saturated"), "{md}");
        insta::assert_snapshot!("bench", md);
    }

    #[test]
    fn markdown_of_self_mode_says_no_reference() {
        let mut report = fixed_report();
        report.self_mode = true;
        let md = report.to_markdown();
        assert!(md.contains(" — no reference\n"), "{md}");
        assert!(md.contains("none — the candidate against itself"), "{md}");
    }

    #[test]
    fn floor_and_openssl_parsing() {
        // The figures: CTR 7.5, CBC enc 1.3, CBC dec 7.8 GB/s -> about 0.87 GB/s.
        let f = Floor::echo_of(7500.0, 1300.0, 7800.0);
        assert!((f - 860.0).abs() < 10.0, "{f}");
        assert_eq!(Floor::echo_of(0.0, 1.0, 1.0), 0.0);
        let out = "type          16384 bytes\nAES-256-CTR    1504739.33k\n";
        assert!((parse_openssl_speed(out) - 1504.73933).abs() < 1e-6);
        assert_eq!(parse_openssl_speed("garbage"), 0.0);
    }
}
