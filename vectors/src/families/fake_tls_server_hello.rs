//! Family `fake_tls_server_hello`: building the ServerHello, verifying it as a client,
//! checking probe responses and aggregating probe results.

use std::path::Path;

use anyhow::anyhow;
use mtproxy::protocol::fake_tls::{
    aggregate_probe_results, build_server_hello_from_parts, parse_probe_response,
    verify_server_hello, ProbeError, ProbeFacts, ServerHelloParts,
};
use serde_json::Value;

use crate::data::hex_field;
use crate::replay::{replay_with, FamilyReport};

const NAME: &str = "fake_tls_server_hello";

fn arr<const N: usize>(v: &Value, key: &str) -> anyhow::Result<[u8; N]> {
    <[u8; N]>::try_from(hex_field(v, key)?.as_slice())
        .map_err(|_| anyhow!("field {key:?} is not {N} bytes"))
}

fn int(v: &Value, key: &str) -> anyhow::Result<i64> {
    v.get(key)
        .and_then(Value::as_i64)
        .ok_or_else(|| anyhow!("field {key:?} missing or not an integer"))
}

fn flag(v: &Value, key: &str) -> anyhow::Result<bool> {
    v.get(key)
        .and_then(Value::as_bool)
        .ok_or_else(|| anyhow!("field {key:?} missing or not a bool"))
}

fn expect(v: &Value) -> &str {
    v["expect"].as_str().unwrap_or("")
}

fn check_build(v: &Value) -> anyhow::Result<()> {
    let got = build_server_hello_from_parts(
        &arr(v, "client_random")?,
        &arr(v, "session_id")?,
        u8::try_from(int(v, "cipher_suite")?)?,
        &arr(v, "secret")?,
        flag(v, "reversed")?,
        &ServerHelloParts {
            key_share_scalar: arr(v, "key_share_scalar")?,
            app_data: hex_field(v, "app_data")?,
        },
    );
    let want = hex_field(v, "expected")?;
    if got != want {
        let at = got.iter().zip(&want).position(|(a, b)| a != b);
        return Err(anyhow!(
            "bytes differ (len {} vs {}, first difference at {at:?})",
            got.len(),
            want.len()
        ));
    }
    Ok(())
}

fn check_verify(v: &Value) -> anyhow::Result<()> {
    let got = verify_server_hello(
        &hex_field(v, "response")?,
        &arr(v, "client_random")?,
        &arr(v, "secret")?,
    );
    match (expect(v), got) {
        ("accept", Ok(Some(info))) => {
            if info.consumed as i64 != int(v, "consumed")?
                || info.app_data_len as i64 != int(v, "app_data_len")?
            {
                return Err(anyhow!("got {info:?}"));
            }
            Ok(())
        }
        ("NeedMore", Ok(None)) => Ok(()),
        (class, Err(e)) if format!("{e:?}") == class => Ok(()),
        (class, other) => Err(anyhow!("got {other:?}, want {class}")),
    }
}

fn check_probe(v: &Value) -> anyhow::Result<()> {
    let got = parse_probe_response(&hex_field(v, "response")?, &arr(v, "session_id")?);
    match (expect(v), got) {
        ("accept", Ok(Some(f))) => {
            let want = ProbeFacts {
                reversed_extension_order: flag(v, "reversed")?,
                encrypted_size: u16::try_from(int(v, "encrypted_size")?)?,
                consumed: usize::try_from(int(v, "consumed")?)?,
            };
            if f != want {
                return Err(anyhow!("got {f:?}, want {want:?}"));
            }
            Ok(())
        }
        ("NeedMore", Ok(None)) => Ok(()),
        ("error", Err(ProbeError::BadResponse(msg))) if Some(msg) == v["message"].as_str() => {
            Ok(())
        }
        (class, other) => Err(anyhow!("got {other:?}, want {class} {:?}", v["message"])),
    }
}

fn check_aggregate(v: &Value) -> anyhow::Result<()> {
    let sizes: Vec<u16> = serde_json::from_value(v["sizes"].clone())?;
    let reversed: Vec<bool> = serde_json::from_value(v["reversed"].clone())?;
    let facts: Vec<ProbeFacts> = sizes
        .iter()
        .zip(&reversed)
        .map(|(&encrypted_size, &reversed_extension_order)| ProbeFacts {
            reversed_extension_order,
            encrypted_size,
            consumed: 0,
        })
        .collect();
    let p = aggregate_probe_results(&facts).ok_or_else(|| anyhow!("no profile"))?;
    let want = (
        int(v, "expect_size")?,
        flag(v, "expect_randomize")?,
        flag(v, "expect_reversed")?,
    );
    let got = (
        i64::from(p.encrypted_size),
        p.randomize,
        p.reversed_extension_order,
    );
    if got != want {
        return Err(anyhow!("got {got:?}, want {want:?}"));
    }
    Ok(())
}

/// Replays every vector of the family.
///
/// # Errors
/// When the data file cannot be read.
pub fn replay(dir: &Path) -> anyhow::Result<FamilyReport> {
    replay_with(dir, NAME, |v| match v["kind"].as_str() {
        Some("build") => check_build(v),
        Some("verify") => check_verify(v),
        Some("probe") => check_probe(v),
        Some("aggregate") => check_aggregate(v),
        other => Err(anyhow!("unknown kind {other:?}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::data_dir;

    #[test]
    fn all_vectors_pass() {
        let r = replay(&data_dir()).unwrap();
        assert!(r.count >= 40, "only {} vectors", r.count);
        assert!(r.failures.is_empty(), "{:#?}", r.failures);
    }
}
