//! Code shared by every meshmq node: the MQTT codec, topic names and filters with the
//! subscription trie, the cluster tables and their pure apply function, configuration types
//! and metric names, and what the binaries share at start-up ([`startup`]). Nothing here owns
//! a socket or spawns a task.

pub mod auth;
pub mod codec;
pub mod config;
pub mod follow_snapshot;
pub mod log_gate;
pub mod metrics;
pub mod quic;
pub mod startup;
pub mod tables;
pub mod tls;
pub mod topic;
pub mod wire_version;
