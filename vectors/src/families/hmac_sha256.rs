//! HMAC-SHA256: RFC 4231 test cases 1–7 (case 5 compared on its first 128 bits), with the
//! data fed whole and in many chunkings of the parts API.

use std::path::Path;

use anyhow::ensure;

use super::kat;
use crate::data::hex_field;
use crate::replay::{replay_with, FamilyReport};

/// Replays `data/hmac_sha256.json` against [`mtproxy::protocol::crypto::hmac_sha256`].
///
/// # Errors
/// When the data file cannot be read.
pub fn replay(dir: &Path) -> anyhow::Result<FamilyReport> {
    replay_with(dir, "hmac_sha256", |v| {
        let key = hex_field(v, "key")?;
        let data = hex_field(v, "data")?;
        let want = hex_field(v, "mac")?;
        let compared = kat::opt_usize(v, "truncate_bytes")?.unwrap_or(32);
        ensure!(
            want.len() == compared && compared <= 32,
            "mac has {} bytes, but {compared} are compared",
            want.len()
        );
        for chunks in kat::chunkings(data.len()) {
            let parts = kat::split(&data, &chunks)?;
            let mac = mtproxy::protocol::crypto::hmac_sha256(&key, &parts);
            let got = mac.get(..compared).unwrap_or_default();
            kat::expect_eq(got, &want, &kat::describe(&chunks))?;
        }
        Ok(())
    })
}
