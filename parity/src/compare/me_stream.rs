//! (a) The request streams the two FakeMes recorded, per session, as sequences of normalised
//! records (flags, tag, payload hash, dc, transport, and the ordinal of the ME connection
//! within the session); conn ids, ports and addresses are redacted.

use super::finding::{opt, short_hash, Comparison, Difference};
use crate::transcript::{MeRecord, Wire};
use crate::workload::{locate, Phase};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

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
    /// The session's wire (its `transport`, from the workload).
    pub transport: Option<Wire>,
}

/// Normalise one side's records, grouped by session in arrival order; records whose payload
/// carries no workload marker land under `None`.
pub fn normalise_me(
    phase: &Phase,
    records: &[MeRecord],
) -> BTreeMap<Option<u32>, Vec<NormMeRecord>> {
    let transports: HashMap<u32, Wire> =
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

#[cfg(test)]
mod tests {
    use super::*;
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
}
