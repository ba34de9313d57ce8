//! The cutover rehearsal (`cargo xtask cutover`, issue #11) at its tiny scale, as CI runs
//! it: every step with live traffic, the report validated against its schema, and a
//! planted regression (the old process cuts its clients at the handover) failing the
//! gate with the criterion named.
//!
//! As root (CI) the rehearsal runs in a private network namespace with an nftables DNAT
//! switch; otherwise the DNAT steps are skipped and the report says why. Without
//! `MTPROXY_C_BIN` the candidate plays the reference (self mode), and the report says so.

use std::path::PathBuf;

use drills::cutover::{self, CutoverOptions, CutoverReport};
use drills::Scale;

fn out_dir(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("mtproxy-cutover-test-{tag}-{}", std::process::id()))
}

#[allow(clippy::print_stderr)] // says plainly that no C build ran
fn rehearse(tag: &str, only: &[&str], env: &[(&str, &str)]) -> (CutoverReport, PathBuf) {
    let reference = std::env::var_os("MTPROXY_C_BIN")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    if reference.is_none() {
        eprintln!("no reference: MTPROXY_C_BIN not set; the cutover rehearsal ran in self mode");
    }
    let out = out_dir(tag);
    let report = cutover::run_blocking(CutoverOptions {
        candidate: PathBuf::from(env!("CARGO_BIN_EXE_mtproto-proxy")),
        reference,
        scale: Scale::Tiny,
        only: only.iter().map(|s| (*s).to_string()).collect(),
        out_dir: out.clone(),
        candidate_env: env
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect(),
        isolate: true,
        images: None,
    })
    .expect("the rehearsal runs");
    (report, out)
}

#[test]
fn every_step_runs_under_traffic_and_the_report_matches_its_schema() {
    let (report, out) = rehearse("all", &[], &[]);
    let schema = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../artifacts/cutover/schema.json");
    parity::report::validate_against_schema(&out.join(cutover::REPORT_JSON), &schema).unwrap();
    let table = report.table();
    let svg = std::fs::read_to_string(out.join(cutover::REPORT_SVG)).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains("upgrade_port_workers"),
        "{table}\n{:?}",
        report
            .steps
            .iter()
            .map(|s| &s.skip_reason)
            .collect::<Vec<_>>()
    );
    let skipped = report.steps.iter().any(|s| s.result == "SKIP");
    assert_eq!(
        report.verdict,
        if skipped { "PARTIAL" } else { "PASS" },
        "{table}"
    );
    assert_eq!(report.exit_code(), 0);
    assert_eq!(report.mode == "self", report.reference.is_none());
    let root = nix::unistd::Uid::effective().is_root();
    let names: Vec<&str> = report.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, cutover::STEPS, "every step, in order");
    for step in &report.steps {
        let dnat = step.name.contains("c_to_port") && step.name != "naive_c_to_port"
            || step.name == "rollback_port_to_c";
        if step.result == "SKIP" {
            assert!(dnat && !report.isolated, "{} skipped: {table}", step.name);
            assert!(step
                .skip_reason
                .as_deref()
                .unwrap_or("")
                .contains("namespace"));
            continue;
        }
        let m = step.metrics.as_ref().expect("a step that ran has metrics");
        let served = |who: &str| m.served_by.get(who).copied().unwrap_or(0);
        assert!(
            served("old") > 0 && served("new") > 0,
            "{}: {:?}",
            step.name,
            m.served_by
        );
        assert!(
            m.established.total > 0,
            "{}: no established connection at the trigger",
            step.name
        );
        assert!(m.requests.answered > 0);
        if step.name == "naive_c_to_port" {
            // The baseline the operator should not use: stopping the old process cuts its
            // established clients. Reported, not gated.
            assert!(!step.gated && step.result == "INFO");
            assert!(
                m.established.reset + m.established.errors > 0,
                "{:?}",
                m.established
            );
            continue;
        }
        assert_eq!(step.result, "PASS", "{}: {table}", step.name);
        assert!(
            m.new_connections.attempted > 0,
            "{}: no new connection during the switch",
            step.name
        );
        assert_eq!(
            m.new_connections.ok, m.new_connections.attempted,
            "{}",
            step.name
        );
        // The marathons (one per service) outlive the drain deadline and are cut there.
        assert!(
            m.established.cut_at_deadline > 0,
            "{}: {:?}",
            step.name,
            m.established
        );
        assert!(
            m.timeline.old_exit_ms.unwrap()
                >= m.timeline.trigger_ms + report.timing.drain_ms as f64 - 50.0,
            "{}: the old process left before its drain deadline although a client stayed",
            step.name
        );
        assert!(!step.criteria.is_empty() && step.criteria.iter().all(|c| c.pass != Some(false)));
    }
    if root {
        assert!(
            report.isolated,
            "as root the rehearsal runs in its own namespace: {:?}",
            report.notes
        );
        assert!(report.steps.iter().all(|s| s.result != "SKIP"), "{table}");
    }
    let _ = std::fs::remove_dir_all(out);
}

#[test]
fn a_planted_cut_at_handover_fails_the_gate_and_names_the_criterion() {
    let (report, out) = rehearse(
        "planted",
        &["upgrade_port"],
        &[("MTPROXY_TEST_HANDOVER_CUT", "1")],
    );
    assert_eq!(report.verdict, "FAIL", "{}", report.table());
    assert_eq!(report.exit_code(), 1);
    assert!(
        report
            .failures
            .iter()
            .any(|f| f.starts_with("upgrade_port: established_cut_before_deadline")),
        "{:?}",
        report.failures
    );
    let step = &report.steps[0];
    assert_eq!(step.result, "FAIL");
    let m = step.metrics.as_ref().unwrap();
    assert!(m.established.reset + m.established.truncated + m.established.errors > 0);
    let _ = std::fs::remove_dir_all(out);
}
