//! From `[listeners]` to the list of listeners a node binds: defaults for the `default`
//! listeners (the old flat `mqtt_bind` / `ws_bind` keys among them), inheritance of
//! `wss.default`'s TLS options, and the checks a listener must pass before anything binds.

use std::collections::HashSet;
use std::net::SocketAddr;

use super::listeners::{
    ListenerConfig, ListenerKind, ListenerSpec, ListenersConfig, WebsocketOptions,
};
use super::tls::{ClientAuth, PeerCertAs};
use crate::auth::acl::IpNet;

/// The name of the listener each kind has without being declared.
pub const DEFAULT_NAME: &str = "default";

/// A listener setting that is wrong: (its dotted key, why).
pub type ListenerError = (String, String);

impl ListenersConfig {
    /// Every declared listener (enabled or not), with defaults applied and checked, in
    /// the order tcp, ssl, ws, wss and by name.
    pub fn resolve(&self) -> Result<Vec<ListenerSpec>, ListenerError> {
        let defaults = ListenersConfig::default();
        let mut out = Vec::new();
        let kinds = [
            (ListenerKind::Tcp, &self.tcp),
            (ListenerKind::Ssl, &self.ssl),
            (ListenerKind::Ws, &self.ws),
            (ListenerKind::Wss, &self.wss),
        ];
        for (kind, map) in kinds {
            let mut entries: Vec<(String, ListenerConfig)> =
                map.iter().map(|(n, c)| (n.clone(), c.clone())).collect();
            let implicit_default = match kind {
                ListenerKind::Tcp => true,
                ListenerKind::Ws => self.ws_bind.is_some(),
                ListenerKind::Ssl | ListenerKind::Wss => false,
            };
            if implicit_default && !map.contains_key(DEFAULT_NAME) {
                entries.insert(0, (DEFAULT_NAME.to_owned(), ListenerConfig::default()));
            }
            for (name, mut config) in entries {
                let key = |field: &str| format!("listeners.{}.{name}.{field}", kind.as_str());
                let legacy = match kind {
                    ListenerKind::Tcp => Some((
                        "listeners.mqtt_bind",
                        Some(self.mqtt_bind),
                        Some(defaults.mqtt_bind),
                    )),
                    ListenerKind::Ws => Some(("listeners.ws_bind", self.ws_bind, defaults.ws_bind)),
                    _ => None,
                };
                let bind = match (name == DEFAULT_NAME, config.bind, legacy) {
                    (true, Some(b), Some((old, Some(o), d))) if Some(o) != d && o != b => {
                        return Err((
                            key("bind"),
                            format!(
                                "{old} is the old name of this setting and says {o}, this \
                                 says {b}: set only listeners.{}.default.bind",
                                kind.as_str()
                            ),
                        ));
                    }
                    (_, Some(b), _) => b,
                    (true, None, Some((_, Some(o), _))) => o,
                    (true, None, None) => default_port(kind),
                    _ => return Err((key("bind"), "a listener needs an address".into())),
                };
                if kind == ListenerKind::Wss && name == DEFAULT_NAME && config.ssl_options.is_none()
                {
                    config.ssl_options = self
                        .ssl
                        .get(DEFAULT_NAME)
                        .and_then(|s| s.ssl_options.clone());
                }
                let spec = ListenerSpec {
                    kind,
                    name: name.clone(),
                    bind,
                    config,
                };
                if spec.config.enable {
                    check(&spec)?;
                }
                out.push(spec);
            }
        }
        let mut seen = HashSet::new();
        for s in out.iter().filter(|s| s.config.enable && s.bind.port() != 0) {
            if !seen.insert(s.bind) {
                return Err((
                    s.key("bind"),
                    format!("{} is the address of another listener too", s.bind),
                ));
            }
        }
        Ok(out)
    }
}

/// `127.0.0.1:8883` for ssl, `:8084` for wss (tcp and ws take theirs from the flat keys).
fn default_port(kind: ListenerKind) -> SocketAddr {
    let port = match kind {
        ListenerKind::Tcp => 1883,
        ListenerKind::Ssl => 8883,
        ListenerKind::Ws => 8083,
        ListenerKind::Wss => 8084,
    };
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// The checks of one enabled listener.
fn check(s: &ListenerSpec) -> Result<(), ListenerError> {
    let c = &s.config;
    let err = |field: &str, reason: &str| Err((s.key(field), reason.to_owned()));
    if s.name.is_empty()
        || !s
            .name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-')
    {
        return Err((
            format!("listeners.{}.{}", s.kind.as_str(), s.name),
            "a listener name is letters, digits, '_' and '-'".into(),
        ));
    }
    if c.max_connections == Some(0) {
        return err("max_connections", "must be greater than 0");
    }
    if c.max_conn_rate == Some(0) {
        return err("max_conn_rate", "must be greater than 0 (unset: no limit)");
    }
    if c.proxy_protocol_timeout_ms == 0 {
        return err("proxy_protocol_timeout_ms", "must be greater than 0");
    }
    if c.proxy_protocol && c.proxy_protocol_trusted.is_empty() {
        return err(
            "proxy_protocol_trusted",
            "proxy_protocol needs the addresses of the load balancers that send the header \
             (CIDR blocks; [\"0.0.0.0/0\", \"::/0\"] trusts anyone who can reach the port)",
        );
    }
    for t in &c.proxy_protocol_trusted {
        IpNet::parse(t).map_err(|e| (s.key("proxy_protocol_trusted"), e))?;
    }
    if !s.kind.is_websocket() && c.websocket != WebsocketOptions::default() {
        return err(
            "websocket",
            "only ws and wss listeners take WebSocket options",
        );
    }
    if s.kind.is_websocket() {
        let w = &c.websocket;
        if !w.mqtt_path.starts_with('/') {
            return err("websocket.mqtt_path", "must start with '/'");
        }
        if w.supported_subprotocols.iter().any(|p| p.trim().is_empty()) {
            return err("websocket.supported_subprotocols", "empty name");
        }
        if w.check_origin_enable && w.check_origins.is_empty() && !w.allow_origin_absence {
            return err(
                "websocket.check_origins",
                "with the origin check on and no origin allowed, no client could connect",
            );
        }
    }
    if !s.kind.is_tls() {
        if c.ssl_options.is_some() {
            return err("ssl_options", "only ssl and wss listeners take TLS options");
        }
        if c.peer_cert_as_username != PeerCertAs::Disabled
            || c.peer_cert_as_clientid != PeerCertAs::Disabled
        {
            return err(
                "peer_cert_as_username",
                "only ssl and wss listeners have client certificates",
            );
        }
        return Ok(());
    }
    let Some(tls) = &c.ssl_options else {
        let reason = if s.kind == ListenerKind::Wss && s.name == DEFAULT_NAME {
            "a TLS listener needs a certificate (here, or in listeners.ssl.default.ssl_options)"
        } else {
            "a TLS listener needs a certificate"
        };
        return err("ssl_options.certfile", reason);
    };
    tls.check()
        .map_err(|(k, r)| (s.key(&format!("ssl_options.{k}")), r))?;
    let from_cert = c.peer_cert_as_username != PeerCertAs::Disabled
        || c.peer_cert_as_clientid != PeerCertAs::Disabled;
    if from_cert && tls.client_auth() == ClientAuth::None {
        return err(
            "peer_cert_as_username",
            "an identity from the client certificate needs client certificates \
             (ssl_options.verify = \"optional\" or \"required\")",
        );
    }
    Ok(())
}

/// The first enabled MQTT listener that would let anonymous clients in from beyond this
/// machine: off loopback, with no authentication applying to it (none configured, or
/// `enable_authn = false`) and no required client certificate, while
/// `listeners.allow_anonymous` is off.
pub fn open_listener(config: &super::Config) -> Option<SocketAddr> {
    if config.listeners.allow_anonymous {
        return None;
    }
    let authn = config.authentication.iter().any(|a| a.enabled());
    let listeners = config.listeners.resolve().ok()?;
    listeners
        .into_iter()
        .filter(|s| s.config.enable && !s.bind.ip().is_loopback())
        .find(|s| {
            let authenticated = authn && s.config.enable_authn;
            let certified = s
                .config
                .ssl_options
                .as_ref()
                .is_some_and(|t| s.kind.is_tls() && t.client_auth() == ClientAuth::Required);
            !authenticated && !certified
        })
        .map(|s| s.bind)
}
