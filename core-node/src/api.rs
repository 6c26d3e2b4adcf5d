//! What a caller of the core group sees, whichever holder serves it (a Raft core over QUIC or
//! the embedded one): the result of a transaction and its typed errors, and their mapping to
//! and from the `meshmq.core.v1` wire messages. No I/O here.

use meshmq_proto::core::{
    self as wire, NotLeader, TransactResponse, transact_response::Result as WireResult,
};
use meshmq_proto::raft::Blank;
use meshmq_proto::tables::OpResult;

/// Most ops one transaction may carry; a larger one is refused whole.
pub const MAX_OPS_PER_ENTRY: usize = 10_000;

/// A committed log entry and what applying it produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Committed {
    /// The log index of the entry (1 for the first one).
    pub index: u64,
    /// One result per op, in order; a rejected op is a result, not an error.
    pub results: Vec<OpResult>,
}

/// Why a transaction was not committed (for `Timeout`: not known to be committed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransactError {
    /// This core cannot commit and could not forward; retry on `leader`.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader {
        /// The current leader's core address, if known.
        leader: Option<String>,
    },
    /// The entry was not committed in time; it may still commit later.
    #[error("the transaction was not committed in time")]
    Timeout,
    /// The entry as a whole was refused (e.g. more than [`MAX_OPS_PER_ENTRY`] ops).
    #[error("transaction refused: {0}")]
    Rejected(String),
    /// No leader, no reachable core, or the reply could not be read.
    #[error("core group unavailable: {0}")]
    Unavailable(String),
}

impl TransactError {
    /// A short, stable label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::NotLeader { .. } => "not_leader",
            Self::Timeout => "timeout",
            Self::Rejected(_) => "rejected",
            Self::Unavailable(_) => "unavailable",
        }
    }

    /// True when the batch certainly did not commit, so sending it again cannot apply it twice.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::NotLeader { .. } | Self::Unavailable(_))
    }
}

/// Encodes a transaction outcome for the wire.
pub fn to_wire(result: Result<Committed, TransactError>) -> TransactResponse {
    let result = match result {
        Ok(c) => WireResult::Committed(wire::Committed {
            index: c.index,
            results: c.results,
        }),
        Err(TransactError::NotLeader { leader }) => WireResult::NotLeader(NotLeader {
            leader_id: None,
            leader_addr: leader.unwrap_or_default(),
        }),
        Err(TransactError::Timeout) => WireResult::Timeout(Blank {}),
        Err(TransactError::Rejected(why)) => WireResult::Rejected(why),
        Err(TransactError::Unavailable(why)) => WireResult::Unavailable(why),
    };
    TransactResponse {
        result: Some(result),
    }
}

/// Decodes a transaction outcome from the wire; a response without a result is
/// `Unavailable` (the peer sent something we cannot read).
pub fn from_wire(resp: TransactResponse) -> Result<Committed, TransactError> {
    match resp.result {
        Some(WireResult::Committed(c)) => Ok(Committed {
            index: c.index,
            results: c.results,
        }),
        Some(WireResult::NotLeader(n)) => Err(TransactError::NotLeader {
            leader: (!n.leader_addr.is_empty()).then_some(n.leader_addr),
        }),
        Some(WireResult::Timeout(_)) => Err(TransactError::Timeout),
        Some(WireResult::Rejected(why)) => Err(TransactError::Rejected(why)),
        Some(WireResult::Unavailable(why)) => Err(TransactError::Unavailable(why)),
        None => Err(TransactError::Unavailable(
            "transact response without a result".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_outcome_survives_the_wire() {
        let cases = [
            Ok(Committed {
                index: 7,
                results: vec![meshmq_shared::tables::ok_result()],
            }),
            Err(TransactError::NotLeader {
                leader: Some("127.0.0.1:4370".into()),
            }),
            Err(TransactError::NotLeader { leader: None }),
            Err(TransactError::Timeout),
            Err(TransactError::Rejected("too many ops".into())),
            Err(TransactError::Unavailable("no leader".into())),
        ];
        for case in cases {
            assert_eq!(from_wire(to_wire(case.clone())), case);
        }
        assert!(from_wire(TransactResponse { result: None }).is_err());
    }
}
