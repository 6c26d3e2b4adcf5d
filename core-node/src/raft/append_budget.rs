//! Byte bounds on one AppendEntries request.
//!
//! openraft 0.9 gives every AppendEntries the heartbeat interval as its deadline and sends up
//! to `max_payload_entries` (300) entries in one request, each up to `MAX_ENTRY_BYTES`.
//! A follower some way behind would be sent hundreds of megabytes in one request that can
//! never arrive within one heartbeat: each attempt times out, is sent again whole, and the
//! follower never catches up; and a request over the core RPC frame bound could not be sent
//! at all. So the network sends a prefix of the entries that fits [`APPEND_BYTES`] (at least
//! one entry) and the frame bound (always), and, when the follower takes it, reports
//! `PartialSuccess` up to the last entry sent; openraft sends the rest next. An entry that
//! alone does not fit the frame bound cannot be sent: [`Oversized`], which the network
//! reports as openraft's `PayloadTooLarge`.

use openraft::EntryPayload;
use openraft::raft::AppendEntriesResponse;
use prost::Message;

use super::convert::membership_to_proto;
use super::types::{Entry, LogId, NodeId};

/// At most this many payload bytes of log entries per AppendEntries request (one entry
/// larger than this still goes, alone, if it fits the frame bound).
pub const APPEND_BYTES: usize = 256 * 1024;

/// Bytes a request adds around its entries (vote, log ids, envelopes, frame prefix); an
/// upper bound.
pub const ENVELOPE_BYTES: usize = 1024;

/// Bytes one entry adds around its payload (log id, tags, length prefixes); an upper bound.
pub const ENTRY_OVERHEAD: usize = 64;

/// Which bound made a request carry fewer entries (the `bound` label of
/// `meshmq_raft_append_trimmed_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// [`APPEND_BYTES`].
    Budget,
    /// The core RPC frame bound.
    Frame,
}

impl Bound {
    /// Label value.
    pub fn label(self) -> &'static str {
        match self {
            Bound::Budget => "budget",
            Bound::Frame => "frame",
        }
    }
}

/// The first entry of a request does not fit the frame bound on its own.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("log entry {index} takes {bytes} bytes, over the core RPC frame bound of {max} bytes")]
pub struct Oversized {
    /// Its log index.
    pub index: u64,
    /// Its encoded bytes (upper bound).
    pub bytes: usize,
    /// The frame bound.
    pub max: usize,
}

/// Bytes one entry takes in an encoded request (an upper bound).
pub fn entry_bytes(entry: &Entry) -> usize {
    ENTRY_OVERHEAD
        + match &entry.payload {
            EntryPayload::Normal(data) => data.batch.len(),
            EntryPayload::Blank => 0,
            EntryPayload::Membership(m) => membership_to_proto(m).encoded_len(),
        }
}

/// Keeps the longest prefix of `entries` within `budget` bytes (at least one entry) and
/// within `frame` bytes of request (always). Returns the log id of the last entry kept and
/// the bound that cut when any were dropped, `None` when all fit; [`Oversized`] (nothing
/// changed) when the first entry alone is over `frame`.
pub fn trim(
    entries: &mut Vec<Entry>,
    budget: usize,
    frame: usize,
) -> Result<Option<(LogId, Bound)>, Oversized> {
    let room = frame.saturating_sub(ENVELOPE_BYTES);
    let mut total = 0usize;
    let mut cut = None;
    for (i, e) in entries.iter().enumerate() {
        let bytes = entry_bytes(e);
        if i == 0 && bytes > room {
            return Err(Oversized {
                index: e.log_id.index,
                bytes,
                max: frame,
            });
        }
        total = total.saturating_add(bytes);
        if i > 0 && total > room {
            cut = Some((i, Bound::Frame));
        } else if i > 0 && total > budget {
            cut = Some((i, Bound::Budget));
        }
        if cut.is_some() {
            break;
        }
    }
    let Some((keep, bound)) = cut else {
        return Ok(None);
    };
    entries.truncate(keep);
    Ok(entries.last().map(|e| (e.log_id, bound)))
}

/// The response openraft must see for a trimmed request: a follower's `Success` covers only
/// the entries sent.
pub fn for_trimmed(
    resp: AppendEntriesResponse<NodeId>,
    last_sent: Option<LogId>,
) -> AppendEntriesResponse<NodeId> {
    match (resp, last_sent) {
        (AppendEntriesResponse::Success, Some(last)) => {
            AppendEntriesResponse::PartialSuccess(Some(last))
        }
        (other, _) => other,
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, LogId as RaftLogId};

    use super::*;
    use crate::raft::types::EntryData;

    /// No frame bound in the way.
    const BIG: usize = 1 << 30;

    fn entry(index: u64, bytes: usize) -> Entry {
        Entry {
            log_id: RaftLogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(EntryData {
                batch: vec![0; bytes],
            }),
        }
    }

    fn last(t: Result<Option<(LogId, Bound)>, Oversized>) -> Option<(u64, Bound)> {
        t.expect("fits").map(|(l, b)| (l.index, b))
    }

    #[test]
    fn everything_within_the_budget_goes_unchanged() {
        let mut es = vec![entry(1, 100), entry(2, 100)];
        assert_eq!(last(trim(&mut es, 400, BIG)), None);
        assert_eq!(es.len(), 2);
    }

    #[test]
    fn the_prefix_that_fits_goes_and_the_response_says_how_far() {
        let mut es = vec![entry(1, 100), entry(2, 100), entry(3, 100)];
        let t = trim(&mut es, 400, BIG).expect("fits");
        assert_eq!(es.len(), 2);
        assert_eq!(t.map(|(l, b)| (l.index, b)), Some((2, Bound::Budget)));
        let sent = t.map(|(l, _)| l);
        let resp = for_trimmed(AppendEntriesResponse::Success, sent);
        assert_eq!(resp, AppendEntriesResponse::PartialSuccess(sent));
        // Anything but Success is passed through.
        let conflict = for_trimmed(AppendEntriesResponse::Conflict, sent);
        assert_eq!(conflict, AppendEntriesResponse::Conflict);
    }

    #[test]
    fn one_entry_larger_than_the_budget_still_goes_alone() {
        let mut es = vec![entry(1, 1_000), entry(2, 10)];
        assert_eq!(last(trim(&mut es, 100, BIG)), Some((1, Bound::Budget)));
        assert_eq!(es.len(), 1);
        let mut alone = vec![entry(7, 1_000)];
        assert_eq!(last(trim(&mut alone, 100, BIG)), None);
        assert_eq!(
            for_trimmed(AppendEntriesResponse::Success, None),
            AppendEntriesResponse::Success
        );
    }

    #[test]
    fn a_request_never_passes_the_frame_bound() {
        let frame = ENVELOPE_BYTES + 3 * (ENTRY_OVERHEAD + 1_000);
        // The budget would take them all; the frame bound takes three.
        let mut es: Vec<Entry> = (1..=10).map(|i| entry(i, 1_000)).collect();
        assert_eq!(last(trim(&mut es, BIG, frame)), Some((3, Bound::Frame)));
        let sent: usize = es.iter().map(entry_bytes).sum();
        assert!(sent + ENVELOPE_BYTES <= frame);
        // A budget smaller than the frame bound cuts first.
        let mut es: Vec<Entry> = (1..=10).map(|i| entry(i, 1_000)).collect();
        assert_eq!(last(trim(&mut es, 1_500, frame)), Some((1, Bound::Budget)));
    }

    #[test]
    fn an_entry_over_the_frame_bound_alone_is_oversized_and_nothing_changes() {
        let frame = ENVELOPE_BYTES + 500;
        let mut es = vec![entry(4, 1_000), entry(5, 10)];
        let err = trim(&mut es, BIG, frame).expect_err("oversized");
        assert_eq!(err.index, 4);
        assert_eq!(err.max, frame);
        assert!(err.bytes > frame - ENVELOPE_BYTES);
        assert_eq!(es.len(), 2);
    }
}
