//! The mark at the front of every payload the `pub` subcommand sends, so any `sub` (in this
//! process or another) can time and order it: the fan-out stamp's three words (send time,
//! sequence number, run tag: same offsets as [`super::Stamp`]) followed by the publisher's
//! client index and a magic that tells a marked payload from anybody else's.
//!
//! Layout, little-endian: `[0..8)` send time in ns since the Unix epoch (wall clock, so
//! processes on one box agree), `[8..16)` sequence number within the publisher (from 0),
//! `[16..24)` run tag, `[24..28)` publisher client index, `[28..32)` [`MARK_MAGIC`].
//! Pure; never panics on a short payload.

/// Bytes of a mark: the smallest `-s` the `pub` subcommand accepts.
pub const MARK_LEN: usize = 32;

/// The last four bytes of a mark.
pub const MARK_MAGIC: [u8; 4] = *b"LTm1";

/// What a mark says about one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mark {
    /// Send time, ns since the Unix epoch.
    pub sent_ns: u64,
    /// Sequence number within its publisher, from 0.
    pub seq: u64,
    /// Tag of the `pub` run that sent it.
    pub run: u64,
    /// Client index of the publisher.
    pub publisher: u32,
}

/// Writes `mark` into the first [`MARK_LEN`] bytes of `out` (which must be that long).
pub fn write_mark(out: &mut [u8], mark: &Mark) {
    if out.len() < MARK_LEN {
        return;
    }
    out[0..8].copy_from_slice(&mark.sent_ns.to_le_bytes());
    out[8..16].copy_from_slice(&mark.seq.to_le_bytes());
    out[16..24].copy_from_slice(&mark.run.to_le_bytes());
    out[24..28].copy_from_slice(&mark.publisher.to_le_bytes());
    out[28..32].copy_from_slice(&MARK_MAGIC);
}

/// The mark at the front of `payload`; `None` if it carries none.
pub fn read_mark(payload: &[u8]) -> Option<Mark> {
    let head = payload.get(..MARK_LEN)?;
    if head[28..32] != MARK_MAGIC {
        return None;
    }
    let word = |i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&head[i..i + 8]);
        u64::from_le_bytes(w)
    };
    let mut publisher = [0u8; 4];
    publisher.copy_from_slice(&head[24..28]);
    Some(Mark {
        sent_ns: word(0),
        seq: word(8),
        run: word(16),
        publisher: u32::from_le_bytes(publisher),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::super::read_stamp;
    use super::*;

    #[test]
    fn round_trip_and_fanout_compatible_prefix() {
        let mark = Mark {
            sent_ns: 11,
            seq: 22,
            run: 33,
            publisher: 44,
        };
        let mut payload = vec![0u8; 40];
        write_mark(&mut payload, &mark);
        assert_eq!(read_mark(&payload), Some(mark));
        let stamp = read_stamp(&payload).unwrap();
        assert_eq!((stamp.sent_ns, stamp.seq, stamp.run), (11, 22, 33));
        assert_eq!(read_mark(&payload[..31]), None);
        assert_eq!(read_mark(&[0u8; 32]), None, "no magic, no mark");
    }
}
