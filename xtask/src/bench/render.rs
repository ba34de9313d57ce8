//! The report for readers: the text summary printed at the end of a run,
//! `bench-report.md` (for a CI job summary) and `bench.svg`.

use super::report::{Report, SideReport, Spread};

impl Report {
    /// The Markdown summary (`bench-report.md`, fit for a CI job summary): how many of the
    /// issue's goals were met up front, the binaries, the mode and the machine, every
    /// ratio (median and spread over the runs), every goal, and each miss with its
    /// reason.
    pub fn to_markdown(&self) -> String {
        use parity::report::{md_cell, md_code};
        use std::fmt::Write as _;
        let mut s = String::new();
        let missed = self.missed();
        let headline = if self.goals.is_empty() {
            "no target judged".to_string()
        } else if missed.is_empty() {
            format!(
                "all {} met",
                parity::report::plural(self.goals.len(), "target")
            )
        } else {
            format!(
                "{} of {} targets met, {} missed",
                self.goals.len() - missed.len(),
                self.goals.len(),
                missed.len()
            )
        };
        let _ = writeln!(
            s,
            "# Bench: {headline}{}\n",
            if self.self_mode {
                " — no reference"
            } else {
                ""
            }
        );
        if self.self_mode {
            s.push_str(
                "> **No reference mode (self mode).** No C build was given (`--reference PATH` \
                 or `MTPROXY_C_BIN`): the candidate was measured against itself, so every ratio \
                 is about 1 and the targets relative to C say nothing.\n\n",
            );
        }
        let first = self.runs.first();
        let binary = |side: Option<&SideReport>| {
            side.filter(|b| !b.binary.is_empty())
                .map_or_else(|| "not measured".to_string(), |b| md_code(&b.binary))
        };
        let _ = writeln!(
            s,
            "- **Candidate:** {}",
            binary(first.map(|r| &r.candidate))
        );
        let _ = writeln!(
            s,
            "- **Reference (C):** {}",
            if self.self_mode {
                "none — the candidate against itself".to_string()
            } else {
                binary(first.map(|r| &r.reference))
            }
        );
        let m = &self.machine;
        let _ = writeln!(
            s,
            "- **Machine:** {} — {} CPUs, {} GiB, Linux {}, AES-NI {}, {}",
            md_cell(&m.cpu),
            m.cpus,
            m.memory >> 30,
            md_cell(&m.kernel),
            if m.aes_ni { "yes" } else { "no" },
            md_cell(&m.openssl)
        );
        let _ = writeln!(
            s,
            "- **Runs:** {} (alternating order; medians below), proxies on CPU {}, load generator on CPU {}",
            parity::report::plural(self.runs.len(), "run"),
            self.plan.proxy_cpus,
            self.plan.loadgen_cpus
        );
        let _ = writeln!(
            s,
            "- **Crypto floor:** {:.0} MB/s of echo (CTR {:.0}, CBC encrypt {:.0}, CBC decrypt {:.0} MB/s on the proxies' core)",
            self.floor.echo_mb_s,
            self.floor.ctr_mb_s,
            self.floor.cbc_encrypt_mb_s,
            self.floor.cbc_decrypt_mb_s
        );
        let _ = writeln!(
            s,
            "- **Phases:** {}",
            self.plan
                .phases
                .iter()
                .map(|p| md_code(p))
                .collect::<Vec<_>>()
                .join(", ")
        );
        if !self.plan.deployments.is_empty() {
            let _ = writeln!(
                s,
                "- **Deployments:** {} (`pinned`: each proxy on one core, one runtime thread; \
                 `default`: no taskset, the default runtime; `workers2`: `-M 2` on both sides, \
                 no taskset; in the unpinned ones the load generator shares every CPU; \
                 `<deployment>/latency_half_*` is at half the reference's closed-loop capacity)",
                self.plan
                    .deployments
                    .iter()
                    .map(|d| md_code(d))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        if !self.runs.is_empty() {
            let _ = writeln!(
                s,
                "- **Host CPU steal per run:** {} (time the hypervisor took; above a few % a run's latency figures measure the host)",
                self.runs
                    .iter()
                    .map(|r| format!("{:.1} %", r.steal_percent))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        let _ = writeln!(s, "- **Generated:** {}", self.generated);

        if !missed.is_empty() {
            s.push_str("\n## Missed targets\n\n");
            for t in &missed {
                let why = if t.why.is_empty() {
                    String::new()
                } else {
                    format!(": {}", md_cell(&t.why))
                };
                let _ = writeln!(
                    s,
                    "- **{}** — {} (bound {}), missed by {:.0} %{why}",
                    md_cell(&t.name),
                    fmt_value(t.value),
                    fmt_value(t.bound),
                    t.missed_by * 100.0
                );
            }
        }

        s.push_str("\n## Targets\n\n| Target | Value | Bound | Result |\n|---|---:|---:|---|\n");
        for t in &self.goals {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} |",
                md_cell(&t.name),
                fmt_value(t.value),
                fmt_value(t.bound),
                if t.met { "met" } else { "**MISSED**" }
            );
        }

        s.push_str(
            "\n## Candidate / reference\n\n| Metric | Candidate | Reference | Ratio | Spread | Better when |\n\
             |---|---:|---:|---:|---|---|\n",
        );
        for sp in &self.spreads {
            let higher = first
                .and_then(|r| r.ratios.iter().find(|x| x.metric == sp.metric))
                .is_none_or(|x| x.higher_is_better);
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.3} | {:.3}–{:.3} | {} |",
                md_code(&sp.metric),
                fmt_value(sp.candidate_median),
                fmt_value(sp.reference_median),
                sp.median,
                sp.min,
                sp.max,
                if higher { "higher" } else { "lower" }
            );
        }
        s
    }
}

/// A figure for the Markdown: whole numbers as they are, others with up to 3 decimals.
fn fmt_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else {
        let t = format!("{v:.3}");
        t.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// The text summary: one line per ratio (median and spread), then the goals.
pub fn summary(r: &Report) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "bench: {} run(s) on {} ({} CPUs){}; echo floor {:.0} MB/s\n",
        r.runs.len(),
        r.machine.cpu,
        r.machine.cpus,
        if r.self_mode { ", SELF MODE" } else { "" },
        r.floor.echo_mb_s
    ));
    s.push_str(&format!(
        "{:<28} {:>12} {:>12} {:>8} {:>17}\n",
        "metric", "candidate", "reference", "ratio", "spread"
    ));
    for x in &r.spreads {
        s.push_str(&format!(
            "{:<28} {:>12.2} {:>12.2} {:>8.3} {:>8.3}..{:<8.3}\n",
            x.metric, x.candidate_median, x.reference_median, x.median, x.min, x.max
        ));
    }
    for t in &r.goals {
        s.push_str(&format!(
            "[{}] {}: {:.3} (bound {}){}\n",
            if t.met { "met " } else { "MISS" },
            t.name,
            t.value,
            t.bound,
            if t.met {
                String::new()
            } else if t.why.is_empty() {
                format!(", missed by {:.0} %", t.missed_by * 100.0)
            } else {
                format!(", missed by {:.0} %: {}", t.missed_by * 100.0, t.why)
            }
        ));
    }
    s
}

/// One bar of [`render_svg`]: the "times better" median, whisker ends and label.
///
/// For lower-is-better metrics the value is reference / candidate; where ours is 0 and
/// C's is not (idle CPU) that is infinitely better: the bar is full length and the label
/// gives both values instead.
fn bar(sp: &Spread, higher_is_better: bool, max_x: f64) -> (f64, f64, f64, String) {
    let ours_zero = !higher_is_better && sp.candidate_median == 0.0 && sp.reference_median > 0.0;
    let better = |v: f64| {
        if higher_is_better {
            v
        } else if v > 0.0 {
            1.0 / v
        } else if ours_zero {
            f64::INFINITY
        } else {
            0.0
        }
    };
    let m = better(sp.median).min(max_x);
    let a = better(sp.min).min(max_x);
    let b = better(sp.max).min(max_x);
    let label = if ours_zero {
        format!("ours 0, C {:.2}", sp.reference_median)
    } else {
        format!("{m:.2}x")
    };
    (m, a.min(b), a.max(b), label)
}

/// A horizontal bar chart of the candidate/reference ratios ("better" normalised so that
/// a longer bar is always better: for lower-is-better metrics the bar is reference /
/// candidate), with the spread as a whisker and a line at 1.
pub fn render_svg(r: &Report) -> String {
    let rows: Vec<(&Spread, bool)> = r
        .spreads
        .iter()
        .map(|s| {
            let hib = r
                .runs
                .first()
                .and_then(|run| run.ratios.iter().find(|x| x.metric == s.metric))
                .is_none_or(|x| x.higher_is_better);
            (s, hib)
        })
        .collect();
    let (w, row_h, left, top) = (900.0, 26.0, 230.0, 50.0);
    let h = top + row_h * rows.len() as f64 + 40.0;
    let max_x = 4.0;
    let scale = (w - left - 40.0) / max_x;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"10\" y=\"20\" font-size=\"15\">mtproxy-rs vs C: how many times better (median of {} run(s); whisker = spread)</text>\n\
         <text x=\"10\" y=\"38\" fill=\"#555\">{} - {} CPUs - echo floor {:.0} MB/s{}</text>\n",
        r.runs.len(),
        xml_escape(&r.machine.cpu),
        r.machine.cpus,
        r.floor.echo_mb_s,
        if r.self_mode { " - SELF MODE" } else { "" }
    );
    let x1 = left + scale;
    for (i, (sp, hib)) in rows.iter().enumerate() {
        let y = top + row_h * i as f64;
        let (m, lo, hi, label) = bar(sp, *hib, max_x);
        let color = if m >= 1.0 { "#2e7d32" } else { "#c62828" };
        s.push_str(&format!(
            "<text x=\"{:.0}\" y=\"{:.0}\" text-anchor=\"end\">{}</text>\n\
             <rect x=\"{left}\" y=\"{:.0}\" width=\"{:.1}\" height=\"{:.0}\" fill=\"{color}\" opacity=\"0.8\"/>\n\
             <line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{:.0}\" y2=\"{:.0}\" stroke=\"black\"/>\n\
             <text x=\"{:.1}\" y=\"{:.0}\">{}</text>\n",
            left - 8.0,
            y + 16.0,
            xml_escape(&sp.metric),
            y + 4.0,
            m * scale,
            row_h - 8.0,
            left + lo * scale,
            left + hi * scale,
            y + row_h / 2.0,
            y + row_h / 2.0,
            left + m * scale + 6.0,
            y + 16.0,
            xml_escape(&label)
        ));
    }
    s.push_str(&format!(
        "<line x1=\"{x1:.1}\" x2=\"{x1:.1}\" y1=\"{:.0}\" y2=\"{:.0}\" stroke=\"#333\" stroke-dasharray=\"4 3\"/>\n\
         <text x=\"{x1:.1}\" y=\"{:.0}\" text-anchor=\"middle\">1x (parity with C)</text>\n</svg>\n",
        top - 4.0,
        h - 30.0,
        h - 12.0
    ));
    s
}

/// `s` with the XML special characters of text content escaped.
fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::fixtures::{run, side};
    use crate::bench::goals::goals;
    use crate::bench::ratios::spreads;
    use crate::bench::report::{Floor, Machine, Plan, SCHEMA};
    use crate::bench::why::{explain, MissContext};
    use parity::load::BulkSpec;

    /// A report built by hand: fixed values only, so the Markdown is a stable snapshot.
    fn fixed_report() -> Report {
        let mut c = side(300.0, 1200.0, 90.0, 2000.0);
        let mut r = side(200.0, 1000.0, 100.0, 8000.0);
        c.label = "candidate".into();
        c.binary = "target/release/mtproto-proxy".into();
        r.label = "reference".into();
        r.binary = "c/objs/bin/mtproto-proxy".into();
        c.conn_rate.cpu.loadgen_percent = 97.0;
        c.conn_rate.per_proxy_cpu_s = 1500.0;
        r.conn_rate.per_proxy_cpu_s = 1000.0;
        let runs = vec![run(c, r)];
        let floor = Floor {
            ctr_mb_s: 6877.0,
            cbc_encrypt_mb_s: 865.0,
            cbc_decrypt_mb_s: 6746.0,
            echo_mb_s: 627.0,
        };
        let spreads = spreads(&runs);
        let mut goals = goals(&spreads, 0.478);
        explain(&mut goals, &MissContext::of(&runs, &floor));
        let spec = BulkSpec {
            clients: 16,
            requests: 64,
            request_size: 16384,
            answer_size: 16384,
            window: 4,
        };
        Report {
            schema: SCHEMA.into(),
            generated: "2026-01-02T03:04:05Z".into(),
            self_mode: false,
            machine: Machine {
                cpu: "AMD EPYC".into(),
                cpus: 2,
                kernel: "6.1.0".into(),
                memory: 24 << 30,
                aes_ni: true,
                vaes: false,
                nofile: (20_000, 20_000),
                openssl: "OpenSSL 3.0.17".into(),
            },
            floor,
            plan: Plan {
                phases: vec![
                    "echo".into(),
                    "conn".into(),
                    "memory".into(),
                    "latency".into(),
                ],
                startup_trials: 5,
                proxy_cpus: "1".into(),
                loadgen_cpus: "0".into(),
                idle_secs: 10.0,
                idle_clients: vec![1000],
                echo: spec,
                upload: spec,
                download: spec,
                latency_clients: 16,
                latency_rate: 800.0,
                latency_size: 256,
                latency_secs: 10.0,
                conn_concurrency: 128,
                conn_secs: 3.0,
                max_connections: 16_384,
                deployments: vec!["pinned".into()],
                half_clients: 64,
                capacity_requests: 2000,
            },
            runs,
            spreads,
            goals,
        }
    }

    #[test]
    fn a_zero_of_ours_against_a_nonzero_c_is_a_full_bar_labelled_with_both() {
        let sp = Spread {
            metric: "idle_cpu_percent".into(),
            candidate_median: 0.0,
            reference_median: 3.8,
            median: 0.0,
            min: 0.0,
            max: 0.0,
        };
        let (m, lo, hi, label) = bar(&sp, false, 4.0);
        assert_eq!((m, lo, hi), (4.0, 4.0, 4.0));
        assert_eq!(label, "ours 0, C 3.80");
        // Both zero (self mode): no claim either way.
        let both = Spread {
            reference_median: 0.0,
            ..sp.clone()
        };
        assert_eq!(bar(&both, false, 4.0).3, "0.00x");
        // Ordinary lower-is-better: reference / candidate.
        let p99 = Spread {
            metric: "latency_p99_us".into(),
            candidate_median: 500.0,
            reference_median: 1000.0,
            median: 0.5,
            min: 0.4,
            max: 1.0,
        };
        let (m, lo, hi, label) = bar(&p99, false, 4.0);
        assert_eq!((m, lo, hi, label.as_str()), (2.0, 1.0, 2.5, "2.00x"));
    }

    #[test]
    fn markdown_names_the_missed_goals_with_their_reason() {
        let report = fixed_report();
        let md = report.to_markdown();
        assert!(md.starts_with("# Bench: "), "{md}");
        assert!(md.contains("load generator was saturated"), "{md}");
        insta::assert_snapshot!("bench", md);
    }

    /// The goals are still `targets` in `bench-report.json`.
    #[test]
    fn the_report_json_keeps_the_targets_field() {
        let report = fixed_report();
        let json = serde_json::to_value(&report).expect("serialize");
        let targets = json["targets"].as_array().expect("a targets array");
        assert_eq!(targets.len(), report.goals.len());
        assert_eq!(targets[0]["target"], "echo throughput >= 1.3x C");
        assert!(json.get("goals").is_none());
    }

    #[test]
    fn markdown_of_self_mode_says_no_reference() {
        let mut report = fixed_report();
        report.self_mode = true;
        let md = report.to_markdown();
        assert!(md.contains(" — no reference\n"), "{md}");
        assert!(md.contains("none — the candidate against itself"), "{md}");
    }
}
