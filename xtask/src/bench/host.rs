//! The machine under the bench: CPU placement (`taskset`), the `/proc` figures (slab,
//! steal, load average, CPU model) and the crypto floor from `openssl speed`.

use anyhow::{bail, Context};

use super::report::{Floor, Machine};

/// Sets the CPU affinity of every thread of this process (`taskset -a -p -c CPUS`).
pub(super) fn pin_self(cpus: &str) -> anyhow::Result<()> {
    let status = std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &std::process::id().to_string()])
        .stdout(std::process::Stdio::null())
        .status()
        .context("running taskset (util-linux) to place the load generator")?;
    if !status.success() {
        bail!("taskset -a -p -c {cpus} failed: {status}");
    }
    Ok(())
}

/// Total kernel slab (`Slab:` of `/proc/meminfo`, bytes).
pub(super) fn slab() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("Slab:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |k| k * 1024)
}

/// `(steal, total)` jiffies of all CPUs, from the `cpu` line of `/proc/stat`.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Steal(u64, u64);

impl Steal {
    /// The steal between this sample and `later`, in % of all CPU time.
    pub(super) fn percent_until(self, later: Steal) -> f64 {
        let total = later.1.saturating_sub(self.1);
        if total == 0 {
            return 0.0;
        }
        later.0.saturating_sub(self.0) as f64 / total as f64 * 100.0
    }
}

/// The steal counters now.
pub(super) fn cpu_steal() -> Steal {
    std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|t| {
            let v: Vec<u64> = t
                .lines()
                .next()?
                .split_whitespace()
                .skip(1)
                .filter_map(|x| x.parse().ok())
                .collect();
            Some(Steal(v.get(7).copied().unwrap_or(0), v.iter().sum()))
        })
        .unwrap_or_default()
}

/// The 1-minute load average.
pub(super) fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

/// The machine, read from `/proc` and `openssl version` (`nofile` left at 0).
pub(super) fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_string())
        .unwrap_or_default();
    let flags: Vec<&str> = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("flags"))
        .map(|v| v.split_whitespace().collect())
        .unwrap_or_default();
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |k| k * 1024);
    let openssl = std::process::Command::new("openssl")
        .arg("version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    Machine {
        cpu,
        cpus: cpuinfo
            .lines()
            .filter(|l| l.starts_with("processor"))
            .count(),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_string(),
        memory,
        aes_ni: flags.contains(&"aes"),
        vaes: flags.contains(&"vaes"),
        nofile: (0, 0),
        openssl,
    }
}

/// `openssl speed` (CPU time, 16 KiB blocks, 1 s) on `cpu`; MB/s, 0 when unavailable.
fn openssl_speed(cpu: usize, decrypt: bool, cipher: &str) -> f64 {
    let mut cmd = std::process::Command::new("taskset");
    cmd.args([
        "-c",
        &cpu.to_string(),
        "openssl",
        "speed",
        "-seconds",
        "1",
        "-bytes",
        "16384",
    ]);
    if decrypt {
        cmd.arg("-decrypt");
    }
    cmd.args(["-evp", cipher]);
    let Ok(out) = cmd.stderr(std::process::Stdio::null()).output() else {
        return 0.0;
    };
    parse_openssl_speed(&String::from_utf8_lossy(&out.stdout))
}

/// The MB/s of the last result line of `openssl speed` (`AES-256-CTR  1234.56k`, in
/// 1000s of bytes per second).
pub fn parse_openssl_speed(text: &str) -> f64 {
    text.lines()
        .rev()
        .find_map(|l| {
            let last = l.split_whitespace().last()?;
            let k: f64 = last.strip_suffix('k')?.parse().ok()?;
            Some(k / 1000.0)
        })
        .unwrap_or(0.0)
}

/// The crypto floor measured on `cpu`.
pub(super) fn crypto_floor(cpu: usize) -> Floor {
    let ctr = openssl_speed(cpu, false, "aes-256-ctr");
    let enc = openssl_speed(cpu, false, "aes-256-cbc");
    let dec = openssl_speed(cpu, true, "aes-256-cbc");
    Floor {
        ctr_mb_s: ctr,
        cbc_encrypt_mb_s: enc,
        cbc_decrypt_mb_s: dec,
        echo_mb_s: Floor::echo_of(ctr, enc, dec),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_and_openssl_parsing() {
        // The figures: CTR 7.5, CBC enc 1.3, CBC dec 7.8 GB/s -> about 0.87 GB/s.
        let f = Floor::echo_of(7500.0, 1300.0, 7800.0);
        assert!((f - 860.0).abs() < 10.0, "{f}");
        assert_eq!(Floor::echo_of(0.0, 1.0, 1.0), 0.0);
        let out = "type          16384 bytes\nAES-256-CTR    1504739.33k\n";
        assert!((parse_openssl_speed(out) - 1504.73933).abs() < 1e-6);
        assert_eq!(parse_openssl_speed("garbage"), 0.0);
    }
}
