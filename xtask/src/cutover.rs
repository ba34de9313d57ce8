//! `cargo xtask cutover`: the cutover and rollback rehearsal under live traffic (the
//! `drills::cutover` module): C → port and back through a DNAT switch in a private
//! network namespace, the naive stop-then-start baseline, and the port's zero-downtime
//! upgrade with and without `-M`. Writes `artifacts/cutover/cutover-report.json` and
//! `cutover.svg`; exits non-zero when a gated criterion fails.

use std::path::PathBuf;

use anyhow::bail;
use drills::cutover::{self, CutoverImages, CutoverOptions};

/// Arguments of `cargo xtask cutover`.
#[derive(Debug, clap::Args)]
pub struct Cutover {
    /// The reference binary (a C MTProxy build); default: $MTPROXY_C_BIN, else the
    /// candidate plays the reference (the report says so).
    #[arg(long, value_name = "PATH")]
    reference: Option<PathBuf>,
    /// The candidate binary; default: build `mtproto-proxy` in release mode and use it.
    #[arg(long, value_name = "PATH")]
    candidate: Option<PathBuf>,
    /// Only these steps (comma-separated): naive_c_to_port, cutover_c_to_port,
    /// rollback_port_to_c, upgrade_port, upgrade_port_workers.
    #[arg(long, value_delimiter = ',', value_name = "STEP,…")]
    only: Vec<String>,
    /// Shorter windows and lower rates (about a minute in all).
    #[arg(long)]
    quick: bool,
    /// Seconds per step: the scale `cargo test` runs it at.
    #[arg(long, conflicts_with = "quick")]
    tiny: bool,
    /// Run on the host's loopback even as root (the DNAT steps are then skipped).
    #[arg(long)]
    no_namespace: bool,
    /// Run in containers: the candidate image (see `cargo xtask image`). Containers use
    /// the host's network, so the DNAT steps are skipped.
    #[arg(long, value_name = "IMAGE")]
    candidate_image: Option<String>,
    /// Run in containers: the reference image (default: the candidate image, self mode).
    #[arg(long, value_name = "IMAGE", requires = "candidate_image")]
    reference_image: Option<String>,
    /// Where the report goes.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

impl Cutover {
    /// Runs the rehearsal and prints the table.
    ///
    /// # Errors
    /// When the candidate cannot be built, a step name is unknown, the report cannot be
    /// written, or a gated criterion failed.
    pub fn run(self) -> anyhow::Result<()> {
        let root = crate::workspace::project_root();
        let candidate = crate::args::candidate_or_build(self.candidate)?;
        let reference = crate::args::reference_or_env(self.reference);
        let scale = crate::args::scale(self.tiny, self.quick);
        let out_dir = self
            .out
            .unwrap_or_else(|| root.join("artifacts").join("cutover"));
        let report = cutover::run_blocking(CutoverOptions {
            candidate,
            reference,
            scale,
            only: self.only,
            out_dir: out_dir.clone(),
            candidate_env: Vec::new(),
            isolate: !self.no_namespace,
            images: self.candidate_image.map(|candidate| CutoverImages {
                candidate,
                reference: self.reference_image,
            }),
        })?;
        for n in &report.notes {
            eprintln!("[cutover] note: {n}");
        }
        for s in report.steps.iter().filter(|s| s.result == "SKIP") {
            eprintln!(
                "[cutover] SKIP {}: {}",
                s.name,
                s.skip_reason.as_deref().unwrap_or("")
            );
        }
        println!("{}", report.table());
        println!(
            "report: {} and {}",
            out_dir.join(cutover::REPORT_JSON).display(),
            out_dir.join(cutover::REPORT_SVG).display()
        );
        if report.exit_code() != 0 {
            bail!("cutover: {}", report.verdict);
        }
        Ok(())
    }
}
