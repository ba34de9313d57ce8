//! Layering: the lower layers of a crate do not name the modules above them, so the
//! upper ones can change without touching them (and no import circle can run through
//! both). Paths are found as for the import-circle check (see [`super::imports`]).

use std::path::Path;

use anyhow::Context;

use super::imports::{crate_sources, display, named_paths};
use super::sources::shown;

/// One rule: the files of a lower layer and the modules they must not name.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Layer {
    /// The crate's directory in the workspace.
    pub(crate) crate_dir: &'static str,
    /// The lower layer: every module at or below this one.
    pub(crate) below: &'static str,
    /// Top-level modules of the crate the lower layer must not name.
    pub(crate) above: &'static [&'static str],
    /// What the rule keeps apart, for the problem lines.
    pub(crate) what: &'static str,
}

/// The workspace's layering rules.
pub(crate) const LAYERS: &[Layer] = &[Layer {
    crate_dir: "proxy",
    below: "net",
    above: &["app", "supervisor", "handover", "links", "check", "main"],
    what: "the network layer names the application layer",
}];

/// One problem line per path in a lower layer's file that names a module above it.
pub(crate) fn layer_violations(root: &Path, layers: &[Layer]) -> anyhow::Result<Vec<String>> {
    let mut problems = Vec::new();
    for layer in layers {
        let src = root.join(layer.crate_dir).join("src");
        let sources = crate_sources(layer.crate_dir, &src)?;
        let below: Vec<String> = layer.below.split("::").map(String::from).collect();
        for (module, file) in &sources.files {
            if !module.starts_with(&below) {
                continue;
            }
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("reading {}", file.display()))?;
            for named in named_paths(module, &text) {
                if named
                    .absolute
                    .first()
                    .is_some_and(|top| layer.above.contains(&top.as_str()))
                {
                    problems.push(format!(
                        "{}:{}: {} (`{}` in {})",
                        shown(root, file),
                        named.line,
                        layer.what,
                        named.text,
                        display(module)
                    ));
                }
            }
        }
    }
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tidy::sources::TempTree;

    #[test]
    fn a_lower_layer_naming_an_upper_one_is_reported() {
        let tree = TempTree::new(&[
            ("proxy/src/lib.rs", "pub mod app;\npub mod net;\npub mod stats;\n"),
            (
                "proxy/src/app.rs",
                "use crate::net::serve;\npub struct Config;\n",
            ),
            (
                "proxy/src/net/mod.rs",
                "pub mod client;\nuse crate::stats::Counters;\n// crate::app is fine in a comment\n",
            ),
            (
                "proxy/src/net/client.rs",
                "use super::super::app::Config;\nfn f() { crate::supervisor::stop(); }\n",
            ),
        ]);
        let problems = layer_violations(&tree.root, LAYERS).expect("read the crate");
        assert_eq!(
            problems,
            [
                "proxy/src/net/client.rs:1: the network layer names the application layer \
                 (`super::super::app::Config` in net::client)",
                "proxy/src/net/client.rs:2: the network layer names the application layer \
                 (`crate::supervisor::stop` in net::client)",
            ]
        );
    }
}
