//! (d) Success rate, latency percentiles, throughput, start-up and shutdown time against
//! thresholds calibrated by a noise baseline ([`NoiseBaseline`], [`Thresholds`]).

use super::finding::{opt, Comparison, Difference};
use crate::metrics::{LifecycleMetrics, PhaseMetrics};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How far apart two copies of the reference were: the noise the thresholds are scaled by.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct PhaseSpread {
    /// |Δp50| µs.
    pub p50_us: u64,
    /// |Δp95| µs.
    pub p95_us: u64,
    /// |Δp99| µs.
    pub p99_us: u64,
    /// |Δmax| µs.
    pub max_us: u64,
    /// |Δ requests/s| / mean requests/s.
    pub throughput_frac: f64,
}

/// Noise baseline: reference vs a second copy of itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct NoiseBaseline {
    /// Whether a baseline was measured (else thresholds use the floors only).
    pub measured: bool,
    /// Per phase.
    pub phases: BTreeMap<String, PhaseSpread>,
    /// |Δ start-up| ms.
    pub startup_ms: f64,
    /// |Δ shutdown| ms.
    pub shutdown_ms: f64,
}

impl NoiseBaseline {
    /// Spread of one phase between two copies.
    pub fn phase_spread(a: &PhaseMetrics, b: &PhaseMetrics) -> PhaseSpread {
        let d = |x: u64, y: u64| x.abs_diff(y);
        let mean = (a.requests_per_s + b.requests_per_s) / 2.0;
        PhaseSpread {
            p50_us: d(a.latency.p50_us, b.latency.p50_us),
            p95_us: d(a.latency.p95_us, b.latency.p95_us),
            p99_us: d(a.latency.p99_us, b.latency.p99_us),
            max_us: d(a.latency.max_us, b.latency.max_us),
            throughput_frac: if mean > 0.0 {
                crate::metrics::round3((a.requests_per_s - b.requests_per_s).abs() / mean)
            } else {
                0.0
            },
        }
    }

    /// Spread of the lifecycle timings.
    pub fn lifecycle(&mut self, a: &LifecycleMetrics, b: &LifecycleMetrics) {
        let d = |x: Option<f64>, y: Option<f64>| match (x, y) {
            (Some(x), Some(y)) => (x - y).abs(),
            _ => 0.0,
        };
        self.startup_ms =
            crate::metrics::round3(self.startup_ms.max(d(a.startup_ms, b.startup_ms)));
        self.shutdown_ms =
            crate::metrics::round3(self.shutdown_ms.max(d(a.shutdown_ms, b.shutdown_ms)));
    }
}

/// Knobs for the thresholds: `limit = max(floor, k × baseline spread)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThresholdConfig {
    /// Absolute floor for latency excess, µs (p50/p95/p99).
    pub latency_floor_us: u64,
    /// Absolute floor for the max-latency excess, µs.
    pub max_latency_floor_us: u64,
    /// Phases with fewer requests than this (the canary) are not judged on latency and
    /// throughput: a few dozen samples give a p99 that is one sample, pure noise. Their
    /// correctness comparisons still apply.
    pub min_latency_samples: u64,
    /// Relative floor for latency excess, as a fraction of the reference's value: on a
    /// small shared machine (two proxies, their FakeMes and the load generator on two
    /// cores) scheduling noise grows with the latency itself.
    pub latency_rel_floor: f64,
    /// Multiplier on the baseline spread.
    pub k: f64,
    /// Candidate success rate may be this much below the reference's.
    pub success_rate_tolerance: f64,
    /// Floor for the relative throughput loss.
    pub throughput_floor_frac: f64,
    /// Floor for start-up excess, ms.
    pub startup_floor_ms: f64,
    /// Floor for shutdown excess, ms.
    pub shutdown_floor_ms: f64,
}

impl Default for ThresholdConfig {
    fn default() -> Self {
        ThresholdConfig {
            latency_floor_us: 1_000,
            max_latency_floor_us: 50_000,
            latency_rel_floor: 0.25,
            min_latency_samples: 500,
            k: 3.0,
            success_rate_tolerance: 0.0,
            throughput_floor_frac: 0.10,
            startup_floor_ms: 500.0,
            shutdown_floor_ms: 500.0,
        }
    }
}

/// One calibrated threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Threshold {
    /// Metric, e.g. `load/p99_us` or `startup_ms`.
    pub metric: String,
    /// Allowed excess of candidate over reference (µs, ms, or a fraction for throughput).
    pub limit: f64,
    /// The floor used.
    pub floor: f64,
    /// The multiplier used.
    pub k: f64,
    /// The baseline spread used.
    pub spread: f64,
}

/// All calibrated thresholds of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Thresholds {
    /// The knobs.
    pub config: Option<ThresholdConfig>,
    /// One entry per checked metric.
    pub entries: Vec<Threshold>,
}

impl Thresholds {
    fn calibrate(&mut self, metric: String, floor: f64, k: f64, spread: f64) -> f64 {
        let limit = crate::metrics::round3(floor.max(k * spread));
        self.entries.push(Threshold {
            metric,
            limit,
            floor,
            k,
            spread,
        });
        limit
    }
}

/// (d) SLOs of one phase: success rate, latency percentiles, throughput. Thresholds are added
/// to `thresholds`.
pub fn compare_slos(
    phase: &str,
    reference: &PhaseMetrics,
    candidate: &PhaseMetrics,
    config: &ThresholdConfig,
    baseline: &NoiseBaseline,
    thresholds: &mut Thresholds,
) -> Comparison {
    const KIND: &str = "slo";
    let p = Some(phase);
    let spread = baseline.phases.get(phase).cloned().unwrap_or_default();
    let mut diffs = Vec::new();
    let mut checked = 0;

    checked += 1;
    let (rs, cs) = (reference.success_rate(), candidate.success_rate());
    if cs + config.success_rate_tolerance < rs {
        diffs.push(
            Difference::new(
                KIND,
                p,
                "success_rate",
                "success_rate",
                format!("{rs:.6}"),
                format!("{cs:.6}"),
            )
            .with_message(format!(
                "{phase} success rate: candidate {cs:.6} below reference {rs:.6} (tolerance {})",
                config.success_rate_tolerance
            )),
        );
    }
    if reference.succeeded < config.min_latency_samples {
        return Comparison::new(KIND, p, checked, diffs).details(format!(
            "latency and throughput not judged: {} requests < {}",
            reference.succeeded, config.min_latency_samples
        ));
    }
    for (name, sp) in [
        ("p50", spread.p50_us),
        ("p95", spread.p95_us),
        ("p99", spread.p99_us),
        ("max", spread.max_us),
    ] {
        let (r, c) = (
            reference.latency.named(name).unwrap_or(0),
            candidate.latency.named(name).unwrap_or(0),
        );
        let absolute = if name == "max" {
            config.max_latency_floor_us
        } else {
            config.latency_floor_us
        };
        let floor = (absolute as f64).max(config.latency_rel_floor * r as f64);
        let limit = thresholds.calibrate(format!("{phase}/{name}_us"), floor, config.k, sp as f64);
        checked += 1;
        if c as f64 > r as f64 + limit {
            diffs.push(
                Difference::new(
                    KIND,
                    p,
                    format!("latency_{name}"),
                    format!("{name}_us"),
                    r.to_string(),
                    c.to_string(),
                )
                .with_message(format!(
                    "{phase} {name}: candidate {c} µs vs reference {r} µs exceeds +{limit:.0} µs"
                )),
            );
        }
    }
    let limit = thresholds.calibrate(
        format!("{phase}/throughput_loss_frac"),
        config.throughput_floor_frac,
        config.k,
        spread.throughput_frac,
    );
    checked += 1;
    if reference.requests_per_s > 0.0 {
        let loss = (reference.requests_per_s - candidate.requests_per_s) / reference.requests_per_s;
        if loss > limit {
            diffs.push(
                Difference::new(
                    KIND,
                    p,
                    "throughput",
                    "requests_per_s",
                    format!("{:.1}", reference.requests_per_s),
                    format!("{:.1}", candidate.requests_per_s),
                )
                .with_message(format!(
                    "{phase} throughput: candidate {:.1} req/s is {:.1}% below reference {:.1} req/s (limit {:.1}%)",
                    candidate.requests_per_s,
                    loss * 100.0,
                    reference.requests_per_s,
                    limit * 100.0
                )),
            );
        }
    }
    let errs = |m: &PhaseMetrics| m.errors.keys().cloned().collect::<Vec<_>>().join(",");
    let (re, ce) = (errs(reference), errs(candidate));
    checked += 1;
    if !ce.is_empty() && re != ce {
        diffs.push(Difference::new(KIND, p, "error_classes", "errors", re, ce));
    }
    Comparison::new(KIND, p, checked, diffs)
}

/// (d) Start-up and shutdown time and the way each process ended after the stop signal.
pub fn compare_lifecycle(
    reference: &LifecycleMetrics,
    candidate: &LifecycleMetrics,
    config: &ThresholdConfig,
    baseline: &NoiseBaseline,
    thresholds: &mut Thresholds,
) -> Comparison {
    const KIND: &str = "lifecycle";
    let mut diffs = Vec::new();
    let mut checked = 0;
    for (name, r, c, floor, spread) in [
        (
            "startup_ms",
            reference.startup_ms,
            candidate.startup_ms,
            config.startup_floor_ms,
            baseline.startup_ms,
        ),
        (
            "shutdown_ms",
            reference.shutdown_ms,
            candidate.shutdown_ms,
            config.shutdown_floor_ms,
            baseline.shutdown_ms,
        ),
    ] {
        let limit = thresholds.calibrate(name.to_string(), floor, config.k, spread);
        checked += 1;
        match (r, c) {
            (Some(r), Some(c)) if c > r + limit => diffs.push(
                Difference::new(KIND, None, name, name, format!("{r:.1}"), format!("{c:.1}"))
                    .with_message(format!(
                        "{name}: candidate {c:.1} ms vs reference {r:.1} ms exceeds +{limit:.0} ms"
                    )),
            ),
            (Some(_), None) => diffs.push(Difference::new(
                KIND, None, name, name, "measured", "missing",
            )),
            _ => {}
        }
    }
    checked += 1;
    if reference.exit != candidate.exit {
        diffs.push(Difference::new(
            KIND,
            None,
            "sigterm",
            "exit",
            opt(&reference.exit),
            opt(&candidate.exit),
        ));
    }
    Comparison::new(KIND, None, checked, diffs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slo_thresholds_scale_with_the_noise_baseline() {
        let mut r = PhaseMetrics {
            succeeded: 1000,
            requests_per_s: 1000.0,
            ..Default::default()
        };
        r.latency.p99_us = 1_000;
        let mut c = r.clone();
        c.latency.p99_us = 4_000;
        let cfg = ThresholdConfig::default();
        let mut t = Thresholds::default();
        let quiet = NoiseBaseline::default();
        let cmp = compare_slos("load", &r, &c, &cfg, &quiet, &mut t);
        assert!(!cmp.pass);
        assert_eq!(cmp.differences[0].key, "latency_p99");
        // A canary-sized phase is not judged on latency (a p99 of 100 samples is noise).
        let (mut r_small, mut c_small) = (r.clone(), c.clone());
        r_small.succeeded = 100;
        c_small.succeeded = 100;
        let small = compare_slos("canary", &r_small, &c_small, &cfg, &quiet, &mut t);
        assert!(small.pass, "{:?}", small.differences);
        assert!(small.details.contains("not judged"));
        let mut noisy = NoiseBaseline::default();
        noisy.phases.insert(
            "load".into(),
            PhaseSpread {
                p99_us: 1_500,
                ..Default::default()
            },
        );
        let mut t = Thresholds::default();
        let cmp = compare_slos("load", &r, &c, &cfg, &noisy, &mut t);
        assert!(cmp.pass, "{:?}", cmp.differences);
        let p99 = t
            .entries
            .iter()
            .find(|e| e.metric == "load/p99_us")
            .unwrap();
        assert_eq!(p99.limit, 4_500.0);
        // Success rate and throughput.
        c.latency.p99_us = 1_000;
        c.failed = 1;
        c.requests_per_s = 500.0;
        let cmp = compare_slos("load", &r, &c, &cfg, &quiet, &mut Thresholds::default());
        let keys: Vec<_> = cmp.differences.iter().map(|d| d.key.as_str()).collect();
        assert_eq!(keys, vec!["success_rate", "throughput"]);
    }
}
