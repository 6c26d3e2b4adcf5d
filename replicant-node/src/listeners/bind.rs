//! Start-up of the listeners: every listener of `ListenersConfig::resolve` gets its TLS
//! configuration loaded (`ssl`, `wss`), its WebSocket settings checked (`ws`, `wss`) and its
//! socket bound with `listeners.backlog`, before anything serves. Any failure stops the
//! start with a message that names the listener's setting (`listeners.ssl.default.bind /
//! MESHMQ_LISTENERS__SSL__DEFAULT__BIND`); the old flat keys are named when the address
//! came from them (`listeners.mqtt_bind`, `listeners.ws_bind`).

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use meshmq_shared::auth::acl::IpNet;
use meshmq_shared::config::{Config, DEFAULT_NAME, ListenerKind, ListenerSpec, setting};
use meshmq_shared::tls::ServerTls;
use tokio::net::{TcpListener, TcpSocket};

use super::{Listener, Listeners};
use crate::ws::WsConfig;

/// A bound listener and its socket, ready for [`super::accept::run`].
pub type Bound = (Arc<Listener>, TcpListener);

/// Loads, checks and binds every enabled listener of `config`; the registry of all of
/// them (disabled ones included) and the sockets to accept on.
pub fn bind_all(config: &Config) -> anyhow::Result<(Listeners, Vec<Bound>)> {
    let specs = config
        .listeners
        .resolve()
        .map_err(|(key, reason)| anyhow::anyhow!("{}: {reason}", setting(&key)))?;
    let mut all = Vec::with_capacity(specs.len());
    let mut bound = Vec::new();
    for spec in specs {
        let trusted = spec
            .config
            .proxy_protocol_trusted
            .iter()
            .map(|t| IpNet::parse(t))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| {
                anyhow::anyhow!("{}: {e}", setting(&spec.key("proxy_protocol_trusted")))
            })?;
        let mut listener = Listener::new(spec, trusted);
        if !listener.spec.config.enable {
            all.push(Arc::new(listener));
            continue;
        }
        let spec = &listener.spec;
        if spec.kind.is_tls() {
            listener.tls = Some(load_tls(spec)?);
        }
        if spec.kind.is_websocket() {
            let ws = WsConfig::new(
                &spec.config.websocket,
                &spec.config.proxy_protocol_trusted,
                config.mqtt.max_packet_size,
            )
            .map_err(|e| anyhow::anyhow!("{} ({}): {e}", spec.id(), spec.key("websocket")))?;
            listener.ws = Some(Arc::new(ws));
        }
        let socket = listen(spec.bind, config.listeners.backlog).with_context(|| {
            format!(
                "cannot bind the {} listener {} {} ({})",
                what(spec.kind),
                spec.id(),
                spec.bind,
                setting(&bind_key(config, spec))
            )
        })?;
        listener.addr = Some(socket.local_addr()?);
        let listener = Arc::new(listener);
        all.push(listener.clone());
        bound.push((listener, socket));
    }
    Ok((Listeners::new(all), bound))
}

/// The TLS configuration of a TLS listener, its files read.
fn load_tls(spec: &ListenerSpec) -> anyhow::Result<Arc<ServerTls>> {
    let Some(options) = spec.config.ssl_options.as_ref() else {
        anyhow::bail!(
            "{}: a TLS listener needs a certificate",
            setting(&spec.key("ssl_options.certfile"))
        );
    };
    let alpn: &[&str] = if spec.kind == ListenerKind::Wss {
        &["http/1.1"]
    } else {
        &["mqtt"]
    };
    // The error names the file and the key under ssl_options, never a password.
    ServerTls::load(options, alpn)
        .map_err(|e| anyhow::anyhow!("{} ({}): {e}", spec.id(), spec.key("ssl_options")))
}

/// What the listener is, for messages.
fn what(kind: ListenerKind) -> &'static str {
    match kind {
        ListenerKind::Tcp => "MQTT",
        ListenerKind::Ssl => "MQTT over TLS",
        ListenerKind::Ws => "WebSocket",
        ListenerKind::Wss => "secure WebSocket",
    }
}

/// The setting the address came from: the flat key of earlier versions for the default
/// tcp and ws listeners when their own `bind` is not set.
fn bind_key(config: &Config, spec: &ListenerSpec) -> String {
    let own = |map: &std::collections::BTreeMap<String, _>| {
        map.get(DEFAULT_NAME)
            .is_some_and(|c: &meshmq_shared::config::ListenerConfig| c.bind.is_some())
    };
    match spec.kind {
        ListenerKind::Tcp if spec.name == DEFAULT_NAME && !own(&config.listeners.tcp) => {
            "listeners.mqtt_bind".into()
        }
        ListenerKind::Ws if spec.name == DEFAULT_NAME && !own(&config.listeners.ws) => {
            "listeners.ws_bind".into()
        }
        _ => spec.key("bind"),
    }
}

/// A listening socket with an accept queue of `backlog` (tokio's `bind` uses 1024).
pub fn listen(addr: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}
