//! `cargo xtask vectors`: replay every vector family and write a JSON report.

use std::path::PathBuf;
use std::time::SystemTime;

use anyhow::{bail, Context};
use serde::Serialize;

/// The report format version; bump it when a field changes meaning.
const SCHEMA_VERSION: u32 = 1;

/// Replay every vector family and write artifacts/vectors/vectors-report.json.
#[derive(Debug, clap::Args)]
pub(crate) struct Vectors {
    /// Directory holding the family data files [default: vectors/data]
    #[arg(long)]
    data: Option<PathBuf>,
    /// Where to write the report [default: artifacts/vectors/vectors-report.json]
    #[arg(long)]
    out: Option<PathBuf>,
}

/// `artifacts/vectors/vectors-report.json` (schema: `artifacts/vectors/schema.json`).
#[derive(Debug, Serialize)]
struct Report {
    schema_version: u32,
    generated_at: String,
    families: Vec<::vectors::FamilyReport>,
    /// Vectors replayed, over all families.
    total: usize,
    /// Failure lines, over all families.
    failed: usize,
}

impl Vectors {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        let data = self.data.unwrap_or_else(::vectors::data_dir);
        let out = self.out.unwrap_or_else(|| {
            crate::workspace::project_root()
                .join("artifacts")
                .join("vectors")
                .join("vectors-report.json")
        });
        let families = ::vectors::replay_all(&data);
        let report = Report {
            schema_version: SCHEMA_VERSION,
            generated_at: mtproxy::clock::rfc3339(SystemTime::now()),
            total: families.iter().map(|f| f.count).sum(),
            failed: families.iter().map(|f| f.failures.len()).sum(),
            families,
        };
        print!("{}", summary(&report));
        if let Some(dir) = out.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(&out, json + "\n").with_context(|| format!("writing {}", out.display()))?;
        println!("report: {}", out.display());
        if report.failed > 0 {
            bail!("{} vector failure(s)", report.failed);
        }
        Ok(())
    }
}

/// One line per family (count, failures listed under it) and a total line.
fn summary(report: &Report) -> String {
    let width = report
        .families
        .iter()
        .map(|f| f.family.len())
        .max()
        .unwrap_or(0);
    let mut text = String::new();
    for f in &report.families {
        let verdict = if f.failures.is_empty() {
            "ok".to_string()
        } else {
            format!("{} FAILED", f.failures.len())
        };
        text += &format!("{:<width$}  {:>5} vectors  {verdict}\n", f.family, f.count);
        for failure in &f.failures {
            text += &format!("    {failure}\n");
        }
    }
    text += &format!(
        "{} families, {} vectors, {} failed\n",
        report.families.len(),
        report.total,
        report.failed
    );
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_lists_counts_and_failures() {
        let report = Report {
            schema_version: SCHEMA_VERSION,
            generated_at: "2024-01-01T00:00:00Z".into(),
            families: vec![
                ::vectors::FamilyReport {
                    family: "sha1".into(),
                    provenance: "FIPS 180".into(),
                    count: 3,
                    failures: vec![],
                },
                ::vectors::FamilyReport {
                    family: "crc32c".into(),
                    provenance: "RFC 3720".into(),
                    count: 6,
                    failures: vec!["check: got 0, want 1".into()],
                },
            ],
            total: 9,
            failed: 1,
        };
        let text = summary(&report);
        assert!(text.contains("sha1        3 vectors  ok"), "{text}");
        assert!(text.contains("crc32c      6 vectors  1 FAILED"), "{text}");
        assert!(text.contains("    check: got 0, want 1"), "{text}");
        assert!(
            text.ends_with("2 families, 9 vectors, 1 failed\n"),
            "{text}"
        );
        let json: serde_json::Value =
            serde_json::from_str(&serde_json::to_string(&report).unwrap()).unwrap();
        for key in [
            "schema_version",
            "generated_at",
            "families",
            "total",
            "failed",
        ] {
            assert!(json.get(key).is_some(), "report lacks {key}");
        }
        let family = &json["families"][1];
        for key in ["family", "provenance", "count", "failures"] {
            assert!(family.get(key).is_some(), "family entry lacks {key}");
        }
    }
}
