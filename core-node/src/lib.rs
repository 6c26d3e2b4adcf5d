//! `core-node`: a member of the Raft group that holds the cluster tables.
//!
//! [`node::CoreNode`] runs one core: openraft on redb stores (`raft/`), and on one QUIC
//! endpoint (mutual TLS, ALPN `meshmq-core/1`) the Raft RPCs between cores, `Transact`
//! (group commit on the leader, forwarded by followers), `Follow` (the committed log for
//! replicants) and replicant leases. A standalone replicant runs the same `CoreNode` in its
//! own process as a single voter. [`api`] is what callers see of a transaction. [`http`] is
//! the core's admin HTTP (health, metrics, membership), locked by an API key or a client
//! certificate from the cluster CA.
//!
//! This crate owns ordering, storage and commit of table operations; it never implements
//! table rules (they live in [`Tables::apply`](meshmq_shared::tables::Tables::apply)) and
//! never speaks MQTT. openraft types are named only under [`raft`].

pub mod api;
pub mod background;
pub mod http;
pub mod logging;
pub mod node;
pub mod process_metrics;
pub mod prometheus;
pub mod raft;
pub mod wire;
