//! What a caller of the core group sees, whichever holder serves it (a Raft core over QUIC or
//! the embedded one): the result of a transaction and its typed errors, and their mapping to
//! and from the `meshmq.core.v1` wire messages. No I/O here.

use meshmq_proto::core::{
    self as wire, NotLeader, TransactResponse, transact_response::Result as WireResult,
};
use meshmq_proto::raft::Blank;
use meshmq_proto::tables::{Op, OpResult};
use prost::Message;

/// Most ops one transaction may carry; a larger one is refused whole.
pub const MAX_OPS_PER_ENTRY: usize = 10_000;

/// Most bytes one log entry's encoded `Batch` may take: 2 MiB. It admits the largest op the
/// broker makes with the default `mqtt.max_packet_size` (1 MiB: only a retained message
/// carries a payload, at most one packet's worth) with room to spare, and it is small
/// because openraft gives every AppendEntries the heartbeat interval (150 ms) as its
/// deadline: an entry must reach a follower and be written there within it, or the
/// request times out and is sent again whole (measured on this box's debug test cluster
/// with 50 ms heartbeats: a 300 KiB entry already needed retries). A transaction over it
/// is refused whole ([`TransactError::Rejected`] naming the bound): with `max_packet_size`
/// raised past 2 MiB, a retained message that large is refused, not stored. Batches of
/// several callers are split at it (never one caller's). The core RPC frame bound
/// (`raft::network::RPC_FRAME_BYTES`) holds one such entry.
pub const MAX_ENTRY_BYTES: usize = 2 << 20;

/// Bytes `op` adds to an encoded `Batch` (its field tag and length prefix included).
pub fn op_bytes(op: &Op) -> usize {
    let n = op.encoded_len();
    1 + prost::length_delimiter_len(n) + n
}

/// Bytes of the encoded `Batch` of `ops`.
pub fn batch_bytes(ops: &[Op]) -> usize {
    ops.iter().map(op_bytes).sum()
}

/// Checks that `ops` fit one entry ([`MAX_OPS_PER_ENTRY`], [`MAX_ENTRY_BYTES`]); returns
/// their encoded bytes, or the `Rejected` error that names the bound they pass.
pub fn check_entry(ops: &[Op]) -> Result<usize, TransactError> {
    if ops.len() > MAX_OPS_PER_ENTRY {
        return Err(TransactError::Rejected(format!(
            "{} ops in one transaction, at most {MAX_OPS_PER_ENTRY}",
            ops.len()
        )));
    }
    let bytes = batch_bytes(ops);
    if bytes > MAX_ENTRY_BYTES {
        return Err(TransactError::Rejected(format!(
            "{bytes} bytes of ops in one transaction, over the entry bound of \
             {MAX_ENTRY_BYTES} bytes (MAX_ENTRY_BYTES)"
        )));
    }
    Ok(bytes)
}

/// Splits `ops` into consecutive runs that each fit one entry (in ops and bytes), in order.
/// An op over [`MAX_ENTRY_BYTES`] on its own is a run alone (its transaction is refused).
pub fn split_entries(ops: Vec<Op>) -> Vec<Vec<Op>> {
    let mut runs = Vec::new();
    let mut run: Vec<Op> = Vec::new();
    let mut bytes = 0;
    for op in ops {
        let b = op_bytes(&op);
        if !run.is_empty() && (run.len() >= MAX_OPS_PER_ENTRY || bytes + b > MAX_ENTRY_BYTES) {
            runs.push(std::mem::take(&mut run));
            bytes = 0;
        }
        bytes += b;
        run.push(op);
    }
    if !run.is_empty() {
        runs.push(run);
    }
    runs
}

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
    /// The entry as a whole was refused (e.g. more than [`MAX_OPS_PER_ENTRY`] ops, or over
    /// [`MAX_ENTRY_BYTES`]).
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

    fn blob(bytes: usize) -> Op {
        use meshmq_proto::tables::{RetainedMessage, RetainedSet, op};
        Op {
            kind: Some(op::Kind::RetainedSet(RetainedSet {
                message: Some(RetainedMessage {
                    topic: "t".into(),
                    payload: vec![7; bytes].into(),
                    ..Default::default()
                }),
                ..Default::default()
            })),
        }
    }

    #[test]
    fn batch_bytes_is_the_encoded_batch_length() {
        let ops = vec![blob(10), blob(300), blob(70_000)];
        let encoded = meshmq_proto::tables::Batch { ops: ops.clone() }.encoded_len();
        assert_eq!(batch_bytes(&ops), encoded);
    }

    #[test]
    fn an_entry_over_the_byte_bound_is_refused_naming_it() {
        let third = MAX_ENTRY_BYTES / 3;
        assert!(check_entry(&[blob(third), blob(third)]).is_ok());
        let err = check_entry(&[blob(third), blob(third), blob(third)]).expect_err("over");
        let TransactError::Rejected(why) = err else {
            panic!("{err:?}")
        };
        assert!(why.contains("MAX_ENTRY_BYTES"), "{why}");
        assert!(why.contains(&MAX_ENTRY_BYTES.to_string()), "{why}");
    }

    #[test]
    fn split_entries_keeps_order_and_both_bounds() {
        let third = MAX_ENTRY_BYTES / 3;
        let ops = vec![
            blob(third),
            blob(third),
            blob(third),
            blob(10),
            blob(MAX_ENTRY_BYTES),
        ];
        let runs = split_entries(ops.clone());
        assert_eq!(runs.len(), 3);
        assert_eq!(runs.concat(), ops, "order kept, nothing lost");
        assert!(check_entry(&runs[0]).is_ok() && check_entry(&runs[1]).is_ok());
        assert_eq!(runs[2].len(), 1, "an op over the bound goes alone");
        let many = vec![blob(1); MAX_OPS_PER_ENTRY + 1];
        let runs = split_entries(many);
        assert_eq!(
            runs.iter().map(Vec::len).collect::<Vec<_>>(),
            [MAX_OPS_PER_ENTRY, 1]
        );
    }
}
