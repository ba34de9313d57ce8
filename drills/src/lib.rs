//! Drills: what a production proxy must survive, measured on any `mtproto-proxy` binary
//! (the C build or this port) through the parity fixtures — [`parity::process`] for the
//! process, [`parity::fake_me`] for the middle ends, [`parity::client`] for clients and
//! [`parity::site`] for the site behind `-D`.
//!
//! Each drill states its rule, measures both binaries, and returns figures and a verdict
//! (PASS, WARN, FAIL, or SKIP where the machine cannot run it) with the threshold it used.
//! `cargo xtask drill` runs the suite and writes `artifacts/drills/drills-report.json`
//! (schema: `artifacts/drills/SCHEMA.md`) and `drills.svg`. In `cargo test` each drill runs
//! once at [`Scale::Tiny`] against the candidate, to prove the drill code works.
#![forbid(unsafe_code)]

pub mod cutover;
pub mod proc;
pub mod report;
pub mod stand;
pub mod suite;

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How big a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scale {
    /// Seconds per drill: proves the drill code works (`cargo test`).
    Tiny,
    /// `--quick`: a couple of minutes for the whole suite (soak 2 min).
    Quick,
    /// The full drills (soak `--soak-minutes`, default 30).
    Full,
}

impl Scale {
    /// Picks the tiny, quick or full value.
    pub fn pick<T>(self, tiny: T, quick: T, full: T) -> T {
        match self {
            Scale::Tiny => tiny,
            Scale::Quick => quick,
            Scale::Full => full,
        }
    }
}

/// The binary a drill runs against.
#[derive(Debug, Clone)]
pub struct Target {
    /// `candidate` or `reference`.
    pub label: String,
    /// The `mtproto-proxy` binary.
    pub binary: PathBuf,
    /// Extra environment for the proxy (tests plant regressions through it).
    pub env: Vec<(String, String)>,
    /// Run it in this linux/amd64 image (host networking) instead of as a local process;
    /// `binary` is then the path inside the image. Drills that read the process's
    /// descriptors or memory need a local process.
    pub image: Option<String>,
}

impl Target {
    /// A target without extra environment.
    pub fn new(label: impl Into<String>, binary: impl Into<PathBuf>) -> Self {
        Self {
            label: label.into(),
            binary: binary.into(),
            env: Vec::new(),
            image: None,
        }
    }
}

/// The settings every drill reads.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// How big.
    pub scale: Scale,
    /// The soak's length.
    pub soak: Duration,
}

impl Settings {
    /// Settings for `scale` (the soak: 6 s tiny, 2 min quick, `soak_minutes` full).
    pub fn new(scale: Scale, soak_minutes: u64) -> Self {
        Self {
            scale,
            soak: scale.pick(
                Duration::from_secs(6),
                Duration::from_secs(120),
                Duration::from_secs(soak_minutes.max(1) * 60),
            ),
        }
    }
}

/// A drill's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Verdict {
    /// The rule held.
    #[serde(rename = "PASS")]
    Pass,
    /// Held, with a figure near its bound (not gated).
    #[serde(rename = "WARN")]
    Warn,
    /// The rule did not hold.
    #[serde(rename = "FAIL")]
    Fail,
    /// Could not run here (the reason says why); not gated.
    #[serde(rename = "SKIP")]
    Skip,
}

impl Verdict {
    /// `PASS`, `WARN`, `FAIL` or `SKIP`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Warn => "WARN",
            Verdict::Fail => "FAIL",
            Verdict::Skip => "SKIP",
        }
    }
}

/// One measured figure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Figure {
    /// snake_case name.
    pub name: String,
    /// Value.
    pub value: f64,
    /// Unit (`count`, `bytes`, `ms`, `per_s`, `bytes_per_min`, …).
    pub unit: String,
}

impl Figure {
    /// A figure (the value rounded to 3 decimals).
    pub fn new(name: &str, value: f64, unit: &str) -> Self {
        Self {
            name: name.into(),
            value: (value * 1000.0).round() / 1000.0,
            unit: unit.into(),
        }
    }
}

/// One sample of the proxy process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Seconds since the drill's traffic started.
    pub t_s: f64,
    /// `VmRSS`, bytes.
    pub rss_bytes: u64,
    /// Open descriptors.
    pub fds: u64,
    /// Threads.
    pub threads: u64,
}

/// What one drill measured on one binary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// The verdict.
    pub verdict: Verdict,
    /// The rule as applied, with its numbers.
    pub threshold: String,
    /// What was measured against it (or why it could not run).
    pub why: String,
    /// The figure the picture shows.
    pub key_figure: Figure,
    /// Every figure.
    pub figures: Vec<Figure>,
    /// Samples over time (the soak).
    #[serde(default)]
    pub series: Vec<Sample>,
    /// Wall time of the drill, seconds.
    pub elapsed_s: f64,
}

impl Outcome {
    /// An outcome from a verdict, its threshold, the reason and the figures (the first is
    /// the key figure).
    pub fn new(verdict: Verdict, threshold: String, why: String, figures: Vec<Figure>) -> Self {
        let key_figure = figures
            .first()
            .cloned()
            .unwrap_or_else(|| Figure::new("none", 0.0, "count"));
        Self {
            verdict,
            threshold,
            why,
            key_figure,
            figures,
            series: Vec::new(),
            elapsed_s: 0.0,
        }
    }

    /// A drill that could not run to the end: FAIL with the error (or SKIP when `skip`).
    pub fn error(threshold: &str, e: &anyhow::Error, skip: bool) -> Self {
        Self::new(
            if skip { Verdict::Skip } else { Verdict::Fail },
            threshold.into(),
            format!("{e:#}"),
            Vec::new(),
        )
    }

    /// The figure named `name`.
    pub fn figure(&self, name: &str) -> Option<f64> {
        self.figures
            .iter()
            .find(|f| f.name == name)
            .map(|f| f.value)
    }
}

/// The drills' names, in run order.
pub fn names() -> Vec<&'static str> {
    suite::ALL.iter().map(|d| d.name).collect()
}
