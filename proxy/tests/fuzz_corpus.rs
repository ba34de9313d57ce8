//! Replays the committed fuzz corpus on the stable toolchain.
//!
//! Every file of `fuzz/corpus/<target>/` goes through the very function the cargo-fuzz
//! target `<target>` runs: the target bodies live in `fuzz/src/lib.rs`, included here as a
//! module (it uses only `mtproxy`, `bytes` and `rand`, never libfuzzer). A panic names the
//! target and the file.

#[path = "../../fuzz/src/lib.rs"]
mod fuzz_bodies;

use std::path::{Path, PathBuf};

fn corpus_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus")
}

/// The files of one target's corpus, sorted (none if the folder is absent).
fn corpus_files(target: &str) -> Vec<PathBuf> {
    let Ok(dir) = std::fs::read_dir(corpus_root().join(target)) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = dir
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_corpus_folder_names_a_target() {
    let Ok(dir) = std::fs::read_dir(corpus_root()) else {
        return;
    };
    for entry in dir.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        assert!(
            fuzz_bodies::target(&name).is_some(),
            "fuzz/corpus/{name} has no target in fuzz/src/lib.rs"
        );
    }
}

#[test]
fn corpus_replays_without_panics() {
    let mut total = 0usize;
    for (name, body) in fuzz_bodies::TARGETS {
        for file in corpus_files(name) {
            let data = std::fs::read(&file).expect("corpus file readable");
            let outcome = std::panic::catch_unwind(|| body(&data));
            assert!(
                outcome.is_ok(),
                "target {name} panicked on {} (input {})",
                file.display(),
                hex::encode(&data)
            );
            total += 1;
        }
    }
    // Also the trivial inputs, so the test means something without a corpus.
    for (_, body) in fuzz_bodies::TARGETS {
        body(&[]);
        body(&[0]);
        body(&[0xff; 70]);
    }
    assert!(total > 0 || !corpus_root().exists(), "the corpus is empty");
}
