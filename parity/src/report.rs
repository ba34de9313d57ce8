//! The versioned dual-run report: JSON (`dualrun-report.json`), a short human summary, a
//! Markdown summary fit for a CI job summary (`dualrun-report.md`) and a hand-written latency
//! picture (`latency.svg`). The schema is documented in `artifacts/dualrun/SCHEMA.md` and
//! `artifacts/dualrun/schema.json`.

use crate::compare::finding::Comparison;
use crate::compare::slo::{NoiseBaseline, Thresholds};
use crate::metrics::{LifecycleMetrics, PhaseMetrics};
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Report schema version. Bump the major on incompatible changes.
pub const SCHEMA_VERSION: &str = "1.0.0";
/// File name of the JSON report.
pub const REPORT_FILE: &str = "dualrun-report.json";
/// File name of the latency picture.
pub const LATENCY_SVG: &str = "latency.svg";
/// File name of the Markdown summary ([`Report::to_markdown`]).
pub const REPORT_MD: &str = "dualrun-report.md";

/// The machine the run happened on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostInfo {
    /// Host name.
    pub hostname: String,
    /// Logical CPUs.
    pub cpus: usize,
    /// Kernel release.
    pub kernel: String,
    /// OS name (`PRETTY_NAME` from os-release, else `std::env::consts::OS`).
    pub os: String,
    /// CPU architecture.
    pub arch: String,
}

impl HostInfo {
    /// The `- **Host:** …` line of every Markdown report.
    pub fn markdown_line(&self) -> String {
        format!(
            "- **Host:** {} — {} CPUs, {}, Linux {}, {}",
            md_cell(&self.hostname),
            self.cpus,
            md_cell(&self.os),
            md_cell(&self.kernel),
            self.arch
        )
    }

    /// Describe this machine.
    pub fn detect() -> Self {
        let read = |p: &str| {
            std::fs::read_to_string(p)
                .map(|s| s.trim().to_string())
                .ok()
        };
        let os = read("/etc/os-release")
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                    .map(|v| v.trim_matches('"').to_string())
            })
            .unwrap_or_else(|| std::env::consts::OS.to_string());
        HostInfo {
            hostname: read("/proc/sys/kernel/hostname").unwrap_or_else(|| "unknown".into()),
            cpus: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            kernel: read("/proc/sys/kernel/osrelease").unwrap_or_else(|| "unknown".into()),
            os,
            arch: std::env::consts::ARCH.to_string(),
        }
    }
}

/// What kind of build a side ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BinaryKind {
    /// The C MTProxy.
    C,
    /// The candidate compared against itself (no reference available).
    #[serde(rename = "self")]
    SelfCopy,
    /// Our Rust build.
    Rust,
}

/// One binary (or image) that ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BinaryInfo {
    /// Path (or image name under the docker runtime).
    pub path: String,
    /// Version string (probe of `--help`), if found.
    pub version: Option<String>,
    /// SHA-256 of the file (or image id).
    pub sha256: Option<String>,
    /// Kind.
    pub kind: BinaryKind,
}

/// Both sides' metrics for one phase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhaseReport {
    /// Phase name.
    pub name: String,
    /// Sessions.
    pub sessions: usize,
    /// Requests sent per side.
    pub requests: usize,
    /// Proxy tag set for the phase.
    pub tagged: bool,
    /// How the instances were started (`single`, `workers`, `fake_tls`).
    #[serde(default)]
    pub deployment: String,
    /// Metrics per side (`reference`, `candidate`, optionally `baseline`).
    pub metrics: BTreeMap<String, PhaseMetrics>,
}

/// A known divergence seen in this run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatchedDivergence {
    /// Id from `parity/divergences.json`.
    pub id: String,
    /// Title.
    pub title: String,
    /// Reason.
    pub reason: String,
    /// Comparisons in which it matched.
    pub comparisons: Vec<String>,
    /// Number of differences it explained.
    pub occurrences: u64,
}

/// Final verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// Overall pass.
    pub pass: bool,
    /// Whether the run was skipped (e.g. docker unavailable): not a failure, not a pass of parity.
    pub skipped: bool,
    /// Why it failed (or was skipped), one line each.
    pub reasons: Vec<String>,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// [`SCHEMA_VERSION`].
    pub schema_version: String,
    /// RFC 3339 UTC time of writing.
    pub generated_at: String,
    /// Host.
    pub host: HostInfo,
    /// Runtime (`local` or `docker`).
    pub runtime: String,
    /// Under the docker runtime: the containers' platform (`linux/amd64`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// Under the docker runtime: the engine (`docker version`: version, API, os/arch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<String>,
    /// Reference binary.
    pub reference: BinaryInfo,
    /// Candidate binary.
    pub candidate: BinaryInfo,
    /// Workload seed.
    pub seed: u64,
    /// Total requests per side.
    pub requests: usize,
    /// Phases.
    pub phases: Vec<PhaseReport>,
    /// Lifecycle timings per side.
    pub lifecycle: BTreeMap<String, LifecycleMetrics>,
    /// Comparisons.
    pub comparisons: Vec<Comparison>,
    /// Calibrated thresholds.
    pub thresholds: Thresholds,
    /// Noise baseline.
    pub noise_baseline: NoiseBaseline,
    /// Known divergences that matched.
    pub divergences: Vec<MatchedDivergence>,
    /// Warnings.
    pub warnings: Vec<String>,
    /// Verdict.
    pub verdict: Verdict,
}

impl Report {
    /// Recompute the verdict from the comparisons (plus any extra failure reasons).
    pub fn decide(&mut self, extra_reasons: Vec<String>) {
        let mut reasons = extra_reasons;
        for c in &self.comparisons {
            if !c.pass {
                let why = match (
                    &c.skipped,
                    c.differences.iter().find(|d| d.divergence.is_none()),
                ) {
                    (Some(s), _) => format!("{}: not run ({s})", c.name),
                    (None, Some(d)) => format!(
                        "{}: {} unexplained difference(s), first: {}",
                        c.name, c.unexplained_differences, d.message
                    ),
                    (None, None) => format!("{}: failed", c.name),
                };
                reasons.push(why);
            }
        }
        self.verdict.pass = !self.verdict.skipped && reasons.is_empty();
        if !self.verdict.skipped {
            self.verdict.reasons = reasons;
        }
    }

    /// Write `dualrun-report.json`, `dualrun-report.md` and `latency.svg` into `dir`
    /// (created if needed). Returns the paths of the JSON and the picture.
    pub fn write(&self, dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        let json = dir.join(REPORT_FILE);
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(&json, text + "\n").with_context(|| format!("write {}", json.display()))?;
        let md = dir.join(REPORT_MD);
        std::fs::write(&md, self.to_markdown())
            .with_context(|| format!("write {}", md.display()))?;
        let svg = dir.join(LATENCY_SVG);
        std::fs::write(&svg, latency_svg(self))
            .with_context(|| format!("write {}", svg.display()))?;
        Ok((json, svg))
    }

    /// `PASS`, `FAIL` or `SKIPPED` (the run could not happen, e.g. no Docker engine).
    pub fn verdict_label(&self) -> &'static str {
        if self.verdict.skipped {
            "SKIPPED"
        } else if self.verdict.pass {
            "PASS"
        } else {
            "FAIL"
        }
    }

    /// Whether the run had no reference: the candidate was compared against itself.
    pub fn self_mode(&self) -> bool {
        self.reference.kind == BinaryKind::SelfCopy
    }

    /// The Markdown summary (`dualrun-report.md`, fit for a CI job summary): the verdict,
    /// the binaries and the mode, every comparison with its numbers, the phases, the
    /// lifecycle, the known divergences met, and the failures with their reasons.
    pub fn to_markdown(&self) -> String {
        let mut s = String::new();
        let label = self.verdict_label();
        let _ = writeln!(
            s,
            "# Dual-run: {label}{}\n",
            if self.self_mode() {
                " — no reference"
            } else {
                ""
            }
        );
        if self.self_mode() {
            s.push_str(
                "> **No reference mode.** No C build was given (`--reference PATH` or \
                 `MTPROXY_C_BIN`): the candidate ran against a copy of itself. This run shows the \
                 harness and the candidate work; it does not show parity with the C build.\n\n",
            );
        }
        let binary = |b: &BinaryInfo| {
            let mut t = md_code(&b.path);
            if let Some(v) = &b.version {
                let _ = write!(t, " — {}", md_cell(v));
            }
            if let Some(h) = &b.sha256 {
                let _ = write!(t, " (sha256 {})", md_code(h.get(..12).unwrap_or(h)));
            }
            t
        };
        let reference = match self.reference.kind {
            BinaryKind::C => format!("- **Reference (C build):** {}", binary(&self.reference)),
            BinaryKind::SelfCopy => format!(
                "- **Reference:** none — a copy of the candidate stood in ({})",
                md_code(&self.reference.path)
            ),
            BinaryKind::Rust => format!(
                "- **Reference (a Rust build):** {}",
                binary(&self.reference)
            ),
        };
        let _ = writeln!(
            s,
            "- **Verdict:** {label} — {}, {} failed",
            plural(self.comparisons.len(), "comparison"),
            self.comparisons.iter().filter(|c| !c.pass).count()
        );
        let _ = writeln!(s, "{reference}");
        let _ = writeln!(s, "- **Candidate:** {}", binary(&self.candidate));
        let mut runtime = self.runtime.clone();
        if let Some(p) = &self.platform {
            let _ = write!(runtime, ", {p}");
        }
        if let Some(e) = &self.engine {
            let _ = write!(runtime, ", engine {}", md_cell(e));
        }
        let _ = writeln!(s, "- **Runtime:** {runtime}");
        let _ = writeln!(
            s,
            "- **Workload:** seed `{:#x}`, {} requests per side, {}",
            self.seed,
            self.requests,
            plural(self.phases.len(), "phase")
        );
        let _ = writeln!(
            s,
            "- **Noise baseline:** {}",
            if self.noise_baseline.measured {
                "measured (a second reference copy calibrated the latency thresholds)"
            } else {
                "not measured (thresholds use their absolute floors)"
            }
        );
        let _ = writeln!(s, "{}", self.host.markdown_line());
        let _ = writeln!(s, "- **Generated:** {}", self.generated_at);

        if label == "FAIL" {
            s.push_str("\n## Failures\n\n");
            for r in &self.verdict.reasons {
                let _ = writeln!(s, "- {}", md_cell(r));
            }
        } else if label == "SKIPPED" {
            s.push_str("\n## Why it was skipped\n\n");
            for r in &self.verdict.reasons {
                let _ = writeln!(s, "- {}", md_cell(r));
            }
        }

        s.push_str("\n## Comparisons\n\n");
        if self.comparisons.is_empty() {
            s.push_str("No comparison ran.\n");
        } else {
            s.push_str(
                "| Comparison | Result | Checked | Differences | Unexplained | Notes |\n\
                 |---|---|---:|---:|---:|---|\n",
            );
            for c in &self.comparisons {
                let result = if c.pass { "ok" } else { "**FAIL**" };
                let notes = match (
                    &c.skipped,
                    c.differences.iter().find(|d| d.divergence.is_none()),
                ) {
                    (Some(why), _) => format!("not run: {}", md_cell(why)),
                    (None, Some(d)) if !c.pass => format!("first: {}", md_cell(&d.message)),
                    _ => {
                        let explained: Vec<String> = c
                            .differences
                            .iter()
                            .filter_map(|d| d.divergence.clone())
                            .collect::<std::collections::BTreeSet<_>>()
                            .into_iter()
                            .map(|id| md_code(&id))
                            .collect();
                        if explained.is_empty() {
                            String::new()
                        } else {
                            format!("known: {}", explained.join(", "))
                        }
                    }
                };
                let _ = writeln!(
                    s,
                    "| {} | {result} | {} | {} | {} | {notes} |",
                    md_code(&c.name),
                    c.checked,
                    c.total_differences,
                    c.unexplained_differences
                );
            }
        }

        if !self.phases.is_empty() {
            s.push_str(
                "\n## Phases\n\n\
                 | Phase | Deployment | Side | Succeeded | Failed | p50 µs | p95 µs | p99 µs | max µs | req/s |\n\
                 |---|---|---|---:|---:|---:|---:|---:|---:|---:|\n",
            );
            for p in &self.phases {
                let deployment = match p.deployment.as_str() {
                    "" => "single".to_string(),
                    d => d.to_string(),
                };
                let deployment = if p.tagged {
                    format!("{deployment}, tagged")
                } else {
                    deployment
                };
                for (side, m) in &p.metrics {
                    let _ = writeln!(
                        s,
                        "| {} | {} | {side} | {} | {} | {} | {} | {} | {} | {:.1} |",
                        md_code(&p.name),
                        md_cell(&deployment),
                        m.succeeded,
                        m.failed,
                        m.latency.p50_us,
                        m.latency.p95_us,
                        m.latency.p99_us,
                        m.latency.max_us,
                        m.requests_per_s
                    );
                }
            }
        }

        if !self.lifecycle.is_empty() {
            s.push_str(
                "\n## Lifecycle\n\n| Side | Start-up | SIGTERM to exit | Exit |\n|---|---:|---:|---|\n",
            );
            let ms = |v: Option<f64>| v.map_or_else(|| "—".into(), |v| format!("{v:.1} ms"));
            for (side, l) in &self.lifecycle {
                let _ = writeln!(
                    s,
                    "| {side} | {} | {} | {} |",
                    ms(l.startup_ms),
                    ms(l.shutdown_ms),
                    l.exit.as_deref().map_or_else(|| "—".into(), md_code)
                );
            }
        }

        if !self.divergences.is_empty() {
            s.push_str(
                "\n## Known divergences met\n\n| Divergence | Seen | What | In |\n|---|---:|---|---|\n",
            );
            for d in &self.divergences {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} |",
                    md_code(&d.id),
                    d.occurrences,
                    md_cell(&d.title),
                    d.comparisons
                        .iter()
                        .map(|c| md_code(c))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
        }

        if !self.warnings.is_empty() {
            s.push_str("\n## Warnings\n\n");
            for w in &self.warnings {
                let _ = writeln!(s, "- {}", md_cell(w));
            }
        }
        s
    }

    /// Read a report back.
    pub fn read(path: &Path) -> anyhow::Result<Report> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parse {}", path.display()))
    }

    /// A short human summary (the binary prints it).
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let verdict = if self.verdict.skipped {
            "SKIPPED"
        } else if self.verdict.pass {
            "PASS"
        } else {
            "FAIL"
        };
        let _ = writeln!(
            s,
            "dualrun {verdict}  (schema {}, seed {:#x}, {} requests/side)",
            self.schema_version, self.seed, self.requests
        );
        let ver = |b: &BinaryInfo| b.version.clone().unwrap_or_else(|| "?".into());
        let _ = writeln!(
            s,
            "  reference [{:?}] {} ({})",
            self.reference.kind,
            self.reference.path,
            ver(&self.reference)
        );
        let _ = writeln!(
            s,
            "  candidate [{:?}] {} ({})",
            self.candidate.kind,
            self.candidate.path,
            ver(&self.candidate)
        );
        for p in &self.phases {
            let _ = writeln!(
                s,
                "  phase {} ({} sessions, {} requests{}{}):",
                p.name,
                p.sessions,
                p.requests,
                if p.tagged { ", tagged" } else { "" },
                match p.deployment.as_str() {
                    "workers" => ", -M 2 -u nobody -l FILE",
                    "fake_tls" => ", -D with ee clients",
                    _ => "",
                }
            );
            for (side, m) in &p.metrics {
                let _ = writeln!(
                    s,
                    "    {side:<9} ok {:>6}/{:<6} p50 {:>6}µs p95 {:>6}µs p99 {:>6}µs max {:>7}µs {:>9.1} req/s",
                    m.succeeded,
                    m.succeeded + m.failed,
                    m.latency.p50_us,
                    m.latency.p95_us,
                    m.latency.p99_us,
                    m.latency.max_us,
                    m.requests_per_s
                );
            }
        }
        for (side, l) in &self.lifecycle {
            let f = |v: Option<f64>| {
                v.map(|v| format!("{v:.1} ms"))
                    .unwrap_or_else(|| "-".into())
            };
            let _ = writeln!(
                s,
                "  {side:<9} start-up {} shutdown {} exit {}",
                f(l.startup_ms),
                f(l.shutdown_ms),
                l.exit.clone().unwrap_or_else(|| "-".into())
            );
        }
        for c in &self.comparisons {
            let mark = if c.pass { "ok  " } else { "FAIL" };
            let extra = match &c.skipped {
                Some(why) => format!(" (not run: {why})"),
                None => format!(
                    " ({} checked, {} differences, {} unexplained)",
                    c.checked, c.total_differences, c.unexplained_differences
                ),
            };
            let _ = writeln!(s, "  [{mark}] {}{extra}", c.name);
            for d in c
                .differences
                .iter()
                .filter(|d| d.divergence.is_none())
                .take(3)
            {
                let _ = writeln!(s, "         {}", d.message);
            }
        }
        for d in &self.divergences {
            let _ = writeln!(
                s,
                "  known divergence {} ×{}: {}",
                d.id, d.occurrences, d.title
            );
        }
        for w in &self.warnings {
            let _ = writeln!(s, "  warning: {w}");
        }
        for r in &self.verdict.reasons {
            let _ = writeln!(s, "  reason: {r}");
        }
        s
    }
}

/// Text for a Markdown table cell or list item: `|` escaped, line breaks folded into
/// spaces (every report's Markdown uses it).
pub fn md_cell(s: &str) -> String {
    s.replace('\r', "").replace('\n', " ").replace('|', "\\|")
}

/// `n word` with the word in the plural unless `n` is 1 (`1 phase`, `3 phases`).
pub fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// `s` as inline Markdown code (a backtick inside becomes a quote; `|` stays escaped, so
/// the span also fits a table cell).
pub fn md_code(s: &str) -> String {
    format!("`{}`", md_cell(&s.replace('`', "'")))
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The latency picture: percentile curves (x: percentile on a "nines" scale, y: latency µs,
/// log scale) for every side and phase that has samples, with labelled axes and a legend.
pub fn latency_svg(report: &Report) -> String {
    const W: f64 = 880.0;
    const H: f64 = 520.0;
    const L: f64 = 80.0;
    const R: f64 = 220.0;
    const T: f64 = 50.0;
    const B: f64 = 60.0;
    let (pw, ph) = (W - L - R, H - T - B);
    let x_of = |p: f64| {
        let nines = (1.0 / (1.0 - (p / 100.0).min(0.99999))).log10(); // 0..5
        L + pw * (nines / 5.0)
    };
    let mut series = Vec::new();
    for p in &report.phases {
        for (side, m) in &p.metrics {
            if m.latency.count > 0 {
                series.push((
                    format!("{} / {side}", p.name),
                    side.clone(),
                    m.latency.curve.clone(),
                ));
            }
        }
    }
    let max = series
        .iter()
        .flat_map(|s| s.2.iter().map(|c| c.value_us))
        .max()
        .unwrap_or(1)
        .max(10);
    let decades = (max as f64).log10().ceil().max(1.0);
    let y_of = |v: u64| T + ph - ph * ((v.max(1) as f64).log10() / decades);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="25" font-size="16" text-anchor="middle">Request latency by percentile — seed {:#x}</text>"#,
        L + pw / 2.0,
        report.seed
    );
    // Axes and grid.
    let _ = writeln!(
        s,
        r#"<rect x="{L}" y="{T}" width="{pw}" height="{ph}" fill="none" stroke="black"/>"#
    );
    for (p, label) in [
        (0.0, "0"),
        (90.0, "90"),
        (99.0, "99"),
        (99.9, "99.9"),
        (99.99, "99.99"),
        (99.999, "99.999"),
    ] {
        let x = x_of(p);
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{T}" x2="{x:.1}" y2="{}" stroke="#ddd"/><text x="{x:.1}" y="{}" text-anchor="middle">{label}</text>"##,
            T + ph,
            T + ph + 16.0
        );
    }
    for d in 0..=decades as i32 {
        let v = 10u64.pow(d as u32);
        let y = y_of(v);
        let _ = writeln!(
            s,
            r##"<line x1="{L}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{v}</text>"##,
            L + pw,
            L - 6.0,
            y + 4.0
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">percentile (%)</text>"#,
        L + pw / 2.0,
        H - 18.0
    );
    let _ = writeln!(
        s,
        r#"<text transform="translate(22 {}) rotate(-90)" text-anchor="middle">latency (µs, log scale)</text>"#,
        T + ph / 2.0
    );
    let colour = |side: &str| match side {
        "reference" => "#1f77b4",
        "candidate" => "#d62728",
        _ => "#7f7f7f",
    };
    let dashes = ["", "6,3", "2,2", "8,3,2,3"];
    let mut phase_index: BTreeMap<String, usize> = BTreeMap::new();
    for (i, (label, side, curve)) in series.iter().enumerate() {
        let phase = label.split(" / ").next().unwrap_or("").to_string();
        let n = phase_index.len();
        let dash = dashes[*phase_index.entry(phase).or_insert(n) % dashes.len()];
        let pts: Vec<String> = curve
            .iter()
            .map(|c| format!("{:.1},{:.1}", x_of(c.percentile), y_of(c.value_us)))
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{}" stroke-width="2" stroke-dasharray="{dash}" points="{}"/>"#,
            colour(side),
            pts.join(" ")
        );
        let ly = T + 10.0 + 20.0 * i as f64;
        let lx = L + pw + 15.0;
        let _ = writeln!(
            s,
            r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{}" stroke-width="2" stroke-dasharray="{dash}"/><text x="{}" y="{}">{}</text>"#,
            lx + 30.0,
            colour(side),
            lx + 36.0,
            ly + 4.0,
            esc(label)
        );
    }
    if series.is_empty() {
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle">no latency samples (no traffic phase ran)</text>"#,
            L + pw / 2.0,
            T + ph / 2.0
        );
    }
    s.push_str("</svg>\n");
    s
}

/// Validates a JSON report against a JSON Schema file with Python's `jsonschema` (the
/// tests of every report writer use it; `python3` with `jsonschema` must be installed).
///
/// # Errors
/// When Python cannot run, or with the validator's message when the report does not
/// match.
pub fn validate_against_schema(report: &Path, schema: &Path) -> anyhow::Result<()> {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import json,sys,jsonschema; jsonschema.validate(json.load(open(sys.argv[1])), json.load(open(sys.argv[2])))",
        ])
        .arg(report)
        .arg(schema)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "{} does not match {}: {}",
        report.display(),
        schema.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::finding::Difference;
    use crate::metrics::LatencySummary;

    /// A report built by hand: fixed values only, so the Markdown is a stable snapshot.
    fn fixed_report(self_mode: bool) -> Report {
        let binary = |path: &str, version: &str, kind| BinaryInfo {
            path: path.into(),
            version: Some(version.into()),
            sha256: Some("0123456789abcdef0123456789abcdef".into()),
            kind,
        };
        let metrics = |p50, p99, rps| PhaseMetrics {
            succeeded: 10_000,
            failed: 0,
            errors: BTreeMap::new(),
            latency: LatencySummary {
                count: 10_000,
                min_us: 80,
                mean_us: 310.5,
                p50_us: p50,
                p95_us: p99 - 100,
                p99_us: p99,
                max_us: p99 * 4,
                curve: Vec::new(),
            },
            duration_ms: 4_000.0,
            requests_per_s: rps,
            bytes_per_s: 0.0,
            bytes_sent: 0,
            bytes_received: 0,
        };
        let mut explained = Comparison::new(
            "probe",
            Some("probes"),
            9,
            vec![Difference::new(
                "probe",
                Some("probes"),
                "short_padded_frame",
                "reaction",
                "crash",
                "close",
            )],
        );
        explained.differences[0].divergence = Some("short-padded-frame-crash".into());
        explained.unexplained_differences = 0;
        explained.pass = true;
        let failing = Comparison::new(
            "me_stream",
            Some("load"),
            10_000,
            vec![Difference::new(
                "me_stream",
                Some("load"),
                "session 17 request 3",
                "flags",
                "0xa002100a",
                "0xa0021002",
            )],
        );
        let mut report = Report {
            schema_version: SCHEMA_VERSION.into(),
            generated_at: "2026-01-02T03:04:05Z".into(),
            host: HostInfo {
                hostname: "ci-runner".into(),
                cpus: 2,
                kernel: "6.1.0".into(),
                os: "Debian GNU/Linux 12 (bookworm)".into(),
                arch: "x86_64".into(),
            },
            runtime: "local".into(),
            platform: None,
            engine: None,
            reference: if self_mode {
                binary(
                    "target/release/mtproto-proxy",
                    "mtproxy-rs 0.1.0",
                    BinaryKind::SelfCopy,
                )
            } else {
                binary("c/objs/bin/mtproto-proxy", "mtproxy-3.0.10", BinaryKind::C)
            },
            candidate: binary(
                "target/release/mtproto-proxy",
                "mtproxy-rs 0.1.0",
                BinaryKind::Rust,
            ),
            seed: 0x6d74_7072_6f78_7921,
            requests: 10_009,
            phases: vec![PhaseReport {
                name: "load".into(),
                sessions: 64,
                requests: 10_000,
                tagged: true,
                deployment: "single".into(),
                metrics: [
                    ("candidate".to_string(), metrics(290, 690, 2500.0)),
                    ("reference".to_string(), metrics(330, 700, 2400.5)),
                ]
                .into_iter()
                .collect(),
            }],
            lifecycle: [
                (
                    "candidate".to_string(),
                    LifecycleMetrics {
                        startup_ms: Some(5.7),
                        shutdown_ms: Some(2.1),
                        exit: Some("exit:0".into()),
                    },
                ),
                (
                    "reference".to_string(),
                    LifecycleMetrics {
                        startup_ms: Some(33.8),
                        shutdown_ms: None,
                        exit: Some("signal:SIGKILL".into()),
                    },
                ),
            ]
            .into_iter()
            .collect(),
            comparisons: if self_mode {
                vec![explained]
            } else {
                vec![explained, failing]
            },
            thresholds: Thresholds::default(),
            noise_baseline: NoiseBaseline {
                measured: !self_mode,
                ..NoiseBaseline::default()
            },
            divergences: vec![MatchedDivergence {
                id: "short-padded-frame-crash".into(),
                title: "C crashes on a short padded frame".into(),
                reason: "a bug of the C build".into(),
                comparisons: vec!["probes/probe".into()],
                occurrences: 1,
            }],
            warnings: if self_mode {
                vec!["no reference: candidate compared against itself".into()]
            } else {
                Vec::new()
            },
            verdict: Verdict {
                pass: false,
                skipped: false,
                reasons: Vec::new(),
            },
        };
        report.decide(Vec::new());
        report
    }

    #[test]
    fn markdown_of_a_failing_run_names_the_failure() {
        let report = fixed_report(false);
        assert_eq!(report.verdict_label(), "FAIL");
        let md = report.to_markdown();
        assert!(md.starts_with("# Dual-run: FAIL\n"), "{md}");
        insta::assert_snapshot!("dualrun_fail", md);
    }

    #[test]
    fn markdown_of_a_self_mode_run_says_no_reference() {
        let report = fixed_report(true);
        assert_eq!(report.verdict_label(), "PASS");
        let md = report.to_markdown();
        assert!(md.contains("No reference mode"), "{md}");
        insta::assert_snapshot!("dualrun_self_mode", md);
    }

    #[test]
    fn markdown_cells_escape_pipes_and_fold_lines() {
        assert_eq!(md_cell("a|b\nc"), "a\\|b c");
        assert_eq!(md_code("x`y"), "`x'y`");
    }
}
