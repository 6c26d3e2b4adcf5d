//! Protobuf types of every inter-node message, generated from `schema/` by prost at build
//! time (protox compiles the schema; no `protoc` is needed).
//!
//! This crate owns the wire schema only: no logic, no I/O. The table apply function lives in
//! `meshmq_shared::tables`.

/// The cluster tables (`meshmq.tables.v1`): ops, op results, rows and snapshots.
pub mod tables {
    #![allow(missing_docs)]
    include!(concat!(env!("OUT_DIR"), "/meshmq.tables.v1.rs"));
}
