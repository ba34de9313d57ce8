//! The data files: where they live, loading one family's file, and reading typed fields
//! of a vector.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context};
use serde::Deserialize;
use serde_json::Value;

/// The directory holding the data files of this checkout.
pub fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data")
}

/// A family data file as stored.
#[derive(Debug, Deserialize)]
pub struct FamilyFile {
    /// The family name; must equal the file stem.
    pub family: String,
    /// The family's overall provenance.
    pub provenance: String,
    /// The vectors, each a JSON object with at least `name`.
    pub vectors: Vec<Value>,
}

/// Reads `dir/<name>.json`.
///
/// # Errors
/// When the file is missing, is not JSON of the family shape, or names another family.
pub fn load_family(dir: &Path, name: &str) -> anyhow::Result<FamilyFile> {
    let path = dir.join(format!("{name}.json"));
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let file: FamilyFile =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    if file.family != name {
        return Err(anyhow!("{} names family {:?}", path.display(), file.family));
    }
    Ok(file)
}

/// Reads the hex string field `key` of vector `v` as bytes (whitespace ignored).
///
/// # Errors
/// When the field is missing, not a string or not hex.
pub fn hex_field(v: &Value, key: &str) -> anyhow::Result<Vec<u8>> {
    let s = v
        .get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("field {key:?} missing or not a string"))?;
    let clean: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    hex::decode(&clean).with_context(|| format!("field {key:?} is not hex"))
}

/// Reads the integer field `key` of vector `v`.
///
/// # Errors
/// When the field is missing or not an integer.
pub(crate) fn int(v: &Value, key: &str) -> anyhow::Result<i64> {
    v.get(key)
        .and_then(Value::as_i64)
        .ok_or_else(|| anyhow!("field {key:?} missing or not an integer"))
}

/// Reads the string field `key` of vector `v`.
///
/// # Errors
/// When the field is missing or not a string.
pub(crate) fn string<'a>(v: &'a Value, key: &str) -> anyhow::Result<&'a str> {
    v.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("field {key:?} missing or not a string"))
}

/// The `transport` field of vector `v` (`abridged`, `intermediate`, `padded_intermediate`).
///
/// # Errors
/// When the field is missing or names no transport.
pub fn transport_of(v: &Value) -> anyhow::Result<mtproxy::protocol::transport::Transport> {
    use mtproxy::protocol::transport::Transport;
    match v.get("transport").and_then(Value::as_str) {
        Some("abridged") => Ok(Transport::Abridged),
        Some("intermediate") => Ok(Transport::Intermediate),
        Some("padded_intermediate") => Ok(Transport::PaddedIntermediate),
        other => Err(anyhow!("bad transport {other:?}")),
    }
}

/// The name the vectors give a packet-rule drop reason.
pub fn drop_reason_name(r: mtproxy::protocol::packet::DropReason) -> &'static str {
    use mtproxy::protocol::packet::DropReason;
    match r {
        DropReason::TooShort { .. } => "TooShort",
        DropReason::NotAligned { .. } => "NotAligned",
        DropReason::ShortEncrypted { .. } => "ShortEncrypted",
        DropReason::BadInnerLength { .. } => "BadInnerLength",
        DropReason::UnknownUnencryptedOp { .. } => "UnknownUnencryptedOp",
    }
}
