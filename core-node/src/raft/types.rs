//! The openraft type configuration and every openraft type alias the crate uses. All openraft
//! types are named through this module (and `raft::convert`), so a move to openraft 0.10
//! touches `raft/` only.

use std::io::Cursor;

use serde::{Deserialize, Serialize};

/// Raft node id of a core (`--node-id`).
pub type NodeId = u64;

/// A core as Raft knows it: its core QUIC address (`host:port`).
pub type Node = openraft::BasicNode;

/// The application data of one normal log entry: an encoded `meshmq.tables.v1.Batch`.
/// Kept encoded so that the log, the network and the follow stream share one encoding and
/// the leader never re-encodes a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryData {
    /// Protobuf bytes of a `meshmq.tables.v1.Batch`.
    pub batch: Vec<u8>,
}

/// What applying one entry produced: one result per op (empty for blank/membership entries).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EntryResult {
    /// Protobuf bytes of each `meshmq.tables.v1.OpResult`, in op order.
    pub results: Vec<Vec<u8>>,
}

openraft::declare_raft_types!(
    /// meshmq's openraft configuration: u64 node ids, `BasicNode` addresses, entries carrying
    /// encoded batches, in-memory snapshot bytes, tokio.
    pub TypeConfig:
        D = EntryData,
        R = EntryResult,
        NodeId = NodeId,
        Node = Node,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// The Raft handle.
pub type Raft = openraft::Raft<TypeConfig>;
/// A log entry.
pub type Entry = openraft::Entry<TypeConfig>;
/// Log id.
pub type LogId = openraft::LogId<NodeId>;
/// Vote.
pub type Vote = openraft::Vote<NodeId>;
/// Stored membership.
pub type StoredMembership = openraft::StoredMembership<NodeId, Node>;
/// Snapshot metadata.
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, Node>;
/// Storage error.
pub type StorageError = openraft::StorageError<NodeId>;

/// A membership change request.
pub use openraft::ChangeMembers;
/// The payload kinds of a log entry (normal, blank, membership).
pub use openraft::EntryPayload;
/// Raft configuration and its compaction policy.
pub use openraft::{Config as RaftConfig, SnapshotPolicy};
/// Why a client write failed (e.g. this node is not the leader).
pub type ClientWriteError = openraft::error::ClientWriteError<NodeId, Node>;
/// Why `initialize` failed (`NotAllowed`: already initialized).
pub use openraft::error::InitializeError;
/// The wrapper of every Raft API error.
pub use openraft::error::RaftError;
