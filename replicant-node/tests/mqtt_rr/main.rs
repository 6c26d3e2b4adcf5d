//! The MQTT 3.1.1 / 5.0 suite of `tests/mqtt`, module for module, run behind an in-process
//! round-robin TCP proxy over the 3 replicants of a 3-core cluster: each new connection of
//! the same client lands on the next replicant, as behind a load balancer. Nothing a client
//! sees may depend on landing on the same node twice: its session, subscriptions and queued
//! messages follow it (docs/architecture.md, invariants 1 to 3). See `common/topology.rs`.

#[path = "../common/mod.rs"]
mod common;

#[path = "../mqtt/authn.rs"]
mod authn;
#[path = "../mqtt/authn_api.rs"]
mod authn_api;
#[path = "../mqtt/authn_http.rs"]
mod authn_http;
#[path = "../mqtt/authn_jwt.rs"]
mod authn_jwt;
#[path = "../mqtt/authn_scram.rs"]
mod authn_scram;
#[path = "../mqtt/authn_scram_client.rs"]
mod authn_scram_client;
#[path = "../mqtt/authz.rs"]
mod authz;
#[path = "../mqtt/authz_rules.rs"]
mod authz_rules;
#[path = "../mqtt/banned.rs"]
mod banned;
#[path = "../mqtt/closing.rs"]
mod closing;
#[path = "../mqtt/connect.rs"]
mod connect;
#[path = "../mqtt/malformed.rs"]
mod malformed;
#[path = "../mqtt/qos.rs"]
mod qos;
#[path = "../mqtt/qos2.rs"]
mod qos2;
#[path = "../mqtt/retained.rs"]
mod retained;
#[path = "../mqtt/sessions.rs"]
mod sessions;
#[path = "../mqtt/shared_subs.rs"]
mod shared_subs;
#[path = "../mqtt/subscribe_acks.rs"]
mod subscribe_acks;
#[path = "../mqtt/sys_events.rs"]
mod sys_events;
#[path = "../mqtt/sys_publish.rs"]
mod sys_publish;
#[path = "../mqtt/topics.rs"]
mod topics;
#[path = "../mqtt/v5_properties.rs"]
mod v5_properties;
#[path = "../mqtt/websocket.rs"]
mod websocket;
#[path = "../mqtt/will.rs"]
mod will;
