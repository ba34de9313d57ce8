//! Sides and runs built by hand for the tests of the bench's modules (this file names
//! only the report types and the ratios, so every test module may use it).

use super::ratios::ratios;
use super::report::{DeploymentSide, IdleMemory, RunReport, SideReport};

/// A pinned side with the given echo MB/s, connections/s, p99 (us) and RSS per idle
/// client (1000 clients).
pub(super) fn side(echo: f64, conn: f64, p99: f64, rss: f64) -> SideReport {
    let mut s = SideReport::default();
    s.echo.mb_per_s = echo;
    s.conn_rate.per_s = conn;
    s.latency.p99_us = p99;
    s.idle.push(IdleMemory {
        clients: 1000,
        rss_per_client: rss,
        ..IdleMemory::default()
    });
    s
}

/// Run 0 of `c` against `r`, with their ratios.
pub(super) fn run(c: SideReport, r: SideReport) -> RunReport {
    let ratios = ratios(&c, &r);
    RunReport {
        index: 0,
        first: "candidate".into(),
        loadavg: (0.0, 0.0),
        steal_percent: 0.0,
        candidate: c,
        reference: r,
        deployments: Vec::new(),
        ratios,
    }
}

/// One side of an unpinned deployment: light-load p99 (half load: twice that), echo MB
/// and connections per proxy CPU-second.
pub(super) fn unpinned_side(p99: f64, echo_per_cpu: f64, conn_per_cpu: f64) -> DeploymentSide {
    let mut d = DeploymentSide::default();
    d.latency_light.p99_us = p99;
    d.latency_half.p99_us = p99 * 2.0;
    d.echo.mb_per_proxy_cpu_s = echo_per_cpu;
    d.conn_rate.per_proxy_cpu_s = conn_per_cpu;
    d
}
