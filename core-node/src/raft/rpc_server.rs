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

/// Serves one Raft RPC (`Vote`, `Append`, `Snapshot`) on `raft` and builds the response.
/// Any other kind, a malformed request or a Raft error gives `Response::Error` with a message
/// saying what went wrong; this function never panics on the request's contents.
pub async fn handle(raft: &Raft, kind: request::Kind) -> Response {
    let result = match kind {
        request::Kind::Vote(req) => vote(raft, &req).await,
        request::Kind::Append(req) => append(raft, req).await,
        request::Kind::Snapshot(req) => snapshot(raft, req).await,
        request::Kind::Transact(_) => Err(RpcServeError::NotRaft("transact")),
        request::Kind::Follow(_) => Err(RpcServeError::NotRaft("follow")),
        request::Kind::Lease(_) => Err(RpcServeError::NotRaft("lease")),
        request::Kind::Status(_) => Err(RpcServeError::NotRaft("status")),
    };
    let kind = result.unwrap_or_else(|e| {
        tracing::debug!(error = %e, "raft rpc answered with an error");
        response::Kind::Error(ErrorMsg {
            message: e.to_string(),
        })
    });
    Response { kind: Some(kind) }
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
    req: pb::InstallSnapshotRequest,
) -> Result<response::Kind, RpcServeError> {
    let rpc = snapshot_request_from_proto(req).map_err(|source| RpcServeError::Malformed {
        rpc: "snapshot",
        source,
    })?;
    let resp = raft
        .install_snapshot(rpc)
        .await
        .map_err(|e| RpcServeError::Raft {
            rpc: "snapshot",
            message: e.to_string(),
        })?;
    Ok(response::Kind::Snapshot(snapshot_response_to_proto(&resp)))
}
