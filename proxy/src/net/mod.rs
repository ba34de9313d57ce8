//! The tokio shell around the protocol core: sockets, readiness, budgets and the binding
//! of client sessions to middle-end links. Every protocol decision is the core's
//! ([`crate::protocol::session::ClientSession`], [`crate::protocol::rpc::RpcLink`]); the
//! shell never names the application layer (`app`, `supervisor`, …: a tidy test checks).
//!
//! * [`shared`] — the settings and state every task of a process shares.
//! * [`serve`] — accept loops, the `-C` cap, the drain.
//! * [`admission`] — at the cap, the oldest unauthenticated connection makes room.
//! * [`listener`] — client listening sockets with C's socket options.
//! * [`client`] — one task per client, driving its [`crate::protocol::session::ClientSession`].
//! * [`sock`] — socket reads and writes without surplus system calls.
//! * [`me_pool`] — the middle-end links per target and the pick of one for a client.
//! * [`me_link`] — one middle-end link's tasks: connect, handshake, read, write, reconnect.
//! * [`inbox`] — the queue from a middle-end link to one client task, with its budgets.
//! * [`replay_store`] — the instance-wide replay caches (fake-TLS randoms, obfuscated2
//!   header nonces).
//! * [`fronting`] — `-D`: the domain registry, the probe, the relay to the real site.
//! * [`stats_http`] — the `-p` stats listener.

pub mod admission;
pub mod client;
pub mod fronting;
pub mod inbox;
pub mod listener;
pub mod me_link;
pub mod me_pool;
pub mod replay_store;
pub mod serve;
pub mod shared;
pub mod sock;
pub mod stats_http;
