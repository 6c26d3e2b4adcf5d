//! The replicant's named listeners with real clients: TLS (rumqttc over rustls and raw
//! tokio-rustls) with server and mutual authentication, CRLs, SNI, encrypted keys, identity
//! from the client certificate, certificate reloads under live connections, secure
//! WebSocket, per-listener limits, PROXY protocol v1/v2 (and HAProxy in front when the
//! machine has it), listeners without authentication, and the listeners API.
//!
//! Every broker runs in this process on 127.0.0.1 port 0; every wait has a deadline.

#[path = "common/mod.rs"]
#[allow(unused_imports)] // not every helper's re-export is used here
mod common;

#[path = "listeners/api.rs"]
mod api;
#[path = "listeners/authn_off.rs"]
mod authn_off;
#[path = "listeners/haproxy.rs"]
mod haproxy;
#[path = "listeners/identity.rs"]
mod identity;
#[path = "listeners/limits.rs"]
mod limits;
#[path = "listeners/proxy.rs"]
mod proxy;
#[path = "listeners/reload.rs"]
mod reload;
#[path = "listeners/startup.rs"]
mod startup;
#[path = "listeners/support.rs"]
#[allow(dead_code)] // helpers for every module
mod support;
#[path = "listeners/tls_client_certs.rs"]
mod tls_client_certs;
#[path = "listeners/tls_server.rs"]
mod tls_server;
#[path = "listeners/wss.rs"]
mod wss;
