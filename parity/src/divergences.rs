//! The known-divergence list: differences between the reference and the candidate that are
//! deliberate, each with its reason. Loaded from the one committed file `parity/divergences.json`.
//! Any difference not matched by an entry fails the run: [`DivergenceList::apply`] marks the
//! differences of a [`Comparison`] the list explains and decides its pass or fail.

use crate::compare::finding::{Comparison, Difference};
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Current file format version.
pub const DIVERGENCES_VERSION: u32 = 1;

/// Path of the committed divergence file.
pub fn default_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("divergences.json")
}

/// How an entry recognises a [`Difference`]. Every present field must match; string fields are
/// globs where `*` matches any run of characters (and a missing field matches anything).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Matcher {
    /// Difference key, e.g. `short_padded_frame` or `session * request *`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Field, e.g. `reaction`, `flags`, `exit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Reference value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// Candidate value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate: Option<String>,
}

/// One known divergence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Divergence {
    /// Stable id (kebab-case), cited in reports and regression test names.
    pub id: String,
    /// One-line title.
    pub title: String,
    /// Why we differ on purpose.
    pub reason: String,
    /// Spec section(s), e.g. `§4.3`.
    #[serde(default)]
    pub spec: String,
    /// Comparison kind it applies to: `me_stream`, `client_stream`, `probe`, `slo`,
    /// `lifecycle`, `signal`, `startup`, `stats`.
    pub applies_to: String,
    /// How it is matched.
    #[serde(rename = "match")]
    pub matcher: Matcher,
}

impl Divergence {
    /// Whether this entry explains `d`.
    pub fn matches(&self, d: &Difference) -> bool {
        let m = &self.matcher;
        glob(&self.applies_to, &d.comparison)
            && m.key.as_deref().is_none_or(|p| glob(p, &d.key))
            && m.field.as_deref().is_none_or(|p| glob(p, &d.field))
            && m.reference.as_deref().is_none_or(|p| glob(p, &d.reference))
            && m.candidate.as_deref().is_none_or(|p| glob(p, &d.candidate))
    }
}

/// The loaded file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DivergenceList {
    /// File format version ([`DIVERGENCES_VERSION`]).
    pub version: u32,
    /// Entries.
    pub divergences: Vec<Divergence>,
}

impl DivergenceList {
    /// Parse from JSON text; rejects duplicate ids and unknown versions.
    pub fn from_json(text: &str) -> anyhow::Result<Self> {
        let list: DivergenceList = serde_json::from_str(text).context("parse divergences")?;
        anyhow::ensure!(
            list.version == DIVERGENCES_VERSION,
            "divergences: unsupported version {}",
            list.version
        );
        let mut ids = std::collections::BTreeSet::new();
        for d in &list.divergences {
            anyhow::ensure!(ids.insert(&d.id), "divergences: duplicate id {}", d.id);
            anyhow::ensure!(
                !d.reason.trim().is_empty(),
                "divergence {} has no reason",
                d.id
            );
        }
        Ok(list)
    }

    /// Load from a file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
        Self::from_json(&text).with_context(|| format!("in {}", path.display()))
    }

    /// Load the committed `parity/divergences.json`.
    pub fn load_default() -> anyhow::Result<Self> {
        Self::load(&default_path())
    }

    /// First entry that explains `d`.
    pub fn find(&self, d: &Difference) -> Option<&Divergence> {
        self.divergences.iter().find(|e| e.matches(d))
    }

    /// Look up an entry by id.
    pub fn get(&self, id: &str) -> Option<&Divergence> {
        self.divergences.iter().find(|e| e.id == id)
    }

    /// Marks each difference of `comparison` an entry explains, sets its pass/fail (unless it
    /// was skipped), keeps the first `limit` differences (unexplained first). Returns how
    /// many differences each matched entry explained.
    pub fn apply(&self, comparison: &mut Comparison, limit: usize) -> BTreeMap<String, u64> {
        let mut matched = BTreeMap::new();
        for d in &mut comparison.differences {
            if let Some(div) = self.find(d) {
                d.divergence = Some(div.id.clone());
                *matched.entry(div.id.clone()).or_insert(0) += 1;
            }
        }
        comparison.unexplained_differences = comparison
            .differences
            .iter()
            .filter(|d| d.divergence.is_none())
            .count() as u64;
        if comparison.skipped.is_none() {
            comparison.pass = comparison.unexplained_differences == 0;
        }
        comparison
            .differences
            .sort_by_key(|d| d.divergence.is_some());
        comparison.differences.truncate(limit);
        matched
    }
}

/// `*`-glob match (no other metacharacters).
pub fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diff(comparison: &str, key: &str, field: &str, r: &str, c: &str) -> Difference {
        Difference::new(comparison, None, key, field, r, c)
    }

    #[test]
    fn glob_matches_stars_only() {
        assert!(glob("a*c", "abc"));
        assert!(glob("a*c", "ac"));
        assert!(!glob("a*c", "abd"));
        assert!(glob("*", ""));
        assert!(glob("session * request *", "session 17 request 3"));
        assert!(!glob("abc", "abcd"));
        assert!(glob("a*b*c", "aXbYc"));
        assert!(!glob("ab*ba", "aba"));
    }

    #[test]
    fn committed_file_loads_and_has_the_required_entries() {
        let list = DivergenceList::load_default().unwrap();
        for id in [
            "c-aborts-on-short-padded-frame",
            "sighup-reload",
            "wrong-secret-idle-timeout",
            "seventeenth-secret",
        ] {
            assert!(list.get(id).is_some(), "missing {id}");
        }
        let crash = diff("probe", "short_padded_frame", "reaction", "crash", "close");
        assert_eq!(
            list.find(&crash).map(|d| d.id.as_str()),
            Some("c-aborts-on-short-padded-frame")
        );
        let idle = diff("probe", "wrong_secret", "reaction", "silence", "close");
        assert_eq!(
            list.find(&idle).map(|d| d.id.as_str()),
            Some("wrong-secret-idle-timeout")
        );
        let s17 = diff("startup", "secrets_17", "exit", "signal:SIGABRT", "exit:2");
        assert_eq!(
            list.find(&s17).map(|d| d.id.as_str()),
            Some("seventeenth-secret")
        );
        // The reverse direction, or another comparison, is not excused.
        assert!(list
            .find(&diff(
                "probe",
                "short_padded_frame",
                "reaction",
                "close",
                "crash"
            ))
            .is_none());
        assert!(list
            .find(&diff(
                "me_stream",
                "session 1 request 0",
                "flags",
                "0x1",
                "0x2"
            ))
            .is_none());
    }

    #[test]
    fn rejects_duplicates_and_bad_versions() {
        let one = r#"{"id":"x","title":"t","reason":"r","applies_to":"probe","match":{}}"#;
        let dup = format!(r#"{{"version":1,"divergences":[{one},{one}]}}"#);
        assert!(DivergenceList::from_json(&dup).is_err());
        let v2 = format!(r#"{{"version":2,"divergences":[{one}]}}"#);
        assert!(DivergenceList::from_json(&v2).is_err());
        let unknown = r#"{"version":1,"divergences":[{"id":"x","title":"t","reason":"r","applies_to":"probe","match":{"kye":"a"}}]}"#;
        assert!(DivergenceList::from_json(unknown).is_err());
    }
}
