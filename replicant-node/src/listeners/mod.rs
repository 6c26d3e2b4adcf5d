//! The replicant's named MQTT listeners (`tcp`, `ssl`, `ws`, `wss`, EMQX's shape): binding
//! every enabled one ([`bind`]), accepting under the listener's and the node's connection
//! caps and its accept rate ([`accept`], [`rate`]), the steps before MQTT on each accepted
//! socket: PROXY protocol header ([`proxy_protocol`], [`proxy_read`]), TLS handshake
//! ([`tls`]), WebSocket upgrade ([`transport`]), certificate reloads ([`reload`]) and the
//! `/api/v5/listeners` routes ([`api`]).
//!
//! Owns [`Listener`] (one per configured listener: its settings, bound address, TLS
//! configuration and live connection count) and [`ConnMeta`], what a connection carries
//! from its listener: held for the connection's life, it releases the listener's and the
//! node's connection slots when dropped. A plain TCP listener without PROXY protocol hands
//! its sockets straight to `crate::connection::spawn`, so that path (and an idle TCP
//! connection's memory) is the same as with a single listener.

pub mod accept;
pub mod api;
pub mod bind;
pub mod prefixed;
pub mod proxy_protocol;
pub mod proxy_read;
pub mod rate;
pub mod reload;
pub mod tls;
pub mod transport;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use meshmq_shared::auth::acl::IpNet;
use meshmq_shared::config::ListenerSpec;
use meshmq_shared::tls::ServerTls;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::ws::WsConfig;

/// One configured listener and its live state.
pub struct Listener {
    /// Its settings, defaults applied.
    pub spec: ListenerSpec,
    /// `type:name`, as the API and the metric labels name it.
    pub id: String,
    /// The address bound (the configured one with port 0 resolved); `None` when disabled.
    pub addr: Option<SocketAddr>,
    /// TLS (ssl and wss listeners that are enabled).
    pub tls: Option<Arc<ServerTls>>,
    /// WebSocket upgrade settings (ws and wss listeners that are enabled).
    pub ws: Option<Arc<WsConfig>>,
    /// `proxy_protocol_trusted`, parsed.
    trusted: Vec<IpNet>,
    /// Connections accepted here and not yet ended (handshakes included).
    current: AtomicUsize,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("id", &self.id)
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Listener {
    /// A listener that is not bound (disabled, or before binding).
    pub(crate) fn new(spec: ListenerSpec, trusted: Vec<IpNet>) -> Listener {
        Listener {
            id: spec.id(),
            spec,
            addr: None,
            tls: None,
            ws: None,
            trusted,
            current: AtomicUsize::new(0),
        }
    }

    /// Connections on this listener now (TLS and WebSocket handshakes included).
    pub fn current_connections(&self) -> usize {
        self.current.load(Ordering::Relaxed)
    }

    /// Whether this listener is serving.
    pub fn running(&self) -> bool {
        self.addr.is_some()
    }

    /// Whether `ip` may send PROXY headers (and WebSocket forwarding headers) here.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.trusted.iter().any(|n| n.contains(ip))
    }

    /// Takes one of this listener's connection slots; false at `max_connections`.
    fn enter(&self) -> bool {
        let max = self.spec.config.max_connections.unwrap_or(usize::MAX);
        self.current
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok()
    }

    /// Gives a slot back.
    fn leave(&self) {
        self.current.fetch_sub(1, Ordering::AcqRel);
    }

    /// The `transport` label of `meshmq_connections` (`tcp`, `ssl`, `ws`, `wss`).
    pub fn transport(&self) -> &'static str {
        self.spec.kind.as_str()
    }
}

/// Every configured listener of the node, in the order of `ListenersConfig::resolve`.
#[derive(Debug, Default)]
pub struct Listeners {
    all: Vec<Arc<Listener>>,
}

impl Listeners {
    /// The registry of `all`.
    pub(crate) fn new(all: Vec<Arc<Listener>>) -> Listeners {
        Listeners { all }
    }

    /// Every listener, enabled or not.
    pub fn all(&self) -> &[Arc<Listener>] {
        &self.all
    }

    /// The listener `type:name`.
    pub fn get(&self, id: &str) -> Option<&Arc<Listener>> {
        self.all.iter().find(|l| l.id == id)
    }

    /// The bound address of `type:name`, if it is running.
    pub fn addr(&self, id: &str) -> Option<SocketAddr> {
        self.get(id).and_then(|l| l.addr)
    }
}

/// A verified client certificate, as the TLS handshake delivered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCertInfo {
    /// The leaf certificate's DER.
    pub leaf_der: Vec<u8>,
}

impl PeerCertInfo {
    /// What placeholders take from the certificate (`${cert_common_name}`,
    /// `${cert_subject}`).
    pub fn names(&self) -> CertNames {
        CertNames {
            common_name: meshmq_shared::tls::identity::common_name(&self.leaf_der),
            subject: meshmq_shared::tls::identity::subject_dn(&self.leaf_der),
        }
    }
}

/// A client certificate's names, kept for authentication and authorization requests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertNames {
    /// The subject's common name (`${cert_common_name}`).
    pub common_name: Option<String>,
    /// The subject's distinguished name, RFC 4514 (`${cert_subject}`).
    pub subject: Option<String>,
}

/// What a connection carries from its listener, for its whole life: the listener (its
/// rules for CONNECT), the client certificate until CONNECT has used it, and the
/// listener's and the node's connection slots, released when this is dropped.
pub struct ConnMeta {
    listener: Arc<Listener>,
    /// The node-wide cap (`listeners.max_connections`).
    _node: OwnedSemaphorePermit,
    /// The verified client certificate (TLS listeners; boxed: most connections have none).
    pub cert: Option<Box<PeerCertInfo>>,
}

impl ConnMeta {
    /// Takes a slot of `listener`, then one of the node's (`node_cap`); the refusal's
    /// `reason` label otherwise (`listener_max_connections`, `max_connections`).
    pub(crate) fn admit(
        listener: &Arc<Listener>,
        node_cap: &Arc<Semaphore>,
    ) -> Result<Self, &'static str> {
        if !listener.enter() {
            return Err("listener_max_connections");
        }
        let Ok(node) = node_cap.clone().try_acquire_owned() else {
            listener.leave();
            return Err("max_connections");
        };
        Ok(ConnMeta {
            listener: listener.clone(),
            _node: node,
            cert: None,
        })
    }

    /// The listener the connection came in on.
    pub fn listener(&self) -> &Listener {
        &self.listener
    }
}

impl Drop for ConnMeta {
    fn drop(&mut self) {
        self.listener.leave();
    }
}

impl std::fmt::Debug for ConnMeta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnMeta")
            .field("listener", &self.listener.id)
            .field("cert", &self.cert.is_some())
            .finish()
    }
}
