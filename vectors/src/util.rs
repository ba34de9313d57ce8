//! Loading family files and reading hex fields.

use std::path::Path;

use anyhow::{anyhow, Context};

use crate::FamilyReport;
use serde::Deserialize;
use serde_json::Value;

/// A family data file as stored.
#[derive(Debug, Deserialize)]
pub struct FamilyFile {
    /// The family name; must equal the file stem.
    pub family: String,
    /// The family's overall provenance.
    pub provenance: String,
    /// The vectors, each a JSON object with at least `name`.
    pub vectors: Vec<Value>,
}

/// Reads `dir/<name>.json`.
///
/// # Errors
/// When the file is missing, is not JSON of the family shape, or names another family.
pub fn load_family(dir: &Path, name: &str) -> anyhow::Result<FamilyFile> {
    let path = dir.join(format!("{name}.json"));
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let file: FamilyFile =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    if file.family != name {
        return Err(anyhow!("{} names family {:?}", path.display(), file.family));
    }
    Ok(file)
}

/// Reads the hex string field `key` of vector `v` as bytes (whitespace ignored).
///
/// # Errors
/// When the field is missing, not a string or not hex.
pub fn hex_field(v: &Value, key: &str) -> anyhow::Result<Vec<u8>> {
    let s = v
        .get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("field {key:?} missing or not a string"))?;
    let clean: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    hex::decode(&clean).with_context(|| format!("field {key:?} is not hex"))
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
