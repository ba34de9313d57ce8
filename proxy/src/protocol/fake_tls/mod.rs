//! Fake TLS: the `-D` / "ee"-secret transport of `net/net-tcp-rpc-ext-server.c` (§4.4, §12.1).
//!
//! A client that knows a `-S` secret disguises its connection as TLS 1.3 to one of the `-D`
//! domains. The proxy accepts a single ClientHello record whose `client_random` is an
//! HMAC of the record under the secret, answers with a ServerHello whose `server_random`
//! is an HMAC too, and from then on both sides exchange the obfuscated2 stream inside
//! `17 03 03` application-data records. Anything else is spliced to a real domain.
//!
//! Both roles live here, as pure functions over bytes (no IO, no clock):
//! * server (the proxy): [`classify_first_bytes`], [`validate_client_hello`] with a
//!   [`ReplayCache`], [`build_server_hello`], the record layer ([`ClientRecordDecoder`],
//!   [`encode_app_data_records`]) and the sans-IO half of the domain probe
//!   ([`probe_client_hello`], [`parse_probe_response`], [`aggregate_probe_results`]);
//! * client (the parity harness): [`build_client_hello`] and [`verify_server_hello`].
//!
//! Life of a fake-TLS connection, server side:
//! 1. [`classify_first_bytes`] on the first bytes: `16 03 01 XX` with `XX` in `0x02..=0x7f`
//!    is fake TLS (upstream `0613f76`, §12.1); anything else is spliced to the default domain.
//! 2. Buffer the whole record, then [`validate_client_hello`]. A rejection names the domain
//!    to splice to. (If the local port is 80, the runtime splices to
//!    [`sni_domain`]'s domain, or the default one, before calling it — C's check 2.)
//! 3. Send [`build_server_hello`]'s bytes.
//! 4. Feed client bytes to a [`ClientRecordDecoder`]: its first 64 payload bytes are the
//!    obfuscated2 header; wrap everything sent back with [`encode_app_data_records`].

mod classify;
mod client;
mod client_hello;
mod probe;
mod record;
mod replay;
mod server_hello;
mod wire;

pub use classify::{classify_first_bytes, Classification};
pub use client::{
    build_client_hello, verify_server_hello, HelloShape, ServerHelloInfo, VerifyError,
};
pub use client_hello::{
    authenticate_client_hello, finish_client_hello, sni_domain, start_client_hello,
    validate_client_hello, AcceptedHello, HelloAuth, HelloReject, HelloStart, ReplayAnswer,
    DEFAULT_DOMAIN,
};
pub use probe::{
    aggregate_probe_results, parse_probe_response, probe_client_hello, ProbeError, ProbeFacts,
    PROBE_CONNECTIONS, PROBE_HELLO_LEN,
};
pub use record::{encode_app_data_records, ClientRecordDecoder, RecordError};
pub use replay::{
    ReplayCache, ReplayCheck, ReplayVerdict, DEFAULT_MAX_REPLAY_ENTRIES, HELLO_MIN_RETENTION_SECS,
    REPLAY_ENTRY_LIFETIME_SECS,
};
pub use server_hello::{
    build_server_hello, build_server_hello_from_parts, DomainProfile, ServerHelloParts,
};
pub use wire::{
    APP_DATA_HEADER, CHANGE_CIPHER_SPEC, MAX_CLIENT_HELLO_LEN, MAX_SERVER_RECORD_PAYLOAD,
};

#[cfg(test)]
mod props;
