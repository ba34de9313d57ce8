//! The dual-run, end to end on this machine: the candidate binary against itself ("self"
//! mode, what `cargo xtask dualrun` does where no C build is present), and against a copy
//! with a planted divergence, which the verdict must catch and name.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parity::driver::SimDriver;
use parity::dualrun::{self, DualrunOptions};
use parity::report::{BinaryKind, Report};
use parity::workload::WorkloadSpec;

const CANDIDATE: &str = env!("CARGO_BIN_EXE_mtproto-proxy");

fn out_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mtproxy-dualrun-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn options(candidate: &Path, reference: Option<&Path>, out: &Path) -> DualrunOptions {
    let mut o = DualrunOptions::new(candidate);
    o.reference = reference.map(Path::to_path_buf);
    // Never pick up a C build from the environment here: these tests are about the
    // harness catching differences, not about C.
    o.reference_from_env = false;
    o.workload = Some(
        WorkloadSpec::new(7)
            .load_requests(400)
            .untagged_requests(120)
            .workers_requests(160)
            .fake_tls_requests(120)
            .canary_sessions(4),
    );
    o.noise_baseline = false;
    o.out_dir = out.to_path_buf();
    o.divergences = Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("../parity/divergences.json"));
    o.driver = Some(Arc::new(SimDriver::default()));
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_mode_report_passes_and_says_it_is_self() {
    let out = out_dir("self");
    let report = dualrun::run(options(Path::new(CANDIDATE), None, &out))
        .await
        .expect("the dual-run runs");
    assert!(report.verdict.pass, "verdict: {:?}", report.verdict.reasons);
    assert_eq!(report.reference.kind, BinaryKind::SelfCopy);
    assert!(
        report.warnings.iter().any(|w| w.contains("no reference")),
        "warnings: {:?}",
        report.warnings
    );
    // The deployment phases ran: workers as operators run them, and fake TLS (its
    // stand-in site needs port 443, so only as root; otherwise the report says so).
    let phase = |name: &str| report.phases.iter().find(|p| p.name == name);
    let served = |name: &str| {
        phase(name)
            .and_then(|p| p.metrics.get("candidate"))
            .map_or(0, |m| m.succeeded)
    };
    assert_eq!(
        phase("workers").map(|p| p.deployment.as_str()),
        Some("workers")
    );
    assert_eq!(
        served("workers"),
        160,
        "every workers-phase request answered"
    );
    let workers_log = report
        .comparisons
        .iter()
        .find(|c| c.name == "workers/lifecycle")
        .expect("the workers log check");
    assert!(
        workers_log.pass && workers_log.checked == 1,
        "{workers_log:?}"
    );
    if nix::unistd::Uid::effective().is_root() {
        assert_eq!(served("fake_tls"), 120, "every fake-TLS request answered");
        let fronting = report
            .comparisons
            .iter()
            .find(|c| c.kind == "probe")
            .expect("probe comparison");
        assert!(fronting.pass, "{fronting:?}");
    } else {
        assert!(
            report.warnings.iter().any(|w| w.contains("fake_tls phase")),
            "warnings: {:?}",
            report.warnings
        );
    }
    let written = Report::read(&out.join("dualrun-report.json")).expect("report written");
    assert_eq!(written.verdict.pass, report.verdict.pass);
    assert!(out.join("latency.svg").exists());
    let _ = std::fs::remove_dir_all(&out);
}

/// A wrapper that runs the candidate with one PROXY_REQ flag bit flipped (the debug-only
/// `MTPROXY_TEST_PLANT_FLAGS` switch).
fn planted_candidate(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("planted-candidate.sh");
    std::fs::write(
        &path,
        format!("#!/bin/sh\nMTPROXY_TEST_PLANT_FLAGS=0x4 exec '{CANDIDATE}' \"$@\"\n"),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planted_flag_divergence_fails_the_verdict_and_is_named() {
    let out = out_dir("planted");
    let candidate = planted_candidate(&out.join("bin"));
    let report = dualrun::run(options(&candidate, Some(Path::new(CANDIDATE)), &out))
        .await
        .expect("the dual-run runs");
    assert!(
        !report.verdict.pass,
        "a flipped flag bit must fail the verdict"
    );
    let me_stream = report
        .comparisons
        .iter()
        .find(|c| c.kind == "me_stream" && !c.pass)
        .expect("a failing PROXY_REQ stream comparison");
    let first = me_stream.differences.first().expect("differences listed");
    assert!(
        first.message.contains("flags"),
        "the difference names the flags: {}",
        first.message
    );
    // The reference's flags and the candidate's differ by exactly the planted bit.
    let parse = |s: &str| u32::from_str_radix(s.trim_start_matches("0x"), 16).unwrap();
    assert_eq!(parse(&first.reference) ^ parse(&first.candidate), 0x4);
    assert!(
        report.verdict.reasons.iter().any(|r| r.contains("flags")),
        "the verdict's reasons name it: {:?}",
        report.verdict.reasons
    );
    let _ = std::fs::remove_dir_all(&out);
}
