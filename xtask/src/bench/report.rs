//! The bench report: what `bench-report.json` holds (its schema, `artifacts/bench/SCHEMA.md`)
//! and the deployments and phases a run is made of.

use parity::load::{BulkResult, BulkSpec, ConnRateResult, LatencyResult, Startup};
use serde::{Deserialize, Serialize};

/// Report format version.
pub const SCHEMA: &str = "mtproxy-bench/1";

/// Every deployment, in the order they run.
pub const DEPLOYMENTS: [&str; 3] = ["pinned", "default", "workers2"];

/// Every phase, in the order they run.
pub const PHASES: [&str; 8] = [
    "startup", "idle", "memory", "latency", "echo", "upload", "download", "conn",
];

/// The phase sizes of one run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    /// The phases run.
    pub phases: Vec<String>,
    /// Start-up trials per side.
    pub startup_trials: usize,
    /// CPU list the proxies are pinned to.
    pub proxy_cpus: String,
    /// CPU list of the load generator.
    pub loadgen_cpus: String,
    /// Idle CPU window (s).
    pub idle_secs: f64,
    /// Idle-client counts.
    pub idle_clients: Vec<usize>,
    /// Bulk echo: 16 KiB requests, 16 KiB answers.
    pub echo: BulkSpec,
    /// Upload only: 16 KiB requests, no answers (credit from the ME).
    pub upload: BulkSpec,
    /// Download only: 64-byte requests, 16 KiB answers.
    pub download: BulkSpec,
    /// Latency: clients, offered requests/s, packet bytes, seconds.
    pub latency_clients: usize,
    /// Offered requests per second (all latency clients together).
    pub latency_rate: f64,
    /// Packet size of the latency phase.
    pub latency_size: usize,
    /// Duration of the latency phase (s).
    pub latency_secs: f64,
    /// Concurrent connectors of the connection-rate phase.
    pub conn_concurrency: usize,
    /// Duration of the connection-rate phase (s).
    pub conn_secs: f64,
    /// `-c` given to both proxies.
    pub max_connections: u32,
    /// Deployments measured (see [`DEPLOYMENTS`]).
    #[serde(default)]
    pub deployments: Vec<String>,
    /// Clients of the half-load latency phase (unpinned deployments).
    #[serde(default)]
    pub half_clients: usize,
    /// Requests per client of the capacity probe that sets the half load.
    #[serde(default)]
    pub capacity_requests: usize,
}

impl Plan {
    /// Whether `phase` runs.
    pub fn has(&self, phase: &str) -> bool {
        self.phases.iter().any(|p| p == phase)
    }

    /// Whether `deployment` is measured.
    pub fn deploys(&self, deployment: &str) -> bool {
        self.deployments.iter().any(|d| d == deployment)
    }
}

/// Resident memory with `clients` idle clients connected.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct IdleMemory {
    /// Idle clients connected.
    pub clients: usize,
    /// Proxy `VmRSS` (bytes).
    pub rss: u64,
    /// Proxy `RssAnon` (bytes).
    pub rss_anon: u64,
    /// (`VmRSS` − `VmRSS` before any client) / clients.
    pub rss_per_client: f64,
    /// Machine-wide kernel slab growth / clients: both sockets of a client connection
    /// (the client's and the proxy's end) plus their files and epoll entries. Noisy when
    /// other work runs.
    pub kernel_slab_per_connection_pair: f64,
    /// Proxy CPU over the idle window with these clients connected (% of a core); only
    /// for the largest count.
    pub idle_cpu_percent: Option<f64>,
}

/// Everything measured for one proxy.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SideReport {
    /// `candidate` or `reference`.
    pub label: String,
    /// Binary path.
    pub binary: String,
    /// Start-up timing: the median over the trials.
    pub startup: Startup,
    /// Every start-up trial.
    pub startup_trials: Vec<Startup>,
    /// Proxy `VmRSS` once ready, before any client (bytes).
    pub rss_ready: u64,
    /// Idle CPU with no client (% of a core).
    pub idle_cpu_percent: f64,
    /// Memory per idle client at each count.
    pub idle: Vec<IdleMemory>,
    /// Latency at light load.
    pub latency: LatencyResult,
    /// Bulk echo.
    pub echo: BulkResult,
    /// Upload only.
    pub upload: BulkResult,
    /// Download only.
    pub download: BulkResult,
    /// New connections per second.
    pub conn_rate: ConnRateResult,
    /// Bulk echo MB/s as a fraction of the crypto floor.
    pub echo_floor_fraction: f64,
}

/// The crypto floor on the proxy's core.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Floor {
    /// AES-256-CTR, MB/s (16 KiB blocks, CPU time).
    pub ctr_mb_s: f64,
    /// AES-256-CBC encrypt, MB/s.
    pub cbc_encrypt_mb_s: f64,
    /// AES-256-CBC decrypt, MB/s.
    pub cbc_decrypt_mb_s: f64,
    /// `1 / (2/ctr + 1/cbc_enc + 1/cbc_dec)`: echo MB/s if a core did nothing but crypto.
    pub echo_mb_s: f64,
}

impl Floor {
    /// The echo floor of the three cipher speeds.
    pub fn echo_of(ctr: f64, cbc_enc: f64, cbc_dec: f64) -> f64 {
        if ctr <= 0.0 || cbc_enc <= 0.0 || cbc_dec <= 0.0 {
            return 0.0;
        }
        1.0 / (2.0 / ctr + 1.0 / cbc_enc + 1.0 / cbc_dec)
    }
}

/// What one side measured in an unpinned deployment (`default`, `workers2`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DeploymentSide {
    /// Round trips at light load (the pinned phase's clients and rate).
    pub latency_light: LatencyResult,
    /// Round trips at about half load (see [`DeploymentRun::half_rate`]).
    pub latency_half: LatencyResult,
    /// Bulk echo.
    pub echo: BulkResult,
    /// New connections per second.
    pub conn_rate: ConnRateResult,
}

/// One unpinned deployment in one run: both sides.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DeploymentRun {
    /// `default` or `workers2`.
    pub name: String,
    /// `-M` of both sides (0: none).
    pub workers: u32,
    /// Closed-loop round trips per second the reference reached in this deployment (16
    /// clients, one 256-byte request outstanding each): its capacity for small packets.
    pub reference_capacity_per_s: f64,
    /// The half-load rate offered to both sides: half that capacity.
    pub half_rate: f64,
    /// This port.
    pub candidate: DeploymentSide,
    /// The C build (or the candidate again in self mode).
    pub reference: DeploymentSide,
}

/// One run: both sides and their ratios.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunReport {
    /// 0-based run index.
    pub index: usize,
    /// Which side ran first.
    pub first: String,
    /// Load average (1 min) at the start and end of the run: other work on the machine.
    pub loadavg: (f64, f64),
    /// CPU time the hypervisor took from this machine during the run (`steal` of
    /// `/proc/stat`), in % of all CPUs: above a few % the latency figures of the run
    /// measure the host, not the proxies.
    #[serde(default)]
    pub steal_percent: f64,
    /// This port.
    pub candidate: SideReport,
    /// The C build (or the candidate again in self mode).
    pub reference: SideReport,
    /// The unpinned deployments.
    #[serde(default)]
    pub deployments: Vec<DeploymentRun>,
    /// candidate / reference per metric (see [`ratios`](super::ratios::ratios) and
    /// [`deployment_ratios`](super::ratios::deployment_ratios)).
    pub ratios: Vec<Ratio>,
}

/// One candidate/reference ratio.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Ratio {
    /// Metric name.
    pub metric: String,
    /// Candidate value.
    pub candidate: f64,
    /// Reference value.
    pub reference: f64,
    /// candidate / reference (0 when the reference is 0).
    pub ratio: f64,
    /// Whether a higher value is better.
    pub higher_is_better: bool,
}

/// The spread of one ratio over the runs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Spread {
    /// Metric name.
    pub metric: String,
    /// Median ratio.
    pub median: f64,
    /// Smallest ratio.
    pub min: f64,
    /// Largest ratio.
    pub max: f64,
    /// Median candidate value.
    pub candidate_median: f64,
    /// Median reference value.
    pub reference_median: f64,
}

/// One performance goal of issue #6 (required, measured, bound, met) and whether the
/// medians meet it. The report calls these `targets` (see [`Report::goals`]).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Goal {
    /// What is required.
    #[serde(rename = "target")]
    pub name: String,
    /// The measured value (median over runs).
    pub value: f64,
    /// The bound.
    pub bound: f64,
    /// Whether it holds.
    pub met: bool,
    /// By how much it is missed, as a fraction of the bound (0 when met).
    pub missed_by: f64,
    /// For a miss: why, from what the run measured (empty when met or unknown).
    #[serde(default)]
    pub why: String,
}

/// The machine the figures come from.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Machine {
    /// CPU model.
    pub cpu: String,
    /// Online CPUs.
    pub cpus: usize,
    /// Kernel release.
    pub kernel: String,
    /// RAM (bytes).
    pub memory: u64,
    /// Whether the CPU has AES-NI / VAES (from `/proc/cpuinfo`).
    pub aes_ni: bool,
    /// VAES.
    pub vaes: bool,
    /// `RLIMIT_NOFILE` (soft, hard) of the load generator after raising.
    pub nofile: (u64, u64),
    /// `openssl version`.
    pub openssl: String,
}

/// The whole report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// [`SCHEMA`].
    pub schema: String,
    /// When it was made (UTC).
    pub generated: String,
    /// Whether the reference is the candidate itself.
    pub self_mode: bool,
    /// The machine.
    pub machine: Machine,
    /// The crypto floor.
    pub floor: Floor,
    /// Phase sizes.
    pub plan: Plan,
    /// Every run.
    pub runs: Vec<RunReport>,
    /// Ratio spreads over the runs.
    pub spreads: Vec<Spread>,
    /// The goals, judged on the medians (`targets` in the JSON).
    #[serde(rename = "targets")]
    pub goals: Vec<Goal>,
}

impl Report {
    /// The goals missed.
    pub fn missed(&self) -> Vec<&Goal> {
        self.goals.iter().filter(|t| !t.met).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Rust names changed (`Goal`, `name`), the report's JSON did not.
    #[test]
    fn a_goal_keeps_its_json_field_names() {
        let goal = Goal {
            name: "p99 latency <= C".into(),
            value: 0.9,
            bound: 1.0,
            met: true,
            missed_by: 0.0,
            why: String::new(),
        };
        let json = serde_json::to_value(&goal).expect("serialize");
        assert_eq!(json["target"], "p99 latency <= C");
        assert!(json.get("name").is_none(), "{json}");
        let back: Goal = serde_json::from_value(json).expect("deserialize");
        assert_eq!(back, goal);
    }
}
