//! The tokio shell around the protocol core: one task per connection.
//!
//! * [`listener`] — client listening sockets with C's socket options.
//! * [`stats_http`] — the `-p` stats listener.

pub mod listener;
pub mod stats_http;
