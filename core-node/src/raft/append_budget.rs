//! A byte bound on one AppendEntries request.
//!
//! openraft 0.9 gives every AppendEntries the heartbeat interval as its deadline and sends up
//! to `max_payload_entries` (300) entries in one request, each up to `MAX_OPS_PER_ENTRY` ops.
//! A follower some way behind would be sent hundreds of megabytes in one request that can
//! never arrive within one heartbeat: each attempt times out, is sent again whole, and the
//! follower never catches up. So the network sends a prefix of the entries that fits
//! [`APPEND_BYTES`] (always at least one entry) and, when the follower takes it, reports
//! `PartialSuccess` up to the last entry sent; openraft sends the rest next.

use openraft::EntryPayload;
use openraft::raft::AppendEntriesResponse;

use super::types::{Entry, LogId, NodeId};

/// At most this many payload bytes of log entries per AppendEntries request (one entry
/// larger than this still goes, alone).
pub const APPEND_BYTES: usize = 256 * 1024;

/// Payload bytes of one entry as it goes on the wire (membership and blank entries count as
/// small).
fn entry_bytes(entry: &Entry) -> usize {
    match &entry.payload {
        EntryPayload::Normal(data) => data.batch.len(),
        EntryPayload::Blank | EntryPayload::Membership(_) => 64,
    }
}

/// Keeps the longest prefix of `entries` within `budget` bytes (at least one entry). Returns
/// the log id of the last entry kept when any were dropped, `None` when all fit.
pub fn trim(entries: &mut Vec<Entry>, budget: usize) -> Option<LogId> {
    let mut total = 0usize;
    let mut keep = entries.len();
    for (i, e) in entries.iter().enumerate() {
        total = total.saturating_add(entry_bytes(e));
        if total > budget && i > 0 {
            keep = i;
            break;
        }
    }
    if keep == entries.len() {
        return None;
    }
    entries.truncate(keep);
    entries.last().map(|e| e.log_id)
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

    fn entry(index: u64, bytes: usize) -> Entry {
        Entry {
            log_id: RaftLogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(EntryData {
                batch: vec![0; bytes],
            }),
        }
    }

    #[test]
    fn everything_within_the_budget_goes_unchanged() {
        let mut es = vec![entry(1, 100), entry(2, 100)];
        assert_eq!(trim(&mut es, 200), None);
        assert_eq!(es.len(), 2);
    }

    #[test]
    fn the_prefix_that_fits_goes_and_the_response_says_how_far() {
        let mut es = vec![entry(1, 100), entry(2, 100), entry(3, 100)];
        let last = trim(&mut es, 250);
        assert_eq!(es.len(), 2);
        assert_eq!(last.map(|l| l.index), Some(2));
        let resp = for_trimmed(AppendEntriesResponse::Success, last);
        assert_eq!(resp, AppendEntriesResponse::PartialSuccess(last));
        // Anything but Success is passed through.
        let conflict = for_trimmed(AppendEntriesResponse::Conflict, last);
        assert_eq!(conflict, AppendEntriesResponse::Conflict);
    }

    #[test]
    fn one_entry_larger_than_the_budget_still_goes_alone() {
        let mut es = vec![entry(1, 1_000), entry(2, 10)];
        let last = trim(&mut es, 100);
        assert_eq!(es.len(), 1);
        assert_eq!(last.map(|l| l.index), Some(1));
        let mut alone = vec![entry(7, 1_000)];
        assert_eq!(trim(&mut alone, 100), None);
        assert_eq!(
            for_trimmed(AppendEntriesResponse::Success, None),
            AppendEntriesResponse::Success
        );
    }
}
