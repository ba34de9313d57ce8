//! The drills (`cargo xtask drill`) in `cargo test`: every drill once at its tiny scale
//! against this build, to prove the drill code works and the report it writes matches its
//! schema; and a planted regression (a descriptor leaked per connection) that the drills
//! must catch with a FAIL and a non-zero exit status. The full drills run only through
//! `cargo xtask drill`.

use std::path::{Path, PathBuf};

use drills::report::{self, DrillsReport, RunOptions};
use drills::{Scale, Settings, Verdict};
use parity::subject::Subject;

const CANDIDATE: &str = env!("CARGO_BIN_EXE_mtproto-proxy");

/// The drills measure timing and memory: never two runs at once in this binary.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn out_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mtproxy-drills-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn options(target: Subject, only: &[&str], out: &Path) -> RunOptions {
    RunOptions {
        candidate: target,
        reference: None,
        only: only.iter().map(|s| (*s).to_string()).collect(),
        settings: Settings::new(Scale::Tiny, 1),
        out_dir: out.to_path_buf(),
        progress: None,
    }
}

/// Validates a written report against `artifacts/drills/schema.json`.
fn assert_valid_against_schema(report: &Path) {
    let schema = Path::new(env!("CARGO_MANIFEST_DIR")).join("../artifacts/drills/schema.json");
    if let Err(e) = parity::report::validate_against_schema(report, &schema) {
        panic!("{e:#}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_drill_runs_at_its_tiny_scale_and_the_report_matches_its_schema() {
    let _serial = SERIAL.lock().await;
    let out = out_dir("tiny");
    let report = report::run(options(Subject::new("candidate", CANDIDATE), &[], &out))
        .await
        .expect("the drills run");
    assert_eq!(
        report
            .drills
            .iter()
            .map(|d| d.name.as_str())
            .collect::<Vec<_>>(),
        drills::names()
    );
    assert!(report.notes.iter().any(|n| n.contains("no reference")));
    let root = nix::unistd::Uid::effective().is_root();
    for d in &report.drills {
        let o = &d.candidate;
        if o.verdict == Verdict::Skip {
            assert!(
                d.name == "fronting_half_open" && !root,
                "{} skipped: {}",
                d.name,
                o.why
            );
            continue;
        }
        // Every drill ran to its measurement (an error would leave no figures).
        assert!(
            !o.figures.is_empty() && o.key_figure == o.figures[0],
            "{}: {} — {}",
            d.name,
            o.verdict.as_str(),
            o.why
        );
    }
    // What this build holds today; slowloris, stalled_reader and fronting_half_open are
    // the hardening issue's and are reported as they stand (FAIL today).
    let verdict = |name: &str| {
        report
            .drills
            .iter()
            .find(|d| d.name == name)
            .map(|d| (d.candidate.verdict, d.candidate.why.clone()))
            .expect("drill in the report")
    };
    for name in [
        "fd_churn",
        "idle_scale",
        "soak",
        "me_stall",
        "me_kill_refuse",
        "garbage_flood",
        "burst",
    ] {
        // WARN (RSS above its relative bound) is reported, not gated.
        let (v, why) = verdict(name);
        assert!(
            matches!(v, Verdict::Pass | Verdict::Warn),
            "{name}: {} — {why}",
            v.as_str()
        );
    }
    let soak = report.drills.iter().find(|d| d.name == "soak").unwrap();
    assert!(
        soak.candidate.series.len() >= 5,
        "the soak samples every second"
    );
    assert!(soak.candidate.figure("answers").unwrap_or(0.0) > 0.0);
    // The written report and picture.
    let path = out.join(report::REPORT_JSON);
    assert_valid_against_schema(&path);
    let back = DrillsReport::read(&path).expect("report reads back");
    let summary = |r: &DrillsReport| {
        r.drills
            .iter()
            .map(|d| {
                (
                    d.name.clone(),
                    d.candidate.verdict,
                    d.candidate.key_figure.name.clone(),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(back.verdict, report.verdict);
    assert_eq!(summary(&back), summary(&report));
    let svg = std::fs::read_to_string(out.join(report::REPORT_SVG)).expect("picture written");
    assert!(svg.starts_with("<svg") && svg.contains("soak: resident memory"));
    assert_eq!(
        report.exit_code(),
        i32::from(!report.candidate_failures().is_empty())
    );
    let _ = std::fs::remove_dir_all(&out);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planted_descriptor_leak_fails_fd_churn_and_the_exit_status() {
    let _serial = SERIAL.lock().await;
    let out = out_dir("leak");
    let mut leaky = Subject::new("candidate", CANDIDATE);
    leaky.env.push(("MTPROXY_TEST_LEAK_FD".into(), "1".into()));
    let report = report::run(options(leaky, &["fd_churn"], &out))
        .await
        .expect("the drill runs");
    let d = &report.drills[0];
    assert_eq!(d.candidate.verdict, Verdict::Fail, "{}", d.candidate.why);
    // 40 cycles, one descriptor kept for each (give or take one still in flight when the
    // baseline was read).
    let delta = d.candidate.figure("fd_delta").unwrap_or(0.0);
    assert!(delta >= 35.0, "fd_delta {delta}: {}", d.candidate.why);
    assert_eq!(report.exit_code(), 1);
    assert_eq!(report.verdict, "FAIL: fd_churn");
    assert_valid_against_schema(&out.join(report::REPORT_JSON));
    let _ = std::fs::remove_dir_all(&out);
}
