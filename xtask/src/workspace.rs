//! The workspace this xtask belongs to: where it is on disk and how its release proxy
//! binary (the candidate of every comparison) is built.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

/// The workspace root: the parent of this crate's directory.
pub(crate) fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// Builds the release `mtproto-proxy` with the same cargo and returns its path.
pub(crate) fn build_candidate(root: &Path) -> anyhow::Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!(
        "[dualrun] building the candidate: cargo build --release -p mtproxy --bin mtproto-proxy"
    );
    let status = std::process::Command::new(cargo)
        .current_dir(root)
        .args([
            "build",
            "--release",
            "-p",
            "mtproxy",
            "--bin",
            "mtproto-proxy",
        ])
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("building the candidate failed ({status})");
    }
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    Ok(target.join("release").join("mtproto-proxy"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn project_root_holds_the_workspace_manifest() {
        let manifest = std::fs::read_to_string(super::project_root().join("Cargo.toml"))
            .expect("the root Cargo.toml is readable");
        assert!(manifest.contains("[workspace]"));
    }
}
