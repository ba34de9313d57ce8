//! The protocol core: every wire format of the C MTProxy as pure code.
//!
//! Invariant (enforced by a test in `xtask`): nothing under this module imports tokio,
//! opens a socket (`TcpStream`, `TcpListener`, `UdpSocket`) or reads a clock
//! (`Instant::now`, `SystemTime::now`). Time is passed in as a parameter (unix seconds
//! where the wire carries unix time).
//!
//! Modules, named after the sections of `c-mtproxy.md`:
//! * [`codec`] — the byte cursor ([`codec::Reader`]) the decoders read their fields with.
//! * [`crypto`] — AES-256-CTR / AES-256-CBC streams, hashes, HMAC, CRC32/CRC32C (§4.2, §5.2, §5.4).
//! * [`obfuscated2`] — the 64-byte client header, both roles (§4.2).
//! * [`transport`] — abridged, intermediate and padded intermediate framing, quick acks (§4.3).
//! * [`packet`] — the acceptance rules before forwarding (§4.3).
//! * [`rpc`] — the middle-end RPC link, both roles (§5).
//! * [`fake_tls`] — fake-TLS ClientHello/ServerHello and records (§4.4).
//! * [`dh`] — the DH parameters of `net/net-crypto-dh.c` (§5.6).

pub mod codec;
pub mod crypto;
pub mod dh;
pub mod fake_tls;
pub mod obfuscated2;
pub mod packet;
pub mod rpc;
pub mod session;
pub mod transport;
