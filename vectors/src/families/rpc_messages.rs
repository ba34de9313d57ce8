//! `rpc_messages`: RPC message payloads of the ME link (c-mtproxy.md §5.3, §5.5, §5.7).
//!
//! Kinds: `message` (payload ↔ fields: decoding must give the fields, encoding the fields
//! must give the payload byte-exact; includes the PROXY_REQ observed from the C build),
//! `reject` (an `expect_error` class: NoOp, BadSize, BadExtraSize, Handshake),
//! `nonce_check` and `handshake_check` (C's validation rules and fail_connection codes).

use std::net::Ipv6Addr;
use std::path::Path;

use anyhow::{anyhow, bail, ensure, Context};
use mtproxy::protocol::rpc::handshake::{
    check_peer_handshake, check_peer_nonce, Handshake, HandshakeError, Nonce, NonceSchema,
    ProcessId,
};
use mtproxy::protocol::rpc::messages::{
    MessageError, ProxyReq, ProxyReqExtra, ProxyReqHeader, RpcMessage,
};
use mtproxy::protocol::rpc::Bytes;
use serde_json::Value;

use crate::data::{hex_field, int, string};
use crate::replay::{replay_with, FamilyReport};

const NAME: &str = "rpc_messages";

/// Replays `data/rpc_messages.json` against [`RpcMessage`] and the handshake checks.
///
/// # Errors
/// When the data file cannot be read.
pub fn replay(dir: &Path) -> anyhow::Result<FamilyReport> {
    replay_with(dir, NAME, check)
}

fn bytes(v: &Value, key: &str) -> anyhow::Result<Bytes> {
    Ok(Bytes::from(hex_field(v, key)?))
}

fn u32f(v: &Value, key: &str) -> anyhow::Result<u32> {
    Ok(u32::try_from(int(v, key)?)?)
}

fn i32f(v: &Value, key: &str) -> anyhow::Result<i32> {
    Ok(i32::try_from(int(v, key)?)?)
}

fn pid(v: &Value, key: &str) -> anyhow::Result<ProcessId> {
    let a = v
        .get(key)
        .and_then(Value::as_array)
        .filter(|a| a.len() == 4)
        .ok_or_else(|| anyhow!("field {key:?} is not a 4-element list"))?;
    let n = |i: usize| {
        a[i].as_i64()
            .ok_or_else(|| anyhow!("{key}[{i}] is not an integer"))
    };
    Ok(ProcessId {
        ip: u32::try_from(n(0)?)?,
        port: i16::try_from(n(1)?)?,
        pid: u16::try_from(n(2)?)?,
        utime: i32::try_from(n(3)?)?,
    })
}

fn ints(v: &Value, key: &str) -> anyhow::Result<Vec<i32>> {
    v.get(key)
        .and_then(Value::as_array)
        .ok_or_else(|| anyhow!("field {key:?} is not a list"))?
        .iter()
        .map(|x| {
            Ok(i32::try_from(
                x.as_i64().ok_or_else(|| anyhow!("not an integer"))?,
            )?)
        })
        .collect()
}

/// Builds the expected message from a vector's `message` object.
fn expected(m: &Value) -> anyhow::Result<RpcMessage> {
    Ok(match string(m, "type")? {
        "ProxyReq" => {
            let extra = &m["extra"];
            let extra = match string(extra, "kind")? {
                "none" => ProxyReqExtra::None,
                "tag" => ProxyReqExtra::ProxyTag(
                    hex_field(extra, "hex")?
                        .try_into()
                        .map_err(|_| anyhow!("tag is not 16 bytes"))?,
                ),
                "raw" => ProxyReqExtra::Raw(bytes(extra, "hex")?),
                other => bail!("unknown extra kind {other:?}"),
            };
            let ip = |k: &str| -> anyhow::Result<Ipv6Addr> {
                string(m, k)?
                    .parse()
                    .with_context(|| format!("{k} is not IPv6"))
            };
            RpcMessage::ProxyReq(ProxyReq {
                header: ProxyReqHeader {
                    flags: u32f(m, "flags")?,
                    ext_conn_id: int(m, "ext_conn_id")?,
                    client_ip: ip("client_ip")?,
                    client_port: u32f(m, "client_port")?,
                    proxy_ip: ip("proxy_ip")?,
                    proxy_port: u32f(m, "proxy_port")?,
                    extra,
                },
                payload: bytes(m, "payload")?,
            })
        }
        "ProxyAns" => RpcMessage::ProxyAns {
            flags: u32f(m, "flags")?,
            conn_id: int(m, "conn_id")?,
            data: bytes(m, "data")?,
        },
        "SimpleAck" => RpcMessage::SimpleAck {
            conn_id: int(m, "conn_id")?,
            confirm: u32f(m, "confirm")?,
        },
        "CloseExt" => RpcMessage::CloseExt {
            conn_id: int(m, "conn_id")?,
        },
        "CloseConn" => RpcMessage::CloseConn {
            conn_id: int(m, "conn_id")?,
        },
        "Ping" => RpcMessage::Ping {
            ping_id: int(m, "ping_id")?,
        },
        "Pong" => RpcMessage::Pong {
            ping_id: int(m, "ping_id")?,
        },
        "Unknown" => RpcMessage::Unknown {
            op: u32f(m, "op")?,
            body: bytes(m, "body")?,
        },
        "Handshake" => RpcMessage::Handshake(Handshake {
            flags: u32f(m, "flags")?,
            sender_pid: pid(m, "sender_pid")?,
            peer_pid: pid(m, "peer_pid")?,
        }),
        "HandshakeError" => RpcMessage::HandshakeError(HandshakeError {
            error_code: i32f(m, "error_code")?,
            sender_pid: pid(m, "sender_pid")?,
        }),
        "Nonce" => {
            let schema = match int(m, "schema")? {
                0 => NonceSchema::None,
                1 => NonceSchema::Aes,
                2 => NonceSchema::AesExt {
                    extra_key_select: ints(m, "extra_key_select")?,
                },
                3 => NonceSchema::AesDh {
                    extra_key_select: ints(m, "extra_key_select")?,
                    dh_params_select: u32f(m, "dh_params_select")?,
                    g_a: Box::new(
                        hex_field(m, "g_a")?
                            .try_into()
                            .map_err(|_| anyhow!("g_a is not 256 bytes"))?,
                    ),
                },
                other => bail!("unknown schema {other}"),
            };
            RpcMessage::Nonce(Nonce {
                key_select: i32f(m, "key_select")?,
                schema,
                crypto_ts: i32f(m, "crypto_ts")?,
                nonce: hex_field(m, "nonce")?
                    .try_into()
                    .map_err(|_| anyhow!("nonce is not 16 bytes"))?,
            })
        }
        other => bail!("unknown message type {other:?}"),
    })
}

fn check(v: &Value) -> anyhow::Result<()> {
    let payload = hex_field(v, "payload")?;
    match string(v, "kind")? {
        "message" => {
            let want = expected(&v["message"])?;
            let got = RpcMessage::decode(Bytes::from(payload.clone()))
                .map_err(|e| anyhow!("does not decode: {e}"))?;
            ensure!(got == want, "decoded {got:?}");
            let enc = want.to_bytes();
            ensure!(enc[..] == payload[..], "encodes to {}", hex::encode(&enc));
            ensure!(want.encoded_len() == payload.len(), "encoded_len differs");
        }
        "reject" => {
            let want = string(v, "expect_error")?;
            let class = match RpcMessage::decode(Bytes::from(payload)) {
                Ok(m) => bail!("accepted as {m:?}, expected {want}"),
                Err(MessageError::NoOp(_)) => "NoOp",
                Err(MessageError::BadSize { .. }) => "BadSize",
                Err(MessageError::BadExtraSize { .. }) => "BadExtraSize",
                Err(MessageError::Handshake(_)) => "Handshake",
            };
            ensure!(class == want, "error {class}, expected {want}");
        }
        "nonce_check" => {
            let got = check_peer_nonce(
                &payload,
                i32f(v, "our_key_select")?,
                i32f(v, "own_ts")?,
                v["am_client"]
                    .as_bool()
                    .ok_or_else(|| anyhow!("am_client"))?,
            );
            match (&v["expect"], got) {
                (Value::String(s), Ok(_)) if s == "ok" => {}
                (Value::Number(n), Err(e)) => {
                    ensure!(
                        n.as_i64() == Some(i64::from(e.c_code())),
                        "refused with {e} ({})",
                        e.c_code()
                    )
                }
                (want, got) => bail!("got {got:?}, expected {want}"),
            }
        }
        "handshake_check" => {
            let flag = |k: &str| v[k].as_bool().ok_or_else(|| anyhow!("{k} is not a bool"));
            let got = check_peer_handshake(
                &payload,
                &pid(v, "our_pid")?,
                flag("check_pid")?,
                flag("offer_crc32c")?,
                flag("am_client")?,
            );
            match (&v["expect"], got) {
                (Value::String(s), Ok((_, c))) => {
                    ensure!(
                        s.as_str() == if c { "crc32c" } else { "crc32" },
                        "accepted with crc32c={c}, expected {s}"
                    )
                }
                (Value::Number(n), Err(e)) => {
                    ensure!(
                        n.as_i64() == Some(i64::from(e.c_code())),
                        "refused with {e} ({})",
                        e.c_code()
                    )
                }
                (want, got) => bail!("got {got:?}, expected {want}"),
            }
        }
        other => bail!("unknown kind {other:?}"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::data_dir;

    #[test]
    fn every_rpc_messages_vector_passes() {
        let r = replay(&data_dir()).unwrap();
        assert!(r.count >= 10, "only {} vectors", r.count);
        assert!(r.failures.is_empty(), "{:#?}", r.failures);
    }
}
