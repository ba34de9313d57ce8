//! Family `obfuscated2`: the 64-byte header, server role ([`parse_header`]) and client role
//! ([`ClientHandshake::from_random`]). Expected keys and keystreams come from
//! `vectors/gen/obfuscated2.py` (hashlib + cryptography AES-CTR).

use std::path::Path;

use anyhow::{anyhow, bail, Context};
use mtproxy::protocol::crypto::AesCtr;
use mtproxy::protocol::obfuscated2::{
    parse_header, AcceptPolicy, ClientHandshake, HeaderRuleViolation, Transport,
};
use serde_json::Value;

use crate::data::{hex_field, transport_of};
use crate::replay::{replay_with, FamilyReport};

const FAMILY: &str = "obfuscated2";

fn transport_name(t: Transport) -> &'static str {
    match t {
        Transport::Abridged => "abridged",
        Transport::Intermediate => "intermediate",
        Transport::PaddedIntermediate => "padded_intermediate",
    }
}

fn arr<const N: usize>(v: &Value, key: &str) -> anyhow::Result<[u8; N]> {
    let b = hex_field(v, key)?;
    b.try_into()
        .map_err(|b: Vec<u8>| anyhow!("field {key:?} has {} bytes, want {N}", b.len()))
}

fn keystream(stream: &mut AesCtr, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    stream.apply(&mut buf);
    buf
}

fn dc_of(v: &Value) -> anyhow::Result<i16> {
    let dc = v.get("dc").and_then(Value::as_i64).context("dc")?;
    Ok(i16::try_from(dc)?)
}

fn check(cond: bool, what: &str, failures: &mut Vec<String>) {
    if !cond {
        failures.push(what.to_string());
    }
}

fn replay_server(v: &Value) -> anyhow::Result<Vec<String>> {
    let header: [u8; 64] = arr(v, "header")?;
    let secrets = v
        .get("secrets")
        .and_then(Value::as_array)
        .context("secrets")?
        .iter()
        .map(|s| {
            let s = s.as_str().context("secret not a string")?;
            let b = hex::decode(s)?;
            <[u8; 16]>::try_from(b).map_err(|_| anyhow!("secret is not 16 bytes"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let padded_only = v
        .get("padded_only")
        .and_then(Value::as_bool)
        .context("padded_only")?;
    let got = parse_header(&header, &secrets, AcceptPolicy { padded_only });
    let mut f = Vec::new();
    match (v.get("expect").and_then(Value::as_str), got) {
        (Some("none"), None) => {}
        (Some("none"), Some(hs)) => f.push(format!("expected no match, got {:?}", hs.transport)),
        (Some("match"), None) => f.push("expected a match, got none".into()),
        (Some("match"), Some(mut hs)) => {
            check(
                transport_name(hs.transport) == transport_name(transport_of(v)?),
                "transport",
                &mut f,
            );
            check(hs.dc == dc_of(v)?, "dc", &mut f);
            let idx = v.get("secret_index").context("secret_index")?;
            let want = idx.as_u64().map(|i| i as usize);
            check(hs.secret_index == want, "secret_index", &mut f);
            let up = hex_field(v, "decrypt_keystream_at_64")?;
            check(
                keystream(&mut hs.decrypt, up.len()) == up,
                "decrypt keystream at 64",
                &mut f,
            );
            let down = hex_field(v, "encrypt_keystream_at_0")?;
            check(
                keystream(&mut hs.encrypt, down.len()) == down,
                "encrypt keystream at 0",
                &mut f,
            );
            // The recorded keys themselves give the same streams (cross-check of the data file).
            let mut k = AesCtr::new(&arr(v, "decrypt_key")?, &arr(v, "decrypt_iv")?);
            let skip = keystream(&mut k, 64 + up.len());
            check(
                skip.get(64..) == Some(&up[..]),
                "decrypt_key/iv vs keystream",
                &mut f,
            );
            let mut k = AesCtr::new(&arr(v, "encrypt_key")?, &arr(v, "encrypt_iv")?);
            check(
                keystream(&mut k, down.len()) == down,
                "encrypt_key/iv vs keystream",
                &mut f,
            );
        }
        (other, _) => bail!("bad expect {other:?}"),
    }
    Ok(f)
}

fn rule_name(e: HeaderRuleViolation) -> &'static str {
    match e {
        HeaderRuleViolation::AbridgedFirstByte => "AbridgedFirstByte",
        HeaderRuleViolation::ReservedFirstWord(_) => "ReservedFirstWord",
        HeaderRuleViolation::ZeroSecondWord => "ZeroSecondWord",
    }
}

fn replay_client(v: &Value) -> anyhow::Result<Vec<String>> {
    let random: [u8; 64] = arr(v, "random")?;
    let secret: Option<[u8; 16]> = match v.get("secret") {
        Some(Value::Null) | None => None,
        Some(_) => Some(arr(v, "secret")?),
    };
    let got = ClientHandshake::from_random(random, secret.as_ref(), transport_of(v)?, dc_of(v)?);
    let mut f = Vec::new();
    match (v.get("expect").and_then(Value::as_str), got) {
        (Some("error"), Err(e)) => {
            let want = v.get("error").and_then(Value::as_str).context("error")?;
            check(
                rule_name(e) == want,
                &format!("error {} != {want}", rule_name(e)),
                &mut f,
            );
        }
        (Some("error"), Ok(_)) => f.push("expected a rule violation, got a header".into()),
        (Some("ok"), Err(e)) => f.push(format!("expected a header, got {e}")),
        (Some("ok"), Ok(mut hs)) => {
            check(
                hs.header[..] == hex_field(v, "header")?[..],
                "header",
                &mut f,
            );
            let up = hex_field(v, "encrypt_keystream_at_64")?;
            check(
                keystream(&mut hs.encrypt, up.len()) == up,
                "encrypt keystream at 64",
                &mut f,
            );
            let down = hex_field(v, "decrypt_keystream_at_0")?;
            check(
                keystream(&mut hs.decrypt, down.len()) == down,
                "decrypt keystream at 0",
                &mut f,
            );
        }
        (other, _) => bail!("bad expect {other:?}"),
    }
    Ok(f)
}

/// Replays every vector of `data/obfuscated2.json`.
///
/// # Errors
/// When the file cannot be read.
pub fn replay(dir: &Path) -> anyhow::Result<FamilyReport> {
    replay_with(dir, FAMILY, |v| {
        let failures = match v.get("role").and_then(Value::as_str) {
            Some("server") => replay_server(v)?,
            Some("client") => replay_client(v)?,
            other => return Err(anyhow!("bad role {other:?}")),
        };
        anyhow::ensure!(failures.is_empty(), "{}", failures.join("; "));
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::data_dir;

    #[test]
    fn family_passes() {
        let r = replay(&data_dir()).unwrap();
        assert!(r.count >= 40, "only {} vectors", r.count);
        assert!(r.failures.is_empty(), "{:#?}", r.failures);
    }
}
