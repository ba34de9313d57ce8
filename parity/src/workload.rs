//! The seeded workload: pure data, generated identically for every side from one `u64` seed.
//!
//! A workload is a list of [`Phase`]s (a canary phase, a load phase, an untagged phase) made of
//! client [`Session`]s, each with a transport, a dc and a list of MTProto-shaped [`Packet`]s, plus
//! the bad-input [`Probe`]s with their expected reaction classes. Every packet carries a marker
//! (session id, request index) in bytes 8..16 so a FakeMe record can be traced back to the
//! request that caused it ([`locate`]).

use crate::transcript::{ReactionClass, Wire};
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use serde::{Deserialize, Serialize};

/// `req_pq_multi` constructor.
pub const REQ_PQ_MULTI: u32 = 0xbe7e8ef1;
/// `req_DH_params` constructor.
pub const REQ_DH_PARAMS: u32 = 0xd712e4be;
/// Default number of requests in the load phase.
pub const DEFAULT_LOAD_REQUESTS: usize = 10_000;
/// The proxy tag used by tagged phases (`-P`).
pub const DEFAULT_PROXY_TAG: [u8; 16] = [
    0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32, 0x10, 0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32, 0x10,
];

/// Kind of dc a session asks for (§3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DcClass {
    /// A configured positive dc (1..=5).
    Positive,
    /// A configured media dc (-5..=-1).
    Negative,
    /// A dc with no cluster (99 / -99): goes to the `default` cluster.
    Unknown,
}

/// MTProto shape of a packet (§4.3 acceptance rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PacketKind {
    /// Unencrypted `req_pq_multi` (auth_key_id 0, 40 bytes).
    ReqPqMulti,
    /// Unencrypted `req_DH_params` (auth_key_id 0, 340 bytes).
    ReqDhParams,
    /// Encrypted-message shape (nonzero auth_key_id, ≥ 56 bytes).
    Encrypted,
}

/// One client → proxy MTProto packet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Packet {
    /// Index within the session.
    pub index: u32,
    /// Shape.
    pub kind: PacketKind,
    /// Whether the client asks for a quick ack on this packet.
    pub quick_ack: bool,
    /// Packet bytes (what the FakeMe must see as the PROXY_REQ payload).
    #[serde(with = "crate::transcript::hex_bytes")]
    pub bytes: Vec<u8>,
}

/// One client connection and what it sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// Unique id across the whole workload.
    pub id: u32,
    /// How it looks on the wire (its `transport`).
    pub transport: Wire,
    /// dc in the obfuscated2 header.
    pub dc: i16,
    /// Class of that dc.
    pub dc_class: DcClass,
    /// Packets in order.
    pub packets: Vec<Packet>,
}

/// Which phase this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PhaseKind {
    /// A few sessions of every combination, run first; a failure here stops the run early.
    Canary,
    /// The main mixed load.
    Load,
    /// A smaller mixed load against instances started without `-P`.
    Untagged,
    /// A mixed load against instances deployed as operators run workers
    /// ([`Deployment::Workers`]).
    Workers,
    /// Fake-TLS clients against `-D` instances ([`Deployment::FakeTls`]).
    FakeTls,
}

/// How the instances of a phase (or of a probe) are started: the same way on every side.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Deployment {
    /// One process, the harness's plain command line (`-M` as the run's options say).
    #[default]
    Single,
    /// As operators run workers: `-M 2 -u nobody -l FILE`.
    Workers,
    /// Fake TLS: `-D` naming a local stand-in site ([`crate::site`]); only `ee` clients.
    FakeTls,
}

impl Deployment {
    /// snake_case name, as in the report.
    pub fn name(self) -> &'static str {
        match self {
            Deployment::Single => "single",
            Deployment::Workers => "workers",
            Deployment::FakeTls => "fake_tls",
        }
    }
}

/// A phase: sessions run against one proxy configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Phase {
    /// Phase name (`canary`, `load`, `untagged`).
    pub name: String,
    /// Kind.
    pub kind: PhaseKind,
    /// Proxy tag the instances run with (`None`: no `-P`).
    #[serde(with = "crate::transcript::opt_hex16")]
    pub proxy_tag: Option<[u8; 16]>,
    /// How many sessions may run at once.
    pub concurrency: usize,
    /// How the instances are started.
    #[serde(default)]
    pub deployment: Deployment,
    /// Sessions.
    pub sessions: Vec<Session>,
}

impl Phase {
    /// Number of packets in the phase.
    pub fn request_count(&self) -> usize {
        self.sessions.iter().map(|s| s.packets.len()).sum()
    }

    /// Number of payload bytes the clients send in the phase.
    pub fn request_bytes(&self) -> usize {
        self.sessions
            .iter()
            .flat_map(|s| s.packets.iter())
            .map(|p| p.bytes.len())
            .sum()
    }
}

/// Bad-input probe classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeClass {
    /// A well-formed obfuscated2 header keyed with a secret the proxy does not have.
    WrongSecret,
    /// 64+ random bytes.
    Garbage,
    /// A valid header followed by a frame longer than `MAX_POST_SIZE` (1 044 480 B).
    Oversize,
    /// A plain HTTP request on the client port.
    Http,
    /// The middle end sends RPC_PING on every link: the proxy must answer RPC_PONG
    /// ("relay": the proxy answered the middle end).
    MePing,
    /// The middle end sends RPC_PROXY_ANS for a connection id the proxy never used: the
    /// proxy must answer RPC_CLOSE_CONN ("relay") and count a dropped response.
    MeUnknownAnswer,
    /// The middle end sends RPC_CLOSE_EXT for a live client: that client is closed.
    MeCloseExt,
    /// The middle end drops every link: pinned clients are closed, and the proxy
    /// reconnects (the probe waits for the links to come back before going on).
    MeDrop,
    /// `-D` instances: a prober's plain HTTP request must be relayed byte for byte to the
    /// site behind the domain ("relay" once the site received exactly those bytes).
    TlsFronting,
    /// Padded transport, frame length 1..3: aborts the C process (§4.3). Sent to the reference
    /// only when the run explicitly tests that crash.
    ShortPaddedFrame,
}

impl ProbeClass {
    /// All classes, in the order they run (the crash probe last).
    pub const ALL: [ProbeClass; 10] = [
        ProbeClass::WrongSecret,
        ProbeClass::Garbage,
        ProbeClass::Oversize,
        ProbeClass::Http,
        ProbeClass::MePing,
        ProbeClass::MeUnknownAnswer,
        ProbeClass::MeCloseExt,
        ProbeClass::MeDrop,
        ProbeClass::TlsFronting,
        ProbeClass::ShortPaddedFrame,
    ];

    /// snake_case name used in records and divergence matchers.
    pub fn name(self) -> &'static str {
        match self {
            ProbeClass::WrongSecret => "wrong_secret",
            ProbeClass::Garbage => "garbage",
            ProbeClass::Oversize => "oversize",
            ProbeClass::Http => "http",
            ProbeClass::MePing => "me_ping",
            ProbeClass::MeUnknownAnswer => "me_unknown_answer",
            ProbeClass::MeCloseExt => "me_close_ext",
            ProbeClass::MeDrop => "me_drop",
            ProbeClass::TlsFronting => "tls_fronting",
            ProbeClass::ShortPaddedFrame => "short_padded_frame",
        }
    }

    /// The reaction the C reference shows (§4.2, §4.3, §10).
    pub fn reference_reaction(self) -> ReactionClass {
        match self {
            ProbeClass::WrongSecret | ProbeClass::Garbage | ProbeClass::Http => {
                ReactionClass::Silence
            }
            ProbeClass::Oversize | ProbeClass::MeCloseExt | ProbeClass::MeDrop => {
                ReactionClass::Close
            }
            ProbeClass::MePing | ProbeClass::MeUnknownAnswer | ProbeClass::TlsFronting => {
                ReactionClass::Relay
            }
            ProbeClass::ShortPaddedFrame => ReactionClass::Crash,
        }
    }

    /// The deployment whose instances this probe needs.
    pub fn deployment(self) -> Deployment {
        match self {
            ProbeClass::TlsFronting => Deployment::FakeTls,
            _ => Deployment::Single,
        }
    }

    /// The reaction the candidate is designed to show within the probe window.
    pub fn candidate_reaction(self) -> ReactionClass {
        match self {
            ProbeClass::ShortPaddedFrame => ReactionClass::Close,
            other => other.reference_reaction(),
        }
    }
}

/// One probe, as data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probe {
    /// Class.
    pub class: ProbeClass,
    /// Expected reaction of the reference.
    pub expect_reference: ReactionClass,
    /// Expected reaction of the candidate.
    pub expect_candidate: ReactionClass,
    /// Whether to send it to the reference at all (false for the crash probe unless asked).
    pub send_to_reference: bool,
    /// The instances it runs against.
    #[serde(default)]
    pub deployment: Deployment,
    /// Seeded bytes the probe uses (random header / garbage), so both sides get the same.
    #[serde(with = "crate::transcript::hex_bytes")]
    pub bytes: Vec<u8>,
}

/// Parameters for [`Workload::generate`], builder style.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadSpec {
    /// Seed.
    pub seed: u64,
    /// Requests in the load phase (≥ 10 000 by default).
    pub load_requests: usize,
    /// Requests in the untagged phase.
    pub untagged_requests: usize,
    /// Sessions in the canary phase (each with few packets).
    pub canary_sessions: usize,
    /// Maximum packets per session in load phases.
    pub max_packets_per_session: usize,
    /// Concurrency of load phases.
    pub concurrency: usize,
    /// Whether to mix fake-TLS sessions into the single-process phases too (needs `-D`
    /// there; off: fake TLS has its own phase, see `fake_tls_requests`).
    pub fake_tls: bool,
    /// Requests in the `workers` phase (`-M 2 -u nobody -l FILE`; 0 drops the phase).
    #[serde(default)]
    pub workers_requests: usize,
    /// Requests in the `fake_tls` phase (`-D`, `ee` clients with long and short
    /// ClientHellos; 0 drops the phase and the fronting probe).
    #[serde(default)]
    pub fake_tls_requests: usize,
    /// Whether the crash probe is sent to the reference.
    pub test_reference_crash: bool,
}

impl Default for WorkloadSpec {
    fn default() -> Self {
        WorkloadSpec {
            seed: 0x6d74_7072_6f78_7921,
            load_requests: DEFAULT_LOAD_REQUESTS,
            untagged_requests: 1_000,
            canary_sessions: 12,
            max_packets_per_session: 40,
            concurrency: 32,
            fake_tls: false,
            workers_requests: 2_000,
            fake_tls_requests: 1_000,
            test_reference_crash: false,
        }
    }
}

impl WorkloadSpec {
    /// Start from the defaults with this seed.
    pub fn new(seed: u64) -> Self {
        WorkloadSpec {
            seed,
            ..Self::default()
        }
    }
    /// Set the load-phase request count.
    pub fn load_requests(mut self, n: usize) -> Self {
        self.load_requests = n;
        self
    }
    /// Set the untagged-phase request count (0 drops the phase).
    pub fn untagged_requests(mut self, n: usize) -> Self {
        self.untagged_requests = n;
        self
    }
    /// Set the canary session count.
    pub fn canary_sessions(mut self, n: usize) -> Self {
        self.canary_sessions = n;
        self
    }
    /// Set the load concurrency.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }
    /// Set the `workers` phase's request count (0 drops the phase).
    pub fn workers_requests(mut self, n: usize) -> Self {
        self.workers_requests = n;
        self
    }
    /// Set the `fake_tls` phase's request count (0 drops the phase and its probe).
    pub fn fake_tls_requests(mut self, n: usize) -> Self {
        self.fake_tls_requests = n;
        self
    }
    /// Include fake-TLS sessions.
    pub fn fake_tls(mut self, on: bool) -> Self {
        self.fake_tls = on;
        self
    }
    /// Send the crash probe to the reference too.
    pub fn test_reference_crash(mut self, on: bool) -> Self {
        self.test_reference_crash = on;
        self
    }
    /// Generate.
    pub fn generate(&self) -> Workload {
        Workload::generate(self)
    }
}

/// The generated workload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workload {
    /// The spec it came from.
    pub spec: WorkloadSpec,
    /// Phases in run order.
    pub phases: Vec<Phase>,
    /// Probes in run order.
    pub probes: Vec<Probe>,
}

impl Workload {
    /// Generate deterministically from the spec (same spec → identical workload).
    pub fn generate(spec: &WorkloadSpec) -> Workload {
        let mut rng = StdRng::seed_from_u64(spec.seed);
        let mut next_id = 0u32;
        let transports: Vec<Wire> = if spec.fake_tls {
            vec![
                Wire::Abridged,
                Wire::Intermediate,
                Wire::Padded,
                Wire::FakeTls,
            ]
        } else {
            vec![Wire::Abridged, Wire::Intermediate, Wire::Padded]
        };

        // Canary: every transport × dc class, with and without quick acks, short sessions.
        let mut canary = Vec::new();
        let classes = [DcClass::Positive, DcClass::Negative, DcClass::Unknown];
        for i in 0..spec.canary_sessions {
            let transport = transports[i % transports.len()];
            let class = classes[(i / transports.len()) % classes.len()];
            let quick_ack = (i / (transports.len() * classes.len())) % 2 == 1;
            let dc = pick_dc(&mut rng, class);
            let mut s = session(&mut rng, next_id, transport, dc, class, 3);
            for p in &mut s.packets {
                p.quick_ack = quick_ack;
            }
            canary.push(s);
            next_id += 1;
        }

        let mut phases = vec![Phase {
            name: "canary".into(),
            kind: PhaseKind::Canary,
            proxy_tag: Some(DEFAULT_PROXY_TAG),
            concurrency: spec.concurrency.clamp(1, 4),
            deployment: Deployment::Single,
            sessions: canary,
        }];
        let load = mixed_sessions(
            &mut rng,
            &mut next_id,
            spec,
            &transports,
            spec.load_requests,
        );
        phases.push(Phase {
            name: "load".into(),
            kind: PhaseKind::Load,
            proxy_tag: Some(DEFAULT_PROXY_TAG),
            concurrency: spec.concurrency,
            deployment: Deployment::Single,
            sessions: load,
        });
        if spec.untagged_requests > 0 {
            let untagged = mixed_sessions(
                &mut rng,
                &mut next_id,
                spec,
                &transports,
                spec.untagged_requests,
            );
            phases.push(Phase {
                name: "untagged".into(),
                kind: PhaseKind::Untagged,
                proxy_tag: None,
                concurrency: spec.concurrency,
                deployment: Deployment::Single,
                sessions: untagged,
            });
        }
        if spec.workers_requests > 0 {
            let sessions = mixed_sessions(
                &mut rng,
                &mut next_id,
                spec,
                &[Wire::Abridged, Wire::Intermediate, Wire::Padded],
                spec.workers_requests,
            );
            phases.push(Phase {
                name: "workers".into(),
                kind: PhaseKind::Workers,
                proxy_tag: Some(DEFAULT_PROXY_TAG),
                concurrency: spec.concurrency,
                deployment: Deployment::Workers,
                sessions,
            });
        }
        if spec.fake_tls_requests > 0 {
            let sessions = mixed_sessions(
                &mut rng,
                &mut next_id,
                spec,
                &[Wire::FakeTls],
                spec.fake_tls_requests,
            );
            phases.push(Phase {
                name: "fake_tls".into(),
                kind: PhaseKind::FakeTls,
                proxy_tag: Some(DEFAULT_PROXY_TAG),
                concurrency: spec.concurrency,
                deployment: Deployment::FakeTls,
                sessions,
            });
        }

        let probes = ProbeClass::ALL
            .iter()
            .filter(|c| c.deployment() != Deployment::FakeTls || spec.fake_tls_requests > 0)
            .map(|&class| {
                let mut bytes = vec![0u8; 64];
                rng.fill_bytes(&mut bytes);
                Probe {
                    class,
                    expect_reference: class.reference_reaction(),
                    expect_candidate: class.candidate_reaction(),
                    send_to_reference: class != ProbeClass::ShortPaddedFrame
                        || spec.test_reference_crash,
                    deployment: class.deployment(),
                    bytes,
                }
            })
            .collect();

        Workload {
            spec: spec.clone(),
            phases,
            probes,
        }
    }

    /// Total requests over all phases.
    pub fn request_count(&self) -> usize {
        self.phases.iter().map(Phase::request_count).sum()
    }

    /// Find a phase by name.
    pub fn phase(&self, name: &str) -> Option<&Phase> {
        self.phases.iter().find(|p| p.name == name)
    }

    /// Look up a session by id.
    pub fn session(&self, id: u32) -> Option<&Session> {
        self.phases
            .iter()
            .flat_map(|p| p.sessions.iter())
            .find(|s| s.id == id)
    }
}

/// Recover the (session, request index) marker from a packet the workload generated.
pub fn locate(payload: &[u8]) -> Option<(u32, u32)> {
    let s = payload.get(8..12)?;
    let r = payload.get(12..16)?;
    Some((
        u32::from_le_bytes(s.try_into().ok()?),
        u32::from_le_bytes(r.try_into().ok()?),
    ))
}

fn pick_dc(rng: &mut StdRng, class: DcClass) -> i16 {
    match class {
        DcClass::Positive => rng.gen_range(1..=5),
        DcClass::Negative => -rng.gen_range(1..=5),
        DcClass::Unknown => {
            if rng.gen_bool(0.5) {
                99
            } else {
                -99
            }
        }
    }
}

fn mixed_sessions(
    rng: &mut StdRng,
    next_id: &mut u32,
    spec: &WorkloadSpec,
    transports: &[Wire],
    requests: usize,
) -> Vec<Session> {
    let mut out = Vec::new();
    let mut left = requests;
    while left > 0 {
        let n = rng
            .gen_range(1..=spec.max_packets_per_session.max(1))
            .min(left);
        let transport = transports[rng.gen_range(0..transports.len())];
        let class = match rng.gen_range(0..10) {
            0..=5 => DcClass::Positive,
            6..=8 => DcClass::Negative,
            _ => DcClass::Unknown,
        };
        let dc = pick_dc(rng, class);
        out.push(session(rng, *next_id, transport, dc, class, n));
        *next_id += 1;
        left -= n;
    }
    out
}

fn session(
    rng: &mut StdRng,
    id: u32,
    transport: Wire,
    dc: i16,
    dc_class: DcClass,
    n: usize,
) -> Session {
    let auth_key_id = rng.gen_range(1..=u64::MAX);
    let packets = (0..n)
        .map(|i| {
            let index = i as u32;
            // A session starts like a real client (DH handshake), then sends encrypted messages.
            let kind = match i {
                0 => PacketKind::ReqPqMulti,
                1 => PacketKind::ReqDhParams,
                _ => PacketKind::Encrypted,
            };
            let bytes = match kind {
                PacketKind::ReqPqMulti => unencrypted(rng, id, index, REQ_PQ_MULTI, 16),
                PacketKind::ReqDhParams => unencrypted(rng, id, index, REQ_DH_PARAMS, 316),
                PacketKind::Encrypted => encrypted(rng, id, index, auth_key_id),
            };
            Packet {
                index,
                kind,
                quick_ack: rng.gen_bool(0.3),
                bytes,
            }
        })
        .collect();
    Session {
        id,
        transport,
        dc,
        dc_class,
        packets,
    }
}

/// `auth_key_id = 0 | message_id (marker) | inner_len | constructor | body`.
fn unencrypted(
    rng: &mut StdRng,
    session: u32,
    index: u32,
    constructor: u32,
    body: usize,
) -> Vec<u8> {
    let inner_len = 4 + body;
    let mut v = Vec::with_capacity(20 + inner_len);
    v.extend_from_slice(&0u64.to_le_bytes());
    v.extend_from_slice(&session.to_le_bytes());
    v.extend_from_slice(&index.to_le_bytes());
    v.extend_from_slice(&(inner_len as i32).to_le_bytes());
    v.extend_from_slice(&constructor.to_le_bytes());
    let start = v.len();
    v.resize(start + body, 0);
    rng.fill_bytes(&mut v[start..]);
    v
}

/// `auth_key_id (nonzero) | msg_key (marker + random) | encrypted data (16·k bytes)`.
fn encrypted(rng: &mut StdRng, session: u32, index: u32, auth_key_id: u64) -> Vec<u8> {
    // Mostly small, sometimes up to ~4 KiB.
    let blocks = if rng.gen_bool(0.8) {
        rng.gen_range(2..=16)
    } else {
        rng.gen_range(17..=256)
    };
    let len = 24 + 16 * blocks;
    let mut v = Vec::with_capacity(len);
    v.extend_from_slice(&auth_key_id.to_le_bytes());
    v.extend_from_slice(&session.to_le_bytes());
    v.extend_from_slice(&index.to_le_bytes());
    let start = v.len();
    v.resize(len, 0);
    rng.fill_bytes(&mut v[start..]);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_gives_identical_workload() {
        let a = WorkloadSpec::new(7).generate();
        let b = WorkloadSpec::new(7).generate();
        assert_eq!(a, b);
        let c = WorkloadSpec::new(8).generate();
        assert_ne!(a, c);
    }

    #[test]
    fn default_load_phase_has_at_least_ten_thousand_requests() {
        let w = WorkloadSpec::default().generate();
        let load = w.phase("load").expect("load phase");
        assert!(load.request_count() >= 10_000, "{}", load.request_count());
        assert_eq!(load.proxy_tag, Some(DEFAULT_PROXY_TAG));
        assert_eq!(w.phase("untagged").expect("untagged").proxy_tag, None);
    }

    #[test]
    fn packets_follow_the_acceptance_rules_and_carry_markers() {
        let w = WorkloadSpec::new(1).load_requests(2_000).generate();
        let mut classes = std::collections::HashSet::new();
        let mut transports = std::collections::HashSet::new();
        let mut qa = [false; 2];
        for (phase, s) in w
            .phases
            .iter()
            .flat_map(|p| p.sessions.iter().map(move |s| (p, s)))
        {
            classes.insert(s.dc_class);
            // Only the fake-TLS deployment has fake-TLS clients, and only those.
            assert_eq!(
                s.transport == Wire::FakeTls,
                phase.deployment == Deployment::FakeTls,
                "{} session {}",
                phase.name,
                s.id
            );
            transports.insert(s.transport);
            for p in &s.packets {
                qa[p.quick_ack as usize] = true;
                let b = &p.bytes;
                assert_eq!(b.len() % 4, 0);
                assert!(b.len() >= 28);
                assert_eq!(locate(b), Some((s.id, p.index)));
                let auth = u64::from_le_bytes(b[0..8].try_into().unwrap());
                match p.kind {
                    PacketKind::Encrypted => {
                        assert_ne!(auth, 0);
                        assert!(b.len() >= 56 && b.len() <= 4120);
                    }
                    _ => {
                        assert_eq!(auth, 0);
                        let inner = i32::from_le_bytes(b[16..20].try_into().unwrap()) as usize;
                        assert!(inner >= 20 && inner <= b.len() - 20);
                        let op = u32::from_le_bytes(b[20..24].try_into().unwrap());
                        assert!(op == REQ_PQ_MULTI || op == REQ_DH_PARAMS);
                    }
                }
            }
            match s.dc_class {
                DcClass::Positive => assert!((1..=5).contains(&s.dc)),
                DcClass::Negative => assert!((-5..=-1).contains(&s.dc)),
                DcClass::Unknown => assert!(s.dc == 99 || s.dc == -99),
            }
        }
        assert_eq!(classes.len(), 3);
        assert_eq!(transports.len(), 4);
        assert!(qa[0] && qa[1]);
    }

    #[test]
    fn deployment_phases_and_the_fronting_probe_follow_the_spec() {
        let w = WorkloadSpec::new(3).load_requests(100).generate();
        let workers = w.phase("workers").expect("workers phase");
        assert_eq!(workers.deployment, Deployment::Workers);
        assert_eq!(workers.request_count(), 2_000);
        let tls = w.phase("fake_tls").expect("fake_tls phase");
        assert_eq!(tls.deployment, Deployment::FakeTls);
        assert_eq!(tls.request_count(), 1_000);
        let fronting = w
            .probes
            .iter()
            .find(|p| p.class == ProbeClass::TlsFronting)
            .expect("fronting probe");
        assert_eq!(fronting.deployment, Deployment::FakeTls);
        assert_eq!(fronting.expect_reference, ReactionClass::Relay);
        // Zero requests drop the phase, and with fake TLS its probe.
        let none = WorkloadSpec::new(3)
            .load_requests(100)
            .workers_requests(0)
            .fake_tls_requests(0)
            .generate();
        assert!(none.phase("workers").is_none() && none.phase("fake_tls").is_none());
        assert!(none
            .probes
            .iter()
            .all(|p| p.deployment == Deployment::Single));
    }

    #[test]
    fn crash_probe_reaches_the_reference_only_when_asked() {
        let w = WorkloadSpec::new(1).load_requests(10).generate();
        let p = w
            .probes
            .iter()
            .find(|p| p.class == ProbeClass::ShortPaddedFrame)
            .unwrap();
        assert!(!p.send_to_reference);
        assert_eq!(p.expect_reference, ReactionClass::Crash);
        assert_eq!(p.expect_candidate, ReactionClass::Close);
        let w = WorkloadSpec::new(1)
            .load_requests(10)
            .test_reference_crash(true)
            .generate();
        assert!(w.probes.iter().all(|p| p.send_to_reference));
    }
}
