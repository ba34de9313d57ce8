//! What a drill reports: its [`Verdict`], the [`Figure`]s it measured, the process
//! [`Sample`]s over time, and the whole [`Outcome`] on one binary.

use serde::{Deserialize, Serialize};

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
