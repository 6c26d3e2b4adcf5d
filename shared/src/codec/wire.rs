//! Wire primitives shared by the decoder and the encoder: variable byte integers, two-byte
//! integers, UTF-8 strings, binary data, and a bounds-checked read cursor over one packet.
//!
//! Owns the rules every field obeys (a string is valid UTF-8 without U+0000, a length never
//! reaches past the packet). It must never panic or index out of bounds on input, and never
//! allocate based on a length before checking the bytes are there.

use bytes::{BufMut, Bytes, BytesMut};

use super::error::{DecodeError, EncodeError};

/// The largest value a variable byte integer can hold (4 bytes).
pub(crate) const MAX_VARINT: u32 = 268_435_455;

/// The largest UTF-8 string or binary data length (a two-byte length prefix).
pub(crate) const MAX_FIELD: usize = 65_535;

/// Shorthand for a malformed-packet error.
pub(crate) fn malformed(what: &'static str) -> DecodeError {
    DecodeError::MalformedPacket(what)
}

/// Reads a variable byte integer from the front of `buf`: its value and how many bytes it
/// took, `Ok(None)` when `buf` ends before it does, an error once a 4th byte still announces
/// a continuation. Non-minimal encodings are accepted.
pub(crate) fn read_varint(buf: &[u8]) -> Result<Option<(u32, usize)>, DecodeError> {
    let mut value: u32 = 0;
    for (i, &byte) in buf.iter().take(4).enumerate() {
        value |= u32::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(Some((value, i + 1)));
        }
    }
    if buf.len() >= 4 {
        Err(malformed("variable byte integer longer than 4 bytes"))
    } else {
        Ok(None)
    }
}

/// Checks that `bytes` is an MQTT UTF-8 string: well-formed UTF-8 (so no surrogates) and no
/// U+0000, the code points the spec says a receiver MUST reject (section 1.5.4).
pub(crate) fn utf8(bytes: &[u8]) -> Result<&str, DecodeError> {
    if bytes.contains(&0) {
        return Err(malformed("U+0000 in a UTF-8 string"));
    }
    std::str::from_utf8(bytes).map_err(|_| malformed("invalid UTF-8 in a string"))
}

/// A bounds-checked reader over the bytes of one packet (or one property section).
#[derive(Debug)]
pub(crate) struct Cursor {
    /// The bytes being read; binary fields are zero-copy slices of it.
    buf: Bytes,
    /// Read position in `buf`.
    pos: usize,
}

impl Cursor {
    /// A cursor at the start of `buf`.
    pub(crate) fn new(buf: Bytes) -> Cursor {
        Cursor { buf, pos: 0 }
    }

    /// Bytes left to read.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// True when everything has been read.
    pub(crate) fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// The next `n` bytes, or a malformed error naming `what` if they are not there.
    fn take(&mut self, n: usize, what: &'static str) -> Result<&[u8], DecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.buf.len())
            .ok_or(malformed(what))?;
        let bytes = self.buf.get(self.pos..end).ok_or(malformed(what))?;
        self.pos = end;
        Ok(bytes)
    }

    /// One byte.
    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(1, what)?[0])
    }

    /// A big-endian two-byte integer.
    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// A big-endian four-byte integer.
    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A variable byte integer that must end inside the packet.
    pub(crate) fn varint(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        let (value, len) = read_varint(rest)?.ok_or(malformed(what))?;
        self.pos += len;
        Ok(value)
    }

    /// A length-prefixed UTF-8 string, borrowed and validated.
    pub(crate) fn str(&mut self, what: &'static str) -> Result<&str, DecodeError> {
        let len = usize::from(self.u16(what)?);
        utf8(self.take(len, what)?)
    }

    /// A length-prefixed UTF-8 string, validated and owned.
    pub(crate) fn string(&mut self, what: &'static str) -> Result<String, DecodeError> {
        self.str(what).map(str::to_owned)
    }

    /// Length-prefixed binary data, as a zero-copy slice of the packet.
    pub(crate) fn binary(&mut self, what: &'static str) -> Result<Bytes, DecodeError> {
        let len = usize::from(self.u16(what)?);
        self.split(len, what)
    }

    /// The next `len` bytes as a zero-copy slice.
    pub(crate) fn split(&mut self, len: usize, what: &'static str) -> Result<Bytes, DecodeError> {
        let start = self.pos;
        self.take(len, what)?;
        Ok(self.buf.slice(start..self.pos))
    }

    /// Everything left, as a zero-copy slice (a PUBLISH or will payload).
    pub(crate) fn rest(&mut self) -> Bytes {
        let start = self.pos.min(self.buf.len());
        self.pos = self.buf.len();
        self.buf.slice(start..)
    }

    /// Errors with `what` unless everything has been read.
    pub(crate) fn finish(&self, what: &'static str) -> Result<(), DecodeError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(malformed(what))
        }
    }
}

/// The number of bytes `value` takes as a variable byte integer.
pub(crate) fn varint_len(value: u32) -> usize {
    match value {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Appends `value` (at most [`MAX_VARINT`], checked by the [`Sizer`]) as a variable byte
/// integer.
pub(crate) fn put_varint(out: &mut BytesMut, mut value: u32) {
    loop {
        let mut byte = (value & 0x7f) as u8;
        value >>= 7;
        if value > 0 {
            byte |= 0x80;
        }
        out.put_u8(byte);
        if value == 0 {
            return;
        }
    }
}

/// Appends a length-prefixed UTF-8 string (length checked by the [`Sizer`]).
pub(crate) fn put_str(out: &mut BytesMut, s: &str) {
    put_binary(out, s.as_bytes());
}

/// Appends length-prefixed binary data (length checked by the [`Sizer`]).
pub(crate) fn put_binary(out: &mut BytesMut, b: &[u8]) {
    out.put_u16(u16::try_from(b.len()).unwrap_or(u16::MAX));
    out.put_slice(b);
}

/// Computes encoded sizes and remembers the first field that cannot be encoded, so that the
/// encoder checks everything before it writes a single byte.
#[derive(Debug, Default)]
pub(crate) struct Sizer {
    /// The first problem found, if any.
    pub(crate) err: Option<EncodeError>,
}

impl Sizer {
    /// Records `e` unless an earlier problem is already recorded.
    pub(crate) fn fail(&mut self, e: EncodeError) {
        self.err.get_or_insert(e);
    }

    /// Size of a length-prefixed UTF-8 string.
    pub(crate) fn string(&mut self, s: &str) -> usize {
        self.string_bytes(s.as_bytes())
    }

    /// Size of a length-prefixed UTF-8 string given as its bytes.
    pub(crate) fn string_bytes(&mut self, s: &[u8]) -> usize {
        if s.len() > MAX_FIELD {
            self.fail(EncodeError::StringTooLong { len: s.len() });
        }
        2 + s.len()
    }

    /// Size of length-prefixed binary data.
    pub(crate) fn binary(&mut self, b: &[u8]) -> usize {
        if b.len() > MAX_FIELD {
            self.fail(EncodeError::BinaryTooLong { len: b.len() });
        }
        2 + b.len()
    }

    /// Size of a variable byte integer.
    pub(crate) fn varint(&mut self, value: u32) -> usize {
        if value > MAX_VARINT {
            self.fail(EncodeError::VarIntTooLarge { value });
        }
        varint_len(value)
    }

    /// Size of a packet body as its remaining length plus the body itself.
    pub(crate) fn remaining(&mut self, body: usize) -> usize {
        if body > MAX_VARINT as usize {
            self.fail(EncodeError::RemainingLengthTooLarge { len: body });
        }
        varint_len(u32::try_from(body).unwrap_or(u32::MAX)) + body
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    fn varint_bytes(v: u32) -> Vec<u8> {
        let mut out = BytesMut::new();
        put_varint(&mut out, v);
        out.to_vec()
    }

    #[test]
    fn varint_matches_the_spec_table() {
        let table: [(u32, &[u8]); 8] = [
            (0, &[0x00]),
            (127, &[0x7f]),
            (128, &[0x80, 0x01]),
            (16_383, &[0xff, 0x7f]),
            (16_384, &[0x80, 0x80, 0x01]),
            (2_097_151, &[0xff, 0xff, 0x7f]),
            (2_097_152, &[0x80, 0x80, 0x80, 0x01]),
            (MAX_VARINT, &[0xff, 0xff, 0xff, 0x7f]),
        ];
        for (value, bytes) in table {
            assert_eq!(varint_bytes(value), bytes, "{value}");
            assert_eq!(varint_len(value), bytes.len());
            assert_eq!(read_varint(bytes), Ok(Some((value, bytes.len()))));
        }
    }

    #[test]
    fn varint_incomplete_and_too_long() {
        assert_eq!(read_varint(&[]), Ok(None));
        assert_eq!(read_varint(&[0x80]), Ok(None));
        assert_eq!(read_varint(&[0xff, 0xff, 0xff]), Ok(None));
        assert!(read_varint(&[0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(read_varint(&[0xff, 0xff, 0xff, 0xff, 0x01]).is_err());
        assert_eq!(
            read_varint(&[0x80, 0x00]),
            Ok(Some((0, 2))),
            "non-minimal is accepted"
        );
    }

    #[test]
    fn strings_reject_nul_and_invalid_utf8() {
        assert_eq!(utf8(b"a/b"), Ok("a/b"));
        assert!(utf8(b"a\0b").is_err());
        assert!(utf8(&[0xc3]).is_err(), "truncated sequence");
        assert!(utf8(&[0xed, 0xa0, 0x80]).is_err(), "U+D800 encoded");
        assert!(utf8(&[0xc0, 0x80]).is_err(), "overlong U+0000");
        assert_eq!(utf8("é😀".as_bytes()), Ok("é😀"));
    }

    #[test]
    fn cursor_never_reads_past_the_end() {
        let mut c = Cursor::new(Bytes::from_static(&[0x00, 0x05, b'a', b'b']));
        assert!(c.string("s").is_err(), "length 5 but only 2 bytes");
        let mut c = Cursor::new(Bytes::from_static(&[0x00, 0x02, b'a', b'b', 0x01]));
        assert_eq!(c.string("s").as_deref(), Ok("ab"));
        assert_eq!(c.u8("b"), Ok(1));
        assert!(c.u8("b").is_err());
        assert!(c.u16("w").is_err());
        assert!(c.u32("d").is_err());
        assert!(c.varint("v").is_err());
        assert!(c.binary("x").is_err());
        assert_eq!(c.rest(), Bytes::new());
        c.finish("x").unwrap();
    }

    #[test]
    fn cursor_binary_and_rest_are_slices() {
        let mut c = Cursor::new(Bytes::from_static(&[0x00, 0x01, 0xaa, 0x00, 0x01, 0x02]));
        assert_eq!(c.binary("b").unwrap(), Bytes::from_static(&[0xaa]));
        assert_eq!(c.u16("w"), Ok(1));
        assert_eq!(c.u8("b"), Ok(2));
        let mut c = Cursor::new(Bytes::from_static(&[1, 2, 3]));
        assert_eq!(c.u8("b"), Ok(1));
        assert!(c.finish("left").is_err());
        assert_eq!(c.rest(), Bytes::from_static(&[2, 3]));
        assert!(c.is_empty());
    }

    #[test]
    fn sizer_records_the_first_problem() {
        let mut s = Sizer::default();
        assert_eq!(s.string("abc"), 5);
        assert!(s.err.is_none());
        let long = "x".repeat(MAX_FIELD + 1);
        s.string(&long);
        s.varint(MAX_VARINT + 1);
        assert_eq!(
            s.err,
            Some(EncodeError::StringTooLong { len: MAX_FIELD + 1 })
        );
        let mut s = Sizer::default();
        assert_eq!(s.remaining(300), 302);
        s.remaining(MAX_VARINT as usize + 1);
        assert!(matches!(
            s.err,
            Some(EncodeError::RemainingLengthTooLarge { .. })
        ));
    }
}
