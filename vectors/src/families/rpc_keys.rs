//! `rpc_keys`: the ME link's `aes_create_keys` (c-mtproxy.md §5.4).
//!
//! Each vector gives the inputs (nonces, client timestamp, addresses after NAT
//! translation, ports, purpose, secret) and the expected string `s`, `key` and `iv`,
//! computed by `gen/rpc_keys.py` with hashlib. Negative vectors carry `expect_error`
//! (`SecretLength` or `ZeroIpv4`).

use std::path::Path;

use anyhow::{anyhow, bail, ensure, Context};
use mtproxy::protocol::rpc::keys::{
    aes_create_keys, key_string, KeyAddrs, KeyError, KeyInputs, Purpose,
};
use serde_json::Value;

use crate::data::{hex_field, int, string};
use crate::replay::{replay_with, FamilyReport};

const NAME: &str = "rpc_keys";

/// Replays `data/rpc_keys.json` against [`aes_create_keys`].
///
/// # Errors
/// When the data file cannot be read.
pub fn replay(dir: &Path) -> anyhow::Result<FamilyReport> {
    replay_with(dir, NAME, check)
}

fn array16(v: &Value, key: &str) -> anyhow::Result<[u8; 16]> {
    hex_field(v, key)?
        .try_into()
        .map_err(|_| anyhow!("field {key:?} is not 16 bytes"))
}

fn check(v: &Value) -> anyhow::Result<()> {
    let secret = hex_field(v, "secret")?;
    let addrs = match string(v, "family")? {
        "v4" => KeyAddrs::V4 {
            server_ip: string(v, "server_ip")?.parse().context("server_ip")?,
            client_ip: string(v, "client_ip")?.parse().context("client_ip")?,
        },
        "v6" => KeyAddrs::V6 {
            server_ip: string(v, "server_ip")?.parse().context("server_ip")?,
            client_ip: string(v, "client_ip")?.parse().context("client_ip")?,
        },
        other => bail!("unknown family {other:?}"),
    };
    let inputs = KeyInputs {
        nonce_server: array16(v, "nonce_server")?,
        nonce_client: array16(v, "nonce_client")?,
        client_ts: i32::try_from(int(v, "client_ts")?)?,
        addrs,
        server_port: u16::try_from(int(v, "server_port")?)?,
        client_port: u16::try_from(int(v, "client_port")?)?,
        secret: &secret,
    };
    let purpose = match string(v, "purpose")? {
        "CLIENT" => Purpose::Client,
        "SERVER" => Purpose::Server,
        other => bail!("unknown purpose {other:?}"),
    };
    let got = aes_create_keys(&inputs, purpose);
    if let Some(err) = v.get("expect_error").and_then(Value::as_str) {
        let class = match got {
            Ok(_) => bail!("accepted, expected {err}"),
            Err(KeyError::SecretLength(_)) => "SecretLength",
            Err(KeyError::ZeroIpv4) => "ZeroIpv4",
        };
        ensure!(class == err, "error {class}, expected {err}");
        return Ok(());
    }
    let s = key_string(&inputs, purpose)?;
    ensure!(
        s == hex_field(v, "s")?,
        "string s differs: {}",
        hex::encode(&s)
    );
    let (key, iv) = got?;
    ensure!(
        key[..] == hex_field(v, "key")?[..],
        "key {}",
        hex::encode(key)
    );
    ensure!(iv[..] == hex_field(v, "iv")?[..], "iv {}", hex::encode(iv));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::data_dir;

    #[test]
    fn every_rpc_keys_vector_passes() {
        let r = replay(&data_dir()).unwrap();
        assert!(r.count >= 10, "only {} vectors", r.count);
        assert!(r.failures.is_empty(), "{:#?}", r.failures);
    }
}
