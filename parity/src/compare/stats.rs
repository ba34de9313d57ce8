//! The `/stats` keys: every key the reference serves must exist on the candidate.

use super::finding::{Comparison, Difference};
use std::collections::BTreeMap;

/// Stats keys the reference serves that the candidate does not (values are not compared).
pub fn compare_stats_keys(
    reference: &BTreeMap<String, String>,
    candidate: &BTreeMap<String, String>,
) -> Comparison {
    const KIND: &str = "stats";
    let diffs: Vec<Difference> = reference
        .keys()
        .filter(|k| !candidate.contains_key(*k))
        .map(|k| Difference::new(KIND, None, k.clone(), "presence", "present", "missing"))
        .collect();
    Comparison::new(KIND, None, reference.len() as u64, diffs).details(
        "every /stats key of the reference must exist on the candidate; values not compared",
    )
}
