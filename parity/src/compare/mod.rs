//! Normalise and diff what the two sides observed.
//!
//! * (a) [`me_stream`]: the request streams the two FakeMes recorded, per session, as
//!   sequences of normalised records (flags, tag, payload hash, dc, transport, and the ordinal
//!   of the ME connection within the session); conn ids, ports and addresses are redacted.
//! * (b) [`client_stream`]: what each client received, normalised so that the padded
//!   transport's random padding and its alternative two-packet quick-ack encoding (§4.3) do
//!   not count as differences.
//! * (c) [`probes`]: the reaction class per bad input.
//! * (d) [`slo`]: success rate, latency percentiles, throughput, start-up and shutdown time
//!   against thresholds calibrated by a noise baseline ([`NoiseBaseline`], [`Thresholds`]).
//! * [`stats`]: the `/stats` keys of the reference that the candidate must serve too.
//!
//! Every comparison returns a [`Comparison`] ([`finding`]) holding *all* differences;
//! [`crate::divergences::DivergenceList::apply`] then marks the known divergences and
//! truncates the listed differences.
//!
//! The items are re-exported here for callers outside the crate; inside it, name the
//! module that defines them.

pub mod client_stream;
pub mod finding;
pub mod me_stream;
pub mod probes;
pub mod slo;
pub mod stats;

pub use client_stream::{compare_client_streams, normalise_client, NormClientEvent};
pub use finding::{Comparison, Difference};
pub use me_stream::{compare_me_streams, normalise_me, NormMeRecord};
pub use probes::compare_probes;
pub use slo::{
    compare_lifecycle, compare_slos, NoiseBaseline, PhaseSpread, Threshold, ThresholdConfig,
    Thresholds,
};
pub use stats::compare_stats_keys;
