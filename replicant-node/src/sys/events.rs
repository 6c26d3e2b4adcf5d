//! Client event messages, as EMQX publishes them:
//! `$SYS/brokers/{node}/clients/{clientid}/connected` when a CONNECT succeeds and
//! `.../disconnected` when that connection ends, JSON payloads with EMQX's field names,
//! QoS 0, not retained, delivered to matching subscribers on every node
//! ([`super::publish_sys`]).
//!
//! A client id that cannot be one topic level is skipped (no event) and counted as
//! `meshmq_messages_dropped_total{reason="sys_event_client_id"}`: `+` and `#` would make
//! the topic invalid, and `/` would spread the id over several levels, so that
//! `clients/+/connected` misses it and a filter or an authorization rule naming one client
//! (`clients/a/#`) matches another's events (`a/b`). Owns the payloads and the reason
//! names; it never blocks (the connection task calls it).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use meshmq_shared::codec::{Properties, ProtocolVersion, QoS, ReasonCode};
use meshmq_shared::metrics as m;
use serde::Serialize;

use crate::ctx::Ctx;
use crate::message::Message;

/// Who the event is about: what both events carry.
#[derive(Debug, Clone)]
pub struct ClientInfo<'a> {
    /// The client id.
    pub client_id: &'a str,
    /// The authenticated user name, if any.
    pub username: Option<&'a str>,
    /// The client's address (a PROXY header's or a trusted proxy's, if any).
    pub peer: IpAddr,
    /// The protocol version of its CONNECT.
    pub version: ProtocolVersion,
}

/// What the `connected` event adds.
#[derive(Debug, Clone, Copy)]
pub struct ConnectInfo {
    /// The effective keep-alive in seconds.
    pub keepalive: u16,
    /// Clean Start (3.1.1: Clean Session).
    pub clean_start: bool,
    /// The session expiry interval in seconds, as granted.
    pub expiry_interval: u32,
    /// When the CONNECT succeeded, in ms since the Unix epoch.
    pub connected_at_ms: u64,
}

#[derive(Serialize)]
struct Connected<'a> {
    clientid: &'a str,
    username: Option<&'a str>,
    ipaddress: String,
    proto_name: &'static str,
    proto_ver: u8,
    keepalive: u16,
    clean_start: bool,
    expiry_interval: u32,
    connack: u8,
    connected_at: u64,
    ts: u64,
}

#[derive(Serialize)]
struct Disconnected<'a> {
    clientid: &'a str,
    username: Option<&'a str>,
    ipaddress: String,
    proto_name: &'static str,
    proto_ver: u8,
    reason: &'a str,
    disconnected_at: u64,
    ts: u64,
}

/// Publishes the `connected` event of `client` (when `sys_event_messages.client_connected`).
pub fn client_connected(ctx: &Ctx, client: &ClientInfo<'_>, info: ConnectInfo) {
    if !ctx.config.sys_topics.sys_event_messages.client_connected {
        return;
    }
    let body = Connected {
        clientid: client.client_id,
        username: client.username,
        ipaddress: client.peer.to_string(),
        proto_name: proto_name(client.version),
        proto_ver: client.version.level(),
        keepalive: info.keepalive,
        clean_start: info.clean_start,
        expiry_interval: info.expiry_interval,
        connack: 0,
        connected_at: info.connected_at_ms,
        ts: crate::cluster::now_ms(),
    };
    publish_event(ctx, client.client_id, "connected", &body);
}

/// Publishes the `disconnected` event of `client` with `reason` (an EMQX reason name, see
/// [`reason_name`]), when `sys_event_messages.client_disconnected`.
pub fn client_disconnected(ctx: &Ctx, client: &ClientInfo<'_>, reason: &str) {
    if !ctx.config.sys_topics.sys_event_messages.client_disconnected {
        return;
    }
    let now = crate::cluster::now_ms();
    let body = Disconnected {
        clientid: client.client_id,
        username: client.username,
        ipaddress: client.peer.to_string(),
        proto_name: proto_name(client.version),
        proto_ver: client.version.level(),
        reason,
        disconnected_at: now,
        ts: now,
    };
    publish_event(ctx, client.client_id, "disconnected", &body);
}

/// True when `client_id` can be one level of an event topic (see the module doc).
pub fn usable_client_id(client_id: &str) -> bool {
    !client_id.is_empty() && !client_id.contains(['+', '#', '/'])
}

fn publish_event(ctx: &Ctx, client_id: &str, event: &str, body: &impl Serialize) {
    if !usable_client_id(client_id) {
        metrics::counter!(m::MESSAGES_DROPPED_TOTAL, "reason" => "sys_event_client_id")
            .increment(1);
        return;
    }
    // Serializing plain strings and numbers cannot fail; an empty payload would be a bug,
    // not a panic.
    let payload = serde_json::to_vec(body).unwrap_or_default();
    let msg = Message::new(
        Instant::now(),
        format!("$SYS/brokers/{}/clients/{client_id}/{event}", ctx.node()),
        Bytes::from(payload),
        QoS::AtMostOnce,
        false,
        Properties::default(),
    );
    super::publish_sys(ctx, &Arc::new(msg));
}

/// The protocol name of `v`'s CONNECT.
fn proto_name(v: ProtocolVersion) -> &'static str {
    match v {
        ProtocolVersion::V31 => "MQIsdp",
        ProtocolVersion::V311 | ProtocolVersion::V5 => "MQTT",
    }
}

/// EMQX's name of a DISCONNECT reason code (`emqx_reason_codes:name/1`), `normal` for
/// 0x00; a code a DISCONNECT cannot carry is named by its hex value.
pub fn reason_name(rc: ReasonCode) -> std::borrow::Cow<'static, str> {
    use ReasonCode::*;
    let name = match rc {
        Success => "normal",
        DisconnectWithWillMessage => "disconnect_with_will_message",
        UnspecifiedError => "unspecified_error",
        MalformedPacket => "malformed_packet",
        ProtocolError => "protocol_error",
        ImplementationSpecificError => "implementation_specific_error",
        NotAuthorized => "not_authorized",
        ServerBusy => "server_busy",
        ServerShuttingDown => "server_shutting_down",
        KeepAliveTimeout => "keepalive_timeout",
        SessionTakenOver => "session_taken_over",
        TopicFilterInvalid => "topic_filter_invalid",
        TopicNameInvalid => "topic_name_invalid",
        ReceiveMaximumExceeded => "receive_maximum_exceeded",
        TopicAliasInvalid => "topic_alias_invalid",
        PacketTooLarge => "packet_too_large",
        MessageRateTooHigh => "message_rate_too_high",
        QuotaExceeded => "quota_exceeded",
        AdministrativeAction => "administrative_action",
        PayloadFormatInvalid => "payload_format_invalid",
        RetainNotSupported => "retain_not_supported",
        QoSNotSupported => "qos_not_supported",
        UseAnotherServer => "use_another_server",
        ServerMoved => "server_moved",
        SharedSubscriptionsNotSupported => "shared_subscriptions_not_supported",
        ConnectionRateExceeded => "connection_rate_exceeded",
        MaximumConnectTime => "maximum_connect_time",
        SubscriptionIdentifiersNotSupported => "subscription_identifiers_not_supported",
        WildcardSubscriptionsNotSupported => "wildcard_subscriptions_not_supported",
        other => return format!("0x{:02x}", other.as_u8()).into(),
    };
    name.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_that_are_not_one_level_are_refused() {
        for ok in ["c1", "dev-42", "a.b:c", "ü", "$x"] {
            assert!(usable_client_id(ok), "{ok}");
        }
        for bad in ["", "a/b", "/", "a+", "#", "x/+/#"] {
            assert!(!usable_client_id(bad), "{bad}");
        }
    }

    #[test]
    fn reasons_have_emqx_names() {
        assert_eq!(reason_name(ReasonCode::Success), "normal");
        assert_eq!(
            reason_name(ReasonCode::KeepAliveTimeout),
            "keepalive_timeout"
        );
        assert_eq!(
            reason_name(ReasonCode::DisconnectWithWillMessage),
            "disconnect_with_will_message"
        );
        assert_eq!(reason_name(ReasonCode::GrantedQoS1), "0x01");
    }

    #[test]
    fn payloads_use_emqx_field_names() {
        let body = Connected {
            clientid: "c",
            username: None,
            ipaddress: "127.0.0.1".into(),
            proto_name: proto_name(ProtocolVersion::V31),
            proto_ver: ProtocolVersion::V31.level(),
            keepalive: 60,
            clean_start: true,
            expiry_interval: 0,
            connack: 0,
            connected_at: 1,
            ts: 2,
        };
        let v = serde_json::to_value(&body).expect("json");
        assert_eq!(v["proto_name"], "MQIsdp");
        assert_eq!(v["proto_ver"], 3);
        assert!(v["username"].is_null());
        assert_eq!(v["connected_at"], 1);
    }
}
