//! The first-bytes classifier: is this connection a fake-TLS ClientHello (§4.1, §12.1)?

/// What the first bytes of a connection say about fake TLS (§4.1, §12.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Classification {
    /// Too few bytes to decide.
    NeedMore,
    /// A fake-TLS ClientHello record; buffer `record_len` bytes (the 5-byte header included,
    /// i.e. `5 + L`) and hand them to [`super::validate_client_hello`].
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
