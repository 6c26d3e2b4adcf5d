//! The serving side of the Raft RPCs between cores: one decoded `meshmq.core.v1.Request`
//! kind in, one `Response` out.
//!
//! Owns the mapping "protobuf request → `Raft::{vote, append_entries, install_snapshot}` →
//! protobuf response", and turns every failure (a malformed message, a Raft error) into a
//! `Response::Error` whose text says what went wrong. It never reads or writes a stream (the
//! accept loop owns the QUIC connection and the framing), never serves the non-Raft services
//! (Transact, Follow, Lease, Status), and never panics on what another node sent.

use meshmq_proto::core::{Error as ErrorMsg, Response, request, response};
use meshmq_proto::raft as pb;

use super::convert::ConvertError;
use super::rpc_convert::{
    append_request_from_proto, append_response_to_proto, snapshot_request_from_proto,
    snapshot_response_to_proto, vote_request_from_proto, vote_response_to_proto,
};
use super::types::Raft;

/// Why a Raft RPC could not be served; its text goes back to the caller in `Response::Error`.
#[derive(Debug, thiserror::Error)]
pub enum RpcServeError {
    /// The request was not one of the three Raft RPCs.
    #[error("not a raft rpc: {0}")]
    NotRaft(&'static str),
    /// The request could not be converted to openraft's type (missing or malformed field).
    #[error("{rpc} request: {source}")]
    Malformed {
        /// Which RPC (`vote`, `append`, `snapshot`).
        rpc: &'static str,
        /// What was wrong with it.
        source: ConvertError,
    },
    /// openraft refused or failed the request (e.g. the node is shutting down, or a snapshot
    /// chunk does not match the one being received).
    #[error("{rpc} failed on this node: {message}")]
    Raft {
        /// Which RPC (`vote`, `append`, `snapshot`).
        rpc: &'static str,
        /// openraft's error, as text.
        message: String,
    },
}

/// Largest Raft snapshot a core receives: 64 GiB (a 100 M-client cluster's is ~9 GiB).
pub const MAX_SNAPSHOT_BYTES: u64 = 64 << 30;

/// What this core has received of the snapshot a leader is sending it: the chunks must be
/// contiguous (a chunk may be sent again, never start past what was received), so a peer
/// cannot make openraft seek far into the receive buffer and allocate up to the offset it
/// names, and the whole is bounded by [`MAX_SNAPSHOT_BYTES`].
#[derive(Default)]
pub struct SnapshotReceipt {
    /// (snapshot id, bytes received) of the snapshot being received.
    receiving: parking_lot::Mutex<Option<(String, u64)>>,
}

impl SnapshotReceipt {
    /// Checks a chunk before openraft sees it.
    fn check(&self, id: &str, offset: u64, len: u64) -> Result<(), String> {
        let end = offset.saturating_add(len);
        if end > MAX_SNAPSHOT_BYTES {
            return Err(format!(
                "snapshot {id} would exceed {MAX_SNAPSHOT_BYTES} bytes (chunk ends at {end})"
            ));
        }
        if offset == 0 {
            return Ok(());
        }
        match &*self.receiving.lock() {
            Some((receiving, received)) if receiving == id && offset <= *received => Ok(()),
            Some((receiving, received)) if receiving == id => Err(format!(
                "snapshot {id}: chunk at offset {offset} but only {received} bytes received"
            )),
            _ => Err(format!(
                "snapshot {id}: chunk at offset {offset} without its start"
            )),
        }
    }

    /// Records a chunk openraft accepted.
    fn accepted(&self, id: &str, offset: u64, len: u64) {
        let end = offset.saturating_add(len);
        let mut receiving = self.receiving.lock();
        match &mut *receiving {
            Some((receiving, received)) if offset > 0 && receiving == id => {
                *received = (*received).max(end);
            }
            _ => *receiving = Some((id.to_owned(), end)),
        }
    }
}

/// Serves one Raft RPC (`Vote`, `Append`, `Snapshot`) on `raft` and builds the response;
/// `receipt` is this core's, kept across calls. Any other kind, a malformed request or a
/// Raft error gives `Response::Error` with a message saying what went wrong; this function
/// never panics on the request's contents.
pub async fn handle(raft: &Raft, receipt: &SnapshotReceipt, kind: request::Kind) -> Response {
    let result = match kind {
        request::Kind::Vote(req) => vote(raft, &req).await,
        request::Kind::Append(req) => append(raft, req).await,
        request::Kind::Snapshot(req) => snapshot(raft, receipt, req).await,
        request::Kind::Transact(_) => Err(RpcServeError::NotRaft("transact")),
        request::Kind::Follow(_) => Err(RpcServeError::NotRaft("follow")),
        request::Kind::Lease(_) => Err(RpcServeError::NotRaft("lease")),
        request::Kind::Status(_) => Err(RpcServeError::NotRaft("status")),
        request::Kind::Elect(_) => Err(RpcServeError::NotRaft("elect")),
    };
    let kind = result.unwrap_or_else(|e| {
        tracing::debug!(error = %e, "raft rpc answered with an error");
        response::Kind::Error(ErrorMsg {
            message: e.to_string(),
        })
    });
    // The build's version; the core's endpoint sets its own (`crate::wire`).
    Response {
        kind: Some(kind),
        wire: Some(meshmq_shared::wire_version::WireVersion::CURRENT.to_proto()),
    }
}

async fn vote(raft: &Raft, req: &pb::VoteRequest) -> Result<response::Kind, RpcServeError> {
    let rpc = vote_request_from_proto(req).map_err(|source| RpcServeError::Malformed {
        rpc: "vote",
        source,
    })?;
    let resp = raft.vote(rpc).await.map_err(|e| RpcServeError::Raft {
        rpc: "vote",
        message: e.to_string(),
    })?;
    Ok(response::Kind::Vote(vote_response_to_proto(&resp)))
}

async fn append(
    raft: &Raft,
    req: pb::AppendEntriesRequest,
) -> Result<response::Kind, RpcServeError> {
    let rpc = append_request_from_proto(req).map_err(|source| RpcServeError::Malformed {
        rpc: "append",
        source,
    })?;
    let resp = raft
        .append_entries(rpc)
        .await
        .map_err(|e| RpcServeError::Raft {
            rpc: "append",
            message: e.to_string(),
        })?;
    Ok(response::Kind::Append(append_response_to_proto(&resp)))
}

async fn snapshot(
    raft: &Raft,
    receipt: &SnapshotReceipt,
    req: pb::InstallSnapshotRequest,
) -> Result<response::Kind, RpcServeError> {
    let rpc = snapshot_request_from_proto(req).map_err(|source| RpcServeError::Malformed {
        rpc: "snapshot",
        source,
    })?;
    let (id, offset, len, sent_vote) = (
        rpc.meta.snapshot_id.clone(),
        rpc.offset,
        rpc.data.len() as u64,
        rpc.vote,
    );
    receipt
        .check(&id, offset, len)
        .map_err(|message| RpcServeError::Raft {
            rpc: "snapshot",
            message,
        })?;
    let resp = raft
        .install_snapshot(rpc)
        .await
        .map_err(|e| RpcServeError::Raft {
            rpc: "snapshot",
            message: e.to_string(),
        })?;
    // openraft answers Ok with its own (higher) vote to a chunk it refused for a stale vote:
    // only a chunk it took may move the receipt, or any peer could replace the snapshot
    // being received and make the leader's next chunk fail.
    if resp.vote <= sent_vote {
        receipt.accepted(&id, offset, len);
    }
    Ok(response::Kind::Snapshot(snapshot_response_to_proto(&resp)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_must_be_contiguous_and_bounded() {
        let r = SnapshotReceipt::default();
        assert!(r.check("s1", 1 << 40, 10).is_err(), "no start: refused");
        assert!(r.check("s1", 0, 100).is_ok());
        r.accepted("s1", 0, 100);
        assert!(r.check("s1", 100, 100).is_ok(), "the next chunk");
        assert!(r.check("s1", 50, 100).is_ok(), "a chunk sent again");
        assert!(
            r.check("s1", 1 << 40, 10).is_err(),
            "a seek past what was received"
        );
        assert!(r.check("s2", 100, 10).is_err(), "another snapshot's chunk");
        r.accepted("s1", 100, 100);
        assert!(r.check("s1", 200, 1).is_ok());
        assert!(
            r.check("s1", 0, MAX_SNAPSHOT_BYTES + 1).is_err(),
            "over the bound"
        );
        assert!(r.check("s1", u64::MAX, 10).is_err(), "no overflow");
        r.accepted("s2", 0, 5);
        assert!(r.check("s1", 200, 1).is_err(), "a new snapshot replaced it");
    }
}
