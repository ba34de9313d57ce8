//! The fake-TLS wire constants and the big-endian helpers every part shares.

use crate::protocol::codec::Reader;

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

/// Reads a big-endian u16 at `pos`, if in bounds.
pub(crate) fn be16(buf: &[u8], pos: usize) -> Option<usize> {
    Reader::new(buf.get(pos..)?).u16_be().map(usize::from)
}

/// Appends a big-endian u16 (saturating at `u16::MAX`, which only a caller error reaches).
pub(crate) fn put16(out: &mut Vec<u8>, v: usize) {
    out.extend_from_slice(&u16::try_from(v).unwrap_or(u16::MAX).to_be_bytes());
}
