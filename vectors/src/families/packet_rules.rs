//! Family `packet_rules`: which decoded client payloads are forwarded to the middle end,
//! dropped silently (with the reason), or handled as `RPC_PING`. Expected verdicts come
//! from `vectors/gen/packet_rules.py`.

use std::path::Path;

use anyhow::{anyhow, Context};
use mtproxy::protocol::packet::{classify, PacketVerdict};
use serde_json::Value;

use crate::data::{drop_reason_name, hex_field};
use crate::replay::{replay_with, FamilyReport};

const FAMILY: &str = "packet_rules";

/// The verdict as the data file spells it.
fn verdict_value(v: PacketVerdict) -> Value {
    match v {
        PacketVerdict::Forward {
            unencrypted,
            auth_key_id,
        } => serde_json::json!({
            "verdict": "forward", "unencrypted": unencrypted, "auth_key_id": auth_key_id.to_string()
        }),
        PacketVerdict::Drop(r) => {
            serde_json::json!({"verdict": "drop", "reason": drop_reason_name(r)})
        }
        PacketVerdict::RpcPing { reply } => {
            serde_json::json!({"verdict": "rpc_ping", "reply": reply.map(hex::encode)})
        }
    }
}

fn replay_one(v: &Value) -> anyhow::Result<Option<String>> {
    let payload = hex_field(v, "payload")?;
    let got = verdict_value(classify(&payload));
    let obj = got.as_object().context("verdict is an object")?;
    for (k, want) in obj {
        let have = v.get(k).ok_or_else(|| anyhow!("field {k:?} missing"))?;
        if have != want {
            return Ok(Some(format!("{k}: got {want}, want {have}")));
        }
    }
    Ok(None)
}

/// Replays every vector of `data/packet_rules.json`.
///
/// # Errors
/// When the file cannot be read.
pub fn replay(dir: &Path) -> anyhow::Result<FamilyReport> {
    replay_with(dir, FAMILY, |v| match replay_one(v)? {
        None => Ok(()),
        Some(f) => Err(anyhow!("{f}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::data_dir;

    #[test]
    fn family_passes() {
        let r = replay(&data_dir()).unwrap();
        assert!(r.count >= 30, "only {} vectors", r.count);
        assert!(r.failures.is_empty(), "{:#?}", r.failures);
    }
}
