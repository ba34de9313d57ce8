//! `cargo xtask tidy`: source checks that also run as `#[test]`s, so `cargo test` enforces them.
//!
//! * The protocol core (`proxy/src/protocol/**/*.rs`) is sans-IO: no code line may mention
//!   tokio, a socket type or a clock read ([`SANS_IO_BANNED`]). Only `//` comment lines
//!   (including `///` and `//!` docs) may; everything else, block comments and string
//!   literals included, is checked strictly.
//! * Every crate root (`src/lib.rs`, `src/main.rs`, `src/bin/*.rs` of each workspace
//!   member) carries `#![forbid(unsafe_code)]`, or explains why not in a comment line
//!   starting `// unsafe_code:` followed by the reason.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

/// Words the protocol core must not use outside `//` comments.
pub(crate) const SANS_IO_BANNED: &[&str] = &[
    "tokio",
    "TcpStream",
    "TcpListener",
    "UdpSocket",
    "Instant::now",
    "SystemTime::now",
];

/// Run the source checks.
#[derive(Debug, clap::Args)]
pub(crate) struct Tidy {}

impl Tidy {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        let root = crate::project_root();
        let mut problems = protocol_is_sans_io(&root)?;
        problems.extend(crate_roots_forbid_unsafe(&root)?);
        for p in &problems {
            println!("{p}");
        }
        if !problems.is_empty() {
            bail!("{} tidy problem(s)", problems.len());
        }
        println!("tidy: ok");
        Ok(())
    }
}

/// The banned words on the code lines of `text`, as `(line number, word)`.
pub(crate) fn banned_in(text: &str) -> Vec<(usize, &'static str)> {
    let mut found = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("//") {
            continue;
        }
        for word in SANS_IO_BANNED {
            if line.contains(word) {
                found.push((i + 1, *word));
            }
        }
    }
    found
}

/// Every `.rs` file under `dir`, recursively, sorted.
fn rust_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// One problem line per banned word on a code line under `proxy/src/protocol/`.
pub(crate) fn protocol_is_sans_io(root: &Path) -> anyhow::Result<Vec<String>> {
    let dir = root.join("proxy").join("src").join("protocol");
    let files = rust_files(&dir)?;
    if files.is_empty() {
        bail!("no Rust files under {}", dir.display());
    }
    let mut problems = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        let shown = file
            .strip_prefix(root)
            .unwrap_or(&file)
            .display()
            .to_string();
        for (line, word) in banned_in(&text) {
            problems.push(format!(
                "{shown}:{line}: `{word}` in the sans-IO protocol core (time and IO are parameters)"
            ));
        }
    }
    Ok(problems)
}

/// Whether a crate root forbids unsafe code or gives the reason it does not.
pub(crate) fn has_unsafe_policy(text: &str) -> bool {
    text.lines().map(str::trim).any(|line| {
        line == "#![forbid(unsafe_code)]"
            || line
                .strip_prefix("// unsafe_code:")
                .is_some_and(|reason| !reason.trim().is_empty())
    })
}

/// The workspace members listed in the root manifest's `members = [...]`.
pub(crate) fn workspace_members(manifest: &str) -> Vec<String> {
    // The line that starts with `members` (not `default-members`).
    let Some((start, _)) = manifest
        .match_indices("members")
        .find(|&(i, _)| i == 0 || manifest[..i].ends_with('\n'))
    else {
        return Vec::new();
    };
    let rest = &manifest[start..];
    let (Some(open), Some(close)) = (rest.find('['), rest.find(']')) else {
        return Vec::new();
    };
    rest.get(open + 1..close)
        .unwrap_or_default()
        .split(',')
        .map(|m| m.trim().trim_matches('"').to_string())
        .filter(|m| !m.is_empty())
        .collect()
}

/// One problem line per crate root without an unsafe-code policy, or per member without a root.
pub(crate) fn crate_roots_forbid_unsafe(root: &Path) -> anyhow::Result<Vec<String>> {
    let manifest =
        std::fs::read_to_string(root.join("Cargo.toml")).context("reading Cargo.toml")?;
    let members = workspace_members(&manifest);
    if members.is_empty() {
        bail!("no workspace members found in Cargo.toml");
    }
    let mut problems = Vec::new();
    for member in members {
        let src = root.join(&member).join("src");
        let mut roots: Vec<PathBuf> = ["lib.rs", "main.rs"]
            .iter()
            .map(|f| src.join(f))
            .filter(|p| p.is_file())
            .collect();
        let bin = src.join("bin");
        if bin.is_dir() {
            roots.extend(
                std::fs::read_dir(&bin)?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|e| e == "rs")),
            );
        }
        if roots.is_empty() {
            problems.push(format!("{member}: no src/lib.rs or src/main.rs"));
        }
        for file in roots {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            if !has_unsafe_policy(&text) {
                let shown = file
                    .strip_prefix(root)
                    .unwrap_or(&file)
                    .display()
                    .to_string();
                problems.push(format!(
                    "{shown}: add #![forbid(unsafe_code)] or a `// unsafe_code: <reason>` line"
                ));
            }
        }
    }
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_core_is_sans_io() {
        let problems = protocol_is_sans_io(&crate::project_root()).expect("walk the protocol core");
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    #[test]
    fn every_crate_root_forbids_unsafe_code() {
        let problems =
            crate_roots_forbid_unsafe(&crate::project_root()).expect("read the crate roots");
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    #[test]
    fn sans_io_check_flags_planted_words() {
        let sample = "\
//! Docs may say tokio and Instant::now.
use bytes::BytesMut;
use tokio::net::TcpStream;
    /// so may item docs: TcpListener
fn f() { let _ = std::time::Instant::now(); }
/* a block comment with UdpSocket is code to this check */
let s = \"SystemTime::now\";
";
        assert_eq!(
            banned_in(sample),
            [
                (3, "tokio"),
                (3, "TcpStream"),
                (5, "Instant::now"),
                (6, "UdpSocket"),
                (7, "SystemTime::now"),
            ]
        );
        assert!(banned_in("// tokio\n/// TcpStream\n//! UdpSocket\n").is_empty());
    }

    #[test]
    fn unsafe_policy_check_needs_the_attribute_or_a_reason() {
        assert!(has_unsafe_policy("//! Docs.\n#![forbid(unsafe_code)]\n"));
        assert!(has_unsafe_policy(
            "// unsafe_code: FFI to the C build for benches\n"
        ));
        assert!(!has_unsafe_policy("// unsafe_code:\nfn main() {}\n"));
        assert!(!has_unsafe_policy("#![deny(unsafe_code)]\nfn main() {}\n"));
        assert!(!has_unsafe_policy(
            "//! #![forbid(unsafe_code)] is only mentioned here\n"
        ));
    }

    #[test]
    fn workspace_members_are_read_from_the_manifest() {
        let manifest =
            "[workspace]\nresolver = \"2\"\nmembers = [\"proxy\", \"xtask\",\n  \"vectors\"]\n";
        assert_eq!(workspace_members(manifest), ["proxy", "xtask", "vectors"]);
    }
}
