//! Replays the vector families in `vectors/data/` against the protocol core.
//!
//! One data file per family: `data/<family>.json`, shaped as
//! `{"family": "...", "provenance": "...", "vectors": [{"name": "...", "provenance": "...", ...}]}`.
//! Every expected value comes from outside our own code: a published standard, the C
//! build's observed behaviour, or an independent computation (the Python generators in
//! `vectors/gen/`, which use Python's own `hashlib`/`hmac`/`pow` and the `cryptography`
//! package, never this crate). Each family's runner lives in `families/<family>.rs`.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

use serde::Serialize;

pub mod families;
mod util;

pub use util::{hex_field, load_family, replay_with, FamilyFile};

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

/// The directory holding the data files of this checkout.
pub fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data")
}

/// Replays every family; a family whose file cannot be read reports one failure.
pub fn replay_all(dir: &Path) -> Vec<FamilyReport> {
    families::ALL
        .iter()
        .map(|f| {
            (f.replay)(dir).unwrap_or_else(|e| FamilyReport {
                family: f.name.to_string(),
                provenance: String::new(),
                count: 0,
                failures: vec![format!("could not replay: {e:#}")],
            })
        })
        .collect()
}
