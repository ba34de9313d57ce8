//! Family `dh`: the DH parameters of `net/net-crypto-dh.c`.

use std::path::Path;

use anyhow::anyhow;
use mtproxy::protocol::dh::{
    dh_params_hash, is_good_dh_value, mod_exp, shared_secret, DhError, RPC_DH_PRIME,
};
use serde_json::Value;

use crate::data::hex_field;
use crate::replay::{replay_with, FamilyReport};

const NAME: &str = "dh";

fn arr256(v: &Value, key: &str) -> anyhow::Result<[u8; 256]> {
    <[u8; 256]>::try_from(hex_field(v, key)?.as_slice())
        .map_err(|_| anyhow!("field {key:?} is not 256 bytes"))
}

fn check(v: &Value) -> anyhow::Result<()> {
    match v["kind"].as_str() {
        Some("params_hash") => {
            if hex_field(v, "prime")? != RPC_DH_PRIME {
                return Err(anyhow!("prime differs"));
            }
            let want = v["expected"].as_u64().ok_or_else(|| anyhow!("expected"))?;
            let got = u64::from(dh_params_hash());
            if got != want {
                return Err(anyhow!("hash {got:#010x}, want {want:#010x}"));
            }
            Ok(())
        }
        Some("mod_exp") => {
            let got = mod_exp(&hex_field(v, "base")?, &hex_field(v, "exp")?);
            if got[..] != hex_field(v, "expected")?[..] {
                return Err(anyhow!("result differs"));
            }
            Ok(())
        }
        Some("is_good") => {
            let want = v["expected"].as_bool().ok_or_else(|| anyhow!("expected"))?;
            let got = is_good_dh_value(&arr256(v, "value")?);
            if got != want {
                return Err(anyhow!("got {got}, want {want}"));
            }
            Ok(())
        }
        Some("shared") => {
            let got = shared_secret(&arr256(v, "g_b")?, &arr256(v, "a")?);
            match (v["expect"].as_str(), got) {
                (Some("ok"), Ok(k)) if k[..] == hex_field(v, "expected")?[..] => Ok(()),
                (Some("BadPeerValue"), Err(DhError::BadPeerValue)) => Ok(()),
                (want, got) => Err(anyhow!("got {:?}, want {want:?}", got.map(|_| "a key"))),
            }
        }
        other => Err(anyhow!("unknown kind {other:?}")),
    }
}

/// Replays every vector of the family.
///
/// # Errors
/// When the data file cannot be read.
pub fn replay(dir: &Path) -> anyhow::Result<FamilyReport> {
    replay_with(dir, NAME, check)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::data_dir;

    #[test]
    fn all_vectors_pass() {
        let r = replay(&data_dir()).unwrap();
        assert!(r.count >= 25, "only {} vectors", r.count);
        assert!(r.failures.is_empty(), "{:#?}", r.failures);
    }
}
