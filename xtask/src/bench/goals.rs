//! The performance goals of issue #6, judged on the median ratios of the runs.

use super::report::{Goal, Spread, DEPLOYMENTS};

/// The goal `name`: `value` at least (or at most) `bound`.
fn goal(name: &str, value: f64, bound: f64, at_least: bool) -> Goal {
    let met = if at_least {
        value >= bound
    } else {
        value <= bound
    };
    let missed_by = if met || bound == 0.0 {
        0.0
    } else {
        ((value - bound) / bound).abs()
    };
    Goal {
        name: name.to_string(),
        value,
        bound,
        met,
        missed_by,
        why: String::new(),
    }
}

/// The goals, judged on the medians.
pub fn goals(spreads: &[Spread], floor_fraction: f64) -> Vec<Goal> {
    let get = |m: &str| spreads.iter().find(|s| s.metric == m);
    let mut t = Vec::new();
    if let Some(s) = get("echo_mb_s") {
        t.push(goal("echo throughput >= 1.3x C", s.median, 1.3, true));
    }
    if get("echo_mb_s").is_some() {
        t.push(goal(
            "echo throughput >= 60% of the crypto floor",
            floor_fraction,
            0.6,
            true,
        ));
    }
    if let Some(s) = get("conn_per_s") {
        t.push(goal("new connections/s >= 1.5x C", s.median, 1.5, true));
    }
    for s in spreads
        .iter()
        .filter(|s| s.metric.starts_with("rss_per_idle_client_"))
    {
        let n = s.metric.trim_start_matches("rss_per_idle_client_");
        t.push(goal(
            &format!("RSS per idle client ({n}) <= 0.5x C"),
            s.median,
            0.5,
            false,
        ));
        t.push(goal(
            &format!("RSS per idle client ({n}) <= 4 KiB"),
            s.candidate_median,
            4096.0,
            false,
        ));
    }
    if let Some(s) = get("latency_p99_us") {
        t.push(goal("p99 latency <= C", s.median, 1.0, false));
    }
    for d in DEPLOYMENTS.iter().filter(|d| **d != "pinned") {
        for load in ["light", "half"] {
            if let Some(s) = get(&format!("{d}/latency_{load}_p99_us")) {
                t.push(goal(
                    &format!("p99 latency <= C ({d}, {load} load)"),
                    s.median,
                    1.0,
                    false,
                ));
            }
        }
        if let Some(s) = get(&format!("{d}/conn_per_proxy_cpu_s")) {
            t.push(goal(
                &format!("connections per proxy CPU-second >= 1.5x C ({d})"),
                s.median,
                1.5,
                true,
            ));
        }
        if let Some(s) = get(&format!("{d}/echo_mb_per_proxy_cpu_s")) {
            t.push(goal(
                &format!("echo per proxy CPU-second >= 1.5x C ({d})"),
                s.median,
                1.5,
                true,
            ));
        }
    }
    if let Some(s) = get("idle_cpu_percent") {
        t.push(goal(
            "idle CPU ~ 0 (<= 0.1 %)",
            s.candidate_median,
            0.1,
            false,
        ));
    }
    if let Some(s) = get("first_served_ms") {
        t.push(goal(
            "first accept <= 50 ms",
            s.candidate_median,
            50.0,
            false,
        ));
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::fixtures::{run, side, unpinned_side};
    use crate::bench::ratios::{deployment_ratios, spreads};
    use crate::bench::report::{DeploymentRun, SideReport};

    /// The unpinned deployments get their own ratios, named by deployment, and their own
    /// goals: p99 at both loads, and per-CPU-second efficiency.
    #[test]
    fn deployments_have_their_own_ratios_and_goals() {
        let d = DeploymentRun {
            name: "default".into(),
            candidate: unpinned_side(300.0, 160.0, 9000.0),
            reference: unpinned_side(200.0, 100.0, 5000.0),
            ..DeploymentRun::default()
        };
        let ratios = deployment_ratios(&[d]);
        let r = |m: &str| ratios.iter().find(|x| x.metric == m).unwrap().ratio;
        assert!((r("default/latency_light_p99_us") - 1.5).abs() < 1e-9);
        assert!((r("default/latency_half_p99_us") - 1.5).abs() < 1e-9);
        assert!((r("default/conn_per_proxy_cpu_s") - 1.8).abs() < 1e-9);
        let mut run0 = run(SideReport::default(), SideReport::default());
        run0.ratios = ratios;
        let t = goals(&spreads(&[run0]), 0.0);
        let met = |name: &str| t.iter().find(|x| x.name == name).map(|x| x.met);
        assert_eq!(met("p99 latency <= C (default, light load)"), Some(false));
        assert_eq!(met("p99 latency <= C (default, half load)"), Some(false));
        assert_eq!(
            met("connections per proxy CPU-second >= 1.5x C (default)"),
            Some(true)
        );
        assert_eq!(
            met("echo per proxy CPU-second >= 1.5x C (default)"),
            Some(true)
        );
        assert_eq!(met("p99 latency <= C (workers2, light load)"), None);
    }

    #[test]
    fn ratios_spreads_and_goals() {
        let runs = vec![
            run(
                side(600.0, 3000.0, 90.0, 2000.0),
                side(400.0, 1000.0, 100.0, 8000.0),
            ),
            run(
                side(500.0, 3000.0, 120.0, 2000.0),
                side(500.0, 1000.0, 100.0, 8000.0),
            ),
        ];
        let sp = spreads(&runs);
        let echo = sp.iter().find(|s| s.metric == "echo_mb_s").unwrap();
        assert_eq!((echo.min, echo.max, echo.median), (1.0, 1.5, 1.25));
        let t = goals(&sp, 0.7);
        let get = |name: &str| t.iter().find(|x| x.name.starts_with(name)).unwrap();
        assert!(!get("echo throughput >= 1.3x").met);
        assert!((get("echo throughput >= 1.3x").missed_by - 0.05 / 1.3).abs() < 1e-9);
        assert!(get("echo throughput >= 60%").met);
        assert!(get("new connections/s").met);
        assert!(get("RSS per idle client (1000) <= 0.5x").met);
        assert!(get("RSS per idle client (1000) <= 4 KiB").met);
        // p99 ratios 0.9 and 1.2: median 1.05 misses "<= C".
        assert!(!get("p99 latency").met);
    }
}
