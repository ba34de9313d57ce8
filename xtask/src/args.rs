//! Defaults of the arguments several subcommands share: the candidate and reference
//! binaries and the drill scale.

use std::path::PathBuf;

use crate::workspace;

/// The candidate binary: `given`, else this workspace's release build (built now).
pub(crate) fn candidate_or_build(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    match given {
        Some(c) => Ok(c),
        None => workspace::build_candidate(&workspace::project_root()),
    }
}

/// The reference binary: `given`, else `$MTPROXY_C_BIN` when set and not empty.
pub(crate) fn reference_or_env(given: Option<PathBuf>) -> Option<PathBuf> {
    given.or_else(|| {
        std::env::var_os(parity::dualrun::REFERENCE_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    })
}

/// The scale of `--tiny` / `--quick` / neither.
pub(crate) fn scale(tiny: bool, quick: bool) -> drills::Scale {
    if tiny {
        drills::Scale::Tiny
    } else if quick {
        drills::Scale::Quick
    } else {
        drills::Scale::Full
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    #[test]
    fn a_given_binary_wins_over_the_defaults() {
        let given = PathBuf::from("some/where/mtproto-proxy");
        assert_eq!(
            super::reference_or_env(Some(given.clone())),
            Some(given.clone())
        );
        assert_eq!(
            super::candidate_or_build(Some(given.clone())).expect("no build needed"),
            given
        );
    }

    #[test]
    fn tiny_wins_over_quick() {
        assert!(matches!(super::scale(true, true), drills::Scale::Tiny));
        assert!(matches!(super::scale(false, true), drills::Scale::Quick));
        assert!(matches!(super::scale(false, false), drills::Scale::Full));
    }
}
