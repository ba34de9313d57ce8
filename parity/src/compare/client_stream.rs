//! (b) What each client received, normalised so that the padded transport's random padding
//! and its alternative two-packet quick-ack encoding (§4.3) do not count as differences.

use super::finding::{short_hash, Comparison, Difference};
use crate::transcript::{ClientEvent, ClientRecord, Wire};
use crate::workload::Phase;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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
pub fn normalise_client(transport: Wire, events: &[ClientEvent]) -> Vec<NormClientEvent> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transcript::SessionEnd;

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
                transport: Wire::Padded,
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
                transport: Wire::Padded,
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
        x.transport = Wire::Intermediate;
        y.transport = Wire::Intermediate;
        assert!(!compare_client_streams(&ph, &[x], &[y]).pass);
    }
}
