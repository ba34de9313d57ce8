//! Drills: what a production proxy must survive, measured on any `mtproto-proxy` binary
//! (the C build or this port) through the parity fixtures — [`parity::process`] for the
//! process, [`parity::fake_me`] for the middle ends, [`parity::client`] for clients and
//! [`parity::site`] for the site behind `-D`.
//!
//! Each drill states its rule, measures both binaries, and returns figures and a verdict
//! (PASS, WARN, FAIL, or SKIP where the machine cannot run it) with the threshold it used.
//! `cargo xtask drill` runs the suite and writes `artifacts/drills/drills-report.json`
//! (schema: `artifacts/drills/SCHEMA.md`), `drills-report.md` and `drills.svg`. In
//! `cargo test` each drill runs once at [`Scale::Tiny`] against the candidate, to prove the
//! drill code works. `cargo xtask cutover` runs the [`cutover`] rehearsal.
//!
//! Layout: [`setup`] (what a run is set up with) and [`outcome`] (what a drill reports) are
//! the leaves the rest builds on; [`proc`] reads the proxy process, [`stand`] starts a
//! proxy with its middle ends, [`suite`] holds the drills, and [`report`] runs them and
//! writes the report. This file only declares the modules and re-exports their main types.
#![forbid(unsafe_code)]

pub mod cutover;
pub mod outcome;
pub mod proc;
pub mod report;
pub mod setup;
pub mod stand;
pub mod suite;

pub use outcome::{Figure, Outcome, Sample, Verdict};
/// The binary a drill runs against: [`parity::subject::Subject`], under the name this crate
/// gave it before it moved to parity (kept until the callers outside the crate name
/// `Subject`).
pub use setup::{Scale, Settings};
pub use suite::names;
