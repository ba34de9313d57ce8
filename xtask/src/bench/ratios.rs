//! The candidate/reference ratios of a run and their spread over the runs.

use parity::load::{BulkResult, ConnRateResult};

use super::report::{DeploymentRun, Ratio, RunReport, SideReport, Spread};

/// The ratios of one run.
pub fn ratios(c: &SideReport, r: &SideReport) -> Vec<Ratio> {
    let mut v = Vec::new();
    let mut push = |metric: &str, a: f64, b: f64, hib: bool| {
        v.push(Ratio {
            metric: metric.to_string(),
            candidate: a,
            reference: b,
            ratio: if b != 0.0 { a / b } else { 0.0 },
            higher_is_better: hib,
        });
    };
    push_throughput(&mut push, (&c.echo, &c.conn_rate), (&r.echo, &r.conn_rate));
    push("upload_mb_s", c.upload.mb_per_s, r.upload.mb_per_s, true);
    push(
        "download_mb_s",
        c.download.mb_per_s,
        r.download.mb_per_s,
        true,
    );
    push("latency_p50_us", c.latency.p50_us, r.latency.p50_us, false);
    push("latency_p99_us", c.latency.p99_us, r.latency.p99_us, false);
    for (a, b) in c.idle.iter().zip(&r.idle) {
        push(
            &format!("rss_per_idle_client_{}", a.clients),
            a.rss_per_client,
            b.rss_per_client,
            false,
        );
    }
    push(
        "idle_cpu_percent",
        c.idle_cpu_percent,
        r.idle_cpu_percent,
        false,
    );
    push(
        "first_served_ms",
        c.startup.first_served_ms,
        r.startup.first_served_ms,
        false,
    );
    push(
        "rss_ready_bytes",
        c.rss_ready as f64,
        r.rss_ready as f64,
        false,
    );
    v
}

/// The ratios of the unpinned deployments, named `<deployment>/<metric>`.
pub fn deployment_ratios(deployments: &[DeploymentRun]) -> Vec<Ratio> {
    let mut v = Vec::new();
    for d in deployments {
        let (c, r) = (&d.candidate, &d.reference);
        let mut push = |metric: &str, a: f64, b: f64, hib: bool| {
            v.push(Ratio {
                metric: format!("{}/{metric}", d.name),
                candidate: a,
                reference: b,
                ratio: if b != 0.0 { a / b } else { 0.0 },
                higher_is_better: hib,
            });
        };
        for (load, lc, lr) in [
            ("light", &c.latency_light, &r.latency_light),
            ("half", &c.latency_half, &r.latency_half),
        ] {
            push(
                &format!("latency_{load}_p50_us"),
                lc.p50_us,
                lr.p50_us,
                false,
            );
            push(
                &format!("latency_{load}_p99_us"),
                lc.p99_us,
                lr.p99_us,
                false,
            );
            push(
                &format!("latency_{load}_p999_us"),
                lc.p999_us,
                lr.p999_us,
                false,
            );
            push(
                &format!("latency_{load}_max_us"),
                lc.max_us,
                lr.max_us,
                false,
            );
        }
        push_throughput(&mut push, (&c.echo, &c.conn_rate), (&r.echo, &r.conn_rate));
    }
    v
}

/// Echo throughput and connection rate, absolute and per proxy CPU-second: the ratios every
/// deployment has.
fn push_throughput(
    push: &mut impl FnMut(&str, f64, f64, bool),
    (ce, cc): (&BulkResult, &ConnRateResult),
    (re, rc): (&BulkResult, &ConnRateResult),
) {
    push("echo_mb_s", ce.mb_per_s, re.mb_per_s, true);
    push(
        "echo_mb_per_proxy_cpu_s",
        ce.mb_per_proxy_cpu_s,
        re.mb_per_proxy_cpu_s,
        true,
    );
    push("conn_per_s", cc.per_s, rc.per_s, true);
    push(
        "conn_per_proxy_cpu_s",
        cc.per_proxy_cpu_s,
        rc.per_proxy_cpu_s,
        true,
    );
}

/// The median of `v` (0 when empty).
pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Median, min and max of each ratio over `runs`.
pub fn spreads(runs: &[RunReport]) -> Vec<Spread> {
    let Some(first) = runs.first() else {
        return Vec::new();
    };
    first
        .ratios
        .iter()
        .map(|r0| {
            let all: Vec<&Ratio> = runs
                .iter()
                .filter_map(|r| r.ratios.iter().find(|x| x.metric == r0.metric))
                .collect();
            let ratio: Vec<f64> = all.iter().map(|x| x.ratio).collect();
            Spread {
                metric: r0.metric.clone(),
                median: median(ratio.clone()),
                min: ratio.iter().copied().fold(f64::INFINITY, f64::min),
                max: ratio.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                candidate_median: median(all.iter().map(|x| x.candidate).collect()),
                reference_median: median(all.iter().map(|x| x.reference).collect()),
            }
        })
        .collect()
}
