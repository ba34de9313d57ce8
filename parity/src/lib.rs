//! The parity harness: builder fixtures shared by the dual-run, the drills and the cutover
//! rehearsal.
//!
//! * [`fake_me`]: the fake Telegram middle-end (the RPC server role of the protocol core).
//! * [`client`]: the MTProto client simulator (obfuscated2 and fake-TLS clients, bad clients).
//! * [`load`]: the load generator of `cargo xtask bench` (bench ME, precomputed clients).
//! * [`driver`]: the dual-run's traffic driver (FakeMe + client simulator).
//! * [`process`]: spawn a proxy binary with a generated config, wait for readiness, `/stats`,
//!   signals, timed shutdown.
//! * [`workload`]: the seeded workload (phases, sessions, MTProto-shaped packets, probes).
//! * [`transcript`]: records the FakeMe and the client simulator produce.
//! * [`metrics`]: latency histograms, error classes, throughput, lifecycle times.
//! * [`compare`]: normalisation, diffs, SLO thresholds calibrated by a noise baseline.
//! * [`divergences`]: the known-divergence list (`parity/divergences.json`), applied to the
//!   comparisons' findings.
//! * [`report`]: the versioned JSON report, the summary text and the latency SVG.
//! * [`runtime`]: local processes or docker images.
//! * [`subject`]: the proxy binary under test (candidate or reference) and how to start it.
//! * [`dualrun`]: the orchestration ([`dualrun::run`]) and the [`dualrun::Driver`] trait the
//!   FakeMe/client simulator implement.
#![forbid(unsafe_code)]

pub mod client;
pub mod compare;
pub mod divergences;
pub mod driver;
pub mod dualrun;
pub mod fake_me;
pub mod image;
pub mod load;
pub mod metrics;
pub mod process;
pub mod report;
pub mod runtime;
pub mod site;
pub mod subject;
pub mod transcript;
pub mod workload;
