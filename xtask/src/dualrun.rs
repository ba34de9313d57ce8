//! `cargo xtask dualrun`: run the reference (the user's C build) and the candidate (this
//! port) side by side under the same seeded MTProto workload, compare them and write
//! `artifacts/dualrun/dualrun-report.json` plus `latency.svg`.
//!
//! The reference comes from `--reference PATH` or `MTPROXY_C_BIN`. With neither, the
//! candidate runs against itself ("self" mode): the report says so with a warning and
//! everything else still runs. The exit status is non-zero on a failing verdict, so a
//! CI pipeline can gate a migration on it.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use parity::dualrun::{self, DualrunOptions};
use parity::runtime::{DockerImages, Runtime};

/// Arguments of `cargo xtask dualrun`.
#[derive(Debug, clap::Args)]
pub struct Dualrun {
    /// The reference binary (a C MTProxy build); default: $MTPROXY_C_BIN, else self mode.
    #[arg(long, value_name = "PATH")]
    reference: Option<PathBuf>,
    /// The candidate binary; default: build `mtproto-proxy` in release mode and use it.
    #[arg(long, value_name = "PATH")]
    candidate: Option<PathBuf>,
    /// Workload seed.
    #[arg(long, default_value_t = 0x6d74_7072_6f78_7921)]
    seed: u64,
    /// Requests in the load phase (at least 10 000 for a gating run).
    #[arg(long, default_value_t = 10_000)]
    requests: usize,
    /// Where the report goes.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// `-M` workers for both proxies.
    #[arg(long, default_value_t = 0)]
    workers: u32,
    /// Skip the noise baseline (a second reference copy calibrating latency thresholds).
    #[arg(long)]
    no_baseline: bool,
    /// Also send the reference the short padded frame that crashes the C build.
    #[arg(long)]
    test_reference_crash: bool,
    /// Run in containers: the candidate image (linux/amd64) to use.
    #[arg(long, value_name = "IMAGE")]
    candidate_image: Option<String>,
    /// Run in containers: the reference image.
    #[arg(long, value_name = "IMAGE", requires = "candidate_image")]
    reference_image: Option<String>,
    /// Path of the proxy binary inside the images.
    #[arg(long, default_value = "/usr/local/bin/mtproto-proxy")]
    image_binary: String,
}

impl Dualrun {
    /// Runs the dual-run and prints the summary.
    ///
    /// # Errors
    /// When the candidate cannot be built or the run cannot start, and when the verdict
    /// fails (so the process exits non-zero).
    pub fn run(self) -> anyhow::Result<()> {
        let root = crate::workspace::project_root();
        let candidate = match self.candidate {
            Some(c) => c,
            None => crate::workspace::build_candidate(&root)?,
        };
        let mut opts = DualrunOptions::new(&candidate);
        opts.reference = self.reference;
        opts.seed = self.seed;
        opts.requests = Some(self.requests);
        opts.out_dir = self
            .out
            .unwrap_or_else(|| root.join("artifacts").join("dualrun"));
        opts.noise_baseline = !self.no_baseline;
        opts.test_reference_crash = self.test_reference_crash;
        opts.workers = self.workers;
        opts.divergences = Some(root.join("parity").join("divergences.json"));
        if let Some(image) = self.candidate_image {
            opts.runtime = Runtime::Docker(DockerImages {
                reference_image: self.reference_image,
                candidate_image: image,
                binary: self.image_binary,
                platform: "linux/amd64".into(),
            });
        }
        opts.driver = Some(Arc::new(parity::driver::SimDriver::default()));
        let tty = std::io::stderr().is_terminal();
        opts.progress = Some(Arc::new(move |msg: &str| {
            if tty {
                eprint!("\r\x1b[2K[dualrun] {msg}");
            } else {
                eprintln!("[dualrun] {msg}");
            }
        }));
        let runtime = tokio::runtime::Runtime::new().context("starting tokio")?;
        let report = runtime.block_on(dualrun::run(opts))?;
        if tty {
            eprintln!();
        }
        println!("{}", report.summary());
        if report.verdict.skipped {
            println!("dual-run skipped: {}", report.verdict.reasons.join("; "));
            return Ok(());
        }
        if !report.verdict.pass {
            bail!("dual-run verdict: FAIL");
        }
        Ok(())
    }
}
