//! meshmq replicant node: terminates MQTT 3.1, 3.1.1 and 5.0 clients over TCP and WebSocket.
//!
//! In standalone mode (no cores configured) it holds the cluster tables in an embedded
//! in-process core; the same code paths later talk to a Raft core group.
//!
//! Layout: [`connection`] (one task per client) drives [`session`] (pure MQTT session state)
//! and publishes through [`publish`] and [`router`] into [`mailbox`]es; [`cluster`] writes
//! the tables; [`broker`] wires listeners, [`http`] and [`ws`] together.

pub mod alarms;
pub mod api;
pub mod api_keys;
pub mod authn;
pub mod authz;
pub mod banned;
pub mod broker;
pub mod cli;
pub mod cluster;
pub mod configs;
pub mod connection;
pub mod core_handle;
pub mod core_link;
pub mod ctl;
pub mod ctx;
pub mod data;
pub mod delivery_latency;
pub mod evacuation;
pub mod fanout;
pub mod forward;
pub mod handover;
pub mod http;
pub mod listeners;
pub use meshmq_shared::log_gate;
pub mod mailbox;
pub mod message;
pub mod node_budget;
pub mod node_metrics;
pub mod nodes;
pub mod peer;
pub mod publish;
pub mod replica;
pub mod route_writer;
pub mod router;
pub mod session;
pub mod sessions;
pub mod settings;
pub mod shared_pick;
pub mod sys;
pub mod trace;
pub mod unknown_claims;
pub mod ws;

pub use authz::{AllowAll, Authorizer, AuthzAction};
pub use broker::{Broker, BrokerBuilder, BrokerHandle, start};
