//! `cargo xtask gate`: the migration's one go/no-go. It runs the dual-run, the quick drills
//! and the quick cutover rehearsal (what `cargo xtask dualrun`, `cargo xtask drill --quick`
//! and `cargo xtask cutover --quick` do) against the same candidate and reference, then
//! writes `artifacts/gate/gate-report.json` and `gate-report.md` (schema:
//! `artifacts/gate/SCHEMA.md`, `artifacts/gate/schema.json`).
//!
//! Each part gets a status from its own report: `PASS`; `PARTIAL` (it passed, but without a
//! C build — "no reference" mode — or with steps or drills that could not run here);
//! `FAIL`; `ERROR` (it could not run to the end); `SKIPPED` (`--skip`, or the part skipped
//! itself). The verdict is `GO` only when every part PASSes; with `--allow-partial`, PARTIAL
//! and skipped parts are accepted too (a FAIL or an ERROR never is, and at least one part
//! must have run). The exit status is the verdict: 0 GO, 1 NO-GO (2: a usage error).
//!
//! The Markdown is also appended to `--summary PATH`, by default to `$GITHUB_STEP_SUMMARY`
//! when that is set (a GitHub Actions job summary), followed by each part's own Markdown.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use drills::report::Binary;
use parity::report::{md_cell, md_code, HostInfo};
use serde::{Deserialize, Serialize};

/// The gate report's schema version.
pub const SCHEMA_VERSION: &str = "1.0.0";
/// The JSON report's file name.
pub const REPORT_JSON: &str = "gate-report.json";
/// The Markdown report's file name.
pub const REPORT_MD: &str = "gate-report.md";
/// The environment variable GitHub Actions points at the job summary file.
pub const SUMMARY_ENV: &str = "GITHUB_STEP_SUMMARY";

/// Arguments of `cargo xtask gate`.
#[derive(Debug, clap::Args)]
pub struct Gate {
    /// The reference binary (a C MTProxy build); default: $MTPROXY_C_BIN, else every part
    /// runs without a reference ("no reference" mode: each part is PARTIAL at best).
    #[arg(long, value_name = "PATH")]
    reference: Option<PathBuf>,
    /// The candidate binary; default: build `mtproto-proxy` in release mode and use it.
    #[arg(long, value_name = "PATH")]
    candidate: Option<PathBuf>,
    /// Parts not to run (comma-separated); they are listed as SKIPPED.
    #[arg(long, value_delimiter = ',', value_name = "PART,…")]
    skip: Vec<PartName>,
    /// Let PARTIAL and SKIPPED parts count as GO (a FAIL or an ERROR never does).
    #[arg(long)]
    allow_partial: bool,
    /// Requests in the dual-run's load phase.
    #[arg(long, default_value_t = 10_000)]
    requests: usize,
    /// Append the Markdown (the gate's, then each part's) to this file; default:
    /// $GITHUB_STEP_SUMMARY when set.
    #[arg(long, value_name = "PATH")]
    summary: Option<PathBuf>,
    /// The artifacts folder: the parts write into DIR/dualrun, DIR/drills and DIR/cutover,
    /// the gate into DIR/gate.
    #[arg(long, value_name = "DIR")]
    artifacts: Option<PathBuf>,
}

/// The parts of the gate, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PartName {
    /// `cargo xtask dualrun`.
    Dualrun,
    /// `cargo xtask drill --quick`.
    Drills,
    /// `cargo xtask cutover --quick`.
    Cutover,
}

impl PartName {
    /// Every part, in run order.
    pub const ALL: [PartName; 3] = [PartName::Dualrun, PartName::Drills, PartName::Cutover];

    /// The name in the report (and the folder under `artifacts/`).
    pub fn as_str(self) -> &'static str {
        match self {
            PartName::Dualrun => "dualrun",
            PartName::Drills => "drills",
            PartName::Cutover => "cutover",
        }
    }

    /// The part's title in the Markdown.
    fn title(self) -> &'static str {
        match self {
            PartName::Dualrun => "Dual-run",
            PartName::Drills => "Drills (quick)",
            PartName::Cutover => "Cutover rehearsal (quick)",
        }
    }

    /// The part's JSON and Markdown file names.
    fn files(self) -> (&'static str, &'static str) {
        match self {
            PartName::Dualrun => (parity::report::REPORT_FILE, parity::report::REPORT_MD),
            PartName::Drills => (drills::report::REPORT_JSON, drills::report::REPORT_MD),
            PartName::Cutover => (drills::cutover::REPORT_JSON, drills::cutover::REPORT_MD),
        }
    }

    fn of(name: &str) -> Option<PartName> {
        PartName::ALL.into_iter().find(|p| p.as_str() == name)
    }
}

/// A part's status in the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    /// Ran fully, with a reference, and passed.
    Pass,
    /// Passed, but not the full evidence: no reference, or steps/drills skipped.
    Partial,
    /// Failed its own gate.
    Fail,
    /// Could not run to the end (no report, or an error).
    Error,
    /// Not run (`--skip`, or the part skipped itself).
    Skipped,
}

impl Status {
    /// `PASS`, `PARTIAL`, `FAIL`, `ERROR` or `SKIPPED`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Partial => "PARTIAL",
            Status::Fail => "FAIL",
            Status::Error => "ERROR",
            Status::Skipped => "SKIPPED",
        }
    }
}

/// One part of the gate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Part {
    /// `dualrun`, `drills` or `cutover`.
    pub name: String,
    /// The part's status in the gate.
    pub status: Status,
    /// The part report's own verdict (`PASS`, `FAIL: soak`, `PARTIAL`, …), when it ran.
    pub verdict: Option<String>,
    /// `reference` (a C build ran) or `self` (no reference: the candidate against itself,
    /// or alone), when it ran.
    pub mode: Option<String>,
    /// The part's JSON report, relative to the gate report's folder.
    pub report: Option<String>,
    /// The part's Markdown report, relative to the gate report's folder.
    pub markdown: Option<String>,
    /// Why the part is PARTIAL or SKIPPED (no reference, what was skipped).
    pub notes: Vec<String>,
    /// Why it FAILed or could not run, one line each.
    pub failures: Vec<String>,
    /// Wall time of the part, seconds.
    pub duration_s: f64,
}

impl Part {
    fn new(name: PartName, status: Status) -> Self {
        Self {
            name: name.as_str().into(),
            status,
            verdict: None,
            mode: None,
            report: None,
            markdown: None,
            notes: Vec::new(),
            failures: Vec::new(),
            duration_s: 0.0,
        }
    }

    /// A part not run, and why.
    pub fn skipped(name: PartName, why: &str) -> Self {
        let mut p = Self::new(name, Status::Skipped);
        p.notes.push(why.into());
        p
    }

    /// A part that could not run to the end.
    pub fn error(name: PartName, e: &anyhow::Error) -> Self {
        let mut p = Self::new(name, Status::Error);
        p.failures.push(format!("did not complete: {e:#}"));
        p
    }

    /// Status from what the part found: failures → FAIL, else notes → PARTIAL, else PASS.
    fn judged(mut self) -> Self {
        self.status = if !self.failures.is_empty() {
            Status::Fail
        } else if !self.notes.is_empty() {
            Status::Partial
        } else {
            Status::Pass
        };
        self
    }

    /// Links the part's reports, written into `dir`, relative to the gate's folder
    /// `gate_dir`.
    fn link(&mut self, name: PartName, dir: &Path, gate_dir: &Path) {
        let (json, md) = name.files();
        let rel = |file: &str| relative(&dir.join(file), gate_dir);
        self.report = Some(rel(json));
        self.markdown = Some(rel(md));
    }

    fn title(&self) -> &str {
        match PartName::of(&self.name) {
            Some(name) => name.title(),
            None => &self.name,
        }
    }
}

/// The gate's view of a dual-run report.
pub fn from_dualrun(r: &parity::report::Report) -> Part {
    let mut p = Part::new(PartName::Dualrun, Status::Pass);
    p.verdict = Some(r.verdict_label().into());
    p.mode = Some(if r.self_mode() { "self" } else { "reference" }.into());
    if r.verdict.skipped {
        p.status = Status::Skipped;
        p.notes.extend(r.verdict.reasons.iter().cloned());
        return p;
    }
    if r.self_mode() {
        p.notes
            .push("no reference: the candidate was compared against a copy of itself".into());
    }
    p.notes
        .extend(r.warnings.iter().filter(|w| w.contains("skipped")).cloned());
    if !r.verdict.pass {
        p.failures = r.verdict.reasons.clone();
        if p.failures.is_empty() {
            p.failures.push("the dual-run verdict is FAIL".into());
        }
    }
    p.judged()
}

/// The gate's view of a drills report (the candidate's verdicts gate; WARN does not).
pub fn from_drills(r: &drills::report::DrillsReport) -> Part {
    let mut p = Part::new(PartName::Drills, Status::Pass);
    p.verdict = Some(r.verdict.clone());
    p.mode = Some(
        if r.reference.is_some() {
            "reference"
        } else {
            "self"
        }
        .into(),
    );
    if r.reference.is_none() {
        p.notes
            .push("no reference: the drills ran against the candidate alone".into());
    }
    for (name, why) in r.candidate_skips() {
        p.notes.push(format!("{name} skipped: {why}"));
    }
    for d in &r.drills {
        if d.candidate.verdict == drills::Verdict::Fail {
            p.failures.push(format!("{}: {}", d.name, d.candidate.why));
        }
    }
    p.judged()
}

/// The gate's view of a cutover report.
pub fn from_cutover(r: &drills::cutover::CutoverReport) -> Part {
    let mut p = Part::new(PartName::Cutover, Status::Pass);
    p.verdict = Some(r.verdict.clone());
    p.mode = Some(r.mode.clone());
    if r.mode == "self" {
        p.notes.push(
            "no reference: the candidate played the C build's role; no switch from or back to C was rehearsed"
                .into(),
        );
    }
    for (name, why) in r.skipped_steps() {
        p.notes.push(format!("{name} skipped: {why}"));
    }
    p.failures = r.failures.clone();
    if r.verdict == "FAIL" && p.failures.is_empty() {
        p.failures.push("the rehearsal's verdict is FAIL".into());
    }
    p.judged()
}

/// The go/no-go of a set of parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// GO.
    pub go: bool,
    /// Every part ran fully and passed.
    pub complete: bool,
    /// One line per part that is not PASS (why NO-GO, or the caveats of a partial GO).
    pub reasons: Vec<String>,
}

/// Combines the parts: GO when every part PASSes; with `allow_partial`, PARTIAL and
/// SKIPPED parts are accepted, but never a FAIL or an ERROR, and something must have run.
pub fn decide(parts: &[Part], allow_partial: bool) -> Decision {
    let complete = !parts.is_empty() && parts.iter().all(|p| p.status == Status::Pass);
    let ran = parts
        .iter()
        .any(|p| matches!(p.status, Status::Pass | Status::Partial));
    let mut go = ran;
    let mut reasons = Vec::new();
    for p in parts {
        let lines = match p.status {
            Status::Pass => continue,
            Status::Fail | Status::Error => {
                go = false;
                &p.failures
            }
            Status::Partial | Status::Skipped => {
                go &= allow_partial;
                &p.notes
            }
        };
        let mut why = lines.iter().take(3).cloned().collect::<Vec<_>>().join("; ");
        if lines.len() > 3 {
            let _ = write!(why, "; and {} more", lines.len() - 3);
        }
        reasons.push(format!("{}: {}: {why}", p.name, p.status.as_str()));
    }
    if !ran {
        reasons.push("no part ran".into());
    }
    Decision {
        go,
        complete,
        reasons,
    }
}

/// The gate report (`artifacts/gate/gate-report.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateReport {
    /// [`SCHEMA_VERSION`].
    pub schema_version: String,
    /// RFC 3339, UTC.
    pub generated_at: String,
    /// The machine.
    pub host: HostInfo,
    /// The port.
    pub candidate: Binary,
    /// The C build; `null` in "no reference" mode.
    pub reference: Option<Binary>,
    /// `reference` (a C build was given) or `self` ("no reference" mode).
    pub mode: String,
    /// Whether PARTIAL and SKIPPED parts were allowed to count as GO.
    pub allow_partial: bool,
    /// Every part, in run order (skipped ones too).
    pub parts: Vec<Part>,
    /// `GO` or `NO-GO`.
    pub verdict: String,
    /// Every part ran fully and passed.
    pub complete: bool,
    /// One line per part that is not PASS.
    pub reasons: Vec<String>,
    /// Wall time of the whole gate, seconds.
    pub duration_s: f64,
}

impl GateReport {
    /// A report whose verdict follows from `parts` ([`decide`]).
    pub fn new(
        generated_at: String,
        host: HostInfo,
        candidate: Binary,
        reference: Option<Binary>,
        allow_partial: bool,
        parts: Vec<Part>,
        duration_s: f64,
    ) -> Self {
        let d = decide(&parts, allow_partial);
        Self {
            schema_version: SCHEMA_VERSION.into(),
            generated_at,
            host,
            mode: if reference.is_some() {
                "reference"
            } else {
                "self"
            }
            .into(),
            candidate,
            reference,
            allow_partial,
            parts,
            verdict: if d.go { "GO" } else { "NO-GO" }.into(),
            complete: d.complete,
            reasons: d.reasons,
            duration_s,
        }
    }

    /// 0 on GO, 1 on NO-GO.
    pub fn exit_code(&self) -> i32 {
        i32::from(self.verdict != "GO")
    }

    /// Writes the JSON and the Markdown into `dir`.
    ///
    /// # Errors
    /// When the folder or a file cannot be written.
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        std::fs::write(
            dir.join(REPORT_JSON),
            serde_json::to_string_pretty(self)? + "\n",
        )?;
        std::fs::write(dir.join(REPORT_MD), self.to_markdown())?;
        Ok(())
    }

    /// The Markdown (`gate-report.md`, fit for a CI job summary): the verdict, the
    /// binaries and the mode, one line and link per part, and why it is not GO (or the
    /// caveats of a partial GO).
    pub fn to_markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# Migration gate: {}\n", self.verdict);
        if self.mode == "self" {
            s.push_str(
                "> **No reference mode.** No C build was given (`--reference PATH` or \
                 `MTPROXY_C_BIN`): every part ran the candidate against itself or alone. \
                 Nothing here shows parity with the C build.\n\n",
            );
        }
        let count = |st: Status| self.parts.iter().filter(|p| p.status == st).count();
        let mut tally = Vec::new();
        for st in [
            Status::Pass,
            Status::Partial,
            Status::Fail,
            Status::Error,
            Status::Skipped,
        ] {
            let n = count(st);
            if n > 0 {
                tally.push(format!("{n} {}", st.as_str()));
            }
        }
        let _ = writeln!(
            s,
            "- **Verdict:** {} — {}: {}",
            self.verdict,
            parity::report::plural(self.parts.len(), "part"),
            tally.join(", ")
        );
        let _ = writeln!(
            s,
            "- **Rule:** GO only when every part PASSes; {}",
            if self.allow_partial {
                "PARTIAL and SKIPPED parts are accepted here (`--allow-partial`); FAIL and ERROR never are"
            } else {
                "PARTIAL (no reference, or steps skipped) and SKIPPED parts count as NO-GO"
            }
        );
        let binary = |b: &Binary| {
            let mut t = md_code(&b.path);
            if let Some(v) = &b.version {
                let _ = write!(t, " — {}", md_cell(v));
            }
            t
        };
        let _ = writeln!(s, "- **Candidate:** {}", binary(&self.candidate));
        let _ = writeln!(
            s,
            "- **Reference (C):** {}",
            self.reference
                .as_ref()
                .map_or_else(|| "none — \"no reference\" mode".to_string(), binary)
        );
        let _ = writeln!(s, "{}", self.host.markdown_line());
        let _ = writeln!(
            s,
            "- **Generated:** {} — the gate took {} (min:s)",
            self.generated_at,
            clock(self.duration_s)
        );

        s.push_str(
            "\n| Part | Status | Its verdict | Mode | Took (min:s) | Report |\n|---|---|---|---|---:|---|\n",
        );
        for p in &self.parts {
            let status = match p.status {
                Status::Fail | Status::Error => format!("**{}**", p.status.as_str()),
                st => st.as_str().to_string(),
            };
            let mode = match p.mode.as_deref() {
                Some("reference") => "with C".to_string(),
                Some("self") => "**no reference**".to_string(),
                Some(m) => md_cell(m),
                None => "—".to_string(),
            };
            let link = match (&p.markdown, &p.report) {
                (Some(md), Some(json)) => format!(
                    "[{}]({}) ([JSON]({}))",
                    md_cell(file_name(md)),
                    link_target(md),
                    link_target(json)
                ),
                (None, Some(json)) => format!("[JSON]({})", link_target(json)),
                _ if p.status == Status::Skipped => md_cell(&p.notes.join("; ")),
                _ => "—".to_string(),
            };
            let _ = writeln!(
                s,
                "| {} | {status} | {} | {mode} | {} | {link} |",
                p.title(),
                p.verdict
                    .as_deref()
                    .map_or_else(|| "—".to_string(), md_cell),
                if p.status == Status::Skipped {
                    "—".to_string()
                } else {
                    clock(p.duration_s)
                }
            );
        }

        let not_pass: Vec<&Part> = self
            .parts
            .iter()
            .filter(|p| p.status != Status::Pass)
            .collect();
        if !not_pass.is_empty() {
            let _ = writeln!(
                s,
                "\n## {}\n",
                if self.verdict == "GO" {
                    "Caveats (GO on partial evidence)"
                } else {
                    "Why NO-GO"
                }
            );
            for p in not_pass {
                let _ = writeln!(s, "- **{}** — {}", p.title(), p.status.as_str());
                for f in &p.failures {
                    let _ = writeln!(s, "  - FAIL: {}", md_cell(f));
                }
                for n in &p.notes {
                    let _ = writeln!(s, "  - {}", md_cell(n));
                }
            }
            if !self
                .parts
                .iter()
                .any(|p| matches!(p.status, Status::Pass | Status::Partial))
            {
                s.push_str("- no part ran\n");
            }
        } else {
            s.push_str("\nEvery part ran fully against the C build and passed.\n");
        }
        s
    }
}

/// `m:ss` of a number of seconds.
fn clock(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    format!("{}:{:02}", s / 60, s % 60)
}

/// The last component of a `/`-separated path.
fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// A Markdown link target: spaces and parentheses escaped.
fn link_target(path: &str) -> String {
    path.replace(' ', "%20")
        .replace('(', "%28")
        .replace(')', "%29")
}

/// `path` relative to the folder `from`: inside it, or beside it (`../dualrun/…`); else
/// `path` as it is.
fn relative(path: &Path, from: &Path) -> String {
    if let Ok(rest) = path.strip_prefix(from) {
        return rest.display().to_string();
    }
    match from.parent().map(|base| path.strip_prefix(base)) {
        Some(Ok(rest)) => format!("../{}", rest.display()),
        _ => path.display().to_string(),
    }
}

/// Progress lines of a part, tagged.
fn progress(tag: &'static str) -> Arc<dyn Fn(&str) + Send + Sync> {
    Arc::new(move |msg: &str| eprintln!("[gate:{tag}] {}", msg.trim_start_matches('\r')))
}

impl Gate {
    /// Runs the parts, writes the gate report, appends the summary, and returns an error
    /// (exit status 1) on NO-GO.
    ///
    /// # Errors
    /// When the candidate cannot be built, a binary is missing, the report cannot be
    /// written, or the verdict is NO-GO.
    pub fn run(self) -> anyhow::Result<()> {
        let started = Instant::now();
        let root = crate::workspace::project_root();
        let artifacts = self
            .artifacts
            .clone()
            .unwrap_or_else(|| root.join("artifacts"));
        let gate_dir = artifacts.join("gate");
        let reference = crate::args::reference_or_env(self.reference.clone());
        if let Some(r) = &reference {
            if !r.is_file() {
                bail!("the reference {} is not a file", r.display());
            }
        }
        let candidate = crate::args::candidate_or_build(self.candidate.clone())?;
        if !candidate.is_file() {
            bail!("the candidate {} is not a file", candidate.display());
        }
        let rt = tokio::runtime::Runtime::new().context("starting tokio")?;
        let probe = |b: &Path| Binary {
            path: b.display().to_string(),
            version: rt.block_on(parity::process::probe_version(b)),
        };
        let candidate_info = probe(&candidate);
        let reference_info = reference.as_deref().map(probe);
        eprintln!(
            "[gate] candidate {}; reference {}",
            candidate.display(),
            reference.as_deref().map_or_else(
                || "none: \"no reference\" mode (every part is PARTIAL at best)".to_string(),
                |r| r.display().to_string()
            )
        );
        let mut parts = Vec::new();
        for name in PartName::ALL {
            if self.skip.contains(&name) {
                eprintln!("[gate] {}: skipped (--skip)", name.as_str());
                parts.push(Part::skipped(
                    name,
                    &format!("not run: --skip {}", name.as_str()),
                ));
                continue;
            }
            eprintln!("[gate] {}: running", name.as_str());
            let t = Instant::now();
            let dir = artifacts.join(name.as_str());
            let ran = match name {
                PartName::Dualrun => {
                    self.dualrun(&rt, &root, &candidate, reference.as_deref(), &dir)
                }
                PartName::Drills => drills_part(&rt, &candidate, reference.as_deref(), &dir),
                PartName::Cutover => cutover_part(&candidate, reference.as_deref(), &dir),
            };
            let mut part = match ran {
                Ok(mut p) => {
                    p.link(name, &dir, &gate_dir);
                    p
                }
                Err(e) => Part::error(name, &e),
            };
            part.duration_s = (t.elapsed().as_secs_f64() * 10.0).round() / 10.0;
            eprintln!(
                "[gate] {}: {} in {}",
                name.as_str(),
                part.status.as_str(),
                clock(part.duration_s)
            );
            parts.push(part);
        }
        let report = GateReport::new(
            mtproxy::clock::rfc3339(std::time::SystemTime::now()),
            HostInfo::detect(),
            candidate_info,
            reference_info,
            self.allow_partial,
            parts,
            (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        );
        report.write(&gate_dir)?;
        println!("{}", report.to_markdown());
        println!(
            "report: {} and {}",
            gate_dir.join(REPORT_JSON).display(),
            gate_dir.join(REPORT_MD).display()
        );
        let summary = self.summary.clone().or_else(|| {
            std::env::var_os(SUMMARY_ENV)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        });
        if let Some(path) = summary {
            append_summary(&path, &report, &artifacts)?;
            println!("summary appended to {}", path.display());
        }
        if report.exit_code() != 0 {
            bail!("gate: NO-GO");
        }
        Ok(())
    }

    fn dualrun(
        &self,
        rt: &tokio::runtime::Runtime,
        root: &Path,
        candidate: &Path,
        reference: Option<&Path>,
        dir: &Path,
    ) -> anyhow::Result<Part> {
        let mut opts = parity::dualrun::DualrunOptions::new(candidate);
        opts.reference = reference.map(Path::to_path_buf);
        // Resolved above (with MTPROXY_C_BIN): every part sees the same reference.
        opts.reference_from_env = false;
        opts.requests = Some(self.requests);
        opts.out_dir = dir.to_path_buf();
        opts.divergences = Some(root.join("parity").join("divergences.json"));
        opts.driver = Some(Arc::new(parity::driver::SimDriver::default()));
        opts.progress = Some(progress("dualrun"));
        let report = rt.block_on(parity::dualrun::run(opts))?;
        Ok(from_dualrun(&report))
    }
}

fn drills_part(
    rt: &tokio::runtime::Runtime,
    candidate: &Path,
    reference: Option<&Path>,
    dir: &Path,
) -> anyhow::Result<Part> {
    let opts = drills::report::RunOptions {
        candidate: parity::subject::Subject::new("candidate", candidate),
        reference: reference.map(|r| parity::subject::Subject::new("reference", r)),
        only: Vec::new(),
        settings: drills::Settings::new(drills::Scale::Quick, 2),
        out_dir: dir.to_path_buf(),
        progress: Some(progress("drills")),
    };
    let report = rt.block_on(drills::report::run(opts))?;
    Ok(from_drills(&report))
}

fn cutover_part(candidate: &Path, reference: Option<&Path>, dir: &Path) -> anyhow::Result<Part> {
    let report = drills::cutover::run_blocking(drills::cutover::CutoverOptions {
        candidate: candidate.to_path_buf(),
        reference: reference.map(Path::to_path_buf),
        scale: drills::Scale::Quick,
        only: Vec::new(),
        out_dir: dir.to_path_buf(),
        candidate_env: Vec::new(),
        isolate: true,
        images: None,
    })?;
    for n in &report.notes {
        eprintln!("[gate:cutover] note: {n}");
    }
    Ok(from_cutover(&report))
}

/// Appends the gate's Markdown, then each part's own Markdown folded in a `<details>`
/// block, to `path` (a CI job summary).
fn append_summary(path: &Path, report: &GateReport, artifacts: &Path) -> anyhow::Result<()> {
    let mut text = report.to_markdown();
    for p in &report.parts {
        let Some(name) = PartName::of(&p.name) else {
            continue;
        };
        if p.markdown.is_none() {
            continue;
        }
        let file = artifacts.join(name.as_str()).join(name.files().1);
        if let Ok(md) = std::fs::read_to_string(&file) {
            let _ = write!(
                text,
                "\n<details><summary>{} — {}</summary>\n\n{md}\n</details>\n",
                p.title(),
                p.status.as_str()
            );
        }
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("open {}", path.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("append to {}", path.display()))?;
    f.write_all(b"\n")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(name: PartName, status: Status) -> Part {
        let mut p = Part::new(name, status);
        p.verdict = Some(status.as_str().into());
        p.mode = Some("reference".into());
        p.duration_s = 61.0;
        p.link(
            name,
            &Path::new("artifacts").join(name.as_str()),
            Path::new("artifacts/gate"),
        );
        match status {
            Status::Fail => p.failures.push(format!("{}: it broke", name.as_str())),
            Status::Error => p.failures.push("did not complete: no report".into()),
            Status::Partial if name == PartName::Cutover => p.notes.push(
                "cutover_c_to_port skipped: needs a private network namespace (root) and nftables"
                    .into(),
            ),
            Status::Partial => {
                p.mode = Some("self".into());
                p.notes.push("no reference: the candidate ran alone".into());
            }
            Status::Skipped => {
                p = Part::skipped(name, &format!("not run: --skip {}", name.as_str()));
            }
            Status::Pass => {}
        }
        p
    }

    fn parts(statuses: [Status; 3]) -> Vec<Part> {
        PartName::ALL
            .into_iter()
            .zip(statuses)
            .map(|(n, s)| part(n, s))
            .collect()
    }

    /// A report built by hand: fixed values only, so the Markdown is a stable snapshot.
    fn fixed_report(statuses: [Status; 3], reference: bool, allow_partial: bool) -> GateReport {
        GateReport::new(
            "2026-01-02T03:04:05Z".into(),
            HostInfo {
                hostname: "ci-runner".into(),
                cpus: 2,
                kernel: "6.1.0".into(),
                os: "Debian GNU/Linux 12 (bookworm)".into(),
                arch: "x86_64".into(),
            },
            Binary {
                path: "target/release/mtproto-proxy".into(),
                version: Some("mtproxy-rs 0.1.0".into()),
            },
            reference.then(|| Binary {
                path: "c/objs/bin/mtproto-proxy".into(),
                version: Some("mtproxy-3.0.10".into()),
            }),
            allow_partial,
            parts(statuses),
            725.0,
        )
    }

    use Status::{Error, Fail, Partial, Pass, Skipped};

    #[test]
    fn go_only_when_every_part_passes() {
        let d = decide(&parts([Pass, Pass, Pass]), false);
        assert!(d.go && d.complete && d.reasons.is_empty(), "{d:?}");
        for (statuses, allow) in [
            ([Pass, Fail, Pass], false),
            ([Pass, Fail, Pass], true),
            ([Error, Pass, Pass], true),
            ([Pass, Pass, Partial], false),
            ([Pass, Skipped, Pass], false),
            ([Skipped, Skipped, Skipped], true),
        ] {
            let d = decide(&parts(statuses), allow);
            assert!(!d.go, "{statuses:?} allow_partial={allow}: {d:?}");
            assert!(!d.complete);
            assert!(!d.reasons.is_empty());
        }
    }

    #[test]
    fn allow_partial_accepts_partial_and_skipped_but_says_so() {
        let d = decide(&parts([Partial, Skipped, Pass]), true);
        assert!(d.go, "{d:?}");
        assert!(!d.complete);
        assert_eq!(
            d.reasons,
            vec![
                "dualrun: PARTIAL: no reference: the candidate ran alone",
                "drills: SKIPPED: not run: --skip drills",
            ]
        );
    }

    #[test]
    fn nothing_run_is_never_go() {
        let d = decide(&[], true);
        assert!(!d.go && !d.complete);
        assert_eq!(d.reasons, vec!["no part ran"]);
    }

    #[test]
    fn the_exit_status_is_the_verdict() {
        assert_eq!(fixed_report([Pass, Pass, Pass], true, false).exit_code(), 0);
        assert_eq!(fixed_report([Pass, Fail, Pass], true, false).exit_code(), 1);
        assert_eq!(
            fixed_report([Partial, Partial, Partial], false, false).exit_code(),
            1
        );
    }

    #[test]
    fn markdown_names_the_failing_part_and_its_reason() {
        let r = fixed_report([Pass, Fail, Partial], true, false);
        assert_eq!(r.verdict, "NO-GO");
        let md = r.to_markdown();
        assert!(md.starts_with("# Migration gate: NO-GO\n"), "{md}");
        assert!(md.contains("## Why NO-GO"), "{md}");
        assert!(md.contains("- **Drills (quick)** — FAIL"), "{md}");
        assert!(md.contains("FAIL: drills: it broke"), "{md}");
        assert!(
            md.contains("[drills-report.md](../drills/drills-report.md)"),
            "{md}"
        );
        insta::assert_snapshot!("gate_no_go", md);
    }

    #[test]
    fn markdown_of_a_go() {
        let r = fixed_report([Pass, Pass, Pass], true, false);
        assert_eq!(r.verdict, "GO");
        insta::assert_snapshot!("gate_go", r.to_markdown());
    }

    #[test]
    fn markdown_in_no_reference_mode_with_allow_partial() {
        let r = fixed_report([Partial, Partial, Skipped], false, true);
        assert_eq!(r.verdict, "GO");
        let md = r.to_markdown();
        assert!(md.contains("No reference mode"), "{md}");
        assert!(md.contains("Caveats (GO on partial evidence)"), "{md}");
        insta::assert_snapshot!("gate_partial_allowed", md);
    }

    #[test]
    fn a_written_report_matches_the_schema() {
        let dir = std::env::temp_dir().join(format!("xtask-gate-schema-{}", std::process::id()));
        let mut r = fixed_report([Pass, Error, Skipped], false, false);
        r.parts[1].report = None;
        r.parts[1].markdown = None;
        r.write(&dir).unwrap();
        let schema = crate::workspace::project_root().join("artifacts/gate/schema.json");
        let result = parity::report::validate_against_schema(&dir.join(REPORT_JSON), &schema);
        let back: GateReport =
            serde_json::from_str(&std::fs::read_to_string(dir.join(REPORT_JSON)).unwrap()).unwrap();
        let md = std::fs::read_to_string(dir.join(REPORT_MD)).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        result.unwrap();
        assert_eq!(back, r);
        assert_eq!(md, r.to_markdown());
    }

    #[test]
    fn parts_are_judged_from_their_reports() {
        let mut c = drills::cutover::CutoverReport {
            schema_version: "1.0.0".into(),
            generated_at: "2026-01-02T03:04:05Z".into(),
            host: HostInfo {
                hostname: "h".into(),
                cpus: 2,
                kernel: "k".into(),
                os: "o".into(),
                arch: "a".into(),
            },
            scale: drills::Scale::Quick,
            timing: drills::cutover::Timing::for_scale(drills::Scale::Quick),
            candidate: "cand".into(),
            reference: Some("ref".into()),
            runtime: "local".into(),
            platform: None,
            images: Default::default(),
            mode: "reference".into(),
            isolated: true,
            notes: Vec::new(),
            steps: Vec::new(),
            verdict: "PASS".into(),
            failures: Vec::new(),
        };
        assert_eq!(from_cutover(&c).status, Pass);
        c.mode = "self".into();
        let p = from_cutover(&c);
        assert_eq!(p.status, Partial);
        assert!(p.notes[0].starts_with("no reference"), "{p:?}");
        c.failures = vec!["upgrade_port: lost (value 3, threshold == 0)".into()];
        c.verdict = "FAIL".into();
        let p = from_cutover(&c);
        assert_eq!(p.status, Fail);
        assert_eq!(p.failures, c.failures);
    }

    #[test]
    fn part_reports_are_linked_relative_to_the_gate_folder() {
        assert_eq!(
            relative(
                Path::new("a/artifacts/dualrun/dualrun-report.md"),
                Path::new("a/artifacts/gate")
            ),
            "../dualrun/dualrun-report.md"
        );
        assert_eq!(
            relative(
                Path::new("a/artifacts/gate/x.md"),
                Path::new("a/artifacts/gate")
            ),
            "x.md"
        );
    }
}
