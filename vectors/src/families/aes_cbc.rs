//! AES-256-CBC without padding: SP 800-38A F.2.5/F.2.6, IV chaining across calls, and
//! inputs that are not whole blocks (rejected, buffer untouched).
//!
//! A vector has a `direction` (`encrypt` or `decrypt`). It is run in one call and in its
//! listed `chunks` on one encryptor/decryptor (the IV chains across calls, as on the
//! middle-end link); both must give `output`, and the opposite direction must give `input`
//! back. A vector with `expect_error: "NotBlockAligned"` must fail with that error for its
//! input's length and leave the buffer as it was.

use std::path::Path;

use anyhow::{bail, ensure};
use mtproxy::protocol::crypto::{CbcDecryptor, CbcEncryptor, NotBlockAligned};
use serde_json::Value;

use super::kat;
use crate::data::hex_field;
use crate::replay::{replay_with, FamilyReport};

/// Replays `data/aes_cbc.json` against [`CbcEncryptor`] and [`CbcDecryptor`].
///
/// # Errors
/// When the data file cannot be read.
pub fn replay(dir: &Path) -> anyhow::Result<FamilyReport> {
    replay_with(dir, "aes_cbc", check)
}

/// One CBC chain in either direction.
enum Chain {
    Encrypt(CbcEncryptor),
    Decrypt(CbcDecryptor),
}

impl Chain {
    fn new(encrypt: bool, key: &[u8; 32], iv: &[u8; 16]) -> Self {
        if encrypt {
            Self::Encrypt(CbcEncryptor::new(key, iv))
        } else {
            Self::Decrypt(CbcDecryptor::new(key, iv))
        }
    }

    fn run(&mut self, buf: &mut [u8]) -> Result<(), NotBlockAligned> {
        match self {
            Self::Encrypt(e) => e.encrypt(buf),
            Self::Decrypt(d) => d.decrypt(buf),
        }
    }
}

fn check(v: &Value) -> anyhow::Result<()> {
    let encrypt = match v.get("direction").and_then(Value::as_str) {
        Some("encrypt") => true,
        Some("decrypt") => false,
        other => bail!("direction {other:?} is neither \"encrypt\" nor \"decrypt\""),
    };
    let key: [u8; 32] = kat::array(v, "key")?;
    let iv: [u8; 16] = kat::array(v, "iv")?;
    let input = hex_field(v, "input")?;

    if let Some(error) = v.get("expect_error") {
        ensure!(
            error.as_str() == Some("NotBlockAligned"),
            "unknown expected error {error}"
        );
        let mut buf = input.clone();
        let got = Chain::new(encrypt, &key, &iv).run(&mut buf);
        ensure!(
            got == Err(NotBlockAligned(input.len())),
            "got {got:?}, want Err(NotBlockAligned({}))",
            input.len()
        );
        return kat::expect_eq(&buf, &input, "buffer after the rejected call");
    }

    let output = hex_field(v, "output")?;
    ensure!(
        input.len() == output.len(),
        "input and output lengths differ"
    );
    let mut chunkings = vec![vec![input.len()]];
    chunkings.extend(kat::opt_usize_list(v, "chunks")?);
    for chunks in &chunkings {
        let mut buf = input.clone();
        let mut chain = Chain::new(encrypt, &key, &iv);
        kat::for_each_chunk(&mut buf, chunks, |c| Ok(chain.run(c)?))?;
        kat::expect_eq(&buf, &output, &kat::describe(chunks))?;
    }
    let mut back = output;
    Chain::new(!encrypt, &key, &iv).run(&mut back)?;
    kat::expect_eq(&back, &input, "the opposite direction on the output")
}
