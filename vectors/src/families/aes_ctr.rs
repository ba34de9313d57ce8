//! AES-256-CTR (128-bit big-endian counter): SP 800-38A F.5.5/F.5.6 and multi-call streams.
//!
//! Each vector is applied in one call, in its listed `chunks` (one continuous stream over
//! several calls) and, for inputs of at most 64 bytes, in two calls cut at every offset;
//! every way must give `output`. Applying the stream to `output` must give `input` back.

use std::path::Path;

use anyhow::ensure;
use mtproxy::protocol::crypto::AesCtr;

use super::kat;
use crate::data::hex_field;
use crate::replay::{replay_with, FamilyReport};

/// Replays `data/aes_ctr.json` against [`AesCtr`].
///
/// # Errors
/// When the data file cannot be read.
pub fn replay(dir: &Path) -> anyhow::Result<FamilyReport> {
    replay_with(dir, "aes_ctr", |v| {
        let key: [u8; 32] = kat::array(v, "key")?;
        let iv: [u8; 16] = kat::array(v, "iv")?;
        let input = hex_field(v, "input")?;
        let output = hex_field(v, "output")?;
        ensure!(
            input.len() == output.len(),
            "input and output lengths differ"
        );
        let mut chunkings = vec![vec![input.len()]];
        chunkings.extend(kat::opt_usize_list(v, "chunks")?);
        if input.len() <= 64 {
            chunkings.extend((1..input.len()).map(|c| vec![c, input.len() - c]));
        }
        for chunks in &chunkings {
            let mut buf = input.clone();
            let mut stream = AesCtr::new(&key, &iv);
            kat::for_each_chunk(&mut buf, chunks, |c| {
                stream.apply(c);
                Ok(())
            })?;
            kat::expect_eq(&buf, &output, &kat::describe(chunks))?;
        }
        let mut back = output;
        AesCtr::new(&key, &iv).apply(&mut back);
        kat::expect_eq(&back, &input, "applying the stream to the output")
    })
}
