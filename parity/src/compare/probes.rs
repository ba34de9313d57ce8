//! (c) The reaction class per bad input (probe).

use super::finding::{Comparison, Difference};
use crate::transcript::{ProbeRecord, ReactionClass};
use crate::workload::Probe;

/// (c) Compare the reaction class per probe. A probe not sent to the reference is compared
/// against the reference's expected reaction from the workload (value prefixed `expected:`
/// in the details, plain in the difference so divergence matchers stay simple).
pub fn compare_probes(
    probes: &[Probe],
    reference: &[ProbeRecord],
    candidate: &[ProbeRecord],
) -> Comparison {
    const KIND: &str = "probe";
    let find =
        |v: &[ProbeRecord], name: &str| v.iter().find(|r| r.class == name).map(|r| r.reaction);
    let mut diffs = Vec::new();
    let mut notes = Vec::new();
    let mut checked = 0;
    for probe in probes {
        let name = probe.class.name();
        let r = match find(reference, name) {
            Some(ReactionClass::NotRun) | None => {
                notes.push(format!(
                    "{name}: reference not probed, expected {}",
                    probe.expect_reference.name()
                ));
                probe.expect_reference
            }
            Some(x) => x,
        };
        let Some(c) = find(candidate, name).filter(|c| *c != ReactionClass::NotRun) else {
            diffs.push(Difference::new(
                KIND,
                None,
                name,
                "reaction",
                r.name(),
                "not_run",
            ));
            continue;
        };
        checked += 1;
        notes.push(format!(
            "{name}: reference {}, candidate {}",
            r.name(),
            c.name()
        ));
        if r != c {
            diffs.push(Difference::new(
                KIND,
                None,
                name,
                "reaction",
                r.name(),
                c.name(),
            ));
        }
    }
    Comparison::new(KIND, None, checked, diffs).details(notes.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::divergences::DivergenceList;
    use crate::workload::WorkloadSpec;

    #[test]
    fn probes_compare_reactions_and_divergences_explain_the_crash() {
        let w = WorkloadSpec::new(1).load_requests(1).generate();
        let rec = |class: &str, reaction| ProbeRecord {
            class: class.into(),
            reaction,
            detail: String::new(),
        };
        let reference: Vec<_> = w
            .probes
            .iter()
            .map(|p| {
                rec(
                    p.class.name(),
                    if p.send_to_reference {
                        p.expect_reference
                    } else {
                        ReactionClass::NotRun
                    },
                )
            })
            .collect();
        let candidate: Vec<_> = w
            .probes
            .iter()
            .map(|p| rec(p.class.name(), p.expect_candidate))
            .collect();
        let mut c = compare_probes(&w.probes, &reference, &candidate);
        assert_eq!(c.total_differences, 1);
        let list = DivergenceList::load_default().unwrap();
        let ids = list.apply(&mut c, 10);
        assert!(c.pass);
        assert_eq!(
            ids.into_iter().collect::<Vec<_>>(),
            vec![("c-aborts-on-short-padded-frame".to_string(), 1)]
        );
        // An unexpected reaction is not excused.
        let mut cand2 = candidate.clone();
        cand2[2].reaction = ReactionClass::Silence; // oversize: C closes
        let mut c = compare_probes(&w.probes, &reference, &cand2);
        list.apply(&mut c, 10);
        assert!(!c.pass);
        assert_eq!(c.unexplained_differences, 1);
        assert_eq!(c.differences[0].key, "oversize");
    }
}
