//! SHA-256: the FIPS 180 examples, hashed whole and in many chunkings of the parts API.

use std::path::Path;

use crate::replay::FamilyReport;

/// Replays `data/sha256.json` against [`mtproxy::protocol::crypto::sha256`].
///
/// # Errors
/// When the data file cannot be read.
pub fn replay(dir: &Path) -> anyhow::Result<FamilyReport> {
    super::kat::replay_digest(dir, "sha256", |parts| {
        mtproxy::protocol::crypto::sha256(parts).to_vec()
    })
}
