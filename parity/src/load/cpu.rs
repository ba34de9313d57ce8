//! CPU accounting around a measured window: the proxy's and this load generator's.

use std::time::{Duration, Instant};

use super::procfs::{cpu_seconds, cpu_times_tree, CpuTimes};

/// CPU use of the proxy and of this load generator over a window.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CpuUse {
    /// The window (s).
    pub seconds: f64,
    /// Proxy CPU time / window, in % of one core.
    pub proxy_percent: f64,
    /// Load-generator (this process) CPU time / window, in % of one core.
    pub loadgen_percent: f64,
    /// Proxy CPU seconds in the window.
    pub proxy_cpu_s: f64,
    /// Share of the proxy's CPU time spent in the kernel (system time), in %.
    #[serde(default)]
    pub proxy_kernel_share_percent: f64,
}

/// A started CPU window.
#[derive(Debug, Clone, Copy)]
pub struct CpuWindow {
    at: Instant,
    proxy: CpuTimes,
    me: f64,
    pid: u32,
}

impl CpuWindow {
    /// Starts a window for `pid`.
    pub fn start(pid: u32) -> Self {
        Self {
            at: Instant::now(),
            proxy: cpu_times_tree(pid).unwrap_or_default(),
            me: cpu_seconds(std::process::id()).unwrap_or(0.0),
            pid,
        }
    }

    /// Ends it.
    pub fn finish(&self) -> CpuUse {
        let seconds = self.at.elapsed().as_secs_f64().max(1e-9);
        let now = cpu_times_tree(self.pid).unwrap_or(self.proxy);
        let proxy = now.total - self.proxy.total;
        let kernel = now.system - self.proxy.system;
        let me = cpu_seconds(std::process::id()).unwrap_or(self.me) - self.me;
        CpuUse {
            seconds,
            proxy_percent: proxy / seconds * 100.0,
            loadgen_percent: me / seconds * 100.0,
            proxy_cpu_s: proxy,
            proxy_kernel_share_percent: if proxy > 0.0 {
                kernel / proxy * 100.0
            } else {
                0.0
            },
        }
    }
}

/// Idle CPU of `pid` over `window`: CPU time / wall time in %.
pub async fn idle_cpu(pid: u32, window: Duration) -> f64 {
    let w = CpuWindow::start(pid);
    tokio::time::sleep(window).await;
    w.finish().proxy_percent
}
