//! The cutover and rollback rehearsal (`cargo xtask cutover`): switching a live service
//! from the C build to the port, back, and from the port to a new port binary, with
//! traffic flowing all along, and numbers for every switch.
//!
//! Traffic (see `Traffic`), per service (obfuscated2 clients of the three transports on
//! one instance; fake-TLS clients on a `-D` instance, as `-D` serves nothing else):
//! long-lived clients making a round trip every 100 ms for a planned life (a few of them,
//! "marathons", for ever), and a steady rate of new connections making one round trip.
//!
//! Steps:
//! * `cutover_c_to_port`, `rollback_port_to_c`: the way an operator can switch around the
//!   C build, which cannot hand its socket over: both run, on their own ports, in a private
//!   network namespace this rehearsal creates; an nftables DNAT rule sends new connections
//!   for the service port to the old one. The switch replaces the rule atomically;
//!   connection tracking keeps established flows on the old process, which is stopped once
//!   its clients are gone or the drain deadline passed.
//! * `naive_c_to_port`: the baseline (reported, not gated): stop C, start the port.
//! * `upgrade_port`, `upgrade_port_workers`: the port's own zero-downtime upgrade
//!   (`--handover-socket`, see the proxy's `handover` module), without and with `-M 2`.
//!
//! Without a C build the candidate plays the reference too, and the report says so.
//! Without root (no namespace, no nftables) the DNAT steps are skipped, and the report
//! says so; the rest runs on the host's loopback.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use mtproxy::protocol::fake_tls::HelloShape;
use mtproxy::protocol::transport::Transport;
use nix::sys::signal::Signal;
use parity::client::{encrypted_message, ClientConfig, SimClient, SimError};
use parity::fake_me::FakeMe;
use parity::process::{free_port, ProxyProcess};
use parity::site::DomainServer;
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::setup::Scale;

/// The report's schema version.
pub const SCHEMA_VERSION: &str = "1.0.0";
/// The report's file name.
pub const REPORT_JSON: &str = "cutover-report.json";
/// The picture's file name.
pub const REPORT_SVG: &str = "cutover.svg";
/// The Markdown summary's file name ([`CutoverReport::to_markdown`]).
pub const REPORT_MD: &str = "cutover-report.md";
/// Every step, in the order they run.
pub const STEPS: &[&str] = &[
    "naive_c_to_port",
    "cutover_c_to_port",
    "rollback_port_to_c",
    "upgrade_port",
    "upgrade_port_workers",
];

const SECRET: [u8; 16] = [0x6c; 16];
const PLATFORM: &str = "linux/amd64";
/// Marks the reference "binary" that is an image (container rehearsal).
const IMAGE_PREFIX: &str = "image:";
const LINKS: usize = 4;
const READY: Duration = Duration::from_secs(25);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
const LONG_INTERVAL: Duration = Duration::from_millis(100);
/// Buckets of the report's time series.
const BUCKET_MS: f64 = 250.0;

/// How the rehearsal runs.
#[derive(Debug, Clone)]
pub struct CutoverOptions {
    /// The port's binary.
    pub candidate: PathBuf,
    /// The C build; `None`: the candidate plays the reference.
    pub reference: Option<PathBuf>,
    /// Tiny (tests), quick (`--quick`) or full.
    pub scale: Scale,
    /// Only these steps (empty: all).
    pub only: Vec<String>,
    /// Where the report goes.
    pub out_dir: PathBuf,
    /// Extra environment for every candidate process (tests plant regressions with it).
    pub candidate_env: Vec<(String, String)>,
    /// Try a private network namespace (needs root); `false` runs on the host's loopback.
    pub isolate: bool,
    /// Run the proxies as linux/amd64 containers (host networking) from these images
    /// instead of local processes. Containers live in the host's network namespace, so the
    /// DNAT steps are skipped then.
    pub images: Option<CutoverImages>,
}

/// The images of a container rehearsal.
#[derive(Debug, Clone)]
pub struct CutoverImages {
    /// The candidate image (also the "new binary" of the upgrade steps).
    pub candidate: String,
    /// The reference image; `None`: the candidate image plays the reference.
    pub reference: Option<String>,
}

/// The timings of one scale.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Timing {
    /// Traffic before the switch, ms.
    pub warm_ms: u64,
    /// The drain deadline (`--drain-timeout`, and how long an operator waits for C), ms.
    pub drain_ms: u64,
    /// Traffic after the old process exited, ms.
    pub after_ms: u64,
    /// New connections per second per service.
    pub new_per_second: f64,
    /// Long-lived client slots per service.
    pub long_slots: usize,
    /// The shortest and longest planned life of a long-lived client, ms.
    pub life_ms: (u64, u64),
    /// Clients per service that never leave by themselves (cut at the deadline).
    pub marathons: usize,
}

impl Timing {
    /// The timings for `scale`.
    pub fn for_scale(scale: Scale) -> Self {
        match scale {
            Scale::Tiny => Timing {
                warm_ms: 1200,
                drain_ms: 2500,
                after_ms: 800,
                new_per_second: 15.0,
                long_slots: 3,
                life_ms: (300, 1500),
                marathons: 1,
            },
            Scale::Quick => Timing {
                warm_ms: 3000,
                drain_ms: 5000,
                after_ms: 2000,
                new_per_second: 30.0,
                long_slots: 8,
                life_ms: (500, 3500),
                marathons: 1,
            },
            Scale::Full => Timing {
                warm_ms: 10_000,
                drain_ms: 15_000,
                after_ms: 5000,
                new_per_second: 60.0,
                long_slots: 24,
                life_ms: (1000, 10_000),
                marathons: 2,
            },
        }
    }
}

// ---------------------------------------------------------------------------------------
// The report.

/// The whole report (`artifacts/cutover/cutover-report.json`; schema in `schema.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CutoverReport {
    /// [`SCHEMA_VERSION`].
    pub schema_version: String,
    /// RFC 3339, UTC.
    pub generated_at: String,
    /// The machine.
    pub host: parity::report::HostInfo,
    /// `tiny`, `quick` or `full`.
    pub scale: Scale,
    /// The timings used.
    pub timing: Timing,
    /// The port (a path, or an image under the docker runtime).
    pub candidate: String,
    /// The C build, or `null` when the candidate played the reference.
    pub reference: Option<String>,
    /// `local` (processes) or `docker` (containers).
    pub runtime: String,
    /// Under docker: the containers' platform.
    pub platform: Option<String>,
    /// Under docker: the image ids, by role (`candidate`, `reference`).
    pub images: BTreeMap<String, String>,
    /// `reference` (a C build ran) or `self` (the candidate played both roles).
    pub mode: String,
    /// Whether the rehearsal ran in a private network namespace (kernel counters are the
    /// rehearsal's own) or on the host's loopback.
    pub isolated: bool,
    /// Notes for the reader.
    pub notes: Vec<String>,
    /// Every step.
    pub steps: Vec<Step>,
    /// `FAIL` (a gated criterion failed), `PARTIAL` (nothing failed, but steps were
    /// skipped: not a full rehearsal) or `PASS`.
    pub verdict: String,
    /// `step: criterion` of each failed criterion.
    pub failures: Vec<String>,
}

impl CutoverReport {
    /// 1 when a gated criterion failed, else 0.
    pub fn exit_code(&self) -> i32 {
        i32::from(!self.failures.is_empty())
    }

    /// A plain-text table for the terminal.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{:<22} {:<6} {:>9} {:>9} {:>8} {:>8} {:>7} {:>9} {:>9}\n",
            "step",
            "result",
            "accept+ms",
            "exit+ms",
            "est.cut",
            "refused",
            "lost",
            "p99_ms",
            "served"
        );
        for s in &self.steps {
            let Some(m) = &s.metrics else {
                out.push_str(&format!(
                    "{:<22} {:<6} {}\n",
                    s.name,
                    s.result,
                    s.skip_reason.as_deref().unwrap_or("")
                ));
                continue;
            };
            let served: Vec<String> = m
                .served_by
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            out.push_str(&format!(
                "{:<22} {:<6} {:>9} {:>9} {:>8} {:>8} {:>7} {:>9} {}\n",
                s.name,
                s.result,
                m.timeline
                    .first_accept_new_ms
                    .map_or("-".into(), |v| format!("{:.0}", v - m.timeline.trigger_ms)),
                m.timeline
                    .old_exit_ms
                    .map_or("-".into(), |v| format!("{:.0}", v - m.timeline.trigger_ms)),
                m.established.reset + m.established.truncated + m.established.errors,
                m.new_connections.refused,
                m.requests.lost,
                format!("{:.1}", m.connect_latency_ms.during.p99),
                served.join(" ")
            ));
        }
        out.push_str(&format!("verdict: {}", self.verdict));
        if self.verdict == "PARTIAL" {
            out.push_str(" — steps were SKIPPED (see above): this is not a full rehearsal");
        }
        for f in &self.failures {
            out.push_str(&format!("\n  FAIL {f}"));
        }
        out
    }

    /// The steps that were skipped, with the reason.
    pub fn skipped_steps(&self) -> Vec<(&str, &str)> {
        self.steps
            .iter()
            .filter(|s| s.result == "SKIP")
            .map(|s| (s.name.as_str(), s.skip_reason.as_deref().unwrap_or("")))
            .collect()
    }

    /// The Markdown summary (`cutover-report.md`, fit for a CI job summary): the verdict,
    /// the binaries, the mode and the network, every step with its main numbers, the
    /// failed criteria and the skipped steps with their reasons.
    pub fn to_markdown(&self) -> String {
        use parity::report::{md_cell, md_code};
        use std::fmt::Write as _;
        let mut s = String::new();
        let self_mode = self.mode == "self";
        let _ = writeln!(
            s,
            "# Cutover rehearsal: {}{}\n",
            self.verdict,
            if self_mode { " — no reference" } else { "" }
        );
        if self_mode {
            s.push_str(
                "> **No reference mode.** No C build was given (`--reference PATH` or \
                 `MTPROXY_C_BIN`): the candidate played the C build's role too, so no switch \
                 from or back to C was rehearsed.\n\n",
            );
        }
        if self.verdict == "PARTIAL" {
            s.push_str(
                "> **Not a full rehearsal.** Nothing failed, but steps were skipped (see below).\n\n",
            );
        }
        let gated = self.steps.iter().filter(|st| st.gated).count();
        let _ = writeln!(
            s,
            "- **Verdict:** {} — {} ({} gated): {} PASS, {} FAIL, {} SKIP, {} INFO (not gated)",
            self.verdict,
            parity::report::plural(self.steps.len(), "step"),
            gated,
            self.steps.iter().filter(|st| st.result == "PASS").count(),
            self.steps.iter().filter(|st| st.result == "FAIL").count(),
            self.steps.iter().filter(|st| st.result == "SKIP").count(),
            self.steps.iter().filter(|st| st.result == "INFO").count()
        );
        let _ = writeln!(s, "- **Candidate:** {}", md_code(&self.candidate));
        let _ = writeln!(
            s,
            "- **Reference (C):** {}",
            self.reference.as_deref().map_or_else(
                || "none — the candidate played the reference".to_string(),
                md_code
            )
        );
        let mut runtime = self.runtime.clone();
        if let Some(p) = &self.platform {
            runtime.push_str(&format!(", {p}"));
        }
        for (role, id) in &self.images {
            runtime.push_str(&format!(", {role} image {}", md_code(id)));
        }
        let _ = writeln!(
            s,
            "- **Runtime:** {runtime}; {}",
            if self.isolated {
                "a private network namespace (the kernel counters are the rehearsal's own)"
            } else {
                "the host's loopback (no DNAT switch; kernel counters are the host's)"
            }
        );
        let t = &self.timing;
        let _ = writeln!(
            s,
            "- **Scale:** {} — warm {} ms, drain deadline {} ms, after {} ms, {} new connections/s and {} long-lived clients per service",
            match self.scale {
                Scale::Tiny => "tiny",
                Scale::Quick => "quick",
                Scale::Full => "full",
            },
            t.warm_ms,
            t.drain_ms,
            t.after_ms,
            t.new_per_second,
            t.long_slots + t.marathons
        );
        let _ = writeln!(s, "{}", self.host.markdown_line());
        let _ = writeln!(s, "- **Generated:** {}", self.generated_at);

        let errors: Vec<(&str, &str)> = self
            .steps
            .iter()
            .filter(|st| st.result != "SKIP")
            .filter_map(|st| Some((st.name.as_str(), st.skip_reason.as_deref()?)))
            .collect();
        if !self.failures.is_empty() || !errors.is_empty() {
            s.push_str("\n## Failures\n\n");
            // A step that errored fails its `ran` criterion: its error says more.
            for f in self.failures.iter().filter(|f| {
                !errors
                    .iter()
                    .any(|(name, _)| f.starts_with(&format!("{name}: ran (")))
            }) {
                let _ = writeln!(s, "- {}", md_cell(f));
            }
            for (name, why) in &errors {
                let _ = writeln!(s, "- {}: {}", md_code(name), md_cell(why));
            }
        }
        let skipped = self.skipped_steps();
        if !skipped.is_empty() {
            s.push_str("\n## Skipped steps\n\n");
            for (name, why) in skipped {
                let _ = writeln!(s, "- {}: {}", md_code(name), md_cell(why));
            }
        }

        s.push_str(
            "\n## Steps\n\n\
             | Step | From → to | Result | New accepts (ms after trigger) | Old exits (ms after trigger) | Established cut before the deadline | Cut at the deadline | New connections served during the switch | Refused | Lost round trips | Connect p99 before → during (ms) |\n\
             |---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        for st in &self.steps {
            let result = match st.result.as_str() {
                "FAIL" => "**FAIL**".to_string(),
                "INFO" => "INFO (not gated)".to_string(),
                r => r.to_string(),
            };
            let head = format!(
                "| {} | {} → {} | {result} |",
                md_code(&st.name),
                st.from,
                st.to
            );
            let Some(m) = &st.metrics else {
                let _ = writeln!(s, "{head} — | — | — | — | — | — | — | — |");
                continue;
            };
            let after = |v: Option<f64>| {
                v.map_or_else(
                    || "—".to_string(),
                    |v| format!("{:.0}", v - m.timeline.trigger_ms),
                )
            };
            let e = &m.established;
            let n = &m.new_connections;
            let _ = writeln!(
                s,
                "{head} {} | {} | {} of {} | {} | {} of {} | {} | {} of {} | {:.1} → {:.1} |",
                after(m.timeline.first_accept_new_ms),
                after(m.timeline.old_exit_ms),
                e.reset + e.truncated + e.errors,
                e.total,
                e.cut_at_deadline,
                n.ok,
                n.attempted,
                n.refused,
                m.requests.lost,
                m.requests.sent,
                m.connect_latency_ms.before.p99,
                m.connect_latency_ms.during.p99
            );
        }
        if !self.notes.is_empty() {
            s.push_str("\n## Notes\n\n");
            for n in &self.notes {
                let _ = writeln!(s, "- {}", md_cell(n));
            }
        }
        s
    }
}

/// One step.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Step {
    /// One of [`STEPS`].
    pub name: String,
    /// What it does.
    pub description: String,
    /// The old process's role (`reference` or `candidate`) and the new one's.
    pub from: String,
    /// See `from`.
    pub to: String,
    /// Whether its criteria gate the exit status (the naive baseline is not gated).
    pub gated: bool,
    /// `PASS`, `FAIL`, `INFO` (not gated) or `SKIP`.
    pub result: String,
    /// Why it was skipped.
    pub skip_reason: Option<String>,
    /// The measurements (absent when skipped).
    pub metrics: Option<Metrics>,
    /// Each criterion with its threshold.
    pub criteria: Vec<Criterion>,
}

/// One criterion and its verdict.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Criterion {
    /// Short name, e.g. `new_refused`.
    pub name: String,
    /// The rule, e.g. `== 0`.
    pub threshold: String,
    /// The measured value.
    pub value: f64,
    /// `true`/`false`; `null` when it could not be judged (e.g. kernel counters on a
    /// shared host).
    pub pass: Option<bool>,
}

/// The measurements of one step. Times are ms since the traffic started.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Metrics {
    /// The timeline.
    pub timeline: Timeline,
    /// Connections established before the trigger.
    pub established: Established,
    /// Connections opened from the trigger until the switch was over.
    pub new_connections: NewConns,
    /// New connections opened before the trigger (the control window).
    pub new_connections_before: NewConns,
    /// Every round trip of the step.
    pub requests: Requests,
    /// Connect latency before the trigger and during the switch.
    pub connect_latency_ms: Latency,
    /// The kernel's counters over the switch.
    pub kernel: Kernel,
    /// Connections served, by process role (`old`, `new`); `unknown`: no request reached
    /// a middle end.
    pub served_by: BTreeMap<String, u64>,
    /// Per bucket of 250 ms: connections opened that each process served, and failures.
    pub series: Vec<Bucket>,
}

/// The timeline of a switch.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Timeline {
    /// The trigger (rule switched, old stopped, or new binary started).
    pub trigger_ms: f64,
    /// The first connection the new process served (by connect time).
    pub first_accept_new_ms: Option<f64>,
    /// The last connection the old process served (by connect time).
    pub old_last_accept_ms: Option<f64>,
    /// When the old process exited.
    pub old_exit_ms: Option<f64>,
    /// The end of the switch window (the old exit, or the new one ready for the naive
    /// baseline).
    pub switch_end_ms: f64,
}

/// What became of the connections established before the trigger.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Established {
    /// Open at the trigger.
    pub total: u64,
    /// Ended as the client planned (or were still open when the traffic stopped).
    pub completed: u64,
    /// Closed by the proxy (EOF or RST) before the drain deadline.
    pub reset: u64,
    /// An answer arrived garbled before the drain deadline.
    pub truncated: u64,
    /// Closed at or after the drain deadline (the old process's end).
    pub cut_at_deadline: u64,
    /// Other errors (timeouts, …) before the deadline.
    pub errors: u64,
}

/// New connections of a window.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NewConns {
    /// Attempted.
    pub attempted: u64,
    /// Served (connected and answered).
    pub ok: u64,
    /// Refused (RST to the SYN).
    pub refused: u64,
    /// Closed by the proxy before the answer.
    pub reset: u64,
    /// No connection or no answer in time.
    pub timed_out: u64,
    /// Anything else.
    pub errors: u64,
}

/// Round trips.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Requests {
    /// Sent.
    pub sent: u64,
    /// Answered with the echo.
    pub answered: u64,
    /// Sent and never answered, before the drain deadline.
    pub lost: u64,
    /// Unanswered because the connection was cut at the drain deadline.
    pub lost_at_deadline: u64,
    /// Answered with something else than the echo.
    pub corrupted: u64,
}

/// Connect latency (TCP connect + obfuscated2 header or TLS handshake), ms.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Latency {
    /// Before the trigger.
    pub before: Percentiles,
    /// From the trigger to the end of the switch.
    pub during: Percentiles,
}

/// p50/p99/max of a sample.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Percentiles {
    /// Samples.
    pub n: u64,
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Maximum.
    pub max: f64,
}

/// The kernel's TCP counters over the switch (`/proc/net/netstat`, TcpExt).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Kernel {
    /// Whether these are the rehearsal's own (private namespace) or the host's.
    pub isolated: bool,
    /// `TCPSynRetrans`.
    pub syn_retrans: u64,
    /// `ListenDrops`.
    pub listen_drops: u64,
    /// `ListenOverflows`.
    pub listen_overflows: u64,
}

/// One bucket of the time series.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Bucket {
    /// Bucket start, ms.
    pub t_ms: f64,
    /// Connections opened in it that the old process served.
    pub old: u64,
    /// … that the new process served.
    pub new: u64,
    /// Failures (a connection or round trip that failed before the drain deadline).
    pub errors: u64,
    /// Connections cut at or after the drain deadline (the old process's end).
    pub cut: u64,
    /// Connections open at some time in the bucket that the old process served.
    pub open_old: u64,
    /// … that the new process served.
    pub open_new: u64,
}

// ---------------------------------------------------------------------------------------
// Traffic.

/// How a client connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Completed,
    Refused,
    Reset,
    Corrupted,
    TimedOut,
    Error,
}

#[derive(Debug, Clone)]
struct Conn {
    long: bool,
    start: f64,
    connected: Option<f64>,
    end_at: f64,
    end: End,
    local: Option<SocketAddr>,
    sent: u64,
    answered: u64,
    corrupted: u64,
}

/// One service the traffic goes to.
#[derive(Debug, Clone)]
struct Dest {
    addr: SocketAddr,
    /// `Some(domain)`: fake-TLS clients.
    domain: Option<String>,
}

/// The client side: long-lived clients and a steady rate of new connections.
struct Traffic {
    t0: Instant,
    /// `t0` as a std instant (the middle ends time their records with it).
    t0_std: std::time::Instant,
    conns: Arc<Mutex<Vec<Conn>>>,
    /// Long-lived connections open now: slot → when it connected.
    open: Arc<Mutex<BTreeMap<usize, f64>>>,
    stop: CancellationToken,
    tasks: tokio::task::JoinSet<()>,
}

fn ms_since(t0: Instant) -> f64 {
    t0.elapsed().as_secs_f64() * 1000.0
}

fn classify(e: &SimError) -> End {
    match e {
        SimError::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => End::Refused,
        SimError::Closed => End::Reset,
        SimError::Timeout(_) => End::TimedOut,
        SimError::Transport(_) | SimError::Record(_) | SimError::Unexpected(_) => End::Corrupted,
        _ => End::Error,
    }
}

fn client_cfg(dest: &Dest, seed: u64) -> ClientConfig {
    let cfg = ClientConfig::new(
        [
            Transport::Intermediate,
            Transport::Abridged,
            Transport::PaddedIntermediate,
        ][(seed % 3) as usize],
    )
    .secret(SECRET)
    .dc(2)
    .seed(seed)
    .timeout(ANSWER_TIMEOUT);
    match &dest.domain {
        Some(d) => cfg.fake_tls(
            d.clone(),
            if seed.is_multiple_of(2) {
                HelloShape::LongTdlib
            } else {
                HelloShape::Chrome
            },
        ),
        None => cfg,
    }
}

async fn connect(dest: &Dest, seed: u64, t0: Instant, c: &mut Conn) -> Option<SimClient> {
    match tokio::time::timeout(
        CONNECT_TIMEOUT,
        SimClient::connect(dest.addr, client_cfg(dest, seed)),
    )
    .await
    {
        Ok(Ok(client)) => {
            c.connected = Some(ms_since(t0));
            c.local = client.local_addr().ok();
            Some(client)
        }
        Ok(Err(e)) => {
            c.end = classify(&e);
            None
        }
        Err(_) => {
            c.end = End::TimedOut;
            None
        }
    }
}

/// One round trip; `Err(end)` when the connection is over.
async fn round_trip(client: &mut SimClient, rng: &mut StdRng, c: &mut Conn) -> Result<(), End> {
    let len = 32 + 16 * rng.gen_range(0..8usize);
    let p = encrypted_message(rng, len);
    c.sent += 1;
    match tokio::time::timeout(ANSWER_TIMEOUT, client.request(&p, false)).await {
        Ok(Ok(ex)) if ex.answer[..] == p[..] => {
            c.answered += 1;
            Ok(())
        }
        Ok(Ok(_)) => {
            c.corrupted += 1;
            Err(End::Corrupted)
        }
        Ok(Err(e)) => Err(classify(&e)),
        Err(_) => Err(End::TimedOut),
    }
}

impl Traffic {
    fn start(dests: &[Dest], timing: &Timing, seed: u64) -> Traffic {
        let t0 = Instant::now();
        let t0_std = t0.into_std();
        let conns: Arc<Mutex<Vec<Conn>>> = Arc::default();
        let open: Arc<Mutex<BTreeMap<usize, f64>>> = Arc::default();
        let stop = CancellationToken::new();
        let mut tasks = tokio::task::JoinSet::new();
        for (di, dest) in dests.iter().enumerate() {
            let base = seed + (di as u64) * 1_000_000;
            // The steady rate of new connections.
            {
                let (dest, conns, stop) = (dest.clone(), conns.clone(), stop.clone());
                let every = Duration::from_secs_f64(1.0 / timing.new_per_second.max(0.1));
                tasks.spawn(async move {
                    let mut tick = tokio::time::interval(every);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    let mut inner = tokio::task::JoinSet::new();
                    let mut n = 0u64;
                    loop {
                        tokio::select! {
                            () = stop.cancelled() => break,
                            _ = tick.tick() => {}
                        }
                        n += 1;
                        let (dest, conns) = (dest.clone(), conns.clone());
                        let seed = base + n;
                        inner.spawn(async move {
                            let mut c = Conn {
                                long: false,
                                start: ms_since(t0),
                                connected: None,
                                end_at: 0.0,
                                end: End::Completed,
                                local: None,
                                sent: 0,
                                answered: 0,
                                corrupted: 0,
                            };
                            let mut rng = StdRng::seed_from_u64(seed);
                            if let Some(mut client) = connect(&dest, seed, t0, &mut c).await {
                                if let Err(e) = round_trip(&mut client, &mut rng, &mut c).await {
                                    c.end = e;
                                }
                                client.close().await;
                            }
                            c.end_at = ms_since(t0);
                            lock(&conns).push(c);
                        });
                        while inner.try_join_next().is_some() {}
                    }
                    while inner.join_next().await.is_some() {}
                });
            }
            // Long-lived clients (and the marathons, which never leave by themselves).
            for slot in 0..timing.long_slots + timing.marathons {
                let (dest, conns, stop, open) =
                    (dest.clone(), conns.clone(), stop.clone(), open.clone());
                let key = di * 10_000 + slot;
                let marathon = slot >= timing.long_slots;
                let life = timing.life_ms;
                tasks.spawn(async move {
                    let mut rng = StdRng::seed_from_u64(base + 500_000 + slot as u64);
                    // Stagger the slots.
                    let stagger = rng.gen_range(0..=life.0.max(1));
                    tokio::time::sleep(Duration::from_millis(stagger)).await;
                    let mut k = 0u64;
                    while !stop.is_cancelled() {
                        k += 1;
                        let seed = base + 600_000 + slot as u64 * 10_000 + k;
                        let mut c = Conn {
                            long: true,
                            start: ms_since(t0),
                            connected: None,
                            end_at: 0.0,
                            end: End::Completed,
                            local: None,
                            sent: 0,
                            answered: 0,
                            corrupted: 0,
                        };
                        let planned = if marathon {
                            None
                        } else {
                            Some(Duration::from_millis(rng.gen_range(life.0..=life.1)))
                        };
                        let opened = Instant::now();
                        if let Some(mut client) = connect(&dest, seed, t0, &mut c).await {
                            lock(&open).insert(key, c.connected.unwrap_or(0.0));
                            loop {
                                if let Err(e) = round_trip(&mut client, &mut rng, &mut c).await {
                                    c.end = e;
                                    break;
                                }
                                if planned.is_some_and(|p| opened.elapsed() >= p) {
                                    break;
                                }
                                tokio::select! {
                                    () = stop.cancelled() => break,
                                    () = tokio::time::sleep(LONG_INTERVAL) => {}
                                }
                            }
                            if c.end == End::Completed {
                                client.close().await;
                            }
                            lock(&open).remove(&key);
                        } else {
                            tokio::time::sleep(LONG_INTERVAL).await;
                        }
                        c.end_at = ms_since(t0);
                        lock(&conns).push(c);
                    }
                });
            }
        }
        Traffic {
            t0,
            t0_std,
            conns,
            open,
            stop,
            tasks,
        }
    }

    fn now(&self) -> f64 {
        ms_since(self.t0)
    }

    /// Long-lived connections still open that connected before `t`.
    fn open_long_since(&self, t: f64) -> usize {
        lock(&self.open).values().filter(|c| **c < t).count()
    }

    async fn finish(mut self) -> (Vec<Conn>, std::time::Instant) {
        self.stop.cancel();
        while self.tasks.join_next().await.is_some() {}
        let v = lock(&self.conns).clone();
        (v, self.t0_std)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

// ---------------------------------------------------------------------------------------
// Instances.

/// One proxy process of a role, for one service, with its own middle end (so the
/// middle end tells which process served a client).
struct Proc {
    proxy: ProxyProcess,
    me: FakeMe,
}

/// A role's processes, one per service.
struct Instance {
    procs: Vec<Proc>,
}

/// What the services are (one obfuscated2 instance; one `-D` instance when a stand-in
/// site can listen on port 443).
struct Services {
    domain: Option<String>,
    _site: Option<DomainServer>,
}

impl Services {
    fn count(&self) -> usize {
        1 + usize::from(self.domain.is_some())
    }
}

struct Spawn<'a> {
    binary: &'a Path,
    /// Run this image (the binary inside it) instead of `binary`.
    image: Option<&'a str>,
    label: &'a str,
    env: &'a [(String, String)],
    ports: &'a [(u16, u16)],
    workers: u32,
    extra: &'a [String],
    handover: Option<&'a Path>,
    wait: bool,
}

async fn start_instance(s: &Spawn<'_>, services: &Services) -> anyhow::Result<Instance> {
    let mut procs = Vec::new();
    for i in 0..services.count() {
        let mut proxy_secret = vec![0u8; 128];
        rand::thread_rng().fill_bytes(&mut proxy_secret);
        let me = FakeMe::builder()
            .secret(proxy_secret.clone())
            .spawn()
            .await?;
        let routes: Vec<(i16, SocketAddr)> = (1..=5i16)
            .flat_map(|dc| [(dc, me.addr()), (-dc, me.addr())])
            .collect();
        let mut extra = s.extra.to_vec();
        if i == 1 {
            if let Some(d) = &services.domain {
                extra.extend(["-D".to_string(), d.clone()]);
            }
        }
        if let Some(h) = s.handover {
            extra.extend([
                "--handover-socket".to_string(),
                h.with_extension(format!("{i}.sock")).display().to_string(),
            ]);
        }
        let mut b = match s.image {
            Some(image) => ProxyProcess::builder(parity::runtime::DEFAULT_IMAGE_BINARY).launcher(
                parity::process::Launcher::Docker {
                    image: image.to_string(),
                    platform: PLATFORM.into(),
                },
            ),
            None => ProxyProcess::builder(s.binary),
        };
        b = b
            .label(format!("{}-{i}", s.label))
            .secrets(&[SECRET])
            .me_targets(&routes)
            .default_dc(2)
            .max_connections(4096)
            .proxy_secret(proxy_secret)
            .client_port(s.ports[i].0)
            .stats_port(s.ports[i].1)
            .extra_args(extra);
        if s.workers > 0 {
            b = b.workers(s.workers);
        }
        for (k, v) in s.env {
            b = b.env(k.clone(), v.clone());
        }
        let proxy = b.spawn().await?;
        if s.wait {
            proxy.wait_ready(READY).await?;
            me.wait_handshakes(LINKS * s.workers.max(1) as usize, READY)
                .await
                .with_context(|| proxy.log_tail(20))?;
        }
        procs.push(Proc { proxy, me });
    }
    Ok(Instance { procs })
}

impl Instance {
    /// Client address → when the middle ends got its requests (ms since `t0`).
    fn served(&self, t0: std::time::Instant) -> std::collections::HashMap<SocketAddr, Vec<f64>> {
        let mut out: std::collections::HashMap<SocketAddr, Vec<f64>> = Default::default();
        for p in &self.procs {
            for r in p.me.records() {
                let at = r.received.saturating_duration_since(t0).as_secs_f64() * 1000.0;
                out.entry(r.client).or_default().push(at);
            }
        }
        out
    }

    fn exited(&self) -> bool {
        self.procs.iter().all(|p| p.proxy.exit_info().is_some())
    }

    async fn stop(&self, grace: Duration) {
        for p in &self.procs {
            let _ = p.proxy.stop_with_grace(Signal::SIGTERM, grace).await;
        }
    }

    fn log_tail(&self) -> String {
        self.procs
            .iter()
            .map(|p| p.proxy.log_tail(15))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn ports(n: usize) -> anyhow::Result<Vec<(u16, u16)>> {
    (0..n).map(|_| Ok((free_port()?, free_port()?))).collect()
}

// ---------------------------------------------------------------------------------------
// The network namespace and its NAT.

/// Reads TcpExt counters of this thread's network namespace.
fn netstat() -> BTreeMap<String, u64> {
    let text = std::fs::read_to_string("/proc/thread-self/net/netstat")
        .or_else(|_| std::fs::read_to_string("/proc/net/netstat"))
        .unwrap_or_default();
    let mut out = BTreeMap::new();
    let lines: Vec<&str> = text.lines().collect();
    for pair in lines.chunks(2) {
        if let [names, values] = pair {
            if names.starts_with("TcpExt:") {
                for (k, v) in names
                    .split_whitespace()
                    .zip(values.split_whitespace())
                    .skip(1)
                {
                    out.insert(k.to_string(), v.parse().unwrap_or(0));
                }
            }
        }
    }
    out
}

fn kernel_delta(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
    isolated: bool,
) -> Kernel {
    let d = |k: &str| {
        after
            .get(k)
            .copied()
            .unwrap_or(0)
            .saturating_sub(before.get(k).copied().unwrap_or(0))
    };
    Kernel {
        isolated,
        syn_retrans: d("TCPSynRetrans"),
        listen_drops: d("ListenDrops"),
        listen_overflows: d("ListenOverflows"),
    }
}

/// The DNAT table of the rehearsal's namespace.
const NFT_TABLE: &str = "mtproxy_cutover";

fn nft(script: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut child = std::process::Command::new("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("nft (Debian package nftables)")?;
    child
        .stdin
        .take()
        .context("nft stdin")?
        .write_all(script.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("nft: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// Points each front port at a backend port, in one atomic nftables transaction.
fn point(fronts: &[u16], backends: &[(u16, u16)]) -> anyhow::Result<()> {
    let mut script = format!("flush chain ip {NFT_TABLE} out\n");
    for (f, b) in fronts.iter().zip(backends) {
        script.push_str(&format!(
            "add rule ip {NFT_TABLE} out ip daddr 127.0.0.1 tcp dport {f} dnat to 127.0.0.1:{}\n",
            b.0
        ));
    }
    nft(&script)
}

fn nat_setup() -> anyhow::Result<()> {
    nft(&format!(
        "add table ip {NFT_TABLE}\nadd chain ip {NFT_TABLE} out {{ type nat hook output priority -100; }}\n"
    ))
}

/// Enters a fresh network namespace (this thread only) and brings its loopback up.
fn enter_namespace() -> anyhow::Result<()> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
        .context("unshare(CLONE_NEWNET) (needs root)")?;
    let st = std::process::Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .context("ip (Debian package iproute2)")?;
    if !st.success() {
        bail!("ip link set lo up: {st}");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Running.

/// Runs the rehearsal on a thread of its own (in a private network namespace when it can)
/// and writes the report.
///
/// # Errors
/// When the report cannot be written or the rehearsal cannot start at all.
pub fn run_blocking(opts: CutoverOptions) -> anyhow::Result<CutoverReport> {
    let handle = std::thread::Builder::new()
        .name("cutover".into())
        .spawn(move || {
            let mut notes = Vec::new();
            if opts.images.is_some() && opts.isolate {
                notes.push(
                    "containers run in the host's network namespace (--network host): the DNAT steps are skipped"
                        .into(),
                );
            }
            let isolated = opts.isolate
                && opts.images.is_none()
                && match enter_namespace() {
                    Ok(()) => true,
                    Err(e) => {
                        notes.push(format!(
                            "no private network namespace ({e:#}): the DNAT steps are skipped and kernel counters are the host's"
                        ));
                        false
                    }
                };
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            rt.block_on(run(opts, isolated, notes))
        })?;
    handle
        .join()
        .map_err(|_| anyhow::anyhow!("the rehearsal thread panicked"))?
}

async fn run(
    opts: CutoverOptions,
    isolated: bool,
    mut notes: Vec<String>,
) -> anyhow::Result<CutoverReport> {
    let timing = Timing::for_scale(opts.scale);
    for s in &opts.only {
        if !STEPS.contains(&s.as_str()) {
            bail!("unknown step {s:?}; steps: {}", STEPS.join(", "));
        }
    }
    let reference_image = opts.images.as_ref().and_then(|i| i.reference.clone());
    let reference = match (&reference_image, &opts.reference) {
        (Some(image), _) => PathBuf::from(format!("{IMAGE_PREFIX}{image}")),
        (None, Some(p)) => p.clone(),
        (None, None) => opts.candidate.clone(),
    };
    let self_mode = reference == opts.candidate;
    if self_mode {
        notes.push(
            "no reference: no C build given; the candidate plays the reference role (self mode)"
                .into(),
        );
    }
    let nat = if isolated {
        match nat_setup() {
            Ok(()) => Ok(()),
            Err(e) => Err(format!("nftables unusable: {e:#}")),
        }
    } else if opts.images.is_some() {
        Err("containers run in the host's network namespace: no private namespace for the DNAT switch".to_string())
    } else {
        Err("needs a private network namespace (root) and nftables".to_string())
    };
    // Fake TLS: a stand-in site on :443 (root).
    let root = nix::unistd::Uid::effective().is_root();
    let services = if root {
        let ip = if isolated {
            std::net::Ipv4Addr::new(127, 0, 250, 1)
        } else {
            parity::site::loopback_ip(250)
        };
        let site = DomainServer::start(SocketAddr::from((ip, 443)), &ip.to_string(), true).await?;
        Services {
            domain: Some(ip.to_string()),
            _site: Some(site),
        }
    } else {
        notes.push("not root: no stand-in site on port 443, so no fake-TLS service".into());
        Services {
            domain: None,
            _site: None,
        }
    };
    std::fs::create_dir_all(&opts.out_dir)?;
    let scratch = std::env::temp_dir().join(format!(
        "mtproxy-cutover-{}-{:08x}",
        std::process::id(),
        rand::thread_rng().next_u32()
    ));
    std::fs::create_dir_all(&scratch)?;
    // "A new binary": a copy of the candidate at another path (the same image in containers).
    let new_binary = scratch.join("mtproto-proxy.new");
    if opts.images.is_none() {
        std::fs::copy(&opts.candidate, &new_binary).context("copying the candidate")?;
    }
    let ctx = Ctx {
        opts: &opts,
        reference: &reference,
        new_binary: &new_binary,
        timing,
        services: &services,
        isolated,
        scratch: &scratch,
    };
    let mut steps = Vec::new();
    for (i, name) in STEPS.iter().enumerate() {
        if !opts.only.is_empty() && !opts.only.iter().any(|o| o == name) {
            continue;
        }
        let mut step = describe(name);
        let needs_nat = matches!(*name, "cutover_c_to_port" | "rollback_port_to_c");
        if needs_nat {
            if let Err(why) = &nat {
                step.result = "SKIP".into();
                step.skip_reason = Some(why.clone());
                steps.push(step);
                continue;
            }
        }
        let seed = 1 + i as u64 * 10_000_000;
        let measured = match *name {
            "naive_c_to_port" => ctx.naive(seed).await,
            "cutover_c_to_port" => ctx.dnat(seed, false).await,
            "rollback_port_to_c" => ctx.dnat(seed, true).await,
            "upgrade_port" => ctx.upgrade(seed, 0).await,
            _ => ctx.upgrade(seed, 2).await,
        };
        match measured {
            Ok(m) => {
                step.criteria = criteria(name, &m, timing);
                let failed = step.criteria.iter().any(|c| c.pass == Some(false));
                step.result = if !step.gated {
                    "INFO".into()
                } else if failed {
                    "FAIL".into()
                } else {
                    "PASS".into()
                };
                step.metrics = Some(m);
            }
            Err(e) => {
                step.result = if step.gated { "FAIL" } else { "INFO" }.into();
                step.criteria.push(Criterion {
                    name: "ran".into(),
                    threshold: "the step completes".into(),
                    value: 0.0,
                    pass: Some(false),
                });
                step.skip_reason = Some(format!("error: {e:#}"));
            }
        }
        steps.push(step);
    }
    let _ = std::fs::remove_dir_all(&scratch);
    let failures: Vec<String> = steps
        .iter()
        .filter(|s| s.gated)
        .flat_map(|s| {
            s.criteria
                .iter()
                .filter(|c| c.pass == Some(false))
                .map(move |c| {
                    format!(
                        "{}: {} (value {}, threshold {})",
                        s.name, c.name, c.value, c.threshold
                    )
                })
        })
        .collect();
    let skipped = steps_skipped(&steps);
    let report = CutoverReport {
        schema_version: SCHEMA_VERSION.into(),
        generated_at: mtproxy::clock::rfc3339(std::time::SystemTime::now()),
        host: parity::report::HostInfo::detect(),
        scale: opts.scale,
        timing,
        candidate: match &opts.images {
            Some(i) => i.candidate.clone(),
            None => opts.candidate.display().to_string(),
        },
        reference: (!self_mode).then(|| {
            reference
                .display()
                .to_string()
                .trim_start_matches(IMAGE_PREFIX)
                .to_string()
        }),
        runtime: if opts.images.is_some() {
            "docker"
        } else {
            "local"
        }
        .into(),
        platform: opts.images.as_ref().map(|_| PLATFORM.to_string()),
        images: opts
            .images
            .iter()
            .flat_map(|i| {
                [
                    ("candidate", Some(&i.candidate)),
                    ("reference", i.reference.as_ref()),
                ]
            })
            .filter_map(|(role, image)| Some((role.to_string(), parity::image::image_id(image?)?)))
            .collect(),
        mode: if self_mode { "self" } else { "reference" }.into(),
        isolated,
        notes,
        steps,
        verdict: if !failures.is_empty() {
            "FAIL"
        } else if skipped {
            "PARTIAL"
        } else {
            "PASS"
        }
        .into(),
        failures,
    };
    write(&report, &opts.out_dir)?;
    Ok(report)
}

fn steps_skipped(steps: &[Step]) -> bool {
    steps.iter().any(|s| s.result == "SKIP")
}

fn describe(name: &str) -> Step {
    let (description, from, to, gated) = match name {
        "naive_c_to_port" => ("baseline: SIGTERM the C build, then start the port on the same port", "reference", "candidate", false),
        "cutover_c_to_port" => ("DNAT switch of new connections from C to the port; C keeps its established flows until they leave or the drain deadline, then is stopped", "reference", "candidate", true),
        "rollback_port_to_c" => ("the same switch back: from the port to C", "candidate", "reference", true),
        "upgrade_port" => ("the port's zero-downtime upgrade to a new binary (--handover-socket)", "candidate", "candidate", true),
        _ => ("the port's zero-downtime upgrade with -M 2", "candidate", "candidate", true),
    };
    Step {
        name: name.into(),
        description: description.into(),
        from: from.into(),
        to: to.into(),
        gated,
        result: "SKIP".into(),
        skip_reason: None,
        metrics: None,
        criteria: Vec::new(),
    }
}

struct Ctx<'a> {
    opts: &'a CutoverOptions,
    reference: &'a Path,
    new_binary: &'a Path,
    timing: Timing,
    services: &'a Services,
    isolated: bool,
    scratch: &'a Path,
}

impl Ctx<'_> {
    /// How to start `binary` as `label` on `ports`: its image (under docker) and
    /// environment follow from the binary; no workers, no handover socket, wait for ready.
    fn spawn<'a>(
        &'a self,
        binary: &'a Path,
        label: &'a str,
        ports: &'a [(u16, u16)],
        extra: &'a [String],
    ) -> Spawn<'a> {
        Spawn {
            binary,
            image: self.image_of(binary),
            label,
            env: self.env_of(binary),
            ports,
            workers: 0,
            extra,
            handover: None,
            wait: true,
        }
    }

    /// The image that runs `binary` under the docker runtime.
    fn image_of<'b>(&'b self, binary: &'b Path) -> Option<&'b str> {
        let images = self.opts.images.as_ref()?;
        match binary.to_str().and_then(|b| b.strip_prefix(IMAGE_PREFIX)) {
            Some(image) => Some(image),
            None => Some(images.candidate.as_str()),
        }
    }

    fn env_of(&self, binary: &Path) -> &[(String, String)] {
        if binary == self.reference && binary != self.opts.candidate {
            &[]
        } else {
            &self.opts.candidate_env
        }
    }

    fn dests(&self, ports: &[u16]) -> Vec<Dest> {
        ports
            .iter()
            .enumerate()
            .map(|(i, p)| Dest {
                addr: SocketAddr::from(([127, 0, 0, 1], *p)),
                domain: if i == 1 {
                    self.services.domain.clone()
                } else {
                    None
                },
            })
            .collect()
    }

    fn drain_secs(&self) -> String {
        format!("{:.3}", self.timing.drain_ms as f64 / 1000.0)
    }

    /// The end of every step: the after window, then the measurements; stops the new
    /// process.
    #[allow(clippy::too_many_arguments)]
    async fn conclude(
        &self,
        traffic: Traffic,
        old: &Instance,
        new: &Instance,
        before: &BTreeMap<String, u64>,
        trigger: f64,
        old_exit: f64,
        switch_end: f64,
    ) -> Metrics {
        tokio::time::sleep(Duration::from_millis(self.timing.after_ms)).await;
        let (conns, t0) = traffic.finish().await;
        let kernel = kernel_delta(before, &netstat(), self.isolated);
        let m = measure(
            &conns,
            t0,
            old,
            new,
            trigger,
            Some(old_exit),
            switch_end,
            self.timing,
            kernel,
        );
        new.stop(Duration::from_secs(10)).await;
        m
    }

    /// The naive baseline: stop the old, start the new on the same ports.
    async fn naive(&self, seed: u64) -> anyhow::Result<Metrics> {
        let n = self.services.count();
        let ports = ports(n)?;
        let old = start_instance(
            &self.spawn(self.reference, "old", &ports, &[]),
            self.services,
        )
        .await?;
        let fronts: Vec<u16> = ports.iter().map(|p| p.0).collect();
        let traffic = Traffic::start(&self.dests(&fronts), &self.timing, seed);
        tokio::time::sleep(Duration::from_millis(self.timing.warm_ms)).await;
        let before = netstat();
        let trigger = traffic.now();
        old.stop(Duration::from_millis(self.timing.drain_ms + 5000))
            .await;
        let old_exit = traffic.now();
        let new = start_instance(
            &self.spawn(&self.opts.candidate, "new", &ports, &[]),
            self.services,
        )
        .await?;
        let end = traffic.now();
        Ok(self
            .conclude(traffic, &old, &new, &before, trigger, old_exit, end)
            .await)
    }

    /// DNAT switch from one binary to the other (`back`: candidate → reference).
    async fn dnat(&self, seed: u64, back: bool) -> anyhow::Result<Metrics> {
        let n = self.services.count();
        let (old_bin, new_bin) = if back {
            (self.opts.candidate.as_path(), self.reference)
        } else {
            (self.reference, self.opts.candidate.as_path())
        };
        let drain = self.drain_secs();
        let (old_ports, new_ports) = (ports(n)?, ports(n)?);
        let fronts: Vec<u16> = (0..n).map(|_| free_port()).collect::<anyhow::Result<_>>()?;
        let extra_for = |b: &Path| -> Vec<String> {
            if b == self.opts.candidate.as_path() {
                vec!["--drain-timeout".into(), drain.clone()]
            } else {
                Vec::new()
            }
        };
        let (old_extra, new_extra) = (extra_for(old_bin), extra_for(new_bin));
        let old = start_instance(
            &self.spawn(old_bin, "old", &old_ports, &old_extra),
            self.services,
        )
        .await?;
        let new = start_instance(
            &self.spawn(new_bin, "new", &new_ports, &new_extra),
            self.services,
        )
        .await?;
        point(&fronts, &old_ports)?;
        let traffic = Traffic::start(&self.dests(&fronts), &self.timing, seed);
        tokio::time::sleep(Duration::from_millis(self.timing.warm_ms)).await;
        let before = netstat();
        let trigger = traffic.now();
        point(&fronts, &new_ports)?;
        // The operator waits until the old process's clients are gone or the deadline
        // passes (watching `ss`); here: the established connections the traffic knows of.
        let deadline = trigger + self.timing.drain_ms as f64;
        loop {
            if traffic.now() >= deadline || traffic.open_long_since(trigger) == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        old.stop(Duration::from_secs(10)).await;
        let old_exit = traffic.now();
        Ok(self
            .conclude(traffic, &old, &new, &before, trigger, old_exit, old_exit)
            .await)
    }

    /// The port's upgrade through `--handover-socket`.
    async fn upgrade(&self, seed: u64, workers: u32) -> anyhow::Result<Metrics> {
        let n = self.services.count();
        let ports = ports(n)?;
        let sock = self.scratch.join(format!("handover-{workers}"));
        let extra = vec!["--drain-timeout".to_string(), self.drain_secs()];
        let old = start_instance(
            &Spawn {
                workers,
                handover: Some(&sock),
                ..self.spawn(&self.opts.candidate, "old", &ports, &extra)
            },
            self.services,
        )
        .await?;
        let fronts: Vec<u16> = ports.iter().map(|p| p.0).collect();
        let traffic = Traffic::start(&self.dests(&fronts), &self.timing, seed);
        tokio::time::sleep(Duration::from_millis(self.timing.warm_ms)).await;
        let before = netstat();
        let trigger = traffic.now();
        let new = start_instance(
            &Spawn {
                workers,
                handover: Some(&sock),
                wait: false,
                ..self.spawn(self.new_binary, "new", &ports, &extra)
            },
            self.services,
        )
        .await?;
        let limit = Duration::from_millis(self.timing.drain_ms) + Duration::from_secs(15);
        let waited = Instant::now();
        while !old.exited() {
            if waited.elapsed() > limit {
                bail!(
                    "the old process did not exit within {limit:?}:\n{}\n{}",
                    old.log_tail(),
                    new.log_tail()
                );
            }
            if new.procs.iter().any(|p| p.proxy.exit_info().is_some()) {
                bail!("the new process exited:\n{}", new.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let old_exit = traffic.now();
        Ok(self
            .conclude(traffic, &old, &new, &before, trigger, old_exit, old_exit)
            .await)
    }
}

fn percentiles(mut v: Vec<f64>) -> Percentiles {
    if v.is_empty() {
        return Percentiles::default();
    }
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    let r = |x: f64| (x * 100.0).round() / 100.0;
    Percentiles {
        n: v.len() as u64,
        p50: r(at(0.5)),
        p99: r(at(0.99)),
        max: r(v[v.len() - 1]),
    }
}

#[allow(clippy::too_many_arguments)]
fn measure(
    conns: &[Conn],
    t0: std::time::Instant,
    old: &Instance,
    new: &Instance,
    trigger: f64,
    old_exit: Option<f64>,
    switch_end: f64,
    timing: Timing,
    kernel: Kernel,
) -> Metrics {
    let (on_old, on_new) = (old.served(t0), new.served(t0));
    // A client's local port may be reused by a later client: match by time too.
    let within = |map: &std::collections::HashMap<SocketAddr, Vec<f64>>, c: &Conn| {
        c.local.is_some_and(|a| {
            map.get(&a).is_some_and(|ts| {
                ts.iter()
                    .any(|t| *t >= c.start - 1.0 && *t <= c.end_at + 1.0)
            })
        })
    };
    let who = |c: &Conn| -> &'static str {
        if within(&on_new, c) {
            "new"
        } else if within(&on_old, c) {
            "old"
        } else {
            "unknown"
        }
    };
    let deadline = trigger + timing.drain_ms as f64;
    let mut m = Metrics {
        kernel,
        ..Metrics::default()
    };
    m.timeline.trigger_ms = trigger;
    m.timeline.old_exit_ms = old_exit;
    m.timeline.switch_end_ms = switch_end;
    let mut lat_before = Vec::new();
    let mut lat_during = Vec::new();
    let buckets = (conns.iter().map(|c| c.end_at).fold(0.0, f64::max) / BUCKET_MS) as usize + 1;
    m.series = (0..buckets)
        .map(|i| Bucket {
            t_ms: i as f64 * BUCKET_MS,
            ..Bucket::default()
        })
        .collect();
    for c in conns {
        let w = who(c);
        *m.served_by.entry(w.to_string()).or_default() += 1;
        let b = ((c.start / BUCKET_MS) as usize).min(buckets - 1);
        let last = ((c.end_at / BUCKET_MS) as usize).min(buckets - 1);
        match w {
            "new" => m.series[b].new += 1,
            "old" => m.series[b].old += 1,
            _ => {}
        }
        for bucket in &mut m.series[b..=last.max(b)] {
            match w {
                "new" => bucket.open_new += 1,
                "old" => bucket.open_old += 1,
                _ => {}
            }
        }
        if c.end != End::Completed {
            let eb = ((c.end_at / BUCKET_MS) as usize).min(buckets - 1);
            if c.end_at >= deadline {
                m.series[eb].cut += 1;
            } else {
                m.series[eb].errors += 1;
            }
        }
        if let Some(at) = c.connected {
            if w == "new" {
                m.timeline.first_accept_new_ms = Some(
                    m.timeline
                        .first_accept_new_ms
                        .map_or(at, |f: f64| f.min(at)),
                );
            }
            if w == "old" && !c.long {
                m.timeline.old_last_accept_ms =
                    Some(m.timeline.old_last_accept_ms.map_or(at, |f: f64| f.max(at)));
            }
        }
        // Requests.
        m.requests.sent += c.sent;
        m.requests.answered += c.answered;
        m.requests.corrupted += c.corrupted;
        let unanswered = c.sent.saturating_sub(c.answered + c.corrupted);
        let at_deadline = c.end != End::Completed && c.end_at >= deadline;
        if at_deadline {
            m.requests.lost_at_deadline += unanswered;
        } else {
            m.requests.lost += unanswered;
        }
        if c.long {
            // Established at the trigger: opened before it, still open at it.
            if c.connected.is_some_and(|t| t < trigger) && c.end_at >= trigger {
                let e = &mut m.established;
                e.total += 1;
                match c.end {
                    End::Completed => e.completed += 1,
                    _ if at_deadline => e.cut_at_deadline += 1,
                    End::Reset => e.reset += 1,
                    End::Corrupted => e.truncated += 1,
                    _ => e.errors += 1,
                }
            }
            continue;
        }
        let window = if c.start < trigger {
            Some(&mut m.new_connections_before)
        } else if c.start <= switch_end {
            Some(&mut m.new_connections)
        } else {
            None
        };
        let latency = c.connected.map(|t| t - c.start);
        if c.start < trigger {
            lat_before.extend(latency);
        } else if c.start <= switch_end {
            lat_during.extend(latency);
        }
        if let Some(n) = window {
            n.attempted += 1;
            match c.end {
                End::Completed => n.ok += 1,
                End::Refused => n.refused += 1,
                End::Reset => n.reset += 1,
                End::TimedOut => n.timed_out += 1,
                End::Corrupted | End::Error => n.errors += 1,
            }
        }
    }
    m.connect_latency_ms = Latency {
        before: percentiles(lat_before),
        during: percentiles(lat_during),
    };
    m
}

fn crit(name: &str, threshold: &str, value: f64, pass: Option<bool>) -> Criterion {
    Criterion {
        name: name.into(),
        threshold: threshold.into(),
        value,
        pass,
    }
}

/// The criteria of a step (issue #11's thresholds).
pub fn criteria(step: &str, m: &Metrics, timing: Timing) -> Vec<Criterion> {
    let e = &m.established;
    let n = &m.new_connections;
    let broke = (e.reset + e.truncated + e.errors) as f64;
    let mut out = vec![
        crit(
            "established_cut_before_deadline",
            "== 0",
            broke,
            Some(broke == 0.0),
        ),
        crit(
            "new_refused",
            "== 0",
            n.refused as f64,
            Some(n.refused == 0),
        ),
        crit(
            "corrupted",
            "== 0",
            m.requests.corrupted as f64,
            Some(m.requests.corrupted == 0),
        ),
        crit(
            "served_by_new",
            "> 0 connections",
            m.served_by.get("new").copied().unwrap_or(0) as f64,
            Some(m.served_by.get("new").copied().unwrap_or(0) > 0),
        ),
    ];
    let accept_ms = m
        .timeline
        .first_accept_new_ms
        .map_or(f64::INFINITY, |f| (f - m.timeline.trigger_ms).max(0.0));
    match step {
        "upgrade_port" | "upgrade_port_workers" => {
            let reset = (n.reset + e.reset) as f64;
            out.push(crit(
                "reset",
                "== 0 (new and established)",
                reset,
                Some(reset == 0.0),
            ));
            out.push(crit(
                "lost",
                "== 0",
                m.requests.lost as f64,
                Some(m.requests.lost == 0),
            ));
            out.push(crit(
                "syn_retrans",
                "== 0 (judged in a private namespace only)",
                m.kernel.syn_retrans as f64,
                m.kernel.isolated.then_some(m.kernel.syn_retrans == 0),
            ));
            out.push(crit(
                "connect_p99_ms",
                "< 1000",
                m.connect_latency_ms.during.p99,
                Some(m.connect_latency_ms.during.p99 < 1000.0),
            ));
            out.push(crit(
                "new_accepts_within_ms",
                "< 5000 after the trigger",
                finite(accept_ms),
                Some(accept_ms < 5000.0),
            ));
        }
        "rollback_port_to_c" => {
            out.push(crit(
                "rollback_done_ms",
                "< 5000 (trigger to first accept on C)",
                finite(accept_ms),
                Some(accept_ms < 5000.0),
            ));
        }
        _ => {}
    }
    let _ = timing;
    out
}

fn finite(v: f64) -> f64 {
    if v.is_finite() {
        (v * 10.0).round() / 10.0
    } else {
        -1.0
    }
}

// ---------------------------------------------------------------------------------------
// Output.

fn write(report: &CutoverReport, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(
        dir.join(REPORT_JSON),
        serde_json::to_string_pretty(report)? + "\n",
    )?;
    std::fs::write(dir.join(REPORT_MD), report.to_markdown())?;
    std::fs::write(dir.join(REPORT_SVG), svg(report))?;
    Ok(())
}

/// The timeline picture: per step, connections opened per 250 ms that the old (grey) and
/// the new (blue) process served, failures (red), the trigger and the old exit.
pub fn svg(report: &CutoverReport) -> String {
    let steps: Vec<&Step> = report
        .steps
        .iter()
        .filter(|s| s.metrics.is_some())
        .collect();
    let (w, lane_h, top) = (900.0, 130.0, 40.0);
    let h = top + 32.0 + lane_h * steps.len().max(1) as f64 + 30.0;
    let top = top + 32.0;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"10\" y=\"22\" font-size=\"15\">Cutover rehearsal — {} mode, {}{}</text>\n<text x=\"10\" y=\"40\">Bars: connections opened per 250 ms by the process that served them (<tspan fill=\"#7f8c8d\">old</tspan>, <tspan fill=\"#2e86de\">new</tspan>), <tspan fill=\"#e74c3c\">failures before the drain deadline</tspan>, <tspan fill=\"#f39c12\">cut at the deadline</tspan>.</text>\n<text x=\"10\" y=\"56\">Lines: connections open on the <tspan fill=\"#555555\">old process (dashed)</tspan> and on the <tspan fill=\"#0b3d91\">new one (solid)</tspan>.</text>\n",
        report.mode, report.verdict,
        if report.isolated { " (private network namespace)" } else { " (host loopback)" }
    );
    for (i, s) in steps.iter().enumerate() {
        let Some(m) = &s.metrics else { continue };
        let y0 = top + i as f64 * lane_h;
        let plot_h = lane_h - 40.0;
        let (x0, pw) = (170.0, w - 190.0);
        let t_max = m.series.last().map_or(1.0, |b| b.t_ms + BUCKET_MS).max(1.0);
        let max = m
            .series
            .iter()
            .map(|b| b.old + b.new + b.errors + b.cut)
            .max()
            .unwrap_or(1)
            .max(1) as f64;
        out.push_str(&format!(
            "<text x=\"10\" y=\"{:.0}\" font-weight=\"bold\">{}</text><text x=\"10\" y=\"{:.0}\">{} → {}</text><text x=\"10\" y=\"{:.0}\" fill=\"{}\">{}</text>\n",
            y0 + 30.0, s.name, y0 + 46.0, s.from, s.to, y0 + 62.0,
            if s.result == "FAIL" { "#c0392b" } else { "#2c3e50" }, s.result
        ));
        out.push_str(&format!(
            "<rect x=\"{x0}\" y=\"{:.0}\" width=\"{pw}\" height=\"{plot_h}\" fill=\"none\" stroke=\"#ccc\"/>\n",
            y0 + 15.0
        ));
        let bw = pw * BUCKET_MS / t_max;
        for b in &m.series {
            let x = x0 + pw * b.t_ms / t_max;
            let mut y = y0 + 15.0 + plot_h;
            for (v, color) in [
                (b.old, "#95a5a6"),
                (b.new, "#2e86de"),
                (b.errors, "#e74c3c"),
                (b.cut, "#f39c12"),
            ] {
                if v == 0 {
                    continue;
                }
                let bh = plot_h * v as f64 / max;
                y -= bh;
                out.push_str(&format!(
                    "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" fill=\"{color}\"/>\n",
                    (bw - 0.5).max(0.5)
                ));
            }
        }
        let open_max = m
            .series
            .iter()
            .map(|b| b.open_old.max(b.open_new))
            .max()
            .unwrap_or(1)
            .max(1) as f64;
        for (pick, color, dash) in [(0usize, "#555555", "6 4"), (1, "#0b3d91", "none")] {
            let pts: Vec<String> = m
                .series
                .iter()
                .map(|b| {
                    let v = if pick == 0 { b.open_old } else { b.open_new } as f64;
                    format!(
                        "{:.1},{:.1}",
                        x0 + pw * (b.t_ms + BUCKET_MS / 2.0) / t_max,
                        y0 + 15.0 + plot_h - plot_h * v / open_max
                    )
                })
                .collect();
            out.push_str(&format!(
                "<polyline points=\"{}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" stroke-dasharray=\"{dash}\"/>\n",
                pts.join(" ")
            ));
        }
        let mut mark = |t: f64, label: &str, color: &str, dy: f64| {
            let x = x0 + pw * t / t_max;
            out.push_str(&format!(
                "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{:.0}\" y2=\"{:.0}\" stroke=\"{color}\" stroke-dasharray=\"4 3\"/><text x=\"{:.1}\" y=\"{:.0}\" fill=\"{color}\">{label}</text>\n",
                y0 + 15.0, y0 + 15.0 + plot_h, x + 3.0, y0 + dy
            ));
        };
        mark(m.timeline.trigger_ms, "trigger", "#8e44ad", 27.0);
        if let Some(t) = m.timeline.old_exit_ms {
            mark(t, "old exits", "#d35400", 41.0);
        }
        out.push_str(&format!(
            "<text x=\"{x0}\" y=\"{:.0}\" fill=\"#555\">0 s</text><text x=\"{:.0}\" y=\"{:.0}\" fill=\"#555\" text-anchor=\"end\">{:.1} s · bars max {max:.0} · lines max {open_max:.0} open</text>\n",
            y0 + 15.0 + plot_h + 14.0, x0 + pw, y0 + 15.0 + plot_h + 14.0, t_max / 1000.0
        ));
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics(cut: u64, refused: u64, lost: u64) -> Metrics {
        let mut m = Metrics {
            timeline: Timeline {
                trigger_ms: 3000.0,
                first_accept_new_ms: Some(3033.4),
                old_last_accept_ms: Some(2990.0),
                old_exit_ms: Some(8038.0),
                switch_end_ms: 8038.0,
            },
            established: Established {
                total: 18,
                completed: 16u64.saturating_sub(cut),
                reset: cut,
                cut_at_deadline: if cut >= 16 { 0 } else { 2 },
                ..Established::default()
            },
            new_connections: NewConns {
                attempted: 302,
                ok: 302 - refused,
                refused,
                ..NewConns::default()
            },
            requests: Requests {
                sent: 2421,
                answered: 2421 - lost,
                lost,
                ..Requests::default()
            },
            ..Metrics::default()
        };
        m.connect_latency_ms.before.p99 = 2.2;
        m.connect_latency_ms.during.p99 = 1.5;
        m
    }

    fn step(name: &str, result: &str, metrics: Option<Metrics>, why: Option<&str>) -> Step {
        let mut s = describe(name);
        s.result = result.into();
        s.skip_reason = why.map(str::to_string);
        if let Some(m) = &metrics {
            s.criteria = criteria(name, m, Timing::for_scale(Scale::Quick));
        }
        s.metrics = metrics;
        s
    }

    /// A report built by hand: fixed values only, so the Markdown is a stable snapshot.
    fn fixed_report() -> CutoverReport {
        let steps = vec![
            step("naive_c_to_port", "INFO", Some(metrics(18, 1, 19)), None),
            step(
                "cutover_c_to_port",
                "SKIP",
                None,
                Some("needs a private network namespace (root) and nftables"),
            ),
            step("upgrade_port", "FAIL", Some(metrics(3, 0, 0)), None),
            step(
                "upgrade_port_workers",
                "FAIL",
                None,
                Some("error: the new process exited"),
            ),
        ];
        CutoverReport {
            schema_version: SCHEMA_VERSION.into(),
            generated_at: "2026-01-02T03:04:05Z".into(),
            host: parity::report::HostInfo {
                hostname: "ci-runner".into(),
                cpus: 2,
                kernel: "6.1.0".into(),
                os: "Debian GNU/Linux 12 (bookworm)".into(),
                arch: "x86_64".into(),
            },
            scale: Scale::Quick,
            timing: Timing::for_scale(Scale::Quick),
            candidate: "target/release/mtproto-proxy".into(),
            reference: None,
            runtime: "local".into(),
            platform: None,
            images: BTreeMap::new(),
            mode: "self".into(),
            isolated: false,
            notes: vec![
                "no reference: no C build given; the candidate plays the reference role (self mode)"
                    .into(),
            ],
            steps,
            verdict: "FAIL".into(),
            failures: vec![
                "upgrade_port: established_cut_before_deadline (value 3, threshold == 0)".into(),
                "upgrade_port_workers: ran (value 0, threshold the step completes)".into(),
            ],
        }
    }

    #[test]
    fn markdown_names_failures_skips_and_the_mode() {
        let md = fixed_report().to_markdown();
        assert!(
            md.starts_with("# Cutover rehearsal: FAIL — no reference\n"),
            "{md}"
        );
        assert!(md.contains("error: the new process exited"), "{md}");
        assert!(
            md.contains("upgrade_port: established_cut_before_deadline"),
            "{md}"
        );
        insta::assert_snapshot!("cutover_fail_self_mode", md);
    }

    #[test]
    fn markdown_of_a_partial_rehearsal_says_it_is_not_full() {
        let mut r = fixed_report();
        r.steps.retain(|s| s.result != "FAIL");
        r.failures.clear();
        r.verdict = "PARTIAL".into();
        r.mode = "reference".into();
        r.reference = Some("c/objs/bin/mtproto-proxy".into());
        let md = r.to_markdown();
        assert!(md.contains("Not a full rehearsal"), "{md}");
        assert!(!md.contains("No reference mode"), "{md}");
        insta::assert_snapshot!("cutover_partial", md);
    }
}
