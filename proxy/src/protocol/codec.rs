//! One way to read the wire formats: a cursor over a byte slice, in the style of rustls's
//! `codec::Reader`.
//!
//! A decoder reads its integers and fixed fields through a [`Reader`]. A read either
//! returns the whole item and moves the cursor past it, or returns `None` and leaves the
//! cursor where it was: a short input never panics and never yields a made-up value. The caller turns `None` into its own error (with its C code),
//! or into "need more bytes" for an incremental decoder.
//!
//! ```
//! use mtproxy::protocol::codec::Reader;
//!
//! let mut r = Reader::new(&[0xaa, 0x87, 0xcb, 0x7a, 0x01, 0x02, 0x03]);
//! assert_eq!(r.u32_le(), Some(0x7acb_87aa));
//! assert_eq!(r.u32_le(), None, "only 3 bytes left");
//! assert_eq!(r.u16_be(), Some(0x0102));
//! assert!(r.expect_empty("example").is_err(), "one byte is left over");
//! assert_eq!(r.rest(), &[0x03]);
//! assert_eq!((r.used(), r.left()), (7, 0));
//! ```

/// Bytes left over where a message should have ended ([`Reader::expect_empty`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{left} trailing byte(s) after {what}")]
pub struct TrailingData {
    /// What was being read.
    pub what: &'static str,
    /// How many bytes were left over.
    pub left: usize,
}

/// A read cursor over a byte slice.
///
/// Reads that do not fit return `None` and consume nothing, so `used() + left()` always
/// equals the input length. Slices handed out borrow the input (`'a`), not the reader.
/// [`Reader::peek`] looks ahead at bytes; a clone of the reader looks ahead at any typed
/// value (`r.clone().u32_le()`).
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`.
    pub const fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// The next `n` bytes, consumed; `None` (nothing consumed) when fewer are left.
    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let out = self.peek(n)?;
        self.pos += n;
        Some(out)
    }

    /// The next `n` bytes without consuming them; `None` when fewer are left.
    pub fn peek(&self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        self.buf.get(self.pos..end)
    }

    /// The next `N` bytes as an array, consumed; `None` (nothing consumed) when fewer are
    /// left.
    pub fn take_array<const N: usize>(&mut self) -> Option<[u8; N]> {
        let arr = <[u8; N]>::try_from(self.peek(N)?).ok()?;
        self.pos += N;
        Some(arr)
    }

    /// Skips `n` bytes; `None` (nothing consumed) when fewer are left.
    pub fn skip(&mut self, n: usize) -> Option<()> {
        self.take(n).map(|_| ())
    }

    /// A reader over the next `n` bytes, which this one skips (for length-prefixed parts);
    /// `None` (nothing consumed) when fewer are left.
    pub fn sub(&mut self, n: usize) -> Option<Reader<'a>> {
        self.take(n).map(Reader::new)
    }

    /// Everything not read yet, consumed.
    pub fn rest(&mut self) -> &'a [u8] {
        let out = self.buf.get(self.pos..).unwrap_or_default();
        self.pos = self.buf.len();
        out
    }

    /// The bytes read so far (the input up to the cursor), e.g. for a checksum over
    /// everything before a trailer.
    pub fn consumed(&self) -> &'a [u8] {
        self.buf.get(..self.pos).unwrap_or_default()
    }

    /// How many bytes have been read.
    pub fn used(&self) -> usize {
        self.pos
    }

    /// How many bytes are left.
    pub fn left(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Whether any byte is left.
    pub fn any_left(&self) -> bool {
        self.pos < self.buf.len()
    }

    /// Checks that everything was read.
    ///
    /// # Errors
    /// [`TrailingData`] naming `what` when bytes are left over.
    pub fn expect_empty(&self, what: &'static str) -> Result<(), TrailingData> {
        match self.left() {
            0 => Ok(()),
            left => Err(TrailingData { what, left }),
        }
    }

    /// Runs `read` on this reader and returns its value only if it succeeded and consumed
    /// every byte: for fixed-size messages, where a short input and trailing data are the
    /// same error.
    pub fn complete<T>(mut self, read: impl FnOnce(&mut Self) -> Option<T>) -> Option<T> {
        let value = read(&mut self)?;
        (!self.any_left()).then_some(value)
    }

    /// One byte.
    pub fn u8(&mut self) -> Option<u8> {
        self.take_array::<1>().map(|[b]| b)
    }

    /// A big-endian u16.
    pub fn u16_be(&mut self) -> Option<u16> {
        self.take_array().map(u16::from_be_bytes)
    }

    /// A little-endian u16.
    pub fn u16_le(&mut self) -> Option<u16> {
        self.take_array().map(u16::from_le_bytes)
    }

    /// A little-endian i16.
    pub fn i16_le(&mut self) -> Option<i16> {
        self.take_array().map(i16::from_le_bytes)
    }

    /// A big-endian 24-bit unsigned integer (TLS handshake lengths).
    pub fn u24_be(&mut self) -> Option<u32> {
        self.take_array::<3>()
            .map(|[a, b, c]| u32::from_be_bytes([0, a, b, c]))
    }

    /// A little-endian 24-bit unsigned integer (abridged transport lengths).
    pub fn u24_le(&mut self) -> Option<u32> {
        self.take_array::<3>()
            .map(|[a, b, c]| u32::from_le_bytes([a, b, c, 0]))
    }

    /// A big-endian u32.
    pub fn u32_be(&mut self) -> Option<u32> {
        self.take_array().map(u32::from_be_bytes)
    }

    /// A little-endian u32.
    pub fn u32_le(&mut self) -> Option<u32> {
        self.take_array().map(u32::from_le_bytes)
    }

    /// A little-endian i32.
    pub fn i32_le(&mut self) -> Option<i32> {
        self.take_array().map(i32::from_le_bytes)
    }

    /// A little-endian u64.
    pub fn u64_le(&mut self) -> Option<u64> {
        self.take_array().map(u64::from_le_bytes)
    }

    /// A little-endian i64.
    pub fn i64_le(&mut self) -> Option<i64> {
        self.take_array().map(i64::from_le_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn typed_reads_follow_their_byte_order() {
        let bytes: Vec<u8> = (1..=8).collect();
        let r = || Reader::new(&bytes);
        assert_eq!(r().u8(), Some(1));
        assert_eq!(r().u16_be(), Some(0x0102));
        assert_eq!(r().u16_le(), Some(0x0201));
        assert_eq!(Reader::new(&[0xfe, 0xff]).i16_le(), Some(-2));
        assert_eq!(r().u24_be(), Some(0x01_0203));
        assert_eq!(r().u24_le(), Some(0x03_0201));
        assert_eq!(r().u32_be(), Some(0x0102_0304));
        assert_eq!(r().u32_le(), Some(0x0403_0201));
        assert_eq!(Reader::new(&[0xfe, 0xff, 0xff, 0xff]).i32_le(), Some(-2));
        assert_eq!(r().u64_le(), Some(0x0807_0605_0403_0201));
        assert_eq!(Reader::new(&[0xff; 8]).i64_le(), Some(-1));
        assert_eq!(r().take_array::<3>(), Some([1, 2, 3]));
        assert_eq!(r().take_array::<0>(), Some([]));
    }

    #[test]
    fn short_reads_return_none_and_consume_nothing() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert_eq!(r.u32_le(), None);
        assert_eq!(r.i32_le(), None);
        assert_eq!(r.u64_le(), None);
        assert_eq!(r.take(4), None);
        assert_eq!(r.take_array::<4>(), None);
        assert_eq!(r.skip(4), None);
        assert!(r.sub(4).is_none());
        assert_eq!(r.take(usize::MAX), None, "no overflow on a huge length");
        assert_eq!(r.used(), 0);
        assert_eq!(r.u24_be(), Some(0x01_0203));
        assert_eq!(r.u8(), None);
        assert_eq!(r.take(0), Some(&[][..]), "an empty take always fits");
        assert_eq!((r.used(), r.left(), r.any_left()), (3, 0, false));
        assert_eq!(Reader::new(&[]).u8(), None);
    }

    #[test]
    fn cursor_accessors_track_position() {
        let data = [9u8, 8, 7, 6, 5];
        let mut r = Reader::new(&data);
        assert_eq!(r.peek(2), Some(&[9u8, 8][..]));
        assert_eq!(r.used(), 0, "peek consumes nothing");
        assert_eq!(r.consumed(), &[] as &[u8]);
        r.skip(2).unwrap();
        assert_eq!(r.consumed(), &[9, 8]);
        assert_eq!((r.used(), r.left(), r.any_left()), (2, 3, true));
        let mut sub = r.sub(2).unwrap();
        assert_eq!(sub.rest(), &[7, 6]);
        assert_eq!(sub.left(), 0);
        assert_eq!(r.used(), 4, "the parent skipped the sub-reader's bytes");
        assert_eq!(r.rest(), &[5]);
        assert_eq!(r.rest(), &[] as &[u8], "rest after rest is empty");
        assert_eq!(r.consumed(), &data);
    }

    #[test]
    fn expect_empty_reports_trailing_bytes() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert_eq!(
            r.expect_empty("thing"),
            Err(TrailingData {
                what: "thing",
                left: 3
            })
        );
        assert_eq!(
            r.expect_empty("thing").unwrap_err().to_string(),
            "3 trailing byte(s) after thing"
        );
        r.skip(3).unwrap();
        assert_eq!(r.expect_empty("thing"), Ok(()));
    }

    #[test]
    fn complete_needs_exactly_the_bytes_read() {
        let pair = |r: &mut Reader<'_>| Some((r.u8()?, r.u8()?));
        assert_eq!(Reader::new(&[1, 2]).complete(pair), Some((1, 2)));
        assert_eq!(Reader::new(&[1]).complete(pair), None, "short");
        assert_eq!(Reader::new(&[1, 2, 3]).complete(pair), None, "trailing");
    }

    /// One read of any kind, for the never-panics property.
    #[derive(Debug, Clone, Copy)]
    enum Op {
        Take(usize),
        Peek(usize),
        Skip(usize),
        Sub(usize),
        Array4,
        U8,
        U16Be,
        U16Le,
        I16Le,
        U24Be,
        U24Le,
        U32Be,
        U32Le,
        I32Le,
        U64Le,
        I64Le,
        Rest,
    }

    fn arb_op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0usize..40).prop_map(Op::Take),
            (0usize..40).prop_map(Op::Peek),
            prop_oneof![0usize..40, Just(usize::MAX)].prop_map(Op::Skip),
            (0usize..40).prop_map(Op::Sub),
            Just(Op::Array4),
            Just(Op::U8),
            Just(Op::U16Be),
            Just(Op::U16Le),
            Just(Op::I16Le),
            Just(Op::U24Be),
            Just(Op::U24Le),
            Just(Op::U32Be),
            Just(Op::U32Le),
            Just(Op::I32Le),
            Just(Op::U64Le),
            Just(Op::I64Le),
            Just(Op::Rest),
        ]
    }

    /// How many bytes `op` needs to fit, and how many it then consumes.
    fn width(op: Op, left: usize) -> (usize, usize) {
        let n = match op {
            Op::Take(n) | Op::Skip(n) | Op::Sub(n) | Op::Peek(n) => n,
            Op::U8 => 1,
            Op::U16Be | Op::U16Le | Op::I16Le => 2,
            Op::U24Be | Op::U24Le => 3,
            Op::Array4 | Op::U32Be | Op::U32Le | Op::I32Le => 4,
            Op::U64Le | Op::I64Le => 8,
            Op::Rest => left,
        };
        match op {
            Op::Peek(_) => (n, 0),
            _ => (n, n),
        }
    }

    proptest! {
        #[test]
        fn no_read_sequence_panics_or_loses_count(
            data in proptest::collection::vec(any::<u8>(), 0..64),
            ops in proptest::collection::vec(arb_op(), 0..24),
        ) {
            let mut r = Reader::new(&data);
            for op in ops {
                let before = r.used();
                let fits = match op {
                    Op::Take(n) => r.take(n).map(|s| s.len() == n),
                    Op::Peek(n) => r.peek(n).map(|s| s.len() == n),
                    Op::Skip(n) => r.skip(n).map(|()| true),
                    Op::Sub(n) => r.sub(n).map(|s| s.left() == n && s.used() == 0),
                    Op::Array4 => r.take_array::<4>().map(|_| true),
                    Op::U8 => r.u8().map(|_| true),
                    Op::U16Be => r.u16_be().map(|_| true),
                    Op::U16Le => r.u16_le().map(|_| true),
                    Op::I16Le => r.i16_le().map(|_| true),
                    Op::U24Be => r.u24_be().map(|v| v < 1 << 24),
                    Op::U24Le => r.u24_le().map(|v| v < 1 << 24),
                    Op::U32Be => r.u32_be().map(|_| true),
                    Op::U32Le => r.u32_le().map(|_| true),
                    Op::I32Le => r.i32_le().map(|_| true),
                    Op::U64Le => r.u64_le().map(|_| true),
                    Op::I64Le => r.i64_le().map(|_| true),
                    Op::Rest => Some(r.rest().len() + before == data.len()),
                };
                let (need, consumes) = width(op, data.len() - before);
                prop_assert_eq!(fits.is_some(), need <= data.len() - before, "{:?}", op);
                if let Some(ok) = fits {
                    prop_assert!(ok, "{:?}", op);
                    prop_assert_eq!(r.used(), before + consumes);
                } else {
                    prop_assert_eq!(r.used(), before, "a failed read consumes nothing");
                }
                prop_assert_eq!(r.used() + r.left(), data.len());
                prop_assert_eq!(r.any_left(), r.left() > 0);
                prop_assert_eq!(r.consumed(), &data[..r.used()]);
                prop_assert_eq!(r.expect_empty("data").is_ok(), r.left() == 0);
            }
        }
    }
}
