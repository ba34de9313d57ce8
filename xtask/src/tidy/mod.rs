//! `cargo xtask tidy`: source checks that also run as `#[test]`s, so `cargo test` enforces them.
//!
//! * The protocol core (`proxy/src/protocol/**/*.rs`, test-module files `tests.rs` aside)
//!   is sans-IO: no code line may mention
//!   tokio, a socket type or a clock read ([`SANS_IO_BANNED`]). Only `//` comment lines
//!   (including `///` and `//!` docs) may; everything else, block comments and string
//!   literals included, is checked strictly.
//! * Every crate root (`src/lib.rs`, `src/main.rs`, `src/bin/*.rs` of each workspace
//!   member) carries `#![forbid(unsafe_code)]`, or explains why not in a comment line
//!   starting `// unsafe_code:` followed by the reason.
//! * No import circles: within each workspace crate, no module file reaches itself
//!   again through the files it names ([`circles`], with what "names" means in
//!   [`imports`]).
//! * Layering: the proxy's network layer (`proxy/src/net/`) names nothing of the
//!   application layer above it ([`layers::LAYERS`]).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use crate::workspace::project_root;

mod circles;
mod imports;
mod layers;
mod lexer;
mod sources;

use sources::{members_of, rust_files, shown};

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
    /// Runs every check over the workspace and prints each problem.
    ///
    /// # Errors
    /// When a source cannot be read, and when any check finds a problem.
    pub(crate) fn run(self) -> anyhow::Result<()> {
        let root = project_root();
        let mut problems = protocol_is_sans_io(&root)?;
        problems.extend(crate_roots_forbid_unsafe(&root)?);
        problems.extend(circles::import_circles(&root)?);
        problems.extend(layers::layer_violations(&root, layers::LAYERS)?);
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

/// One problem line per banned word on a code line under `proxy/src/protocol/`.
pub(crate) fn protocol_is_sans_io(root: &Path) -> anyhow::Result<Vec<String>> {
    let dir = root.join("proxy").join("src").join("protocol");
    let files = rust_files(&dir)?;
    if files.is_empty() {
        bail!("no Rust files under {}", dir.display());
    }
    let mut problems = Vec::new();
    // A `tests.rs` file is a test module (`#[cfg(test)] mod tests;`): tests may read the
    // clock to make the instants they pass in; the core's code may not.
    for file in files
        .into_iter()
        .filter(|f| f.file_name().is_none_or(|n| n != "tests.rs"))
    {
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        let shown = shown(root, &file);
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

/// One problem line per crate root without an unsafe-code policy, or per member without a root.
pub(crate) fn crate_roots_forbid_unsafe(root: &Path) -> anyhow::Result<Vec<String>> {
    let members = members_of(root)?;
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
                problems.push(format!(
                    "{}: add #![forbid(unsafe_code)] or a `// unsafe_code: <reason>` line",
                    shown(root, &file)
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
        let problems = protocol_is_sans_io(&project_root()).expect("walk the protocol core");
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    #[test]
    fn every_crate_root_forbids_unsafe_code() {
        let problems = crate_roots_forbid_unsafe(&project_root()).expect("read the crate roots");
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    #[test]
    fn no_crate_has_an_import_circle() {
        let circles = circles::import_circles(&project_root()).expect("read the crates");
        assert!(
            circles.is_empty(),
            "{} import circle(s); break each by moving what both sides need into a leaf \
             module, or by passing it in:\n{}",
            circles.len(),
            circles.join("\n")
        );
    }

    #[test]
    fn the_network_layer_does_not_name_the_application_layer() {
        let problems =
            layers::layer_violations(&project_root(), layers::LAYERS).expect("read the proxy");
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
}
