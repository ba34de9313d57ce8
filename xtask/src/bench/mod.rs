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
//!
//! This module holds the subcommand: its arguments and the orchestration of a run. The
//! parts have their own files: [`report`] (the report's types, i.e. its JSON schema),
//! [`phases`] (measuring one side in each phase and deployment), [`host`] (the machine:
//! CPU placement, `/proc` figures, the crypto floor), [`ratios`](mod@ratios) and
//! [`goals`](mod@goals) (the figures compared and judged), [`why`] (the reasons for a
//! missed goal) and [`render`] (the text summary, Markdown and SVG). None of them names
//! this module.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{bail, Context};
use parity::load::{self, BulkSpec};

mod goals;
mod host;
mod phases;
mod ratios;
mod render;
mod report;
mod why;

#[cfg(test)]
mod fixtures;

use goals::goals;
use host::{cpu_steal, crypto_floor, loadavg, machine, pin_self};
use phases::{run_deployment, run_side};
use ratios::{deployment_ratios, median, ratios, spreads};
use render::{render_svg, summary};
use report::{Plan, Report, RunReport, SideReport, DEPLOYMENTS, PHASES, SCHEMA};
use why::{explain, explain_deployments, MissContext};

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

impl Bench {
    /// The phase sizes of one run for these arguments.
    fn plan(&self, proxy_cpus: String, loadgen_cpus: String) -> Plan {
        let q = self.quick;
        let mib = if q { 16 } else { self.bulk_mib.max(1) };
        // 16 clients over the proxies' 4 ME links: every link carries traffic.
        let clients = 16;
        let per_client = |size: usize| (mib << 20) / clients / size;
        Plan {
            phases: self.phases.clone(),
            startup_trials: self.startup_trials.max(1),
            proxy_cpus,
            loadgen_cpus,
            idle_secs: if q { 1.0 } else { self.idle_secs as f64 },
            idle_clients: if q {
                vec![100, 300]
            } else {
                self.idle_clients.clone()
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
            deployments: self.deployments.clone(),
            half_clients: 64,
            capacity_requests: if q { 200 } else { 2000 },
        }
    }

    /// Runs the benchmark and writes the report.
    ///
    /// # Errors
    /// Build, spawn or measurement failures.
    pub fn run(self) -> anyhow::Result<()> {
        let root = crate::workspace::project_root();
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
            None => crate::workspace::build_candidate(&root)?,
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
        let plan = self.plan(proxy_cpu.to_string(), loadgen_cpus.clone());
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
        let mut goals = goals(&spreads, median(fractions));
        explain(&mut goals, &MissContext::of(&runs, &floor));
        explain_deployments(&mut goals, &runs);
        let report = Report {
            schema: SCHEMA.into(),
            generated: mtproxy::clock::rfc3339(SystemTime::now()),
            self_mode,
            machine,
            floor,
            plan,
            runs,
            spreads,
            goals,
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
