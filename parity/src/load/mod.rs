//! The load generator of `cargo xtask bench`: a lean middle end, precomputed client
//! streams, and one function per measurement (bulk throughput, connection rate, latency,
//! idle clients, first accept), plus `/proc` readers for the proxy's CPU time and RSS.
//!
//! The generator must cost less per byte than the proxy it measures, or it becomes the
//! bottleneck (on loopback both share one machine). Per echoed byte the proxy does
//! CTR-decrypt, CBC-encrypt, CBC-decrypt and CTR-encrypt; so here:
//! * bulk clients send **precomputed** ciphertext (header, frames and CTR keystream are
//!   prepared before the clock starts) and only count the bytes that come back;
//! * the [`BenchMe`] (the FakeMe's RPC server role without the per-request recording)
//!   answers bulk requests from a **precomputed** CBC stream of RPC_PROXY_ANS frames,
//!   armed per link once it knows which clients (`conn_id`s) it carries, and released
//!   frame by frame as requests arrive (an answer is never sent before its request). Its
//!   remaining per-byte work is one CBC-decrypt and the CRC check.
//!
//! Bulk answers have the request's size but not its bytes (echoing bytes would need a
//! CBC-encrypt per byte here). Byte-exact echo is the dual-run's job; the latency,
//! connection-rate and idle-client phases do use byte-exact echo and check it.
//!
//! * [`procfs`]: CPU time, RSS and kernel memory from `/proc`; the descriptor limit.
//! * [`cpu`]: CPU use of the proxy and of this generator over a measured window.
//! * [`bench_me`]: the [`BenchMe`].
//! * [`proxy`]: the [`BenchProxy`] under test and its [`ProxySpec`].
//! * [`script`]: warm-up packets, request payloads and precomputed client connections.
//! * [`phases`]: the measurements ([`first_accept`], [`bulk`], [`conn_rate`], [`latency`],
//!   [`IdleClients`]).
//!
//! The items are re-exported here for the xtask and the drills; inside the crate, name the
//! module that defines them.

pub mod bench_me;
pub mod cpu;
pub mod phases;
pub mod procfs;
pub mod proxy;
pub mod script;

pub use bench_me::{BenchMe, MeMode};
pub use cpu::{idle_cpu, CpuUse, CpuWindow};
pub use phases::{
    bulk, conn_rate, first_accept, latency, BulkResult, BulkSpec, ConnRateResult, IdleClients,
    LatencyResult, Startup,
};
pub use procfs::{
    cpu_seconds, cpu_times, cpu_times_tree, kernel_unreclaimable, parse_stat_cpu, parse_stat_times,
    parse_status_rss, raise_nofile, rss, tcp_buffer_memory, CpuTimes, Rss,
};
pub use proxy::{fresh_proxy_secret, fresh_secret, BenchProxy, ProxySpec};
pub use script::{request_payload, warmup_packet, MIN_REQUEST, WARMUP_LEN};
