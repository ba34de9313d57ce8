//! Replays the vector families in `vectors/data/` against the protocol core.
//!
//! One data file per family: `data/<family>.json`, shaped as
//! `{"family": "...", "provenance": "...", "vectors": [{"name": "...", "provenance": "...", ...}]}`.
//! Every expected value comes from outside our own code: a published standard, the C
//! build's observed behaviour, or an independent computation (the Python generators in
//! `vectors/gen/`, which use Python's own `hashlib`/`hmac`/`pow` and the `cryptography`
//! package, never this crate). Each family's runner lives in `families/<family>.rs`.
//!
//! Layout: `data` (the data files and typed field readers) and `replay` (the per-vector
//! runner and the report) are the leaves; [`families`] holds one module per family and the
//! [`families::ALL`] table; this file declares the modules, re-exports the public items and
//! runs every family ([`replay_all`]).
#![forbid(unsafe_code)]

use std::path::Path;

mod data;
pub mod families;
mod replay;

pub use data::{data_dir, hex_field, load_family, FamilyFile};
pub use replay::{replay_with, Family, FamilyReport};

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
