//! [`WsConfig`]: what a ws/wss listener needs to upgrade a connection, built once per
//! listener from its `websocket` options, its trusted proxies and `mqtt.max_packet_size`.
//!
//! Owns the checks of those settings that matter at upgrade time (header names that parse,
//! trusted addresses that parse, subprotocol names that fit a header) and the limits derived
//! from them. It must never look at a request: that is [`super::serve`]'s.

use std::time::Duration;

use axum::http::{HeaderName, HeaderValue};
use meshmq_shared::auth::acl::IpNet;
use meshmq_shared::config::WebsocketOptions;

/// Room above the MQTT packet limit in a WebSocket frame or message: a client may put the
/// end of one packet and the start of the next in one frame. What passes the WebSocket
/// limit still meets the MQTT decoder's `mqtt.max_packet_size` (DISCONNECT 0x95).
pub const FRAME_HEADROOM: usize = 64 * 1024;

/// Time from accept to a completed upgrade unless a test says otherwise.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest HTTP request head (request line and headers) read before the upgrade; beyond it
/// the client gets 431. hyper's minimum is 8 KiB.
pub const MAX_REQUEST_HEAD: usize = 16 * 1024;

/// Most headers in the upgrade request; beyond it the client gets 431.
pub const MAX_HEADERS: usize = 64;

/// Initial capacity of an upgraded connection's read buffer. The WebSocket library's
/// default (128 KiB, zero-filled) would be most of an idle connection's memory; a frame
/// larger than this grows the buffer while it is read.
pub const READ_BUFFER: usize = 4 * 1024;

/// The upgrade settings of one ws or wss listener.
#[derive(Debug, Clone)]
pub struct WsConfig {
    /// The one path that upgrades (`websocket.mqtt_path`).
    pub(super) path: String,
    /// Subprotocols in order of preference (`websocket.supported_subprotocols`).
    pub(super) subprotocols: Vec<HeaderValue>,
    /// Refuse (400) a client that offers none of `subprotocols`.
    pub(super) fail_if_no_subprotocol: bool,
    /// `Some` when the `Origin` check is on: the allowed origins.
    pub(super) origins: Option<Vec<String>>,
    /// With the check on: a request without `Origin` passes.
    pub(super) allow_origin_absence: bool,
    /// Peers whose forwarding headers are believed (`proxy_protocol_trusted`).
    pub(super) trusted: Vec<IpNet>,
    /// The header naming the client's address (`websocket.proxy_address_header`).
    pub(super) address_header: HeaderName,
    /// The header naming the client's port (`websocket.proxy_port_header`).
    pub(super) port_header: HeaderName,
    /// Time from the first byte to a completed upgrade.
    pub(super) handshake_timeout: Duration,
    /// Largest WebSocket message (all fragments).
    pub(super) max_message_size: usize,
    /// Largest WebSocket frame, checked from its header before its payload is read.
    pub(super) max_frame_size: usize,
}

impl WsConfig {
    /// Checks and keeps a listener's WebSocket options. `trusted` are its
    /// `proxy_protocol_trusted` entries (addresses or CIDR blocks); frame and message
    /// limits are `max_packet_size` plus [`FRAME_HEADROOM`]; the handshake timeout is
    /// [`HANDSHAKE_TIMEOUT`]. The error names the option that is wrong.
    pub fn new(
        opts: &WebsocketOptions,
        trusted: &[String],
        max_packet_size: u32,
    ) -> Result<Self, String> {
        if !opts.mqtt_path.starts_with('/') {
            return Err(format!(
                "websocket.mqtt_path {:?} must start with '/'",
                opts.mqtt_path
            ));
        }
        let subprotocols = opts
            .supported_subprotocols
            .iter()
            .map(|p| {
                let p = p.trim();
                let token = !p.is_empty()
                    && p.bytes()
                        .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b));
                if !token {
                    return Err(format!(
                        "websocket.supported_subprotocols: {p:?} is not a subprotocol name"
                    ));
                }
                HeaderValue::from_str(p)
                    .map_err(|e| format!("websocket.supported_subprotocols: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let header = |key: &str, name: &str| {
            HeaderName::from_bytes(name.trim().as_bytes())
                .map_err(|_| format!("websocket.{key} {name:?} is not an HTTP header name"))
        };
        let address_header = header("proxy_address_header", &opts.proxy_address_header)?;
        let port_header = header("proxy_port_header", &opts.proxy_port_header)?;
        let trusted = trusted
            .iter()
            .map(|t| IpNet::parse(t).map_err(|e| format!("proxy_protocol_trusted: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        let origins = opts.check_origin_enable.then(|| {
            opts.check_origins
                .iter()
                .map(|o| o.trim().to_owned())
                .collect()
        });
        let size = usize::try_from(max_packet_size)
            .unwrap_or(usize::MAX)
            .saturating_add(FRAME_HEADROOM);
        Ok(WsConfig {
            path: opts.mqtt_path.clone(),
            subprotocols,
            fail_if_no_subprotocol: opts.fail_if_no_subprotocol,
            origins,
            allow_origin_absence: opts.allow_origin_absence,
            trusted,
            address_header,
            port_header,
            handshake_timeout: HANDSHAKE_TIMEOUT,
            max_message_size: size,
            max_frame_size: size,
        })
    }

    /// The same settings with another handshake timeout (tests).
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// The same settings with other frame and message limits (tests).
    pub fn with_max_sizes(mut self, max_frame_size: usize, max_message_size: usize) -> Self {
        self.max_frame_size = max_frame_size;
        self.max_message_size = max_message_size;
        self
    }

    /// The path that upgrades.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Time from the first byte to a completed upgrade.
    pub fn handshake_timeout(&self) -> Duration {
        self.handshake_timeout
    }

    /// Whether forwarding headers from `ip` are believed.
    pub(super) fn is_trusted(&self, ip: std::net::IpAddr) -> bool {
        self.trusted.iter().any(|n| n.contains(ip))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    #[test]
    fn defaults_build_and_limits_follow_the_packet_size() {
        let c = WsConfig::new(&WebsocketOptions::default(), &[], 1024).unwrap();
        assert_eq!(c.path(), "/mqtt");
        assert_eq!(c.max_frame_size, 1024 + FRAME_HEADROOM);
        assert_eq!(c.subprotocols, ["mqtt", "mqttv3.1"]);
        assert!(c.origins.is_none());
        let c = WsConfig::new(&WebsocketOptions::default(), &[], u32::MAX).unwrap();
        assert!(c.max_message_size >= u32::MAX as usize);
    }

    #[test]
    fn bad_settings_are_refused_with_their_name() {
        let bad = |f: fn(&mut WebsocketOptions), trusted: &[&str], key: &str| {
            let mut o = WebsocketOptions::default();
            f(&mut o);
            let trusted: Vec<String> = trusted.iter().map(|s| s.to_string()).collect();
            let e = WsConfig::new(&o, &trusted, 1024).unwrap_err();
            assert!(e.contains(key), "{e}");
        };
        bad(|o| o.mqtt_path = "mqtt".into(), &[], "mqtt_path");
        bad(
            |o| o.supported_subprotocols = vec!["a b".into()],
            &[],
            "supported_subprotocols",
        );
        bad(
            |o| o.supported_subprotocols = vec!["".into()],
            &[],
            "supported_subprotocols",
        );
        bad(
            |o| o.proxy_address_header = "x forwarded".into(),
            &[],
            "proxy_address_header",
        );
        bad(
            |o| o.proxy_port_header = "".into(),
            &[],
            "proxy_port_header",
        );
        bad(|_| {}, &["10.0.0.300"], "proxy_protocol_trusted");
    }
}
