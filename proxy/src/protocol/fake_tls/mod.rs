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

mod client;
mod client_hello;
mod probe;
mod record;
mod replay;
mod server_hello;

pub use client::{
    build_client_hello, verify_server_hello, HelloShape, ServerHelloInfo, VerifyError,
};
pub use client_hello::{
    finish_client_hello, sni_domain, start_client_hello, validate_client_hello, AcceptedHello,
    HelloReject, HelloStart, ReplayAnswer, DEFAULT_DOMAIN,
};
pub use probe::{
    aggregate_probe_results, parse_probe_response, probe_client_hello, ProbeError, ProbeFacts,
    PROBE_CONNECTIONS, PROBE_HELLO_LEN,
};
pub use record::{encode_app_data_records, ClientRecordDecoder, RecordError};
pub use replay::{
    ReplayCache, ReplayCheck, DEFAULT_MAX_REPLAY_ENTRIES, REPLAY_ENTRY_LIFETIME_SECS,
};
pub use server_hello::{
    build_server_hello, build_server_hello_from_parts, DomainProfile, ServerHelloParts,
};

/// The largest ClientHello the proxy accepts, header included: `5 + L ≤ 4096`.
///
/// C copies at most 4096 buffered bytes into a stack buffer, and rejects a hello that is
/// longer than what it copied ("Too big ClientHello"). So the accepted record length is
/// `512 ≤ L ≤ 4091` (§12.1, measured on the GPS build: 4091 accepted, 4092 rejected).
pub const MAX_CLIENT_HELLO_LEN: usize = 4096;

/// The largest payload of one proxy→client application-data record (§4.4.4).
pub const MAX_SERVER_RECORD_PAYLOAD: usize = 1425;

/// The dummy ChangeCipherSpec record both sides send once: `14 03 03 00 01 01`.
pub const CHANGE_CIPHER_SPEC: [u8; 6] = [0x14, 0x03, 0x03, 0x00, 0x01, 0x01];

/// The header of an application-data record, without its length: `17 03 03`.
pub const APP_DATA_HEADER: [u8; 3] = [0x17, 0x03, 0x03];

/// Offset of `client_random` (and of `server_random`) in a hello record.
pub(crate) const RANDOM_OFFSET: usize = 11;

/// Byte length of `client_random` / `server_random`.
pub(crate) const RANDOM_LEN: usize = 32;

/// What the first bytes of a connection say about fake TLS (§4.1, §12.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Classification {
    /// Too few bytes to decide.
    NeedMore,
    /// A fake-TLS ClientHello record; buffer `record_len` bytes (the 5-byte header included,
    /// i.e. `5 + L`) and hand them to [`validate_client_hello`].
    FakeTls {
        /// The whole record's length, header included: `5 + L`, in `517..=32772`.
        record_len: usize,
    },
    /// Not fake TLS. With `-D` C splices such a connection to the default domain
    /// ("Expected TLS-transport").
    NotTls,
}

/// Classifies the first bytes of a client connection (the newer rule, §12.1).
///
/// Fake TLS is `16 03 01 XX ..` with `XX` in `0x02..=0x7f`: a handshake record whose length
/// field is `0x0200..=0x7fff`. (C compares the first word as a signed int, so `XX ≥ 0x80`
/// fails; dc0c7f3 needed `XX == 0x02`.) The answer is decided as soon as a prefix byte
/// mismatches; a match needs 5 bytes to report the record length.
///
/// C only looks once 9 bytes are buffered; that changes when a non-TLS connection is
/// spliced, never where to (the runtime may wait for more bytes before acting).
pub fn classify_first_bytes(buf: &[u8]) -> Classification {
    for (i, expected) in [0x16u8, 0x03, 0x01].into_iter().enumerate() {
        match buf.get(i) {
            None => return Classification::NeedMore,
            Some(&b) if b != expected => return Classification::NotTls,
            Some(_) => {}
        }
    }
    let Some(&hi) = buf.get(3) else {
        return Classification::NeedMore;
    };
    if !(0x02..=0x7f).contains(&hi) {
        return Classification::NotTls;
    }
    let Some(&lo) = buf.get(4) else {
        return Classification::NeedMore;
    };
    Classification::FakeTls {
        record_len: 5 + usize::from(hi) * 256 + usize::from(lo),
    }
}

/// Reads a big-endian u16 at `pos`, if in bounds.
pub(crate) fn be16(buf: &[u8], pos: usize) -> Option<usize> {
    let b = buf.get(pos..pos.checked_add(2)?)?;
    Some(usize::from(b[0]) << 8 | usize::from(b[1]))
}

/// Appends a big-endian u16 (saturating at `u16::MAX`, which only a caller error reaches).
pub(crate) fn put16(out: &mut Vec<u8>, v: usize) {
    out.extend_from_slice(&u16::try_from(v).unwrap_or(u16::MAX).to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_follows_the_newer_upstream_rule() {
        use Classification::*;
        assert_eq!(classify_first_bytes(&[]), NeedMore);
        assert_eq!(classify_first_bytes(&[0x16, 0x03]), NeedMore);
        assert_eq!(classify_first_bytes(&[0x16, 0x03, 0x01, 0x02]), NeedMore);
        assert_eq!(classify_first_bytes(&[0x17]), NotTls);
        assert_eq!(
            classify_first_bytes(&[0x16, 0x03, 0x03, 0x02, 0x00]),
            NotTls
        );
        assert_eq!(
            classify_first_bytes(&[0x16, 0x03, 0x01, 0x01, 0xff]),
            NotTls
        );
        assert_eq!(
            classify_first_bytes(&[0x16, 0x03, 0x01, 0x80, 0x00]),
            NotTls
        );
        assert_eq!(
            classify_first_bytes(&[0x16, 0x03, 0x01, 0x02, 0x00]),
            FakeTls { record_len: 517 }
        );
        assert_eq!(
            classify_first_bytes(&[0x16, 0x03, 0x01, 0x06, 0xd8, 0x01]),
            FakeTls {
                record_len: 5 + 1752
            }
        );
        assert_eq!(
            classify_first_bytes(&[0x16, 0x03, 0x01, 0x7f, 0xff]),
            FakeTls {
                record_len: 5 + 0x7fff
            }
        );
    }
}

#[cfg(test)]
mod props;
