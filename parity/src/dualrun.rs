//! The dual-run orchestration: resolve the reference, spawn reference, candidate (and a
//! second reference copy for the noise baseline) at the same time, run the seeded workload's
//! phases and probes through a [`Driver`], compare, write the report, return it.
//!
//! The [`Driver`] is the FakeMe + client simulator; it is implemented on top of the protocol
//! core (not here). Without a driver, [`run`] still performs the lifecycle part (start-up,
//! `/stats`, SIGTERM shutdown), marks every traffic comparison as not run and fails the verdict
//! with a clear reason: nothing pretends to have sent traffic.

use crate::compare::client_stream::compare_client_streams;
use crate::compare::finding::{Comparison, Difference};
use crate::compare::me_stream::compare_me_streams;
use crate::compare::probes::compare_probes;
use crate::compare::slo::{
    compare_lifecycle, compare_slos, NoiseBaseline, ThresholdConfig, Thresholds,
};
use crate::compare::stats::compare_stats_keys;
use crate::divergences::DivergenceList;
use crate::metrics::{round3, LifecycleMetrics, PhaseMetrics};
use crate::process::{free_port, probe_version, sha256_file, ProxyProcess, ReadyHook, Signal};
use crate::report::{
    BinaryInfo, BinaryKind, HostInfo, MatchedDivergence, PhaseReport, Report, Verdict,
    SCHEMA_VERSION,
};
use crate::runtime::{Availability, Runtime};
use crate::transcript::{ClientRecord, MeRecord, ProbeRecord, ReactionClass, Side};
use crate::workload::{Deployment, Phase, Probe, Workload, WorkloadSpec};
use anyhow::Context;
use std::collections::BTreeMap;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

/// Environment variable naming the reference binary when `--reference` is not given.
pub const REFERENCE_ENV: &str = "MTPROXY_C_BIN";

/// A boxed, sendable future (keeps [`Driver`] object-safe).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Progress callback (the xtask renders it on a terminal).
pub type Progress = Arc<dyn Fn(&str) + Send + Sync>;

/// How one proxy instance is configured (identical for all sides of a group).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceConfig {
    /// Client secrets (`-S`).
    pub secrets: Vec<[u8; 16]>,
    /// Proxy tag (`-P`).
    pub proxy_tag: Option<[u8; 16]>,
    /// Workers (`-M`).
    pub workers: u32,
    /// How the instances are started ([`Deployment::Workers`] overrides `workers`).
    pub deployment: Deployment,
    /// Group name (`canary+load`, `untagged`, `probes`).
    pub group: String,
}

/// `-M` of the [`Deployment::Workers`] instances, as operators commonly run them.
pub const DEPLOYED_WORKERS: u32 = 2;

/// What a driver prepared for one side before the proxy starts.
pub struct SidePrep {
    /// ME targets to write into `proxy-multi.conf` (the FakeMe's listening addresses).
    pub me_targets: Vec<(i16, SocketAddr)>,
    /// Resolves when the ME side is up (e.g. N handshakes completed).
    pub ready: Option<ReadyHook>,
    /// Extra proxy arguments (e.g. `-D` for fake-TLS).
    pub extra_args: Vec<String>,
    /// The proxy-secret the FakeMe uses (the proxy must get the same file); `None` lets
    /// the process fixture generate one.
    pub proxy_secret: Option<Vec<u8>>,
}

/// What one side produced in one phase.
#[derive(Debug, Clone, Default)]
pub struct PhaseResult {
    /// Measurements.
    pub metrics: PhaseMetrics,
    /// Every PROXY_REQ the side's FakeMe recorded.
    pub me_records: Vec<MeRecord>,
    /// What every client session received.
    pub client_records: Vec<ClientRecord>,
}

/// The traffic side of the harness: FakeMe + client simulator, one logical instance per
/// [`Side`]. Methods may be called concurrently for different sides. FakeMe answers must be a
/// pure function of the request (so both sides' clients can be compared byte for byte).
pub trait Driver: Send + Sync {
    /// Name for the report.
    fn name(&self) -> &str;
    /// Start this side's FakeMe for an instance group; return its targets and readiness hook.
    fn prepare<'a>(
        &'a self,
        side: Side,
        config: &'a InstanceConfig,
    ) -> BoxFuture<'a, anyhow::Result<SidePrep>>;
    /// Run one phase's sessions against `target`.
    fn run_phase<'a>(
        &'a self,
        side: Side,
        phase: &'a Phase,
        config: &'a InstanceConfig,
        target: &'a ProxyProcess,
    ) -> BoxFuture<'a, anyhow::Result<PhaseResult>>;
    /// Send each probe and classify the reaction (one record per probe, same order).
    fn run_probes<'a>(
        &'a self,
        side: Side,
        probes: &'a [Probe],
        config: &'a InstanceConfig,
        target: &'a ProxyProcess,
    ) -> BoxFuture<'a, anyhow::Result<Vec<ProbeRecord>>>;
}

/// Options for [`run`].
#[derive(Clone)]
pub struct DualrunOptions {
    /// Reference binary; `None` → env [`REFERENCE_ENV`] (if `reference_from_env`) → self mode.
    pub reference: Option<PathBuf>,
    /// Read [`REFERENCE_ENV`] when `reference` is `None` (default true).
    pub reference_from_env: bool,
    /// Candidate binary.
    pub candidate: PathBuf,
    /// Workload seed.
    pub seed: u64,
    /// Load-phase requests (default 10 000).
    pub requests: Option<usize>,
    /// Full workload spec (overrides `seed`/`requests` when set).
    pub workload: Option<WorkloadSpec>,
    /// Where the report goes (`artifacts/dualrun`).
    pub out_dir: PathBuf,
    /// Local or docker.
    pub runtime: Runtime,
    /// Run a second reference copy to calibrate thresholds (default true).
    pub noise_baseline: bool,
    /// Send the crash probe to the reference too.
    pub test_reference_crash: bool,
    /// Divergence file (default `parity/divergences.json`).
    pub divergences: Option<PathBuf>,
    /// Differences listed per comparison.
    pub max_differences: usize,
    /// Spawn → ready bound.
    pub ready_timeout: Duration,
    /// Stop signal → SIGKILL grace.
    pub stop_grace: Duration,
    /// Threshold knobs.
    pub thresholds: ThresholdConfig,
    /// Workers (`-M`).
    pub workers: u32,
    /// The traffic driver; `None` → lifecycle-only run with a failing verdict.
    pub driver: Option<Arc<dyn Driver>>,
    /// Progress callback.
    pub progress: Option<Progress>,
}

impl DualrunOptions {
    /// Defaults for this candidate.
    pub fn new(candidate: impl Into<PathBuf>) -> Self {
        DualrunOptions {
            reference: None,
            reference_from_env: true,
            candidate: candidate.into(),
            seed: WorkloadSpec::default().seed,
            requests: None,
            workload: None,
            out_dir: PathBuf::from("artifacts/dualrun"),
            runtime: Runtime::Local,
            noise_baseline: true,
            test_reference_crash: false,
            divergences: None,
            max_differences: 20,
            ready_timeout: Duration::from_secs(20),
            stop_grace: Duration::from_secs(10),
            thresholds: ThresholdConfig::default(),
            workers: 0,
            driver: None,
            progress: None,
        }
    }
    fn say(&self, msg: &str) {
        if let Some(p) = &self.progress {
            p(msg);
        }
    }
    fn spec(&self) -> WorkloadSpec {
        let mut spec = self
            .workload
            .clone()
            .unwrap_or_else(|| WorkloadSpec::new(self.seed));
        if self.workload.is_none() {
            if let Some(n) = self.requests {
                spec = spec.load_requests(n);
            }
        }
        spec.test_reference_crash(self.test_reference_crash)
    }
}

struct Resolved {
    reference: PathBuf,
    reference_image: Option<String>,
    candidate_image: Option<String>,
    self_mode: bool,
}

/// Run the dual-run and write the report into `opts.out_dir`.
pub async fn run(opts: DualrunOptions) -> anyhow::Result<Report> {
    let divergences = match &opts.divergences {
        Some(p) => DivergenceList::load(p)?,
        None => DivergenceList::load_default()?,
    };
    let spec = opts.spec();
    let mut workload = Workload::generate(&spec);
    let mut warnings = Vec::new();
    if !site_port_available() {
        let before = workload.phases.len() + workload.probes.len();
        workload
            .phases
            .retain(|p| p.deployment != Deployment::FakeTls);
        workload
            .probes
            .retain(|p| p.deployment != Deployment::FakeTls);
        if workload.phases.len() + workload.probes.len() < before {
            warnings.push(
                "fake_tls phase and probe skipped: the stand-in site behind -D listens on \
                 port 443, which needs root"
                    .into(),
            );
        }
    }
    let mut reasons = Vec::new();

    let resolved = resolve(&opts, &mut warnings);
    let mut report = Report {
        schema_version: SCHEMA_VERSION.into(),
        generated_at: mtproxy::clock::rfc3339(std::time::SystemTime::now()),
        host: HostInfo::detect(),
        runtime: opts.runtime.name().into(),
        platform: match &opts.runtime {
            Runtime::Docker(d) => Some(d.platform.clone()),
            Runtime::Local => None,
        },
        engine: match &opts.runtime {
            Runtime::Docker(_) => crate::image::engine().ok(),
            Runtime::Local => None,
        },
        reference: binary_info(&opts, &resolved, Side::Reference).await,
        candidate: binary_info(&opts, &resolved, Side::Candidate).await,
        seed: spec.seed,
        requests: workload.request_count(),
        phases: Vec::new(),
        lifecycle: BTreeMap::new(),
        comparisons: Vec::new(),
        thresholds: Thresholds {
            config: Some(opts.thresholds.clone()),
            entries: Vec::new(),
        },
        noise_baseline: NoiseBaseline::default(),
        divergences: Vec::new(),
        warnings: Vec::new(),
        verdict: Verdict {
            pass: false,
            skipped: false,
            reasons: Vec::new(),
        },
    };

    if let Availability::Skip(why) = opts.runtime.check().await {
        opts.say(&why);
        report.verdict = Verdict {
            pass: false,
            skipped: true,
            reasons: vec![why],
        };
        report.warnings = warnings;
        report.write(&opts.out_dir)?;
        return Ok(report);
    }

    let mut sides = vec![Side::Reference, Side::Candidate];
    if opts.noise_baseline {
        sides.push(Side::Baseline);
    }
    let secret = derive_secret(spec.seed);
    let mut results: BTreeMap<(String, Side), PhaseResult> = BTreeMap::new();
    let mut probe_results: BTreeMap<Side, Vec<ProbeRecord>> = BTreeMap::new();
    let mut stats: BTreeMap<Side, BTreeMap<String, String>> = BTreeMap::new();
    let mut lifecycle: BTreeMap<Side, LifecycleMetrics> = BTreeMap::new();
    let mut canary_failed = false;
    let mut comparisons_extra: Vec<Comparison> = Vec::new();

    // Instance groups: consecutive phases with the same proxy tag, then a fresh group for the
    // probes (so a probe that kills a process cannot spoil the lifecycle measurements).
    let mut groups: Vec<(InstanceConfig, Vec<&Phase>)> = Vec::new();
    for phase in &workload.phases {
        match groups.last_mut() {
            Some((cfg, phases))
                if cfg.proxy_tag == phase.proxy_tag && cfg.deployment == phase.deployment =>
            {
                cfg.group.push('+');
                cfg.group.push_str(&phase.name);
                phases.push(phase);
            }
            _ => groups.push((
                InstanceConfig {
                    secrets: vec![secret],
                    proxy_tag: phase.proxy_tag,
                    workers: opts.workers,
                    deployment: phase.deployment,
                    group: phase.name.clone(),
                },
                vec![phase],
            )),
        }
    }
    let driver = opts.driver.clone();
    if driver.is_none() {
        reasons.push(
            "no traffic driver: the FakeMe/client simulator is not integrated yet, so phases, \
             request/response comparisons and probes did not run"
                .to_string(),
        );
        groups.truncate(1);
    }
    // One probe group per deployment the probes need (plain first).
    let mut probe_deployments: Vec<Deployment> =
        workload.probes.iter().map(|p| p.deployment).collect();
    probe_deployments.sort();
    probe_deployments.dedup();
    let probe_groups: Vec<InstanceConfig> = probe_deployments
        .into_iter()
        .map(|deployment| InstanceConfig {
            secrets: vec![secret],
            proxy_tag: None,
            workers: opts.workers,
            deployment,
            group: match deployment {
                Deployment::Single => "probes".into(),
                d => format!("probes-{}", d.name()),
            },
        })
        .collect();

    for (gi, (cfg, phases)) in groups.iter().enumerate() {
        opts.say(&format!(
            "group {}: starting {} instance(s)",
            cfg.group,
            sides.len()
        ));
        let procs = match start_group(&opts, &resolved, driver.as_deref(), cfg, &sides).await {
            Ok(p) => p,
            Err(e) => {
                reasons.push(format!("group {}: {e:#}", cfg.group));
                break;
            }
        };
        if gi == 0 {
            for (side, p) in &procs {
                lifecycle.entry(*side).or_default().startup_ms =
                    p.startup_time().map(|d| round3(d.as_secs_f64() * 1e3));
            }
        }
        if let Some(driver) = &driver {
            for phase in phases {
                if canary_failed {
                    break;
                }
                opts.say(&format!(
                    "phase {}: {} sessions, {} requests per side",
                    phase.name,
                    phase.sessions.len(),
                    phase.request_count()
                ));
                let futs: Vec<BoxFuture<'_, anyhow::Result<PhaseResult>>> = procs
                    .iter()
                    .map(|(side, p)| driver.run_phase(*side, phase, cfg, p))
                    .collect();
                let outs = join_all(futs).await;
                for ((side, _), out) in procs.iter().zip(outs) {
                    match out {
                        Ok(r) => {
                            results.insert((phase.name.clone(), *side), r);
                        }
                        Err(e) => {
                            reasons.push(format!("phase {} {}: {e:#}", phase.name, side.name()))
                        }
                    }
                }
                if phase.kind == crate::workload::PhaseKind::Canary {
                    let (r, c) = (
                        results.get(&(phase.name.clone(), Side::Reference)),
                        results.get(&(phase.name.clone(), Side::Candidate)),
                    );
                    if let (Some(r), Some(c)) = (r, c) {
                        let mut me = compare_me_streams(phase, &r.me_records, &c.me_records);
                        divergences.apply(&mut me, 0);
                        let mut cl =
                            compare_client_streams(phase, &r.client_records, &c.client_records);
                        divergences.apply(&mut cl, 0);
                        if !me.pass || !cl.pass {
                            canary_failed = true;
                            warnings
                                .push("canary phase differed: later phases were not run".into());
                        }
                    }
                }
            }
        }
        if cfg.deployment == Deployment::Workers {
            comparisons_extra.push(check_worker_stats(cfg, &procs).await);
            comparisons_extra.push(check_worker_logs(cfg, &procs).await);
        }
        if gi == 0 {
            for (side, p) in &procs {
                match p.stats().await {
                    Ok(s) => {
                        stats.insert(*side, s);
                    }
                    Err(e) => warnings.push(format!("{}: /stats failed: {e:#}", side.name())),
                }
            }
        }
        let outs = join_all(
            procs
                .iter()
                .map(
                    |(_, p)| -> BoxFuture<'_, anyhow::Result<crate::process::StopOutcome>> {
                        Box::pin(p.stop_with_grace(Signal::SIGTERM, opts.stop_grace))
                    },
                )
                .collect(),
        )
        .await;
        for ((side, p), out) in procs.iter().zip(outs) {
            match out {
                Ok(o) if gi == 0 => {
                    let l = lifecycle.entry(*side).or_default();
                    l.shutdown_ms =
                        (!o.already_exited).then(|| round3(o.elapsed.as_secs_f64() * 1e3));
                    l.exit = Some(if o.killed {
                        format!("{} (after SIGKILL)", o.class())
                    } else {
                        o.class()
                    });
                }
                Ok(_) => {}
                Err(e) => reasons.push(format!("{} stop: {e:#}\n{}", side.name(), p.log_tail(10))),
            }
        }
    }

    if let Some(driver) = &driver {
        for probe_group in probe_groups.iter().filter(|_| !canary_failed) {
            let probes_here: Vec<&Probe> = workload
                .probes
                .iter()
                .filter(|p| p.deployment == probe_group.deployment)
                .collect();
            opts.say(&format!(
                "{}: {} probe(s)",
                probe_group.group,
                probes_here.len()
            ));
            match start_group(
                &opts,
                &resolved,
                Some(driver.as_ref()),
                probe_group,
                &sides[..2],
            )
            .await
            {
                Ok(procs) => {
                    for (side, p) in &procs {
                        let probes: Vec<Probe> = probes_here
                            .iter()
                            .filter(|pr| *side == Side::Candidate || pr.send_to_reference)
                            .map(|pr| (*pr).clone())
                            .collect();
                        match driver.run_probes(*side, &probes, probe_group, p).await {
                            Ok(mut recs) => {
                                for pr in &probes_here {
                                    if !recs.iter().any(|r| r.class == pr.class.name()) {
                                        recs.push(ProbeRecord {
                                            class: pr.class.name().into(),
                                            reaction: ReactionClass::NotRun,
                                            detail: "not sent to this side".into(),
                                        });
                                    }
                                }
                                probe_results.entry(*side).or_default().extend(recs);
                            }
                            Err(e) => reasons.push(format!(
                                "{} {}: {e:#}",
                                probe_group.group,
                                side.name()
                            )),
                        }
                    }
                    for (_, p) in &procs {
                        let _ = p.stop_with_grace(Signal::SIGTERM, opts.stop_grace).await;
                    }
                }
                Err(e) => reasons.push(format!("{}: {e:#}", probe_group.group)),
            }
        }
    }

    // Noise baseline.
    let mut baseline = NoiseBaseline::default();
    if opts.noise_baseline {
        for phase in &workload.phases {
            let key = |s| (phase.name.clone(), s);
            if let (Some(a), Some(b)) = (
                results.get(&key(Side::Reference)),
                results.get(&key(Side::Baseline)),
            ) {
                baseline.measured = true;
                baseline.phases.insert(
                    phase.name.clone(),
                    NoiseBaseline::phase_spread(&a.metrics, &b.metrics),
                );
            }
        }
        if let (Some(a), Some(b)) = (
            lifecycle.get(&Side::Reference),
            lifecycle.get(&Side::Baseline),
        ) {
            baseline.measured = true;
            baseline.lifecycle(a, b);
        }
    } else {
        warnings.push("no noise baseline: thresholds use their absolute floors".into());
    }

    // Comparisons.
    let mut comparisons = Vec::new();
    let mut thresholds = report.thresholds.clone();
    for phase in &workload.phases {
        let r = results.get(&(phase.name.clone(), Side::Reference));
        let c = results.get(&(phase.name.clone(), Side::Candidate));
        let p = Some(phase.name.as_str());
        match (r, c) {
            (Some(r), Some(c)) => {
                comparisons.push(compare_me_streams(phase, &r.me_records, &c.me_records));
                comparisons.push(compare_client_streams(
                    phase,
                    &r.client_records,
                    &c.client_records,
                ));
                comparisons.push(compare_slos(
                    &phase.name,
                    &r.metrics,
                    &c.metrics,
                    &opts.thresholds,
                    &baseline,
                    &mut thresholds,
                ));
            }
            _ => {
                let why = if driver.is_none() {
                    "no traffic driver"
                } else if canary_failed {
                    "canary failed"
                } else {
                    "a side produced no result"
                };
                for kind in ["me_stream", "client_stream", "slo"] {
                    comparisons.push(Comparison::skipped(kind, p, why));
                }
            }
        }
        let mut metrics = BTreeMap::new();
        for side in &sides {
            if let Some(r) = results.get(&(phase.name.clone(), *side)) {
                metrics.insert(side.name().to_string(), r.metrics.clone());
            }
        }
        report.phases.push(PhaseReport {
            name: phase.name.clone(),
            sessions: phase.sessions.len(),
            requests: phase.request_count(),
            tagged: phase.proxy_tag.is_some(),
            deployment: phase.deployment.name().into(),
            metrics,
        });
    }
    match (
        probe_results.get(&Side::Reference),
        probe_results.get(&Side::Candidate),
    ) {
        (Some(r), Some(c)) => comparisons.push(compare_probes(&workload.probes, r, c)),
        _ => comparisons.push(Comparison::skipped(
            "probe",
            None,
            if driver.is_none() {
                "no traffic driver"
            } else {
                "probes did not run"
            },
        )),
    }
    comparisons.append(&mut comparisons_extra);
    match (stats.get(&Side::Reference), stats.get(&Side::Candidate)) {
        (Some(r), Some(c)) => comparisons.push(compare_stats_keys(r, c)),
        _ => comparisons.push(Comparison::skipped(
            "stats",
            None,
            "/stats not read from both sides",
        )),
    }
    match (
        lifecycle.get(&Side::Reference),
        lifecycle.get(&Side::Candidate),
    ) {
        (Some(r), Some(c)) => comparisons.push(compare_lifecycle(
            r,
            c,
            &opts.thresholds,
            &baseline,
            &mut thresholds,
        )),
        _ => comparisons.push(Comparison::skipped(
            "lifecycle",
            None,
            "processes did not start",
        )),
    }

    // Known divergences.
    let mut matched: BTreeMap<String, MatchedDivergence> = BTreeMap::new();
    for c in &mut comparisons {
        for (id, n) in divergences.apply(c, opts.max_differences) {
            let Some(d) = divergences.get(&id) else {
                continue;
            };
            let m = matched
                .entry(id.clone())
                .or_insert_with(|| MatchedDivergence {
                    id: id.clone(),
                    title: d.title.clone(),
                    reason: d.reason.clone(),
                    comparisons: Vec::new(),
                    occurrences: 0,
                });
            m.occurrences += n;
            m.comparisons.push(c.name.clone());
        }
    }

    report.lifecycle = lifecycle
        .into_iter()
        .map(|(s, l)| (s.name().to_string(), l))
        .collect();
    report.comparisons = comparisons;
    report.thresholds = thresholds;
    report.noise_baseline = baseline;
    report.divergences = matched.into_values().collect();
    report.warnings = warnings;
    report.decide(reasons);
    report.generated_at = mtproxy::clock::rfc3339(std::time::SystemTime::now());
    report.write(&opts.out_dir)?;
    opts.say(if report.verdict.pass {
        "verdict: PASS"
    } else {
        "verdict: FAIL"
    });
    Ok(report)
}

fn resolve(opts: &DualrunOptions, warnings: &mut Vec<String>) -> Resolved {
    let (reference_image, candidate_image) = match &opts.runtime {
        Runtime::Docker(d) => (d.reference_image.clone(), Some(d.candidate_image.clone())),
        Runtime::Local => (None, None),
    };
    let env = opts
        .reference_from_env
        .then(|| std::env::var_os(REFERENCE_ENV))
        .flatten()
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    let reference = opts.reference.clone().or(env);
    let self_mode = match &opts.runtime {
        Runtime::Docker(_) => reference_image.is_none(),
        Runtime::Local => reference.is_none(),
    };
    if self_mode {
        warnings.push("no reference: candidate compared against itself".into());
    }
    Resolved {
        reference: reference.unwrap_or_else(|| opts.candidate.clone()),
        reference_image: reference_image.or_else(|| candidate_image.clone()),
        candidate_image,
        self_mode,
    }
}

async fn binary_info(opts: &DualrunOptions, r: &Resolved, side: Side) -> BinaryInfo {
    let (path, image) = match side {
        Side::Candidate => (opts.candidate.clone(), r.candidate_image.clone()),
        _ => (r.reference.clone(), r.reference_image.clone()),
    };
    let kind = match side {
        Side::Candidate => BinaryKind::Rust,
        _ if r.self_mode => BinaryKind::SelfCopy,
        _ => BinaryKind::C,
    };
    match image {
        Some(image) => BinaryInfo {
            sha256: Runtime::image_id(&image).await,
            path: image,
            version: None,
            kind,
        },
        None => BinaryInfo {
            version: probe_version(&path).await,
            sha256: sha256_file(&path).await.ok(),
            path: path.display().to_string(),
            kind,
        },
    }
}

async fn start_group(
    opts: &DualrunOptions,
    r: &Resolved,
    driver: Option<&dyn Driver>,
    cfg: &InstanceConfig,
    sides: &[Side],
) -> anyhow::Result<Vec<(Side, ProxyProcess)>> {
    let mut procs = Vec::new();
    let mut hooks = Vec::new();
    for &side in sides {
        let prep = match driver {
            Some(d) => d
                .prepare(side, cfg)
                .await
                .with_context(|| format!("{} driver prepare", side.name()))?,
            None => SidePrep {
                // No FakeMe: point every dc at a closed loopback port; the proxy keeps retrying.
                me_targets: {
                    let port = free_port()?;
                    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
                    (1..=5).flat_map(|dc| [(dc, addr), (-dc, addr)]).collect()
                },
                ready: None,
                extra_args: Vec::new(),
                proxy_secret: None,
            },
        };
        let (binary, image) = match side {
            Side::Candidate => (opts.candidate.clone(), r.candidate_image.clone()),
            _ => (r.reference.clone(), r.reference_image.clone()),
        };
        let binary = match (&opts.runtime, &image) {
            (Runtime::Docker(d), Some(_)) => PathBuf::from(&d.binary),
            _ => binary,
        };
        let mut extra_args = prep.extra_args;
        let workers = match cfg.deployment {
            Deployment::Workers => {
                let log = worker_log_path(opts, cfg, side)?;
                extra_args.extend(["-l".to_string(), log.display().to_string()]);
                DEPLOYED_WORKERS
            }
            _ => cfg.workers,
        };
        // `-u nobody` is the fixture's default, as in the operators' command line.
        let builder = ProxyProcess::builder(binary)
            .label(side.name())
            .secrets(&cfg.secrets)
            .maybe_proxy_tag(cfg.proxy_tag)
            .workers(workers)
            .me_targets(&prep.me_targets)
            .extra_args(extra_args);
        let builder = match prep.proxy_secret {
            Some(secret) => builder.proxy_secret(secret),
            None => builder,
        };
        let builder = opts.runtime.apply(builder, image.as_deref());
        let p = builder
            .spawn()
            .await
            .with_context(|| format!("spawn {}", side.name()))?;
        procs.push((side, p));
        hooks.push(prep.ready);
    }
    let futs: Vec<BoxFuture<'_, anyhow::Result<Duration>>> = procs
        .iter()
        .zip(hooks)
        .map(
            |((_, p), hook)| -> BoxFuture<'_, anyhow::Result<Duration>> {
                Box::pin(p.wait_ready_with(opts.ready_timeout, hook))
            },
        )
        .collect();
    for ((side, _), r) in procs.iter().zip(join_all(futs).await) {
        r.with_context(|| format!("{} not ready", side.name()))?;
    }
    Ok(procs)
}

/// Whether the fake-TLS stand-in site can listen on port 443 here (root may bind it).
fn site_port_available() -> bool {
    nix::unistd::Uid::effective().is_root()
}

/// The `-l FILE` of one side's [`Deployment::Workers`] instance: a fresh file under
/// `out_dir/logs/` (a directory of the user running the harness; the proxies' workers
/// run as `nobody`), named with this harness process's id so that two runs at once (a
/// dual-run beside a gate) never move or read each other's files.
fn worker_log_path(
    opts: &DualrunOptions,
    cfg: &InstanceConfig,
    side: Side,
) -> anyhow::Result<PathBuf> {
    let dir = opts.out_dir.join("logs");
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let path = dir.join(format!(
        "{}-{}-{}.log",
        cfg.group,
        side.name(),
        std::process::id()
    ));
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("remove {}", path.display()))
        }
        _ => {}
    }
    Ok(path)
}

/// How many of a process tree's processes wrote lines (`[pid]…`) into `file`, as
/// `all`, `none` or `k of n`.
fn log_coverage(file: &std::path::Path, pids: &[u32]) -> String {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let wrote = pids
        .iter()
        .filter(|p| {
            let tag = format!("[{p}]");
            text.lines().any(|l| l.starts_with(&tag))
        })
        .count();
    match wrote {
        0 => "none".into(),
        k if k == pids.len() => "all".into(),
        k => format!("{k} of {}", pids.len()),
    }
}

/// The `workers` deployment's log check: which processes (master and workers) wrote to
/// `-l FILE`, then again after the file is moved away and SIGUSR1 is sent (logrotate).
async fn check_worker_logs(cfg: &InstanceConfig, procs: &[(Side, ProxyProcess)]) -> Comparison {
    const KIND: &str = "lifecycle";
    let mut values: BTreeMap<Side, String> = BTreeMap::new();
    for (side, p) in procs {
        let Some(file) = p
            .args()
            .iter()
            .position(|a| a == "-l")
            .and_then(|i| p.args().get(i + 1))
            .map(PathBuf::from)
        else {
            continue;
        };
        let mut pids = vec![p.pid()];
        pids.extend(crate::process::child_pids(p.pid()));
        let before = log_coverage(&file, &pids);
        let _ = std::fs::rename(&file, file.with_extension("log.1"));
        let after = match p.signal(Signal::SIGUSR1) {
            Ok(()) => {
                // Bounded: every process should have written its "log reopened" line.
                let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
                loop {
                    let c = log_coverage(&file, &pids);
                    if c == "all" || tokio::time::Instant::now() >= deadline {
                        break c;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            Err(e) => format!("SIGUSR1 failed: {e}"),
        };
        values.insert(
            *side,
            format!(
                "{before}; after SIGUSR1: {after} ({} processes)",
                pids.len()
            ),
        );
    }
    let (Some(r), Some(c)) = (values.get(&Side::Reference), values.get(&Side::Candidate)) else {
        return Comparison::skipped(KIND, Some(&cfg.group), "log files not checked");
    };
    let diffs = if r == c {
        Vec::new()
    } else {
        vec![Difference::new(
            KIND,
            Some(&cfg.group),
            "workers_log_file",
            "log_file",
            r.clone(),
            c.clone(),
        )]
    };
    Comparison::new(KIND, Some(&cfg.group), 1, diffs).details(
        "processes (master and workers) that wrote to -l FILE, then to a new FILE after a \
         rotation and SIGUSR1",
    )
}

/// `/stats` keys whose values show how a `-M` instance is put together; compared in the
/// `workers` deployment (the other values depend on timing).
const WORKER_STATS_KEYS: [&str; 4] = [
    "workers",
    "ready_outbound_connections",
    "active_outbound_connections",
    "total_ready_targets",
];

/// The `workers` deployment's `/stats`: every key of the reference exists on the candidate,
/// and the keys that show the process structure have the same values.
async fn check_worker_stats(cfg: &InstanceConfig, procs: &[(Side, ProxyProcess)]) -> Comparison {
    let mut stats = BTreeMap::new();
    for (side, p) in procs {
        if let Ok(s) = p.stats().await {
            stats.insert(*side, s);
        }
    }
    let (Some(r), Some(c)) = (stats.get(&Side::Reference), stats.get(&Side::Candidate)) else {
        return Comparison::skipped("stats", Some(&cfg.group), "/stats not read from both sides");
    };
    let keys = compare_stats_keys(r, c);
    let mut diffs = keys.differences;
    for k in WORKER_STATS_KEYS {
        let (a, b) = (r.get(k), c.get(k));
        if a != b {
            diffs.push(Difference::new(
                "stats",
                Some(&cfg.group),
                k,
                "value",
                a.map_or("missing", String::as_str),
                b.map_or("missing", String::as_str),
            ));
        }
    }
    Comparison::new(
        "stats",
        Some(&cfg.group),
        (r.len() + WORKER_STATS_KEYS.len()) as u64,
        diffs,
    )
    .details(
        "every /stats key of the reference exists on the candidate; the -M structure's \
         values (workers, middle-end links, ready targets) are equal",
    )
}

/// The client secret both sides run with, derived from the seed.
pub fn derive_secret(seed: u64) -> [u8; 16] {
    use rand::{RngCore, SeedableRng};
    let mut s = [0u8; 16];
    rand::rngs::StdRng::seed_from_u64(seed ^ 0x5345_4352_4554).fill_bytes(&mut s);
    s
}

/// Drive several futures on the current task until all complete; results in input order.
pub async fn join_all<T>(futs: Vec<BoxFuture<'_, T>>) -> Vec<T> {
    let mut futs: Vec<Option<BoxFuture<'_, T>>> = futs.into_iter().map(Some).collect();
    let mut out: Vec<Option<T>> = futs.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (slot, res) in futs.iter_mut().zip(out.iter_mut()) {
            if let Some(f) = slot {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => {
                        *res = Some(v);
                        *slot = None;
                    }
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Recorder;
    use crate::transcript::{ClientEvent, SessionEnd};
    use crate::workload::locate;

    fn stand_in() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/fake_proxy.py")
    }

    /// Test-only driver: synthesises transcripts from the workload (no real traffic) and
    /// plants one deliberate divergence on the candidate: the flags of the first request of
    /// the load phase's second session.
    struct PlantedDivergence {
        planted: std::sync::Mutex<Option<(u32, u32)>>,
    }

    impl Driver for PlantedDivergence {
        fn name(&self) -> &str {
            "planted-divergence (test only)"
        }
        fn prepare<'a>(
            &'a self,
            _side: Side,
            _c: &'a InstanceConfig,
        ) -> BoxFuture<'a, anyhow::Result<SidePrep>> {
            Box::pin(async {
                let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?));
                Ok(SidePrep {
                    me_targets: vec![(2, addr), (-2, addr)],
                    ready: Some(Box::pin(async { Ok(()) }) as ReadyHook),
                    extra_args: vec![],
                    proxy_secret: None,
                })
            })
        }
        fn run_phase<'a>(
            &'a self,
            side: Side,
            phase: &'a Phase,
            cfg: &'a InstanceConfig,
            target: &'a ProxyProcess,
        ) -> BoxFuture<'a, anyhow::Result<PhaseResult>> {
            Box::pin(async move {
                let mut rec = Recorder::new();
                let mut me = Vec::new();
                let mut clients = Vec::new();
                for s in &phase.sessions {
                    let mut events = Vec::new();
                    for p in &s.packets {
                        let mut flags = 0x2002_1000 | if cfg.proxy_tag.is_some() { 0x8 } else { 0 };
                        if side == Side::Candidate
                            && phase.name == "load"
                            && s.id == phase.sessions[1].id
                            && p.index == 0
                        {
                            flags ^= 0x8;
                            *self.planted.lock().unwrap() = locate(&p.bytes);
                        }
                        me.push(MeRecord {
                            flags,
                            tag: cfg.proxy_tag,
                            payload: p.bytes.clone(),
                            dc_hint: Some(2),
                            conn_id: 0x40_0000 + s.id as i64,
                            client_addr: "127.0.0.1:5".parse().unwrap(),
                            proxy_addr: target.client_addr(),
                        });
                        let mut data = p.bytes.clone();
                        if s.transport.is_padded() && side == Side::Candidate {
                            data.push(0xAA); // padding must not count
                        }
                        events.push(ClientEvent::Packet { data });
                        rec.success(
                            Duration::from_micros(100 + u64::from(p.index)),
                            p.bytes.len(),
                            p.bytes.len(),
                        );
                    }
                    clients.push(ClientRecord {
                        session: s.id,
                        transport: s.transport,
                        dc: s.dc,
                        events,
                        end: SessionEnd::Completed,
                    });
                }
                Ok(PhaseResult {
                    metrics: rec.finish(Duration::from_millis(10)),
                    me_records: me,
                    client_records: clients,
                })
            })
        }
        fn run_probes<'a>(
            &'a self,
            side: Side,
            probes: &'a [Probe],
            _c: &'a InstanceConfig,
            _t: &'a ProxyProcess,
        ) -> BoxFuture<'a, anyhow::Result<Vec<ProbeRecord>>> {
            Box::pin(async move {
                Ok(probes
                    .iter()
                    .map(|p| ProbeRecord {
                        class: p.class.name().into(),
                        reaction: if side == Side::Candidate {
                            p.expect_candidate
                        } else {
                            p.expect_reference
                        },
                        detail: String::new(),
                    })
                    .collect())
            })
        }
    }

    /// Validate a written report against `artifacts/dualrun/schema.json`.
    fn assert_valid_against_schema(report: &std::path::Path) {
        let schema =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../artifacts/dualrun/schema.json");
        crate::report::validate_against_schema(report, &schema).unwrap();
    }

    fn out_dir(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("parity-dualrun-test-{name}-{}", std::process::id()))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn planted_divergence_fails_the_verdict_and_is_named() {
        let driver = Arc::new(PlantedDivergence {
            planted: std::sync::Mutex::new(None),
        });
        let dir = out_dir("planted");
        let mut opts = DualrunOptions::new(stand_in());
        opts.reference = Some(stand_in());
        opts.workload = Some(
            WorkloadSpec::new(42)
                .load_requests(300)
                .untagged_requests(50),
        );
        opts.out_dir = dir.clone();
        opts.driver = Some(driver.clone());
        let report = run(opts).await.unwrap();

        let (session, request) = driver.planted.lock().unwrap().expect("planted");
        assert!(!report.verdict.pass);
        let load = report
            .comparisons
            .iter()
            .find(|c| c.name == "load/me_stream")
            .unwrap();
        assert!(!load.pass);
        assert_eq!(load.unexplained_differences, 1);
        let d = &load.differences[0];
        assert_eq!(
            d.message,
            format!("session {session} request {request}: flags 0x20021008 vs 0x20021000")
        );
        assert!(
            report
                .verdict
                .reasons
                .iter()
                .any(|r| r.contains(&d.message)),
            "{:?}",
            report.verdict.reasons
        );
        // Everything else passes: padding ignored, the crash probe explained by its divergence.
        for c in report
            .comparisons
            .iter()
            .filter(|c| c.name != "load/me_stream")
        {
            assert!(
                c.pass,
                "{} failed: {:?} {:?}",
                c.name, c.skipped, c.differences
            );
        }
        assert!(report
            .divergences
            .iter()
            .any(|m| m.id == "c-aborts-on-short-padded-frame"));
        assert!(report.noise_baseline.measured);
        assert!(report.lifecycle["candidate"].startup_ms.is_some());
        assert_eq!(
            report.lifecycle["reference"].exit.as_deref(),
            Some("exit:0")
        );
        assert_eq!(report.reference.kind, BinaryKind::C);
        let back = Report::read(&dir.join(crate::report::REPORT_FILE)).unwrap();
        assert_eq!(back.comparisons, report.comparisons);
        assert_eq!(back.verdict, report.verdict);
        assert_eq!(back.divergences, report.divergences);
        assert_eq!(back.lifecycle, report.lifecycle);
        assert_valid_against_schema(&dir.join(crate::report::REPORT_FILE));
        let svg = std::fs::read_to_string(dir.join(crate::report::LATENCY_SVG)).unwrap();
        assert!(svg.contains("load / candidate") && svg.contains("percentile"));
        assert!(report.summary().contains("FAIL"));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn without_a_driver_only_the_lifecycle_runs_and_the_verdict_says_why() {
        let dir = out_dir("nodriver");
        let mut opts = DualrunOptions::new(stand_in());
        opts.reference_from_env = false;
        opts.noise_baseline = false;
        opts.workload = Some(WorkloadSpec::new(1).load_requests(10).untagged_requests(0));
        opts.out_dir = dir.clone();
        let report = run(opts).await.unwrap();
        assert!(!report.verdict.pass);
        assert!(report.verdict.reasons[0].starts_with("no traffic driver"));
        assert_eq!(report.reference.kind, BinaryKind::SelfCopy);
        assert!(report
            .warnings
            .iter()
            .any(|w| w == "no reference: candidate compared against itself"));
        let get = |n: &str| report.comparisons.iter().find(|c| c.name == n).unwrap();
        assert!(get("lifecycle").pass);
        assert!(get("stats").pass);
        assert_eq!(
            get("load/me_stream").skipped.as_deref(),
            Some("no traffic driver")
        );
        assert!(report
            .reference
            .version
            .as_deref()
            .unwrap_or("")
            .starts_with("mtproxy-"));
        let _ = std::fs::remove_dir_all(dir);
    }
}
