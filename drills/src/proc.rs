//! The proxy process as the drills see it: resident memory, descriptors and threads from
//! `/proc`, a sampler, and bounded polls for "settled" values.

use std::time::Duration;

use tokio::time::Instant;

use crate::outcome::Sample;

/// One sample of `pid` (zeros when it is gone).
pub fn sample(pid: u32, since: Instant) -> Sample {
    Sample {
        t_s: since.elapsed().as_secs_f64(),
        rss_bytes: parity::load::rss(pid).map_or(0, |r| r.rss),
        fds: fds(pid),
        threads: threads(pid),
    }
}

/// One sample of several processes, summed (a deployment of more than one instance).
pub fn sample_all(pids: &[u32], since: Instant) -> Sample {
    pids.iter()
        .map(|p| sample(*p, since))
        .fold(Sample::default(), |a, b| Sample {
            t_s: b.t_s,
            rss_bytes: a.rss_bytes + b.rss_bytes,
            fds: a.fds + b.fds,
            threads: a.threads + b.threads,
        })
}

/// Open descriptors of `pid`.
pub fn fds(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64)
}

/// Threads of `pid`.
pub fn threads(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Polls the descriptor count until it is at most `target`, for at most `wait`; returns
/// the last count.
pub async fn fds_down_to(pid: u32, target: u64, wait: Duration) -> u64 {
    let deadline = Instant::now() + wait;
    loop {
        let n = fds(pid);
        if n <= target || Instant::now() >= deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls the descriptor count until it has not fallen for 300 ms (connections that just
/// ended are gone), for at most `wait`; returns the last count.
pub async fn settled_fds(pid: u32, wait: Duration) -> u64 {
    let deadline = Instant::now() + wait;
    let (mut last, mut steady) = (fds(pid), 0);
    while steady < 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = fds(pid);
        steady = if now < last { 0 } else { steady + 1 };
        last = now.min(last);
    }
    last
}

/// Polls RSS until it stops falling (two readings 500 ms apart within 1 %) or `wait`
/// passes; returns the last reading. The proxy gives no event for "done freeing memory".
pub async fn settled_rss(pid: u32, wait: Duration) -> u64 {
    let deadline = Instant::now() + wait;
    let mut last = parity::load::rss(pid).map_or(0, |r| r.rss);
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = parity::load::rss(pid).map_or(0, |r| r.rss);
        if now + now / 100 >= last || Instant::now() >= deadline {
            return now;
        }
        last = now;
    }
}

/// Least-squares slope of RSS over time for the samples from `from_s` on, bytes per
/// minute (0 with fewer than two samples).
pub fn rss_slope_per_min(samples: &[Sample], from_s: f64) -> f64 {
    let pts: Vec<(f64, f64)> = samples
        .iter()
        .filter(|s| s.t_s >= from_s && s.rss_bytes > 0)
        .map(|s| (s.t_s, s.rss_bytes as f64))
        .collect();
    if pts.len() < 2 {
        return 0.0;
    }
    let n = pts.len() as f64;
    let mx = pts.iter().map(|p| p.0).sum::<f64>() / n;
    let my = pts.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    if sxx == 0.0 {
        return 0.0;
    }
    sxy / sxx * 60.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(t: f64, rss: u64) -> Sample {
        Sample {
            t_s: t,
            rss_bytes: rss,
            ..Sample::default()
        }
    }

    #[test]
    fn slope_is_bytes_per_minute_over_the_chosen_half() {
        // 1 KiB per second from t = 10 on: 60 KiB per minute; the first half is ignored.
        let mut v = vec![s(0.0, 50_000_000), s(5.0, 1)];
        v.extend((10..20).map(|t| s(f64::from(t), 1_000_000 + 1024 * u64::from(t as u32))));
        let slope = rss_slope_per_min(&v, 10.0);
        assert!((slope - 61_440.0).abs() < 1.0, "{slope}");
        assert_eq!(rss_slope_per_min(&v[..1], 0.0), 0.0);
    }

    #[test]
    fn this_process_has_descriptors_and_threads() {
        let me = std::process::id();
        assert!(fds(me) >= 3);
        assert!(threads(me) >= 1);
        assert_eq!(fds(u32::MAX), 0);
    }
}
