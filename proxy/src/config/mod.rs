//! Configuration: the command line, `proxy-multi.conf` and the proxy-secret file.
//!
//! Pure parsing lives here (no sockets); name resolution of config hosts is done by
//! the caller through a resolver callback so the parser stays testable.

pub mod cli;
pub mod multi_conf;
pub mod secret;
