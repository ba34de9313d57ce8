//! Helpers shared by the known-answer families (the crypto primitives): running a check per
//! vector, reading typed fields, and cutting one input into the chunks of several calls.

use std::path::Path;

use anyhow::{anyhow, bail, ensure, Context};
use serde_json::Value;

use crate::data::hex_field;
use crate::replay::{replay_with, FamilyReport};

/// Reads the hex field `key` as exactly `N` bytes.
pub(crate) fn array<const N: usize>(v: &Value, key: &str) -> anyhow::Result<[u8; N]> {
    let bytes = hex_field(v, key)?;
    let len = bytes.len();
    bytes
        .try_into()
        .map_err(|_| anyhow!("field {key:?} has {len} bytes, want {N}"))
}

/// Reads the optional non-negative integer field `key`.
pub(crate) fn opt_usize(v: &Value, key: &str) -> anyhow::Result<Option<usize>> {
    match v.get(key) {
        None => Ok(None),
        Some(n) => {
            let n = n
                .as_u64()
                .ok_or_else(|| anyhow!("field {key:?} is not a non-negative integer"))?;
            Ok(Some(usize::try_from(n).context("integer too large")?))
        }
    }
}

/// Reads the optional field `key` as a list of non-negative integers.
pub(crate) fn opt_usize_list(v: &Value, key: &str) -> anyhow::Result<Option<Vec<usize>>> {
    let Some(list) = v.get(key) else {
        return Ok(None);
    };
    let list = list
        .as_array()
        .ok_or_else(|| anyhow!("field {key:?} is not a list"))?;
    list.iter()
        .map(|n| {
            n.as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| anyhow!("field {key:?} holds a non-integer"))
        })
        .collect::<anyhow::Result<Vec<_>>>()
        .map(Some)
}

/// Reads the field `key` holding a 32-bit value as 8 hex digits (`"cbf43926"`).
pub(crate) fn u32_hex(v: &Value, key: &str) -> anyhow::Result<u32> {
    let s = v
        .get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("field {key:?} missing or not a string"))?;
    ensure!(s.len() == 8, "field {key:?} is not 8 hex digits");
    u32::from_str_radix(s, 16).with_context(|| format!("field {key:?} is not hex"))
}

/// The vector's `message` field, repeated `repeat` times when that field is present.
pub(crate) fn message(v: &Value) -> anyhow::Result<Vec<u8>> {
    let unit = hex_field(v, "message")?;
    let repeat = opt_usize(v, "repeat")?.unwrap_or(1);
    Ok(unit.repeat(repeat))
}

/// Ways to cut `len` bytes into consecutive calls, as lists of chunk lengths: one call;
/// one call between two empty ones; two calls at every cut (short inputs) or at cuts around
/// the 64-byte hash block (long inputs); and fixed chunks of 7, 64 and 4096 bytes.
pub(crate) fn chunkings(len: usize) -> Vec<Vec<usize>> {
    let mut out = vec![vec![len], vec![0, len, 0]];
    let cuts: Vec<usize> = if len <= 130 {
        (1..len).collect()
    } else {
        [1, 55, 56, 63, 64, 65, 127, 128, len / 2, len - 1].to_vec()
    };
    out.extend(cuts.into_iter().map(|c| vec![c, len - c]));
    for size in [7, 64, 4096] {
        if size < len {
            let mut chunks = vec![size; len / size];
            let tail = len % size;
            if tail != 0 {
                chunks.push(tail);
            }
            out.push(chunks);
        }
    }
    out
}

/// Cuts `data` into consecutive slices of the given lengths, which must add up to its length.
pub(crate) fn split<'a>(data: &'a [u8], chunks: &[usize]) -> anyhow::Result<Vec<&'a [u8]>> {
    let mut rest = data;
    let mut parts = Vec::with_capacity(chunks.len());
    for &n in chunks {
        ensure!(
            n <= rest.len(),
            "chunks add up to more than {} bytes",
            data.len()
        );
        let (head, tail) = rest.split_at(n);
        parts.push(head);
        rest = tail;
    }
    ensure!(
        rest.is_empty(),
        "chunks add up to less than {} bytes",
        data.len()
    );
    Ok(parts)
}

/// Calls `f` on consecutive mutable slices of `buf` of the given lengths, which must add up
/// to its length.
pub(crate) fn for_each_chunk(
    buf: &mut [u8],
    chunks: &[usize],
    mut f: impl FnMut(&mut [u8]) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let total = buf.len();
    let mut rest = buf;
    for &n in chunks {
        ensure!(n <= rest.len(), "chunks add up to more than {total} bytes");
        let (head, tail) = std::mem::take(&mut rest).split_at_mut(n);
        f(head)?;
        rest = tail;
    }
    ensure!(rest.is_empty(), "chunks add up to less than {total} bytes");
    Ok(())
}

/// A short description of a chunk list for failure messages.
pub(crate) fn describe(chunks: &[usize]) -> String {
    if chunks.len() <= 12 {
        format!("calls of {chunks:?} bytes")
    } else {
        format!("{} calls", chunks.len())
    }
}

/// Fails with `what` and the first difference when `got != want`.
pub(crate) fn expect_eq(got: &[u8], want: &[u8], what: &str) -> anyhow::Result<()> {
    if got == want {
        return Ok(());
    }
    let at = got
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    let window = |b: &[u8]| {
        hex::encode(
            b.get(at..)
                .unwrap_or_default()
                .iter()
                .take(16)
                .copied()
                .collect::<Vec<_>>(),
        )
    };
    bail!(
        "{what}: {} bytes differ from the expected {} bytes at offset {at}: got {}.. want {}..",
        got.len(),
        want.len(),
        window(got),
        window(want)
    )
}

/// Replays a digest family: `message` (optionally `repeat`ed) must hash to `digest` under
/// every chunking of [`chunkings`].
pub(crate) fn replay_digest(
    dir: &Path,
    family: &str,
    digest: fn(&[&[u8]]) -> Vec<u8>,
) -> anyhow::Result<FamilyReport> {
    replay_with(dir, family, |v| {
        let msg = message(v)?;
        let want = hex_field(v, "digest")?;
        for chunks in chunkings(msg.len()) {
            let parts = split(&msg, &chunks)?;
            expect_eq(&digest(&parts), &want, &describe(&chunks))?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_chunking_covers_the_input_exactly() {
        for len in [0, 1, 2, 63, 64, 65, 130, 131, 1000, 5000] {
            for chunks in chunkings(len) {
                assert_eq!(chunks.iter().sum::<usize>(), len, "{len}: {chunks:?}");
            }
        }
    }

    #[test]
    fn split_rejects_chunk_lists_of_the_wrong_total() {
        assert!(split(b"abc", &[1, 1]).is_err());
        assert!(split(b"abc", &[2, 2]).is_err());
        assert_eq!(split(b"abc", &[0, 2, 1]).unwrap(), [&b""[..], b"ab", b"c"]);
    }

    #[test]
    fn expect_eq_names_the_first_difference() {
        let err = expect_eq(b"abcd", b"abXd", "one call")
            .unwrap_err()
            .to_string();
        assert!(err.contains("offset 2"), "{err}");
        assert!(expect_eq(b"ab", b"ab", "same").is_ok());
    }
}
