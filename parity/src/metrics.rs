//! Per-side measurements: latency (hdrhistogram, µs), success/error counts by class,
//! throughput, start-up and shutdown time. Everything here is serde-serialisable.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// Percentiles sampled into [`LatencySummary::curve`] (used by the latency picture).
pub const CURVE_PERCENTILES: [f64; 16] = [
    0.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 97.5, 99.0, 99.5, 99.9, 99.95, 99.99, 99.995, 99.999,
    100.0,
];

/// Round to three decimals (keeps reports readable and stable).
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// One point of a percentile curve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CurvePoint {
    /// Percentile, 0..=100.
    pub percentile: f64,
    /// Latency at that percentile, µs.
    pub value_us: u64,
}

/// Latency distribution summary, µs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct LatencySummary {
    /// Number of samples.
    pub count: u64,
    /// Minimum.
    pub min_us: u64,
    /// Mean.
    pub mean_us: f64,
    /// Median.
    pub p50_us: u64,
    /// 95th percentile.
    pub p95_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// Maximum.
    pub max_us: u64,
    /// Percentile curve at [`CURVE_PERCENTILES`].
    pub curve: Vec<CurvePoint>,
}

impl LatencySummary {
    /// Summarise a histogram.
    pub fn from_histogram(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            count: h.len(),
            min_us: h.min(),
            mean_us: round3(h.mean()),
            p50_us: h.value_at_quantile(0.50),
            p95_us: h.value_at_quantile(0.95),
            p99_us: h.value_at_quantile(0.99),
            max_us: h.max(),
            curve: CURVE_PERCENTILES
                .iter()
                .map(|&p| CurvePoint {
                    percentile: p,
                    value_us: h.value_at_quantile(p / 100.0),
                })
                .collect(),
        }
    }

    /// Value of a named percentile (`p50`, `p95`, `p99`, `max`).
    pub fn named(&self, name: &str) -> Option<u64> {
        match name {
            "p50" => Some(self.p50_us),
            "p95" => Some(self.p95_us),
            "p99" => Some(self.p99_us),
            "max" => Some(self.max_us),
            _ => None,
        }
    }
}

/// What one side measured in one phase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct PhaseMetrics {
    /// Requests that got their expected answer.
    pub succeeded: u64,
    /// Requests that did not.
    pub failed: u64,
    /// Failures by error class (e.g. `timeout`, `closed_by_proxy`, `wrong_answer`).
    pub errors: BTreeMap<String, u64>,
    /// Request → answer latency.
    pub latency: LatencySummary,
    /// Wall time of the phase, ms.
    pub duration_ms: f64,
    /// Requests per second (succeeded / duration).
    pub requests_per_s: f64,
    /// Payload bytes (both directions) per second.
    pub bytes_per_s: f64,
    /// Payload bytes sent by clients.
    pub bytes_sent: u64,
    /// Payload bytes received by clients.
    pub bytes_received: u64,
}

impl PhaseMetrics {
    /// succeeded / (succeeded + failed); 1.0 when nothing ran.
    pub fn success_rate(&self) -> f64 {
        let total = self.succeeded + self.failed;
        if total == 0 {
            1.0
        } else {
            self.succeeded as f64 / total as f64
        }
    }
}

/// Process lifecycle timings of one side.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct LifecycleMetrics {
    /// Spawn → ready, ms.
    pub startup_ms: Option<f64>,
    /// Stop signal → exit, ms.
    pub shutdown_ms: Option<f64>,
    /// How the process ended, e.g. `exit:0`, `signal:SIGKILL`.
    pub exit: Option<String>,
}

/// Collects one side's measurements during a phase. Cheap to create; merge several with
/// [`Recorder::merge`] when sessions record concurrently.
#[derive(Debug, Clone)]
pub struct Recorder {
    hist: Histogram<u64>,
    succeeded: u64,
    failed: u64,
    errors: BTreeMap<String, u64>,
    bytes_sent: u64,
    bytes_received: u64,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    /// New empty recorder (1 µs .. 60 s, 3 significant digits).
    pub fn new() -> Self {
        let hist = Histogram::new_with_bounds(1, 60_000_000, 3)
            .expect("constant histogram bounds are valid");
        Recorder {
            hist,
            succeeded: 0,
            failed: 0,
            errors: BTreeMap::new(),
            bytes_sent: 0,
            bytes_received: 0,
        }
    }

    /// A request got its answer after `latency`.
    pub fn success(&mut self, latency: Duration, sent: usize, received: usize) {
        let us = (latency.as_micros() as u64).clamp(1, 60_000_000);
        // Values are clamped into the histogram's range, so recording cannot fail.
        let _ = self.hist.record(us);
        self.succeeded += 1;
        self.bytes_sent += sent as u64;
        self.bytes_received += received as u64;
    }

    /// A request failed with an error class.
    pub fn error(&mut self, class: &str) {
        self.failed += 1;
        *self.errors.entry(class.to_string()).or_default() += 1;
    }

    /// Add another recorder's samples.
    pub fn merge(&mut self, other: &Recorder) {
        let _ = self.hist.add(&other.hist);
        self.succeeded += other.succeeded;
        self.failed += other.failed;
        for (k, v) in &other.errors {
            *self.errors.entry(k.clone()).or_default() += v;
        }
        self.bytes_sent += other.bytes_sent;
        self.bytes_received += other.bytes_received;
    }

    /// Close the phase: compute throughput over `elapsed`.
    pub fn finish(&self, elapsed: Duration) -> PhaseMetrics {
        let secs = elapsed.as_secs_f64().max(1e-9);
        PhaseMetrics {
            succeeded: self.succeeded,
            failed: self.failed,
            errors: self.errors.clone(),
            latency: LatencySummary::from_histogram(&self.hist),
            duration_ms: round3(elapsed.as_secs_f64() * 1e3),
            requests_per_s: round3(self.succeeded as f64 / secs),
            bytes_per_s: round3((self.bytes_sent + self.bytes_received) as f64 / secs),
            bytes_sent: self.bytes_sent,
            bytes_received: self.bytes_received,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorder_summarises_latency_errors_and_throughput() {
        let mut a = Recorder::new();
        for us in 1..=1000u64 {
            a.success(Duration::from_micros(us), 100, 50);
        }
        let mut b = Recorder::new();
        b.error("timeout");
        b.error("timeout");
        b.error("closed_by_proxy");
        a.merge(&b);
        let m = a.finish(Duration::from_secs(2));
        assert_eq!(m.succeeded, 1000);
        assert_eq!(m.failed, 3);
        assert_eq!(m.errors["timeout"], 2);
        assert!((m.latency.p50_us as i64 - 500).abs() <= 1);
        assert!((m.latency.p99_us as i64 - 990).abs() <= 1);
        assert_eq!(m.latency.max_us, 1000);
        assert!((m.requests_per_s - 500.0).abs() < 1e-6);
        assert!((m.bytes_per_s - 75_000.0).abs() < 1e-6);
        assert_eq!(m.latency.curve.len(), CURVE_PERCENTILES.len());
        assert!((m.success_rate() - 1000.0 / 1003.0).abs() < 1e-9);
        let json = serde_json::to_string(&m).unwrap();
        let back: PhaseMetrics = serde_json::from_str(&json).unwrap();
        assert_eq!(back, m);
    }
}
