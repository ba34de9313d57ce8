//! What the bench reads about a process and the machine from `/proc` (CPU time, RSS, kernel
//! memory), and the descriptor limit it raises for itself.

/// A process's CPU time (user + system, all threads, dead ones included) in seconds, from
/// `/proc/<pid>/stat` (clock ticks of 1/100 s, Linux's fixed `USER_HZ`).
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    cpu_times(pid).map(|t| t.total)
}

/// A process's CPU time from `/proc/<pid>/stat`: all of it and the system (kernel) part.
pub fn cpu_times(pid: u32) -> Option<CpuTimes> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat_times(&text)
}

/// CPU seconds of a process and its live children (a `-M` master and its workers).
pub fn cpu_times_tree(pid: u32) -> Option<CpuTimes> {
    let mut t = cpu_times(pid)?;
    for child in crate::process::child_pids(pid) {
        if let Some(c) = cpu_times(child) {
            t.total += c.total;
            t.system += c.system;
        }
    }
    Some(t)
}

/// CPU seconds of a process.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuTimes {
    /// `utime + stime`.
    pub total: f64,
    /// `stime`.
    pub system: f64,
}

/// `utime + stime` of a `/proc/<pid>/stat` line, in seconds.
pub fn parse_stat_cpu(stat: &str) -> Option<f64> {
    parse_stat_times(stat).map(|t| t.total)
}

/// `utime + stime` and `stime` of a `/proc/<pid>/stat` line, in seconds.
pub fn parse_stat_times(stat: &str) -> Option<CpuTimes> {
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3 of the man page, utime 14, stime 15 → indices 11, 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(CpuTimes {
        total: (utime + stime) as f64 / 100.0,
        system: stime as f64 / 100.0,
    })
}

/// Resident memory of a process, from `/proc/<pid>/status` (bytes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Rss {
    /// `VmRSS`.
    pub rss: u64,
    /// `RssAnon` (heap, stacks: what grows per client).
    pub anon: u64,
}

/// The RSS of `pid`.
pub fn rss(pid: u32) -> Option<Rss> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some(parse_status_rss(&text))
}

/// `VmRSS` and `RssAnon` of a `/proc/<pid>/status` text.
pub fn parse_status_rss(status: &str) -> Rss {
    let kb = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |k| k * 1024)
    };
    Rss {
        rss: kb("VmRSS:"),
        anon: kb("RssAnon:"),
    }
}

/// Unreclaimable kernel slab memory (`SUnreclaim` of `/proc/meminfo`, bytes): where
/// socket, inode, file and epoll structures live.
pub fn kernel_unreclaimable() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("SUnreclaim:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|k| k * 1024)
}

/// Pages of TCP socket buffers in use machine-wide (`TCP: ... mem N` of
/// `/proc/net/sockstat`), in bytes.
pub fn tcp_buffer_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/net/sockstat").ok()?;
    let line = text.lines().find(|l| l.starts_with("TCP:"))?;
    let mut it = line.split_whitespace();
    while let Some(w) = it.next() {
        if w == "mem" {
            return it.next()?.parse::<u64>().ok().map(|p| p * 4096);
        }
    }
    None
}

/// Raises this process's soft `RLIMIT_NOFILE` to its hard limit; returns `(soft, hard)`.
pub fn raise_nofile() -> (u64, u64) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap_or((1024, 1024));
    if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        return (hard, hard);
    }
    (soft, hard)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_cpu_skips_the_command_name() {
        let line = "42 (a b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 100 1000 10";
        assert_eq!(parse_stat_cpu(line), Some(3.0));
        assert_eq!(
            parse_stat_times(line),
            Some(CpuTimes {
                total: 3.0,
                system: 0.5
            })
        );
    }

    #[test]
    fn status_rss_in_bytes() {
        let s = "Name:\tx\nVmRSS:\t    2048 kB\nRssAnon:\t    1024 kB\n";
        assert_eq!(
            parse_status_rss(s),
            Rss {
                rss: 2 << 20,
                anon: 1 << 20
            }
        );
    }
}
