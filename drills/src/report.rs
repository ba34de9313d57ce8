//! Running the suite against both binaries, and its report: `drills-report.json` (schema:
//! `artifacts/drills/SCHEMA.md`, `artifacts/drills/schema.json`) and `drills.svg`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parity::report::{rfc3339, HostInfo};
use serde::{Deserialize, Serialize};

use crate::{suite, Outcome, Scale, Settings, Target, Verdict};

/// Report schema version.
pub const SCHEMA_VERSION: &str = "1.0.0";
/// File names inside the output folder.
pub const REPORT_JSON: &str = "drills-report.json";
/// The picture.
pub const REPORT_SVG: &str = "drills.svg";

/// Progress callback (the xtask prints it).
pub type Progress = Arc<dyn Fn(&str) + Send + Sync>;

/// What to run.
#[derive(Clone)]
pub struct RunOptions {
    /// The port (gated).
    pub candidate: Target,
    /// The C build (reported, not gated); `None`: the candidate runs alone.
    pub reference: Option<Target>,
    /// Drill names (empty: all).
    pub only: Vec<String>,
    /// Scale and soak length.
    pub settings: Settings,
    /// Where the report goes.
    pub out_dir: PathBuf,
    /// Progress lines.
    pub progress: Option<Progress>,
}

/// A binary as the report names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binary {
    /// Path.
    pub path: String,
    /// The `mtproxy-…` version line, when found.
    pub version: Option<String>,
}

/// One drill, both sides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrillEntry {
    /// Name.
    pub name: String,
    /// What a production proxy should do.
    pub rule: String,
    /// The candidate's outcome.
    pub candidate: Outcome,
    /// The reference's outcome (absent without a reference).
    pub reference: Option<Outcome>,
}

/// The report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrillsReport {
    /// [`SCHEMA_VERSION`].
    pub schema_version: String,
    /// RFC 3339, UTC.
    pub generated_at: String,
    /// The machine.
    pub host: HostInfo,
    /// `tiny`, `quick` or `full`.
    pub scale: Scale,
    /// The soak's length, seconds.
    pub soak_seconds: u64,
    /// The port.
    pub candidate: Binary,
    /// The C build, when given.
    pub reference: Option<Binary>,
    /// Notes for the reader (e.g. no reference).
    pub notes: Vec<String>,
    /// Every drill run.
    pub drills: Vec<DrillEntry>,
    /// `PASS` when the candidate FAILed no drill.
    pub verdict: String,
}

impl DrillsReport {
    /// The candidate's failed drills.
    pub fn candidate_failures(&self) -> Vec<&str> {
        self.drills
            .iter()
            .filter(|d| d.candidate.verdict == Verdict::Fail)
            .map(|d| d.name.as_str())
            .collect()
    }

    /// The command's exit status: 1 when the candidate FAILed a drill, else 0 (the
    /// reference's verdicts are reported, not gated).
    pub fn exit_code(&self) -> i32 {
        i32::from(!self.candidate_failures().is_empty())
    }

    /// Writes the JSON and the picture into `dir`.
    ///
    /// # Errors
    /// When the folder or a file cannot be written.
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join(REPORT_JSON), serde_json::to_string_pretty(self)?)?;
        std::fs::write(dir.join(REPORT_SVG), svg(self))?;
        Ok(())
    }

    /// Reads a written report.
    ///
    /// # Errors
    /// When the file cannot be read or parsed.
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        Ok(serde_json::from_str(&std::fs::read_to_string(path)?)?)
    }

    /// A table for the terminal (and the README).
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "| drill | key figure | candidate | reference (C) |\n|---|---|---|---|"
        );
        for d in &self.drills {
            let side = |o: &Outcome| {
                format!(
                    "{} {} {}",
                    o.verdict.as_str(),
                    fmt_num(o.key_figure.value),
                    o.key_figure.unit
                )
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} |",
                d.name,
                d.candidate.key_figure.name,
                side(&d.candidate),
                d.reference.as_ref().map_or("not run".into(), side)
            );
        }
        s
    }
}

fn fmt_num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// Estimated seconds of one drill on one side (for "remaining").
fn estimate(name: &str, s: &Settings) -> f64 {
    let p = |t, q, f| s.scale.pick(t, q, f);
    match name {
        "soak" => s.soak.as_secs_f64() + 3.0,
        // Its time bound, plus sending the unread requests.
        "stalled_reader" => p(20.0, 100.0, 180.0),
        "me_stall" => p(8.0, 35.0, 60.0),
        "fronting_half_open" => p(12.0, 15.0, 20.0),
        _ => p(3.0, 10.0, 30.0),
    }
}

fn clock(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    format!("{}:{:02}", s / 60, s % 60)
}

/// Runs the drills (candidate, then reference, drill by drill) and writes the report.
///
/// # Errors
/// An unknown drill name in `only`, or a report that cannot be written.
pub async fn run(opts: RunOptions) -> anyhow::Result<DrillsReport> {
    let say = |m: &str| {
        if let Some(p) = &opts.progress {
            p(m);
        }
    };
    let drills: Vec<&suite::Drill> = if opts.only.is_empty() {
        suite::ALL.iter().collect()
    } else {
        opts.only
            .iter()
            .map(|n| {
                suite::find(n).ok_or_else(|| {
                    anyhow::anyhow!(
                        "unknown drill {n:?}; the drills are {}",
                        crate::names().join(", ")
                    )
                })
            })
            .collect::<anyhow::Result<_>>()?
    };
    let _ = parity::load::raise_nofile();
    let mut notes = Vec::new();
    if opts.reference.is_none() {
        notes.push(
            "no reference: MTPROXY_C_BIN not set and no --reference given; the candidate ran alone"
                .to_string(),
        );
        say("no reference: the drills run against the candidate alone");
    }
    let sides: Vec<&Target> = std::iter::once(&opts.candidate)
        .chain(opts.reference.as_ref())
        .collect();
    let started = tokio::time::Instant::now();
    let mut left: f64 = drills
        .iter()
        .map(|d| estimate(d.name, &opts.settings) * sides.len() as f64)
        .sum();
    let mut entries = Vec::new();
    for (i, d) in drills.iter().enumerate() {
        let mut outcomes: BTreeMap<String, Outcome> = BTreeMap::new();
        for t in &sides {
            say(&format!(
                "[{}/{}] {} on the {}: elapsed {}, about {} left",
                i + 1,
                drills.len(),
                d.name,
                t.label,
                clock(started.elapsed().as_secs_f64()),
                clock(left)
            ));
            let o = suite::run(d, (*t).clone(), opts.settings).await;
            left = (left - estimate(d.name, &opts.settings)).max(0.0);
            say(&format!(
                "    {} {}: {} — {}",
                d.name,
                t.label,
                o.verdict.as_str(),
                o.why
            ));
            outcomes.insert(t.label.clone(), o);
        }
        let candidate = outcomes
            .remove(&opts.candidate.label)
            .ok_or_else(|| anyhow::anyhow!("no candidate outcome"))?;
        let reference = opts
            .reference
            .as_ref()
            .and_then(|r| outcomes.remove(&r.label));
        entries.push(DrillEntry {
            name: d.name.to_string(),
            rule: d.rule.to_string(),
            candidate,
            reference,
        });
    }
    let mut report = DrillsReport {
        schema_version: SCHEMA_VERSION.into(),
        generated_at: rfc3339(std::time::SystemTime::now()),
        host: HostInfo::detect(),
        scale: opts.settings.scale,
        soak_seconds: opts.settings.soak.as_secs(),
        candidate: binary(&opts.candidate).await,
        reference: match &opts.reference {
            Some(r) => Some(binary(r).await),
            None => None,
        },
        notes,
        drills: entries,
        verdict: String::new(),
    };
    let failed = report.candidate_failures();
    report.verdict = if failed.is_empty() {
        "PASS".into()
    } else {
        format!("FAIL: {}", failed.join(", "))
    };
    report.write(&opts.out_dir)?;
    say(&format!(
        "drills done in {}: {}",
        clock(started.elapsed().as_secs_f64()),
        report.verdict
    ));
    Ok(report)
}

async fn binary(t: &Target) -> Binary {
    Binary {
        path: t.binary.display().to_string(),
        version: parity::process::probe_version(&t.binary).await,
    }
}

// ---------------------------------------------------------------------------------------
// The picture: the soak's RSS and descriptors over time for each binary, then each
// drill's key figure for both binaries with its verdict.

const W: f64 = 960.0;
const CAND: &str = "#c0392b";
const REFC: &str = "#2e6da4";

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn verdict_color(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "#2e7d32",
        Verdict::Warn => "#b26a00",
        Verdict::Fail => "#c62828",
        Verdict::Skip => "#777777",
    }
}

/// One line of a chart: label, colour, points `(t, value)`.
type Line<'a> = (&'a str, &'a str, Vec<(f64, f64)>);

/// One line chart of `series` (label, colour, points) in the box at `y`.
fn chart(s: &mut String, y: f64, title: &str, unit: &str, series: &[Line<'_>]) {
    let (x0, w, h) = (70.0, W - 110.0, 150.0);
    let tmax = series
        .iter()
        .flat_map(|(_, _, p)| p.iter().map(|q| q.0))
        .fold(1.0f64, f64::max);
    let vmax = series
        .iter()
        .flat_map(|(_, _, p)| p.iter().map(|q| q.1))
        .fold(0.0f64, f64::max)
        .max(1.0)
        * 1.1;
    let _ = writeln!(
        s,
        r##"<text x="{x0}" y="{:.0}" font-size="14" font-weight="bold">{}</text>"##,
        y - 8.0,
        esc(title)
    );
    let _ = writeln!(
        s,
        r##"<rect x="{x0}" y="{y:.0}" width="{w:.0}" height="{h:.0}" fill="none" stroke="#bbb"/>"##
    );
    for k in 0..=4 {
        let v = vmax * f64::from(k) / 4.0;
        let yy = y + h - h * f64::from(k) / 4.0;
        let _ = writeln!(
            s,
            r##"<text x="{:.0}" y="{:.0}" font-size="10" text-anchor="end">{} {unit}</text>"##,
            x0 - 4.0,
            yy + 3.0,
            fmt_num((v * 10.0).round() / 10.0)
        );
    }
    let _ = writeln!(
        s,
        r##"<text x="{:.0}" y="{:.0}" font-size="10" text-anchor="end">{} s</text>"##,
        x0 + w,
        y + h + 12.0,
        fmt_num(tmax.round())
    );
    for (i, (label, color, pts)) in series.iter().enumerate() {
        let path: Vec<String> = pts
            .iter()
            .map(|(t, v)| format!("{:.1},{:.1}", x0 + w * t / tmax, y + h - h * v / vmax))
            .collect();
        if !path.is_empty() {
            let _ = writeln!(
                s,
                r##"<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{}"/>"##,
                path.join(" ")
            );
        }
        let _ = writeln!(
            s,
            r##"<text x="{:.0}" y="{:.0}" font-size="11" fill="{color}">{}</text>"##,
            x0 + 10.0 + 160.0 * i as f64,
            y + 14.0,
            esc(label)
        );
    }
}

/// The picture.
pub fn svg(r: &DrillsReport) -> String {
    let rows = r.drills.len() as f64;
    let height = 110.0 + 2.0 * 190.0 + 40.0 + rows * 34.0 + 20.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{height:.0}" font-family="sans-serif">"##
    );
    let _ = writeln!(s, r##"<rect width="100%" height="100%" fill="white"/>"##);
    let _ = writeln!(
        s,
        r##"<text x="20" y="28" font-size="18" font-weight="bold">Drills: {}</text><text x="20" y="46" font-size="12">{:?} scale, {} cpus, {}</text>"##,
        esc(&r.verdict),
        r.scale,
        r.host.cpus,
        esc(&r.generated_at)
    );
    let _ = writeln!(
        s,
        r##"<text x="20" y="64" font-size="12"><tspan fill="{CAND}">candidate</tspan> {}   <tspan fill="{REFC}">reference</tspan> {}</text>"##,
        esc(r.candidate.version.as_deref().unwrap_or(&r.candidate.path)),
        esc(r
            .reference
            .as_ref()
            .map_or("none (candidate ran alone)", |b| b
                .version
                .as_deref()
                .unwrap_or(&b.path)))
    );
    let soak = r.drills.iter().find(|d| d.name == "soak");
    let sides: Vec<(&str, &str, &Outcome)> = soak
        .map(|d| {
            std::iter::once(("candidate", CAND, &d.candidate))
                .chain(d.reference.as_ref().map(|o| ("reference", REFC, o)))
                .collect()
        })
        .unwrap_or_default();
    let mem: Vec<Line<'_>> = sides
        .iter()
        .map(|(l, c, o)| {
            (
                *l,
                *c,
                o.series
                    .iter()
                    .map(|p| (p.t_s, p.rss_bytes as f64 / 1024.0 / 1024.0))
                    .collect(),
            )
        })
        .collect();
    let fds: Vec<Line<'_>> = sides
        .iter()
        .map(|(l, c, o)| {
            (
                *l,
                *c,
                o.series.iter().map(|p| (p.t_s, p.fds as f64)).collect(),
            )
        })
        .collect();
    chart(&mut s, 90.0, "soak: resident memory", "MiB", &mem);
    chart(&mut s, 280.0, "soak: open descriptors", "fds", &fds);
    let mut y = 490.0;
    let _ = writeln!(
        s,
        r##"<text x="20" y="{y:.0}" font-size="14" font-weight="bold">Each drill's key figure (bar length relative within the drill)</text>"##
    );
    y += 14.0;
    for d in &r.drills {
        let both: Vec<(&str, &Outcome)> = std::iter::once((CAND, &d.candidate))
            .chain(d.reference.as_ref().map(|o| (REFC, o)))
            .collect();
        let max = both
            .iter()
            .map(|(_, o)| o.key_figure.value.abs())
            .fold(0.0f64, f64::max)
            .max(1e-9);
        let _ = writeln!(
            s,
            r##"<text x="20" y="{:.0}" font-size="12">{}</text><text x="20" y="{:.0}" font-size="10" fill="#555">{}</text>"##,
            y + 12.0,
            esc(&d.name),
            y + 24.0,
            esc(&d.candidate.key_figure.name)
        );
        for (k, (color, o)) in both.iter().enumerate() {
            let yy = y + 2.0 + 14.0 * k as f64;
            let len = 360.0 * o.key_figure.value.abs() / max;
            let _ = writeln!(
                s,
                r##"<rect x="200" y="{yy:.0}" width="{len:.1}" height="11" fill="{color}"/><text x="{:.0}" y="{:.0}" font-size="10">{} {}</text><text x="680" y="{:.0}" font-size="11" font-weight="bold" fill="{}">{}</text>"##,
                205.0 + len,
                yy + 9.0,
                fmt_num(o.key_figure.value),
                esc(&o.key_figure.unit),
                yy + 9.0,
                verdict_color(o.verdict),
                o.verdict.as_str()
            );
        }
        y += 34.0;
    }
    let _ = writeln!(s, "</svg>");
    s
}
