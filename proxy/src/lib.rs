//! mtproxy: a Rust port of Telegram's C MTProxy.
//!
//! Layout:
//! * [`protocol`] — every wire format of the C proxy as pure code (sans-IO): bytes in,
//!   events and bytes out. It imports no tokio, opens no socket and reads no clock; time
//!   is always a parameter. The same code is driven by the production proxy and, in the
//!   opposite role, by the parity harness (fake middle-end, client simulator).
//! * [`config`] — the command line (C flags verbatim), `proxy-multi.conf` and the
//!   proxy-secret file.
//! * [`net`] — the tokio shell: listeners, client tasks, the middle-end pool, the stats
//!   listener.
//! * [`stats`] — counters under the C names and their renderings.
//!
//! `unsafe` is denied crate-wide and allowed only in [`sys`], which wraps the two system
//! calls (`TCP_WINDOW_CLAMP`, `nice`) that have no safe binding in `socket2` or `nix`.
// unsafe_code: denied, and allowed only in `sys` (window clamp, nice, inherited fds: no safe binding exists).
#![deny(unsafe_code)]

pub mod app;
pub mod check;
pub mod clock;
pub mod config;
pub mod handover;
pub mod links;
pub mod logging;
pub mod net;
pub mod os;
pub mod protocol;
pub mod stats;
pub mod supervisor;
pub mod sys;
