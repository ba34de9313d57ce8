//! The parity harness: builder fixtures shared by the dual-run, the drills and the cutover rehearsal.
#![forbid(unsafe_code)]

pub mod client;
pub mod fake_me;
