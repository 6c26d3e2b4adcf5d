//! Where a node listens: the node-wide listener settings and the named MQTT listeners in
//! EMQX's shape (`listeners.tcp.<name>`, `listeners.ssl.<name>`, `listeners.ws.<name>`,
//! `listeners.wss.<name>`).
//!
//! The flat keys of earlier versions keep working: `listeners.mqtt_bind` is the address of
//! `listeners.tcp.default`, `listeners.ws_bind` that of `listeners.ws.default`. Naming one
//! address both ways is refused ([`ListenersConfig::resolve`]). Types and the resolution
//! into a list of listeners live here; binding and serving is the replicant's.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::tls::{PeerCertAs, SslOptions};

/// Listener addresses. Port 0 picks a free port (tests read the bound address back).
/// `Debug` leaves the value of `api_key` out.
#[derive(Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ListenersConfig {
    /// MQTT over TCP: the address of `listeners.tcp.default` (the name earlier versions
    /// used; set one or the other).
    #[schemars(extend("format" = "socket-address"))]
    pub mqtt_bind: SocketAddr,
    /// MQTT over WebSocket: the address of `listeners.ws.default` (path `/mqtt`); `None`
    /// disables it unless `listeners.ws.default.bind` is set.
    #[schemars(extend("format" = "socket-address"))]
    pub ws_bind: Option<SocketAddr>,
    /// HTTP: `/metrics`, `/health`, REST API.
    #[schemars(extend("format" = "socket-address"))]
    pub http_bind: Option<SocketAddr>,
    /// Cap on concurrent MQTT connections on this node, every listener together (each
    /// listener may have a lower `max_connections` of its own).
    pub max_connections: usize,
    /// Length of the kernel's accept queue of the MQTT and WebSocket listeners (the kernel
    /// caps it at `net.core.somaxconn`). Under a reconnect storm a short queue overflows and
    /// every dropped SYN costs its client a 1 s (then 3 s, ...) retransmission.
    pub backlog: u32,
    /// A static key for the HTTP API (`Authorization: Bearer <key>`), accepted besides the
    /// API keys of `/api/v5/api_key` and `api_key.bootstrap_file`. Every route needs a key
    /// once any is set or exists, except `/health`, `/api/v5/status`, the availability check
    /// and (unless `metrics_require_key`) `/metrics`. None, no bootstrap file and no API
    /// key: allowed only while `http_bind` is on loopback (start-up refuses otherwise), and
    /// browser-like requests are refused. At least 16 characters. Setting it on any node puts
    /// every node of the cluster in key mode; the key itself is accepted by this node only.
    pub api_key: Option<String>,
    /// Whether `/metrics` needs an API key too (false: Prometheus scrapes without one, as
    /// EMQX's Prometheus endpoint).
    pub metrics_require_key: bool,
    /// Milliseconds one write to an MQTT client may take (its socket or WebSocket accepting
    /// what the broker sends) before the client is taken for dead and closed (EMQX's
    /// `tcp_options.send_timeout`, 15 s). A client that stops reading holds its connection
    /// at most this long.
    pub send_timeout_ms: u64,
    /// With no authenticator configured, accept anonymous clients on MQTT and WebSocket
    /// listeners bound to non-loopback addresses too. False (the default): such a node
    /// refuses to start, so an open broker is never put on a network by accident
    /// (mosquitto 2 does the same). Loopback listeners accept anonymous clients either way.
    pub allow_anonymous: bool,
    /// MQTT over TCP listeners by name (`default` is `mqtt_bind`'s).
    pub tcp: BTreeMap<String, ListenerConfig>,
    /// MQTT over TLS listeners by name (`default` binds 127.0.0.1:8883 unless told).
    pub ssl: BTreeMap<String, ListenerConfig>,
    /// MQTT over WebSocket listeners by name (`default` is `ws_bind`'s).
    pub ws: BTreeMap<String, ListenerConfig>,
    /// MQTT over secure WebSocket listeners by name (`default` binds 127.0.0.1:8084 and,
    /// without `ssl_options` of its own, uses `listeners.ssl.default`'s).
    pub wss: BTreeMap<String, ListenerConfig>,
}

impl Default for ListenersConfig {
    fn default() -> Self {
        ListenersConfig {
            mqtt_bind: SocketAddr::from(([127, 0, 0, 1], 1883)),
            ws_bind: Some(SocketAddr::from(([127, 0, 0, 1], 8083))),
            http_bind: Some(SocketAddr::from(([127, 0, 0, 1], 18083))),
            max_connections: 1_000_000,
            backlog: 4096,
            api_key: None,
            metrics_require_key: false,
            send_timeout_ms: 15_000,
            allow_anonymous: false,
            tcp: BTreeMap::new(),
            ssl: BTreeMap::new(),
            ws: BTreeMap::new(),
            wss: BTreeMap::new(),
        }
    }
}

impl std::fmt::Debug for ListenersConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenersConfig")
            .field("mqtt_bind", &self.mqtt_bind)
            .field("ws_bind", &self.ws_bind)
            .field("http_bind", &self.http_bind)
            .field("max_connections", &self.max_connections)
            .field("backlog", &self.backlog)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("metrics_require_key", &self.metrics_require_key)
            .field("send_timeout_ms", &self.send_timeout_ms)
            .field("allow_anonymous", &self.allow_anonymous)
            .field("tcp", &self.tcp)
            .field("ssl", &self.ssl)
            .field("ws", &self.ws)
            .field("wss", &self.wss)
            .finish()
    }
}

/// One named listener. `ssl_options` and the certificate identity apply to `ssl` and `wss`
/// listeners, `websocket` to `ws` and `wss`; set elsewhere they are refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ListenerConfig {
    /// Address to listen on; the `default` listeners have one, other names must set it.
    #[schemars(extend("format" = "socket-address"))]
    pub bind: Option<SocketAddr>,
    /// False: declared but not started (listed by the API as stopped).
    pub enable: bool,
    /// Cap on this listener's concurrent connections, TLS and WebSocket handshakes in
    /// progress included (unset: only the node's cap). One over it is closed at accept.
    pub max_connections: Option<usize>,
    /// Connections accepted per second at most (EMQX writes `"1000/s"`; here `1000`);
    /// beyond it accepting waits, so the kernel's queue absorbs a storm. Unset: no limit.
    pub max_conn_rate: Option<u32>,
    /// Every connection starts with a PROXY protocol v1 or v2 header (HAProxy
    /// `send-proxy[-v2]`, AWS NLB), before TLS or HTTP: the client address it names is the
    /// one used everywhere. Any listener type.
    pub proxy_protocol: bool,
    /// Addresses or CIDR blocks of the load balancers allowed to send PROXY headers (and,
    /// on ws/wss, `X-Forwarded-For`); required with `proxy_protocol`, where a connection
    /// from anyone else is closed.
    pub proxy_protocol_trusted: Vec<String>,
    /// Milliseconds a trusted source has to send its PROXY header (EMQX's
    /// `proxy_protocol_timeout`, 3 s).
    pub proxy_protocol_timeout_ms: u64,
    /// False: the authentication chain is skipped on this listener (clients are anonymous
    /// unless a verified certificate names them; off loopback this needs
    /// `listeners.allow_anonymous` or required client certificates).
    pub enable_authn: bool,
    /// TLS (ssl and wss listeners).
    pub ssl_options: Option<SslOptions>,
    /// The username taken from a verified client certificate (ssl and wss listeners;
    /// EMQX's `peer_cert_as_username`). It replaces what CONNECT says, before
    /// authentication.
    pub peer_cert_as_username: PeerCertAs,
    /// The client id taken from a verified client certificate (EMQX's
    /// `peer_cert_as_clientid`).
    pub peer_cert_as_clientid: PeerCertAs,
    /// WebSocket (ws and wss listeners).
    pub websocket: WebsocketOptions,
}

impl Default for ListenerConfig {
    fn default() -> Self {
        ListenerConfig {
            bind: None,
            enable: true,
            max_connections: None,
            max_conn_rate: None,
            proxy_protocol: false,
            proxy_protocol_trusted: Vec::new(),
            proxy_protocol_timeout_ms: 3_000,
            enable_authn: true,
            ssl_options: None,
            peer_cert_as_username: PeerCertAs::Disabled,
            peer_cert_as_clientid: PeerCertAs::Disabled,
            websocket: WebsocketOptions::default(),
        }
    }
}

/// WebSocket settings of a `ws` or `wss` listener (EMQX's `websocket` block).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct WebsocketOptions {
    /// The HTTP path that upgrades to MQTT.
    pub mqtt_path: String,
    /// Subprotocols accepted, in order of preference: the first one the client also offers
    /// is chosen.
    pub supported_subprotocols: Vec<String>,
    /// Refuse (400) a client that offers none of `supported_subprotocols`; false: accept it
    /// without a subprotocol.
    pub fail_if_no_subprotocol: bool,
    /// Check the `Origin` header against `check_origins` (protects browsers from
    /// cross-site WebSocket hijacking).
    pub check_origin_enable: bool,
    /// With the check on: accept requests without `Origin` (non-browser clients).
    pub allow_origin_absence: bool,
    /// Origins allowed (`https://app.example.com`), compared exactly, case-insensitively.
    pub check_origins: Vec<String>,
    /// Header naming the client address when the peer is a trusted proxy
    /// (`proxy_protocol_trusted`); its last untrusted hop is taken.
    pub proxy_address_header: String,
    /// Header naming the client port under the same condition.
    pub proxy_port_header: String,
}

impl Default for WebsocketOptions {
    fn default() -> Self {
        WebsocketOptions {
            mqtt_path: "/mqtt".into(),
            supported_subprotocols: vec!["mqtt".into(), "mqttv3.1".into()],
            fail_if_no_subprotocol: true,
            check_origin_enable: false,
            allow_origin_absence: true,
            check_origins: Vec::new(),
            proxy_address_header: "x-forwarded-for".into(),
            proxy_port_header: "x-forwarded-port".into(),
        }
    }
}

/// The transport of a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ListenerKind {
    /// MQTT over TCP.
    Tcp,
    /// MQTT over TLS.
    Ssl,
    /// MQTT over WebSocket.
    Ws,
    /// MQTT over WebSocket over TLS.
    Wss,
}

impl ListenerKind {
    /// EMQX's type name: `tcp`, `ssl`, `ws`, `wss`.
    pub fn as_str(self) -> &'static str {
        match self {
            ListenerKind::Tcp => "tcp",
            ListenerKind::Ssl => "ssl",
            ListenerKind::Ws => "ws",
            ListenerKind::Wss => "wss",
        }
    }

    /// True for ssl and wss.
    pub fn is_tls(self) -> bool {
        matches!(self, ListenerKind::Ssl | ListenerKind::Wss)
    }

    /// True for ws and wss.
    pub fn is_websocket(self) -> bool {
        matches!(self, ListenerKind::Ws | ListenerKind::Wss)
    }
}

/// One listener after defaults are applied: what the replicant binds.
#[derive(Debug, Clone, PartialEq)]
pub struct ListenerSpec {
    /// Its transport.
    pub kind: ListenerKind,
    /// Its name (`default`, or the key under `listeners.<kind>`).
    pub name: String,
    /// The address to bind.
    pub bind: SocketAddr,
    /// Its settings; for TLS listeners `ssl_options` is set (inherited for `wss.default`).
    pub config: ListenerConfig,
}

impl ListenerSpec {
    /// EMQX's listener id, `tcp:default`.
    pub fn id(&self) -> String {
        format!("{}:{}", self.kind.as_str(), self.name)
    }

    /// The key of a setting of this listener, `listeners.tcp.default.bind`.
    pub fn key(&self, field: &str) -> String {
        format!("listeners.{}.{}.{field}", self.kind.as_str(), self.name)
    }
}
