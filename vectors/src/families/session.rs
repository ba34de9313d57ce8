//! Family `session`: a whole client session on the proxy's side, through
//! [`ClientSession`] — a client's wire bytes (obfuscated2 header, encrypted frames) in; the
//! packets forwarded with their RPC_PROXY_REQ flags, the drops, and (abridged,
//! intermediate) the exact wire bytes of the pongs, answers and quick acks going back.
//! Expected values come from `vectors/gen/session.py`.
//!
//! Every vector is replayed twice: all input at once, and one byte at a time.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, bail, ensure};
use mtproxy::protocol::session::{ClientSession, SessionEvent, SessionRules};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::Value;

use crate::data::{drop_reason_name, hex_field, transport_of};
use crate::replay::{replay_with, FamilyReport};

const FAMILY: &str = "session";

fn array<'a>(v: &'a Value, key: &str) -> anyhow::Result<&'a Vec<Value>> {
    v.get(key)
        .and_then(Value::as_array)
        .ok_or_else(|| anyhow!("field {key:?} missing or not an array"))
}

/// Runs one vector with the input cut into `chunk`-byte pieces.
fn run(v: &Value, chunk: usize) -> anyhow::Result<()> {
    let transport = transport_of(v)?;
    let secrets = array(v, "secrets")?
        .iter()
        .map(|s| {
            let b = hex::decode(s.as_str().unwrap_or_default())?;
            <[u8; 16]>::try_from(b.as_slice()).map_err(|_| anyhow!("secret is not 16 bytes"))
        })
        .collect::<anyhow::Result<Vec<[u8; 16]>>>()?;
    let input = hex_field(v, "input")?;
    let mut s = ClientSession::new(
        Arc::new(SessionRules::new(secrets)),
        Instant::now(),
        443,
        &mut StdRng::seed_from_u64(1),
    );
    let (mut identified, mut forwards, mut drops) = (None, Vec::new(), Vec::new());
    for piece in input.chunks(chunk.max(1)) {
        s.feed(piece);
        while let Some(e) = s.poll_event() {
            match e {
                SessionEvent::CheckReplay { .. } => s.replay_answer(true, None, 0),
                SessionEvent::Identified {
                    transport: t,
                    dc,
                    secret_index,
                    ..
                } => identified = Some((t, dc, secret_index)),
                SessionEvent::Forward { payload, flags } => {
                    forwards.push((hex::encode(&payload), u64::from(flags)));
                }
                SessionEvent::Dropped(r) => drops.push(drop_reason_name(r).to_string()),
                other => bail!("unexpected event {other:?}"),
            }
        }
    }
    let dc = v.get("dc").and_then(Value::as_i64).unwrap_or_default();
    let index = v.get("secret_index").and_then(Value::as_u64);
    ensure!(
        identified == Some((transport, i16::try_from(dc)?, index.map(|i| i as usize))),
        "identified as {identified:?}"
    );
    let want_forwards: Vec<(String, u64)> = array(v, "forwards")?
        .iter()
        .map(|f| {
            (
                f.get("payload")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                f.get("flags").and_then(Value::as_u64).unwrap_or(u64::MAX),
            )
        })
        .collect();
    ensure!(forwards == want_forwards, "forwarded {forwards:?}");
    let want_drops: Vec<String> = array(v, "drops")?
        .iter()
        .map(|d| d.as_str().unwrap_or("").to_string())
        .collect();
    ensure!(drops == want_drops, "dropped {drops:?}");
    if let Some(answers) = v.get("answers").and_then(Value::as_array) {
        for a in answers {
            if let Some(p) = a.get("answer").and_then(Value::as_str) {
                ensure!(
                    s.handle_answer(&hex::decode(p)?).is_none(),
                    "answer dropped"
                );
            } else if let Some(c) = a.get("quick_ack").and_then(Value::as_u64) {
                s.handle_quick_ack(u32::try_from(c)?);
            }
        }
        let want = hex_field(v, "to_client")?;
        let got = s.transmit().to_vec();
        ensure!(
            got == want,
            "to the client {} bytes {}, want {}",
            got.len(),
            hex::encode(&got),
            hex::encode(&want)
        );
    }
    Ok(())
}

/// Replays the family from `dir`.
///
/// # Errors
/// When the data file cannot be read.
pub fn replay(dir: &Path) -> anyhow::Result<FamilyReport> {
    replay_with(dir, FAMILY, |v| {
        run(v, usize::MAX)?;
        run(v, 1).map_err(|e| anyhow!("fed one byte at a time: {e:#}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::data_dir;

    #[test]
    fn family_passes() {
        let r = replay(&data_dir()).unwrap();
        assert!(r.count >= 12, "only {} vectors", r.count);
        assert!(r.failures.is_empty(), "{:#?}", r.failures);
    }
}
