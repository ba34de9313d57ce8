//! Why a goal was missed: reasons read from what the runs measured (a saturated load
//! generator, the kernel's share of the CPU, each run's p99 beside the host's steal).

use parity::load;

use super::ratios::median;
use super::report::{Floor, Goal, RunReport, DEPLOYMENTS};

/// What the runs measured that explains a miss.
#[derive(Debug, Clone, Copy, Default)]
pub struct MissContext {
    /// Highest load-generator CPU (% of its core) in any connection-rate phase.
    pub conn_loadgen_percent: f64,
    /// Candidate connections per proxy CPU-second / reference's (median).
    pub conn_per_cpu_ratio: f64,
    /// The candidate proxy's kernel share of its CPU in the echo phase (median, %).
    pub echo_kernel_share_percent: f64,
    /// Candidate echo MB per proxy CPU-second / the floor (median).
    pub echo_per_cpu_floor_fraction: f64,
}

impl MissContext {
    /// Collects the context from the runs.
    pub fn of(runs: &[RunReport], floor: &Floor) -> Self {
        let conn_loadgen_percent = runs
            .iter()
            .flat_map(|r| [&r.candidate, &r.reference])
            .map(|s| s.conn_rate.cpu.loadgen_percent)
            .fold(0.0, f64::max);
        let conn_per_cpu_ratio = median(
            runs.iter()
                .filter(|r| r.reference.conn_rate.per_proxy_cpu_s > 0.0)
                .map(|r| {
                    r.candidate.conn_rate.per_proxy_cpu_s / r.reference.conn_rate.per_proxy_cpu_s
                })
                .collect(),
        );
        let echo_kernel_share_percent = median(
            runs.iter()
                .map(|r| r.candidate.echo.cpu.proxy_kernel_share_percent)
                .collect(),
        );
        let echo_per_cpu_floor_fraction = if floor.echo_mb_s > 0.0 {
            median(
                runs.iter()
                    .map(|r| r.candidate.echo.mb_per_proxy_cpu_s / floor.echo_mb_s)
                    .collect(),
            )
        } else {
            0.0
        };
        Self {
            conn_loadgen_percent,
            conn_per_cpu_ratio,
            echo_kernel_share_percent,
            echo_per_cpu_floor_fraction,
        }
    }
}

/// Fills in [`Goal::why`] for the misses the context explains.
pub fn explain(goals: &mut [Goal], cx: &MissContext) {
    for t in goals.iter_mut().filter(|t| !t.met) {
        if t.name.starts_with("new connections/s") && cx.conn_loadgen_percent >= 90.0 {
            t.why = format!(
                "the load generator was saturated ({:.0} % of its core): on this machine it \
                 cannot open connections as fast as the candidate accepts them; per proxy \
                 CPU-second the candidate does {:.2}x C",
                cx.conn_loadgen_percent, cx.conn_per_cpu_ratio
            );
        } else if t.name.contains("crypto floor") && cx.echo_kernel_share_percent > 0.0 {
            t.why = format!(
                "the floor counts only the four cipher passes; the proxy also spends {:.0} % of \
                 its CPU in the kernel (four loopback TCP copies and the TCP/netfilter work of \
                 every byte, on its own core); per proxy CPU-second it moves {:.2} of the floor, \
                 per CPU-second outside the kernel {:.2}",
                cx.echo_kernel_share_percent,
                cx.echo_per_cpu_floor_fraction,
                cx.echo_per_cpu_floor_fraction / (1.0 - cx.echo_kernel_share_percent / 100.0)
            );
        }
    }
}

/// User-space and kernel CPU per unit of work (per MB echoed, per connection), medians over
/// the runs, for one side of one unpinned deployment.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuSplit {
    /// User-space CPU seconds per unit.
    pub user: f64,
    /// Kernel CPU seconds per unit.
    pub kernel: f64,
}

/// The user-space and kernel CPU of `cpu` per unit of work (`None` without work or CPU).
fn split(cpu: &load::CpuUse, units: f64) -> Option<CpuSplit> {
    if units <= 0.0 || cpu.proxy_cpu_s <= 0.0 {
        return None;
    }
    let kernel = cpu.proxy_cpu_s * cpu.proxy_kernel_share_percent / 100.0;
    Some(CpuSplit {
        user: (cpu.proxy_cpu_s - kernel) / units,
        kernel: kernel / units,
    })
}

/// The median user-space and kernel parts of `v`.
fn median_split(v: &[CpuSplit]) -> CpuSplit {
    CpuSplit {
        user: median(v.iter().map(|x| x.user).collect()),
        kernel: median(v.iter().map(|x| x.kernel).collect()),
    }
}

/// Fills in [`Goal::why`] for missed per-CPU-second goals of the unpinned deployments:
/// where each side's CPU goes per unit of work, and the ratio the kernel's part allows at
/// most (the same socket work for both sides; with no user-space CPU at all the candidate
/// would reach C's total / the candidate's kernel time).
pub fn explain_deployments(goals: &mut [Goal], runs: &[RunReport]) {
    for t in goals.iter_mut().filter(|t| !t.met) {
        if let Some(why) = latency_why(&t.name, runs) {
            t.why = why;
            continue;
        }
        let Some(d) = DEPLOYMENTS
            .iter()
            .find(|d| t.name.ends_with(&format!("({d})")))
        else {
            continue;
        };
        let echo = t.name.starts_with("echo per proxy CPU-second");
        let conn = t.name.starts_with("connections per proxy CPU-second");
        if !echo && !conn {
            continue;
        }
        let (mut cand, mut refr) = (Vec::new(), Vec::new());
        for dr in runs
            .iter()
            .flat_map(|r| &r.deployments)
            .filter(|x| x.name == *d)
        {
            for (side, out) in [(&dr.candidate, &mut cand), (&dr.reference, &mut refr)] {
                let s = if echo {
                    split(&side.echo.cpu, side.echo.bytes as f64 / 1e6)
                } else {
                    split(&side.conn_rate.cpu, side.conn_rate.connections as f64)
                };
                out.extend(s);
            }
        }
        if cand.is_empty() || refr.is_empty() {
            continue;
        }
        let (c, r) = (median_split(&cand), median_split(&refr));
        let (unit, scale, per) = if echo {
            ("MB echoed", 1e3, "ms")
        } else {
            ("connection", 1e6, "us")
        };
        let cap = if c.kernel > 0.0 {
            (r.user + r.kernel) / c.kernel
        } else {
            0.0
        };
        t.why = format!(
            "per {unit} the candidate spends {:.2} {per} in user space and {:.2} {per} in the \
             kernel, C {:.2} and {:.2} {per}: the candidate's user-space work is {:.1}x lower, \
             but the kernel part (socket I/O of the same bytes) is {:.2}x C's, which caps the \
             ratio at {:.2}x even with no user-space work at all",
            c.user * scale,
            c.kernel * scale,
            r.user * scale,
            r.kernel * scale,
            if c.user > 0.0 { r.user / c.user } else { 0.0 },
            if r.kernel > 0.0 {
                c.kernel / r.kernel
            } else {
                0.0
            },
            cap
        );
    }
}

/// For a missed p99 goal: each run's p99 on both sides beside the host's CPU steal in
/// that run, and how many runs the candidate won.
fn latency_why(goal: &str, runs: &[RunReport]) -> Option<String> {
    let rest = goal.strip_prefix("p99 latency <= C")?;
    // `None`: the pinned deployment; else (deployment, half load).
    let which: Option<(String, bool)> = if rest.is_empty() {
        None
    } else {
        let inner = rest.trim().trim_start_matches('(').trim_end_matches(')');
        let (d, load) = inner.split_once(", ")?;
        Some((d.to_string(), load.starts_with("half")))
    };
    let pick = |r: &RunReport| -> Option<(f64, f64)> {
        let Some((d, half)) = &which else {
            return Some((r.candidate.latency.p99_us, r.reference.latency.p99_us));
        };
        let x = r.deployments.iter().find(|x| &x.name == d)?;
        Some(if *half {
            (
                x.candidate.latency_half.p99_us,
                x.reference.latency_half.p99_us,
            )
        } else {
            (
                x.candidate.latency_light.p99_us,
                x.reference.latency_light.p99_us,
            )
        })
    };
    let rows: Vec<(f64, f64, f64)> = runs
        .iter()
        .filter_map(|r| pick(r).map(|(c, x)| (c, x, r.steal_percent)))
        .collect();
    if rows.is_empty() {
        return None;
    }
    let won = rows.iter().filter(|(c, r, _)| c <= r).count();
    Some(format!(
        "per run, candidate/C p99 in us (host CPU steal): {}; the candidate had the lower p99 \
         in {won} of {} runs",
        rows.iter()
            .map(|(c, r, st)| format!("{c:.0}/{r:.0} ({st:.1} %)"))
            .collect::<Vec<_>>()
            .join(", "),
        rows.len()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::fixtures::{run, side, unpinned_side};
    use crate::bench::goals::goals;
    use crate::bench::ratios::{deployment_ratios, spreads};
    use crate::bench::report::{DeploymentRun, DeploymentSide, SideReport};

    /// A missed p99 target lists each run's figures beside the host's steal.
    #[test]
    fn a_latency_miss_lists_the_runs_and_the_steal() {
        let d = DeploymentRun {
            name: "workers2".into(),
            candidate: unpinned_side(1500.0, 1.0, 1.0),
            reference: unpinned_side(1000.0, 1.0, 1.0),
            ..DeploymentRun::default()
        };
        let mut r = run(SideReport::default(), SideReport::default());
        r.steal_percent = 7.5;
        r.ratios = deployment_ratios(std::slice::from_ref(&d));
        r.deployments = vec![d];
        let mut t = goals(&spreads(std::slice::from_ref(&r)), 0.0);
        explain_deployments(&mut t, &[r]);
        let miss = t
            .iter()
            .find(|x| x.name == "p99 latency <= C (workers2, light load)")
            .unwrap();
        assert_eq!(
            miss.why,
            "per run, candidate/C p99 in us (host CPU steal): 1500/1000 (7.5 %); the candidate had the lower p99 in 0 of 1 runs"
        );
        let half = t
            .iter()
            .find(|x| x.name == "p99 latency <= C (workers2, half load)")
            .unwrap();
        assert!(half
            .why
            .starts_with("per run, candidate/C p99 in us (host CPU steal): 3000/2000"));
    }

    /// A missed per-CPU target says where each side's CPU went and what the kernel allows.
    #[test]
    fn a_per_cpu_miss_is_explained_by_the_cpu_split() {
        let side = |user: f64, kernel: f64| {
            let mut d = DeploymentSide::default();
            d.echo.bytes = 100_000_000;
            d.echo.cpu.proxy_cpu_s = user + kernel;
            d.echo.cpu.proxy_kernel_share_percent = kernel / (user + kernel) * 100.0;
            d.echo.mb_per_proxy_cpu_s = 100.0 / (user + kernel);
            d
        };
        let d = DeploymentRun {
            name: "default".into(),
            candidate: side(0.1, 0.3),
            reference: side(0.25, 0.3),
            ..DeploymentRun::default()
        };
        let mut r = run(SideReport::default(), SideReport::default());
        r.ratios = deployment_ratios(std::slice::from_ref(&d));
        r.deployments = vec![d];
        let mut t = goals(&spreads(std::slice::from_ref(&r)), 0.0);
        explain_deployments(&mut t, &[r]);
        let miss = t
            .iter()
            .find(|x| x.name == "echo per proxy CPU-second >= 1.5x C (default)")
            .unwrap();
        assert!(!miss.met);
        assert!(
            miss.why
                .contains("1.00 ms in user space and 3.00 ms in the kernel")
                && miss.why.contains("2.5x lower")
                && miss.why.contains("caps the ratio at 1.83x"),
            "{}",
            miss.why
        );
    }

    #[test]
    fn a_saturated_load_generator_explains_a_connection_rate_miss() {
        let mut c = side(300.0, 1200.0, 90.0, 2000.0);
        let mut r = side(200.0, 1000.0, 100.0, 8000.0);
        c.conn_rate.cpu.loadgen_percent = 97.0;
        c.conn_rate.per_proxy_cpu_s = 1500.0;
        r.conn_rate.per_proxy_cpu_s = 1000.0;
        c.echo.cpu.proxy_kernel_share_percent = 40.0;
        c.echo.mb_per_proxy_cpu_s = 320.0;
        let runs = vec![run(c, r)];
        let floor = Floor {
            echo_mb_s: 640.0,
            ..Floor::default()
        };
        let mut t = goals(&spreads(&runs), 0.45);
        explain(&mut t, &MissContext::of(&runs, &floor));
        let get = |name: &str| t.iter().find(|x| x.name.starts_with(name)).unwrap();
        let conn = get("new connections/s");
        assert!(!conn.met);
        assert!(conn.why.contains("saturated (97 %"), "{}", conn.why);
        assert!(conn.why.contains("1.50x C"), "{}", conn.why);
        let floor_t = get("echo throughput >= 60%");
        assert!(floor_t.why.contains("40 %") && floor_t.why.contains("0.50 of the floor"));
        assert!(
            floor_t.why.contains("outside the kernel 0.83"),
            "{}",
            floor_t.why
        );
        // What is met carries no excuse.
        assert!(get("RSS per idle client (1000) <= 0.5x").why.is_empty());
        // Without saturation a miss stays unexplained.
        let mut quiet = MissContext::of(&runs, &floor);
        quiet.conn_loadgen_percent = 50.0;
        let mut t2 = goals(&spreads(&runs), 0.45);
        explain(&mut t2, &quiet);
        assert!(t2
            .iter()
            .find(|x| x.name.starts_with("new connections/s"))
            .unwrap()
            .why
            .is_empty());
    }
}
