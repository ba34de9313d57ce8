//! Family `transport`: abridged / intermediate / padded intermediate framing in both
//! directions and the quick-ack encodings. Expected bytes come from
//! `vectors/gen/transport.py` and, for the two quick-ack examples, from the C build.
//!
//! Every decode vector is replayed twice: with all bytes at once, and fed one byte at a
//! time (the decoders must give the same result for any split).

use std::path::Path;

use anyhow::{anyhow, Context};
use mtproxy::protocol::transport::{
    encode_client_frame, encode_padded_quick_ack_alt, encode_quick_ack, encode_server_frame,
    BytesMut, ClientDecoder, EncodeError, ServerDecoder, ServerFrame, TransportError,
};
use serde_json::Value;

use crate::data::{hex_field, transport_of};
use crate::replay::{replay_with, FamilyReport};

const FAMILY: &str = "transport";

fn error_name(e: TransportError) -> &'static str {
    match e {
        TransportError::ZeroLength => "ZeroLength",
        TransportError::OverlongEncoding { .. } => "OverlongEncoding",
        TransportError::ReservedBit { .. } => "ReservedBit",
        TransportError::NotAligned { .. } => "NotAligned",
        TransportError::ShortPaddedFrame { .. } => "ShortPaddedFrame",
        TransportError::TooLong { .. } => "TooLong",
    }
}

fn encode_error_name(e: EncodeError) -> &'static str {
    match e {
        EncodeError::NotAligned { .. } => "NotAligned",
        EncodeError::BadPadding { .. } => "BadPadding",
        EncodeError::TooLong { .. } => "TooLong",
    }
}

fn expected_error(v: &Value) -> Option<String> {
    v.get("error").and_then(Value::as_str).map(str::to_string)
}

/// Decodes `input` fed in `chunk`-byte pieces (0 = all at once) until an error or the end.
fn run<F, T>(input: &[u8], chunk: usize, mut decode: F) -> (Vec<T>, Option<String>)
where
    F: FnMut(&mut BytesMut) -> Result<Option<T>, TransportError>,
{
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let step = if chunk == 0 {
        input.len().max(1)
    } else {
        chunk
    };
    for piece in input.chunks(step) {
        buf.extend_from_slice(piece);
        loop {
            match decode(&mut buf) {
                Ok(Some(item)) => out.push(item),
                Ok(None) => break,
                Err(e) => return (out, Some(error_name(e).to_string())),
            }
        }
    }
    (out, None)
}

fn server_decode(v: &Value) -> anyhow::Result<Vec<String>> {
    let t = transport_of(v)?;
    let input = hex_field(v, "input")?;
    let mut want = Vec::new();
    for f in v
        .get("frames")
        .and_then(Value::as_array)
        .context("frames")?
    {
        let ack = f
            .get("quick_ack")
            .and_then(Value::as_bool)
            .context("quick_ack")?;
        want.push((hex_field(f, "payload")?, ack));
    }
    let want = (want, expected_error(v));
    let mut fails = Vec::new();
    for chunk in [0, 1] {
        let mut d = ServerDecoder::new(t);
        let (frames, err) = run(&input, chunk, |b| d.decode(b));
        let got: Vec<_> = frames
            .into_iter()
            .map(|f| (f.payload.to_vec(), f.quick_ack))
            .collect();
        if (got.clone(), err.clone()) != want {
            fails.push(format!(
                "chunk {chunk}: got {} frames / {err:?}, want {} / {:?}",
                got.len(),
                want.0.len(),
                want.1
            ));
        }
    }
    Ok(fails)
}

fn client_decode(v: &Value) -> anyhow::Result<Vec<String>> {
    let t = transport_of(v)?;
    let input = hex_field(v, "input")?;
    let mut want = Vec::new();
    for item in v.get("items").and_then(Value::as_array).context("items")? {
        if let Some(c) = item.get("quick_ack") {
            let c = c.as_u64().context("quick_ack")?;
            want.push(ServerFrame::QuickAck(u32::try_from(c)?));
        } else {
            want.push(ServerFrame::Packet(BytesMut::from(
                &hex_field(item, "packet")?[..],
            )));
        }
    }
    let want = (want, expected_error(v));
    let mut fails = Vec::new();
    for chunk in [0, 1] {
        let mut d = ClientDecoder::new(t);
        let got = run(&input, chunk, |b| d.decode(b));
        if got != want {
            fails.push(format!("chunk {chunk}: got {got:?}, want {want:?}"));
        }
    }
    Ok(fails)
}

fn compare_encoded(
    v: &Value,
    res: Result<(), EncodeError>,
    dst: &BytesMut,
) -> anyhow::Result<Vec<String>> {
    Ok(match (expected_error(v), res) {
        (Some(want), Err(e)) if encode_error_name(e) == want && dst.is_empty() => vec![],
        (Some(want), r) => vec![format!(
            "want error {want}, got {r:?} with {} bytes",
            dst.len()
        )],
        (None, Err(e)) => vec![format!("unexpected error {e}")],
        (None, Ok(())) => {
            let wire = hex_field(v, "wire")?;
            if dst[..] == wire[..] {
                vec![]
            } else {
                vec![format!(
                    "wire {} != {}",
                    hex::encode(dst),
                    hex::encode(&wire)
                )]
            }
        }
    })
}

fn confirm_of(v: &Value) -> anyhow::Result<u32> {
    Ok(u32::try_from(
        v.get("confirm")
            .and_then(Value::as_u64)
            .context("confirm")?,
    )?)
}

fn replay_one(v: &Value) -> anyhow::Result<Vec<String>> {
    let mut dst = BytesMut::new();
    match v.get("kind").and_then(Value::as_str) {
        Some("server_decode") => server_decode(v),
        Some("client_decode") => client_decode(v),
        Some("server_encode") => {
            let payload = hex_field(v, "payload")?;
            let padding = hex_field(v, "padding")?;
            let res = encode_server_frame(transport_of(v)?, &payload, &padding, &mut dst);
            compare_encoded(v, res, &dst)
        }
        Some("client_encode") => {
            let payload = hex_field(v, "payload")?;
            let padding = hex_field(v, "padding")?;
            let ack = v
                .get("quick_ack")
                .and_then(Value::as_bool)
                .context("quick_ack")?;
            let res = encode_client_frame(transport_of(v)?, &payload, ack, &padding, &mut dst);
            compare_encoded(v, res, &dst)
        }
        Some("quick_ack") => {
            encode_quick_ack(transport_of(v)?, confirm_of(v)?, &mut dst);
            compare_encoded(v, Ok(()), &dst)
        }
        Some("quick_ack_alt") => {
            let res = encode_padded_quick_ack_alt(
                confirm_of(v)?,
                &hex_field(v, "pad1")?,
                &hex_field(v, "pad2")?,
                &mut dst,
            );
            compare_encoded(v, res, &dst)
        }
        other => Err(anyhow!("bad kind {other:?}")),
    }
}

/// Replays every vector of `data/transport.json`.
///
/// # Errors
/// When the file cannot be read.
pub fn replay(dir: &Path) -> anyhow::Result<FamilyReport> {
    replay_with(dir, FAMILY, |v| {
        let failures = replay_one(v)?;
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
