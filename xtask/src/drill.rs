//! `cargo xtask drill`: the soak, descriptor, memory and fault drills (the `drills` crate)
//! against the candidate and, when given, the C build; writes
//! `artifacts/drills/drills-report.json` and `drills.svg`. Exits non-zero when the
//! candidate FAILs a drill; the reference's verdicts are reported, not gated.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use drills::report::{self, RunOptions};
use drills::Settings;
use parity::subject::Subject;

/// Arguments of `cargo xtask drill`.
#[derive(Debug, clap::Args)]
pub struct Drill {
    /// The reference binary (a C MTProxy build); default: $MTPROXY_C_BIN, else the
    /// candidate runs alone (the report says so).
    #[arg(long, value_name = "PATH")]
    reference: Option<PathBuf>,
    /// The candidate binary; default: build `mtproto-proxy` in release mode and use it.
    #[arg(long, value_name = "PATH")]
    candidate: Option<PathBuf>,
    /// Only these drills (comma-separated names).
    #[arg(long, value_delimiter = ',', value_name = "NAME,…")]
    only: Vec<String>,
    /// Smaller counts and a 2-minute soak.
    #[arg(long)]
    quick: bool,
    /// Seconds per drill: the scale `cargo test` runs them at (a smoke test).
    #[arg(long, conflicts_with = "quick")]
    tiny: bool,
    /// The soak's length in minutes (full runs).
    #[arg(long, default_value_t = 30)]
    soak_minutes: u64,
    /// Where the report goes.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

impl Drill {
    /// Runs the drills and prints the table.
    ///
    /// # Errors
    /// When the candidate cannot be built, a drill name is unknown, the report cannot be
    /// written, or the candidate FAILed a drill.
    pub fn run(self) -> anyhow::Result<()> {
        let root = crate::workspace::project_root();
        let candidate = crate::args::candidate_or_build(self.candidate)?;
        let reference = crate::args::reference_or_env(self.reference);
        let scale = crate::args::scale(self.tiny, self.quick);
        let tty = std::io::stderr().is_terminal();
        let opts = RunOptions {
            candidate: Subject::new("candidate", candidate),
            reference: reference.map(|r| Subject::new("reference", r)),
            only: self.only,
            settings: Settings::new(scale, self.soak_minutes),
            out_dir: self
                .out
                .unwrap_or_else(|| root.join("artifacts").join("drills")),
            progress: Some(Arc::new(move |msg: &str| {
                if tty && msg.starts_with('[') {
                    eprint!("\r\x1b[2K[drill] {msg}");
                } else {
                    if tty {
                        eprintln!();
                    }
                    eprintln!("[drill] {msg}");
                }
            })),
        };
        let out = opts.out_dir.clone();
        let runtime = tokio::runtime::Runtime::new().context("starting tokio")?;
        let report = runtime.block_on(report::run(opts))?;
        println!("{}", report.table());
        println!(
            "report: {} and {}",
            out.join(report::REPORT_JSON).display(),
            out.join(report::REPORT_SVG).display()
        );
        if report.exit_code() != 0 {
            bail!("drills: {}", report.verdict);
        }
        Ok(())
    }
}
