//! `cargo xtask image`: linux/amd64 images from local material (no registry needed): the
//! base (debootstrap + `docker import`, cached), the candidate image `mtproxy-rs:<version>`
//! from the release binary, and, with `--reference`, an image wrapping the user's C
//! binary (`mtproxy-c:local`; we package it, we never build it). Writes
//! `artifacts/images/images.json` and prints the tags to pass to
//! `cargo xtask dualrun --candidate-image … --reference-image …`.

use std::path::PathBuf;

use anyhow::Context;
use parity::image;

/// Arguments of `cargo xtask image`.
#[derive(Debug, clap::Args)]
pub struct Image {
    /// A C MTProxy binary to wrap as the reference image.
    #[arg(long, value_name = "PATH")]
    reference: Option<PathBuf>,
    /// The candidate binary; default: build `mtproto-proxy` in release mode and use it.
    #[arg(long, value_name = "PATH")]
    candidate: Option<PathBuf>,
    /// A base image to use instead of the debootstrap-made one (it needs /bin/sh, curl and
    /// ip for the entry script, and libssl3 for a C binary).
    #[arg(long, value_name = "IMAGE")]
    base: Option<String>,
    /// The candidate image's tag (default `mtproxy-rs:<version>`).
    #[arg(long, value_name = "TAG")]
    tag: Option<String>,
    /// The reference image's tag.
    #[arg(long, value_name = "TAG", default_value = "mtproxy-c:local")]
    reference_tag: String,
}

#[derive(serde::Serialize)]
struct Summary {
    engine: String,
    platform: &'static str,
    base: image::Built,
    candidate: image::Built,
    reference: Option<image::Built>,
}

impl Image {
    /// Builds the images.
    ///
    /// # Errors
    /// When no engine answers, or a build fails.
    pub fn run(self) -> anyhow::Result<()> {
        let root = crate::workspace::project_root();
        let engine = image::engine().context("no Docker engine answers")?;
        eprintln!("[image] engine: docker {engine}");
        let candidate = crate::args::candidate_or_build(self.candidate)?;
        let say = |m: &str| eprintln!("[image] {m}");
        let base = image::ensure_base(self.base.as_deref(), &say)?;
        say(&format!(
            "base {} {} ({:.1} s{})",
            base.tag,
            base.id,
            base.seconds,
            if base.cached { ", cached" } else { "" }
        ));
        let tag = self
            .tag
            .unwrap_or_else(|| format!("mtproxy-rs:{}", env!("CARGO_PKG_VERSION")));
        let cand = image::build_image(&root, &base.tag, &candidate, &tag)?;
        say(&format!(
            "candidate {} {} ({:.1} s)",
            cand.tag, cand.id, cand.seconds
        ));
        let reference = match &self.reference {
            Some(r) => {
                let b = image::build_image(&root, &base.tag, r, &self.reference_tag)?;
                say(&format!(
                    "reference {} {} ({:.1} s)",
                    b.tag, b.id, b.seconds
                ));
                Some(b)
            }
            None => None,
        };
        let out = root.join("artifacts").join("images");
        std::fs::create_dir_all(&out)?;
        let summary = Summary {
            engine,
            platform: "linux/amd64",
            base,
            candidate: cand,
            reference,
        };
        std::fs::write(
            out.join("images.json"),
            serde_json::to_string_pretty(&summary)? + "\n",
        )?;
        let r = summary
            .reference
            .as_ref()
            .map(|b| format!(" --reference-image {}", b.tag))
            .unwrap_or_default();
        println!(
            "images ready; run: cargo xtask dualrun --candidate-image {}{r}",
            summary.candidate.tag
        );
        Ok(())
    }
}
