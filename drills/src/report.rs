//! Running the suite against both binaries, and its report: `drills-report.json` (schema:
//! `artifacts/drills/SCHEMA.md`, `artifacts/drills/schema.json`), `drills-report.md` (a
//! Markdown summary fit for a CI job summary) and `drills.svg`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parity::report::{md_cell, md_code, plural, HostInfo};
use parity::subject::Subject;
use serde::{Deserialize, Serialize};

use crate::outcome::{Outcome, Verdict};
use crate::setup::{Scale, Settings};
use crate::suite;

/// Report schema version.
pub const SCHEMA_VERSION: &str = "1.0.0";
/// File names inside the output folder.
pub const REPORT_JSON: &str = "drills-report.json";
/// The picture.
pub const REPORT_SVG: &str = "drills.svg";
/// The Markdown summary ([`DrillsReport::to_markdown`]).
pub const REPORT_MD: &str = "drills-report.md";

/// Progress callback (the xtask prints it).
pub type Progress = Arc<dyn Fn(&str) + Send + Sync>;

/// What to run.
#[derive(Clone)]
pub struct RunOptions {
    /// The port (gated).
    pub candidate: Subject,
    /// The C build (reported, not gated); `None`: the candidate runs alone.
    pub reference: Option<Subject>,
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

    /// Writes the JSON, the Markdown summary and the picture into `dir`.
    ///
    /// # Errors
    /// When the folder or a file cannot be written.
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join(REPORT_JSON), serde_json::to_string_pretty(self)?)?;
        std::fs::write(dir.join(REPORT_MD), self.to_markdown())?;
        std::fs::write(dir.join(REPORT_SVG), svg(self))?;
        Ok(())
    }

    /// The drills the candidate could not run here (SKIP), with the reason.
    pub fn candidate_skips(&self) -> Vec<(&str, &str)> {
        self.drills
            .iter()
            .filter(|d| d.candidate.verdict == Verdict::Skip)
            .map(|d| (d.name.as_str(), d.candidate.why.as_str()))
            .collect()
    }

    /// The Markdown summary (`drills-report.md`, fit for a CI job summary): the verdict,
    /// the binaries and the scale, every drill's key figure and verdict on both sides, and
    /// the candidate's failures and skips with their reasons.
    pub fn to_markdown(&self) -> String {
        let mut s = String::new();
        let failed = self.candidate_failures();
        let label = if failed.is_empty() {
            "PASS".to_string()
        } else {
            format!("FAIL ({})", failed.join(", "))
        };
        let _ = writeln!(
            s,
            "# Drills: {label}{}\n",
            if self.reference.is_none() {
                " — no reference"
            } else {
                ""
            }
        );
        if self.reference.is_none() {
            s.push_str(
                "> **No reference mode.** No C build was given (`--reference PATH` or \
                 `MTPROXY_C_BIN`): the drills ran against the candidate alone, with nothing to \
                 compare its figures with.\n\n",
            );
        }
        let binary = |b: &Binary| {
            let mut t = md_code(&b.path);
            if let Some(v) = &b.version {
                let _ = write!(t, " — {}", md_cell(v));
            }
            t
        };
        let count = |v: Verdict| {
            self.drills
                .iter()
                .filter(|d| d.candidate.verdict == v)
                .count()
        };
        let _ = writeln!(
            s,
            "- **Verdict:** {} — the candidate: {} PASS, {} WARN, {} FAIL, {} SKIP of {} \
             (its FAILs gate; WARN and SKIP do not; the C build's verdicts are reported, not gated)",
            if failed.is_empty() { "PASS" } else { "FAIL" },
            count(Verdict::Pass),
            count(Verdict::Warn),
            count(Verdict::Fail),
            count(Verdict::Skip),
            plural(self.drills.len(), "drill")
        );
        let _ = writeln!(s, "- **Candidate:** {}", binary(&self.candidate));
        let _ = writeln!(
            s,
            "- **Reference (C):** {}",
            self.reference
                .as_ref()
                .map_or_else(|| "none — the candidate ran alone".to_string(), binary)
        );
        let _ = writeln!(
            s,
            "- **Scale:** {}, soak {}",
            match self.scale {
                Scale::Tiny => "tiny (a smoke test of the drill code)",
                Scale::Quick => "quick",
                Scale::Full => "full",
            },
            if self.soak_seconds.is_multiple_of(60) {
                format!("{} min", self.soak_seconds / 60)
            } else {
                format!("{} s", self.soak_seconds)
            }
        );
        let _ = writeln!(s, "{}", self.host.markdown_line());
        let _ = writeln!(s, "- **Generated:** {}", self.generated_at);

        if !failed.is_empty() {
            s.push_str("\n## Failures (the candidate)\n\n");
            for d in self
                .drills
                .iter()
                .filter(|d| d.candidate.verdict == Verdict::Fail)
            {
                let _ = writeln!(
                    s,
                    "- {}: {} (rule: {})",
                    md_code(&d.name),
                    md_cell(&d.candidate.why),
                    md_cell(&d.candidate.threshold)
                );
            }
        }
        let skips = self.candidate_skips();
        if !skips.is_empty() {
            s.push_str("\n## Skipped on the candidate (not run here)\n\n");
            for (name, why) in skips {
                let _ = writeln!(s, "- {}: {}", md_code(name), md_cell(why));
            }
        }

        s.push_str(
            "\n## Drills\n\n| Drill | Key figure | Candidate | Reference (C) | Rule as applied |\n\
             |---|---|---|---|---|\n",
        );
        let side = |o: &Outcome| {
            let v = if o.verdict == Verdict::Fail {
                "**FAIL**"
            } else {
                o.verdict.as_str()
            };
            format!(
                "{v} · {} {}",
                fmt_num(o.key_figure.value),
                md_cell(&o.key_figure.unit)
            )
        };
        for d in &self.drills {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} |",
                md_code(&d.name),
                md_cell(&d.candidate.key_figure.name),
                side(&d.candidate),
                d.reference
                    .as_ref()
                    .map_or_else(|| "not run".to_string(), side),
                md_cell(&d.candidate.threshold)
            );
        }

        let reference_fails: Vec<&DrillEntry> = self
            .drills
            .iter()
            .filter(|d| {
                d.reference
                    .as_ref()
                    .is_some_and(|o| o.verdict == Verdict::Fail)
            })
            .collect();
        if !reference_fails.is_empty() {
            s.push_str("\n## The C build's FAILs (reported, not gated)\n\n");
            for d in reference_fails {
                if let Some(o) = &d.reference {
                    let _ = writeln!(s, "- {}: {}", md_code(&d.name), md_cell(&o.why));
                }
            }
        }
        if !self.notes.is_empty() {
            s.push_str("\n## Notes\n\n");
            for n in &self.notes {
                let _ = writeln!(s, "- {}", md_cell(n));
            }
        }
        s
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
                        suite::names().join(", ")
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
    let sides: Vec<&Subject> = std::iter::once(&opts.candidate)
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
        generated_at: mtproxy::clock::rfc3339(std::time::SystemTime::now()),
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

async fn binary(t: &Subject) -> Binary {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::Figure;

    fn outcome(verdict: Verdict, why: &str, figure: Figure) -> Outcome {
        let threshold = match figure.name.as_str() {
            "rss_delta_mib" => "RSS back within 2 MiB of the start (WARN above 0.5 MiB)",
            "rss_growth_mib" => "RSS growth <= 64 MiB while the middle end stalls",
            _ => "no socket held 10 s after the site hung up",
        };
        let mut o = Outcome::new(verdict, threshold.into(), why.into(), vec![figure]);
        o.elapsed_s = 10.0;
        o
    }

    /// A report built by hand: fixed values only, so the Markdown is a stable snapshot.
    fn fixed_report(with_reference: bool) -> DrillsReport {
        let reference = |v, why: &str, f| with_reference.then(|| outcome(v, why, f));
        let mut r = DrillsReport {
            schema_version: SCHEMA_VERSION.into(),
            generated_at: "2026-01-02T03:04:05Z".into(),
            host: HostInfo {
                hostname: "ci-runner".into(),
                cpus: 2,
                kernel: "6.1.0".into(),
                os: "Debian GNU/Linux 12 (bookworm)".into(),
                arch: "x86_64".into(),
            },
            scale: Scale::Quick,
            soak_seconds: 120,
            candidate: Binary {
                path: "target/release/mtproto-proxy".into(),
                version: Some("mtproxy-rs 0.1.0".into()),
            },
            reference: with_reference.then(|| Binary {
                path: "c/objs/bin/mtproto-proxy".into(),
                version: Some("mtproxy-3.0.10".into()),
            }),
            notes: if with_reference {
                Vec::new()
            } else {
                vec!["no reference: MTPROXY_C_BIN not set and no --reference given; the candidate ran alone".into()]
            },
            drills: vec![
                DrillEntry {
                    name: "fd_churn".into(),
                    rule: "no descriptor leaks".into(),
                    candidate: outcome(
                        Verdict::Warn,
                        "RSS grew 0.65 MiB",
                        Figure::new("rss_delta_mib", 0.65, "MiB"),
                    ),
                    reference: reference(
                        Verdict::Warn,
                        "RSS grew 1.86 MiB",
                        Figure::new("rss_delta_mib", 1.86, "MiB"),
                    ),
                },
                DrillEntry {
                    name: "me_stall".into(),
                    rule: "memory bounded while a middle end stalls".into(),
                    candidate: outcome(
                        Verdict::Fail,
                        "RSS grew 131.88 MiB | over the 64 MiB bound",
                        Figure::new("rss_growth_mib", 131.88, "MiB"),
                    ),
                    reference: reference(
                        Verdict::Fail,
                        "the proxy died",
                        Figure::new("rss_growth_mib", 0.0, "MiB"),
                    ),
                },
                DrillEntry {
                    name: "fronting_half_open".into(),
                    rule: "both sockets released".into(),
                    candidate: outcome(
                        Verdict::Skip,
                        "needs root for port 443",
                        Figure::new("held_sockets", 0.0, "count"),
                    ),
                    reference: reference(
                        Verdict::Skip,
                        "needs root for port 443",
                        Figure::new("held_sockets", 0.0, "count"),
                    ),
                },
            ],
            verdict: String::new(),
        };
        r.verdict = format!("FAIL: {}", r.candidate_failures().join(", "));
        r
    }

    #[test]
    fn markdown_with_a_reference_names_failures_and_skips() {
        let r = fixed_report(true);
        let md = r.to_markdown();
        assert!(md.starts_with("# Drills: FAIL (me_stall)\n"), "{md}");
        insta::assert_snapshot!("drills_with_reference", md);
    }

    #[test]
    fn markdown_without_a_reference_says_so() {
        let md = fixed_report(false).to_markdown();
        assert!(md.contains("No reference mode"), "{md}");
        insta::assert_snapshot!("drills_no_reference", md);
    }
}
