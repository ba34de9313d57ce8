//! `multi_conf`: `proxy-multi.conf` samples with the C build's verdict (the exact fatal
//! line for rejected ones; clusters, targets, default, limits, size and md5 for accepted
//! ones), replayed through [`mtproxy::config::multi_conf::parse_multi_conf`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;

use anyhow::{anyhow, Context};
use mtproxy::config::multi_conf::{parse_multi_conf, MultiConf};
use serde_json::{json, Value};

use crate::replay::{replay_with, FamilyReport};

const NAME: &str = "multi_conf";

/// Replays every `multi_conf` vector.
///
/// # Errors
/// When the data file cannot be read.
pub fn replay(dir: &Path) -> anyhow::Result<FamilyReport> {
    replay_with(dir, NAME, check)
}

fn check(v: &Value) -> anyhow::Result<()> {
    let text = v
        .get("text")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("no text"))?;
    // The generator writes the file as latin-1, one byte per char.
    let bytes: Vec<u8> = text
        .chars()
        .map(|c| u8::try_from(u32::from(c)).map_err(|_| anyhow!("non-latin-1 text")))
        .collect::<anyhow::Result<_>>()?;
    let file = v.get("file").and_then(Value::as_str).unwrap_or("t.conf");
    let hosts: HashMap<String, IpAddr> = v
        .get("hosts")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, ip)| Some((k.clone(), ip.as_str()?.parse().ok()?)))
                .collect()
        })
        .unwrap_or_default();
    let resolve = |name: &str| hosts.get(name).copied();
    let got = parse_multi_conf(&bytes, file, &resolve);
    match (v.get("error").and_then(Value::as_str), v.get("expect"), got) {
        (Some(want), _, Err(e)) => {
            let code = v.get("code").and_then(Value::as_i64).context("no code")?;
            if e.to_string() != want || i64::from(e.code()) != code {
                return Err(anyhow!(
                    "want {want:?} (code {code}), got {:?} (code {})",
                    e.to_string(),
                    e.code()
                ));
            }
        }
        (Some(want), _, Ok(_)) => return Err(anyhow!("accepted, C rejects with {want:?}")),
        (None, Some(want), Ok(conf)) => {
            let got = summary(&conf);
            let want = normalize(want.clone())?;
            if got != want {
                return Err(anyhow!("want {want}, got {got}"));
            }
        }
        (None, Some(_), Err(e)) => return Err(anyhow!("rejected ({e}), C accepts")),
        (None, None, _) => return Err(anyhow!("vector has neither error nor expect")),
    }
    Ok(())
}

/// Rewrites every target address of an expectation in Rust's canonical form (Python
/// prints `::ffff:7f00:1` where Rust prints `::ffff:127.0.0.1`; same address).
fn normalize(mut want: Value) -> anyhow::Result<Value> {
    fn fix(list: Option<&mut Value>) -> anyhow::Result<()> {
        if let Some(Value::Array(items)) = list {
            for it in items {
                let s = it.as_str().ok_or_else(|| anyhow!("target not a string"))?;
                let addr: std::net::SocketAddr =
                    s.parse().with_context(|| format!("bad target {s}"))?;
                *it = Value::String(addr.to_string());
            }
        }
        Ok(())
    }
    fix(want.get_mut("targets"))?;
    if let Some(Value::Array(clusters)) = want.get_mut("clusters") {
        for c in clusters {
            fix(c.get_mut("targets"))?;
        }
    }
    Ok(want)
}

fn summary(c: &MultiConf) -> Value {
    json!({
        "clusters": c.clusters.iter().map(|cl| json!({
            "id": cl.id,
            "targets": cl.targets.iter().map(ToString::to_string).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "default_cluster_id": c.default_cluster_id,
        "default_cluster": c.default_cluster,
        "min_connections": c.min_connections,
        "max_connections": c.max_connections,
        "timeout_ms": c.timeout_ms,
        "targets": c.targets.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "size": c.size,
        "md5": c.md5_hex,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::data_dir;

    #[test]
    fn family_passes() {
        let r = replay(&data_dir()).unwrap();
        assert!(r.count >= 40, "{}", r.count);
        assert!(r.failures.is_empty(), "{:#?}", r.failures);
    }
}
