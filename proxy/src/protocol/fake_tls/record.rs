//! The record layer after the handshake (§4.4.3, §4.4.4).

use bytes::{Buf, BufMut, BytesMut};

use super::wire::{APP_DATA_HEADER, CHANGE_CIPHER_SPEC, MAX_SERVER_RECORD_PAYLOAD};

/// The shortest first application-data record: it must hold the 64-byte obfuscated2 header.
const MIN_FIRST_RECORD: usize = 64;

/// Why the client's record stream is invalid; C closes the connection (`fail_connection`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The first 6 bytes are not `14 03 03 00 01 01` ("bad client dummy ChangeCipherSpec").
    #[error("bad client dummy ChangeCipherSpec: {0:02x?}")]
    BadChangeCipherSpec([u8; 6]),
    /// A record header that is not `17 03 03` ("expect TLS header").
    #[error("expected an application-data record, got header {0:02x?}")]
    UnexpectedRecord([u8; 3]),
    /// The first application-data record is shorter than 64 bytes.
    #[error("first TLS record of {0} bytes is shorter than 64")]
    FirstRecordTooShort(usize),
}

/// Where the decoder is in the client's stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Expecting the dummy ChangeCipherSpec.
    ChangeCipherSpec,
    /// Expecting a record header; `first` for the record that carries the obfuscated2 header.
    Header { first: bool },
    /// Inside a record with `left` payload bytes to go.
    Payload { left: usize },
}

/// Decodes the client→proxy stream after the ServerHello into payload bytes.
///
/// The stream is `14 03 03 00 01 01`, then `17 03 03 <len BE> <len bytes>` records of any
/// size (empty ones included). The first record must be at least 64 bytes long; its first
/// 64 payload bytes are the obfuscated2 header. Payload comes out as soon as it arrives, so
/// any split of the input yields the same concatenated output.
///
/// Divergences (timing only, the connection is closed either way): C checks the CCS and
/// the first record's header together once 11 bytes are buffered, and the 64-byte minimum
/// once the whole first record is buffered; this decoder checks each as soon as its bytes
/// are there.
#[derive(Debug, Clone)]
pub struct ClientRecordDecoder {
    /// The parsing state.
    state: State,
}

impl Default for ClientRecordDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ClientRecordDecoder {
    /// A decoder expecting the dummy ChangeCipherSpec.
    pub fn new() -> Self {
        Self {
            state: State::ChangeCipherSpec,
        }
    }

    /// Consumes what it can from `src` and returns the payload bytes found, `Ok(None)` when
    /// none are available yet.
    ///
    /// # Errors
    /// A [`RecordError`] when the stream breaks the rules. Payload decoded before the bad
    /// bytes in the same call is returned first; the bad bytes stay in `src`, so the next
    /// call reports the error.
    pub fn decode(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, RecordError> {
        let mut out = BytesMut::new();
        loop {
            match self.state {
                State::ChangeCipherSpec => {
                    let Some(head) = src.get(..CHANGE_CIPHER_SPEC.len()) else {
                        break;
                    };
                    if head != CHANGE_CIPHER_SPEC {
                        let mut got = [0u8; 6];
                        got.copy_from_slice(head);
                        return Err(RecordError::BadChangeCipherSpec(got));
                    }
                    src.advance(CHANGE_CIPHER_SPEC.len());
                    self.state = State::Header { first: true };
                }
                State::Header { first } => {
                    let Some(head) = src.get(..5) else {
                        break;
                    };
                    let err = if head[..3] != APP_DATA_HEADER {
                        Some(RecordError::UnexpectedRecord([head[0], head[1], head[2]]))
                    } else {
                        let len = usize::from(head[3]) << 8 | usize::from(head[4]);
                        if first && len < MIN_FIRST_RECORD {
                            Some(RecordError::FirstRecordTooShort(len))
                        } else {
                            src.advance(5);
                            self.state = State::Payload { left: len };
                            None
                        }
                    };
                    if let Some(e) = err {
                        if out.is_empty() {
                            return Err(e);
                        }
                        break;
                    }
                }
                State::Payload { left } => {
                    if left == 0 {
                        self.state = State::Header { first: false };
                        continue;
                    }
                    if src.is_empty() {
                        break;
                    }
                    let n = left.min(src.len());
                    out.extend_from_slice(&src[..n]);
                    src.advance(n);
                    self.state = State::Payload { left: left - n };
                }
            }
        }
        Ok(if out.is_empty() { None } else { Some(out) })
    }
}

/// Wraps proxy→client bytes into `17 03 03 <len BE>` records of at most 1425 payload bytes.
///
/// Empty input writes nothing. C cuts whatever is queued at the time into 1425-byte
/// records, so coalesced writes share a record (§4.4.4).
pub fn encode_app_data_records(payload: &[u8], dst: &mut impl BufMut) {
    for chunk in payload.chunks(MAX_SERVER_RECORD_PAYLOAD) {
        dst.put_slice(&APP_DATA_HEADER);
        // A chunk is at most 1425 bytes, so the length fits in u16.
        dst.put_u16(u16::try_from(chunk.len()).unwrap_or(u16::MAX));
        dst.put_slice(chunk);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client_stream(records: &[&[u8]]) -> Vec<u8> {
        let mut s = CHANGE_CIPHER_SPEC.to_vec();
        for r in records {
            s.extend_from_slice(&[0x17, 3, 3]);
            s.extend_from_slice(&(r.len() as u16).to_be_bytes());
            s.extend_from_slice(r);
        }
        s
    }

    #[test]
    fn decodes_ccs_then_records() {
        let first = [7u8; 64];
        let stream = client_stream(&[&first, b"", b"abc"]);
        let mut d = ClientRecordDecoder::new();
        let mut src = BytesMut::from(&stream[..]);
        let out = d.decode(&mut src).unwrap().unwrap();
        assert_eq!(out.len(), 67);
        assert_eq!(&out[64..], b"abc");
        assert!(src.is_empty());
        assert_eq!(d.decode(&mut src), Ok(None));
    }

    #[test]
    fn rejects_a_short_first_record_and_bad_headers() {
        let mut d = ClientRecordDecoder::new();
        let mut src = BytesMut::from(&client_stream(&[&[0u8; 63]])[..]);
        assert_eq!(
            d.decode(&mut src),
            Err(RecordError::FirstRecordTooShort(63))
        );

        let mut d = ClientRecordDecoder::new();
        let mut src = BytesMut::from(&[0x14, 3, 3, 0, 1, 2][..]);
        assert!(matches!(
            d.decode(&mut src),
            Err(RecordError::BadChangeCipherSpec(_))
        ));

        let mut stream = client_stream(&[&[1u8; 64]]);
        stream.extend_from_slice(&[0x15, 3, 3, 0, 2, 2, 40]);
        let mut d = ClientRecordDecoder::new();
        let mut src = BytesMut::from(&stream[..]);
        assert_eq!(d.decode(&mut src).unwrap().unwrap().len(), 64);
        assert_eq!(
            d.decode(&mut src),
            Err(RecordError::UnexpectedRecord([0x15, 3, 3]))
        );
    }

    #[test]
    fn encoder_cuts_at_1425() {
        let mut out = Vec::new();
        encode_app_data_records(&[9u8; 3000], &mut out);
        assert_eq!(&out[..5], &[0x17, 3, 3, 0x05, 0x91]);
        assert_eq!(&out[1430..1435], &[0x17, 3, 3, 0x05, 0x91]);
        assert_eq!(&out[2860..2865], &[0x17, 3, 3, 0x00, 150]);
        assert_eq!(out.len(), 3000 + 15);
        let mut none = Vec::new();
        encode_app_data_records(&[], &mut none);
        assert!(none.is_empty());
    }
}
