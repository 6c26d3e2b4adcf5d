//! `core-node`: the holder of the cluster tables. Today that is [`embedded::EmbeddedCore`],
//! the in-process holder a standalone broker uses; later a Raft group (openraft state
//! machine on redb) replaces it behind the same `transact` / `read` shape, with the same
//! pure [`Tables::apply`](meshmq_shared::tables::Tables::apply).
//!
//! This crate owns ordering, storage and commit of table operations; it never implements
//! table rules (they live in `meshmq_shared::tables`) and never speaks MQTT.

pub mod api;
pub mod embedded;
pub mod http;
pub mod node;
pub mod prometheus;
pub mod raft;
