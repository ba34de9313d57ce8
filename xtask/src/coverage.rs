//! `cargo xtask coverage`: the functional coverage report of the C-to-Rust migration,
//! generated (never hand-kept): for each functional domain of the C build, the C sources it
//! corresponds to, our modules, the tests that exercise it, the latest evidence from
//! `artifacts/`, the known divergences, a status, and measured line coverage.
//!
//! Inputs: the domain map `xtask/coverage-domains.json` (modules, test files, tests cited
//! by name, evidence kinds, divergence ids — every one must exist, or the command fails);
//! the tests themselves, found by attribute (`#[test]`, `#[tokio::test]`) in the listed
//! files; the reports in `artifacts/`; `parity/divergences.json`; and line coverage from
//! cargo-tarpaulin (`--measure` runs it; otherwise the last measurement is reused and its
//! age shown).
//!
//! Status rule: `missing` when no test exercises the domain; `covered` when tests do and
//! every evidence kind the domain names is present, passing and newer than the last commit
//! touching the domain's modules; `partial` otherwise (the reasons are listed).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

/// The report's schema version.
const SCHEMA_VERSION: &str = "1.0.0";
/// Where tarpaulin's JSON lands (and is kept for later runs without `--measure`).
const TARPAULIN_JSON: &str = "tarpaulin-report.json";

/// Arguments of `cargo xtask coverage`.
#[derive(Debug, clap::Args)]
pub struct Coverage {
    /// Measure line coverage now with cargo-tarpaulin (`cargo install cargo-tarpaulin`;
    /// the whole `cargo test --workspace` under ptrace: slow). Without it the last
    /// measurement in the output folder is used, with its date.
    #[arg(long)]
    measure: bool,
    /// Where the report goes.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

impl Coverage {
    /// Writes the report.
    ///
    /// # Errors
    /// When the map names something that does not exist, or a file cannot be written.
    pub fn run(self) -> anyhow::Result<()> {
        let root = crate::workspace::project_root();
        let out = self
            .out
            .unwrap_or_else(|| root.join("artifacts").join("coverage"));
        std::fs::create_dir_all(&out)?;
        if self.measure {
            measure(&root, &out)?;
        }
        let report = build(&root, &out)?;
        std::fs::write(
            out.join("coverage-report.json"),
            serde_json::to_string_pretty(&report)? + "\n",
        )?;
        std::fs::write(out.join("coverage-report.md"), markdown(&report))?;
        println!("{}", summary_table(&report));
        println!(
            "report: {} and {}",
            out.join("coverage-report.json").display(),
            out.join("coverage-report.md").display()
        );
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// The map.

#[derive(Debug, Clone, Deserialize)]
struct Map {
    domains: Vec<DomainSpec>,
}

#[derive(Debug, Clone, Deserialize)]
struct DomainSpec {
    id: u32,
    name: String,
    c_sources: Vec<String>,
    modules: Vec<String>,
    test_files: Vec<String>,
    test_names: Vec<String>,
    evidence: Vec<String>,
    divergences: Vec<String>,
}

// ---------------------------------------------------------------------------------------
// The report.

/// The report (`artifacts/coverage/coverage-report.json`).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    schema_version: String,
    generated_at: String,
    /// The commit the report describes.
    commit: Option<String>,
    /// The status rule, as applied.
    rule: String,
    domains: Vec<Domain>,
    /// Every evidence report found in `artifacts/`.
    evidence: BTreeMap<String, Evidence>,
    /// Line coverage, when measured.
    line_coverage: Option<LineCoverage>,
}

#[derive(Debug, Clone, Serialize)]
struct Domain {
    id: u32,
    name: String,
    status: String,
    /// Why it is not `covered`.
    reasons: Vec<String>,
    c_sources: Vec<String>,
    modules: Vec<String>,
    /// `file::function` of every test found.
    tests: Vec<String>,
    evidence: Vec<EvidenceUse>,
    divergences: Vec<String>,
    /// Covered / coverable lines of the domain's Rust modules, when measured.
    line_coverage_percent: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
struct EvidenceUse {
    kind: String,
    /// `ok`, `missing`, `failing` or `stale`.
    state: String,
}

/// One evidence report.
#[derive(Debug, Clone, Serialize)]
struct Evidence {
    path: String,
    generated_at: String,
    verdict: String,
    pass: bool,
    #[serde(skip)]
    unix: u64,
}

#[derive(Debug, Clone, Serialize)]
struct LineCoverage {
    tool: String,
    measured_at: String,
    total_percent: f64,
    covered: u64,
    coverable: u64,
    per_crate: BTreeMap<String, f64>,
    /// Protocol and net modules, least covered first.
    least_covered: Vec<(String, f64)>,
}

// ---------------------------------------------------------------------------------------
// Building it.

fn build(root: &Path, out: &Path) -> anyhow::Result<Report> {
    let map: Map = serde_json::from_str(
        &std::fs::read_to_string(root.join("xtask/coverage-domains.json"))
            .context("reading xtask/coverage-domains.json")?,
    )
    .context("parsing xtask/coverage-domains.json")?;
    let tests = discover_tests(root)?;
    let divergences = divergence_ids(root)?;
    let evidence = load_evidence(root);
    let files = load_line_coverage(root, out);
    let mut errors = Vec::new();
    let mut domains = Vec::new();
    for d in &map.domains {
        domains.push(domain(
            root,
            d,
            &tests,
            &divergences,
            &evidence,
            files.as_ref(),
            &mut errors,
        ));
    }
    if !errors.is_empty() {
        bail!(
            "the domain map names what does not exist:\n  {}",
            errors.join("\n  ")
        );
    }
    let line_coverage = files.as_ref().map(summarize);
    Ok(Report {
        schema_version: SCHEMA_VERSION.into(),
        generated_at: mtproxy::clock::rfc3339(std::time::SystemTime::now()),
        commit: git(root, &["rev-parse", "--short", "HEAD"]),
        rule: "missing: no test exercises the domain; covered: tests do, and every evidence kind the domain names is present, passing and newer than the last commit touching its modules; partial: otherwise".into(),
        domains,
        evidence,
        line_coverage,
    })
}

#[allow(clippy::too_many_arguments)]
fn domain(
    root: &Path,
    d: &DomainSpec,
    tests: &BTreeMap<String, Vec<String>>,
    divergences: &[String],
    evidence: &BTreeMap<String, Evidence>,
    files: Option<&CoverageFiles>,
    errors: &mut Vec<String>,
) -> Domain {
    let tag = format!("domain {} ({})", d.id, d.name);
    for m in &d.modules {
        if !root.join(m).exists() {
            errors.push(format!("{tag}: module {m} does not exist"));
        }
    }
    let mut found = Vec::new();
    for f in &d.test_files {
        match tests.get(f) {
            Some(names) => found.extend(names.iter().map(|n| format!("{f}::{n}"))),
            None => errors.push(format!("{tag}: test file {f} holds no test")),
        }
    }
    for named in &d.test_names {
        let exists = named
            .rsplit_once("::")
            .is_some_and(|(f, n)| tests.get(f).is_some_and(|v| v.iter().any(|t| t == n)));
        if !exists {
            errors.push(format!("{tag}: test {named} does not exist"));
        } else if !found.contains(named) {
            found.push(named.clone());
        }
    }
    for id in &d.divergences {
        if !divergences.contains(id) {
            errors.push(format!(
                "{tag}: divergence {id} is not in parity/divergences.json"
            ));
        }
    }
    let code_changed = last_change(root, &d.modules);
    let mut reasons = Vec::new();
    let uses: Vec<EvidenceUse> = d
        .evidence
        .iter()
        .map(|kind| {
            let state = match evidence.get(kind) {
                None => "missing",
                Some(e) if !e.pass => "failing",
                Some(e) if code_changed.is_some_and(|c| e.unix < c) => "stale",
                Some(_) => "ok",
            };
            if state != "ok" {
                reasons.push(format!("{kind} evidence {state}"));
            }
            EvidenceUse {
                kind: kind.clone(),
                state: state.into(),
            }
        })
        .collect();
    let status = if found.is_empty() {
        reasons.insert(0, "no test found".into());
        "missing"
    } else if reasons.is_empty() {
        "covered"
    } else {
        "partial"
    };
    Domain {
        id: d.id,
        name: d.name.clone(),
        status: status.into(),
        reasons,
        c_sources: d.c_sources.clone(),
        modules: d.modules.clone(),
        tests: found,
        evidence: uses,
        divergences: d.divergences.clone(),
        line_coverage_percent: files.and_then(|f| f.percent_of(&d.modules)),
    }
}

/// Every test function by file (relative path), found by its attribute.
fn discover_tests(root: &Path) -> anyhow::Result<BTreeMap<String, Vec<String>>> {
    let mut out = BTreeMap::new();
    for top in ["proxy", "parity", "vectors", "drills", "xtask"] {
        let mut stack = vec![root.join(top)];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                let p = e.path();
                if p.is_dir() {
                    if p.file_name().is_some_and(|n| n != "target") {
                        stack.push(p);
                    }
                } else if p.extension().is_some_and(|x| x == "rs") {
                    let names = tests_in(&std::fs::read_to_string(&p)?);
                    if !names.is_empty() {
                        let rel = p
                            .strip_prefix(root)
                            .unwrap_or(&p)
                            .to_string_lossy()
                            .into_owned();
                        out.insert(rel, names);
                    }
                }
            }
        }
    }
    Ok(out)
}

/// The names of the functions marked `#[test]` or `#[tokio::test…]` in `source`.
fn tests_in(source: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut marked = false;
    for line in source.lines() {
        let t = line.trim();
        if t.starts_with("#[test]") || t.starts_with("#[tokio::test") {
            marked = true;
            continue;
        }
        if marked {
            if t.starts_with("#[") || t.starts_with("//") {
                continue;
            }
            if let Some(rest) = t
                .split_once("fn ")
                .filter(|(before, _)| !before.contains('('))
                .map(|(_, r)| r)
            {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    names.push(name);
                }
            }
            marked = false;
        }
    }
    names
}

fn divergence_ids(root: &Path) -> anyhow::Result<Vec<String>> {
    let v: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("parity/divergences.json"))
            .context("reading parity/divergences.json")?,
    )?;
    Ok(v["divergences"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["id"].as_str().map(String::from))
        .collect())
}

/// The latest reports in `artifacts/`, by kind.
fn load_evidence(root: &Path) -> BTreeMap<String, Evidence> {
    let mut out = BTreeMap::new();
    let kinds: [(&str, &str); 5] = [
        ("dualrun", "artifacts/dualrun/dualrun-report.json"),
        ("drills", "artifacts/drills/drills-report.json"),
        ("cutover", "artifacts/cutover/cutover-report.json"),
        ("bench", "artifacts/bench/bench-report.json"),
        ("vectors", "artifacts/vectors/vectors-report.json"),
    ];
    for (kind, rel) in kinds {
        let Ok(text) = std::fs::read_to_string(root.join(rel)) else {
            continue;
        };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
            continue;
        };
        if let Some(e) = evidence_of(kind, rel, &v) {
            out.insert(kind.to_string(), e);
        }
    }
    out
}

fn evidence_of(kind: &str, rel: &str, v: &serde_json::Value) -> Option<Evidence> {
    let generated = v["generated_at"]
        .as_str()
        .or_else(|| v["generated"].as_str())?
        .to_string();
    let (verdict, pass) = match kind {
        "dualrun" => {
            let pass = v["verdict"]["pass"].as_bool().unwrap_or(false);
            let skipped = v["verdict"]["skipped"].as_bool().unwrap_or(false);
            (
                if skipped {
                    "SKIPPED"
                } else if pass {
                    "PASS"
                } else {
                    "FAIL"
                }
                .to_string(),
                pass && !skipped,
            )
        }
        "vectors" => {
            let failed = v["failed"].as_u64().unwrap_or(1);
            (
                format!(
                    "{} vectors, {failed} failed",
                    v["total"].as_u64().unwrap_or(0)
                ),
                failed == 0,
            )
        }
        "bench" => {
            let targets = v["targets"].as_array().cloned().unwrap_or_default();
            let missed = targets
                .iter()
                .filter(|t| !t["met"].as_bool().unwrap_or(false))
                .count();
            (
                format!("{} targets, {missed} missed", targets.len()),
                !targets.is_empty() && missed == 0,
            )
        }
        // drills, cutover: a verdict string; cutover's PARTIAL (steps skipped) is not a pass.
        _ => {
            let verdict = v["verdict"].as_str().unwrap_or("").to_string();
            let pass = verdict == "PASS";
            (verdict, pass)
        }
    };
    Some(Evidence {
        path: rel.into(),
        unix: mtproxy::clock::parse_rfc3339(&generated).unwrap_or(0),
        generated_at: generated,
        verdict,
        pass,
    })
}

fn git(root: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(root)
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}

/// When the domain's modules last changed (commit time), if git knows.
fn last_change(root: &Path, modules: &[String]) -> Option<u64> {
    let mut args = vec!["log", "-1", "--format=%ct", "--"];
    args.extend(modules.iter().map(String::as_str));
    git(root, &args)?.parse().ok()
}

// ---------------------------------------------------------------------------------------
// Line coverage.

/// Covered and coverable lines per file (paths relative to the root).
struct CoverageFiles {
    measured_at: String,
    files: BTreeMap<String, (u64, u64)>,
}

impl CoverageFiles {
    fn percent_of(&self, modules: &[String]) -> Option<f64> {
        let (c, t) = modules
            .iter()
            .filter_map(|m| self.files.get(m))
            .fold((0, 0), |(c, t), (fc, ft)| (c + fc, t + ft));
        (t > 0).then(|| percent(c, t))
    }
}

fn percent(c: u64, t: u64) -> f64 {
    (c as f64 * 1000.0 / t.max(1) as f64).round() / 10.0
}

fn measure(root: &Path, out: &Path) -> anyhow::Result<()> {
    let st = Command::new("cargo")
        .current_dir(root)
        .args([
            "tarpaulin",
            "--workspace",
            "--engine",
            "ptrace",
            "--skip-clean",
            // Timing-sensitive tests (drills, rehearsals) may fail when ptrace slows the
            // harness: the lines they ran still count.
            "--no-fail-fast",
            // Its own build folder: tarpaulin's flags would otherwise rebuild everything in
            // target/debug, and the next plain build would rebuild it all again.
            "--target-dir",
            "target/tarpaulin",
            "--timeout",
            "900",
            "--out",
            "Json",
            "--output-dir",
        ])
        .arg(out)
        .status()
        .context("running cargo tarpaulin (cargo install cargo-tarpaulin)")?;
    if !st.success() {
        eprintln!("[coverage] cargo tarpaulin exited {st}; using what it wrote, if anything");
    }
    Ok(())
}

fn load_line_coverage(root: &Path, out: &Path) -> Option<CoverageFiles> {
    let path = out.join(TARPAULIN_JSON);
    let text = std::fs::read_to_string(&path).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let measured_at = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .map_or_else(|_| "unknown".into(), mtproxy::clock::rfc3339);
    Some(CoverageFiles {
        measured_at,
        files: tarpaulin_files(&v, root),
    })
}

/// Per file (relative to `root`): covered and coverable lines, from tarpaulin's JSON.
fn tarpaulin_files(v: &serde_json::Value, root: &Path) -> BTreeMap<String, (u64, u64)> {
    let mut out = BTreeMap::new();
    for f in v["files"].as_array().into_iter().flatten() {
        let path: PathBuf = match &f["path"] {
            serde_json::Value::Array(parts) => parts.iter().filter_map(|p| p.as_str()).collect(),
            serde_json::Value::String(s) => PathBuf::from(s),
            _ => continue,
        };
        // Only the workspace's own sources (not generated files under target/).
        let Ok(rel) = path.strip_prefix(root) else {
            continue;
        };
        let rel = rel.to_string_lossy().into_owned();
        if rel.starts_with("target/") {
            continue;
        }
        let covered = f["covered"].as_u64().unwrap_or(0);
        let coverable = f["coverable"].as_u64().unwrap_or(0);
        out.insert(rel, (covered, coverable));
    }
    out
}

fn summarize(f: &CoverageFiles) -> LineCoverage {
    let (covered, coverable) = f
        .files
        .values()
        .fold((0, 0), |(c, t), (fc, ft)| (c + fc, t + ft));
    let mut crates: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for (path, (c, t)) in &f.files {
        let krate = path.split('/').next().unwrap_or("").to_string();
        let e = crates.entry(krate).or_default();
        e.0 += c;
        e.1 += t;
    }
    let mut least: Vec<(String, f64)> = f
        .files
        .iter()
        .filter(|(p, (_, t))| {
            *t > 0 && (p.starts_with("proxy/src/protocol/") || p.starts_with("proxy/src/net/"))
        })
        .map(|(p, (c, t))| (p.clone(), percent(*c, *t)))
        .collect();
    least.sort_by(|a, b| a.1.total_cmp(&b.1));
    LineCoverage {
        tool: "cargo-tarpaulin (ptrace engine)".into(),
        measured_at: f.measured_at.clone(),
        total_percent: percent(covered, coverable),
        covered,
        coverable,
        per_crate: crates
            .into_iter()
            .map(|(k, (c, t))| (k, percent(c, t)))
            .collect(),
        least_covered: least,
    }
}

// ---------------------------------------------------------------------------------------
// Rendering.

fn summary_table(r: &Report) -> String {
    let mut s = String::from(
        "| # | Domain | Status | Tests | Evidence | Line coverage |\n|---|---|---|---|---|---|\n",
    );
    for d in &r.domains {
        let ev: Vec<String> = d
            .evidence
            .iter()
            .map(|e| format!("{} {}", e.kind, e.state))
            .collect();
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            d.id,
            d.name,
            d.status,
            d.tests.len(),
            if ev.is_empty() {
                "—".into()
            } else {
                ev.join(", ")
            },
            d.line_coverage_percent
                .map_or("not measured".into(), |p| format!("{p:.1} %"))
        ));
    }
    s
}

fn markdown(r: &Report) -> String {
    let mut s = format!(
        "# Functional coverage of the C-to-Rust migration\n\nGenerated by `cargo xtask coverage` at {} (commit {}). Status rule: {}.\n\n",
        r.generated_at,
        r.commit.as_deref().unwrap_or("unknown"),
        r.rule
    );
    s.push_str(&summary_table(r));
    s.push_str("\n## Evidence\n\n| Report | Generated | Verdict |\n|---|---|---|\n");
    for (kind, e) in &r.evidence {
        s.push_str(&format!(
            "| {kind} (`{}`) | {} | {} |\n",
            e.path, e.generated_at, e.verdict
        ));
    }
    if let Some(l) = &r.line_coverage {
        s.push_str(&format!(
            "\n## Line coverage\n\n{} — {:.1} % ({} of {} lines), measured {}.\n\n| Crate | Lines covered |\n|---|---|\n",
            l.tool, l.total_percent, l.covered, l.coverable, l.measured_at
        ));
        for (k, p) in &l.per_crate {
            s.push_str(&format!("| {k} | {p:.1} % |\n"));
        }
        s.push_str("\nLeast-covered protocol and net modules:\n\n");
        for (p, c) in l.least_covered.iter().take(10) {
            s.push_str(&format!("- `{p}`: {c:.1} %\n"));
        }
    } else {
        s.push_str("\n## Line coverage\n\nNot measured: run `cargo xtask coverage --measure` (cargo-tarpaulin).\n");
    }
    for d in &r.domains {
        s.push_str(&format!("\n## {}. {} — {}\n\n", d.id, d.name, d.status));
        if !d.reasons.is_empty() {
            s.push_str(&format!("Why not covered: {}.\n\n", d.reasons.join("; ")));
        }
        s.push_str(&format!("- C sources: {}\n", d.c_sources.join(", ")));
        s.push_str(&format!(
            "- Modules: {}\n",
            d.modules
                .iter()
                .map(|m| format!("`{m}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        if !d.divergences.is_empty() {
            s.push_str(&format!(
                "- Known divergences from C: {}\n",
                d.divergences.join(", ")
            ));
        }
        s.push_str(&format!("- Tests ({}):\n", d.tests.len()));
        for t in &d.tests {
            s.push_str(&format!("  - `{t}`\n"));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch project: a map, one test file, a divergence list, optionally a report.
    fn project(map_tests: &str, report_at: Option<&str>) -> PathBuf {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let root = std::env::temp_dir().join(format!(
            "xtask-coverage-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&root);
        for d in ["xtask", "proxy/src", "parity", "artifacts/vectors"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::write(
            root.join("proxy/src/lib.rs"),
            "#[cfg(test)]\nmod t {\n    #[test]\n    fn it_works() {}\n    #[tokio::test(flavor = \"multi_thread\")]\n    #[allow(x)]\n    async fn async_one() {}\n}\n",
        )
        .unwrap();
        std::fs::write(
            root.join("parity/divergences.json"),
            r#"{"divergences":[{"id":"d1"}]}"#,
        )
        .unwrap();
        std::fs::write(
            root.join("xtask/coverage-domains.json"),
            format!(
                r#"{{"domains":[{{"id":1,"name":"one","c_sources":["a.c"],"modules":["proxy/src/lib.rs"],
                "test_files":["proxy/src/lib.rs"],"test_names":[{map_tests}],"evidence":["vectors"],"divergences":["d1"]}}]}}"#
            ),
        )
        .unwrap();
        if let Some(at) = report_at {
            std::fs::write(
                root.join("artifacts/vectors/vectors-report.json"),
                format!(r#"{{"generated_at":"{at}","total":5,"failed":0}}"#),
            )
            .unwrap();
        }
        root
    }

    #[test]
    fn tests_are_found_by_attribute() {
        let names = tests_in(
            "#[test]\nfn a() {}\nfn helper() {}\n#[tokio::test]\n// why\nasync fn b() {}\n",
        );
        assert_eq!(names, ["a", "b"]);
    }

    #[test]
    fn a_test_named_in_the_map_that_does_not_exist_fails_the_report() {
        let root = project(r#""proxy/src/lib.rs::no_such_test""#, None);
        let err = build(&root, &root.join("out")).unwrap_err().to_string();
        assert!(
            err.contains("proxy/src/lib.rs::no_such_test does not exist"),
            "{err}"
        );
        let root = project(
            r#""proxy/src/lib.rs::async_one""#,
            Some("2099-01-01T00:00:00Z"),
        );
        let r = build(&root, &root.join("out")).unwrap();
        assert_eq!(r.domains[0].tests.len(), 2);
        assert_eq!(r.domains[0].status, "covered", "{:?}", r.domains[0].reasons);
    }

    #[test]
    fn evidence_older_than_the_code_is_stale_and_missing_evidence_is_missing() {
        let root = project("", Some("2001-01-01T00:00:00Z"));
        // The code's last change, as git sees it.
        let git = |args: &[&str]| {
            Command::new("git")
                .arg("-C")
                .arg(&root)
                .args(args)
                .output()
                .unwrap()
        };
        git(&["init", "-q"]);
        git(&["add", "."]);
        git(&[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-qm",
            "x",
        ]);
        let r = build(&root, &root.join("out")).unwrap();
        assert_eq!(r.domains[0].status, "partial");
        assert_eq!(r.domains[0].evidence[0].state, "stale");
        let root = project("", None);
        let r = build(&root, &root.join("out")).unwrap();
        assert_eq!(r.domains[0].evidence[0].state, "missing");
        assert!(markdown(&r).contains("vectors evidence missing"));
    }
}
