//! CRC32C (Castagnoli): the check value and the RFC 3720 B.4 examples.

use std::path::Path;

use anyhow::ensure;

use super::kat;
use crate::replay::{replay_with, FamilyReport};

/// Replays `data/crc32c.json` against [`mtproxy::protocol::crypto::crc32c`].
///
/// # Errors
/// When the data file cannot be read.
pub fn replay(dir: &Path) -> anyhow::Result<FamilyReport> {
    replay_with(dir, "crc32c", |v| {
        let msg = kat::message(v)?;
        let want = kat::u32_hex(v, "value")?;
        let got = mtproxy::protocol::crypto::crc32c(&msg);
        ensure!(got == want, "got {got:08x}, want {want:08x}");
        Ok(())
    })
}
