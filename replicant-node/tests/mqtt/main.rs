//! The broker's MQTT 3.1.1 / 5.0 conformance suite: a real client library (rumqttc) and raw
//! bytes against a single-node broker started in-process on 127.0.0.1:0.
//!
//! One test binary (one link instead of a dozen) with one module per area; test names carry
//! the MQTT 5.0 section they check. Every wait has a deadline; sleeps only bound a window in
//! which something must NOT happen, preferably after a marker that arrived.

#[path = "../common/mod.rs"]
mod common;

mod api_clients;
mod api_guard;
mod api_messages;
mod authn;
mod authn_api;
mod authn_api_input;
mod authn_http;
mod authn_jwt;
mod authn_scram;
mod authn_scram_client;
mod authz;
mod authz_http;
mod authz_rules;
mod backpressure;
mod banned;
mod closing;
mod connect;
mod limits;
mod malformed;
mod qos;
mod qos2;
mod retained;
mod retained_replay;
mod sessions;
mod shared_subs;
mod subscribe_acks;
mod sys_events;
mod sys_publish;
mod topics;
mod v5_properties;
mod websocket;
mod will;
