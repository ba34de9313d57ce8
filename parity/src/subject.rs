//! The proxy binary a test, a drill or a rehearsal runs against — the candidate (this
//! port's `mtproto-proxy`) or the reference (a C build) — and how to start it.

use crate::transcript::Side;
use std::path::PathBuf;

/// A proxy binary under test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    /// `candidate` or `reference` (the [`Side::name`]): names its processes, log files and
    /// figures.
    pub label: String,
    /// The `mtproto-proxy` binary (its path inside the image when `image` is set).
    pub binary: PathBuf,
    /// Extra environment for the proxy (tests plant regressions through it).
    pub env: Vec<(String, String)>,
    /// Run it in this linux/amd64 image (host networking) instead of as a local process;
    /// `binary` is then the path inside the image. Whatever reads the process's descriptors
    /// or memory needs a local process.
    pub image: Option<String>,
}

impl Subject {
    /// `binary` labelled `label`, run locally without extra environment.
    pub fn new(label: impl Into<String>, binary: impl Into<PathBuf>) -> Self {
        Self {
            label: label.into(),
            binary: binary.into(),
            env: Vec::new(),
            image: None,
        }
    }

    /// The candidate `binary`.
    pub fn candidate(binary: impl Into<PathBuf>) -> Self {
        Self::new(Side::Candidate.name(), binary)
    }

    /// The reference `binary`.
    pub fn reference(binary: impl Into<PathBuf>) -> Self {
        Self::new(Side::Reference.name(), binary)
    }

    /// Whether this is the candidate.
    pub fn is_candidate(&self) -> bool {
        self.label == Side::Candidate.name()
    }

    /// Whether this is the reference.
    pub fn is_reference(&self) -> bool {
        self.label == Side::Reference.name()
    }

    /// Its label.
    pub fn name(&self) -> &str {
        &self.label
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_two_sides_are_labelled_by_their_side_names() {
        let c = Subject::candidate("/bin/c");
        assert_eq!(c.name(), "candidate");
        assert!(c.is_candidate() && !c.is_reference());
        assert_eq!(c.binary, PathBuf::from("/bin/c"));
        assert!(c.env.is_empty() && c.image.is_none());
        let r = Subject::reference("/bin/r");
        assert_eq!(r.name(), "reference");
        assert!(r.is_reference() && !r.is_candidate());
        // A label of its own is neither side.
        let other = Subject::new("candidate-asan", "/bin/c");
        assert!(!other.is_candidate() && !other.is_reference());
    }
}
