//! MD5: the RFC 1321 test suite, hashed whole and in many chunkings of the parts API.

use std::path::Path;

use crate::replay::FamilyReport;

/// Replays `data/md5.json` against [`mtproxy::protocol::crypto::md5`].
///
/// # Errors
/// When the data file cannot be read.
pub fn replay(dir: &Path) -> anyhow::Result<FamilyReport> {
    super::kat::replay_digest(dir, "md5", |parts| {
        mtproxy::protocol::crypto::md5(parts).to_vec()
    })
}
