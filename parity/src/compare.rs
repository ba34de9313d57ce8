//! Normalise and diff what the two sides observed.
//!
//! * (a) [`compare_me_streams`]: the request streams the two FakeMes recorded, per session, as
//!   sequences of normalised records (flags, tag, payload hash, dc, transport, and the ordinal of
//!   the ME connection within the session); conn ids, ports and addresses are redacted.
//! * (b) [`compare_client_streams`]: what each client received, normalised so that the padded
//!   transport's random padding and its alternative two-packet quick-ack encoding (§4.3) do not
//!   count as differences.
//! * (c) [`compare_probes`]: the reaction class per bad input.
//! * (d) [`compare_slos`] / [`compare_lifecycle`]: success rate, latency percentiles,
//!   throughput, start-up and shutdown time against thresholds calibrated by a noise baseline
//!   ([`NoiseBaseline`], [`Thresholds`]).
//!
//! Every function returns a [`Comparison`] holding *all* differences; [`Comparison::finalise`]
//! then applies the known-divergence list and truncates the listed differences.

use crate::divergences::DivergenceList;
use crate::metrics::{LifecycleMetrics, PhaseMetrics};
use crate::transcript::{ClientEvent, ClientRecord, MeRecord, ProbeRecord, Reaction, Transport};
use crate::workload::{locate, Phase, Probe};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};

/// One precise difference between reference and candidate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Difference {
    /// Comparison kind (`me_stream`, `client_stream`, `probe`, `slo`, `lifecycle`, ...).
    pub comparison: String,
    /// Phase, when the comparison is per phase.
    pub phase: Option<String>,
    /// What differs, e.g. `session 17 request 3` or `short_padded_frame`.
    pub key: String,
    /// Which field, e.g. `flags`.
    pub field: String,
    /// Reference value, normalised.
    pub reference: String,
    /// Candidate value, normalised.
    pub candidate: String,
    /// Human text, e.g. `session 17 request 3: flags 0xa002100a vs 0xa0021002`.
    pub message: String,
    /// Id of the known divergence that explains it, if any.
    pub divergence: Option<String>,
}

impl Difference {
    /// Build a difference with the standard message `"<key>: <field> <ref> vs <cand>"`.
    pub fn new(
        comparison: &str,
        phase: Option<&str>,
        key: impl Into<String>,
        field: impl Into<String>,
        reference: impl Into<String>,
        candidate: impl Into<String>,
    ) -> Self {
        let (key, field, reference, candidate) =
            (key.into(), field.into(), reference.into(), candidate.into());
        let message = format!("{key}: {field} {reference} vs {candidate}");
        Difference {
            comparison: comparison.to_string(),
            phase: phase.map(str::to_string),
            key,
            field,
            reference,
            candidate,
            message,
            divergence: None,
        }
    }

    /// Replace the message.
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = message.into();
        self
    }
}

/// The result of one comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// Unique name, e.g. `load/me_stream`.
    pub name: String,
    /// Kind (see [`Difference::comparison`]).
    pub kind: String,
    /// Phase, when per phase.
    pub phase: Option<String>,
    /// Pass: no difference left unexplained (and not skipped for a failing reason).
    pub pass: bool,
    /// Items compared (records, sessions, probes, metrics).
    pub checked: u64,
    /// All differences found.
    pub total_differences: u64,
    /// Differences not explained by a known divergence.
    pub unexplained_differences: u64,
    /// The first differences (unexplained first), at most the run's limit.
    pub differences: Vec<Difference>,
    /// Free text (e.g. what was compared).
    pub details: String,
    /// Set when the comparison could not run; a skipped comparison fails unless `pass` is set
    /// explicitly by the orchestrator (e.g. a probe not sent to either side).
    pub skipped: Option<String>,
}

impl Comparison {
    /// A new comparison with its raw differences.
    pub fn new(
        kind: &str,
        phase: Option<&str>,
        checked: u64,
        differences: Vec<Difference>,
    ) -> Self {
        let name = match phase {
            Some(p) => format!("{p}/{kind}"),
            None => kind.to_string(),
        };
        let total = differences.len() as u64;
        Comparison {
            name,
            kind: kind.to_string(),
            phase: phase.map(str::to_string),
            pass: total == 0,
            checked,
            total_differences: total,
            unexplained_differences: total,
            differences,
            details: String::new(),
            skipped: None,
        }
    }

    /// A comparison that could not run.
    pub fn skipped(kind: &str, phase: Option<&str>, why: impl Into<String>) -> Self {
        let mut c = Comparison::new(kind, phase, 0, Vec::new());
        c.pass = false;
        c.skipped = Some(why.into());
        c
    }

    /// Set the details text.
    pub fn details(mut self, d: impl Into<String>) -> Self {
        self.details = d.into();
        self
    }

    /// Mark each difference explained by `divergences`, set pass/fail, keep the first `limit`
    /// (unexplained first). Returns how many differences each matched divergence explained.
    pub fn finalise(
        &mut self,
        divergences: &DivergenceList,
        limit: usize,
    ) -> BTreeMap<String, u64> {
        let mut matched = BTreeMap::new();
        for d in &mut self.differences {
            if let Some(div) = divergences.find(d) {
                d.divergence = Some(div.id.clone());
                *matched.entry(div.id.clone()).or_insert(0) += 1;
            }
        }
        self.unexplained_differences = self
            .differences
            .iter()
            .filter(|d| d.divergence.is_none())
            .count() as u64;
        if self.skipped.is_none() {
            self.pass = self.unexplained_differences == 0;
        }
        self.differences.sort_by_key(|d| d.divergence.is_some());
        self.differences.truncate(limit);
        matched
    }
}

/// A normalised FakeMe record: everything that must match, nothing that may not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NormMeRecord {
    /// Session (from the packet marker), if the payload came from the workload.
    pub session: Option<u32>,
    /// Request index within the session.
    pub request: Option<u32>,
    /// 0 for the first ME connection the session's requests arrived on, 1 for the next, ...
    pub conn_ordinal: u32,
    /// PROXY_REQ flags.
    pub flags: u32,
    /// Proxy tag, hex.
    pub tag: Option<String>,
    /// Payload length.
    pub payload_len: usize,
    /// First 16 hex digits of SHA-256(payload).
    pub payload_hash: String,
    /// The ME target's dc, if the FakeMe knew it.
    pub dc: Option<i16>,
    /// The session's transport (from the workload).
    pub transport: Option<Transport>,
}

fn short_hash(b: &[u8]) -> String {
    let h = Sha256::digest(b);
    hex::encode(&h[..8])
}

/// Normalise one side's records, grouped by session in arrival order; records whose payload
/// carries no workload marker land under `None`.
pub fn normalise_me(
    phase: &Phase,
    records: &[MeRecord],
) -> BTreeMap<Option<u32>, Vec<NormMeRecord>> {
    let transports: HashMap<u32, Transport> =
        phase.sessions.iter().map(|s| (s.id, s.transport)).collect();
    let mut conns: HashMap<Option<u32>, Vec<i64>> = HashMap::new();
    let mut out: BTreeMap<Option<u32>, Vec<NormMeRecord>> = BTreeMap::new();
    for r in records {
        let loc = locate(&r.payload).filter(|(s, _)| transports.contains_key(s));
        let session = loc.map(|l| l.0);
        let seen = conns.entry(session).or_default();
        let conn_ordinal = match seen.iter().position(|&c| c == r.conn_id) {
            Some(i) => i as u32,
            None => {
                seen.push(r.conn_id);
                (seen.len() - 1) as u32
            }
        };
        out.entry(session).or_default().push(NormMeRecord {
            session,
            request: loc.map(|l| l.1),
            conn_ordinal,
            flags: r.flags,
            tag: r.tag.map(hex::encode),
            payload_len: r.payload.len(),
            payload_hash: short_hash(&r.payload),
            dc: r.dc_hint,
            transport: session.and_then(|s| transports.get(&s).copied()),
        });
    }
    out
}

fn opt<T: std::fmt::Display>(v: &Option<T>) -> String {
    match v {
        Some(v) => v.to_string(),
        None => "none".into(),
    }
}

/// (a) Compare the FakeMe request streams of one phase, per session as sequences.
pub fn compare_me_streams(
    phase: &Phase,
    reference: &[MeRecord],
    candidate: &[MeRecord],
) -> Comparison {
    const KIND: &str = "me_stream";
    let p = Some(phase.name.as_str());
    let r = normalise_me(phase, reference);
    let c = normalise_me(phase, candidate);
    let mut diffs = Vec::new();
    let mut keys: Vec<Option<u32>> = r.keys().chain(c.keys()).copied().collect();
    keys.sort();
    keys.dedup();
    let empty = Vec::new();
    for key in keys {
        let (rs, cs) = (r.get(&key).unwrap_or(&empty), c.get(&key).unwrap_or(&empty));
        let Some(session) = key else {
            // Unlocated records: compare as multisets of (flags, tag, hash).
            let bag = |v: &[NormMeRecord]| {
                let mut m: BTreeMap<(u32, Option<String>, String), i64> = BTreeMap::new();
                for x in v {
                    *m.entry((x.flags, x.tag.clone(), x.payload_hash.clone()))
                        .or_default() += 1;
                }
                m
            };
            let (rb, cb) = (bag(rs), bag(cs));
            let mut all: Vec<_> = rb.keys().chain(cb.keys()).cloned().collect();
            all.sort();
            all.dedup();
            for k in all {
                let (a, b) = (
                    rb.get(&k).copied().unwrap_or(0),
                    cb.get(&k).copied().unwrap_or(0),
                );
                if a != b {
                    diffs.push(Difference::new(
                        KIND,
                        p,
                        format!("unlocated payload {}", k.2),
                        "count",
                        a.to_string(),
                        b.to_string(),
                    ));
                }
            }
            continue;
        };
        for i in 0..rs.len().max(cs.len()) {
            match (rs.get(i), cs.get(i)) {
                (Some(a), Some(b)) => {
                    let key = format!("session {session} request {}", opt(&a.request));
                    if a.request != b.request {
                        diffs.push(Difference::new(
                            KIND,
                            p,
                            format!("session {session} position {i}"),
                            "request",
                            opt(&a.request),
                            opt(&b.request),
                        ));
                        continue;
                    }
                    let mut field = |f: &str, x: String, y: String| {
                        if x != y {
                            diffs.push(Difference::new(KIND, p, key.clone(), f, x, y));
                        }
                    };
                    field(
                        "flags",
                        format!("{:#010x}", a.flags),
                        format!("{:#010x}", b.flags),
                    );
                    field("tag", opt(&a.tag), opt(&b.tag));
                    field(
                        "payload_len",
                        a.payload_len.to_string(),
                        b.payload_len.to_string(),
                    );
                    field("payload", a.payload_hash.clone(), b.payload_hash.clone());
                    field("dc", opt(&a.dc), opt(&b.dc));
                    field(
                        "conn_ordinal",
                        a.conn_ordinal.to_string(),
                        b.conn_ordinal.to_string(),
                    );
                }
                (Some(a), None) => diffs.push(Difference::new(
                    KIND,
                    p,
                    format!("session {session} request {}", opt(&a.request)),
                    "presence",
                    "forwarded",
                    "missing",
                )),
                (None, Some(b)) => diffs.push(Difference::new(
                    KIND,
                    p,
                    format!("session {session} request {}", opt(&b.request)),
                    "presence",
                    "missing",
                    "forwarded",
                )),
                (None, None) => {}
            }
        }
    }
    Comparison::new(
        KIND,
        p,
        (reference.len().max(candidate.len())) as u64,
        diffs,
    )
    .details(format!(
        "{} reference and {} candidate PROXY_REQs; conn ids, ports and addresses redacted",
        reference.len(),
        candidate.len()
    ))
}

/// A normalised client-side event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum NormClientEvent {
    /// A packet: its length and hash after removing transport padding.
    Packet {
        /// Length without padding.
        len: usize,
        /// Short hash.
        hash: String,
    },
    /// A quick ack.
    QuickAck {
        /// Confirm value.
        confirm: u32,
    },
}

impl std::fmt::Display for NormClientEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NormClientEvent::Packet { len, hash } => write!(f, "packet {len} B {hash}"),
            NormClientEvent::QuickAck { confirm } => write!(f, "quick_ack {confirm:#010x}"),
        }
    }
}

/// Normalise what one client received: on padded transports drop the 0..3 random padding bytes
/// and fold the two-packet quick-ack form (`ff ff ff ff | confirm | pad`, `00 00 00 00 | pad`)
/// into a single quick ack.
pub fn normalise_client(transport: Transport, events: &[ClientEvent]) -> Vec<NormClientEvent> {
    let mut out = Vec::with_capacity(events.len());
    let mut skip_zero_packet = false;
    for e in events {
        match e {
            ClientEvent::QuickAck { confirm } => {
                out.push(NormClientEvent::QuickAck { confirm: *confirm })
            }
            ClientEvent::Packet { data } => {
                let data: &[u8] = if transport.is_padded() {
                    &data[..data.len() & !3]
                } else {
                    data
                };
                if transport.is_padded() {
                    if skip_zero_packet {
                        skip_zero_packet = false;
                        if data.len() <= 8 && data.get(..4) == Some(&[0, 0, 0, 0]) {
                            continue;
                        }
                    }
                    if (data.len() == 8 || data.len() == 12) && data.get(..4) == Some(&[0xff; 4]) {
                        if let Some(c) = data.get(4..8) {
                            let confirm = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                            out.push(NormClientEvent::QuickAck { confirm });
                            skip_zero_packet = true;
                            continue;
                        }
                    }
                }
                out.push(NormClientEvent::Packet {
                    len: data.len(),
                    hash: short_hash(data),
                });
            }
        }
    }
    out
}

/// (b) Compare what clients received in one phase, per session.
pub fn compare_client_streams(
    phase: &Phase,
    reference: &[ClientRecord],
    candidate: &[ClientRecord],
) -> Comparison {
    const KIND: &str = "client_stream";
    let p = Some(phase.name.as_str());
    let index = |v: &[ClientRecord]| -> BTreeMap<u32, ClientRecord> {
        v.iter().map(|r| (r.session, r.clone())).collect()
    };
    let (r, c) = (index(reference), index(candidate));
    let mut diffs = Vec::new();
    for s in &phase.sessions {
        let key = format!("session {}", s.id);
        match (r.get(&s.id), c.get(&s.id)) {
            (Some(a), Some(b)) => {
                let (na, nb) = (
                    normalise_client(a.transport, &a.events),
                    normalise_client(b.transport, &b.events),
                );
                for i in 0..na.len().max(nb.len()) {
                    let show = |v: Option<&NormClientEvent>| match v {
                        Some(e) => e.to_string(),
                        None => "nothing".to_string(),
                    };
                    let (x, y) = (na.get(i), nb.get(i));
                    if x != y {
                        diffs.push(Difference::new(
                            KIND,
                            p,
                            format!("{key} event {i}"),
                            "event",
                            show(x),
                            show(y),
                        ));
                    }
                }
                let (ea, eb) = (format!("{:?}", a.end), format!("{:?}", b.end));
                if ea != eb {
                    diffs.push(Difference::new(KIND, p, key.clone(), "end", ea, eb));
                }
            }
            (a, b) => {
                if a.is_some() != b.is_some() {
                    let v =
                        |x: Option<&ClientRecord>| if x.is_some() { "recorded" } else { "missing" };
                    diffs.push(Difference::new(KIND, p, key, "presence", v(a), v(b)));
                }
            }
        }
    }
    Comparison::new(KIND, p, phase.sessions.len() as u64, diffs)
        .details("per-session received packets and quick acks; padded-transport padding ignored")
}

/// (c) Compare the reaction class per probe. A probe not sent to the reference is compared
/// against the reference's expected reaction from the workload (value prefixed `expected:`
/// in the details, plain in the difference so divergence matchers stay simple).
pub fn compare_probes(
    probes: &[Probe],
    reference: &[ProbeRecord],
    candidate: &[ProbeRecord],
) -> Comparison {
    const KIND: &str = "probe";
    let find =
        |v: &[ProbeRecord], name: &str| v.iter().find(|r| r.class == name).map(|r| r.reaction);
    let mut diffs = Vec::new();
    let mut notes = Vec::new();
    let mut checked = 0;
    for probe in probes {
        let name = probe.class.name();
        let r = match find(reference, name) {
            Some(Reaction::NotRun) | None => {
                notes.push(format!(
                    "{name}: reference not probed, expected {}",
                    probe.expect_reference.name()
                ));
                probe.expect_reference
            }
            Some(x) => x,
        };
        let Some(c) = find(candidate, name).filter(|c| *c != Reaction::NotRun) else {
            diffs.push(Difference::new(
                KIND,
                None,
                name,
                "reaction",
                r.name(),
                "not_run",
            ));
            continue;
        };
        checked += 1;
        notes.push(format!(
            "{name}: reference {}, candidate {}",
            r.name(),
            c.name()
        ));
        if r != c {
            diffs.push(Difference::new(
                KIND,
                None,
                name,
                "reaction",
                r.name(),
                c.name(),
            ));
        }
    }
    Comparison::new(KIND, None, checked, diffs).details(notes.join("; "))
}

/// How far apart two copies of the reference were: the noise the thresholds are scaled by.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct PhaseSpread {
    /// |Δp50| µs.
    pub p50_us: u64,
    /// |Δp95| µs.
    pub p95_us: u64,
    /// |Δp99| µs.
    pub p99_us: u64,
    /// |Δmax| µs.
    pub max_us: u64,
    /// |Δ requests/s| / mean requests/s.
    pub throughput_frac: f64,
}

/// Noise baseline: reference vs a second copy of itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct NoiseBaseline {
    /// Whether a baseline was measured (else thresholds use the floors only).
    pub measured: bool,
    /// Per phase.
    pub phases: BTreeMap<String, PhaseSpread>,
    /// |Δ start-up| ms.
    pub startup_ms: f64,
    /// |Δ shutdown| ms.
    pub shutdown_ms: f64,
}

impl NoiseBaseline {
    /// Spread of one phase between two copies.
    pub fn phase_spread(a: &PhaseMetrics, b: &PhaseMetrics) -> PhaseSpread {
        let d = |x: u64, y: u64| x.abs_diff(y);
        let mean = (a.requests_per_s + b.requests_per_s) / 2.0;
        PhaseSpread {
            p50_us: d(a.latency.p50_us, b.latency.p50_us),
            p95_us: d(a.latency.p95_us, b.latency.p95_us),
            p99_us: d(a.latency.p99_us, b.latency.p99_us),
            max_us: d(a.latency.max_us, b.latency.max_us),
            throughput_frac: if mean > 0.0 {
                crate::metrics::round3((a.requests_per_s - b.requests_per_s).abs() / mean)
            } else {
                0.0
            },
        }
    }

    /// Spread of the lifecycle timings.
    pub fn lifecycle(&mut self, a: &LifecycleMetrics, b: &LifecycleMetrics) {
        let d = |x: Option<f64>, y: Option<f64>| match (x, y) {
            (Some(x), Some(y)) => (x - y).abs(),
            _ => 0.0,
        };
        self.startup_ms =
            crate::metrics::round3(self.startup_ms.max(d(a.startup_ms, b.startup_ms)));
        self.shutdown_ms =
            crate::metrics::round3(self.shutdown_ms.max(d(a.shutdown_ms, b.shutdown_ms)));
    }
}

/// Knobs for the thresholds: `limit = max(floor, k × baseline spread)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThresholdConfig {
    /// Absolute floor for latency excess, µs (p50/p95/p99).
    pub latency_floor_us: u64,
    /// Absolute floor for the max-latency excess, µs.
    pub max_latency_floor_us: u64,
    /// Phases with fewer requests than this (the canary) are not judged on latency and
    /// throughput: a few dozen samples give a p99 that is one sample, pure noise. Their
    /// correctness comparisons still apply.
    pub min_latency_samples: u64,
    /// Relative floor for latency excess, as a fraction of the reference's value: on a
    /// small shared machine (two proxies, their FakeMes and the load generator on two
    /// cores) scheduling noise grows with the latency itself.
    pub latency_rel_floor: f64,
    /// Multiplier on the baseline spread.
    pub k: f64,
    /// Candidate success rate may be this much below the reference's.
    pub success_rate_tolerance: f64,
    /// Floor for the relative throughput loss.
    pub throughput_floor_frac: f64,
    /// Floor for start-up excess, ms.
    pub startup_floor_ms: f64,
    /// Floor for shutdown excess, ms.
    pub shutdown_floor_ms: f64,
}

impl Default for ThresholdConfig {
    fn default() -> Self {
        ThresholdConfig {
            latency_floor_us: 1_000,
            max_latency_floor_us: 50_000,
            latency_rel_floor: 0.25,
            min_latency_samples: 500,
            k: 3.0,
            success_rate_tolerance: 0.0,
            throughput_floor_frac: 0.10,
            startup_floor_ms: 500.0,
            shutdown_floor_ms: 500.0,
        }
    }
}

/// One calibrated threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Threshold {
    /// Metric, e.g. `load/p99_us` or `startup_ms`.
    pub metric: String,
    /// Allowed excess of candidate over reference (µs, ms, or a fraction for throughput).
    pub limit: f64,
    /// The floor used.
    pub floor: f64,
    /// The multiplier used.
    pub k: f64,
    /// The baseline spread used.
    pub spread: f64,
}

/// All calibrated thresholds of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Thresholds {
    /// The knobs.
    pub config: Option<ThresholdConfig>,
    /// One entry per checked metric.
    pub entries: Vec<Threshold>,
}

impl Thresholds {
    fn calibrate(&mut self, metric: String, floor: f64, k: f64, spread: f64) -> f64 {
        let limit = crate::metrics::round3(floor.max(k * spread));
        self.entries.push(Threshold {
            metric,
            limit,
            floor,
            k,
            spread,
        });
        limit
    }
}

/// (d) SLOs of one phase: success rate, latency percentiles, throughput. Thresholds are added
/// to `thresholds`.
pub fn compare_slos(
    phase: &str,
    reference: &PhaseMetrics,
    candidate: &PhaseMetrics,
    config: &ThresholdConfig,
    baseline: &NoiseBaseline,
    thresholds: &mut Thresholds,
) -> Comparison {
    const KIND: &str = "slo";
    let p = Some(phase);
    let spread = baseline.phases.get(phase).cloned().unwrap_or_default();
    let mut diffs = Vec::new();
    let mut checked = 0;

    checked += 1;
    let (rs, cs) = (reference.success_rate(), candidate.success_rate());
    if cs + config.success_rate_tolerance < rs {
        diffs.push(
            Difference::new(
                KIND,
                p,
                "success_rate",
                "success_rate",
                format!("{rs:.6}"),
                format!("{cs:.6}"),
            )
            .with_message(format!(
                "{phase} success rate: candidate {cs:.6} below reference {rs:.6} (tolerance {})",
                config.success_rate_tolerance
            )),
        );
    }
    if reference.succeeded < config.min_latency_samples {
        return Comparison::new(KIND, p, checked, diffs).details(format!(
            "latency and throughput not judged: {} requests < {}",
            reference.succeeded, config.min_latency_samples
        ));
    }
    for (name, sp) in [
        ("p50", spread.p50_us),
        ("p95", spread.p95_us),
        ("p99", spread.p99_us),
        ("max", spread.max_us),
    ] {
        let (r, c) = (
            reference.latency.named(name).unwrap_or(0),
            candidate.latency.named(name).unwrap_or(0),
        );
        let absolute = if name == "max" {
            config.max_latency_floor_us
        } else {
            config.latency_floor_us
        };
        let floor = (absolute as f64).max(config.latency_rel_floor * r as f64);
        let limit = thresholds.calibrate(format!("{phase}/{name}_us"), floor, config.k, sp as f64);
        checked += 1;
        if c as f64 > r as f64 + limit {
            diffs.push(
                Difference::new(
                    KIND,
                    p,
                    format!("latency_{name}"),
                    format!("{name}_us"),
                    r.to_string(),
                    c.to_string(),
                )
                .with_message(format!(
                    "{phase} {name}: candidate {c} µs vs reference {r} µs exceeds +{limit:.0} µs"
                )),
            );
        }
    }
    let limit = thresholds.calibrate(
        format!("{phase}/throughput_loss_frac"),
        config.throughput_floor_frac,
        config.k,
        spread.throughput_frac,
    );
    checked += 1;
    if reference.requests_per_s > 0.0 {
        let loss = (reference.requests_per_s - candidate.requests_per_s) / reference.requests_per_s;
        if loss > limit {
            diffs.push(
                Difference::new(
                    KIND,
                    p,
                    "throughput",
                    "requests_per_s",
                    format!("{:.1}", reference.requests_per_s),
                    format!("{:.1}", candidate.requests_per_s),
                )
                .with_message(format!(
                    "{phase} throughput: candidate {:.1} req/s is {:.1}% below reference {:.1} req/s (limit {:.1}%)",
                    candidate.requests_per_s,
                    loss * 100.0,
                    reference.requests_per_s,
                    limit * 100.0
                )),
            );
        }
    }
    let errs = |m: &PhaseMetrics| m.errors.keys().cloned().collect::<Vec<_>>().join(",");
    let (re, ce) = (errs(reference), errs(candidate));
    checked += 1;
    if !ce.is_empty() && re != ce {
        diffs.push(Difference::new(KIND, p, "error_classes", "errors", re, ce));
    }
    Comparison::new(KIND, p, checked, diffs)
}

/// (d) Start-up and shutdown time and the way each process ended after the stop signal.
pub fn compare_lifecycle(
    reference: &LifecycleMetrics,
    candidate: &LifecycleMetrics,
    config: &ThresholdConfig,
    baseline: &NoiseBaseline,
    thresholds: &mut Thresholds,
) -> Comparison {
    const KIND: &str = "lifecycle";
    let mut diffs = Vec::new();
    let mut checked = 0;
    for (name, r, c, floor, spread) in [
        (
            "startup_ms",
            reference.startup_ms,
            candidate.startup_ms,
            config.startup_floor_ms,
            baseline.startup_ms,
        ),
        (
            "shutdown_ms",
            reference.shutdown_ms,
            candidate.shutdown_ms,
            config.shutdown_floor_ms,
            baseline.shutdown_ms,
        ),
    ] {
        let limit = thresholds.calibrate(name.to_string(), floor, config.k, spread);
        checked += 1;
        match (r, c) {
            (Some(r), Some(c)) if c > r + limit => diffs.push(
                Difference::new(KIND, None, name, name, format!("{r:.1}"), format!("{c:.1}"))
                    .with_message(format!(
                        "{name}: candidate {c:.1} ms vs reference {r:.1} ms exceeds +{limit:.0} ms"
                    )),
            ),
            (Some(_), None) => diffs.push(Difference::new(
                KIND, None, name, name, "measured", "missing",
            )),
            _ => {}
        }
    }
    checked += 1;
    if reference.exit != candidate.exit {
        diffs.push(Difference::new(
            KIND,
            None,
            "sigterm",
            "exit",
            opt(&reference.exit),
            opt(&candidate.exit),
        ));
    }
    Comparison::new(KIND, None, checked, diffs)
}

/// Stats keys the reference serves that the candidate does not (values are not compared).
pub fn compare_stats_keys(
    reference: &BTreeMap<String, String>,
    candidate: &BTreeMap<String, String>,
) -> Comparison {
    const KIND: &str = "stats";
    let diffs: Vec<Difference> = reference
        .keys()
        .filter(|k| !candidate.contains_key(*k))
        .map(|k| Difference::new(KIND, None, k.clone(), "presence", "present", "missing"))
        .collect();
    Comparison::new(KIND, None, reference.len() as u64, diffs).details(
        "every /stats key of the reference must exist on the candidate; values not compared",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::divergences::DivergenceList;
    use crate::transcript::SessionEnd;
    use crate::workload::WorkloadSpec;
    use std::net::SocketAddr;

    fn records(phase: &Phase, conn_base: i64, port_base: u16) -> Vec<MeRecord> {
        let mut v = Vec::new();
        for s in &phase.sessions {
            for p in &s.packets {
                let client: SocketAddr = format!("127.0.0.1:{}", port_base + s.id as u16)
                    .parse()
                    .unwrap();
                v.push(MeRecord {
                    flags: 0xa002_1008 | if p.quick_ack { 0x8000_0000 } else { 0 },
                    tag: Some([7; 16]),
                    payload: p.bytes.clone(),
                    dc_hint: Some(s.dc),
                    conn_id: conn_base + s.id as i64,
                    client_addr: client,
                    proxy_addr: format!("127.0.0.1:{}", port_base + 1).parse().unwrap(),
                });
            }
        }
        v
    }

    fn phase() -> Phase {
        WorkloadSpec::new(3)
            .load_requests(200)
            .generate()
            .phase("load")
            .unwrap()
            .clone()
    }

    #[test]
    fn me_stream_ignores_redacted_fields_and_finds_a_planted_flag() {
        let ph = phase();
        let a = records(&ph, 0x40_000c, 30000);
        let mut b = records(&ph, 0x80_0000, 41000);
        let c = compare_me_streams(&ph, &a, &b);
        assert!(c.pass, "{:?}", c.differences);
        assert_eq!(c.checked, a.len() as u64);

        let s = &ph.sessions[1];
        let i = b
            .iter()
            .position(|r| locate(&r.payload) == Some((s.id, 0)))
            .unwrap();
        b[i].flags ^= 0x8;
        let c = compare_me_streams(&ph, &a, &b);
        assert!(!c.pass);
        assert_eq!(c.total_differences, 1);
        let d = &c.differences[0];
        assert_eq!(d.key, format!("session {} request 0", s.id));
        assert_eq!(d.field, "flags");
        assert_eq!(
            d.message,
            format!(
                "session {} request 0: flags {:#010x} vs {:#010x}",
                s.id, a[i].flags, b[i].flags
            )
        );
    }

    #[test]
    fn me_stream_reports_missing_requests_and_connection_switches() {
        let ph = phase();
        let a = records(&ph, 1, 30000);
        let mut b = records(&ph, 1, 30000);
        let s = ph.sessions.iter().find(|s| s.packets.len() >= 3).unwrap();
        let last = b
            .iter()
            .rposition(|r| locate(&r.payload).map(|l| l.0) == Some(s.id))
            .unwrap();
        b[last].conn_id = 999_999;
        let first = b
            .iter()
            .position(|r| locate(&r.payload).map(|l| l.0) == Some(s.id))
            .unwrap();
        b.remove(first + 1);
        let c = compare_me_streams(&ph, &a, &b);
        assert!(!c.pass);
        assert!(c
            .differences
            .iter()
            .any(|d| d.field == "request" || d.field == "presence"));
        let c2 = {
            let mut b = records(&ph, 1, 30000);
            b[last].conn_id = 999_999;
            compare_me_streams(&ph, &a, &b)
        };
        assert_eq!(c2.differences.len(), 1);
        assert_eq!(c2.differences[0].field, "conn_ordinal");
    }

    #[test]
    fn padded_padding_and_two_packet_quick_ack_are_not_differences() {
        let mk = |pad: &[u8], two_packet: bool| {
            let mut data = vec![0x11u8; 44];
            data.extend_from_slice(pad);
            let mut events = Vec::new();
            if two_packet {
                let mut q = vec![0xff, 0xff, 0xff, 0xff, 0x04, 0x03, 0x02, 0x81];
                q.extend_from_slice(pad);
                events.push(ClientEvent::Packet { data: q });
                events.push(ClientEvent::Packet {
                    data: [&[0u8, 0, 0, 0][..], pad].concat(),
                });
            } else {
                events.push(ClientEvent::QuickAck {
                    confirm: 0x8102_0304,
                });
            }
            events.push(ClientEvent::Packet { data });
            ClientRecord {
                session: 0,
                transport: Transport::Padded,
                dc: 2,
                events,
                end: SessionEnd::Completed,
            }
        };
        let ph = Phase {
            name: "t".into(),
            kind: crate::workload::PhaseKind::Load,
            proxy_tag: None,
            concurrency: 1,
            deployment: crate::workload::Deployment::Single,
            sessions: vec![crate::workload::Session {
                id: 0,
                transport: Transport::Padded,
                dc: 2,
                dc_class: crate::workload::DcClass::Positive,
                packets: vec![],
            }],
        };
        let c = compare_client_streams(&ph, &[mk(&[1, 2], false)], &[mk(&[9, 9, 9], true)]);
        assert!(c.pass, "{:?}", c.differences);
        // A real payload difference is still found.
        let mut other = mk(&[], false);
        if let ClientEvent::Packet { data } = &mut other.events[1] {
            data[0] = 0x12;
        }
        let c = compare_client_streams(&ph, &[mk(&[1], false)], &[other]);
        assert_eq!(c.total_differences, 1);
        assert_eq!(c.differences[0].key, "session 0 event 1");
        // On a non-padded transport, extra bytes do count.
        let mut x = mk(&[], false);
        let mut y = mk(&[1, 2, 3, 4], false);
        x.transport = Transport::Intermediate;
        y.transport = Transport::Intermediate;
        assert!(!compare_client_streams(&ph, &[x], &[y]).pass);
    }

    #[test]
    fn probes_compare_reactions_and_divergences_explain_the_crash() {
        let w = WorkloadSpec::new(1).load_requests(1).generate();
        let rec = |class: &str, reaction| ProbeRecord {
            class: class.into(),
            reaction,
            detail: String::new(),
        };
        let reference: Vec<_> = w
            .probes
            .iter()
            .map(|p| {
                rec(
                    p.class.name(),
                    if p.send_to_reference {
                        p.expect_reference
                    } else {
                        Reaction::NotRun
                    },
                )
            })
            .collect();
        let candidate: Vec<_> = w
            .probes
            .iter()
            .map(|p| rec(p.class.name(), p.expect_candidate))
            .collect();
        let mut c = compare_probes(&w.probes, &reference, &candidate);
        assert_eq!(c.total_differences, 1);
        let list = DivergenceList::load_default().unwrap();
        let ids = c.finalise(&list, 10);
        assert!(c.pass);
        assert_eq!(
            ids.into_iter().collect::<Vec<_>>(),
            vec![("c-aborts-on-short-padded-frame".to_string(), 1)]
        );
        // An unexpected reaction is not excused.
        let mut cand2 = candidate.clone();
        cand2[2].reaction = Reaction::Silence; // oversize: C closes
        let mut c = compare_probes(&w.probes, &reference, &cand2);
        c.finalise(&list, 10);
        assert!(!c.pass);
        assert_eq!(c.unexplained_differences, 1);
        assert_eq!(c.differences[0].key, "oversize");
    }

    #[test]
    fn slo_thresholds_scale_with_the_noise_baseline() {
        let mut r = PhaseMetrics {
            succeeded: 1000,
            requests_per_s: 1000.0,
            ..Default::default()
        };
        r.latency.p99_us = 1_000;
        let mut c = r.clone();
        c.latency.p99_us = 4_000;
        let cfg = ThresholdConfig::default();
        let mut t = Thresholds::default();
        let quiet = NoiseBaseline::default();
        let cmp = compare_slos("load", &r, &c, &cfg, &quiet, &mut t);
        assert!(!cmp.pass);
        assert_eq!(cmp.differences[0].key, "latency_p99");
        // A canary-sized phase is not judged on latency (a p99 of 100 samples is noise).
        let (mut r_small, mut c_small) = (r.clone(), c.clone());
        r_small.succeeded = 100;
        c_small.succeeded = 100;
        let small = compare_slos("canary", &r_small, &c_small, &cfg, &quiet, &mut t);
        assert!(small.pass, "{:?}", small.differences);
        assert!(small.details.contains("not judged"));
        let mut noisy = NoiseBaseline::default();
        noisy.phases.insert(
            "load".into(),
            PhaseSpread {
                p99_us: 1_500,
                ..Default::default()
            },
        );
        let mut t = Thresholds::default();
        let cmp = compare_slos("load", &r, &c, &cfg, &noisy, &mut t);
        assert!(cmp.pass, "{:?}", cmp.differences);
        let p99 = t
            .entries
            .iter()
            .find(|e| e.metric == "load/p99_us")
            .unwrap();
        assert_eq!(p99.limit, 4_500.0);
        // Success rate and throughput.
        c.latency.p99_us = 1_000;
        c.failed = 1;
        c.requests_per_s = 500.0;
        let cmp = compare_slos("load", &r, &c, &cfg, &quiet, &mut Thresholds::default());
        let keys: Vec<_> = cmp.differences.iter().map(|d| d.key.as_str()).collect();
        assert_eq!(keys, vec!["success_rate", "throughput"]);
    }
}
