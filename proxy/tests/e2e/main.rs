//! End-to-end tests of the `mtproto-proxy` binary (issue #3): the real process on
//! loopback, against the parity harness's fake middle-end (FakeMe) and client simulator.
//!
//! Every scenario is written once as `async fn scenario(subject: &Subject)` and runs for the
//! candidate (this workspace's binary) and, when `MTPROXY_C_BIN` names a C build, for that
//! reference too. The assertions differ only where a documented divergence
//! (`parity/divergences.json`, `c-mtproxy.md`) says so; each such branch names it.
//!
//! Each test starts its own FakeMes and proxy on OS-chosen loopback ports, and waits on
//! FakeMe or process events with timeouts (bounded `/stats` polling only where nothing
//! else signals, e.g. a link becoming ready inside the proxy or a respawned worker).

mod bad_clients;
mod handover;
mod me_link;
mod signals;
mod startup;
mod stats;
mod support;
mod traffic;
mod worker_logging;
mod workers;
