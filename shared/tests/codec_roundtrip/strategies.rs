//! Proptest strategies that generate spec-valid MQTT packets for 3.1, 3.1.1 and 5.0.
//!
//! Owns the notion of a "valid packet" used by the round-trip properties: only what the spec
//! allows in each version (no properties in 3.x, reason codes valid for the packet type,
//! packet ids and DUP that match the QoS, an empty topic only behind a 5.0 topic alias). It
//! must never generate a packet the spec forbids: a round-trip failure must always mean a
//! codec bug, not a bad input. Values stay small so the byte-at-a-time properties run fast in
//! debug builds. Strings and topics come from `values`, property sets from `properties`,
//! reason code tables from `reasons`.

use bytes::Bytes;
use meshmq_shared::codec::{
    Auth, ConnAck, Connect, Disconnect, Packet, Properties, ProtocolVersion, PubResp, Publish, QoS,
    ReasonCode, SubAck, Subscribe, SubscriptionOptions, UnsubAck, Unsubscribe, Will,
};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::select;

use super::properties::{
    ack_properties, auth_properties, connack_properties, connect_properties, disconnect_properties,
    publish_properties, subscribe_properties, unsubscribe_properties, v5_props, will_properties,
};
use super::reasons::*;
use super::values::{binary, packet_id, qos, text, text_char, topic_filter, topic_name, version};

use ReasonCode::*;

/// A will message: properties and a matching payload in 5.0, neither in 3.x.
fn will(v: ProtocolVersion) -> impl Strategy<Value = Will> {
    let body = v5_message(v, will_properties(), 40);
    (topic_name(), qos(), any::<bool>(), body).prop_map(
        |(topic, qos, retain, (properties, payload))| Will {
            topic,
            payload,
            qos,
            retain,
            properties,
        },
    )
}

/// Message properties with their payload in 5.0; no properties and any payload in 3.x.
fn v5_message(
    v: ProtocolVersion,
    v5: impl Strategy<Value = (Properties, Bytes)> + 'static,
    v3_max: usize,
) -> BoxedStrategy<(Properties, Bytes)> {
    if v.is_v5() {
        v5.boxed()
    } else {
        binary(v3_max)
            .prop_map(|payload| (Properties::default(), payload))
            .boxed()
    }
}

/// A client identifier: 1..=23 characters in 3.1, anything in 3.1.1 and 5.0.
fn client_id(v: ProtocolVersion) -> impl Strategy<Value = String> {
    let min = usize::from(v == ProtocolVersion::V31);
    vec(text_char(), min..=23).prop_map(|chars| chars.into_iter().collect())
}

/// CONNECT for `v`. In 3.x a password needs a user name and an empty client id needs a
/// clean session.
pub fn connect(v: ProtocolVersion) -> BoxedStrategy<Packet> {
    let creds = (option::of(text(10)), option::of(binary(10)));
    let body = (
        any::<bool>(),
        any::<u16>(),
        client_id(v),
        option::of(will(v)),
    );
    (body, creds, v5_props(v, connect_properties()))
        .prop_map(
            move |((clean, keep_alive, client_id, will), (username, password), properties)| {
                let v3 = !v.is_v5();
                let password = if v3 && username.is_none() {
                    None
                } else {
                    password
                };
                let clean_start = clean || (v3 && client_id.is_empty());
                Packet::Connect(Box::new(Connect {
                    protocol: v,
                    clean_start,
                    keep_alive,
                    client_id,
                    will,
                    username,
                    password,
                    properties,
                }))
            },
        )
        .boxed()
}

/// CONNACK for `v`: Session Present only with Success (and never in 3.1, which lacks it).
fn connack(v: ProtocolVersion) -> BoxedStrategy<Packet> {
    let codes: &'static [ReasonCode] = if v.is_v5() { &V5_CONNACK } else { &V3_CONNACK };
    (
        any::<bool>(),
        select(codes),
        v5_props(v, connack_properties()),
    )
        .prop_map(move |(present, code, properties)| {
            let session_present = present && code == Success && v != ProtocolVersion::V31;
            Packet::ConnAck(ConnAck {
                session_present,
                code,
                properties,
            })
        })
        .boxed()
}

/// PUBLISH for `v`: packet id and DUP only with QoS > 0; in 5.0 the topic may be empty when
/// a Topic Alias is set.
fn publish(v: ProtocolVersion) -> BoxedStrategy<Packet> {
    let header = (qos(), any::<bool>(), any::<bool>(), packet_id());
    let body = v5_message(v, publish_properties(), 300);
    (header, topic_name(), any::<bool>(), body)
        .prop_map(
            |((qos, dup, retain, id), topic, drop_topic, (properties, payload))| {
                let aliased = drop_topic && properties.topic_alias.is_some();
                let topic = if aliased { String::new() } else { topic };
                let (packet_id, dup) = if qos == QoS::AtMostOnce {
                    (0, false)
                } else {
                    (id, dup)
                };
                Packet::Publish(Publish {
                    dup,
                    qos,
                    retain,
                    topic,
                    packet_id,
                    payload,
                    properties,
                })
            },
        )
        .boxed()
}

/// A reason code from `codes` in 5.0, Success in 3.x.
fn reason(v: ProtocolVersion, codes: &'static [ReasonCode]) -> BoxedStrategy<ReasonCode> {
    if v.is_v5() {
        select(codes).boxed()
    } else {
        Just(Success).boxed()
    }
}

/// PUBACK, PUBREC, PUBREL or PUBCOMP for `v`.
fn pub_resp(v: ProtocolVersion) -> BoxedStrategy<Packet> {
    let resp = |codes: &'static [ReasonCode]| {
        (packet_id(), reason(v, codes), v5_props(v, ack_properties())).prop_map(
            |(packet_id, reason, properties)| PubResp {
                packet_id,
                reason,
                properties,
            },
        )
    };
    prop_oneof![
        resp(&V5_PUBACK).prop_map(Packet::PubAck),
        resp(&V5_PUBACK).prop_map(Packet::PubRec),
        resp(&V5_PUBREL).prop_map(Packet::PubRel),
        resp(&V5_PUBREL).prop_map(Packet::PubComp),
    ]
    .boxed()
}

/// Subscription options: only the QoS in 3.x; retain handling 0..=2 in 5.0.
fn subscription_options(v: ProtocolVersion) -> impl Strategy<Value = SubscriptionOptions> {
    (qos(), any::<bool>(), any::<bool>(), 0u8..=2).prop_map(move |(qos, nl, rap, rh)| {
        if v.is_v5() {
            SubscriptionOptions {
                qos,
                no_local: nl,
                retain_as_published: rap,
                retain_handling: rh,
            }
        } else {
            SubscriptionOptions {
                qos,
                ..SubscriptionOptions::default()
            }
        }
    })
}

/// SUBSCRIBE for `v`: at least one filter; at most one subscription identifier in 5.0.
fn subscribe(v: ProtocolVersion) -> BoxedStrategy<Packet> {
    let filters = vec((topic_filter(), subscription_options(v)), 1..4);
    (packet_id(), filters, v5_props(v, subscribe_properties()))
        .prop_map(|(packet_id, filters, properties)| {
            Packet::Subscribe(Subscribe {
                packet_id,
                filters,
                properties,
            })
        })
        .boxed()
}

/// SUBACK for `v`: one reason per filter, from the codes that version knows.
fn suback(v: ProtocolVersion) -> BoxedStrategy<Packet> {
    let codes: &'static [ReasonCode] = match v {
        ProtocolVersion::V31 => &V31_SUBACK,
        ProtocolVersion::V311 => &V311_SUBACK,
        ProtocolVersion::V5 => &V5_SUBACK,
    };
    (
        packet_id(),
        vec(select(codes), 1..5),
        v5_props(v, ack_properties()),
    )
        .prop_map(|(packet_id, reasons, properties)| {
            Packet::SubAck(SubAck {
                packet_id,
                reasons,
                properties,
            })
        })
        .boxed()
}

/// UNSUBSCRIBE for `v`: at least one filter, user properties only.
fn unsubscribe(v: ProtocolVersion) -> BoxedStrategy<Packet> {
    (
        packet_id(),
        vec(topic_filter(), 1..4),
        v5_props(v, unsubscribe_properties()),
    )
        .prop_map(|(packet_id, filters, properties)| {
            Packet::Unsubscribe(Unsubscribe {
                packet_id,
                filters,
                properties,
            })
        })
        .boxed()
}

/// UNSUBACK for `v`: reasons in 5.0, no payload at all in 3.x.
fn unsuback(v: ProtocolVersion) -> BoxedStrategy<Packet> {
    let reasons = if v.is_v5() {
        vec(select(&V5_UNSUBACK[..]), 1..5).boxed()
    } else {
        Just(Vec::new()).boxed()
    };
    (packet_id(), reasons, v5_props(v, ack_properties()))
        .prop_map(|(packet_id, reasons, properties)| {
            Packet::UnsubAck(UnsubAck {
                packet_id,
                reasons,
                properties,
            })
        })
        .boxed()
}

/// DISCONNECT for `v` (section 3.14.2.2 for its properties).
fn disconnect(v: ProtocolVersion) -> BoxedStrategy<Packet> {
    (
        reason(v, &V5_DISCONNECT),
        v5_props(v, disconnect_properties()),
    )
        .prop_map(|(reason, properties)| Packet::Disconnect(Disconnect { reason, properties }))
        .boxed()
}

/// AUTH (5.0 only): either the empty Success form, or a reason with an authentication method.
fn auth() -> BoxedStrategy<Packet> {
    let full = (select(&V5_AUTH[..]), auth_properties())
        .prop_map(|(reason, properties)| Packet::Auth(Auth { reason, properties }));
    let empty = Just(Packet::Auth(Auth {
        reason: Success,
        properties: Properties::default(),
    }));
    prop_oneof![1 => empty, 4 => full].boxed()
}

/// Any packet except CONNECT that is valid in `v` (AUTH only in 5.0).
pub fn packet(v: ProtocolVersion) -> BoxedStrategy<Packet> {
    let common = prop_oneof![
        connack(v),
        publish(v),
        pub_resp(v),
        subscribe(v),
        suback(v),
        unsubscribe(v),
        unsuback(v),
        Just(Packet::PingReq),
        Just(Packet::PingResp),
        disconnect(v),
    ];
    if v.is_v5() {
        prop_oneof![10 => common, 1 => auth()].boxed()
    } else {
        common.boxed()
    }
}

/// A version and a packet (not CONNECT) valid in it.
pub fn versioned_packet() -> impl Strategy<Value = (ProtocolVersion, Packet)> {
    version().prop_flat_map(|v| (Just(v), packet(v)))
}

/// A version and a CONNECT for it.
pub fn versioned_connect() -> impl Strategy<Value = (ProtocolVersion, Packet)> {
    version().prop_flat_map(|v| (Just(v), connect(v)))
}

/// A PUBLISH with a payload large enough for a 3-byte remaining length.
pub fn large_publish() -> impl Strategy<Value = (ProtocolVersion, Packet)> {
    (
        version(),
        topic_name(),
        qos(),
        1..=u16::MAX,
        16_384usize..40_000,
        any::<u8>(),
    )
        .prop_map(|(v, topic, qos, id, len, fill)| {
            let packet_id = if qos == QoS::AtMostOnce { 0 } else { id };
            let payload = Bytes::from(vec![fill; len]);
            let properties = Properties::default();
            let publish = Publish {
                dup: false,
                qos,
                retain: false,
                topic,
                packet_id,
                payload,
                properties,
            };
            (v, Packet::Publish(publish))
        })
}
