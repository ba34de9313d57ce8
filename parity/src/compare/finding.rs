//! What a comparison finds: each [`Difference`] between reference and candidate, and the
//! [`Comparison`] holding all of one kind. The comparisons (the sibling modules) produce
//! them; [`crate::divergences::DivergenceList::apply`] marks the ones a known divergence
//! explains and decides pass or fail.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// One precise difference between reference and candidate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Difference {
    /// Comparison kind (`me_stream`, `client_stream`, `probe`, `slo`, `lifecycle`, ...).
    pub comparison: String,
    /// Phase, when the comparison is per phase.
    pub phase: Option<String>,
    /// What differs, e.g. `session 17 request 3` or `short_padded_frame`.
    pub key: String,
    /// Which field, e.g. `flags`.
    pub field: String,
    /// Reference value, normalised.
    pub reference: String,
    /// Candidate value, normalised.
    pub candidate: String,
    /// Human text, e.g. `session 17 request 3: flags 0xa002100a vs 0xa0021002`.
    pub message: String,
    /// Id of the known divergence that explains it, if any.
    pub divergence: Option<String>,
}

impl Difference {
    /// Build a difference with the standard message `"<key>: <field> <ref> vs <cand>"`.
    pub fn new(
        comparison: &str,
        phase: Option<&str>,
        key: impl Into<String>,
        field: impl Into<String>,
        reference: impl Into<String>,
        candidate: impl Into<String>,
    ) -> Self {
        let (key, field, reference, candidate) =
            (key.into(), field.into(), reference.into(), candidate.into());
        let message = format!("{key}: {field} {reference} vs {candidate}");
        Difference {
            comparison: comparison.to_string(),
            phase: phase.map(str::to_string),
            key,
            field,
            reference,
            candidate,
            message,
            divergence: None,
        }
    }

    /// Replace the message.
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = message.into();
        self
    }
}

/// The result of one comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// Unique name, e.g. `load/me_stream`.
    pub name: String,
    /// Kind (see [`Difference::comparison`]).
    pub kind: String,
    /// Phase, when per phase.
    pub phase: Option<String>,
    /// Pass: no difference left unexplained (and not skipped for a failing reason).
    pub pass: bool,
    /// Items compared (records, sessions, probes, metrics).
    pub checked: u64,
    /// All differences found.
    pub total_differences: u64,
    /// Differences not explained by a known divergence.
    pub unexplained_differences: u64,
    /// The first differences (unexplained first), at most the run's limit.
    pub differences: Vec<Difference>,
    /// Free text (e.g. what was compared).
    pub details: String,
    /// Set when the comparison could not run; a skipped comparison fails unless `pass` is set
    /// explicitly by the orchestrator (e.g. a probe not sent to either side).
    pub skipped: Option<String>,
}

impl Comparison {
    /// A new comparison with its raw differences.
    pub fn new(
        kind: &str,
        phase: Option<&str>,
        checked: u64,
        differences: Vec<Difference>,
    ) -> Self {
        let name = match phase {
            Some(p) => format!("{p}/{kind}"),
            None => kind.to_string(),
        };
        let total = differences.len() as u64;
        Comparison {
            name,
            kind: kind.to_string(),
            phase: phase.map(str::to_string),
            pass: total == 0,
            checked,
            total_differences: total,
            unexplained_differences: total,
            differences,
            details: String::new(),
            skipped: None,
        }
    }

    /// A comparison that could not run.
    pub fn skipped(kind: &str, phase: Option<&str>, why: impl Into<String>) -> Self {
        let mut c = Comparison::new(kind, phase, 0, Vec::new());
        c.pass = false;
        c.skipped = Some(why.into());
        c
    }

    /// Set the details text.
    pub fn details(mut self, d: impl Into<String>) -> Self {
        self.details = d.into();
        self
    }
}

/// First 16 hex digits of SHA-256(`b`): how payloads appear in normalised records.
pub(super) fn short_hash(b: &[u8]) -> String {
    let h = Sha256::digest(b);
    hex::encode(&h[..8])
}

/// An optional value as it appears in a difference (`none` when absent).
pub(super) fn opt<T: std::fmt::Display>(v: &Option<T>) -> String {
    match v {
        Some(v) => v.to_string(),
        None => "none".into(),
    }
}
