//! The workspace's source files as the checks see them: the member crates of the root
//! manifest and the `.rs` files under a directory.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

/// Every `.rs` file under `dir`, recursively, sorted.
pub(crate) fn rust_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
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

/// The members of the workspace at `root` (an error when the manifest lists none).
pub(crate) fn members_of(root: &Path) -> anyhow::Result<Vec<String>> {
    let manifest =
        std::fs::read_to_string(root.join("Cargo.toml")).context("reading Cargo.toml")?;
    let members = workspace_members(&manifest);
    if members.is_empty() {
        bail!("no workspace members found in Cargo.toml");
    }
    Ok(members)
}

/// `path` relative to `root` for a problem line (as it is when not under `root`).
pub(crate) fn shown(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// A directory tree of source files written for a test, removed when dropped.
#[cfg(test)]
pub(crate) struct TempTree {
    /// The tree's root directory.
    pub(crate) root: PathBuf,
}

#[cfg(test)]
impl TempTree {
    /// Writes `files` (path relative to the new root, text) under a fresh directory.
    pub(crate) fn new(files: &[(&str, &str)]) -> Self {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let root = std::env::temp_dir().join(format!(
            "xtask-tidy-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        for (path, text) in files {
            let path = root.join(path);
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).expect("create a test directory");
            }
            std::fs::write(&path, text).expect("write a test source file");
        }
        Self { root }
    }
}

#[cfg(test)]
impl Drop for TempTree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspace_members_are_read_from_the_manifest() {
        let manifest =
            "[workspace]\nresolver = \"2\"\nmembers = [\"proxy\", \"xtask\",\n  \"vectors\"]\n";
        assert_eq!(workspace_members(manifest), ["proxy", "xtask", "vectors"]);
    }

    #[test]
    fn rust_files_are_found_recursively_and_sorted() {
        let tree = TempTree::new(&[
            ("src/lib.rs", ""),
            ("src/b/mod.rs", ""),
            ("src/a.rs", ""),
            ("src/notes.txt", ""),
        ]);
        let found: Vec<String> = rust_files(&tree.root.join("src"))
            .expect("walk the tree")
            .iter()
            .map(|p| shown(&tree.root, p))
            .collect();
        assert_eq!(found, ["src/a.rs", "src/b/mod.rs", "src/lib.rs"]);
        assert!(members_of(&tree.root).is_err(), "no manifest, no members");
    }
}
