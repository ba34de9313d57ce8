//! Transcript records: what a fake middle-end and a client simulator observed during a phase.
//!
//! These are the raw, un-normalised observations. The FakeMe produces one [`MeRecord`] per
//! `RPC_PROXY_REQ` it receives; the client simulator produces one [`ClientRecord`] per client
//! session and one [`ProbeRecord`] per bad-input probe. [`crate::compare`] normalises and diffs
//! them (conn ids, ports and addresses are redacted there, not here).

use mtproxy::protocol::transport::Transport;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// Which proxy instance a record, a metric or a process belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// The reference build (the C MTProxy, or the candidate itself in self mode).
    Reference,
    /// The build under test (our `mtproto-proxy`).
    Candidate,
    /// A second copy of the reference, used only for the noise baseline.
    Baseline,
}

impl Side {
    /// Lower-case name used in reports and logs.
    pub fn name(self) -> &'static str {
        match self {
            Side::Reference => "reference",
            Side::Candidate => "candidate",
            Side::Baseline => "baseline",
        }
    }
}

/// How a client session looks on the wire: one of the proxy's transports (§4.2/§4.3,
/// [`Transport`]), or fake TLS around the padded one (§4.4). Workloads, transcripts and
/// reports call it the session's `transport`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Wire {
    /// [`Transport::Abridged`], tag `0xefefefef`.
    Abridged,
    /// [`Transport::Intermediate`], tag `0xeeeeeeee`.
    Intermediate,
    /// [`Transport::PaddedIntermediate`], tag `0xdddddddd`: the proxy appends 0..3 random
    /// bytes.
    Padded,
    /// Fake-TLS (`ee` secrets, `-D`): padded intermediate inside TLS application-data records.
    FakeTls,
}

impl Wire {
    /// Whether the proxy adds random padding to what it sends on this wire.
    pub fn is_padded(self) -> bool {
        matches!(self, Wire::Padded | Wire::FakeTls)
    }

    /// The transport the obfuscated2 header names (fake TLS carries the padded one).
    pub fn framing(self) -> Transport {
        match self {
            Wire::Abridged => Transport::Abridged,
            Wire::Intermediate => Transport::Intermediate,
            Wire::Padded | Wire::FakeTls => Transport::PaddedIntermediate,
        }
    }
}

/// One `RPC_PROXY_REQ` as the FakeMe received it (§5.7), in transcript form: serialisable,
/// without the link and the arrival time of the live [`crate::fake_me::ProxyReqRecord`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeRecord {
    /// PROXY_REQ flags (e.g. `0xa002100a`).
    pub flags: u32,
    /// The 16-byte proxy tag from the extra block, if flag 0x8 was set.
    #[serde(with = "opt_hex16")]
    pub tag: Option<[u8; 16]>,
    /// The client's MTProto packet, verbatim.
    #[serde(with = "hex_bytes")]
    pub payload: Vec<u8>,
    /// The dc of the ME target the request arrived at, when the FakeMe knows it.
    pub dc_hint: Option<i16>,
    /// `ext_conn_id` (redacted by the comparison).
    pub conn_id: i64,
    /// Client address from the request (redacted by the comparison).
    pub client_addr: SocketAddr,
    /// Proxy address from the request (redacted by the comparison).
    pub proxy_addr: SocketAddr,
}

/// One thing a client received from the proxy, already de-framed by the client simulator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ClientEvent {
    /// A transport packet (for padded transports: including whatever padding the proxy added).
    Packet {
        /// Packet bytes after the transport length header.
        #[serde(with = "hex_bytes")]
        data: Vec<u8>,
    },
    /// A quick ack (`confirm` as the ME sent it, byte order already undone).
    QuickAck {
        /// The confirm value.
        confirm: u32,
    },
}

/// How a client session ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionEnd {
    /// The client finished its workload and closed.
    Completed,
    /// The proxy closed the connection (EOF or reset).
    ClosedByProxy,
    /// The client gave up waiting.
    TimedOut,
    /// Any other error, classified.
    Error(String),
}

/// Everything one client session received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientRecord {
    /// Session id from the workload.
    pub session: u32,
    /// How the session looked on the wire.
    pub transport: Wire,
    /// The dc in the obfuscated2 header.
    pub dc: i16,
    /// What arrived, in order.
    pub events: Vec<ClientEvent>,
    /// How the session ended.
    pub end: SessionEnd,
}

/// The class of the proxy's reaction to a probe (bad input): what a bad client observed
/// ([`crate::client::Reaction`]) classified, or what became of the whole process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReactionClass {
    /// The connection stayed open and nothing came back within the probe window.
    Silence,
    /// The proxy closed the connection (EOF or RST).
    Close,
    /// The bytes were relayed somewhere (to the ME, or spliced to a domain).
    Relay,
    /// The whole proxy process exited (the C padded short-frame abort, §4.3).
    Crash,
    /// The probe was not sent to this side.
    NotRun,
}

impl ReactionClass {
    /// Lower-case name used in differences and divergence matchers.
    pub fn name(self) -> &'static str {
        match self {
            ReactionClass::Silence => "silence",
            ReactionClass::Close => "close",
            ReactionClass::Relay => "relay",
            ReactionClass::Crash => "crash",
            ReactionClass::NotRun => "not_run",
        }
    }
}

/// The observed reaction to one probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeRecord {
    /// Probe class name (see [`crate::workload::ProbeClass::name`]).
    pub class: String,
    /// What happened.
    pub reaction: ReactionClass,
    /// Free text (e.g. how long until close).
    pub detail: String,
}

/// Serde helper: bytes as a lower-case hex string.
pub mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serialise as hex.
    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    /// Deserialise from hex.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        hex::decode(s).map_err(serde::de::Error::custom)
    }
}

/// Serde helper: an optional 16-byte value as hex.
pub mod opt_hex16 {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serialise as hex or null.
    pub fn serialize<S: Serializer>(v: &Option<[u8; 16]>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => s.serialize_some(&hex::encode(b)),
            None => s.serialize_none(),
        }
    }

    /// Deserialise from hex or null.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<[u8; 16]>, D::Error> {
        let s: Option<String> = Option::deserialize(d)?;
        match s {
            None => Ok(None),
            Some(s) => {
                let v = hex::decode(s).map_err(serde::de::Error::custom)?;
                let arr: [u8; 16] = v
                    .try_into()
                    .map_err(|_| serde::de::Error::custom("expected 16 bytes"))?;
                Ok(Some(arr))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wires_keep_their_report_names_and_map_to_the_header_transport() {
        use Transport::{Abridged, Intermediate, PaddedIntermediate};
        let all = [
            (Wire::Abridged, "abridged", Abridged, false),
            (Wire::Intermediate, "intermediate", Intermediate, false),
            (Wire::Padded, "padded", PaddedIntermediate, true),
            (Wire::FakeTls, "fake_tls", PaddedIntermediate, true),
        ];
        for (wire, name, framing, padded) in all {
            let json = format!("\"{name}\"");
            assert_eq!(serde_json::to_string(&wire).unwrap(), json);
            assert_eq!(serde_json::from_str::<Wire>(&json).unwrap(), wire);
            assert_eq!(wire.framing(), framing);
            assert_eq!(wire.is_padded(), padded);
        }
    }
}
