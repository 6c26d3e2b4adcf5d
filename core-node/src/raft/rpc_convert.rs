//! Conversions between openraft's RPC messages (vote, append entries, chunked install
//! snapshot: requests and responses) and their `meshmq.raft.v1` protobuf mirrors.
//!
//! Owns the message-level mapping only; the field-level pieces (log ids, votes, entries,
//! snapshot meta) come from [`super::convert`]. It must never do I/O, and never panic on a
//! message that came from another node: anything missing or malformed is a [`ConvertError`].

use meshmq_proto::raft as pb;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};

use super::convert::{
    ConvertError, entry_from_proto, entry_to_proto, opt_log_id_from_proto, opt_log_id_to_proto,
    snapshot_meta_from_proto, snapshot_meta_to_proto, vote_from_proto, vote_to_proto,
};
use super::types::{NodeId, TypeConfig};

/// openraft's vote request → protobuf.
pub fn vote_request_to_proto(rpc: &VoteRequest<NodeId>) -> pb::VoteRequest {
    pb::VoteRequest {
        vote: Some(vote_to_proto(&rpc.vote)),
        last_log_id: opt_log_id_to_proto(rpc.last_log_id.as_ref()),
    }
}

/// Protobuf → openraft's vote request. A missing vote is an error.
pub fn vote_request_from_proto(msg: &pb::VoteRequest) -> Result<VoteRequest<NodeId>, ConvertError> {
    Ok(VoteRequest {
        vote: vote_from_proto(msg.vote.as_ref())?,
        last_log_id: opt_log_id_from_proto(msg.last_log_id.as_ref()),
    })
}

/// openraft's vote response → protobuf.
pub fn vote_response_to_proto(resp: &VoteResponse<NodeId>) -> pb::VoteResponse {
    pb::VoteResponse {
        vote: Some(vote_to_proto(&resp.vote)),
        vote_granted: resp.vote_granted,
        last_log_id: opt_log_id_to_proto(resp.last_log_id.as_ref()),
    }
}

/// Protobuf → openraft's vote response. A missing vote is an error.
pub fn vote_response_from_proto(
    msg: &pb::VoteResponse,
) -> Result<VoteResponse<NodeId>, ConvertError> {
    Ok(VoteResponse {
        vote: vote_from_proto(msg.vote.as_ref())?,
        vote_granted: msg.vote_granted,
        last_log_id: opt_log_id_from_proto(msg.last_log_id.as_ref()),
    })
}

/// openraft's append-entries request → protobuf (entries are copied: the batch bytes are
/// shared by the log and the wire encoding, never re-encoded).
pub fn append_request_to_proto(rpc: &AppendEntriesRequest<TypeConfig>) -> pb::AppendEntriesRequest {
    pb::AppendEntriesRequest {
        vote: Some(vote_to_proto(&rpc.vote)),
        prev_log_id: opt_log_id_to_proto(rpc.prev_log_id.as_ref()),
        entries: rpc.entries.iter().map(entry_to_proto).collect(),
        leader_commit: opt_log_id_to_proto(rpc.leader_commit.as_ref()),
    }
}

/// Protobuf → openraft's append-entries request. Takes the message by value so the entry
/// payloads move instead of being copied. A missing vote or a malformed entry is an error.
pub fn append_request_from_proto(
    msg: pb::AppendEntriesRequest,
) -> Result<AppendEntriesRequest<TypeConfig>, ConvertError> {
    let vote = vote_from_proto(msg.vote.as_ref())?;
    let entries = msg
        .entries
        .into_iter()
        .map(entry_from_proto)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(AppendEntriesRequest {
        vote,
        prev_log_id: opt_log_id_from_proto(msg.prev_log_id.as_ref()),
        entries,
        leader_commit: opt_log_id_from_proto(msg.leader_commit.as_ref()),
    })
}

/// openraft's append-entries response → protobuf.
pub fn append_response_to_proto(resp: &AppendEntriesResponse<NodeId>) -> pb::AppendEntriesResponse {
    use pb::append_entries_response::Result as R;
    let result = match resp {
        AppendEntriesResponse::Success => R::Success(pb::Blank {}),
        AppendEntriesResponse::PartialSuccess(matching) => R::PartialSuccess(pb::PartialSuccess {
            matching: opt_log_id_to_proto(matching.as_ref()),
        }),
        AppendEntriesResponse::Conflict => R::Conflict(pb::Blank {}),
        AppendEntriesResponse::HigherVote(vote) => R::HigherVote(vote_to_proto(vote)),
    };
    pb::AppendEntriesResponse {
        result: Some(result),
    }
}

/// Protobuf → openraft's append-entries response. A response without a result is an error.
pub fn append_response_from_proto(
    msg: &pb::AppendEntriesResponse,
) -> Result<AppendEntriesResponse<NodeId>, ConvertError> {
    use pb::append_entries_response::Result as R;
    match &msg.result {
        Some(R::Success(_)) => Ok(AppendEntriesResponse::Success),
        Some(R::PartialSuccess(p)) => Ok(AppendEntriesResponse::PartialSuccess(
            opt_log_id_from_proto(p.matching.as_ref()),
        )),
        Some(R::Conflict(_)) => Ok(AppendEntriesResponse::Conflict),
        Some(R::HigherVote(vote)) => Ok(AppendEntriesResponse::HigherVote(vote_from_proto(Some(
            vote,
        ))?)),
        None => Err(ConvertError(
            "append entries response without a result".to_owned(),
        )),
    }
}

/// openraft's install-snapshot chunk → protobuf (the chunk bytes are copied).
pub fn snapshot_request_to_proto(
    rpc: &InstallSnapshotRequest<TypeConfig>,
) -> pb::InstallSnapshotRequest {
    pb::InstallSnapshotRequest {
        vote: Some(vote_to_proto(&rpc.vote)),
        meta: Some(snapshot_meta_to_proto(&rpc.meta)),
        offset: rpc.offset,
        data: rpc.data.clone().into(),
        done: rpc.done,
    }
}

/// Protobuf → openraft's install-snapshot chunk. Takes the message by value so the chunk
/// bytes move. A missing vote or snapshot meta is an error.
pub fn snapshot_request_from_proto(
    msg: pb::InstallSnapshotRequest,
) -> Result<InstallSnapshotRequest<TypeConfig>, ConvertError> {
    Ok(InstallSnapshotRequest {
        vote: vote_from_proto(msg.vote.as_ref())?,
        meta: snapshot_meta_from_proto(msg.meta.as_ref())?,
        offset: msg.offset,
        data: msg.data.into(),
        done: msg.done,
    })
}

/// openraft's install-snapshot response → protobuf.
pub fn snapshot_response_to_proto(
    resp: &InstallSnapshotResponse<NodeId>,
) -> pb::InstallSnapshotResponse {
    pb::InstallSnapshotResponse {
        vote: Some(vote_to_proto(&resp.vote)),
    }
}

/// Protobuf → openraft's install-snapshot response. A missing vote is an error.
pub fn snapshot_response_from_proto(
    msg: &pb::InstallSnapshotResponse,
) -> Result<InstallSnapshotResponse<NodeId>, ConvertError> {
    Ok(InstallSnapshotResponse {
        vote: vote_from_proto(msg.vote.as_ref())?,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use openraft::{CommittedLeaderId, EntryPayload, Membership};

    use super::*;
    use crate::raft::types::{Entry, EntryData, LogId, Node, SnapshotMeta, StoredMembership, Vote};

    fn log_id(term: u64, node: u64, index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(term, node), index)
    }

    fn membership() -> Membership<NodeId, Node> {
        let voters: BTreeSet<NodeId> = [1, 2, 3].into_iter().collect();
        let nodes: BTreeMap<NodeId, Node> = (1..=4)
            .map(|id| (id, Node::new(format!("127.0.0.1:{}", 4370 + id))))
            .collect();
        Membership::new(vec![voters], nodes)
    }

    fn entries() -> Vec<Entry> {
        vec![
            Entry {
                log_id: log_id(1, 1, 1),
                payload: EntryPayload::Blank,
            },
            Entry {
                log_id: log_id(1, 1, 2),
                payload: EntryPayload::Membership(membership()),
            },
            Entry {
                log_id: log_id(2, 3, 3),
                payload: EntryPayload::Normal(EntryData {
                    batch: vec![1, 2, 3, 0xff],
                }),
            },
        ]
    }

    fn votes() -> Vec<Vote> {
        vec![
            Vote::new(1, 2),
            Vote::new_committed(7, 3),
            Vote::new(u64::MAX - 1, 1),
        ]
    }

    #[test]
    fn vote_request_round_trips() {
        for vote in votes() {
            for last in [None, Some(log_id(3, 2, 40))] {
                let rpc = VoteRequest::new(vote, last);
                let back = vote_request_from_proto(&vote_request_to_proto(&rpc));
                assert_eq!(back.ok(), Some(rpc));
            }
        }
    }

    #[test]
    fn vote_response_round_trips() {
        for vote in votes() {
            for granted in [true, false] {
                for last in [None, Some(log_id(1, 1, 0))] {
                    let resp = VoteResponse::new(vote, last, granted);
                    let back = vote_response_from_proto(&vote_response_to_proto(&resp));
                    assert_eq!(back.ok(), Some(resp));
                }
            }
        }
    }

    #[test]
    fn append_request_round_trips() {
        for (prev, commit, entries) in [
            (None, None, vec![]),
            (Some(log_id(1, 1, 0)), Some(log_id(1, 1, 0)), entries()),
        ] {
            let rpc = AppendEntriesRequest::<TypeConfig> {
                vote: Vote::new_committed(2, 3),
                prev_log_id: prev,
                entries,
                leader_commit: commit,
            };
            let back = append_request_from_proto(append_request_to_proto(&rpc));
            let back = back.expect("round trip");
            assert_eq!(back.vote, rpc.vote);
            assert_eq!(back.prev_log_id, rpc.prev_log_id);
            assert_eq!(back.leader_commit, rpc.leader_commit);
            assert_eq!(back.entries, rpc.entries);
        }
    }

    #[test]
    fn append_response_round_trips() {
        for resp in [
            AppendEntriesResponse::Success,
            AppendEntriesResponse::PartialSuccess(None),
            AppendEntriesResponse::PartialSuccess(Some(log_id(4, 1, 99))),
            AppendEntriesResponse::Conflict,
            AppendEntriesResponse::HigherVote(Vote::new_committed(9, 2)),
            AppendEntriesResponse::HigherVote(Vote::new(9, 2)),
        ] {
            let back = append_response_from_proto(&append_response_to_proto(&resp));
            assert_eq!(back.ok(), Some(resp));
        }
    }

    #[test]
    fn snapshot_request_round_trips() {
        let meta = SnapshotMeta {
            last_log_id: Some(log_id(3, 1, 120)),
            last_membership: StoredMembership::new(Some(log_id(1, 1, 2)), membership()),
            snapshot_id: "3-1-120-7".to_owned(),
        };
        for (offset, data, done) in [(0, vec![], false), (4096, vec![7u8; 100], true)] {
            let rpc = InstallSnapshotRequest::<TypeConfig> {
                vote: Vote::new_committed(3, 1),
                meta: meta.clone(),
                offset,
                data,
                done,
            };
            let back = snapshot_request_from_proto(snapshot_request_to_proto(&rpc));
            assert_eq!(back.ok(), Some(rpc));
        }
    }

    #[test]
    fn snapshot_response_round_trips() {
        for vote in votes() {
            let resp = InstallSnapshotResponse { vote };
            let back = snapshot_response_from_proto(&snapshot_response_to_proto(&resp));
            assert_eq!(back.ok(), Some(resp));
        }
    }

    #[test]
    fn missing_fields_are_errors_not_panics() {
        assert!(vote_request_from_proto(&pb::VoteRequest::default()).is_err());
        assert!(vote_response_from_proto(&pb::VoteResponse::default()).is_err());
        assert!(append_request_from_proto(pb::AppendEntriesRequest::default()).is_err());
        assert!(append_response_from_proto(&pb::AppendEntriesResponse::default()).is_err());
        assert!(snapshot_response_from_proto(&pb::InstallSnapshotResponse::default()).is_err());
        let no_meta = pb::InstallSnapshotRequest {
            vote: Some(vote_to_proto(&Vote::new(1, 1))),
            ..Default::default()
        };
        assert!(snapshot_request_from_proto(no_meta).is_err());
        let bad_entry = pb::AppendEntriesRequest {
            vote: Some(vote_to_proto(&Vote::new(1, 1))),
            entries: vec![pb::Entry::default()],
            ..Default::default()
        };
        assert!(append_request_from_proto(bad_entry).is_err());
    }
}
