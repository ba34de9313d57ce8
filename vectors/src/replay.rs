//! Replaying a family: its registry entry ([`Family`]), what a replay reports
//! ([`FamilyReport`]), and the per-vector runner every family's `replay` builds on
//! ([`replay_with`]).

use std::path::Path;

use anyhow::anyhow;
use serde::Serialize;
use serde_json::Value;

use crate::data::load_family;

/// The outcome of replaying one family.
#[derive(Debug, Clone, Serialize)]
pub struct FamilyReport {
    /// The family name (the data file's stem).
    pub family: String,
    /// Where the family's expected values come from.
    pub provenance: String,
    /// How many vectors were replayed.
    pub count: usize,
    /// One line per failing vector: `name: what differed`.
    pub failures: Vec<String>,
}

/// A family: its name and its replay function over the data directory.
pub struct Family {
    /// The family name; its data file is `data/<name>.json`.
    pub name: &'static str,
    /// Replays every vector of the family.
    pub replay: fn(&Path) -> anyhow::Result<FamilyReport>,
}

/// Replays every vector of `family` through `check`; a vector whose check fails, or that
/// lacks a `name` or a `provenance`, becomes one failure line.
pub fn replay_with(
    dir: &Path,
    family: &str,
    check: impl Fn(&Value) -> anyhow::Result<()>,
) -> anyhow::Result<FamilyReport> {
    let file = load_family(dir, family)?;
    let mut failures = Vec::new();
    for (i, v) in file.vectors.iter().enumerate() {
        let name = v.get("name").and_then(Value::as_str).unwrap_or("");
        let label = if name.is_empty() {
            format!("#{i}")
        } else {
            name.to_string()
        };
        let provenance = v.get("provenance").and_then(Value::as_str).unwrap_or("");
        let outcome = if name.is_empty() {
            Err(anyhow!("vector has no name"))
        } else if provenance.is_empty() {
            Err(anyhow!("vector has no provenance"))
        } else {
            check(v)
        };
        if let Err(e) = outcome {
            failures.push(format!("{label}: {e:#}"));
        }
    }
    Ok(FamilyReport {
        family: file.family,
        provenance: file.provenance,
        count: file.vectors.len(),
        failures,
    })
}
