//! Replays every vector family against the protocol core, and checks that the families
//! and the data files match one to one.

use std::collections::BTreeSet;

use vectors::families::ALL;

/// The least number of vectors a family must hold. The crypto families replay published
/// known answers (a handful each); protocol families need tens of vectors, negative ones
/// included, so any family not listed here must have at least [`PROTOCOL_MINIMUM`].
const MINIMUM: &[(&str, usize)] = &[
    ("aes_ctr", 3),
    ("aes_cbc", 3),
    ("sha1", 3),
    ("sha256", 3),
    ("md5", 3),
    ("hmac_sha256", 3),
    ("crc32", 3),
    ("crc32c", 3),
];

/// The minimum for every family not in [`MINIMUM`].
const PROTOCOL_MINIMUM: usize = 10;

fn minimum(family: &str) -> usize {
    MINIMUM
        .iter()
        .find(|(name, _)| *name == family)
        .map_or(PROTOCOL_MINIMUM, |&(_, n)| n)
}

#[test]
fn every_vector_of_every_family_passes() {
    let reports = vectors::replay_all(&vectors::data_dir());
    let failures: Vec<String> = reports
        .iter()
        .flat_map(|r| r.failures.iter().map(move |f| format!("{}: {f}", r.family)))
        .collect();
    assert!(
        failures.is_empty(),
        "{} failing vector(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(reports.len(), ALL.len());
}

#[test]
fn every_family_has_a_data_file_with_enough_vectors() {
    let dir = vectors::data_dir();
    let mut problems = Vec::new();
    for family in ALL {
        match vectors::load_family(&dir, family.name) {
            Err(e) => problems.push(format!("{}: {e:#}", family.name)),
            Ok(file) => {
                let want = minimum(family.name);
                if file.vectors.len() < want {
                    problems.push(format!(
                        "{}: {} vectors, want at least {want}",
                        family.name,
                        file.vectors.len()
                    ));
                }
                if file.provenance.trim().is_empty() {
                    problems.push(format!("{}: no family provenance", family.name));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_data_file_belongs_to_a_registered_family() {
    let registered: BTreeSet<&str> = ALL.iter().map(|f| f.name).collect();
    let dir = vectors::data_dir();
    let mut orphans = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("the data directory is readable") {
        let path = entry.expect("a directory entry").path();
        if path.extension().is_some_and(|e| e == "json") {
            let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
            if !registered.contains(stem) {
                orphans.push(path.display().to_string());
            }
        }
    }
    assert!(
        orphans.is_empty(),
        "data files not registered in families::ALL:\n{}",
        orphans.join("\n")
    );
}

#[test]
fn family_names_are_unique() {
    let mut seen = BTreeSet::new();
    for family in ALL {
        assert!(
            seen.insert(family.name),
            "{} is registered twice",
            family.name
        );
    }
}

#[test]
fn a_tampered_vector_is_reported_as_a_failure() {
    // The replay must be able to fail: corrupt one expected digest in a copy of a data
    // file and check that exactly that vector is reported.
    let scratch = std::env::temp_dir().join(format!("vectors-tamper-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).expect("create a scratch directory");
    let text =
        std::fs::read_to_string(vectors::data_dir().join("sha256.json")).expect("read sha256.json");
    let tampered = text.replacen(
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ae",
        1,
    );
    assert_ne!(text, tampered, "the abc digest is in sha256.json");
    std::fs::write(scratch.join("sha256.json"), tampered).expect("write the tampered copy");
    let report = vectors::families::sha256::replay(&scratch).expect("replay the copy");
    std::fs::remove_dir_all(&scratch).expect("remove the scratch directory");
    assert_eq!(report.failures.len(), 1, "{:?}", report.failures);
    assert!(
        report.failures[0].starts_with("fips180_b1_abc:"),
        "{:?}",
        report.failures
    );
}
