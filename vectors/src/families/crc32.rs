//! CRC32 (IEEE 802.3): the check value and further zlib-computed values.

use std::path::Path;

use anyhow::ensure;

use super::kat;
use crate::replay::{replay_with, FamilyReport};

/// Replays `data/crc32.json` against [`mtproxy::protocol::crypto::crc32`].
///
/// # Errors
/// When the data file cannot be read.
pub fn replay(dir: &Path) -> anyhow::Result<FamilyReport> {
    replay_with(dir, "crc32", |v| {
        let msg = kat::message(v)?;
        let want = kat::u32_hex(v, "value")?;
        let got = mtproxy::protocol::crypto::crc32(&msg);
        ensure!(got == want, "got {got:08x}, want {want:08x}");
        Ok(())
    })
}
