//! Family `fake_tls_client_hello`: first-byte classification and ClientHello validation.

use std::path::Path;

use anyhow::{anyhow, Context};
use mtproxy::protocol::fake_tls::{
    classify_first_bytes, validate_client_hello, Classification, ReplayCache,
};
use serde_json::Value;

use crate::data::hex_field;
use crate::replay::{replay_with, FamilyReport};

const NAME: &str = "fake_tls_client_hello";

fn int(v: &Value, key: &str) -> anyhow::Result<i64> {
    v.get(key)
        .and_then(Value::as_i64)
        .ok_or_else(|| anyhow!("field {key:?} missing or not an integer"))
}

fn string(v: &Value, key: &str) -> anyhow::Result<String> {
    v.get(key)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| anyhow!("field {key:?} missing or not a string"))
}

fn check_classify(v: &Value) -> anyhow::Result<()> {
    let got = classify_first_bytes(&hex_field(v, "bytes")?);
    let want = match string(v, "expect")?.as_str() {
        "NeedMore" => Classification::NeedMore,
        "NotTls" => Classification::NotTls,
        "FakeTls" => Classification::FakeTls {
            record_len: usize::try_from(int(v, "record_len")?)?,
        },
        other => return Err(anyhow!("unknown expectation {other}")),
    };
    if got != want {
        return Err(anyhow!("got {got:?}, want {want:?}"));
    }
    Ok(())
}

fn check_validate(v: &Value) -> anyhow::Result<()> {
    let record = hex_field(v, "record")?;
    let extra = usize::try_from(int(v, "extra")?)?;
    let now = int(v, "now")?;
    let domains: Vec<String> = serde_json::from_value(v["domains"].clone()).context("domains")?;
    let secrets = v["secrets"]
        .as_array()
        .ok_or_else(|| anyhow!("secrets"))?
        .iter()
        .map(|s| {
            let b = hex::decode(s.as_str().unwrap_or_default())?;
            <[u8; 16]>::try_from(b.as_slice()).map_err(|_| anyhow!("secret is not 16 bytes"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut cache = ReplayCache::new();
    for e in v["cache"].as_array().ok_or_else(|| anyhow!("cache"))? {
        let key = <[u8; 16]>::try_from(hex_field(e, "key")?.as_slice())
            .map_err(|_| anyhow!("cache key is not 16 bytes"))?;
        cache.insert(key, int(e, "time")?);
    }
    let got = validate_client_hello(&record, extra, &domains, &secrets, now, &mut cache);
    let expect = string(v, "expect")?;
    match (expect.as_str(), got) {
        ("accept", Ok(a)) => {
            let fields = [
                (
                    "secret_index",
                    a.secret_index as i64,
                    int(v, "secret_index")?,
                ),
                ("domain", a.domain as i64, int(v, "domain")?),
                (
                    "cipher_suite",
                    i64::from(a.cipher_suite),
                    int(v, "cipher_suite")?,
                ),
                ("timestamp", i64::from(a.timestamp), int(v, "timestamp")?),
            ];
            for (name, got, want) in fields {
                if got != want {
                    return Err(anyhow!("{name}: got {got}, want {want}"));
                }
            }
            if a.session_id[..] != hex_field(v, "session_id")?[..] {
                return Err(anyhow!("session id differs"));
            }
            if a.client_random[..] != hex_field(v, "client_random")?[..] {
                return Err(anyhow!("client random differs"));
            }
            Ok(())
        }
        ("accept", Err(e)) => Err(anyhow!("rejected as {e:?}, want accept")),
        (class, Ok(_)) => Err(anyhow!("accepted, want {class}")),
        (class, Err(e)) => {
            let domain = usize::try_from(int(v, "domain")?)?;
            if e.class() != class || e.splice_domain() != domain {
                return Err(anyhow!(
                    "got {} to domain {}, want {class} to domain {domain}",
                    e.class(),
                    e.splice_domain()
                ));
            }
            Ok(())
        }
    }
}

/// Replays every vector of the family.
///
/// # Errors
/// When the data file cannot be read.
pub fn replay(dir: &Path) -> anyhow::Result<FamilyReport> {
    replay_with(dir, NAME, |v| match v["kind"].as_str() {
        Some("classify") => check_classify(v),
        Some("validate") => check_validate(v),
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
