//! Per-subscriber bookkeeping of the sequence numbers in the payload marks: for every
//! stream (publisher run tag, publisher index) it counts messages lost, duplicated and out
//! of order.
//!
//! Definitions, per stream: *duplicated* = a sequence number already received; *out of
//! order* = received after a higher one (and not a duplicate); *lost* = numbers between the
//! lowest and the highest received that never arrived. A message lost at the very end of a
//! stream cannot be told from one not yet sent, so it is not counted. Duplicates are
//! recognised within a window of [`WINDOW`] numbers behind the highest; an older arrival is
//! counted as out of order only. Memory is fixed per stream (a 128-byte bitmap).
//!
//! Pure; never panics, whatever numbers arrive.

use std::collections::HashMap;

/// Sequence numbers remembered behind the highest one, per stream.
pub const WINDOW: u64 = 1024;

const WORDS: usize = (WINDOW / 64) as usize;

/// One publisher's stream as seen by one subscriber.
#[derive(Debug, Clone)]
struct Stream {
    min: u64,
    max: u64,
    distinct: u64,
    duplicated: u64,
    out_of_order: u64,
    seen: [u64; WORDS],
}

impl Stream {
    fn new(seq: u64) -> Stream {
        let mut s = Stream {
            min: seq,
            max: seq,
            distinct: 1,
            duplicated: 0,
            out_of_order: 0,
            seen: [0; WORDS],
        };
        s.set(seq);
        s
    }

    fn slot(seq: u64) -> (usize, u64) {
        let bit = seq % WINDOW;
        ((bit / 64) as usize, 1u64 << (bit % 64))
    }

    fn set(&mut self, seq: u64) -> bool {
        let (word, mask) = Stream::slot(seq);
        let was = self.seen[word] & mask != 0;
        self.seen[word] |= mask;
        was
    }

    fn record(&mut self, seq: u64) {
        if seq > self.max {
            if seq - self.max >= WINDOW {
                self.seen = [0; WORDS];
            } else {
                for s in self.max + 1..=seq {
                    let (word, mask) = Stream::slot(s);
                    self.seen[word] &= !mask;
                }
            }
            self.max = seq;
            self.set(seq);
            self.distinct += 1;
            return;
        }
        self.min = self.min.min(seq);
        if self.max - seq >= WINDOW {
            self.out_of_order += 1;
            self.distinct += 1;
            return;
        }
        if self.set(seq) {
            self.duplicated += 1;
        } else {
            self.distinct += 1;
            if seq < self.max {
                self.out_of_order += 1;
            }
        }
    }

    fn lost(&self) -> u64 {
        (self.max - self.min)
            .saturating_add(1)
            .saturating_sub(self.distinct)
    }
}

/// Loss, duplicate and order counts of one subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SeqCounts {
    /// Missing numbers inside the received range, over all streams.
    pub lost: u64,
    /// Numbers received more than once.
    pub duplicated: u64,
    /// Numbers received after a higher one.
    pub out_of_order: u64,
    /// Streams (publisher runs) seen.
    pub streams: u64,
}

/// Every stream one subscriber has received.
#[derive(Debug, Default)]
pub struct SeqTracker {
    streams: HashMap<(u64, u32), Stream>,
}

impl SeqTracker {
    /// Records message `seq` of publisher `publisher` of run `run`.
    pub fn record(&mut self, run: u64, publisher: u32, seq: u64) {
        self.streams
            .entry((run, publisher))
            .and_modify(|s| s.record(seq))
            .or_insert_with(|| Stream::new(seq));
    }

    /// The counts so far.
    pub fn counts(&self) -> SeqCounts {
        let mut c = SeqCounts {
            streams: self.streams.len() as u64,
            ..SeqCounts::default()
        };
        for s in self.streams.values() {
            c.lost += s.lost();
            c.duplicated += s.duplicated;
            c.out_of_order += s.out_of_order;
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(seqs: &[u64]) -> SeqCounts {
        let mut t = SeqTracker::default();
        for &s in seqs {
            t.record(1, 0, s);
        }
        t.counts()
    }

    #[test]
    fn clean_stream() {
        let c = counts(&(0..5000).collect::<Vec<_>>());
        assert_eq!((c.lost, c.duplicated, c.out_of_order), (0, 0, 0));
    }

    #[test]
    fn every_100th_lost_one_dup_one_swap() {
        let mut seqs: Vec<u64> = (0..1050).filter(|s| s % 100 != 99).collect();
        let at = seqs.iter().position(|&s| s == 250).unwrap_or(0);
        seqs.insert(at, 250);
        let i = seqs.iter().position(|&s| s == 420).unwrap_or(0);
        seqs.swap(i, i + 1);
        let c = counts(&seqs);
        assert_eq!((c.lost, c.duplicated, c.out_of_order), (10, 1, 1));
    }

    #[test]
    fn late_arrival_fills_a_gap_and_old_ones_do_not_panic() {
        let c = counts(&[0, 1, 3, 2, 4]);
        assert_eq!((c.lost, c.duplicated, c.out_of_order), (0, 0, 1));
        let c = counts(&[5000, 10, 5000, u64::MAX, 0]);
        assert_eq!(c.duplicated, 1);
        assert_eq!(c.out_of_order, 2);
        let mut t = SeqTracker::default();
        t.record(1, 0, 0);
        t.record(2, 0, 0);
        t.record(1, 1, 0);
        assert_eq!(t.counts().streams, 3);
    }
}
