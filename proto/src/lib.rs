//! Protobuf types of every inter-node message, generated from `schema/` by prost at build
//! time (protox compiles the schema; no `protoc` is needed).
//!
//! This crate owns the wire schema only: no logic, no I/O. The table apply function lives in
//! `meshmq_shared::tables`.

/// prost's module tree: one module per package, nested as the package names are, so that
/// cross-package references (`super::super::super::raft::v1::...`) resolve.
mod generated {
    pub mod meshmq {
        pub mod tables {
            pub mod v1 {
                #![allow(missing_docs)]
                include!(concat!(env!("OUT_DIR"), "/meshmq.tables.v1.rs"));
            }
        }
        pub mod raft {
            pub mod v1 {
                #![allow(missing_docs)]
                include!(concat!(env!("OUT_DIR"), "/meshmq.raft.v1.rs"));
            }
        }
        pub mod core {
            pub mod v1 {
                #![allow(missing_docs)]
                // A follow frame is a snapshot header (every table's small rows) or an entry.
                #![allow(clippy::large_enum_variant)]
                include!(concat!(env!("OUT_DIR"), "/meshmq.core.v1.rs"));
            }
        }
        pub mod peer {
            pub mod v1 {
                #![allow(missing_docs)]
                // A hand-over item is one of a small request or a delivery with its message.
                #![allow(clippy::large_enum_variant)]
                include!(concat!(env!("OUT_DIR"), "/meshmq.peer.v1.rs"));
            }
        }
    }
}

/// The cluster tables (`meshmq.tables.v1`): ops, op results, rows and snapshots.
pub use generated::meshmq::tables::v1 as tables;

/// Raft messages between cores (`meshmq.raft.v1`), also the store's on-disk entry encoding.
pub use generated::meshmq::raft::v1 as raft;

/// The core node's QUIC services (`meshmq.core.v1`): Raft RPCs, Transact, Follow, leases.
pub use generated::meshmq::core::v1 as core;

/// Replicant-to-replicant messages (`meshmq.peer.v1`): forwarded PUBLISHes.
pub use generated::meshmq::peer::v1 as peer;
